//! `bt-sim`: the deterministic swarm simulator behind `btsim`.
//!
//! - [`scenario`]: the scenario file format (TOML): the swarm, its network, faults, expectations.

pub mod scenario;
