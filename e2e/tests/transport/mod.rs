//! Connection-level behaviour of every listener: what it accepts and
//! refuses before any service code runs.

mod authority;
mod limits;
mod tcp;
