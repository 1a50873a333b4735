//! The shipped scenarios on the turmoil engine (the real runtime driver on turmoil hosts), its
//! determinism, and the behaviours and faults no shipped scenario covers yet.
//!
//! Cost: turmoil steps every host every tick, so these runs are slower than the fast engine's
//! (a debug build takes about 1 to 60 s CPU each). flash-crowd (101 hosts, about 50 s CPU in a
//! debug build) runs only in release builds, like the fast engine's 5,000-peer crowd.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bt_sim::engine::{self, HostEnd, Outcome};
use bt_sim::report::Report;
use bt_sim::scenario::{EngineKind, Scenario};

mod controls;
mod hostile;

fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
}

fn run_scenario(name: &str, scenario: &Scenario, seed: u64) -> (Outcome, Report) {
    let outcome = engine::run(scenario, seed, EngineKind::Turmoil, &mut |_| {})
        .unwrap_or_else(|e| panic!("{e}"));
    let report = Report::new(name, scenario, &outcome, Duration::ZERO);
    (outcome, report)
}

fn run(name: &str) -> (Scenario, Outcome, Report) {
    let scenario = Scenario::load(&scenario_path(name)).unwrap_or_else(|e| panic!("{e}"));
    let (outcome, report) = run_scenario(name, &scenario, scenario.seed);
    (scenario, outcome, report)
}

fn inline(name: &str, text: &str) -> (Outcome, Report) {
    let scenario = Scenario::parse(name, text).unwrap_or_else(|e| panic!("{e}"));
    run_scenario(name, &scenario, scenario.seed)
}

#[test]
fn quickstart_passes_on_turmoil() {
    // Proves the real driver completes the quickstart swarm within its expectations.
    let (_, outcome, r) = run("quickstart.toml");
    assert!(r.passed, "{}", r.human());
    assert_eq!(r.groups[1].completed, 10);
    assert_eq!(outcome.engine, EngineKind::Turmoil);
    assert_eq!(
        outcome.announces,
        11,
        "one `started` per peer: {}",
        r.human()
    );
    // The wire observer read every block the drivers received (so its silence means something).
    let blocks = outcome.hosts.iter().map(|h| h.downloaded).sum::<u64>() / 16384;
    let observed = outcome.diagnostics["wire_blocks_observed"];
    assert!(observed >= blocks, "observed {observed} of {blocks} blocks");
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "101 hosts: about 8 s CPU in a release build, 50 s in a debug one (over a minute of \
              wall time on a loaded machine): run with `cargo nextest run -p bt-sim --release` \
              (or --run-ignored all)"
)]
fn flash_crowd_passes_on_turmoil() {
    // Proves 100 real drivers arriving at once all complete and mostly feed each other.
    let (_, _, r) = run("flash-crowd.toml");
    assert!(r.passed, "{}", r.human());
    assert_eq!(r.groups[1].completed, 100);
    assert!(r.totals.seeders_share < 0.5, "{}", r.human());
}

#[test]
fn churn_passes_on_turmoil() {
    // Proves departures (`leave_after`, a `stopped` announce), crashes, restarts with resume and
    // 1% loss on a UDP tracker do not stop the peers that stay from completing.
    let (_, outcome, r) = run("churn.toml");
    assert!(r.passed, "{}", r.human());
    assert!(r.groups[2].left > 0, "tourists leave: {}", r.human());
    assert_eq!(r.groups[0].crashed, 1, "{}", r.human());
    // The crashed-and-restarted stayers came back: more lives than peers.
    assert!(
        outcome.diagnostics["peer_lives"] > 52,
        "{:?}",
        outcome.diagnostics
    );
}

#[test]
fn corrupt_peer_passes_on_turmoil() {
    // Proves real drivers detect flipped bits by hash, ban both liars and complete.
    let (_, outcome, r) = run("corrupt-peer.toml");
    assert!(r.passed, "{}", r.human());
    assert!(r.groups[2].hash_failures > 0, "{}", r.human());
    assert_eq!(outcome.violation_count, 0);
}

