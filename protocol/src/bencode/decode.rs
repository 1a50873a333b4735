//! The bencode decoder: lenient on form, strict on meaning, bounded in depth and size.
//!
//! Invariants: it never panics on any input; recursion depth is bounded by
//! [`DecodeLimits::max_depth`] (itself at most [`MAX_DEPTH_LIMIT`]); the number of values built is
//! bounded by [`DecodeLimits::max_tokens`]; warnings are bounded by their number of kinds.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;

use super::value::{Dict, Value};

/// The deepest nesting any caller may ask for; also the encoder's depth bound.
pub const MAX_DEPTH_LIMIT: usize = 512;

/// Bounds on what a decode may build. Input from peers and trackers can be hostile: these keep a
/// small input from becoming a large allocation or a deep recursion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Deepest nesting of lists and dictionaries (`li1ee` is depth 1). At most [`MAX_DEPTH_LIMIT`].
    pub max_depth: usize,
    /// Most values (integers, strings, lists, dictionaries, dictionary keys) in one decode.
    pub max_tokens: usize,
}

impl Default for DecodeLimits {
    /// libtorrent's defaults for `.torrent` files: depth 100, 3,000,000 tokens.
    fn default() -> Self {
        DecodeLimits {
            max_depth: 100,
            max_tokens: 3_000_000,
        }
    }
}

/// A decoded value together with what was wrong with its form but did not change its meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The root value.
    pub value: Value<'a>,
    /// One entry per kind of non-canonical form met, with where it was first seen and how often.
    pub warnings: Vec<Warning>,
}

/// A non-canonical form that was accepted (libtorrent accepts it too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Warning {
    /// What was seen.
    pub kind: WarningKind,
    /// Byte offset of the first occurrence.
    pub offset: usize,
    /// How many times it occurred.
    pub count: usize,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}: {}", self.offset, self.kind)?;
        if self.count > 1 {
            write!(f, " ({} times)", self.count)?;
        }
        Ok(())
    }
}

/// The kinds of accepted non-canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WarningKind {
    /// Dictionary keys not in ascending byte order (BEP 3 requires sorted keys).
    UnsortedKeys,
    /// An integer or a string length written with leading zeros (`i03e`, `03:abc`).
    LeadingZero,
    /// Bytes after the end of the root value; they are ignored.
    TrailingBytes,
}

impl fmt::Display for WarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WarningKind::UnsortedKeys => "dictionary keys are not sorted",
            WarningKind::LeadingZero => "number has leading zeros",
            WarningKind::TrailingBytes => "bytes after the end of the data are ignored",
        })
    }
}

/// Why input is not bencode we accept, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bencode error at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Byte offset in the input where the problem was found.
    pub offset: usize,
    /// What the problem is.
    pub kind: DecodeErrorKind,
}

/// The problems that make bencode input unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The input is empty.
    #[error("input is empty")]
    Empty,
    /// The input ends inside a value.
    #[error("input ends in the middle of {0}")]
    Truncated(&'static str),
    /// A byte that cannot start or continue a value here.
    #[error("unexpected byte 0x{byte:02x} ({}), expected {expected}", printable(*byte))]
    UnexpectedByte {
        /// The byte found.
        byte: u8,
        /// What would have been valid.
        expected: &'static str,
    },
    /// `ie`: an integer with no digits.
    #[error("integer has no digits")]
    EmptyInteger,
    /// `i-0e`: BEP 3 forbids negative zero.
    #[error("negative zero is not a valid integer")]
    NegativeZero,
    /// An integer outside the 64-bit signed range.
    #[error("integer does not fit in 64 bits")]
    IntegerOverflow,
    /// A string length larger than the bytes left in the input.
    #[error("string of {len} bytes runs past the end of the input ({available} bytes left)")]
    LengthPastEnd {
        /// The declared length.
        len: u64,
        /// Bytes actually left after the `:`.
        available: usize,
    },
    /// A dictionary key that is not a byte string (BEP 3: keys are strings).
    #[error("dictionary key is not a byte string")]
    NonStringKey,
    /// The same key twice in one dictionary: which value is meant is ambiguous.
    #[error("duplicate dictionary key `{0}`")]
    DuplicateKey(String),
    /// Lists and dictionaries nested deeper than [`DecodeLimits::max_depth`].
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
    /// More values than [`DecodeLimits::max_tokens`].
    #[error("more than {0} values")]
    TooManyTokens(usize),
}

