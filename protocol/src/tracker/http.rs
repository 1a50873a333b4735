//! HTTP trackers (BEP 3, BEP 23, BEP 7) without I/O: the announce URL, the GET request bytes, an
//! incremental HTTP/1.1 response reader, and the parser of the bencoded answer.
//!
//! Bounds: the reader keeps at most [`HttpLimits::max_header_bytes`] of status line, headers and
//! trailers together (16 KiB by default), one chunk-size line of at most 1 KiB, and a body of at
//! most [`HttpLimits::max_body_bytes`] (2 MiB by default); beyond those it fails with
//! [`TrackerError::TooLarge`]. Bytes after a complete response are ignored. The bencode decode of
//! an answer builds at most 250,000 values, 16 levels deep. Redirects are not followed: they become
//! [`TrackerError::Redirect`] naming the `Location`.
//!
//! Invariant: the reader's result depends only on the concatenation of what it was fed, never on
//! how it was split into calls.

use core::net::{IpAddr, SocketAddr};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};

use super::announce::{
    AnnounceRequest, AnnounceResponse, MAX_MESSAGE_LEN, MAX_TRACKER_ID_LEN, PeerCollector,
    TrackerError, interval_from_secs, sanitize_text,
};
use super::url::TrackerUrl;
use crate::bencode::{DecodeLimits, Dict, Value, decode};

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`) is `%XX`-encoded.
const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The `User-Agent` bt sends.
pub const USER_AGENT: &str = "bt/0.1";

/// Limits on the bencode decode of an announce answer: 16 levels, 250,000 values (a dictionary
/// peer list of 10,000 peers takes about 70,000).
const ANSWER_DECODE_LIMITS: DecodeLimits = DecodeLimits {
    max_depth: 16,
    max_tokens: 250_000,
};

/// The longest chunk-size line (size, extensions) accepted, in bytes.
const MAX_CHUNK_LINE: usize = 1024;

/// The path and query of the announce for `request` on the tracker at `url`: the URL's own
/// path and query, then `info_hash`, `peer_id` (each byte outside the unreserved set as `%XX`),
/// `port`, `uploaded`, `downloaded`, `left`, `compact=1`, `event` (omitted for
/// [`super::Event::None`]), `numwant` (when set), `key` (8 hex digits) and `trackerid` (when known).
/// A URL that already has a query gets `&` before ours (nothing when it ends in `?` or `&`).
pub fn announce_path_and_query(url: &TrackerUrl, request: &AnnounceRequest) -> String {
    let mut out = url.path_and_query().to_owned();
    if !out.contains('?') {
        out.push('?');
    } else if !out.ends_with(['?', '&']) {
        out.push('&');
    }
    let info_hash = percent_encode(&request.info_hash.0, QUERY_ENCODE);
    let peer_id = percent_encode(&request.peer_id.0, QUERY_ENCODE);
    out.push_str(&format!(
        "info_hash={info_hash}&peer_id={peer_id}&port={}&uploaded={}&downloaded={}&left={}&compact=1",
        request.port, request.uploaded, request.downloaded, request.left
    ));
    if let Some(event) = request.event.as_param() {
        out.push_str("&event=");
        out.push_str(event);
    }
    if let Some(numwant) = request.numwant {
        out.push_str(&format!("&numwant={numwant}"));
    }
    out.push_str(&format!("&key={:08X}", request.key));
    if let Some(id) = &request.tracker_id {
        out.push_str("&trackerid=");
        out.push_str(&percent_encode(id.as_bytes(), QUERY_ENCODE).to_string());
    }
    out
}

/// The whole announce URL (for logs and `--announce-only`): origin plus
/// [`announce_path_and_query`].
pub fn announce_url(url: &TrackerUrl, request: &AnnounceRequest) -> String {
    format!(
        "{}://{}{}",
        url.scheme().as_str(),
        url.authority(),
        announce_path_and_query(url, request)
    )
}

/// An HTTP/1.1 GET of `path_and_query` on `url`'s host: the request line, `Host` (with the port
/// when it is not the scheme's default), `User-Agent: bt/0.1`, `Accept-Encoding: identity` and
/// `Connection: close`. Bytes of `path_and_query` that cannot stand in a request line (controls,
/// space, non-ASCII) are percent-encoded; an empty one becomes `/`.
pub fn http_get_request(url: &TrackerUrl, path_and_query: &str) -> Vec<u8> {
    const UNSAFE: &AsciiSet = &percent_encoding::CONTROLS.add(b' ');
    let mut target = percent_encoding::utf8_percent_encode(path_and_query, UNSAFE).to_string();
    if target.is_empty() {
        target.push('/');
    }
    format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\n\
         Accept-Encoding: identity\r\nConnection: close\r\n\r\n",
        url.authority()
    )
    .into_bytes()
}

/// Bounds of an [`HttpResponseReader`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most bytes of status line, headers and chunked trailers together.
    pub max_header_bytes: usize,
    /// Most body bytes (after removing chunked framing).
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    /// 16 KiB of headers, 2 MiB of body.
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 2 * 1024 * 1024,
        }
    }
}

/// A complete HTTP response, as far as a tracker client cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code (never 1xx or 3xx: those are skipped or refused by the reader).
    pub status: u16,
    /// The reason phrase, sanitised, at most 128 bytes.
    pub reason: String,
    /// The body, without any chunked framing.
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Status line and headers, line by line.
    Head,
    /// A body of known length: this many bytes still to come.
    Length(u64),
    /// A body that ends when the connection closes.
    UntilClose,
    /// A chunk-size line.
    ChunkSize,
    /// Chunk data: this many bytes still to come.
    ChunkData(u64),
    /// The line break after chunk data.
    ChunkEnd,
    /// Trailer lines after the last chunk.
    Trailers,
    /// A whole response was read.
    Done,
    /// The response is refused.
    Failed(TrackerError),
}

/// The headers bt looks at, collected while reading the head.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Head {
    status: Option<(u16, String)>,
    content_length: Option<u64>,
    transfer_encoding: Option<String>,
    content_encoding: Option<String>,
    location: Option<String>,
    /// Which of the above the last header line set, for obsolete line folding.
    last: Option<Field>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    TransferEncoding,
    ContentEncoding,
    Location,
    Other,
}

/// An incremental HTTP/1.1 response reader for one request on a `Connection: close`
/// connection. Feed it what the socket gives ([`HttpResponseReader::feed`]); stop reading once
/// [`HttpResponseReader::is_complete`]; call [`HttpResponseReader::finish`] then or at end of
/// stream. Understands `Content-Length`, `Transfer-Encoding: chunked` (extensions and trailers
/// ignored) and bodies delimited by the close; skips 1xx interim responses; accepts bare `\n`
/// line ends.
///
/// Bounds: at most [`HttpLimits::max_header_bytes`] of status line, headers and trailers together
/// (16 KiB by default), one chunk-size line of at most 1 KiB, and a body of at most
/// [`HttpLimits::max_body_bytes`] (2 MiB by default); beyond those it fails with
/// [`TrackerError::TooLarge`]. Bytes after a complete response are ignored. Redirects are not
/// followed: they become [`TrackerError::Redirect`] naming the `Location`.
///
/// Invariant: the result depends only on the concatenation of what was fed, never on how it was
/// split into calls.
#[derive(Clone, Debug)]
pub struct HttpResponseReader {
    limits: HttpLimits,
    state: State,
    head: Head,
    /// The line being read (head, chunk size, chunk end, trailers), without its `\n`.
    line: Vec<u8>,
    /// Bytes of head and trailers read so far.
    header_bytes: usize,
    /// Whether any byte was fed.
    started: bool,
    body: Vec<u8>,
}

impl Default for HttpResponseReader {
    fn default() -> Self {
        HttpResponseReader::new()
    }
}

impl HttpResponseReader {
    /// A reader with the default [`HttpLimits`].
    pub fn new() -> Self {
        HttpResponseReader::with_limits(HttpLimits::default())
    }

    /// A reader with the given limits.
    pub fn with_limits(limits: HttpLimits) -> Self {
        HttpResponseReader {
            limits,
            state: State::Head,
            head: Head::default(),
            line: Vec::new(),
            header_bytes: 0,
            started: false,
            body: Vec::new(),
        }
    }

    /// Whether the response is decided (read whole, or refused): reading more cannot change
    /// what [`HttpResponseReader::finish`] returns.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Done | State::Failed(_))
    }

    /// Takes the next bytes from the connection.
    pub fn feed(&mut self, mut input: &[u8]) {
        self.started |= !input.is_empty();
        while !input.is_empty() {
            let taken = match self.state {
                State::Done | State::Failed(_) => return,
                State::Head | State::Trailers => self.take_header_line(input),
                State::ChunkSize | State::ChunkEnd => self.take_chunk_line(input),
                State::Length(remaining) | State::ChunkData(remaining) => {
                    let n = input
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    self.body.extend_from_slice(&input[..n]);
                    let left = remaining - n as u64;
                    let framed_by_length = matches!(self.state, State::Length(_));
                    self.state = match (framed_by_length, left) {
                        (true, 0) => State::Done,
                        (true, _) => State::Length(left),
                        (false, 0) => State::ChunkEnd,
                        (false, _) => State::ChunkData(left),
                    };
                    n
                }
                State::UntilClose => {
                    if self.body.len() + input.len() > self.limits.max_body_bytes {
                        self.fail(TrackerError::TooLarge {
                            what: "body",
                            limit: self.limits.max_body_bytes,
                        });
                        return;
                    }
                    self.body.extend_from_slice(input);
                    input.len()
                }
            };
            input = &input[taken..];
        }
    }

    /// The response, once the connection is closed or [`HttpResponseReader::is_complete`].
    pub fn finish(self) -> Result<HttpResponse, TrackerError> {
        let truncated = |what: String| Err(TrackerError::BadResponse(what));
        match self.state {
            State::Failed(e) => Err(e),
            State::Done | State::UntilClose => Ok(self.response()),
            // The last chunk came; a server that closes without the final empty line is forgiven.
            State::Trailers if self.line.is_empty() => Ok(self.response()),
            State::Head if !self.started => {
                truncated("the connection closed without an answer".into())
            }
            State::Head => truncated("the connection closed in the middle of the headers".into()),
            State::Length(remaining) => truncated(format!(
                "the connection closed {remaining} bytes before the end of the body"
            )),
            State::ChunkSize | State::ChunkData(_) | State::ChunkEnd | State::Trailers => {
                truncated("the connection closed in the middle of the chunked body".into())
            }
        }
    }

    fn response(self) -> HttpResponse {
        let (status, reason) = self.head.status.unwrap_or_default();
        HttpResponse {
            status,
            reason,
            body: self.body,
        }
    }

    fn fail(&mut self, error: TrackerError) {
        self.state = State::Failed(error);
        self.line = Vec::new();
        self.body = Vec::new();
    }

    /// How many bytes of `input` belong to the current line, and whether they end it.
    fn line_extent(input: &[u8]) -> (usize, bool) {
        match input.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (input.len(), false),
        }
    }

    /// Appends the first `taken` bytes of `input` to `self.line` (without the `\n`); at the end
    /// of a line returns it, without its `\r`, and starts a new one.
    fn gather_line(&mut self, input: &[u8], taken: usize, complete: bool) -> Option<Vec<u8>> {
        self.line
            .extend_from_slice(&input[..taken - usize::from(complete)]);
        if !complete {
            return None;
        }
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Some(line)
    }

    /// Moves bytes up to a `\n` into `self.line`; returns how many it took and, at the end of a
    /// line, handles it. Counts against the header budget.
    fn take_header_line(&mut self, input: &[u8]) -> usize {
        let (taken, complete) = Self::line_extent(input);
        self.header_bytes += taken;
        if self.header_bytes > self.limits.max_header_bytes {
            self.fail(TrackerError::TooLarge {
                what: "headers",
                limit: self.limits.max_header_bytes,
            });
            return taken;
        }
        if let Some(line) = self.gather_line(input, taken, complete) {
            if self.state == State::Trailers {
                if line.is_empty() {
                    self.state = State::Done;
                }
            } else {
                self.head_line(&line);
            }
        }
        taken
    }

    /// Like [`Self::take_header_line`] for chunk-size lines and the line end after chunk data,
    /// each bounded by [`MAX_CHUNK_LINE`].
    fn take_chunk_line(&mut self, input: &[u8]) -> usize {
        let (taken, complete) = Self::line_extent(input);
        if self.line.len() + taken - usize::from(complete) > MAX_CHUNK_LINE {
            self.fail(TrackerError::BadResponse(format!(
                "a chunk-size line is longer than {MAX_CHUNK_LINE} bytes"
            )));
            return taken;
        }
        if let Some(line) = self.gather_line(input, taken, complete) {
            if self.state == State::ChunkEnd {
                if line.is_empty() {
                    self.state = State::ChunkSize;
                } else {
                    self.fail(TrackerError::BadResponse(
                        "chunk data is longer than its chunk size".into(),
                    ));
                }
            } else {
                self.chunk_size_line(&line);
            }
        }
        taken
    }

    fn chunk_size_line(&mut self, line: &[u8]) {
        let size = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = size.trim_ascii();
        let parsed = (!size.is_empty() && size.len() <= 16)
            .then(|| std::str::from_utf8(size).ok())
            .flatten()
            .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|s| u64::from_str_radix(s, 16).ok());
        match parsed {
            None => self.fail(TrackerError::BadResponse(format!(
                "bad chunk size `{}`",
                sanitize_text(size, 32)
            ))),
            Some(0) => self.state = State::Trailers,
            Some(n) if n > self.limits.max_body_bytes.saturating_sub(self.body.len()) as u64 => {
                self.fail(TrackerError::TooLarge {
                    what: "body",
                    limit: self.limits.max_body_bytes,
                })
            }
            Some(n) => self.state = State::ChunkData(n),
        }
    }

    /// One line of the head (without its line end).
    fn head_line(&mut self, line: &[u8]) {
        if self.head.status.is_none() {
            // RFC 9112 2.2: a client should ignore empty lines before the status line.
            if !line.is_empty() {
                match parse_status_line(line) {
                    Ok(status) => self.head.status = Some(status),
                    Err(e) => self.fail(e),
                }
            }
            return;
        }
        if line.is_empty() {
            return self.end_of_head();
        }
        if line[0] == b' ' || line[0] == b'\t' {
            // Obsolete line folding (RFC 9112 5.2): continues the previous header's value.
            let more = String::from_utf8_lossy(line.trim_ascii()).into_owned();
            let target = match self.head.last {
                Some(Field::TransferEncoding) => self.head.transfer_encoding.as_mut(),
                Some(Field::ContentEncoding) => self.head.content_encoding.as_mut(),
                Some(Field::Location) => self.head.location.as_mut(),
                Some(Field::Other) => None,
                None => {
                    return self.fail(TrackerError::BadResponse(
                        "a folded header line without a header before it".into(),
                    ));
                }
            };
            if let Some(value) = target {
                value.push(' ');
                value.push_str(&more);
            }
            return;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return self.fail(TrackerError::BadResponse(format!(
                "header line without a colon: `{}`",
                sanitize_text(line, 64)
            )));
        };
        let name = line[..colon].trim_ascii().to_ascii_lowercase();
        let value = String::from_utf8_lossy(line[colon + 1..].trim_ascii()).into_owned();
        let field = match name.as_slice() {
            b"content-length" => {
                // RFC 9112 6.3: a list of identical values is one value; differing ones are fatal.
                for item in value.split(',') {
                    let item = item.trim();
                    let parsed = (!item.is_empty() && item.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| item.parse::<u64>().ok())
                        .flatten();
                    match (parsed, self.head.content_length) {
                        (None, _) => {
                            return self.fail(TrackerError::BadResponse(format!(
                                "bad Content-Length `{}`",
                                sanitize_text(item.as_bytes(), 32)
                            )));
                        }
                        (Some(n), Some(old)) if n != old => {
                            return self.fail(TrackerError::BadResponse(
                                "conflicting Content-Length headers".into(),
                            ));
                        }
                        (Some(n), _) => self.head.content_length = Some(n),
                    }
                }
                Field::Other
            }
            b"transfer-encoding" => {
                append_list(&mut self.head.transfer_encoding, value);
                Field::TransferEncoding
            }
            b"content-encoding" => {
                append_list(&mut self.head.content_encoding, value);
                Field::ContentEncoding
            }
            b"location" => {
                self.head.location = Some(value);
                Field::Location
            }
            _ => Field::Other,
        };
        self.head.last = Some(field);
    }

    fn end_of_head(&mut self) {
        let Some((status, _)) = self.head.status else {
            return;
        };
        if (100..200).contains(&status) && status != 101 {
            // An interim response (100 Continue, 103 Early Hints): the real one follows.
            self.head = Head::default();
            return;
        }
        if status == 101 {
            return self.fail(TrackerError::BadResponse(
                "the tracker switched protocols (HTTP 101)".into(),
            ));
        }
        if (300..400).contains(&status) {
            let location = match &self.head.location {
                Some(l) => sanitize_text(l.as_bytes(), MAX_MESSAGE_LEN),
                None => "(none)".into(),
            };
            return self.fail(TrackerError::Redirect { status, location });
        }
        if let Some(encoding) = &self.head.content_encoding
            && encoding
                .split(',')
                .any(|c| !c.trim().eq_ignore_ascii_case("identity") && !c.trim().is_empty())
        {
            let shown = sanitize_text(encoding.as_bytes(), 64);
            return self.fail(TrackerError::BadResponse(format!(
                "the body is encoded as `{shown}` although bt asked for identity"
            )));
        }
        if status == 204 || status == 304 {
            self.state = State::Done;
            return;
        }
        if let Some(te) = &self.head.transfer_encoding {
            let codings: Vec<&str> = te
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            if let Some(bad) = codings
                .iter()
                .find(|c| !c.eq_ignore_ascii_case("chunked") && !c.eq_ignore_ascii_case("identity"))
            {
                let shown = sanitize_text(bad.as_bytes(), 64);
                return self.fail(TrackerError::BadResponse(format!(
                    "the body uses transfer coding `{shown}`, which bt does not decode"
                )));
            }
            // RFC 9112 6.3: Transfer-Encoding wins over Content-Length; chunked must be last,
            // otherwise the body runs to the close.
            self.state = match codings.last() {
                Some(c) if c.eq_ignore_ascii_case("chunked") => State::ChunkSize,
                _ => State::UntilClose,
            };
            return;
        }
        self.state = match self.head.content_length {
            Some(n) if n > self.limits.max_body_bytes as u64 => {
                return self.fail(TrackerError::TooLarge {
                    what: "body",
                    limit: self.limits.max_body_bytes,
                });
            }
            Some(0) => State::Done,
            Some(n) => State::Length(n),
            None => State::UntilClose,
        };
    }
}

fn append_list(slot: &mut Option<String>, value: String) {
    match slot {
        Some(existing) => {
            existing.push(',');
            existing.push_str(&value);
        }
        None => *slot = Some(value),
    }
}

/// `HTTP/1.x SSS reason`.
fn parse_status_line(line: &[u8]) -> Result<(u16, String), TrackerError> {
    let bad = || {
        TrackerError::BadResponse(format!(
            "not an HTTP status line: `{}`",
            sanitize_text(line, 64)
        ))
    };
    let rest = line.strip_prefix(b"HTTP/1.").ok_or_else(bad)?;
    let (&minor, rest) = rest.split_first().ok_or_else(bad)?;
    if !minor.is_ascii_digit() {
        return Err(bad());
    }
    let rest = rest.strip_prefix(b" ").ok_or_else(bad)?;
    if rest.len() < 3 || !rest[..3].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let status = rest[..3]
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(100..600).contains(&status) {
        return Err(bad());
    }
    let reason = match &rest[3..] {
        [] => &[][..],
        [b' ', reason @ ..] => reason,
        _ => return Err(bad()),
    };
    Ok((status, sanitize_text(reason.trim_ascii(), 128)))
}

/// The announce answer in an HTTP response: the parsed body for status 200; for any other status
/// a `failure reason` in the body if there is one (some trackers send one with 4xx), else
/// [`TrackerError::Http`].
pub fn announce_response_from_http(
    response: &HttpResponse,
) -> Result<AnnounceResponse, TrackerError> {
    if response.status == 200 {
        return parse_announce_response(&response.body);
    }
    match parse_announce_response(&response.body) {
        Err(failure @ TrackerError::Failure(_)) => Err(failure),
        _ => Err(TrackerError::Http {
            status: response.status,
            reason: response.reason.clone(),
        }),
    }
}

/// Parses a bencoded announce answer (BEP 3, BEP 23 compact peers, BEP 7 `peers6`).
///
/// - `failure reason` makes it a [`TrackerError::Failure`], whatever else is there.
/// - `interval` is optional here: missing, zero or negative means 30 minutes (see
///   [`AnnounceResponse`] for the normalisation); `min interval` is kept when positive.
/// - `peers` is a compact string of 6-byte entries (a length that is not a multiple of 6 is an
///   error) or a list of dictionaries with `ip` (an IPv4 or IPv6 literal; host names are skipped,
///   since resolving them is I/O) and `port`; unusable entries are skipped. `peers6` is a compact
///   string of 18-byte entries (same rule).
/// - `tracker id` is kept when it is UTF-8 of at most 256 bytes.
pub fn parse_announce_response(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let bad = |what: String| TrackerError::BadResponse(what);
    let decoded = decode(body, ANSWER_DECODE_LIMITS).map_err(|e| {
        if body.is_empty() {
            bad("the answer is empty".into())
        } else {
            bad(format!("the answer is not bencode ({e})"))
        }
    })?;
    let Value::Dict(root) = &decoded.value else {
        return Err(bad(format!(
            "the answer is a bencoded {}, not a dictionary",
            decoded.value.kind()
        )));
    };
    if let Some(reason) = root.get(b"failure reason") {
        let text = match reason {
            Value::Bytes(b) => sanitize_text(b, MAX_MESSAGE_LEN),
            other => format!("({} instead of a text)", with_article(other.kind())),
        };
        return Err(TrackerError::Failure(text));
    }
    let int = |key: &[u8]| root.get(key).and_then(Value::as_int);
    let count = |key: &[u8]| int(key).and_then(|n| u32::try_from(n).ok());
    let mut peers = PeerCollector::default();
    match root.get(b"peers") {
        None => {}
        Some(Value::Bytes(compact)) => {
            if compact.len() % 6 != 0 {
                return Err(bad(format!(
                    "compact `peers` is {} bytes long, not a multiple of 6",
                    compact.len()
                )));
            }
            peers.push_compact(compact, 6);
        }
        Some(Value::List(list)) => {
            for entry in list {
                if peers.is_full() {
                    break;
                }
                if let Some(addr) = entry.as_dict().and_then(dict_peer) {
                    peers.push(addr);
                }
            }
        }
        Some(other) => {
            return Err(bad(format!(
                "`peers` is {}, not a string or a list",
                with_article(other.kind())
            )));
        }
    }
    match root.get(b"peers6") {
        None => {}
        Some(Value::Bytes(compact)) => {
            if compact.len() % 18 != 0 {
                return Err(bad(format!(
                    "compact `peers6` is {} bytes long, not a multiple of 18",
                    compact.len()
                )));
            }
            peers.push_compact(compact, 18);
        }
        // Some trackers send an empty list when they have no IPv6 peers.
        Some(Value::List(list)) if list.is_empty() => {}
        Some(other) => {
            return Err(bad(format!(
                "`peers6` is {}, not a string",
                with_article(other.kind())
            )));
        }
    }
    Ok(AnnounceResponse {
        interval: interval_from_secs(int(b"interval").unwrap_or(0)),
        min_interval: int(b"min interval")
            .filter(|&n| n > 0)
            .map(interval_from_secs),
        tracker_id: root
            .get(b"tracker id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty() && id.len() <= MAX_TRACKER_ID_LEN)
            .map(str::to_owned),
        complete: count(b"complete"),
        incomplete: count(b"incomplete"),
        peers: peers.into_peers(),
        warning: root
            .get(b"warning message")
            .and_then(Value::as_bytes)
            .map(|w| sanitize_text(w, MAX_MESSAGE_LEN)),
    })
}

/// A peer from the dictionary form of `peers`: `ip` as an address literal and `port`.
fn dict_peer(peer: &Dict<'_>) -> Option<SocketAddr> {
    let ip: IpAddr = peer.get(b"ip")?.as_str()?.trim().parse().ok()?;
    let port = u16::try_from(peer.get(b"port")?.as_int()?).ok()?;
    Some(SocketAddr::new(ip, port))
}

/// `a list`, `an integer`.
fn with_article(kind: &str) -> String {
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {kind}")
}
