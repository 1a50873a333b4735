//! What the scenarios of the client's controls must show on either engine: in
//! `select-files.toml` the selecting peers fetch little beyond their files and complete once
//! those are; in `pause-resume.toml` every pause and resume is taken, nobody completes while
//! paused, and everyone completes after resuming; and a peer crashed while paused comes back
//! unpaused. Both engines' tests call these, so the two are held to one standard.

use std::path::Path;
use std::time::Duration;

use bt_sim::engine::{self, Outcome};
use bt_sim::report::Report;
use bt_sim::scenario::{EngineKind, Scenario};

/// When `pause-resume.toml` resumes its leechers, in seconds.
const RESUME_S: f64 = 23.0;

/// `select-files.toml`'s outcome and report: it passed (so the write observer, a violation if a
/// selecting peer writes a block of a piece lying wholly in files it skipped, stayed silent),
/// every peer of both leecher groups completed, each selecting peer verified exactly the pieces
/// its two files touch and downloaded little beyond them (pieces straddling a skipped file at
/// most), and each of the others verified every piece. (Pieces, not bytes, for the lower
/// bounds: the turmoil engine's byte counts come every 100 ms and the run's end loses the last.)
pub(crate) fn assert_selecting_peers_fetch_only_their_files(
    scenario: &Scenario,
    outcome: &Outcome,
    r: &Report,
) {
    assert!(r.passed, "{}", r.human());
    assert_eq!(r.groups[1].completed, 4, "{}", r.human());
    assert_eq!(r.groups[2].completed, 4, "{}", r.human());
    // 256 KiB pieces over files of 3 MiB, 2 MiB, 1500 KiB and 2 MiB: files 0 and 2 touch pieces
    // 0 to 11 and 20 to 25 (piece 25 straddles into file 3), 18 of the 34.
    let (wanted_pieces, pieces) = (18, 34);
    for h in &outcome.hosts {
        match h.group {
            1 => assert_eq!(h.pieces, wanted_pieces, "{h:?}"),
            2 => assert_eq!(h.pieces, pieces, "{h:?}"),
            _ => {}
        }
    }
    let files = &scenario.torrent.files;
    let wanted = files[0] + files[2];
    let slack = 4 * scenario.torrent.piece_length;
    assert!(
        r.groups[1].downloaded <= 4 * (wanted + slack),
        "choosy peers downloaded {} for {} wanted",
        r.groups[1].downloaded,
        4 * wanted
    );
}

/// `pause-resume.toml`'s outcome and report: it passed (so the pause observers stayed silent),
/// each of the four leechers paused and resumed once (the engine's count of the changes the
/// client or driver made, so the observers had something to watch), nobody completed while
/// paused, and everyone completed after resuming.
pub(crate) fn assert_paused_peers_waited_for_resume(outcome: &Outcome, r: &Report) {
    assert!(r.passed, "{}", r.human());
    assert_eq!(outcome.violation_count, 0, "{:?}", outcome.violations);
    assert_eq!(outcome.diagnostics.get("pauses_taken"), Some(&4));
    assert_eq!(outcome.diagnostics.get("resumes_taken"), Some(&4));
    assert_eq!(r.groups[1].completed, 4, "{}", r.human());
    let first = r.groups[1].completion_s.as_ref().expect("completed").min;
    assert!(first > RESUME_S, "completed only after resuming: {first} s");
}

/// `pause-resume.toml` with the first leecher crashed at 8 s, while paused, and restarted at
/// 10 s, on `engine`: the restart begins unpaused, so it completes before the others resume,
/// the others only after; four pauses were taken and three resumes (the restarted peer had
/// nothing to resume).
pub(crate) fn assert_a_restart_begins_unpaused(engine: EngineKind) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/pause-resume.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(
        "\n[[fault]]\nat = 8\ncrash = \"leechers#0\"\n\n[[fault]]\nat = 10\nrestart = \"leechers#0\"\n",
    );
    let scenario =
        Scenario::parse("restart-while-paused.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let outcome = engine::run(&scenario, scenario.seed, engine, &mut |_| {}).unwrap();
    let r = Report::new(
        "restart-while-paused.toml",
        &scenario,
        &outcome,
        Duration::ZERO,
    );
    assert!(r.passed, "{}", r.human());
    assert_eq!(outcome.diagnostics.get("pauses_taken"), Some(&4));
    assert_eq!(outcome.diagnostics.get("resumes_taken"), Some(&3));
    let done_s =
        |h: &engine::HostOutcome| h.completed_at.expect("completed").as_micros() as f64 / 1e6;
    let leechers: Vec<_> = outcome.hosts.iter().filter(|h| h.group == 1).collect();
    assert_eq!(leechers.len(), 4);
    let restarted = done_s(leechers[0]);
    assert!(
        restarted < RESUME_S,
        "the restarted peer ran unpaused: done at {restarted} s"
    );
    for h in &leechers[1..] {
        assert!(done_s(h) > RESUME_S, "{h:?}");
    }
}
