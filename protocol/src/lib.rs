//! `bt-protocol`: the sans-IO core of bt.
//!
//! Everything here is pure: bytes and time come in as arguments, decisions come out as values. No
//! module reads a clock, touches a file or socket, or draws global randomness (`protocol/clippy.toml`
//! enforces the clock and RNG part; `cargo tree -p bt-protocol` shows no I/O crate).
//!
//! - [`bencode`]: decoding bencode as real clients do (lenient where libtorrent is, strict where the
//!   meaning would be ambiguous) and encoding it canonically.
//! - [`harness`]: an in-memory, deterministic swarm of [`torrent::Torrent`]s for tests and
//!   benchmarks.
//! - [`io`]: connection handles and the disk work the protocol asks its driver for.
//! - [`metainfo`]: `.torrent` files ([`metainfo::Metainfo`]), the validated piece/file geometry
//!   ([`metainfo::TorrentLayout`]) and magnet links ([`metainfo::magnet`]).
//! - [`peer`]: one peer connection: rate meters, the BEP 6 allowed-fast set.
//! - [`rng`]: the seeded random generator, the protocol's only source of randomness.
//! - [`session`]: the [`session::Session`]: every torrent and connection, one clock, one seed.
//! - [`time`]: [`time::Instant`], the clock reading every input carries.
//! - [`torrent`]: one torrent's state: [`torrent::Bitfield`], [`torrent::Picker`], [`torrent::Choker`].
//! - [`wire`]: the peer wire protocol (BEP 3, 5, 6, 10): handshake, messages, the incremental
//!   frame decoder and the extension handshake.
//!
//! The state machines (peer, torrent, session) follow the quinn-proto shape: getters, `handle_*`
//! inputs, commands, and `poll_output`/`poll_timeout`; the driver drains `poll_output` after every
//! mutation.

#![forbid(unsafe_code)]

pub mod bencode;
pub mod harness;
pub mod io;
pub mod metainfo;
pub mod peer;
pub mod rng;
pub mod session;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod swarm_tests;
pub mod time;
pub mod torrent;
pub mod wire;
