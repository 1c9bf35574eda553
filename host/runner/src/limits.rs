//! Per-tenant data-plane limits, from a TOML file (`conduit dev --config`).
//!
//! ```toml
//! [default]
//! max_concurrent_requests = 64
//! sandbox_memory_mib = 256
//! sandbox_deadline_ms = 1000
//! request_deadline_ms = 30000
//! max_sessions = 64
//! session_values_mib = 1024
//! session_lease_ms = 60000
//!
//! [tenants.acme]
//! max_concurrent_requests = 4
//! ```

use conduit_runtime::SandboxLimits;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What one tenant may use on the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantServing {
    /// Requests of the tenant in flight at once; more get RESOURCE_EXHAUSTED / 429.
    pub max_concurrent_requests: u32,
    /// Memory cap of each component instance, in MiB.
    pub sandbox_memory_mib: u64,
    /// Wall-clock deadline of each component call, in milliseconds.
    pub sandbox_deadline_ms: u64,
    /// Deadline of a whole request (all steps), in milliseconds; a client
    /// deadline (`grpc-timeout`) may shorten it.
    pub request_deadline_ms: u64,
    /// Sessions the tenant may hold open on one runner at once.
    pub max_sessions: u32,
    /// Bytes the values of the tenant's sessions may hold on one runner,
    /// in MiB (every value counted in full).
    pub session_values_mib: u64,
    /// The longest lease a session is granted (and the lease of one that
    /// asks for none), in milliseconds: the session and its values are
    /// dropped this long after its last call.
    pub session_lease_ms: u64,
}

impl Default for TenantServing {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 64,
            sandbox_memory_mib: 256,
            sandbox_deadline_ms: 1000,
            request_deadline_ms: 30_000,
            max_sessions: 64,
            session_values_mib: 1024,
            session_lease_ms: 60_000,
        }
    }
}

impl TenantServing {
    /// The sandbox limits of a component call.
    pub fn sandbox(&self) -> SandboxLimits {
        SandboxLimits {
            memory_bytes: usize::try_from(self.sandbox_memory_mib.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
            deadline: Duration::from_millis(self.sandbox_deadline_ms),
            ..SandboxLimits::default()
        }
    }

    /// The byte budget of the tenant's session values.
    pub fn session_values_bytes(&self) -> u64 {
        self.session_values_mib.saturating_mul(1 << 20)
    }

    /// The deadline of a whole request.
    pub fn request_deadline(&self) -> Duration {
        Duration::from_millis(self.request_deadline_ms)
    }
}

/// `now + after`, or an instant a century away when that is past what the
/// platform's clock can hold: a huge lease or deadline (from a client or a
/// limits file) means no deadline in practice, never a panic.
pub fn instant_after(now: Instant, after: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(after)
        .or_else(|| now.checked_add(CENTURY))
        .unwrap_or(now)
}

/// Limits for every tenant: a default and per-tenant overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingLimits {
    /// For tenants without an entry.
    #[serde(default)]
    pub default: TenantServing,
    /// Per tenant.
    #[serde(default)]
    pub tenants: HashMap<String, TenantServing>,
}

impl ServingLimits {
    /// Reads a limits file.
    ///
    /// # Errors
    /// A one-line message for unreadable, malformed or zero limits.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let limits: Self =
            toml::from_str(text).map_err(|e| format!("limits: {}", e.message().trim()))?;
        for (who, l) in std::iter::once(("default", &limits.default))
            .chain(limits.tenants.iter().map(|(k, v)| (k.as_str(), v)))
        {
            if l.max_concurrent_requests == 0
                || l.sandbox_memory_mib == 0
                || l.sandbox_deadline_ms == 0
                || l.request_deadline_ms == 0
                || l.max_sessions == 0
                || l.session_values_mib == 0
                || l.session_lease_ms == 0
            {
                return Err(format!("limits for `{who}`: every limit must be above 0"));
            }
        }
        Ok(limits)
    }

    /// The limits of `tenant`.
    pub fn of(&self, tenant: &str) -> TenantServing {
        self.tenants.get(tenant).copied().unwrap_or(self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_defaults_and_overrides() {
        let l = ServingLimits::from_toml(
            "[default]\nmax_concurrent_requests = 8\n[tenants.acme]\nsandbox_deadline_ms = 50\n",
        )
        .unwrap();
        assert_eq!(l.of("other").max_concurrent_requests, 8);
        assert_eq!(l.of("acme").sandbox().deadline, Duration::from_millis(50));
        assert_eq!(l.of("acme").max_concurrent_requests, 64);
        assert!(
            ServingLimits::from_toml("[default]\nmax_concurrent_requests = 0\n")
                .unwrap_err()
                .contains("above 0")
        );
        assert!(ServingLimits::from_toml("[default]\nbogus = 1\n").is_err());
    }

    #[test]
    fn huge_limits_and_deadlines_saturate() {
        let l = TenantServing {
            sandbox_memory_mib: u64::MAX,
            ..TenantServing::default()
        };
        assert_eq!(l.sandbox().memory_bytes, usize::MAX);
        let now = Instant::now();
        assert!(instant_after(now, Duration::MAX) > now + Duration::from_secs(3600));
        assert_eq!(
            instant_after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }
}
