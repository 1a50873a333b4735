//! Real BitTorrent programs on loopback for the interop tests: opentracker, libtorrent (through
//! `tests/scripts/lt_client.py`), aria2c and `bt` itself as child processes.
//!
//! Every process started here is killed by its PID when its guard is dropped (also while a failed
//! test unwinds), and every wait is bounded: a wait that runs out panics with the process's output.
//! If the test process itself dies abruptly (a nextest timeout), nextest signals the test's process
//! group, which these children stay in; libtorrent and aria2 also stop on their own after a
//! generous time limit.
//!
//! Each helper's documentation gives the flags that make its client work on 127.0.0.1.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{SYSTEM_PYTHON, TempDir, bt_bin, run_bounded, workspace_root};

/// How long a helper waits for a process to come up (listen, check its data, register).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a libtorrent seeder lives at most if nobody kills it (longer than any test).
const LT_SEED_LIFETIME_SECS: u32 = 400;

/// A loopback port that was free for both TCP and UDP a moment ago (opentracker serves both on
/// one port). Another process may take it before it is used: unlikely, not impossible. Programs
/// that can pick their own port (bt, libtorrent) are given port 0 instead.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let tcp =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a TCP port on 127.0.0.1");
        let port = tcp.local_addr().expect("local address").port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP on 127.0.0.1 after 100 tries");
}

/// Whether this process runs as root (effective uid 0), from `/proc/self/status`.
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// What a child printed: its stdout lines (JSON, or a string for a line that is not JSON) and its
/// stderr, filled by reader threads.
#[derive(Default)]
struct Output {
    state: Mutex<OutputState>,
    changed: Condvar,
}

#[derive(Default)]
struct OutputState {
    events: Vec<Value>,
    stderr: String,
    stdout_closed: bool,
    stderr_closed: bool,
    /// The first stderr line that reports a panic (see [`crate::PANIC_MARKERS`]), kept apart
    /// from `stderr`, which is capped.
    panic_line: Option<String>,
}

