//! Fast resume: a small state file next to the data that says which pieces were verified, so a
//! restart rechecks only what it does not vouch for.
//!
//! The file is `<download_dir>/.bt-resume-<info hash in hex>`: beside the data it describes (so
//! moving the folder moves it along), one per torrent, hidden, and never a name a torrent's data
//! uses (a torrent's data sits under its own name, and the info hash cannot name itself). It is
//! canonical bencode:
//!
//! ```text
//! { "bt resume": 1,
//!   "info hash": <20 bytes>,
//!   "piece count": <n>,
//!   "pieces": <the verified pieces, BEP 3 bitfield layout>,
//!   "files": [ { "length": <bytes>, "mtime": <s>, "mtime ns": <ns> } | {} , ... ],
//!   "file priorities": [ 0 | 1 | 2, ... ]   (only when files were chosen)
//!   "uploaded": <bytes>, "seeding ms": <ms>   (only when the torrent has seeded or uploaded)
//!   "unsynced boot": <boot id> }   (only in a state saved without syncing the data)
//! ```
//!
//! with one `files` entry per file of the torrent, in order: the file's length and modification
//! time when the state was saved, or `{}` for a padding file or a file that did not exist. The
//! `file priorities`, one per file in the same order (0 skip, 1 normal, 2 high), are the files
//! chosen (`bt get --select`/`--only`), so a restart without a new choice keeps the old one.
//! `uploaded` and `seeding ms` are the torrent's progress toward seeding goals over all its runs
//! ([`SeedProgress`]), so `--seed-ratio` and `--seed-time` go on from where the last run left
//! them; a file without them (an older one) starts both at zero.
//!
//! Invariants: a piece is vouched for only if it was verified when the state was saved and every
//! file it lies in has the same length and modification time now (a file deleted, truncated,
//! grown or rewritten since loses all its pieces; a rewrite within one timestamp tick of the
//! file system with the same length is the one change this cannot see). The file is replaced
//! atomically (temporary file, fsync, rename, fsync of the folder), so a crash leaves the old state
//! or the new one. Loading never panics and never trusts the file: anything malformed, for another
//! torrent, or larger than [`max_resume_len`] is ignored.
//!
//! Save the state after [`Storage::flush`](crate::storage::Storage::flush), with the stamps read
//! after that flush: writes after the save change modification times, so those files are
//! rechecked after a crash and no unflushed data is ever vouched for.
//!
//! Or save it without syncing the data ([`ResumeState::save_unsynced`], Linux): written data
//! sits in the kernel's page cache, which outlives the process (a crash or a kill loses none of
//! it) but not the system. Such a state records the boot id (`/proc/sys/kernel/random/boot_id`)
//! and vouches for nothing once the system has restarted. This spares a download an `fsync` of
//! everything it wrote (a second or more per GiB) on the way out, as other clients do, without
//! ever trusting data a power cut may have lost.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bt_protocol::bencode::{self, DecodeLimits, Dict, Value};
use bt_protocol::client::SeedProgress;
use bt_protocol::metainfo::{Info, InfoHash, TorrentLayout};
use bt_protocol::torrent::{Bitfield, FilePriority};

/// The resume file's name starts with this; the info hash in lowercase hex follows.
pub const RESUME_FILE_PREFIX: &str = ".bt-resume-";

/// The format version written in `bt resume`.
const VERSION: i64 = 1;

/// The most bytes one `files` entry takes: `d6:lengthi<20 digits>e5:mtimei<20>e8:mtime nsi<10>ee`
/// is under 90; 128 leaves room.
const MAX_FILE_ENTRY_LEN: u64 = 128;

/// Where the resume file of `info_hash` lives in `dir`.
pub fn resume_path(dir: &Path, info_hash: &InfoHash) -> PathBuf {
    dir.join(format!("{RESUME_FILE_PREFIX}{}", info_hash.to_hex()))
}

