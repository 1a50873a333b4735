//! Property tests of the bencoded HTTP announce answer: well-formed answers with random peers
//! (compact, dictionaries, IPv6), intervals, counts, texts and failure reasons parse to what a
//! model of BEP 3/7/23 says, and mutations of them parse or fail cleanly, never breaking the
//! invariants of [`AnnounceResponse`].

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::bencode::{Dict, Value, encode};
use crate::mutation::{check_accepts_some, mutated, mutations};

/// One entry of the dictionary form of `peers`.
#[derive(Clone, Debug)]
enum DictPeer {
    /// `ip` is the address's literal.
    Addr(SocketAddr),
    /// `ip` is a host name: skipped, since resolving is I/O.
    Host(String, u16),
    /// `port` is outside the `u16` range: skipped.
    BadPort(Ipv4Addr, i64),
}

#[derive(Clone, Debug)]
enum Peers {
    Compact(Vec<SocketAddrV4>),
    Dicts(Vec<DictPeer>),
}

/// A well-formed announce answer, as a tracker would send it.
#[derive(Clone, Debug)]
struct Answer {
    failure: Option<String>,
    interval: Option<i64>,
    min_interval: Option<i64>,
    tracker_id: Option<String>,
    complete: Option<i64>,
    incomplete: Option<i64>,
    warning: Option<String>,
    peers: Option<Peers>,
    peers6: Option<Vec<SocketAddrV6>>,
}

impl Answer {
    /// The answer in canonical bencode, with `peer id`s in dictionary peers as trackers send them.
    fn encode(&self) -> Vec<u8> {
        let mut d = Dict::new();
        let text = |s: &str| Value::owned_bytes(s.as_bytes());
        let mut put = |key: &'static str, value: Option<Value<'static>>| {
            if let Some(value) = value {
                d.insert(key.as_bytes(), value);
            }
        };
        put("failure reason", self.failure.as_deref().map(text));
        put("interval", self.interval.map(Value::Int));
        put("min interval", self.min_interval.map(Value::Int));
        put("tracker id", self.tracker_id.as_deref().map(text));
        put("complete", self.complete.map(Value::Int));
        put("incomplete", self.incomplete.map(Value::Int));
        put("warning message", self.warning.as_deref().map(text));
        put(
            "peers",
            self.peers.as_ref().map(|peers| match peers {
                Peers::Compact(list) => {
                    let mut b = Vec::new();
                    for a in list {
                        b.extend_from_slice(&a.ip().octets());
                        b.extend_from_slice(&a.port().to_be_bytes());
                    }
                    Value::owned_bytes(b)
                }
                Peers::Dicts(list) => Value::List(list.iter().map(dict_peer).collect()),
            }),
        );
        put(
            "peers6",
            self.peers6.as_ref().map(|list| {
                let mut b = Vec::new();
                for a in list {
                    b.extend_from_slice(&a.ip().octets());
                    b.extend_from_slice(&a.port().to_be_bytes());
                }
                Value::owned_bytes(b)
            }),
        );
        encode(&Value::Dict(d)).unwrap()
    }

    /// What the parser must make of the answer.
    fn expected(&self) -> Result<AnnounceResponse, TrackerError> {
        if let Some(reason) = &self.failure {
            return Err(TrackerError::Failure(sanitized(reason)));
        }
        let clamp = |n: i64| Duration::from_secs(n.unsigned_abs()).min(MAX_INTERVAL);
        let mut sent: Vec<SocketAddr> = Vec::new();
        match &self.peers {
            Some(Peers::Compact(list)) => sent.extend(list.iter().copied().map(SocketAddr::V4)),
            Some(Peers::Dicts(list)) => sent.extend(list.iter().filter_map(|p| match p {
                DictPeer::Addr(a) => Some(*a),
                DictPeer::Host(..) | DictPeer::BadPort(..) => None,
            })),
            None => {}
        }
        sent.extend(self.peers6.iter().flatten().copied().map(SocketAddr::V6));
        let peers = usable_peers(sent);
        Ok(AnnounceResponse {
            interval: match self.interval {
                Some(n) if n > 0 => clamp(n),
                _ => DEFAULT_INTERVAL,
            },
            min_interval: self.min_interval.filter(|&n| n > 0).map(clamp),
            tracker_id: self
                .tracker_id
                .clone()
                .filter(|id| !id.is_empty() && id.len() <= MAX_TRACKER_ID_LEN),
            complete: self.complete.and_then(|n| u32::try_from(n).ok()),
            incomplete: self.incomplete.and_then(|n| u32::try_from(n).ok()),
            peers,
            warning: self.warning.as_deref().map(sanitized),
        })
    }
}

