//! [`TrackerUrl`]: a tracker's announce URL, parsed once into what a driver needs to reach it.
//!
//! Invariants (stated in full on [`TrackerUrl`]): a parsed URL has a valid host, a port from 1 to
//! 65535, and a path-and-query that can go into an HTTP request line as is; the input is at most
//! [`MAX_URL_LEN`] bytes.

use core::fmt;
use core::net::{IpAddr, Ipv6Addr};

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// The longest tracker URL accepted, in bytes (browsers and servers commonly allow 2 KiB to 8 KiB).
pub const MAX_URL_LEN: usize = 4096;

/// The longest host name accepted, in bytes (DNS allows 253).
const MAX_HOST_LEN: usize = 253;

/// What is percent-encoded in a path and query: controls, space, and (by `utf8_percent_encode`)
/// every non-ASCII byte.
const PATH_ENCODE: &AsciiSet = &CONTROLS.add(b' ');

/// How a tracker is spoken to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheme {
    /// BEP 3 announce over HTTP/1.1.
    Http,
    /// BEP 3 announce over HTTP/1.1 inside TLS (the runtime provides the TLS).
    Https,
    /// BEP 15 announce over UDP.
    Udp,
}

impl Scheme {
    /// The scheme as written in a URL: `http`, `https` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Udp => "udp",
        }
    }

    /// The port used when the URL names none; `None` for UDP, which has no standard port.
    pub fn default_port(self) -> Option<u16> {
        match self {
            Scheme::Http => Some(80),
            Scheme::Https => Some(443),
            Scheme::Udp => None,
        }
    }
}

/// Why a tracker URL was refused. Each message names what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrackerUrlError {
    /// The URL is empty (or only whitespace).
    #[error("the tracker URL is empty")]
    Empty,
    /// The URL is longer than [`MAX_URL_LEN`].
    #[error("the tracker URL is {0} bytes long, more than the {MAX_URL_LEN} bt accepts")]
    TooLong(usize),
    /// No `scheme://` at the start.
    #[error("not a URL: expected it to start with http://, https:// or udp://")]
    NoScheme,
    /// A scheme bt does not speak, such as `wss` (WebTorrent) or `ftp`.
    #[error("unsupported tracker scheme `{0}`: bt speaks http, https and udp")]
    UnsupportedScheme(String),
    /// Nothing between `//` and the port or path.
    #[error("the tracker URL has no host")]
    MissingHost,
    /// The host is neither a valid name nor an IP address literal.
    #[error("`{0}` is not a valid host name or IP address")]
    BadHost(String),
    /// An IPv6 address written without the brackets a URL needs around it.
    #[error("put the IPv6 address `{0}` in brackets, as in http://[{0}]:6969/announce")]
    UnbracketedIpv6(String),
    /// The port is not a number from 1 to 65535.
    #[error("tracker port `{0}` is not a number from 1 to 65535")]
    BadPort(String),
    /// A `udp://` URL without a port: UDP trackers have no default port.
    #[error("a udp:// tracker URL needs a port, as in udp://host:6969/announce")]
    MissingPort,
    /// `user:password@` before the host.
    #[error("user names and passwords in tracker URLs are not supported")]
    Userinfo,
}

/// A parsed tracker URL.
///
/// Only what trackers use is understood: the schemes `http`, `https` and `udp` (case-insensitive),
/// a host name, an IPv4 literal or a bracketed IPv6 literal, an optional port, and the path with
/// its query. A fragment (`#...`) is dropped, since it is never sent.
///
/// Invariants: the host is non-empty and holds only letters, digits, `-`, `.` and `_` (a name or
/// an IPv4 literal, lowercased, at most 253 bytes) or is a valid IPv6 address (kept without
/// brackets); the port is 1 to 65535; the path-and-query starts with `/` and holds only printable
/// ASCII (a control byte, a space or a non-ASCII character in the input is percent-encoded), so it
/// can go into an HTTP request line as is. The input is at most [`MAX_URL_LEN`] bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrackerUrl {
    scheme: Scheme,
    host: String,
    port: u16,
    path_and_query: String,
}

