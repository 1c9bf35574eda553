//! End-to-end tests: real components built from source for wasm32-wasip2
//! (`make components`), run in the real runtime and through the real CLI.

mod adversarial;
mod autoscale;
mod cli;
mod cli_registry;
mod cli_registry_refs;
mod cluster;
mod common;
mod crash;
mod dashboard;
mod examples;
mod executor;
mod hostile;
mod isolation;
mod logs;
mod oci;
mod python_guest;
mod registry;
mod registry_bad_input;
mod remote_executor;
mod runner;
mod runtime;
mod serving;
mod session;
mod tokenizer;
mod tritonclient;
