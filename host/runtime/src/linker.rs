//! The imports a component may use: `conduit:compute` and a locked-down WASI.
//!
//! Linked for real: `wasi:io`, `wasi:clocks`, `wasi:random` and `wasi:cli`
//! (stdout/stderr captured into the log, no environment, no arguments, empty
//! stdin). Not linked: `wasi:filesystem` and `wasi:sockets` — Rust's standard
//! library imports them even when unused, so each component's other WASI
//! imports are defined as stubs that trap, and a component that actually calls
//! one stops with [`RuntimeError::Denied`](crate::RuntimeError::Denied).
//! (wasmtime's own `define_unknown_imports_as_traps` is not used: it matches
//! names exactly, so a guest's `wasi:cli@0.2.6` import would get stubs that
//! shadow the linked `@0.2.12` implementation.)

use crate::RuntimeError;
use crate::bindings::{v1, v2};
use crate::state::CallState;
use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{HasSelf, Linker, ResourceTable, ResourceType};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::p2::bindings::{cli, clocks, random};
use wasmtime_wasi::random::WasiRandom;

impl wasmtime_wasi_io::IoView for CallState {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

/// Builds the linker shared by every component (before per-component trap stubs).
///
/// # Errors
/// [`RuntimeError::Internal`] if two definitions collide (a bug).
pub(crate) fn base_linker(engine: &Engine) -> Result<Linker<CallState>, RuntimeError> {
    let internal = |e: wasmtime::Error| RuntimeError::Internal(format!("building the linker: {e}"));
    let mut l = Linker::new(engine);
    v1::Pipeline::add_to_linker::<CallState, HasSelf<CallState>>(&mut l, |s| s)
        .map_err(internal)?;
    v2::Pipeline::add_to_linker::<CallState, HasSelf<CallState>>(&mut l, |s| s)
        .map_err(internal)?;
    wasmtime_wasi_io::add_to_linker_async(&mut l).map_err(internal)?;
    (|| -> wasmtime::Result<()> {
        clocks::wall_clock::add_to_linker::<CallState, WasiClocks>(&mut l, CallState::clocks)?;
        clocks::monotonic_clock::add_to_linker::<CallState, WasiClocks>(&mut l, CallState::clocks)?;
        random::random::add_to_linker::<CallState, WasiRandom>(&mut l, CallState::random)?;
        random::insecure::add_to_linker::<CallState, WasiRandom>(&mut l, CallState::random)?;
        random::insecure_seed::add_to_linker::<CallState, WasiRandom>(&mut l, CallState::random)?;
        cli::exit::add_to_linker::<CallState, WasiCli>(&mut l, CallState::cli)?;
        cli::environment::add_to_linker::<CallState, WasiCli>(&mut l, CallState::cli)?;
        cli::stdin::add_to_linker::<CallState, WasiCli>(&mut l, CallState::cli)?;
        cli::stdout::add_to_linker::<CallState, WasiCli>(&mut l, CallState::cli)?;
        cli::stderr::add_to_linker::<CallState, WasiCli>(&mut l, CallState::cli)?;
        cli::terminal_input::add_to_linker::<CallState, WasiCli>(&mut l, CallState::cli)?;
        cli::terminal_output::add_to_linker::<CallState, WasiCli>(&mut l, CallState::cli)?;
        cli::terminal_stdin::add_to_linker::<CallState, WasiCli>(&mut l, CallState::cli)?;
        cli::terminal_stdout::add_to_linker::<CallState, WasiCli>(&mut l, CallState::cli)?;
        cli::terminal_stderr::add_to_linker::<CallState, WasiCli>(&mut l, CallState::cli)?;
        Ok(())
    })()
    .map_err(internal)?;
    Ok(l)
}

/// Interfaces the base linker provides (any 0.2.x / 0.1.x version).
const PROVIDED: &[&str] = &[
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
    "conduit:compute/",
];

/// The trap raised when a component calls an import the sandbox denies.
#[derive(Debug, thiserror::Error)]
#[error("call to denied import `{0}`")]
pub(crate) struct DeniedImport(pub String);

/// The linker for one component: the base plus denying stubs for the WASI
/// interfaces it imports that the sandbox does not grant (filesystem, sockets…).
///
/// Instantiation succeeds; a call to a stub traps with [`DeniedImport`].
///
/// # Errors
/// [`RuntimeError::WrongWorld`] when an import cannot be stubbed.
pub(crate) fn component_linker(
    base: &Linker<CallState>,
    component: &wasmtime::component::Component,
) -> Result<Linker<CallState>, RuntimeError> {
    let engine = component.engine();
    let mut linker = base.clone();
    let wrong = |e: wasmtime::Error| RuntimeError::WrongWorld(format!("{e}"));
    // Resource types the component already receives from elsewhere: an
    // interface re-exporting one (e.g. `input-stream` in `wasi:filesystem/types`)
    // aliases it rather than defining a new type, so it must not be stubbed.
    let mut known: Vec<ResourceType> = Vec::new();
    for (import, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if PROVIDED.iter().any(|p| import.starts_with(p)) {
            for (_, export) in instance.exports(engine) {
                if let ComponentItem::Resource(rt) = export.ty {
                    known.push(rt);
                }
            }
            continue;
        }
        let mut stubs = linker.instance(import).map_err(wrong)?;
        for (name, export) in instance.exports(engine) {
            match export.ty {
                ComponentItem::ComponentFunc(_) => {
                    let full = format!("{import}#{name}");
                    stubs
                        .func_new(name, move |_, _, _, _| {
                            Err(wasmtime::Error::new(DeniedImport(full.clone())))
                        })
                        .map_err(wrong)?;
                }
                ComponentItem::Resource(rt) => {
                    if known.contains(&rt) {
                        continue;
                    }
                    known.push(rt);
                    stubs
                        .resource(name, ResourceType::host::<DeniedResource>(), |_, _| Ok(()))
                        .map_err(wrong)?;
                }
                _ => {}
            }
        }
    }
    Ok(linker)
}

/// The host type behind stubbed resources (never instantiated).
struct DeniedResource;
