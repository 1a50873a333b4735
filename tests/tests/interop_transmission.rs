//! Interop with Transmission (`transmission-cli` 3.00) as a seeder: `bt get` learns its address
//! from opentracker and dials it (Transmission never dials loopback peers itself).
//!
//! No peer address is given to anyone. Every process is killed by its PID when its guard drops;
//! every wait is bounded.

use std::time::Duration;

use bt_tests::tracked::{TrackedTorrent, assert_met_through_tracker, bt_get_via_tracker};
use bt_tests::transmission::TransmissionSeeder;
use bt_tests::{Opentracker, TempDir};

/// The bound on the download: Transmission rechokes every 10 s, so the first unchoke may take that
/// long.
const TRANSFER: Duration = Duration::from_secs(90);

#[test]
fn bt_get_downloads_from_a_transmission_seeder_found_through_opentracker() {
    // Proves bt downloads the payload byte for byte from a Transmission seeder it learned of from
    // the tracker, and Transmission's share ratio shows it served all of it.
    let tmp = TempDir::new("transmission-to-bt");
    let swarm = TrackedTorrent::new(&tmp, Opentracker::http_url);
    let work = tmp.path().join("transmission");
    let seeder = TransmissionSeeder::start(&swarm.torrent.path, swarm.src(), &work);
    swarm.wait_for_seeders(1);
    let dl = tmp.path().join("dl");
    let mut bt = bt_get_via_tracker(&swarm.torrent.path, &dl, TRANSFER);
    swarm.assert_downloaded(&dl);
    assert_met_through_tracker(&mut bt, seeder.addr());
    seeder.wait_ratio(1.0, Duration::from_secs(10));
}
