//! Shared helpers for bt's end-to-end tests: finding and running the `bt` binary, the fixture
//! torrents, and asking libtorrent (python3-libtorrent, the reference implementation) about a
//! torrent; ([`clients`]) real clients and a tracker on loopback for the interop tests;
//! ([`fake_peer`]) a scripted misbehaving peer over raw TCP for the hostile-peer tests;
//! ([`qbittorrent`], [`transmission`]) those clients on loopback, and ([`tracked`]) a payload
//! behind its own opentracker for the tests where peers meet only through the tracker.
//! Every process started here is waited for or killed; every wait is bounded.

pub mod clients;
pub mod fake_peer;
pub mod qbittorrent;
pub mod tracked;
pub mod transmission;

pub use clients::{
    Aria2Seeder, BtProc, LtDhtNode, LtSeeder, MadeTorrent, Opentracker, Proc, SWARM_FILES,
    SlowRelay, aria2_get, aria2_get_udp, aria2_get_with, bt_swarm, field_u64, free_port, gen_files,
    is_event, lt_get, lt_leecher, make_torrent, multi_source, tree_equal,
};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_owned()
}

/// The folder of committed fixture torrents.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("tests/fixtures")
}

/// Every fixture torrent, sorted by name.
pub fn fixture_torrents() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures exists")
        .map(|e| e.expect("readable fixture dir").path())
        .filter(|p| p.extension().is_some_and(|e| e == "torrent"))
        .collect();
    v.sort();
    v
}

/// The `bt` binary, built (once per test process) in the profile this test runs in. `BT_BIN`
/// overrides it.
pub fn bt_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("BT_BIN") {
            return PathBuf::from(p);
        }
        // This test runs from target/<profile>/deps/; `bt` lands in target/<profile>/.
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary is in target/<profile>/deps");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("profile folder name");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.current_dir(workspace_root()).args([
            "build",
            "--quiet",
            "-p",
            "bt-runtime",
            "--bin",
            "bt",
        ]);
        match profile {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        let status = build.status().expect("run cargo build for bt");
        assert!(status.success(), "cargo build of bt failed");
        profile_dir.join("bt")
    })
    .clone()
}

/// How often [`poll_until`] asks.
pub const POLL: Duration = Duration::from_millis(100);

/// Asks `check` every [`POLL`] until it answers `Some`, for at most `timeout` (so at most
/// `timeout / POLL + 1` times); `None` if it never did. Only for programs that print no event to
/// wait on (a tracker's scrape, qBittorrent's Web API, Transmission's status line); a `bt` is
/// waited on through its JSON events instead.
pub fn poll_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// What a panic report on stderr starts with or contains: Rust's default hook
/// (`thread 'main' panicked at src/x.rs:1:2:`) and `bt`'s own (`bt: panic in thread ...`).
pub const PANIC_MARKERS: &[&str] = &["panicked at", "bt: panic in thread"];

/// Whether a line of stderr reports a panic.
pub fn reports_panic(line: &str) -> bool {
    PANIC_MARKERS.iter().any(|m| line.contains(m))
}

/// Fails the test when `stderr` (of the `bt` run `what`) reports a panic.
pub fn assert_no_panic(what: &str, stderr: &[u8]) {
    let stderr = String::from_utf8_lossy(stderr);
    if let Some(line) = stderr.lines().find(|l| reports_panic(l)) {
        panic!("{what} panicked: {line}\n--- stderr ---\n{stderr}");
    }
}

/// A `bt` command that keeps its state inside `state`: `HOME` and the XDG data, config, cache and
/// state folders point there, so it neither reads nor writes the user's files (the DHT's saved
/// routing table above all). stdin is closed; `RUST_BACKTRACE`/`RUST_LOG` are unset. Callers
/// still pass `--no-dht` to `get` and `seed` unless the test is about the DHT.
pub fn bt_command(state: &Path) -> Command {
    let mut cmd = Command::new(bt_bin());
    cmd.env("HOME", state)
        .env("XDG_DATA_HOME", state.join("data"))
        .env("XDG_CONFIG_HOME", state.join("config"))
        .env("XDG_CACHE_HOME", state.join("cache"))
        .env("XDG_STATE_HOME", state.join("state"))
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Runs `bt` with `args` (in `dir`, if given) in a state folder of its own (see [`bt_command`]),
/// bounded to `timeout`, and returns its output; fails the test if it printed a panic. `get` and
/// `seed` run with `--no-dht` unless `args` set DHT bootstrap nodes.
pub fn run_bt_in(dir: Option<&Path>, args: &[&str], timeout: Duration) -> Output {
    let state = TempDir::new("state");
    let mut cmd = bt_command(state.path());
    cmd.args(args);
    if matches!(args.first(), Some(&("get" | "seed")))
        && !args
            .iter()
            .any(|a| *a == "--dht-bootstrap" || *a == "--no-dht")
    {
        cmd.arg("--no-dht");
    }
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = run_bounded(cmd, timeout);
    assert_no_panic(&format!("bt {}", args.join(" ")), &out.stderr);
    out
}

/// Runs `bt` with `args`, bounded to 60 s.
pub fn run_bt(args: &[&str]) -> Output {
    run_bt_in(None, args, Duration::from_secs(60))
}

/// Runs `cmd` to completion, killing it (by its PID) if it outlives `timeout`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).ok();
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).ok();
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait on child") {
            break status;
        }
        if Instant::now() >= deadline {
            child.kill().ok();
            child.wait().ok();
            panic!(
                "{cmd:?} (pid {}) ran past {timeout:?} and was killed",
                child.id()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().expect("stdout reader"),
        stderr: err_t.join().expect("stderr reader"),
    }
}

/// The Debian interpreter, the only one with the python3-libtorrent binding.
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Runs one of `tests/scripts/*.py` under the system python, bounded to `timeout`, and parses its
/// stdout as JSON. Panics with a message naming the install script when libtorrent is missing:
/// these tests are part of the suite, never skipped.
pub fn python_json(script: &str, args: &[&Path], timeout: Duration) -> serde_json::Value {
    let mut cmd = Command::new(SYSTEM_PYTHON);
    cmd.arg(workspace_root().join("tests/scripts").join(script))
        .args(args)
        .stdin(Stdio::null());
    let out = run_bounded(cmd, timeout);
    assert!(
        out.status.success(),
        "{script} {args:?} failed ({}): {}\n(python3-libtorrent comes from scripts/install-test-deps.sh)",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// What libtorrent says about a torrent (`tests/scripts/lt_info.py`).
pub fn lt_info(torrent: &Path) -> serde_json::Value {
    python_json("lt_info.py", &[torrent], Duration::from_secs(60))
}

/// A fresh, empty temporary folder for one test, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Makes `$TMPDIR/bt-test-<name>-<pid>-<n>`.
    pub fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "bt-test-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Generates the fixtures' source content (`tests/scripts/gen_content.py`) into `dir`.
pub fn gen_content(dir: &Path) {
    let mut cmd = Command::new(SYSTEM_PYTHON);
    cmd.arg(workspace_root().join("tests/scripts/gen_content.py"))
        .arg(dir)
        .stdin(Stdio::null());
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "gen_content.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
