//! BEP 9 `ut_metadata`: the extension messages that carry a torrent's info dictionary in
//! 16 KiB pieces ([`MetadataMessage`]), and [`MetadataFetch`], which assembles the dictionary
//! from pieces asked of several peers and checks it against the info hash.
//!
//! Invariants: decoding never panics and is bounded (a dictionary of a few keys, decoded with
//! [`METADATA_DECODE_LIMITS`]; data of at most [`METADATA_PIECE_LEN`] bytes); encoding parses
//! back to the same message. A fetch holds at most its size cap ([`MetadataFetch::new`]) of
//! data, one request per piece in flight, and accepts a piece only from the peer it asked, of
//! exactly the piece's length; the dictionary it returns hashes to the info hash.

use std::collections::{BTreeMap, BTreeSet};

use sha1::{Digest, Sha1};

use crate::bencode::{DecodeError, DecodeLimits, Dict, Value, decode_prefix, encode};
use crate::metainfo::InfoHash;

/// The size of a metadata piece (BEP 9: "The metadata is handled in blocks of 16KiB"); the last
/// piece may be shorter.
pub const METADATA_PIECE_LEN: usize = 16 * 1024;

/// Bounds on decoding a message's dictionary: `{msg_type, piece, total_size}` and a few unknown
/// keys at most.
pub const METADATA_DECODE_LIMITS: DecodeLimits = DecodeLimits {
    max_depth: 4,
    max_tokens: 64,
};

/// One `ut_metadata` message (the payload after the extended message id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataMessage<'a> {
    /// `msg_type` 0: asks for a piece.
    Request {
        /// The piece index.
        piece: u32,
    },
    /// `msg_type` 1: a piece, its bytes following the dictionary.
    Data {
        /// The piece index.
        piece: u32,
        /// The size of the whole info dictionary, in bytes.
        total_size: u64,
        /// The piece's bytes.
        data: &'a [u8],
    },
    /// `msg_type` 2: the peer will not send this piece.
    Reject {
        /// The piece index.
        piece: u32,
    },
}

