//! Tests of [`FsStorage`] on real files in temporary folders, and the [`Model`] they (and the
//! resume tests) share: a torrent with the bytes its files should hold.

use std::io;
use std::path::Path;
use std::sync::Arc;

use bt_protocol::io::{ConnId, DiskDone, DiskError, DiskOp};
use bt_protocol::metainfo::{
    BlockRef, Info, Metainfo, NewFile, PieceIndex, TorrentOptions, build_torrent,
};
use bt_protocol::torrent::Bitfield;
use sha1::{Digest, Sha1};

use super::{FsStorage, Storage, StorageError};

/// A torrent, the bytes its data should hold (zeros in padding files), and an empty download
/// folder.
pub(crate) struct Model {
    pub(crate) meta: Metainfo,
    /// The torrent's byte stream as the disk should hold it.
    pub(crate) stream: Vec<u8>,
    pub(crate) dir: tempfile::TempDir,
}

/// Varied bytes, different at every position of the stream.
fn byte_at(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i as u8)
}

impl Model {
    /// A multi-file torrent named `multi` with `files` (`"sub/b"` style paths, lengths).
    pub(crate) fn new(files: &[(&str, u64)], piece_length: u32) -> Model {
        let total: u64 = files.iter().map(|f| f.1).sum();
        let stream: Vec<u8> = (0..total).map(byte_at).collect();
        let pieces: Vec<[u8; 20]> = stream
            .chunks(piece_length as usize)
            .map(|c| Sha1::digest(c).into())
            .collect();
        let files: Vec<NewFile> = files
            .iter()
            .map(|(path, length)| NewFile {
                path: path.split('/').map(str::to_owned).collect(),
                length: *length,
            })
            .collect();
        let (_, meta) = build_torrent(
            "multi",
            piece_length,
            &files,
            &pieces,
            &TorrentOptions::default(),
        )
        .expect("a valid test torrent");
        Model {
            meta,
            stream,
            dir: tempfile::tempdir().expect("a temporary folder"),
        }
    }

    /// The odd-sized files used by most tests: nested folders, a zero-length file, files shorter
    /// than a block, pieces spanning several files.
    pub(crate) fn odd() -> Model {
        Model::new(
            &[
                ("a", 1),
                ("empty", 0),
                ("sub/b", 16_385),
                ("sub/deeper/c", 7),
                ("d", 40_000),
                ("e", 3),
            ],
            16_384,
        )
    }

    /// libtorrent's hybrid fixture: BEP 47 padding files between the real ones, a zero-length
    /// file at the end. Its piece hashes are for content these tests do not have, so they use
    /// [`Model::expected_hash`].
    pub(crate) fn padded() -> Model {
        let bytes = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/libtorrent-hybrid-pad.torrent"
        ));
        let meta = Metainfo::from_bytes(bytes).expect("the fixture parses");
        let mut stream = Vec::new();
        for file in &meta.info.files {
            let start = stream.len() as u64;
            if file.attr.padding {
                stream.resize(stream.len() + file.length as usize, 0);
            } else {
                stream.extend((start..start + file.length).map(byte_at));
            }
        }
        Model {
            meta,
            stream,
            dir: tempfile::tempdir().expect("a temporary folder"),
        }
    }

    pub(crate) fn info(&self) -> &Info {
        &self.meta.info
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn storage(&self, max_open_files: usize) -> FsStorage {
        FsStorage::open(self.root(), self.info(), max_open_files).expect("the folder exists")
    }

    pub(crate) fn piece(&self, index: u32) -> PieceIndex {
        self.info().layout.piece(index).expect("piece in range")
    }

    pub(crate) fn blocks(&self) -> Vec<BlockRef> {
        let layout = &self.info().layout;
        layout.pieces().flat_map(|p| layout.blocks(p)).collect()
    }

    pub(crate) fn block_data(&self, block: BlockRef) -> &[u8] {
        let start = self.info().layout.piece_offset(block.piece) + u64::from(block.offset);
        &self.stream[start as usize..][..block.len as usize]
    }

    pub(crate) fn write_piece(&self, storage: &FsStorage, piece: PieceIndex) {
        for block in self.info().layout.blocks(piece) {
            storage.write(block, self.block_data(block)).unwrap();
        }
    }

    pub(crate) fn expected_hash(&self, piece: PieceIndex) -> [u8; 20] {
        let layout = &self.info().layout;
        let start = layout.piece_offset(piece) as usize;
        Sha1::digest(&self.stream[start..][..layout.piece_len(piece) as usize]).into()
    }

    /// What file `index` should hold.
    pub(crate) fn file_content(&self, index: usize) -> &[u8] {
        let (start, len) = self.info().layout.file_range(index).expect("file in range");
        &self.stream[start as usize..][..len as usize]
    }

    pub(crate) fn file_path(&self, index: usize) -> std::path::PathBuf {
        let mut path = self.root().to_owned();
        path.extend(&self.info().files[index].path);
        path
    }
}

