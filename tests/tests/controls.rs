//! The user's controls against libtorrent on loopback: `--download-limit` and `--upload-limit`
//! hold bt's payload rate at the limit (measured from bt's own `status` events: byte counts and
//! their `elapsed_s` timestamps, over at least 8 s after the first second), `--seed-ratio` ends
//! `bt seed` by itself once a libtorrent leecher has the whole torrent, `--seed-time` keeps
//! `bt get` seeding after completion and then ends it, and bad values of the new options are
//! refused in one line with exit code 2.
//!
//! Every process is killed by its PID when its guard drops; every wait is bounded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use bt_tests::{
    BtProc, LtSeeder, MadeTorrent, TempDir, field_u64, gen_files, is_event, lt_get, make_torrent,
    run_bt_in, tree_equal,
};

/// The limit both rate tests set: 1 MiB/s.
const LIMIT: f64 = (1 << 20) as f64;

/// 14 MiB: at the limit, about 14 s of transfer, so the measured window (after the first second,
/// before the end) spans well over 8 s.
const FILES: &[(&str, usize)] = &[("rate/data.bin", 14 << 20)];

/// The bound on one limited transfer (about 14 s at the limit).
const TRANSFER: Duration = Duration::from_secs(90);

/// The shortest window the rate is measured over.
const MIN_WINDOW_S: f64 = 8.0;

/// Writes the content under `tmp/src` and a torrent of it (256 KiB pieces, no tracker).
fn fixture(tmp: &TempDir) -> (PathBuf, MadeTorrent) {
    let src = tmp.path().join("src");
    gen_files(&src, FILES);
    let torrent = make_torrent(
        &src.join("rate"),
        &[],
        "256K",
        &tmp.path().join("rate.torrent"),
    );
    (src, torrent)
}

/// The average rate of `field` (a byte count) over bt's `status` events: from the first status
/// at least 1 s after the bytes started flowing, to the last one before all `total` bytes were
/// counted. Returns (bytes per second, window in seconds).
fn measured_rate(events: &[Value], field: &str, total: u64) -> (f64, f64) {
    let statuses: Vec<(f64, u64)> = events
        .iter()
        .filter(|e| is_event(e, "status"))
        .map(|e| {
            (
                e["elapsed_s"].as_f64().expect("status has elapsed_s"),
                field_u64(e, field),
            )
        })
        .collect();
    let flowing = statuses
        .iter()
        .find(|(_, bytes)| *bytes > 0)
        .map(|(at, _)| *at)
        .expect("bytes flowed");
    let first = statuses
        .iter()
        .find(|(at, _)| *at >= flowing + 1.0)
        .expect("a status after the first second");
    let last = statuses
        .iter()
        .rev()
        .find(|(_, bytes)| *bytes < total)
        .expect("a status before the end");
    let window = last.0 - first.0;
    ((last.1 - first.1) as f64 / window, window)
}

/// Checks a measured rate: within the limit + 5 %, above 60 % of it, over at least 8 s.
fn assert_limited(what: &str, (rate, window): (f64, f64), log: &str) {
    eprintln!(
        "{what}: {rate:.0} B/s ({:.1} % of the limit) over {window:.1} s",
        rate * 100.0 / LIMIT
    );
    assert!(
        window >= MIN_WINDOW_S,
        "{what}: measured over {window:.1} s only\n{log}"
    );
    assert!(
        rate <= LIMIT * 1.05,
        "{what}: {rate:.0} B/s over {window:.1} s is above the limit {LIMIT} B/s + 5 %\n{log}"
    );
    assert!(
        rate >= LIMIT * 0.6,
        "{what}: {rate:.0} B/s over {window:.1} s is far below the limit {LIMIT} B/s\n{log}"
    );
}

/// The `summary` event of a bt that has exited.
fn summary(bt: &mut BtProc) -> Value {
    bt.proc()
        .last(|e| is_event(e, "summary"))
        .unwrap_or_else(|| panic!("no summary event\n{}", bt.log()))
}

#[test]
fn download_limit_holds_bt_get_at_the_rate_from_a_libtorrent_seeder() {
    // Proves `bt get --download-limit 1MiB/s` receives from an unthrottled libtorrent seeder at
    // 1 MiB/s (within +5 %, not stalled below 60 %), completes with the right bytes, and ends
    // with a summary that counts them.
    let tmp = TempDir::new("download-limit");
    let (src, torrent) = fixture(&tmp);
    let seeder = LtSeeder::start(&torrent.path, &src);
    let dl = tmp.path().join("dl");
    let mut bt = BtProc::get(
        &torrent.path,
        &dl,
        &[seeder.addr()],
        &["--download-limit", "1MiB/s"],
    );
    bt.wait_success(TRANSFER);
    tree_equal(&src.join("rate"), &dl.join("rate"));
    let events = bt.proc().events();
    assert_limited(
        "download",
        measured_rate(&events, "downloaded", torrent.total_size),
        &bt.log(),
    );
    let s = summary(&mut bt);
    assert_eq!(s["result"], "complete", "{s}");
    assert!(field_u64(&s, "downloaded") >= torrent.total_size, "{s}");
    assert_eq!(s["files"]["complete"], 1, "{s}");
    assert_eq!(s["peers_used"], 1, "{s}");
}

