//! `bt create` end to end: libtorrent loads what it makes with the same info hash and files and
//! verifies every piece against the data; output is reproducible; refusals are one line.

use std::path::Path;
use std::time::Duration;

use bt_tests::{TempDir, fixtures_dir, gen_content, lt_info, python_json, run_bt, run_bt_in};
use serde_json::Value;

fn bt_create(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["create", "--json"];
    all.extend_from_slice(args);
    let out = run_bt_in(Some(dir), &all, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "bt {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bt create --json prints JSON")
}

fn lt_check(torrent: &Path, save_path: &Path) -> Value {
    python_json(
        "lt_check.py",
        &[torrent, save_path],
        Duration::from_secs(90),
    )
}

#[test]
fn libtorrent_loads_and_verifies_what_bt_creates() {
    // Proves a multi-file torrent (nested folders, odd sizes, a zero-length file) and a single-file
    // torrent made by bt load in libtorrent with our info hash and file list, and libtorrent's own
    // check of the data passes every piece.
    let tmp = TempDir::new("create-lt");
    let content = tmp.path().join("content");
    gen_content(&content);
    let cases: [(&str, &[&str]); 2] = [
        (
            "multi",
            &[
                "-t",
                "http://127.0.0.1:6969/announce,http://127.0.0.2:6969/announce",
                "-t",
                "udp://127.0.0.1:6969/announce",
                "--web-seed",
                "http://127.0.0.1:8080/",
                "--private",
                "--comment",
                "made by bt",
                "-l",
                "32K",
            ],
        ),
        ("single.bin", &["-t", "http://127.0.0.1:6969/announce"]),
    ];
    for (source, extra) in cases {
        let out = tmp.path().join(format!("{source}.torrent"));
        let mut args = vec![
            content.join(source).to_str().unwrap().to_owned(),
            "-o".into(),
        ];
        args.push(out.to_str().unwrap().to_owned());
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ours = bt_create(tmp.path(), &args);

        let lt = lt_info(&out);
        assert_eq!(ours["info_hash"], lt["info_hash"], "{source}: info hash");
        assert_eq!(ours["piece_count"], lt["num_pieces"], "{source}: pieces");
        let info = run_bt(&["info", "--json", out.to_str().unwrap()]);
        let info: Value = serde_json::from_slice(&info.stdout).unwrap();
        let our_files: Vec<(Value, Value)> = info["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["path"].clone(), f["size"].clone()))
            .collect();
        let lt_files: Vec<(Value, Value)> = lt["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["path"].clone(), f["size"].clone()))
            .collect();
        assert_eq!(our_files, lt_files, "{source}: files");

        let check = lt_check(&out, &content);
        assert_eq!(
            check["pieces_verified"], check["num_pieces"],
            "{source}: libtorrent found pieces whose hash does not match the data: {check}"
        );
        assert!(check["num_pieces"].as_u64().unwrap() > 0);
    }
    // The multi-file torrent carries what was asked for.
    let lt = lt_info(&tmp.path().join("multi.torrent"));
    assert_eq!(lt["private"], true);
    assert_eq!(lt["comment"], "made by bt");
    assert_eq!(lt["web_seeds"][0], "http://127.0.0.1:8080/");
    assert_eq!(lt["trackers"].as_array().unwrap().len(), 3);
    assert_eq!(lt["trackers"][2]["tier"], 1);
}

#[test]
fn create_matches_mktorrent_and_is_reproducible() {
    // Proves that for the same content and piece length bt writes the same info dictionary as
    // mktorrent (same info hash as the fixture), and the same bytes on every run and thread count.
    let tmp = TempDir::new("create-repro");
    let content = tmp.path().join("content");
    gen_content(&content);
    let multi = content.join("multi");
    let mut bytes = Vec::new();
    for (i, threads) in ["1", "2", "7"].iter().enumerate() {
        let out = tmp.path().join(format!("run{i}.torrent"));
        let ours = bt_create(
            tmp.path(),
            &[
                multi.to_str().unwrap(),
                "-l",
                "262144",
                "--threads",
                threads,
                "-o",
                out.to_str().unwrap(),
            ],
        );
        let mk = lt_info(&fixtures_dir().join("mktorrent-multi.torrent"));
        assert_eq!(ours["info_hash"], mk["info_hash"], "threads {threads}");
        bytes.push(std::fs::read(&out).unwrap());
    }
    assert!(
        bytes.windows(2).all(|w| w[0] == w[1]),
        "output differs between runs"
    );
}

#[test]
fn create_picks_a_default_name_and_refuses_to_overwrite() {
    // Proves the default output NAME.torrent in the working folder, the refusal to overwrite it,
    // and --force.
    let tmp = TempDir::new("create-default");
    let content = tmp.path().join("content");
    gen_content(&content);
    let src = content.join("single.bin");
    let src = src.to_str().unwrap();
    bt_create(tmp.path(), &[src]);
    assert!(tmp.path().join("single.bin.torrent").is_file());
    let again = run_bt_in(Some(tmp.path()), &["create", src], Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("exists; use --force"), "{stderr}");
    bt_create(tmp.path(), &[src, "--force"]);
}

#[test]
fn create_refusals_are_one_line() {
    // Proves a missing source, an empty folder and a bad piece length are reported in one line.
    let tmp = TempDir::new("create-refuse");
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    std::fs::write(tmp.path().join("f"), b"data").unwrap();
    let missing = tmp.path().join("missing");
    let empty = tmp.path().join("empty");
    let f = tmp.path().join("f");
    let cases: [(Vec<&str>, &str); 4] = [
        (vec![missing.to_str().unwrap()], "No such file"),
        (vec![empty.to_str().unwrap()], "holds no data"),
        (
            vec![f.to_str().unwrap(), "-l", "1000"],
            "must be a power of two",
        ),
        (
            vec![f.to_str().unwrap(), "-l", "1.5M"],
            "not a whole number",
        ),
    ];
    for (args, phrase) in cases {
        let mut all = vec!["create"];
        all.extend(args);
        let out = run_bt_in(Some(tmp.path()), &all, Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{all:?} succeeded");
        assert!(
            stderr.contains(phrase),
            "{all:?}: expected {phrase:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
