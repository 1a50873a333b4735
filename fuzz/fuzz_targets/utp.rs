//! Feeds a script cut from the input to a `bt_protocol::utp::Mux` ("us", at most three sockets)
//! that talks with an honest peer multiplexer ("them"), and to one stand-alone accepted
//! `Socket`. Each record is a control byte, a length byte and that many bytes. The control
//! byte's low 3 bits pick the step: a raw datagram (to us from one of three addresses, and to
//! the stand-alone socket); the honest peer's next datagram, delivered as is, mutated (the bytes
//! give `(offset, xor)` pairs) or lost; a replay of one of the last datagrams seen; a time jump
//! with `handle_timeout` on everything; a command (connect either way, write, read, close); our
//! next datagram to the peer (bit 3 loses it); or a forged packet built from the bytes but
//! addressed to one of our live connection ids, so the fuzzer reaches the sockets' state.
//!
//! After every step: nothing panicked; we hold at most three sockets; every datagram we send
//! decodes and is at most `PACKET_SIZE` bytes; every socket's receive buffer, unacknowledged
//! bytes and in-flight bytes are within their bounds; after `handle_timeout` no deadline is in
//! the past.
#![no_main]

use std::collections::VecDeque;
use std::time::Duration;

use bt_protocol::rng::Rng;
use bt_protocol::time::Instant;
use bt_protocol::utp::mux::SocketId;
use bt_protocol::utp::packet::{Header, Packet, PacketType};
use bt_protocol::utp::seq::Seq;
use bt_protocol::utp::socket::{
    MAX_OUTSTANDING, MAX_PAYLOAD, PACKET_SIZE, RECV_BUFFER_BYTES, SEND_BUFFER_BYTES,
};
use bt_protocol::utp::{Mux, Socket};
use libfuzzer_sys::fuzz_target;

/// Our address as the peer sees it, and the peer's (the first of three sources).
const US: u8 = 0;
const THEM: u8 = 1;
const REPLAYS: usize = 16;

/// Checks one socket's bounds.
fn check(socket: &Socket) {
    assert!(socket.readable_len() <= RECV_BUFFER_BYTES);
    assert!(socket.unacked_bytes() <= SEND_BUFFER_BYTES + MAX_OUTSTANDING * MAX_PAYLOAD);
    assert!(socket.bytes_in_flight() <= MAX_OUTSTANDING * MAX_PAYLOAD);
}

/// Checks a datagram we send.
fn check_sent(d: &[u8]) {
    assert!(d.len() <= PACKET_SIZE, "{} bytes", d.len());
    Packet::decode(d).expect("we send valid packets");
}

/// A packet from `bytes` (header fields, then payload) addressed to `connection_id`.
fn forge(bytes: &[u8], connection_id: u16) -> Vec<u8> {
    let b = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let header = Header {
        ty: PacketType::from_code(b(0) % 5).expect("in range"),
        connection_id,
        timestamp_micros: u32::from_be_bytes([b(1), b(2), b(3), b(4)]),
        timestamp_difference_micros: u32::from_be_bytes([0, 0, b(5), b(6)]),
        wnd_size: u32::from_be_bytes([0, b(7), b(8), 0]),
        seq_nr: Seq(u16::from_be_bytes([b(9), b(10)])),
        ack_nr: Seq(u16::from_be_bytes([b(11), b(12)])),
    };
    let sack = (b(13) & 1 == 1).then(|| bytes.get(14..18).unwrap_or(&[0xff; 4]));
    let mut out = Vec::new();
    Packet {
        header,
        sack,
        payload: bytes.get(18..).unwrap_or(&[]),
    }
    .encode(&mut out);
    out
}

fn remember(seen: &mut VecDeque<Vec<u8>>, d: &[u8]) {
    if seen.len() == REPLAYS {
        seen.pop_front();
    }
    seen.push_back(d.to_vec());
}

/// The live sockets' ids, in order.
fn ids(m: &Mux<u8>) -> Vec<SocketId> {
    m.ids().collect()
}

