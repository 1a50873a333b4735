//! What an announce asks ([`AnnounceRequest`]) and what a tracker answers ([`AnnounceResponse`],
//! [`TrackerError`]), shared by the HTTP (BEP 3) and UDP (BEP 15) clients.
//!
//! Invariants: a response built by this module's parsers keeps the bounds and normalisations
//! listed on [`AnnounceResponse`], whatever the tracker sent; tracker text in a [`TrackerError`]
//! is bounded and safe to print the same way.

use core::net::SocketAddr;
use std::collections::BTreeSet;
use std::time::Duration;

use super::url::TrackerUrlError;
use crate::metainfo::InfoHash;
use crate::wire::PeerId;

/// Most peers kept from one response; the rest are dropped. A tracker rarely gives more than 200.
pub const MAX_PEERS_PER_RESPONSE: usize = 10_000;

/// The interval used when a tracker gives none, or zero, or a negative one (libtorrent does the
/// same): 30 minutes.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1800);

/// The longest interval (and min interval) kept; longer ones are cut to this: one day.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The longest failure or warning text kept from a tracker, in bytes; longer ones are cut.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// The longest `tracker id` kept, in bytes; a longer one is ignored (it would be sent back on
/// every announce).
pub const MAX_TRACKER_ID_LEN: usize = 256;

/// The `event` of an announce (BEP 3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Event {
    /// A regular re-announce: no `event` parameter (UDP code 0).
    #[default]
    None,
    /// The first announce of a download (UDP code 2).
    Started,
    /// The download just finished (UDP code 1). Not sent when the data was complete at start.
    Completed,
    /// We are leaving the swarm (UDP code 3).
    Stopped,
}

impl Event {
    /// The value of the HTTP `event` parameter; `None` for [`Event::None`], which omits it.
    pub fn as_param(self) -> Option<&'static str> {
        match self {
            Event::None => None,
            Event::Started => Some("started"),
            Event::Completed => Some("completed"),
            Event::Stopped => Some("stopped"),
        }
    }

    /// The BEP 15 event code: 0 none, 1 completed, 2 started, 3 stopped.
    pub fn udp_code(self) -> u32 {
        match self {
            Event::None => 0,
            Event::Completed => 1,
            Event::Started => 2,
            Event::Stopped => 3,
        }
    }
}

/// One announce: who we are and how far along, for one torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id.
    pub peer_id: PeerId,
    /// The TCP port we accept peers on.
    pub port: u16,
    /// Payload bytes sent to peers since the `started` announce.
    pub uploaded: u64,
    /// Payload bytes received from peers since the `started` announce.
    pub downloaded: u64,
    /// Bytes we still need for the whole torrent.
    pub left: u64,
    /// Why we announce now.
    pub event: Event,
    /// How many peers we would like; `None` lets the tracker choose (usually 50).
    pub numwant: Option<u32>,
    /// A random number fixed for the session, so a tracker can recognise us when our IP changes.
    pub key: u32,
    /// The `tracker id` the tracker gave in an earlier answer, sent back over HTTP.
    pub tracker_id: Option<String>,
}

/// What a tracker answered to an announce.
///
/// Invariants of a response built by [`super::parse_announce_response`] or [`super::UdpAnnounce`],
/// whatever the tracker sent: at most [`MAX_PEERS_PER_RESPONSE`] peers, no duplicates, none with
/// port 0 or an unspecified address, IPv4-mapped IPv6 addresses given as IPv4; `interval` (and
/// `min_interval`) between 1 s and [`MAX_INTERVAL`], a missing, zero or negative interval becoming
/// [`DEFAULT_INTERVAL`]; every text from the tracker (failure, warning) trimmed, at most
/// [`MAX_MESSAGE_LEN`] bytes, with control characters replaced by U+FFFD so it is safe to print on
/// a terminal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// When to announce again (normalised: see above).
    pub interval: Duration,
    /// The tracker asks not to be announced to more often than this (HTTP only).
    pub min_interval: Option<Duration>,
    /// To send back in later announces to this tracker (HTTP only).
    pub tracker_id: Option<String>,
    /// Seeders, as the tracker counts them.
    pub complete: Option<u32>,
    /// Leechers, as the tracker counts them.
    pub incomplete: Option<u32>,
    /// Peers to connect to, IPv4 then IPv6, in the tracker's order.
    pub peers: Vec<SocketAddr>,
    /// A `warning message`: the announce worked, but the tracker has something to say.
    pub warning: Option<String>,
}