/// The peers a tracker sent as an answer must list them: IPv4-mapped addresses as IPv4, without
/// port 0, the unspecified address or repeats, in the order sent.
pub(super) fn usable_peers(sent: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    let mut seen = BTreeSet::new();
    sent.into_iter()
        .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
        .filter(|a| a.port() != 0 && !a.ip().is_unspecified() && seen.insert(*a))
        .collect()
}

fn dict_peer(peer: &DictPeer) -> Value<'static> {
    let (ip, port) = match peer {
        DictPeer::Addr(a) => (a.ip().to_string(), i64::from(a.port())),
        DictPeer::Host(host, port) => (host.clone(), i64::from(*port)),
        DictPeer::BadPort(ip, port) => (ip.to_string(), *port),
    };
    let mut d = Dict::new();
    d.insert(&b"ip"[..], Value::owned_bytes(ip.into_bytes()));
    d.insert(&b"peer id"[..], Value::owned_bytes(vec![b'-'; 20]));
    d.insert(&b"port"[..], Value::Int(port));
    Value::Dict(d)
}

/// Ports and addresses drawn so that port 0, the unspecified address, IPv4-mapped IPv6 and
/// duplicates all occur.
fn port() -> impl Strategy<Value = u16> {
    prop_oneof![Just(0), Just(6881), any::<u16>()]
}

fn v4() -> impl Strategy<Value = SocketAddrV4> {
    let ip = prop_oneof![
        Just(Ipv4Addr::UNSPECIFIED),
        Just(Ipv4Addr::new(10, 0, 0, 1)),
        any::<Ipv4Addr>()
    ];
    (ip, port()).prop_map(|(ip, port)| SocketAddrV4::new(ip, port))
}

fn v6() -> impl Strategy<Value = SocketAddrV6> {
    let ip = prop_oneof![
        Just(Ipv6Addr::UNSPECIFIED),
        Just(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()),
        any::<Ipv6Addr>()
    ];
    (ip, port()).prop_map(|(ip, port)| SocketAddrV6::new(ip, port, 0, 0))
}

fn peers() -> impl Strategy<Value = Peers> {
    let entry = prop_oneof![
        4 => v4().prop_map(|a| DictPeer::Addr(a.into())),
        2 => v6().prop_map(|a| DictPeer::Addr(a.into())),
        1 => ("[a-z]{1,12}\\.example", port()).prop_map(|(h, p)| DictPeer::Host(h, p)),
        1 => (any::<Ipv4Addr>(), prop_oneof![i64::MIN..0, 65536..i64::MAX])
            .prop_map(|(ip, p)| DictPeer::BadPort(ip, p)),
    ];
    prop_oneof![
        proptest::collection::vec(v4(), 0..40).prop_map(Peers::Compact),
        proptest::collection::vec(entry, 0..20).prop_map(Peers::Dicts),
    ]
}

/// Integers around the interesting edges (negative, zero, past `u32`, past a day) and anywhere.
fn int() -> impl Strategy<Value = i64> {
    prop_oneof![-5i64..200_000, Just(i64::MIN), Just(i64::MAX), any::<i64>()]
}

