//! Attestors: how the server decides who a caller is from evidence it sends.
//!
//! - [`node`]: node attestors, run by `AttestAgent` to turn an agent's
//!   evidence (a join token, a k8s projected token, an x509pop node
//!   certificate and a signed challenge) into an agent SPIFFE ID and node
//!   selectors.

pub mod node;
