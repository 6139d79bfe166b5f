//! Real backends that trust Spinel SVIDs.
//!
//! - `postgres.rs`: a PostgreSQL server (the Debian package, started by the
//!   test) authenticating an app by its X509-SVID.

mod postgres;