#[test]
fn upload_limit_holds_bt_seed_at_the_rate_to_a_libtorrent_leecher() {
    // Proves `bt seed --upload-limit 1MiB/s` serves a libtorrent leecher at 1 MiB/s (within
    // +5 %, not stalled below 60 %), and the leecher gets every byte.
    let tmp = TempDir::new("upload-limit");
    let (src, torrent) = fixture(&tmp);
    let bt = BtProc::seed(&torrent.path, &src, &["--upload-limit", "1MiB/s"]);
    let dl = tmp.path().join("dl");
    lt_get(&torrent.path, &dl, &[bt.addr], TRANSFER);
    tree_equal(&src.join("rate"), &dl.join("rate"));
    // The status after the leecher finished counts the last bytes.
    bt.next_status(Duration::from_secs(10));
    let mut bt = bt;
    let events = bt.proc().events();
    assert_limited(
        "upload",
        measured_rate(&events, "uploaded", torrent.total_size),
        &bt.log(),
    );
}

#[test]
fn seed_ratio_ends_bt_seed_once_a_libtorrent_leecher_has_the_whole_torrent() {
    // Proves `bt seed --seed-ratio 1` exits 0 by itself after uploading one torrent's worth: the
    // libtorrent leecher has the complete, correct data, bt says which goal it reached, and its
    // summary says so. A second run with the same goal goes on from the first's upload count.
    let tmp = TempDir::new("seed-ratio");
    let src = tmp.path().join("src");
    gen_files(&src, &[("ratio/a.bin", 3 << 20), ("ratio/b.bin", 777_777)]);
    let torrent = make_torrent(
        &src.join("ratio"),
        &[],
        "64K",
        &tmp.path().join("ratio.torrent"),
    );
    let mut bt = BtProc::seed(&torrent.path, &src, &["--seed-ratio", "1"]);
    let dl = tmp.path().join("dl");
    lt_get(&torrent.path, &dl, &[bt.addr], Duration::from_secs(60));
    tree_equal(&src.join("ratio"), &dl.join("ratio"));
    bt.wait_success(Duration::from_secs(30));
    let reached = bt
        .proc()
        .last(|e| is_event(e, "seed_goal_reached"))
        .unwrap_or_else(|| panic!("no seed_goal_reached event\n{}", bt.log()));
    assert_eq!(reached["goal"], "ratio", "{reached}");
    assert!(
        field_u64(&reached, "uploaded") >= torrent.total_size,
        "{reached}"
    );
    let s = summary(&mut bt);
    assert_eq!(s["result"], "seed_goal_reached", "{s}");
    assert!(field_u64(&s, "uploaded") >= torrent.total_size, "{s}");
    drop(bt);
    // The resume data kept what was uploaded: the same goal, with no peer to upload to, is
    // reached again at once (without it this run would seed on until the wait gave up).
    let mut again = BtProc::seed(&torrent.path, &src, &["--seed-ratio", "1"]);
    again.wait_success(Duration::from_secs(30));
    let reached = again
        .proc()
        .last(|e| is_event(e, "seed_goal_reached"))
        .unwrap_or_else(|| panic!("no seed_goal_reached event\n{}", again.log()));
    assert_eq!(reached["goal"], "ratio", "{reached}");
    assert!(
        field_u64(&reached, "uploaded") >= torrent.total_size,
        "{reached}"
    );
}

/// Runs `bt get TORRENT EXTRA` and returns (exit code, stderr).
fn refused(torrent: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let t = torrent.to_str().expect("UTF-8 path");
    let mut args = vec!["get", t, "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let out = run_bt_in(None, &args, Duration::from_secs(30));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_limit_and_goal_values_are_refused_in_one_line() {
    // Proves each bad value of the new options ends bt at once with exit code 2 and one line
    // naming the option (never a usage dump or a start).
    let torrent = bt_tests::fixture_torrents()
        .into_iter()
        .next()
        .expect("a fixture torrent");
    for extra in [
        &["--download-limit", "fast"][..],
        &["--upload-limit", "-1"],
        &["--seed-ratio", "-1"],
        &["--seed-ratio", "abc"],
        &["--seed-time", "5x"],
    ] {
        let (code, stderr) = refused(&torrent, extra);
        assert_eq!(code, Some(2), "{extra:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{extra:?}: {stderr}");
        assert!(stderr.contains(extra[0]), "{extra:?}: {stderr}");
    }
}

#[test]
fn seed_time_keeps_bt_get_seeding_after_the_download_then_ends_it() {
    // Proves `bt get --seed-time 2s` (no `--seed`) does not exit at completion but seeds on, and
    // exits 0 by itself once it has seeded 2 s, saying which goal it reached.
    let tmp = TempDir::new("seed-time");
    let src = tmp.path().join("src");
    gen_files(&src, &[("time/a.bin", 1 << 20)]);
    let torrent = make_torrent(
        &src.join("time"),
        &[],
        "64K",
        &tmp.path().join("time.torrent"),
    );
    let seeder = BtProc::seed(&torrent.path, &src, &[]);
    let dl = tmp.path().join("dl");
    let mut bt = BtProc::get(&torrent.path, &dl, &[seeder.addr], &["--seed-time", "2s"]);
    bt.wait_complete(Duration::from_secs(30));
    bt.wait_success(Duration::from_secs(30));
    tree_equal(&src.join("time"), &dl.join("time"));
    let events = bt.proc().events();
    let complete = events.iter().position(|e| is_event(e, "complete"));
    let reached = events.iter().position(|e| is_event(e, "seed_goal_reached"));
    assert!(
        matches!((complete, reached), (Some(c), Some(r)) if c < r),
        "{}",
        bt.log()
    );
    let reached = &events[reached.expect("checked")];
    assert_eq!(reached["goal"], "time", "{reached}");
    assert!(field_u64(reached, "seeded_s") >= 2, "{reached}");
    assert_eq!(summary(&mut bt)["result"], "seed_goal_reached");
}
