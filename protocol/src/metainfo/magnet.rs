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

use core::net::Ipv6Addr;
use std::fmt;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutation::check_accepts_some;
    use proptest::prelude::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
    const B32: &str = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK";
    const OTHER_HEX: &str = "0123456789abcdef0123456789abcdef01234567";

    fn hash() -> InfoHash {
        InfoHash([
            0xc1, 0x2f, 0xe1, 0xc0, 0x6b, 0xba, 0x25, 0x4a, 0x9d, 0xc9, 0xf5, 0x19, 0xb3, 0x35,
            0xaa, 0x7c, 0x13, 0x67, 0xa8, 0x8a,
        ])
    }

    fn parse(uri: &str) -> Result<MagnetLink, MagnetError> {
        MagnetLink::parse(uri)
    }

    /// A link with the test hash followed by `rest` (which starts with `&` when not empty).
    fn with(rest: &str) -> Result<MagnetLink, MagnetError> {
        parse(&format!("magnet:?xt=urn:btih:{HEX}{rest}"))
    }

    fn bare() -> MagnetLink {
        MagnetLink {
            info_hash: hash(),
            display_name: None,
            trackers: vec![],
            peers: vec![],
            select_only: vec![],
        }
    }

    // ---- accepted forms ----

    #[test]
    fn lowercase_hex_hash() {
        // A bare `xt` with lowercase hex yields that hash and nothing else.
        assert_eq!(with(""), Ok(bare()));
    }

    #[test]
    fn uppercase_hex_hash() {
        // Hex digits are read in any case.
        let uri = format!("magnet:?xt=urn:btih:{}", HEX.to_uppercase());
        assert_eq!(parse(&uri), Ok(bare()));
    }

    #[test]
    fn uppercase_base32_hash() {
        // A 32-character RFC 4648 base32 hash decodes to the same 20 bytes as its hex form.
        assert_eq!(parse(&format!("magnet:?xt=urn:btih:{B32}")), Ok(bare()));
    }

    #[test]
    fn lowercase_base32_hash() {
        // Base32 is read in any case.
        let uri = format!("magnet:?xt=urn:btih:{}", B32.to_lowercase());
        assert_eq!(parse(&uri), Ok(bare()));
    }

    #[test]
    fn scheme_and_urn_prefix_in_any_case() {
        // `MAGNET:` and `URN:BTIH:` are accepted like their lowercase forms.
        assert_eq!(parse(&format!("MaGnEt:?xt=URN:BtIh:{HEX}")), Ok(bare()));
    }

    #[test]
    fn same_hash_twice_in_two_encodings() {
        // Hex and base32 spellings of one hash do not conflict.
        assert_eq!(with(&format!("&xt.1=urn:btih:{B32}")), Ok(bare()));
    }

    #[test]
    fn repeated_trackers_keep_order_and_drop_duplicates() {
        // `tr` is repeatable; order is kept and a repeated URL is listed once.
        let link = with("&tr=http://b/announce&tr=udp://a:80&tr=http://b/announce").unwrap();
        assert_eq!(link.trackers, ["http://b/announce", "udp://a:80"]);
    }

    #[test]
    fn numbered_keys_as_in_bep9() {
        // `xt.1`, `tr.1`, `tr.2`, `x.pe.1` are read as `xt`, `tr`, `x.pe`.
        let uri = format!("magnet:?xt.1=urn:btih:{HEX}&tr.1=udp://a:1&tr.2=udp://b:2&x.pe.1=h:3");
        let link = parse(&uri).unwrap();
        assert_eq!(link.info_hash, hash());
        assert_eq!(link.trackers, ["udp://a:1", "udp://b:2"]);
        assert_eq!(link.peers, ["h:3"]);
    }

    #[test]
    fn empty_tracker_is_skipped() {
        // An empty `tr=` names no tracker and is dropped rather than refused.
        assert_eq!(with("&tr=&tr").unwrap().trackers, Vec::<String>::new());
    }

    #[test]
    fn ipv4_and_hostname_peers() {
        // `x.pe` accepts `ipv4:port` and `hostname:port`, kept as given.
        let link = with("&x.pe=10.0.0.1:6881&x.pe=peer.example:65535").unwrap();
        assert_eq!(link.peers, ["10.0.0.1:6881", "peer.example:65535"]);
    }

    #[test]
    fn ipv6_peers_bracketed_raw_or_encoded() {
        // `x.pe` accepts `[ipv6]:port`, with the brackets raw or percent-encoded.
        let link = with("&x.pe=[2001:db8::1]:6881&x.pe=%5B%3A%3A1%5D%3A1").unwrap();
        assert_eq!(link.peers, ["[2001:db8::1]:6881", "[::1]:1"]);
    }

    #[test]
    fn select_only_indices_and_ranges() {
        // BEP 53 `so` keeps indices and ranges as ranges, unexpanded, in order.
        let link = with("&so=0,2,4-6,7-7,4294967295").unwrap();
        assert_eq!(
            link.select_only,
            [0..=0, 2..=2, 4..=6, 7..=7, u32::MAX..=u32::MAX]
        );
    }

    #[test]
    fn percent_encoded_display_name_with_plus_as_space() {
        // `dn` is percent-decoded as UTF-8, `+` is a space and `%2B` a plus.
        let link = with("&dn=Caf%C3%A9+del+Mar%2B%26%3D").unwrap();
        assert_eq!(link.display_name.as_deref(), Some("Café del Mar+&="));
    }

    #[test]
    fn first_display_name_wins() {
        // A second `dn` does not replace the first.
        assert_eq!(
            with("&dn=a&dn=b").unwrap().display_name.as_deref(),
            Some("a")
        );
    }

    #[test]
    fn percent_encoded_tracker_keeps_plus() {
        // `tr` is percent-decoded, and a literal `+` in a tracker URL stays a `+`.
        let link = with("&tr=http%3A%2F%2Ft.example%2Fa%3Fk%3Dv%26x%3D1+2").unwrap();
        assert_eq!(link.trackers, ["http://t.example/a?k=v&x=1+2"]);
    }

    #[test]
    fn btmh_beside_btih_is_ignored() {
        // A hybrid link's v2 `urn:btmh:` hash is skipped; the v1 hash is used.
        let uri = format!(
            "magnet:?xt=urn:btmh:1220{}&xt=urn:btih:{HEX}",
            "ab".repeat(32)
        );
        assert_eq!(parse(&uri), Ok(bare()));
    }

    #[test]
    fn unknown_parameters_and_empty_pairs_are_ignored() {
        // Unknown keys, other URNs, `xl`, `ws`, keyless pairs and `&&` do not change the result.
        let rest = "&&xl=123&ws=http://w&xt=urn:sha1:ABC&kt=a+b&foo&=x&as=%zz";
        assert_eq!(with(rest), Ok(bare()));
    }

    #[test]
    fn bounds_are_inclusive() {
        // Exactly MAX_TRACKERS, MAX_PEERS and MAX_SELECT_ONLY_RANGES entries are accepted.
        let mut rest = String::new();
        for i in 0..MAX_TRACKERS {
            rest.push_str(&format!("&tr=t{i}"));
        }
        for i in 0..MAX_PEERS {
            rest.push_str(&format!("&x.pe=h:{}", i + 1));
        }
        let so: Vec<String> = (0..MAX_SELECT_ONLY_RANGES).map(|i| i.to_string()).collect();
        rest.push_str(&format!("&so={}", so.join(",")));
        let link = with(&rest).unwrap();
        assert_eq!(link.trackers.len(), MAX_TRACKERS);
        assert_eq!(link.peers.len(), MAX_PEERS);
        assert_eq!(link.select_only.len(), MAX_SELECT_ONLY_RANGES);
    }

    #[test]
    fn uri_of_exactly_max_len_is_accepted() {
        // A URI of exactly MAX_URI_LEN bytes is within the bound.
        let head = format!("magnet:?xt=urn:btih:{HEX}&dn=");
        let uri = format!("{head}{}", "a".repeat(MAX_URI_LEN - head.len()));
        assert_eq!(uri.len(), MAX_URI_LEN);
        assert!(parse(&uri).is_ok());
    }

    #[test]
    fn canonical_uri() {
        // `to_uri` writes lowercase hex, then dn, tr, x.pe, so, encoding what needs it.
        let link = MagnetLink {
            info_hash: hash(),
            display_name: Some("a b+c&d/é".into()),
            trackers: vec![
                "udp://t.example:1337/announce".into(),
                "http://x/?a=1&b".into(),
            ],
            peers: vec!["1.2.3.4:5".into(), "[::1]:6".into()],
            select_only: vec![0..=0, 2..=4],
        };
        let expected = format!(
            "magnet:?xt=urn:btih:{HEX}&dn=a+b%2Bc%26d/%C3%A9\
             &tr=udp://t.example:1337/announce&tr=http://x/%3Fa%3D1%26b\
             &x.pe=1.2.3.4:5&x.pe=%5B::1%5D:6&so=0,2-4"
        );
        assert_eq!(link.to_uri(), expected);
        assert_eq!(link.to_string(), expected);
        assert_eq!(parse(&expected), Ok(link));
    }

    // ---- errors ----

    #[test]
    fn err_too_long() {
        // A URI one byte over MAX_URI_LEN is refused before it is read.
        let head = format!("magnet:?xt=urn:btih:{HEX}&dn=");
        let uri = format!("{head}{}", "a".repeat(MAX_URI_LEN + 1 - head.len()));
        assert_eq!(
            parse(&uri),
            Err(MagnetError::TooLong {
                len: MAX_URI_LEN + 1
            })
        );
    }

    #[test]
    fn err_not_magnet() {
        // Another scheme, a missing `?`, or a short string is not a magnet link.
        for uri in [
            "http://x/?xt=urn:btih:",
            "magnet:xt=urn:btih:",
            "magnet",
            "",
            "magnét:?",
        ] {
            assert_eq!(parse(uri), Err(MagnetError::NotMagnet), "{uri}");
        }
    }

    #[test]
    fn err_no_info_hash() {
        // A link without `xt=urn:btih:` (only other URNs, or nothing) is refused.
        assert_eq!(parse("magnet:?"), Err(MagnetError::NoInfoHash));
        let uri = "magnet:?xt=urn:sha1:ABC&dn=x&tr=udp://t:1";
        assert_eq!(parse(uri), Err(MagnetError::NoInfoHash));
        assert_eq!(
            MagnetError::NoInfoHash.to_string(),
            "magnet link has no `xt=urn:btih:` info hash"
        );
    }

    #[test]
    fn err_v2_only() {
        // A `urn:btmh:` hash with no `urn:btih:` beside it says v2-only is unsupported.
        let uri = format!("magnet:?xt=urn:btmh:1220{}", "ab".repeat(32));
        assert_eq!(parse(&uri), Err(MagnetError::V2Only));
        assert!(
            MagnetError::V2Only
                .to_string()
                .contains("v2-only magnets are not supported")
        );
    }

    #[test]
    fn err_bad_info_hash() {
        // Non-hex 40 chars, non-base32 32 chars, and other lengths are refused, quoting the value.
        let bad = [
            "zz".repeat(20),
            format!("{}1", &B32[..31]),
            HEX[..39].to_owned(),
            format!("{HEX}0"),
            String::new(),
        ];
        for value in bad {
            let uri = format!("magnet:?xt=urn:btih:{value}");
            assert_eq!(
                parse(&uri),
                Err(MagnetError::BadInfoHash {
                    value: value.clone()
                })
            );
        }
        let msg = MagnetError::BadInfoHash { value: "zz".into() }.to_string();
        assert_eq!(
            msg,
            "info hash `zz` is neither 40 hex nor 32 base32 characters"
        );
    }

    #[test]
    fn err_conflicting_info_hashes() {
        // Two different `urn:btih:` hashes in one link are refused, naming both.
        let uri = format!("magnet:?xt=urn:btih:{HEX}&xt.2=urn:btih:{OTHER_HEX}");
        let err = parse(&uri).unwrap_err();
        assert_eq!(
            err,
            MagnetError::ConflictingInfoHashes {
                first: hash(),
                second: parse(&format!("magnet:?xt=urn:btih:{OTHER_HEX}"))
                    .unwrap()
                    .info_hash,
            }
        );
        assert!(err.to_string().contains(HEX) && err.to_string().contains(OTHER_HEX));
    }

    #[test]
    fn err_bad_percent_encoding() {
        // A `%` not followed by two hex digits is refused, naming the key as written.
        for rest in ["&dn=a%zzb", "&dn=a%", "&dn=a%4"] {
            assert_eq!(
                with(rest),
                Err(MagnetError::BadPercentEncoding { key: "dn".into() }),
                "{rest}"
            );
        }
        assert_eq!(
            with("&tr.3=%G0"),
            Err(MagnetError::BadPercentEncoding { key: "tr.3".into() })
        );
        assert_eq!(
            with("&dn=%").unwrap_err().to_string(),
            "bad percent-encoding in `dn`"
        );
    }

    #[test]
    fn err_not_utf8() {
        // Percent-escapes that decode to bytes which are not UTF-8 are refused.
        assert_eq!(
            with("&tr=%FF%FE"),
            Err(MagnetError::NotUtf8 { key: "tr".into() })
        );
    }

    #[test]
    fn err_peer_missing_port() {
        // A peer without `:port` (or with an empty port) is refused.
        for peer in ["foo", "[::1]", "1.2.3.4:", "[::1]:", ""] {
            let rest = format!("&x.pe={peer}");
            assert_eq!(
                with(&rest),
                Err(MagnetError::PeerMissingPort { peer: peer.into() }),
                "{peer}"
            );
        }
        let msg = MagnetError::PeerMissingPort { peer: "foo".into() }.to_string();
        assert_eq!(msg, "peer `x.pe=foo` has no port");
    }

    #[test]
    fn err_peer_bad_port() {
        // A port that is 0, over 65535, signed or not a number is refused.
        for peer in [
            "h:0",
            "h:65536",
            "h:99999999999",
            "h:+80",
            "h:8o",
            "[::1]:-1",
        ] {
            let rest = format!("&x.pe={}", peer.replace('+', "%2B"));
            assert_eq!(
                with(&rest),
                Err(MagnetError::PeerBadPort { peer: peer.into() }),
                "{peer}"
            );
        }
    }

    #[test]
    fn err_peer_bad_host() {
        // An empty host, an unbracketed or invalid IPv6, or junk after `]` is refused.
        for peer in [
            ":6881", "::1:6881", "[zz]:1", "[::1:1", "[::1]x:1", "a b:1", "a]:1",
        ] {
            let rest = format!("&x.pe={}", peer.replace(' ', "%20"));
            assert_eq!(
                with(&rest),
                Err(MagnetError::PeerBadHost { peer: peer.into() }),
                "{peer}"
            );
        }
    }

    #[test]
    fn err_too_many_trackers() {
        // One distinct tracker over MAX_TRACKERS is refused.
        let rest: String = (0..=MAX_TRACKERS).map(|i| format!("&tr=t{i}")).collect();
        assert_eq!(with(&rest), Err(MagnetError::TooManyTrackers));
    }

    #[test]
    fn err_too_many_peers() {
        // One peer over MAX_PEERS is refused.
        let rest: String = (0..=MAX_PEERS)
            .map(|i| format!("&x.pe=h:{}", i + 1))
            .collect();
        assert_eq!(with(&rest), Err(MagnetError::TooManyPeers));
    }

    #[test]
    fn err_too_many_select_only() {
        // One `so` item over MAX_SELECT_ONLY_RANGES, even split over two `so` keys, is refused.
        let half: Vec<String> = (0..=MAX_SELECT_ONLY_RANGES / 2)
            .map(|i| i.to_string())
            .collect();
        let rest = format!("&so={0}&so.1={0}", half.join(","));
        assert_eq!(with(&rest), Err(MagnetError::TooManySelectOnly));
    }

    #[test]
    fn err_bad_select_only() {
        // Empty items, signs, spaces, letters, open ranges and overflow are refused.
        let cases = [
            ("", ""),
            ("1,,2", ""),
            ("1,", ""),
            ("a", "a"),
            ("1-", "1-"),
            ("-1", "-1"),
            ("1-2-3", "1-2-3"),
            ("%2B1", "+1"),
            ("1%20", "1 "),
            ("4294967296", "4294967296"),
        ];
        for (raw, item) in cases {
            assert_eq!(
                with(&format!("&so={raw}")),
                Err(MagnetError::BadSelectOnly { item: item.into() }),
                "{raw}"
            );
        }
    }

    #[test]
    fn err_reversed_select_only_range() {
        // A range whose start is after its end is refused, not swapped.
        assert_eq!(
            with("&so=1,6-4"),
            Err(MagnetError::ReversedSelectOnlyRange { start: 6, end: 4 })
        );
    }

    #[test]
    fn error_quotes_are_cut() {
        // A huge offending value is quoted only in part, so error messages stay short.
        let value = "z".repeat(10_000);
        let err = parse(&format!("magnet:?xt=urn:btih:{value}")).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }

    // ---- properties ----

    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter)
    }

    fn peer() -> impl Strategy<Value = String> {
        let host = prop_oneof![
            any::<[u8; 4]>().prop_map(|o| core::net::Ipv4Addr::from(o).to_string()),
            any::<[u16; 8]>().prop_map(|s| format!("[{}]", Ipv6Addr::from(s))),
            "[a-zA-Z0-9_.-]{1,20}",
        ];
        (host, 1..=u16::MAX).prop_map(|(host, port)| format!("{host}:{port}"))
    }

    fn magnet_link() -> impl Strategy<Value = MagnetLink> {
        let trackers = prop::collection::vec(text(), 0..8).prop_map(|all| {
            let mut unique: Vec<String> = Vec::new();
            for t in all {
                if !t.is_empty() && !unique.contains(&t) {
                    unique.push(t);
                }
            }
            unique
        });
        let range = (any::<u32>(), any::<u32>()).prop_map(|(a, b)| a.min(b)..=a.max(b));
        (
            any::<[u8; 20]>(),
            prop::option::of(text()),
            trackers,
            prop::collection::vec(peer(), 0..6),
            prop::collection::vec(range, 0..8),
        )
            .prop_map(
                |(hash, display_name, trackers, peers, select_only)| MagnetLink {
                    info_hash: InfoHash(hash),
                    display_name,
                    trackers,
                    peers,
                    select_only,
                },
            )
    }

    /// Strings that look like magnet links: known and unknown keys with noisy values.
    fn magnet_like() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("xt"),
            Just("xt.1"),
            Just("dn"),
            Just("tr"),
            Just("tr.2"),
            Just("x.pe"),
            Just("so"),
            Just("ws"),
            Just(""),
        ];
        let value = prop_oneof![
            Just(format!("urn:btih:{HEX}")),
            Just(format!("urn:btih:{B32}")),
            Just(format!("urn:btih:{OTHER_HEX}")),
            Just("urn:btmh:1220ab".to_owned()),
            "[0-9,-]{0,12}",
            "[a-z0-9:.\\[\\]%+]{0,16}",
            text(),
        ];
        let pairs = prop::collection::vec((key, value), 0..8);
        (any::<bool>(), pairs).prop_map(|(lead_with_hash, pairs)| {
            let mut query: Vec<String> =
                pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            if lead_with_hash {
                query.insert(0, format!("xt=urn:btih:{HEX}"));
            }
            format!("magnet:?{}", query.join("&"))
        })
    }

    proptest! {
        #[test]
        fn to_uri_round_trips(link in magnet_link()) {
            // Any link within the bounds survives `parse(to_uri(m))` unchanged.
            prop_assert_eq!(MagnetLink::parse(&link.to_uri()), Ok(link));
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            // Arbitrary strings, with or without the magnet prefix, give a result and no panic.
            let _ = MagnetLink::parse(&s);
            let _ = MagnetLink::parse(&format!("magnet:?{s}"));
        }
    }

    #[test]
    fn parsed_links_round_trip() {
        // Proves whatever `parse` accepts of magnet-like strings reads back identically from its
        // canonical form, and that it accepts some and refuses some of them.
        check_accepts_some(256, magnet_like(), |s| {
            let Ok(link) = MagnetLink::parse(&s) else {
                return Ok(false);
            };
            prop_assert_eq!(MagnetLink::parse(&link.to_uri()), Ok(link));
            Ok(true)
        });
    }
}
