//! [`FsStorage`]: a torrent's files under a download folder, read and written in place.
//!
//! Files sit at `download_dir/<FileEntry::path>` (for a multi-file torrent the path starts with
//! the torrent's name). Every access is positional (`pread`/`pwrite`), so operations on different
//! blocks run at once from any number of threads without seeking.
//!
//! Invariants:
//! - nothing is created, written or read outside the download folder, even while another process
//!   changes the tree under bt: the folder is held open and every file is opened relative to its
//!   descriptor, refusing any symbolic link below it at the moment of the open (see the `beneath`
//!   module); the torrent's components are already plain names;
//! - files and their folders are created on the first write; reads and hashing never create
//!   anything (a missing file is [`StorageError::Missing`]);
//! - padding files (BEP 47) are never created: writes to them are dropped, reads give zeros;
//! - at most `max_open_files` handles stay cached (see the `handles` module);
//! - hashing streams a piece through a buffer of at most [`HASH_CHUNK`] bytes per thread, whatever
//!   the piece length;
//! - nothing is ever written at the path of a file left out of the selection
//!   ([`FsStorage::with_selection`]): its bytes in pieces shared with selected files go to the
//!   part file (see the `parts` module), and reads look there first.
//!
//! A file deleted, moved or replaced while its handle is cached keeps being used until the handle
//! is evicted (as in other clients): the handle reaches the file bt opened, never what a link put
//! in its place points to; every new open goes through the checks again. The resume file notices
//! such changes at the next start.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bt_protocol::metainfo::{BlockRef, Info, PieceIndex, TorrentLayout};
use bt_protocol::torrent::Bitfield;
use bytes::Bytes;
use sha1::{Digest, Sha1};

use super::beneath::{Access, Beneath};
use super::handles::Handles;
use super::hash::hash_parallel;
use super::parts::{PartFile, Place};
use super::{Storage, StorageError};
use crate::resume::FileStamp;

/// A sensible bound on open files for one torrent, well under the usual 1,024 descriptors.
pub const DEFAULT_MAX_OPEN_FILES: usize = 128;

/// The most bytes read at once while hashing a piece.
const HASH_CHUNK: usize = 1 << 20;

/// Zeros fed to the hasher for padding files.
static ZEROS: [u8; 16 * 1024] = [0; 16 * 1024];

/// A torrent's files in a download folder. `Sync`: share it behind an `Arc` across blocking
/// tasks.
///
/// Methods: [`FsStorage::open`]; the [`Storage`] operations (block write and read, piece hash,
/// flush, `perform`); [`FsStorage::verify`] to check existing data on many threads;
/// [`FsStorage::create_empty_files`]; [`FsStorage::file_stamps`] for the resume file; getters.
#[derive(Debug)]
pub struct FsStorage {
    /// The download folder, held open; its path is canonical (absolute, no links).
    dir: Beneath,
    layout: TorrentLayout,
    files: Vec<FileSlot>,
    handles: Handles,
    /// Whether each file is selected (all are, until [`FsStorage::with_selection`]).
    pub(super) selected: Vec<bool>,
    /// The part file; its handle is cached under the index `files.len()`.
    pub(super) part: PartFile,
}

#[derive(Debug)]
pub(super) struct FileSlot {
    /// Components below the root.
    pub(super) components: Vec<String>,
    /// The root's path joined with the components: for messages only.
    pub(super) path: PathBuf,
    /// A padding file (BEP 47).
    pub(super) padding: bool,
    /// Its length in the torrent.
    pub(super) length: u64,
}

fn kind_name(meta: &Metadata) -> &'static str {
    if meta.is_dir() {
        "a folder"
    } else if meta.is_file() {
        "a file"
    } else {
        "a special file"
    }
}

/// The longest full path a file may have, in bytes with its terminating NUL: Linux's `PATH_MAX`.
pub const MAX_PATH_LEN: usize = 4096;

