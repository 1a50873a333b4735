//! `bt seed` and `bt get` as real processes on loopback: a download between them, resume, and the
//! refusals a person sees. Every process is bounded in time and stopped by its PID.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bt_tests::{
    BtProc, SWARM_FILES, SlowRelay, TempDir, assert_no_panic, bt_command, bt_swarm, field_u64,
    fixtures_dir, gen_content, gen_files, make_torrent, run_bt_in, tree_equal,
};

/// Starts `bt seed TORRENT -d DIR` on an ephemeral loopback port and waits (bounded) for it to
/// listen.
fn seed(torrent: &Path, dir: &Path) -> BtProc {
    BtProc::seed(torrent, dir, &[])
}

#[test]
fn bt_get_downloads_from_bt_seed_and_resumes() {
    // Proves a multi-file torrent (nested folders, odd sizes, a zero-length file) moves between two
    // bt processes over loopback byte for byte, and that a second `bt get` into the same folder
    // finds everything already on disk (resume file and check) and exits 0 with no peer.
    let tmp = TempDir::new("transfer");
    gen_content(&tmp.path().join("src"));
    let torrent = fixtures_dir().join("mktorrent-multi.torrent");
    let seeder = seed(&torrent, &tmp.path().join("src"));
    let seeder_addr = seeder.addr.to_string();
    let dl = tmp.path().join("dl");
    let args = [
        "get",
        torrent.to_str().unwrap(),
        "-o",
        dl.to_str().unwrap(),
        "--peer",
        &seeder_addr,
        "--listen",
        "127.0.0.1:0",
    ];
    let out = run_bt_in(None, &args, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "bt get failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tree_equal(&tmp.path().join("src/multi"), &dl.join("multi"));
    assert!(
        dl.join("multi/empty.bin").is_file(),
        "the zero-length file exists"
    );
    drop(seeder);

    // No seeder now: everything must come from the disk and the resume file.
    let out = run_bt_in(None, &args, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "resumed bt get failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bt_seed_refuses_missing_or_wrong_data() {
    // Proves `bt seed` checks the data first and refuses, in one line, when it is incomplete.
    let tmp = TempDir::new("seed-refuse");
    let torrent = fixtures_dir().join("mktorrent-single.torrent");
    let out = run_bt_in(
        None,
        &[
            "seed",
            torrent.to_str().unwrap(),
            "-d",
            tmp.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("holds 0 of 31 pieces"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn bt_get_with_nowhere_to_find_peers_says_so_at_once() {
    // Proves a torrent with no tracker and no --peer is refused at once, in one line, when the DHT
    // is off (with the DHT on, bt looks for peers there: `tests/tests/dht.rs`).
    let tmp = TempDir::new("get-nowhere");
    let content = tmp.path().join("c");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("f.bin"), vec![7u8; 40_000]).unwrap();
    let torrent = tmp.path().join("t.torrent");
    let made = run_bt_in(
        None,
        &[
            "create",
            content.to_str().unwrap(),
            "-o",
            torrent.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert!(made.status.success());
    let out = run_bt_in(
        None,
        &[
            "get",
            torrent.to_str().unwrap(),
            "-o",
            tmp.path().join("dl").to_str().unwrap(),
            "--no-dht",
        ],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("names no tracker, no --peer was given and the DHT is off"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn bt_get_reports_unreachable_trackers_within_seconds() {
    // Proves that when no tracker can be reached, the user hears about each one within seconds
    // (a refused HTTP port, a refused UDP port, a UDP tracker that never answers) instead of
    // a silent hang.
    let tmp = TempDir::new("get-dead-trackers");
    let content = tmp.path().join("c");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("f.bin"), vec![7u8; 40_000]).unwrap();
    // Ports that refuse: bound then released. A port that is silent: a UDP socket kept open.
    let refused_tcp = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused_udp = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let torrent = tmp.path().join("t.torrent");
    let trackers = [
        format!("http://{refused_tcp}/announce"),
        format!("udp://{refused_udp}/announce"),
        format!("udp://{silent_addr}/announce"),
    ];
    let mut args = vec!["create".to_owned(), content.display().to_string()];
    for t in &trackers {
        args.extend(["-t".to_owned(), t.clone()]);
    }
    args.extend(["-o".to_owned(), torrent.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(
        run_bt_in(None, &args, Duration::from_secs(30))
            .status
            .success()
    );

    let started = Instant::now();
    let state = TempDir::new("state");
    let mut child = bt_command(state.path())
        .args([
            "get",
            torrent.to_str().unwrap(),
            "-o",
            tmp.path().join("dl").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--no-dht",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bt get");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let want = [
        format!("tracker {}: could not reach tracker", trackers[0]),
        format!("tracker {}: could not reach tracker", trackers[1]),
        format!("tracker {} has not answered in", trackers[2]),
    ];
    while !want
        .iter()
        .all(|w| seen.iter().any(|l: &String| l.contains(w.as_str())))
        && started.elapsed() < Duration::from_secs(15)
    {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_no_panic("bt get", seen.join("\n").as_bytes());
    for w in &want {
        assert!(
            seen.iter().any(|l| l.contains(w.as_str())),
            "no line with {w:?} within {:?}: {seen:#?}",
            started.elapsed()
        );
    }
    drop(silent);
}

#[test]
fn bt_leechers_given_each_other_serve_each_other() {
    // Proves bt leechers serve other leechers, not only take from the seeder: one `bt seed`,
    // reachable only through a relay passing 512 KiB/s per connection, and three `bt get --seed`
    // started together, each given the relay and the leechers started before it with --peer. All
    // three end byte-equal to the source, every leecher uploaded something, and together they
    // uploaded at least the torrent's size. The seeder's 1.5 MiB/s in all gives one copy in about
    // 5.5 s, so over the run it gives well under two of the three copies the leechers need; at
    // 1 MiB/s per connection it gave almost exactly two and the sum sat on the bound.
    let tmp = TempDir::new("swarm-direct");
    let src = tmp.path().join("src");
    gen_files(&src, SWARM_FILES);
    let torrent = make_torrent(
        &src.join("swarm"),
        &[],
        "16K",
        &tmp.path().join("swarm.torrent"),
    );
    let seeder = BtProc::seed(&torrent.path, &src, &[]);
    let relay = SlowRelay::start(seeder.addr, 512 << 10);
    let statuses = bt_swarm(
        &torrent,
        relay.addr(),
        tmp.path(),
        3,
        true,
        Duration::from_secs(60),
    );
    drop(seeder);
    for i in 0..statuses.len() {
        tree_equal(&src.join("swarm"), &tmp.path().join(format!("dl{i}/swarm")));
    }
    assert_leechers_traded(&statuses, torrent.total_size);
}

/// Every leecher uploaded something, and together at least `total` bytes.
fn assert_leechers_traded(statuses: &[serde_json::Value], total: u64) {
    let uploaded: Vec<u64> = statuses.iter().map(|s| field_u64(s, "uploaded")).collect();
    assert!(
        uploaded.iter().all(|&u| u > 0) && uploaded.iter().sum::<u64>() >= total,
        "leechers uploaded {uploaded:?} of a {total}-byte torrent; their last status lines: {statuses:?}"
    );
}
