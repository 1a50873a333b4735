//! The DHT end to end on loopback: `bt get` of a bare magnet link (no tracker, no
//! `x.pe`) finds its seeder through the DHT alone, libtorrent's DHT node being the bootstrap:
//! a python3-libtorrent seeder, and `bt seed` (bt's node announcing, bt's node looking up). The
//! routing table is saved, and a second run whose only bootstrap node is dead finds the swarm
//! from it.
//!
//! Each test prints how long the metadata took (wall seconds). Every process is killed by its
//! PID when its guard drops; every wait is bounded.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bt_tests::{
    BtProc, LtDhtNode, LtSeeder, MadeTorrent, TempDir, field_u64, is_event, multi_source,
    tree_equal,
};
use serde_json::Value;

/// The bound on one download, DHT lookups included.
const TRANSFER: Duration = Duration::from_secs(90);

/// `bt get MAGNET` with only the DHT to find peers, started from `bootstrap`.
fn bt_get_through_dht(
    tmp: &TempDir,
    torrent: &MadeTorrent,
    bootstrap: std::net::SocketAddr,
) -> (BtProc, PathBuf, Duration) {
    let dl = tmp.path().join("dl");
    let state = tmp.path().join("dht.dat");
    let link = format!("magnet:?xt=urn:btih:{}", torrent.info_hash);
    let boot = bootstrap.to_string();
    let start = Instant::now();
    let mut bt = BtProc::get(
        Path::new(&link),
        &dl,
        &[],
        &[
            "--dht-bootstrap",
            &boot,
            "--dht-state",
            state.to_str().expect("UTF-8 temp path"),
            "-v",
        ],
    );
    bt.wait_success(TRANSFER);
    let wall = start.elapsed();
    assert!(
        state.is_file(),
        "bt did not save its DHT routing table\n{}",
        bt.log()
    );
    (bt, dl, wall)
}

fn first(bt: &mut BtProc, name: &str) -> Value {
    bt.proc()
        .events()
        .into_iter()
        .find(|e| is_event(e, name))
        .unwrap_or_else(|| panic!("no {name} event\n{}", bt.log()))
}

#[test]
fn bt_get_magnet_finds_a_libtorrent_seeder_through_the_dht() {
    // Proves bt's DHT node bootstraps from libtorrent's, looks the info hash up, finds the
    // libtorrent seeder that announced itself there, and fetches metadata and data from it.
    let tmp = TempDir::new("dht-lt");
    let (src, torrent) = multi_source(&tmp);
    let node = LtDhtNode::start();
    let seeder = LtSeeder::start_with_dht(&torrent.path, &src, node.addr());
    let (mut bt, dl, wall) = bt_get_through_dht(&tmp, &torrent, node.addr());
    let meta = first(&mut bt, "metadata_received");
    let connected = bt
        .proc()
        .events()
        .into_iter()
        .filter(|e| is_event(e, "peer_connected"))
        .collect::<Vec<_>>();
    assert!(
        connected
            .iter()
            .any(|e| e["source"] == "dht" && e["addr"] == seeder.addr().to_string()),
        "bt did not reach the seeder through the DHT: {connected:?}\n{}",
        bt.log()
    );
    eprintln!(
        "DHT magnet from libtorrent: metadata after {} s, whole download {:.2} s",
        meta["after_s"],
        wall.as_secs_f64()
    );
    tree_equal(&src.join("multi"), &dl.join("multi"));

    // Again into a new folder, with a bootstrap node that does not exist: only the routing table
    // the first run saved knows where the DHT is.
    let state = tmp.path().join("dht.dat");
    let again_dl = tmp.path().join("again");
    let link = format!("magnet:?xt=urn:btih:{}", torrent.info_hash);
    let mut again = BtProc::get(
        Path::new(&link),
        &again_dl,
        &[],
        &[
            "--dht-bootstrap",
            "127.0.0.1:1",
            "--dht-state",
            state.to_str().expect("UTF-8 temp path"),
            "-v",
        ],
    );
    again.wait_success(TRANSFER);
    first(&mut again, "metadata_received");
    tree_equal(&src.join("multi"), &again_dl.join("multi"));
}

#[test]
fn bt_get_magnet_finds_bt_seed_through_the_dht() {
    // Proves bt's node announces a torrent (bt seed) and another bt's node finds it (bt get), both
    // started from libtorrent's node: announce_peer with a token and get_peers values, bt to bt.
    let tmp = TempDir::new("dht-bt");
    let (src, torrent) = multi_source(&tmp);
    let node = LtDhtNode::start();
    let boot = node.addr().to_string();
    let seed_state = tmp.path().join("seed-dht.dat");
    let seeder = BtProc::seed(
        &torrent.path,
        &src,
        &[
            "--dht-bootstrap",
            &boot,
            "--dht-state",
            seed_state.to_str().expect("UTF-8 temp path"),
        ],
    );
    let announced = seeder.wait_for(|e| is_event(e, "dht_announced"), TRANSFER);
    assert!(field_u64(&announced, "announced_to") >= 1, "{announced}");
    let (mut bt, dl, wall) = bt_get_through_dht(&tmp, &torrent, node.addr());
    let meta = first(&mut bt, "metadata_received");
    eprintln!(
        "DHT magnet from bt seed: metadata after {} s, whole download {:.2} s",
        meta["after_s"],
        wall.as_secs_f64()
    );
    tree_equal(&src.join("multi"), &dl.join("multi"));
}
