//! The method table: for every method served, by full gRPC path, who may
//! call it and whether it mutates state ([`METHODS`]).
//!
//! Two layers read it: the authorization check every handler calls first
//! (`auth.rs`, through [`policy`]) and the change notifier's layer, which
//! wakes agents after a mutating call (`crate::notify::NotifyLayer`,
//! through [`mutates`]). A method added to a service gets a row here; a
//! unit test fails for any method of the served protobuf services that
//! has none.

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
    /// `TrustDomain/ListFederationRelationships`.
    pub const LIST_FEDERATION_RELATIONSHIPS: &str =
        "/spire.api.server.trustdomain.v1.TrustDomain/ListFederationRelationships";
    /// `TrustDomain/GetFederationRelationship`.
    pub const GET_FEDERATION_RELATIONSHIP: &str =
        "/spire.api.server.trustdomain.v1.TrustDomain/GetFederationRelationship";
    /// `TrustDomain/BatchCreateFederationRelationship`.
    pub const BATCH_CREATE_FEDERATION_RELATIONSHIP: &str =
        "/spire.api.server.trustdomain.v1.TrustDomain/BatchCreateFederationRelationship";
    /// `TrustDomain/BatchUpdateFederationRelationship`.
    pub const BATCH_UPDATE_FEDERATION_RELATIONSHIP: &str =
        "/spire.api.server.trustdomain.v1.TrustDomain/BatchUpdateFederationRelationship";
    /// `TrustDomain/BatchDeleteFederationRelationship`.
    pub const BATCH_DELETE_FEDERATION_RELATIONSHIP: &str =
        "/spire.api.server.trustdomain.v1.TrustDomain/BatchDeleteFederationRelationship";
    /// `TrustDomain/RefreshBundle`.
    pub const REFRESH_BUNDLE: &str = "/spire.api.server.trustdomain.v1.TrustDomain/RefreshBundle";
    /// `LocalAuthority/GetJWTAuthorityState`.
    pub const GET_JWT_AUTHORITY_STATE: &str =
        "/spire.api.server.localauthority.v1.LocalAuthority/GetJWTAuthorityState";
    /// `LocalAuthority/PrepareJWTAuthority`.
    pub const PREPARE_JWT_AUTHORITY: &str =
        "/spire.api.server.localauthority.v1.LocalAuthority/PrepareJWTAuthority";
    /// `LocalAuthority/ActivateJWTAuthority`.
    pub const ACTIVATE_JWT_AUTHORITY: &str =
        "/spire.api.server.localauthority.v1.LocalAuthority/ActivateJWTAuthority";
    /// `LocalAuthority/TaintJWTAuthority`.
    pub const TAINT_JWT_AUTHORITY: &str =
        "/spire.api.server.localauthority.v1.LocalAuthority/TaintJWTAuthority";
    /// `LocalAuthority/RevokeJWTAuthority`.
    pub const REVOKE_JWT_AUTHORITY: &str =
        "/spire.api.server.localauthority.v1.LocalAuthority/RevokeJWTAuthority";
    /// `LocalAuthority/GetX509AuthorityState`.
    pub const GET_X509_AUTHORITY_STATE: &str =
        "/spire.api.server.localauthority.v1.LocalAuthority/GetX509AuthorityState";
    /// `LocalAuthority/PrepareX509Authority`.
    pub const PREPARE_X509_AUTHORITY: &str =
        "/spire.api.server.localauthority.v1.LocalAuthority/PrepareX509Authority";
    /// `LocalAuthority/ActivateX509Authority`.
    pub const ACTIVATE_X509_AUTHORITY: &str =
        "/spire.api.server.localauthority.v1.LocalAuthority/ActivateX509Authority";
    /// `LocalAuthority/TaintX509Authority`.
    pub const TAINT_X509_AUTHORITY: &str =
        "/spire.api.server.localauthority.v1.LocalAuthority/TaintX509Authority";
    /// `LocalAuthority/RevokeX509Authority`.
    pub const REVOKE_X509_AUTHORITY: &str =
        "/spire.api.server.localauthority.v1.LocalAuthority/RevokeX509Authority";
    /// `LocalAuthority/TaintX509UpstreamAuthority`.
    pub const TAINT_X509_UPSTREAM_AUTHORITY: &str =
        "/spire.api.server.localauthority.v1.LocalAuthority/TaintX509UpstreamAuthority";
    /// `LocalAuthority/RevokeX509UpstreamAuthority`.
    pub const REVOKE_X509_UPSTREAM_AUTHORITY: &str =
        "/spire.api.server.localauthority.v1.LocalAuthority/RevokeX509UpstreamAuthority";
    /// `LocalAuthority/GetWITAuthorityState`.
    pub const GET_WIT_AUTHORITY_STATE: &str =
        "/spire.api.server.localauthority.v1.LocalAuthority/GetWITAuthorityState";
    /// `LocalAuthority/PrepareWITAuthority`.
    pub const PREPARE_WIT_AUTHORITY: &str =
        "/spire.api.server.localauthority.v1.LocalAuthority/PrepareWITAuthority";
    /// `LocalAuthority/ActivateWITAuthority`.
    pub const ACTIVATE_WIT_AUTHORITY: &str =
        "/spire.api.server.localauthority.v1.LocalAuthority/ActivateWITAuthority";
    /// `LocalAuthority/TaintWITAuthority`.
    pub const TAINT_WIT_AUTHORITY: &str =
        "/spire.api.server.localauthority.v1.LocalAuthority/TaintWITAuthority";
    /// `LocalAuthority/RevokeWITAuthority`.
    pub const REVOKE_WIT_AUTHORITY: &str =
        "/spire.api.server.localauthority.v1.LocalAuthority/RevokeWITAuthority";
    /// `Health/Check`.
    pub const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
    /// `Health/Watch`.
    pub const HEALTH_WATCH: &str = "/grpc.health.v1.Health/Watch";
}