/// Every entry below `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                out.push(format!("{name}/"));
                walk(&entry.path(), &format!("{name}/"), out);
            } else {
                out.push(name);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out);
    out.sort();
    out
}

#[test]
fn blocks_round_trip_across_file_boundaries() {
    // Proves writes land at the right place in every file, reads and hashes see them, and the
    // files on disk hold exactly the torrent's bytes, for odd sizes and nested folders.
    let model = Model::odd();
    let storage = model.storage(4);
    let mut blocks = model.blocks();
    // Out of order: last block first, then interleaved.
    blocks.reverse();
    blocks.sort_by_key(|b| b.offset);
    for &block in &blocks {
        storage.write(block, model.block_data(block)).unwrap();
    }
    for &block in &blocks {
        assert_eq!(storage.read(block).unwrap(), model.block_data(block));
    }
    for piece in model.info().layout.pieces() {
        assert_eq!(
            storage.hash_piece(piece).unwrap(),
            model.expected_hash(piece)
        );
        assert_eq!(
            model.expected_hash(piece),
            model.info().pieces[piece.as_usize()]
        );
    }
    storage.flush().unwrap();
    for (index, file) in model.info().files.iter().enumerate() {
        if file.length > 0 {
            assert_eq!(
                std::fs::read(model.file_path(index)).unwrap(),
                model.file_content(index),
                "{}",
                file.path_string()
            );
        }
    }
    // The zero-length file holds no piece: only create_empty_files makes it.
    assert!(!model.root().join("multi/empty").exists());
    storage.create_empty_files().unwrap();
    assert_eq!(
        std::fs::read(model.root().join("multi/empty")).unwrap(),
        b""
    );
    assert_eq!(
        tree(model.root()),
        [
            "multi/",
            "multi/a",
            "multi/d",
            "multi/e",
            "multi/empty",
            "multi/sub/",
            "multi/sub/b",
            "multi/sub/deeper/",
            "multi/sub/deeper/c"
        ]
    );
}

#[test]
fn single_file_torrent_lands_at_its_name() {
    // Proves a single-file torrent's data is the file `download_dir/<name>`.
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..50_000u64).map(byte_at).collect();
    let pieces: Vec<[u8; 20]> = data
        .chunks(32_768)
        .map(|c| Sha1::digest(c).into())
        .collect();
    let files = [NewFile {
        path: Vec::new(),
        length: data.len() as u64,
    }];
    let (_, meta) = build_torrent(
        "one.bin",
        32_768,
        &files,
        &pieces,
        &TorrentOptions::default(),
    )
    .unwrap();
    let storage = FsStorage::open(dir.path(), &meta.info, 8).unwrap();
    let layout = &meta.info.layout;
    for piece in layout.pieces() {
        for block in layout.blocks(piece) {
            let start = layout.piece_offset(piece) as usize + block.offset as usize;
            storage
                .write(block, &data[start..][..block.len as usize])
                .unwrap();
        }
    }
    assert_eq!(std::fs::read(dir.path().join("one.bin")).unwrap(), data);
    let have = storage
        .verify(&meta.info.pieces, None, 2, &mut |_| {})
        .unwrap();
    assert!(have.is_complete());
}

