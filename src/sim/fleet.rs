//! The topology engine: services' fleets of instances, each with a pool per
//! server, an optional PgBouncer layer, a primary and replicas with routing,
//! instance lifecycle events and server faults, in one deterministic event
//! loop. Same pool and policy code as everywhere else.

use crate::core::metrics::SampleSink;
use crate::error::SimError;
use crate::rng::SeedTree;
use crate::sim::topology::{FleetOutcome, Topology};
use crate::sim::RunOptions;
use crate::trace::RequestSource;

/// Runs a topology. `shared` feeds the services with a `share`; `own[i]`
/// the service whose workload is `Own(i)`. The sink gets one time-series
/// row per interval for all application pools together (sums), and
/// progress.
pub fn simulate_fleet(
    topology: &Topology,
    shared: Option<&mut dyn RequestSource>,
    own: Vec<&mut dyn RequestSource>,
    seeds: &SeedTree,
    opts: &RunOptions,
    sink: &mut dyn SampleSink,
) -> Result<FleetOutcome, SimError> {
    let _ = (topology, shared, own, seeds, opts, sink);
    unimplemented!("sim::fleet is being written")
}
