//! Real backends that trust Spinel SVIDs.
//!
//! - `postgres.rs`: a PostgreSQL server (the Debian package, started by the
//!   test) authenticating an app by its X509-SVID.
//! - `sql_datastore.rs`: `spinel-server` on `DataStore "sql"` (SQLite with
//!   SPIRE's stock block, and PostgreSQL) serving a real agent.

mod postgres;
mod sql_datastore;
