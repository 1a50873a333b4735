//! Crash safety: one `bt get` killed with SIGKILL at [`KILLS`] pseudo-random moments (chosen from
//! [`CRASH_SEED`]: some before the run's first resume save, some right after a save, some during
//! one, some in the middle of a piece, some anywhere), restarted into the same folder each time,
//! then run to completion. The download goes through a [`SlowRelay`] at 1 MiB/s, so it lasts long
//! enough to be killed that often, and the relay counts what each run received.
//!
//! What it checks: every kind of moment was reached at least once (a wait that ran out, or a
//! temporary file left by an earlier kill, does not count as the moment); the last run exits 0
//! with data byte-identical to the source; every restart starts with at least every piece any
//! earlier run verified, and never downloads such a piece again; after every kill the resume file
//! is whole and vouches only for pieces whose bytes on disk are right; and what each killed run
//! received but did not keep is at most the pieces it had in flight at the kill (started and not
//! verified, from its `piece_started`/`piece_verified` events) plus one piece and the wire's
//! framing ([`loss_bound`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use bt_protocol::bencode::{self, DecodeLimits};
use bt_protocol::metainfo::Metainfo;
use bt_tests::{
    BtProc, SlowRelay, TempDir, field_u64, gen_files, is_event, make_torrent, tree_equal,
};
use serde_json::Value;

/// Kills before the run that completes.
const KILLS: usize = 20;

/// Chooses every kill moment; printed on failure so a run can be repeated.
const CRASH_SEED: u64 = 0x6372_6173_6820_6c70;

/// The relay's rate, each way.
const RATE: u64 = 1 << 20;

/// Piece length of the test torrent: four blocks, so a kill often lands inside a piece.
const PIECE_LEN: u64 = 64 * 1024;

/// How often `bt get` saves resume data here (10 s by default): runs of a few seconds see saves.
const RESUME_INTERVAL: &str = "2s";

/// The content, about 40 MiB in three files of odd sizes.
const FILES: &[(&str, usize)] = &[
    ("crash/a.bin", 29_000_017),
    ("crash/sub/b.bin", 11_534_327),
    ("crash/c.bin", 4_111),
];

/// The most a killed run may receive without keeping it: the `in_flight` pieces it had requested
/// and not verified at the kill (whatever of them sat in socket buffers, the disk queue or a
/// partly written piece), plus one piece (a request whose `piece_started` line had not been
/// printed yet), plus the wire's framing (13 bytes a block, and the handshake, bitfield and other
/// messages).
fn loss_bound(in_flight: u64, delivered: u64) -> u64 {
    (in_flight + 1) * PIECE_LEN + delivered / 16384 * 13 + 4096
}

/// When a run is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Moment {
    /// This long after it listens: before its first resume save.
    Early(Duration),
    /// As soon as the resume file changes: right after a save.
    AfterSave,
    /// As soon as the resume file's temporary copy appears: during a save.
    MidSave,
    /// This long after its `n`th verified piece: in the middle of the next one.
    MidPiece(usize, Duration),
    /// This long after it listens.
    Anytime(Duration),
}

/// xorshift64*: the test's own pseudo-random moments.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }

    fn ms(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// One run of `bt get`, as the test saw it.
struct Run {
    moment: Option<Moment>,
    /// Pieces it had started (requested) and not verified when it was killed.
    in_flight: u64,
    /// Its `checked` event: what it started with.
    have: u64,
    vouched: u64,
    start_bytes: u64,
    /// Pieces it announced verified.
    verified: BTreeSet<u64>,
    /// Bytes the relay delivered to it.
    delivered: u64,
    /// How long it ran.
    ran: Duration,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The temporary file a resume save writes before renaming it over the resume file.
fn resume_tmp(resume: &Path) -> PathBuf {
    let mut name = resume.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Which file is at `path` now (inode and modification time), to tell a file written by this run
/// from one an earlier run left behind.
fn identity(path: &Path) -> Option<(u64, SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.modified().ok()?))
}

/// The kinds of moment, for counting which were reached.
fn kind(moment: Moment) -> &'static str {
    match moment {
        Moment::Early(_) => "early",
        Moment::AfterSave => "after a save",
        Moment::MidSave => "during a save",
        Moment::MidPiece(..) => "mid-piece",
        Moment::Anytime(_) => "anytime",
    }
}

