//! Tests of [`Session`]: routing by info hash, refusals, timeouts, and a whole download between
//! two sessions through a minimal driver.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use sha1::{Digest, Sha1};

use crate::harness::{answer_disk, content};
use crate::io::ConnId;
use crate::metainfo::{InfoHash, TorrentLayout};
use crate::session::{Output, Session, SessionCloseReason, SessionConfig, SessionError, TorrentId};
use crate::time::Instant;
use crate::torrent::{Bitfield, TorrentEvent};
use crate::wire::{Handshake, PeerId, Reserved};

const HASH: InfoHash = InfoHash([3; 20]);

fn addr(last: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 0, last)), 6881)
}

struct Side {
    session: Session,
    torrent: TorrentId,
    storage: Vec<u8>,
    complete: bool,
    closed: Vec<(ConnId, SessionCloseReason)>,
}

fn side(seed: u64, layout: &TorrentLayout, data: &[u8], have_all: bool) -> Side {
    side_with(seed, layout, data, have_all, None)
}

/// [`side`] with an encryption policy.
fn side_with(
    seed: u64,
    layout: &TorrentLayout,
    data: &[u8],
    have_all: bool,
    encryption: Option<crate::session::Encryption>,
) -> Side {
    let hashes = data
        .chunks(layout.piece_length() as usize)
        .map(|c| Sha1::digest(c).into())
        .collect();
    let config = SessionConfig {
        encryption,
        ..SessionConfig::default()
    };
    let mut session = Session::new(config, seed);
    let have = if have_all {
        Bitfield::full(layout.piece_count())
    } else {
        Bitfield::new(layout.piece_count())
    };
    let torrent = session
        .add_torrent(HASH, layout.clone(), hashes, have)
        .unwrap();
    Side {
        session,
        torrent,
        storage: if have_all {
            data.to_vec()
        } else {
            vec![0; data.len()]
        },
        complete: have_all,
        closed: Vec::new(),
    }
}

/// Drains one side: bytes for the other side are returned; disk work is done at once.
fn drain(s: &mut Side, layout: &TorrentLayout, now: Instant) -> Vec<(ConnId, Bytes)> {
    let mut sent = Vec::new();
    for _ in 0..100_000 {
        let Some(out) = s.session.poll_output() else {
            return sent;
        };
        match out {
            Output::Transmit { conn, bytes } => {
                s.session.handle_sent(now, conn, bytes.len());
                sent.push((conn, bytes));
            }
            Output::Close { conn, reason } => s.closed.push((conn, reason)),
            Output::Disk { torrent, op } => {
                let done = answer_disk(layout, &mut s.storage, false, op);
                s.session.handle_disk(now, torrent, done);
            }
            Output::Event { event, .. } => {
                if event == TorrentEvent::Complete {
                    s.complete = true;
                }
            }
        }
    }
    panic!("outputs without end");
}

#[test]
fn two_sessions_complete_a_download() {
    // Proves the session routes an incoming handshake to its torrent and a whole download runs
    // through it: outbound connect, inbound accept, disk work, completion.
    let layout = TorrentLayout::new(32768, &[300_000]).unwrap();
    let data = content(300_000);
    let mut seeder = side(1, &layout, &data, true);
    let mut leecher = side(2, &layout, &data, false);
    let (c_out, c_in) = (ConnId(10), ConnId(20));
    let mut now = Instant::ZERO;
    leecher
        .session
        .connect(now, leecher.torrent, c_out, addr(1))
        .unwrap();
    seeder.session.accept(now, c_in, addr(2)).unwrap();
    for _ in 0..10_000 {
        let to_seeder = drain(&mut leecher, &layout, now);
        let to_leecher = drain(&mut seeder, &layout, now);
        for (_, bytes) in &to_seeder {
            seeder.session.handle_bytes(now, c_in, bytes);
        }
        for (_, bytes) in &to_leecher {
            leecher.session.handle_bytes(now, c_out, bytes);
        }
        if leecher.complete {
            break;
        }
        if to_seeder.is_empty() && to_leecher.is_empty() {
            now = now + Duration::from_secs(1);
            for s in [&mut seeder, &mut leecher] {
                if s.session.poll_timeout().is_some_and(|t| t <= now) {
                    s.session.handle_timeout(now);
                }
            }
        }
    }
    assert!(leecher.complete, "the leecher did not complete");
    assert!(leecher.storage == data);
    assert!(seeder.closed.is_empty() && leecher.closed.is_empty());
}

