//! The vocabulary between the protocol and its driver: connection handles, and the disk work the
//! protocol asks for ([`DiskOp`]) with the answers it expects back ([`DiskDone`]).
//!
//! Hashing and disk I/O are outputs, never done inline: the protocol stays non-blocking, and the
//! runtime may run them on worker threads (the simulator runs them inline).

use std::fmt;

use bytes::Bytes;

use crate::metainfo::{BlockRef, PieceIndex};

/// A connection handle, chosen by the driver; unique within a session while the connection lives.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Disk work the protocol asks the driver to do. Each is answered by one [`DiskDone`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskOp {
    /// Write a received block at its place in the files (`TorrentLayout::spans`).
    Write {
        /// The block.
        block: BlockRef,
        /// Its bytes (a slice of the receive buffer: write it without copying).
        data: Bytes,
    },
    /// Read the whole piece back and SHA-1 it; all its blocks were written first.
    Hash {
        /// The piece.
        piece: PieceIndex,
    },
    /// Read a block to serve a peer's request.
    Read {
        /// The connection that asked.
        conn: ConnId,
        /// The block.
        block: BlockRef,
    },
    /// Read these blocks of one piece back and SHA-1 each. The protocol asks this only of a piece
    /// that failed its hash check (before it writes the piece again) and of such a piece once it
    /// passed, to tell which peer sent a wrong block ("smart ban"); it writes nothing to the piece
    /// until the answer comes.
    HashBlocks {
        /// The piece.
        piece: PieceIndex,
        /// Its blocks to hash, in the order the digests are expected.
        blocks: Vec<BlockRef>,
    },
}

/// A disk failure, as text from the driver (the protocol only reports it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskError(pub String);

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The driver's answer to a [`DiskOp`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskDone {
    /// A [`DiskOp::Write`] finished.
    Written {
        /// The block.
        block: BlockRef,
        /// Whether it reached the disk.
        result: Result<(), DiskError>,
    },
    /// A [`DiskOp::Hash`] finished: the SHA-1 of the piece as stored, or why it could not be read.
    Hashed {
        /// The piece.
        piece: PieceIndex,
        /// The digest.
        result: Result<[u8; 20], DiskError>,
    },
    /// A [`DiskOp::HashBlocks`] finished: the SHA-1 of each block asked, in the order asked, or
    /// why they could not be read.
    BlockHashes {
        /// The piece.
        piece: PieceIndex,
        /// One digest per block.
        result: Result<Vec<[u8; 20]>, DiskError>,
    },
    /// A [`DiskOp::Read`] finished.
    Read {
        /// The connection that asked.
        conn: ConnId,
        /// The block.
        block: BlockRef,
        /// The block's bytes.
        result: Result<Bytes, DiskError>,
    },
}
