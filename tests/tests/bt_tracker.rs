//! `bt tracker` on loopback: `bt seed` and `bt get` find each other through it over HTTP and over
//! UDP, and real clients (a libtorrent seeder, an aria2c leecher) use it too, over both. No peer
//! address is given to any client: everything they meet comes from their announces to `bt
//! tracker`. The client side of these tests is proven against opentracker by `interop.rs` and
//! `interop_tracker.rs`, so a failure here points at the tracker.
//!
//! Every process is killed by its PID when its guard drops; every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bt_tests::{
    BtProc, LtSeeder, MadeTorrent, Proc, TempDir, aria2_get, aria2_get_udp, bt_command, gen_files,
    is_event, make_torrent, tree_equal,
};
use serde_json::Value;

/// The bound on one download.
const TRANSFER: Duration = Duration::from_secs(60);

/// How long a seeder may take to show up complete in the tracker's scrape.
const REGISTER: Duration = Duration::from_secs(20);

/// A few files of odd sizes (about 3 MiB) under `content/`.
const FILES: &[(&str, usize)] = &[
    ("content/a.bin", 2_500_003),
    ("content/sub/b.bin", 700_001),
    ("content/sub/c.txt", 333),
];

/// A `bt tracker --http 127.0.0.1:0 --udp 127.0.0.1:0 --interval 60 --json` child; killed when
/// dropped.
struct BtTracker {
    proc: Proc,
    http: SocketAddr,
    udp: SocketAddr,
}

