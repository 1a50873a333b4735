//! The fast engine on small swarms: data moves, runs are deterministic, faults behave.

use super::*;
use crate::scenario::Scenario;

fn scenario(text: &str) -> Scenario {
    Scenario::parse("test.toml", text).unwrap()
}

const SMALL: &str = r#"
seed = 3
duration = 600
[torrent]
size = "1 MiB"
piece_length = "64 KiB"
[[tracker]]
kind = "http"
interval = 60
[link]
latency_ms = 20
jitter_ms = 5
[[group]]
name = "seed"
role = "seeder"
up = "1 MiB/s"
[[group]]
name = "leech"
role = "leecher"
count = 5
join = [0, 5]
up = "256 KiB/s"
down = "2 MiB/s"
"#;

fn run_text(text: &str, seed: u64) -> Outcome {
    run(&scenario(text), seed, &mut |_| {}).unwrap()
}

#[test]
fn a_small_swarm_completes_with_no_violation() {
    // Proves one seeder and five leechers move a whole torrent, verified, through the tracker.
    let o = run_text(SMALL, 3);
    assert_eq!(o.violations, Vec::<String>::new());
    for h in &o.hosts {
        assert!(h.completed_at.is_some(), "{h:?}");
        assert_eq!(h.pieces, 16);
    }
    let leechers_up: u64 = o.hosts[1..].iter().map(|h| h.uploaded).sum();
    assert!(leechers_up > 0, "leechers shared nothing: {o:?}");
    // The wire observer read every block that crossed the wire (so its silence means something).
    let blocks: u64 = o.hosts.iter().map(|h| h.downloaded).sum::<u64>() / 16384;
    let observed = o.diagnostics["wire_blocks_observed"];
    assert!(observed >= blocks, "observed {observed} of {blocks} blocks");
    assert!(
        o.sim_time < Instant::from_micros(60_000_000),
        "{:?}",
        o.sim_time
    );
}

#[test]
fn same_seed_same_fingerprint() {
    // Proves determinism: the same seed twice gives the same event stream; another seed differs.
    let a = run_text(SMALL, 11);
    let b = run_text(SMALL, 11);
    let c = run_text(SMALL, 12);
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_eq!(a.events, b.events);
    assert_eq!(a, b);
    assert_ne!(a.fingerprint, c.fingerprint);
}

fn with(extra: &str) -> String {
    format!("{SMALL}{extra}")
}

#[test]
fn a_dead_tracker_delays_everyone_until_it_answers() {
    // Proves peers find each other only through the tracker: with it down for the first minute,
    // nobody completes before it is back; afterwards (announcer backoff: retries at 40 s then
    // 110 s after 10 s connect timeouts) everyone does.
    let o = run_text(
        &with("[[fault]]\nat = 0\ntracker_down = 0\n[[fault]]\nat = 60\ntracker_up = 0\n"),
        3,
    );
    assert_eq!(o.violations, Vec::<String>::new());
    for h in &o.hosts[1..] {
        let done = h.completed_at.expect("completes once the tracker is back");
        assert!(done > Instant::from_micros(60_000_000), "{done:?}");
    }
}

#[test]
fn a_partition_longer_than_the_idle_timeout_heals() {
    // Proves connections cut for longer than the protocol's idle timeout (180 s) close on both
    // sides, the FIN held by the partition arrives after the heal, and the swarm then completes.
    let text =
        with("[[fault]]\nat = 0.5\npartition = \"seed|leech\"\n[[fault]]\nat = 400\nheal = true\n");
    let o = run_text(&text, 3);
    assert_eq!(o.violations, Vec::<String>::new());
    assert!(
        o.close_reasons.keys().any(|r| r.contains("IdleTimeout")),
        "{:?}",
        o.close_reasons
    );
    for h in &o.hosts[1..] {
        assert!(h.completed_at.is_some(), "{h:?}");
    }
}

