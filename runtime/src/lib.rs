//! `bt-runtime`: what drives the sans-IO [`bt_protocol`] core against real files (and, from issue 4
//! on, real sockets), and the `bt` binary built on it.
//!
//! - [`create`]: building a `.torrent` from files on disk, hashing on all cores.
//! - [`driver`]: runs the protocol session on tokio: sockets, timers and disk work.
//! - [`net`]: the sockets the driver uses ([`net::TokioNet`] for real ones).
//! - [`units`]: byte sizes as people read and write them.

pub mod create;
pub mod driver;
pub mod net;
pub mod units;