impl BtTracker {
    fn start() -> BtTracker {
        let state = TempDir::new("state");
        let mut cmd = bt_command(state.path());
        cmd.args([
            "tracker",
            "--http",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
            "--interval",
            "60",
            "--json",
        ]);
        let mut proc = Proc::spawn("bt tracker", cmd);
        proc.check_panics(true);
        let addr = |proto: &str| -> SocketAddr {
            let ev = proc.wait_for(
                |e| is_event(e, "listening") && e["proto"] == proto,
                Duration::from_secs(30),
            );
            ev["addr"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no address in {ev}"))
        };
        let (http, udp) = (addr("http"), addr("udp"));
        BtTracker { proc, http, udp }
    }

    fn http_url(&self) -> String {
        format!("http://{}/announce", self.http)
    }

    fn udp_url(&self) -> String {
        format!("udp://{}/announce", self.udp)
    }

    /// (complete, incomplete, downloaded) of `info_hash` (hex) from an HTTP scrape (BEP 48).
    fn scrape(&self, info_hash: &str) -> (i64, i64, i64) {
        let query: String = (0..info_hash.len())
            .step_by(2)
            .map(|i| format!("%{}", &info_hash[i..i + 2]))
            .collect();
        let mut s = TcpStream::connect_timeout(&self.http, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("cannot connect to bt tracker: {e}\n{}", self.proc.log()));
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        write!(s, "GET /scrape?info_hash={query} HTTP/1.0\r\n\r\n").expect("send the scrape");
        let mut reply = Vec::new();
        s.take(1 << 20)
            .read_to_end(&mut reply)
            .expect("read the scrape");
        let at = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4)
            .unwrap_or_else(|| panic!("no HTTP reply: {}", String::from_utf8_lossy(&reply)));
        assert!(
            reply.starts_with(b"HTTP/1.1 200 "),
            "{}",
            String::from_utf8_lossy(&reply)
        );
        let decoded = bt_protocol::bencode::decode(&reply[at..], Default::default())
            .expect("a bencoded scrape");
        let hash: Vec<u8> = (0..20)
            .map(|i| u8::from_str_radix(&info_hash[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        let entry = decoded
            .value
            .as_dict()
            .and_then(|d| d.get(b"files"))
            .and_then(|f| f.as_dict())
            .and_then(|f| f.get(&hash))
            .and_then(|e| e.as_dict())
            .cloned()
            .expect("the scrape names the torrent");
        let count = |k: &[u8]| entry.get(k).and_then(|v| v.as_int()).expect("a count");
        (
            count(b"complete"),
            count(b"incomplete"),
            count(b"downloaded"),
        )
    }

    /// Waits (at most `timeout`) until the scrape counts `seeders` complete peers.
    fn wait_for_seeders(&self, info_hash: &str, seeders: i64, timeout: Duration) {
        let mut counts = (0, 0, 0);
        let found = bt_tests::poll_until(timeout, || {
            counts = self.scrape(info_hash);
            (counts.0 >= seeders).then_some(())
        });
        assert!(
            found.is_some(),
            "bt tracker counts {counts:?} for {info_hash} after {timeout:?}, wanted {seeders} \
             seeders\n{}",
            self.proc.log()
        );
    }
}

/// `FILES` under `tmp/src`, a running `bt tracker`, and a torrent of `src/content` whose only
/// tracker is `url(&tracker)` (32 KiB pieces).
fn setup(tmp: &TempDir, url: impl Fn(&BtTracker) -> String) -> (PathBuf, BtTracker, MadeTorrent) {
    let src = tmp.path().join("src");
    gen_files(&src, FILES);
    let tracker = BtTracker::start();
    let torrent = make_torrent(
        &src.join("content"),
        &[url(&tracker)],
        "32K",
        &tmp.path().join("content.torrent"),
    );
    (src, tracker, torrent)
}

/// `bt seed` registers with the tracker, then `bt get` with no `--peer` downloads from it; the
/// result is byte-equal, and once `bt get` has exited, its `stopped` announce has taken it off
/// the tracker.
fn bt_to_bt(tmp: &TempDir, url: impl Fn(&BtTracker) -> String) {
    let (src, tracker, torrent) = setup(tmp, url);
    let _seeder = BtProc::seed(&torrent.path, &src, &[]);
    tracker.wait_for_seeders(&torrent.info_hash, 1, REGISTER);
    let dl = tmp.path().join("dl");
    let mut leecher = BtProc::get(&torrent.path, &dl, &[], &[]);
    leecher.wait_success(TRANSFER);
    let answers: Vec<Value> = leecher
        .proc()
        .events()
        .into_iter()
        .filter(|e| is_event(e, "tracker_answer"))
        .collect();
    assert!(
        answers.iter().any(|e| e["peers"].as_u64() >= Some(1)),
        "bt get never heard of a peer from the tracker: {answers:?}\n{}",
        leecher.log()
    );
    tree_equal(&src.join("content"), &dl.join("content"));
    // The leecher completed before it stopped, so a tracker that kept it would count two
    // seeders: only the seeder is left, and the completion was counted.
    let (complete, incomplete, downloaded) = tracker.scrape(&torrent.info_hash);
    assert_eq!(
        (complete, incomplete),
        (1, 0),
        "the leecher is still listed after it stopped (scrape: {complete} complete, \
         {incomplete} incomplete)\n{}",
        tracker.proc.log()
    );
    assert_eq!(downloaded, 1, "one completed download counted");
}

#[test]
fn bt_seed_and_bt_get_meet_through_bt_tracker_http() {
    // Proves bt's tracker serves bt's own HTTP announces: the seeder is registered complete, the
    // leecher gets its address, downloads byte for byte, and its `stopped` removes it.
    let tmp = TempDir::new("bt-tracker-http");
    bt_to_bt(&tmp, BtTracker::http_url);
}

#[test]
fn bt_seed_and_bt_get_meet_through_bt_tracker_udp() {
    // The same over UDP (BEP 15: connect, announce with a connection id, stateless ids).
    let tmp = TempDir::new("bt-tracker-udp");
    bt_to_bt(&tmp, BtTracker::udp_url);
}

#[test]
fn libtorrent_seeder_and_aria2_leecher_use_bt_tracker_http() {
    // Proves real clients speak to bt's tracker over HTTP: libtorrent's announce registers it as
    // a seeder (the scrape says so), and aria2c, given only the torrent, gets its address from
    // the tracker and downloads byte for byte.
    let tmp = TempDir::new("bt-tracker-lt-aria2-http");
    let (src, tracker, torrent) = setup(&tmp, BtTracker::http_url);
    let _seeder = LtSeeder::start(&torrent.path, &src);
    tracker.wait_for_seeders(&torrent.info_hash, 1, REGISTER);
    let dl = tmp.path().join("aria2");
    aria2_get(&torrent.path, &dl, TRANSFER);
    tree_equal(&src.join("content"), &dl.join("content"));
}

#[test]
fn libtorrent_seeder_and_aria2_leecher_use_bt_tracker_udp() {
    // The same over UDP: libtorrent and aria2c (which sends tracker packets through its DHT
    // socket) both do the BEP 15 exchange with bt's tracker.
    let tmp = TempDir::new("bt-tracker-lt-aria2-udp");
    let (src, tracker, torrent) = setup(&tmp, BtTracker::udp_url);
    let _seeder = LtSeeder::start(&torrent.path, &src);
    tracker.wait_for_seeders(&torrent.info_hash, 1, REGISTER);
    let dl = tmp.path().join("aria2");
    aria2_get_udp(&torrent.path, &dl, TRANSFER);
    tree_equal(&src.join("content"), &dl.join("content"));
}

#[test]
fn bt_tracker_refuses_torrents_off_its_allow_list_and_stops_on_sigterm() {
    // Proves --allow: an announce for another torrent gets a failure reason bt get reports, and
    // SIGTERM stops the tracker cleanly with its final counts.
    let tmp = TempDir::new("bt-tracker-allow");
    let src = tmp.path().join("src");
    gen_files(&src, FILES);
    let mut cmd = bt_command(tmp.path());
    cmd.args([
        "tracker",
        "--http",
        "127.0.0.1:0",
        "--allow",
        &"00".repeat(20),
        "--json",
    ]);
    let mut proc = Proc::spawn("bt tracker", cmd);
    proc.check_panics(true);
    let ev = proc.wait_for(|e| is_event(e, "listening"), Duration::from_secs(30));
    let url = ev["url"].as_str().expect("a url").to_owned();
    let torrent = make_torrent(
        &src.join("content"),
        &[url],
        "32K",
        &tmp.path().join("t.torrent"),
    );
    let out = bt_tests::run_bt_in(
        None,
        &[
            "get",
            path(&torrent.path),
            "-o",
            path(tmp.path()),
            "--announce-only",
            "--json",
        ],
        Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("torrent not registered with this tracker"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    proc.signal("TERM");
    let exit = proc.wait_exit(Duration::from_secs(10));
    assert!(exit.success(), "bt tracker exited {exit}\n{}", proc.log());
    let stopped = proc.wait_for(|e| is_event(e, "stopped"), Duration::from_secs(1));
    assert_eq!(
        (stopped["refused"].as_u64(), stopped["peers"].as_u64()),
        (Some(1), Some(0))
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}
