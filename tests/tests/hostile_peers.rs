//! Hostile peers over real loopback sockets: a fake peer speaking raw bytes
//! ([`bt_tests::fake_peer`]) misbehaves against a real `bt seed` (it dials the seed) and a real
//! `bt get` (the download dials it, next to an honest seed behind a slow relay). For each case the
//! test proves that bt closed the fake peer's socket within a bounded time, that the `peer_closed`
//! event (`--json`) names the reason, that bt's memory stayed bounded under the floods, and that
//! the honest transfer completed byte for byte meanwhile. The cases of one test run in parallel
//! threads, so a test lasts about as long as its slowest case (the 20 s handshake timeout; the
//! slowloris test waits for the 60 s frame timeout).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bt_tests::fake_peer::{
    Closed, FakePeer, Swarm, bare, frame, handshake, have, id, piece, request, vm_rss_kib,
};
use bt_tests::{BtProc, SlowRelay, is_event, tree_equal};

/// 4 MiB and some: 132 pieces of 32 KiB, the last one 1,696 bytes, so the bitfield has 4 spare
/// bits.
const FILES: &[(&str, usize)] = &[("hostile/data.bin", 4 * 1024 * 1024 + 100_000)];
const PIECES: u32 = 132;
/// The honest seed's relay rate: the download takes about 4 s.
const RELAY_RATE: usize = 1 << 20;
/// bt's resident memory must stay under this while it is flooded.
const RSS_BOUND_KIB: u64 = 200 * 1024;
/// How long bt may take to close a fake peer (the handshake timeout, 20 s, is the longest).
const CLOSE_WITHIN: Duration = Duration::from_secs(40);

fn fixture(name: &str) -> Swarm {
    let fx = Swarm::new(name, "hostile", FILES, "32K");
    assert_eq!(fx.torrent.pieces, u64::from(PIECES));
    fx
}

/// A distinct peer id per case (bt closes a second connection from one peer id).
fn peer_id(case: u8) -> [u8; 20] {
    let mut id = *b"-FK0001-000000000000";
    id[19] = case;
    id
}

/// One misbehaviour, run on its own thread: it returns the fake peer's address as bt sees it and
/// how the wait for bt to close it ended.
struct Case {
    name: &'static str,
    /// The `peer_closed` reason must contain one of these.
    expect: &'static [&'static str],
    thread: JoinHandle<(SocketAddr, Closed)>,
}

fn spawn(
    name: &'static str,
    expect: &'static [&'static str],
    f: impl FnOnce() -> (SocketAddr, Closed) + Send + 'static,
) -> Case {
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawn a case thread");
    Case {
        name,
        expect,
        thread,
    }
}

/// Joins every case and checks: the socket was closed by bt within [`CLOSE_WITHIN`], and bt's
/// `peer_closed` event for that address names the expected reason. Returns the reasons.
fn check_cases(bt: &BtProc, cases: Vec<Case>) -> Vec<(&'static str, String)> {
    let mut reasons = Vec::new();
    for case in cases {
        let name = case.name;
        let (addr, closed) = case
            .thread
            .join()
            .unwrap_or_else(|_| panic!("case {name} panicked"));
        assert!(
            matches!(closed, Closed::After(_)),
            "case {name}: bt kept the connection open for {CLOSE_WITHIN:?}\n{}",
            bt.log()
        );
        let addr_s = addr.to_string();
        let event = bt.wait_for(
            |e| is_event(e, "peer_closed") && e["addr"].as_str() == Some(addr_s.as_str()),
            Duration::from_secs(10),
        );
        let reason = event["reason"].as_str().unwrap_or_default().to_owned();
        assert!(
            case.expect.iter().any(|x| reason.contains(x)),
            "case {name}: closed for {reason:?}, expected one of {:?}",
            case.expect
        );
        eprintln!("case {name}: closed after {closed:?}: {reason}");
        reasons.push((name, reason));
    }
    reasons
}

