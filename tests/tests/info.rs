//! `bt info` end to end: agreement with libtorrent on every fixture, the text report (snapshots),
//! magnet links, and accepted oddities reported as warnings.

use std::collections::BTreeSet;

use bt_tests::{fixture_torrents, lt_info, run_bt};
use serde_json::Value;

fn bt_info_json(path: &std::path::Path) -> Value {
    let out = run_bt(&["info", "--json", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "bt info {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bt info --json prints JSON")
}

/// (path, size, is padding) of each file in a JSON report; `pad_key` names the padding flag.
fn files(report: &Value, pad_key: &str) -> Vec<(String, u64, bool)> {
    report["files"]
        .as_array()
        .expect("a file list")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["size"].as_u64().unwrap(),
                f[pad_key].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn bt_info_agrees_with_libtorrent_on_every_fixture() {
    // Proves info hash, geometry, file list, trackers and flags match what libtorrent reads from the
    // same file, for torrents made by mktorrent, transmission-create, libtorrent and by hand.
    let fixtures = fixture_torrents();
    assert!(fixtures.len() >= 9, "fixtures missing: {fixtures:?}");
    for path in fixtures {
        let ours = bt_info_json(&path);
        let lt = lt_info(&path);
        let name = path.display();
        assert_eq!(ours["info_hash"], lt["info_hash"], "{name}: info hash");
        assert_eq!(ours["name"], lt["name"], "{name}: name");
        assert_eq!(ours["piece_count"], lt["num_pieces"], "{name}: piece count");
        assert_eq!(
            ours["piece_length"], lt["piece_length"],
            "{name}: piece length"
        );
        assert_eq!(ours["total_size"], lt["total_size"], "{name}: total size");
        assert_eq!(ours["private"], lt["private"], "{name}: private");
        assert_eq!(ours["web_seeds"], lt["web_seeds"], "{name}: web seeds");

        let our_files = files(&ours, "padding");
        let lt_files = files(&lt, "pad");
        assert_eq!(our_files, lt_files, "{name}: files");

        // libtorrent shuffles URLs within a tier (BEP 12), so compare each tier as a set.
        let our_tiers: Vec<BTreeSet<String>> = ours["trackers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                t.as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u.as_str().unwrap().to_owned())
                    .collect()
            })
            .collect();
        let mut lt_tiers: Vec<BTreeSet<String>> = Vec::new();
        for t in lt["trackers"].as_array().unwrap() {
            let tier = t["tier"].as_u64().unwrap() as usize;
            while lt_tiers.len() <= tier {
                lt_tiers.push(BTreeSet::new());
            }
            lt_tiers[tier].insert(t["url"].as_str().unwrap().to_owned());
        }
        lt_tiers.retain(|t| !t.is_empty());
        assert_eq!(our_tiers, lt_tiers, "{name}: tracker tiers");
    }
}

#[test]
fn bt_info_text_report_snapshots() {
    // Proves the human report of every fixture stays as reviewed (insta snapshots).
    for path in fixture_torrents() {
        let out = run_bt(&["info", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        insta::assert_snapshot!(
            format!("info_{stem}"),
            String::from_utf8(out.stdout).unwrap()
        );
    }
}

#[test]
fn unsorted_keys_warn_on_stderr_but_load() {
    // Proves a torrent with unsorted keys (which libtorrent loads) loads with a warning on stderr.
    let path = bt_tests::fixtures_dir().join("handmade-unsorted-keys.torrent");
    let out = run_bt(&["info", path.to_str().unwrap()]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("warning") && stderr.contains("not sorted"),
        "{stderr}"
    );
}

#[test]
fn bt_info_reads_magnet_links() {
    // Proves `bt info` accepts a magnet link and shows its hash, name and trackers.
    let link = "magnet:?xt=urn:btih:CDGLAMW7LI4F2H3K5HI7MRPYQZHQP2UZ&dn=Some+Name&tr=udp%3A%2F%2Ft.example%3A1337&x.pe=127.0.0.1:6881";
    let out = run_bt(&["info", link]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    insta::assert_snapshot!("info_magnet", String::from_utf8(out.stdout).unwrap());
    let out = run_bt(&["info", "--json", link]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["info_hash"], "10ccb032df5a385d1f6ae9d1f645f8864f07ea99");
    assert_eq!(v["trackers"][0], "udp://t.example:1337");
}

#[test]
fn help_lists_only_built_subcommands() {
    // Proves `bt --help` shows the built subcommands and nothing that is not built yet.
    let out = run_bt(&["--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    for built in ["info", "create", "get", "seed", "tracker"] {
        assert!(help.contains(&format!("  {built} ")), "{help}");
    }
}
