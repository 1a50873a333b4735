//! Magnet links end to end on loopback: `bt get 'magnet:?xt=...&x.pe=...'` fetches the
//! metadata (BEP 9 over BEP 10) and then the data, from `bt seed` and from a python3-libtorrent
//! seeder, with no tracker; libtorrent fetches metadata and data from `bt seed` by magnet; a second
//! `bt get` of the same magnet goes on from the `.torrent` the first saved beside the data.
//!
//! Each test prints how long the metadata took (wall seconds), the figure the closing note
//! reports. Every process is killed by its PID when its guard drops; every wait is bounded.

use std::path::Path;
use std::time::{Duration, Instant};

use bt_protocol::metainfo::Metainfo;
use bt_tests::{
    BtProc, LtSeeder, MadeTorrent, TempDir, field_u64, is_event, lt_get, multi_source, tree_equal,
};
use serde_json::Value;

/// The bound on one download.
const TRANSFER: Duration = Duration::from_secs(60);

/// A magnet link for `torrent` with one `x.pe` peer.
fn magnet(torrent: &MadeTorrent, peer: std::net::SocketAddr) -> String {
    format!(
        "magnet:?xt=urn:btih:{}&dn={}&x.pe={peer}",
        torrent.info_hash, torrent.name
    )
}

/// The `metadata_received` event of a `bt get`, with its wall time since the start.
fn metadata_event(bt: &mut BtProc) -> Value {
    let events = bt.proc().events();
    events
        .into_iter()
        .find(|e| is_event(e, "metadata_received"))
        .unwrap_or_else(|| panic!("no metadata_received event\n{}", bt.log()))
}

/// Checks the `.torrent` a magnet download saved beside the data: same info hash.
fn assert_saved_torrent(dir: &Path, torrent: &MadeTorrent) {
    let saved = dir.join(format!("{}.torrent", torrent.name));
    let bytes = std::fs::read(&saved)
        .unwrap_or_else(|e| panic!("no saved torrent {}: {e}", saved.display()));
    let meta = Metainfo::from_bytes(&bytes).expect("the saved torrent parses");
    assert_eq!(meta.info_hash.to_hex(), torrent.info_hash);
}

#[test]
fn bt_get_magnet_from_bt_seed_through_x_pe_then_resumes_from_the_saved_torrent() {
    // Proves a magnet with only an x.pe peer resolves against bt's own seeder (which serves its
    // metadata), downloads byte for byte, saves the .torrent beside the data, and that a second
    // run of the same magnet finds that torrent and its verified data instead of fetching again.
    let tmp = TempDir::new("magnet-bt");
    let (src, torrent) = multi_source(&tmp);
    let seeder = BtProc::seed(&torrent.path, &src, &[]);
    let dl = tmp.path().join("dl");
    let link = magnet(&torrent, seeder.addr);
    let start = Instant::now();
    let mut bt = BtProc::get(Path::new(&link), &dl, &[], &[]);
    bt.wait_success(TRANSFER);
    let wall = start.elapsed();
    let ev = metadata_event(&mut bt);
    assert_eq!(field_u64(&ev, "pieces"), torrent.pieces);
    assert_eq!(field_u64(&ev, "total_bytes"), torrent.total_size);
    eprintln!(
        "magnet from bt seed: metadata after {} s, whole download {:.2} s",
        ev["after_s"],
        wall.as_secs_f64()
    );
    assert!(
        bt.proc().events().iter().any(|e| is_event(e, "complete")),
        "bt get exited 0 without a complete event\n{}",
        bt.log()
    );
    tree_equal(&src.join("multi"), &dl.join("multi"));
    assert_saved_torrent(&dl, &torrent);
    bt.assert_all_from(seeder.addr, torrent.total_size);

    // Again, with the seeder gone: the saved torrent and the resume data make it complete at once.
    drop(seeder);
    let mut again = BtProc::get(Path::new(&link), &dl, &[], &[]);
    again.wait_success(TRANSFER);
    let events = again.proc().events();
    let checked = events
        .iter()
        .find(|e| is_event(e, "checked"))
        .unwrap_or_else(|| panic!("the second run checked nothing\n{}", again.log()));
    assert_eq!(field_u64(checked, "have"), torrent.pieces, "{checked}");
    assert!(
        !events.iter().any(|e| is_event(e, "metadata_received")),
        "the second run fetched the metadata again\n{}",
        again.log()
    );
}

#[test]
fn bt_get_magnet_from_a_libtorrent_seeder_through_x_pe() {
    // Proves bt fetches metadata and data from libtorrent (its ut_metadata and extension
    // handshake as the remote end) given only the magnet's x.pe.
    let tmp = TempDir::new("magnet-lt-to-bt");
    let (src, torrent) = multi_source(&tmp);
    let seeder = LtSeeder::start(&torrent.path, &src);
    let dl = tmp.path().join("dl");
    let link = magnet(&torrent, seeder.addr());
    let start = Instant::now();
    let mut bt = BtProc::get(Path::new(&link), &dl, &[], &[]);
    bt.wait_success(TRANSFER);
    let ev = metadata_event(&mut bt);
    eprintln!(
        "magnet from libtorrent: metadata after {} s, whole download {:.2} s",
        ev["after_s"],
        start.elapsed().as_secs_f64()
    );
    tree_equal(&src.join("multi"), &dl.join("multi"));
    assert_saved_torrent(&dl, &torrent);
    bt.assert_all_from(seeder.addr(), torrent.total_size);
}

#[test]
fn libtorrent_gets_a_magnet_from_bt_seed() {
    // Proves bt serves its metadata (BEP 9) to libtorrent, which has only the magnet and bt's
    // address, and then the data byte for byte.
    let tmp = TempDir::new("magnet-bt-to-lt");
    let (src, torrent) = multi_source(&tmp);
    let seeder = BtProc::seed(&torrent.path, &src, &[]);
    let dl = tmp.path().join("dl");
    let link = format!("magnet:?xt=urn:btih:{}", torrent.info_hash);
    let events = lt_get(Path::new(&link), &dl, &[seeder.addr], TRANSFER);
    let ev = events
        .iter()
        .find(|e| is_event(e, "metadata_received"))
        .expect("libtorrent got the metadata");
    eprintln!(
        "libtorrent, magnet from bt seed: metadata after {} s",
        ev["after_s"]
    );
    tree_equal(&src.join("multi"), &dl.join("multi"));
}

#[test]
fn a_bare_magnet_with_the_dht_off_is_refused_at_once() {
    // Proves a magnet with no tracker and no x.pe, with --no-dht and no --peer, is refused in one
    // line before anything is created: there is nowhere to find peers.
    let tmp = TempDir::new("magnet-nowhere");
    let dl = tmp.path().join("dl");
    let link = format!("magnet:?xt=urn:btih:{}", "ab".repeat(20));
    let out = bt_tests::run_bt_in(
        None,
        &["get", &link, "-o", dl.to_str().expect("UTF-8"), "--no-dht"],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nowhere to find peers"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!dl.exists(), "bt created {} anyway", dl.display());
}
