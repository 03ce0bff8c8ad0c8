//! Exit codes, documented in the README. Scripts and CI rely on them.

/// Success.
pub const OK: u8 = 0;
/// `pooltune check`: a guarded metric regressed, or a scenario's assertion
/// failed.
pub const REGRESSION: u8 = 1;
/// `sim run --scenario`: an assertion failed (summary.json, the CSVs and
/// the report are still written). Same code as a `check` regression: the
/// run worked, the system under test did not meet its bound.
pub const ASSERTION_FAILED: u8 = 1;
/// Command-line usage error (unknown flag, missing value): clap's code.
pub const USAGE: u8 = 2;
/// `pooltune check` could not decide: an invalid check file, policy or
/// workload, missing baselines, a failed run, a file that cannot be read or
/// written. `check` maps every tool error to 2 (as ripgrep does), so CI can
/// tell "regression" (1) from "the gate is broken" (2).
pub const CHECK_ERROR: u8 = 2;
/// A config, policy or trace file is invalid (the message names file, line, key).
pub const CONFIG: u8 = 3;
/// Reading or writing a file failed.
pub const IO: u8 = 4;
/// A simulation hit its max_events or max_sim_time bound.
pub const SIM_LIMIT: u8 = 5;
/// `live`: the database could not be reached (the message names the target,
/// never the password, and the server's reason).
pub const DATABASE: u8 = 6;
/// An internal invariant was violated: a bug in pooltune.
pub const INTERNAL: u8 = 70;
/// `live run` was stopped by Ctrl-C; its outputs were still written.
pub const INTERRUPTED: u8 = 130;
