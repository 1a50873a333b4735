//! Tests of the HTTP tracker client: announce URLs, request bytes, the response reader (split at
//! every byte boundary), and the bencoded answer.

use core::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::metainfo::InfoHash;
use crate::wire::PeerId;

/// The info hash of the classic example (wiki.theory.org, "Tracker HTTP/HTTPS Protocol").
const EXAMPLE_HASH: [u8; 20] = [
    0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf1, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x12,
    0x34, 0x56, 0x78, 0x9a,
];

fn request() -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash(EXAMPLE_HASH),
        peer_id: PeerId(*b"-BT0100-a.b_c~d e/\x00\xff"),
        port: 6881,
        uploaded: 1,
        downloaded: 2,
        left: 3,
        event: Event::Started,
        numwant: None,
        key: 0xdead_beef,
        tracker_id: None,
    }
}

fn url(s: &str) -> TrackerUrl {
    TrackerUrl::parse(s).unwrap()
}

#[test]
fn info_hash_and_peer_id_are_percent_encoded_bytewise() {
    // Proves the known vector: every byte outside the unreserved set becomes %XX (uppercase).
    let q = announce_path_and_query(&url("http://t.example/announce"), &request());
    assert_eq!(
        q,
        "/announce?info_hash=%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A\
         &peer_id=-BT0100-a.b_c~d%20e%2F%00%FF&port=6881&uploaded=1&downloaded=2&left=3\
         &compact=1&event=started&key=DEADBEEF"
    );
}

#[test]
fn existing_query_strings_are_extended_not_broken() {
    // Proves `&` joins an existing query, and a URL ending in `?` or `&` gets nothing added.
    let r = request();
    for (base, prefix) in [
        (
            "http://t.example/a.php?passkey=abc",
            "/a.php?passkey=abc&info_hash=",
        ),
        ("http://t.example/a?", "/a?info_hash="),
        ("http://t.example/a?x=1&", "/a?x=1&info_hash="),
        ("http://t.example", "/?info_hash="),
    ] {
        let q = announce_path_and_query(&url(base), &r);
        assert!(q.starts_with(prefix), "{base}: {q}");
    }
}

#[test]
fn optional_parameters() {
    // Proves `event` is omitted for None, and `numwant` and an encoded `trackerid` appear when set.
    let mut r = request();
    r.event = Event::None;
    let q = announce_path_and_query(&url("http://t.example/a"), &r);
    assert!(!q.contains("event="));
    assert!(!q.contains("numwant="));
    assert!(!q.contains("trackerid="));
    r.event = Event::Stopped;
    r.numwant = Some(200);
    r.tracker_id = Some("id 1&2".into());
    r.key = 7;
    let q = announce_path_and_query(&url("http://t.example/a"), &r);
    assert!(
        q.ends_with("&event=stopped&numwant=200&key=00000007&trackerid=id%201%262"),
        "{q}"
    );
    let full = announce_url(&url("HTTP://T.example:8080/a"), &r);
    assert!(
        full.starts_with("http://t.example:8080/a?info_hash="),
        "{full}"
    );
}

#[test]
fn http_request_snapshot() {
    // Proves the exact request bytes: request line, Host with a non-default port, fixed headers.
    let u = url("http://tracker.example:6969/announce?passkey=k");
    let bytes = http_get_request(&u, &announce_path_and_query(&u, &request()));
    // Line ends shown as `\r\n` so the snapshot proves them too.
    let shown = String::from_utf8(bytes)
        .unwrap()
        .replace("\r\n", "\\r\\n\n");
    insta::assert_snapshot!(shown);
}

