//! The table of who may call each method, by full gRPC path (see
//! `auth.rs` for the check that applies it).

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Any caller, authenticated or not.
    Anyone,
    /// Attested agents only.
    Agent,
    /// The admin socket or an admin SPIFFE ID.
    Admin,
    /// The admin socket only.
    Local,
    /// Attested agents, the admin socket or an admin SPIFFE ID
    /// (`GetFederatedBundle`: agents fetch the bundles their entries
    /// federate with).
    AgentOrAdmin,
}

/// Full gRPC paths of the methods served.
pub mod method {
    /// `Agent/CountAgents`.
    pub const COUNT_AGENTS: &str = "/spire.api.server.agent.v1.Agent/CountAgents";
    /// `Agent/ListAgents`.
    pub const LIST_AGENTS: &str = "/spire.api.server.agent.v1.Agent/ListAgents";
    /// `Agent/GetAgent`.
    pub const GET_AGENT: &str = "/spire.api.server.agent.v1.Agent/GetAgent";
    /// `Agent/DeleteAgent`.
    pub const DELETE_AGENT: &str = "/spire.api.server.agent.v1.Agent/DeleteAgent";
    /// `Agent/BanAgent`.
    pub const BAN_AGENT: &str = "/spire.api.server.agent.v1.Agent/BanAgent";
    /// `Agent/AttestAgent`.
    pub const ATTEST_AGENT: &str = "/spire.api.server.agent.v1.Agent/AttestAgent";
    /// `Agent/RenewAgent`.
    pub const RENEW_AGENT: &str = "/spire.api.server.agent.v1.Agent/RenewAgent";
    /// `Agent/CreateJoinToken`.
    pub const CREATE_JOIN_TOKEN: &str = "/spire.api.server.agent.v1.Agent/CreateJoinToken";
    /// `Agent/PostStatus`.
    pub const POST_STATUS: &str = "/spire.api.server.agent.v1.Agent/PostStatus";
    /// `Entry/CountEntries`.
    pub const COUNT_ENTRIES: &str = "/spire.api.server.entry.v1.Entry/CountEntries";
    /// `Entry/ListEntries`.
    pub const LIST_ENTRIES: &str = "/spire.api.server.entry.v1.Entry/ListEntries";
    /// `Entry/GetEntry`.
    pub const GET_ENTRY: &str = "/spire.api.server.entry.v1.Entry/GetEntry";
    /// `Entry/BatchCreateEntry`.
    pub const BATCH_CREATE_ENTRY: &str = "/spire.api.server.entry.v1.Entry/BatchCreateEntry";
    /// `Entry/BatchUpdateEntry`.
    pub const BATCH_UPDATE_ENTRY: &str = "/spire.api.server.entry.v1.Entry/BatchUpdateEntry";
    /// `Entry/BatchDeleteEntry`.
    pub const BATCH_DELETE_ENTRY: &str = "/spire.api.server.entry.v1.Entry/BatchDeleteEntry";
    /// `Entry/GetAuthorizedEntries`.
    pub const GET_AUTHORIZED_ENTRIES: &str =
        "/spire.api.server.entry.v1.Entry/GetAuthorizedEntries";
    /// `Entry/SyncAuthorizedEntries`.
    pub const SYNC_AUTHORIZED_ENTRIES: &str =
        "/spire.api.server.entry.v1.Entry/SyncAuthorizedEntries";
    /// `SVID/MintX509SVID`.
    pub const MINT_X509_SVID: &str = "/spire.api.server.svid.v1.SVID/MintX509SVID";
    /// `SVID/MintJWTSVID`.
    pub const MINT_JWT_SVID: &str = "/spire.api.server.svid.v1.SVID/MintJWTSVID";
    /// `SVID/MintWITSVID`.
    pub const MINT_WIT_SVID: &str = "/spire.api.server.svid.v1.SVID/MintWITSVID";
    /// `SVID/BatchNewX509SVID`.
    pub const BATCH_NEW_X509_SVID: &str = "/spire.api.server.svid.v1.SVID/BatchNewX509SVID";
    /// `SVID/NewJWTSVID`.
    pub const NEW_JWT_SVID: &str = "/spire.api.server.svid.v1.SVID/NewJWTSVID";
    /// `SVID/BatchNewWITSVID`.
    pub const BATCH_NEW_WIT_SVID: &str = "/spire.api.server.svid.v1.SVID/BatchNewWITSVID";
    /// `SVID/NewDownstreamX509CA`.
    pub const NEW_DOWNSTREAM_X509_CA: &str = "/spire.api.server.svid.v1.SVID/NewDownstreamX509CA";
    /// `Bundle/CountBundles`.
    pub const COUNT_BUNDLES: &str = "/spire.api.server.bundle.v1.Bundle/CountBundles";
    /// `Bundle/GetBundle`.
    pub const GET_BUNDLE: &str = "/spire.api.server.bundle.v1.Bundle/GetBundle";
    /// `Bundle/AppendBundle`.
    pub const APPEND_BUNDLE: &str = "/spire.api.server.bundle.v1.Bundle/AppendBundle";
    /// `Bundle/PublishJWTAuthority`.
    pub const PUBLISH_JWT_AUTHORITY: &str =
        "/spire.api.server.bundle.v1.Bundle/PublishJWTAuthority";
    /// `Bundle/PublishWITAuthority`.
    pub const PUBLISH_WIT_AUTHORITY: &str =
        "/spire.api.server.bundle.v1.Bundle/PublishWITAuthority";
    /// `Bundle/ListFederatedBundles`.
    pub const LIST_FEDERATED_BUNDLES: &str =
        "/spire.api.server.bundle.v1.Bundle/ListFederatedBundles";
    /// `Bundle/GetFederatedBundle`.
    pub const GET_FEDERATED_BUNDLE: &str = "/spire.api.server.bundle.v1.Bundle/GetFederatedBundle";
    /// `Bundle/BatchCreateFederatedBundle`.
    pub const BATCH_CREATE_FEDERATED_BUNDLE: &str =
        "/spire.api.server.bundle.v1.Bundle/BatchCreateFederatedBundle";
    /// `Bundle/BatchUpdateFederatedBundle`.
    pub const BATCH_UPDATE_FEDERATED_BUNDLE: &str =
        "/spire.api.server.bundle.v1.Bundle/BatchUpdateFederatedBundle";
    /// `Bundle/BatchSetFederatedBundle`.
    pub const BATCH_SET_FEDERATED_BUNDLE: &str =
        "/spire.api.server.bundle.v1.Bundle/BatchSetFederatedBundle";
    /// `Bundle/BatchDeleteFederatedBundle`.
    pub const BATCH_DELETE_FEDERATED_BUNDLE: &str =
        "/spire.api.server.bundle.v1.Bundle/BatchDeleteFederatedBundle";
    /// `spinel.server.v1.Watch/WatchChanges` (Spinel's own).
    pub const WATCH_CHANGES: &str = "/spinel.server.v1.Watch/WatchChanges";
    /// `Logger/GetLogger`.
    pub const GET_LOGGER: &str = "/spire.api.server.logger.v1.Logger/GetLogger";
    /// `Logger/SetLogLevel`.
    pub const SET_LOG_LEVEL: &str = "/spire.api.server.logger.v1.Logger/SetLogLevel";
    /// `Logger/ResetLogLevel`.
    pub const RESET_LOG_LEVEL: &str = "/spire.api.server.logger.v1.Logger/ResetLogLevel";
    /// `Health/Check`.
    pub const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
    /// `Health/Watch`.
    pub const HEALTH_WATCH: &str = "/grpc.health.v1.Health/Watch";
}

/// The policy of each method, by full gRPC path. Methods not listed are
/// admin-only (the safe default).
pub fn policy(path: &str) -> Policy {
    use method::*;
    match path {
        ATTEST_AGENT | GET_BUNDLE => Policy::Anyone,
        RENEW_AGENT
        | POST_STATUS
        | BATCH_NEW_X509_SVID
        | NEW_JWT_SVID
        | BATCH_NEW_WIT_SVID
        | GET_AUTHORIZED_ENTRIES
        | SYNC_AUTHORIZED_ENTRIES
        | WATCH_CHANGES => Policy::Agent,
        GET_FEDERATED_BUNDLE => Policy::AgentOrAdmin,
        HEALTH_CHECK | HEALTH_WATCH | GET_LOGGER | SET_LOG_LEVEL | RESET_LOG_LEVEL => Policy::Local,
        _ => Policy::Admin,
    }
}
