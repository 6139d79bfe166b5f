//! The audit log of a real server (`audit_log_enabled`, JSON logs).
//!
//! - `log.rs`: the lines of an entry create, a token generate, an agent
//!   attestation and a refused call;
//! - `entities.rs`: `entity_ids` names what each call names or creates;
//! - `join_token.rs`: an unspent join token never reaches the log.

mod entities;
mod join_token;
mod log;
