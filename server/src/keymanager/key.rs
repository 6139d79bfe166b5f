//! Key types and signing keys.

use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use zeroize::Zeroizing;

use super::KeyError;

/// A key algorithm, spelled as in SPIRE's config (`ec-p256`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// ECDSA P-256 (the default).
    #[default]
    EcP256,
    /// ECDSA P-384.
    EcP384,
    /// RSA 2048.
    Rsa2048,
    /// RSA 4096.
    Rsa4096,
}

impl FromStr for KeyType {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "ec-p256" => Ok(KeyType::EcP256),
            "ec-p384" => Ok(KeyType::EcP384),
            "rsa-2048" => Ok(KeyType::Rsa2048),
            "rsa-4096" => Ok(KeyType::Rsa4096),
            other => Err(KeyError::UnsupportedType(other.to_owned())),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::EcP256 => "ec-p256",
            KeyType::EcP384 => "ec-p384",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa4096 => "rsa-4096",
        })
    }
}

impl KeyType {
    fn rcgen_alg(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Rsa2048 | KeyType::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// The JWS `alg` of JWTs signed with this key type.
    pub fn jws_alg(self) -> &'static str {
        match self {
            KeyType::EcP256 => "ES256",
            KeyType::EcP384 => "ES384",
            KeyType::Rsa2048 | KeyType::Rsa4096 => "RS256",
        }
    }
}

/// A private key able to sign certificates and JWTs. Its bytes are zeroed
/// on drop and never printed.
pub struct SigningKey {
    key_type: KeyType,
    pkcs8: Zeroizing<Vec<u8>>,
    public_key: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_type", &self.key_type)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

fn key_err(id: &str, reason: impl ToString) -> KeyError {
    KeyError::Key {
        id: id.to_owned(),
        reason: reason.to_string(),
    }
}

impl SigningKey {
    /// Generates a new key of `key_type`; `id` only names it in errors.
    pub fn generate(id: &str, key_type: KeyType) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = match key_type {
            KeyType::EcP256 | KeyType::EcP384 => {
                let alg = if key_type == KeyType::EcP256 {
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &signature::ECDSA_P384_SHA384_FIXED_SIGNING
                };
                EcdsaKeyPair::generate_pkcs8(alg, &rng)
                    .map_err(|_| key_err(id, "EC key generation failed"))?
                    .as_ref()
                    .to_vec()
            }
            KeyType::Rsa2048 | KeyType::Rsa4096 => {
                use rsa::pkcs8::EncodePrivateKey;
                let bits = if key_type == KeyType::Rsa2048 {
                    2048
                } else {
                    4096
                };
                let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
                    .map_err(|e| key_err(id, format!("RSA key generation failed: {e}")))?;
                key.to_pkcs8_der()
                    .map_err(|e| key_err(id, format!("RSA key encoding failed: {e}")))?
                    .as_bytes()
                    .to_vec()
            }
        };
        Self::from_pkcs8(id, key_type, pkcs8)
    }

    /// Loads a PKCS#8 key of `key_type`, checking that it is usable.
    pub fn from_pkcs8(id: &str, key_type: KeyType, pkcs8: Vec<u8>) -> Result<Self, KeyError> {
        let pkcs8 = Zeroizing::new(pkcs8);
        let pair = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8.as_slice()),
            key_type.rcgen_alg(),
        )
        .map_err(|_| {
            key_err(
                id,
                format!("stored key is not a valid {key_type} PKCS#8 key"),
            )
        })?;
        let public_key = pair.subject_public_key_info();
        Ok(SigningKey {
            key_type,
            pkcs8,
            public_key,
        })
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_key
    }

    /// The PKCS#8 bytes, for the key manager that persists them.
    pub(crate) fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// An rcgen key pair for signing certificates.
    pub fn rcgen_key_pair(&self) -> Result<KeyPair, KeyError> {
        KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(self.pkcs8.as_slice()),
            self.key_type.rcgen_alg(),
        )
        .map_err(|e| key_err("signing key", e))
    }

    /// The JWS `alg` this key signs with.
    pub fn jws_alg(&self) -> &'static str {
        self.key_type.jws_alg()
    }

    /// Signs `msg` for a JWS: ECDSA as fixed-size r||s, RSA as PKCS#1 v1.5 SHA-256.
    pub fn sign_jws(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match self.key_type {
            KeyType::EcP256 | KeyType::EcP384 => {
                let alg = if self.key_type == KeyType::EcP256 {
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &signature::ECDSA_P384_SHA384_FIXED_SIGNING
                };
                let pair = EcdsaKeyPair::from_pkcs8(alg, &self.pkcs8, &rng)
                    .map_err(|_| key_err("jwt key", "unusable EC key"))?;
                pair.sign(&rng, msg)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| key_err("jwt key", "signing failed"))
            }
            KeyType::Rsa2048 | KeyType::Rsa4096 => {
                let pair = RsaKeyPair::from_pkcs8(&self.pkcs8)
                    .map_err(|_| key_err("jwt key", "unusable RSA key"))?;
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|_| key_err("jwt key", "signing failed"))?;
                Ok(sig)
            }
        }
    }
}