/// A tracker's text: words with control characters (tab, escape, DEL) inside, and whitespace
/// around it.
pub(super) fn text() -> impl Strategy<Value = String> {
    "[ \\n]{0,2}[a-zA-Z0-9.,!?é€]([ a-zA-Z0-9.,!?é€\\t\\x1b\\x7f]{0,60}[a-zA-Z0-9.,!?é€])?[ \\n]{0,2}"
}

/// What `text` must read as: trimmed, each control character replaced by U+FFFD.
pub(super) fn sanitized(text: &str) -> String {
    let text = text.trim();
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

fn answer() -> impl Strategy<Value = Answer> {
    let failure = prop_oneof![4 => Just(None), 1 => text().prop_map(Some)];
    let fields = (
        failure,
        proptest::option::of(int()),
        proptest::option::of(int()),
        proptest::option::of("[a-zA-Z0-9]{0,300}"),
        proptest::option::of(int()),
        proptest::option::of(int()),
        proptest::option::of(text()),
    );
    let peers = (
        proptest::option::of(peers()),
        proptest::option::of(proptest::collection::vec(v6(), 0..10)),
    );
    (fields, peers).prop_map(
        |((failure, interval, min_interval, tracker_id, complete, incomplete, warning), peers)| {
            Answer {
                failure,
                interval,
                min_interval,
                tracker_id,
                complete,
                incomplete,
                warning,
                peers: peers.0,
                peers6: peers.1,
            }
        },
    )
}

/// A tracker's text as the parser must leave it: bounded, trimmed, without control characters.
pub(super) fn check_text(text: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        text.len() <= MAX_MESSAGE_LEN,
        "{} bytes of text",
        text.len()
    );
    prop_assert!(!text.chars().any(char::is_control), "{text:?}");
    prop_assert_eq!(text, text.trim());
    Ok(())
}

/// Checks the invariants [`AnnounceResponse`] promises whatever a tracker sent.
pub(super) fn check_response_invariants(a: &AnnounceResponse) -> Result<(), TestCaseError> {
    let in_range = |d: Duration| d >= Duration::from_secs(1) && d <= MAX_INTERVAL;
    prop_assert!(in_range(a.interval), "interval {:?}", a.interval);
    prop_assert!(a.min_interval.is_none_or(in_range), "{:?}", a.min_interval);
    prop_assert!(a.peers.len() <= MAX_PEERS_PER_RESPONSE);
    let distinct: BTreeSet<_> = a.peers.iter().collect();
    prop_assert_eq!(distinct.len(), a.peers.len(), "duplicate peers");
    for p in &a.peers {
        prop_assert!(
            p.port() != 0 && !p.ip().is_unspecified(),
            "unusable peer {}",
            p
        );
        prop_assert_eq!(p.ip(), p.ip().to_canonical(), "IPv4-mapped peer");
    }
    if let Some(id) = &a.tracker_id {
        prop_assert!(!id.is_empty() && id.len() <= MAX_TRACKER_ID_LEN);
    }
    if let Some(w) = &a.warning {
        check_text(w)?;
    }
    Ok(())
}

proptest! {
    #[test]
    fn well_formed_answers_parse_to_the_model(answer in answer()) {
        // Proves every field of a well-formed answer is read as BEP 3/7/23 say, with the
        // documented normalisation (intervals clamped, unusable and duplicate peers dropped).
        let body = answer.encode();
        prop_assert_eq!(parse_announce_response(&body), answer.expected());
    }
}

#[test]
fn mutated_answers_parse_within_the_invariants() {
    // Proves edited well-formed answers either parse within AnnounceResponse's invariants or
    // fail with BadResponse or a clean Failure text, and that both outcomes occur.
    check_accepts_some(256, (answer(), mutations(4)), |(answer, edits)| {
        let body = mutated(&answer.encode(), &edits);
        match parse_announce_response(&body) {
            Ok(a) => check_response_invariants(&a).map(|()| true),
            Err(TrackerError::Failure(text)) => check_text(&text).map(|()| false),
            Err(TrackerError::BadResponse(_)) => Ok(false),
            Err(e) => Err(TestCaseError::fail(format!("unexpected error {e:?}"))),
        }
    });
}
