//! Attestors: how the server decides who a caller is from evidence it sends.
//!
//! - [`node`]: node attestors, run by `AttestAgent` to turn an agent's
//!   evidence (a join token today; k8s projected tokens or x509pop
//!   certificates later) into an agent SPIFFE ID and node selectors.

pub mod node;
