//! `bt-runtime`: what drives the sans-IO [`bt_protocol`] core against real files (and, from issue 4
//! on, real sockets), and the `bt` binary built on it.
//!
//! - [`create`]: building a `.torrent` from files on disk, hashing on all cores.
//! - [`units`]: byte sizes as people read and write them.

pub mod create;
pub mod units;
