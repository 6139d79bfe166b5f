//! Tests of the method table.

use std::collections::BTreeSet;

use prost_reflect::DescriptorPool;

use super::*;

/// The protobuf packages of the services the server's router serves.
const SERVED_PACKAGES: [&str; 3] = ["spire.api.server.", "spinel.server.", "grpc.health."];

/// Full gRPC paths of every method of the served services.
fn served_methods() -> BTreeSet<String> {
    let pool = DescriptorPool::decode(spinel_proto::FILE_DESCRIPTOR_SET)
        .unwrap_or_else(|e| panic!("descriptor set: {e}"));
    pool.services()
        .filter(|s| SERVED_PACKAGES.iter().any(|p| s.full_name().starts_with(p)))
        .flat_map(|s| {
            s.methods()
                .map(|m| format!("/{}/{}", s.full_name(), m.name()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_served_method_has_a_row_with_a_mutates_flag() {
    let served = served_methods();
    assert!(served.len() > 60, "{served:?}");
    let rows: BTreeSet<String> = METHODS.iter().map(|m| m.path.to_owned()).collect();
    assert_eq!(rows.len(), METHODS.len(), "a method has two rows");
    let missing: Vec<_> = served.difference(&rows).collect();
    assert!(missing.is_empty(), "methods without a row: {missing:?}");
    let unknown: Vec<_> = rows.difference(&served).collect();
    assert!(unknown.is_empty(), "rows of no served method: {unknown:?}");
}

/// The policy function the table replaced: listed methods, else admin.
fn policy_before_the_table(path: &str) -> Policy {
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

/// The method-name rule the audit layer used before the table said which
/// calls mutate: an admin service, and a name not starting with a read
/// or issuing verb.
fn mutating_before_the_table(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    let service = path.split('/').nth(1).unwrap_or_default();
    let read = [
        "Count", "List", "Get", "Sync", "Attest", "Renew", "New", "Mint", "Post", "BatchNew",
    ]
    .iter()
    .any(|p| name.starts_with(p));
    service.starts_with("spire.api.server.") && !read
}

#[test]
fn the_table_agrees_with_the_rules_it_replaced() {
    for m in METHODS {
        assert_eq!(m.policy, policy_before_the_table(m.path), "{}", m.path);
        assert_eq!(policy(m.path), m.policy, "{}", m.path);
        assert_eq!(m.mutates, mutating_before_the_table(m.path), "{}", m.path);
        assert_eq!(mutates(m.path), m.mutates, "{}", m.path);
    }
}

#[test]
fn unknown_methods_are_admin_only_and_do_not_mutate() {
    let path = "/spire.api.server.entry.v1.Entry/DropAllEntries";
    assert_eq!(policy(path), Policy::Admin);
    assert!(!mutates(path));
}

#[test]
fn examples() {
    use method::*;
    assert!(mutates(BATCH_CREATE_ENTRY));
    assert!(mutates(BAN_AGENT));
    assert!(mutates(TAINT_X509_AUTHORITY));
    assert!(mutates(CREATE_JOIN_TOKEN));
    assert!(!mutates(GET_AUTHORIZED_ENTRIES));
    assert!(!mutates(BATCH_NEW_X509_SVID));
    assert!(!mutates(WATCH_CHANGES));
    assert!(!mutates(HEALTH_CHECK));
}