#[test]
fn padding_files_are_never_created_and_read_as_zeros() {
    // Proves BEP 47 padding: writes to padding are dropped (even non-zero bytes), reads and
    // hashes see zeros, no `.pad` folder appears, and real files hold exactly their bytes.
    let model = Model::padded();
    let info = model.info();
    assert!(info.files.iter().any(|f| f.attr.padding));
    let storage = model.storage(3);
    for block in model.blocks() {
        // Garbage where padding lies: it must not reach the disk or come back.
        let mut data = model.block_data(block).to_vec();
        let start = info.layout.piece_offset(block.piece) + u64::from(block.offset);
        for span in info.layout.spans(start, block.len) {
            if info.files[span.file].attr.padding {
                data[span.piece_offset as usize..][..span.len as usize].fill(0xEE);
            }
        }
        storage.write(block, &data).unwrap();
    }
    for block in model.blocks() {
        assert_eq!(storage.read(block).unwrap(), model.block_data(block));
    }
    for piece in info.layout.pieces() {
        assert_eq!(
            storage.hash_piece(piece).unwrap(),
            model.expected_hash(piece)
        );
    }
    storage.create_empty_files().unwrap();
    assert!(!model.root().join("multi/.pad").exists());
    for (index, file) in info.files.iter().enumerate() {
        if !file.attr.padding {
            assert_eq!(
                std::fs::read(model.file_path(index)).unwrap(),
                model.file_content(index),
                "{}",
                file.path_string()
            );
        }
    }
    let expected: Vec<[u8; 20]> = info
        .layout
        .pieces()
        .map(|p| model.expected_hash(p))
        .collect();
    let have = storage.verify(&expected, None, 3, &mut |_| {}).unwrap();
    assert!(have.is_complete());
}

