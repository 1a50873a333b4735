//! `bt-sim`: the deterministic swarm simulator behind `btsim`.
//!
//! - [`turmoil`]: the engine that runs the runtime's real driver on turmoil hosts.

pub mod turmoil;
