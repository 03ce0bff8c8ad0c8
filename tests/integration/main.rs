//! One integration-test binary; one module per behaviour.
//! Run in release mode (`cargo test --release`): the validation module
//! simulates hundreds of millions of requests.

mod cli;
mod config_errors;
mod determinism;
mod invariants;
mod validation;
mod validation_world;
