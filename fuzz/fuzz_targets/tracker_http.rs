//! Fuzzes the HTTP side of `bt tracker` as the runtime serves it: each request is read the way
//! `bt_runtime::trackerd` reads one (chunks until `http_head_end` finds the head or the buffer
//! passes `max_request_len`, then cut to one byte over it) and handed to
//! `TrackerServer::handle_http_request`. A second server with the same seed takes the same
//! steps through the typed API, so the request line and query parsing is checked against what
//! the request meant:
//! - an announce built by bt's own client (`announce_path_and_query`, `http_get_request`, from
//!   any request fields, info hashes full of `%`, `&`, `=` and `+`, and tracker URLs with their
//!   own path and query) gets exactly the answer `TrackerServer::announce` gives for the request,
//!   as `parse_announce_response` reads it (431 when too long, 404 off the announce path);
//! - a scrape of up to five info hashes (percent-encoded or raw where unreserved) lists the first
//!   `max_scrape_hashes` distinct ones, each with the server's own counts;
//! - raw bytes (alone, or as an announce or scrape query) get the same bytes from both servers:
//!   a complete HTTP response with a bencoded body;
//! - after every step both servers know the same swarms; `http_head_end` finds the first empty
//!   line of the head and never moves as more bytes arrive.
#![no_main]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use arbitrary::Arbitrary;
use bt_protocol::bencode::{DecodeLimits, Value, decode};
use bt_protocol::metainfo::InfoHash;
use bt_protocol::time::Instant;
use bt_protocol::tracker::{
    AnnounceRequest, Event, HttpResponse, HttpResponseReader, TrackerConfig, TrackerError,
    TrackerServer, TrackerUrl, announce_path_and_query, http_get_request, http_head_end,
    parse_announce_response,
};
use bt_protocol::wire::PeerId;
use libfuzzer_sys::fuzz_target;

/// Tracker URLs a client may be given: paths the server serves (with their own query, ending in
/// `?` or `&`) and one it does not (404).
const URLS: [&str; 5] = [
    "http://tracker.example/announce",
    "http://tracker.example:8080/x/announce.php?passkey=a%20b",
    "http://[2001:db8::9]/announce?",
    "http://tracker.example/t/announce?key2=v&",
    "http://tracker.example/announcer",
];

/// Info hashes that collide between steps, with bytes a query must escape.
const HASHES: [[u8; 20]; 4] = [[b'%'; 20], [b'&'; 20], [b'+'; 20], *b"=info_hash=?#/ %00ab"];

/// The clients (an IPv4-mapped one reaches the server as IPv4, as trackerd gives it).
const CLIENTS: [[u16; 8]; 4] = [
    [0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001],
    [0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0002],
    [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1],
    [0x2001, 0xdb8, 0, 0, 0, 0, 0, 2],
];

const MAX_REQUEST_LEN: usize = 700;
const MAX_SCRAPE_HASHES: usize = 3;

#[derive(Arbitrary, Debug)]
enum Hash {
    Known(u8),
    Any([u8; 20]),
}

