//! `bt get --select` and `--only` as real processes: a multi-file torrent seeded by libtorrent,
//! downloads of just the chosen files, and the refusals (exit code 2, one line) of selections bt
//! cannot use.

use std::path::Path;
use std::time::Duration;

use bt_tests::clients::LtSeeder;
use bt_tests::{TempDir, fixtures_dir, gen_content, run_bt_in};

/// The files of `mktorrent-multi.torrent`, by index, below `multi/`.
const FILES: [&str; 7] = [
    "a-one-byte.bin",
    "aligned-256KiB.bin",
    "d1/d2/d3/size-262145.bin",
    "d1/d2/d3/size-999999.bin",
    "d1/d2/size-16385.bin",
    "d1/size-16383.bin",
    "empty.bin",
];

/// Seeds the fixture, runs `bt get` with `extra` arguments, and checks that exactly the files
/// numbered in `wanted` exist in the download, byte-identical to the source.
fn get_only(name: &str, extra: &[&str], wanted: &[usize]) {
    let tmp = TempDir::new(name);
    gen_content(&tmp.path().join("src"));
    let torrent = fixtures_dir().join("mktorrent-multi.torrent");
    let seeder = LtSeeder::start(&torrent, &tmp.path().join("src"));
    get_in(&tmp, &seeder, extra, wanted);
}

/// Runs `bt get` of the fixture from `seeder` into `tmp/dl` with `extra` arguments, checks that
/// exactly the files numbered in `wanted` exist there, byte-identical to `tmp/src`, and returns
/// what bt printed on stderr.
fn get_in(tmp: &TempDir, seeder: &LtSeeder, extra: &[&str], wanted: &[usize]) -> String {
    let torrent = fixtures_dir().join("mktorrent-multi.torrent");
    let addr = seeder.addr().to_string();
    let dl = tmp.path().join("dl");
    let mut args = vec![
        "get",
        torrent.to_str().unwrap(),
        "-o",
        dl.to_str().unwrap(),
        "--peer",
        &addr,
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let out = run_bt_in(None, &args, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "bt get {extra:?} failed: {stderr}");
    for (i, file) in FILES.iter().enumerate() {
        let got = dl.join("multi").join(file);
        if wanted.contains(&i) {
            let expected = std::fs::read(tmp.path().join("src/multi").join(file)).unwrap();
            let got = std::fs::read(&got).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(got == expected, "{file} differs from the source");
        } else {
            assert!(!got.exists(), "{file} was not selected but exists");
        }
    }
    check_part_file(&dl);
    stderr
}

/// The part file, if any, is the one documented name in the download folder.
fn check_part_file(dl: &Path) {
    for entry in std::fs::read_dir(dl).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            name == "multi" || name == ".multi.parts" || name.starts_with(".bt-resume-"),
            "unexpected {name} in the download folder"
        );
    }
}

#[test]
fn select_downloads_only_the_listed_files() {
    // Proves `--select 0,2` downloads files 0 and 2 byte for byte (both share pieces with
    // unselected files), exits 0, and writes nothing at the other files' paths.
    get_only("select", &["--select", "0,2"], &[0, 2]);
}

#[test]
fn a_later_run_keeps_the_choice_until_select_all_widens_it() {
    // Proves the choice is kept in the resume data: a second `bt get` with no --select downloads
    // the same files again (and says so) without writing any other, and `--select all` then
    // completes every file byte for byte, reusing the straddling bytes kept in the part file.
    let tmp = TempDir::new("select-kept");
    gen_content(&tmp.path().join("src"));
    let torrent = fixtures_dir().join("mktorrent-multi.torrent");
    let seeder = LtSeeder::start(&torrent, &tmp.path().join("src"));
    get_in(&tmp, &seeder, &["--select", "0,2"], &[0, 2]);
    let again = get_in(&tmp, &seeder, &[], &[0, 2]);
    assert!(
        again.contains("downloading the files chosen before: 0,2"),
        "{again}"
    );
    get_in(&tmp, &seeder, &["--select", "all"], &[0, 1, 2, 3, 4, 5, 6]);
}

#[test]
fn only_matches_file_names_at_any_depth() {
    // Proves `--only 'size-16*.bin'` matches files in different folders by name (gitignore
    // semantics) and downloads just those.
    get_only("only", &["--only", "size-16*.bin"], &[4, 5]);
}

#[test]
fn bad_selections_exit_2_with_one_line() {
    // Proves each unusable selection is refused before anything happens, with exit code 2 and
    // one line naming the problem.
    let tmp = TempDir::new("select-bad");
    let torrent = fixtures_dir().join("mktorrent-multi.torrent");
    let t = torrent.to_str().unwrap();
    let dl = tmp.path().join("dl");
    let dl = dl.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--select", "9"],
            "there is no file 9; the torrent's files are 0-6",
        ),
        (&["--select", "3-1"], "the range 3-1 goes backwards"),
        (&["--only", ""], "--only needs a pattern"),
        (
            &["--only", "*.nothing"],
            "--only '*.nothing' selects no file",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["get", t, "-o", dl, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let out = run_bt_in(None, &args, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{extra:?}: {stderr}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
}

#[test]
fn a_magnet_whose_metadata_refutes_the_selection_exits_2() {
    // Proves a selection that only the metadata can refute (`--select 9` by magnet, where the
    // file count is unknown until libtorrent sends the info dictionary) ends bt with exit code 2
    // and the same line as for a torrent file, and writes no file of the torrent.
    let tmp = TempDir::new("select-bad-magnet");
    gen_content(&tmp.path().join("src"));
    let torrent = fixtures_dir().join("mktorrent-multi.torrent");
    let seeder = LtSeeder::start(&torrent, &tmp.path().join("src"));
    let bytes = std::fs::read(&torrent).expect("read the fixture");
    let hash = bt_protocol::metainfo::Metainfo::from_bytes(&bytes)
        .expect("the fixture parses")
        .info_hash
        .to_hex();
    let link = format!("magnet:?xt=urn:btih:{hash}&x.pe={}", seeder.addr());
    let dl = tmp.path().join("dl");
    let args = [
        "get",
        &link,
        "-o",
        dl.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--select",
        "9",
    ];
    let out = run_bt_in(None, &args, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("there is no file 9; the torrent's files are 0-6"),
        "{stderr}"
    );
    assert!(
        !dl.join("multi").exists(),
        "bt wrote the torrent's files anyway"
    );
}
