//! `NodeAttestor "x509pop"`: a certificate from the node's PKI and proof
//! that this node holds its private key.
//!
//! The payload is SPIRE's `{"certificates": ["<DER, base64>", ...]}`: the
//! certificates of `certificate_path` (leaf first) followed by those of
//! `intermediates_path`. The server answers with a challenge holding a
//! 32-byte nonce; the agent picks its own 32-byte nonce and signs
//! SHA-256(server nonce || agent nonce): RSA-PSS with SHA-256 (salt as long
//! as the hash, which SPIRE's Go server accepts), or ECDSA giving `r` and
//! `s`. The files are read again at every attestation, so a renewed node
//! certificate is used without a restart.
//!
//! Keys: PEM `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY` (PKCS#1) or `EC
//! PRIVATE KEY` (SEC1), as SPIRE reads them; RSA of 2048 to 4096 bits
//! (ring's limits for signing), ECDSA on P-256 or P-384. The key must
//! match the leaf certificate. The key never leaves this module: errors
//! name the file, never its content.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use spinel_proto::spire::api::types;
use zeroize::Zeroizing;

use super::AttestError;

/// The attestor's name in config files and `AttestationData.type`.
pub const NAME: &str = "x509pop";
/// Length of both nonces.
const NONCE_LEN: usize = 32;

/// The agent's `x509pop` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509popConfig {
    /// The node's private key (PEM).
    pub private_key_path: PathBuf,
    /// The node's certificate, then any intermediates (PEM).
    pub certificate_path: PathBuf,
    /// More intermediates (PEM), appended to the chain.
    pub intermediates_path: Option<PathBuf>,
}

#[derive(Serialize)]
struct Payload {
    certificates: Vec<String>,
}

#[derive(Deserialize)]
struct NonceChallenge {
    #[serde(default)]
    nonce: Option<String>,
}

#[derive(Deserialize)]
struct Challenge {
    #[serde(default)]
    rsa_signature: Option<NonceChallenge>,
    #[serde(default)]
    ecdsa_signature: Option<NonceChallenge>,
}

#[derive(Serialize)]
struct RsaResponse {
    nonce: String,
    signature: String,
}

#[derive(Serialize)]
struct EcdsaResponse {
    nonce: String,
    r: String,
    s: String,
}

#[derive(Serialize)]
struct Response {
    rsa_signature: Option<RsaResponse>,
    ecdsa_signature: Option<EcdsaResponse>,
}

enum Signer {
    Rsa(ring::signature::RsaKeyPair),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

/// The node's evidence, loaded for one attestation: the payload to send
/// and the key that answers the challenge. `Debug` shows no key.
pub struct Evidence {
    data: types::AttestationData,
    signer: Signer,
}

impl std::fmt::Debug for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evidence")
            .field("type", &self.data.r#type)
            .finish_non_exhaustive()
    }
}

fn evidence_error(path: &Path, what: &str, reason: impl std::fmt::Display) -> AttestError {
    AttestError::Evidence(format!("{what} {}: {reason}", path.display()))
}

/// A PEM block: its label and DER content (wiped when dropped).
type PemBlock = (String, Zeroizing<Vec<u8>>);

/// The PEM blocks of `bytes`.
fn pem_blocks(bytes: &[u8]) -> Result<Vec<PemBlock>, String> {
    x509_parser::pem::Pem::iter_from_buffer(bytes)
        .map(|p| {
            p.map(|p| (p.label, Zeroizing::new(p.contents)))
                .map_err(|e| format!("not PEM: {e}"))
        })
        .collect()
}

