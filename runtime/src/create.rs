//! Building a `.torrent` from a file or a folder: walk, hash every piece on all cores, encode.
//!
//! The walk is deterministic (entries sorted by name, byte-wise), the encoding canonical, and no
//! creation date is written unless asked for, so the same input gives the same bytes. Hashing reads
//! each piece with positional reads spread over worker threads; memory is one piece buffer per
//! worker, whatever the size of the data.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bt_protocol::metainfo::{
    MAX_PIECE_LENGTH, Metainfo, NewFile, PieceIndex, TorrentLayout, TorrentOptions, build_torrent,
};
use sha1::{Digest, Sha1};

use crate::storage::hash::hash_parallel;

/// The smallest piece length `bt create` writes (one block).
pub const MIN_PIECE_LENGTH: u32 = 16 * 1024;

/// The largest piece length chosen automatically.
pub const MAX_AUTO_PIECE_LENGTH: u32 = 16 * 1024 * 1024;

/// Most files one torrent may be made of.
pub const MAX_FILES: usize = 1_000_000;

/// Deepest folder nesting walked.
pub const MAX_DEPTH: usize = 64;

/// Why a torrent could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Reading the source failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A name that cannot go in a torrent.
    #[error("{0}: the name is not valid UTF-8")]
    NotUtf8(PathBuf),
    /// The source holds nothing to share.
    #[error("{0}: holds no data (no files, or only empty ones)")]
    Empty(PathBuf),
    /// Too many files or folders nested too deep.
    #[error("{path}: {what}")]
    TooBig {
        /// The folder.
        path: PathBuf,
        /// Which bound was hit.
        what: String,
    },
    /// The piece length asked for cannot be used.
    #[error("piece length {0} must be a power of two from 16 KiB to 512 MiB")]
    BadPieceLength(u64),
    /// A file changed size while it was hashed.
    #[error("{0}: changed while it was being hashed")]
    Changed(PathBuf),
    /// The torrent could not be encoded.
    #[error(transparent)]
    Build(#[from] bt_protocol::metainfo::CreateError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CreateError + '_ {
    move |source| CreateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A file found by the walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Where it is on disk.
    pub disk_path: PathBuf,
    /// Its path below the torrent's root (empty for a single-file torrent).
    pub torrent_path: Vec<String>,
    /// Its length when walked.
    pub length: u64,
}

/// What was found at the source path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The torrent's name: the file or folder name.
    pub name: String,
    /// The files in torrent order.
    pub files: Vec<SourceFile>,
    /// Symlinks to folders and special files that were left out.
    pub skipped: Vec<PathBuf>,
}

impl Source {
    /// Total bytes.
    pub fn total_length(&self) -> u64 {
        self.files.iter().map(|f| f.length).sum()
    }
}

/// Walks `path`: one file, or a folder's regular files (following symlinks to files, not to
/// folders), sorted by path.
pub fn walk(path: &Path) -> Result<Source, CreateError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    let canonical = path.canonicalize().map_err(io(path))?;
    let name = canonical
        .file_name()
        .ok_or_else(|| CreateError::NotUtf8(path.to_owned()))?
        .to_str()
        .ok_or_else(|| CreateError::NotUtf8(path.to_owned()))?
        .to_owned();
    let mut source = Source {
        name,
        files: Vec::new(),
        skipped: Vec::new(),
    };
    if meta.is_file() {
        source.files.push(SourceFile {
            disk_path: path.to_owned(),
            torrent_path: Vec::new(),
            length: meta.len(),
        });
    } else {
        walk_dir(path, &mut Vec::new(), &mut source)?;
    }
    if source.total_length() == 0 {
        return Err(CreateError::Empty(path.to_owned()));
    }
    Ok(source)
}

fn walk_dir(dir: &Path, prefix: &mut Vec<String>, source: &mut Source) -> Result<(), CreateError> {
    if prefix.len() >= MAX_DEPTH {
        return Err(CreateError::TooBig {
            path: dir.to_owned(),
            what: format!("folders nested deeper than {MAX_DEPTH}"),
        });
    }
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| CreateError::NotUtf8(entry.path()))?;
        entries.push((name, entry.path()));
    }
    entries.sort();
    for (name, path) in entries {
        let link = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        let meta = if link.is_symlink() {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => m,
                // A dangling link or a link to a folder: following folders risks cycles.
                _ => {
                    source.skipped.push(path);
                    continue;
                }
            }
        } else {
            link
        };
        prefix.push(name);
        if meta.is_dir() {
            walk_dir(&path, prefix, source)?;
        } else if meta.is_file() {
            if source.files.len() >= MAX_FILES {
                return Err(CreateError::TooBig {
                    path: dir.to_owned(),
                    what: format!("more than {MAX_FILES} files"),
                });
            }
            source.files.push(SourceFile {
                disk_path: path,
                torrent_path: prefix.clone(),
                length: meta.len(),
            });
        } else {
            source.skipped.push(path);
        }
        prefix.pop();
    }
    Ok(())
}

/// The piece length `bt create` picks: a power of two giving about 1,000 to 2,000 pieces, from
/// 16 KiB to 16 MiB.
pub fn auto_piece_length(total_length: u64) -> u32 {
    let target = total_length / 1500;
    let pl = target.next_power_of_two().clamp(
        u64::from(MIN_PIECE_LENGTH),
        u64::from(MAX_AUTO_PIECE_LENGTH),
    );
    pl as u32
}