fn handshake_bytes(hash: InfoHash) -> Vec<u8> {
    Handshake {
        reserved: Reserved::NONE,
        info_hash: hash,
        peer_id: PeerId([9; 20]),
    }
    .encode()
    .to_vec()
}

#[test]
fn incoming_connections_are_routed_or_refused() {
    // Proves an unknown info hash and a non-BitTorrent first byte are refused, a handshake split
    // in small pieces is routed, and a silent connection times out.
    let layout = TorrentLayout::new(32768, &[100_000]).unwrap();
    let mut s = side(1, &layout, &content(100_000), true);
    let now = Instant::ZERO;

    s.session.accept(now, ConnId(1), addr(5)).unwrap();
    s.session
        .handle_bytes(now, ConnId(1), &handshake_bytes(InfoHash([4; 20])));
    s.session.accept(now, ConnId(2), addr(6)).unwrap();
    s.session
        .handle_bytes(now, ConnId(2), b"GET / HTTP/1.1\r\n");
    s.session.accept(now, ConnId(3), addr(7)).unwrap();
    for chunk in handshake_bytes(HASH).chunks(5) {
        s.session.handle_bytes(now, ConnId(3), chunk);
    }
    s.session.accept(now, ConnId(4), addr(8)).unwrap();
    let sent = drain(&mut s, &layout, now);
    assert_eq!(
        s.closed,
        vec![
            (
                ConnId(1),
                SessionCloseReason::UnknownTorrent(InfoHash([4; 20]))
            ),
            (ConnId(2), SessionCloseReason::NotBitTorrent),
        ]
    );
    assert!(
        sent.iter().any(|(c, _)| *c == ConnId(3)),
        "the routed peer got our handshake"
    );
    let later = now + Duration::from_secs(20);
    s.session.handle_timeout(later);
    drain(&mut s, &layout, later);
    assert_eq!(
        s.closed.last(),
        Some(&(ConnId(4), SessionCloseReason::HandshakeTimeout))
    );
    assert_eq!(s.session.connection_count(), 1);
}

#[test]
fn unrouted_connections_time_out_oldest_first_in_handle_order() {
    // Proves the session's timer is the earliest unrouted connection's handshake deadline, that
    // routing or a disconnect takes a connection off it, and that the expired ones are refused
    // in handle order.
    let layout = TorrentLayout::new(32768, &[100_000]).unwrap();
    let mut s = side(1, &layout, &content(100_000), true);
    let t0 = Instant::ZERO;
    let t1 = t0 + Duration::from_secs(1);
    let timeout = SessionConfig::default().handshake_timeout;
    // Conn 9 waits longer than conn 7 but has the larger handle.
    s.session
        .accept(t0 + Duration::from_millis(500), ConnId(9), addr(5))
        .unwrap();
    s.session.accept(t1, ConnId(7), addr(6)).unwrap();
    s.session.accept(t0, ConnId(8), addr(7)).unwrap();
    s.session.accept(t0, ConnId(6), addr(8)).unwrap();
    assert_eq!(s.session.poll_timeout(), Some(t0 + timeout));
    s.session
        .handle_bytes(t0, ConnId(8), &handshake_bytes(HASH));
    s.session.handle_disconnect(t0, ConnId(6));
    drain(&mut s, &layout, t0);
    s.closed.clear();
    // Conn 8 is routed now: its torrent's timer is its handshake deadline too, so the earliest
    // left is at most the unrouted ones' (t1 + timeout).
    assert!(
        s.session
            .poll_timeout()
            .is_some_and(|at| at <= t1 + timeout)
    );
    let later = t1 + timeout;
    s.session.handle_timeout(later);
    drain(&mut s, &layout, later);
    let refused: Vec<ConnId> = s
        .closed
        .iter()
        .filter(|(_, r)| *r == SessionCloseReason::HandshakeTimeout)
        .map(|(c, _)| *c)
        .collect();
    assert_eq!(refused, vec![ConnId(7), ConnId(9)]);
}

