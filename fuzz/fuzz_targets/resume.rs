//! Fuzzes the fast-resume loader (`bt_runtime::resume::ResumeState::from_bytes`, what
//! `ResumeState::load` runs on a resume file's bytes). The first byte picks one of four torrents
//! from `tests/fixtures` (single-file, multi-file, multi-file with BEP 47 padding files); the rest
//! is the resume file. Nothing may panic, and a state that loads:
//! - covers exactly the torrent's pieces, and has one file priority per file if it has any;
//! - round-trips through what `save` writes: `to_bytes` reads back equal, and is a fixed point;
//! - vouches, given the stamps it saved, for its saved pieces less those lying in a file it has
//!   no stamp for; one file's stamp changed withdraws exactly that file's pieces more; with no
//!   stamps at all it vouches only for pieces lying wholly in padding files.
#![no_main]

use std::sync::LazyLock;

use bt_protocol::bencode::{DecodeLimits, Value, decode};
use bt_protocol::metainfo::Metainfo;
use bt_protocol::torrent::Bitfield;
use bt_runtime::resume::{FileStamp, ResumeState};
use libfuzzer_sys::fuzz_target;

static TORRENTS: LazyLock<[Metainfo; 4]> = LazyLock::new(|| {
    [
        &include_bytes!("../../tests/fixtures/mktorrent-single.torrent")[..],
        &include_bytes!("../../tests/fixtures/mktorrent-multi.torrent")[..],
        &include_bytes!("../../tests/fixtures/libtorrent-hybrid-pad.torrent")[..],
        &include_bytes!("../../tests/fixtures/transmission-multi.torrent")[..],
    ]
    .map(|bytes| Metainfo::from_bytes(bytes).expect("a fixture parses"))
});

fuzz_target!(|data: &[u8]| {
    let [control, resume @ ..] = data else {
        return;
    };
    let meta = &TORRENTS[usize::from(control % 4)];
    let (info, hash) = (&meta.info, &meta.info_hash);
    let Some(state) = ResumeState::from_bytes(resume, hash, info) else {
        return;
    };
    let piece_count = info.layout.piece_count();
    assert_eq!(state.saved_pieces().len(), piece_count);
    if let Some(chosen) = state.priorities() {
        assert_eq!(chosen.len(), info.files.len(), "one priority per file");
    }

    let saved = state.to_bytes(hash);
    let again = ResumeState::from_bytes(&saved, hash, info).expect("what save writes loads");
    assert_eq!(again, state, "a loaded state round-trips through save");
    assert_eq!(again.to_bytes(hash), saved, "save is a fixed point");

    let stamps = saved_stamps(&saved);
    assert_eq!(stamps.len(), info.files.len());
    let without = |files: &mut dyn Iterator<Item = usize>| {
        let mut expected = state.saved_pieces().clone();
        for f in files {
            for p in info.layout.file_pieces(f) {
                expected.clear(p);
            }
        }
        expected
    };
    let unstamped = |f: &usize| !info.files[*f].attr.padding && stamps[*f].is_none();
    let vouched = state.vouched_pieces(&stamps);
    assert_eq!(vouched, without(&mut (0..stamps.len()).filter(unstamped)));

    // One stamped file changed: its pieces go too.
    if let Some(changed) = (0..stamps.len()).find(|f| stamps[*f].is_some()) {
        let mut now = stamps.clone();
        let stamp = now[changed].as_mut().expect("stamped");
        stamp.mtime_nanos = (stamp.mtime_nanos + 1) % 1_000_000_000;
        let expected = without(&mut (0..stamps.len()).filter(|f| unstamped(f) || *f == changed));
        assert_eq!(state.vouched_pieces(&now), expected);
    }

    // No stamps: only pieces wholly in padding files stay vouched for.
    let blind = state.vouched_pieces(&[]);
    assert_eq!(blind.len(), piece_count);
    for piece in info.layout.pieces() {
        if blind.get(piece.get()) {
            assert!(state.saved_pieces().get(piece.get()));
            assert!(
                info.layout
                    .piece_spans(piece)
                    .all(|span| info.files[span.file].attr.padding),
                "piece {piece} vouched for without stamps"
            );
        }
    }
    assert!(subset(&blind, &vouched) && subset(&vouched, state.saved_pieces()));
});

/// The `files` stamps of a resume file bt wrote.
fn saved_stamps(bytes: &[u8]) -> Vec<Option<FileStamp>> {
    let decoded = decode(bytes, DecodeLimits::default()).expect("bencode");
    assert!(decoded.warnings.is_empty(), "canonical bencode");
    let root = decoded.value.as_dict().expect("a dictionary");
    let int = |d: &bt_protocol::bencode::Dict<'_>, key: &[u8]| {
        d.get(key).and_then(Value::as_int).expect("an integer")
    };
    let files = root.get(b"files").and_then(Value::as_list).expect("files");
    files
        .iter()
        .map(|entry| {
            let d = entry.as_dict().expect("a dictionary per file");
            (!d.is_empty()).then(|| FileStamp {
                length: int(d, b"length") as u64,
                mtime_secs: int(d, b"mtime"),
                mtime_nanos: int(d, b"mtime ns") as u32,
            })
        })
        .collect()
}

fn subset(a: &Bitfield, b: &Bitfield) -> bool {
    a.ones().all(|p| b.get(p))
}
