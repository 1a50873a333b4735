//! Tests of BEP 11 peer exchange in [`Torrent`]: what we send (at most once per interval, the
//! right added and dropped lists and flags), what we take (PeersLearned, too-frequent messages
//! ignored, our own address left out), and private torrents doing none of it.

use core::net::SocketAddr;
use std::time::Duration;

use super::magnet_tests::{Got, Lab, PIECE_LEN, TOTAL, addr, ext_hs, frame, reserved};
use super::*;
use crate::harness::info_dict;
use crate::io::ConnId;
use crate::peer::Direction;
use crate::wire::{Message, PexFlags, PexMessage};

/// The id scripted peers give `ut_pex`.
const THEIR_PEX: u8 = 5;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The PEX messages sent to `conn` since the last look.
fn pex_sent(lab: &mut Lab, conn: ConnId) -> Vec<PexMessage> {
    lab.take(conn)
        .into_iter()
        .filter_map(|g| match g {
            Got::Extended { id, payload } if id == THEIR_PEX => {
                Some(PexMessage::decode(&payload).unwrap())
            }
            _ => None,
        })
        .collect()
}

fn pex_frame(added: &[SocketAddr]) -> Vec<u8> {
    let m = PexMessage {
        added: added.iter().map(|a| (*a, PexFlags(0))).collect(),
        dropped: Vec::new(),
    };
    frame(Message::Extended {
        id: OUR_UT_PEX,
        payload: &m.encode(),
    })
}

fn learned(lab: &Lab) -> Vec<(ConnId, Vec<SocketAddr>)> {
    lab.events
        .iter()
        .filter_map(|e| match e {
            TorrentEvent::PeersLearned { from, peers } => Some((*from, peers.clone())),
            _ => None,
        })
        .collect()
}

/// A seeder with four peers: 2 (outbound, ut_pex), 3 (outbound, no ut_pex), 4 (inbound, ut_pex,
/// listens on 7000), 5 (inbound, no `p`).
fn seeder_with_peers(private: bool) -> (Lab, [ConnId; 4]) {
    let (info, _) = info_dict(PIECE_LEN, TOTAL, 0);
    let mut lab = Lab::seeder(TorrentConfig::default(), &info, private);
    let a = lab.connect(2, Direction::Outbound, reserved(false));
    lab.send(a, &ext_hs(&[("ut_pex", THEIR_PEX)], None, None));
    let b = lab.connect(3, Direction::Outbound, reserved(false));
    lab.send(b, &ext_hs(&[], None, None));
    let c = lab.connect(4, Direction::Inbound, reserved(false));
    lab.send(c, &ext_hs(&[("ut_pex", THEIR_PEX)], None, Some(7000)));
    let d = lab.connect(5, Direction::Inbound, reserved(false));
    lab.send(d, &ext_hs(&[("ut_pex", THEIR_PEX)], None, None));
    for conn in [a, b, c, d] {
        lab.take(conn);
    }
    (lab, [a, b, c, d])
}

#[test]
fn pex_goes_out_once_per_interval_with_what_changed() {
    // Proves BEP 11 sending: nothing before the interval; then each ut_pex peer gets the listen
    // addresses of the others (dialled address, or ip + `p` for inbound; inbound without `p`
    // left out; never its own), with the reachable flag for those we dialled and the seed flag;
    // nothing again within the interval; the next message lists only what changed.
    let (mut lab, [a, b, c, d]) = seeder_with_peers(false);
    let listen_c = SocketAddr::new(addr(4).ip(), 7000);
    lab.send(b, &frame(Message::HaveAll));
    lab.advance(secs(59));
    assert!(pex_sent(&mut lab, a).is_empty(), "not before the interval");
    lab.advance(secs(1));
    let to_a = pex_sent(&mut lab, a);
    assert_eq!(
        to_a,
        vec![PexMessage {
            added: vec![
                (addr(3), PexFlags(PexFlags::REACHABLE | PexFlags::SEED)),
                (listen_c, PexFlags(0)),
            ],
            dropped: vec![],
        }]
    );
    let to_c = pex_sent(&mut lab, c);
    assert_eq!(to_c.len(), 1);
    let added: Vec<SocketAddr> = to_c[0].added.iter().map(|(a, _)| *a).collect();
    assert_eq!(
        added,
        vec![addr(2), addr(3)],
        "not itself, not the peer without p"
    );
    assert!(pex_sent(&mut lab, b).is_empty(), "b did not offer ut_pex");
    assert_eq!(
        pex_sent(&mut lab, d).len(),
        1,
        "d takes PEX though it has no p"
    );

    // Within the next interval nothing more, even with changes.
    lab.t.peer_disconnected(lab.now, b);
    lab.drain();
    let e = lab.connect(6, Direction::Outbound, reserved(false));
    lab.advance(secs(59));
    assert!(
        pex_sent(&mut lab, a).is_empty(),
        "at most one message a minute"
    );
    lab.advance(secs(1));
    assert_eq!(
        pex_sent(&mut lab, a),
        vec![PexMessage {
            added: vec![(addr(6), PexFlags(PexFlags::REACHABLE))],
            dropped: vec![addr(3)],
        }]
    );
    // Nothing changed: nothing sent.
    lab.advance(secs(60));
    assert!(pex_sent(&mut lab, a).is_empty());
    assert!(lab.t.peer(e).is_some());
}

