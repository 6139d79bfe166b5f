//! The one error type of the admin subcommands.

use std::fmt;
use std::path::PathBuf;

/// Why an admin subcommand (`entry`, `token`, `bundle`, `agent`) failed.
///
/// Every message is meant for the operator: it names the socket, flag or
/// file at fault, and RPC failures read as SPIRE's CLI prints them
/// (`rpc error: code = NotFound desc = ...`), so scripts written for SPIRE
/// keep matching.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminClientError {
    /// Nothing exists at the socket path.
    #[error(
        "cannot connect to the server admin socket {}: no such file (is the server running, and is -socketPath right?)",
        path.display()
    )]
    SocketMissing {
        /// The socket path.
        path: PathBuf,
    },
    /// The path exists but is not a Unix socket.
    #[error("cannot connect to the server admin socket {}: not a socket", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The socket exists but nobody listens on it.
    #[error(
        "cannot connect to the server admin socket {}: connection refused (the server is not running)",
        path.display()
    )]
    ConnectionRefused {
        /// The socket path.
        path: PathBuf,
    },
    /// The caller may not open the socket.
    #[error(
        "cannot connect to the server admin socket {}: permission denied (run as the server's user)",
        path.display()
    )]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket, or the process serving it, belongs to another user
    /// (the message names the socket, its owner and what to do).
    #[error("cannot connect to the server admin socket: {0}")]
    Untrusted(String),
    /// Any other connection failure.
    #[error("cannot connect to the server admin socket {}: {reason}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A flag is missing, malformed or combined with one it excludes. The
    /// message names the flag.
    #[error("{0}")]
    Usage(String),
    /// An input file (or stdin) could not be read or parsed.
    #[error("{source_name}: {reason}")]
    Input {
        /// The flag and file, e.g. `-data entries.json`.
        source_name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server answered an RPC with an error status.
    #[error("{context}rpc error: code = {} desc = {message}", GoCode(*code))]
    Rpc {
        /// What the command was doing, with a trailing `": "`, or empty.
        context: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// Some items of a batch failed; their statuses were printed.
    #[error("{0}")]
    BatchFailed(String),
    /// The response could not be printed.
    #[error("cannot print the response: {0}")]
    Output(String),
}

impl AdminClientError {
    /// An RPC failure, described as SPIRE's CLI does.
    pub fn rpc(status: tonic::Status) -> Self {
        Self::rpc_while("", status)
    }

    /// An RPC failure while doing `context` (e.g. `"error fetching entries"`).
    pub fn rpc_while(context: &str, status: tonic::Status) -> Self {
        AdminClientError::Rpc {
            context: if context.is_empty() {
                String::new()
            } else {
                format!("{context}: ")
            },
            code: status.code(),
            message: status.message().to_owned(),
        }
    }

    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        AdminClientError::Usage(message.into())
    }
}

/// A gRPC code spelt as Go's `codes.Code.String()` spells it (what SPIRE's
/// output carries).
#[derive(Debug, Clone, Copy)]
pub struct GoCode(pub tonic::Code);

impl GoCode {
    /// From the numeric code carried in `spire.api.types.Status`.
    pub fn from_i32(code: i32) -> Self {
        GoCode(tonic::Code::from_i32(code))
    }
}

impl fmt::Display for GoCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // grpc-go's names, as the metrics' `status` label spells them.
        f.write_str(spinel_telemetry::rpc::code_name(i32::from(self.0)))
    }
}