#[test]
fn commands_check_their_arguments() {
    // Proves duplicate torrents and connection handles are refused, and removing a torrent closes
    // its connections.
    let layout = TorrentLayout::new(32768, &[100_000]).unwrap();
    let mut s = side(1, &layout, &content(100_000), true);
    let now = Instant::ZERO;
    assert_eq!(
        s.session
            .add_torrent(HASH, layout.clone(), vec![[0; 20]; 4], Bitfield::new(4)),
        Err(SessionError::DuplicateTorrent(HASH))
    );
    s.session
        .connect(now, s.torrent, ConnId(1), addr(2))
        .unwrap();
    assert_eq!(
        s.session.accept(now, ConnId(1), addr(3)),
        Err(SessionError::ConnInUse(ConnId(1)))
    );
    s.session.remove_torrent(s.torrent).unwrap();
    drain(&mut s, &layout, now);
    assert_eq!(
        s.closed,
        vec![(ConnId(1), SessionCloseReason::TorrentRemoved)]
    );
    assert_eq!(
        s.session.remove_torrent(s.torrent),
        Err(SessionError::NoSuchTorrent(s.torrent))
    );
}

#[test]
fn the_seed_decides_the_peer_id() {
    // Proves determinism of identity: same seed, same peer id; another seed, another id.
    let a = Session::new(SessionConfig::default(), 7).peer_id();
    let b = Session::new(SessionConfig::default(), 7).peer_id();
    let c = Session::new(SessionConfig::default(), 8).peer_id();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(&a.0[..8], b"-BT0100-");
}

#[test]
fn a_magnet_session_takes_an_incoming_seeder_and_completes() {
    // Proves Session::add_magnet: an incoming connection for the magnet's info hash is routed to
    // it, the metadata comes over that connection, and the download completes; a second magnet
    // for the same hash is refused.
    let (info, hash) = crate::harness::info_dict(32768, 300_000, 0);
    let layout = TorrentLayout::new(32768, &[300_000]).unwrap();
    let data = content(300_000);
    let hashes: Vec<[u8; 20]> = data.chunks(32768).map(|c| Sha1::digest(c).into()).collect();
    let mut seeder_session = Session::new(SessionConfig::default(), 1);
    seeder_session.set_listen_port(51413);
    let seeder_torrent = seeder_session
        .add_torrent(
            hash,
            layout.clone(),
            hashes,
            Bitfield::full(layout.piece_count()),
        )
        .unwrap();
    seeder_session.set_metadata(seeder_torrent, Bytes::from(info.clone()), false);
    let mut seeder = Side {
        session: seeder_session,
        torrent: seeder_torrent,
        storage: data.clone(),
        complete: true,
        closed: Vec::new(),
    };
    let mut magnet_session = Session::new(SessionConfig::default(), 2);
    let magnet_torrent = magnet_session.add_magnet(hash).unwrap();
    assert_eq!(
        magnet_session.add_magnet(hash),
        Err(SessionError::DuplicateTorrent(hash))
    );
    let mut magnet = Side {
        session: magnet_session,
        torrent: magnet_torrent,
        storage: vec![0; data.len()],
        complete: false,
        closed: Vec::new(),
    };
    let (c_out, c_in) = (ConnId(10), ConnId(20));
    let mut now = Instant::ZERO;
    seeder
        .session
        .connect(now, seeder.torrent, c_out, addr(2))
        .unwrap();
    magnet.session.accept(now, c_in, addr(1)).unwrap();
    for _ in 0..10_000 {
        let to_magnet = drain(&mut seeder, &layout, now);
        let to_seeder = drain(&mut magnet, &layout, now);
        for (_, bytes) in &to_magnet {
            magnet.session.handle_bytes(now, c_in, bytes);
        }
        for (_, bytes) in &to_seeder {
            seeder.session.handle_bytes(now, c_out, bytes);
        }
        if magnet.complete {
            break;
        }
        if to_seeder.is_empty() && to_magnet.is_empty() {
            now = now + Duration::from_secs(1);
            for s in [&mut seeder, &mut magnet] {
                if s.session.poll_timeout().is_some_and(|t| t <= now) {
                    s.session.handle_timeout(now);
                }
            }
        }
    }
    assert!(magnet.complete, "the magnet did not complete");
    assert!(magnet.storage == data);
    let t = magnet.session.torrent(magnet.torrent).unwrap();
    assert!(t.has_metadata());
    assert_eq!(t.info_bytes().map(|b| b.to_vec()), Some(info));
    assert!(seeder.closed.is_empty() && magnet.closed.is_empty());
}

