#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use super::AgentRecords;
use crate::datastore::sled::SledDataStore;
use crate::datastore::sql::{options::connection_url, DatabaseType, SqlDataStore, SqlOptions};
use crate::datastore::{AttestedAgent, DataStore};

const ID: &str = "spiffe://example.org/spire/agent/join_token/t";

fn agent(serial: &str) -> AttestedAgent {
    AttestedAgent {
        spiffe_id: ID.into(),
        attestation_type: "join_token".into(),
        cert_serial_number: serial.into(),
        ..Default::default()
    }
}

/// Two handles on one SQLite database: two servers sharing it.
async fn two_servers(dir: &std::path::Path) -> (Arc<dyn DataStore>, Arc<dyn DataStore>) {
    let url = connection_url(
        DatabaseType::Sqlite,
        dir.join("datastore.sqlite3").to_str().unwrap(),
    )
    .unwrap();
    let options = SqlOptions {
        database_type: DatabaseType::Sqlite,
        url,
        ro_url: None,
        max_open_conns: Some(2),
        max_idle_conns: None,
        conn_max_lifetime: None,
        disable_migration: false,
        log_sql: false,
    };
    let a: Arc<dyn DataStore> = Arc::new(SqlDataStore::open(&options).await.unwrap());
    let b: Arc<dyn DataStore> = Arc::new(SqlDataStore::open(&options).await.unwrap());
    (a, b)
}

async fn serial(records: &AgentRecords, ds: &dyn DataStore) -> String {
    records
        .get(ds, ID)
        .await
        .unwrap()
        .unwrap()
        .cert_serial_number
}

#[tokio::test]
async fn a_record_is_kept_until_the_change_log_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let (here, there) = two_servers(dir.path()).await;
    here.create_agent(agent("1")).await.unwrap();
    let kept = AgentRecords::with_interval(Duration::from_secs(3600));
    assert_eq!(serial(&kept, here.as_ref()).await, "1");
    // Another server renews the agent: within the interval the record
    // read before is served, without reading the store.
    there.update_agent(agent("2")).await.unwrap();
    assert_eq!(serial(&kept, here.as_ref()).await, "1");

    // A cache that looks at the log at every call sees the change.
    let following = AgentRecords::with_interval(Duration::ZERO);
    here.update_agent(agent("3")).await.unwrap();
    assert_eq!(serial(&following, here.as_ref()).await, "3");
    there.update_agent(agent("4")).await.unwrap();
    assert_eq!(serial(&following, here.as_ref()).await, "4");
    // A ban written by the other server is seen.
    let mut banned = agent("4");
    banned.banned = true;
    there.update_agent(banned).await.unwrap();
    assert!(
        following
            .get(here.as_ref(), ID)
            .await
            .unwrap()
            .unwrap()
            .banned
    );
    // So is an eviction.
    there.delete_agent(ID).await.unwrap();
    assert!(following.get(here.as_ref(), ID).await.unwrap().is_none());
}

#[tokio::test]
async fn this_servers_own_writes_are_read_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (here, _) = two_servers(dir.path()).await;
    here.create_agent(agent("1")).await.unwrap();
    let records = AgentRecords::with_interval(Duration::from_secs(3600));
    assert_eq!(serial(&records, here.as_ref()).await, "1");
    here.update_agent(agent("2")).await.unwrap();
    records.written(ID);
    assert_eq!(serial(&records, here.as_ref()).await, "2");
}

#[tokio::test]
async fn a_store_without_a_log_is_read_every_time() {
    let ds: Arc<dyn DataStore> = Arc::new(SledDataStore::open_temporary().unwrap());
    assert_eq!(ds.agents_revision().await.unwrap(), None);
    ds.create_agent(agent("1")).await.unwrap();
    let records = AgentRecords::with_interval(Duration::from_secs(3600));
    assert_eq!(serial(&records, ds.as_ref()).await, "1");
    ds.update_agent(agent("2")).await.unwrap();
    assert_eq!(serial(&records, ds.as_ref()).await, "2");
}
