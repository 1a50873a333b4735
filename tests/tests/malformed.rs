//! Malformed torrents through the real CLI: every one exits non-zero with exactly one line on
//! stderr naming the problem, never a panic or a backtrace.

use bt_tests::{TempDir, fixtures_dir, run_bt};

/// A single-file torrent's bytes around a given `info` body (without the `d`/`e`).
fn torrent_with_info(info_body: &str) -> Vec<u8> {
    format!("d8:announce22:http://t.example/annce4:infod{info_body}ee").into_bytes()
}

fn pieces(n: usize) -> String {
    format!("6:pieces{}:{}", n * 20, "A".repeat(n * 20))
}

fn files_info(files: &str, n_pieces: usize) -> String {
    format!(
        "5:filesl{files}e4:name3:top12:piece lengthi16384e{}",
        pieces(n_pieces)
    )
}

fn file(path: &[&str], len: i64) -> String {
    let comps: String = path.iter().map(|c| format!("{}:{c}", c.len())).collect();
    format!("d6:lengthi{len}e4:pathl{comps}ee")
}

#[test]
fn every_malformed_torrent_gets_one_line_naming_the_problem() {
    // Proves each refusal reaches the user as one `bt: error:` line with the key phrase, exit 1.
    let fixture = std::fs::read(fixtures_dir().join("mktorrent-single.torrent")).unwrap();
    let truncated = fixture[..fixture.len() / 2].to_vec();
    let ok_info = |extra: &str| {
        format!(
            "6:lengthi16384e4:name1:x12:piece lengthi16384e{}{extra}",
            pieces(1)
        )
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not-bencode",
            b"hello world".to_vec(),
            "byte 0: unexpected byte",
        ),
        ("empty-file", Vec::new(), "input is empty"),
        ("truncated", truncated, "runs past the end of the input"),
        (
            "ends-inside-dict",
            b"d4:infod4:name1:x".to_vec(),
            "input ends in the middle of a dictionary",
        ),
        ("top-level-list", b"li1ee".to_vec(), "top level is a list"),
        (
            "no-info",
            b"d8:announce3:urle".to_vec(),
            "torrent has no `info`",
        ),
        (
            "duplicate-key",
            torrent_with_info(&format!("{}4:name1:y", ok_info(""))),
            "duplicate dictionary key `name`",
        ),
        (
            "negative-zero",
            torrent_with_info(&ok_info("7:privatei-0e")),
            "negative zero",
        ),
        (
            "deep-nesting",
            [b"d4:info".to_vec(), vec![b'l'; 5000]].concat(),
            "nesting deeper than 100",
        ),
        (
            "length-past-end",
            b"d4:info999:abce".to_vec(),
            "runs past the end",
        ),
        (
            "pieces-not-multiple-of-20",
            torrent_with_info(
                "6:lengthi16384e4:name1:x12:piece lengthi16384e6:pieces19:AAAAAAAAAAAAAAAAAAA",
            ),
            "not a multiple of 20",
        ),
        (
            "pieces-count-mismatch",
            torrent_with_info(&format!(
                "6:lengthi40000e4:name1:x12:piece lengthi16384e{}",
                pieces(2)
            )),
            "holds 2 hashes but 40000 bytes",
        ),
        (
            "zero-piece-length",
            torrent_with_info(&format!(
                "6:lengthi1e4:name1:x12:piece lengthi0e{}",
                pieces(1)
            )),
            "piece length 0 is not positive",
        ),
        (
            "huge-piece-length",
            torrent_with_info(&format!(
                "6:lengthi1e4:name1:x12:piece lengthi1099511627776e{}",
                pieces(1)
            )),
            "larger than the 512 MiB",
        ),
        (
            "negative-length",
            torrent_with_info(&format!(
                "6:lengthi-5e4:name1:x12:piece lengthi16384e{}",
                pieces(1)
            )),
            "negative length -5",
        ),
        (
            "overflowing-lengths",
            torrent_with_info(&files_info(
                &format!("{}{}", file(&["a"], i64::MAX), file(&["b"], i64::MAX)),
                1,
            )),
            "more than 1 PiB",
        ),
        (
            "dotdot-path",
            torrent_with_info(&files_info(&file(&["..", "evil"], 5), 1)),
            "unsafe component \"..\"",
        ),
        (
            "absolute-path",
            torrent_with_info(&files_info(&file(&["/etc", "passwd"], 5), 1)),
            "path separator",
        ),
        (
            "empty-component",
            torrent_with_info(&files_info(&file(&["a", "", "b"], 5), 1)),
            "unsafe component \"\"",
        ),
        (
            "backslash",
            torrent_with_info(&files_info(&file(&["..\\..\\x"], 5), 1)),
            "path separator",
        ),
        (
            "nul-in-path",
            torrent_with_info(&files_info(&file(&["a\0b"], 5), 1)),
            "NUL byte",
        ),
        (
            "duplicate-paths",
            torrent_with_info(&files_info(
                &format!("{}{}", file(&["a"], 5), file(&["a"], 5)),
                1,
            )),
            "two files have the same path `top/a`",
        ),
        (
            "file-and-folder",
            torrent_with_info(&files_info(
                &format!("{}{}", file(&["a"], 5), file(&["a", "b"], 5)),
                1,
            )),
            "`top/a` is both a file and a folder",
        ),
        (
            "no-files",
            torrent_with_info(&files_info("", 1)),
            "`info.files` is empty",
        ),
        (
            "dotdot-name",
            torrent_with_info(&format!(
                "6:lengthi1e4:name2:..12:piece lengthi16384e{}",
                pieces(1)
            )),
            "unsafe component",
        ),
        (
            "wrong-type",
            torrent_with_info(&format!(
                "6:lengthi1e4:name1:x12:piece length5:16384{}",
                pieces(1)
            )),
            "`info.piece length` is a byte string, expected an integer",
        ),
    ];
    let dir = TempDir::new("malformed");
    for (name, bytes, phrase) in cases {
        let path = dir.path().join(format!("{name}.torrent"));
        std::fs::write(&path, &bytes).unwrap();
        let out = run_bt(&["info", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: exit code; stderr: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{name}: printed a report anyway");
        assert_eq!(stderr.lines().count(), 1, "{name}: not one line: {stderr}");
        assert!(stderr.starts_with("bt: error: "), "{name}: {stderr}");
        assert!(
            stderr.contains(phrase),
            "{name}: expected {phrase:?} in: {stderr}"
        );
        assert!(
            stderr.contains(&format!("{name}.torrent")),
            "{name}: the file is not named: {stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn unreadable_inputs_get_one_line() {
    // Proves a missing file and a folder given as a torrent are reported, not panicked on.
    let dir = TempDir::new("unreadable");
    for target in [dir.path().join("missing.torrent"), dir.path().to_owned()] {
        let out = run_bt(&["info", target.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(target.to_str().unwrap()), "{stderr}");
    }
}

#[test]
fn bad_magnet_links_get_one_line() {
    // Proves a malformed magnet link is refused with one line naming the problem.
    for (link, phrase) in [
        ("magnet:?dn=x", "no `xt=urn:btih:`"),
        ("magnet:?xt=urn:btih:1234", "neither 40 hex nor 32 base32"),
    ] {
        let out = run_bt(&["info", link]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(phrase), "{phrase}: {stderr}");
    }
}