#[test]
fn hostile_mixed_on_turmoil_closes_the_same_attacks_for_the_same_reasons() {
    // Proves the real runtime, against attacker hosts on raw turmoil sockets, closes every
    // attack the fast engine's sessions close, for the same named reasons in the same times
    // (Peer/UnrequestedBlocks, and Peer/ChokeStorm wherever it is interested, among them), and
    // completes the honest leechers.
    let (_, _, r) = run("hostile-mixed.toml");
    assert!(r.passed, "{}", r.human());
    assert_eq!(r.groups[1].completed, 8, "{}", r.human());
    hostile::assert_closed_with_their_reasons(&r, true);
    hostile::assert_unrequested_and_choke_storm_closed(&r);
}

#[test]
fn hostile_slow_on_turmoil_closes_the_slowloris_on_the_frame_timeout() {
    // Proves the runtime closes the slowloris after the handshake on its frame timeout
    // (Peer/FrameTimeout, 60 s after the first byte), as the fast engine's sessions do.
    let (_, _, r) = run("hostile-slow.toml");
    assert!(r.passed, "{}", r.human());
    assert_eq!(r.groups[1].completed, 4, "{}", r.human());
    hostile::assert_slowloris_closed(&r);
}

#[test]
fn hostile_flood_fast_on_turmoil_is_closed_for_requests_while_choked() {
    // Proves the runtime closes a Fast-extension request flood sent while choked, as the fast
    // engine's sessions do (Peer/RequestWhileChoked), and completes the leechers.
    let (_, _, r) = run("hostile-flood-fast.toml");
    assert!(r.passed, "{}", r.human());
    assert_eq!(r.groups[1].completed, 4, "{}", r.human());
    hostile::assert_group_closed(&r, "flood-fast", &["Peer/RequestWhileChoked"], 1.0);
}

#[test]
fn hostile_mixed_on_turmoil_is_deterministic() {
    // Proves the attacker hosts keep turmoil runs deterministic: the first 12 s (attackers
    // dialling and being closed, streams running) twice with one seed give one fingerprint,
    // another seed another.
    let path = scenario_path("hostile-mixed.toml");
    let mut scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    scenario.duration = Duration::from_secs(12);
    let (a, _) = run_scenario("hostile-mixed.toml", &scenario, 1);
    let (b, _) = run_scenario("hostile-mixed.toml", &scenario, 1);
    let (c, _) = run_scenario("hostile-mixed.toml", &scenario, 2);
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_eq!(a, b);
    assert_ne!(a.fingerprint, c.fingerprint);
}

#[test]
fn mixed_liars_passes_on_turmoil() {
    // Proves the runtime's smart ban (blocks of a failed piece read back and hashed through the
    // real Storage) bans only the liars among seeders and leechers.
    let (_, outcome, r) = run("mixed-liars.toml");
    assert!(r.passed, "{}", r.human());
    assert_eq!(
        r.groups[0].banned_by + r.groups[3].banned_by,
        0,
        "{}",
        r.human()
    );
    assert_eq!(outcome.violation_count, 0);
}

#[test]
fn partition_heal_passes_on_turmoil() {
    // Proves the far side of a partition completes only after the heal at 65 s, and does.
    let (_, outcome, r) = run("partition-heal.toml");
    assert!(r.passed, "{}", r.human());
    let far = outcome.hosts.iter().filter(|h| h.group == 2);
    for h in far {
        let done = h.completed_at.expect("every far leecher completes");
        assert!(done.as_micros() > 65_000_000, "{}", r.human());
    }
}

/// Whether every peer of group `g` completed after `at_s` simulated seconds.
fn all_completed_after(outcome: &Outcome, g: usize, at_s: u64) -> bool {
    outcome.hosts.iter().filter(|h| h.group == g).all(|h| {
        h.completed_at
            .is_some_and(|t| t.as_micros() > at_s * 1_000_000)
    })
}