/// The largest resume file read for `info`: 64 KiB for the fixed keys, plus the bitfield, plus
/// 128 bytes per file (an entry takes under 90). Anything longer is not one bt wrote for this torrent.
pub fn max_resume_len(info: &Info) -> u64 {
    64 * 1024
        + Bitfield::byte_len(info.layout.piece_count()) as u64
        + MAX_FILE_ENTRY_LEN * info.files.len() as u64
}

/// A file's length and modification time: what says whether it changed since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    /// Length in bytes.
    pub length: u64,
    /// Modification time, seconds since the Unix epoch.
    pub mtime_secs: i64,
    /// Modification time, nanoseconds within the second (`0..1_000_000_000`).
    pub mtime_nanos: u32,
}

impl FileStamp {
    /// The stamp of a file from its metadata.
    pub fn of(meta: &Metadata) -> FileStamp {
        FileStamp {
            length: meta.len(),
            mtime_secs: meta.mtime(),
            mtime_nanos: meta.mtime_nsec().clamp(0, 999_999_999) as u32,
        }
    }
}

/// A loaded resume file, checked against the torrent it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeState {
    /// The pieces verified when the state was saved.
    pieces: Bitfield,
    /// Each file's stamp when the state was saved; `None` for padding and absent files.
    files: Vec<Option<FileStamp>>,
    /// The files chosen when the state was saved, one priority per file; `None`: every file.
    priorities: Option<Vec<FilePriority>>,
    /// Progress toward seeding goals over every run up to the save.
    seeding: SeedProgress,
    layout: TorrentLayout,
    padding: Vec<bool>,
}

impl ResumeState {
    /// Writes the state of `info_hash` into `dir` atomically: `pieces` are the verified pieces,
    /// `files` each file's stamp now, in torrent order (see
    /// [`FsStorage::file_stamps`](crate::storage::FsStorage::file_stamps)), and `priorities` the
    /// files chosen (one per file; `None`: every file), and `seeding` the progress toward seeding
    /// goals over every run.
    pub fn save(
        dir: &Path,
        info_hash: &InfoHash,
        pieces: &Bitfield,
        files: &[Option<FileStamp>],
        priorities: Option<&[FilePriority]>,
        seeding: SeedProgress,
    ) -> io::Result<()> {
        Self::write(dir, info_hash, pieces, files, priorities, seeding, None)
    }

    /// Like [`ResumeState::save`], for data written but not synced: the state holds only until
    /// the system restarts (see the module notes). `None` where the system has no boot id (not
    /// Linux): then flush and [`ResumeState::save`] instead.
    pub fn save_unsynced(
        dir: &Path,
        info_hash: &InfoHash,
        pieces: &Bitfield,
        files: &[Option<FileStamp>],
        priorities: Option<&[FilePriority]>,
        seeding: SeedProgress,
    ) -> Option<io::Result<()>> {
        let boot = boot_id()?;
        Some(Self::write(
            dir,
            info_hash,
            pieces,
            files,
            priorities,
            seeding,
            Some(&boot),
        ))
    }

