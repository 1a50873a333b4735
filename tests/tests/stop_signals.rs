//! Stopping `bt get` with Ctrl-C (SIGINT) or SIGTERM in the middle of a download: it saves its
//! resume data and exits cleanly, saying how far it got; the restart vouches for every piece
//! verified before the stop without hashing it again and requests none of them again.
//!
//! Every process is killed by its PID when its guard drops; every wait is bounded.

use std::collections::BTreeSet;
use std::time::Duration;

use bt_tests::{
    BtProc, SlowRelay, TempDir, field_u64, gen_files, is_event, make_torrent, tree_equal,
};
use serde_json::Value;

/// About 6 MiB in two files; with 64 KiB pieces and a 1 MiB/s relay, a few seconds of download.
const FILES: &[(&str, usize)] = &[
    ("content/a.bin", 5_000_011),
    ("content/sub/b.bin", 1_200_007),
];

/// The pieces named by `name` events (`piece_started`, `piece_verified`).
fn pieces(events: &[Value], name: &str) -> BTreeSet<u64> {
    events
        .iter()
        .filter(|e| is_event(e, name))
        .map(|e| field_u64(e, "piece"))
        .collect()
}

/// Stops a download with `signal` after a dozen pieces, then restarts it.
fn stop_and_resume(signal: &str) {
    let tmp = TempDir::new(&format!("stop-{signal}"));
    let src = tmp.path().join("src");
    gen_files(&src, FILES);
    let torrent = make_torrent(
        &src.join("content"),
        &[],
        "64K",
        &tmp.path().join("t.torrent"),
    );
    let seeder = BtProc::seed(&torrent.path, &src, &[]);
    let relay = SlowRelay::start(seeder.addr, 1 << 20);
    let out = tmp.path().join("out");
    let mut first = BtProc::get(&torrent.path, &out, &[relay.addr()], &[]);
    first.wait_count_pieces(12);
    first.proc().signal(signal);
    let status = first.proc().wait_exit(Duration::from_secs(30));
    let log = first.log();
    // Incomplete: exit code 1 and one line saying how far it got.
    assert_eq!(status.code(), Some(1), "{status}\n{log}");
    assert!(
        log.contains("(interrupted)") && log.contains("pieces verified"),
        "bt says it was interrupted and how far it got\n{log}"
    );
    let events = first.proc().events();
    assert!(
        !events.iter().any(|e| is_event(e, "complete")),
        "the download completed before the stop; make the torrent larger\n{log}"
    );
    let verified = pieces(&events, "piece_verified");
    assert!(verified.len() >= 12, "{log}");

    let mut second = BtProc::get(&torrent.path, &out, &[seeder.addr], &[]);
    second.wait_success(Duration::from_secs(60));
    let events = second.proc().events();
    let checked = events
        .iter()
        .find(|e| is_event(e, "checked"))
        .cloned()
        .unwrap_or_else(|| panic!("no checked event\n{}", second.log()));
    assert_eq!(
        field_u64(&checked, "vouched"),
        verified.len() as u64,
        "the resume data saved at the stop vouches for exactly the {} pieces verified before it: \
         {checked}",
        verified.len()
    );
    let mut fetched = pieces(&events, "piece_started");
    fetched.extend(pieces(&events, "piece_verified"));
    let again: Vec<&u64> = fetched.intersection(&verified).collect();
    assert!(
        again.is_empty(),
        "pieces verified before the stop were requested again: {again:?}"
    );
    tree_equal(&src.join("content"), &out.join("content"));
}

#[test]
fn sigint_mid_download_saves_resume_data_and_the_restart_trusts_it() {
    // Proves Ctrl-C in the middle of a download stops bt cleanly with its resume data saved: the
    // restart vouches for every piece verified before the stop and requests none of them again.
    stop_and_resume("INT");
}

#[test]
fn sigterm_mid_download_saves_resume_data_and_the_restart_trusts_it() {
    // The same for SIGTERM (a service manager stopping bt).
    stop_and_resume("TERM");
}