#[test]
fn seeder_crash_restart_passes_on_turmoil() {
    // Proves real drivers keep what they have when the only seeder crashes (6 s) and complete
    // only once it is back (66 s) with its pieces.
    let (_, outcome, r) = run("seeder-crash-restart.toml");
    assert!(r.passed, "{}", r.human());
    assert!(all_completed_after(&outcome, 1, 66), "{}", r.human());
}

#[test]
fn lossy_udp_tracker_passes_on_turmoil() {
    // Proves the runtime's UDP announces get through a tracker losing a quarter of its packets.
    let (_, _, r) = run("lossy-udp-tracker.toml");
    assert!(r.passed, "{}", r.human());
    assert_eq!(r.groups[1].completed, 30);
}

#[test]
fn tracker_down_up_passes_on_turmoil() {
    // Proves real drivers keep retrying both tiers while the trackers are down and complete
    // after the first comes back at 60 s.
    let (_, outcome, r) = run("tracker-down-up.toml");
    assert!(r.passed, "{}", r.human());
    assert!(all_completed_after(&outcome, 1, 60), "{}", r.human());
}

#[test]
fn magnet_join_on_turmoil_resolves_through_the_real_driver() {
    // Proves the runtime's magnet path (Driver::new_magnet: the metadata fetched from peers,
    // then the storage opened by the engine's opener) resolves every magnet within seconds of
    // joining and completes it, and that the same seed gives the same run twice.
    let (scenario, a, r) = run("magnet-join.toml");
    assert!(r.passed, "{}", r.human());
    assert_eq!(r.groups[2].completed, 10, "{}", r.human());
    assert_eq!(r.groups[2].magnets_resolved, Some(10), "{}", r.human());
    assert!(r.groups[2].magnet_s.unwrap().max < 5.0, "{}", r.human());
    let (b, _) = run_scenario("magnet-join.toml", &scenario, scenario.seed);
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_eq!(a, b);
}

#[test]
fn pex_only_passes_on_turmoil() {
    // Proves the runtime's PEX (the driver dials the peers PeersLearned gives, reported as
    // PeersFound) spreads a trackerless swarm whose leechers were each given only the seeder.
    let (_, outcome, r) = run("pex-only.toml");
    assert!(r.passed, "{}", r.human());
    assert_eq!(r.groups[1].completed, 30, "{}", r.human());
    assert!(r.totals.pex_learned >= 100, "{}", r.human());
    assert!(r.groups[1].uploaded > 0, "{}", r.human());
    assert_eq!(outcome.announces, 0);
}

#[test]
fn bad_metadata_on_turmoil_is_closed_with_bad_metadata() {
    // Proves the runtime, against attacker hosts sending wrong metadata pieces, closes them
    // with BadMetadata and bans them, resolves and completes every magnet and bans no honest
    // peer, as on the fast engine.
    let (_, _, r) = run("bad-metadata.toml");
    assert!(r.passed, "{}", r.human());
    assert_eq!(r.groups[1].magnets_resolved, Some(8), "{}", r.human());
    assert_eq!(r.groups[1].completed, 8, "{}", r.human());
    hostile::assert_group_closed(
        &r,
        "bad-metadata",
        &["BadMetadata", "Refused/Banned", "ConnectRefusedBySession"],
        1.0,
    );
    let a = hostile::attack(&r, "bad-metadata");
    assert!(
        a.closed.get("BadMetadata").copied().unwrap_or(0) > 0,
        "{}",
        r.human()
    );
    assert_eq!(
        r.groups[0].banned_by + r.groups[1].banned_by,
        0,
        "{}",
        r.human()
    );
}