/// A child process whose stdout is read as newline-delimited JSON on a thread. Killed (by its
/// PID) and reaped when dropped.
pub struct Proc {
    name: String,
    child: Child,
    output: Arc<Output>,
    /// Whether dropping it fails the test when it printed a panic (on for every `bt`).
    check_panics: bool,
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout/stderr captured. `name` labels panic messages.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LOG");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let output = Arc::new(Output::default());
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let out = output.clone();
        std::thread::spawn(move || {
            // Byte lines, not `lines()`: a line that is not UTF-8 must not stop the reading (the
            // child would then block on a full pipe).
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let text = String::from_utf8_lossy(&buf);
                let line = text.trim();
                if !line.is_empty() {
                    let event = serde_json::from_str(line).unwrap_or_else(|_| Value::from(line));
                    out.state.lock().expect("output lock").events.push(event);
                    out.changed.notify_all();
                }
                buf.clear();
            }
            out.state.lock().expect("output lock").stdout_closed = true;
            out.changed.notify_all();
        });
        let out = output.clone();
        std::thread::spawn(move || {
            // Lines, so a panic report is seen whole however the pipe splits it. A line is cut at
            // 64 KiB, so a child printing no newline cannot fill the memory either.
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            while matches!(
                (&mut reader).take(64 << 10).read_until(b'\n', &mut line),
                Ok(n) if n > 0
            ) {
                let text = String::from_utf8_lossy(&line);
                let mut state = out.state.lock().expect("output lock");
                if state.panic_line.is_none() && crate::reports_panic(&text) {
                    state.panic_line = Some(text.trim_end().to_owned());
                }
                // Keep the log bounded: a chatty child must not fill the memory.
                if state.stderr.len() < 1 << 20 {
                    state.stderr.push_str(&text);
                }
                drop(state);
                line.clear();
            }
            out.state.lock().expect("output lock").stderr_closed = true;
            out.changed.notify_all();
        });
        Proc {
            name: name.to_owned(),
            child,
            output,
            check_panics: false,
        }
    }

    /// Makes dropping this process fail the test when it printed a panic, whatever else the test
    /// checked ([`BtProc`] turns it on for every `bt`).
    pub fn check_panics(&mut self, on: bool) {
        self.check_panics = on;
    }

    /// The first line of its stderr that reports a panic, if any so far.
    pub fn panic_line(&self) -> Option<String> {
        self.output
            .state
            .lock()
            .expect("output lock")
            .panic_line
            .clone()
    }

    /// Waits (at most `timeout`) until `closed` says a pipe is closed: every line it printed
    /// there has been read.
    fn wait_closed(&self, closed: fn(&OutputState) -> bool, timeout: Duration) {
        let end = Instant::now() + timeout;
        let mut state = self.output.state.lock().expect("output lock");
        while !closed(&state) && Instant::now() < end {
            state = self
                .output
                .changed
                .wait_timeout(state, end.saturating_duration_since(Instant::now()))
                .expect("output lock")
                .0;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stdout line so far, in order.
    pub fn events(&self) -> Vec<Value> {
        self.output
            .state
            .lock()
            .expect("output lock")
            .events
            .clone()
    }

    /// The last event so far that `pred` accepts.
    pub fn last(&self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let state = self.output.state.lock().expect("output lock");
        state.events.iter().rev().find(|e| pred(e)).cloned()
    }

    /// How many stdout lines it printed so far (an index for [`Proc::wait_for_from`]).
    pub fn event_count(&self) -> usize {
        self.output.state.lock().expect("output lock").events.len()
    }

    /// Waits (at most `timeout`) for an event that `pred` accepts, counting those already seen,
    /// and returns the first. Panics with the process's output when the time runs out or the
    /// process closes its stdout first.
    pub fn wait_for(&self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        self.wait_for_from(0, pred, timeout)
    }

    /// [`Proc::wait_for`] counting only the events from index `from` on (see
    /// [`Proc::event_count`]): "the next status line" rather than "any status line".
    pub fn wait_for_from(
        &self,
        from: usize,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        self.wait_until(
            |events| events.iter().skip(from).find(|e| pred(e)).cloned(),
            timeout,
        )
    }

    /// Waits (at most `timeout`) until `count` events that `pred` accepts have been printed (those
    /// already seen included) and returns the last of them; panics like [`Proc::wait_for`].
    pub fn wait_count(
        &self,
        pred: impl Fn(&Value) -> bool,
        count: usize,
        timeout: Duration,
    ) -> Value {
        self.wait_until(
            |events| {
                events
                    .iter()
                    .filter(|e| pred(e))
                    .nth(count.saturating_sub(1))
                    .cloned()
            },
            timeout,
        )
    }

    /// Waits (at most `timeout`) until `check` finds what it looks for in all the events so far.
    fn wait_until(&self, check: impl Fn(&[Value]) -> Option<Value>, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let mut state = self.output.state.lock().expect("output lock");
        loop {
            if let Some(e) = check(&state.events) {
                return e;
            }
            let now = Instant::now();
            if state.stdout_closed || now >= deadline {
                let why = if state.stdout_closed {
                    "exited (closed its stdout)".to_owned()
                } else {
                    format!("did not print it within {timeout:?}")
                };
                drop(state);
                panic!(
                    "{} (pid {}) {why} while waiting for an event\n{}",
                    self.name,
                    self.pid(),
                    self.log()
                );
            }
            state = self
                .output
                .changed
                .wait_timeout(state, deadline - now)
                .expect("output lock")
                .0;
        }
    }

    /// Waits (at most `timeout`) for the process to exit and returns its status; kills it and
    /// panics with its output if it outlives `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait on child") {
                // Let the reader take in the last lines (bounded: a grandchild could hold the pipe).
                self.wait_closed(|s| s.stdout_closed, Duration::from_secs(5));
                return status;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "{} (pid {}) ran past {timeout:?} and was killed\n{}",
                    self.name,
                    self.pid(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most `timeout`) for the process to exit 0; panics with its output otherwise.
    pub fn wait_success(&mut self, timeout: Duration) {
        let status = self.wait_exit(timeout);
        assert!(
            status.success(),
            "{} (pid {}) failed ({status})\n{}",
            self.name,
            self.pid(),
            self.log()
        );
    }

    /// Sends `signal` (a name `kill` takes: `INT`, `TERM`) to the process by its PID.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status();
        assert!(
            sent.is_ok_and(|s| s.success()),
            "kill -{signal} {} failed",
            self.pid()
        );
    }

    /// Kills the process by its PID (SIGKILL) and reaps it. Does nothing if it already exited.
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// The last stdout lines and the stderr, for a failure message.
    pub fn log(&self) -> String {
        let state = self.output.state.lock().expect("output lock");
        let skip = state.events.len().saturating_sub(40);
        let mut s = format!("--- {} stdout (last 40 lines) ---\n", self.name);
        for e in &state.events[skip..] {
            s.push_str(&e.to_string());
            s.push('\n');
        }
        s.push_str(&format!(
            "--- {} stderr (tail) ---\n{}",
            self.name,
            tail(&state.stderr, 8000)
        ));
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if self.check_panics && !std::thread::panicking() {
            // Bounded: a grandchild could hold the pipe open.
            self.wait_closed(|s| s.stderr_closed, Duration::from_secs(5));
            if let Some(line) = self.panic_line() {
                panic!(
                    "{} (pid {}) panicked: {line}\n{}",
                    self.name,
                    self.pid(),
                    self.log()
                );
            }
        }
    }
}

/// Whether `event` is `{"event": name, ...}`.
pub fn is_event(event: &Value, name: &str) -> bool {
    event.get("event").and_then(Value::as_str) == Some(name)
}

