//! The MSE/PE handshake machine (`bt_protocol::mse`) against libtorrent over loopback, in both
//! roles and at both levels libtorrent can force: RC4 (the whole stream encrypted) and plaintext
//! (only the handshake obscured). Each test plays bt's side with the protocol machine over a real
//! socket and proves the keys agree both ways: libtorrent's BitTorrent handshake decrypts to the
//! torrent's info hash, and libtorrent answers ours (it would drop a connection whose bytes it
//! could not decrypt) with its next message, which decrypts to a well-formed frame.
//!
//! Each test tries up to [`ATTEMPTS`] handshakes, each with fresh keys on both sides: libtorrent
//! derives its `req3` mask from the shared secret without its leading zero bytes (the other
//! hashes pad it to 96 bytes, as the specification says), so about one handshake in 256 with it
//! fails whoever the other side is. A real fault fails every attempt.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant as Clock};

use bt_protocol::metainfo::InfoHash;
use bt_protocol::mse::{Established, Method, Methods, MseHandshake, Progress, req2_hash};
use bt_protocol::rng::Rng;
use bt_protocol::time::Instant;
use bt_tests::fake_peer::{EXTENSION_PROTOCOL, FakePeer, Swarm, accept_by, handshake_reserved};
use bt_tests::tracked::TrackedTorrent;
use bt_tests::{
    Aria2Seeder, BtProc, LtSeeder, Opentracker, TempDir, aria2_get_with, is_event, lt_leecher,
    tree_equal,
};

const FILES: &[(&str, usize)] = &[("mse/data.bin", 300_000)];
/// How long one exchange with libtorrent may take.
const WITHIN: Duration = Duration::from_secs(30);
const PEER_ID: [u8; 20] = *b"-BT0001-mse-test-000";
/// Handshakes tried, each with new keys (see the module docs).
const ATTEMPTS: u64 = 3;

/// Reads what `stream` has within the time left, at most 4 KiB: an error when it closes, fails
/// or the time runs out.
fn read_some(stream: &mut TcpStream, until: Clock, what: &str) -> Result<Vec<u8>, String> {
    let mut buf = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Clock::now());
        if left.is_zero() {
            return Err(format!(
                "libtorrent sent nothing more within {WITHIN:?} ({what})"
            ));
        }
        stream
            .set_read_timeout(Some(left.min(Duration::from_millis(500))))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => return Err(format!("libtorrent closed the connection ({what})")),
            Ok(n) => return Ok(buf[..n].to_vec()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("reading from libtorrent ({what}): {e}")),
        }
    }
}

/// Runs `hs` over `stream` until it finishes.
fn drive(
    stream: &mut TcpStream,
    hs: &mut MseHandshake,
    rng: &mut Rng,
    hash: InfoHash,
) -> Result<Established, String> {
    let lookup = move |req2: &[u8; 20]| (req2_hash(&hash) == *req2).then_some(hash);
    let until = Clock::now() + WITHIN;
    loop {
        let out = hs.take_transmit();
        if !out.is_empty() {
            stream.write_all(&out).map_err(|e| e.to_string())?;
        }
        let bytes = read_some(stream, until, "during the encryption handshake")?;
        match hs.handle_bytes(rng, &bytes, &lookup) {
            Progress::Pending => {}
            Progress::Done(done) => {
                let out = hs.take_transmit();
                stream.write_all(&out).map_err(|e| e.to_string())?;
                return Ok(*done);
            }
            Progress::Failed(e) => return Err(format!("the handshake failed: {}", e.name())),
        }
    }
}

/// Runs `attempt` with a new seed each time until it succeeds, at most [`ATTEMPTS`] times;
/// panics with every failure when none does.
fn with_retries(mut attempt: impl FnMut(u64) -> Result<(), String>) {
    let mut failures = Vec::new();
    for seed in 1..=ATTEMPTS {
        match attempt(seed) {
            Ok(()) => return,
            Err(e) => failures.push(e),
        }
    }
    panic!("every handshake with libtorrent failed: {failures:#?}");
}

/// After the handshake: reads (decrypting) until `have` holds at least `len` bytes.
fn read_stream(
    stream: &mut TcpStream,
    done: &mut Established,
    have: &mut Vec<u8>,
    len: usize,
) -> Result<(), String> {
    let until = Clock::now() + WITHIN;
    while have.len() < len {
        let mut bytes = read_some(stream, until, "after the encryption handshake")?;
        if let Some(c) = &mut done.cipher {
            c.decrypt(&mut bytes);
        }
        have.extend_from_slice(&bytes);
    }
    Ok(())
}

