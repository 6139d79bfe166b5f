//! Federation between trust domains of real processes.
//!
//! - `two_domains.rs`: two servers with bundle endpoints and an agent each;
//!   workloads get the other domain's bundle.

mod two_domains;
