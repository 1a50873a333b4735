//! Malicious torrents and trackers through the real `bt`: path traversal in every form
//! a torrent can spell it, symbolic links in the output folder that lead outside it, torrents of
//! millions of pieces, and trackers that answer with a million peers, bogus intervals or endless
//! bodies. Each is refused with one clear line or bounded (the bound visible in bt's JSON events
//! and its memory), and nothing outside the output folder is touched.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bt_tests::fake_peer::vm_hwm_kib;
use bt_tests::{BtProc, TempDir, field_u64, is_event, run_bt, run_bt_in};
use serde_json::Value;

// ---- bencode by hand (the point is to write what no honest tool writes) ----

fn bstr(b: &[u8]) -> Vec<u8> {
    [format!("{}:", b.len()).into_bytes(), b.to_vec()].concat()
}

fn int(i: i64) -> Vec<u8> {
    format!("i{i}e").into_bytes()
}

fn list(items: &[Vec<u8>]) -> Vec<u8> {
    [b"l".to_vec(), items.concat(), b"e".to_vec()].concat()
}

/// A dictionary; keys are sorted here, as bencode wants.
fn dict(items: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let mut items = items.to_vec();
    items.sort_by(|a, b| a.0.cmp(b.0));
    let body: Vec<u8> = items
        .iter()
        .flat_map(|(k, v)| [bstr(k), v.clone()].concat())
        .collect();
    [b"d".to_vec(), body, b"e".to_vec()].concat()
}

const PIECE: i64 = 16384;

/// A torrent whose `info` holds `info` plus `piece length` and enough `pieces` for `total` bytes.
fn torrent(mut info: Vec<(&'static [u8], Vec<u8>)>, total: i64) -> Vec<u8> {
    let n = ((total + PIECE - 1) / PIECE).max(1) as usize;
    info.push((b"piece length", int(PIECE)));
    info.push((b"pieces", bstr(&vec![7u8; n * 20])));
    dict(&[
        (b"announce", bstr(b"http://127.0.0.1:1/announce")),
        (b"info", dict(&info)),
    ])
}

fn file_entry(path: &[&[u8]], len: i64) -> Vec<u8> {
    let comps: Vec<Vec<u8>> = path.iter().map(|c| bstr(c)).collect();
    dict(&[(b"length", int(len)), (b"path", list(&comps))])
}

fn multi(name: &[u8], files: &[&[&[u8]]]) -> Vec<u8> {
    let entries: Vec<Vec<u8>> = files.iter().map(|p| file_entry(p, 1000)).collect();
    torrent(
        vec![(b"name", bstr(name)), (b"files", list(&entries))],
        1000 * files.len() as i64,
    )
}

fn single(name: &[u8]) -> Vec<u8> {
    torrent(vec![(b"name", bstr(name)), (b"length", int(1000))], 1000)
}

/// Every entry under `dir`, recursively, as paths relative to it (sorted).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `bt get TORRENT -o OUT --peer 127.0.0.1:1 EXTRA...` (bounded to 30 s), which must fail
/// with exit code 1, and returns its stderr.
fn refused_get(torrent: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "get",
        torrent.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--peer",
        "127.0.0.1:1",
    ];
    args.extend_from_slice(extra);
    let run = run_bt_in(None, &args, Duration::from_secs(30));
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(1), "bt {args:?}: {err}");
    err
}

// ---- torrents ----