/// Checks that `bytes` start with a BitTorrent handshake for `hash`, then a frame whose length
/// is plausible (libtorrent's extension handshake or bitfield).
fn check_handshake_then_frame(bytes: &[u8], hash: &[u8; 20]) {
    assert_eq!(
        &bytes[..20],
        b"\x13BitTorrent protocol",
        "not a handshake: {bytes:02x?}"
    );
    assert_eq!(&bytes[28..48], hash, "the handshake names another torrent");
    let len = u32::from_be_bytes([bytes[68], bytes[69], bytes[70], bytes[71]]);
    assert!(
        (1..=64 * 1024).contains(&len),
        "the frame after the handshake decrypts to length {len}: {:02x?}",
        &bytes[68..]
    );
}

fn expected_method(level: &str) -> Method {
    if level == "rc4" {
        Method::Rc4
    } else {
        Method::Plaintext
    }
}

/// bt dials a libtorrent seeder that forces encryption at `level`.
fn dial_libtorrent(level: &str, offer: Methods) {
    let fx = Swarm::new(&format!("mse-dial-{level}"), "mse", FILES, "32K");
    let seeder = LtSeeder::start_encrypted(&fx.torrent.path, &fx.data_dir(), level);
    let hash = InfoHash(fx.hash);
    with_retries(|seed| {
        let mut stream = TcpStream::connect(seeder.addr()).map_err(|e| e.to_string())?;
        let mut rng = Rng::new(seed);
        let ours = handshake_reserved(&fx.hash, &PEER_ID, EXTENSION_PROTOCOL);
        let mut hs = MseHandshake::initiator(Instant::ZERO, &mut rng, hash, offer, ours);
        let mut done = drive(&mut stream, &mut hs, &mut rng, hash)?;
        assert_eq!(done.method, expected_method(level));
        assert_eq!(done.info_hash, hash);
        let mut have = std::mem::take(&mut done.rest);
        read_stream(&mut stream, &mut done, &mut have, 72)?;
        check_handshake_then_frame(&have, &fx.hash);
        Ok(())
    });
}

/// A libtorrent leecher that forces encryption at `level` dials bt's side.
fn answer_libtorrent(level: &str, allow: Methods) {
    let fx = Swarm::new(&format!("mse-answer-{level}"), "mse", FILES, "32K");
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr: SocketAddr = listener.local_addr().expect("its address");
    let hash = InfoHash(fx.hash);
    with_retries(|seed| {
        // A new leecher each time: new keys on its side too.
        let dir = fx.tmp.path().join(format!("leech-{seed}"));
        std::fs::create_dir_all(&dir).expect("a download folder");
        let _leecher = lt_leecher(&fx.torrent.path, &dir, &[addr], &["--encryption", level]);
        let Some(mut stream) = accept_by(&listener, Clock::now() + WITHIN) else {
            return Err(format!("libtorrent did not dial within {WITHIN:?}"));
        };
        let mut rng = Rng::new(seed);
        let mut hs = MseHandshake::responder(Instant::ZERO, &mut rng, allow);
        let mut done = drive(&mut stream, &mut hs, &mut rng, hash)?;
        assert_eq!(done.method, expected_method(level));
        assert_eq!(done.info_hash, hash);
        // libtorrent's handshake comes as the initial payload, or right behind the handshake.
        let mut have = std::mem::take(&mut done.initial_payload);
        have.append(&mut done.rest);
        read_stream(&mut stream, &mut done, &mut have, 68)?;
        assert_eq!(&have[..20], b"\x13BitTorrent protocol");
        assert_eq!(&have[28..48], &fx.hash);
        // Our handshake back, in the method selected: libtorrent then sends its next message.
        let mut ours = handshake_reserved(&fx.hash, &PEER_ID, EXTENSION_PROTOCOL);
        if let Some(c) = &mut done.cipher {
            c.encrypt(&mut ours);
        }
        stream.write_all(&ours).map_err(|e| e.to_string())?;
        read_stream(&mut stream, &mut done, &mut have, 72)?;
        check_handshake_then_frame(&have, &fx.hash);
        Ok(())
    });
}

#[test]
fn bt_dials_a_libtorrent_seeder_that_forces_rc4() {
    dial_libtorrent("rc4", Methods::BOTH);
}

#[test]
fn bt_dials_a_libtorrent_seeder_that_forces_an_encrypted_handshake_only() {
    dial_libtorrent("plaintext", Methods::BOTH);
}

#[test]
fn a_libtorrent_leecher_that_forces_rc4_dials_bt() {
    answer_libtorrent("rc4", Methods::BOTH);
}

