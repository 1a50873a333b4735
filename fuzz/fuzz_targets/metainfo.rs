//! Fuzzes `Metainfo::from_bytes`: never panics, and an accepted torrent has a consistent layout (one hash per piece, each piece's file spans add up to its length, every block passes `block_at`, file pieces in range) and an info hash equal to the SHA-1 of its `info` bytes.
#![no_main]

use bt_protocol::metainfo::{InfoHash, Metainfo};
use libfuzzer_sys::fuzz_target;

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
