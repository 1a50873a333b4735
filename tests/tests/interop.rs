//! Interop with real clients on loopback that works without bt announcing to a tracker: bt and
//! libtorrent (python3-libtorrent 2.0) exchange a multi-file torrent (nested folders, odd sizes, a
//! zero-length file) in both directions through a peer address given directly, bt downloads from
//! an aria2c seeder, and the harness's own plumbing (opentracker over HTTP and UDP, libtorrent and
//! aria2c finding each other through it) is checked, so a failure in `interop_tracker.rs` points at
//! bt, not at the harness.
//!
//! Every process is killed by its PID when its guard drops; every wait is bounded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bt_tests::{
    Aria2Seeder, BtProc, LtSeeder, MadeTorrent, Opentracker, TempDir, aria2_get, aria2_get_udp,
    field_u64, gen_content, is_event, lt_get, make_torrent, tree_equal,
};

/// The bound on one download.
const TRANSFER: Duration = Duration::from_secs(60);

/// Generates `gen_content`'s files under `tmp/src` and returns that folder (it holds `multi/`).
fn source(tmp: &TempDir) -> PathBuf {
    let src = tmp.path().join("src");
    gen_content(&src);
    src
}

/// A torrent of `src/multi` with 16 KiB pieces and the given trackers, written into `tmp`.
fn multi_torrent(tmp: &TempDir, src: &Path, trackers: &[String], file: &str) -> MadeTorrent {
    make_torrent(&src.join("multi"), trackers, "16K", &tmp.path().join(file))
}

#[test]
fn bt_get_downloads_from_a_libtorrent_seeder() {
    // Proves bt, given libtorrent's address with --peer, downloads a multi-file torrent from it byte
    // for byte (libtorrent as the remote end of handshake, bitfield, requests and pieces).
    let tmp = TempDir::new("lt-to-bt");
    let src = source(&tmp);
    // No tracker: the only peer is the one given.
    let torrent = multi_torrent(&tmp, &src, &[], "multi.torrent");
    let seeder = LtSeeder::start(&torrent.path, &src);
    let dl = tmp.path().join("dl");
    let mut bt = BtProc::get(&torrent.path, &dl, &[seeder.addr()], &[]);
    bt.wait_success(TRANSFER);
    assert!(
        bt.proc().events().iter().any(|e| is_event(e, "complete")),
        "bt get exited 0 without a complete event\n{}",
        bt.log()
    );
    tree_equal(&src.join("multi"), &dl.join("multi"));
    bt.assert_all_from(seeder.addr(), torrent.total_size);
}

#[test]
fn libtorrent_downloads_from_bt_seed() {
    // Proves libtorrent, told to connect to bt's listening address, downloads the whole torrent
    // from `bt seed` byte for byte, and bt counts what it served.
    let tmp = TempDir::new("bt-to-lt");
    let src = source(&tmp);
    let torrent = multi_torrent(&tmp, &src, &[], "multi.torrent");
    let seeder = BtProc::seed(&torrent.path, &src, &[]);
    let dl = tmp.path().join("dl");
    lt_get(&torrent.path, &dl, &[seeder.addr], TRANSFER);
    tree_equal(&src.join("multi"), &dl.join("multi"));
    // bt prints a status line every second: the next one counts the upload.
    let status = seeder.next_status(Duration::from_secs(10));
    assert!(
        field_u64(&status, "uploaded") >= torrent.total_size,
        "bt seed did not count the upload: {status}"
    );
}

#[test]
fn bt_get_downloads_from_an_aria2_seeder() {
    // Proves bt, given aria2c's address with --peer, downloads the torrent from it byte for byte
    // (aria2 as the remote end).
    let tmp = TempDir::new("aria2-to-bt");
    let src = source(&tmp);
    let torrent = multi_torrent(&tmp, &src, &[], "multi.torrent");
    let seeder = Aria2Seeder::start(&torrent.path, &src);
    let dl = tmp.path().join("dl");
    let mut bt = BtProc::get(&torrent.path, &dl, &[seeder.addr()], &[]);
    bt.wait_success(TRANSFER);
    tree_equal(&src.join("multi"), &dl.join("multi"));
    bt.assert_all_from(seeder.addr(), torrent.total_size);
}

#[test]
fn harness_aria2_and_libtorrent_find_a_libtorrent_seeder_through_opentracker_http() {
    // Proves the tracker plumbing the bt tracker tests rely on: a libtorrent seeder announces to
    // opentracker over HTTP and the scrape shows it complete; aria2c and a libtorrent leecher, with
    // no peer given, find it through the tracker and download the torrent byte for byte.
    let tmp = TempDir::new("harness-http");
    let src = source(&tmp);
    let bare = multi_torrent(&tmp, &src, &[], "bare.torrent");
    let tracker = Opentracker::start(&[&bare.info_hash]);
    let torrent = multi_torrent(&tmp, &src, &[tracker.http_url()], "multi.torrent");
    assert_eq!(
        torrent.info_hash, bare.info_hash,
        "trackers are outside the info dictionary"
    );
    assert_eq!(tracker.scrape(&torrent.info_hash), (0, 0));
    let _seeder = LtSeeder::start(&torrent.path, &src);
    tracker.wait_for_seeders(&torrent.info_hash, 1, Duration::from_secs(20));

    let aria = tmp.path().join("aria2");
    aria2_get(&torrent.path, &aria, TRANSFER);
    tree_equal(&src.join("multi"), &aria.join("multi"));

    let lt = tmp.path().join("lt");
    lt_get(&torrent.path, &lt, &[], TRANSFER);
    tree_equal(&src.join("multi"), &lt.join("multi"));
}

#[test]
fn harness_aria2_and_libtorrent_find_a_libtorrent_seeder_through_opentracker_udp() {
    // The same over UDP (BEP 15): the torrent's only tracker is the udp:// URL. aria2 needs its
    // DHT socket for UDP trackers (aria2_get_udp).
    let tmp = TempDir::new("harness-udp");
    let src = source(&tmp);
    let bare = multi_torrent(&tmp, &src, &[], "bare.torrent");
    let tracker = Opentracker::start(&[&bare.info_hash]);
    let torrent = multi_torrent(&tmp, &src, &[tracker.udp_url()], "multi.torrent");
    let _seeder = LtSeeder::start(&torrent.path, &src);
    tracker.wait_for_seeders(&torrent.info_hash, 1, Duration::from_secs(20));

    let aria = tmp.path().join("aria2");
    aria2_get_udp(&torrent.path, &aria, TRANSFER);
    tree_equal(&src.join("multi"), &aria.join("multi"));

    let lt = tmp.path().join("lt");
    lt_get(&torrent.path, &lt, &[], TRANSFER);
    tree_equal(&src.join("multi"), &lt.join("multi"));
}