#[test]
fn a_crashed_peer_restarts_with_what_it_had() {
    // Proves a restart keeps the verified pieces (fast resume): the peer crashed mid-download
    // completes after its restart.
    let text = with(
        "[[fault]]\nat = 0.5\ncrash = \"leech#0\"\n[[fault]]\nat = 30\nrestart = \"leech#0\"\n",
    );
    let o = run_text(&text, 3);
    assert_eq!(o.violations, Vec::<String>::new());
    let h = &o.hosts[1];
    assert_eq!(h.end, crate::engine::HostEnd::Running);
    assert!(
        h.completed_at
            .is_some_and(|t| t > Instant::from_micros(30_000_000)),
        "{h:?}"
    );
}

/// A trace sink the test can read back.
#[derive(Clone, Default)]
struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The value of `key=` in a trace line.
fn field(line: &str, key: &str) -> u64 {
    line.split(' ')
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .parse()
        .unwrap()
}

/// A trace line's time in microseconds.
fn micros(line: &str) -> u64 {
    let (s, us) = line.split(' ').next().unwrap().split_once('.').unwrap();
    s.parse::<u64>().unwrap() * 1_000_000 + us.parse::<u64>().unwrap()
}

#[test]
fn udp_announces_retransmit_on_the_protocol_schedule() {
    // Proves UDP announces are the protocol's UdpAnnounce on the engine's datagrams: over a
    // tracker losing half its packets, a request sent again is the same bytes (same transaction)
    // 3 s after the first copy and 6 s after the second, never a fourth time, and an announce
    // that fails does so 21 s after its last step's first copy (3 + 6 + 12 s).
    let text = r#"
seed = 5
duration = 300
[torrent]
size = "1 MiB"
piece_length = "64 KiB"
[[tracker]]
kind = "udp"
interval = 30
loss = 0.5
[link]
latency_ms = 20
[[group]]
name = "seed"
role = "seeder"
up = "1 MiB/s"
[[group]]
name = "leech"
role = "leecher"
count = 8
join = [0, 5]
up = "256 KiB/s"
down = "2 MiB/s"
"#;
    let buf = SharedBuf::default();
    let o = run_traced(&scenario(text), 5, &mut |_| {}, Box::new(buf.clone())).unwrap();
    assert_eq!(o.violations, Vec::<String>::new());
    let trace = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    // Copies of each request, by (host, hash of its bytes).
    let mut copies: BTreeMap<(u64, u64), Vec<u64>> = BTreeMap::new();
    let mut requests_at: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut failures = Vec::new();
    for line in trace.lines() {
        let name = line.split(' ').nth(1).unwrap();
        if name == "tracker_datagram" && field(line, "to_tracker") == 1 {
            let (h, at) = (field(line, "host"), micros(line));
            copies.entry((h, field(line, "hash"))).or_default().push(at);
            requests_at.insert((h, at));
        } else if name == "tracker_answer" && field(line, "ok") == 0 {
            failures.push((field(line, "host"), micros(line)));
        }
    }
    let mut resent_twice = 0;
    for ((h, _), times) in &copies {
        assert!(times.len() <= 3, "peer {h} sent one request {times:?}");
        let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        match gaps.as_slice() {
            [] => {}
            [first] => assert!(
                [3_000_000, 6_000_000].contains(first),
                "peer {h}: {times:?}"
            ),
            _ => {
                assert_eq!(gaps, [3_000_000, 6_000_000], "peer {h}: {times:?}");
                resent_twice += 1;
            }
        }
    }
    assert!(resent_twice > 0, "no request needed two retransmissions");
    assert!(!failures.is_empty(), "no announce failed at loss 0.5");
    for (h, at) in failures {
        assert!(
            requests_at.contains(&(h, at - 21_000_000)),
            "peer {h} failed at {at} µs with no request 21 s before"
        );
    }
    // The tracker's figures reach the report.
    assert!(o.diagnostics["tracker_udp_datagrams_lost"] > 0);
    assert!(o.announces > 0);
}
