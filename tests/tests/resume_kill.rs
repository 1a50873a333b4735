//! Resume after a crash: a `bt get` killed with SIGKILL halfway through, then restarted into the
//! same folder, finishes with the right bytes. The download is slowed by a rate-limited TCP relay
//! in this test (so "halfway" is seconds long), and the kill comes once bt has saved resume data.

use std::path::Path;
use std::time::Duration;

use bt_tests::{BtProc, SlowRelay, TempDir, is_event, run_bt_in};

fn write_content(dir: &Path) {
    // Several files of odd sizes, 16 MiB in all, from a fixed pseudo-random sequence.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for (name, len) in [
        ("a.bin", 5_000_001usize),
        ("sub/b.bin", 7_340_033),
        ("sub/deeper/c.bin", 4_437_182),
    ] {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(path, bytes).unwrap();
    }
}

#[test]
fn bt_get_killed_halfway_resumes_and_finishes_with_the_right_bytes() {
    let tmp = TempDir::new("resume-kill");
    let src = tmp.path().join("data");
    write_content(&src);
    let torrent = tmp.path().join("t.torrent");
    let made = run_bt_in(
        None,
        &[
            "create",
            src.to_str().unwrap(),
            "-l",
            "16K",
            "-o",
            torrent.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(made.status.success());
    let seeder = BtProc::seed(&torrent, tmp.path(), &[]);

    // 1 MiB/s: the 16 MiB take about 16 s, and resume data is saved after 10 s.
    let relay = SlowRelay::start(seeder.addr, 1 << 20);
    let out = tmp.path().join("out");
    let mut first = BtProc::get(&torrent, &out, &[relay.addr()], &[]);
    let resume_saved = || {
        std::fs::read_dir(&out).is_ok_and(|mut entries| {
            entries.any(|e| {
                e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with(".bt-resume-"))
            })
        })
    };
    // Kill once resume data exists and some, not all, pieces are verified.
    let half = first.wait_for(
        |e| {
            let (Some(have), Some(pieces)) = (e["have"].as_u64(), e["pieces"].as_u64()) else {
                return false;
            };
            is_event(e, "status") && resume_saved() && have > 0 && have < pieces
        },
        Duration::from_secs(40),
    );
    first.proc().kill();
    drop(relay);

    // Restart straight at the seeder: it must go on from what is on disk and finish.
    let mut second = BtProc::get(&torrent, &out, &[seeder.addr], &[]);
    let first_status = second.wait_for(|e| is_event(e, "status"), Duration::from_secs(60));
    assert!(
        first_status["have"].as_u64().unwrap() > 0,
        "the restart found the pieces of the first run (when killed: {half}): {first_status}"
    );
    second.wait_success(Duration::from_secs(60));
    for name in ["a.bin", "sub/b.bin", "sub/deeper/c.bin"] {
        assert!(
            std::fs::read(src.join(name)).unwrap()
                == std::fs::read(out.join("data").join(name)).unwrap(),
            "{name} differs after the resumed download"
        );
    }
}
