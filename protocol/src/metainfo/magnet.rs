//! Magnet links (BEP 9, BEP 53): parsing a `magnet:?` URI into a [`MagnetLink`] and writing one back.
//!
//! A magnet link names a swarm by its v1 info hash and may add a display name, trackers, peers to
//! try first and the files to download. The parser accepts what real clients emit and refuses, with a
//! typed [`MagnetError`], anything it cannot read unambiguously. It never panics, and every list it
//! builds is bounded ([`MAX_URI_LEN`], [`MAX_TRACKERS`], [`MAX_PEERS`], [`MAX_SELECT_ONLY_RANGES`]).
//!
//! Grammar accepted by [`MagnetLink::parse`]:
//!
//! - the scheme `magnet:` (any case), then `?`, then `&`-separated `key=value` pairs; a pair without
//!   `=` has an empty value, and empty pairs (`&&`) are skipped;
//! - keys are matched exactly (lowercase), and a numeric suffix is ignored as in BEP 9 (`xt.1`,
//!   `tr.2`, `x.pe.1`);
//! - values are percent-decoded (every `%` must start a `%XX` escape, and the result must be UTF-8);
//!   in `dn` a `+` also stands for a space;
//! - `xt=urn:btih:<hash>` (prefix in any case), the hash 40 hex or 32 base32 (RFC 4648) characters
//!   in any case; other `xt` URNs are ignored, except that a `urn:btmh:` (v2) hash alone is refused;
//! - `dn` (the first one wins), `tr` (repeatable, empty ones skipped, duplicates dropped), `x.pe`
//!   (repeatable, `host:port` or `[ipv6]:port`), `so` (BEP 53 indices and ranges, `0,2,4-6`);
//! - every other key is ignored.
//!
//! Invariant: for every link `m` that `parse` returns, `MagnetLink::parse(&m.to_uri()) == Ok(m)`
//! (as long as the written form stays within [`MAX_URI_LEN`]).

use std::fmt;
use std::net::Ipv6Addr;
use std::ops::RangeInclusive;

use data_encoding::{BASE32, HEXLOWER_PERMISSIVE};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::metainfo::InfoHash;

/// The longest magnet URI [`MagnetLink::parse`] reads, in bytes (64 KiB).
pub const MAX_URI_LEN: usize = 64 * 1024;
/// The most distinct trackers (`tr`) a magnet link may name.
pub const MAX_TRACKERS: usize = 200;
/// The most peers (`x.pe`) a magnet link may name.
pub const MAX_PEERS: usize = 200;
/// The most indices and ranges a magnet link's select-only list (`so`) may hold.
pub const MAX_SELECT_ONLY_RANGES: usize = 1000;

/// How much of an offending value an error message quotes, in characters.
const EXCERPT_CHARS: usize = 80;

/// Bytes written as they are in [`MagnetLink::to_uri`]: RFC 3986 unreserved characters plus `:`,
/// `/` and `@`, which a query may hold and which keep tracker URLs readable. Everything else
/// (including `&`, `=`, `+`, `%`, `#`, `,`, `[`, `]` and all non-ASCII) is percent-encoded.
const VALUE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b'/')
    .remove(b'@');

/// A parsed magnet link (BEP 9, with BEP 53 `so`): enough to join a v1 swarm and fetch its metadata.
///
/// Bounds: built from a URI of at most [`MAX_URI_LEN`] bytes, it holds at most [`MAX_TRACKERS`]
/// trackers, [`MAX_PEERS`] peers and [`MAX_SELECT_ONLY_RANGES`] select-only ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagnetLink {
    /// The v1 info hash from `xt=urn:btih:`.
    pub info_hash: InfoHash,
    /// The suggested name from `dn`, if any (shown until the metadata arrives).
    pub display_name: Option<String>,
    /// Tracker URLs from `tr`, in the order given, without duplicates or empty entries.
    pub trackers: Vec<String>,
    /// Peers from `x.pe`, in the order given: `host:port`, or `[addr]:port` for IPv6, with a port
    /// in 1..=65535.
    pub peers: Vec<String>,
    /// File indices to download from `so` (BEP 53), as given: single indices are `n..=n`, ranges
    /// are never expanded and never reversed. Empty means every file.
    pub select_only: Vec<RangeInclusive<u32>>,
}