    fn write(
        dir: &Path,
        info_hash: &InfoHash,
        pieces: &Bitfield,
        files: &[Option<FileStamp>],
        priorities: Option<&[FilePriority]>,
        seeding: SeedProgress,
        unsynced_boot: Option<&str>,
    ) -> io::Result<()> {
        let path = resume_path(dir, info_hash);
        let bytes = encode(info_hash, pieces, files, priorities, seeding, unsynced_boot)
            .map_err(|e| io::Error::other(format!("encoding {}: {e}", path.display())))?;
        let mut tmp_name = path.clone().into_os_string();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let context = |doing: &str, at: &Path| {
            let at = at.display().to_string();
            let doing = doing.to_owned();
            move |e: io::Error| io::Error::new(e.kind(), format!("{doing} {at}: {e}"))
        };
        // A leftover from a crash (or a link planted there) is removed, not followed: create_new
        // refuses to open through a link.
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(context("removing", &tmp)(e)),
        }
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(context("creating", &tmp))?;
            file.write_all(&bytes).map_err(context("writing", &tmp))?;
            file.sync_all().map_err(context("syncing", &tmp))?;
            std::fs::rename(&tmp, &path).map_err(context("renaming to", &path))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(context("syncing", dir))
    }

    /// The state saved in `dir` for `info_hash`, if there is one that is well formed and matches
    /// `info`'s geometry; `None` otherwise (a missing, foreign, corrupt or oversized file is
    /// ignored: everything is then rechecked).
    pub fn load(dir: &Path, info_hash: &InfoHash, info: &Info) -> Option<ResumeState> {
        let bound = max_resume_len(info);
        let file = File::open(resume_path(dir, info_hash)).ok()?;
        if file.metadata().ok()?.len() > bound {
            return None;
        }
        let mut bytes = Vec::new();
        file.take(bound + 1).read_to_end(&mut bytes).ok()?;
        ResumeState::from_bytes(&bytes, info_hash, info)
    }

    /// The state in `bytes`, the contents of a resume file, read as [`ResumeState::load`] reads
    /// it: `None` unless they are well formed, for `info_hash`, match `info`'s geometry and are
    /// at most [`max_resume_len`] long.
    pub fn from_bytes(bytes: &[u8], info_hash: &InfoHash, info: &Info) -> Option<ResumeState> {
        if bytes.len() as u64 > max_resume_len(info) {
            return None;
        }
        decode(bytes, info_hash, info)
    }

    /// The resume file [`ResumeState::save`] writes for this state's saved pieces and stamps:
    /// [`ResumeState::from_bytes`] reads it back equal.
    pub fn to_bytes(&self, info_hash: &InfoHash) -> Vec<u8> {
        encode(
            info_hash,
            &self.pieces,
            &self.files,
            self.priorities.as_deref(),
            self.seeding,
            None,
        )
        .expect("a resume file nests three levels deep, within the encoder's bound")
    }

    /// The files chosen when the state was saved, one priority per file; `None` if every file
    /// was wanted.
    pub fn priorities(&self) -> Option<&[FilePriority]> {
        self.priorities.as_deref()
    }

    /// The torrent's progress toward seeding goals over every run up to the save.
    pub fn seeding(&self) -> SeedProgress {
        self.seeding
    }

    /// The pieces verified when the state was saved.
    pub fn saved_pieces(&self) -> &Bitfield {
        &self.pieces
    }

    /// The pieces this state still vouches for, given each file's stamp `now` (in torrent order,
    /// as [`FsStorage::file_stamps`](crate::storage::FsStorage::file_stamps) gives them): the saved
    /// pieces, less those lying in a file whose stamp changed, or that is missing then or now.
    pub fn vouched_pieces(&self, now: &[Option<FileStamp>]) -> Bitfield {
        let mut vouched = self.pieces.clone();
        for (index, saved) in self.files.iter().enumerate() {
            if self.padding[index] {
                continue;
            }
            let unchanged = saved.is_some() && now.get(index).copied().flatten() == *saved;
            if !unchanged {
                for piece in self.layout.file_pieces(index) {
                    vouched.clear(piece);
                }
            }
        }
        vouched
    }
}

/// This boot of the system (Linux), which changes at every restart.
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty() && id.len() <= 64).then(|| id.to_owned())
}