fn printable(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("`{}`", byte as char)
    } else {
        "not printable".to_owned()
    }
}

/// Decodes one value that must span the whole input; bytes after it are ignored with a warning.
pub fn decode(input: &[u8], limits: DecodeLimits) -> Result<Decoded<'_>, DecodeError> {
    let (mut decoded, end) = decode_prefix(input, limits)?;
    if end < input.len() {
        push_warning(&mut decoded.warnings, WarningKind::TrailingBytes, end);
    }
    Ok(decoded)
}

/// Decodes one value at the start of `input` and returns it with the number of bytes it spans.
/// For messages where bencode is followed by raw data (BEP 9 metadata pieces).
pub fn decode_prefix(
    input: &[u8],
    limits: DecodeLimits,
) -> Result<(Decoded<'_>, usize), DecodeError> {
    if input.is_empty() {
        return Err(DecodeError {
            offset: 0,
            kind: DecodeErrorKind::Empty,
        });
    }
    let mut decoder = Decoder {
        input,
        pos: 0,
        limits: DecodeLimits {
            max_depth: limits.max_depth.min(MAX_DEPTH_LIMIT),
            max_tokens: limits.max_tokens,
        },
        tokens: 0,
        warnings: Vec::new(),
    };
    let value = decoder.value(0)?;
    decoder.warnings.sort_by_key(|w| w.kind);
    Ok((
        Decoded {
            value,
            warnings: decoder.warnings,
        },
        decoder.pos,
    ))
}

fn push_warning(warnings: &mut Vec<Warning>, kind: WarningKind, offset: usize) {
    match warnings.iter_mut().find(|w| w.kind == kind) {
        Some(w) => w.count = w.count.saturating_add(1),
        None => warnings.push(Warning {
            kind,
            offset,
            count: 1,
        }),
    }
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    limits: DecodeLimits,
    tokens: usize,
    warnings: Vec<Warning>,
}

impl<'a> Decoder<'a> {
    fn err(&self, offset: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError { offset, kind }
    }

    fn peek(&self, inside: &'static str) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err(self.pos, DecodeErrorKind::Truncated(inside)))
    }

    fn count_token(&mut self) -> Result<(), DecodeError> {
        self.tokens += 1;
        if self.tokens > self.limits.max_tokens {
            return Err(self.err(
                self.pos,
                DecodeErrorKind::TooManyTokens(self.limits.max_tokens),
            ));
        }
        Ok(())
    }

