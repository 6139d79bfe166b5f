//! Input validation against real processes: what the server and the agent
//! refuse to take from configuration files, HTTP requests, the admin CLI
//! and the Workload API.
//!
//! - `oidc`: OIDC discovery never publishes a `Host` header no configured
//!   domain vouches for; without `domains` or `jwt_issuer` the server does
//!   not start.
//! - `jwt`: the agent's `ValidateJWTSVID` refuses `nbf`/`iat` in the
//!   future, `crit` and other forbidden JOSE headers, and over-long `sub`.
//! - `ids`: SPIFFE IDs over 2,048 bytes are refused by the admin CLI and
//!   the Workload API.

mod ids;
mod jwt;
mod oidc;
