//! Interop through a real tracker (opentracker on loopback, HTTP and UDP): bt finds libtorrent
//! seeders through it, aria2c and libtorrent find `bt seed` through it, and bt leechers find each
//! other through it. No peer address is given to bt in any of these: everything it meets comes
//! from its announces.
//!
//! The harness they use is proven by `interop.rs` (libtorrent and aria2c through the same
//! tracker), so a failure here points at bt.
//! Every process is killed by its PID when its guard drops; every wait is bounded.

use std::time::Duration;

use bt_tests::tracked::{TrackedTorrent, bt_get_via_tracker, bt_seed_serves};
use bt_tests::{
    BtProc, LtSeeder, Opentracker, SWARM_FILES, SlowRelay, TempDir, aria2_get, bt_swarm, field_u64,
    gen_files, lt_get, make_torrent, tree_equal,
};

/// The bound on one download.
const TRANSFER: Duration = Duration::from_secs(60);

#[test]
fn bt_get_finds_a_libtorrent_seeder_through_opentracker_http() {
    // Proves bt announces over HTTP, reads the peer list, and downloads a multi-file torrent from
    // the libtorrent seeder it learned of, byte for byte.
    let tmp = TempDir::new("tracker-http-lt-to-bt");
    let swarm = TrackedTorrent::new(&tmp, Opentracker::http_url);
    let _seeder = LtSeeder::start(&swarm.torrent.path, swarm.src());
    swarm.wait_for_seeders(1);
    let dl = tmp.path().join("dl");
    bt_get_via_tracker(&swarm.torrent.path, &dl, TRANSFER);
    swarm.assert_downloaded(&dl);
}

#[test]
fn bt_get_finds_a_libtorrent_seeder_through_opentracker_udp() {
    // The same with the torrent's only tracker a udp:// URL (BEP 15 connect and announce).
    let tmp = TempDir::new("tracker-udp-lt-to-bt");
    let swarm = TrackedTorrent::new(&tmp, Opentracker::udp_url);
    let _seeder = LtSeeder::start(&swarm.torrent.path, swarm.src());
    swarm.wait_for_seeders(1);
    let dl = tmp.path().join("dl");
    bt_get_via_tracker(&swarm.torrent.path, &dl, TRANSFER);
    swarm.assert_downloaded(&dl);
}

#[test]
fn aria2_downloads_from_bt_seed_found_through_opentracker() {
    // Proves `bt seed` announces itself complete over HTTP (the scrape counts it as a seeder) at
    // the port it listens on, and aria2c, given nothing but the torrent, downloads from it byte for
    // byte.
    let tmp = TempDir::new("tracker-bt-to-aria2");
    bt_seed_serves(&tmp, Opentracker::http_url, |torrent, dl| {
        aria2_get(&torrent.path, dl, TRANSFER)
    });
}

#[test]
fn libtorrent_downloads_from_bt_seed_found_through_opentracker() {
    // The same with a libtorrent leecher.
    let tmp = TempDir::new("tracker-bt-to-lt");
    bt_seed_serves(&tmp, Opentracker::http_url, |torrent, dl| {
        lt_get(&torrent.path, dl, &[], TRANSFER);
    });
}

#[test]
fn bt_swarm_through_opentracker_leechers_serve_each_other() {
    // Proves a bt swarm forms through the tracker: three `bt get --seed` started together (about
    // 8 MiB in 16 KiB pieces) find each other through opentracker alone, while the seeder, which
    // announces nowhere (its torrent has no tracker; same info hash), is reachable only through a
    // relay passing 512 KiB/s per connection (so it gives well under two of the three copies the
    // leechers need). All three end byte-equal to the source, every leecher uploaded something,
    // and together at least the torrent's size.
    let tmp = TempDir::new("tracker-swarm");
    let src = tmp.path().join("src");
    gen_files(&src, SWARM_FILES);
    let content = src.join("swarm");
    let bare = make_torrent(&content, &[], "16K", &tmp.path().join("bare.torrent"));
    let tracker = Opentracker::start(&[&bare.info_hash]);
    let torrent = make_torrent(
        &content,
        &[tracker.http_url()],
        "16K",
        &tmp.path().join("swarm.torrent"),
    );
    assert_eq!(torrent.info_hash, bare.info_hash);
    let seeder = BtProc::seed(&bare.path, &src, &[]);
    let relay = SlowRelay::start(seeder.addr, 512 << 10);
    let statuses = bt_swarm(&torrent, relay.addr(), tmp.path(), 3, false, TRANSFER);
    for i in 0..statuses.len() {
        tree_equal(&content, &tmp.path().join(format!("dl{i}/swarm")));
    }
    let uploaded: Vec<u64> = statuses.iter().map(|s| field_u64(s, "uploaded")).collect();
    assert!(
        uploaded.iter().all(|&u| u > 0) && uploaded.iter().sum::<u64>() >= torrent.total_size,
        "leechers uploaded {uploaded:?} of a {}-byte torrent; their last status lines: {statuses:?}",
        torrent.total_size
    );
}