impl TrackerUrl {
    /// Parses `input` (surrounding whitespace ignored).
    pub fn parse(input: &str) -> Result<TrackerUrl, TrackerUrlError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(TrackerUrlError::Empty);
        }
        if input.len() > MAX_URL_LEN {
            return Err(TrackerUrlError::TooLong(input.len()));
        }
        let (scheme, rest) = input.split_once("://").ok_or(TrackerUrlError::NoScheme)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "udp" => Scheme::Udp,
            "" => return Err(TrackerUrlError::NoScheme),
            other => {
                let shown: String = other.chars().take(32).collect();
                return Err(TrackerUrlError::UnsupportedScheme(shown));
            }
        };
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(TrackerUrlError::Userinfo);
        }
        let (host, port) = split_host_port(authority)?;
        let port = match (port, scheme.default_port()) {
            (Some(port), _) => port,
            (None, Some(default)) => default,
            (None, None) => return Err(TrackerUrlError::MissingPort),
        };
        let mut path_and_query = utf8_percent_encode(path_and_query, PATH_ENCODE).to_string();
        if !path_and_query.starts_with('/') {
            path_and_query.insert(0, '/');
        }
        Ok(TrackerUrl {
            scheme,
            host,
            port,
            path_and_query,
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host: a lowercase name, an IPv4 literal, or an IPv6 literal without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host as an IP address, when it is a literal (no name resolution needed).
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// The port, the scheme's default when the URL names none.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path with its query (`/announce?passkey=x`), always starting with `/`. For UDP
    /// trackers it is kept for display only (BEP 41's URL data is not sent).
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// `host` or `host:port`, with brackets around an IPv6 literal, the port shown only when it
    /// is not the scheme's default: the value of an HTTP `Host` header.
    pub fn authority(&self) -> String {
        let mut out = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.scheme.default_port() != Some(self.port) {
            out.push(':');
            out.push_str(&self.port.to_string());
        }
        out
    }
}

impl fmt::Display for TrackerUrl {
    /// The normalized URL: `scheme://authority/path?query`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path_and_query
        )
    }
}

impl core::str::FromStr for TrackerUrl {
    type Err = TrackerUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrackerUrl::parse(s)
    }
}

/// Splits `host[:port]` or `[v6][:port]`; an empty port (`host:`) counts as none.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), TrackerUrlError> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (literal, after) = bracketed
            .split_once(']')
            .ok_or_else(|| TrackerUrlError::BadHost(shorten(authority)))?;
        let address: Ipv6Addr = literal
            .parse()
            .map_err(|_| TrackerUrlError::BadHost(shorten(literal)))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| TrackerUrlError::BadHost(shorten(authority)))?,
            ),
        };
        (address.to_string(), port)
    } else {
        if authority.parse::<Ipv6Addr>().is_ok() {
            return Err(TrackerUrlError::UnbracketedIpv6(shorten(authority)));
        }
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err(TrackerUrlError::MissingHost);
        }
        let valid = host.len() <= MAX_HOST_LEN
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid {
            return Err(TrackerUrlError::BadHost(shorten(host)));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None | Some("") => None,
        Some(digits) => Some(parse_port(digits)?),
    };
    Ok((host, port))
}

fn parse_port(digits: &str) -> Result<u16, TrackerUrlError> {
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TrackerUrlError::BadPort(shorten(digits)));
    }
    match digits.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(TrackerUrlError::BadPort(shorten(digits))),
    }
}