#[test]
fn path_traversal_in_every_form_is_refused_before_anything_is_written() {
    // Proves `bt get` refuses each way a torrent can name a path outside the output folder with
    // one line naming the component and why, exit 1, and creates nothing anywhere.
    let ok: &[u8] = b"ok";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot-component",
            multi(ok, &[&[b"..", b"evil"]]),
            "refers to a folder by `.` or `..`",
        ),
        (
            "dotdot-deeper",
            multi(ok, &[&[b"a", b"..", b"..", b"evil"]]),
            "refers to a folder by `.` or `..`",
        ),
        (
            "dot-component",
            multi(ok, &[&[b".", b"evil"]]),
            "refers to a folder by `.` or `..`",
        ),
        (
            "slash-in-component",
            multi(ok, &[&[b"../../evil"]]),
            "contains a path separator",
        ),
        (
            "absolute-component",
            multi(ok, &[&[b"/tmp/evil"]]),
            "contains a path separator",
        ),
        (
            "backslash-in-component",
            multi(ok, &[&[b"..\\..\\evil"]]),
            "contains a path separator",
        ),
        ("empty-component", multi(ok, &[&[b"", b"evil"]]), "empty"),
        ("nul-in-component", multi(ok, &[&[b"ev\0il"]]), "NUL"),
        (
            "name-too-long",
            multi(ok, &[&[&[b'a'; 256]]]),
            "longer than 255 bytes",
        ),
        (
            "dotdot-folder-name",
            multi(b"..", &[&[b"evil"]]),
            "refers to a folder by `.` or `..`",
        ),
        (
            "absolute-single-name",
            single(b"/tmp/evil"),
            "contains a path separator",
        ),
        (
            "dotdot-single-name",
            single(b".."),
            "refers to a folder by `.` or `..`",
        ),
        (
            "dotdot-in-name-utf8",
            torrent(
                vec![
                    (b"name", bstr(b"fine")),
                    (b"name.utf-8", bstr(b"..")),
                    (b"length", int(1000)),
                ],
                1000,
            ),
            "refers to a folder by `.` or `..`",
        ),
        (
            "dotdot-in-path-utf8",
            torrent(
                vec![
                    (b"name", bstr(b"fine")),
                    (
                        b"files",
                        list(&[dict(&[
                            (b"length", int(1000)),
                            (b"path", list(&[bstr(b"fine")])),
                            (b"path.utf-8", list(&[bstr(b".."), bstr(b"evil")])),
                        ])]),
                    ),
                ],
                1000,
            ),
            "refers to a folder by `.` or `..`",
        ),
    ];
    let tmp = TempDir::new("traversal");
    for (name, bytes, phrase) in cases {
        let case = tmp.path().join(name);
        std::fs::create_dir_all(&case).unwrap();
        let t = case.join("t.torrent");
        std::fs::write(&t, &bytes).unwrap();
        let out_dir = case.join("deep/out");
        let err = refused_get(&t, &out_dir, &[]);
        assert_eq!(err.lines().count(), 1, "{name}: one line: {err}");
        assert!(err.starts_with("bt: error: "), "{name}: {err}");
        assert!(err.contains("unsafe component"), "{name}: {err}");
        assert!(err.contains(phrase), "{name}: wants {phrase:?}: {err}");
        assert_eq!(tree(&case), vec!["t.torrent"], "{name}: wrote something");
    }
    assert!(!Path::new("/tmp/evil").exists());

    // A path deeper than the system allows is refused before the first write too.
    let deep: Vec<&[u8]> = std::iter::repeat_n(&b"d"[..], 2100)
        .chain([&b"f"[..]])
        .collect();
    let case = tmp.path().join("too-deep");
    std::fs::create_dir_all(&case).unwrap();
    let t = case.join("t.torrent");
    std::fs::write(&t, multi(ok, &[&deep])).unwrap();
    let out_dir = case.join("out");
    let err = refused_get(&t, &out_dir, &[]);
    assert!(
        err.contains("is longer than the 4096 bytes a path may have"),
        "{err}"
    );
    assert!(
        tree(&out_dir).is_empty(),
        "too-deep: wrote {:?}",
        tree(&out_dir)
    );
}

