//! One integration-test binary; one module per behaviour.
//! Run in release mode (`cargo test --release`): the validation module
//! simulates hundreds of millions of requests.

mod check;
mod cli;
mod config_errors;
mod determinism;
mod fleet;
mod invariants;
mod lifecycle;
mod live_calibrate;
mod live_cli;
mod live_closed;
mod live_faults;
mod live_handle;
mod live_pgbouncer;
mod live_run;
mod live_sim_vs_live;
mod live_statements;
mod live_tls;
mod pg_harness;
mod plots;
mod policies;
mod scenario_config;
mod sweep;
mod topology_cli;
mod trace_cli;
mod trace_gen;
mod trace_import;
mod trace_merge;
mod trace_versions;
mod tune;
mod validation;
mod validation_closed;
mod validation_world;
mod world;