/// Why a `ut_metadata` message or piece is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// BEP 9: "The metadata extension messages are bencoded dictionaries"; this is not one.
    #[error("ut_metadata message is not valid bencode: {0}")]
    Bencode(#[from] DecodeError),
    /// BEP 9: every message is a dictionary with `msg_type` and `piece`; something is missing,
    /// of the wrong type or out of range.
    #[error("ut_metadata message has no valid `{0}`")]
    MissingKey(&'static str),
    /// BEP 9 knows `msg_type` 0 (request), 1 (data) and 2 (reject).
    #[error("ut_metadata message type {0} is unknown")]
    UnknownType(i64),
    /// BEP 9: a piece is 16 KiB; more bytes follow this data message's dictionary.
    #[error("ut_metadata piece of {0} bytes; a piece is at most 16 KiB")]
    PieceTooLong(usize),
    /// The peer says the metadata is larger than we accept (`--max-metadata-size`).
    #[error("metadata of {size} bytes is over the {max} bytes accepted")]
    TooLarge {
        /// The size the peer gave.
        size: u64,
        /// The bound.
        max: u32,
    },
    /// A metadata size of zero: there is no torrent without an info dictionary.
    #[error("metadata size of 0")]
    Empty,
    /// The peer's size differs from the one the fetch is assembling.
    #[error("metadata size {said} differs from the {known} bytes being fetched")]
    SizeMismatch {
        /// The size the peer gave.
        said: u64,
        /// The size being fetched.
        known: u32,
    },
    /// A piece we did not ask this peer for (or asked another peer for).
    #[error("metadata piece {0} was not asked of this peer")]
    Unrequested(u32),
    /// A piece whose length is not the piece's length (16 KiB, or the rest for the last one).
    #[error("metadata piece {piece} has {got} bytes; it must have {want}")]
    WrongLength {
        /// The piece index.
        piece: u32,
        /// Bytes received.
        got: usize,
        /// Bytes it must have.
        want: usize,
    },
}

impl<'a> MetadataMessage<'a> {
    /// Decodes a `ut_metadata` payload (after the extended message id byte). Unknown keys are
    /// ignored (BEP 10 style); a data message's bytes are what follows its dictionary.
    pub fn decode(payload: &'a [u8]) -> Result<MetadataMessage<'a>, MetadataError> {
        let (decoded, end) = decode_prefix(payload, METADATA_DECODE_LIMITS)?;
        let dict = decoded
            .value
            .as_dict()
            .ok_or(MetadataError::MissingKey("msg_type"))?;
        let int = |key: &[u8]| dict.get(key).and_then(Value::as_int);
        let msg_type = int(b"msg_type").ok_or(MetadataError::MissingKey("msg_type"))?;
        let piece = int(b"piece")
            .and_then(|p| u32::try_from(p).ok())
            .ok_or(MetadataError::MissingKey("piece"))?;
        match msg_type {
            0 => Ok(MetadataMessage::Request { piece }),
            1 => {
                let total_size = int(b"total_size")
                    .and_then(|s| u64::try_from(s).ok())
                    .ok_or(MetadataError::MissingKey("total_size"))?;
                let data = &payload[end..];
                if data.len() > METADATA_PIECE_LEN {
                    return Err(MetadataError::PieceTooLong(data.len()));
                }
                Ok(MetadataMessage::Data {
                    piece,
                    total_size,
                    data,
                })
            }
            2 => Ok(MetadataMessage::Reject { piece }),
            other => Err(MetadataError::UnknownType(other)),
        }
    }

    /// Appends the payload (dictionary, then a data message's bytes) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut dict = Dict::new();
        let (msg_type, piece) = match *self {
            MetadataMessage::Request { piece } => (0, piece),
            MetadataMessage::Data {
                piece, total_size, ..
            } => {
                dict.insert(
                    &b"total_size"[..],
                    Value::Int(i64::try_from(total_size).unwrap_or(i64::MAX)),
                );
                (1, piece)
            }
            MetadataMessage::Reject { piece } => (2, piece),
        };
        dict.insert(&b"msg_type"[..], Value::Int(msg_type));
        dict.insert(&b"piece"[..], Value::Int(i64::from(piece)));
        out.extend(encode(&Value::Dict(dict)).expect("a flat dictionary of integers encodes"));
        if let MetadataMessage::Data { data, .. } = self {
            out.extend_from_slice(data);
        }
    }
}

/// How many pieces metadata of `size` bytes has.
pub fn metadata_piece_count(size: u32) -> u32 {
    size.div_ceil(METADATA_PIECE_LEN as u32)
}

/// The bytes of piece `piece` of `metadata` (to serve a request), or `None` past the end.
pub fn metadata_piece(metadata: &[u8], piece: u32) -> Option<&[u8]> {
    let start = (piece as usize).checked_mul(METADATA_PIECE_LEN)?;
    if start >= metadata.len() {
        return None;
    }
    Some(&metadata[start..metadata.len().min(start + METADATA_PIECE_LEN)])
}

/// What a piece did to a [`MetadataFetch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchProgress<P> {
    /// Taken; pieces are still missing.
    Stored,
    /// The last piece: the info dictionary, which hashes to the info hash.
    Done(Vec<u8>),
    /// The last piece, but the whole does not hash to the info hash: every peer that sent a
    /// piece of it is blamed, and the fetch starts over.
    Failed {
        /// The peers that contributed, in order.
        blame: Vec<P>,
    },
}

/// Assembles an info dictionary from `ut_metadata` pieces asked of several peers (`P` names a
/// peer, e.g. a connection id).
///
/// The size comes from the first peer whose extension handshake gives an acceptable one
/// ([`MetadataFetch::handle_size`]); peers that give another size are not asked. Pieces are
/// asked lowest first, each of one peer at a time; a reject or a peer leaving frees its pieces.
/// Bounds: at most the size cap of data, and one request per piece.
#[derive(Clone, Debug)]
pub struct MetadataFetch<P> {
    info_hash: InfoHash,
    max_size: u32,
    size: Option<u32>,
    buffer: Vec<u8>,
    have: BTreeSet<u32>,
    asked: BTreeMap<u32, P>,
    senders: BTreeMap<u32, P>,
    done: bool,
}

