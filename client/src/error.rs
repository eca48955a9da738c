//! What a call can fail with, and which failures are worth another try.

use thiserror::Error;
use tonic::{Code, Status};

/// Metadata key naming the kind of a rejected request (`stale_lease`, `job_not_found`, ...),
/// so programs need not parse messages.
pub const ERROR_KIND_KEY: &str = "rota-error";
/// Metadata key with the leader's address, on `not_leader` answers (`UNAVAILABLE`) from a
/// node that knows who leads.
pub const LEADER_KEY: &str = "rota-leader";
/// Metadata key a node sets on a request it forwards to the leader: how many nodes have
/// passed it on. A node that has just handed leadership away passes a forwarded call on
/// once more; none is passed on more than twice.
pub const FORWARDED_KEY: &str = "rota-forwarded";

/// A failed call.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The cluster answered and refused the request; retrying the same request won't help.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Rejected(Status),
    /// No node could answer in time; the last failure is kept.
    #[error("no node of {endpoints} could answer after {attempts} attempts; last: {}: {}", code_name(.last.code()), .last.message())]
    Unavailable {
        /// The nodes tried, comma-separated.
        endpoints: String,
        /// How many tries were made, across all of them.
        attempts: u32,
        /// The answer (or the timeout) that ended the last try.
        last: Status,
    },
    /// The client was configured wrongly (a bad endpoint, say).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// The gRPC code of the answer that ended the call.
    pub fn code(&self) -> Code {
        match self {
            ClientError::Rejected(status) => status.code(),
            ClientError::Unavailable { last, .. } => last.code(),
            ClientError::Config(_) => Code::InvalidArgument,
        }
    }

    /// The kind the node gave a rejection (`ERROR_KIND_KEY`), such as `stale_lease`.
    pub fn kind(&self) -> Option<&str> {
        match self {
            ClientError::Rejected(status) => status
                .metadata()
                .get(ERROR_KIND_KEY)
                .and_then(|v| v.to_str().ok()),
            _ => None,
        }
    }
}

/// Whether another node, or the same one a moment later, may answer differently. These are
/// the failures of a node that is down, restarting, electing or not yet connected.
pub(crate) fn is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Aborted
    )
}

/// Whether the node itself could not be reached (it refused or dropped the connection), as
/// opposed to a node that answered `unavailable` (it names a kind, such as `not_leader`).
pub(crate) fn is_unreachable(status: &Status) -> bool {
    status.code() == Code::Unavailable && !status.metadata().contains_key(ERROR_KIND_KEY)
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}
