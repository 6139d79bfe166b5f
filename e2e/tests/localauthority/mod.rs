//! CA rotation with real processes.
//!
//! - `rotation.rs`: `spinel-server localauthority` prepare/activate/taint/
//!   revoke, checked on the agent's Workload API;
//! - `soak.rs`: a workload fetching continuously through two whole CA
//!   lifetimes with zero failures.

mod rotation;
mod soak;
