//! The limits a user sets on `bt seed` and `bt get` hold against a real peer on loopback (a
//! scripted fake peer, [`bt_tests::fake_peer`]): each test runs bt with the limit lowered and with
//! the default, and the same peer behaviour is refused under the lowered limit only, so the flag
//! is what makes the difference.

use std::time::Duration;

use bt_tests::fake_peer::{
    Closed, EXTENSION_PROTOCOL, FakePeer, Swarm, bare, frame, handshake, handshake_reserved, id,
    request,
};
use bt_tests::{BtProc, is_event};

/// 40 pieces of 16 KiB.
const FILES: &[(&str, usize)] = &[("limits/data.bin", 40 * 16 * 1024)];
const PIECES: usize = 40;

fn fixture(name: &str) -> Swarm {
    Swarm::new(name, "limits", FILES, "16K")
}

fn seed(f: &Swarm, extra: &[&str]) -> BtProc {
    BtProc::seed(&f.torrent.path, &f.data_dir(), extra)
}

fn peer_id(n: u8) -> [u8; 20] {
    let mut id = *b"-FK0001-000000000000";
    id[19] = n;
    id
}

/// The reason of bt's `peer_closed` event for `peer` (waits at most 10 s).
fn close_reason(bt: &BtProc, peer: &FakePeer) -> String {
    let addr = peer.local_addr().to_string();
    let ev = bt.wait_for(
        |e| is_event(e, "peer_closed") && e["addr"].as_str() == Some(addr.as_str()),
        Duration::from_secs(10),
    );
    ev["reason"].as_str().unwrap_or_default().to_owned()
}

/// Dials `bt`, handshakes with `reserved`, and reads bt's handshake.
fn connect(bt: &BtProc, f: &Swarm, n: u8, reserved: [u8; 8]) -> FakePeer {
    let mut p = FakePeer::dial(bt.addr);
    p.send(&handshake_reserved(&f.hash, &peer_id(n), reserved))
        .unwrap();
    assert_eq!(p.read_handshake(Duration::from_secs(10)), f.hash);
    p
}

#[test]
fn max_message_size_bounds_extension_messages() {
    // Proves a 20 KiB extension message closes the connection under `--max-message-size 16K`
    // (refused from its length prefix) and is taken under the default 1 MiB.
    let f = fixture("limit-message");
    let low = seed(&f, &["-v", "--max-message-size", "16K"]);
    let default = seed(&f, &["-v"]);
    let mut message = vec![99u8];
    message.resize(20 * 1024, 0);
    let mut a = connect(&low, &f, 1, EXTENSION_PROTOCOL);
    a.send(&frame(20, &message)).unwrap();
    assert!(matches!(
        a.wait_closed(Duration::from_secs(10)),
        Closed::After(_)
    ));
    let reason = close_reason(&low, &a);
    assert!(reason.contains("FrameTooLong"), "{reason}");
    let mut b = connect(&default, &f, 2, EXTENSION_PROTOCOL);
    b.send(&frame(20, &message)).unwrap();
    // Still open after bt read the message: it answers what was sent behind it.
    until_unchoked(&mut b);
}

/// Sends interested and waits (at most 15 s) for bt's unchoke.
fn until_unchoked(p: &mut FakePeer) {
    p.send(&bare(id::INTERESTED)).unwrap();
    for _ in 0..100 {
        match p.read_frame(Duration::from_secs(15)) {
            Some(r) if r.id == Some(id::UNCHOKE) => return,
            Some(_) => {}
            None => panic!("bt never unchoked the fake peer"),
        }
    }
    panic!("no unchoke among bt's first 100 frames");
}

