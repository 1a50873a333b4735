//! `bt-sim`: the deterministic swarm simulator behind `btsim`.
//!
//! - [`scenario`]: the scenario file format (TOML): the swarm, its network, faults, expectations.
//! - [`content`]: the torrent's content, generated from the seed, and what each peer's disk holds.
//! - [`engine`]: the engines by name and the [`engine::Outcome`] every engine gives.
//! - [`encryption`]: what the engines record of encrypted connections, and the checks on it.
//! - [`fast`]: the `fast` engine, protocol sessions driven by an event-driven clock.
//! - [`report`]: what a run measured, judged against the scenario's expectations.
//! - [`streaming`]: what simulated players saw (first byte, stalls), and the checks on it.
//! - [`mod@bench`]: `btsim bench`, an engine's speed on flash crowds.
//! - [`sweep`]: `btsim sweep`, one scenario over many seeds on every core.
//! - [`trace`]: the fingerprint of a run's event stream.
//! - `watch`: the wire observer both engines run on every connection.
//! - `attack`: the scripts of hostile peers (groups of role `attacker`), for both engines.
//! - [`turmoil`]: the engine that runs the runtime's real driver on turmoil hosts.

mod attack;
pub mod bench;
pub mod content;
pub mod encryption;
pub mod engine;
pub mod fast;
pub mod report;
pub mod scenario;
pub mod streaming;
pub mod sweep;
pub mod trace;
pub mod transport;
pub mod turmoil;
mod watch;
