//! Tests of `.torrent` parsing: what is accepted, and one test per refusal.

use super::*;
use crate::bencode::{Dict, Value, encode};

/// A valid multi-file torrent's root dictionary: files of 5 and 3 bytes in 4-byte pieces.
fn multi() -> Dict<'static> {
    let mut info = Dict::new();
    info.insert(&b"name"[..], Value::string("top"));
    info.insert(&b"piece length"[..], Value::Int(4));
    info.insert(&b"pieces"[..], Value::owned_bytes(vec![7u8; 40]));
    info.insert(
        &b"files"[..],
        Value::List(vec![file(&["a", "b.txt"], 5), file(&["c"], 3)]),
    );
    let mut root = Dict::new();
    root.insert(&b"announce"[..], Value::string("http://t.example/announce"));
    root.insert(&b"info"[..], Value::Dict(info));
    root
}

fn file(path: &[&str], length: i64) -> Value<'static> {
    let mut d = Dict::new();
    d.insert(&b"length"[..], Value::Int(length));
    d.insert(
        &b"path"[..],
        Value::List(path.iter().map(|c| Value::string(*c)).collect()),
    );
    Value::Dict(d)
}

/// `multi()` with `info` changed by `f`.
fn with_info(f: impl FnOnce(&mut Dict<'static>)) -> Vec<u8> {
    let mut root = multi();
    let Some(Value::Dict(mut info)) = root.get(b"info").cloned() else {
        unreachable!("multi() has an info dict")
    };
    f(&mut info);
    root.insert(&b"info"[..], Value::Dict(info));
    encode(&Value::Dict(root)).unwrap()
}

fn refused(bytes: &[u8]) -> MetainfoError {
    Metainfo::from_bytes(bytes).expect_err("torrent must be refused")
}

#[test]
fn parses_a_multi_file_torrent() {
    // Proves the fields and the layout of a plain multi-file torrent.
    let bytes = encode(&Value::Dict(multi())).unwrap();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(m.info.name, "top");
    assert!(!m.info.single_file);
    assert_eq!(m.info.files[0].path, ["top", "a", "b.txt"]);
    assert_eq!(m.info.layout.total_length(), 8);
    assert_eq!(m.info.layout.piece_count(), 2);
    assert_eq!(
        m.trackers,
        vec![vec!["http://t.example/announce".to_owned()]]
    );
    assert!(m.warnings.is_empty());
}

#[test]
fn info_hash_covers_the_exact_bytes_even_unsorted() {
    // Proves the info hash is taken over the file's own bytes of `info`, not a sorted re-encoding.
    let info = b"d6:lengthi3e4:name1:x12:piece lengthi4e6:pieces20:AAAAAAAAAAAAAAAAAAAAe";
    let unsorted = b"d4:name1:x6:lengthi3e12:piece lengthi4e6:pieces20:AAAAAAAAAAAAAAAAAAAAe";
    let wrap = |i: &[u8]| [&b"d4:info"[..], i, b"e"].concat();
    let sorted_m = Metainfo::from_bytes(&wrap(info)).unwrap();
    let unsorted_m = Metainfo::from_bytes(&wrap(unsorted)).unwrap();
    assert_eq!(sorted_m.info_hash, InfoHash::of_info_bytes(info));
    assert_eq!(unsorted_m.info_hash, InfoHash::of_info_bytes(unsorted));
    assert_ne!(sorted_m.info_hash, unsorted_m.info_hash);
    assert_eq!(unsorted_m.info_bytes, unsorted);
    assert!(
        unsorted_m.warnings[0].contains("not sorted"),
        "{:?}",
        unsorted_m.warnings
    );
}

#[test]
fn announce_list_tiers_win_over_announce() {
    // Proves BEP 12: tiers in order, duplicates and bad entries dropped, announce then ignored.
    let mut root = multi();
    root.insert(
        &b"announce-list"[..],
        Value::List(vec![
            Value::List(vec![
                Value::string("udp://a:1"),
                Value::string("http://b/ann"),
            ]),
            Value::List(vec![]),
            Value::List(vec![
                Value::string("udp://a:1"),
                Value::Int(3),
                Value::string("udp://c:2"),
            ]),
        ]),
    );
    let m = Metainfo::from_bytes(&encode(&Value::Dict(root)).unwrap()).unwrap();
    assert_eq!(
        m.trackers,
        vec![
            vec!["udp://a:1".to_owned(), "http://b/ann".to_owned()],
            vec!["udp://c:2".to_owned()]
        ]
    );
    assert_eq!(m.warnings.len(), 1);
}

#[test]
fn extension_fields_are_read() {
    // Proves private (BEP 27), url-list as string or list (BEP 19), attr (BEP 47), utf-8 variants.
    let bytes = with_info(|info| {
        info.insert(&b"private"[..], Value::Int(1));
        info.insert(&b"name.utf-8"[..], Value::string("tôp"));
        info.insert(
            &b"files"[..],
            Value::List(vec![file(&["a"], 5), {
                let Value::Dict(mut d) = file(&[".pad", "3"], 3) else {
                    unreachable!()
                };
                d.insert(&b"attr"[..], Value::string("p"));
                Value::Dict(d)
            }]),
        );
    });
    let mut root = crate::bencode::decode(&bytes, Default::default())
        .unwrap()
        .value
        .into_owned();
    let Value::Dict(d) = &mut root else {
        unreachable!()
    };
    d.insert(&b"url-list"[..], Value::string("http://seed/"));
    d.insert(&b"comment"[..], Value::string("hi"));
    d.insert(&b"creation date"[..], Value::Int(1_700_000_000));
    let m = Metainfo::from_bytes(&encode(&root).unwrap()).unwrap();
    assert!(m.info.private);
    assert_eq!(m.info.name, "tôp");
    assert_eq!(m.web_seeds, vec!["http://seed/".to_owned()]);
    assert!(m.info.files[1].attr.padding);
    assert_eq!(m.comment.as_deref(), Some("hi"));
    assert_eq!(m.creation_date, Some(1_700_000_000));
}

#[test]
fn padding_files_may_share_a_path() {
    // Proves BEP 47 pad files named alike (as libtorrent names them) are not duplicates.
    let pad = || {
        let Value::Dict(mut d) = file(&[".pad", "2"], 2) else {
            unreachable!()
        };
        d.insert(&b"attr"[..], Value::string("p"));
        Value::Dict(d)
    };
    let bytes = with_info(|info| {
        info.insert(
            &b"files"[..],
            Value::List(vec![file(&["a"], 2), pad(), file(&["b"], 2), pad()]),
        );
    });
    assert!(Metainfo::from_bytes(&bytes).is_ok());
}

#[test]
fn build_torrent_round_trips() {
    // Proves what bt create writes parses back to the same files, trackers and flags.
    let files = [
        NewFile {
            path: vec!["d".into(), "x".into()],
            length: 5,
        },
        NewFile {
            path: vec!["y".into()],
            length: 0,
        },
        NewFile {
            path: vec!["z".into()],
            length: 3,
        },
    ];
    let options = TorrentOptions {
        trackers: vec![
            vec!["http://a/".into()],
            vec!["udp://b:1".into(), "udp://c:1".into()],
        ],
        web_seeds: vec!["http://w/".into()],
        private: true,
        comment: Some("c".into()),
        created_by: Some("bt".into()),
        creation_date: None,
    };
    let (bytes, m) = build_torrent("root", 4, &files, &[[1; 20], [2; 20]], &options).unwrap();
    assert_eq!(m.trackers, options.trackers);
    assert_eq!(m.info.files.len(), 3);
    assert_eq!(m.info.files[0].path, ["root", "d", "x"]);
    assert!(m.info.private);
    assert!(m.warnings.is_empty());
    let again = build_torrent("root", 4, &files, &[[1; 20], [2; 20]], &options)
        .unwrap()
        .0;
    assert_eq!(bytes, again);
    // Single-file form.
    let single = [NewFile {
        path: vec![],
        length: 9,
    }];
    let (_, m) = build_torrent(
        "f.bin",
        4,
        &single,
        &[[0; 20]; 3],
        &TorrentOptions::default(),
    )
    .unwrap();
    assert!(m.info.single_file);
    assert_eq!(m.info.files[0].path, ["f.bin"]);
}

// ---- One test per refusal. ----

#[test]
fn refuses_non_bencode() {
    // Proves broken bencode is refused with its byte offset.
    let e = refused(b"d4:infod");
    assert!(matches!(e, MetainfoError::Bencode(_)));
    assert!(e.to_string().contains("byte 8"), "{e}");
}

#[test]
fn refuses_a_non_dictionary() {
    // Proves a top level that is not a dictionary is refused.
    assert_eq!(refused(b"li1ee"), MetainfoError::NotADictionary("list"));
}

#[test]
fn refuses_missing_info() {
    // Proves a torrent without `info` is refused.
    assert_eq!(refused(b"d8:announce1:xe"), MetainfoError::Missing("info"));
}

#[test]
fn refuses_info_of_wrong_type() {
    // Proves `info` must be a dictionary.
    assert!(matches!(
        refused(b"d4:infoi1ee"),
        MetainfoError::WrongType { .. }
    ));
}

#[test]
fn refuses_pieces_not_multiple_of_20() {
    // Proves `pieces` of a length not divisible by 20 is refused.
    let b = with_info(|i| {
        i.insert(&b"pieces"[..], Value::owned_bytes(vec![0u8; 39]));
    });
    assert_eq!(refused(&b), MetainfoError::PiecesNotMultipleOf20(39));
}

#[test]
fn refuses_pieces_not_matching_length() {
    // Proves a piece count that disagrees with the files' total length is refused.
    let b = with_info(|i| {
        i.insert(&b"pieces"[..], Value::owned_bytes(vec![0u8; 60]));
    });
    assert!(matches!(
        refused(&b),
        MetainfoError::PieceCountMismatch {
            found: 3,
            expected: 2,
            ..
        }
    ));
}

#[test]
fn refuses_zero_piece_length() {
    // Proves piece length 0 is refused.
    let b = with_info(|i| {
        i.insert(&b"piece length"[..], Value::Int(0));
    });
    assert_eq!(refused(&b), MetainfoError::PieceLengthNotPositive(0));
}

#[test]
fn refuses_negative_piece_length() {
    // Proves a negative piece length is refused.
    let b = with_info(|i| {
        i.insert(&b"piece length"[..], Value::Int(-16384));
    });
    assert_eq!(refused(&b), MetainfoError::PieceLengthNotPositive(-16384));
}

#[test]
fn refuses_absurd_piece_length() {
    // Proves a piece length over 512 MiB is refused.
    let b = with_info(|i| {
        i.insert(&b"piece length"[..], Value::Int(1 << 40));
    });
    assert_eq!(
        refused(&b),
        MetainfoError::Layout(LayoutError::PieceLengthTooLarge(1 << 40))
    );
}

#[test]
fn refuses_negative_file_length() {
    // Proves a negative file length is refused, naming the file.
    let b = with_info(|i| {
        i.insert(&b"files"[..], Value::List(vec![file(&["a"], -1)]));
    });
    assert_eq!(
        refused(&b),
        MetainfoError::NegativeLength {
            path: "top/a".into(),
            length: -1
        }
    );
}

#[test]
fn refuses_overflowing_lengths() {
    // Proves file lengths whose sum overflows are refused.
    let b = with_info(|i| {
        i.insert(
            &b"files"[..],
            Value::List(vec![file(&["a"], i64::MAX), file(&["b"], i64::MAX)]),
        );
    });
    assert_eq!(refused(&b), MetainfoError::Layout(LayoutError::TooLarge));
}

#[test]
fn refuses_empty_torrent() {
    // Proves a torrent with no bytes at all is refused.
    let b = with_info(|i| {
        i.insert(&b"files"[..], Value::List(vec![file(&["a"], 0)]));
        i.insert(&b"pieces"[..], Value::owned_bytes(Vec::new()));
    });
    assert_eq!(refused(&b), MetainfoError::Layout(LayoutError::Empty));
}

#[test]
fn refuses_empty_files_list() {
    // Proves a multi-file torrent with no files is refused.
    let b = with_info(|i| {
        i.insert(&b"files"[..], Value::List(vec![]));
    });
    assert_eq!(refused(&b), MetainfoError::NoFiles);
}

#[test]
fn refuses_empty_path_list() {
    // Proves a file with an empty `path` list is refused.
    let b = with_info(|i| {
        i.insert(
            &b"files"[..],
            Value::List(vec![file(&["a"], 5), file(&[], 3)]),
        );
    });
    assert_eq!(refused(&b), MetainfoError::EmptyPath(1));
}

fn unsafe_component(path: &[&str]) -> (String, &'static str) {
    let b = with_info(|i| {
        i.insert(&b"files"[..], Value::List(vec![file(path, 8)]));
    });
    match refused(&b) {
        MetainfoError::UnsafePath { component, why, .. } => (component, why),
        other => panic!("expected UnsafePath, got {other:?}"),
    }
}

#[test]
fn refuses_a_component_longer_than_file_systems_allow() {
    // Proves a 256-byte name is refused up front while a 255-byte one is accepted.
    let long = "a".repeat(256);
    let (component, why) = unsafe_component(&["ok", &long]);
    assert_eq!(component, long);
    assert!(why.contains("longer than 255 bytes"), "{why}");
    let fits = "a".repeat(255);
    let b = with_info(|i| {
        i.insert(&b"files"[..], Value::List(vec![file(&["ok", &fits], 8)]));
    });
    assert!(Metainfo::from_bytes(&b).is_ok());
}

#[test]
fn refuses_empty_component() {
    // Proves an empty path component is refused.
    assert_eq!(unsafe_component(&["a", "", "b"]).0, "");
}

#[test]
fn refuses_dot_component() {
    // Proves a `.` component is refused.
    assert_eq!(unsafe_component(&["a", "."]).0, ".");
}

#[test]
fn refuses_dotdot_component() {
    // Proves a `..` component, which would climb out of the download folder, is refused.
    assert_eq!(unsafe_component(&["..", "etc", "passwd"]).0, "..");
}

#[test]
fn refuses_absolute_component() {
    // Proves a component that is an absolute path is refused.
    assert_eq!(
        unsafe_component(&["/etc/passwd"]).1,
        "contains a path separator"
    );
}

#[test]
fn refuses_slash_in_component() {
    // Proves a `/` inside a component is refused.
    assert_eq!(unsafe_component(&["a/b"]).1, "contains a path separator");
}

#[test]
fn refuses_backslash_in_component() {
    // Proves a `\` inside a component (a separator on Windows) is refused.
    assert_eq!(unsafe_component(&["..\\x"]).1, "contains a path separator");
}

#[test]
fn refuses_nul_in_component() {
    // Proves a NUL byte in a component is refused.
    assert_eq!(unsafe_component(&["a\0b"]).1, "contains a NUL byte");
}

#[test]
fn refuses_unsafe_name() {
    // Proves the torrent name, which becomes a path itself, is checked like a component.
    let b = with_info(|i| {
        i.insert(&b"name"[..], Value::string(".."));
    });
    assert!(matches!(refused(&b), MetainfoError::UnsafePath { .. }));
    let b = with_info(|i| {
        i.insert(&b"name"[..], Value::string("/tmp/x"));
    });
    assert!(matches!(refused(&b), MetainfoError::UnsafePath { .. }));
}

#[test]
fn refuses_duplicate_paths() {
    // Proves two files on one path are refused.
    let b = with_info(|i| {
        i.insert(
            &b"files"[..],
            Value::List(vec![file(&["a"], 5), file(&["a"], 3)]),
        );
    });
    assert_eq!(refused(&b), MetainfoError::DuplicatePath("top/a".into()));
}

#[test]
fn refuses_file_that_is_also_a_folder() {
    // Proves a path used both as a file and as a folder is refused.
    let b = with_info(|i| {
        i.insert(
            &b"files"[..],
            Value::List(vec![file(&["a"], 5), file(&["a", "b"], 3)]),
        );
    });
    assert_eq!(refused(&b), MetainfoError::FileIsFolder("top/a".into()));
}

#[test]
fn refuses_length_and_files_together() {
    // Proves an info with both `length` and `files` is refused as ambiguous.
    let b = with_info(|i| {
        i.insert(&b"length"[..], Value::Int(8));
    });
    assert_eq!(refused(&b), MetainfoError::LengthAndFiles);
}

#[test]
fn refuses_missing_name() {
    // Proves `info.name` is required.
    assert_eq!(
        refused(&with_info(|i| {
            *i = {
                let mut d = Dict::new();
                d.insert(&b"piece length"[..], Value::Int(4));
                d
            };
        })),
        MetainfoError::Missing("info.name")
    );
}

#[test]
fn refuses_missing_pieces() {
    // Proves `info.pieces` is required, and a v2-only torrent is named as such.
    let b = with_info(|i| {
        *i = {
            let mut d = Dict::new();
            d.insert(&b"name"[..], Value::string("n"));
            d.insert(&b"piece length"[..], Value::Int(4));
            d.insert(&b"length"[..], Value::Int(4));
            d
        };
    });
    assert_eq!(refused(&b), MetainfoError::Missing("info.pieces"));
    let b = with_info(|i| {
        *i = {
            let mut d = Dict::new();
            d.insert(&b"name"[..], Value::string("n"));
            d.insert(&b"piece length"[..], Value::Int(16384));
            d.insert(&b"file tree"[..], Value::Dict(Dict::new()));
            d.insert(&b"meta version"[..], Value::Int(2));
            d
        };
    });
    assert_eq!(refused(&b), MetainfoError::V2Only);
}

#[test]
fn refuses_too_large_files() {
    // Proves a torrent file beyond the size bound is refused before decoding.
    let big = vec![b'0'; MAX_TORRENT_FILE_SIZE + 1];
    assert_eq!(
        refused(&big),
        MetainfoError::FileTooLarge(MAX_TORRENT_FILE_SIZE + 1)
    );
}

#[test]
fn refuses_wrong_types() {
    // Proves wrongly typed required fields name the key and both types.
    let b = with_info(|i| {
        i.insert(&b"piece length"[..], Value::string("16384"));
    });
    assert_eq!(
        refused(&b).to_string(),
        "`info.piece length` is a byte string, expected an integer"
    );
}

#[test]
fn an_info_dictionary_alone_parses_as_in_a_torrent_file() {
    // Proves Info/Metainfo::from_info_bytes (BEP 9 metadata): the same Info as from the
    // `.torrent` holding it, the info hash of the bytes, no trackers; an unsafe path and a
    // non-dictionary are refused as in a file.
    let root = multi();
    let torrent = Metainfo::from_bytes(&encode(&Value::Dict(root.clone())).unwrap()).unwrap();
    let info_bytes = torrent.info_bytes.clone();
    let alone = Metainfo::from_info_bytes(&info_bytes).unwrap();
    assert_eq!(alone.info, torrent.info);
    assert_eq!(alone.info_hash, torrent.info_hash);
    assert!(alone.trackers.is_empty());
    assert_eq!(Info::from_info_bytes(&info_bytes).unwrap(), torrent.info);

    let mut info = Dict::new();
    info.insert(&b"name"[..], Value::string(".."));
    info.insert(&b"piece length"[..], Value::Int(4));
    info.insert(&b"pieces"[..], Value::owned_bytes(vec![7u8; 20]));
    info.insert(&b"length"[..], Value::Int(3));
    let bad = encode(&Value::Dict(info)).unwrap();
    assert!(matches!(
        Info::from_info_bytes(&bad),
        Err(MetainfoError::UnsafePath { .. })
    ));
    assert!(matches!(
        Info::from_info_bytes(b"li1ee"),
        Err(MetainfoError::WrongType { .. })
    ));
    assert!(matches!(
        Info::from_info_bytes(b"d"),
        Err(MetainfoError::Bencode(_))
    ));
}