#[test]
fn a_libtorrent_leecher_that_forces_an_encrypted_handshake_only_dials_bt() {
    answer_libtorrent("plaintext", Methods::BOTH);
}

// ---- bt itself, with --encryption ----

/// How long a whole transfer of the fixture may take.
const TRANSFER: Duration = Duration::from_secs(60);

/// Whether `bt`'s events say it connected to a peer with the stream under RC4.
fn connected_encrypted(bt: &mut BtProc) -> Option<bool> {
    bt.proc()
        .events()
        .iter()
        .find(|e| is_event(e, "peer_connected"))
        .and_then(|e| e.get("encrypted").and_then(serde_json::Value::as_bool))
}

/// Runs `bt get EXTRA` from `from` to the end, checks the files, and returns it (exited) with
/// whether its first connection ran under RC4.
fn bt_gets_from(fx: &Swarm, from: SocketAddr, extra: &[&str]) -> (BtProc, Option<bool>) {
    let out = fx.tmp.path().join("out");
    let mut bt = BtProc::get(&fx.torrent.path, &out, &[from], extra);
    bt.wait_success(TRANSFER);
    tree_equal(&fx.data_dir().join("mse"), &out.join("mse"));
    let rc4 = connected_encrypted(&mut bt);
    (bt, rc4)
}

#[test]
fn bt_get_requiring_encryption_downloads_from_a_libtorrent_seeder_that_forces_rc4() {
    let fx = Swarm::new("mse-bt-get-require", "mse", FILES, "32K");
    let seeder = LtSeeder::start_encrypted(&fx.torrent.path, &fx.data_dir(), "rc4");
    let (bt, rc4) = bt_gets_from(&fx, seeder.addr(), &["--encryption", "require"]);
    assert_eq!(rc4, Some(true), "{}", bt.log());
}

#[test]
fn bt_get_by_default_downloads_from_a_libtorrent_seeder_that_encrypts_only_the_handshake() {
    let fx = Swarm::new("mse-bt-get-default", "mse", FILES, "32K");
    let seeder = LtSeeder::start_encrypted(&fx.torrent.path, &fx.data_dir(), "plaintext");
    let (bt, rc4) = bt_gets_from(&fx, seeder.addr(), &[]);
    assert_eq!(rc4, Some(false), "{}", bt.log());
}

#[test]
fn a_libtorrent_leecher_that_forces_rc4_downloads_from_bt_seed_requiring_encryption() {
    let fx = Swarm::new("mse-bt-seed-require", "mse", FILES, "32K");
    let seed = BtProc::seed(
        &fx.torrent.path,
        &fx.data_dir(),
        &["--encryption", "require"],
    );
    let out = fx.tmp.path().join("out");
    let mut lt = lt_leecher(
        &fx.torrent.path,
        &out,
        &[seed.addr],
        &["--encryption", "rc4"],
    );
    lt.wait_success(TRANSFER);
    tree_equal(&fx.data_dir().join("mse"), &out.join("mse"));
}

#[test]
fn bt_get_requiring_encryption_never_talks_plaintext_to_a_peer_that_hangs_up_on_it() {
    // A peer that hangs up on anything but a plaintext handshake: bt, requiring encryption,
    // reports the connection closed and never dials it in plaintext.
    let fx = Swarm::new("mse-bt-get-plain-peer", "mse", FILES, "32K");
    let listener = FakePeer::listen(61);
    let addr = listener.local_addr().expect("its address");
    let out = fx.tmp.path().join("out");
    let bt = BtProc::get(
        &fx.torrent.path,
        &out,
        &[addr],
        &["--encryption", "require"],
    );
    // The first bytes of bt's next dial within `within`, after which the peer hangs up (a
    // plaintext-only peer does not know what to make of them).
    let next_opening = |within: Duration| -> Vec<u8> {
        let until = Clock::now() + within;
        let mut s = accept_by(&listener, until).expect("bt dialled");
        read_some(&mut s, until, "the first bytes").unwrap_or_default()
    };
    let first = next_opening(WITHIN);
    assert_ne!(
        first.get(..20),
        Some(&b"\x13BitTorrent protocol"[..]),
        "bt opened in plaintext"
    );
    // One clear line (an event under --json, a line under -v) says why.
    let failed = bt.wait_for(|e| is_event(e, "connect_failed"), WITHIN);
    assert_eq!(failed["addr"], addr.to_string(), "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("hung up on the encryption handshake") && error.contains("required"),
        "{failed}"
    );
    // The retry comes after its backoff (20 s), encrypted again.
    let retry = next_opening(Duration::from_secs(40));
    assert_ne!(
        retry.get(..20),
        Some(&b"\x13BitTorrent protocol"[..]),
        "bt retried in plaintext"
    );
}