impl<P: Clone + Ord> MetadataFetch<P> {
    /// A fetch of the info dictionary of `info_hash`, refusing sizes over `max_size` bytes.
    pub fn new(info_hash: InfoHash, max_size: u32) -> Self {
        MetadataFetch {
            info_hash,
            max_size,
            size: None,
            buffer: Vec::new(),
            have: BTreeSet::new(),
            asked: BTreeMap::new(),
            senders: BTreeMap::new(),
            done: false,
        }
    }

    /// Whether the dictionary was assembled and returned: nothing more is asked or taken.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The size being fetched, once a peer gave one.
    pub fn size(&self) -> Option<u32> {
        self.size
    }

    /// Pieces received so far, and how many there are (0 of 0 before the size is known).
    pub fn progress(&self) -> (u32, u32) {
        (
            self.have.len() as u32,
            self.size.map_or(0, metadata_piece_count),
        )
    }

    /// A peer's `metadata_size` (BEP 9, from its extension handshake). `Ok` when the peer may be
    /// asked for pieces: its size is acceptable and agrees with the one being fetched.
    pub fn handle_size(&mut self, size: u64) -> Result<(), MetadataError> {
        if self.done {
            return Ok(());
        }
        if size == 0 {
            return Err(MetadataError::Empty);
        }
        if size > u64::from(self.max_size) {
            return Err(MetadataError::TooLarge {
                size,
                max: self.max_size,
            });
        }
        match self.size {
            Some(known) if u64::from(known) != size => {
                Err(MetadataError::SizeMismatch { said: size, known })
            }
            Some(_) => Ok(()),
            None => {
                let size = size as u32;
                self.size = Some(size);
                self.buffer = vec![0; size as usize];
                Ok(())
            }
        }
    }

    /// The next piece to ask `peer` for, now marked as asked of it; `None` when every missing
    /// piece is asked already (or the size is unknown).
    pub fn next_request(&mut self, peer: &P) -> Option<u32> {
        if self.done {
            return None;
        }
        let count = metadata_piece_count(self.size?);
        let piece = (0..count).find(|p| !self.have.contains(p) && !self.asked.contains_key(p))?;
        self.asked.insert(piece, peer.clone());
        Some(piece)
    }

    /// `peer` rejected `piece`: it may be asked of another peer.
    pub fn handle_reject(&mut self, peer: &P, piece: u32) {
        if self.asked.get(&piece) == Some(peer) {
            self.asked.remove(&piece);
        }
    }

    /// `peer` left: the pieces asked of it may be asked of others.
    pub fn peer_gone(&mut self, peer: &P) {
        self.asked.retain(|_, p| p != peer);
    }

