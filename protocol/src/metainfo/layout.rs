//! [`TorrentLayout`]: the validated geometry of a torrent's data.
//!
//! A torrent's bytes are the concatenation of its files, cut into pieces of `piece_length` (the last
//! one shorter) and pieces into 16 KiB blocks (the last one shorter). Everything about that geometry
//! is computed here once; wire integers become [`PieceIndex`] and [`BlockRef`] only through this type,
//! so code past it never checks bounds again ("parse, don't validate").
//!
//! Invariants: `piece_length` is in `1..=MAX_PIECE_LENGTH`; `total_length` is in
//! `1..=MAX_TOTAL_LENGTH`; `piece_count == ceil(total_length / piece_length)` fits in `u32`. The one
//! exception is [`TorrentLayout::empty`] (no files, no pieces): the placeholder of a magnet link
//! whose metadata is still being fetched, through which no [`PieceIndex`] can be made.

use std::fmt;

/// The size of a request block (BEP 3 convention; every client uses 16 KiB).
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// The largest piece length accepted: 512 MiB. Larger pieces would make one piece a memory problem.
pub const MAX_PIECE_LENGTH: u32 = 512 * 1024 * 1024;

/// The largest torrent accepted: 2^50 bytes (1 PiB).
pub const MAX_TOTAL_LENGTH: u64 = 1 << 50;

/// A piece index known to be in range for its layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PieceIndex(u32);

impl PieceIndex {
    /// The index as a plain integer.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The index as a `usize`, for indexing per-piece tables.
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for PieceIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One block of a piece, in range for its layout: what a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockRef {
    /// The piece.
    pub piece: PieceIndex,
    /// Byte offset within the piece, a multiple of [`BLOCK_SIZE`].
    pub offset: u32,
    /// Length in bytes: [`BLOCK_SIZE`], or less for the last block of a piece.
    pub len: u32,
}

/// The part of one file that a piece covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSpan {
    /// Index of the file in the torrent's file list.
    pub file: usize,
    /// Where the span starts within the file.
    pub file_offset: u64,
    /// Where the span starts within the piece.
    pub piece_offset: u32,
    /// Length of the span in bytes (never 0).
    pub len: u32,
}

/// Why a geometry is impossible.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Piece length 0 (BEP 3: pieces have a positive length).
    #[error("piece length is 0")]
    ZeroPieceLength,
    /// Piece length above [`MAX_PIECE_LENGTH`].
    #[error("piece length {0} is larger than the 512 MiB bt accepts")]
    PieceLengthTooLarge(u64),
    /// The files hold no bytes at all: there is nothing to share.
    #[error("the torrent holds no data (total length 0)")]
    Empty,
    /// The file lengths add up past [`MAX_TOTAL_LENGTH`].
    #[error("the files add up to more than 1 PiB")]
    TooLarge,
}

/// The validated geometry of a torrent: pieces, blocks, and where each piece lies in the files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TorrentLayout {
    piece_length: u32,
    total_length: u64,
    piece_count: u32,
    /// Start offset of each file in the torrent's byte stream; `file_starts[i+1]` is file i's end.
    file_starts: Vec<u64>,
}

impl TorrentLayout {
    /// Validates the geometry of files of `file_lengths` bytes cut into `piece_length` pieces.
    pub fn new(piece_length: u64, file_lengths: &[u64]) -> Result<Self, LayoutError> {
        if piece_length == 0 {
            return Err(LayoutError::ZeroPieceLength);
        }
        if piece_length > u64::from(MAX_PIECE_LENGTH) {
            return Err(LayoutError::PieceLengthTooLarge(piece_length));
        }
        let mut file_starts = Vec::with_capacity(file_lengths.len() + 1);
        let mut total: u64 = 0;
        file_starts.push(0);
        for &len in file_lengths {
            total = total
                .checked_add(len)
                .filter(|t| *t <= MAX_TOTAL_LENGTH)
                .ok_or(LayoutError::TooLarge)?;
            file_starts.push(total);
        }
        if total == 0 {
            return Err(LayoutError::Empty);
        }
        let piece_count = total.div_ceil(piece_length);
        // 2^50 / 1 could exceed u32; refuse rather than truncate.
        let piece_count = u32::try_from(piece_count).map_err(|_| LayoutError::TooLarge)?;
        Ok(TorrentLayout {
            piece_length: piece_length as u32,
            total_length: total,
            piece_count,
            file_starts,
        })
    }

    /// The layout of no data at all: 0 pieces, 0 files. A magnet link's torrent has it until its
    /// metadata arrives (BEP 9); [`TorrentLayout::piece`] and [`TorrentLayout::block_at`] refuse
    /// every index, so nothing past it ever names a piece.
    pub fn empty() -> Self {
        TorrentLayout {
            piece_length: BLOCK_SIZE,
            total_length: 0,
            piece_count: 0,
            file_starts: vec![0],
        }
    }

