//! Bencode (BEP 3): decoding input from the wild, encoding canonically.
//!
//! Decoding is written here rather than delegated to bendy, because bendy rejects input that real
//! torrents and tracker replies contain (unsorted dictionary keys) and cannot give the exact span of
//! a nested dictionary. The rule, following libtorrent: what only breaks canonical form is accepted
//! with a [`Warning`] (unsorted keys, leading zeros, bytes after the root value); what makes the
//! meaning ambiguous or unsafe is refused with a [`DecodeError`] that gives the byte offset (duplicate
//! keys, `-0`, truncation, a length past the end, nesting or token counts beyond [`DecodeLimits`]).
//!
//! Every decoded dictionary remembers the exact bytes it was decoded from ([`Dict::raw`]), so the
//! info hash is computed over the file's bytes, never over a re-encoding.
//!
//! Encoding goes through bendy's encoder and is canonical: keys sorted, no leading zeros.

mod decode;
mod encode;
mod value;

pub use decode::{
    DecodeError, DecodeErrorKind, DecodeLimits, Decoded, MAX_DEPTH_LIMIT, Warning, WarningKind,
    decode, decode_prefix,
};
pub use encode::{EncodeError, encode};
pub use value::{Dict, Value};

#[cfg(test)]
mod tests;
