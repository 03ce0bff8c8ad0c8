//! The sans-IO core: the pool state machine, policies and the metrics
//! recorder. No clock, no IO, no async: drivers hand in the time.

pub mod lifecycle;
pub mod metrics;
pub mod policy;
pub mod pool;
pub mod queue;
pub mod request;
