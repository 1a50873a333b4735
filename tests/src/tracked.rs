//! The common ground of the interop tests in which every peer is found through a tracker: a
//! multi-file payload of about 1.5 MiB, a fresh opentracker whitelisting its info hash, and a
//! torrent naming that tracker (its HTTP or its UDP URL) as its only one.
//!
//! Invariants: nobody is given a peer address (`bt get` runs without `--peer`), so the peers a
//! client dials come from the tracker's answer; [`assert_met_through_tracker`] checks that from
//! bt's own `peer_connected` events. Every wait is bounded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::clients::{BtProc, MadeTorrent, Opentracker, field_u64, is_event, make_torrent};
use crate::{TempDir, gen_content, tree_equal};

/// The payload's top folder, the torrent's name: [`gen_content`]'s `multi/` (about 1.5 MiB of odd
/// sizes, nested folders, a one-byte and a zero-length file).
const PAYLOAD: &str = "multi";

/// How long a seeder may take to show up complete in the tracker's scrape.
pub const REGISTER: Duration = Duration::from_secs(30);

/// A payload under `TMP/src`, an opentracker serving its info hash, and the torrent with that
/// tracker as its only one (16 KiB pieces). The tracker is killed when this is dropped.
pub struct TrackedTorrent {
    /// The tracker, whitelisting [`TrackedTorrent::torrent`]'s info hash.
    pub tracker: Opentracker,
    /// The torrent at `TMP/multi.torrent`.
    pub torrent: MadeTorrent,
    src: PathBuf,
}

impl TrackedTorrent {
    /// Writes [`gen_content`]'s files under `tmp/src`, starts an opentracker for the payload's
    /// info hash and makes the torrent with `tracker_url(&tracker)` as its only tracker (for
    /// example [`Opentracker::udp_url`]).
    pub fn new(tmp: &TempDir, tracker_url: impl Fn(&Opentracker) -> String) -> TrackedTorrent {
        let src = tmp.path().join("src");
        gen_content(&src);
        let content = src.join(PAYLOAD);
        // The info hash does not depend on the trackers: learn it first for the whitelist.
        let bare = make_torrent(&content, &[], "16K", &tmp.path().join("bare.torrent"));
        let tracker = Opentracker::start(&[&bare.info_hash]);
        let torrent = make_torrent(
            &content,
            &[tracker_url(&tracker)],
            "16K",
            &tmp.path().join("multi.torrent"),
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

/// Makes a [`TrackedTorrent`] in `tmp` behind `tracker_url`, starts `bt seed` on it and waits
/// until the tracker counts it as a seeder (it announced itself complete there); then runs
/// `leech(torrent, dl)`, a client that downloads the torrent into `dl` (`tmp/dl`) with no peer
/// given and returns once it is done; then asserts the download is byte for byte the payload
/// and that `bt seed` counts at least the whole payload as uploaded on its next status line (it
/// prints one a second).
pub fn bt_seed_serves(
    tmp: &TempDir,
    tracker_url: impl Fn(&Opentracker) -> String,
    leech: impl FnOnce(&MadeTorrent, &Path),
) {
    let swarm = TrackedTorrent::new(tmp, tracker_url);
    let seeder = BtProc::seed(&swarm.torrent.path, swarm.src(), &[]);
    swarm.wait_for_seeders(1);
    let dl = tmp.path().join("dl");
    leech(&swarm.torrent, &dl);
    swarm.assert_downloaded(&dl);
    let status = seeder.next_status(Duration::from_secs(10));
    assert!(
        field_u64(&status, "uploaded") >= swarm.torrent.total_size,
        "bt seed did not count the upload: {status}\n{}",
        seeder.log()
    );
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
