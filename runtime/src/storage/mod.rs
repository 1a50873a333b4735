//! Storage: where a torrent's pieces live, and the disk work the protocol asks for.
//!
//! The protocol never touches a file: it emits [`DiskOp`]s and waits for [`DiskDone`]s. A
//! [`Storage`] performs them, one block or one piece at a time, and may be called from several
//! threads at once (the driver runs each operation on a blocking worker, behind an `Arc`).
//! [`FsStorage`] is the real one: the torrent's files under a download folder, positional reads
//! and writes, a bounded set of open files. (The simulator brings an in-memory one.)
//!
//! Invariants of every implementation:
//! - a block's bytes land at the place [`TorrentLayout::spans`] gives, across file boundaries;
//! - padding files (BEP 47) hold zeros: writes to them are dropped, reads give zeros, and
//!   nothing is created for them;
//! - an error names the file and says what went wrong in words a person can act on.
//!
//! [`hash`] holds the parallel piece hasher shared with `bt create`.
//!
//! [`TorrentLayout::spans`]: bt_protocol::metainfo::TorrentLayout::spans

use std::io;
use std::path::PathBuf;

use bt_protocol::io::{DiskDone, DiskError, DiskOp};
use bt_protocol::metainfo::{BlockRef, PieceIndex};
use bytes::Bytes;
use sha1::{Digest, Sha1};

mod beneath;
mod fs;
mod handles;
pub mod hash;
pub mod mem;
mod parts;

pub use fs::{DEFAULT_MAX_OPEN_FILES, FsStorage, MAX_PATH_LEN};
pub use mem::MemStorage;
pub use parts::part_file_name;

#[cfg(test)]
pub(crate) mod tests;

/// Where a torrent's data is kept: block reads and writes, piece hashing, flushing.
///
/// Implementations are `Send + Sync`: several operations may run at once on different threads.
/// Operations on different blocks never interfere; two writes to the same block race as the
/// underlying store lets them (the protocol never issues them).
pub trait Storage: Send + Sync {
    /// Writes `data` (exactly `block.len` bytes) at `block`'s place in the files.
    fn write(&self, block: BlockRef, data: &[u8]) -> Result<(), StorageError>;

    /// Reads `block` back.
    fn read(&self, block: BlockRef) -> Result<Bytes, StorageError>;

    /// The SHA-1 of `piece` as stored.
    fn hash_piece(&self, piece: PieceIndex) -> Result<[u8; 20], StorageError>;

    /// The SHA-1 of each of `blocks` as stored, in order (the protocol's smart ban reads back the
    /// blocks of a piece that failed to tell which peer sent a wrong one).
    fn hash_blocks(&self, blocks: &[BlockRef]) -> Result<Vec<[u8; 20]>, StorageError> {
        blocks
            .iter()
            .map(|b| self.read(*b).map(|data| Sha1::digest(&data).into()))
            .collect()
    }

    /// Makes every write done so far durable (fsync).
    fn flush(&self) -> Result<(), StorageError>;

    /// Performs one operation the protocol asked for and words the answer for it: a failure
    /// becomes a [`DiskError`] holding the error's message ("disk full writing /x/y").
    fn perform(&self, op: DiskOp) -> DiskDone {
        let text = |e: StorageError| DiskError(e.to_string());
        match op {
            DiskOp::Write { block, data } => DiskDone::Written {
                block,
                result: self.write(block, &data).map_err(text),
            },
            DiskOp::Hash { piece } => DiskDone::Hashed {
                piece,
                result: self.hash_piece(piece).map_err(text),
            },
            DiskOp::HashBlocks { piece, blocks } => DiskDone::BlockHashes {
                piece,
                result: self.hash_blocks(&blocks).map_err(text),
            },
            DiskOp::Read { conn, block } => DiskDone::Read {
                conn,
                block,
                result: self.read(block).map_err(text),
            },
        }
    }
}