/// At most 64 characters of `s`, for error messages.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> TrackerUrl {
        TrackerUrl::parse(s).unwrap()
    }

    #[test]
    fn http_url_with_default_and_explicit_ports() {
        // Proves scheme, host, port defaults (80/443) and path-and-query come out of common URLs.
        let u = parse("http://Tracker.Example.org/announce");
        assert_eq!(u.scheme(), Scheme::Http);
        assert_eq!(u.host(), "tracker.example.org");
        assert_eq!(u.port(), 80);
        assert_eq!(u.path_and_query(), "/announce");
        assert_eq!(u.authority(), "tracker.example.org");
        let u = parse("HTTPS://t.example:8443/a/announce.php?passkey=abc&x=1#frag");
        assert_eq!(u.scheme(), Scheme::Https);
        assert_eq!(u.port(), 8443);
        assert_eq!(u.path_and_query(), "/a/announce.php?passkey=abc&x=1");
        assert_eq!(u.authority(), "t.example:8443");
        assert_eq!(
            u.to_string(),
            "https://t.example:8443/a/announce.php?passkey=abc&x=1"
        );
        assert_eq!(parse("https://t.example").port(), 443);
        assert_eq!(parse("https://t.example").path_and_query(), "/");
        assert_eq!(parse("http://t.example?x=1").path_and_query(), "/?x=1");
        assert_eq!(parse("http://t.example:/a").port(), 80);
        assert_eq!(parse("  http://t.example/a \n").host(), "t.example");
    }

    #[test]
    fn udp_and_ip_literals() {
        // Proves UDP URLs carry their port, and IPv4 and bracketed IPv6 literals are understood.
        let u = parse("udp://tracker.opentrackr.org:1337/announce");
        assert_eq!((u.scheme(), u.port()), (Scheme::Udp, 1337));
        assert_eq!(u.authority(), "tracker.opentrackr.org:1337");
        let u = parse("udp://127.0.0.1:6969");
        assert_eq!(u.ip(), Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(u.path_and_query(), "/");
        let u = parse("http://[2001:DB8::1]:6969/announce");
        assert_eq!(u.host(), "2001:db8::1");
        assert_eq!(u.ip(), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(u.port(), 6969);
        assert_eq!(u.authority(), "[2001:db8::1]:6969");
        assert_eq!(parse("http://[::1]/a").authority(), "[::1]");
        assert_eq!(parse("http://t.example/a").ip(), None);
    }

    #[test]
    fn unsafe_path_bytes_are_encoded() {
        // Proves a space, CR/LF or non-ASCII text in the path cannot break an HTTP request line.
        let u = parse("http://t.example/a b\r\nX: y/é");
        assert_eq!(u.path_and_query(), "/a%20b%0D%0AX:%20y/%C3%A9");
        assert!(u.path_and_query().bytes().all(|b| b.is_ascii_graphic()));
    }

    #[test]
    fn refusals_name_the_problem() {
        // Proves each kind of bad URL gets its own error, with a message a user can act on.
        use TrackerUrlError as E;
        let err = |s: &str| TrackerUrl::parse(s).unwrap_err();
        assert_eq!(err(""), E::Empty);
        assert_eq!(err("   "), E::Empty);
        assert_eq!(err("tracker.example:80"), E::NoScheme);
        assert_eq!(err("://x"), E::NoScheme);
        assert_eq!(
            err("wss://tracker.webtorrent.dev"),
            E::UnsupportedScheme("wss".into())
        );
        assert_eq!(
            err("wss://x").to_string(),
            "unsupported tracker scheme `wss`: bt speaks http, https and udp"
        );
        assert_eq!(err("http:///announce"), E::MissingHost);
        assert_eq!(err("http://:80/announce"), E::MissingHost);
        assert_eq!(err("udp://t.example/announce"), E::MissingPort);
        assert_eq!(err("udp://t.example:/announce"), E::MissingPort);
        assert_eq!(err("http://t.example:0/"), E::BadPort("0".into()));
        assert_eq!(err("http://t.example:65536/"), E::BadPort("65536".into()));
        assert_eq!(err("http://t.example:8o/"), E::BadPort("8o".into()));
        assert_eq!(err("http://t.example:+80/"), E::BadPort("+80".into()));
        assert_eq!(err("http://a:b:c/"), E::BadPort("b:c".into()));
        assert_eq!(
            err("http://2001:db8::1/"),
            E::UnbracketedIpv6("2001:db8::1".into())
        );
        assert_eq!(
            err("http://[2001:db8::g]/"),
            E::BadHost("2001:db8::g".into())
        );
        assert_eq!(err("http://[::1/"), E::BadHost("[::1".into()));
        assert_eq!(err("http://[::1]x/"), E::BadHost("[::1]x".into()));
        assert_eq!(err("http://t ex/"), E::BadHost("t ex".into()));
        assert_eq!(err("http://user:pw@t.example/"), E::Userinfo);
        let long = format!("http://t.example/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(err(&long), E::TooLong(long.len()));
        assert!(
            matches!(err(&format!("http://{}/", "h".repeat(300))), E::BadHost(h) if h.chars().count() == 65)
        );
    }
}