fuzz_target!(|data: &[u8]| {
    let mut us: Mux<u8> = Mux::new(1, 3);
    let mut them: Mux<u8> = Mux::new(2, 8);
    let mut now = Instant::from_micros(5_000_000);
    // A stand-alone socket accepted from a fixed SYN.
    let mut rng = Rng::new(3);
    let mut lone = {
        let mut initiator = Socket::connect(&mut rng);
        let syn = initiator.poll_transmit(now).expect("SYN");
        Socket::accept(now, &mut rng, &Packet::decode(&syn).expect("valid")).expect("a SYN")
    };
    let mut seen: VecDeque<Vec<u8>> = VecDeque::new();
    let mut input = data;
    let mut steps = 0;
    while let [control, len, rest @ ..] = input {
        let take = usize::from(*len).min(rest.len());
        let (bytes, tail) = rest.split_at(take);
        input = tail;
        steps += 1;
        if steps > 2_000 {
            break;
        }
        let from = (control >> 3) % 3;
        let mut timed_out = false;
        match control & 7 {
            0 => {
                us.handle_datagram(now, from, bytes);
                lone.handle_datagram(now, bytes);
                remember(&mut seen, bytes);
            }
            1 => {
                let Some((to, mut d)) = them.poll_transmit(now) else {
                    continue;
                };
                assert_eq!(to, US);
                for pair in bytes.chunks_exact(2) {
                    if !d.is_empty() {
                        let i = usize::from(pair[0]) % d.len();
                        d[i] ^= pair[1];
                    }
                }
                if control & 0x20 == 0 {
                    us.handle_datagram(now, THEM, &d);
                    remember(&mut seen, &d);
                }
            }
            2 => {
                let i = usize::from(bytes.first().copied().unwrap_or(0));
                if let Some(d) = seen.get(i % REPLAYS.max(1)).cloned() {
                    us.handle_datagram(now, from, &d);
                    lone.handle_datagram(now, &d);
                }
            }
            3 => {
                let jump = u64::from(bytes.first().copied().unwrap_or(1));
                now = now + Duration::from_millis(jump * jump * 8);
                us.handle_timeout(now);
                them.handle_timeout(now);
                lone.handle_timeout(now);
                timed_out = true;
            }
            4 => {
                let op = bytes.first().copied().unwrap_or(0);
                let pick = usize::from(bytes.get(1).copied().unwrap_or(0));
                let payload = bytes.get(2..).unwrap_or(&[]);
                let mine = ids(&us);
                let target = mine.get(pick % mine.len().max(1)).copied();
                match (op % 6, target) {
                    (0, _) => {
                        us.connect(THEM);
                    }
                    (1, _) => {
                        them.connect(US);
                    }
                    (2, Some(id)) => {
                        let _ = us.socket_mut(id).expect("live").write(payload);
                    }
                    (3, Some(id)) => {
                        let mut buf = vec![0; usize::from(op) * 64];
                        us.socket_mut(id).expect("live").read(&mut buf);
                    }
                    (4, Some(id)) => us.socket_mut(id).expect("live").close(),
                    _ => {
                        let _ = lone.write(payload);
                        let mut buf = [0; 512];
                        lone.read(&mut buf);
                    }
                }
                // The honest peer accepts, echoes what it reads and writes some of its own.
                while them.poll_incoming().is_some() {}
                for id in ids(&them) {
                    let s = them.socket_mut(id).expect("live");
                    let mut buf = [0; 4096];
                    let n = s.read(&mut buf);
                    let _ = s.write(&buf[..n]);
                    if op & 0x80 != 0 {
                        s.close();
                    }
                }
            }
            5 => {
                if let Some((to, d)) = us.poll_transmit(now) {
                    check_sent(&d);
                    // Resets to the other sources go nowhere.
                    if to == THEM && control & 0x08 == 0 {
                        them.handle_datagram(now, US, &d);
                    }
                }
            }
            6 => {
                let mine = ids(&us);
                let pick = usize::from(bytes.first().copied().unwrap_or(0));
                let Some(&id) = mine.get(pick % mine.len().max(1)) else {
                    continue;
                };
                let socket = us.socket(id).expect("live");
                let d = forge(bytes.get(1..).unwrap_or(&[]), socket.recv_id());
                us.handle_datagram(now, THEM, &d);
                lone.handle_datagram(now, &forge(bytes, lone.recv_id()));
            }
            _ => {
                while let Some((id, _event)) = us.poll_event() {
                    assert!(us.socket(id).is_some(), "events name live sockets");
                }
                while us.poll_incoming().is_some() {}
                while lone.poll_event().is_some() {}
                while let Some(d) = lone.poll_transmit(now) {
                    check_sent(&d);
                }
            }
        }

        assert!(us.len() <= us.max_sockets());
        check(&lone);
        for id in ids(&us) {
            check(us.socket(id).expect("live"));
        }
        if timed_out {
            assert!(
                us.poll_timeout().is_none_or(|t| t > now),
                "deadline in the past"
            );
            assert!(
                lone.poll_timeout().is_none_or(|t| t > now),
                "deadline in the past"
            );
        }
    }
});
