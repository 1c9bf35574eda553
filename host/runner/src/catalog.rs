//! From references to loaded components: the runner asks the registry what
//! `name:tag` means now, and loads the bytes it names once per digest.

use crate::ModuleSource;
use conduit_registry::{Kind, RegistryError, Tenant};
use conduit_runtime::{Component, Runtime, RuntimeError};
use std::sync::Arc;

/// Why a reference could not be turned into a runnable component.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The registry refused or does not know the reference.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The reference names a model or a pipeline, not a component.
    #[error("`{reference}` is a {kind}, not a component")]
    NotAComponent {
        /// What was asked for.
        reference: String,
        /// What it is.
        kind: Kind,
    },
    /// Loading the component failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Resolves references through a [`ModuleSource`] on every call (so a tag
/// move is seen by the next call) and keeps components loaded by digest
/// (so a version is compiled once). Calls already holding a component finish
/// on it whatever the tags do meanwhile.
#[derive(Clone)]
pub struct Catalog {
    runtime: Runtime,
    source: Arc<dyn ModuleSource>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("runtime", &self.runtime)
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// A catalog loading into `runtime` what `source` names.
    pub fn new(runtime: Runtime, source: Arc<dyn ModuleSource>) -> Self {
        Self { runtime, source }
    }

    /// The runtime components are loaded into.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The component `reference` names for `tenant` right now, loaded.
    ///
    /// # Errors
    /// [`CatalogError::Registry`] when it does not resolve,
    /// [`CatalogError::NotAComponent`] for models and pipelines,
    /// [`CatalogError::Runtime`] when loading fails.
    pub async fn component(
        &self,
        tenant: &Tenant,
        reference: &str,
    ) -> Result<Arc<Component>, CatalogError> {
        let manifest = self.source.resolve(tenant, reference).await?;
        if manifest.kind != Kind::Component {
            return Err(CatalogError::NotAComponent {
                reference: reference.to_string(),
                kind: manifest.kind,
            });
        }
        if let Some(c) = self.runtime.get(&manifest.digest) {
            return Ok(c);
        }
        let bytes = self.source.fetch(tenant, &manifest.digest).await?;
        Ok(self.runtime.load(&bytes).await?)
    }
}