/// Why a string is not a magnet link [`MagnetLink::parse`] accepts.
///
/// Quoted values are cut to their first 80 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    /// The URI is longer than [`MAX_URI_LEN`] (our bound, so a hostile link cannot make us allocate
    /// without limit).
    #[error("magnet link is {len} bytes long, over the limit of {max} bytes", max = MAX_URI_LEN)]
    TooLong {
        /// The length of the refused URI, in bytes.
        len: usize,
    },
    /// The URI does not start with `magnet:?` (RFC 3986 scheme, any case, then the query).
    #[error("not a magnet link: it does not start with `magnet:?`")]
    NotMagnet,
    /// No `xt=urn:btih:` parameter (BEP 9: the info hash is the one required part).
    #[error("magnet link has no `xt=urn:btih:` info hash")]
    NoInfoHash,
    /// Only a `urn:btmh:` (BitTorrent v2, BEP 52) hash and no v1 `urn:btih:` beside it; this client
    /// speaks v1 only.
    #[error(
        "magnet link has only a BitTorrent v2 `urn:btmh:` hash; v2-only magnets are not supported"
    )]
    V2Only,
    /// A `urn:btih:` value that is neither 40 hex nor 32 base32 characters (BEP 9).
    #[error("info hash `{value}` is neither 40 hex nor 32 base32 characters")]
    BadInfoHash {
        /// The value after `urn:btih:`.
        value: String,
    },
    /// Two `urn:btih:` parameters name different swarms (BEP 9 allows one v1 hash per link).
    #[error("magnet link names two different info hashes, {first} and {second}")]
    ConflictingInfoHashes {
        /// The first hash given.
        first: InfoHash,
        /// The first hash that differs from it.
        second: InfoHash,
    },
    /// A `%` not followed by two hex digits (RFC 3986 section 2.1).
    #[error("bad percent-encoding in `{key}`")]
    BadPercentEncoding {
        /// The parameter's key, as written (`tr.1`).
        key: String,
    },
    /// A value whose percent-decoded bytes are not UTF-8 (BEP 9 values are UTF-8 text).
    #[error("value of `{key}` is not UTF-8 once percent-decoded")]
    NotUtf8 {
        /// The parameter's key, as written.
        key: String,
    },
    /// An `x.pe` peer without `:port` (BEP 9: peers are `hostname:port`, `ipv4:port` or
    /// `[ipv6]:port`).
    #[error("peer `x.pe={peer}` has no port")]
    PeerMissingPort {
        /// The decoded `x.pe` value.
        peer: String,
    },
    /// An `x.pe` peer whose port is not a number in 1..=65535 (BEP 9 peer address).
    #[error("peer `x.pe={peer}` has a port that is not a number in 1..=65535")]
    PeerBadPort {
        /// The decoded `x.pe` value.
        peer: String,
    },
    /// An `x.pe` peer whose host is empty, holds spaces, or is IPv6 not written as `[addr]`
    /// (BEP 9 peer address).
    #[error("peer `x.pe={peer}` has no valid host (IPv6 is written `[addr]:port`)")]
    PeerBadHost {
        /// The decoded `x.pe` value.
        peer: String,
    },
    /// More than [`MAX_TRACKERS`] distinct `tr` values (our bound).
    #[error("magnet link names more than {max} trackers", max = MAX_TRACKERS)]
    TooManyTrackers,
    /// More than [`MAX_PEERS`] `x.pe` values (our bound).
    #[error("magnet link names more than {max} peers", max = MAX_PEERS)]
    TooManyPeers,
    /// More than [`MAX_SELECT_ONLY_RANGES`] indices and ranges in `so` (our bound).
    #[error(
        "magnet link selects more than {max} file indices and ranges",
        max = MAX_SELECT_ONLY_RANGES
    )]
    TooManySelectOnly,
    /// An `so` item that is not an index or a range `a-b` of indices (BEP 53).
    #[error("select-only item `{item}` in `so` is not a file index or a range `a-b`")]
    BadSelectOnly {
        /// The offending comma-separated item.
        item: String,
    },
    /// An `so` range whose start is after its end (BEP 53 ranges are inclusive and ascending).
    #[error("select-only range `{start}-{end}` in `so` is reversed")]
    ReversedSelectOnlyRange {
        /// The range's first index.
        start: u32,
        /// The range's last index, smaller than `start`.
        end: u32,
    },
}

