//! The common ground of the interop tests in which every peer is found through a tracker: a
//! payload of a few MiB, a fresh opentracker whitelisting its info hash, and a torrent naming that
//! tracker (its HTTP or its UDP URL) as its only one.
//!
//! Invariants: nobody is given a peer address; `bt get` is run without `--peer` and without a
//! DHT bootstrap, so every peer it meets comes from the tracker's answer. Every wait is bounded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::clients::{BtProc, MadeTorrent, Opentracker, gen_files, is_event, make_torrent};
use crate::{TempDir, tree_equal};

/// The payload's files (under `payload/`): odd sizes, a nested folder and a zero-length file, about
/// 3.2 MiB in all (some 200 pieces of 16 KiB).
pub const PAYLOAD_FILES: &[(&str, usize)] = &[
    ("payload/a.bin", 3_000_017),
    ("payload/sub/b.bin", 262_147),
    ("payload/sub/deeper/c.bin", 777),
    ("payload/empty.bin", 0),
];

/// The payload's top folder, the torrent's name.
const PAYLOAD: &str = "payload";

/// How long a seeder may take to show up complete in the tracker's scrape.
pub const REGISTER: Duration = Duration::from_secs(30);

/// A payload under `TMP/src`, an opentracker serving its info hash, and the torrent with that
/// tracker as its only one (16 KiB pieces). The tracker is killed when this is dropped.
pub struct TrackedTorrent {
    /// The tracker, whitelisting [`TrackedTorrent::torrent`]'s info hash.
    pub tracker: Opentracker,
    /// The torrent at `TMP/payload.torrent`.
    pub torrent: MadeTorrent,
    src: PathBuf,
}

impl TrackedTorrent {
    /// Writes [`PAYLOAD_FILES`] under `tmp/src`, starts an opentracker for the payload's info hash
    /// and makes the torrent with `tracker_url(&tracker)` as its only tracker (for example
    /// [`Opentracker::udp_url`]).
    pub fn new(tmp: &TempDir, tracker_url: impl Fn(&Opentracker) -> String) -> TrackedTorrent {
        let src = tmp.path().join("src");
        gen_files(&src, PAYLOAD_FILES);
        let content = src.join(PAYLOAD);
        // The info hash does not depend on the trackers: learn it first for the whitelist.
        let bare = make_torrent(&content, &[], "16K", &tmp.path().join("bare.torrent"));
        let tracker = Opentracker::start(&[&bare.info_hash]);
        let torrent = make_torrent(
            &content,
            &[tracker_url(&tracker)],
            "16K",
            &tmp.path().join("payload.torrent"),
        );
        assert_eq!(
            torrent.info_hash, bare.info_hash,
            "trackers are outside the info dictionary"
        );
        TrackedTorrent {
            tracker,
            torrent,
            src,
        }
    }

    /// The folder that holds the payload's top folder: what a seeder is given as its data folder.
    pub fn src(&self) -> &Path {
        &self.src
    }

    /// Waits (at most [`REGISTER`]) until the tracker counts `seeders` complete peers.
    pub fn wait_for_seeders(&self, seeders: u64) {
        self.tracker
            .wait_for_seeders(&self.torrent.info_hash, seeders, REGISTER);
    }

    /// Asserts that `dl` (a leecher's download folder) holds the payload byte for byte.
    pub fn assert_downloaded(&self, dl: &Path) {
        tree_equal(&self.src.join(PAYLOAD), &dl.join(PAYLOAD));
    }
}

/// Runs `bt get TORRENT -o DL` with no peer given and waits (at most `timeout`) for it to exit 0
/// with a `complete` event; returns it (exited) so its events can be checked.
pub fn bt_get_via_tracker(torrent: &Path, dl: &Path, timeout: Duration) -> BtProc {
    let mut bt = BtProc::get(torrent, dl, &[], &[]);
    bt.wait_success(timeout);
    assert!(
        bt.proc().events().iter().any(|e| is_event(e, "complete")),
        "bt get exited 0 without a complete event\n{}",
        bt.log()
    );
    bt
}

/// Asserts that `bt` connected to `peer` having learned its address from a tracker (a
/// `peer_connected` event with that address and `"source": "tracker"`).
pub fn assert_met_through_tracker(bt: &mut BtProc, peer: SocketAddr) {
    let peer = peer.to_string();
    let met = bt.proc().events().iter().any(|e| {
        is_event(e, "peer_connected")
            && e.get("addr").and_then(Value::as_str) == Some(peer.as_str())
            && e.get("source").and_then(Value::as_str) == Some("tracker")
    });
    assert!(
        met,
        "bt never connected to {peer} as a peer from the tracker\n{}",
        bt.log()
    );
}
