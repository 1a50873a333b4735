//! `bt get --serve`: the torrent's files over HTTP while the download runs behind a slow relay,
//! read by curl (ranges, HEAD, the index and the playlist), decoded by ffmpeg, and attacked with
//! hostile requests; each download must still complete byte-identical.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bt_tests::clients::{
    BtProc, LtSeeder, SlowRelay, field_u64, gen_files, is_event, make_torrent, tree_equal,
};
use bt_tests::{TempDir, run_bounded};

const CURL: &str = "/usr/bin/curl";
const FFMPEG: &str = "/usr/bin/ffmpeg";

/// How long a download of these tests may take at most.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(90);

/// `bt get TORRENT -o DL --peer PEER --serve 127.0.0.1:0 EXTRA...` and the base URL it serves
/// at (no trailing `/`).
fn get_serving(torrent: &Path, dl: &Path, peer: SocketAddr, extra: &[&str]) -> (BtProc, String) {
    let mut args = vec!["--serve", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let bt = BtProc::get(torrent, dl, &[peer], &args);
    let url = serving_url(&bt);
    (bt, url)
}

/// The URL in `bt`'s `serving` event (the server on 127.0.0.1, port 0: any free one).
fn serving_url(bt: &BtProc) -> String {
    let ev = bt.wait_for(|e| is_event(e, "serving"), Duration::from_secs(10));
    ev["url"]
        .as_str()
        .unwrap_or_else(|| panic!("no url in {ev}"))
        .trim_end_matches('/')
        .to_owned()
}

fn server_addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// Whether `bt` said its download is complete.
fn completed(bt: &mut BtProc) -> bool {
    bt.proc().last(|e| is_event(e, "complete")).is_some()
}

/// What curl got.
struct Fetched {
    status: u16,
    headers: String,
    body: Vec<u8>,
    /// Seconds from the start to the first body byte, and to the end.
    first_byte_s: f64,
    total_s: f64,
}

/// Runs curl on `url` with `extra` options (bounded to 60 s), keeping what it got in `work`.
fn curl(work: &Path, url: &str, extra: &[&str]) -> Fetched {
    let (head, body) = (work.join("curl.head"), work.join("curl.body"));
    let _ = std::fs::remove_file(&body);
    let mut cmd = Command::new(CURL);
    cmd.args(["-sS", "--max-time", "60", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code} %{time_starttransfer} %{time_total}"])
        .args(extra)
        .arg(url);
    let out = run_bounded(cmd, Duration::from_secs(70));
    let written = String::from_utf8_lossy(&out.stdout).to_string();
    let mut fields = written.split_whitespace();
    let mut next = || fields.next().unwrap_or("0").to_owned();
    let status = next().parse().unwrap_or(0);
    let first_byte_s = next().parse().unwrap_or(0.0);
    let total_s = next().parse().unwrap_or(0.0);
    Fetched {
        status,
        headers: std::fs::read_to_string(&head)
            .unwrap_or_default()
            .to_ascii_lowercase(),
        body: std::fs::read(&body).unwrap_or_default(),
        first_byte_s,
        total_s,
    }
}

/// `src/NAME` made of `files`, its torrent (`piece_len` pieces) and a `bt seed` of it behind a
/// relay passing `rate` bytes a second.
struct Swarm {
    src: PathBuf,
    torrent: bt_tests::clients::MadeTorrent,
    _seeder: BtProc,
    relay: SlowRelay,
}

fn bt_swarm_behind_relay(
    tmp: &TempDir,
    files: &[(&str, usize)],
    piece_len: &str,
    rate: usize,
) -> Swarm {
    let src = tmp.path().join("src");
    gen_files(&src, files);
    let top = files[0].0.split('/').next().expect("a top folder");
    let torrent = make_torrent(
        &src.join(top),
        &[],
        piece_len,
        &tmp.path().join("t.torrent"),
    );
    let seeder = BtProc::seed(&torrent.path, &src, &[]);
    let relay = SlowRelay::start(seeder.addr, rate);
    Swarm {
        src,
        torrent,
        _seeder: seeder,
        relay,
    }
}

#[test]
fn curl_reads_ranges_head_index_and_playlist_during_the_download() {
    // Proves that ranges at a file's start, middle and end are byte-identical to the source while
    // the download is still running, that 416, HEAD, `/` and `/playlist.m3u` answer as documented,
    // and that the download then completes byte-identical.
    let tmp = TempDir::new("serve-curl");
    // In the torrent's (sorted) order.
    let files = [
        ("show/movie.mkv", 6_000_000),
        ("show/notes.txt", 10_000),
        ("show/song.mp3", 300_000),
    ];
    let swarm = bt_swarm_behind_relay(&tmp, &files, "64K", 512 * 1024);
    let dl = tmp.path().join("dl");
    let (mut bt, base) = get_serving(&swarm.torrent.path, &dl, swarm.relay.addr(), &[]);
    let movie = std::fs::read(swarm.src.join("show/movie.mkv")).expect("the source");
    let url = format!("{base}/files/0/show/movie.mkv");
    let len = movie.len();
    for (start, last) in [
        (0, 99_999),
        (len / 2, len / 2 + 99_999),
        (len - 100_000, len - 1),
    ] {
        let got = curl(tmp.path(), &url, &["-r", &format!("{start}-{last}")]);
        assert_eq!(got.status, 206, "{}", got.headers);
        assert!(
            got.headers
                .contains(&format!("content-range: bytes {start}-{last}/{len}")),
            "{}",
            got.headers
        );
        assert!(
            got.body == movie[start..=last],
            "bytes {start}-{last} differ from the source"
        );
        eprintln!(
            "range {start}-{last}: headers after {:.3} s, all its bytes after {:.3} s",
            got.first_byte_s, got.total_s
        );
    }
    let past = curl(tmp.path(), &url, &["-r", &format!("{len}-")]);
    assert_eq!(past.status, 416);
    assert!(
        past.headers
            .contains(&format!("content-range: bytes */{len}")),
        "{}",
        past.headers
    );
    let head = curl(tmp.path(), &url, &["-I"]);
    assert_eq!(head.status, 200);
    assert!(head.headers.contains(&format!("content-length: {len}")));
    assert!(head.headers.contains("accept-ranges: bytes"));
    assert!(head.headers.contains("content-type: video/x-matroska"));
    let index = curl(tmp.path(), &format!("{base}/"), &[]);
    let index = String::from_utf8_lossy(&index.body).to_string();
    for (i, (name, _)) in files.iter().enumerate() {
        assert!(
            index.contains(&format!("href=\"/files/{i}/{name}\"")),
            "{index}"
        );
    }
    let playlist = curl(tmp.path(), &format!("{base}/playlist.m3u"), &[]);
    let playlist = String::from_utf8_lossy(&playlist.body).to_string();
    assert!(playlist.starts_with("#EXTM3U"), "{playlist}");
    assert!(playlist.contains(&format!("{base}/files/0/show/movie.mkv")));
    assert!(playlist.contains(&format!("{base}/files/2/show/song.mp3")));
    assert!(!playlist.contains("notes.txt"), "{playlist}");
    assert!(
        !completed(&mut bt),
        "the download finished before the reads: they did not happen during it"
    );
    bt.wait_complete(DOWNLOAD_TIMEOUT);
    tree_equal(&swarm.src.join("show"), &dl.join("show"));
}

#[test]
fn bt_seed_serves_its_files_and_a_magnet_download_serves_once_its_metadata_arrives() {
    // Proves `bt seed --serve` answers a range of its complete data at once, byte-identical,
    // and that `bt get MAGNET --serve` starts its server when the metadata arrives (there are no
    // files to serve before) and streams a whole file byte-identical while it downloads from
    // the seeder behind a slow relay.
    let tmp = TempDir::new("serve-seed-magnet");
    let files = [("clip/a.webm", 3_000_000), ("clip/b.txt", 5_000)];
    let swarm = bt_swarm_behind_relay(&tmp, &files, "64K", 512 * 1024);
    let a = std::fs::read(swarm.src.join("clip/a.webm")).expect("the source");
    let seeding = BtProc::seed(&swarm.torrent.path, &swarm.src, &["--serve", "127.0.0.1:0"]);
    let seed_base = serving_url(&seeding);
    let got = curl(
        tmp.path(),
        &format!("{seed_base}/files/0/clip/a.webm"),
        &["-r", "1000000-1099999"],
    );
    assert_eq!(got.status, 206, "{}", got.headers);
    assert!(
        got.body == a[1_000_000..1_100_000],
        "the seeder's range differs"
    );
    let index = curl(tmp.path(), &format!("{seed_base}/"), &[]);
    assert!(
        String::from_utf8_lossy(&index.body).contains("href=\"/files/1/clip/b.txt\""),
        "the seeder's index lists its files"
    );

    let link = format!("magnet:?xt=urn:btih:{}", swarm.torrent.info_hash);
    let dl = tmp.path().join("dl");
    let mut bt = BtProc::get(
        Path::new(&link),
        &dl,
        &[swarm.relay.addr()],
        &["--serve", "127.0.0.1:0"],
    );
    let base = serving_url(&bt);
    let events = bt.proc().events();
    let metadata = events.iter().position(|e| is_event(e, "metadata_received"));
    let serving = events.iter().position(|e| is_event(e, "serving"));
    assert!(
        matches!((metadata, serving), (Some(m), Some(s)) if m < s),
        "the server starts with the metadata\n{}",
        bt.log()
    );
    let url = format!("{base}/files/0/clip/a.webm");
    let start = curl(tmp.path(), &url, &["-r", "0-499999"]);
    assert_eq!(start.status, 206, "{}", start.headers);
    assert!(start.body == a[..500_000], "the streamed range differs");
    assert!(
        !completed(&mut bt),
        "the download finished before the read: it did not stream"
    );
    bt.wait_complete(DOWNLOAD_TIMEOUT);
    let whole = curl(tmp.path(), &url, &[]);
    assert_eq!(whole.status, 200, "{}", whole.headers);
    assert!(whole.body == a, "the served file differs from the source");
    tree_equal(&swarm.src.join("clip"), &dl.join("clip"));
}

#[test]
fn ffmpeg_decodes_every_frame_before_the_download_completes() {
    // Proves streaming: ffmpeg reads a 10 s mp4 over HTTP (seeking with ranges to its index at
    // the end) while bt downloads it and a larger file from libtorrent behind a 1 MB/s relay,
    // decodes all 250 frames, and finishes while bt has not completed: the reader's pieces came
    // before the other file's.
    assert!(
        Path::new(FFMPEG).exists(),
        "{FFMPEG} is missing: apt-get install -y ffmpeg (scripts/install-test-deps.sh)"
    );
    let tmp = TempDir::new("serve-ffmpeg");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("clip")).expect("a folder");
    let video = src.join("clip/movie.mp4");
    let mut make = Command::new(FFMPEG);
    make.args(["-v", "error", "-nostdin", "-f", "lavfi", "-i"])
        .arg("testsrc=duration=10:size=320x240:rate=25")
        .args([
            "-vf",
            "noise=alls=20:allf=t",
            "-c:v",
            "mpeg4",
            "-b:v",
            "3M",
            "-y",
        ])
        .arg(&video);
    let made = run_bounded(make, Duration::from_secs(60));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let video_len = std::fs::metadata(&video).expect("the video").len();
    gen_files(&src, &[("clip/zz-extras.bin", 8_000_000)]);
    let torrent = make_torrent(&src.join("clip"), &[], "64K", &tmp.path().join("t.torrent"));
    let seeder = LtSeeder::start(&torrent.path, &src);
    let rate = 1_000_000;
    let relay = SlowRelay::start(seeder.addr(), rate);
    let dl = tmp.path().join("dl");
    let (mut bt, base) = get_serving(&torrent.path, &dl, relay.addr(), &[]);
    let started = Instant::now();
    let mut play = Command::new(FFMPEG);
    play.args(["-v", "error", "-nostdin", "-progress", "pipe:1", "-i"])
        .arg(format!("{base}/files/0/clip/movie.mp4"))
        .args(["-f", "null", "-"]);
    let played = run_bounded(play, Duration::from_secs(120));
    let took = started.elapsed();
    let finished_first = !completed(&mut bt);
    let progress = String::from_utf8_lossy(&played.stdout).to_string();
    assert!(
        played.status.success(),
        "ffmpeg failed: {}\n{}",
        String::from_utf8_lossy(&played.stderr),
        bt.log()
    );
    let frames = progress
        .lines()
        .rev()
        .filter_map(|l| l.strip_prefix("frame="))
        .find_map(|n| n.trim().parse::<u64>().ok());
    assert_eq!(frames, Some(250), "{progress}");
    let sequential = Duration::from_secs_f64(torrent.total_size as f64 / rate as f64);
    eprintln!(
        "ffmpeg decoded 250 frames of a {video_len}-byte video in {:.1} s; the whole torrent \
         ({} bytes) takes {:.1} s at the relay's rate",
        took.as_secs_f64(),
        torrent.total_size,
        sequential.as_secs_f64()
    );
    assert!(
        finished_first,
        "bt completed the whole torrent before ffmpeg finished ({:.1} s)",
        took.as_secs_f64()
    );
    bt.wait_complete(DOWNLOAD_TIMEOUT);
    tree_equal(&src.join("clip"), &dl.join("clip"));
}

/// Sends `request` on a new connection and returns what came back before the server closed it
/// (or 10 s passed): "" when it closed without a word.
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the server");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    // The server may close before it has read everything: what it answered still counts.
    let _ = s.write_all(request);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < 64 * 1024 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                // One answer is enough; keep-alive would hold the connection open.
                if let Some(end) = find(&got, b"\r\n\r\n") {
                    let len = content_length(&got[..end]);
                    if got.len() >= end + 4 + len {
                        break;
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&got).to_string()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

/// Asserts that `answer` is an HTTP response with `status`, or (when `or_close`) nothing.
fn expect_status(what: &str, answer: &str, status: u16, or_close: bool) {
    let ok = answer.starts_with(&format!("HTTP/1.1 {status} ")) || or_close && answer.is_empty();
    assert!(
        ok,
        "{what}: expected {status}{}, got {answer:?}",
        if or_close { " or a close" } else { "" }
    );
}

#[test]
fn hostile_requests_get_4xx_or_a_close_and_the_download_completes() {
    // Proves that oversized heads, floods of idle connections, `bytes=-0`, `..` and encoded
    // `%2e%2e`/`%2f` paths, garbage and a request for an unselected file each get a clean 4xx, a
    // 503 or a close, that the server answers again afterwards, and that the download goes on
    // and completes byte-identical.
    let tmp = TempDir::new("serve-hostile");
    // In the torrent's (sorted) order; the last is left out.
    let files = [
        ("h/a.mkv", 3_000_000),
        ("h/b.txt", 100_000),
        ("h/skip.bin", 1_000_000),
    ];
    let swarm = bt_swarm_behind_relay(&tmp, &files, "64K", 256 * 1024);
    let dl = tmp.path().join("dl");
    let (mut bt, base) = get_serving(
        &swarm.torrent.path,
        &dl,
        swarm.relay.addr(),
        &["--select", "0,1", "--serve-idle-timeout", "2s"],
    );
    let addr = server_addr(&base);

    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    expect_status("a 64 KiB header", &raw(addr, big.as_bytes()), 431, true);
    let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    expect_status("200 headers", &raw(addr, many.as_bytes()), 431, true);
    let range = b"GET /files/0/h/a.mkv HTTP/1.1\r\nHost: x\r\nRange: bytes=-0\r\n\r\n";
    let answer = raw(addr, range);
    expect_status("bytes=-0", &answer, 416, false);
    assert!(
        answer.contains("content-range: bytes */3000000"),
        "{answer}"
    );
    for path in [
        "/files/0/h/../h/a.mkv",
        "/files/0/h/%2e%2e/h/a.mkv",
        "/files/0/%2E%2E/%2E%2E/etc/passwd",
        "/files/0/h%2Fa.mkv",
        "/files/0/h/a.mkv%00",
    ] {
        expect_status(path, &raw(addr, &get(path)), 400, false);
    }
    expect_status(
        "a wrong name",
        &raw(addr, &get("/files/0/h/other.mkv")),
        404,
        false,
    );
    expect_status(
        "no such file",
        &raw(addr, &get("/files/99/h/a.mkv")),
        404,
        false,
    );
    let unselected = raw(addr, &get("/files/2/h/skip.bin"));
    expect_status("an unselected file", &unselected, 403, false);
    assert!(unselected.contains("not selected"), "{unselected}");
    expect_status(
        "a POST",
        &raw(
            addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        ),
        405,
        false,
    );
    expect_status(
        "garbage",
        &raw(addr, b"\x00\x01\x02 garbage\r\n\r\n"),
        400,
        true,
    );

    // A flood of idle connections: past the limit each is answered 503 at once; the rest are
    // closed once idle for the timeout (2 s here), a half-sent head too. Then it answers again.
    let flood_started = Instant::now();
    let mut held: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    held[0]
        .write_all(b"GET / HTTP/1.1\r\nHo")
        .expect("half a head");
    let (mut busy, mut closed) = (0, 0);
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_secs(15))).ok();
        let mut got = Vec::new();
        match s.read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) => panic!("a held connection was neither refused nor closed: {e}"),
        }
        let text = String::from_utf8_lossy(&got);
        if text.starts_with("HTTP/1.1 503 ") {
            busy += 1;
        } else {
            assert!(!text.starts_with("HTTP/1.1 2"), "{text}");
            closed += 1;
        }
    }
    eprintln!(
        "200 idle connections: {busy} refused with 503, {closed} closed, all within {:.1} s",
        flood_started.elapsed().as_secs_f64()
    );
    assert!(busy >= 200 - 64, "only {busy} of 200 refused");
    drop(held);
    let after = raw(addr, &get("/"));
    expect_status("the index after the flood", &after, 200, false);

    // A client that goes away mid-body: its reader is dropped, nothing else changes.
    let mut gone = TcpStream::connect(addr).expect("connect");
    gone.write_all(&get("/files/0/h/a.mkv")).expect("a request");
    let mut some = [0u8; 1024];
    let _ = gone.read(&mut some);
    drop(gone);

    let chosen_done = |e: &serde_json::Value| {
        is_event(e, "status") && field_u64(e, "verified_bytes") == field_u64(e, "total_bytes")
    };
    assert!(
        bt.proc().last(chosen_done).is_none(),
        "the download finished before the attacks: they did not happen during it"
    );
    // With files left out there is no `complete` event: the status says when the chosen ones are.
    bt.wait_for(chosen_done, DOWNLOAD_TIMEOUT);
    for (i, (name, _)) in files.iter().enumerate() {
        if i == 2 {
            continue;
        }
        assert!(
            std::fs::read(swarm.src.join(name)).expect("source")
                == std::fs::read(dl.join(name)).expect("downloaded"),
            "{name} differs"
        );
    }
    let served = curl(tmp.path(), &format!("{base}/files/1/h/b.txt"), &[]);
    assert_eq!(served.status, 200);
    assert!(served.body == std::fs::read(swarm.src.join("h/b.txt")).expect("source"));
}