/// Runs a download from `seeder` to `leecher` (which dialled it on `c_out`, accepted as `c_in`)
/// for at most a minute of simulated time; returns whether it completed, and every byte that
/// crossed (both ways).
fn pump(
    seeder: &mut Side,
    leecher: &mut Side,
    layout: &TorrentLayout,
    c_out: ConnId,
    c_in: ConnId,
) -> (bool, Vec<u8>) {
    let mut now = Instant::ZERO;
    let mut wire = Vec::new();
    for _ in 0..10_000 {
        let to_seeder = drain(leecher, layout, now);
        let to_leecher = drain(seeder, layout, now);
        for (_, bytes) in &to_seeder {
            wire.extend_from_slice(bytes);
            seeder.session.handle_bytes(now, c_in, bytes);
        }
        for (_, bytes) in &to_leecher {
            wire.extend_from_slice(bytes);
            leecher.session.handle_bytes(now, c_out, bytes);
        }
        if leecher.complete {
            return (true, wire);
        }
        if to_seeder.is_empty() && to_leecher.is_empty() {
            now = now + Duration::from_secs(1);
            if now > Instant::ZERO + Duration::from_secs(60) {
                return (false, wire);
            }
            for s in [&mut *seeder, &mut *leecher] {
                if s.session.poll_timeout().is_some_and(|t| t <= now) {
                    s.session.handle_timeout(now);
                }
            }
        }
    }
    (false, wire)
}

#[test]
fn an_encrypted_connection_completes_a_download_in_either_method() {
    use crate::mse::Methods;
    use crate::session::Encryption;
    let layout = TorrentLayout::new(32768, &[300_000]).unwrap();
    let data = content(300_000);
    for (offer, policy, rc4) in [
        (Methods::BOTH, Encryption::Prefer, true),
        (Methods::RC4, Encryption::Require, true),
        (Methods::BOTH, Encryption::Plaintext, false),
    ] {
        let mut seeder = side_with(1, &layout, &data, true, Some(policy));
        let mut leecher = side_with(2, &layout, &data, false, Some(Encryption::Prefer));
        let (c_out, c_in) = (ConnId(10), ConnId(20));
        let now = Instant::ZERO;
        leecher
            .session
            .connect_encrypted(now, leecher.torrent, c_out, addr(1), offer)
            .unwrap();
        seeder.session.accept(now, c_in, addr(2)).unwrap();
        let (complete, wire) = pump(&mut seeder, &mut leecher, &layout, c_out, c_in);
        assert!(
            complete,
            "{policy:?}: closed {:?} {:?}",
            seeder.closed, leecher.closed
        );
        assert_eq!(leecher.storage, data);
        // Every block sent counts as uploaded once written, the handshake's bytes aside.
        let seeder_torrent = seeder.session.torrent(seeder.torrent).unwrap();
        assert_eq!(
            seeder_torrent.stats().uploaded,
            data.len() as u64,
            "{policy:?}"
        );
        // Under RC4 no block crosses in the clear; with plaintext selected they do.
        let clear = wire.windows(64).any(|w| w == &data[32768..32768 + 64]);
        assert_eq!(clear, !rc4, "{policy:?}");
        assert!(seeder.closed.is_empty() && leecher.closed.is_empty());
    }
}

