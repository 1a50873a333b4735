//! Interop through opentracker's UDP side (BEP 15), with the HTTP side as the control: bt finds an
//! aria2c seeder through an HTTP and through a UDP tracker, and `bt seed`, whose torrent's only
//! tracker is a `udp://` URL, announces itself there and serves aria2c and libtorrent, which find
//! it through that tracker alone.
//!
//! No peer address is given to anyone: the tracker is the only way peers meet. Every process is
//! killed by its PID when its guard drops; every wait is bounded.

use std::time::Duration;

use bt_tests::tracked::{
    TrackedTorrent, assert_met_through_tracker, bt_get_via_tracker, bt_seed_serves,
};
use bt_tests::{Aria2Seeder, Opentracker, TempDir, aria2_get_udp, lt_get};

/// The bound on one download.
const TRANSFER: Duration = Duration::from_secs(60);

/// aria2c seeds the payload (with its DHT socket open for `udp`), `bt get` downloads it with no
/// peer given, and it must have met aria2 through the tracker.
fn bt_get_from_aria2(name: &str, tracker_url: impl Fn(&Opentracker) -> String, udp: bool) {
    let tmp = TempDir::new(name);
    let swarm = TrackedTorrent::new(&tmp, tracker_url);
    let seeder = if udp {
        Aria2Seeder::start_udp(&swarm.torrent.path, swarm.src())
    } else {
        Aria2Seeder::start(&swarm.torrent.path, swarm.src())
    };
    swarm.wait_for_seeders(1);
    let dl = tmp.path().join("dl");
    let mut bt = bt_get_via_tracker(&swarm.torrent.path, &dl, TRANSFER);
    swarm.assert_downloaded(&dl);
    assert_met_through_tracker(&mut bt, seeder.addr());
}

#[test]
fn bt_get_finds_an_aria2_seeder_through_opentracker_http() {
    // Proves bt downloads the payload byte for byte from an aria2c seeder it learned of from an
    // HTTP tracker's answer.
    bt_get_from_aria2("udp-aria2-to-bt-http", Opentracker::http_url, false);
}

#[test]
fn bt_get_finds_an_aria2_seeder_through_opentracker_udp() {
    // Proves the same through a UDP tracker: aria2 announces over UDP, bt reads the peer from a
    // UDP announce answer.
    bt_get_from_aria2("udp-aria2-to-bt-udp", Opentracker::udp_url, true);
}

#[test]
fn aria2_downloads_from_bt_seed_announcing_over_udp() {
    // Proves `bt seed` announces itself complete over UDP at the port it listens on, and aria2c,
    // given nothing but the torrent, finds it there and downloads the payload byte for byte from
    // it, and bt counts what it served.
    let tmp = TempDir::new("udp-bt-to-aria2");
    bt_seed_serves(&tmp, Opentracker::udp_url, |torrent, dl| {
        aria2_get_udp(&torrent.path, dl, TRANSFER)
    });
}

#[test]
fn libtorrent_downloads_from_bt_seed_announcing_over_udp() {
    // The same with a libtorrent leecher.
    let tmp = TempDir::new("udp-bt-to-lt");
    bt_seed_serves(&tmp, Opentracker::udp_url, |torrent, dl| {
        lt_get(&torrent.path, dl, &[], TRANSFER);
    });
}
