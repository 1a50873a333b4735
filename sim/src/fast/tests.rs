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