/// How a seeder with policy `seeder` closes a leecher that dials it in plaintext (`offer`
/// `None`) or encrypted, offering `offer`; the download must not happen.
fn refused(
    seeder: Option<crate::session::Encryption>,
    offer: Option<crate::mse::Methods>,
) -> Vec<(ConnId, SessionCloseReason)> {
    let layout = TorrentLayout::new(32768, &[100_000]).unwrap();
    let data = content(100_000);
    let mut seed = side_with(1, &layout, &data, true, seeder);
    let mut leecher = side_with(2, &layout, &data, false, None);
    let (c_out, c_in, now) = (ConnId(10), ConnId(20), Instant::ZERO);
    let t = leecher.torrent;
    match offer {
        Some(offer) => leecher
            .session
            .connect_encrypted(now, t, c_out, addr(1), offer),
        None => leecher.session.connect(now, t, c_out, addr(1)),
    }
    .unwrap();
    seed.session.accept(now, c_in, addr(2)).unwrap();
    let (complete, _) = pump(&mut seed, &mut leecher, &layout, c_out, c_in);
    assert!(!complete);
    seed.closed
}

#[test]
fn encryption_policies_refuse_what_they_must() {
    use crate::mse::{Methods, MseError};
    use crate::session::Encryption;
    let c_in = ConnId(20);
    assert_eq!(
        refused(Some(Encryption::Require), None),
        [(c_in, SessionCloseReason::PlaintextRefused)]
    );
    assert_eq!(
        refused(Some(Encryption::Require), Some(Methods::PLAINTEXT)),
        [(c_in, SessionCloseReason::Mse(MseError::NoCommonMethod))]
    );
    assert_eq!(
        refused(Some(Encryption::Plaintext), Some(Methods::RC4)),
        [(c_in, SessionCloseReason::Mse(MseError::NoCommonMethod))]
    );
    assert_eq!(
        refused(None, Some(Methods::BOTH)),
        [(c_in, SessionCloseReason::NotBitTorrent)]
    );
}

#[test]
fn an_encryption_handshake_that_stalls_closes_as_timed_out_at_the_handshake_limit() {
    use crate::mse::{Methods, MseError};
    let layout = TorrentLayout::new(32768, &[100_000]).unwrap();
    let data = content(100_000);
    let mut leecher = side_with(
        2,
        &layout,
        &data,
        false,
        Some(crate::session::Encryption::Prefer),
    );
    let (conn, t) = (ConnId(10), leecher.torrent);
    leecher
        .session
        .connect_encrypted(Instant::ZERO, t, conn, addr(1), Methods::BOTH)
        .unwrap();
    // The peer answers with nothing at all.
    assert!(!drain(&mut leecher, &layout, Instant::ZERO).is_empty());
    let limit = SessionConfig::default().handshake_timeout;
    assert!(
        leecher
            .session
            .poll_timeout()
            .is_some_and(|t| t <= Instant::ZERO + limit)
    );
    leecher
        .session
        .handle_timeout(Instant::ZERO + (limit - Duration::from_millis(1)));
    drain(&mut leecher, &layout, Instant::ZERO + limit);
    assert!(leecher.closed.is_empty());
    leecher.session.handle_timeout(Instant::ZERO + limit);
    drain(&mut leecher, &layout, Instant::ZERO + limit);
    assert_eq!(
        leecher.closed,
        [(conn, SessionCloseReason::Mse(MseError::TimedOut))]
    );
}