#[test]
fn host_header_omits_default_port_and_brackets_ipv6() {
    // Proves Host is `host` on the default port and `[v6]:port` otherwise, and the target is safe.
    let req = |s: &str, target: &str| String::from_utf8(http_get_request(&url(s), target)).unwrap();
    assert!(req("http://t.example/a", "/a").contains("\r\nHost: t.example\r\n"));
    assert!(req("https://t.example/a", "/a").contains("\r\nHost: t.example\r\n"));
    assert!(req("https://t.example:80/a", "/a").contains("\r\nHost: t.example:80\r\n"));
    assert!(req("http://[::1]:6969/a", "/a").contains("\r\nHost: [::1]:6969\r\n"));
    assert!(req("http://t.example/", "").starts_with("GET / HTTP/1.1\r\n"));
    assert!(
        req("http://t.example/", "/a b\r\nX: y").starts_with("GET /a%20b%0D%0AX:%20y HTTP/1.1\r\n")
    );
}

/// Feeds `bytes` in pieces cut at `cuts`, then finishes.
fn read_cut(
    bytes: &[u8],
    cuts: &[usize],
    limits: HttpLimits,
) -> (bool, Result<HttpResponse, TrackerError>) {
    let mut reader = HttpResponseReader::with_limits(limits);
    let mut from = 0;
    for &cut in cuts.iter().chain([&bytes.len()]) {
        let cut = cut.clamp(from, bytes.len());
        reader.feed(&bytes[from..cut]);
        from = cut;
    }
    (reader.is_complete(), reader.finish())
}

/// Reads `bytes` whole, cut in two at every boundary, and byte by byte; asserts every way gives
/// the same outcome, and returns it with whether the reader said it was complete.
fn read_every_split(
    bytes: &[u8],
    limits: HttpLimits,
) -> (bool, Result<HttpResponse, TrackerError>) {
    let whole = read_cut(bytes, &[], limits);
    for i in 0..=bytes.len() {
        assert_eq!(read_cut(bytes, &[i], limits), whole, "cut at {i}");
    }
    let every: Vec<usize> = (0..bytes.len()).collect();
    assert_eq!(read_cut(bytes, &every, limits), whole, "byte by byte");
    whole
}

fn ok(status: u16, body: &[u8]) -> Result<HttpResponse, TrackerError> {
    Ok(HttpResponse {
        status,
        reason: "OK".into(),
        body: body.to_vec(),
    })
}

#[test]
fn content_length_body_at_every_split() {
    // Proves a Content-Length response reads the same however the stream is split, and is
    // complete (reading can stop) as soon as the body is in, ignoring bytes after it.
    let bytes = b"HTTP/1.1 200 OK\r\nServer: x\r\ncontent-LENGTH:  5 \r\n\r\nhelloEXTRA";
    assert_eq!(
        read_every_split(bytes, HttpLimits::default()),
        (true, ok(200, b"hello"))
    );
    let empty = b"HTTP/1.0 200 OK\nContent-Length: 0\n\n";
    assert_eq!(
        read_every_split(empty, HttpLimits::default()),
        (true, ok(200, b""))
    );
}

#[test]
fn chunked_body_with_extensions_and_trailers_at_every_split() {
    // Proves chunked framing is removed (extensions and trailers ignored) for every split, and
    // that Transfer-Encoding wins over Content-Length.
    let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n\
        5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nEXTRA";
    assert_eq!(
        read_every_split(bytes, HttpLimits::default()),
        (true, ok(200, b"hello 0123456789"))
    );
    // A server that closes right after the last chunk, without the final empty line.
    let lazy = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n";
    assert_eq!(
        read_every_split(lazy, HttpLimits::default()),
        (false, ok(200, b"hi"))
    );
}

#[test]
fn close_delimited_body_at_every_split() {
    // Proves a body without length or chunking runs to the end of the stream (HTTP/1.0 style).
    let bytes = b"\r\nHTTP/1.0 200 OK\r\n\r\nd8:intervali60ee";
    assert_eq!(
        read_every_split(bytes, HttpLimits::default()),
        (false, ok(200, b"d8:intervali60ee"))
    );
}

#[test]
fn interim_responses_are_skipped() {
    // Proves a 100 Continue before the real response does not become the answer.
    let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(
        read_every_split(bytes, HttpLimits::default()),
        (true, ok(200, b"ok"))
    );
}

