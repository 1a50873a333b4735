//! What an HTTP request to [`super`] asks for, read by small pure functions (no I/O, no
//! allocation beyond the decoded name; fuzzed by `fuzz/fuzz_targets/serve_request.rs`):
//!
//! - [`parse_target`]: the request target's path, as a [`Target`]: `/`, `/playlist.m3u`, or
//!   `/files/INDEX/NAME` with NAME decoded from percent-encoding one `/`-separated component at a
//!   time. A component that decodes to `/`, `\`, NUL, `.`, `..` or nothing, bytes that are not
//!   UTF-8, a bad `%` escape or a target over [`MAX_TARGET_LEN`] bytes is refused
//!   ([`TargetError::BadPath`]); the decoded name is only ever compared with the torrent's own
//!   file path, never used to open anything.
//! - [`parse_range`]: a `Range` header against a file's length, as RFC 9110 section 14.2 reads
//!   one `bytes=` range (`A-B`, `A-`, `-N`). A header with several ranges, another unit or bad
//!   syntax is ignored ([`RangeRequest::Full`]: the whole file, 200), as the RFC allows; a range
//!   that starts at or past the end, or `-0`, is [`RangeRequest::Unsatisfiable`] (416).

/// The longest request target (path and query) read, in bytes; longer ones are refused.
pub const MAX_TARGET_LEN: usize = 8192;

/// A resource of the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/`: the files as HTML links.
    Index,
    /// `/playlist.m3u`: the media files as absolute URLs.
    Playlist,
    /// `/files/INDEX/NAME`: file `index` of the torrent, named `name` (decoded).
    File {
        /// The file's index in the torrent's file list (as `bt info` prints it).
        index: usize,
        /// The path the request gave, decoded, components joined with `/`.
        name: String,
    },
}

/// Why a request target was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// No such resource (404).
    #[error("no such page")]
    NotFound,
    /// A path that could name something outside the torrent or is malformed (400).
    #[error("bad path: {0}")]
    BadPath(&'static str),
}

/// Reads the path of a request target (anything after `?` or `#` is dropped).
pub fn parse_target(target: &str) -> Result<Target, TargetError> {
    if target.len() > MAX_TARGET_LEN {
        return Err(TargetError::BadPath("the request target is too long"));
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    match path {
        "/" | "" => return Ok(Target::Index),
        "/playlist.m3u" => return Ok(Target::Playlist),
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/files/") else {
        return Err(TargetError::NotFound);
    };
    let (index, name) = rest.split_once('/').ok_or(TargetError::NotFound)?;
    if index.is_empty() || index.len() > 9 || !index.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TargetError::NotFound);
    }
    let index: usize = index.parse().map_err(|_| TargetError::NotFound)?;
    let mut decoded = Vec::with_capacity(name.len());
    for (i, component) in name.split('/').enumerate() {
        if i > 0 {
            decoded.push(b'/');
        }
        let start = decoded.len();
        percent_decode(component.as_bytes(), &mut decoded)?;
        let part = &decoded[start..];
        if part.is_empty() {
            return Err(TargetError::BadPath("an empty path component"));
        }
        if part == b"." || part == b".." {
            return Err(TargetError::BadPath("a `.` or `..` path component"));
        }
        if part.iter().any(|b| matches!(b, b'/' | b'\\' | 0)) {
            return Err(TargetError::BadPath("an encoded `/`, `\\` or NUL"));
        }
    }
    let name = String::from_utf8(decoded).map_err(|_| TargetError::BadPath("not UTF-8"))?;
    Ok(Target::File { index, name })
}

/// Appends `input` with its `%XX` escapes decoded to `out`.
fn percent_decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), TargetError> {
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            let hex = |at: usize| input.get(at).and_then(|h| (*h as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                return Err(TargetError::BadPath("a bad `%` escape"));
            };
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(())
}

/// `text` with every byte outside RFC 3986's unreserved set (and `/`, which separates the
/// components) written as `%XX`: a path as it goes into a URL.
pub fn percent_encode_path(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a `Range` header asks of a file of a given length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// The whole file (no header, or one that is ignored).
    Full,
    /// Bytes `start..=last` (206), both within the file.
    Partial {
        /// The first byte.
        start: u64,
        /// The last byte (inclusive).
        last: u64,
    },
    /// Nothing of the file can be given (416, with `Content-Range: bytes */LEN`).
    Unsatisfiable,
}

/// Reads the `Range` header `header` (`None`: none was sent) for a file of `len` bytes: see the
/// module docs.
pub fn parse_range(header: Option<&[u8]>, len: u64) -> RangeRequest {
    let Some(header) = header else {
        return RangeRequest::Full;
    };
    let Ok(text) = std::str::from_utf8(header) else {
        return RangeRequest::Full;
    };
    let text = text.trim();
    let Some((unit, spec)) = text.split_once('=') else {
        return RangeRequest::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // More digits than a u64 holds: as large as can be.
        Some(s.parse().unwrap_or(u64::MAX))
    };
    if first.is_empty() {
        // `-N`: the last N bytes.
        return match number(last) {
            None => RangeRequest::Full,
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if len == 0 => RangeRequest::Unsatisfiable,
            Some(suffix) => RangeRequest::Partial {
                start: len - suffix.min(len),
                last: len - 1,
            },
        };
    }
    let Some(start) = number(first) else {
        return RangeRequest::Full;
    };
    // `A-` runs to the end; `A-B` to B, cut at the end.
    let last = if last.is_empty() {
        u64::MAX
    } else {
        match number(last) {
            Some(last) if last >= start => last,
            _ => return RangeRequest::Full,
        }
    };
    if start >= len {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial {
        start,
        last: last.min(len - 1),
    }
}
