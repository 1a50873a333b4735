//! `bt-runtime`: what drives the sans-IO [`bt_protocol`] core against real files (and, from issue 4
//! on, real sockets), and the `bt` binary built on it.
//!
//! - [`create`]: building a `.torrent` from files on disk, hashing on all cores.
//! - [`storage`]: where a torrent's pieces live; for now the parallel piece hasher.
//! - [`units`]: byte sizes as people read and write them.

pub mod create;
pub mod storage;
pub mod units;
