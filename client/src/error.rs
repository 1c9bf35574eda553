//! The client's errors: one kind per thing a caller acts on differently.

use tonic::Code;

/// What kind of failure; each SDK maps it to its own exception or error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request was malformed (a wrong dtype or shape, a bad reference).
    InvalidArgument,
    /// No such module, version or tag (or another tenant's).
    NotFound,
    /// No API key, or one the server does not know.
    Unauthenticated,
    /// The key may not do this.
    PermissionDenied,
    /// A limit was reached (concurrency, session values, sessions); retry
    /// later or release something.
    ResourceExhausted,
    /// The server or runner cannot be reached (after reconnecting and
    /// replaying, when replay is on).
    Unavailable,
    /// The call ran past its deadline.
    DeadlineExceeded,
    /// The session was closed by this client.
    SessionClosed,
    /// The session's lease ran out on the runner (and replay is off).
    SessionExpired,
    /// The value was released by this client.
    ValueReleased,
    /// The runner holds no such value (released, or another session's).
    ValueNotFound,
    /// A lost session could not be rebuilt: a step's inputs were released.
    ReplayFailed,
    /// Anything else: a server-side failure (a trap, a model error) or an
    /// answer this client cannot read.
    Internal,
}

/// A client call's failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// A client result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, as the server (or the client) wrote it.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// An error of a server's status: its code, and the `conduit-error`
    /// detail where a session call sets it.
    pub fn from_status(status: &tonic::Status) -> Self {
        let detail = status
            .metadata()
            .get("conduit-error")
            .and_then(|v| v.to_str().ok());
        let kind = match detail {
            Some("session-expired") => ErrorKind::SessionExpired,
            Some("value-not-found") => ErrorKind::ValueNotFound,
            _ => kind_of(status.code()),
        };
        Self::new(kind, status.message())
    }

    /// Whether the runner behind a session is gone (reconnect and replay):
    /// unreachable, or it no longer knows the session.
    pub(crate) fn lost(status: &tonic::Status) -> bool {
        use std::error::Error as _;
        let detail = status
            .metadata()
            .get("conduit-error")
            .and_then(|v| v.to_str().ok());
        matches!(detail, Some("session-expired" | "session-not-found"))
            || status.code() == Code::Unavailable
            // A connection refused or reset mid-call.
            || (status.code() == Code::Unknown && status.message().contains("transport"))
            // The transport failed the call here: a status made by this
            // client carries its cause, one a server sent does not. A runner
            // killed while a call waits for its connection gives hyper's
            // "operation was canceled" as CANCELLED.
            || (status.source().is_some()
                && matches!(status.code(), Code::Unknown | Code::Cancelled))
    }
}

fn kind_of(code: Code) -> ErrorKind {
    match code {
        // AlreadyExists: a version registered with other bytes.
        Code::InvalidArgument
        | Code::OutOfRange
        | Code::FailedPrecondition
        | Code::AlreadyExists => ErrorKind::InvalidArgument,
        Code::NotFound => ErrorKind::NotFound,
        Code::Unauthenticated => ErrorKind::Unauthenticated,
        Code::PermissionDenied => ErrorKind::PermissionDenied,
        Code::ResourceExhausted => ErrorKind::ResourceExhausted,
        Code::Unavailable => ErrorKind::Unavailable,
        Code::DeadlineExceeded => ErrorKind::DeadlineExceeded,
        _ => ErrorKind::Internal,
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Self::from_status(&s)
    }
}

impl From<conduit_registry::ClientError> for Error {
    fn from(e: conduit_registry::ClientError) -> Self {
        use conduit_registry::ClientError as C;
        match &e {
            C::Connect { .. } => Self::new(ErrorKind::Unavailable, e.to_string()),
            C::Status { code, message } => Self::new(kind_of(*code), message.clone()),
            C::Protocol(m) => Self::new(ErrorKind::Internal, m.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_the_transport_failed_is_lost_and_a_servers_cancel_is_not() {
        // What a server sent: no source.
        assert!(!Error::lost(&tonic::Status::cancelled(
            "cancelled by the server"
        )));
        assert!(!Error::lost(&tonic::Status::unknown("a handler's error")));
        assert!(Error::lost(&tonic::Status::unavailable("gone")));
        // What tonic makes of hyper's canceled dispatch: its cause attached.
        let mut here = tonic::Status::cancelled("operation was canceled");
        here.set_source(std::sync::Arc::new(std::io::Error::other(
            "connection closed",
        )));
        assert!(Error::lost(&here));
    }
}