/// A folder `multi/` with `a.bin` and `sub/b.bin`, and a torrent of it.
fn honest_torrent(tmp: &Path) -> std::path::PathBuf {
    let src = tmp.join("src/multi");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.bin"), vec![1u8; 40_000]).unwrap();
    std::fs::write(src.join("sub/b.bin"), vec![2u8; 30_000]).unwrap();
    let t = tmp.join("multi.torrent");
    let made = run_bt(&[
        "create",
        src.to_str().unwrap(),
        "-l",
        "16K",
        "-o",
        t.to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    t
}

#[test]
fn symbolic_links_leading_outside_the_output_folder_are_never_followed() {
    // Proves a link in the output folder where the torrent's folder, a subfolder or a file goes
    // (to a folder outside, a file outside, or nowhere) makes `bt get` stop with a line naming
    // the link, and that nothing outside changes: no file appears, no byte is written.
    let tmp = TempDir::new("symlinks");
    let t = honest_torrent(tmp.path());
    type Setup = fn(&Path, &Path);
    let cases: [(&str, Setup); 4] = [
        ("torrent-folder", |out, outside| {
            std::os::unix::fs::symlink(outside, out.join("multi")).unwrap();
        }),
        ("subfolder", |out, outside| {
            std::fs::create_dir_all(out.join("multi")).unwrap();
            std::os::unix::fs::symlink(outside, out.join("multi/sub")).unwrap();
        }),
        ("file-to-existing-file", |out, outside| {
            std::fs::create_dir_all(out.join("multi")).unwrap();
            std::os::unix::fs::symlink(outside.join("victim"), out.join("multi/a.bin")).unwrap();
        }),
        ("dangling-file-link", |out, outside| {
            std::fs::create_dir_all(out.join("multi/sub")).unwrap();
            std::os::unix::fs::symlink(outside.join("new"), out.join("multi/sub/b.bin")).unwrap();
        }),
    ];
    for (name, setup) in cases {
        let outside = tmp.path().join(format!("{name}-outside"));
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("victim"), b"precious").unwrap();
        let out_dir = tmp.path().join(format!("{name}-out"));
        std::fs::create_dir_all(&out_dir).unwrap();
        setup(&out_dir, &outside);
        let err = refused_get(&t, &out_dir, &[]);
        assert!(
            err.contains("refusing to follow a symbolic link at"),
            "{name}: {err}"
        );
        assert_eq!(tree(&outside), vec!["victim"], "{name}: outside changed");
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"precious");
    }

    // Seeding from a folder whose file is a link to a file outside: bt must not serve it.
    let seed_dir = tmp.path().join("seed");
    std::fs::create_dir_all(seed_dir.join("multi/sub")).unwrap();
    std::fs::write(seed_dir.join("multi/sub/b.bin"), vec![2u8; 30_000]).unwrap();
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, vec![1u8; 40_000]).unwrap();
    std::os::unix::fs::symlink(&secret, seed_dir.join("multi/a.bin")).unwrap();
    let out = run_bt_in(
        None,
        &[
            "seed",
            t.to_str().unwrap(),
            "-d",
            seed_dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        Duration::from_secs(30),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "seed: {err}");
    assert!(
        err.contains("refusing to follow a symbolic link at"),
        "seed: {err}"
    );
}

/// A single-file torrent of `n` pieces of 16 KiB (hashes all alike; nobody will serve it).
fn many_pieces(n: usize) -> Vec<u8> {
    let url = b"http://127.0.0.1:1/announce";
    let mut out = format!("d8:announce{}:", url.len()).into_bytes();
    out.extend_from_slice(url);
    out.extend_from_slice(
        format!(
            "4:infod6:lengthi{}e4:name4:huge12:piece lengthi{PIECE}e6:pieces{}:",
            n as i64 * PIECE,
            n * 20
        )
        .as_bytes(),
    );
    out.resize(out.len() + n * 20, 0x5a);
    out.extend_from_slice(b"ee");
    out
}

/// The peak resident memory of process `pid` (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    vm_hwm_kib(pid).expect("VmHWM in /proc/PID/status") * 1024
}

