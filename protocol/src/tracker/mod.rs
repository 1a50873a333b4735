//! Trackers: where a torrent finds its peers. Announce scheduling over tiers (BEP 12), the HTTP
//! client pieces (BEP 3, with BEP 23 compact and BEP 7 IPv6 peer lists) and the UDP client
//! (BEP 15), all without I/O.
//!
//! - [`TrackerUrl`]: an announce URL parsed once (scheme, host, port, path and query).
//! - [`AnnounceRequest`], [`AnnounceResponse`], [`TrackerError`]: what an announce says and
//!   what comes back, the same for HTTP and UDP.
//! - HTTP: [`announce_path_and_query`], [`http_get_request`], the incremental
//!   [`HttpResponseReader`], and [`parse_announce_response`] / [`announce_response_from_http`].
//! - UDP: [`UdpAnnounce`], one announce's connect/announce exchange with retransmissions.
//! - [`Announcer`]: decides when and to which URL a torrent announces, with which event, and
//!   backs off when every tracker fails.
//! - [`TrackerServer`]: the other side, a tracker serving HTTP announces and scrapes and BEP 15
//!   UDP from one peer store (`bt tracker`, and trackers in the simulator).
//!
//! How a driver combines them: it asks [`Announcer::poll_announce`] for the next announce, builds
//! an [`AnnounceRequest`] from the torrent's counters, performs it over HTTP (bytes from
//! [`http_get_request`], answer through [`HttpResponseReader`]) or UDP (a [`UdpAnnounce`] it
//! drives like any other machine, keeping [`UdpAnnounce::connection`] per tracker for the next
//! one), and reports the result with [`Announcer::handle_success`] or
//! [`Announcer::handle_failure`]. Peers in the answer go to the torrent.
//!
//! The HTTP exchange, step by step: the driver opens a TCP (or TLS) connection to
//! [`TrackerUrl::host`]:[`TrackerUrl::port`], writes [`http_get_request`], feeds whatever it reads
//! to [`HttpResponseReader::feed`] until [`HttpResponseReader::is_complete`] or end of stream,
//! then calls [`HttpResponseReader::finish`] and [`announce_response_from_http`]:
//!
//! ```
//! use bt_protocol::tracker::{
//!     AnnounceRequest, Event, HttpResponseReader, TrackerUrl, announce_path_and_query,
//!     announce_response_from_http, http_get_request,
//! };
//! # use bt_protocol::{metainfo::InfoHash, wire::PeerId};
//! # let request = AnnounceRequest {
//! #     info_hash: InfoHash([1; 20]), peer_id: PeerId([2; 20]), port: 6881, uploaded: 0,
//! #     downloaded: 0, left: 100, event: Event::Started, numwant: None, key: 7, tracker_id: None,
//! # };
//! let url = TrackerUrl::parse("http://127.0.0.1:6969/announce").unwrap();
//! let bytes = http_get_request(&url, &announce_path_and_query(&url, &request));
//! // ... write `bytes`, then read:
//! let mut reader = HttpResponseReader::new();
//! reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 32\r\n\r\n");
//! reader.feed(b"d8:intervali900e5:peers6:\x7f\x00\x00\x01\x1a\xe1e");
//! assert!(reader.is_complete());
//! let answer = announce_response_from_http(&reader.finish().unwrap()).unwrap();
//! assert_eq!(answer.peers, ["127.0.0.1:6881".parse().unwrap()]);
//! ```
//!
//! Invariants: nothing here panics on any input from a tracker, and everything a tracker can grow
//! is bounded (each type's docs say how).

mod announce;
mod http;
mod server;
mod tiers;
mod udp;
mod url;

pub use announce::{
    AnnounceRequest, AnnounceResponse, DEFAULT_INTERVAL, Event, MAX_INTERVAL, MAX_MESSAGE_LEN,
    MAX_PEERS_PER_RESPONSE, MAX_TRACKER_ID_LEN, TrackerError,
};
pub use http::{
    HttpLimits, HttpResponse, HttpResponseReader, USER_AGENT, announce_path_and_query,
    announce_response_from_http, announce_url, http_get_request, parse_announce_response,
};
pub use server::{
    AnnounceAnswer, AnnounceRefusal, CONNECTION_ID_WINDOW, MAX_UDP_SCRAPE_HASHES, ServerStats,
    SwarmStats, TrackerConfig, TrackerServer, http_head_end,
};
pub use tiers::{Announce, Announcer, AnnouncerConfig, MAX_TRACKERS};
pub use udp::{
    ANNOUNCE_REQUEST_LEN, CONNECT_REQUEST_LEN, CONNECTION_ID_LIFETIME, PROTOCOL_ID, UdpAnnounce,
    UdpConfig, announce_request, connect_request,
};
pub use url::{MAX_URL_LEN, Scheme, TrackerUrl, TrackerUrlError};

#[cfg(test)]
mod answer_tests;
#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod tiers_tests;
#[cfg(test)]
mod udp_tests;
