//! Who a call is for and what it may use.

use crate::{ModelBackend, SandboxLimits};
use std::sync::Arc;

/// The caller's side of one component call.
#[derive(Clone)]
pub struct CallContext {
    /// The tenant the call runs for. Warm instances are only ever reused
    /// within one tenant.
    pub tenant: Arc<str>,
    /// Sandbox limits for the call.
    pub limits: SandboxLimits,
    /// Serves the component's `model.infer` calls; `None` answers them `unsupported`.
    pub models: Option<Arc<dyn ModelBackend>>,
}

impl CallContext {
    /// A call for `tenant` with default limits and no models.
    pub fn new(tenant: impl Into<Arc<str>>) -> Self {
        Self {
            tenant: tenant.into(),
            limits: SandboxLimits::default(),
            models: None,
        }
    }

    /// The same call with `limits`.
    pub fn with_limits(mut self, limits: SandboxLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The same call with `models` serving `model.infer`.
    pub fn with_models(mut self, models: Arc<dyn ModelBackend>) -> Self {
        self.models = Some(models);
        self
    }
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("tenant", &self.tenant)
            .field("limits", &self.limits)
            .field("models", &self.models.is_some())
            .finish()
    }
}
