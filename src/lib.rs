//! # pooltune
//!
//! Decides connection-pool policy with evidence: replays request traces
//! against pluggable pool policies in a deterministic discrete-event
//! simulator.
//!
//! ```text
//!  trace (synthetic | recorded) ──► core: pool state machine + policy + metrics ◄── policies/*.toml
//!                                    │ (sans-IO: no clock, no IO, no async)
//!                          sim driver (virtual time, event heap, database model)
//!                                    │
//!                           summary.json ──► table, Markdown, CSV
//! ```
//!
//! Layout follows the data flow: [`trace`] -> [`core`] (pool, policy,
//! metrics) -> [`sim`] (driver) -> [`scenario`] (several policies, one seed)
//! -> [`summary`] and [`report`] (outputs).
//!
//! ## Determinism contract
//! - Simulated time is integer nanoseconds ([`time::SimTime`]); the core reads no clock.
//! - One master seed derives named ChaCha streams ([`rng::SeedTree`]); arrivals,
//!   service times, priorities and connect latencies each have their own stream,
//!   so every policy compared under one seed sees the same requests.
//! - Events at equal times pop by phase (release, connect, timeout, arrival,
//!   policy, sample), then first-in first-out.
//! - Nothing ordered or serialised comes from a hash map; `summary.json` holds
//!   no wall-clock figure, so the same inputs and seed give the same bytes.

#![forbid(unsafe_code)]

pub mod check;
pub mod compare;
pub mod config;
pub mod core;
pub mod dist;
pub mod error;
pub mod experiments;
pub mod live;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod sim;
pub mod summary;
pub mod time;
pub mod trace;
