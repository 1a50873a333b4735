//! File priorities of a [`Torrent`]: which files the user wants, mapped to piece priorities in
//! the [`Picker`](super::Picker).
//!
//! A piece's priority is the highest of the files it touches, so a piece straddling a wanted and
//! a skipped file is downloaded whole (the driver's storage keeps the skipped file's part of it
//! aside). A piece lying wholly in skipped files is never requested. Serving is unaffected: every
//! verified piece is still offered and uploaded.
//!
//! "Complete" has two meanings: [`Torrent::wanted_complete`] (every piece of a wanted file is
//! verified: a download may stop; there is no event, a driver asks after each
//! [`TorrentEvent::PieceVerified`](super::TorrentEvent::PieceVerified)) and
//! [`Torrent::is_complete`] (every piece: the torrent is a seed,
//! [`TorrentEvent::Complete`](super::TorrentEvent::Complete), a tracker's `completed`). With every file wanted they coincide. [`Torrent::wanted_left`] is the `left` of an
//! announce: the bytes of the wanted pieces not yet verified, as libtorrent reports it.
//!
//! Invariant: `file_priorities` is empty (every file normal) or has one entry per file of the
//! layout; the picker's piece priorities are always the ones it implies.

use super::Torrent;
use crate::metainfo::TorrentLayout;
use crate::time::Instant;
use crate::torrent::FilePriority;

/// Why [`Torrent::set_file_priorities`] refused a list.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilePrioritiesError {
    /// A magnet link's torrent does not know its files until the metadata arrives.
    #[error("the torrent's files are not known yet (metadata still being fetched)")]
    NoMetadata,
    /// One priority per file is needed.
    #[error("{given} file priorities given for a torrent of {files} files")]
    WrongCount {
        /// Entries given.
        given: usize,
        /// Files in the torrent.
        files: usize,
    },
}

/// Each piece's priority: the highest of the files it overlaps (zero-length files overlap none).
pub fn piece_priorities(layout: &TorrentLayout, files: &[FilePriority]) -> Vec<FilePriority> {
    let mut pieces = vec![FilePriority::Skip; layout.piece_count() as usize];
    for (file, &priority) in files.iter().enumerate() {
        for piece in layout.file_pieces(file) {
            let slot = &mut pieces[piece as usize];
            *slot = (*slot).max(priority);
        }
    }
    pieces
}

impl Torrent {
    /// Sets each file's priority (`priorities[i]` for file `i` of the layout; see the module
    /// docs). Interest in every peer is looked at again; started pieces that become skipped are
    /// dropped. Whether it leaves every wanted piece verified, [`Torrent::wanted_complete`]
    /// says.
    pub fn set_file_priorities(
        &mut self,
        now: Instant,
        priorities: &[FilePriority],
    ) -> Result<(), FilePrioritiesError> {
        if self.fetch.is_some() {
            return Err(FilePrioritiesError::NoMetadata);
        }
        let files = self.layout.file_count();
        if priorities.len() != files {
            return Err(FilePrioritiesError::WrongCount {
                given: priorities.len(),
                files,
            });
        }
        let was_complete = self.picker.wanted_complete();
        self.file_priorities = priorities.to_vec();
        self.picker
            .set_priorities(&piece_priorities(&self.layout, priorities));
        self.short.clear();
        for (c, p) in self.peers.iter_mut() {
            p.missing = self.picker.settled().count_lacked(p.conn.peer_pieces());
            self.dirty.insert(*c);
            self.touched.insert(*c);
        }
        if !was_complete && self.picker.wanted_complete() {
            self.wanted_done();
        }
        self.drive(now);
        Ok(())
    }

    /// Each file's priority (all [`FilePriority::Normal`] until
    /// [`Torrent::set_file_priorities`]).
    pub fn file_priorities(&self) -> Vec<FilePriority> {
        if self.file_priorities.is_empty() {
            vec![FilePriority::Normal; self.layout.file_count()]
        } else {
            self.file_priorities.clone()
        }
    }

    /// Whether every piece of a wanted file is verified (never while a magnet link's metadata is
    /// being fetched): a download of the chosen files may stop.
    pub fn wanted_complete(&self) -> bool {
        self.fetch.is_none() && self.picker.wanted_complete()
    }

    /// Bytes of the wanted pieces not yet verified: an announce's `left`.
    pub fn wanted_left(&self) -> u64 {
        self.layout
            .pieces()
            .filter(|p| self.picker.needs(*p))
            .map(|p| u64::from(self.layout.piece_len(p)))
            .sum()
    }

    /// Every wanted piece is verified: nothing is left to write, so a write stall is over.
    pub(super) fn wanted_done(&mut self) {
        self.stall = None;
        self.probing.clear();
    }
}
