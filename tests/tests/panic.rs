//! A panic anywhere in `bt` ends the process at once, loudly: one line naming what panicked and a
//! non-zero exit code, never a process that runs on with a dead task. The panic is injected into
//! the task that reads the peer (a TCP reader task, or the UDP receive task for uTP, bt's first
//! transport) through a switch that only debug builds read (the tests run the debug `bt`).
//!
//! Every process is killed by its PID when its guard drops; every wait is bounded.

use std::path::PathBuf;
use std::time::Duration;

use bt_tests::{BtProc, MadeTorrent, TempDir, gen_files, make_torrent, tree_equal};

/// The environment variable that makes a debug `bt`'s peer reader tasks and UDP receive task
/// panic on their first read (`bt_runtime::driver::INJECT_PEER_PANIC_ENV`).
const INJECT: &str = "BT_TEST_INJECT_PEER_PANIC";

/// A few files of odd sizes under `content/`.
const FILES: &[(&str, usize)] = &[("content/a.bin", 1_000_003), ("content/b.bin", 77_777)];

/// A seeder of `FILES` and a `bt get` from it into `tmp/dl` whose peer tasks panic; returns the
/// panicking `bt get`, the seeder, the torrent, the source folder and the download folder.
fn panicking_get(tmp: &TempDir) -> (BtProc, BtProc, MadeTorrent, PathBuf, PathBuf) {
    let src = tmp.path().join("src");
    gen_files(&src, FILES);
    let torrent = make_torrent(
        &src.join("content"),
        &[],
        "16K",
        &tmp.path().join("t.torrent"),
    );
    let seeder = BtProc::seed(&torrent.path, &src, &[]);
    let dl = tmp.path().join("dl");
    let args: Vec<String> = vec![
        "get".into(),
        torrent.path.display().to_string(),
        "-o".into(),
        dl.display().to_string(),
        "--peer".into(),
        seeder.addr.to_string(),
    ];
    let bt = BtProc::start_with_env("bt get (panicking)", &args, &[(INJECT, "1")]);
    (bt, seeder, torrent, src, dl)
}

#[test]
fn a_panic_in_a_peer_task_ends_bt_get_with_one_line_and_a_failure_code() {
    // Proves a panic inside a spawned peer task is not absorbed by the async runtime: `bt get`
    // exits non-zero at once with one stderr line naming the panic and where it happened, and a
    // second run into the same folder (no injection) completes from what the first left.
    let tmp = TempDir::new("panic-peer-task");
    let (mut bt, seeder, torrent, src, dl) = panicking_get(&tmp);
    // This process is meant to panic: its guard must not fail the test for it.
    bt.proc().check_panics(false);
    // Before the panic hook the process lived on with its only peer's reader dead; this wait
    // ended in a kill and a failure.
    let status = bt.proc().wait_exit(Duration::from_secs(30));
    let log = bt.log();
    assert_eq!(status.code(), Some(101), "exit status {status}\n{log}");
    let panic_lines: Vec<&str> = log.lines().filter(|l| bt_tests::reports_panic(l)).collect();
    assert_eq!(panic_lines.len(), 1, "one line names the panic\n{log}");
    let line = panic_lines[0];
    assert!(
        line.starts_with("bt: panic in thread ")
            && ((line.contains("driver.rs") && line.contains("injected into a peer reader task"))
                || (line.contains("udp.rs")
                    && line.contains("injected into the UDP receive task"))),
        "the line names the panic and where: {line}"
    );

    let mut again = BtProc::get(&torrent.path, &dl, &[seeder.addr], &[]);
    again.wait_success(Duration::from_secs(60));
    tree_equal(&src.join("content"), &dl.join("content"));
    again.assert_all_from(seeder.addr, 1);
}

#[test]
fn a_test_fails_when_a_bt_it_started_printed_a_panic() {
    // Proves the harness's guard: dropping a `bt` process that printed a panic fails the test,
    // whatever the test checked before.
    let tmp = TempDir::new("panic-guard");
    let (mut bt, _seeder, ..) = panicking_get(&tmp);
    bt.proc().wait_exit(Duration::from_secs(30));
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(bt)));
    let message = dropped
        .expect_err("dropping a bt that panicked fails the test")
        .downcast::<String>()
        .map(|m| *m)
        .unwrap_or_default();
    assert!(
        message.contains("panicked: bt: panic in thread"),
        "the failure names the panic: {message}"
    );
}