    /// A data message from `peer`.
    pub fn handle_data(
        &mut self,
        peer: &P,
        piece: u32,
        total_size: u64,
        data: &[u8],
    ) -> Result<FetchProgress<P>, MetadataError> {
        let Some(size) = self.size.filter(|_| !self.done) else {
            return Err(MetadataError::Unrequested(piece));
        };
        if total_size != u64::from(size) {
            return Err(MetadataError::SizeMismatch {
                said: total_size,
                known: size,
            });
        }
        if self.asked.get(&piece) != Some(peer) {
            return Err(MetadataError::Unrequested(piece));
        }
        let start = piece as usize * METADATA_PIECE_LEN;
        let want = (size as usize - start).min(METADATA_PIECE_LEN);
        if data.len() != want {
            return Err(MetadataError::WrongLength {
                piece,
                got: data.len(),
                want,
            });
        }
        self.asked.remove(&piece);
        self.buffer[start..start + want].copy_from_slice(data);
        self.have.insert(piece);
        self.senders.insert(piece, peer.clone());
        if self.have.len() < metadata_piece_count(size) as usize {
            return Ok(FetchProgress::Stored);
        }
        let digest: [u8; 20] = Sha1::digest(&self.buffer).into();
        if digest == self.info_hash.0 {
            self.done = true;
            self.asked.clear();
            self.senders.clear();
            return Ok(FetchProgress::Done(std::mem::take(&mut self.buffer)));
        }
        let mut blame: Vec<P> = Vec::new();
        for p in std::mem::take(&mut self.senders).into_values() {
            if !blame.contains(&p) {
                blame.push(p);
            }
        }
        // Start over: the size may have been the lie.
        self.size = None;
        self.buffer = Vec::new();
        self.have.clear();
        self.asked.clear();
        Ok(FetchProgress::Failed { blame })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg(m: MetadataMessage<'_>) -> Vec<u8> {
        let mut v = Vec::new();
        m.encode_into(&mut v);
        v
    }

    #[test]
    fn bep9_examples_decode_and_encode_exactly() {
        // Proves the three messages of BEP 9's text parse, and encode back to the same bytes.
        let request = b"d8:msg_typei0e5:piecei0ee";
        assert_eq!(
            MetadataMessage::decode(request),
            Ok(MetadataMessage::Request { piece: 0 })
        );
        assert_eq!(msg(MetadataMessage::Request { piece: 0 }), request);
        let mut data = b"d8:msg_typei1e5:piecei0e10:total_sizei34256ee".to_vec();
        data.extend_from_slice(&[7u8; 100]);
        let m = MetadataMessage::decode(&data).unwrap();
        assert_eq!(
            m,
            MetadataMessage::Data {
                piece: 0,
                total_size: 34256,
                data: &[7u8; 100]
            }
        );
        assert_eq!(msg(m), data);
        let reject = b"d8:msg_typei2e5:piecei0ee";
        assert_eq!(
            MetadataMessage::decode(reject),
            Ok(MetadataMessage::Reject { piece: 0 })
        );
        assert_eq!(msg(MetadataMessage::Reject { piece: 0 }), reject);
    }

    #[test]
    fn malformed_messages_are_refused_with_a_reason() {
        // Proves each malformed form names what is wrong.
        let cases: [(&[u8], MetadataError); 5] = [
            (b"d5:piecei0ee", MetadataError::MissingKey("msg_type")),
            (b"d8:msg_typei0ee", MetadataError::MissingKey("piece")),
            (
                b"d8:msg_typei0e5:piecei-1ee",
                MetadataError::MissingKey("piece"),
            ),
            (
                b"d8:msg_typei1e5:piecei0ee",
                MetadataError::MissingKey("total_size"),
            ),
            (b"d8:msg_typei9e5:piecei0ee", MetadataError::UnknownType(9)),
        ];
        for (bytes, want) in cases {
            assert_eq!(MetadataMessage::decode(bytes), Err(want));
        }
        assert!(matches!(
            MetadataMessage::decode(b"li1ee"),
            Err(MetadataError::MissingKey("msg_type"))
        ));
        assert!(matches!(
            MetadataMessage::decode(b"x"),
            Err(MetadataError::Bencode(_))
        ));
        let mut long = b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee".to_vec();
        long.extend_from_slice(&[0u8; METADATA_PIECE_LEN + 1]);
        assert_eq!(
            MetadataMessage::decode(&long),
            Err(MetadataError::PieceTooLong(METADATA_PIECE_LEN + 1))
        );
    }

    /// An info dictionary of `len` bytes and its hash.
    fn metadata(len: usize) -> (Vec<u8>, InfoHash) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let hash = InfoHash(Sha1::digest(&bytes).into());
        (bytes, hash)
    }