fn encode(
    info_hash: &InfoHash,
    pieces: &Bitfield,
    files: &[Option<FileStamp>],
    priorities: Option<&[FilePriority]>,
    seeding: SeedProgress,
    unsynced_boot: Option<&str>,
) -> Result<Vec<u8>, bencode::EncodeError> {
    let mut root = Dict::new();
    root.insert(&b"bt resume"[..], Value::Int(VERSION));
    root.insert(&b"info hash"[..], Value::bytes(info_hash.as_bytes()));
    root.insert(&b"piece count"[..], Value::Int(i64::from(pieces.len())));
    root.insert(&b"pieces"[..], Value::bytes(pieces.as_bytes()));
    let list = files
        .iter()
        .map(|stamp| {
            let mut d = Dict::new();
            if let Some(s) = stamp {
                // Lengths are below 2^50 (TorrentLayout's bound), so they fit an i64.
                d.insert(&b"length"[..], Value::Int(s.length as i64));
                d.insert(&b"mtime"[..], Value::Int(s.mtime_secs));
                d.insert(&b"mtime ns"[..], Value::Int(i64::from(s.mtime_nanos)));
            }
            Value::Dict(d)
        })
        .collect();
    root.insert(&b"files"[..], Value::List(list));
    if let Some(priorities) = priorities {
        let list = priorities
            .iter()
            .map(|p| Value::Int(priority_code(*p)))
            .collect();
        root.insert(&b"file priorities"[..], Value::List(list));
    }
    if seeding != SeedProgress::default() {
        // Both saturate at i64::MAX: past any real count, and read back as the same number.
        let uploaded = i64::try_from(seeding.uploaded).unwrap_or(i64::MAX);
        let ms = i64::try_from(seeding.seeded.as_millis()).unwrap_or(i64::MAX);
        root.insert(&b"uploaded"[..], Value::Int(uploaded));
        root.insert(&b"seeding ms"[..], Value::Int(ms));
    }
    if let Some(boot) = unsynced_boot {
        root.insert(&b"unsynced boot"[..], Value::bytes(boot.as_bytes()));
    }
    bencode::encode(&Value::Dict(root))
}

/// A file priority as the resume file writes it.
fn priority_code(priority: FilePriority) -> i64 {
    match priority {
        FilePriority::Skip => 0,
        FilePriority::Normal => 1,
        FilePriority::High => 2,
    }
}

/// The file priority a resume file's code stands for; `None` for any other number.
fn priority_of_code(code: i64) -> Option<FilePriority> {
    match code {
        0 => Some(FilePriority::Skip),
        1 => Some(FilePriority::Normal),
        2 => Some(FilePriority::High),
        _ => None,
    }
}

