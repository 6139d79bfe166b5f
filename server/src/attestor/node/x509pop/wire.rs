//! The JSON that `x509pop` agents and servers exchange (SPIRE's
//! `pkg/common/plugin/x509pop` shapes; byte strings are standard base64,
//! as Go encodes `[]byte`).
//!
//! - payload: `{"certificates": ["<DER>", ...]}`, leaf first;
//! - challenge: `{"rsa_signature": {"nonce": "<32 bytes>"}}` or
//!   `{"ecdsa_signature": {"nonce": ...}}` (the other member `null`);
//! - response: `{"rsa_signature": {"nonce", "signature"}}` or
//!   `{"ecdsa_signature": {"nonce", "r", "s"}}`.
//!
//! Both signatures cover [`combined_digest`]: SHA-256 of the server's
//! nonce followed by the agent's.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of both nonces.
pub const NONCE_LEN: usize = 32;

/// A byte string, base64 in JSON (Go's `[]byte`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Go decodes `null` as an empty slice.
        let text: Option<String> = Option::deserialize(d)?;
        match text {
            None => Ok(Bytes(Vec::new())),
            Some(text) => STANDARD
                .decode(text.as_bytes())
                .map(Bytes)
                .map_err(|_| serde::de::Error::custom("invalid base64")),
        }
    }
}

/// The attestation payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AttestationData {
    /// DER certificates, leaf first.
    #[serde(default)]
    pub certificates: Vec<Bytes>,
}

/// A nonce sent by the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NonceChallenge {
    /// The server's nonce.
    #[serde(default)]
    pub nonce: Bytes,
}

/// The challenge: exactly one member is set, by the leaf's key type.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Challenge {
    /// For RSA keys.
    #[serde(default)]
    pub rsa_signature: Option<NonceChallenge>,
    /// For ECDSA keys.
    #[serde(default)]
    pub ecdsa_signature: Option<NonceChallenge>,
}

/// An RSA-PSS (SHA-256) answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RsaResponse {
    /// The agent's nonce.
    #[serde(default)]
    pub nonce: Bytes,
    /// The signature over [`combined_digest`].
    #[serde(default)]
    pub signature: Bytes,
}

/// An ECDSA answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EcdsaResponse {
    /// The agent's nonce.
    #[serde(default)]
    pub nonce: Bytes,
    /// `r`, big-endian.
    #[serde(default)]
    pub r: Bytes,
    /// `s`, big-endian.
    #[serde(default)]
    pub s: Bytes,
}

/// The agent's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    /// For RSA keys.
    #[serde(default)]
    pub rsa_signature: Option<RsaResponse>,
    /// For ECDSA keys.
    #[serde(default)]
    pub ecdsa_signature: Option<EcdsaResponse>,
}

/// SHA-256(challenge nonce || response nonce), the digest both kinds of
/// signature cover; `None` unless both nonces are [`NONCE_LEN`] bytes.
pub fn combined_digest(challenge: &[u8], response: &[u8]) -> Option<[u8; 32]> {
    if challenge.len() != NONCE_LEN || response.len() != NONCE_LEN {
        return None;
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(challenge);
    ctx.update(response);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Some(out)
}