#[test]
fn missing_and_short_files_are_clear_errors() {
    // Proves hashing or reading data that is not there names the file and why, and creates
    // nothing.
    let model = Model::odd();
    let storage = model.storage(4);
    let p0 = model.piece(0);
    let err = storage.hash_piece(p0).unwrap_err();
    assert!(matches!(err, StorageError::Missing { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{} is missing", model.file_path(0).display())
    );
    let block = model.info().layout.block(p0, 0).unwrap();
    assert!(matches!(
        storage.read(block),
        Err(StorageError::Missing { .. })
    ));
    assert_eq!(tree(model.root()), Vec::<String>::new());

    // Write all of file `a` and part of `sub/b`: the piece spanning them is short.
    std::fs::create_dir_all(model.root().join("multi/sub")).unwrap();
    std::fs::write(model.file_path(0), model.file_content(0)).unwrap();
    std::fs::write(model.file_path(2), &model.file_content(2)[..100]).unwrap();
    let err = storage.hash_piece(p0).unwrap_err();
    match &err {
        StorageError::TooShort {
            path,
            length,
            needed,
        } => {
            assert_eq!(path, &model.file_path(2));
            assert_eq!(*length, 100);
            assert!(*needed > 100);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("multi/sub/b is 100 bytes long"),
        "{err}"
    );
}

/// Asserts `result` is the refusal of the link at `link`, and that its message names it; if the
/// link was followed, says what the folder it leads to (`target`) holds now.
#[track_caller]
fn assert_link_refused<T: std::fmt::Debug>(
    result: Result<T, StorageError>,
    link: &Path,
    target: &Path,
) {
    let err = match result {
        Err(err) => err,
        Ok(value) => panic!(
            "the link {} was followed (the operation gave {value:?}); {} now holds {:?}",
            link.display(),
            target.display(),
            tree(target)
        ),
    };
    assert!(
        matches!(&err, StorageError::Link { path } if path == link),
        "wanted the link {} refused, got {err:?}",
        link.display()
    );
    assert_eq!(
        err.to_string(),
        format!(
            "refusing to follow a symbolic link at {}: nothing below the download folder may be a link",
            link.display()
        )
    );
}

/// The storage of `model` with at most one open file, opening files with `openat2` or, with
/// `fallback`, one component at a time.
fn storage_for_links(model: &Model, fallback: bool) -> FsStorage {
    let storage = model.storage(1);
    if fallback {
        return storage.without_openat2();
    }
    // This machine's kernel has openat2: the test must exercise it.
    assert!(storage.uses_openat2(), "openat2 is unavailable here");
    storage
}

/// Proves no symbolic link below the download folder is followed, whatever it points to and
/// whenever it appears: at the torrent's folder, a subfolder or a file, planted before the first
/// open or after a file was written; each is refused naming the link, and nothing appears where
/// the link points.
fn links_are_refused(fallback: bool) {
    let model = Model::odd();
    let outside = tempfile::tempdir().unwrap();
    let root = model.root().canonicalize().unwrap();
    let storage = storage_for_links(&model, fallback);
    let layout = &model.info().layout;
    // Piece 0 spans `a` and `sub/b`; piece 2 lies in `d`.
    let in_sub = layout.block(model.piece(0), 0).unwrap();
    let in_d = layout.block(model.piece(2), 0).unwrap();

    // The torrent's folder is a link to a folder outside.
    std::os::unix::fs::symlink(outside.path(), model.root().join("multi")).unwrap();
    let link = root.join("multi");
    assert_link_refused(
        storage.write(in_sub, model.block_data(in_sub)),
        &link,
        outside.path(),
    );
    assert_link_refused(storage.hash_piece(model.piece(0)), &link, outside.path());
    assert_link_refused(
        storage.verify(&model.info().pieces, None, 2, &mut |_| {}),
        &link,
        outside.path(),
    );
    assert_link_refused(storage.create_empty_files(), &link, outside.path());
    assert_eq!(storage.file_stamps()[0], None);
    assert_eq!(tree(outside.path()), Vec::<String>::new());

    // A subfolder is a link to a folder outside holding a file of the torrent's name.
    std::fs::remove_file(model.root().join("multi")).unwrap();
    std::fs::create_dir(model.root().join("multi")).unwrap();
    std::os::unix::fs::symlink(outside.path(), model.root().join("multi/sub")).unwrap();
    std::fs::write(outside.path().join("b"), b"secret").unwrap();
    let link = root.join("multi/sub");
    assert_link_refused(
        storage.write(in_sub, model.block_data(in_sub)),
        &link,
        outside.path(),
    );
    assert_link_refused(storage.read(in_sub), &link, outside.path());
    assert_eq!(tree(outside.path()), ["b"]);
    assert_eq!(std::fs::read(outside.path().join("b")).unwrap(), b"secret");

    // A link leading inside the folder is refused as well.
    std::fs::remove_file(model.root().join("multi/sub")).unwrap();
    std::fs::create_dir(model.root().join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(
        model.root().join("elsewhere"),
        model.root().join("multi/sub"),
    )
    .unwrap();
    let elsewhere = model.root().join("elsewhere");
    assert_link_refused(
        storage.write(in_sub, model.block_data(in_sub)),
        &link,
        &elsewhere,
    );
    assert_eq!(tree(&elsewhere), Vec::<String>::new());

    // The file itself is a link: to a file outside, and to nothing (a write would create it).
    std::fs::remove_file(model.root().join("multi/sub")).unwrap();
    std::fs::create_dir(model.root().join("multi/sub")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("new"), model.root().join("multi/sub/b"))
        .unwrap();
    std::os::unix::fs::symlink(outside.path().join("b"), model.root().join("multi/d")).unwrap();
    assert_link_refused(
        storage.write(in_sub, model.block_data(in_sub)),
        &root.join("multi/sub/b"),
        outside.path(),
    );
    assert_link_refused(
        storage.write(in_d, model.block_data(in_d)),
        &root.join("multi/d"),
        outside.path(),
    );
    assert_link_refused(storage.read(in_d), &root.join("multi/d"), outside.path());
    assert_eq!(tree(outside.path()), ["b"]);
    assert_eq!(std::fs::read(outside.path().join("b")).unwrap(), b"secret");

    // Once writing works, the subfolder is swapped for a link: with one open file at most, the
    // next write to it opens it again and meets the link.
    std::fs::remove_file(model.root().join("multi/sub/b")).unwrap();
    std::fs::remove_file(model.root().join("multi/d")).unwrap();
    storage.write(in_sub, model.block_data(in_sub)).unwrap();
    storage.write(in_d, model.block_data(in_d)).unwrap();
    std::fs::rename(model.root().join("multi/sub"), model.root().join("moved")).unwrap();
    std::os::unix::fs::symlink(outside.path(), model.root().join("multi/sub")).unwrap();
    assert_link_refused(
        storage.write(in_sub, model.block_data(in_sub)),
        &link,
        outside.path(),
    );
    assert_eq!(tree(outside.path()), ["b"]);
    assert_eq!(std::fs::read(outside.path().join("b")).unwrap(), b"secret");
    // What was written before the swap stays where it was written.
    assert_eq!(
        std::fs::read(model.root().join("moved/b")).unwrap()[..16_383],
        model.block_data(in_sub)[1..]
    );
}

#[test]
fn links_are_refused_with_openat2() {
    links_are_refused(false);
}

#[test]
fn links_are_refused_with_the_per_component_fallback() {
    links_are_refused(true);
}

#[test]
fn missing_download_dir_is_refused() {
    // Proves the download folder is never created: a missing one (or a file) is a clear error.
    let model = Model::odd();
    let missing = model.root().join("nope");
    let err = FsStorage::open(&missing, model.info(), 4).unwrap_err();
    assert!(matches!(err, StorageError::NoDownloadDir { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("the download folder {} does not exist", missing.display())
    );
    assert!(!missing.exists());
    let file = model.root().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = FsStorage::open(&file, model.info(), 4).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("is a file, where the torrent needs a folder"),
        "{err}"
    );
}

#[test]
fn a_file_where_a_folder_is_needed_is_refused() {
    // Proves the layout is never forced onto an existing tree: a file in a folder's place (or a
    // folder in a file's place) is an error naming it, and is left untouched.
    let model = Model::odd();
    let storage = model.storage(4);
    std::fs::create_dir_all(model.root().join("multi")).unwrap();
    std::fs::write(model.root().join("multi/sub"), b"mine").unwrap();
    let block = model.info().layout.block(model.piece(0), 0).unwrap();
    let err = storage.write(block, model.block_data(block)).unwrap_err();
    assert!(
        matches!(&err, StorageError::WrongKind { path, .. } if path.ends_with("multi/sub")),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read(model.root().join("multi/sub")).unwrap(),
        b"mine"
    );
    // The first span (file `a`) was written before `sub` was met; now put a folder there.
    std::fs::remove_file(model.root().join("multi/a")).unwrap();
    std::fs::create_dir(model.root().join("multi/a")).unwrap();
    std::fs::remove_file(model.root().join("multi/sub")).unwrap();
    // A fresh storage: the first one still holds `a` open (see the module docs).
    let storage = model.storage(4);
    let err = storage.write(block, model.block_data(block)).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("is a folder, where the torrent needs a file"),
        "{err}"
    );
}

#[test]
fn open_files_stay_within_the_bound() {
    // Proves the handle cache never holds more than max_open_files, and files closed by eviction
    // reopen correctly.
    let files: Vec<(String, u64)> = (0..12).map(|i| (format!("f{i:02}"), 5_000 + i)).collect();
    let files: Vec<(&str, u64)> = files.iter().map(|(p, l)| (p.as_str(), *l)).collect();
    let model = Model::new(&files, 16_384);
    let storage = model.storage(3);
    for block in model.blocks() {
        storage.write(block, model.block_data(block)).unwrap();
        assert!(storage.open_file_count() <= 3);
    }
    assert_eq!(storage.open_file_count(), 3);
    for block in model.blocks().into_iter().rev() {
        assert_eq!(storage.read(block).unwrap(), model.block_data(block));
        assert!(storage.open_file_count() <= 3);
    }
    storage.flush().unwrap();
    assert!(storage.open_file_count() <= 3);
    // A written file deleted since (its handle long evicted) does not make a flush fail.
    storage
        .write(model.blocks()[0], model.block_data(model.blocks()[0]))
        .unwrap();
    for block in model.blocks().into_iter().rev().take(8) {
        storage.write(block, model.block_data(block)).unwrap();
    }
    std::fs::remove_file(model.file_path(0)).unwrap();
    storage.flush().unwrap();
    storage
        .write(model.blocks()[0], model.block_data(model.blocks()[0]))
        .unwrap();
    let have = storage
        .verify(&model.info().pieces, None, 4, &mut |_| {})
        .unwrap();
    assert!(have.is_complete());
    assert!(storage.open_file_count() <= 3);
}

#[test]
fn verify_finds_exactly_the_pieces_written() {
    // Proves verify reports the complete, correct pieces and nothing else: not a piece with a
    // block missing, not a corrupt one, not pieces whose files are missing; `only` limits it.
    let model = Model::new(&[("x", 100_000), ("y/z", 60_000), ("w", 1)], 16_384);
    let info = model.info();
    let storage = model.storage(2);
    // Nothing on disk: no error, nothing found, nothing created.
    let mut calls = 0;
    let have = storage
        .verify(&info.pieces, None, 3, &mut |_| calls += 1)
        .unwrap();
    assert!(have.is_clear());
    assert!(calls >= 1);
    assert_eq!(tree(model.root()), Vec::<String>::new());

    let written = [0u32, 2, 5, 7, 9];
    for &p in &written {
        model.write_piece(&storage, model.piece(p));
    }
    // Piece 3: one block missing (a hole in a sparse file reads as zeros).
    let p3 = model.piece(3);
    for block in info.layout.blocks(p3).skip(1) {
        storage.write(block, model.block_data(block)).unwrap();
    }
    // Piece 4: corrupt.
    let p4 = model.piece(4);
    for block in info.layout.blocks(p4) {
        let mut data = model.block_data(block).to_vec();
        data[0] ^= 1;
        storage.write(block, &data).unwrap();
    }
    let mut last = 0;
    let have = storage
        .verify(&info.pieces, None, 3, &mut |done| last = done)
        .unwrap();
    assert_eq!(have.ones().collect::<Vec<_>>(), written);
    assert_eq!(last, info.layout.total_length());

    let mut only = Bitfield::new(info.layout.piece_count());
    for p in [2, 3, 4, 8] {
        only.set(p);
    }
    let have = storage
        .verify(&info.pieces, Some(&only), 2, &mut |_| {})
        .unwrap();
    assert_eq!(have.ones().collect::<Vec<_>>(), [2]);
}

#[test]
fn concurrent_writes_land_correctly() {
    // Proves writes from several threads at once (sharing a small handle cache) all land.
    let model = Model::odd();
    let big = Model::new(
        &[("p", 70_001), ("q", 3), ("r/s", 90_000), ("t", 16_384)],
        16_384,
    );
    for model in [model, big] {
        let storage = Arc::new(model.storage(2));
        let blocks = model.blocks();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let storage = storage.clone();
                let blocks = &blocks;
                let model = &model;
                scope.spawn(move || {
                    for block in blocks.iter().skip(t).step_by(4) {
                        storage.write(*block, model.block_data(*block)).unwrap();
                    }
                });
            }
        });
        storage.flush().unwrap();
        for piece in model.info().layout.pieces() {
            assert_eq!(
                storage.hash_piece(piece).unwrap(),
                model.info().pieces[piece.as_usize()]
            );
        }
    }
}

#[test]
fn perform_answers_each_disk_op() {
    // Proves perform maps each DiskOp to its DiskDone (a read back hashes each block as stored),
    // with a failure worded for a person.
    let model = Model::odd();
    let storage = model.storage(4);
    let p0 = model.piece(0);
    let block = model.info().layout.block(p0, 0).unwrap();
    let conn = ConnId(7);
    assert_eq!(
        storage.perform(DiskOp::Hash { piece: p0 }),
        DiskDone::Hashed {
            piece: p0,
            result: Err(DiskError(format!(
                "{} is missing",
                model.file_path(0).display()
            ))),
        }
    );
    let data = bytes::Bytes::copy_from_slice(model.block_data(block));
    assert_eq!(
        storage.perform(DiskOp::Write {
            block,
            data: data.clone()
        }),
        DiskDone::Written {
            block,
            result: Ok(())
        }
    );
    assert_eq!(
        storage.perform(DiskOp::Read { conn, block }),
        DiskDone::Read {
            conn,
            block,
            result: Ok(data)
        }
    );
    assert_eq!(
        storage.perform(DiskOp::Hash { piece: p0 }),
        DiskDone::Hashed {
            piece: p0,
            result: Ok(model.info().pieces[0])
        }
    );
    let blocks: Vec<_> = model.info().layout.blocks(p0).collect();
    let digests = blocks
        .iter()
        .map(|b| Sha1::digest(model.block_data(*b)).into())
        .collect();
    assert_eq!(
        storage.perform(DiskOp::HashBlocks { piece: p0, blocks }),
        DiskDone::BlockHashes {
            piece: p0,
            result: Ok(digests)
        }
    );
}

#[test]
fn wrong_block_length_is_refused() {
    // Proves a write whose data is not the block's length writes nothing.
    let model = Model::odd();
    let storage = model.storage(4);
    let block = model.info().layout.block(model.piece(0), 0).unwrap();
    let err = storage.write(block, &[1, 2, 3]).unwrap_err();
    assert!(
        matches!(err, StorageError::WrongBlockLength { got: 3, .. }),
        "{err:?}"
    );
    assert_eq!(tree(model.root()), Vec::<String>::new());
}

#[test]
fn os_errors_are_worded_for_people() {
    // Proves the common OS refusals read as a person would say them, with the path.
    let cases = [
        (
            io::ErrorKind::StorageFull,
            "writing",
            "disk full writing /x/y",
        ),
        (
            io::ErrorKind::PermissionDenied,
            "opening",
            "permission denied opening /x/y",
        ),
        (
            io::ErrorKind::ReadOnlyFilesystem,
            "creating folder",
            "read-only file system creating folder /x/y",
        ),
        (
            io::ErrorKind::QuotaExceeded,
            "writing",
            "disk quota exceeded writing /x/y",
        ),
    ];
    for (kind, doing, text) in cases {
        assert_eq!(
            StorageError::io(doing, "/x/y", io::Error::from(kind)).to_string(),
            text
        );
    }
    let other = StorageError::io("reading", "/x/y", io::Error::other("weird"));
    assert_eq!(other.to_string(), "error reading /x/y: weird");
}
