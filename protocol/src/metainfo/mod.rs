//! Torrent metadata: `.torrent` files, their validated geometry, and magnet links.

mod info_hash;
pub mod magnet;

pub use info_hash::InfoHash;
