//! Servers on `DataStore "sql"`: the harness's config with a SQL block in
//! place of sled (`backends/`, `resilience/`).

use spinel_test_fixtures::postgres::{self, Postgres, PostgresOptions};
use spinel_test_fixtures::{ServerHandle, ServerOptions};

/// The DataStore block the harness writes.
pub use spinel_test_fixtures::spinel::SLED_DATASTORE as SLED_BLOCK;

/// A server configured with the DataStore `block` instead of sled, not
/// started.
pub fn configure_server_with(block: &str) -> ServerHandle {
    ServerHandle::configure(ServerOptions {
        datastore: block.to_owned(),
        ..Default::default()
    })
    .unwrap()
}

/// A server with the DataStore `block` instead of sled, started.
pub fn server_with(block: &str) -> ServerHandle {
    let mut server = configure_server_with(block);
    server.start_process().unwrap();
    server
}

/// SPIRE's DataStore block for database `db` of `pg`.
pub fn postgres_block(pg: &Postgres, db: &str) -> String {
    format!(
        "    DataStore \"sql\" {{\n        plugin_data {{\n            database_type = \"postgres\"\n            connection_string = \"{}\"\n            max_open_conns = 5\n            conn_max_lifetime = \"5m\"\n        }}\n    }}",
        pg.keyword_connection_string(db)
    )
}

/// A PostgreSQL server for this test (in a temporary directory, dropped
/// with it) with an empty database `spinel`; `None` where PostgreSQL is not
/// installed (the test then says it checked nothing; under
/// `SPINEL_INTEROP_REQUIRED=1` a missing PostgreSQL panics instead).
pub fn postgres_with_database() -> Option<(tempfile::TempDir, Postgres)> {
    let Some(install) = postgres::available() else {
        eprintln!("skipped: needs PostgreSQL under /usr/lib/postgresql");
        return None;
    };
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let pg = Postgres::start(&install, dir.path(), &PostgresOptions::default()).unwrap();
    pg.create_database("spinel").unwrap();
    Some((dir, pg))
}
