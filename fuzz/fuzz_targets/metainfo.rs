//! Fuzzes `Metainfo::from_bytes`: never panics, and an accepted torrent has a consistent layout (one hash per piece, each piece's file spans add up to its length, every block passes `block_at`, file pieces in range), an info hash equal to the SHA-1 of its `info` bytes, and safe file paths (each component a plain name, so the path joined under a download folder stays inside it).
#![no_main]

use std::path::{Component, Path};

use bt_protocol::metainfo::{InfoHash, MAX_COMPONENT_LEN, Metainfo};
use libfuzzer_sys::fuzz_target;

/// Every component of `path` is a plain name: not empty, `.` or `..`, no `/`, `\` or NUL, at
/// most `MAX_COMPONENT_LEN` bytes; so `download/<path>` is a file inside `download`.
fn assert_safe_path(path: &[String]) {
    assert!(!path.is_empty(), "a file has a path");
    for component in path {
        assert!(
            !component.is_empty() && component != "." && component != "..",
            "unsafe component {component:?} in {path:?}"
        );
        assert!(
            !component.contains(['/', '\\', '\0']),
            "separator or NUL in {component:?} of {path:?}"
        );
        assert!(
            component.len() <= MAX_COMPONENT_LEN,
            "{component:?} too long"
        );
    }
    let root = Path::new("/download");
    let mut joined = root.to_path_buf();
    joined.extend(path);
    assert!(joined.starts_with(root), "{path:?} leaves the folder");
    let inside: Vec<Component<'_>> = joined
        .strip_prefix(root)
        .expect("under root")
        .components()
        .collect();
    assert_eq!(
        inside.len(),
        path.len(),
        "{path:?} joins as one component each"
    );
    assert!(
        inside.iter().all(|c| matches!(c, Component::Normal(_))),
        "{path:?} joins with a non-plain component"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Metainfo::from_bytes(data) else {
        return;
    };
    let layout = &m.info.layout;

    assert_eq!(
        m.info.pieces.len(),
        layout.piece_count() as usize,
        "one piece hash per piece"
    );
    assert_eq!(
        m.info_hash,
        InfoHash::of_info_bytes(&m.info_bytes),
        "info hash is the SHA-1 of info_bytes"
    );
    assert_eq!(m.info.files.len(), layout.file_count(), "files vs layout");
    for file in &m.info.files {
        assert_safe_path(&file.path);
    }
    if !m.info.single_file {
        assert!(
            m.info.files.iter().all(|f| f.path[0] == m.info.name),
            "a multi-file torrent's files lie under its name"
        );
    }
    let files_total: u64 = m.info.files.iter().map(|f| f.length).sum();
    assert_eq!(files_total, layout.total_length(), "file lengths vs layout");

    let mut stream = 0u64;
    for piece in layout.pieces() {
        let piece_len = layout.piece_len(piece);
        assert!(piece_len > 0, "piece {piece} is empty");
        assert_eq!(layout.piece_offset(piece), stream, "piece {piece} offset");

        let mut at = 0u32;
        for span in layout.piece_spans(piece) {
            assert!(span.len > 0, "empty span in piece {piece}");
            assert_eq!(
                span.piece_offset, at,
                "spans of piece {piece} are contiguous"
            );
            let (_, file_len) = layout.file_range(span.file).expect("span file in range");
            assert!(
                span.file_offset + u64::from(span.len) <= file_len,
                "span past the end of file {}",
                span.file
            );
            at += span.len;
        }
        assert_eq!(at, piece_len, "spans of piece {piece} sum to its length");

        let mut block_total = 0u64;
        for block in layout.blocks(piece) {
            assert_eq!(
                layout.block_at(piece.get(), block.offset, block.len),
                Some(block),
                "block_at refuses a block of piece {piece}"
            );
            block_total += u64::from(block.len);
        }
        assert_eq!(block_total, u64::from(piece_len), "blocks of piece {piece}");
        stream += u64::from(piece_len);
    }
    assert_eq!(stream, layout.total_length(), "pieces cover the data");

    for file in 0..layout.file_count() {
        let pieces = layout.file_pieces(file);
        assert!(
            pieces.end <= layout.piece_count(),
            "file {file} pieces in range"
        );
    }
});
