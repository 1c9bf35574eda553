//! Invariants shared by the targets: what an error may look like once it
//! becomes a status a client reads.

use conduit_registry::RegistryError;
use conduit_runner::ServeError;

/// The longest gRPC status message a client may receive, in bytes: echoed
/// input is clipped and the whole message capped before it leaves a
/// service.
pub const MAX_STATUS_MESSAGE: usize = 1024;

/// Panics unless `status` carries at most [`MAX_STATUS_MESSAGE`] bytes.
pub fn bounded(status: &tonic::Status, what: &str) {
    let len = status.message().len();
    assert!(
        len <= MAX_STATUS_MESSAGE,
        "{what}: the status message has {len} bytes, over the cap of {MAX_STATUS_MESSAGE}: {}",
        preview(status.message())
    );
}

/// A data-plane decoding error: only the classes a malformed request may
/// cause, and a bounded status message (through the one mapping,
/// `From<ServeError> for tonic::Status`).
pub fn serve_error(what: &str, e: ServeError) {
    assert!(
        matches!(e, ServeError::InvalidInput(_) | ServeError::Unsupported(_)),
        "{what}: a decoding error of an unexpected class: {e:?}"
    );
    let status = tonic::Status::from(e);
    assert!(
        matches!(
            status.code(),
            tonic::Code::InvalidArgument | tonic::Code::Unimplemented
        ),
        "{what}: code {:?}",
        status.code()
    );
    bounded(&status, what);
}

/// A registry error from caller input: invalid or not found, with a
/// bounded status message (through `From<RegistryError> for tonic::Status`).
pub fn registry_error(what: &str, e: RegistryError) {
    assert!(
        matches!(
            e,
            RegistryError::InvalidArgument(_) | RegistryError::NotFound(_)
        ),
        "{what}: a registry error of an unexpected class: {e:?}"
    );
    bounded(&tonic::Status::from(e), what);
}

/// The start of a long text, for a failure message.
pub fn preview(s: &str) -> String {
    const SHOWN: usize = 300;
    match s.char_indices().nth(SHOWN) {
        None => format!("{s:?}"),
        Some((i, _)) => format!("{:?}… ({} bytes in all)", &s[..i], s.len()),
    }
}
