//! The `agent { sds { ... } }` settings, with SPIRE's names and defaults.

/// How SDS resource names map to what the agent holds (SPIRE's `sds`
/// block of `agent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdsConfig {
    /// `default_svid_name` (`"default"`): the name that asks for the
    /// caller's first X509-SVID (by entry ID), whatever its SPIFFE ID.
    pub default_svid_name: String,
    /// `default_bundle_name` (`"ROOTCA"`): the name that asks for the
    /// validation context of the agent's own trust domain.
    pub default_bundle_name: String,
    /// `default_all_bundles_name` (`"ALL"`): the name that asks for one
    /// SPIFFE validator over every bundle the caller may use, own and
    /// federated.
    pub default_all_bundles_name: String,
    /// `disable_spiffe_cert_validation` (`false`): send validation
    /// contexts as plain `trusted_ca` certificates instead of Envoy's
    /// SPIFFE validator. A client may override it with the node metadata
    /// key of the same name.
    pub disable_spiffe_cert_validation: bool,
}

/// SPIRE's default `default_svid_name`.
pub const DEFAULT_SVID_NAME: &str = "default";
/// SPIRE's default `default_bundle_name`.
pub const DEFAULT_BUNDLE_NAME: &str = "ROOTCA";
/// SPIRE's default `default_all_bundles_name`.
pub const DEFAULT_ALL_BUNDLES_NAME: &str = "ALL";

impl Default for SdsConfig {
    fn default() -> Self {
        SdsConfig {
            default_svid_name: DEFAULT_SVID_NAME.into(),
            default_bundle_name: DEFAULT_BUNDLE_NAME.into(),
            default_all_bundles_name: DEFAULT_ALL_BUNDLES_NAME.into(),
            disable_spiffe_cert_validation: false,
        }
    }
}