    #[test]
    fn a_fetch_from_two_peers_assembles_and_checks_the_dictionary() {
        // Proves pieces asked of two peers at once assemble to the dictionary, which is returned
        // only when whole and hashing to the info hash; a reject frees its piece for another peer.
        let (meta, hash) = metadata(40_000);
        let mut f: MetadataFetch<u8> = MetadataFetch::new(hash, 1 << 20);
        assert_eq!(f.next_request(&1), None, "size unknown yet");
        f.handle_size(40_000).unwrap();
        assert_eq!(f.progress(), (0, 3));
        assert_eq!(f.next_request(&1), Some(0));
        assert_eq!(f.next_request(&2), Some(1));
        assert_eq!(f.next_request(&2), Some(2));
        assert_eq!(f.next_request(&1), None, "every piece is asked");
        f.handle_reject(&2, 2);
        assert_eq!(f.next_request(&1), Some(2));
        let piece = |p| metadata_piece(&meta, p).unwrap();
        assert_eq!(
            f.handle_data(&1, 0, 40_000, piece(0)),
            Ok(FetchProgress::Stored)
        );
        assert_eq!(
            f.handle_data(&2, 2, 40_000, piece(2)),
            Err(MetadataError::Unrequested(2)),
            "piece 2 is now asked of peer 1"
        );
        assert_eq!(
            f.handle_data(&2, 1, 40_000, piece(1)),
            Ok(FetchProgress::Stored)
        );
        assert_eq!(
            f.handle_data(&1, 2, 40_000, piece(2)),
            Ok(FetchProgress::Done(meta.clone()))
        );
        assert!(f.is_done());
        assert_eq!(f.next_request(&1), None, "nothing more is asked");
        assert_eq!(
            f.handle_data(&1, 0, 40_000, piece(0)),
            Err(MetadataError::Unrequested(0))
        );
    }

    #[test]
    fn bad_metadata_is_refused_and_its_senders_blamed() {
        // Proves sizes over the cap, zero or disagreeing are refused; pieces of the wrong length
        // or total size are refused; and a whole that does not hash to the info hash blames
        // exactly the peers that sent it and starts over.
        let (meta, hash) = metadata(20_000);
        let mut f: MetadataFetch<u8> = MetadataFetch::new(hash, 30_000);
        assert_eq!(
            f.handle_size(30_001),
            Err(MetadataError::TooLarge {
                size: 30_001,
                max: 30_000
            })
        );
        assert_eq!(f.handle_size(0), Err(MetadataError::Empty));
        f.handle_size(20_000).unwrap();
        assert_eq!(
            f.handle_size(20_001),
            Err(MetadataError::SizeMismatch {
                said: 20_001,
                known: 20_000
            })
        );
        assert_eq!(f.next_request(&1), Some(0));
        assert_eq!(f.next_request(&2), Some(1));
        assert_eq!(
            f.handle_data(&1, 0, 20_000, &meta[..100]),
            Err(MetadataError::WrongLength {
                piece: 0,
                got: 100,
                want: METADATA_PIECE_LEN
            })
        );
        assert!(matches!(
            f.handle_data(&1, 0, 20_001, &meta[..METADATA_PIECE_LEN]),
            Err(MetadataError::SizeMismatch { .. })
        ));
        f.handle_data(&1, 0, 20_000, metadata_piece(&meta, 0).unwrap())
            .unwrap();
        let mut lie = metadata_piece(&meta, 1).unwrap().to_vec();
        lie[0] ^= 1;
        assert_eq!(
            f.handle_data(&2, 1, 20_000, &lie),
            Ok(FetchProgress::Failed { blame: vec![1, 2] })
        );
        assert_eq!(f.size(), None, "starts over");
        assert_eq!(f.progress(), (0, 0));
    }

    #[test]
    fn a_leaving_peer_frees_its_pieces() {
        // Proves the pieces asked of a peer that left are asked of the next one.
        let (_, hash) = metadata(50_000);
        let mut f: MetadataFetch<u8> = MetadataFetch::new(hash, 1 << 20);
        f.handle_size(50_000).unwrap();
        assert_eq!(f.next_request(&1), Some(0));
        assert_eq!(f.next_request(&1), Some(1));
        f.peer_gone(&1);
        assert_eq!(f.next_request(&2), Some(0));
        assert_eq!(f.next_request(&2), Some(1));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = MetadataMessage::decode(&bytes);
        }

        #[test]
        fn messages_round_trip(kind in 0u8..3, piece in any::<u32>(), total in 0u64..1 << 40,
                               data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let m = match kind {
                0 => MetadataMessage::Request { piece },
                1 => MetadataMessage::Data { piece, total_size: total, data: &data },
                _ => MetadataMessage::Reject { piece },
            };
            let bytes = msg(m);
            prop_assert_eq!(MetadataMessage::decode(&bytes), Ok(m));
        }
    }
}
