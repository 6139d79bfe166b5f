//! The HTTP/2 settings every gRPC listener of both binaries shares.

use std::time::Duration;

use crate::http2::{MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE};

/// How often the server pings a connection's client to learn whether it
/// is still there (TCP listeners; on a Unix socket the kernel says so).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long the server waits for a ping's answer before closing.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A tonic server with the settings the guard relies on (the default
/// frame size, the header list limit) and, for TCP, keepalive pings.
pub fn builder(keepalive: bool) -> tonic::transport::Server {
    let builder = tonic::transport::Server::builder()
        .max_frame_size(MAX_FRAME_SIZE as u32)
        .http2_max_header_list_size(MAX_HEADER_LIST_SIZE as u32);
    if keepalive {
        builder
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
    } else {
        builder
    }
}
