//! Interop with qBittorrent (`qbittorrent-nox` 4.5, libtorrent 2.0 inside) in both directions,
//! peers found through opentracker over HTTP, qBittorrent driven through its Web API: it downloads
//! from `bt seed`, and it seeds to `bt get`.
//!
//! No peer address is given to anyone. Every process is killed by its PID when its guard drops;
//! every wait is bounded.

use std::time::Duration;

use bt_tests::qbittorrent::{Qbittorrent, is_seeding};
use bt_tests::tracked::{
    TrackedTorrent, assert_met_through_tracker, bt_get_via_tracker, bt_seed_serves,
};
use bt_tests::{Opentracker, TempDir, field_u64};

/// The bound on one download.
const TRANSFER: Duration = Duration::from_secs(60);

/// How long qBittorrent's counters may lag behind the transfer (it refreshes them every ~1.5 s).
const STATS: Duration = Duration::from_secs(15);

#[test]
fn qbittorrent_downloads_from_bt_seed_found_through_opentracker() {
    // Proves qBittorrent, given nothing but the torrent, finds `bt seed` through the tracker and
    // downloads the payload byte for byte from it, and bt counts what it served.
    let tmp = TempDir::new("qbt-bt-to-qbt");
    let qbt = Qbittorrent::start(&tmp.path().join("qbt-profile"));
    bt_seed_serves(&tmp, Opentracker::http_url, |torrent, dl| {
        qbt.add(&torrent.path, dl, false);
        qbt.wait_torrent(&torrent.info_hash, "complete", is_seeding, TRANSFER);
    });
}

#[test]
fn bt_get_downloads_from_a_qbittorrent_seeder_found_through_opentracker() {
    // Proves bt downloads the payload byte for byte from a qBittorrent seeder it learned of from
    // the tracker, and qBittorrent's own upload counter shows it served all of it.
    let tmp = TempDir::new("qbt-qbt-to-bt");
    let swarm = TrackedTorrent::new(&tmp, Opentracker::http_url);
    let qbt = Qbittorrent::start(&tmp.path().join("qbt-profile"));
    qbt.add(&swarm.torrent.path, swarm.src(), true);
    qbt.wait_torrent(&swarm.torrent.info_hash, "seeding", is_seeding, TRANSFER);
    swarm.wait_for_seeders(1);
    let dl = tmp.path().join("dl");
    let mut bt = bt_get_via_tracker(&swarm.torrent.path, &dl, TRANSFER);
    swarm.assert_downloaded(&dl);
    assert_met_through_tracker(&mut bt, qbt.addr());
    let size = swarm.torrent.total_size;
    qbt.wait_torrent(
        &swarm.torrent.info_hash,
        "counting the whole payload uploaded",
        |i| field_u64(i, "uploaded") >= size,
        STATS,
    );
}