/// One row of the method table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodPolicy {
    /// The full gRPC path.
    pub path: &'static str,
    /// Who may call it.
    pub policy: Policy,
    /// Whether a call may change what agents receive (entries, agents,
    /// bundles, authorities, federation, join tokens) or the server's own
    /// settings (log level): agents are woken after such a call.
    pub mutates: bool,
}

const fn row(path: &'static str, policy: Policy, mutates: bool) -> MethodPolicy {
    MethodPolicy {
        path,
        policy,
        mutates,
    }
}

/// Marks a row that mutates state.
const MUTATES: bool = true;
/// Marks a row that only reads (or only issues credentials).
const READS: bool = false;

/// Every method served: who may call it and whether it mutates state.
pub const METHODS: &[MethodPolicy] = {
    use method::*;
    use Policy::{Admin, Agent, AgentOrAdmin, Anyone, Local};
    &[
        row(COUNT_AGENTS, Admin, READS),
        row(LIST_AGENTS, Admin, READS),
        row(GET_AGENT, Admin, READS),
        row(DELETE_AGENT, Admin, MUTATES),
        row(BAN_AGENT, Admin, MUTATES),
        row(ATTEST_AGENT, Anyone, READS),
        row(RENEW_AGENT, Agent, READS),
        row(CREATE_JOIN_TOKEN, Admin, MUTATES),
        row(POST_STATUS, Agent, READS),
        row(COUNT_ENTRIES, Admin, READS),
        row(LIST_ENTRIES, Admin, READS),
        row(GET_ENTRY, Admin, READS),
        row(BATCH_CREATE_ENTRY, Admin, MUTATES),
        row(BATCH_UPDATE_ENTRY, Admin, MUTATES),
        row(BATCH_DELETE_ENTRY, Admin, MUTATES),
        row(GET_AUTHORIZED_ENTRIES, Agent, READS),
        row(SYNC_AUTHORIZED_ENTRIES, Agent, READS),
        row(MINT_X509_SVID, Admin, READS),
        row(MINT_JWT_SVID, Admin, READS),
        row(MINT_WIT_SVID, Admin, READS),
        row(BATCH_NEW_X509_SVID, Agent, READS),
        row(NEW_JWT_SVID, Agent, READS),
        row(BATCH_NEW_WIT_SVID, Agent, READS),
        row(NEW_DOWNSTREAM_X509_CA, Admin, READS),
        row(COUNT_BUNDLES, Admin, READS),
        row(GET_BUNDLE, Anyone, READS),
        row(APPEND_BUNDLE, Admin, MUTATES),
        row(PUBLISH_JWT_AUTHORITY, Admin, MUTATES),
        row(PUBLISH_WIT_AUTHORITY, Admin, MUTATES),
        row(LIST_FEDERATED_BUNDLES, Admin, READS),
        row(GET_FEDERATED_BUNDLE, AgentOrAdmin, READS),
        row(BATCH_CREATE_FEDERATED_BUNDLE, Admin, MUTATES),
        row(BATCH_UPDATE_FEDERATED_BUNDLE, Admin, MUTATES),
        row(BATCH_SET_FEDERATED_BUNDLE, Admin, MUTATES),
        row(BATCH_DELETE_FEDERATED_BUNDLE, Admin, MUTATES),
        row(LIST_FEDERATION_RELATIONSHIPS, Admin, READS),
        row(GET_FEDERATION_RELATIONSHIP, Admin, READS),
        row(BATCH_CREATE_FEDERATION_RELATIONSHIP, Admin, MUTATES),
        row(BATCH_UPDATE_FEDERATION_RELATIONSHIP, Admin, MUTATES),
        row(BATCH_DELETE_FEDERATION_RELATIONSHIP, Admin, MUTATES),
        row(REFRESH_BUNDLE, Admin, MUTATES),
        row(GET_JWT_AUTHORITY_STATE, Admin, READS),
        row(PREPARE_JWT_AUTHORITY, Admin, MUTATES),
        row(ACTIVATE_JWT_AUTHORITY, Admin, MUTATES),
        row(TAINT_JWT_AUTHORITY, Admin, MUTATES),
        row(REVOKE_JWT_AUTHORITY, Admin, MUTATES),
        row(GET_X509_AUTHORITY_STATE, Admin, READS),
        row(PREPARE_X509_AUTHORITY, Admin, MUTATES),
        row(ACTIVATE_X509_AUTHORITY, Admin, MUTATES),
        row(TAINT_X509_AUTHORITY, Admin, MUTATES),
        row(REVOKE_X509_AUTHORITY, Admin, MUTATES),
        row(TAINT_X509_UPSTREAM_AUTHORITY, Admin, MUTATES),
        row(REVOKE_X509_UPSTREAM_AUTHORITY, Admin, MUTATES),
        row(GET_WIT_AUTHORITY_STATE, Admin, READS),
        row(PREPARE_WIT_AUTHORITY, Admin, MUTATES),
        row(ACTIVATE_WIT_AUTHORITY, Admin, MUTATES),
        row(TAINT_WIT_AUTHORITY, Admin, MUTATES),
        row(REVOKE_WIT_AUTHORITY, Admin, MUTATES),
        row(WATCH_CHANGES, Agent, READS),
        row(GET_LOGGER, Local, READS),
        row(SET_LOG_LEVEL, Local, MUTATES),
        row(RESET_LOG_LEVEL, Local, MUTATES),
        row(HEALTH_CHECK, Local, READS),
        row(HEALTH_WATCH, Local, READS),
    ]
};

/// The row of `path` (a full gRPC path), if it is a method served.
pub fn lookup(path: &str) -> Option<&'static MethodPolicy> {
    METHODS.iter().find(|m| m.path == path)
}

/// Who may call `path`. Methods not in the table are admin-only (the safe
/// default).
pub fn policy(path: &str) -> Policy {
    lookup(path).map_or(Policy::Admin, |m| m.policy)
}

/// Whether `path` mutates state. Methods not in the table do not (they
/// are not served).
pub fn mutates(path: &str) -> bool {
    lookup(path).is_some_and(|m| m.mutates)
}

#[cfg(test)]
mod tests;