    /// The nominal piece length.
    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }

    /// Total bytes of all files.
    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// Number of pieces (at least 1, except for [`TorrentLayout::empty`]).
    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Number of files, including zero-length and padding files.
    pub fn file_count(&self) -> usize {
        self.file_starts.len() - 1
    }

    /// The piece index `index`, if it is in range.
    pub fn piece(&self, index: u32) -> Option<PieceIndex> {
        (index < self.piece_count).then_some(PieceIndex(index))
    }

    /// All piece indices in order.
    pub fn pieces(&self) -> impl Iterator<Item = PieceIndex> + use<> {
        (0..self.piece_count).map(PieceIndex)
    }

    /// The last piece (piece 0 for [`TorrentLayout::empty`], which has none).
    pub fn last_piece(&self) -> PieceIndex {
        PieceIndex(self.piece_count.saturating_sub(1))
    }

    /// The length of the last piece (equal to `piece_length` when it divides the total).
    pub fn last_piece_length(&self) -> u32 {
        let rem = self.total_length % u64::from(self.piece_length);
        if rem == 0 {
            self.piece_length
        } else {
            rem as u32
        }
    }

    /// The length of `piece`.
    pub fn piece_len(&self, piece: PieceIndex) -> u32 {
        if piece.0 + 1 == self.piece_count {
            self.last_piece_length()
        } else {
            self.piece_length
        }
    }

    /// Where `piece` starts in the torrent's byte stream.
    pub fn piece_offset(&self, piece: PieceIndex) -> u64 {
        u64::from(piece.0) * u64::from(self.piece_length)
    }

    /// Number of blocks in `piece`.
    pub fn block_count(&self, piece: PieceIndex) -> u32 {
        self.piece_len(piece).div_ceil(BLOCK_SIZE)
    }

    /// Block number `index` of `piece`, if in range.
    pub fn block(&self, piece: PieceIndex, index: u32) -> Option<BlockRef> {
        let offset = index.checked_mul(BLOCK_SIZE)?;
        let piece_len = self.piece_len(piece);
        (offset < piece_len).then(|| BlockRef {
            piece,
            offset,
            len: (piece_len - offset).min(BLOCK_SIZE),
        })
    }

    /// The blocks of `piece` in order.
    pub fn blocks(&self, piece: PieceIndex) -> impl Iterator<Item = BlockRef> + '_ {
        (0..self.block_count(piece)).filter_map(move |i| self.block(piece, i))
    }

    /// Validates a block as named on the wire (`request`, `piece`, `cancel`, `reject`): it must be an
    /// exact block of this layout (aligned to [`BLOCK_SIZE`], full length except at a piece's end).
    pub fn block_at(&self, piece: u32, offset: u32, len: u32) -> Option<BlockRef> {
        let piece = self.piece(piece)?;
        if !offset.is_multiple_of(BLOCK_SIZE) {
            return None;
        }
        self.block(piece, offset / BLOCK_SIZE)
            .filter(|b| b.len == len)
    }

    /// Where file `file` starts in the torrent's byte stream, and its length.
    pub fn file_range(&self, file: usize) -> Option<(u64, u64)> {
        let start = *self.file_starts.get(file)?;
        let end = *self.file_starts.get(file + 1)?;
        Some((start, end - start))
    }

    /// The file spans covering `len` bytes from `offset` in the torrent's byte stream, in order;
    /// zero-length files are skipped. Spans beyond the end of the data are cut off.
    pub fn spans(&self, offset: u64, len: u32) -> impl Iterator<Item = FileSpan> + '_ {
        let end = (offset + u64::from(len)).min(self.total_length);
        // The first file whose end lies past `offset`.
        let first = self.file_starts[1..].partition_point(|&file_end| file_end <= offset);
        let mut pos = offset;
        (first..self.file_count())
            .map_while(move |file| {
                if pos >= end {
                    return None;
                }
                let (start, flen) = self.file_range(file).expect("file index is in range");
                let file_end = start + flen;
                if file_end <= pos {
                    // zero-length file at this position: yields an empty span we skip below
                    return Some(None);
                }
                let span_end = file_end.min(end);
                let span = FileSpan {
                    file,
                    file_offset: pos - start,
                    piece_offset: (pos - offset) as u32,
                    len: (span_end - pos) as u32,
                };
                pos = span_end;
                Some(Some(span))
            })
            .flatten()
    }

    /// The file spans that `piece` covers, in order.
    pub fn piece_spans(&self, piece: PieceIndex) -> impl Iterator<Item = FileSpan> + '_ {
        self.spans(self.piece_offset(piece), self.piece_len(piece))
    }

    /// The pieces that overlap file `file` (empty for a zero-length file).
    pub fn file_pieces(&self, file: usize) -> std::ops::Range<u32> {
        match self.file_range(file) {
            Some((start, len)) if len > 0 => {
                let pl = u64::from(self.piece_length);
                (start / pl) as u32..(start + len).div_ceil(pl) as u32
            }
            _ => 0..0,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn geometry_of_an_odd_sized_torrent() {
        // Proves piece count, last piece length and block splitting for sizes that do not divide.
        let l = TorrentLayout::new(32768, &[40000, 0, 10]).unwrap();
        assert_eq!(l.total_length(), 40010);
        assert_eq!(l.piece_count(), 2);
        assert_eq!(l.last_piece_length(), 40010 - 32768);
        let p1 = l.piece(1).unwrap();
        assert_eq!(l.block_count(p1), 1);
        assert_eq!(l.block(p1, 0).unwrap().len, 7242);
        assert!(l.piece(2).is_none());
        assert_eq!(
            l.piece_spans(p1).collect::<Vec<_>>(),
            vec![
                FileSpan {
                    file: 0,
                    file_offset: 32768,
                    piece_offset: 0,
                    len: 7232
                },
                FileSpan {
                    file: 2,
                    file_offset: 0,
                    piece_offset: 7232,
                    len: 10
                },
            ]
        );
        assert_eq!(l.file_pieces(1), 0..0);
        assert_eq!(l.file_pieces(2), 1..2);
    }

    #[test]
    fn wire_blocks_must_be_exact() {
        // Proves block_at refuses misaligned, oversized, short and out-of-range requests.
        let l = TorrentLayout::new(65536, &[100_000]).unwrap();
        assert!(l.block_at(0, 0, BLOCK_SIZE).is_some());
        assert!(l.block_at(0, 1, BLOCK_SIZE).is_none());
        assert!(l.block_at(0, 0, BLOCK_SIZE + 1).is_none());
        assert!(l.block_at(0, 0, 100).is_none());
        assert!(l.block_at(2, 0, BLOCK_SIZE).is_none());
        assert!(l.block_at(1, 32768, 100_000 - 65536 - 32768).is_some());
        assert!(l.block_at(0, u32::MAX - 16383, BLOCK_SIZE).is_none());
    }

    #[test]
    fn refusals() {
        // Proves each impossible geometry gets its own error.
        assert_eq!(
            TorrentLayout::new(0, &[1]),
            Err(LayoutError::ZeroPieceLength)
        );
        assert_eq!(
            TorrentLayout::new(1 << 30, &[1]),
            Err(LayoutError::PieceLengthTooLarge(1 << 30))
        );
        assert_eq!(TorrentLayout::new(16384, &[0, 0]), Err(LayoutError::Empty));
        assert_eq!(
            TorrentLayout::new(16384, &[u64::MAX, 1]),
            Err(LayoutError::TooLarge)
        );
        assert_eq!(
            TorrentLayout::new(1, &[1 << 40]),
            Err(LayoutError::TooLarge)
        );
    }

    proptest! {
        #[test]
        fn layout_agrees_with_a_naive_byte_model(
            piece_length in 1u64..70_000,
            files in proptest::collection::vec(prop_oneof![Just(0u64), 1u64..50_000], 1..8),
        ) {
            // Proves, byte by byte, that pieces, blocks and file spans partition the data exactly.
            prop_assume!(files.iter().sum::<u64>() > 0);
            let l = TorrentLayout::new(piece_length, &files).unwrap();
            let total: u64 = files.iter().sum();
            // The naive model: which (file, offset) holds each byte of the stream.
            let mut owner = Vec::new();
            for (i, &len) in files.iter().enumerate() {
                for off in 0..len {
                    owner.push((i, off));
                }
            }
            prop_assert_eq!(l.piece_count() as u64, total.div_ceil(piece_length));
            let mut seen = 0u64;
            for p in l.pieces() {
                prop_assert_eq!(l.piece_offset(p), seen);
                let blocks: Vec<_> = l.blocks(p).collect();
                prop_assert_eq!(blocks.iter().map(|b| u64::from(b.len)).sum::<u64>(), u64::from(l.piece_len(p)));
                for b in &blocks {
                    prop_assert_eq!(l.block_at(p.get(), b.offset, b.len), Some(*b));
                }
                let mut at = 0u32;
                for s in l.piece_spans(p) {
                    prop_assert!(s.len > 0);
                    prop_assert_eq!(s.piece_offset, at);
                    for k in 0..u64::from(s.len) {
                        let stream = seen + u64::from(s.piece_offset) + k;
                        prop_assert_eq!(owner[stream as usize], (s.file, s.file_offset + k));
                    }
                    at += s.len;
                }
                prop_assert_eq!(at, l.piece_len(p));
                seen += u64::from(l.piece_len(p));
            }
            prop_assert_eq!(seen, total);
            for (i, &len) in files.iter().enumerate() {
                let r = l.file_pieces(i);
                if len == 0 {
                    prop_assert!(r.is_empty());
                } else {
                    let (start, _) = l.file_range(i).unwrap();
                    prop_assert_eq!(u64::from(r.start), start / piece_length);
                    prop_assert_eq!(u64::from(r.end), (start + len).div_ceil(piece_length));
                }
            }
        }
    }
}