/// Why an announce failed. Each message says what happened in words a user can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    /// The tracker refused the announce (`failure reason` over HTTP, action 3 over UDP), for
    /// example because the torrent is not registered there.
    #[error("tracker said: {0}")]
    Failure(String),
    /// The tracker answered with an HTTP status other than 200 and no `failure reason`.
    #[error("tracker answered HTTP {status} {reason}")]
    Http {
        /// The status code.
        status: u16,
        /// The reason phrase (sanitised, at most 128 bytes).
        reason: String,
    },
    /// The tracker answered with a redirect; bt does not follow them (a tracker that moved
    /// should be given by its new URL).
    #[error(
        "tracker redirects (HTTP {status}) to {location}; bt does not follow tracker redirects"
    )]
    Redirect {
        /// The 3xx status code.
        status: u16,
        /// The `Location` header (sanitised, at most 1 KiB), or `(none)`.
        location: String,
    },
    /// The answer broke HTTP or bencode or BEP 15, or missed a required field.
    #[error("tracker sent a malformed answer: {0}")]
    BadResponse(String),
    /// The answer was larger than bt accepts.
    #[error("tracker answer is too large: {what} over {limit} bytes")]
    TooLarge {
        /// Which part: `headers` or `body`.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// No answer in time (after every UDP retransmission, or the driver's HTTP deadline).
    #[error("tracker did not answer in time")]
    Timeout,
    /// The driver could not reach the tracker (name resolution, connection refused, TLS).
    #[error("could not reach tracker: {0}")]
    Unreachable(String),
    /// The tracker URL cannot be used.
    #[error("bad tracker URL: {0}")]
    Url(#[from] TrackerUrlError),
}

/// `seconds` from a tracker as an interval: at least 1 s (a non-positive value means
/// [`DEFAULT_INTERVAL`]), at most [`MAX_INTERVAL`].
pub(crate) fn interval_from_secs(seconds: i64) -> Duration {
    if seconds <= 0 {
        return DEFAULT_INTERVAL;
    }
    Duration::from_secs(seconds.unsigned_abs()).min(MAX_INTERVAL)
}

/// Tracker text made safe to show: surrounding whitespace and trailing NULs removed, lossy
/// UTF-8, control characters replaced by U+FFFD, cut to `max_len` bytes at a character boundary.
pub(crate) fn sanitize_text(bytes: &[u8], max_len: usize) -> String {
    let mut bytes = bytes.trim_ascii();
    while let [rest @ .., 0] = bytes {
        bytes = rest.trim_ascii_end();
    }
    let mut out = String::new();
    for c in String::from_utf8_lossy(&bytes[..bytes.len().min(max_len.saturating_mul(4))]).chars() {
        let c = if c.is_control() { '\u{fffd}' } else { c };
        if out.len() + c.len_utf8() > max_len {
            break;
        }
        out.push(c);
    }
    out
}

/// Collects peers with the invariants of [`AnnounceResponse::peers`].
#[derive(Debug, Default)]
pub(crate) struct PeerCollector {
    peers: Vec<SocketAddr>,
    seen: BTreeSet<SocketAddr>,
}

impl PeerCollector {
    /// Whether [`MAX_PEERS_PER_RESPONSE`] peers are collected.
    pub(crate) fn is_full(&self) -> bool {
        self.peers.len() >= MAX_PEERS_PER_RESPONSE
    }

    /// Adds `addr` unless it is unusable, a duplicate, or the list is full.
    pub(crate) fn push(&mut self, addr: SocketAddr) {
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        if addr.port() == 0 || addr.ip().is_unspecified() || self.is_full() {
            return;
        }
        if self.seen.insert(addr) {
            self.peers.push(addr);
        }
    }

    /// Adds every whole 6-byte (IPv4) or 18-byte (IPv6) entry of a compact list (BEP 23, BEP 7),
    /// stopping when full.
    pub(crate) fn push_compact(&mut self, bytes: &[u8], entry_len: usize) {
        for entry in bytes.chunks_exact(entry_len) {
            if self.is_full() {
                return;
            }
            let (ip, port) = entry.split_at(entry_len - 2);
            let port = u16::from_be_bytes([port[0], port[1]]);
            let ip = match <[u8; 4]>::try_from(ip) {
                Ok(v4) => core::net::IpAddr::from(v4),
                Err(_) => match <[u8; 16]>::try_from(ip) {
                    Ok(v6) => core::net::IpAddr::from(v6),
                    Err(_) => return,
                },
            };
            self.push(SocketAddr::new(ip, port));
        }
    }

    /// The peers, in the order first seen.
    pub(crate) fn into_peers(self) -> Vec<SocketAddr> {
        self.peers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_normalised() {
        // Proves a missing-like (<= 0) interval becomes 30 min and a huge one is cut to a day.
        assert_eq!(interval_from_secs(0), DEFAULT_INTERVAL);
        assert_eq!(interval_from_secs(-5), DEFAULT_INTERVAL);
        assert_eq!(interval_from_secs(1), Duration::from_secs(1));
        assert_eq!(interval_from_secs(900), Duration::from_secs(900));
        assert_eq!(interval_from_secs(i64::MAX), MAX_INTERVAL);
    }

    #[test]
    fn tracker_text_is_safe_to_print() {
        // Proves control characters (terminal escapes) are replaced and long text is cut.
        assert_eq!(
            sanitize_text(b" ok \x1b[2J\x07x\n", 100),
            "ok \u{fffd}[2J\u{fffd}x"
        );
        assert_eq!(sanitize_text(b"message\n\0\0", 100), "message");
        assert_eq!(sanitize_text(&[b'a'; 5000], MAX_MESSAGE_LEN).len(), 1024);
        assert_eq!(sanitize_text("ééé".as_bytes(), 5), "éé");
        assert_eq!(sanitize_text(b"\xff", 10), "\u{fffd}");
    }

    #[test]
    fn collector_drops_unusable_and_duplicate_peers() {
        // Proves port 0, 0.0.0.0 and duplicates are dropped and mapped IPv6 becomes IPv4.
        let mut c = PeerCollector::default();
        c.push("1.2.3.4:5".parse().unwrap());
        c.push("1.2.3.4:5".parse().unwrap());
        c.push("[::ffff:1.2.3.4]:5".parse().unwrap());
        c.push("1.2.3.4:0".parse().unwrap());
        c.push("0.0.0.0:5".parse().unwrap());
        c.push("[::]:5".parse().unwrap());
        c.push("[::1]:7".parse().unwrap());
        assert_eq!(
            c.into_peers(),
            vec![
                "1.2.3.4:5".parse::<SocketAddr>().unwrap(),
                "[::1]:7".parse().unwrap()
            ]
        );
    }

    #[test]
    fn events_have_bep_codes() {
        // Proves the HTTP names and BEP 15 numbers of each event.
        let all = [
            Event::None,
            Event::Completed,
            Event::Started,
            Event::Stopped,
        ];
        assert_eq!(all.map(Event::udp_code), [0, 1, 2, 3]);
        assert_eq!(
            all.map(Event::as_param),
            [None, Some("completed"), Some("started"), Some("stopped")]
        );
    }
}
