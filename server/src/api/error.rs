//! The API's one error type and its conversions: to a gRPC `Status` for a
//! whole call, and to a `spire.api.types.Status` for one item of a batch.
//!
//! Messages follow SPIRE's shape, `"<what failed>: <why>"`. They never
//! carry tokens or key material: callers build them from validation
//! reasons and datastore errors, which hold neither.

use std::fmt::Display;

use spinel_proto::refusal::AgentRefusal;
use spinel_proto::spire::api::types;
use tonic::{Code, Status};

use crate::datastore::DataStoreError;

/// A failed API operation: a gRPC code and a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    /// The gRPC status code.
    pub code: Code,
    /// What the caller is told.
    pub message: String,
    /// Why an agent was refused, for the `spinel-agent-refusal` metadata
    /// and SPIRE's `PermissionDeniedDetails` of the status (only on
    /// `PermissionDenied` refusals of agents).
    pub refusal: Option<AgentRefusal>,
    /// Already logged where it arose (with more context than the
    /// conversion has).
    logged: bool,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            refusal: None,
            logged: false,
        }
    }

    /// `PermissionDenied` for an agent, carrying `reason` to the client in
    /// the status metadata (see [`spinel_proto::refusal`]).
    pub fn refused(reason: AgentRefusal, msg: impl Into<String>) -> Self {
        let mut err = Self::new(Code::PermissionDenied, msg);
        err.refusal = Some(reason);
        err
    }

    /// Marks the error as logged where it arose, so the conversion does
    /// not log it again.
    pub fn logged(mut self) -> Self {
        self.logged = true;
        self
    }

    /// `InvalidArgument`: `"<msg>: <reason>"`.
    pub fn invalid(msg: &str, reason: impl Display) -> Self {
        Self::new(Code::InvalidArgument, format!("{msg}: {reason}"))
    }

    /// `InvalidArgument` without a nested reason.
    pub fn invalid_msg(msg: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, msg)
    }

    /// `NotFound` (no nested reason, as SPIRE: the message is the same
    /// whatever the reason, so it reveals nothing).
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(Code::NotFound, msg)
    }

    /// `PermissionDenied`.
    pub fn denied(msg: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, msg)
    }

    /// `Internal`: `"<msg>: <reason>"`.
    pub fn internal(msg: &str, reason: impl Display) -> Self {
        Self::new(Code::Internal, format!("{msg}: {reason}"))
    }

    /// A datastore failure while doing `msg`: `NotFound` and
    /// `AlreadyExists` keep their meaning, a refused parent cycle is the
    /// caller's `InvalidArgument`, anything else is `Internal`.
    pub fn datastore(msg: &str, err: DataStoreError) -> Self {
        let code = match err {
            DataStoreError::NotFound { .. } => Code::NotFound,
            DataStoreError::AlreadyExists { .. } => Code::AlreadyExists,
            DataStoreError::ParentCycle { .. } => Code::InvalidArgument,
            DataStoreError::Unavailable(_) => Code::Unavailable,
            _ => Code::Internal,
        };
        Self::new(code, format!("{msg}: {err}"))
    }

    /// The per-item status of a batch response; logs the failure once.
    pub fn to_proto(&self) -> types::Status {
        self.log();
        types::Status {
            code: self.code as i32,
            message: self.message.clone(),
        }
    }

    fn log(&self) {
        if self.logged {
            return;
        }
        match self.code {
            Code::Internal | Code::Unknown | Code::DataLoss => {
                tracing::error!(code = ?self.code, error = %self.message, "API call failed");
            }
            Code::NotFound | Code::AlreadyExists => {
                tracing::debug!(code = ?self.code, error = %self.message, "API call refused");
            }
            _ => {
                tracing::info!(code = ?self.code, error = %self.message, "API call refused");
            }
        }
    }
}

/// The success status of a batch item (SPIRE sends code 0, message "OK").
pub fn ok_status() -> types::Status {
    types::Status {
        code: Code::Ok as i32,
        message: "OK".into(),
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Status {
        err.log();
        match err.refusal {
            // The reason in Spinel's metadata and in SPIRE's status
            // details, which SPIRE's agent acts on.
            Some(reason) if err.code == Code::PermissionDenied => reason.status(err.message),
            _ => Status::new(err.code, err.message),
        }
    }
}

/// Shorthand for API results.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_reaches_the_status() {
        let err = ApiError::refused(AgentRefusal::Evicted, "agent \"x\" is not attested");
        let status = Status::from(err.logged());
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(status.message(), "agent \"x\" is not attested");
        assert_eq!(
            AgentRefusal::from_status(&status),
            Some(AgentRefusal::Evicted)
        );
        // SPIRE's agent reads the details, not Spinel's metadata.
        assert_eq!(
            AgentRefusal::from_details(status.details()),
            Some(AgentRefusal::Evicted)
        );
        let plain = Status::from(ApiError::denied("authorization denied").logged());
        assert_eq!(AgentRefusal::from_status(&plain), None);
    }
}
