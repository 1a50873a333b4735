//! Resume after a crash: a `bt get` killed with SIGKILL halfway through, then restarted into the
//! same folder, finishes with the right bytes. The download is slowed by a rate-limited TCP relay
//! in this test (so "halfway" is seconds long), and the kill comes once bt has saved resume data.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bt_tests::{SlowRelay, TempDir, bt_bin, run_bt_in};

/// A child process killed (by PID) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bt` with `args`, stdout (JSON events) sent line by line to the returned channel.
fn spawn_bt(args: &[&str]) -> (Proc, std::sync::mpsc::Receiver<serde_json::Value>) {
    let mut child = Command::new(bt_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bt");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    (Proc(child), rx)
}

/// Waits (at most `timeout`) for an event `pick` accepts.
fn wait_for<T>(
    rx: &std::sync::mpsc::Receiver<serde_json::Value>,
    timeout: Duration,
    mut pick: impl FnMut(&serde_json::Value) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(v) => {
                if let Some(t) = pick(&v) {
                    return Some(t);
                }
            }
            Err(_) => return None,
        }
    }
    None
}

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
    let t = torrent.to_str().unwrap();

    let (_seeder, seeder_events) = spawn_bt(&[
        "seed",
        t,
        "-d",
        tmp.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--json",
    ]);
    let seeder_addr: SocketAddr = wait_for(&seeder_events, Duration::from_secs(60), |e| {
        (e["event"] == "listening").then(|| e["addr"].as_str().unwrap().parse().unwrap())
    })
    .expect("bt seed listens within 60 s");

    // 1 MiB/s: the 16 MiB take about 16 s, and resume data is saved after 10 s.
    let relay = SlowRelay::start(seeder_addr, 1 << 20);
    let out = tmp.path().join("out");
    let relay_addr = relay.addr().to_string();
    let get_args = |peer: &str| {
        [
            "get",
            t,
            "-o",
            out.to_str().unwrap(),
            "--peer",
            peer,
            "--listen",
            "127.0.0.1:0",
            "--json",
        ]
        .map(str::to_owned)
    };
    let args = get_args(&relay_addr);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut first, events) = spawn_bt(&args);
    let resume_saved = || {
        std::fs::read_dir(&out).is_ok_and(|mut entries| {
            entries.any(|e| {
                e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with(".bt-resume-"))
            })
        })
    };
    // Kill once resume data exists and some, not all, pieces are verified.
    let half = wait_for(&events, Duration::from_secs(40), |e| {
        let have = e["have"].as_u64()?;
        let pieces = e["pieces"].as_u64()?;
        (e["event"] == "status" && resume_saved() && have > 0 && have < pieces)
            .then_some((have, pieces))
    });
    let (have, pieces) = half.expect("bt get saved resume data partway within 40 s");
    first.0.kill().expect("SIGKILL bt get");
    let _ = first.0.wait();
    drop(relay);

    // Restart straight at the seeder: it must go on from what is on disk and finish.
    let args = get_args(&seeder_addr.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let restarted = run_bt_in(None, &args, Duration::from_secs(60));
    assert!(
        restarted.status.success(),
        "restarted bt get failed: {}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    let first_status = String::from_utf8_lossy(&restarted.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "status")
        .expect("a status event");
    assert!(
        first_status["have"].as_u64().unwrap() > 0,
        "the restart found the pieces of the first run ({have} of {pieces} when killed): {first_status}"
    );
    for name in ["a.bin", "sub/b.bin", "sub/deeper/c.bin"] {
        assert!(
            std::fs::read(src.join(name)).unwrap()
                == std::fs::read(out.join("data").join(name)).unwrap(),
            "{name} differs after the resumed download"
        );
    }
}
