//! `NodeAttestor "join_token"`: the payload is the token itself.

use spinel_proto::spire::api::types;

/// The attestor's name in config files and `AttestationData.type`.
pub const NAME: &str = "join_token";

/// The attestation data for `token` (a secret: never log the result).
pub fn attestation_data(token: &str) -> types::AttestationData {
    types::AttestationData {
        r#type: NAME.into(),
        payload: token.as_bytes().to_vec(),
    }
}
