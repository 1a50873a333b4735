//! `bt-protocol`: the sans-IO core of bt.
//!
//! Everything here is pure: bytes and time come in as arguments, decisions come out as values. No
//! module reads a clock, touches a file or socket, or draws global randomness (`protocol/clippy.toml`
//! enforces the clock and RNG part; `cargo tree -p bt-protocol` shows no I/O crate).
//!
//! - [`bandwidth`]: rate limits: token buckets over payload bytes and the division of a global
//!   limit among torrents.
//! - [`bencode`]: decoding bencode as real clients do (lenient where libtorrent is, strict where the
//!   meaning would be ambiguous) and encoding it canonically.
//! - [`client`]: the [`client::Client`]: every torrent, the peers to dial, announces, the DHT;
//!   what a driver runs.
//! - [`content`]: generated torrents: content made from a seed, its piece hashes and info
//!   dictionary, shared by the harness, the runtime's in-memory storage and the simulator.
//! - [`dht`]: the mainline DHT (BEP 5, 32): the KRPC codec ([`dht::Message`]), the routing table,
//!   write tokens, iterative lookups, the peer store and the node machine ([`dht::Dht`]).
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
//! - [`tracker`]: trackers: announce URLs, the HTTP (BEP 3, 23, 7) and UDP (BEP 15) announce
//!   clients, and the [`tracker::Announcer`] that picks when and to which tier's URL (BEP 12).
//! - [`utp`]: uTP (BEP 29): the packet codec, one connection ([`utp::Socket`]) with LEDBAT
//!   congestion control, and the multiplexer ([`utp::Mux`]) that shares one UDP socket.
//! - [`wire`]: the peer wire protocol (BEP 3, 5, 6, 10): handshake, messages, the incremental
//!   frame decoder and the extension handshake.
//!
//! # The driver contract
//!
//! The state machines ([`peer::PeerConn`], [`torrent::Torrent`], [`session::Session`] and, on top,
//! [`client::Client`], the one a driver runs) follow the quinn-proto shape: getters, `handle_*`
//! inputs (bytes, disk answers, datagrams, tracker answers, time), commands, and `poll_*` outputs.
//! After every input or command the driver drains `poll_output` until `None`, then reads
//! `poll_timeout` and wakes at that instant or at the next input, whichever is first. Early or
//! repeated `handle_timeout(now)` calls are harmless. Time is always an argument
//! ([`time::Instant`]) and randomness comes from the one seed given to [`client::Client::new`].
//!
//! The canonical loop (the tokio runtime and the simulator both follow it):
//!
//! ```
//! use bt_protocol::client::{Client, ClientConfig, Output};
//! use bt_protocol::time::Instant;
//!
//! let mut client = Client::new(ClientConfig::default(), 42);
//! let mut now = Instant::ZERO;
//! for _round in 0..3 {
//!     // 1. Drain every output the last input or command produced.
//!     while let Some(output) = client.poll_output() {
//!         match output {
//!             Output::Connect { .. } => { /* dial; then `handle_connected` or `handle_connect_failed` */ }
//!             Output::Transmit { conn, bytes } => {
//!                 // Write `bytes` to the socket; once written:
//!                 client.handle_sent(now, conn, bytes.len());
//!             }
//!             Output::Close { .. } => { /* close the socket (or give up the connect) */ }
//!             Output::Disk { .. } => { /* do it (off the driver task), then `handle_disk` */ }
//!             Output::Datagram { .. } => { /* send it from the UDP socket (DHT and uTP) */ }
//!             Output::Announce { .. } => { /* run the exchange, then `handle_announce` */ }
//!             Output::Event(_) => { /* tell the user */ }
//!         }
//!     }
//!     // 2. Sleep until the next deadline or input (sockets: `handle_bytes`, `accept`, ...).
//!     match client.poll_timeout() {
//!         Some(deadline) => {
//!             now = now.max(deadline);
//!             client.handle_timeout(now);
//!         }
//!         None => break, // nothing scheduled: wait for input only
//!     }
//! }
//! ```

#![forbid(unsafe_code)]

mod addr_key;
pub mod bandwidth;
#[cfg(test)]
mod bandwidth_tests;
pub mod bencode;
pub mod client;
pub mod content;
pub mod dht;
pub mod harness;
pub mod io;
pub mod metainfo;
pub mod mse;
#[cfg(test)]
mod mutation;
pub mod peer;
pub mod rng;
pub mod session;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod swarm_tests;
pub mod time;
pub mod torrent;
pub mod tracker;
pub mod utp;
pub mod wire;