#[test]
fn a_read_whose_pieces_never_come_ends_after_the_stall_timeout_and_the_server_stays_up() {
    // Proves the bound on a wait: with no peer to download from, a response sends its headers,
    // waits the stall timeout (2 s here) for its first piece, then closes the connection
    // mid-body (curl: a partial transfer), and the server answers the next request.
    let tmp = TempDir::new("serve-stall");
    let src = tmp.path().join("src");
    gen_files(&src, &[("still/a.mkv", 1_000_000)]);
    let torrent = make_torrent(
        &src.join("still"),
        &[],
        "64K",
        &tmp.path().join("t.torrent"),
    );
    // Nothing listens there: the download never starts.
    let nobody = SocketAddr::from(([127, 0, 0, 1], bt_tests::clients::free_port()));
    let (_bt, base) = get_serving(
        &torrent.path,
        &tmp.path().join("dl"),
        nobody,
        &["--serve-stall-timeout", "2s"],
    );
    let started = Instant::now();
    let got = curl(tmp.path(), &format!("{base}/files/0/still/a.mkv"), &[]);
    let waited = started.elapsed();
    assert_eq!(got.status, 200, "{}", got.headers);
    assert!(
        got.body.is_empty(),
        "{} bytes of a file never downloaded",
        got.body.len()
    );
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(10),
        "the response ended after {waited:?}"
    );
    let index = curl(tmp.path(), &format!("{base}/"), &[]);
    assert_eq!(index.status, 200);
}