#[test]
fn received_pex_teaches_peers_and_too_frequent_messages_are_ignored() {
    // Proves BEP 11 receiving: added peers become PeersLearned (without our own listen address,
    // as the peer saw it, nor peers we are connected to); a second message within 45 s is
    // ignored and counted; a later one is taken.
    let (info, _) = info_dict(PIECE_LEN, TOTAL, 0);
    let config = TorrentConfig {
        listen_port: Some(51413),
        ..TorrentConfig::default()
    };
    let mut lab = Lab::seeder(config, &info, false);
    let a = lab.connect(2, Direction::Outbound, reserved(false));
    // The peer tells us our address as it sees it.
    let hs = crate::wire::ExtendedHandshake {
        m: [("ut_pex".to_owned(), THEIR_PEX)].into(),
        yourip: Some("192.0.2.7".parse().unwrap()),
        ..Default::default()
    };
    lab.send(
        a,
        &frame(Message::Extended {
            id: 0,
            payload: &hs.encode(),
        }),
    );
    let other = lab.connect(3, Direction::Outbound, reserved(false));
    let new: SocketAddr = "10.9.9.9:1000".parse().unwrap();
    let ours: SocketAddr = "192.0.2.7:51413".parse().unwrap();
    lab.send(a, &pex_frame(&[new, ours, addr(3)]));
    assert_eq!(learned(&lab), vec![(a, vec![new])]);
    let later: SocketAddr = "10.9.9.10:1000".parse().unwrap();
    lab.advance(secs(30));
    lab.send(a, &pex_frame(&[later]));
    assert_eq!(learned(&lab).len(), 1, "too soon: ignored");
    assert_eq!(lab.t.extension_stats().pex_ignored, 1);
    assert!(lab.closed.is_empty(), "not a reason to close");
    lab.advance(secs(16));
    lab.send(a, &pex_frame(&[later]));
    assert_eq!(learned(&lab), vec![(a, vec![new]), (a, vec![later])]);
    assert_eq!(lab.t.extension_stats().pex_received, 2);
    assert!(lab.t.peer(other).is_some());
}

#[test]
fn a_private_torrent_sends_and_takes_no_pex() {
    // Proves BEP 27: a private torrent offers no ut_pex, sends no PEX message and ignores those
    // it gets.
    let (mut lab, [a, _, c, _]) = seeder_with_peers(true);
    assert!(lab.t.is_private());
    lab.advance(secs(120));
    assert!(pex_sent(&mut lab, a).is_empty());
    assert!(pex_sent(&mut lab, c).is_empty());
    lab.send(a, &pex_frame(&["10.9.9.9:1000".parse().unwrap()]));
    assert!(learned(&lab).is_empty());
    assert_eq!(lab.t.extension_stats().pex_ignored, 1);

    // The switch in the config turns PEX off as well.
    let (info, _) = info_dict(PIECE_LEN, TOTAL, 0);
    let config = TorrentConfig {
        pex: false,
        ..TorrentConfig::default()
    };
    let mut lab = Lab::seeder(config, &info, false);
    let a = lab.connect(2, Direction::Outbound, reserved(false));
    let hs = lab.handshakes(a);
    assert_eq!(hs[0].extension_id("ut_pex"), None);
    lab.send(a, &ext_hs(&[("ut_pex", THEIR_PEX)], None, None));
    lab.connect(3, Direction::Outbound, reserved(false));
    lab.advance(secs(120));
    assert!(pex_sent(&mut lab, a).is_empty());
}

#[test]
fn the_first_message_lists_at_most_fifty_peers() {
    // Proves the BEP 11 bound on one message: with 60 other peers the first message adds 50, the
    // next one the other 10.
    let (info, _) = info_dict(PIECE_LEN, TOTAL, 0);
    let config = TorrentConfig {
        max_peers: 100,
        ..TorrentConfig::default()
    };
    let mut lab = Lab::seeder(config, &info, false);
    let a = lab.connect(2, Direction::Outbound, reserved(false));
    lab.send(a, &ext_hs(&[("ut_pex", THEIR_PEX)], None, None));
    for n in 10..70 {
        lab.connect(n, Direction::Outbound, reserved(false));
    }
    lab.advance(secs(60));
    let first = pex_sent(&mut lab, a);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].added.len(), PEX_MAX_PER_MESSAGE);
    lab.advance(secs(60));
    let second = pex_sent(&mut lab, a);
    assert_eq!(second[0].added.len(), 10);
    assert!(second[0].dropped.is_empty());
}
