//! Registration: push → first response for the tokenizer component on a
//! runner that has never seen it (upload over gRPC, validation = compile +
//! `describe()`, resolve, call), and the load on a second runner that finds
//! the compiled form in the shared disk cache.

use anyhow::{Context, Result};
use conduit_registry::{
    Kind, PushProgress, Registry, RegistryClient, RegistryConfig, TenantLimits,
};
use conduit_runner::{Catalog, RuntimeValidator};
use conduit_runtime::{CallContext, Param, ParamValue, Runtime, RuntimeConfig};
use conduit_types::Tensor;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One measurement of each phase.
pub struct Sample {
    /// Upload + validation + registration, as the pusher sees it.
    pub push: Duration,
    /// From the start of the push to the first response of a call by reference.
    pub push_to_first_response: Duration,
    /// A second runner (same disk cache, nothing in memory): resolve, fetch,
    /// load from the compiled cache.
    pub cached_load: Duration,
}

/// Measures once, in a fresh data directory under `scratch`.
pub async fn measure(tokenizer: &[u8], scratch: &Path) -> Result<Sample> {
    let _ = std::fs::remove_dir_all(scratch);
    let cache = scratch.join("cache");
    let runtime = Runtime::new(RuntimeConfig {
        engine: Default::default(),
        cache_dir: Some(cache.clone()),
    })?;
    let config = RegistryConfig {
        root: scratch.join("registry"),
        default_limits: TenantLimits::default(),
    };
    let (registry, bootstrap) = Registry::open(
        config,
        Arc::new(RuntimeValidator::new(
            runtime.clone(),
            conduit_executor::Backends::detect(None),
        )),
    )?;
    let key = bootstrap
        .context("fresh registry has an admin key")?
        .api_key;
    let tenant = registry.authenticate(&key)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(conduit_registry::serve(registry.clone(), listener, async {
        let _ = stopped.await;
    }));
    let client = RegistryClient::connect(&url, &key).await?;
    let catalog = Catalog::new(runtime, Arc::new(registry.clone()));
    let text = Tensor::from_byte_strings(
        vec![1],
        ["Conduit's headquarters are situated in Mountain View"],
    )?;
    let params = [Param {
        name: "max_length".into(),
        value: ParamValue::Int64(128),
    }];

    let started = Instant::now();
    client
        .push(
            Kind::Component,
            "tok",
            "1.0.0",
            tokenizer,
            &[],
            &PushProgress::default(),
        )
        .await?;
    let push = started.elapsed();
    let component = catalog.component(&tenant, "tok@1.0.0").await?;
    catalog
        .runtime()
        .process(
            &component,
            vec![("text".into(), text.clone())],
            &params,
            &CallContext::new("bench"),
        )
        .await?;
    let push_to_first_response = started.elapsed();

    let second = Runtime::new(RuntimeConfig {
        engine: Default::default(),
        cache_dir: Some(cache),
    })?;
    let other = Catalog::new(second, Arc::new(registry));
    let started = Instant::now();
    let component = other.component(&tenant, "tok@1.0.0").await?;
    let cached_load = started.elapsed();
    other
        .runtime()
        .process(
            &component,
            vec![("text".into(), text)],
            &params,
            &CallContext::new("bench"),
        )
        .await?;

    let _ = stop.send(());
    server.await??;
    let _ = std::fs::remove_dir_all(scratch);
    Ok(Sample {
        push,
        push_to_first_response,
        cached_load,
    })
}
