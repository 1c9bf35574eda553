//! Shared harness: where the built components are, and a shared runtime.

use conduit_runtime::{EngineConfig, Runtime, RuntimeConfig};
use conduit_types::Tensor;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The cargo target directory this test binary was built into.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // <target>/<profile>/deps/all-<hash>
    exe.ancestors()
        .nth(3)
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Path of a component built by `make components`.
pub fn component_path(crate_name: &str) -> PathBuf {
    let file = format!("{}.wasm", crate_name.replace('-', "_"));
    let path = target_dir().join("wasm32-wasip2/release").join(&file);
    assert!(
        path.exists(),
        "{} is missing: build the guest components first with `make components`",
        path.display()
    );
    path
}

/// The bytes of a built component.
pub fn component_bytes(crate_name: &str) -> Vec<u8> {
    std::fs::read(component_path(crate_name)).expect("reading component")
}

/// One runtime shared by the tests that need no special configuration.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    // Every test module calls it at once as the one tenant `test`: a share
    // of the compute pool sized for many callers, not for one of many tenants.
    RUNTIME.get_or_init(|| {
        runtime_with(EngineConfig {
            max_instances: 64,
            compute_threads: 4,
            max_running_per_tenant: 8,
            ..EngineConfig::default()
        })
    })
}

/// A runtime with a pool of `instances` slots and no disk cache.
pub fn small_runtime(instances: u32) -> Runtime {
    runtime_with(EngineConfig {
        max_instances: instances,
        ..EngineConfig::default()
    })
}

/// A runtime with `engine` settings and no disk cache.
pub fn runtime_with(engine: EngineConfig) -> Runtime {
    Runtime::new(RuntimeConfig {
        engine,
        cache_dir: None,
    })
    .expect("building runtime")
}

/// Looks up an output by name.
pub fn output<'a>(outputs: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    &outputs
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no output `{name}` in {outputs:?}"))
        .1
}

/// A string parameter.
pub fn str_param(name: &str, value: &str) -> conduit_runtime::Param {
    conduit_runtime::Param {
        name: name.into(),
        value: conduit_runtime::ParamValue::String(value.into()),
    }
}

/// An integer parameter.
pub fn int_param(name: &str, value: i64) -> conduit_runtime::Param {
    conduit_runtime::Param {
        name: name.into(),
        value: conduit_runtime::ParamValue::Int64(value),
    }
}

/// A call for the test tenant with `limits` and `models`.
pub fn ctx(
    limits: conduit_runtime::SandboxLimits,
    models: Option<std::sync::Arc<dyn conduit_runtime::ModelBackend>>,
) -> conduit_runtime::CallContext {
    conduit_runtime::CallContext {
        tenant: "test".into(),
        limits,
        models,
    }
}

/// `component` with a custom section appended: different bytes (and digest),
/// same behaviour — a new "version" of a component without a rebuild.
pub fn with_custom_section(component: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::new();
    leb128(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut out = component.to_vec();
    out.push(0); // custom section id
    leb128(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// A scratch directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory whose name starts with `prefix`.
    pub fn new(prefix: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        Self(path)
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
