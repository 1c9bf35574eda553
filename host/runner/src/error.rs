//! Data-plane errors and the one place they become gRPC and HTTP statuses,
//! with their messages capped ([`ServeError::message`]).

use conduit_executor::ExecutorError;
use conduit_runtime::GuestError;
use conduit_runtime::RuntimeError;

/// Why a data-plane call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// No API key, or one that is not known.
    #[error("{0}")]
    Unauthenticated(String),
    /// The model, version or tag does not exist for this tenant.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or its tensors do not fit the model.
    #[error("{0}")]
    InvalidInput(String),
    /// The model is unloaded or its backend is down.
    #[error("{0}")]
    Unavailable(String),
    /// A limit was reached (tenant concurrency, queue, memory); retry later.
    #[error("{0}")]
    Overloaded(String),
    /// The request ran past its deadline.
    #[error("{0}")]
    Deadline(String),
    /// The request cannot run in the current state (a followed tag moved to
    /// an incompatible version).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The answer would be larger than the response cap (counting every
    /// output in full, shared views and passed-through inputs too).
    #[error("{0}")]
    ResponseTooLarge(String),
    /// The request can never fit a size limit (the limit itself is
    /// smaller): retrying cannot help, so it is not RESOURCE_EXHAUSTED.
    #[error("{0}")]
    TooLarge(String),
    /// The request asks for something this server does not do.
    #[error("{0}")]
    Unsupported(String),
    /// A component failed; `context` names the step.
    #[error("{context}: {error}")]
    Component {
        /// Which step or model.
        context: String,
        /// What happened.
        error: RuntimeError,
    },
    /// A model failed; `context` names the step.
    #[error("{context}: {error}")]
    Model {
        /// Which step or model.
        context: String,
        /// What happened.
        error: ExecutorError,
    },
    /// A server-side failure that is not the caller's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The status classes the data plane answers with; each maps to one gRPC
/// code and one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 401 / UNAUTHENTICATED.
    Unauthenticated,
    /// 404 / NOT_FOUND.
    NotFound,
    /// 400 / INVALID_ARGUMENT.
    InvalidArgument,
    /// 503 / UNAVAILABLE.
    Unavailable,
    /// 429 / RESOURCE_EXHAUSTED.
    ResourceExhausted,
    /// 504 / DEADLINE_EXCEEDED.
    DeadlineExceeded,
    /// 412 / FAILED_PRECONDITION.
    FailedPrecondition,
    /// 501 / UNIMPLEMENTED.
    Unimplemented,
    /// 422 / OUT_OF_RANGE: a deterministic size limit (retrying cannot
    /// help, unlike RESOURCE_EXHAUSTED).
    OutOfRange,
    /// 500 / INTERNAL.
    Internal,
}

impl StatusClass {
    /// The gRPC code.
    pub fn grpc(self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::Unauthenticated => Code::Unauthenticated,
            Self::NotFound => Code::NotFound,
            Self::InvalidArgument => Code::InvalidArgument,
            Self::Unavailable => Code::Unavailable,
            Self::ResourceExhausted => Code::ResourceExhausted,
            Self::DeadlineExceeded => Code::DeadlineExceeded,
            Self::FailedPrecondition => Code::FailedPrecondition,
            Self::Unimplemented => Code::Unimplemented,
            Self::OutOfRange => Code::OutOfRange,
            Self::Internal => Code::Internal,
        }
    }

    /// The HTTP status.
    pub fn http(self) -> u16 {
        match self {
            Self::Unauthenticated => 401,
            Self::NotFound => 404,
            Self::InvalidArgument => 400,
            Self::Unavailable => 503,
            Self::ResourceExhausted => 429,
            Self::DeadlineExceeded => 504,
            Self::FailedPrecondition => 412,
            Self::Unimplemented => 501,
            Self::OutOfRange => 422,
            Self::Internal => 500,
        }
    }
}