    /// Decodes the value at `self.pos`; `depth` is the number of enclosing containers.
    fn value(&mut self, depth: usize) -> Result<Value<'a>, DecodeError> {
        self.count_token()?;
        match self.peek("a value")? {
            b'i' => self.integer().map(Value::Int),
            b'0'..=b'9' => self.byte_string().map(Value::bytes),
            b'l' => {
                let depth = self.enter(depth)?;
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek("a list")? != b'e' {
                    items.push(self.value(depth)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                let depth = self.enter(depth)?;
                self.dict(depth).map(Value::Dict)
            }
            byte => Err(self.err(
                self.pos,
                DecodeErrorKind::UnexpectedByte {
                    byte,
                    expected: "`i`, `l`, `d` or a digit",
                },
            )),
        }
    }

    fn enter(&self, depth: usize) -> Result<usize, DecodeError> {
        let depth = depth + 1;
        if depth > self.limits.max_depth {
            return Err(self.err(self.pos, DecodeErrorKind::TooDeep(self.limits.max_depth)));
        }
        Ok(depth)
    }

    fn dict(&mut self, depth: usize) -> Result<Dict<'a>, DecodeError> {
        let start = self.pos;
        self.pos += 1;
        let mut entries: BTreeMap<Cow<'a, [u8]>, Value<'a>> = BTreeMap::new();
        let mut previous: Option<&'a [u8]> = None;
        while self.peek("a dictionary")? != b'e' {
            let key_offset = self.pos;
            if !self.peek("a dictionary")?.is_ascii_digit() {
                return Err(self.err(key_offset, DecodeErrorKind::NonStringKey));
            }
            self.count_token()?;
            let key = self.byte_string()?;
            if previous.is_some_and(|p| key < p) {
                push_warning(&mut self.warnings, WarningKind::UnsortedKeys, key_offset);
            }
            previous = Some(key);
            let value = self.value(depth)?;
            match entries.entry(Cow::Borrowed(key)) {
                Entry::Occupied(_) => {
                    let shown = String::from_utf8_lossy(&key[..key.len().min(64)]).into_owned();
                    return Err(self.err(key_offset, DecodeErrorKind::DuplicateKey(shown)));
                }
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
            }
        }
        self.pos += 1;
        Ok(Dict::from_decoded(entries, &self.input[start..self.pos]))
    }

    /// Reads the digits at `self.pos` up to `terminator` as an unsigned magnitude.
    fn digits(&mut self, terminator: u8, inside: &'static str) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut magnitude: u64 = 0;
        loop {
            let byte = self.peek(inside)?;
            if byte == terminator {
                break;
            }
            if !byte.is_ascii_digit() {
                return Err(self.err(
                    self.pos,
                    DecodeErrorKind::UnexpectedByte {
                        byte,
                        expected: if terminator == b'e' {
                            "a digit or `e`"
                        } else {
                            "a digit or `:`"
                        },
                    },
                ));
            }
            magnitude = magnitude
                .checked_mul(10)
                .and_then(|m| m.checked_add(u64::from(byte - b'0')))
                .ok_or_else(|| self.err(start, DecodeErrorKind::IntegerOverflow))?;
            self.pos += 1;
        }
        let len = self.pos - start;
        if len == 0 {
            return Err(self.err(start, DecodeErrorKind::EmptyInteger));
        }
        if len > 1 && self.input[start] == b'0' {
            push_warning(&mut self.warnings, WarningKind::LeadingZero, start);
        }
        self.pos += 1; // the terminator
        Ok(magnitude)
    }

    fn integer(&mut self) -> Result<i64, DecodeError> {
        let start = self.pos;
        self.pos += 1; // 'i'
        let negative = self.peek("an integer")? == b'-';
        if negative {
            self.pos += 1;
        }
        let magnitude = self.digits(b'e', "an integer")?;
        if negative {
            if magnitude == 0 {
                return Err(self.err(start, DecodeErrorKind::NegativeZero));
            }
            0i64.checked_sub_unsigned(magnitude)
                .ok_or_else(|| self.err(start, DecodeErrorKind::IntegerOverflow))
        } else {
            i64::try_from(magnitude).map_err(|_| self.err(start, DecodeErrorKind::IntegerOverflow))
        }
    }

    fn byte_string(&mut self) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        let len = self.digits(b':', "a string length")?;
        let available = self.input.len() - self.pos;
        let len_usize = usize::try_from(len).ok().filter(|l| *l <= available);
        let Some(len_usize) = len_usize else {
            return Err(self.err(start, DecodeErrorKind::LengthPastEnd { len, available }));
        };
        let bytes = &self.input[self.pos..self.pos + len_usize];
        self.pos += len_usize;
        Ok(bytes)
    }
}