/// Checks a piece length given by the user.
pub fn check_piece_length(piece_length: u64) -> Result<u32, CreateError> {
    if piece_length.is_power_of_two()
        && (u64::from(MIN_PIECE_LENGTH)..=u64::from(MAX_PIECE_LENGTH)).contains(&piece_length)
    {
        Ok(piece_length as u32)
    } else {
        Err(CreateError::BadPieceLength(piece_length))
    }
}

/// Hashes every piece of `source` on `threads` threads; `progress` is called from the calling
/// thread with the bytes hashed so far, a few times a second at most.
pub fn hash_pieces(
    source: &Source,
    piece_length: u32,
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<[u8; 20]>, CreateError> {
    let lengths: Vec<u64> = source.files.iter().map(|f| f.length).collect();
    let layout = TorrentLayout::new(u64::from(piece_length), &lengths)
        .map_err(|e| CreateError::Build(bt_protocol::metainfo::MetainfoError::from(e).into()))?;
    let pieces: Vec<PieceIndex> = layout.pieces().collect();
    let layout = &layout;
    let make_worker = || {
        let mut buf = vec![0u8; piece_length as usize];
        let mut open: Option<(usize, File)> = None;
        move |piece: PieceIndex| -> Result<Option<[u8; 20]>, CreateError> {
            let len = layout.piece_len(piece) as usize;
            read_piece(source, layout, piece, &mut buf[..len], &mut open)?;
            Ok(Some(Sha1::digest(&buf[..len]).into()))
        }
    };
    let hashes = hash_parallel(layout, &pieces, threads, make_worker, progress)?;
    Ok(hashes
        .into_iter()
        .map(|h| h.expect("every worker answers a digest or an error"))
        .collect())
}

fn read_piece(
    source: &Source,
    layout: &TorrentLayout,
    piece: PieceIndex,
    buf: &mut [u8],
    open: &mut Option<(usize, File)>,
) -> Result<(), CreateError> {
    for span in layout.piece_spans(piece) {
        let file = &source.files[span.file];
        if open.as_ref().map(|(i, _)| *i) != Some(span.file) {
            let f = File::open(&file.disk_path).map_err(io(&file.disk_path))?;
            *open = Some((span.file, f));
        }
        let (_, f) = open.as_ref().expect("opened above");
        let dst = &mut buf[span.piece_offset as usize..][..span.len as usize];
        f.read_exact_at(dst, span.file_offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                CreateError::Changed(file.disk_path.clone())
            } else {
                CreateError::Io {
                    path: file.disk_path.clone(),
                    source: e,
                }
            }
        })?;
    }
    Ok(())
}

/// Hashes `source` and builds the torrent's bytes.
pub fn create_torrent(
    source: &Source,
    piece_length: u32,
    options: &TorrentOptions,
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<(Vec<u8>, Metainfo), CreateError> {
    let pieces = hash_pieces(source, piece_length, threads, progress)?;
    let files: Vec<NewFile> = source
        .files
        .iter()
        .map(|f| NewFile {
            path: f.torrent_path.clone(),
            length: f.length,
        })
        .collect();
    Ok(build_torrent(
        &source.name,
        piece_length,
        &files,
        &pieces,
        options,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_piece_length_stays_in_bounds() {
        // Proves the automatic piece length is a power of two from 16 KiB to 16 MiB near 1,500 pieces.
        assert_eq!(auto_piece_length(1), MIN_PIECE_LENGTH);
        assert_eq!(auto_piece_length(1 << 30), 1 << 20);
        assert_eq!(auto_piece_length(1 << 50), MAX_AUTO_PIECE_LENGTH);
        for total in [100u64 << 20, 700 << 20, 4 << 30, 20 << 30] {
            let pl = auto_piece_length(total);
            assert!(pl.is_power_of_two());
            let pieces = total.div_ceil(u64::from(pl));
            assert!(
                (700..=3000).contains(&pieces),
                "{total} -> {pl} -> {pieces}"
            );
        }
    }

    #[test]
    fn piece_length_must_be_a_power_of_two_in_range() {
        // Proves user-given piece lengths are checked.
        assert_eq!(check_piece_length(1 << 18).unwrap(), 1 << 18);
        assert!(check_piece_length(1000).is_err());
        assert!(check_piece_length(8192).is_err());
        assert!(check_piece_length(1 << 30).is_err());
    }

    #[test]
    fn hashes_match_a_single_threaded_reference() {
        // Proves parallel hashing over file boundaries gives each piece the SHA-1 of its bytes.
        let dir = std::env::temp_dir().join(format!("bt-create-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let a: Vec<u8> = (0..40_000u32).map(|i| (i * 7) as u8).collect();
        let b: Vec<u8> = (0..70_001u32).map(|i| (i * 13 + 1) as u8).collect();
        std::fs::write(dir.join("sub/a"), &a).unwrap();
        std::fs::write(dir.join("empty"), b"").unwrap();
        std::fs::write(dir.join("z"), &b).unwrap();
        let source = walk(&dir).unwrap();
        assert_eq!(
            source
                .files
                .iter()
                .map(|f| f.torrent_path.join("/"))
                .collect::<Vec<_>>(),
            ["empty", "sub/a", "z"]
        );
        let all: Vec<u8> = [a, b].concat();
        let expected: Vec<[u8; 20]> = all.chunks(16384).map(|c| Sha1::digest(c).into()).collect();
        for threads in [1, 3, 8] {
            let got = hash_pieces(&source, 16384, threads, &mut |_| {}).unwrap();
            assert_eq!(got, expected, "threads={threads}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
