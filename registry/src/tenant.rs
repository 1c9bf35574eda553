//! Tenants and their API keys. Keys are random, shown once, and stored only
//! as blake3 hashes.

use crate::RegistryError;
use serde::{Deserialize, Serialize};

const KEY_PREFIX: &str = "cdk_";

/// Per-tenant storage limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLimits {
    /// Largest single upload, in bytes.
    pub max_upload_bytes: u64,
    /// Total bytes of the blobs the tenant has uploaded (each counted once).
    pub max_stored_bytes: u64,
}

impl Default for TenantLimits {
    /// 2 GiB per upload, 50 GiB stored.
    fn default() -> Self {
        Self {
            max_upload_bytes: 2 << 30,
            max_stored_bytes: 50 << 30,
        }
    }
}

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Name; also the namespace of its modules.
    pub name: String,
    /// May create tenants and collect garbage.
    pub admin: bool,
    /// Hash of its API key (hex).
    pub key_hash: String,
    /// Storage limits.
    pub limits: TenantLimits,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

impl Tenant {
    /// The public id of its key: the first 8 hex digits of the key's hash.
    pub fn key_id(&self) -> &str {
        self.key_hash.get(..8).unwrap_or("none")
    }
}

/// The API key in an `authorization` header value, `Bearer <key>` (the
/// scheme in any case, as HTTP says). The one parser of every service: the
/// registry and both inference protocols call it, so they agree on what a
/// key is and say the same thing when there is none.
///
/// # Errors
/// [`RegistryError::Unauthenticated`] with one message for a missing key (no
/// header, an empty one, `Bearer` alone) and one for a malformed header
/// (another scheme, a key with spaces).
/// Whether the key is known is [`crate::Registry::authenticate`]'s to say.
pub fn bearer_key(header: Option<&str>) -> Result<&str, RegistryError> {
    let missing = || {
        RegistryError::Unauthenticated("missing API key: send `authorization: Bearer <key>`".into())
    };
    let malformed = || {
        RegistryError::Unauthenticated(
            "malformed authorization header: expected `Bearer <key>`".into(),
        )
    };
    let value = header.map(str::trim).unwrap_or_default();
    let (scheme, key) = value.split_once(' ').unwrap_or((value, ""));
    let key = key.trim();
    if !scheme.is_empty() && !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed());
    }
    // No header, an empty one and `Bearer` with no key all lack the key.
    if key.is_empty() {
        return Err(missing());
    }
    if key.contains(char::is_whitespace) {
        return Err(malformed());
    }
    Ok(key)
}

/// A new random API key (`cdk_` + 64 hex digits).
///
/// # Errors
/// When the operating system has no randomness to give.
pub(crate) fn new_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{KEY_PREFIX}{hex}"))
}

/// The stored form of a key.
pub(crate) fn hash_key(key: &str) -> String {
    blake3::hash(key.as_bytes()).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bearer_parser() {
        for ok in ["Bearer k", "bearer k", "BEARER  k ", " Bearer k"] {
            assert_eq!(bearer_key(Some(ok)).unwrap(), "k", "{ok:?}");
        }
        for none in [None, Some(""), Some("Bearer"), Some("bearer  ")] {
            let e = bearer_key(none).unwrap_err().to_string();
            assert!(e.contains("missing API key"), "{none:?}: {e}");
        }
        for bad in ["Basic k", "k", "Bearer a b", "Basic"] {
            let e = bearer_key(Some(bad)).unwrap_err().to_string();
            assert!(e.contains("malformed authorization header"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn keys_are_random_and_hashed() {
        let a = new_key().unwrap();
        let b = new_key().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("cdk_") && a.len() == 68);
        assert_eq!(hash_key(&a), hash_key(&a));
        assert!(!hash_key(&a).contains(&a[4..]));
    }
}