#[test]
fn oversized_headers_and_bodies_are_refused() {
    // Proves the header and body bounds hold for each framing, at every split.
    let limits = HttpLimits {
        max_header_bytes: 64,
        max_body_bytes: 10,
    };
    let headers = TrackerError::TooLarge {
        what: "headers",
        limit: 64,
    };
    let body = TrackerError::TooLarge {
        what: "body",
        limit: 10,
    };
    let long_header = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(50));
    assert_eq!(
        read_every_split(long_header.as_bytes(), limits),
        (true, Err(headers.clone()))
    );
    // Exactly at the limit is fine: 64 bytes of head.
    let at_limit = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\nbody", "a".repeat(40));
    assert_eq!(at_limit.len() - 4, 64);
    assert_eq!(
        read_every_split(at_limit.as_bytes(), limits).1,
        ok(200, b"body")
    );
    let trailers = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Long: aaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    assert_eq!(read_every_split(trailers, limits), (true, Err(headers)));
    let declared = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n";
    assert_eq!(
        read_every_split(declared, limits),
        (true, Err(body.clone()))
    );
    let until_close = b"HTTP/1.1 200 OK\r\n\r\n0123456789x";
    assert_eq!(
        read_every_split(until_close, limits),
        (true, Err(body.clone()))
    );
    let exactly = b"HTTP/1.1 200 OK\r\n\r\n0123456789";
    assert_eq!(read_every_split(exactly, limits).1, ok(200, b"0123456789"));
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n5\r\n";
    assert_eq!(read_every_split(chunked, limits), (true, Err(body)));
    let long_chunk_line = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;{}\r\n",
        "x".repeat(2000)
    );
    assert!(matches!(
        read_every_split(long_chunk_line.as_bytes(), limits),
        (true, Err(TrackerError::BadResponse(_)))
    ));
}

#[test]
fn default_limits_are_16_kib_and_2_mib() {
    // Proves the documented defaults: a 2 MiB body passes, one byte more is refused.
    assert_eq!(
        HttpLimits::default(),
        HttpLimits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 2 * 1024 * 1024
        }
    );
    let mut reader = HttpResponseReader::new();
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2097153\r\n\r\n");
    assert!(reader.is_complete());
    assert!(matches!(
        reader.finish(),
        Err(TrackerError::TooLarge { what: "body", .. })
    ));
    let mut reader = HttpResponseReader::new();
    reader.feed(b"HTTP/1.1 200 OK\r\n\r\n");
    reader.feed(&vec![b'x'; 2 * 1024 * 1024]);
    assert_eq!(reader.finish().unwrap().body.len(), 2 * 1024 * 1024);
}

