//! Feeds a sequence of requests cut from the input to a `TrackerServer` with small bounds:
//! each record is a control byte, a length byte and that many bytes. The control byte picks the
//! transport (raw HTTP, an HTTP announce query wrapped in a request line, a raw datagram, or a
//! datagram with a live connection id patched in), which of four client addresses sends it, and
//! how far the clock moves first (sometimes firing the timer). Nothing may panic; every HTTP
//! answer is a complete HTTP response whose body is bencode; a UDP answer is at least 8 bytes
//! and at most a full announce answer; the store stays within its bounds; the timer is always in
//! the future after it fired.
#![no_main]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bt_protocol::bencode::{DecodeLimits, decode};
use bt_protocol::time::Instant;
use bt_protocol::tracker::{
    HttpResponseReader, TrackerConfig, TrackerServer, connect_request, http_head_end,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let config = TrackerConfig {
        interval: Duration::from_secs(10),
        max_torrents: 3,
        max_peers_per_torrent: 4,
        max_peers: 6,
        max_numwant: 5,
        max_scrape_hashes: 3,
        max_request_len: 512,
        ..TrackerConfig::default()
    };
    let max_numwant = config.max_numwant as usize;
    let (max_torrents, max_peers) = (config.max_torrents, config.max_peers);
    let mut tracker = TrackerServer::new(config, 1);
    let mut now = Instant::ZERO;
    let mut input = data;
    while let [control, len, rest @ ..] = input {
        let take = usize::from(*len).min(rest.len());
        let (bytes, tail) = rest.split_at(take);
        input = tail;
        let who = (control >> 2) & 3;
        let ip = if who == 3 {
            IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1])
        } else {
            IpAddr::from([10, 0, 0, who])
        };
        let from = SocketAddr::new(ip, 1000 + u16::from(who));
        now = now + Duration::from_millis(u64::from(control >> 4) * 1500);
        if control & 0x80 != 0 {
            tracker.handle_timeout(now);
            if let Some(deadline) = tracker.poll_timeout() {
                assert!(deadline > now);
            }
        }
        match control & 3 {
            0 | 1 => {
                let request = if control & 3 == 1 {
                    let mut r = b"GET /announce?".to_vec();
                    r.extend_from_slice(bytes);
                    r.extend_from_slice(b" HTTP/1.1\r\n\r\n");
                    r
                } else {
                    bytes.to_vec()
                };
                let reply = tracker.handle_http_request(now, ip, &request);
                let mut reader = HttpResponseReader::new();
                reader.feed(&reply);
                assert!(reader.is_complete());
                let response = reader.finish().expect("a well-formed HTTP response");
                let head = http_head_end(&reply).expect("a whole head");
                assert_eq!(&reply[head..], response.body.as_slice());
                decode(&response.body, DecodeLimits::default()).expect("a bencoded body");
            }
            _ => {
                let mut datagram = bytes.to_vec();
                if control & 3 == 3 && datagram.len() >= 8 {
                    let reply = tracker
                        .handle_datagram(now, from, &connect_request(7))
                        .expect("a connect is answered");
                    datagram[..8].copy_from_slice(&reply[8..16]);
                }
                if let Some(reply) = tracker.handle_datagram(now, from, &datagram) {
                    assert!(reply.len() >= 8 && reply.len() <= 20 + 18 * max_numwant.max(12));
                }
            }
        }
        assert!(tracker.torrent_count() <= max_torrents);
        assert!(tracker.peer_count() <= max_peers);
    }
});
