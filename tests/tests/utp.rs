//! uTP (BEP 29) on real sockets: bt and libtorrent exchange a multi-file torrent over uTP alone
//! (libtorrent with TCP off both ways), libtorrent with its default settings reaches `bt seed`
//! over uTP, two bt processes talk uTP under required encryption, and `--no-utp` keeps bt off
//! uTP. Which transport carried a connection is read from bt's `peer_connected` events and from
//! libtorrent's peer flags (`utp_socket`).
//!
//! Every process is killed by its PID when its guard drops; every wait is bounded.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bt_tests::{BtProc, LtSeeder, Proc, TempDir, is_event, lt_leecher, multi_source, tree_equal};
use serde_json::Value;

/// The bound on one download.
const TRANSFER: Duration = Duration::from_secs(60);

/// bt's `peer_connected` events for `addr` (any address when `None`).
fn bt_connections(events: &[Value], addr: Option<SocketAddr>) -> Vec<Value> {
    events
        .iter()
        .filter(|e| is_event(e, "peer_connected"))
        .filter(|e| addr.is_none_or(|a| e["addr"].as_str() == Some(a.to_string().as_str())))
        .cloned()
        .collect()
}

/// Asserts every connection bt reported is uTP, and that there was one.
fn assert_bt_used_utp(events: &[Value], addr: Option<SocketAddr>, log: &str) {
    let connections = bt_connections(events, addr);
    assert!(!connections.is_empty(), "bt reported no connection\n{log}");
    for c in &connections {
        assert_eq!(
            c["transport"], "utp",
            "a connection not over uTP: {c}\n{log}"
        );
    }
}

/// Asserts libtorrent's `peer` events (from its peer list) and `incoming_connection` events
/// (from its alerts: a short transfer may end between two looks at the peer list) show a
/// connection, and every one is uTP.
fn assert_lt_used_utp(lt: &Proc) {
    // It prints what it saw within a tenth of a second: wait for that.
    let seen = |e: &Value| is_event(e, "peer") || is_event(e, "incoming_connection");
    lt.wait_for(seen, Duration::from_secs(10));
    let peers: Vec<Value> = lt
        .events()
        .into_iter()
        .filter(|e| is_event(e, "peer") || is_event(e, "incoming_connection"))
        .collect();
    assert!(!peers.is_empty(), "libtorrent listed no peer\n{}", lt.log());
    for p in &peers {
        assert_eq!(
            p["utp"],
            true,
            "libtorrent has a non-uTP peer: {p}\n{}",
            lt.log()
        );
    }
}

/// Runs a libtorrent leecher of `torrent` into `dl` over `transport`, dialling `peer`, until
/// it finishes (at most [`TRANSFER`]); returns its process for its events.
fn lt_download(torrent: &Path, dl: &Path, peer: SocketAddr, transport: &str) -> Proc {
    let own = (TRANSFER - Duration::from_secs(2)).as_secs().to_string();
    let mut lt = lt_leecher(
        torrent,
        dl,
        &[peer],
        &["--transport", transport, "--timeout", &own],
    );
    lt.wait_success(TRANSFER);
    assert!(
        lt.events().iter().any(|e| is_event(e, "finished")),
        "libtorrent exited 0 without finishing\n{}",
        lt.log()
    );
    lt
}

#[test]
fn bt_get_downloads_from_a_utp_only_libtorrent_seeder() {
    // Proves bt downloads a multi-file torrent byte for byte from a libtorrent that speaks uTP
    // only (TCP off both ways), over a connection both ends call uTP.
    let tmp = TempDir::new("utp-lt-to-bt");
    let (src, torrent) = multi_source(&tmp);
    let seeder = LtSeeder::start_transport(&torrent.path, &src, "utp");
    let dl = tmp.path().join("dl");
    let mut bt = BtProc::get(&torrent.path, &dl, &[seeder.addr()], &[]);
    bt.wait_success(TRANSFER);
    tree_equal(&src.join("multi"), &dl.join("multi"));
    bt.assert_all_from(seeder.addr(), torrent.total_size);
    assert_bt_used_utp(&bt.proc().events(), Some(seeder.addr()), &bt.log());
    assert_lt_used_utp(seeder.proc());
}