fn read_certificates(path: &Path, what: &str) -> Result<Vec<Vec<u8>>, AttestError> {
    let bytes = std::fs::read(path).map_err(|e| evidence_error(path, what, e))?;
    let certs: Vec<Vec<u8>> = pem_blocks(&bytes)
        .map_err(|e| evidence_error(path, what, e))?
        .into_iter()
        .filter(|(label, _)| label == "CERTIFICATE")
        .map(|(_, der)| der.to_vec())
        .collect();
    if certs.is_empty() {
        return Err(evidence_error(path, what, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The public key bits of a certificate's SPKI.
fn certificate_key(der: &[u8]) -> Result<Vec<u8>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

fn load_signer(path: &Path) -> Result<Signer, AttestError> {
    use p256::pkcs8::DecodePrivateKey;
    let what = "private key";
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| evidence_error(path, what, e))?);
    let blocks = pem_blocks(&bytes).map_err(|e| evidence_error(path, what, e))?;
    // The first private key block, as Go's tls.LoadX509KeyPair takes it.
    let (label, der) = blocks
        .into_iter()
        .find(|(label, _)| label == "PRIVATE KEY" || label.ends_with(" PRIVATE KEY"))
        .ok_or_else(|| evidence_error(path, what, "holds no PEM private key"))?;
    let unusable = |kind: &str| {
        evidence_error(
            path,
            what,
            format!("unusable {kind} key (supported: RSA 2048-4096 bits, ECDSA P-256 or P-384)"),
        )
    };
    match label.as_str() {
        "RSA PRIVATE KEY" => ring::signature::RsaKeyPair::from_der(&der)
            .map(Signer::Rsa)
            .map_err(|_| unusable("PKCS#1 RSA")),
        "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&der)
            .map(|k| Signer::P256(k.into()))
            .or_else(|_| p384::SecretKey::from_sec1_der(&der).map(|k| Signer::P384(k.into())))
            .map_err(|_| unusable("SEC1 EC")),
        "PRIVATE KEY" => ring::signature::RsaKeyPair::from_pkcs8(&der)
            .map(Signer::Rsa)
            .or_else(|_| p256::SecretKey::from_pkcs8_der(&der).map(|k| Signer::P256(k.into())))
            .or_else(|_| p384::SecretKey::from_pkcs8_der(&der).map(|k| Signer::P384(k.into())))
            .map_err(|_| unusable("PKCS#8")),
        other => Err(evidence_error(
            path,
            what,
            format!("{other:?} blocks are not supported: use PKCS#8, PKCS#1 (RSA) or SEC1 (EC)"),
        )),
    }
}

impl Signer {
    /// The public key as it appears in a certificate's SPKI.
    fn public_key(&self) -> Vec<u8> {
        use ring::signature::KeyPair;
        match self {
            Signer::Rsa(k) => k.public_key().as_ref().to_vec(),
            Signer::P256(k) => k
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
            Signer::P384(k) => k
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
        }
    }
}

/// Reads the key and certificates named by `config`.
pub fn load(config: &X509popConfig) -> Result<Evidence, AttestError> {
    let mut certificates = read_certificates(&config.certificate_path, "certificate")?;
    if let Some(path) = &config.intermediates_path {
        certificates.extend(read_certificates(path, "intermediate certificates")?);
    }
    let signer = load_signer(&config.private_key_path)?;
    let leaf_key = certificates
        .first()
        .map(|c| certificate_key(c))
        .transpose()
        .map_err(|e| evidence_error(&config.certificate_path, "certificate", e))?
        .unwrap_or_default();
    if leaf_key != signer.public_key() {
        return Err(AttestError::Evidence(format!(
            "private key {} does not match the certificate {}",
            config.private_key_path.display(),
            config.certificate_path.display()
        )));
    }
    let payload = serde_json::to_vec(&Payload {
        certificates: certificates.iter().map(|c| STANDARD.encode(c)).collect(),
    })
    .map_err(|e| AttestError::Evidence(format!("cannot encode the payload: {e}")))?;
    Ok(Evidence {
        data: types::AttestationData {
            r#type: NAME.into(),
            payload,
        },
        signer,
    })
}

fn challenge_error(reason: impl std::fmt::Display) -> AttestError {
    AttestError::Failed(format!("x509pop challenge: {reason}"))
}

/// Big-endian bytes without leading zeros (Go's `big.Int.Bytes`).
fn minimal(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

impl Evidence {
    /// The attestation data to send.
    pub fn attestation_data(&self) -> types::AttestationData {
        self.data.clone()
    }

    /// Answers the server's `challenge`.
    pub fn respond(&self, challenge: &[u8]) -> Result<Vec<u8>, AttestError> {
        let challenge: Challenge = serde_json::from_slice(challenge)
            .map_err(|e| challenge_error(format!("unable to unmarshal challenge: {e}")))?;
        let rng = SystemRandom::new();
        let mut ours = [0u8; NONCE_LEN];
        rng.fill(&mut ours)
            .map_err(|_| challenge_error("no randomness for the nonce"))?;
        let nonce_of = |c: Option<NonceChallenge>, kind: &str| -> Result<Vec<u8>, AttestError> {
            let text = c
                .ok_or_else(|| challenge_error(format!("expecting {kind} challenge")))?
                .nonce
                .unwrap_or_default();
            let nonce = STANDARD
                .decode(text.as_bytes())
                .map_err(|_| challenge_error("the nonce is not base64"))?;
            if nonce.len() != NONCE_LEN {
                return Err(challenge_error("invalid challenge nonce"));
            }
            Ok(nonce)
        };
        let response = match &self.signer {
            Signer::Rsa(key) => {
                let theirs = nonce_of(challenge.rsa_signature, "RSA")?;
                let message = [theirs.as_slice(), &ours].concat();
                let mut signature = vec![0u8; key.public().modulus_len()];
                key.sign(
                    &ring::signature::RSA_PSS_SHA256,
                    &rng,
                    &message,
                    &mut signature,
                )
                .map_err(|_| challenge_error("RSA signing failed"))?;
                Response {
                    rsa_signature: Some(RsaResponse {
                        nonce: STANDARD.encode(ours),
                        signature: STANDARD.encode(signature),
                    }),
                    ecdsa_signature: None,
                }
            }
            Signer::P256(_) | Signer::P384(_) => {
                use p256::ecdsa::signature::hazmat::PrehashSigner;
                let theirs = nonce_of(challenge.ecdsa_signature, "ECDSA")?;
                let message = [theirs.as_slice(), &ours].concat();
                let digest = ring::digest::digest(&ring::digest::SHA256, &message);
                let (r, s) = match &self.signer {
                    Signer::P256(key) => {
                        let sig: p256::ecdsa::Signature = key
                            .sign_prehash(digest.as_ref())
                            .map_err(|_| challenge_error("ECDSA signing failed"))?;
                        let (r, s) = sig.split_bytes();
                        (r.to_vec(), s.to_vec())
                    }
                    Signer::P384(key) => {
                        let sig: p384::ecdsa::Signature = key
                            .sign_prehash(digest.as_ref())
                            .map_err(|_| challenge_error("ECDSA signing failed"))?;
                        let (r, s) = sig.split_bytes();
                        (r.to_vec(), s.to_vec())
                    }
                    Signer::Rsa(_) => return Err(challenge_error("unexpected key type")),
                };
                Response {
                    rsa_signature: None,
                    ecdsa_signature: Some(EcdsaResponse {
                        nonce: STANDARD.encode(ours),
                        r: STANDARD.encode(minimal(&r)),
                        s: STANDARD.encode(minimal(&s)),
                    }),
                }
            }
        };
        serde_json::to_vec(&response)
            .map_err(|e| challenge_error(format!("unable to marshal challenge response: {e}")))
    }
}

#[cfg(test)]
mod tests;