#[test]
fn bt_to_bt_with_every_pair_of_policies() {
    // Every pair that can talk does; the pairs that cannot (require against plaintext) never
    // complete. Each runs a seed and a leecher on loopback.
    let fx = Swarm::new("mse-bt-bt", "mse", FILES, "32K");
    let policies = ["prefer", "require", "plaintext"];
    for seed_policy in policies {
        let seed = BtProc::seed(
            &fx.torrent.path,
            &fx.data_dir(),
            &["--encryption", seed_policy],
        );
        for get_policy in policies {
            let can_talk = !matches!(
                (seed_policy, get_policy),
                ("require", "plaintext") | ("plaintext", "require")
            );
            let out = fx
                .tmp
                .path()
                .join(format!("out-{seed_policy}-{get_policy}"));
            let mut bt = BtProc::get(
                &fx.torrent.path,
                &out,
                &[seed.addr],
                &["--encryption", get_policy],
            );
            if can_talk {
                bt.wait_success(TRANSFER);
                tree_equal(&fx.data_dir().join("mse"), &out.join("mse"));
                let rc4 = seed_policy != "plaintext" && get_policy != "plaintext";
                assert_eq!(
                    connected_encrypted(&mut bt),
                    Some(rc4),
                    "{seed_policy} seed, {get_policy} get\n{}",
                    bt.log()
                );
            } else {
                // The seed refuses the one attempt at once, and says so.
                let refusal = if seed_policy == "require" {
                    "PlaintextRefused"
                } else {
                    "NoCommonMethod"
                };
                seed.wait_for(
                    |e| {
                        is_event(e, "peer_closed")
                            && e["reason"].as_str().is_some_and(|r| r.contains(refusal))
                    },
                    TRANSFER,
                );
                assert!(
                    bt.proc().events().iter().all(|e| !is_event(e, "complete")),
                    "{seed_policy} seed, {get_policy} get completed"
                );
                assert!(
                    !out.join("mse").join("data.bin").exists() || {
                        let got =
                            std::fs::read(out.join("mse").join("data.bin")).unwrap_or_default();
                        got != std::fs::read(fx.data_dir().join("mse").join("data.bin")).unwrap()
                    }
                );
            }
        }
    }
}

#[test]
fn bt_get_by_default_still_downloads_from_a_libtorrent_seeder_that_refuses_encryption() {
    // The default (prefer) dials encrypted first; libtorrent, with encryption off, drops that
    // handshake, and bt dials again in plaintext at once.
    let fx = Swarm::new("mse-bt-get-lt-off", "mse", FILES, "32K");
    let seeder = LtSeeder::start_encrypted(&fx.torrent.path, &fx.data_dir(), "off");
    let (bt, rc4) = bt_gets_from(&fx, seeder.addr(), &[]);
    assert_eq!(rc4, Some(false), "{}", bt.log());
    let failed = bt.wait_for(|e| is_event(e, "connect_failed"), TRANSFER);
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("trying plaintext")),
        "{failed}"
    );
}

/// aria2c's options for encrypted connections only, RC4 at least.
const ARIA2_REQUIRE: &[&str] = &["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"];

#[test]
fn bt_get_requiring_encryption_downloads_from_an_aria2_seeder_that_requires_rc4() {
    let fx = Swarm::new("mse-aria2-seed", "mse", FILES, "32K");
    let seeder = Aria2Seeder::start_args(&fx.torrent.path, &fx.data_dir(), ARIA2_REQUIRE);
    let (bt, rc4) = bt_gets_from(&fx, seeder.addr(), &["--encryption", "require"]);
    assert_eq!(rc4, Some(true), "{}", bt.log());
}

#[test]
fn an_aria2_leecher_that_requires_rc4_downloads_from_bt_seed_requiring_encryption() {
    let tmp = TempDir::new("mse-aria2-leech");
    let swarm = TrackedTorrent::new(&tmp, Opentracker::http_url);
    let seeder = BtProc::seed(
        &swarm.torrent.path,
        swarm.src(),
        &["--encryption", "require"],
    );
    swarm.wait_for_seeders(1);
    let dl = tmp.path().join("dl");
    aria2_get_with(&swarm.torrent.path, &dl, TRANSFER, ARIA2_REQUIRE);
    swarm.assert_downloaded(&dl);
    drop(seeder);
}
