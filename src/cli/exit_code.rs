//! Exit codes, documented in the README. Scripts and CI rely on them.

/// Success.
pub const OK: u8 = 0;
/// Reserved for `pooltune check`: a regression was found.
#[allow(dead_code)]
pub const REGRESSION: u8 = 1;
/// Command-line usage error (unknown flag, missing value): clap's code.
pub const USAGE: u8 = 2;
/// A config, policy or trace file is invalid (the message names file, line, key).
pub const CONFIG: u8 = 3;
/// Reading or writing a file failed.
pub const IO: u8 = 4;
/// A simulation hit its max_events or max_sim_time bound.
pub const SIM_LIMIT: u8 = 5;
/// An internal invariant was violated: a bug in pooltune.
pub const INTERNAL: u8 = 70;
