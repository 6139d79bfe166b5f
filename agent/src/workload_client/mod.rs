//! The client side of the agent's local sockets, shared by the `api`,
//! `debug`, `logger` and `healthcheck` commands and by `svid_helper`.
//!
//! - `socket.rs`: which Workload API socket to dial (`-socketPath`,
//!   `SPIFFE_ENDPOINT_SOCKET`, the default, SPIRE's default);
//! - `connect.rs`: dialling a Unix socket owned by the invoking user or
//!   root, the Workload API client with its security header, deadlines and
//!   error messages in SPIRE's wording;
//! - `certs.rs`: the DER certificates of a response.
//!
//! One `FetchX509SVID` from a client: `socket_path` picks the socket,
//! `connect` dials it, the call goes to the agent's
//! [`crate::workload_api`], and `parse_certs` reads the answer.

mod certs;
mod connect;
mod socket;

pub(crate) use certs::{parse_certs, Cert};
pub(crate) use connect::{
    connect, connect_error, status_error, unix_channel, with_timeout, Client,
};
pub use socket::{default_socket_path, ENDPOINT_SOCKET_ENV, SPIRE_SOCKET_PATH};
pub(crate) use socket::{socket_from_endpoint, socket_path};