#[test]
fn a_torrent_of_millions_of_pieces_is_bounded_and_a_larger_one_refused() {
    // Proves 3 million pieces (a 60 MB torrent, 46 GiB of data) load for `bt info` and `bt get`
    // in bounded memory, a torrent over the 64 MiB metadata bound is refused with one line, and
    // `--max-metadata-size` lowers that bound.
    let tmp = TempDir::new("many-pieces");
    let big = tmp.path().join("big.torrent");
    std::fs::write(&big, many_pieces(3_000_000)).unwrap();
    let info = run_bt_in(
        None,
        &["info", big.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(info.status.success(), "{}", stderr(&info));
    assert!(String::from_utf8_lossy(&info.stdout).contains("3,000,000 x 16 KiB"));

    let out_dir = tmp.path().join("out");
    let mut get = BtProc::get(&big, &out_dir, &["127.0.0.1:1".parse().unwrap()], &[]);
    // Bounded by the metadata: the hashes (60 MB) and a few bytes per piece, in a debug build.
    let peak = peak_rss(get.proc().pid());
    assert!(peak < 600 << 20, "bt get holds {} MiB", peak >> 20);
    get.proc().kill();

    let err = refused_get(&big, &out_dir, &["--max-metadata-size", "1MiB"]);
    assert!(
        err.contains("larger than --max-metadata-size 1 MiB"),
        "{err}"
    );

    let huge = tmp.path().join("huge.torrent");
    std::fs::write(&huge, many_pieces(3_400_000)).unwrap();
    for cmd in ["info", "get"] {
        let out = run_bt_in(
            None,
            &[cmd, huge.to_str().unwrap(), "--peer", "127.0.0.1:1"]
                [..if cmd == "info" { 2 } else { 4 }],
            Duration::from_secs(30),
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        assert_eq!(err.lines().count(), 1, "{cmd}: {err}");
        assert!(err.contains("larger than"), "{cmd}: {err}");
    }
}

// ---- trackers ----

/// What a fake HTTP tracker does with each announce.
#[derive(Clone)]
enum Answer {
    /// A 200 with this body and its Content-Length.
    Body(Vec<u8>),
    /// A 200 without a length, then bytes as fast as the client takes them (at most 256 MiB).
    Endless,
    /// A 200 without a length, then one byte a second (at most 120).
    Trickle,
}

/// An HTTP tracker on 127.0.0.1 giving every announce the same [`Answer`], on its own thread
/// until dropped (bounded: it stops after 120 s whatever happens).
struct FakeTracker {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeTracker {
    fn start(answer: Answer) -> FakeTracker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(120);
            while !stopping.load(Ordering::SeqCst) && Instant::now() < end {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let answer = answer.clone();
                        let stopping = stopping.clone();
                        std::thread::spawn(move || serve(stream, &answer, &stopping));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeTracker {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }
}

impl Drop for FakeTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: TcpStream, answer: &Answer, stop: &AtomicBool) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The request head, at most 16 KiB.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    match answer {
        Answer::Body(body) => {
            let _ = stream.write_all(
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
            );
            let _ = stream.write_all(body);
        }
        Answer::Endless => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nd5:peers");
            let chunk = vec![b'9'; 64 * 1024];
            for _ in 0..4096 {
                if stop.load(Ordering::SeqCst) || stream.write_all(&chunk).is_err() {
                    return;
                }
            }
        }
        Answer::Trickle => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            for _ in 0..120 {
                if stop.load(Ordering::SeqCst) || stream.write_all(b"d").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// A tracker's bencoded answer: `interval` and `n` compact peers (distinct loopback addresses on
/// the discard port, so dialling them fails at once).
fn answer_body(interval: i64, n: usize) -> Vec<u8> {
    let mut peers = Vec::with_capacity(n * 6);
    for i in 0..n {
        let [_, a, b, c] = (i as u32 + 1).to_be_bytes();
        peers.extend_from_slice(&[127, a, b, c, 0, 9]);
    }
    dict(&[(b"interval", int(interval)), (b"peers", bstr(&peers))])
}

/// A small torrent announcing to `url`, made by `bt create` in `dir`.
fn torrent_for(dir: &Path, url: &str) -> std::path::PathBuf {
    let src = dir.join("data.bin");
    std::fs::write(&src, vec![3u8; 50_000]).unwrap();
    let t = dir.join("t.torrent");
    let made = run_bt(&[
        "create",
        src.to_str().unwrap(),
        "-t",
        url,
        "-o",
        t.to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    t
}

/// Starts `bt get` on a torrent announcing to `url` and returns it with its folder.
fn get_from_tracker(name: &str, url: &str) -> (BtProc, TempDir) {
    let tmp = TempDir::new(name);
    let t = torrent_for(tmp.path(), url);
    let get = BtProc::get(&t, &tmp.path().join("out"), &[], &["-v"]);
    (get, tmp)
}

const TRACKER_WAIT: Duration = Duration::from_secs(45);

#[test]
fn http_tracker_answers_are_bounded_and_bogus_intervals_clamped() {
    // Proves, against a real HTTP tracker on loopback: a million peers (6 MB) is refused as too
    // large; 300,000 peers that fit in the body bound are cut to 10,000; intervals of 1 s, -5 s
    // and 10^15 s become 60 s (our floor), 30 min (the default) and one day; an endless body and
    // a body trickling one byte a second each end in a clear error; bt's memory stays bounded.
    let cases: Vec<(&str, Answer)> = vec![
        ("million", Answer::Body(answer_body(1800, 1_000_000))),
        ("many", Answer::Body(answer_body(1800, 300_000))),
        ("short", Answer::Body(answer_body(1, 3))),
        ("negative", Answer::Body(answer_body(-5, 3))),
        ("huge", Answer::Body(answer_body(1_000_000_000_000_000, 3))),
        ("endless", Answer::Endless),
        ("trickle", Answer::Trickle),
    ];
    let trackers: Vec<FakeTracker> = cases
        .iter()
        .map(|(_, a)| FakeTracker::start(a.clone()))
        .collect();
    let mut runs: Vec<(&str, BtProc, TempDir)> = cases
        .iter()
        .zip(&trackers)
        .map(|((name, _), tr)| {
            let (get, tmp) = get_from_tracker(name, &tr.url());
            (*name, get, tmp)
        })
        .collect();
    let answer = |get: &BtProc| {
        get.wait_for(
            |e| is_event(e, "tracker_answer") || is_event(e, "tracker_error"),
            TRACKER_WAIT,
        )
    };
    let error_of = |ev: &Value| ev["error"].as_str().unwrap_or_default().to_owned();
    for (name, get, _) in &mut runs {
        let ev = answer(get);
        match *name {
            "million" | "endless" => {
                assert!(is_event(&ev, "tracker_error"), "{name}: {ev}");
                assert!(
                    error_of(&ev).contains("tracker answer is too large"),
                    "{name}: {ev}"
                );
            }
            "trickle" => {
                assert!(is_event(&ev, "tracker_error"), "{name}: {ev}");
                assert!(
                    error_of(&ev).contains("did not answer in time"),
                    "{name}: {ev}"
                );
            }
            "many" => {
                assert!(is_event(&ev, "tracker_answer"), "{name}: {ev}");
                assert_eq!(field_u64(&ev, "peers"), 10_000, "{name}: {ev}");
            }
            "short" | "negative" | "huge" => {
                assert!(is_event(&ev, "tracker_answer"), "{name}: {ev}");
                let want = match *name {
                    "short" => 60,
                    "negative" => 1800,
                    _ => 86_400,
                };
                assert_eq!(field_u64(&ev, "next_announce_s"), want, "{name}: {ev}");
            }
            _ => unreachable!(),
        }
        let peak = peak_rss(get.proc().pid());
        assert!(peak < 150 << 20, "{name}: bt holds {} MiB", peak >> 20);
        get.proc().kill();
    }
}

#[test]
fn udp_tracker_answers_are_bounded_and_bogus_intervals_clamped() {
    // Proves, against a UDP tracker on loopback (BEP 15): an interval of 1 s becomes our 60 s
    // floor, one of 2^32-1 s becomes a day, and a datagram packed with 10,900 peers is read
    // whole and kept under the per-answer bound.
    for (interval, peers, want_next) in [(1u32, 10, 60u64), (u32::MAX, 10_900, 86_400)] {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let url = format!("udp://{}/announce", socket.local_addr().unwrap());
        let (mut get, _tmp) = get_from_tracker("udp", &url);
        // Answer a connect and then the announce; bounded to 30 s.
        let end = Instant::now() + Duration::from_secs(30);
        let mut answered = false;
        let mut buf = [0u8; 2048];
        while !answered && Instant::now() < end {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let action = u32::from_be_bytes(buf[8..12].try_into().unwrap());
            let tx = &buf[12..16];
            if n == 16 && action == 0 {
                let mut reply = vec![0, 0, 0, 0];
                reply.extend_from_slice(tx);
                reply.extend_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
                socket.send_to(&reply, from).unwrap();
            } else if n >= 98 && action == 1 {
                let mut reply = vec![0, 0, 0, 1];
                reply.extend_from_slice(tx);
                reply.extend_from_slice(&interval.to_be_bytes());
                reply.extend_from_slice(&0u32.to_be_bytes());
                reply.extend_from_slice(&1u32.to_be_bytes());
                for i in 0..peers as u32 {
                    let [_, a, b, c] = (i + 1).to_be_bytes();
                    reply.extend_from_slice(&[127, a, b, c, 0, 9]);
                }
                socket.send_to(&reply, from).unwrap();
                answered = true;
            }
        }
        assert!(answered, "bt never announced:\n{}", get.log());
        let ev = get.wait_for(|e| is_event(e, "tracker_answer"), TRACKER_WAIT);
        assert_eq!(field_u64(&ev, "next_announce_s"), want_next, "{ev}");
        assert_eq!(field_u64(&ev, "peers"), peers.min(10_000) as u64, "{ev}");
        get.proc().kill();
    }
}