#[test]
fn max_peer_requests_bounds_what_one_peer_may_queue() {
    // Proves 40 requests (one per block) sent at once close the connection under
    // `--max-peer-requests 5`, and are all served under the default 500.
    let f = fixture("limit-peer-requests");
    let low = seed(&f, &["-v", "--max-peer-requests", "5"]);
    let default = seed(&f, &["-v"]);
    let burst: Vec<u8> = (0..PIECES as u32)
        .flat_map(|i| request(i, 0, 16 * 1024))
        .collect();
    let mut a = connect(&low, &f, 1, [0; 8]);
    until_unchoked(&mut a);
    a.send(&burst).unwrap();
    assert!(matches!(
        a.wait_closed(Duration::from_secs(10)),
        Closed::After(_)
    ));
    let reason = close_reason(&low, &a);
    assert!(reason.contains("TooManyRequests"), "{reason}");
    let mut b = connect(&default, &f, 2, [0; 8]);
    until_unchoked(&mut b);
    b.send(&burst).unwrap();
    let mut blocks = 0;
    while blocks < PIECES {
        match b.read_frame(Duration::from_secs(10)) {
            Some(r) if r.id == Some(id::PIECE) => blocks += 1,
            Some(_) => {}
            None => panic!("default limits: {blocks} of {PIECES} blocks served"),
        }
    }
}

#[test]
fn max_peers_refuses_connections_past_the_bound() {
    // Proves `--max-peers 1` closes a second peer's connection while the first stays, and that
    // the default takes both.
    let f = fixture("limit-peers");
    let low = seed(&f, &["-v", "--max-peers", "1"]);
    let default = seed(&f, &["-v"]);
    let mut first = connect(&low, &f, 1, [0; 8]);
    let mut second = FakePeer::dial(low.addr);
    second
        .send(&handshake(&f.hash, &peer_id(2), false))
        .unwrap();
    assert!(matches!(
        second.wait_closed(Duration::from_secs(10)),
        Closed::After(_)
    ));
    // The first is still served after the second was refused.
    until_unchoked(&mut first);
    let mut c = connect(&default, &f, 3, [0; 8]);
    let mut d = connect(&default, &f, 4, [0; 8]);
    until_unchoked(&mut c);
    until_unchoked(&mut d);
}

/// How many requests `bt get` (with `extra`) keeps in flight to a seed that never answers: the
/// requests it sends in the 3 s after the seed unchokes it.
fn requests_in_flight(f: &Swarm, n: u8, extra: &[&str]) -> usize {
    let listener = FakePeer::listen(30 + n);
    let addr = listener.local_addr().unwrap();
    let out = f.tmp.path().join(format!("out-{n}"));
    let _get = BtProc::get(&f.torrent.path, &out, &[addr], extra);
    let mut p = FakePeer::accept(&listener, Duration::from_secs(10));
    assert_eq!(p.read_handshake(Duration::from_secs(10)), f.hash);
    p.send(&handshake(&f.hash, &peer_id(n), false)).unwrap();
    let mut bits = vec![0xffu8; PIECES.div_ceil(8)];
    if !PIECES.is_multiple_of(8) {
        // Only the first `PIECES % 8` bits of the last byte stand for pieces.
        *bits.last_mut().unwrap() = !(0xffu8 >> (PIECES % 8));
    }
    p.send(&frame(id::BITFIELD, &bits)).unwrap();
    p.send(&bare(id::UNCHOKE)).unwrap();
    let mut requests = 0;
    while let Some(r) = p.read_frame(Duration::from_secs(3)) {
        if r.as_request().is_some() {
            requests += 1;
        }
        assert!(requests < 1000, "bt sent over 1000 requests unanswered");
    }
    requests
}

#[test]
fn max_requests_bounds_our_requests_to_one_peer() {
    // Proves `bt get --max-requests 2` keeps at most 2 requests in flight to a seed that does not
    // answer, where the default keeps at least its minimum pipeline of 4.
    let f = fixture("limit-requests");
    assert_eq!(requests_in_flight(&f, 1, &["--max-requests", "2"]), 2);
    let default = requests_in_flight(&f, 2, &[]);
    assert!(default >= 4, "default: {default} requests");
}
