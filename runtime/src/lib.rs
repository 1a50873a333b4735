//! `bt-runtime`: what drives the sans-IO [`bt_protocol`] core against real files and sockets, and
//! the `bt` binary built on it.
//!
//! - [`create`]: building a `.torrent` from files on disk, hashing on all cores.
//! - [`disk`]: the disk threads, which hash pieces as they are written.
//! - [`driver`]: runs the protocol session on tokio: sockets, timers and disk work.
//! - [`net`]: the sockets the driver uses ([`net::TokioNet`] for real ones).
//! - [`resume`]: the fast-resume state file, which vouches for verified pieces across restarts.
//! - [`select`]: which files to download (`--select`, `--only`, a magnet's `so=`).
//! - [`serve`]: the HTTP server of `--serve`, streaming a torrent's files as they are verified.
//! - [`storage`]: the [`storage::Storage`] trait and [`storage::FsStorage`], a torrent's files in a
//!   download folder (positional I/O, bounded open files, parallel verification).
//! - [`tls`]: the TLS client for HTTPS trackers (rustls with ring, webpki roots).
//! - [`tracker`]: one announce to an HTTP or UDP tracker over [`net::Net`].
//! - [`trackerd`]: serving a tracker (`bt tracker`) over [`net::Net`], HTTP and UDP.
//! - [`udp`]: the client's UDP socket, shared by the DHT and uTP.
//! - [`units`]: byte sizes as people read and write them.

pub mod create;
pub mod dht;
pub mod disk;
pub mod driver;
pub mod net;
pub mod resume;
pub mod select;
pub mod serve;
pub mod storage;
pub mod tls;
pub mod tracker;
pub mod trackerd;
pub mod udp;
pub mod units;
