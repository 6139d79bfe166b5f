//! The datastore conformance suite (`conformance.rs`; its `run_suite` takes
//! a constructor of fresh backends), run against sled there and against
//! the SQL backend (SQLite, PostgreSQL) in `sql.rs`, with the cases only a
//! shared database has: several store handles on one database.

mod conformance;
mod sql;