#[test]
fn a_utp_only_libtorrent_downloads_from_bt_seed() {
    // Proves `bt seed` takes a uTP connection on its listening port (UDP) and serves the whole
    // torrent over it to a libtorrent that speaks uTP only.
    let tmp = TempDir::new("utp-bt-to-lt");
    let (src, torrent) = multi_source(&tmp);
    let mut seeder = BtProc::seed(&torrent.path, &src, &[]);
    let dl = tmp.path().join("dl");
    let lt = lt_download(&torrent.path, &dl, seeder.addr, "utp");
    tree_equal(&src.join("multi"), &dl.join("multi"));
    assert_lt_used_utp(&lt);
    let events = seeder.proc().events();
    assert_bt_used_utp(&events, None, &seeder.log());
}

#[test]
fn libtorrent_with_default_settings_dials_bt_seed_over_utp() {
    // Proves a libtorrent with uTP and TCP both on (its default, uTP first) reaches `bt seed`
    // over uTP: bt answers uTP on the port it listens on for TCP.
    let tmp = TempDir::new("utp-default-lt");
    let (src, torrent) = multi_source(&tmp);
    let mut seeder = BtProc::seed(&torrent.path, &src, &[]);
    let dl = tmp.path().join("dl");
    let lt = lt_download(&torrent.path, &dl, seeder.addr, "both");
    tree_equal(&src.join("multi"), &dl.join("multi"));
    assert_lt_used_utp(&lt);
    let events = seeder.proc().events();
    assert_bt_used_utp(&events, None, &seeder.log());
}

#[test]
fn bt_to_bt_over_utp_with_encryption_required() {
    // Proves two bt processes with default transports connect over uTP, and that MSE with RC4
    // (`--encryption require`) runs over it: the download completes, encrypted, over uTP.
    let tmp = TempDir::new("utp-bt-to-bt");
    let (src, torrent) = multi_source(&tmp);
    let required = ["--encryption", "require"];
    let mut seeder = BtProc::seed(&torrent.path, &src, &required);
    let dl = tmp.path().join("dl");
    let mut bt = BtProc::get(&torrent.path, &dl, &[seeder.addr], &required);
    bt.wait_success(TRANSFER);
    tree_equal(&src.join("multi"), &dl.join("multi"));
    for (who, events, log) in [
        ("bt get", bt.proc().events(), bt.log()),
        ("bt seed", seeder.proc().events(), seeder.log()),
    ] {
        assert_bt_used_utp(&events, None, &log);
        for c in bt_connections(&events, None) {
            assert_eq!(c["encrypted"], true, "{who}: not encrypted: {c}\n{log}");
        }
    }
}

#[test]
fn bt_get_no_utp_cannot_reach_a_utp_only_seeder() {
    // Proves `--no-utp` is honoured: bt opens no UDP socket, and against a libtorrent that takes
    // uTP only it dials over TCP alone, fails, and never connects (with uTP allowed it would
    // connect in well under a second, see the tests above).
    let tmp = TempDir::new("utp-no-utp");
    let (src, torrent) = multi_source(&tmp);
    let seeder = LtSeeder::start_transport(&torrent.path, &src, "utp");
    let dl = tmp.path().join("dl");
    let mut bt = BtProc::get(&torrent.path, &dl, &[seeder.addr()], &["--no-utp"]);
    // No UDP socket at all (the DHT is off too), so no uTP dial can be made or taken.
    let listening = bt.wait_for(|e| is_event(e, "listening"), Duration::from_secs(20));
    assert!(listening["udp"].is_null(), "{listening}\n{}", bt.log());
    let failed = bt.wait_for(|e| is_event(e, "connect_failed"), Duration::from_secs(20));
    assert_eq!(failed["transport"], "tcp", "{failed}\n{}", bt.log());
    let events = bt.proc().events();
    assert!(
        bt_connections(&events, None).is_empty(),
        "bt connected with --no-utp\n{}",
        bt.log()
    );
    assert!(
        !seeder
            .proc()
            .events()
            .iter()
            .any(|e| is_event(e, "peer") || is_event(e, "incoming_connection")),
        "libtorrent saw a peer\n{}",
        seeder.proc().log()
    );
}