/// Why a storage operation failed. Every message that concerns a file names it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The download folder must exist before anything is stored in it (bt does not guess where
    /// a mistyped folder should have been).
    #[error("the download folder {path} does not exist")]
    NoDownloadDir {
        /// The folder given.
        path: PathBuf,
    },
    /// A file's full path is longer than the system accepts (`PATH_MAX`, 4096 bytes on Linux):
    /// it could never be opened, so the torrent is refused before anything is written.
    #[error("{path} is longer than the {max} bytes a path may have")]
    PathTooLong {
        /// The start of the path (its first 200 bytes).
        path: String,
        /// The bound.
        max: usize,
    },
    /// A path that should be a folder is something else (or the other way round).
    #[error("{path} is {found}, where the torrent needs {needed}")]
    WrongKind {
        /// The path.
        path: PathBuf,
        /// What is there: "a file", "a folder", "a special file".
        found: &'static str,
        /// What the torrent's layout needs there: "a file" or "a folder".
        needed: &'static str,
    },
    /// A symbolic link below the download folder, where a folder or file of the torrent goes:
    /// bt never follows one, wherever it leads and whenever it appeared, so nothing is written or
    /// read outside the folder.
    #[error(
        "refusing to follow a symbolic link at {path}: nothing below the download folder may be a link"
    )]
    Link {
        /// The link.
        path: PathBuf,
    },
    /// A file the operation needs is not there (not downloaded yet, or deleted).
    #[error("{path} is missing")]
    Missing {
        /// The file (or the first missing folder on its way).
        path: PathBuf,
    },
    /// A file is shorter than the piece being read needs (not fully downloaded, or truncated).
    #[error("{path} is {length} bytes long, too short for the {needed} bytes needed")]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length on disk.
        length: u64,
        /// The length the read needed.
        needed: u64,
    },
    /// The data handed to a write is not the block's length (a caller's mistake).
    #[error("block at piece {piece} offset {offset} is {expected} bytes, but {got} were given")]
    WrongBlockLength {
        /// The piece.
        piece: PieceIndex,
        /// The block's offset in the piece.
        offset: u32,
        /// The block's length.
        expected: u32,
        /// The data's length.
        got: usize,
    },
    /// A write or read of a piece lying wholly in files left out of the selection: the protocol
    /// never asks for one (such pieces are never requested, and never verified).
    #[error("piece {piece} lies only in files not selected for download (such as {path})")]
    Unselected {
        /// The piece.
        piece: PieceIndex,
        /// One of its files.
        path: PathBuf,
    },
    /// The operating system refused an operation on a file.
    #[error("{}", io_message(.doing, .path, .source))]
    Io {
        /// What bt was doing: "opening", "creating", "writing", "reading", "syncing", ...
        doing: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl StorageError {
    /// Refuses `data` that is not `block`'s length (every [`Storage::write`] checks this first).
    pub fn check_block_len(block: BlockRef, data: &[u8]) -> Result<(), StorageError> {
        if data.len() == block.len as usize {
            return Ok(());
        }
        Err(StorageError::WrongBlockLength {
            piece: block.piece,
            offset: block.offset,
            expected: block.len,
            got: data.len(),
        })
    }

    /// An OS error met while `doing` something to `path`.
    fn io(doing: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            doing,
            path: path.into(),
            source,
        }
    }

    /// Whether the error means the data is not there (yet), rather than that the disk or the
    /// folder is unusable: a missing or short file. [`FsStorage::verify`] counts such pieces as
    /// missing.
    pub fn is_absent_data(&self) -> bool {
        matches!(
            self,
            StorageError::Missing { .. } | StorageError::TooShort { .. }
        )
    }
}

/// "disk full writing /x/y", "permission denied opening /x/y", or the OS's own words.
fn io_message(doing: &str, path: &std::path::Path, source: &io::Error) -> String {
    let path = path.display();
    let what = match source.kind() {
        io::ErrorKind::StorageFull => "disk full",
        io::ErrorKind::QuotaExceeded => "disk quota exceeded",
        io::ErrorKind::PermissionDenied => "permission denied",
        io::ErrorKind::ReadOnlyFilesystem => "read-only file system",
        io::ErrorKind::FileTooLarge => "file too large for the file system",
        _ => return format!("error {doing} {path}: {source}"),
    };
    format!("{what} {doing} {path}")
}
