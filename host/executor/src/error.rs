//! Executor errors; the data plane maps them to status codes.

/// Why a model could not be loaded or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutorError {
    /// The request's tensors do not fit the model (names, types, shapes).
    #[error("{0}")]
    InvalidInput(String),
    /// The model's queue is full; retry later.
    #[error(
        "model `{model}` is overloaded: the {capacity} queue entries open to this caller are taken"
    )]
    Overloaded {
        /// The model.
        model: String,
        /// Queue capacity.
        capacity: usize,
    },
    /// Loading the model would exceed the runner's model memory budget and
    /// every loaded model is in use; retry later.
    #[error("{0}")]
    MemoryBudget(String),
    /// The model bytes do not load in the backend.
    #[error("model does not load in {backend}: {message}")]
    Load {
        /// The backend.
        backend: &'static str,
        /// Why.
        message: String,
    },
    /// The backend or device is not usable here (library missing, no GPU,
    /// remote server down).
    #[error("{0}")]
    Unavailable(String),
    /// The engine failed while running.
    #[error("model execution failed: {0}")]
    Backend(String),
    /// The executor has shut down.
    #[error("model `{0}` is shutting down")]
    Closed(String),
}