#[test]
fn dht_swarm_passes_on_turmoil() {
    // Proves the runtime's DHT (Driver::start_dht: its UDP socket, bootstrap, announce, retries
    // and PeersFound{Dht}) joins a trackerless swarm of 50 peers through 3 bootstrap hosts, every
    // magnet resolving from DHT-found peers, as on the fast engine.
    let (_, outcome, r) = run("dht-swarm.toml");
    assert!(r.passed, "{}", r.human());
    assert_eq!(
        r.groups[1].completed + r.groups[2].completed,
        48,
        "{}",
        r.human()
    );
    assert_eq!(r.groups[2].magnets_resolved, Some(12), "{}", r.human());
    assert!(r.totals.dht_peers >= 200, "{}", r.human());
    assert!(r.totals.dht_bootstrap_datagrams > 0, "{}", r.human());
    assert_eq!((outcome.announces, r.totals.pex_learned), (0, 0));
    for (i, h) in outcome.hosts.iter().enumerate() {
        assert!(h.dht_lookups > 0 && h.dht_datagrams > 0, "peer {i}: {h:?}");
    }
}

#[test]
fn a_small_dht_swarm_on_turmoil_is_deterministic() {
    // Proves the turmoil engine's DHT runs are a function of the seed (a smaller swarm than
    // dht-swarm.toml, which takes about 25 s in a debug build, so that two runs stay quick).
    let text = std::fs::read_to_string(scenario_path("dht-swarm.toml"))
        .unwrap()
        .replace("count = 36", "count = 8")
        .replace("count = 12", "count = 3")
        .replace(
            "dht_peers_found_at_least = 200",
            "dht_peers_found_at_least = 20",
        );
    let scenario = Scenario::parse("dht-small.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let (a, r) = run_scenario("dht-small.toml", &scenario, 1);
    assert!(r.passed, "{}", r.human());
    let (b, _) = run_scenario("dht-small.toml", &scenario, 1);
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_eq!(a, b);
}

const QUICK: &str = "quickstart.toml";

#[test]
fn the_same_seed_gives_the_same_fingerprint_and_another_seed_another() {
    // Proves a turmoil run is a function of its scenario and seed: the library twice (one of
    // them through the btsim binary, another process) agrees; seed 2 differs.
    let scenario = Scenario::load(&scenario_path(QUICK)).unwrap();
    let (a, _) = run_scenario(QUICK, &scenario, 1);
    let out = Command::new(env!("CARGO_BIN_EXE_btsim"))
        .args(["run", scenario_path(QUICK).to_str().unwrap()])
        .args(["--engine", "turmoil", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["engine"], "turmoil");
    assert_eq!(
        json["totals"]["fingerprint"].as_str().unwrap(),
        format!("{:016x}", a.fingerprint)
    );
    let (c, _) = run_scenario(QUICK, &scenario, 2);
    assert_ne!(a.fingerprint, c.fingerprint);
}

#[test]
fn leechers_arriving_while_the_tracker_is_down_complete_once_it_is_back() {
    // Proves tracker_down/tracker_up crash and restart the tracker host: peers that join while
    // it is down find nobody until it is back, then complete.
    let (outcome, r) = inline(
        "tracker-outage.toml",
        r#"
        seed = 3
        duration = 300
        [torrent]
        size = "1 MiB"
        piece_length = "64 KiB"
        [[tracker]]
        kind = "http"
        interval = 10
        [link]
        latency_ms = 20
        [[group]]
        name = "seeder"
        role = "seeder"
        up = "1 MiB/s"
        [[group]]
        name = "late"
        role = "leecher"
        count = 3
        join = [5, 6]
        down = "1 MiB/s"
        [[fault]]
        at = 2
        tracker_down = 0
        [[fault]]
        at = 40
        tracker_up = 0
        [expect]
        all_complete_by = 120
        "#,
    );
    assert!(r.passed, "{}", r.human());
    for h in outcome.hosts.iter().filter(|h| h.group == 1) {
        let done = h.completed_at.expect("completes");
        assert!(done.as_micros() > 40_000_000, "{}", r.human());
    }
    assert!(
        outcome
            .event_counts
            .get("tracker_failed")
            .copied()
            .unwrap_or(0)
            >= 3
    );
}

#[test]
fn a_lossy_udp_tracker_and_a_slow_seeder_still_serve_the_swarm() {
    // Proves UDP announces survive 20% loss (retransmitted on the runtime's schedule) and a
    // slow seeder (one 16 KiB block per 50 ms, about 320 KiB/s) still completes the leechers,
    // no faster than its pace allows.
    let (outcome, r) = inline(
        "lossy-slow.toml",
        r#"
        seed = 5
        duration = 300
        [torrent]
        size = "1 MiB"
        piece_length = "64 KiB"
        [[tracker]]
        kind = "udp"
        interval = 10
        [link]
        latency_ms = 20
        loss = 0.2
        [[group]]
        name = "seeder"
        role = "seeder"
        behaviour = "slow=50"
        [[group]]
        name = "leechers"
        role = "leecher"
        count = 3
        [expect]
        all_complete_by = 200
        no_corrupt_piece_kept = true
        "#,
    );
    assert!(r.passed, "{}", r.human());
    // 1 MiB leaves the seeder at 320 KiB/s at best: over 3 s before anyone completes.
    let first = outcome
        .hosts
        .iter()
        .filter_map(|h| h.completed_at.filter(|_| h.group == 1))
        .min()
        .unwrap();
    assert!(first.as_micros() > 3_000_000, "{}", r.human());
    assert!(outcome.hosts.iter().all(|h| h.end == HostEnd::Running));
}

#[test]
fn a_crashed_leecher_restarts_with_the_pieces_it_had_verified() {
    // Proves crash and restart on turmoil: the host's driver dies mid-download and a new one
    // resumes from the verified pieces kept outside the host, fetching only the rest.
    let (outcome, r) = inline(
        "crash-resume.toml",
        r#"
        seed = 2
        duration = 120
        [torrent]
        size = "2 MiB"
        piece_length = "64 KiB"
        [[tracker]]
        kind = "http"
        interval = 5
        [link]
        latency_ms = 10
        [[group]]
        name = "seeder"
        role = "seeder"
        up = "512 KiB/s"
        [[group]]
        name = "leecher"
        role = "leecher"
        [[fault]]
        at = 2.5
        crash = "leecher"
        [[fault]]
        at = 5
        restart = "leecher"
        [expect]
        all_complete_by = 60
        "#,
    );
    assert!(r.passed, "{}", r.human());
    // The seeder's one life and the leecher's two.
    assert_eq!(
        outcome.diagnostics["peer_lives"], 3,
        "{:?}",
        outcome.diagnostics
    );
    let leecher = &outcome.hosts[1];
    assert!(leecher.completed_at.unwrap().as_micros() > 5_000_000);
    // About 1 MiB came before the crash; a restart from nothing would fetch 2 MiB more.
    assert!(
        leecher.downloaded < 2 * 1024 * 1024 + 256 * 1024,
        "{}",
        r.human()
    );
}

#[test]
fn seed_goals_on_turmoil_stop_each_goal_peer_through_the_real_driver() {
    // Proves the runtime's `Driver::set_seed_goal` in a swarm: every leecher completes, the eight
    // ratio peers stop by their ratio and the four late ones by their 30 s of seeding, each
    // driver's run ends there (the peer ends stopped at its goal), and the goal observer (the
    // driver's upload count over the pieces the engine saw verified, a time not early, no block
    // read to upload after the goal) passes.
    let (_, outcome, r) = run("seed-goals.toml");
    assert!(r.passed, "{}", r.human());
    assert_eq!(outcome.violation_count, 0, "{:?}", outcome.violations);
    let goals = |g: usize| r.groups[g].seed_goal.as_ref().expect("a goal group");
    assert_eq!(
        (goals(1).reached, goals(1).by_ratio),
        (8, 8),
        "{}",
        r.human()
    );
    assert_eq!(
        (goals(2).reached, goals(2).by_time),
        (4, 4),
        "{}",
        r.human()
    );
    assert!(
        goals(1).ratio_min.is_some_and(|m| m >= 1.0),
        "{}",
        r.human()
    );
    assert!(
        outcome
            .hosts
            .iter()
            .skip(1)
            .all(|h| h.end == HostEnd::SeedGoal && h.completed_at.is_some())
    );
    assert_eq!(outcome.hosts[0].end, HostEnd::Running);
}

#[test]
fn hostile_mse_on_turmoil_closes_each_attack_with_its_reason() {
    // Proves the real driver closes the four MSE attacks for the same rules as the fast
    // engine, within 25 s, and completes the leechers.
    let (_, _, r) = run("hostile-mse.toml");
    assert!(r.passed, "{}", r.human());
    hostile::assert_mse_closed_with_their_reasons(&r);
}

#[test]
fn encryption_mix_on_turmoil_connects_every_pair_that_can_talk() {
    // Proves the runtime's dial policy with the three encryption policies: every pair that can
    // talk connects, require peers only in RC4.
    let (_, _, r) = run("encryption-mix.toml");
    assert!(r.passed, "{}", r.human());
}

#[test]
fn peers_that_select_files_on_turmoil_fetch_only_those_and_complete() {
    // Proves `select` on the real driver (`Driver::set_file_priorities` at each life's start):
    // the write observer (a violation if a selecting peer's disk takes a block of a piece lying
    // wholly in files it skipped) passes, the selecting peers complete at their last wanted
    // piece, and they downloaded little beyond their two files while the others fetched
    // everything, as on the fast engine.
    let (scenario, outcome, r) = run("select-files.toml");
    controls::assert_selecting_peers_fetch_only_their_files(&scenario, &outcome, &r);
}

#[test]
fn paused_drivers_on_turmoil_do_nothing_until_they_resume() {
    // Proves pause and resume reach running drivers through their command channel: each driver
    // reports its pause and its resume (a pause not reported within 1 s is a violation), the
    // observers (no block written or read to upload, no piece verified, from the pause report
    // to the resume report) pass, nobody completes while paused and everyone after resuming;
    // the same seed gives the same fingerprint.
    let (scenario, outcome, r) = run("pause-resume.toml");
    controls::assert_paused_peers_waited_for_resume(&outcome, &r);
    let (again, _) = run_scenario("pause-resume.toml", &scenario, scenario.seed);
    assert_eq!(again.fingerprint, outcome.fingerprint);
}

#[test]
fn a_driver_crashed_while_paused_restarts_unpaused() {
    // Proves a restart begins unpaused on turmoil as on the fast engine: the new driver of the
    // leecher crashed during the pause completes before the others resume, and the resume finds
    // only three torrents to resume.
    controls::assert_a_restart_begins_unpaused(EngineKind::Turmoil);
}

#[test]
fn utp_peers_complete_on_turmoil() {
    // Proves the runtime's driver carries uTP through TurmoilNet's UDP: uTP-only leechers get
    // the torrent from a seeder that takes both transports, over uTP connections only.
    let (outcome, r) = inline(
        "utp.toml",
        r#"
engine = "turmoil"
seed = 1
duration = 60

[torrent]
size = "1 MiB"
piece_length = "64 KiB"

[[tracker]]
kind = "http"
interval = 30

[link]
latency_ms = 20
jitter_ms = 10

[[group]]
name = "seeder"
role = "seeder"
up = "2 MiB/s"
transports = ["utp", "tcp"]

[[group]]
name = "leechers"
role = "leecher"
count = 3
join = [0, 1]
transports = ["utp"]

[expect]
all_complete_by = 30
no_corrupt_piece_kept = true
"#,
    );
    assert!(r.passed, "{}", r.human());
    assert_eq!(r.groups[1].completed, 3, "{}", r.human());
    let [seeder, leechers] = &outcome.transport.connections[..] else {
        panic!("two groups");
    };
    assert_eq!(leechers[0], 0, "no TCP connection: {}", r.human());
    assert!(leechers[1] >= 3 && seeder[1] >= 3, "{}", r.human());
}