impl MagnetLink {
    /// Parses a magnet URI, following the grammar in the [module docs](self).
    ///
    /// Refuses, with the matching [`MagnetError`], a URI over [`MAX_URI_LEN`], a missing or
    /// malformed v1 info hash, conflicting hashes, bad percent-encoding, bad peers or `so` items,
    /// and lists over their bounds. Never panics.
    pub fn parse(uri: &str) -> Result<MagnetLink, MagnetError> {
        if uri.len() > MAX_URI_LEN {
            return Err(MagnetError::TooLong { len: uri.len() });
        }
        let query = strip_prefix_ignore_case(uri, "magnet:?").ok_or(MagnetError::NotMagnet)?;

        let mut info_hash: Option<InfoHash> = None;
        let mut saw_btmh = false;
        let mut display_name = None;
        let mut trackers: Vec<String> = Vec::new();
        let mut peers = Vec::new();
        let mut select_only = Vec::new();

        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            match base_key(key) {
                "xt" => {
                    let value = decode(key, raw, false)?;
                    if let Some(hash) = strip_prefix_ignore_case(&value, "urn:btih:") {
                        let hash = parse_btih(hash)?;
                        match info_hash {
                            None => info_hash = Some(hash),
                            Some(first) if first != hash => {
                                return Err(MagnetError::ConflictingInfoHashes {
                                    first,
                                    second: hash,
                                });
                            }
                            Some(_) => {}
                        }
                    } else if strip_prefix_ignore_case(&value, "urn:btmh:").is_some() {
                        saw_btmh = true;
                    }
                }
                "dn" => {
                    let value = decode(key, raw, true)?;
                    display_name.get_or_insert(value);
                }
                "tr" => {
                    let value = decode(key, raw, false)?;
                    if !value.is_empty() && !trackers.contains(&value) {
                        if trackers.len() >= MAX_TRACKERS {
                            return Err(MagnetError::TooManyTrackers);
                        }
                        trackers.push(value);
                    }
                }
                "x.pe" => {
                    let value = decode(key, raw, false)?;
                    check_peer(&value)?;
                    if peers.len() >= MAX_PEERS {
                        return Err(MagnetError::TooManyPeers);
                    }
                    peers.push(value);
                }
                "so" => {
                    let value = decode(key, raw, false)?;
                    parse_select_only(&value, &mut select_only)?;
                }
                _ => {}
            }
        }

        let info_hash = match info_hash {
            Some(hash) => hash,
            None if saw_btmh => return Err(MagnetError::V2Only),
            None => return Err(MagnetError::NoInfoHash),
        };
        Ok(MagnetLink {
            info_hash,
            display_name,
            trackers,
            peers,
            select_only,
        })
    }

    /// Writes the canonical URI
    /// `magnet:?xt=urn:btih:<lowercase hex>&dn=..&tr=..&x.pe=..&so=..`.
    ///
    /// Parameters appear in that order, each list in its order, `dn` only when present and `so`
    /// only when non-empty (as one comma-separated value). Values are percent-encoded except for
    /// letters, digits and `-._~:/@`; a space in `dn` is written `+`. For every link that
    /// [`parse`](Self::parse) returns, parsing the result gives the same link back, provided the
    /// result stays within [`MAX_URI_LEN`] (raw non-ASCII input grows when percent-encoded).
    pub fn to_uri(&self) -> String {
        let mut out = String::from("magnet:?xt=urn:btih:");
        out.push_str(&self.info_hash.to_hex());
        if let Some(name) = &self.display_name {
            out.push_str("&dn=");
            for (i, word) in name.split(' ').enumerate() {
                if i > 0 {
                    out.push('+');
                }
                out.extend(utf8_percent_encode(word, VALUE_SET));
            }
        }
        for tracker in &self.trackers {
            out.push_str("&tr=");
            out.extend(utf8_percent_encode(tracker, VALUE_SET));
        }
        for peer in &self.peers {
            out.push_str("&x.pe=");
            out.extend(utf8_percent_encode(peer, VALUE_SET));
        }
        for (i, range) in self.select_only.iter().enumerate() {
            out.push_str(if i == 0 { "&so=" } else { "," });
            out.push_str(&range.start().to_string());
            if range.start() != range.end() {
                out.push('-');
                out.push_str(&range.end().to_string());
            }
        }
        out
    }
}

