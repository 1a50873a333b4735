//! Test support for parser properties: mutations of well-formed encodings, and a runner that
//! fails unless a property's accepting path was exercised.
//!
//! Random bytes almost never get past a parser's first check, so a property of the form "whatever
//! it accepts keeps the invariants" proves nothing when fed them. Mutating valid input instead
//! (flipped, inserted and deleted bytes, truncation, bencode fragments spliced in, byte strings
//! resized within still-valid bencode) reaches deep
//! into the parser, and [`check_accepts_some`] makes a test fail if its parser accepted none (or
//! refused none) of the mutated inputs, so the invariant checks are known to have run.

use core::cell::Cell;
use std::ops::Range;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::bencode::{DecodeLimits, Dict, Value, decode, encode};

/// Bencode fragments to splice into an encoding: each is well-formed or almost, so the result is
/// often still bencode but of the wrong shape.
const FRAGMENTS: &[&[u8]] = &[
    b"i0e",
    b"i-1e",
    b"i9223372036854775807e",
    b"i99999999999999999999e",
    b"0:",
    b"1:x",
    b"4:spam",
    b"20:",
    b"99999:",
    b"le",
    b"de",
    b"l",
    b"d",
    b"e",
    b"i",
    b"d1:ai1ee",
    b"li1e1:ae",
];

/// One edit of an encoding; positions are taken modulo the length at the time of the edit.
#[derive(Clone, Debug)]
pub(crate) enum Mutation {
    /// The byte at a position becomes `byte`.
    Set(Index, u8),
    /// One bit of the byte at a position flips.
    FlipBit(Index, u8),
    /// `bytes` are inserted at a position.
    Insert(Index, Vec<u8>),
    /// Up to `len` bytes are removed from a position.
    Delete(Index, usize),
    /// The encoding is cut at a position.
    Truncate(Index),
    /// A bencode fragment is inserted at a position.
    Splice(Index, &'static [u8]),
    /// A range of the encoding is copied to a position.
    Duplicate(Index, usize, Index),
    /// One byte string of a bencoded input (picked among all, in encoding order) shrinks or
    /// grows by up to 40 bytes, keeping the bencode valid: lengths that are wrong for the format
    /// reach the parser's checks. Nothing changes if the input is not bencode.
    Resize(Index, i8),
}

impl Mutation {
    /// Applies the edit to `bytes`.
    pub(crate) fn apply(&self, bytes: &mut Vec<u8>) {
        let at = |i: &Index, len: usize| i.index(len + 1);
        let clamp = |start: usize, len: usize, total: usize| -> Range<usize> {
            start..start.saturating_add(len).min(total)
        };
        match self {
            Mutation::Set(i, byte) if !bytes.is_empty() => {
                let i = i.index(bytes.len());
                bytes[i] = *byte;
            }
            Mutation::FlipBit(i, bit) if !bytes.is_empty() => {
                let i = i.index(bytes.len());
                bytes[i] ^= 1 << (bit % 8);
            }
            Mutation::Insert(i, inserted) => {
                let i = at(i, bytes.len());
                bytes.splice(i..i, inserted.iter().copied());
            }
            Mutation::Delete(i, len) => {
                let i = at(i, bytes.len());
                bytes.drain(clamp(i, *len, bytes.len()));
            }
            Mutation::Truncate(i) => bytes.truncate(at(i, bytes.len())),
            Mutation::Splice(i, fragment) => {
                let i = at(i, bytes.len());
                bytes.splice(i..i, fragment.iter().copied());
            }
            Mutation::Duplicate(from, len, to) => {
                let from = at(from, bytes.len());
                let copied = bytes[clamp(from, *len, bytes.len())].to_vec();
                let to = at(to, bytes.len());
                bytes.splice(to..to, copied);
            }
            Mutation::Resize(which, delta) => {
                let Ok(decoded) = decode(bytes, DecodeLimits::default()) else {
                    return;
                };
                let strings = count_strings(&decoded.value);
                if strings > 0 {
                    let mut countdown = which.index(strings);
                    let value = resized(&decoded.value, &mut countdown, *delta);
                    if let Ok(out) = encode(&value) {
                        *bytes = out;
                    }
                }
            }
            Mutation::Set(..) | Mutation::FlipBit(..) => {}
        }
    }
}

fn count_strings(value: &Value<'_>) -> usize {
    match value {
        Value::Int(_) => 0,
        Value::Bytes(_) => 1,
        Value::List(items) => items.iter().map(count_strings).sum(),
        Value::Dict(d) => d.iter().map(|(_, v)| count_strings(v)).sum(),
    }
}

/// `value` with the byte string `*countdown` strings ahead resized by `delta` bytes (grown by
/// repeating its bytes).
fn resized(value: &Value<'_>, countdown: &mut usize, delta: i8) -> Value<'static> {
    match value {
        Value::Int(n) => Value::Int(*n),
        Value::Bytes(b) => {
            let hit = *countdown == 0;
            *countdown = countdown.wrapping_sub(1);
            let mut b = b.to_vec();
            if hit {
                let len = b.len().saturating_add_signed(isize::from(delta % 41));
                let fill: Vec<u8> = if b.is_empty() { vec![b'x'] } else { b.clone() };
                b.extend(fill.iter().cycle().take(len.saturating_sub(b.len())));
                b.truncate(len);
            }
            Value::owned_bytes(b)
        }
        Value::List(items) => {
            Value::List(items.iter().map(|v| resized(v, countdown, delta)).collect())
        }
        Value::Dict(d) => {
            let mut out = Dict::new();
            for (k, v) in d.iter() {
                out.insert(k.to_vec(), resized(v, countdown, delta));
            }
            Value::Dict(out)
        }
    }
}

/// One to `max` edits, mostly ones that keep the length (so that inputs often stay valid).
pub(crate) fn mutations(max: usize) -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1usize..8).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), proptest::sample::select(FRAGMENTS))
            .prop_map(|(i, f)| Mutation::Splice(i, f)),
        1 => (any::<Index>(), 1usize..30, any::<Index>())
            .prop_map(|(from, n, to)| Mutation::Duplicate(from, n, to)),
        3 => (any::<Index>(), any::<i8>()).prop_map(|(i, d)| Mutation::Resize(i, d)),
    ];
    proptest::collection::vec(one, 1..=max)
}

/// `bytes` with every edit of `edits` applied in order.
pub(crate) fn mutated(bytes: &[u8], edits: &[Mutation]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for edit in edits {
        edit.apply(&mut out);
    }
    out
}

/// Runs `check` on `cases` values of `strategy`; `check` checks the property and says whether the
/// parser accepted its input. Panics (failing the test) if the property failed, or if the parser
/// accepted none of the inputs or refused none: then the checks on one path never ran.
pub(crate) fn check_accepts_some<S: Strategy>(
    cases: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<bool, TestCaseError>,
) {
    let accepted = Cell::new(0u32);
    let refused = Cell::new(0u32);
    let mut runner = TestRunner::new(Config::with_cases(cases));
    let result = runner.run(&strategy, |value| {
        if check(value)? {
            accepted.set(accepted.get() + 1);
        } else {
            refused.set(refused.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (accepted, refused) = (accepted.get(), refused.get());
    assert!(
        accepted > 0 && refused > 0,
        "the parser accepted {accepted} and refused {refused} of {cases} mutated inputs: a path went unchecked"
    );
}
