//! Errors of the component runtime, one kind per way a call can fail.

use std::time::Duration;

/// What a component itself returned (`err(...)` of the WIT `error` variant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestError {
    /// The request's tensors or parameters are wrong.
    InvalidInput(String),
    /// The request asks for something unsupported.
    Unsupported(String),
    /// A referenced tensor, parameter or model does not exist.
    NotFound(String),
    /// A limit was reached inside the component or a model it called.
    ResourceExhausted(String),
    /// Anything else.
    Internal(String),
}

impl GuestError {
    /// The message the component gave.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidInput(m)
            | Self::Unsupported(m)
            | Self::NotFound(m)
            | Self::ResourceExhausted(m)
            | Self::Internal(m) => m,
        }
    }

    /// A stable snake_case name of the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "invalid_input",
            Self::Unsupported(_) => "unsupported",
            Self::NotFound(_) => "not_found",
            Self::ResourceExhausted(_) => "resource_exhausted",
            Self::Internal(_) => "internal",
        }
    }
}

impl std::fmt::Display for GuestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind().replace('_', " "), self.message())
    }
}

/// Why loading or calling a component failed.
///
/// Guest errors (the component chose to fail) are kept apart from traps (the
/// sandbox stopped it); each trap cause has its own variant and metric label.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The bytes are not a valid WebAssembly component (corrupt, a core module, not wasm).
    #[error("invalid component: {0}")]
    InvalidComponent(String),
    /// A valid component that does not fit a Conduit world (no processor export, unknown imports).
    #[error("component does not target conduit:compute 0.1 or 0.2 (world `op` or `pipeline`): {0}")]
    WrongWorld(String),
    /// The component returned an error.
    #[error("component error: {0}")]
    Guest(GuestError),
    /// The call ran past its wall-clock deadline.
    #[error("component exceeded its deadline of {0:?}")]
    Timeout(Duration),
    /// The component tried to grow its memory past the cap.
    #[error("component exceeded its memory limit of {limit} bytes (asked for {requested})")]
    MemoryLimit {
        /// The cap in bytes.
        limit: usize,
        /// The size it tried to grow to.
        requested: usize,
    },
    /// The component's call stack overflowed (runaway recursion).
    #[error("component overflowed its stack")]
    StackOverflow,
    /// The component created more tensor data or handles than allowed.
    #[error("component output too large: {0}")]
    OutputTooLarge(String),
    /// The component called a capability the sandbox does not grant (files, sockets…).
    #[error("component called `{0}`, which the sandbox denies")]
    Denied(String),
    /// Any other trap (`unreachable`, a Rust panic, out-of-bounds access…).
    #[error("component trapped: {0}")]
    Trap(String),
    /// The call could not start: every instance slot is busy, or the
    /// tenant's share of the compute pool is; retry later.
    #[error("component runtime overloaded: {0}")]
    Overloaded(String),
    /// Growing the component's memory would pass the tenant's or the host's
    /// budget for all instances together; retry later.
    #[error("component memory budget exhausted: {0}")]
    MemoryBudget(String),
    /// A host-side failure that is not the component's fault.
    #[error("internal runtime error: {0}")]
    Internal(String),
}

impl RuntimeError {
    /// A stable snake_case name of the kind, used as the metric `reason` label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidComponent(_) => "invalid_component",
            Self::WrongWorld(_) => "wrong_world",
            Self::Guest(_) => "guest_error",
            Self::Timeout(_) => "timeout",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::StackOverflow => "stack_overflow",
            Self::OutputTooLarge(_) => "output_too_large",
            Self::Denied(_) => "denied",
            Self::Trap(_) => "trap",
            Self::Overloaded(_) => "overloaded",
            Self::MemoryBudget(_) => "memory_budget",
            Self::Internal(_) => "internal",
        }
    }

    /// Whether the sandbox stopped the component (as opposed to it returning an error).
    pub fn is_trap(&self) -> bool {
        matches!(
            self,
            Self::Timeout(_)
                | Self::MemoryLimit { .. }
                | Self::StackOverflow
                | Self::OutputTooLarge(_)
                | Self::Denied(_)
                | Self::Trap(_)
                | Self::MemoryBudget(_)
        )
    }
}
