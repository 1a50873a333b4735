//! Storage: where a torrent's pieces live, and the disk work the protocol asks for.
//!
//! [`hash`] holds the parallel piece hasher shared with `bt create`.

pub mod hash;