/// An unsigned field of an event (0 when missing).
pub fn field_u64(event: &Value, name: &str) -> u64 {
    event.get(name).and_then(Value::as_u64).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// opentracker

/// An opentracker on 127.0.0.1 serving HTTP and UDP on one port, in whitelist mode (the Debian
/// build serves only listed info hashes). Killed when dropped; its working folder is removed.
pub struct Opentracker {
    proc: Proc,
    port: u16,
    _dir: TempDir,
}

impl Opentracker {
    /// Starts opentracker for `info_hashes` (40 hex digits each) and waits until its HTTP port
    /// accepts connections. `-d` makes it chroot into its temp folder, where it reads
    /// `whitelist.txt`; as root it also drops to `-u nobody` (its default), which can still read the
    /// world-readable whitelist.
    pub fn start(info_hashes: &[&str]) -> Opentracker {
        let dir = TempDir::new("opentracker");
        let mut whitelist = String::new();
        for h in info_hashes {
            assert!(
                h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()),
                "not a hex info hash: {h:?}"
            );
            whitelist.push_str(&h.to_ascii_lowercase());
            whitelist.push('\n');
        }
        // After dropping to `nobody` it reads the whitelist, and it does not say so if it cannot
        // ("Can't open accesslist file" on stderr, then every hash is refused): make the folder
        // and the file world-readable whatever the umask.
        let list = dir.path().join("whitelist.txt");
        std::fs::write(&list, whitelist).expect("write whitelist");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the opentracker folder");
        std::fs::set_permissions(&list, std::fs::Permissions::from_mode(0o644))
            .expect("chmod the whitelist");
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let mut cmd = Command::new("opentracker");
            cmd.args(["-i", "127.0.0.1", "-p", &port.to_string(), "-P"])
                .arg(port.to_string())
                .arg("-d")
                .arg(dir.path())
                .args(["-w", "whitelist.txt"]);
            if running_as_root() {
                cmd.args(["-u", "nobody"]);
            }
            let mut proc = Proc::spawn("opentracker", cmd);
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Ok(Some(_)) = proc.child.try_wait() {
                    // It could not start: try again on another port. (It does not exit when
                    // another process holds the port, so free_port's race is only narrowed.)
                    let _ = proc.wait_exit(Duration::from_secs(5));
                    last_log = proc.log();
                    break;
                }
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Opentracker {
                        proc,
                        port,
                        _dir: dir,
                    };
                }
                if Instant::now() >= deadline {
                    panic!(
                        "opentracker did not accept on port {port} within {START_TIMEOUT:?}\n{}",
                        proc.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("opentracker would not start (5 tries)\n{last_log}");
    }

    /// The port (TCP and UDP).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/announce`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }

    /// `udp://127.0.0.1:PORT/announce`.
    pub fn udp_url(&self) -> String {
        format!("udp://127.0.0.1:{}/announce", self.port)
    }

    /// Asks the tracker (HTTP scrape) how many seeders (complete) and leechers (incomplete) it
    /// knows for `info_hash` (hex). (0, 0) when it knows no peer for it. Bounded to 5 s.
    pub fn scrape(&self, info_hash: &str) -> (u64, u64) {
        let hash = hex_to_bytes(info_hash);
        let query: String = hash.iter().map(|b| format!("%{b:02X}")).collect();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("cannot connect to opentracker at {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        s.set_write_timeout(Some(Duration::from_secs(5))).ok();
        write!(
            s,
            "GET /scrape?info_hash={query} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.port
        )
        .expect("send the scrape request");
        let mut reply = Vec::new();
        s.take(1 << 20)
            .read_to_end(&mut reply)
            .expect("read the scrape reply");
        let body_at = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4)
            .unwrap_or_else(|| panic!("no HTTP reply: {}", String::from_utf8_lossy(&reply)));
        let body = &reply[body_at..];
        let decoded = bt_protocol::bencode::decode(body, Default::default()).unwrap_or_else(|e| {
            panic!(
                "scrape reply is not bencode ({e}): {}",
                String::from_utf8_lossy(body)
            )
        });
        let files = decoded
            .value
            .as_dict()
            .and_then(|d| d.get(b"files"))
            .and_then(|f| f.as_dict())
            .unwrap_or_else(|| {
                panic!(
                    "scrape reply without files: {}",
                    String::from_utf8_lossy(body)
                )
            });
        let Some(entry) = files.get(&hash).and_then(|e| e.as_dict()) else {
            return (0, 0);
        };
        let count = |k: &[u8]| entry.get(k).and_then(|v| v.as_int()).unwrap_or(0).max(0) as u64;
        (count(b"complete"), count(b"incomplete"))
    }

    /// Waits (at most `timeout`) until the tracker knows at least `seeders` complete peers for
    /// `info_hash`; panics with the tracker's output otherwise.
    pub fn wait_for_seeders(&self, info_hash: &str, seeders: u64, timeout: Duration) {
        let mut last = (0, 0);
        let found = crate::poll_until(timeout, || {
            last = self.scrape(info_hash);
            (last.0 >= seeders).then_some(())
        });
        if found.is_none() {
            panic!(
                "opentracker knows {} seeders and {} leechers of {info_hash} after {timeout:?}, \
                 wanted {seeders} seeders\n{}",
                last.0,
                last.1,
                self.proc.log()
            );
        }
    }
}

fn hex_to_bytes(hex: &str) -> Vec<u8> {
    assert!(
        hex.len().is_multiple_of(2) && hex.is_ascii(),
        "not hex: {hex:?}"
    );
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or_else(|_| panic!("not hex: {hex:?}"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// libtorrent

fn lt_client_command(mode: &str, torrent: &Path, dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(SYSTEM_PYTHON);
    cmd.arg(workspace_root().join("tests/scripts/lt_client.py"))
        .arg(mode)
        .arg(torrent)
        .arg(dir)
        .arg(port.to_string());
    cmd
}

/// A libtorrent seeder (`lt_client.py seed`) listening on 127.0.0.1 and announcing to the
/// torrent's trackers. Killed when dropped.
pub struct LtSeeder {
    /// The port libtorrent listens on (127.0.0.1).
    pub port: u16,
    proc: Proc,
}

impl LtSeeder {
    /// Starts libtorrent seeding `torrent` from `dir` (the folder that holds the torrent's
    /// name), and waits (at most [`START_TIMEOUT`]) until it has checked the data, is a seeder and
    /// listens. It picks its own port.
    pub fn start(torrent: &Path, dir: &Path) -> LtSeeder {
        LtSeeder::start_with(torrent, dir, &[])
    }

    /// [`LtSeeder::start`] with libtorrent's DHT on (UDP on its listening port), started from
    /// `bootstrap`, announcing the torrent every 2 s, and with uTP on beside TCP (libtorrent's
    /// default, as the seeders a DHT finds in the wild): a peer that found it dials it at once
    /// over uTP, before the seeder, which finds that peer through the DHT too, dials it.
    pub fn start_with_dht(torrent: &Path, dir: &Path, bootstrap: SocketAddr) -> LtSeeder {
        let boot = bootstrap.to_string();
        let args = ["--dht", "--dht-bootstrap", &boot, "--transport", "both"];
        LtSeeder::start_with(torrent, dir, &args)
    }

    /// [`LtSeeder::start`] with libtorrent taking only encrypted connections (MSE), at `level`:
    /// `"rc4"` (the stream under RC4) or `"plaintext"` (only the handshake obscured); or with
    /// `"off"`, only plaintext ones.
    pub fn start_encrypted(torrent: &Path, dir: &Path, level: &str) -> LtSeeder {
        LtSeeder::start_with(torrent, dir, &["--encryption", level])
    }

    /// [`LtSeeder::start`] over `transport`: `"utp"` (uTP only, TCP off both ways), `"both"`
    /// (libtorrent's default, uTP tried first) or `"tcp"` (the default). Its `peer` events say
    /// whether each connection is uTP.
    pub fn start_transport(torrent: &Path, dir: &Path, transport: &str) -> LtSeeder {
        LtSeeder::start_with(torrent, dir, &["--transport", transport])
    }

    fn start_with(torrent: &Path, dir: &Path, extra: &[&str]) -> LtSeeder {
        let mut cmd = lt_client_command("seed", torrent, dir, 0);
        cmd.args(["--timeout", &LT_SEED_LIFETIME_SECS.to_string()]);
        cmd.args(extra);
        let proc = Proc::spawn("libtorrent seeder", cmd);
        let ev = proc.wait_for(|e| is_event(e, "seeding"), START_TIMEOUT);
        let port = u16::try_from(field_u64(&ev, "port")).expect("a port number");
        LtSeeder { port, proc }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The seeder process (its events and log).
    pub fn proc(&self) -> &Proc {
        &self.proc
    }
}

/// A libtorrent session that is only a DHT node on 127.0.0.1 (`lt_client.py node`): a bootstrap
/// node for DHT tests. Killed when dropped.
pub struct LtDhtNode {
    /// Its UDP port (127.0.0.1).
    pub port: u16,
    proc: Proc,
}

impl LtDhtNode {
    /// Starts it and waits (at most [`START_TIMEOUT`]) for its port.
    pub fn start() -> LtDhtNode {
        let mut cmd = lt_client_command("node", Path::new("-"), Path::new("-"), 0);
        cmd.args(["--timeout", &LT_SEED_LIFETIME_SECS.to_string()]);
        let proc = Proc::spawn("libtorrent DHT node", cmd);
        let ev = proc.wait_for(|e| is_event(e, "dht_node"), START_TIMEOUT);
        let port = u16::try_from(field_u64(&ev, "port")).expect("a port number");
        LtDhtNode { port, proc }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The process (events and log).
    pub fn proc(&self) -> &Proc {
        &self.proc
    }
}

/// Starts libtorrent downloading `torrent` into `dir` (`lt_client.py get`), dialling `peers`,
/// with `extra` options (`--encryption rc4`, ...), and returns at once: for tests that play the
/// other side of its connections themselves. Killed when dropped.
pub fn lt_leecher(torrent: &Path, dir: &Path, peers: &[SocketAddr], extra: &[&str]) -> Proc {
    let mut cmd = lt_client_command("get", torrent, dir, 0);
    for p in peers {
        cmd.arg("--peer").arg(p.to_string());
    }
    cmd.args(extra);
    Proc::spawn("libtorrent leecher", cmd)
}

/// Downloads `torrent` into `dir` with libtorrent (`lt_client.py get`), connecting to `peers`
/// (and to whatever the torrent's trackers give). Returns its events once it has every piece;
/// panics with its output if it fails or outlives `timeout`.
pub fn lt_get(torrent: &Path, dir: &Path, peers: &[SocketAddr], timeout: Duration) -> Vec<Value> {
    let mut cmd = lt_client_command("get", torrent, dir, 0);
    for p in peers {
        cmd.arg("--peer").arg(p.to_string());
    }
    // Its own limit a little earlier than ours, so its message says how far it got.
    let own = timeout
        .saturating_sub(Duration::from_secs(2))
        .max(Duration::from_secs(1));
    cmd.args(["--timeout", &own.as_secs_f64().to_string()]);
    let mut proc = Proc::spawn("libtorrent leecher", cmd);
    proc.wait_success(timeout);
    let events = proc.events();
    assert!(
        events.iter().any(|e| is_event(e, "finished")),
        "libtorrent leecher exited 0 without finishing\n{}",
        proc.log()
    );
    events
}

// ---------------------------------------------------------------------------------------------
// aria2

/// Downloads `torrent` into `dir` with aria2c as a leecher that exits when complete
/// (`--seed-time=0`), with DHT, LPD, PEX and IPv6 off. aria2 ignores `udp://` trackers with DHT off
/// (it sends UDP-tracker packets through its DHT socket); use [`aria2_get_udp`] for those. Panics
/// with its output if it fails or outlives `timeout`.
pub fn aria2_get(torrent: &Path, dir: &Path, timeout: Duration) {
    aria2_leech(torrent, dir, timeout, false)
}

/// [`aria2_get`] for a torrent whose trackers are `udp://`: DHT on (an empty routing table in a
/// temp file, no entry point, listening on 127.0.0.1 only through the free port given) so that aria2
/// has the UDP socket it sends tracker packets through.
pub fn aria2_get_udp(torrent: &Path, dir: &Path, timeout: Duration) {
    aria2_leech(torrent, dir, timeout, true)
}

/// The aria2c flags every test run shares: loopback-friendly (DHT6, LPD, PEX, IPv6 off), no
/// config file, no saved session or metadata, a log in `work`, and a lifetime of `stop_after`.
fn aria2_command(work: &Path, stop_after: Duration) -> Command {
    let mut cmd = Command::new("aria2c");
    cmd.args([
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--disable-ipv6=true",
        "--summary-interval=0",
        "--console-log-level=notice",
        "--file-allocation=none",
        "--bt-save-metadata=false",
        "--auto-save-interval=0",
        "--no-conf=true",
        "--log-level=info",
    ])
    .arg(format!("--log={}", work.join("aria2.log").display()))
    .arg(format!("--stop={}", stop_after.as_secs().max(1)));
    cmd
}

/// Adds aria2c's DHT flags: off, or with `udp` on (an empty routing table in `work`, no entry
/// point, a free port) so that aria2 has the UDP socket it sends `udp://` tracker packets through.
fn aria2_dht_args(cmd: &mut Command, work: &Path, udp: bool) {
    if udp {
        cmd.args(["--enable-dht=true"])
            .arg(format!(
                "--dht-file-path={}",
                work.join("dht.dat").display()
            ))
            .arg(format!("--dht-listen-port={}", free_port()));
    } else {
        cmd.arg("--enable-dht=false");
    }
}

/// [`aria2_get`] with `extra` aria2c options (`--bt-require-crypto=true`, ...).
pub fn aria2_get_with(torrent: &Path, dir: &Path, timeout: Duration, extra: &[&str]) {
    aria2_leech_with(torrent, dir, timeout, false, extra)
}

fn aria2_leech(torrent: &Path, dir: &Path, timeout: Duration, udp: bool) {
    aria2_leech_with(torrent, dir, timeout, udp, &[])
}

fn aria2_leech_with(torrent: &Path, dir: &Path, timeout: Duration, udp: bool, extra: &[&str]) {
    let work = TempDir::new("aria2");
    let mut cmd = aria2_command(work.path(), timeout + Duration::from_secs(5));
    cmd.arg(format!("--dir={}", dir.display()))
        .arg("--seed-time=0")
        .arg(format!("--listen-port={}", free_port()))
        .args(extra);
    aria2_dht_args(&mut cmd, work.path(), udp);
    cmd.arg(torrent);
    let mut proc = Proc::spawn("aria2c", cmd);
    let status = proc.wait_exit(timeout);
    let log = std::fs::read_to_string(work.path().join("aria2.log")).unwrap_or_default();
    assert!(
        status.success(),
        "aria2c failed ({status})\n{}\n--- aria2.log (tail) ---\n{}",
        proc.log(),
        tail(&log, 8000)
    );
}

/// An aria2c seeder (`--check-integrity=true --seed-ratio=0.0`) listening on 127.0.0.1 and
/// announcing to the torrent's HTTP trackers (and its `udp://` ones when started with
/// [`Aria2Seeder::start_udp`]). Killed when dropped.
pub struct Aria2Seeder {
    /// The TCP port it listens on for peers.
    pub port: u16,
    proc: Proc,
    _work: TempDir,
}

impl Aria2Seeder {
    /// Starts aria2c seeding `torrent` from `dir` (the folder that holds the torrent's name) and
    /// waits (at most [`START_TIMEOUT`]) until it has verified the data and listens.
    pub fn start(torrent: &Path, dir: &Path) -> Aria2Seeder {
        Aria2Seeder::start_with(torrent, dir, false, &[])
    }

    /// [`Aria2Seeder::start`] with `extra` aria2c options (`--bt-require-crypto=true`, ...).
    pub fn start_args(torrent: &Path, dir: &Path, extra: &[&str]) -> Aria2Seeder {
        Aria2Seeder::start_with(torrent, dir, false, extra)
    }

    /// [`Aria2Seeder::start`] with aria2's DHT socket open (see [`aria2_get_udp`]), so that it
    /// also announces to the torrent's `udp://` trackers.
    pub fn start_udp(torrent: &Path, dir: &Path) -> Aria2Seeder {
        Aria2Seeder::start_with(torrent, dir, true, &[])
    }

    fn start_with(torrent: &Path, dir: &Path, udp: bool, extra: &[&str]) -> Aria2Seeder {
        let work = TempDir::new("aria2-seed");
        let mut cmd = aria2_command(
            work.path(),
            Duration::from_secs(LT_SEED_LIFETIME_SECS.into()),
        );
        cmd.arg(format!("--dir={}", dir.display()))
            .args(["--check-integrity=true", "--seed-ratio=0.0"])
            .arg(format!("--listen-port={}", free_port()))
            .args(extra);
        aria2_dht_args(&mut cmd, work.path(), udp);
        cmd.arg(torrent);
        let proc = Proc::spawn("aria2c seeder", cmd);
        // aria2 verifies the data first, then prints "IPv4 BitTorrent: listening on TCP port N".
        let line = proc.wait_for(
            |e| {
                e.as_str()
                    .is_some_and(|l| l.contains("listening on TCP port"))
            },
            START_TIMEOUT,
        );
        let port = line
            .as_str()
            .and_then(|l| l.split_whitespace().last())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in aria2's line {line}"));
        Aria2Seeder {
            port,
            proc,
            _work: work,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The seeder process (its output).
    pub fn proc(&self) -> &Proc {
        &self.proc
    }
}

/// The last `max` characters of `s`.
fn tail(s: &str, max: usize) -> &str {
    s.char_indices().rev().nth(max).map_or(s, |(i, _)| &s[i..])
}

// ---------------------------------------------------------------------------------------------
// bt

/// A `bt seed` or `bt get` child process run with `--json`, its own state folder (see
/// [`crate::bt_command`]) and the DHT off unless the arguments set DHT bootstrap nodes; killed
/// when dropped, and the test fails then if it printed a panic.
pub struct BtProc {
    /// The address it listens on, from its `listening` event.
    pub addr: SocketAddr,
    // Dropped after the process: its state folder outlives it.
    proc: Proc,
    _state: TempDir,
}

impl BtProc {
    /// `bt seed TORRENT -d DIR --listen 127.0.0.1:0 --json EXTRA...`, waiting (at most
    /// [`START_TIMEOUT`]) for it to check its data and listen.
    pub fn seed(torrent: &Path, dir: &Path, extra: &[&str]) -> BtProc {
        let mut args: Vec<String> =
            vec!["seed".into(), path_arg(torrent), "-d".into(), path_arg(dir)];
        args.extend(extra.iter().map(|s| s.to_string()));
        BtProc::start("bt seed", &args)
    }

    /// `bt get TORRENT -o DIR --listen 127.0.0.1:0 --json [--peer P]... EXTRA...`, waiting (at most
    /// [`START_TIMEOUT`]) for it to listen. Add `--seed` to `extra` to keep it running after the
    /// download.
    pub fn get(torrent: &Path, dir: &Path, peers: &[SocketAddr], extra: &[&str]) -> BtProc {
        let mut args: Vec<String> =
            vec!["get".into(), path_arg(torrent), "-o".into(), path_arg(dir)];
        for p in peers {
            args.push("--peer".into());
            args.push(p.to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        BtProc::start("bt get", &args)
    }

    /// Runs `bt ARGS --listen 127.0.0.1:0 --json` (with `--no-dht` unless `ARGS` has
    /// `--dht-bootstrap`, and in a state folder of its own) and waits for its `listening` event.
    pub fn start(name: &str, args: &[String]) -> BtProc {
        BtProc::start_with_env(name, args, &[])
    }

    /// [`BtProc::start`] with environment variables set for the process.
    pub fn start_with_env(name: &str, args: &[String], env: &[(&str, &str)]) -> BtProc {
        let state = TempDir::new("state");
        let mut cmd = crate::bt_command(state.path());
        cmd.args(args).args(["--listen", "127.0.0.1:0", "--json"]);
        cmd.envs(env.iter().copied());
        if !args
            .iter()
            .any(|a| a == "--dht-bootstrap" || a == "--no-dht")
        {
            cmd.arg("--no-dht");
        }
        // A test about the DHT starts it from local nodes only: no public host is resolved.
        for pair in args.windows(2).filter(|w| w[0] == "--dht-bootstrap") {
            assert!(
                pair[1]
                    .parse::<SocketAddr>()
                    .is_ok_and(|a| a.ip().is_loopback()),
                "{name}: DHT bootstrap node {} is not a loopback address",
                pair[1]
            );
        }
        let mut proc = Proc::spawn(name, cmd);
        proc.check_panics(true);
        let ev = proc.wait_for(|e| is_event(e, "listening"), START_TIMEOUT);
        let addr = ev
            .get("addr")
            .and_then(Value::as_str)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no address in {ev}\n{}", proc.log()));
        BtProc {
            addr,
            proc,
            _state: state,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The process (events, waits, log).
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Waits (at most `timeout`) for an event that `pred` accepts; see [`Proc::wait_for`].
    pub fn wait_for(&self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        self.proc.wait_for(pred, timeout)
    }

    /// Waits (at most 30 s) until it has verified `n` pieces (`piece_verified` events).
    pub fn wait_count_pieces(&self, n: usize) {
        self.proc
            .wait_count(|e| is_event(e, "piece_verified"), n, START_TIMEOUT);
    }

    /// Waits (at most `timeout`) for the `complete` event (the download is verified).
    pub fn wait_complete(&self, timeout: Duration) {
        self.proc.wait_for(|e| is_event(e, "complete"), timeout);
    }

    /// Waits (at most `timeout`) for it to exit 0; see [`Proc::wait_success`].
    pub fn wait_success(&mut self, timeout: Duration) {
        self.proc.wait_success(timeout);
    }

    /// Waits (at most `timeout`) for a `status` event printed after this call and returns it
    /// (bt prints one a second).
    pub fn next_status(&self, timeout: Duration) -> Value {
        let from = self.proc.event_count();
        self.proc
            .wait_for_from(from, |e| is_event(e, "status"), timeout)
    }

    /// Its latest `status` event.
    pub fn last_status(&self) -> Option<Value> {
        self.proc.last(|e| is_event(e, "status"))
    }

    /// The `uploaded` byte count of its latest `status` event (0 before the first).
    pub fn uploaded(&self) -> u64 {
        self.last_status().map_or(0, |s| field_u64(&s, "uploaded"))
    }

    /// The `downloaded` byte count of its latest `status` event (0 before the first).
    pub fn downloaded(&self) -> u64 {
        self.last_status()
            .map_or(0, |s| field_u64(&s, "downloaded"))
    }

    /// Its stdout and stderr, for a failure message.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Its `peer_summary` event (printed as it stops: block bytes received from and sent to each
    /// peer address), waiting at most `timeout` for it.
    pub fn peer_summary(&self, timeout: Duration) -> Value {
        self.proc.wait_for(|e| is_event(e, "peer_summary"), timeout)
    }

    /// Checks, from its `peer_summary`, that every block byte it received came from `from`, and
    /// that `from` sent it at least `total` bytes. Call it once it has stopped (or is stopping).
    pub fn assert_all_from(&self, from: SocketAddr, total: u64) {
        let summary = self.peer_summary(Duration::from_secs(10));
        let peers = summary["peers"].as_array().cloned().unwrap_or_default();
        let from_peer = |addr: SocketAddr| {
            peers
                .iter()
                .filter(|p| p["addr"].as_str().and_then(|a| a.parse().ok()) == Some(addr))
                .map(|p| field_u64(p, "downloaded"))
                .sum::<u64>()
        };
        let others: Vec<&Value> = peers
            .iter()
            .filter(|p| {
                field_u64(p, "downloaded") > 0
                    && p["addr"].as_str().and_then(|a| a.parse().ok()) != Some(from)
            })
            .collect();
        assert!(
            others.is_empty() && field_u64(&summary["others"], "downloaded") == 0,
            "bytes came from peers other than {from}: {summary}\n{}",
            self.log()
        );
        assert!(
            from_peer(from) >= total,
            "{from} sent {} of the {total} bytes: {summary}\n{}",
            from_peer(from),
            self.log()
        );
    }
}

fn path_arg(p: &Path) -> String {
    p.to_str()
        .unwrap_or_else(|| panic!("test paths are UTF-8: {}", p.display()))
        .to_owned()
}

/// Runs `n` `bt get --seed` leechers of `torrent` at once, downloading into `work/dl0`,
/// `work/dl1`, ..., and returns each one's first `status` event after all of them completed (its
/// `uploaded` tells what it served). Each is given `seeder` with `--peer` (put the seeder behind a
/// [`SlowRelay`] so the leechers have something to trade: a loopback seeder serves everything
/// before they have met). With `direct`, each leecher is also given the leechers started before it;
/// otherwise they find each other through the torrent's trackers. Every wait is bounded by
/// `timeout`; the leechers are killed before this returns.
pub fn bt_swarm(
    torrent: &MadeTorrent,
    seeder: SocketAddr,
    work: &Path,
    n: usize,
    direct: bool,
    timeout: Duration,
) -> Vec<Value> {
    let mut peers = vec![seeder];
    let mut leechers: Vec<BtProc> = Vec::new();
    for i in 0..n {
        let given: &[SocketAddr] = if direct { &peers } else { &peers[..1] };
        let l = BtProc::get(
            &torrent.path,
            &work.join(format!("dl{i}")),
            given,
            &["--seed"],
        );
        peers.push(l.addr);
        leechers.push(l);
    }
    for l in &leechers {
        l.wait_complete(timeout);
    }
    leechers
        .iter()
        .map(|l| l.next_status(Duration::from_secs(10)))
        .collect()
}

/// A torrent made by `bt create` for a test.
#[derive(Clone, Debug)]
pub struct MadeTorrent {
    /// The `.torrent` file.
    pub path: PathBuf,
    /// Its info hash, 40 lowercase hex digits.
    pub info_hash: String,
    /// The torrent's name (the top file or folder).
    pub name: String,
    /// How many pieces it has.
    pub pieces: u64,
    /// The bytes of all its files.
    pub total_size: u64,
}

/// Makes `out` from `content` (a file or folder) with `bt create content -l piece_len -o out
/// [-t tracker]...` (each tracker its own tier). The info hash does not depend on the trackers, so a
/// test can make the torrent once without trackers to learn the hash for a tracker's whitelist.
pub fn make_torrent(
    content: &Path,
    trackers: &[String],
    piece_len: &str,
    out: &Path,
) -> MadeTorrent {
    let mut cmd = Command::new(bt_bin());
    cmd.arg("create")
        .arg(content)
        .args(["-l", piece_len, "--json", "--force", "-o"])
        .arg(out);
    for t in trackers {
        cmd.args(["-t", t]);
    }
    cmd.stdin(Stdio::null());
    let o = run_bounded(cmd, Duration::from_secs(120));
    assert!(
        o.status.success(),
        "bt create failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).expect("bt create --json prints JSON");
    MadeTorrent {
        path: out.to_owned(),
        info_hash: v["info_hash"].as_str().expect("info_hash").to_owned(),
        name: v["name"].as_str().expect("name").to_owned(),
        pieces: v["piece_count"].as_u64().expect("piece_count"),
        total_size: v["total_size"].as_u64().expect("total_size"),
    }
}

/// Generates [`crate::gen_content`]'s files under `tmp/src` and a torrent of `src/multi` (16 KiB
/// pieces, no tracker) at `tmp/multi.torrent`; returns `src` and the torrent.
pub fn multi_source(tmp: &crate::TempDir) -> (PathBuf, MadeTorrent) {
    let src = tmp.path().join("src");
    crate::gen_content(&src);
    let torrent = make_torrent(
        &src.join("multi"),
        &[],
        "16K",
        &tmp.path().join("multi.torrent"),
    );
    (src, torrent)
}

/// A multi-file content of about 8 MiB for swarm tests (under `swarm/`: odd sizes, a nested
/// folder, a zero-length file): with 16 KiB pieces, some 520 pieces for leechers to trade.
pub const SWARM_FILES: &[(&str, usize)] = &[
    ("swarm/a.bin", 7_340_033),
    ("swarm/sub/b.bin", 1_048_573),
    ("swarm/sub/deeper/c.bin", 777),
    ("swarm/empty.bin", 0),
];

/// Writes deterministic content into `dir`: each `(relative path, size)` is a file of
/// pseudo-random bytes that depend only on its path (so two runs give the same bytes).
pub fn gen_files(dir: &Path, files: &[(&str, usize)]) {
    for (rel, size) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("a parent folder")).expect("create folders");
        // xorshift64* seeded by an FNV-1a hash of the path.
        let mut state = rel.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        }) | 1;
        let mut bytes = Vec::with_capacity(size + 8);
        while bytes.len() < *size {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            bytes.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        bytes.truncate(*size);
        std::fs::write(&path, bytes).expect("write a content file");
    }
}

/// Asserts that folders `a` and `b` hold the same names (files and folders, recursively) with the
/// same bytes in every file; panics naming the first difference.
pub fn tree_equal(a: &Path, b: &Path) {
    let names = |d: &Path| -> BTreeSet<std::ffi::OsString> {
        std::fs::read_dir(d)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()))
            .map(|e| e.expect("readable folder entry").file_name())
            .collect()
    };
    let (na, nb) = (names(a), names(b));
    assert!(
        na == nb,
        "{} holds {:?} but {} holds {:?}",
        a.display(),
        na,
        b.display(),
        nb
    );
    for name in na {
        let (pa, pb) = (a.join(&name), b.join(&name));
        let (ma, mb) = (
            std::fs::symlink_metadata(&pa).expect("stat"),
            std::fs::symlink_metadata(&pb).expect("stat"),
        );
        assert!(
            ma.is_dir() == mb.is_dir() && ma.is_file() == mb.is_file(),
            "{} and {} are not the same kind",
            pa.display(),
            pb.display()
        );
        if ma.is_dir() {
            tree_equal(&pa, &pb);
        } else {
            assert!(
                ma.len() == mb.len(),
                "{} has {} bytes, {} has {}",
                pb.display(),
                mb.len(),
                pa.display(),
                ma.len()
            );
            assert!(
                std::fs::read(&pa).expect("read") == std::fs::read(&pb).expect("read"),
                "{} differs from {}",
                pb.display(),
                pa.display()
            );
        }
    }
}

/// A TCP relay from a local port to `upstream`, passing at most `rate` bytes per second each
/// way per connection. Stops accepting when dropped. Counts the bytes it delivered downstream
/// ([`SlowRelay::delivered`]).
pub struct SlowRelay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    delivered: Arc<AtomicU64>,
}

impl SlowRelay {
    /// Starts relaying; connections to [`SlowRelay::addr`] reach `upstream`.
    pub fn start(upstream: SocketAddr, rate: usize) -> SlowRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let delivered = Arc::new(AtomicU64::new(0));
        let counter = delivered.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((down, _)) => {
                        down.set_nonblocking(false).unwrap();
                        let Ok(up) = TcpStream::connect(upstream) else {
                            continue;
                        };
                        for (from, to, count) in [
                            (down.try_clone().unwrap(), up.try_clone().unwrap(), None),
                            (up, down, Some(counter.clone())),
                        ] {
                            let stopped = stopped.clone();
                            std::thread::spawn(move || {
                                pipe(from, to, rate, &stopped, count.as_deref());
                            });
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SlowRelay {
            addr,
            stop,
            delivered,
        }
    }
}

impl SlowRelay {
    /// Where to connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bytes written to the connecting side (from upstream) so far, over all connections.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::SeqCst)
    }
}

impl Drop for SlowRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copies `from` to `to` in 8 KiB steps paced to `rate` bytes per second, until either side
/// closes or `stop` is set; adds the bytes written to `count`.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    rate: usize,
    stop: &AtomicBool,
    count: Option<&AtomicU64>,
) {
    let mut buf = [0u8; 8192];
    let step = Duration::from_secs_f64(buf.len() as f64 / rate as f64);
    from.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while !stop.load(Ordering::Relaxed) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                if let Some(c) = count {
                    c.fetch_add(n as u64, Ordering::SeqCst);
                }
                std::thread::sleep(step);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}