/// Samples a process's resident memory every 20 ms on a thread until dropped; keeps the peak.
struct RssWatch {
    stop: Arc<AtomicBool>,
    peak_kib: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kib = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak_kib.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: the test that owns the watch stops it within minutes.
            for _ in 0..100_000 {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(kib) = vm_rss_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssWatch {
            stop,
            peak_kib,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns the peak in KiB.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the RSS sampler");
        }
        self.peak_kib.load(Ordering::Relaxed)
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Dials `seed`, sends our handshake and reads the seed's (which proves the seed took us).
fn open_to_seed(seed: SocketAddr, hash: [u8; 20], case: u8, fast: bool) -> FakePeer {
    let mut p = FakePeer::dial(seed);
    p.send(&handshake(&hash, &peer_id(case), fast))
        .expect("send the handshake");
    assert_eq!(p.read_handshake(Duration::from_secs(10)), hash);
    p
}

/// Sends `bytes` (ignoring a failure: bt may close mid-way), then waits for bt to close.
fn send_then_wait(mut p: FakePeer, bytes: &[u8]) -> (SocketAddr, Closed) {
    let addr = p.local_addr();
    let _ = p.send(bytes);
    (addr, p.wait_closed(CLOSE_WITHIN))
}

/// A flood of `count` copies of `unit`, written until bt closes the socket.
fn flood(mut p: FakePeer, unit: &[u8], count: usize) -> (SocketAddr, Closed) {
    let addr = p.local_addr();
    let chunk = unit.repeat(1024);
    let mut sent = 0;
    while sent < count && p.send(&chunk).is_ok() {
        sent += 1024;
    }
    (addr, p.wait_closed(CLOSE_WITHIN))
}

/// The honest download: `bt get` from `upstream` through a slow relay, into `out`.
fn honest_get(torrent: &Path, upstream: SocketAddr, out: &Path) -> (SlowRelay, BtProc) {
    let relay = SlowRelay::start(upstream, RELAY_RATE);
    let get = BtProc::get(torrent, out, &[relay.addr()], &[]);
    (relay, get)
}

#[test]
fn bt_seed_closes_each_hostile_leecher_and_keeps_serving() {
    // Proves every hostile leecher that dials a real `bt seed` is closed with its named reason
    // (wrong info hash, bad bitfields, have out of range, requests over 16 KiB or past the piece
    // end, request floods, unrequested blocks, a 4 GiB length prefix, silence),
    // that the seed's memory stays under 200 MiB through the floods, and that an honest
    // `bt get` running at the same time completes byte for byte.
    let fx = fixture("hostile-seed");
    let seed = BtProc::seed(&fx.torrent.path, &fx.data_dir(), &[]);
    let pid = seed.pid();
    let rss = RssWatch::start(pid);
    let (s, h) = (seed.addr, fx.hash);
    let out = fx.tmp.path().join("dl");
    let (_relay, mut honest) = honest_get(&fx.torrent.path, s, &out);

    let junk = vec![0xee_u8; 16 * 1024];
    let mut cases = vec![
        spawn("wrong info hash", &["UnknownTorrent"], move || {
            let mut p = FakePeer::dial(s);
            let addr = p.local_addr();
            let _ = p.send(&handshake(&[0x13; 20], &peer_id(1), true));
            (addr, p.wait_closed(CLOSE_WITHIN))
        }),
        spawn("bitfield too short", &["WrongLength"], move || {
            send_then_wait(open_to_seed(s, h, 2, true), &frame(id::BITFIELD, &[0xff]))
        }),
        spawn("bitfield with spare bits", &["SpareBitsSet"], move || {
            send_then_wait(
                open_to_seed(s, h, 3, true),
                &frame(id::BITFIELD, &[0xff; 17]),
            )
        }),
        spawn("have out of range", &["PieceOutOfRange(132)"], move || {
            send_then_wait(open_to_seed(s, h, 4, true), &have(PIECES))
        }),
        spawn("request over 16 KiB", &["InvalidBlock"], move || {
            let bytes = [bare(id::INTERESTED), request(0, 0, 32 * 1024)].concat();
            send_then_wait(open_to_seed(s, h, 5, true), &bytes)
        }),
        spawn("request past the piece end", &["InvalidBlock"], move || {
            // The last piece holds 1,696 bytes.
            let bytes = [bare(id::INTERESTED), request(PIECES - 1, 0, 16 * 1024)].concat();
            send_then_wait(open_to_seed(s, h, 6, true), &bytes)
        }),
        spawn("request flood (Fast)", &["TooManyRequests"], move || {
            let mut p = open_to_seed(s, h, 7, true);
            let _ = p.send(&bare(id::INTERESTED));
            // Flood once unchoked, so the requests are queued, not refused as choked.
            let unchoked = (0..100)
                .map_while(|_| p.read_frame(Duration::from_secs(15)))
                .any(|f| f.id == Some(id::UNCHOKE));
            assert!(unchoked, "the seed unchokes an interested peer");
            flood(p, &request(1, 0, 16 * 1024), 200_000)
        }),
        spawn(
            "requests while choked",
            &["RequestWhileChoked"],
            move || {
                // Never interested, so never unchoked.
                flood(
                    open_to_seed(s, h, 8, false),
                    &request(2, 0, 16 * 1024),
                    200_000,
                )
            },
        ),
        spawn("4 GiB length prefix", &["FrameTooLong"], move || {
            let mut bytes = vec![0xff, 0xff, 0xff, 0xff, id::PIECE];
            bytes.extend(std::iter::repeat_n(0xab, 1 << 20));
            send_then_wait(open_to_seed(s, h, 9, true), &bytes)
        }),
        spawn(
            "blocks never requested",
            &["UnrequestedBlocks"],
            move || flood(open_to_seed(s, h, 10, true), &piece(0, 0, &junk), 200),
        ),
        spawn(
            "connects and never speaks",
            &["HandshakeTimeout"],
            move || {
                let mut p = FakePeer::dial(s);
                (p.local_addr(), p.wait_closed(CLOSE_WITHIN))
            },
        ),
    ];
    // The same floods on other connections while the first ones run: the peak is what counts.
    cases.push(spawn(
        "second 4 GiB length prefix",
        &["FrameTooLong"],
        move || {
            let mut bytes = vec![0xff, 0xff, 0xff, 0xff, 200];
            bytes.extend(std::iter::repeat_n(0xab, 4 << 20));
            send_then_wait(open_to_seed(s, h, 12, true), &bytes)
        },
    ));

    let reasons = check_cases(&seed, cases);
    honest.wait_success(Duration::from_secs(60));
    tree_equal(&fx.tmp.path().join("src/hostile"), &out.join("hostile"));
    let peak = rss.finish();
    assert!(peak > 0, "the sampler read the seed's memory");
    assert!(
        peak < RSS_BOUND_KIB,
        "bt seed used {peak} KiB under the floods"
    );
    eprintln!("bt seed peak RSS {peak} KiB; reasons: {reasons:#?}");
}

/// A fake seed on its own loopback address: it accepts bt's dial, checks bt's handshake,
/// answers with its own (for `hash`) and hands the connection to the script.
fn fake_seed(
    n: u8,
    hash: [u8; 20],
    answer_hash: [u8; 20],
    fast: bool,
    script: impl FnOnce(FakePeer) -> Closed + Send + 'static,
) -> (SocketAddr, JoinHandle<(SocketAddr, Closed)>) {
    let listener = FakePeer::listen(n);
    let addr = listener.local_addr().expect("a listening address");
    let thread = std::thread::spawn(move || {
        let mut p = FakePeer::accept(&listener, Duration::from_secs(30));
        assert_eq!(p.read_handshake(Duration::from_secs(10)), hash);
        let _ = p.send(&handshake(&answer_hash, &peer_id(n), fast));
        (addr, script(p))
    });
    (addr, thread)
}

/// Sends `bytes` and waits for bt to close.
fn say(bytes: Vec<u8>) -> impl FnOnce(FakePeer) -> Closed + Send + 'static {
    move |mut p| {
        let _ = p.send(&bytes);
        p.wait_closed(CLOSE_WITHIN)
    }
}

#[test]
fn bt_get_closes_each_hostile_seed_and_completes_byte_identical() {
    // Proves a real `bt get`, given an honest seed (behind a slow relay) and a crowd of fake
    // seeds on their own loopback addresses, closes each fake with its named reason (wrong info
    // hash, bad bitfield, have out of range, unrequested blocks, a 4 GiB length prefix, a choke
    // storm, corrupt data: banned, silence), and a fake leecher flooding requests for a piece it
    // lacks; that its memory stays under 200 MiB, and the download completes byte for byte.
    let fx = fixture("hostile-get");
    let seed = BtProc::seed(&fx.torrent.path, &fx.data_dir(), &[]);
    let h = fx.hash;
    let junk = vec![0xee_u8; 16 * 1024];
    let all: Vec<u8> = [vec![0xff; 16], vec![0xf0]].concat();
    let storm = [bare(id::UNCHOKE), bare(id::CHOKE)].concat().repeat(25);
    let mut prefix = vec![0xff, 0xff, 0xff, 0xff, id::PIECE];
    prefix.extend(std::iter::repeat_n(0xab, 1 << 20));
    let fakes = vec![
        (
            "wrong info hash",
            &["WrongInfoHash"][..],
            fake_seed(21, h, [0x13; 20], true, |mut p| p.wait_closed(CLOSE_WITHIN)),
        ),
        (
            "bitfield too short",
            &["WrongLength"][..],
            fake_seed(22, h, h, true, say(frame(id::BITFIELD, &[0xff; 3]))),
        ),
        (
            "have out of range",
            &["PieceOutOfRange(4294967295)"][..],
            fake_seed(
                23,
                h,
                h,
                true,
                say([bare(id::HAVE_NONE), have(u32::MAX)].concat()),
            ),
        ),
        (
            "blocks never requested",
            &["UnrequestedBlocks"][..],
            fake_seed(24, h, h, true, move |mut p| {
                let unit = piece(3, 0, &junk);
                let _ = p.send(&[bare(id::HAVE_NONE), bare(id::UNCHOKE)].concat());
                for _ in 0..100 {
                    if p.send(&unit).is_err() {
                        break;
                    }
                }
                p.wait_closed(CLOSE_WITHIN)
            }),
        ),
        (
            "4 GiB length prefix",
            &["FrameTooLong"][..],
            fake_seed(25, h, h, true, say(prefix)),
        ),
        (
            "choke/unchoke storm",
            &["ChokeStorm"][..],
            fake_seed(26, h, h, false, move |mut p| {
                // Storm once bt wants our pieces: chokes of a peer that is not interested are
                // its own doing and do not count.
                let _ = p.send(&frame(id::BITFIELD, &all));
                let interested = (0..100)
                    .map_while(|_| p.read_frame(Duration::from_secs(10)))
                    .any(|f| f.id == Some(id::INTERESTED));
                assert!(interested, "bt get is interested in a seed");
                let _ = p.send(&storm);
                p.wait_closed(CLOSE_WITHIN)
            }),
        ),
        (
            "corrupt data",
            &["Banned"][..],
            fake_seed(27, h, h, true, |mut p| {
                let _ = p.send(&[bare(id::HAVE_ALL), bare(id::UNCHOKE)].concat());
                // Answer every request with wrong bytes until bt hangs up (bounded: 4,000
                // frames or the close wait).
                for _ in 0..4000 {
                    let Some(f) = p.read_frame(Duration::from_secs(20)) else {
                        break;
                    };
                    if let Some((index, offset, len)) = f.as_request() {
                        let bad = vec![0x5a; len as usize];
                        if p.send(&piece(index, offset, &bad)).is_err() {
                            break;
                        }
                    }
                }
                p.wait_closed(CLOSE_WITHIN)
            }),
        ),
        ("connects and never speaks", &["HandshakeTimeout"][..], {
            let listener = FakePeer::listen(28);
            let addr = listener.local_addr().expect("a listening address");
            let thread = std::thread::spawn(move || {
                let mut p = FakePeer::accept(&listener, Duration::from_secs(30));
                (addr, p.wait_closed(CLOSE_WITHIN))
            });
            (addr, thread)
        }),
    ];
    let relay = SlowRelay::start(seed.addr, RELAY_RATE);
    let mut peers = vec![relay.addr()];
    peers.extend(fakes.iter().map(|(_, _, (addr, _))| *addr));
    let out = fx.tmp.path().join("dl");
    // `--seed`: bt stays up after the download, so every case ends on its own terms.
    let get = BtProc::get(&fx.torrent.path, &out, &peers, &["--seed", "-v"]);
    let rss = RssWatch::start(get.pid());
    let mut cases: Vec<Case> = fakes
        .into_iter()
        .map(|(name, expect, (_, thread))| Case {
            name,
            expect,
            thread,
        })
        .collect();
    // A fake leecher that dials bt get, is unchoked (a leecher's slots go to interested
    // leechers) and floods requests for a piece bt has not announced.
    let g = get.addr;
    cases.push(spawn(
        "requests for a piece bt lacks",
        &["TooManyRequests"],
        move || {
            let mut p = open_to_seed(g, h, 29, true);
            let _ = p.send(&[bare(id::HAVE_NONE), bare(id::INTERESTED)].concat());
            let mut announced = vec![false; PIECES as usize];
            let mut unchoked = false;
            for _ in 0..1000 {
                let Some(f) = p.read_frame(Duration::from_secs(15)) else {
                    break;
                };
                match f.id {
                    Some(id::UNCHOKE) => {
                        unchoked = true;
                        break;
                    }
                    Some(id::HAVE_ALL) => announced.iter_mut().for_each(|a| *a = true),
                    Some(id::HAVE) if f.payload.len() == 4 => {
                        let i = u32::from_be_bytes(f.payload[..4].try_into().expect("4 bytes"));
                        if let Some(a) = announced.get_mut(i as usize) {
                            *a = true;
                        }
                    }
                    Some(id::BITFIELD) => {
                        for (i, a) in announced.iter_mut().enumerate() {
                            let byte = f.payload.get(i / 8).copied().unwrap_or(0);
                            *a |= byte & (0x80 >> (i % 8)) != 0;
                        }
                    }
                    _ => {}
                }
            }
            assert!(unchoked, "bt get unchokes an interested leecher");
            // Not the last piece: it is shorter than one block.
            let lacked = announced[..PIECES as usize - 1]
                .iter()
                .rposition(|a| !a)
                .expect("bt get still lacks a piece") as u32;
            flood(p, &request(lacked, 0, 16 * 1024), 200_000)
        },
    ));
    let reasons = check_cases(&get, cases);
    get.wait_complete(Duration::from_secs(60));
    tree_equal(&fx.tmp.path().join("src/hostile"), &out.join("hostile"));
    let peak = rss.finish();
    assert!(
        peak > 0 && peak < RSS_BOUND_KIB,
        "bt get peak RSS {peak} KiB"
    );
    eprintln!("bt get peak RSS {peak} KiB; reasons: {reasons:#?}");
}

#[test]
fn slowloris_is_closed_at_the_frame_timeout() {
    // Proves a peer trickling one byte a second is closed: in the handshake at the handshake
    // timeout (20 s), after it at the frame timeout (60 s from the frame's first byte), both by
    // `bt seed` (the fake dials it) and by `bt get` (it dials the fake), while an honest download
    // completes.
    let fx = fixture("hostile-slowloris");
    let seed = BtProc::seed(&fx.torrent.path, &fx.data_dir(), &[]);
    let (s, h) = (seed.addr, fx.hash);
    let trickle = |mut p: FakePeer, bytes: Vec<u8>| -> Closed {
        // One byte a second; 100 bytes at most (the frame timeout comes at the 61st). The
        // result counts from the first byte.
        let start = std::time::Instant::now();
        for b in bytes.iter().take(100) {
            let closed = match p.send(&[*b]) {
                Ok(()) => p.wait_closed(Duration::from_secs(1)),
                Err(_) => p.wait_closed(Duration::from_secs(5)),
            };
            if let Closed::After(_) = closed {
                return Closed::After(start.elapsed());
            }
        }
        match p.wait_closed(Duration::from_secs(5)) {
            Closed::After(_) => Closed::After(start.elapsed()),
            still => still,
        }
    };
    let block = piece(0, 0, &[0xee; 16 * 1024]);
    let seed_cases = vec![
        spawn("handshake a byte a second", &["HandshakeTimeout"], {
            let bytes = handshake(&h, &peer_id(31), true);
            move || {
                let p = FakePeer::dial(s);
                (p.local_addr(), trickle(p, bytes))
            }
        }),
        spawn("frame a byte a second (seed)", &["FrameTimeout"], {
            let bytes = block.clone();
            move || {
                let p = open_to_seed(s, h, 32, true);
                (p.local_addr(), trickle(p, bytes))
            }
        }),
    ];
    let (fake_addr, fake_thread) = fake_seed(33, h, h, true, {
        let bytes = [bare(id::HAVE_NONE), block].concat();
        move |mut p| {
            // Have-none whole, then the block a byte a second.
            let _ = p.send(&bytes[..5]);
            trickle(p, bytes[5..].to_vec())
        }
    });
    let relay = SlowRelay::start(seed.addr, RELAY_RATE);
    let out = fx.tmp.path().join("dl");
    let get = BtProc::get(
        &fx.torrent.path,
        &out,
        &[relay.addr(), fake_addr],
        &["--seed", "-v"],
    );
    let seed_reasons = check_cases(&seed, seed_cases);
    let get_reasons = check_cases(
        &get,
        vec![Case {
            name: "frame a byte a second (get)",
            expect: &["FrameTimeout"],
            thread: fake_thread,
        }],
    );
    get.wait_complete(Duration::from_secs(60));
    tree_equal(&fx.tmp.path().join("src/hostile"), &out.join("hostile"));
    eprintln!("reasons: {seed_reasons:#?} {get_reasons:#?}");
}
