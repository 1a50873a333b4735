//! Trackers: where a torrent finds its peers.
//!
//! - [`TrackerUrl`]: an announce URL parsed once (scheme, host, port, path and query).
//!
//! Invariants: nothing here panics on any input from a tracker, and everything a tracker can grow
//! is bounded (each type's docs say how).

mod url;

pub use url::{MAX_URL_LEN, Scheme, TrackerUrl, TrackerUrlError};
