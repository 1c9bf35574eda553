//! Logging into the host's log (captured with a size cap per call).

use crate::bindings::conduit::compute::logging::{Level, log};

/// Logs `msg` at debug level.
pub fn debug(msg: &str) {
    log(Level::Debug, msg);
}

/// Logs `msg` at info level.
pub fn info(msg: &str) {
    log(Level::Info, msg);
}

/// Logs `msg` at warn level.
pub fn warn(msg: &str) {
    log(Level::Warn, msg);
}

/// Logs `msg` at error level.
pub fn error(msg: &str) {
    log(Level::Error, msg);
}
