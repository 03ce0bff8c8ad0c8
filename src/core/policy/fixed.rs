//! A fixed-size pool (HikariCP's recommendation): the pool opens its size at
//! start and never resizes.

use super::{Decision, Policy, PoolView, Signal};
use crate::time::{SimDuration, SimTime};

#[derive(Clone, Debug, Default)]
pub struct Fixed;

impl Policy for Fixed {
    fn interval(&self) -> Option<SimDuration> {
        None
    }
    fn decide(&mut self, _now: SimTime, _view: &PoolView, _signal: Signal) -> Decision {
        Decision::Hold
    }
}