impl fmt::Display for MagnetLink {
    /// Writes [`MagnetLink::to_uri`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

/// `s` without `prefix`, compared ignoring ASCII case; `None` if `s` does not start with it.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// The key without a BEP 9 numeric suffix: `tr.1` is `tr`, `x.pe.2` is `x.pe`, `x.pe` stays.
fn base_key(key: &str) -> &str {
    match key.rsplit_once('.') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => key,
    }
}

/// Percent-decodes a value strictly: every `%` must start a `%XX` escape and the bytes must be
/// UTF-8. With `plus_is_space`, a literal `+` is a space (an encoded `%2B` stays `+`).
fn decode(key: &str, raw: &str, plus_is_space: bool) -> Result<String, MagnetError> {
    let bytes = raw.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' {
            let escape = bytes.get(i + 1..i + 3);
            if !escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                return Err(MagnetError::BadPercentEncoding { key: excerpt(key) });
            }
        }
    }
    let spaced;
    let raw = if plus_is_space && raw.contains('+') {
        spaced = raw.replace('+', " ");
        spaced.as_str()
    } else {
        raw
    };
    percent_decode_str(raw)
        .decode_utf8()
        .map(|value| value.into_owned())
        .map_err(|_| MagnetError::NotUtf8 { key: excerpt(key) })
}

/// Reads the hash after `urn:btih:`: 40 hex or 32 base32 characters, either in any case.
fn parse_btih(value: &str) -> Result<InfoHash, MagnetError> {
    let bytes = match value.len() {
        40 => HEXLOWER_PERMISSIVE.decode(value.as_bytes()).ok(),
        32 => BASE32.decode(value.to_ascii_uppercase().as_bytes()).ok(),
        _ => None,
    };
    bytes
        .and_then(|bytes| <[u8; 20]>::try_from(bytes.as_slice()).ok())
        .map(InfoHash)
        .ok_or_else(|| MagnetError::BadInfoHash {
            value: excerpt(value),
        })
}

/// Checks an `x.pe` value: `host:port` or `[ipv6]:port`, the port in 1..=65535.
fn check_peer(peer: &str) -> Result<(), MagnetError> {
    let bad_host = || MagnetError::PeerBadHost {
        peer: excerpt(peer),
    };
    let missing_port = || MagnetError::PeerMissingPort {
        peer: excerpt(peer),
    };
    let port = if let Some(rest) = peer.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or_else(bad_host)?;
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(bad_host());
        }
        match after.strip_prefix(':') {
            Some(port) => port,
            None if after.is_empty() => return Err(missing_port()),
            None => return Err(bad_host()),
        }
    } else {
        let (host, port) = peer.rsplit_once(':').ok_or_else(missing_port)?;
        let bad_char =
            |c: char| matches!(c, ':' | '[' | ']') || c.is_whitespace() || c.is_control();
        if host.is_empty() || host.contains(bad_char) {
            return Err(bad_host());
        }
        port
    };
    if port.is_empty() {
        return Err(missing_port());
    }
    match number(port).and_then(|n| u16::try_from(n).ok()) {
        Some(1..) => Ok(()),
        _ => Err(MagnetError::PeerBadPort {
            peer: excerpt(peer),
        }),
    }
}

/// Appends the items of a BEP 53 `so` value (`0,2,4-6`) to `out`, refusing empty or malformed
/// items, reversed ranges, and more than [`MAX_SELECT_ONLY_RANGES`] in all.
fn parse_select_only(value: &str, out: &mut Vec<RangeInclusive<u32>>) -> Result<(), MagnetError> {
    for item in value.split(',') {
        let bad = || MagnetError::BadSelectOnly {
            item: excerpt(item),
        };
        let range = match item.split_once('-') {
            None => {
                let index = number(item).ok_or_else(bad)?;
                index..=index
            }
            Some((start, end)) => {
                let start = number(start).ok_or_else(bad)?;
                let end = number(end).ok_or_else(bad)?;
                if start > end {
                    return Err(MagnetError::ReversedSelectOnlyRange { start, end });
                }
                start..=end
            }
        };
        if out.len() >= MAX_SELECT_ONLY_RANGES {
            return Err(MagnetError::TooManySelectOnly);
        }
        out.push(range);
    }
    Ok(())
}

/// A decimal `u32` of ASCII digits only (no sign, no spaces), or `None`.
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The first [`EXCERPT_CHARS`] characters of `s`, for quoting in an error.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", s.get(..cut).unwrap_or(s)),
        None => s.to_owned(),
    }
}