impl Hash {
    fn get(&self) -> [u8; 20] {
        match self {
            Hash::Known(i) => HASHES[usize::from(*i) % HASHES.len()],
            Hash::Any(h) => *h,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Step {
    Announce {
        client: u8,
        url: u8,
        chunk: u16,
        hash: Hash,
        peer_id: [u8; 20],
        port: u16,
        uploaded: u64,
        downloaded: u64,
        left: u64,
        event: u8,
        numwant: Option<u32>,
        key: u32,
        tracker_id: Option<String>,
    },
    Scrape {
        chunk: u16,
        hashes: Vec<Hash>,
        raw: bool,
    },
    Raw {
        client: u8,
        chunk: u16,
        wrap: u8,
        bytes: Vec<u8>,
    },
    Wait {
        secs: u8,
    },
}

fuzz_target!(|steps: Vec<Step>| {
    let config = TrackerConfig {
        interval: Duration::from_secs(30),
        max_torrents: 3,
        max_peers_per_torrent: 4,
        max_peers: 6,
        max_numwant: 3,
        max_scrape_hashes: MAX_SCRAPE_HASHES,
        max_request_len: MAX_REQUEST_LEN,
        ..TrackerConfig::default()
    };
    let mut http = TrackerServer::new(config.clone(), 7);
    let mut typed = TrackerServer::new(config, 7);
    let mut now = Instant::ZERO;
    let mut seen: BTreeSet<[u8; 20]> = HASHES.into_iter().collect();
    for step in steps.iter().take(64) {
        http.handle_timeout(now);
        typed.handle_timeout(now);
        match step {
            Step::Announce {
                client,
                url,
                chunk,
                hash,
                peer_id,
                port,
                uploaded,
                downloaded,
                left,
                event,
                numwant,
                key,
                tracker_id,
            } => {
                let ip = client_ip(*client);
                let url = URLS[usize::from(*url) % URLS.len()];
                let request = AnnounceRequest {
                    info_hash: InfoHash(hash.get()),
                    peer_id: PeerId(*peer_id),
                    port: *port,
                    uploaded: *uploaded,
                    downloaded: *downloaded,
                    left: *left,
                    event: [
                        Event::None,
                        Event::Started,
                        Event::Completed,
                        Event::Stopped,
                    ][usize::from(*event % 4)],
                    numwant: *numwant,
                    key: *key,
                    tracker_id: tracker_id.clone(),
                };
                if seen.len() < 16 {
                    seen.insert(request.info_hash.0);
                }
                let url = TrackerUrl::parse(url).expect("a valid tracker URL");
                let bytes = http_get_request(&url, &announce_path_and_query(&url, &request));
                let head = read_head(&bytes, *chunk);
                let reply = answer(&mut http, now, ip, &head);
                if head.len() > MAX_REQUEST_LEN {
                    assert_eq!(reply.status, 431);
                } else if url.path_and_query().contains("announcer") {
                    assert_eq!(reply.status, 404);
                } else {
                    assert_eq!(http_head_end(&head), Some(bytes.len()), "one whole head");
                    assert_eq!(reply.status, 200);
                    let expected = typed
                        .announce(now, ip, &request)
                        .map(|answer| {
                            let mut response = answer.to_response();
                            // The HTTP answer lists IPv4 peers (`peers`) before IPv6 (`peers6`).
                            response.peers.sort_by_key(|p| p.is_ipv6());
                            response
                        })
                        .map_err(|refusal| TrackerError::Failure(refusal.to_string()));
                    assert_eq!(
                        parse_announce_response(&reply.body),
                        expected,
                        "{request:?}"
                    );
                }
            }
            Step::Scrape { chunk, hashes, raw } => {
                let hashes: Vec<[u8; 20]> = hashes.iter().take(5).map(Hash::get).collect();
                let mut target = b"/scrape?".to_vec();
                for h in &hashes {
                    target.extend_from_slice(b"info_hash=");
                    target.extend_from_slice(&percent_encode(h, *raw));
                    target.push(b'&');
                }
                let mut bytes = b"GET ".to_vec();
                bytes.extend_from_slice(&target);
                bytes.extend_from_slice(b" HTTP/1.1\r\nHost: tracker.example\r\n\r\n");
                let reply = answer(&mut http, now, client_ip(0), &read_head(&bytes, *chunk));
                assert_eq!(reply.status, 200);
                let mut expected = Vec::new();
                for h in hashes {
                    if !expected.contains(&h) && expected.len() < MAX_SCRAPE_HASHES {
                        expected.push(h);
                    }
                }
                expected.sort();
                check_scrape(&http, &reply.body, &expected);
            }
            Step::Raw {
                client,
                chunk,
                wrap,
                bytes,
            } => {
                let wrapped = match wrap % 3 {
                    0 => bytes.clone(),
                    n => {
                        let path: &[u8] = if n == 1 { b"/announce?" } else { b"/scrape?" };
                        [b"GET ", path, bytes, b" HTTP/1.1\r\n\r\n"].concat()
                    }
                };
                let head = read_head(&wrapped, *chunk);
                let ip = client_ip(*client);
                let one = http.handle_http_request(now, ip, &head);
                let other = typed.handle_http_request(now, ip, &head);
                assert_eq!(one, other, "same state, same request, same answer");
                let response = read_response(&one);
                decode(&response.body, DecodeLimits::default()).expect("a bencoded body");
            }
            Step::Wait { secs } => now = now + Duration::from_secs(u64::from(*secs)),
        }
        for h in &seen {
            assert_eq!(http.swarm(&InfoHash(*h)), typed.swarm(&InfoHash(*h)));
        }
        assert_eq!(http.torrent_count(), typed.torrent_count());
        assert_eq!(http.peer_count(), typed.peer_count());
    }
});

fn client_ip(client: u8) -> IpAddr {
    IpAddr::from(CLIENTS[usize::from(client) % CLIENTS.len()]).to_canonical()
}

/// Reads a request from `stream` the way trackerd's `http_connection` does, `chunk` bytes (at
/// least 1) per read: until the head is whole, the buffer is over `MAX_REQUEST_LEN`, or the
/// stream ends; then cut to `MAX_REQUEST_LEN + 1`. Checks `http_head_end` on every prefix read.
fn read_head(stream: &[u8], chunk: u16) -> Vec<u8> {
    let chunk = usize::from(chunk % 4096).max(1);
    let mut request = Vec::new();
    let mut rest = stream;
    let mut found = None;
    while found.is_none() && request.len() <= MAX_REQUEST_LEN && !rest.is_empty() {
        let (read, tail) = rest.split_at(chunk.min(rest.len()));
        request.extend_from_slice(read);
        rest = tail;
        found = http_head_end(&request);
        if let Some(end) = found {
            assert!(end <= request.len());
            let head = &request[..end];
            assert!(
                head.ends_with(b"\n\n") || head.ends_with(b"\r\n\r\n"),
                "{head:?}"
            );
            assert_eq!(
                http_head_end(&request[..end - 1]),
                None,
                "the first empty line"
            );
            assert_eq!(
                http_head_end(stream),
                Some(end),
                "more bytes do not move it"
            );
        }
    }
    request.truncate(MAX_REQUEST_LEN + 1);
    request
}

/// The server's answer to `head` from `ip`, read as a client reads it.
fn answer(server: &mut TrackerServer, now: Instant, ip: IpAddr, head: &[u8]) -> HttpResponse {
    read_response(&server.handle_http_request(now, ip, head))
}

fn read_response(reply: &[u8]) -> HttpResponse {
    let mut reader = HttpResponseReader::new();
    reader.feed(reply);
    assert!(reader.is_complete());
    let response = reader.finish().expect("a well-formed HTTP response");
    assert_eq!(
        &reply[http_head_end(reply).expect("a whole head")..],
        response.body.as_slice()
    );
    response
}

/// `%XX` for every byte, or only for those outside the unreserved set when `raw`.
fn percent_encode(bytes: &[u8], raw: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in bytes {
        if raw && (b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

/// A scrape body lists exactly `expected` (sorted), each with the server's counts.
fn check_scrape(server: &TrackerServer, body: &[u8], expected: &[[u8; 20]]) {
    let decoded = decode(body, DecodeLimits::default()).expect("bencode");
    let root = decoded.value.as_dict().expect("a dictionary");
    if expected.is_empty() {
        assert!(root.get(b"failure reason").is_some(), "no hash, a failure");
        return;
    }
    let files = root.get(b"files").and_then(Value::as_dict).expect("files");
    let listed: Vec<&[u8]> = files.iter().map(|(k, _)| k).collect();
    let wanted: Vec<&[u8]> = expected.iter().map(|h| &h[..]).collect();
    assert_eq!(listed, wanted);
    for (hash, entry) in files.iter() {
        let stats = server
            .swarm(&InfoHash(hash.try_into().expect("20 bytes")))
            .unwrap_or_default();
        let int = |key: &[u8]| {
            entry
                .as_dict()
                .and_then(|d| d.get(key))
                .and_then(Value::as_int)
        };
        assert_eq!(int(b"complete"), Some(i64::from(stats.complete)));
        assert_eq!(int(b"incomplete"), Some(i64::from(stats.incomplete)));
        assert_eq!(int(b"downloaded"), Some(i64::from(stats.downloaded)));
    }
}