#[test]
fn redirects_are_reported_not_followed() {
    // Proves a 3xx ends the read with the status and Location, without waiting for the body.
    let bytes = b"HTTP/1.1 301 Moved Permanently\r\nLocation: http://new.example/announce\r\nContent-Length: 100\r\n\r\n";
    let (complete, result) = read_every_split(bytes, HttpLimits::default());
    assert!(complete);
    let err = result.unwrap_err();
    assert_eq!(
        err,
        TrackerError::Redirect {
            status: 301,
            location: "http://new.example/announce".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "tracker redirects (HTTP 301) to http://new.example/announce; bt does not follow tracker redirects"
    );
}

#[test]
fn malformed_and_truncated_responses() {
    // Proves broken HTTP gives BadResponse with a reason, never a panic or a partial body.
    let bad = |bytes: &[u8]| match read_every_split(bytes, HttpLimits::default()).1 {
        Err(TrackerError::BadResponse(why)) => why,
        other => panic!("{other:?}"),
    };
    assert_eq!(bad(b""), "the connection closed without an answer");
    assert_eq!(
        bad(b"HTTP/1.1 200 OK\r\nContent-"),
        "the connection closed in the middle of the headers"
    );
    assert_eq!(
        bad(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
        "the connection closed 7 bytes before the end of the body"
    );
    assert_eq!(
        bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"),
        "the connection closed in the middle of the chunked body"
    );
    assert!(bad(b"SSH-2.0-OpenSSH\r\n").starts_with("not an HTTP status line"));
    assert!(bad(b"HTTP/1.1 20 OK\r\n\r\n").starts_with("not an HTTP status line"));
    assert!(bad(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n").starts_with("header line without"));
    assert_eq!(
        bad(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        "conflicting Content-Length headers"
    );
    assert!(
        bad(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").starts_with("bad Content-Length")
    );
    assert!(bad(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n").contains("`gzip`"));
    assert!(bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").contains("`gzip`"));
    assert!(
        bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            .starts_with("bad chunk size")
    );
    assert_eq!(
        bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n"),
        "chunk data is longer than its chunk size"
    );
    // Identical Content-Length values, as a list or repeated, are one value.
    let same = b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(
        read_every_split(same, HttpLimits::default()).1,
        ok(200, b"ok")
    );
}

#[test]
fn status_other_than_200() {
    // Proves a non-200 status is an Http error unless the body carries a failure reason.
    let response = |status, body: &[u8]| HttpResponse {
        status,
        reason: "Not Found".into(),
        body: body.to_vec(),
    };
    let err = announce_response_from_http(&response(404, b"<html>nope</html>")).unwrap_err();
    assert_eq!(err.to_string(), "tracker answered HTTP 404 Not Found");
    assert_eq!(
        announce_response_from_http(&response(400, b"d14:failure reason12:unregisterede")),
        Err(TrackerError::Failure("unregistered".into()))
    );
    let (_, reply) = read_every_split(b"HTTP/1.1 204 No Content\r\n\r\n", HttpLimits::default());
    assert_eq!(reply.as_ref().unwrap().body, b"");
}

#[test]
fn compact_peers_v4_and_v6() {
    // Proves BEP 23 (6-byte) and BEP 7 (18-byte) peer lists, the counters and the intervals.
    let mut body =
        b"d8:completei5e10:incompletei7e8:intervali900e12:min intervali300e5:peers12:".to_vec();
    body.extend_from_slice(&[1, 2, 3, 4, 0x1a, 0xe1, 10, 0, 0, 1, 0, 80]);
    body.extend_from_slice(b"6:peers618:");
    body.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x1a, 0xe9,
    ]);
    body.extend_from_slice(b"10:tracker id3:abce");
    let answer = parse_announce_response(&body).unwrap();
    assert_eq!(
        answer,
        AnnounceResponse {
            interval: Duration::from_secs(900),
            min_interval: Some(Duration::from_secs(300)),
            tracker_id: Some("abc".into()),
            complete: Some(5),
            incomplete: Some(7),
            peers: vec![
                "1.2.3.4:6881".parse().unwrap(),
                "10.0.0.1:80".parse().unwrap(),
                "[2001:db8::1]:6889".parse().unwrap(),
            ],
            warning: None,
        }
    );
}

#[test]
fn dictionary_peers() {
    // Proves the BEP 3 list-of-dictionaries form: v4 and v6 literals kept, host names, bad ports
    // and non-dictionaries skipped.
    let body = b"d8:intervali60e5:peersl\
        d2:ip7:1.2.3.47:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti6881ee\
        d2:ip11:2001:db8::24:porti51413ee\
        d2:ip11:example.org4:porti1ee\
        d2:ip7:5.6.7.84:porti70000ee\
        d2:ip7:5.6.7.8e\
        i42e\
        ee";
    let answer = parse_announce_response(body).unwrap();
    assert_eq!(
        answer.peers,
        vec![
            "1.2.3.4:6881".parse::<SocketAddr>().unwrap(),
            "[2001:db8::2]:51413".parse().unwrap()
        ]
    );
}

#[test]
fn failure_warning_and_defaults() {
    // Proves failure reason wins, warnings are kept, and a missing interval means 30 minutes.
    assert_eq!(
        parse_announce_response(b"d14:failure reason9:not found8:intervali5ee"),
        Err(TrackerError::Failure("not found".into()))
    );
    assert_eq!(
        TrackerError::Failure("not found".into()).to_string(),
        "tracker said: not found"
    );
    let answer = parse_announce_response(b"d15:warning message6:hello!5:peers0:e").unwrap();
    assert_eq!(answer.warning.as_deref(), Some("hello!"));
    assert_eq!(answer.interval, DEFAULT_INTERVAL);
    assert_eq!(answer.min_interval, None);
    assert_eq!(answer.complete, None);
    let answer = parse_announce_response(b"d8:intervali-5e12:min intervali0e5:peerslee").unwrap();
    assert_eq!(
        (answer.interval, answer.min_interval),
        (DEFAULT_INTERVAL, None)
    );
}

#[test]
fn malformed_answers() {
    // Proves broken bencode or peer lists give BadResponse naming the problem.
    let bad = |body: &[u8]| match parse_announce_response(body) {
        Err(TrackerError::BadResponse(why)) => why,
        other => panic!("{other:?}"),
    };
    assert_eq!(bad(b""), "the answer is empty");
    assert!(bad(b"<html>").starts_with("the answer is not bencode"));
    assert_eq!(
        bad(b"li1ee"),
        "the answer is a bencoded list, not a dictionary"
    );
    assert_eq!(
        bad(b"d5:peers7:abcdefge"),
        "compact `peers` is 7 bytes long, not a multiple of 6"
    );
    assert_eq!(
        bad(b"d6:peers66:abcdefe"),
        "compact `peers6` is 6 bytes long, not a multiple of 18"
    );
    assert_eq!(
        bad(b"d5:peersi1ee"),
        "`peers` is an integer, not a string or a list"
    );
    assert_eq!(
        bad(b"d6:peers6dee"),
        "`peers6` is a dictionary, not a string"
    );
}

#[test]
fn peer_count_is_bounded() {
    // Proves at most MAX_PEERS_PER_RESPONSE peers are kept from a huge compact list.
    let n = MAX_PEERS_PER_RESPONSE + 500;
    let mut body = format!("d5:peers{}:", n * 6).into_bytes();
    for i in 0..n as u32 {
        body.extend_from_slice(&(0x0a00_0000 + i).to_be_bytes());
        body.extend_from_slice(&[0x1a, 0xe1]);
    }
    body.push(b'e');
    let answer = parse_announce_response(&body).unwrap();
    assert_eq!(answer.peers.len(), MAX_PEERS_PER_RESPONSE);
}

fn response_bytes() -> impl Strategy<Value = Vec<u8>> {
    let framing = prop_oneof![
        Just(String::new()),
        Just("Content-Length: 5\r\n".to_owned()),
        Just("Transfer-Encoding: chunked\r\n".to_owned()),
    ];
    let body = proptest::collection::vec(any::<u8>(), 0..40);
    let noise = proptest::collection::vec(any::<u8>(), 0..8);
    (framing, body, noise, 0usize..100).prop_map(|(framing, body, noise, at)| {
        let mut bytes = format!("HTTP/1.1 200 OK\r\n{framing}\r\n").into_bytes();
        bytes.extend_from_slice(&body);
        // Some noise at a random place, to reach the error paths too.
        let at = at.min(bytes.len());
        bytes.splice(at..at, noise);
        bytes
    })
}

proptest! {
    #[test]
    fn reader_result_does_not_depend_on_the_split(
        bytes in prop_oneof![response_bytes(), proptest::collection::vec(any::<u8>(), 0..200)],
        mut cuts in proptest::collection::vec(0usize..250, 0..12),
    ) {
        // Proves the reader never panics and its outcome depends only on the bytes, not on how
        // they were split.
        let limits = HttpLimits { max_header_bytes: 64, max_body_bytes: 32 };
        cuts.sort_unstable();
        prop_assert_eq!(read_cut(&bytes, &cuts, limits), read_cut(&bytes, &[], limits));
        let default = HttpLimits::default();
        prop_assert_eq!(read_cut(&bytes, &cuts, default), read_cut(&bytes, &[], default));
    }

}
