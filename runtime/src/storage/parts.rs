//! The part file of [`FsStorage`]: where the bytes of unselected files go when a piece they share
//! with a selected file is downloaded (libtorrent keeps such bytes in a `.parts` file too).
//!
//! The file is `<download folder>/.<torrent name>.parts` ([`part_file_name`]), one per torrent,
//! opened through the same descriptor-relative, link-refusing path as the torrent's files. It is
//! made of one slot of `piece_length` bytes per *boundary piece*, a piece that touches more than
//! one file with data: slot `k` belongs to the `k`-th boundary piece in piece order, and a byte at
//! offset `o` of that piece sits at `k * piece_length + o`. Only the spans of unselected files are
//! ever written there. The mapping depends on the torrent alone, so the file needs no header; it
//! holds at most one slot per file boundary (`files - 1` slots), a bounded size whatever the
//! selection.
//!
//! Rules:
//! - a span of an unselected file is written to the piece's slot; a piece lying wholly in
//!   unselected files has no slot and is refused ([`StorageError::Unselected`]: the protocol never
//!   requests one);
//! - a span of an unselected file is read from the slot; if the slot does not hold it (the file
//!   was downloaded while selected) the file at its path is read instead (reading never creates);
//! - [`FsStorage::with_selection`] moves bytes the other way: for every boundary piece whose slot
//!   holds data and that does not verify as stored now, the spans of now-selected files are read
//!   from the slot, and if the piece then verifies they are copied into the files. Once every
//!   file is selected the part file is removed.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bt_protocol::metainfo::{FileSpan, Info, PieceIndex};
use sha1::{Digest, Sha1};

use super::StorageError;
use super::fs::{FileSlot, FsStorage};

/// The part file's name in the download folder for a torrent named `name`.
pub fn part_file_name(name: &str) -> String {
    format!(".{name}.parts")
}

/// The part file: its place and the slot of each boundary piece.
#[derive(Debug)]
pub(super) struct PartFile {
    /// Its components and path, as a torrent file's.
    pub(super) slot: FileSlot,
    /// Slot number of each boundary piece; at most one entry per file boundary.
    slots: BTreeMap<u32, u64>,
}

/// Where one span of a piece lives, given the selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    /// A padding file: zeros, never stored.
    Padding,
    /// The file at its path.
    File,
    /// The part file, at this offset.
    Part(u64),
}

impl PartFile {
    /// The part file of `info` in the download folder `root`.
    pub(super) fn new(root: &Path, info: &Info) -> PartFile {
        let name = part_file_name(&info.name);
        let layout = &info.layout;
        let mut slots = BTreeMap::new();
        for piece in layout.pieces() {
            if layout.piece_spans(piece).nth(1).is_some() {
                let k = slots.len() as u64;
                slots.insert(piece.get(), k);
            }
        }
        PartFile {
            slot: FileSlot {
                path: root.join(&name),
                components: vec![name],
                padding: false,
                length: 0,
            },
            slots,
        }
    }
}