impl ServeError {
    /// Its status class.
    pub fn class(&self) -> StatusClass {
        use StatusClass as S;
        match self {
            Self::Unauthenticated(_) => S::Unauthenticated,
            Self::NotFound(_) => S::NotFound,
            Self::InvalidInput(_) => S::InvalidArgument,
            Self::Unavailable(_) => S::Unavailable,
            Self::Overloaded(_) => S::ResourceExhausted,
            Self::Deadline(_) => S::DeadlineExceeded,
            Self::FailedPrecondition(_) => S::FailedPrecondition,
            Self::Unsupported(_) => S::Unimplemented,
            Self::ResponseTooLarge(_) | Self::TooLarge(_) => S::OutOfRange,
            Self::Internal(_) => S::Internal,
            Self::Component { error, .. } => match error {
                RuntimeError::Guest(g) => match g {
                    GuestError::InvalidInput(_) => S::InvalidArgument,
                    GuestError::NotFound(_) => S::NotFound,
                    GuestError::Unsupported(_) => S::Unimplemented,
                    GuestError::ResourceExhausted(_) => S::ResourceExhausted,
                    GuestError::Internal(_) => S::Internal,
                },
                RuntimeError::Timeout(_) => S::DeadlineExceeded,
                // The call's own caps: the same input hits them again.
                RuntimeError::MemoryLimit { .. } | RuntimeError::OutputTooLarge(_) => S::OutOfRange,
                // Shared budgets and slots: free again once others finish.
                RuntimeError::Overloaded(_) | RuntimeError::MemoryBudget(_) => S::ResourceExhausted,
                _ => S::Internal,
            },
            Self::Model { error, .. } => match error {
                ExecutorError::InvalidInput(_) => S::InvalidArgument,
                ExecutorError::Overloaded { .. } | ExecutorError::MemoryBudget(_) => {
                    S::ResourceExhausted
                }
                ExecutorError::Unavailable(_) | ExecutorError::Closed(_) => S::Unavailable,
                ExecutorError::Load { .. } | ExecutorError::Backend(_) => S::Internal,
            },
        }
    }

    /// A stable snake_case reason, the `reason` label of
    /// `conduit_inference_request_failure_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "unauthenticated",
            Self::NotFound(_) => "not_found",
            Self::InvalidInput(_) => "invalid_input",
            Self::Unavailable(_) => "unavailable",
            Self::Overloaded(_) => "overloaded",
            Self::Deadline(_) => "deadline",
            Self::FailedPrecondition(_) => "failed_precondition",
            Self::Unsupported(_) => "unsupported",
            Self::ResponseTooLarge(_) => "response_too_large",
            Self::TooLarge(_) => "too_large",
            Self::Internal(_) => "internal",
            Self::Component { error, .. } => match error {
                RuntimeError::Guest(_) => "component_error",
                e => e.kind(),
            },
            Self::Model { error, .. } => match error {
                ExecutorError::InvalidInput(_) => "invalid_input",
                ExecutorError::Overloaded { .. } => "overloaded",
                ExecutorError::MemoryBudget(_) => "memory_budget",
                ExecutorError::Load { .. } => "model_load",
                ExecutorError::Unavailable(_) | ExecutorError::Closed(_) => "unavailable",
                ExecutorError::Backend(_) => "model_error",
            },
        }
    }

    /// The message a client is shown: at most
    /// [`MAX_MESSAGE_BYTES`](conduit_types::MAX_MESSAGE_BYTES), whatever it
    /// echoes (the last guard; echo sites clip client text themselves).
    pub fn message(&self) -> String {
        conduit_types::cap_message(self.to_string())
    }

    /// The gRPC status for this error (its message capped: [`Self::message`]).
    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.class().grpc(), self.message())
    }
}

impl From<ServeError> for tonic::Status {
    fn from(e: ServeError) -> Self {
        e.to_status()
    }
}

impl From<conduit_registry::RegistryError> for ServeError {
    fn from(e: conduit_registry::RegistryError) -> Self {
        use conduit_registry::RegistryError as R;
        match e {
            R::NotFound(m) => Self::NotFound(m),
            R::InvalidArgument(m) => Self::InvalidInput(m),
            R::Unauthenticated(m) => Self::Unauthenticated(m),
            R::PermissionDenied(m) => Self::NotFound(m),
            R::QuotaExceeded(m) => Self::Overloaded(m),
            R::Unavailable(m) => Self::Unavailable(m),
            R::AlreadyExists(m) | R::FailedPrecondition(m) => Self::FailedPrecondition(m),
            other => Self::Internal(other.to_string()),
        }
    }
}
