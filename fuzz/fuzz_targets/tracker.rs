//! Feeds arbitrary bytes to the tracker parsers: `parse_announce_response`, the HTTP
//! `HttpResponseReader` (in chunks sized by the first byte, compared with one whole feed), and a
//! `UdpAnnounce` whose connect request was sent (length-prefixed datagrams cut from the input,
//! the live transaction id patched in when the control byte says so, a zero length meaning "the
//! timer fired"). None may panic; answers keep their bounds; the reader's result does not depend
//! on the split; the UDP machine sends only known packet sizes and gives at most one result.
#![no_main]

use std::time::Duration;

use bt_protocol::metainfo::InfoHash;
use bt_protocol::rng::Rng;
use bt_protocol::time::Instant;
use bt_protocol::tracker::{
    ANNOUNCE_REQUEST_LEN, AnnounceRequest, CONNECT_REQUEST_LEN, Event, HttpLimits,
    HttpResponseReader, MAX_INTERVAL, MAX_PEERS_PER_RESPONSE, UdpAnnounce, UdpConfig,
    announce_response_from_http, parse_announce_response,
};
use bt_protocol::wire::PeerId;
use libfuzzer_sys::fuzz_target;

fn check_interval(interval: Duration) {
    assert!(interval >= Duration::from_secs(1) && interval <= MAX_INTERVAL);
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };

    // 1. A bencoded announce answer.
    if let Ok(answer) = parse_announce_response(rest) {
        assert!(answer.peers.len() <= MAX_PEERS_PER_RESPONSE);
        check_interval(answer.interval);
    }

    // 2. An HTTP response, split into chunks, must read as when fed whole.
    let limits = if control & 0x20 != 0 {
        HttpLimits {
            max_header_bytes: 128,
            max_body_bytes: 64,
        }
    } else {
        HttpLimits::default()
    };
    let mut split = HttpResponseReader::with_limits(limits);
    for piece in rest.chunks(usize::from(control & 0x1f) + 1) {
        split.feed(piece);
    }
    let mut whole = HttpResponseReader::with_limits(limits);
    whole.feed(rest);
    assert_eq!(split.is_complete(), whole.is_complete());
    let response = split.finish();
    assert_eq!(response, whole.finish());
    if let Ok(response) = &response {
        assert!(response.body.len() <= limits.max_body_bytes);
        if let Ok(answer) = announce_response_from_http(response) {
            check_interval(answer.interval);
        }
    }

    // 3. Datagrams to a UDP announce after its connect request.
    let tracker = if control & 0x40 != 0 {
        "[2001:db8::1]:6969".parse().unwrap()
    } else {
        "10.0.0.1:6969".parse().unwrap()
    };
    let request = AnnounceRequest {
        info_hash: InfoHash([7; 20]),
        peer_id: PeerId(*b"-BT0100-fuzzfuzzfuzz"),
        port: 6881,
        uploaded: 0,
        downloaded: 0,
        left: 1,
        event: Event::Started,
        numwant: None,
        key: 1,
        tracker_id: None,
    };
    let config = UdpConfig {
        base_timeout: Duration::from_secs(1),
        max_retries: 3,
    };
    let mut now = Instant::ZERO;
    let mut rng = Rng::new(u64::from(control));
    let mut udp = UdpAnnounce::new(config, tracker, request, None, &mut rng, now);
    let mut last = udp
        .poll_transmit()
        .expect("the connect request is ready at once");
    assert_eq!(last.len(), CONNECT_REQUEST_LEN);
    let mut results = 0;
    let mut input = rest;
    while let Some((&len, tail)) = input.split_first() {
        let take = usize::from(len).min(tail.len());
        let mut datagram = tail[..take].to_vec();
        input = &tail[take..];
        if len == 0 {
            // The driver sleeps until the deadline.
            if let Some(deadline) = udp.poll_timeout() {
                now = now.max(deadline);
                udp.handle_timeout(now);
            }
        } else {
            if control & 0x80 != 0 && datagram.len() >= 8 {
                datagram[4..8].copy_from_slice(&last[12..16]);
            }
            // The datagram arrives 100 ms later; a driver fires a timer that expired meanwhile
            // first (harmless when early).
            now = now + Duration::from_millis(100);
            udp.handle_timeout(now);
            if let Some(packet) = udp.poll_transmit() {
                assert!(
                    packet.len() == CONNECT_REQUEST_LEN || packet.len() == ANNOUNCE_REQUEST_LEN
                );
                last = packet;
            }
            udp.handle_datagram(now, &datagram);
        }
        if let Some(packet) = udp.poll_transmit() {
            assert!(packet.len() == CONNECT_REQUEST_LEN || packet.len() == ANNOUNCE_REQUEST_LEN);
            assert!(!udp.is_done());
            last = packet;
        }
        if let Some(result) = udp.poll_result() {
            results += 1;
            assert!(udp.is_done() && udp.poll_timeout().is_none());
            if let Ok(answer) = result {
                assert!(answer.peers.len() <= datagram.len() / 6);
                check_interval(answer.interval);
            }
        }
        assert!(udp.retransmissions() <= config.max_retries);
    }
    assert!(results <= 1);
});