impl FsStorage {
    /// Storage for `info`'s files under `download_dir`, which must exist. Nothing is created yet;
    /// at most `max_open_files` (at least 1) files are kept open at once.
    pub fn open(
        download_dir: &Path,
        info: &Info,
        max_open_files: usize,
    ) -> Result<FsStorage, StorageError> {
        let root = match download_dir.canonicalize() {
            Ok(root) => root,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::NoDownloadDir {
                    path: download_dir.to_owned(),
                });
            }
            Err(e) => return Err(StorageError::io("opening", download_dir, e)),
        };
        let meta = std::fs::metadata(&root).map_err(|e| StorageError::io("opening", &root, e))?;
        if !meta.is_dir() {
            return Err(StorageError::WrongKind {
                path: root,
                found: kind_name(&meta),
                needed: "a folder",
            });
        }
        let dir = Beneath::open(&root)?;
        let files = info
            .files
            .iter()
            .map(|f| {
                let mut path = root.clone();
                path.extend(&f.path);
                if path.as_os_str().len() >= MAX_PATH_LEN {
                    let shown = path.to_string_lossy();
                    let cut = shown.floor_char_boundary(200);
                    return Err(StorageError::PathTooLong {
                        path: format!("{}...", &shown[..cut]),
                        max: MAX_PATH_LEN,
                    });
                }
                Ok(FileSlot {
                    components: f.path.clone(),
                    path,
                    padding: f.attr.padding,
                    length: f.length,
                })
            })
            .collect::<Result<_, _>>()?;
        let part = PartFile::new(&root, info);
        Ok(FsStorage {
            dir,
            layout: info.layout.clone(),
            selected: vec![true; info.files.len()],
            files,
            handles: Handles::new(max_open_files),
            part,
        })
    }

    /// The download folder (canonical).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// This storage opening files one component at a time, as where `openat2` is missing.
    #[cfg(test)]
    pub(crate) fn without_openat2(self) -> FsStorage {
        FsStorage {
            dir: self.dir.without_openat2(),
            ..self
        }
    }

    /// Whether files are opened with `openat2`.
    #[cfg(test)]
    pub(crate) fn uses_openat2(&self) -> bool {
        self.dir.uses_openat2()
    }

    /// The torrent's geometry.
    pub fn layout(&self) -> &TorrentLayout {
        &self.layout
    }

    /// Where file `file` (an index in the torrent's file list) lives, if it exists in the list.
    pub fn file_path(&self, file: usize) -> Option<&Path> {
        self.files.get(file).map(|f| f.path.as_path())
    }

    /// How many file handles are cached now (never more than `max_open_files`).
    pub fn open_file_count(&self) -> usize {
        self.handles.len()
    }

    /// Creates the torrent's zero-length files (they hold no piece, so no write ever creates
    /// them). Padding files are skipped. Existing files are left as they are.
    pub fn create_empty_files(&self) -> Result<(), StorageError> {
        for (slot, selected) in self.files.iter().zip(&self.selected) {
            if slot.length == 0 && !slot.padding && *selected {
                self.dir.file(&slot.components, Access::Create)?;
            }
        }
        Ok(())
    }

    /// Checks the data on disk on `threads` threads: the pieces whose SHA-1 matches `pieces[i]`
    /// (a piece without an entry never matches). With `only`, just the pieces set in it are
    /// checked; the others are reported missing. Missing or short files make their pieces
    /// missing, not an error; other failures (a folder where a file should be, a link leading
    /// outside, a read error) stop the check.
    ///
    /// `progress` is called on this thread with the bytes checked so far, about ten times a
    /// second.
    pub fn verify(
        &self,
        pieces: &[[u8; 20]],
        only: Option<&Bitfield>,
        threads: usize,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Bitfield, StorageError> {
        let to_check: Vec<PieceIndex> = self
            .layout
            .pieces()
            .filter(|p| only.is_none_or(|only| only.get(p.get())))
            .collect();
        let make_worker = || {
            let mut buf = Vec::new();
            move |piece| match self.hash_piece_with(piece, &mut buf) {
                Ok(digest) => Ok(Some(digest)),
                Err(e) if e.is_absent_data() => Ok(None),
                Err(e) => Err(e),
            }
        };
        let digests = hash_parallel(&self.layout, &to_check, threads, make_worker, progress)?;
        let mut have = Bitfield::new(self.layout.piece_count());
        for (piece, digest) in to_check.iter().zip(digests) {
            if digest.is_some_and(|d| pieces.get(piece.as_usize()) == Some(&d)) {
                have.set(piece.get());
            }
        }
        Ok(have)
    }

    /// Each file's length and modification time as it is now, in torrent order, for the resume
    /// file; `None` for padding files and for files that are missing or cannot be examined.
    pub fn file_stamps(&self) -> Vec<Option<FileStamp>> {
        self.files
            .iter()
            .map(|slot| {
                if slot.padding {
                    return None;
                }
                // Opened the same way as for reading, but only examined.
                self.dir
                    .file(&slot.components, Access::ReadOnly)
                    .and_then(|f| {
                        f.metadata()
                            .map_err(|e| StorageError::io("examining", &slot.path, e))
                    })
                    .ok()
                    .map(|m| FileStamp::of(&m))
            })
            .collect()
    }

    /// An open handle of `file`: writable (creating the file and its folders) when `write`;
    /// otherwise read-write if permitted, else read-only, and never created.
    pub(super) fn handle(&self, file: usize, write: bool) -> Result<Arc<File>, StorageError> {
        if let Some(handle) = self.handles.get(file, write) {
            return Ok(handle);
        }
        let components = &self.slot(file).components;
        let access = if write {
            Access::Create
        } else {
            Access::ReadWrite
        };
        let (handle, writable) = match self.dir.file(components, access) {
            Ok(f) => (f, true),
            Err(StorageError::Io { source, .. }) if !write && is_refusal(&source) => {
                // Seeding from read-only data is fine.
                (self.dir.file(components, Access::ReadOnly)?, false)
            }
            Err(e) => return Err(e),
        };
        let handle = Arc::new(handle);
        self.handles.insert(file, &handle, writable);
        Ok(handle)
    }

    /// File `file`, or the part file for the index `files.len()`.
    pub(super) fn slot(&self, file: usize) -> &FileSlot {
        self.files.get(file).unwrap_or(&self.part.slot)
    }

    /// Notes that `file` was written (for the next flush).
    pub(super) fn handles_mark_dirty(&self, file: usize) {
        self.handles.mark_dirty(file);
    }

    /// The number of files of the torrent (the part file's handle index).
    pub(super) fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Reads `buf.len()` bytes of `file` at `offset`; a file too short is
    /// [`StorageError::TooShort`].
    pub(super) fn read_at(
        &self,
        file: usize,
        handle: &File,
        buf: &mut [u8],
        offset: u64,
    ) -> Result<(), StorageError> {
        let path = &self.slot(file).path;
        handle.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                StorageError::TooShort {
                    path: path.clone(),
                    length: handle.metadata().map_or(0, |m| m.len()),
                    needed: offset + buf.len() as u64,
                }
            } else {
                StorageError::io("reading", path, e)
            }
        })
    }

    /// [`Storage::hash_piece`] with a caller's buffer, grown to at most [`HASH_CHUNK`] bytes.
    pub(super) fn hash_piece_with(
        &self,
        piece: PieceIndex,
        buf: &mut Vec<u8>,
    ) -> Result<[u8; 20], StorageError> {
        let chunk = (self.layout.piece_len(piece) as usize).min(HASH_CHUNK);
        if buf.len() < chunk {
            buf.resize(chunk, 0);
        }
        let mut sha = Sha1::new();
        for span in self.layout.piece_spans(piece) {
            let mut left = span.len as usize;
            if self.files[span.file].padding {
                while left > 0 {
                    let n = left.min(ZEROS.len());
                    sha.update(&ZEROS[..n]);
                    left -= n;
                }
                continue;
            }
            let mut skip = 0;
            while left > 0 {
                let n = left.min(buf.len());
                self.read_span(piece, span, skip, &mut buf[..n])?;
                sha.update(&buf[..n]);
                skip += n as u64;
                left -= n;
            }
        }
        Ok(sha.finalize().into())
    }
}