impl FsStorage {
    /// This storage downloading only the files with `selected[i]` set (see the module docs):
    /// bytes of selected files that earlier runs kept in the part file are moved into them when
    /// their pieces verify against `piece_hashes`; with every file selected the part file is
    /// removed. A list of the wrong length selects everything.
    pub fn with_selection(
        mut self,
        selected: Vec<bool>,
        piece_hashes: &[[u8; 20]],
    ) -> Result<FsStorage, StorageError> {
        if selected.len() == self.file_count() {
            self.selected = selected;
        }
        self.move_parts_to_files(piece_hashes)?;
        if self.selected.iter().all(|s| *s) {
            match std::fs::remove_file(&self.part.slot.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("removing", &self.part.slot.path, e)),
            }
        }
        Ok(self)
    }

    /// Whether file `file` is selected for download.
    pub fn is_selected(&self, file: usize) -> bool {
        self.selected.get(file).copied().unwrap_or(false)
    }

    /// Where `span` of `piece` (its `piece_offset` counted from the piece's start) lives now.
    pub(super) fn place(&self, piece: PieceIndex, span: FileSpan) -> Result<Place, StorageError> {
        let slot = self.slot(span.file);
        if slot.padding {
            return Ok(Place::Padding);
        }
        if self.selected[span.file] {
            return Ok(Place::File);
        }
        match self.part.slots.get(&piece.get()) {
            Some(k) => Ok(Place::Part(
                k * u64::from(self.layout().piece_length()) + u64::from(span.piece_offset),
            )),
            None => Err(StorageError::Unselected {
                piece,
                path: slot.path.clone(),
            }),
        }
    }

    /// Reads `buf.len()` bytes of `span` of `piece`, from `skip` bytes into the span, where they
    /// live now (an unselected file's bytes: the part file, else the file at its path).
    pub(super) fn read_span(
        &self,
        piece: PieceIndex,
        span: FileSpan,
        skip: u64,
        buf: &mut [u8],
    ) -> Result<(), StorageError> {
        match self.place(piece, span) {
            Ok(Place::Padding) => {
                buf.fill(0);
                Ok(())
            }
            Ok(Place::File) => self.read_file(span.file, span.file_offset + skip, buf),
            Ok(Place::Part(offset)) => {
                match self.read_file(self.file_count(), offset + skip, buf) {
                    Err(e) if e.is_absent_data() => {
                        self.read_file(span.file, span.file_offset + skip, buf)
                    }
                    other => other,
                }
            }
            Err(StorageError::Unselected { .. }) => {
                self.read_file(span.file, span.file_offset + skip, buf)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads `buf.len()` bytes of file `file` (the part file for `files.len()`) at `offset`.
    fn read_file(&self, file: usize, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let handle = self.handle(file, false)?;
        self.read_at(file, &handle, buf, offset)
    }

    /// Moves bytes of selected files out of the part file (see the module docs). Costs nothing
    /// without a part file; otherwise at most a few hashes per boundary piece with slot data.
    fn move_parts_to_files(&self, piece_hashes: &[[u8; 20]]) -> Result<(), StorageError> {
        let part_len = match self.handle(self.file_count(), false) {
            Ok(h) => h
                .metadata()
                .map_err(|e| StorageError::io("examining", &self.part.slot.path, e))?
                .len(),
            Err(StorageError::Missing { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let piece_length = u64::from(self.layout().piece_length());
        for (&index, &k) in &self.part.slots {
            let piece = self
                .layout()
                .piece(index)
                .expect("slots are of real pieces");
            let Some(expected) = piece_hashes.get(piece.as_usize()) else {
                continue;
            };
            if part_len <= k * piece_length {
                continue;
            }
            let spans: Vec<FileSpan> = self.layout().piece_spans(piece).collect();
            let wanted: Vec<usize> = (0..spans.len())
                .filter(|&i| {
                    let f = spans[i].file;
                    self.selected[f] && !self.slot(f).padding
                })
                .collect();
            if wanted.is_empty() {
                continue;
            }
            if self.hash_with_from_part(piece, &spans, &[], k).as_ref() == Some(expected) {
                continue;
            }
            // All of them kept in the slot, else one of them.
            let tries = std::iter::once(wanted.clone()).chain(wanted.iter().map(|&i| vec![i]));
            for from_part in tries {
                if self
                    .hash_with_from_part(piece, &spans, &from_part, k)
                    .as_ref()
                    == Some(expected)
                {
                    for &i in &from_part {
                        self.copy_to_file(spans[i], k * piece_length)?;
                    }
                    break;
                }
            }
        }
        Ok(())
    }

    /// The SHA-1 of `piece` as stored, except that the spans numbered in `from_part` are read
    /// from slot `k` of the part file; `None` if anything cannot be read.
    fn hash_with_from_part(
        &self,
        piece: PieceIndex,
        spans: &[FileSpan],
        from_part: &[usize],
        k: u64,
    ) -> Option<[u8; 20]> {
        let slot_start = k * u64::from(self.layout().piece_length());
        let mut sha = Sha1::new();
        for (i, span) in spans.iter().enumerate() {
            let mut buf = vec![0u8; span.len as usize];
            if from_part.contains(&i) {
                self.read_file(
                    self.file_count(),
                    slot_start + u64::from(span.piece_offset),
                    &mut buf,
                )
                .ok()?;
            } else {
                self.read_span(piece, *span, 0, &mut buf).ok()?;
            }
            sha.update(&buf);
        }
        Some(sha.finalize().into())
    }

    /// Copies `span`'s bytes from the part file slot starting at `slot_start` into its file.
    fn copy_to_file(&self, span: FileSpan, slot_start: u64) -> Result<(), StorageError> {
        let mut buf = vec![0u8; span.len as usize];
        self.read_file(
            self.file_count(),
            slot_start + u64::from(span.piece_offset),
            &mut buf,
        )?;
        let handle = self.handle(span.file, true)?;
        handle
            .write_all_at(&buf, span.file_offset)
            .map_err(|e| StorageError::io("writing", &self.slot(span.file).path, e))?;
        self.handles_mark_dirty(span.file);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Storage;
    use crate::storage::tests::Model;

    /// Files `a` (1.5 pieces), `b` (2 pieces), `c` (1.5 pieces) of 16 KiB pieces: piece 1
    /// straddles a|b, piece 3 straddles b|c; piece 2 lies wholly in b.
    fn model() -> Model {
        Model::new(&[("a", 24_576), ("b", 32_768), ("c", 24_576)], 16_384)
    }

    #[test]
    fn unselected_file_is_never_written_and_straddling_bytes_go_to_the_part_file() {
        // Proves: with b unselected, writing every wanted piece creates no file b, the
        // straddling pieces verify (b's bytes read back from the part file), a piece wholly in b
        // is refused, and selecting b later moves the part file's bytes into it and removes the
        // part file.
        let m = model();
        let hashes = m.info().pieces.clone();
        let s = m
            .storage(8)
            .with_selection(vec![true, false, true], &hashes)
            .unwrap();
        for piece in [0, 1, 3, 4] {
            m.write_piece(&s, m.piece(piece));
            assert_eq!(
                s.hash_piece(m.piece(piece)).unwrap(),
                hashes[piece as usize]
            );
        }
        let b = m.root().join("multi/b");
        assert!(!b.exists(), "bytes written at an unselected file's path");
        let part = m.root().join(part_file_name("multi"));
        assert!(part.exists());
        assert!(std::fs::metadata(&part).unwrap().len() <= 2 * 16_384);
        let wholly_b = m.info().layout.blocks(m.piece(2)).next().unwrap();
        assert!(matches!(
            s.write(wholly_b, m.block_data(wholly_b)),
            Err(StorageError::Unselected { .. })
        ));
        drop(s);
        // Select b: its parts in pieces 1 and 3 move over; piece 2 is still to download.
        let s = m
            .storage(8)
            .with_selection(vec![true, true, true], &hashes)
            .unwrap();
        assert!(
            !part.exists(),
            "the part file stays with every file selected"
        );
        let on_disk = std::fs::read(&b).unwrap();
        assert_eq!(&on_disk[..8192], &m.stream[24_576..24_576 + 8192]);
        assert_eq!(
            &on_disk[24_576..32_768],
            &m.stream[24_576 + 24_576..24_576 + 32_768]
        );
        m.write_piece(&s, m.piece(2));
        let have = s.verify(&hashes, None, 1, &mut |_| {}).unwrap();
        assert!(have.is_complete(), "{have:?}");
    }

    #[test]
    fn deselected_file_downloaded_before_is_read_in_place() {
        // Proves a file downloaded while selected, then left out, still serves its straddling
        // pieces (read at its path, since the part file lacks them) and is not written.
        let m = model();
        let hashes = m.info().pieces.clone();
        let s = m.storage(8);
        for piece in 0..5 {
            m.write_piece(&s, m.piece(piece));
        }
        drop(s);
        let s = m
            .storage(8)
            .with_selection(vec![true, false, true], &hashes)
            .unwrap();
        let have = s.verify(&hashes, None, 1, &mut |_| {}).unwrap();
        assert!(have.is_complete(), "{have:?}");
    }
}