/// Waits until `moment`, bounded (at most 10 s whatever it is), and says whether it was reached:
/// an early kill before this run saved anything, a save seen (the resume file replaced, or a
/// temporary copy that is not the one an earlier kill left), `n` pieces verified. A mid-piece
/// moment is judged after the kill, from the events.
fn wait_for_moment(bt: &mut BtProc, moment: Moment, resume: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    match moment {
        Moment::Early(d) => {
            let before = identity(resume);
            std::thread::sleep(d);
            identity(resume) == before
        }
        Moment::Anytime(d) => {
            std::thread::sleep(d);
            true
        }
        Moment::AfterSave => {
            let before = identity(resume);
            while identity(resume) == before && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            identity(resume) != before
        }
        Moment::MidSave => {
            let tmp = resume_tmp(resume);
            let leftover = identity(&tmp);
            loop {
                let now = identity(&tmp);
                if now.is_some() && now != leftover {
                    return true;
                }
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        Moment::MidPiece(n, d) => {
            bt.proc().wait_count(
                |e| is_event(e, "piece_verified"),
                n,
                Duration::from_secs(10),
            );
            std::thread::sleep(d);
            true
        }
    }
}

/// The files of `torrent` concatenated in torrent order as they are under `root` now, each cut
/// or zero-filled to its length.
fn torrent_bytes(torrent: &Path, root: &Path) -> Vec<u8> {
    let meta = Metainfo::from_bytes(&std::fs::read(torrent).expect("read the torrent"))
        .expect("a valid torrent");
    let mut all = Vec::new();
    for f in &meta.info.files {
        let path = f.path.iter().fold(root.to_owned(), |p, c| p.join(c));
        let mut bytes = std::fs::read(&path).unwrap_or_default();
        bytes.resize(usize::try_from(f.length).expect("fits"), 0);
        all.extend_from_slice(&bytes);
    }
    all
}

/// The pieces a resume file vouches for (its `pieces` bitfield, BEP 3 layout).
fn resume_pieces(resume: &Path) -> Vec<u64> {
    let Ok(bytes) = std::fs::read(resume) else {
        return Vec::new();
    };
    let decoded = bencode::decode(&bytes, DecodeLimits::default()).expect("checked whole");
    let bits = decoded
        .value
        .as_dict()
        .and_then(|d| d.get(b"pieces"))
        .and_then(|p| p.as_bytes())
        .expect("a pieces bitfield")
        .to_vec();
    (0..bits.len() as u64 * 8)
        .filter(|i| bits[(i / 8) as usize] & (0x80 >> (i % 8)) != 0)
        .collect()
}

/// Asserts the resume file, if there is one, is whole: a bencoded dict of this format.
fn assert_resume_whole(resume: &Path, context: &str) {
    let Ok(bytes) = std::fs::read(resume) else {
        return;
    };
    let decoded = bencode::decode(&bytes, DecodeLimits::default())
        .unwrap_or_else(|e| panic!("{context}: the resume file is torn ({e:?})"));
    let root = decoded.value.as_dict().expect("a dict");
    assert!(
        root.get(b"bt resume").is_some() && root.get(b"pieces").is_some(),
        "{context}: the resume file lacks its keys"
    );
}

fn run_from(bt: &mut BtProc, moment: Option<Moment>, delivered: u64, ran: Duration) -> Run {
    let events = bt.proc().events();
    let checked = events
        .iter()
        .find(|e| is_event(e, "checked"))
        .cloned()
        .unwrap_or(Value::Null);
    let started: BTreeSet<u64> = events
        .iter()
        .filter(|e| is_event(e, "piece_started"))
        .map(|e| field_u64(e, "piece"))
        .collect();
    let verified: BTreeSet<u64> = events
        .iter()
        .filter(|e| is_event(e, "piece_verified"))
        .map(|e| field_u64(e, "piece"))
        .collect();
    Run {
        moment,
        in_flight: started.difference(&verified).count() as u64,
        have: field_u64(&checked, "have"),
        vouched: field_u64(&checked, "vouched"),
        start_bytes: field_u64(&checked, "verified_bytes"),
        verified,
        delivered,
        ran,
    }
}

#[test]
fn bt_get_killed_twenty_times_finishes_with_the_right_bytes_and_keeps_what_it_verified() {
    let started = Instant::now();
    let tmp = TempDir::new("crash-loop");
    let src = tmp.path().join("src");
    gen_files(&src, FILES);
    let torrent = make_torrent(
        &src.join("crash"),
        &[],
        &format!("{}K", PIECE_LEN / 1024),
        &tmp.path().join("t.torrent"),
    );
    let total = torrent.total_size;
    let seeder = BtProc::seed(&torrent.path, &src, &[]);
    let out: PathBuf = tmp.path().join("out");
    let resume = out.join(format!(".bt-resume-{}", torrent.info_hash));
    let extra = ["--resume-interval", RESUME_INTERVAL];

    let setup = started.elapsed();
    let mut rng = Rng(CRASH_SEED);
    let mut runs: Vec<Run> = Vec::new();
    let source = torrent_bytes(&torrent.path, &src);
    let mut mid_save = 0;
    let mut reached: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for k in 0..KILLS {
        let moment = match k % 5 {
            0 => Moment::Early(rng.ms(50, 1_800)),
            1 => Moment::AfterSave,
            2 => Moment::MidPiece(1 + rng.below(20) as usize, rng.ms(5, 50)),
            3 => Moment::MidSave,
            _ => Moment::Anytime(rng.ms(0, 3_000)),
        };
        let relay = SlowRelay::start(seeder.addr, RATE as usize);
        let run_start = Instant::now();
        let run_start_time = SystemTime::now();
        let mut bt = BtProc::get(&torrent.path, &out, &[relay.addr()], &extra);
        let mut hit = wait_for_moment(&mut bt, moment, &resume);
        bt.proc().kill();
        let ran = run_start.elapsed();
        let context = format!("kill {k} ({moment:?}, CRASH_SEED {CRASH_SEED:#x})");
        // Every line it printed before the kill, read to the end.
        bt.proc().wait_exit(Duration::from_secs(10));
        assert!(
            !bt.proc().events().iter().any(|e| is_event(e, "complete")),
            "{context}: the download completed before the kill; make the torrent larger\n{}",
            bt.log()
        );
        // A kill between writing the temporary copy and renaming it leaves the copy behind (until
        // the next save replaces it).
        mid_save +=
            usize::from(modified(&resume_tmp(&resume)).is_some_and(|t| t >= run_start_time));
        assert_resume_whole(&resume, &context);
        let on_disk = torrent_bytes(&torrent.path, &out);
        for p in resume_pieces(&resume) {
            let range =
                (p * PIECE_LEN) as usize..(((p + 1) * PIECE_LEN) as usize).min(source.len());
            assert!(
                on_disk.get(range.clone()) == source.get(range),
                "{context}: the resume file vouches for piece {p}, whose bytes on disk are wrong"
            );
        }
        let delivered = relay.delivered();
        let run = run_from(&mut bt, Some(moment), delivered, ran);
        if let Moment::MidPiece(..) = moment {
            hit = run.in_flight > 0;
        }
        let count = reached.entry(kind(moment)).or_default();
        count.0 += usize::from(hit);
        count.1 += 1;
        runs.push(run);
    }
    println!("moments reached (of tried): {reached:?}");
    for (kind, (hit, tried)) in &reached {
        assert!(
            *hit > 0,
            "no kill {kind} was reached ({tried} tried, CRASH_SEED {CRASH_SEED:#x}): the test \
             did not prove what it claims"
        );
    }
    assert_eq!(reached.len(), 5, "every kind of moment was tried");

    let killing = started.elapsed() - setup;
    let relay = SlowRelay::start(seeder.addr, RATE as usize);
    let run_start = Instant::now();
    let mut last = BtProc::get(&torrent.path, &out, &[relay.addr()], &extra);
    last.wait_success(Duration::from_secs(150));
    let final_downloaded = last
        .last_status()
        .map_or(0, |s| field_u64(&s, "downloaded"));
    let delivered = relay.delivered();
    runs.push(run_from(&mut last, None, delivered, run_start.elapsed()));
    tree_equal(&src.join("crash"), &out.join("crash"));

    // The figures, then the checks.
    println!(
        "torrent {total} bytes, {} pieces of {PIECE_LEN}",
        torrent.pieces
    );
    println!(
        "run  moment                          ran_ms  start_have vouched  verified  in_flight  delivered  kept     lost"
    );
    let mut lost_total = 0;
    for (k, run) in runs.iter().enumerate() {
        let end_bytes = runs.get(k + 1).map_or(total, |next| next.start_bytes);
        let kept = end_bytes.saturating_sub(run.start_bytes);
        let lost = run.delivered.saturating_sub(kept);
        lost_total += lost;
        println!(
            "{k:>3}  {:<30}  {:>6}  {:>10} {:>7}  {:>8}  {:>9}  {:>9}  {kept:>8} {lost:>7}",
            run.moment
                .map_or("(runs to the end)".into(), |m| format!("{m:?}")),
            run.ran.as_millis(),
            run.have,
            run.vouched,
            run.verified.len(),
            run.in_flight,
            run.delivered,
        );
    }
    let delivered: u64 = runs.iter().map(|r| r.delivered).sum();
    println!(
        "{KILLS} kills ({mid_save} during a save, its temporary file left behind); delivered \
         {delivered} bytes in all for {total} ({:.3}x), lost to kills {lost_total}; \
         last run's status says downloaded {final_downloaded}; wall {:.1} s (setup {:.1} s, \
         kills {:.1} s)",
        delivered as f64 / total as f64,
        started.elapsed().as_secs_f64(),
        setup.as_secs_f64(),
        killing.as_secs_f64()
    );

    let mut verified_before: BTreeSet<u64> = BTreeSet::new();
    for (k, run) in runs.iter().enumerate() {
        let context = format!("run {k} ({:?}, CRASH_SEED {CRASH_SEED:#x})", run.moment);
        assert!(
            run.have >= verified_before.len() as u64,
            "{context}: started with {} pieces, but {} were verified before",
            run.have,
            verified_before.len()
        );
        let again: Vec<&u64> = run.verified.intersection(&verified_before).collect();
        assert!(
            again.is_empty(),
            "{context}: downloaded again pieces verified before a kill: {again:?}"
        );
        if k > 0 {
            assert!(
                run.start_bytes >= runs[k - 1].start_bytes,
                "{context}: started with less than the run before"
            );
        }
        let end_bytes = runs.get(k + 1).map_or(total, |next| next.start_bytes);
        let kept = end_bytes - run.start_bytes;
        assert!(
            run.delivered >= kept,
            "{context}: kept {kept} bytes but the relay delivered only {}: the count is wrong",
            run.delivered
        );
        let lost = run.delivered - kept;
        let bound = loss_bound(run.in_flight, run.delivered);
        assert!(
            lost <= bound,
            "{context}: received {} bytes and kept {kept}: lost {lost}, more than the {} pieces \
             in flight at the kill allow (at most {bound})",
            run.delivered,
            run.in_flight,
        );
        verified_before.extend(&run.verified);
    }
    assert!(
        final_downloaded <= runs.last().unwrap().delivered,
        "the last run's downloaded count ({final_downloaded}) is more than it received"
    );
    let bound: u64 = runs
        .iter()
        .map(|r| loss_bound(r.in_flight, r.delivered))
        .sum();
    assert!(
        delivered <= total + bound,
        "delivered {delivered} bytes in all for {total}: more than {bound} lost to {KILLS} kills"
    );
}