/// Whether opening read-write failed only because writing is not allowed.
fn is_refusal(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    )
}

impl Storage for FsStorage {
    fn write(&self, block: BlockRef, data: &[u8]) -> Result<(), StorageError> {
        StorageError::check_block_len(block, data)?;
        let start = self.layout.piece_offset(block.piece) + u64::from(block.offset);
        for mut span in self.layout.spans(start, block.len) {
            let bytes = &data[span.piece_offset as usize..][..span.len as usize];
            // Spans of a block start within the block; in the piece they start later.
            span.piece_offset += block.offset;
            let (file, offset) = match self.place(block.piece, span)? {
                Place::Padding => continue,
                Place::File => (span.file, span.file_offset),
                Place::Part(offset) => (self.file_count(), offset),
            };
            let handle = self.handle(file, true)?;
            let written = handle.write_all_at(bytes, offset);
            self.handles.mark_dirty(file);
            written.map_err(|e| StorageError::io("writing", &self.slot(file).path, e))?;
        }
        Ok(())
    }

    fn read(&self, block: BlockRef) -> Result<Bytes, StorageError> {
        let mut buf = vec![0u8; block.len as usize];
        let start = self.layout.piece_offset(block.piece) + u64::from(block.offset);
        for mut span in self.layout.spans(start, block.len) {
            if self.files[span.file].padding {
                continue; // already zeros
            }
            let part = &mut buf[span.piece_offset as usize..][..span.len as usize];
            span.piece_offset += block.offset;
            self.read_span(block.piece, span, 0, part)?;
        }
        Ok(Bytes::from(buf))
    }

    fn hash_piece(&self, piece: PieceIndex) -> Result<[u8; 20], StorageError> {
        self.hash_piece_with(piece, &mut Vec::new())
    }

    /// Syncs every file written since the last flush, including files whose handles were
    /// closed since (on Linux, `fsync` on any descriptor reaches the file's data). A file deleted
    /// since has nothing left to sync and is skipped (the resume file notices it is gone).
    fn flush(&self) -> Result<(), StorageError> {
        let dirty: Vec<usize> = self.handles.take_dirty().into_iter().collect();
        for (i, &file) in dirty.iter().enumerate() {
            let synced = match self.handle(file, false) {
                Ok(handle) => handle
                    .sync_data()
                    .map_err(|e| StorageError::io("syncing", &self.slot(file).path, e)),
                Err(StorageError::Missing { .. }) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = synced {
                self.handles.restore_dirty(dirty[i..].iter().copied());
                return Err(e);
            }
        }
        Ok(())
    }
}