fn decode(bytes: &[u8], info_hash: &InfoHash, info: &Info) -> Option<ResumeState> {
    let limits = DecodeLimits {
        max_depth: 3,
        // Per file: a stamp entry (at most 8 tokens) and a priority.
        max_tokens: 64 + 9 * info.files.len(),
    };
    let decoded = bencode::decode(bytes, limits).ok()?;
    let root = decoded.value.as_dict()?;
    let int = |d: &Dict<'_>, key: &[u8]| d.get(key).and_then(Value::as_int);
    if int(root, b"bt resume")? != VERSION {
        return None;
    }
    if root.get(b"info hash")?.as_bytes()? != info_hash.as_bytes() {
        return None;
    }
    let piece_count = info.layout.piece_count();
    if int(root, b"piece count")? != i64::from(piece_count) {
        return None;
    }
    if let Some(boot) = root.get(b"unsynced boot") {
        // Saved without syncing the data: only good within the same boot.
        if Some(boot.as_bytes()?) != boot_id().as_ref().map(String::as_bytes) {
            return None;
        }
    }
    let pieces = Bitfield::from_wire(root.get(b"pieces")?.as_bytes()?, piece_count).ok()?;
    let list = root.get(b"files")?.as_list()?;
    if list.len() != info.files.len() {
        return None;
    }
    let mut files = Vec::with_capacity(list.len());
    for (entry, file) in list.iter().zip(&info.files) {
        let d = entry.as_dict()?;
        let stamp = if d.is_empty() {
            None
        } else {
            Some(FileStamp {
                length: u64::try_from(int(d, b"length")?).ok()?,
                mtime_secs: int(d, b"mtime")?,
                mtime_nanos: u32::try_from(int(d, b"mtime ns")?)
                    .ok()
                    .filter(|n| *n < 1_000_000_000)?,
            })
        };
        files.push(if file.attr.padding { None } else { stamp });
    }
    let priorities = match root.get(b"file priorities") {
        None => None,
        Some(list) => {
            let list = list.as_list()?;
            if list.len() != info.files.len() {
                return None;
            }
            let chosen: Option<Vec<FilePriority>> = list
                .iter()
                .map(|v| v.as_int().and_then(priority_of_code))
                .collect();
            Some(chosen?)
        }
    };
    let count = |key: &[u8]| match root.get(key) {
        None => Some(0),
        Some(v) => u64::try_from(v.as_int()?).ok(),
    };
    let seeding = SeedProgress {
        uploaded: count(b"uploaded")?,
        seeded: core::time::Duration::from_millis(count(b"seeding ms")?),
    };
    Some(ResumeState {
        pieces,
        files,
        priorities,
        seeding,
        layout: info.layout.clone(),
        padding: info.files.iter().map(|f| f.attr.padding).collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::{Duration, SystemTime};

    use bt_protocol::metainfo::InfoHash;
    use proptest::prelude::*;

    use super::*;
    use crate::storage::tests::Model;
    use crate::storage::{FsStorage, Storage};

    /// The odd model with every piece written, verified, flushed, and its state saved.
    fn saved() -> (Model, FsStorage, Bitfield) {
        let model = Model::odd();
        let storage = model.storage(4);
        storage.create_empty_files().unwrap();
        for p in 0..model.info().layout.piece_count() {
            model.write_piece(&storage, model.piece(p));
        }
        storage.flush().unwrap();
        let have = storage
            .verify(&model.info().pieces, None, 2, &mut |_| {})
            .unwrap();
        assert!(have.is_complete());
        ResumeState::save(
            model.root(),
            &model.meta.info_hash,
            &have,
            &storage.file_stamps(),
            None,
            SeedProgress::default(),
        )
        .unwrap();
        (model, storage, have)
    }

    #[test]
    fn seeding_progress_round_trips_and_an_older_file_without_it_starts_at_zero() {
        // Proves the seeding progress saved loads back equal (milliseconds kept), that a file
        // without it (as older versions wrote) loads with zero, and that a negative count makes
        // the whole file untrusted.
        let (model, storage, have) = saved();
        let (dir, hash) = (model.root(), &model.meta.info_hash);
        assert_eq!(
            ResumeState::load(dir, hash, model.info())
                .unwrap()
                .seeding(),
            SeedProgress::default()
        );
        let progress = SeedProgress {
            uploaded: 123_456_789,
            seeded: Duration::from_millis(90_061_001),
        };
        ResumeState::save(dir, hash, &have, &storage.file_stamps(), None, progress).unwrap();
        let state = ResumeState::load(dir, hash, model.info()).unwrap();
        assert_eq!(state.seeding(), progress);
        assert_eq!(state.vouched_pieces(&storage.file_stamps()), have);
        let file = std::fs::read(resume_path(dir, hash)).unwrap();
        assert!(file.windows(13).any(|w| w == b"10:seeding ms"));
        let negative = String::from_utf8_lossy(&file)
            .replace("i123456789e", "i-5e")
            .into_bytes();
        assert_eq!(ResumeState::from_bytes(&negative, hash, model.info()), None);
    }

    #[test]
    fn round_trip_vouches_for_the_saved_pieces() {
        // Proves a saved state loads back and vouches for every saved piece while no file changed,
        // and the save leaves no temporary file behind.
        let (model, storage, have) = saved();
        let state = ResumeState::load(model.root(), &model.meta.info_hash, model.info()).unwrap();
        assert_eq!(state.saved_pieces(), &have);
        assert_eq!(state.vouched_pieces(&storage.file_stamps()), have);
        // The bytes saved are the state's own encoding, and read back equal.
        let file = std::fs::read(resume_path(model.root(), &model.meta.info_hash)).unwrap();
        assert_eq!(state.to_bytes(&model.meta.info_hash), file);
        assert_eq!(
            ResumeState::from_bytes(&file, &model.meta.info_hash, model.info()),
            Some(state.clone())
        );
        let names: Vec<String> = std::fs::read_dir(model.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(
            names,
            [
                format!(".bt-resume-{}", model.meta.info_hash.to_hex()),
                "multi".to_owned()
            ]
        );
        // Saving again replaces it.
        let mut fewer = have.clone();
        fewer.clear(0);
        ResumeState::save(
            model.root(),
            &model.meta.info_hash,
            &fewer,
            &storage.file_stamps(),
            None,
            SeedProgress::default(),
        )
        .unwrap();
        let state = ResumeState::load(model.root(), &model.meta.info_hash, model.info()).unwrap();
        assert_eq!(state.saved_pieces(), &fewer);
    }

    #[test]
    fn an_unsynced_state_holds_only_within_its_boot() {
        // Proves a state saved without syncing the data vouches like a synced one during this
        // boot, and for nothing once the boot id differs (the system restarted: the page cache
        // that held the data is gone).
        let (model, storage, have) = saved();
        let (dir, hash) = (model.root(), &model.meta.info_hash);
        ResumeState::save_unsynced(
            dir,
            hash,
            &have,
            &storage.file_stamps(),
            None,
            SeedProgress::default(),
        )
        .expect("Linux has a boot id")
        .unwrap();
        let state = ResumeState::load(dir, hash, model.info()).unwrap();
        assert_eq!(state.vouched_pieces(&storage.file_stamps()), have);
        ResumeState::write(
            dir,
            hash,
            &have,
            &storage.file_stamps(),
            None,
            SeedProgress::default(),
            Some("another-boot"),
        )
        .unwrap();
        assert_eq!(ResumeState::load(dir, hash, model.info()), None);
    }

    #[test]
    fn the_files_chosen_are_kept_and_a_bad_choice_is_not_trusted() {
        // Proves the selection saved loads back as saved (and a state saved without one has
        // none), and that a priority list of the wrong length or with an unknown code makes the
        // whole file ignored rather than half-read.
        let (model, storage, have) = saved();
        let (dir, hash, info) = (model.root(), &model.meta.info_hash, model.info());
        assert_eq!(
            ResumeState::load(dir, hash, info).unwrap().priorities(),
            None
        );
        let n = info.files.len();
        let mut chosen = vec![FilePriority::Skip; n];
        chosen[0] = FilePriority::High;
        chosen[n - 1] = FilePriority::Normal;
        ResumeState::save(
            dir,
            hash,
            &have,
            &storage.file_stamps(),
            Some(&chosen),
            SeedProgress::default(),
        )
        .unwrap();
        let state = ResumeState::load(dir, hash, info).unwrap();
        assert_eq!(state.priorities(), Some(chosen.as_slice()));
        assert_eq!(
            ResumeState::from_bytes(&state.to_bytes(hash), hash, info),
            Some(state.clone())
        );
        ResumeState::save(
            dir,
            hash,
            &have,
            &storage.file_stamps(),
            Some(&chosen[1..]),
            SeedProgress::default(),
        )
        .unwrap();
        assert_eq!(ResumeState::load(dir, hash, info), None);
        let bad = state.to_bytes(hash);
        let at = bad
            .windows(5)
            .position(|w| w == b"li2ei")
            .expect("the list starts with high");
        let mut bad = bad.clone();
        bad[at + 2] = b'7';
        assert_eq!(ResumeState::from_bytes(&bad, hash, info), None);
    }

    #[test]
    fn a_changed_file_unvouches_its_pieces() {
        // Proves truncating, deleting or rewriting a file (same length, new mtime) withdraws
        // exactly the pieces lying in it, and a restart rechecks only those.
        let (model, storage, have) = saved();
        let info = model.info();
        let load = || ResumeState::load(model.root(), &model.meta.info_hash, info).unwrap();
        let layout = &info.layout;
        let without = |files: &[usize]| {
            let mut expected = have.clone();
            for &f in files {
                for p in layout.file_pieces(f) {
                    expected.clear(p);
                }
            }
            expected
        };
        drop(storage);

        // `d` (file 4) truncated.
        let d = std::fs::OpenOptions::new()
            .write(true)
            .open(model.file_path(4))
            .unwrap();
        d.set_len(10).unwrap();
        drop(d);
        let storage = model.storage(4);
        let vouched = load().vouched_pieces(&storage.file_stamps());
        assert_eq!(vouched, without(&[4]));
        assert!(vouched.count() < have.count() && !vouched.is_clear());
        // The restart: recheck only what is not vouched for.
        let mut recheck = Bitfield::full(layout.piece_count());
        for p in vouched.ones() {
            recheck.clear(p);
        }
        let found = storage
            .verify(&info.pieces, Some(&recheck), 2, &mut |_| {})
            .unwrap();
        let full = storage.verify(&info.pieces, None, 2, &mut |_| {}).unwrap();
        let mut resumed = vouched.clone();
        for p in found.ones() {
            resumed.set(p);
        }
        assert_eq!(resumed, full);
        assert_eq!(full, without(&[4]));

        // `e` (file 5) deleted as well.
        std::fs::remove_file(model.file_path(5)).unwrap();
        assert_eq!(
            load().vouched_pieces(&storage.file_stamps()),
            without(&[4, 5])
        );

        // `a` (file 0) rewritten with the same bytes: same length, new mtime.
        let a = std::fs::File::options()
            .write(true)
            .open(model.file_path(0))
            .unwrap();
        a.set_modified(SystemTime::now() + Duration::from_secs(5))
            .unwrap();
        drop(a);
        assert_eq!(
            load().vouched_pieces(&storage.file_stamps()),
            without(&[0, 4, 5])
        );
        // Stamps of the wrong length (a caller's mistake) vouch for nothing in unknown files.
        assert!(load().vouched_pieces(&[]).is_clear());
    }

    #[test]
    fn a_corrupt_or_foreign_resume_file_is_ignored() {
        // Proves garbage, truncation, another torrent's state, a wrong geometry and an oversized
        // file all load as None.
        let (model, storage, have) = saved();
        let info = model.info();
        let hash = &model.meta.info_hash;
        let path = resume_path(model.root(), hash);
        let good = std::fs::read(&path).unwrap();
        let load = || ResumeState::load(model.root(), hash, info);
        assert!(load().is_some());

        let cases: Vec<Vec<u8>> = vec![
            b"garbage".to_vec(),
            Vec::new(),
            good[..good.len() / 2].to_vec(),
            b"de".to_vec(),
            good.iter().map(|b| b.wrapping_add(1)).collect(),
            vec![b'l'; 10_000],
        ];
        for bytes in cases {
            std::fs::write(&path, &bytes).unwrap();
            assert!(load().is_none(), "{:?}", String::from_utf8_lossy(&bytes));
        }

        // Another torrent's state under this name.
        let other = InfoHash([7; 20]);
        ResumeState::save(
            model.root(),
            &other,
            &have,
            &storage.file_stamps(),
            None,
            SeedProgress::default(),
        )
        .unwrap();
        std::fs::rename(resume_path(model.root(), &other), &path).unwrap();
        assert!(load().is_none());

        // A state for a torrent with fewer pieces.
        let mut short = Bitfield::new(have.len() - 1);
        short.set(0);
        ResumeState::save(
            model.root(),
            hash,
            &short,
            &storage.file_stamps(),
            None,
            SeedProgress::default(),
        )
        .unwrap();
        assert!(load().is_none());

        // Fewer files.
        ResumeState::save(
            model.root(),
            hash,
            &have,
            &storage.file_stamps()[1..],
            None,
            SeedProgress::default(),
        )
        .unwrap();
        assert!(load().is_none());

        // Oversized: a valid prefix padded past the bound.
        let mut big = good.clone();
        big.resize(max_resume_len(info) as usize + 1, b' ');
        std::fs::write(&path, &big).unwrap();
        assert!(load().is_none());

        // No file at all.
        std::fs::remove_file(&path).unwrap();
        assert!(load().is_none());
        std::fs::write(&path, &good).unwrap();
        assert!(load().is_some());
    }

    #[test]
    fn save_never_writes_through_a_planted_link() {
        // Proves a link at the temporary file's name is replaced, not followed.
        let (model, storage, have) = saved();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let mut tmp = resume_path(model.root(), &model.meta.info_hash).into_os_string();
        tmp.push(".tmp");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        ResumeState::save(
            model.root(),
            &model.meta.info_hash,
            &have,
            &storage.file_stamps(),
            None,
            SeedProgress::default(),
        )
        .unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(ResumeState::load(model.root(), &model.meta.info_hash, model.info()).is_some());
    }

    #[test]
    fn a_save_cut_short_leaves_the_previous_state() {
        // Proves what a kill in the middle of a save leaves (a torn temporary file, no rename)
        // loads as the previous state, and the next save replaces the leftover.
        let (model, storage, have) = saved();
        let (dir, hash) = (model.root(), &model.meta.info_hash);
        let mut tmp = resume_path(dir, hash).into_os_string();
        tmp.push(".tmp");
        let good = std::fs::read(resume_path(dir, hash)).unwrap();
        std::fs::write(&tmp, &good[..good.len() / 3]).unwrap();
        let state = ResumeState::load(dir, hash, model.info()).expect("the previous state");
        assert_eq!(state.saved_pieces(), &have);
        let mut fewer = have.clone();
        fewer.clear(1);
        ResumeState::save(
            dir,
            hash,
            &fewer,
            &storage.file_stamps(),
            None,
            SeedProgress::default(),
        )
        .unwrap();
        assert!(!std::path::Path::new(&tmp).exists(), "the leftover is gone");
        let state = ResumeState::load(dir, hash, model.info()).unwrap();
        assert_eq!(state.saved_pieces(), &fewer);
    }

    #[test]
    fn padding_files_need_no_stamp() {
        // Proves pieces touching padding files are vouched for by their real files alone.
        let model = Model::padded();
        let storage = model.storage(4);
        for piece in model.info().layout.pieces() {
            model.write_piece(&storage, piece);
        }
        storage.flush().unwrap();
        let have = Bitfield::full(model.info().layout.piece_count());
        let stamps = storage.file_stamps();
        for (stamp, file) in stamps.iter().zip(&model.info().files) {
            assert_eq!(stamp.is_none(), file.attr.padding || file.length == 0);
        }
        ResumeState::save(
            model.root(),
            &model.meta.info_hash,
            &have,
            &stamps,
            None,
            SeedProgress::default(),
        )
        .unwrap();
        let state = ResumeState::load(model.root(), &model.meta.info_hash, model.info()).unwrap();
        assert_eq!(state.vouched_pieces(&storage.file_stamps()), have);
    }

    #[test]
    fn mutated_resume_files_never_panic() {
        // Proves loading corruptions of a valid file (edited bytes, sometimes truncated) never
        // panics, whatever loads still covers exactly this torrent's pieces, and some corruptions
        // load and some do not, so both paths are checked.
        let (model, storage, _) = saved();
        let path = resume_path(model.root(), &model.meta.info_hash);
        let good = std::fs::read(&path).unwrap();
        let stamps = storage.file_stamps();
        // Half the edits write a digit: most of the file is numbers, so those often keep it
        // loadable (a stamp or a count changed), where a random byte almost never does.
        let byte = prop_oneof![any::<u8>(), b'0'..=b'9'];
        let edits = proptest::collection::vec((any::<prop::sample::Index>(), byte), 1..4);
        let cut = proptest::option::weighted(0.2, any::<prop::sample::Index>());
        let (loaded, refused) = (Cell::new(0u32), Cell::new(0u32));
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(256));
        runner
            .run(&(edits, cut), |(edits, cut)| {
                let mut bytes = good.clone();
                for (at, value) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = value;
                }
                if let Some(cut) = cut {
                    bytes.truncate(cut.index(bytes.len() + 1));
                }
                std::fs::write(&path, &bytes).unwrap();
                match ResumeState::load(model.root(), &model.meta.info_hash, model.info()) {
                    Some(state) => {
                        let vouched = state.vouched_pieces(&stamps);
                        prop_assert_eq!(vouched.len(), model.info().layout.piece_count());
                        loaded.set(loaded.get() + 1);
                    }
                    None => refused.set(refused.get() + 1),
                }
                Ok(())
            })
            .unwrap();
        let (loaded, refused) = (loaded.get(), refused.get());
        assert!(
            loaded > 0 && refused > 0,
            "{loaded} corruptions loaded and {refused} were refused: a path went unchecked"
        );
    }
}
