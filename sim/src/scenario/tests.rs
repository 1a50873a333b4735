//! Scenario parsing: the shipped format reads as documented, and every mistake names its line
//! and key.

use std::time::Duration;

use super::*;

const GOOD: &str = r#"
engine = "fast"
seed = 7
duration = 600

[torrent]
size = "4 MiB"
piece_length = "256 KiB"
files = 3

[[tracker]]
kind = "udp"
interval = 30
peers = 40

[link]
latency_ms = 40
jitter_ms = 5.5
loss = 0.01

[[group]]
name = "seed"
role = "seeder"
up = "2 MiB/s"

[[group]]
name = "crowd"
role = "leecher"
count = 20
join = [0, 10.5]
up = 250000
down = "1 MB/s"
strategy = "random"
behaviour = "leave_after=3"
max_peers = 30

[[fault]]
at = 60
crash = "crowd"
count = 2

[[fault]]
at = 30
partition = "seed|crowd"

[expect]
all_complete_by = 500
seeder_upload_at_most = 2.5
"#;

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse("test.toml", text)
}

#[test]
fn a_full_scenario_reads_as_written() {
    // Proves every section's keys land in the model with their units converted.
    let s = parse(GOOD).unwrap();
    assert_eq!(s.engine, EngineKind::Fast);
    assert_eq!(s.seed, 7);
    assert_eq!(s.duration, Duration::from_secs(600));
    assert_eq!(s.torrent.piece_length, 256 * 1024);
    assert_eq!(s.torrent.size(), 4 << 20);
    assert_eq!(s.torrent.files.len(), 3);
    assert_eq!(s.trackers[0].kind, TrackerKind::Udp);
    assert_eq!(s.trackers[0].max_peers, 40);
    assert_eq!(s.link.jitter, Duration::from_micros(5500));
    assert_eq!(s.groups[0].up, Some(2 << 20));
    assert_eq!(s.groups[0].down, None);
    assert_eq!(s.groups[1].down, Some(1_000_000));
    assert_eq!(s.groups[1].up, Some(250_000));
    assert_eq!(s.groups[1].join.1, Duration::from_millis(10_500));
    assert_eq!(s.groups[1].behaviour, Behaviour::LeaveAfter(3));
    assert_eq!(s.groups[1].strategy, Strategy::Random);
    assert_eq!(s.groups[1].max_peers, 30);
    assert_eq!(s.groups[0].max_peers, 80, "bt's default");
    // Sorted by time.
    assert_eq!(
        s.faults[0].action,
        FaultAction::Partition {
            a: vec![0],
            b: vec![1]
        }
    );
    assert_eq!(
        s.faults[1].action,
        FaultAction::Crash(Target {
            group: 1,
            which: Which::Random(2)
        })
    );
    assert_eq!(s.expect.seeder_upload_at_most, Some(2.5));
    assert_eq!(s.host_count(), 21);
}

fn error(text: &str) -> ScenarioError {
    parse(text).expect_err("the scenario is wrong")
}

fn replace(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    GOOD.replacen(from, to, 1)
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    // Proves a misspelt key is refused, with its line and its table in the message.
    let text = replace("piece_length =", "piece_lenght =");
    let e = error(&text);
    assert_eq!(e.line, Some(line_of(&text, "piece_lenght")));
    assert_eq!(e.key.as_deref(), Some("torrent.piece_lenght"));
    let shown = e.to_string();
    assert!(shown.contains("unknown field `piece_lenght`"), "{shown}");
    assert!(
        shown.starts_with(&format!("test.toml:{}:", line_of(&text, "piece_lenght"))),
        "{shown}"
    );
}

#[test]
fn a_wrong_type_is_named_with_its_key_and_line() {
    // Proves a value of the wrong type points at the key, in an array of tables too.
    let text = replace("count = 20", "count = \"twenty\"");
    let e = error(&text);
    assert_eq!(e.line, Some(line_of(&text, "twenty")));
    assert_eq!(e.key.as_deref(), Some("group.count"));
}

#[test]
fn a_bad_unit_is_named_with_its_key_and_line() {
    // Proves our own value parsers (sizes, behaviours) report through the same spans.
    let text = replace("\"4 MiB\"", "\"4 MiBs\"");
    let e = error(&text);
    assert_eq!(e.line, Some(line_of(&text, "4 MiBs")));
    assert_eq!(e.key.as_deref(), Some("torrent.size"));
    assert!(e.message.contains("unknown unit"), "{e}");
    let text = replace("leave_after=3", "leave_after=three");
    let e = error(&text);
    assert_eq!(e.key.as_deref(), Some("group.behaviour"));
    assert_eq!(e.line, Some(line_of(&text, "leave_after=three")));
}

#[test]
fn checks_after_parsing_point_at_the_key() {
    // Proves errors found after serde (names, bounds) still carry line and key.
    for (from, to, needle, key) in [
        (
            "crash = \"crowd\"",
            "crash = \"crwod\"",
            "crwod",
            "fault.crash",
        ),
        (
            "partition = \"seed|crowd\"",
            "partition = \"seed crowd\"",
            "seed crowd",
            "fault.partition",
        ),
        ("loss = 0.01", "loss = 1.5", "loss = 1.5", "link.loss"),
        (
            "interval = 30",
            "interval = 0",
            "interval = 0",
            "tracker.interval",
        ),
        (
            "join = [0, 10.5]",
            "join = [20, 10]",
            "join = [20",
            "group.join",
        ),
        (
            "name = \"crowd\"",
            "name = \"seed\"",
            "name = \"seed\"\nrole = \"leecher\"",
            "group.name",
        ),
    ] {
        let text = replace(from, to);
        let e = error(&text);
        let first = needle.lines().next().unwrap();
        // The duplicate group name: the second occurrence is the one blamed.
        let expected_line = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains(first))
            .map(|(i, _)| i + 1)
            .last()
            .unwrap();
        assert_eq!(e.line, Some(expected_line), "{e}");
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
    }
}

#[test]
fn a_fault_needs_exactly_one_action() {
    // Proves a fault with two actions is refused and the error points into that fault.
    let text = replace("at = 60\n", "at = 60\nheal = true\n");
    let e = error(&text);
    assert!(e.message.contains("exactly one"), "{e}");
    let line = e.line.unwrap();
    assert!(
        (line_of(&text, "at = 60") - 1..=line_of(&text, "crash = \"crowd\"")).contains(&line),
        "{e}"
    );
}

#[test]
fn sizes_parse_with_binary_and_decimal_units() {
    // Proves the unit table: binary KiB/MiB/GiB, decimal kB/MB/GB, optional /s, and refusals.
    assert_eq!(parse_size("1048576"), Ok(1 << 20));
    assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
    assert_eq!(parse_size("1.5KiB"), Ok(1536));
    assert_eq!(parse_size("500 kB/s"), Ok(500_000));
    assert_eq!(parse_size("2 GB"), Ok(2_000_000_000));
    assert!(parse_size("1.3 B").is_err());
    assert!(parse_size("ten").is_err());
    assert!(parse_size("5 mb").is_err());
}

#[test]
fn missing_sections_are_reported() {
    // Proves a scenario without trackers or groups is refused with a reason.
    let no_tracker = GOOD.replace(
        "[[tracker]]\nkind = \"udp\"\ninterval = 30\npeers = 40\n",
        "",
    );
    assert!(error(&no_tracker).message.contains("[[tracker]]"));
    let e = error(
        "duration = 10\n[torrent]\nsize = 100\npiece_length = 16384\n[[tracker]]\nkind = \"http\"\ninterval = 60\n",
    );
    assert!(e.message.contains("[[group]]"), "{e}");
}

/// `GOOD` with an attacker group `flood` appended to its groups and `expect` lines added.
fn with_attacker(group: &str, expect: &str) -> String {
    replace(
        "[[fault]]\nat = 60",
        &format!("{group}\n\n[[fault]]\nat = 60"),
    )
    .replace(
        "seeder_upload_at_most = 2.5",
        &format!("seeder_upload_at_most = 2.5\n{expect}"),
    )
}

const FLOOD: &str =
    "[[group]]\nname = \"flood\"\nrole = \"attacker\"\nattack = \"request_flood\"\ncount = 2";

#[test]
fn an_attacker_group_reads_with_its_attack_and_expectations() {
    // Proves role = "attacker" with `attack`, `attackers_closed` (true or names),
    // `attackers_close_within` and `queued_to_attackers_at_most` read as documented.
    let s = parse(&with_attacker(
        FLOOD,
        "attackers_closed = true\nattackers_close_within = 25\nqueued_to_attackers_at_most = \"1 MiB\"",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let g = &s.groups[2];
    assert_eq!(
        (g.role, g.attack),
        (Role::Attacker, Some(Attack::RequestFlood))
    );
    assert_eq!(s.expect.attackers_closed, vec![2]);
    assert_eq!(
        s.expect.attackers_close_within,
        Some(Duration::from_secs(25))
    );
    assert_eq!(s.expect.queued_to_attackers_at_most, Some(1 << 20));
    assert!(s.expect.attackers_closed_if_interested.is_empty());
    let s = parse(&with_attacker(FLOOD, "attackers_closed = [\"flood\"]")).unwrap();
    assert_eq!(s.expect.attackers_closed, vec![2]);
    let s = parse(&with_attacker(
        FLOOD,
        "attackers_closed = true\nattackers_close_within = 3\nattackers_closed_if_interested = [\"flood\"]",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.expect.attackers_closed_if_interested, vec![2]);
    for a in Attack::ALL {
        assert_eq!(Attack::from_name(a.name()), Some(a));
    }
}

#[test]
fn attacker_mistakes_are_named_with_their_key() {
    // Proves each wrong use of the attacker keys is refused with its key and a message saying
    // what is wrong.
    for (group, expect, key, words) in [
        (
            FLOOD.replace("request_flood", "request_floood"),
            "",
            "group.attack",
            "unknown attack `request_floood`",
        ),
        (
            FLOOD.replace("request_flood", "corrupt"),
            "",
            "group.attack",
            "behaviour = \"corrupt\"",
        ),
        (
            FLOOD.replace("\nattack = \"request_flood\"", ""),
            "",
            "group.name",
            "needs `attack`",
        ),
        (
            FLOOD.replace("attacker", "leecher"),
            "",
            "group.attack",
            "goes with role = \"attacker\"",
        ),
        (
            format!("{FLOOD}\nbehaviour = \"slow\""),
            "",
            "group.behaviour",
            "not a behaviour",
        ),
        (
            FLOOD.to_owned(),
            "attackers_closed = [\"crowd\"]",
            "expect.attackers_closed",
            "not of role \"attacker\"",
        ),
        (
            FLOOD.to_owned(),
            "attackers_close_within = 10",
            "expect.attackers_close_within",
            "goes with attackers_closed",
        ),
        (
            FLOOD.to_owned(),
            "attackers_closed = true\nattackers_closed_if_interested = [\"flood\"]",
            "expect.attackers_closed_if_interested",
            "goes with attackers_close_within",
        ),
        (
            FLOOD.to_owned(),
            "attackers_closed = []\nattackers_close_within = 3\nattackers_closed_if_interested = [\"flood\"]",
            "expect.attackers_close_within",
            "goes with attackers_closed",
        ),
        (
            format!("{FLOOD}\n\n{}", FLOOD.replace("\"flood\"", "\"other\"")),
            "attackers_closed = [\"other\"]\nattackers_close_within = 3\nattackers_closed_if_interested = [\"flood\"]",
            "expect.attackers_closed_if_interested",
            "not in attackers_closed",
        ),
    ] {
        let e = error(&with_attacker(&group, expect));
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert!(e.message.contains(words), "{e}");
    }
}

#[test]
fn magnet_pex_and_connect_to_keys_read_as_written() {
    // Proves the magnet, PEX and DHT keys land in the model: magnet leechers, connect_to by name (to a
    // group listed later too), PEX on by default and off where said, the bad_metadata attack,
    // and the magnet and PEX expectations; and that connect_to stands in for a tracker.
    let text = replace(
        "behaviour = \"leave_after=3\"\nmax_peers = 30\n",
        "behaviour = \"leave_after=3\"\nmax_peers = 30\nmagnet = true\nconnect_to = \"seed\"\npex = false\n",
    )
    .replace(
        "[[group]]\nname = \"seed\"\nrole = \"seeder\"\n",
        "[[group]]\nname = \"seed\"\nrole = \"seeder\"\nconnect_to = \"bad\"\n",
    )
    .replace(
        "[[fault]]\nat = 60",
        "[[group]]\nname = \"bad\"\nrole = \"attacker\"\nattack = \"bad_metadata\"\n\n[[fault]]\nat = 60",
    )
    .replace(
        "seeder_upload_at_most = 2.5",
        "seeder_upload_at_most = 2.5\nmagnets_resolved_within = 7.5\npex_learned_at_least = 12",
    );
    let s = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let (seed, crowd) = (&s.groups[0], &s.groups[1]);
    assert!(!seed.magnet && seed.pex);
    assert_eq!(seed.connect_to, Some(2));
    assert!(crowd.magnet && !crowd.pex);
    assert_eq!(crowd.connect_to, Some(0));
    assert_eq!(s.groups[2].attack, Some(Attack::BadMetadata));
    assert_eq!(
        s.expect.magnets_resolved_within,
        Some(Duration::from_millis(7500))
    );
    assert_eq!(s.expect.pex_learned_at_least, Some(12));
    // Without a tracker, connect_to is how peers meet.
    let trackerless = text.replace(
        "[[tracker]]\nkind = \"udp\"\ninterval = 30\npeers = 40\n",
        "",
    );
    assert!(parse(&trackerless).unwrap().trackers.is_empty());
}

#[test]
fn magnet_and_pex_mistakes_are_named_with_their_key() {
    // Proves each misuse of the new keys is refused with its key and a reason.
    for (from, to, key, words) in [
        (
            "role = \"seeder\"\n",
            "role = \"seeder\"\nmagnet = true\n",
            "group.magnet",
            "goes with role = \"leecher\"",
        ),
        (
            "max_peers = 30\n",
            "max_peers = 30\nconnect_to = \"nobody\"\n",
            "group.connect_to",
            "no group named `nobody`",
        ),
        (
            "seeder_upload_at_most = 2.5",
            "seeder_upload_at_most = 2.5\nmagnets_resolved_within = 5",
            "expect.magnets_resolved_within",
            "needs a group with magnet = true",
        ),
    ] {
        let e = error(&replace(from, to));
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert!(e.message.contains(words), "{e}");
    }
    // Every group with PEX off: nothing for pex_learned_at_least to count.
    let text = replace("up = \"2 MiB/s\"\n", "up = \"2 MiB/s\"\npex = false\n")
        .replace("max_peers = 30\n", "max_peers = 30\npex = false\n")
        .replace(
            "seeder_upload_at_most = 2.5",
            "seeder_upload_at_most = 2.5\npex_learned_at_least = 1",
        );
    let e = error(&text);
    assert_eq!(e.key.as_deref(), Some("expect.pex_learned_at_least"), "{e}");
    // An attacker neither dials a group nor speaks PEX.
    for extra in ["connect_to = \"seed\"", "pex = false"] {
        let e = error(&with_attacker(&format!("{FLOOD}\n{extra}"), ""));
        assert!(e.message.contains("attacker"), "{e}");
    }
}

/// [`GOOD`] with a `[dht]` table of `dht` and no tracker.
fn with_dht(dht: &str) -> String {
    replace(
        "[[tracker]]\nkind = \"udp\"\ninterval = 30\npeers = 40\n",
        &format!("[dht]\n{dht}\n"),
    )
}

#[test]
fn dht_keys_read_as_written() {
    // Proves the DHT keys land in the model: the bootstrap count and loss, dht on by default in
    // every group and off where said, the DHT expectation; and that [dht] stands in for a
    // tracker (none here).
    let text = with_dht("bootstrap = 3\nloss = 0.05")
        .replace("max_peers = 30\n", "max_peers = 30\ndht = false\n")
        .replace(
            "seeder_upload_at_most = 2.5",
            "seeder_upload_at_most = 2.5\ndht_peers_found_at_least = 40\ndht_lookups_done_by = 12.5",
        );
    let s = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert!(s.trackers.is_empty());
    assert_eq!(
        s.dht,
        Some(DhtSpec {
            bootstrap: 3,
            loss: 0.05
        })
    );
    assert_eq!(s.dht_bootstrap_count(), 3);
    assert_eq!(s.host_count(), 21, "bootstrap nodes are not peers");
    assert!(s.groups[0].dht && !s.groups[1].dht);
    assert_eq!(s.expect.dht_peers_found_at_least, Some(40));
    assert_eq!(
        s.expect.dht_lookups_done_by,
        Some(Duration::from_millis(12_500))
    );
    // Without [dht] nobody runs a node.
    let s = parse(GOOD).unwrap();
    assert!(s.dht.is_none() && s.groups.iter().all(|g| !g.dht));
    assert_eq!(s.dht_bootstrap_count(), 0);
}

#[test]
fn dht_mistakes_are_named_with_their_key() {
    // Proves each misuse of the DHT keys is refused with its key and a reason.
    for (text, key, words) in [
        (
            with_dht("bootstrap = 0"),
            "dht.bootstrap",
            "bootstrap must be 1 to 16",
        ),
        (
            with_dht("bootstrap = 17"),
            "dht.bootstrap",
            "bootstrap must be 1 to 16",
        ),
        (
            with_dht("bootstrap = 3\nloss = 0.5"),
            "dht.loss",
            "not a fraction",
        ),
        (
            replace("max_peers = 30\n", "max_peers = 30\ndht = true\n"),
            "group.dht",
            "goes with a [dht] table",
        ),
        (
            replace(
                "seeder_upload_at_most = 2.5",
                "seeder_upload_at_most = 2.5\ndht_peers_found_at_least = 1",
            ),
            "expect.dht_peers_found_at_least",
            "needs a [dht] table",
        ),
        (
            replace(
                "seeder_upload_at_most = 2.5",
                "seeder_upload_at_most = 2.5\ndht_lookups_done_by = 10",
            ),
            "expect.dht_lookups_done_by",
            "needs a [dht] table",
        ),
    ] {
        let e = error(&text);
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert!(e.message.contains(words), "{e}");
    }
    let e = error(&with_dht("bootstrap = 3\nnodes = 2"));
    assert!(e.message.contains("unknown field `nodes`"), "{e}");
    // An attacker follows its script: no DHT node.
    let e = error(
        &with_attacker(&format!("{FLOOD}\ndht = true"), "")
            .replace("[[tracker]]", "[dht]\nbootstrap = 2\n\n[[tracker]]"),
    );
    assert!(e.message.contains("attacker"), "{e}");
    // No tracker, no connect_to, no DHT: peers could not meet.
    let e = error(&replace(
        "[[tracker]]\nkind = \"udp\"\ninterval = 30\npeers = 40\n",
        "",
    ));
    assert!(e.message.contains("[dht]"), "{e}");
}

#[test]
fn seed_goal_keys_read_as_written() {
    // Proves `seed_ratio` (a number or a string, in thousandths) and `seed_time` (seconds, or a
    // string with units) land in the group and make its seeding goal, on seeders and leechers,
    // and that `seed_goals_reached` reads.
    let text = replace("up = \"2 MiB/s\"\n", "up = \"2 MiB/s\"\nseed_time = 90\n")
        .replace(
            "max_peers = 30\n",
            "max_peers = 30\nseed_ratio = 1.5\nseed_time = \"1h 30m\"\n",
        )
        .replace(
            "seeder_upload_at_most = 2.5",
            "seeder_upload_at_most = 2.5\nseed_goals_reached = true",
        );
    let s = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let (seed, crowd) = (&s.groups[0], &s.groups[1]);
    assert_eq!(seed.seed_ratio, None);
    assert_eq!(seed.seed_time, Some(Duration::from_secs(90)));
    assert_eq!(crowd.seed_ratio, Some(SeedRatio::from_thousandths(1500)));
    assert_eq!(crowd.seed_time, Some(Duration::from_secs(5400)));
    assert_eq!(
        crowd.seed_goal(),
        Some(SeedGoal {
            ratio: Some(SeedRatio::from_thousandths(1500)),
            time: Some(Duration::from_secs(5400)),
        })
    );
    assert!(s.expect.seed_goals_reached);
    let s = parse(&text.replace("seed_ratio = 1.5", "seed_ratio = \"0.25\"")).unwrap();
    assert_eq!(
        s.groups[1].seed_ratio,
        Some(SeedRatio::from_thousandths(250))
    );
    let s = parse(&text.replace("seed_ratio = 1.5", "seed_ratio = 2")).unwrap();
    assert_eq!(
        s.groups[1].seed_ratio,
        Some(SeedRatio::from_thousandths(2000))
    );
    // Without the keys there is no goal.
    let s = parse(GOOD).unwrap();
    assert!(s.groups.iter().all(|g| g.seed_goal().is_none()));
    assert!(!s.expect.seed_goals_reached);
}

#[test]
fn durations_with_units_parse() {
    // Proves the duration strings `seed_time` takes: units alone or combined, fractions, with
    // or without a space, and refusals that say what to write.
    for (text, secs) in [
        ("90s", 90.0),
        ("90 s", 90.0),
        ("1.5 min", 90.0),
        ("2m", 120.0),
        ("1h 30m", 5400.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("2 days", 172_800.0),
        ("0s", 0.0),
    ] {
        assert_eq!(
            parse_duration(text),
            Ok(Duration::from_secs_f64(secs)),
            "{text}"
        );
    }
    for text in ["", "90", "soon", "5x", "-3s", "s"] {
        let e = parse_duration(text).expect_err(text);
        assert!(e.contains("not a duration"), "{text}: {e}");
    }
    assert!(parse_duration("31 days").unwrap_err().contains("30 days"));
}

#[test]
fn seed_goal_mistakes_are_named_with_their_key() {
    // Proves each misuse of the seeding-goal keys is refused with its key, its line and a reason.
    for (to, key, needle, words) in [
        (
            "max_peers = 30\nseed_ratio = -1\n",
            "group.seed_ratio",
            "seed_ratio = -1",
            "must be 0 or more",
        ),
        (
            "max_peers = 30\nseed_ratio = \"lots\"\n",
            "group.seed_ratio",
            "seed_ratio = \"lots\"",
            "is not a number",
        ),
        (
            "max_peers = 30\nseed_ratio = 2000000\n",
            "group.seed_ratio",
            "seed_ratio = 2000000",
            "too large",
        ),
        (
            "max_peers = 30\nseed_time = \"soon\"\n",
            "group.seed_time",
            "seed_time = \"soon\"",
            "not a duration",
        ),
        (
            "max_peers = 30\nseed_time = -5\n",
            "group.seed_time",
            "seed_time = -5",
            "0 or more",
        ),
    ] {
        let text = replace("max_peers = 30\n", to);
        let e = error(&text);
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert_eq!(e.line, Some(line_of(&text, needle)), "{e}");
        assert!(e.message.contains(words), "{e}");
    }
    // The expectation needs a group with a goal.
    let e = error(&replace(
        "seeder_upload_at_most = 2.5",
        "seeder_upload_at_most = 2.5\nseed_goals_reached = true",
    ));
    assert_eq!(e.key.as_deref(), Some("expect.seed_goals_reached"), "{e}");
    assert!(e.message.contains("seed_ratio or seed_time"), "{e}");
    // An attacker follows its script: it has no torrent to seed.
    for extra in ["seed_ratio = 1", "seed_time = \"30s\""] {
        let e = error(&with_attacker(&format!("{FLOOD}\n{extra}"), ""));
        let key = extra.split(' ').next().unwrap();
        assert_eq!(
            e.key.as_deref(),
            Some(format!("group.{key}").as_str()),
            "{e}"
        );
        assert!(e.message.contains("attacker"), "{e}");
    }
}

#[test]
fn encryption_keys_read_as_written() {
    // Proves `encryption` reads each policy (absent: the layer off), the encryption
    // expectations and attack_reasons read as documented, and the MSE attacks by their names.
    let s = parse(GOOD).unwrap();
    assert!(s.groups.iter().all(|g| g.encryption.is_none()));
    for (name, policy) in [
        ("prefer", Encryption::Prefer),
        ("require", Encryption::Require),
        ("plaintext", Encryption::Plaintext),
    ] {
        let text = replace(
            "max_peers = 30\n",
            &format!("max_peers = 30\nencryption = \"{name}\"\n"),
        )
        .replace(
            "seeder_upload_at_most = 2.5",
            "seeder_upload_at_most = 2.5\ncompatible_pairs_connected = true\n\
             require_connections_rc4 = true\nincompatible_dials_backed_off = true",
        );
        let s = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.groups[1].encryption, Some(policy));
        assert_eq!(encryption_name(policy), name);
        assert!(s.expect.compatible_pairs_connected);
        assert!(s.expect.require_connections_rc4);
        assert!(s.expect.incompatible_dials_backed_off);
    }
    let mse = "[[group]]\nname = \"vc\"\nrole = \"attacker\"\nattack = \"mse_wrong_vc\"";
    let s = parse(&with_attacker(
        mse,
        "attack_reasons = { vc = [\"Mse/BadVc\", \"Mse/NoSyncMarker\"] }",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.groups[2].attack, Some(Attack::MseWrongVc));
    assert_eq!(
        s.expect.attack_reasons[&2],
        vec!["Mse/BadVc".to_owned(), "Mse/NoSyncMarker".to_owned()]
    );
    for (name, attack) in [
        ("mse_garbage_after_key", Attack::MseGarbageAfterKey),
        ("mse_long_padding", Attack::MseLongPadding),
        ("mse_wrong_vc", Attack::MseWrongVc),
        ("mse_stall", Attack::MseStall),
    ] {
        assert_eq!(Attack::from_name(name), Some(attack));
        assert!(attack.is_mse());
    }
    // Who can talk to whom: only require against a peer that never encrypts cannot.
    let (p, r, t) = (
        Some(Encryption::Prefer),
        Some(Encryption::Require),
        Some(Encryption::Plaintext),
    );
    assert!(policies_can_talk(p, r) && policies_can_talk(p, t) && policies_can_talk(r, r));
    assert!(policies_can_talk(t, None) && policies_can_talk(p, None));
    assert!(!policies_can_talk(r, t) && !policies_can_talk(t, r) && !policies_can_talk(r, None));
}

#[test]
fn encryption_mistakes_are_named_with_their_key() {
    // Proves each misuse of the encryption keys is refused with its key and a reason.
    let text = replace(
        "max_peers = 30\n",
        "max_peers = 30\nencryption = \"maybe\"\n",
    );
    let e = error(&text);
    assert_eq!(e.key.as_deref(), Some("group.encryption"), "{e}");
    assert_eq!(e.line, Some(line_of(&text, "encryption = ")), "{e}");
    assert!(e.message.contains("prefer, require or plaintext"), "{e}");
    let e = error(&with_attacker(
        &format!("{FLOOD}\nencryption = \"prefer\""),
        "",
    ));
    assert_eq!(e.key.as_deref(), Some("group.encryption"), "{e}");
    assert!(e.message.contains("attacker"), "{e}");
    let e = error(&replace(
        "max_peers = 30\n",
        "max_peers = 30\nencryption = \"require\"\nseed_ratio = 1\n",
    ));
    assert_eq!(e.key.as_deref(), Some("group.seed_ratio"), "{e}");
    assert!(e.message.contains("RC4"), "{e}");
    for key in [
        "compatible_pairs_connected",
        "require_connections_rc4",
        "incompatible_dials_backed_off",
    ] {
        let e = error(&replace(
            "seeder_upload_at_most = 2.5",
            &format!("seeder_upload_at_most = 2.5\n{key} = true"),
        ));
        assert_eq!(
            e.key.as_deref(),
            Some(format!("expect.{key}").as_str()),
            "{e}"
        );
        assert!(e.message.contains("`encryption`"), "{e}");
    }
    for (reasons, words) in [
        ("{ nobody = [\"Mse/BadVc\"] }", "no group named `nobody`"),
        ("{ seed = [\"Mse/BadVc\"] }", "not of role"),
        ("{ flood = [] }", "names no reason"),
    ] {
        let e = error(&with_attacker(
            FLOOD,
            &format!("attack_reasons = {reasons}"),
        ));
        assert_eq!(e.key.as_deref(), Some("expect.attack_reasons"), "{e}");
        assert!(e.message.contains(words), "{e}");
    }
}

/// [`GOOD`] with `reader` on the crowd and `expect` added to `[expect]`.
fn with_reader(reader: &str, expect: &str) -> String {
    replace(
        "max_peers = 30\n",
        &format!("max_peers = 30\nreader = {reader}\n"),
    )
    .replace(
        "seeder_upload_at_most = 2.5",
        &format!("seeder_upload_at_most = 2.5\n{expect}"),
    )
}

#[test]
fn reader_keys_read_as_written() {
    // Proves `reader` reads its file, rate, start, seeks (sorted by time) and deadlines (on by
    // default), and the streaming expectations read both for every reader group (a value) and
    // by group name (a table).
    let s = parse(GOOD).unwrap();
    assert!(s.groups.iter().all(|g| g.reader.is_none()));
    assert!(s.expect.first_byte_within.is_empty() && s.expect.stalls_at_most.is_empty());
    let s = parse(&with_reader(
        "{ file = 2, rate = \"2 MiB/s\", start = 5, seek = [[40, 1], [30, 0.5]] }",
        "first_byte_within = 3\nstalls_at_most = { crowd = 1 }\nstall_seconds_at_most = 2.5",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let r = s.groups[1].reader.as_ref().expect("a reader");
    assert_eq!(r.file, 2);
    assert_eq!(r.rate, 2 << 20);
    assert_eq!(r.start, Duration::from_secs(5));
    assert_eq!(
        r.seeks,
        vec![
            (Duration::from_secs(30), 0.5),
            (Duration::from_secs(40), 1.0)
        ]
    );
    assert!(r.deadlines);
    assert_eq!(s.expect.first_byte_within[&1], Duration::from_secs(3));
    assert_eq!(s.expect.stalls_at_most[&1], 1);
    assert_eq!(
        s.expect.stall_seconds_at_most[&1],
        Duration::from_millis(2500)
    );
    let s = parse(&with_reader("{ rate = 1000, deadlines = false }", ""))
        .unwrap_or_else(|e| panic!("{e}"));
    let r = s.groups[1].reader.as_ref().expect("a reader");
    assert_eq!((r.file, r.start, r.deadlines), (0, Duration::ZERO, false));
}

#[test]
fn reader_mistakes_are_named_with_their_key() {
    // Proves each misuse of `reader` and of the streaming expectations is refused with its key
    // and a reason: an unknown file, a zero rate, a seek outside the file, a missing rate, an
    // unknown field, a seeder or magnet reading, the turmoil engine, and expectations without a
    // reader group or naming a group without one.
    for (reader, words) in [
        (
            "{ file = 3, rate = 1000 }",
            "file 3; the torrent has 3 (0 to 2)",
        ),
        ("{ rate = 0 }", "at least 1 byte/s"),
        (
            "{ rate = 1000, seek = [[30, 1.5]] }",
            "from 0 to 1, not 1.5",
        ),
        (
            "{ rate = 1000, seek = [[30, -0.1]] }",
            "from 0 to 1, not -0.1",
        ),
        ("{ file = 0 }", "missing field `rate`"),
        ("{ rate = 1000, speed = 2 }", "unknown field `speed`"),
        ("{ rate = 1000, seek = [[-1, 0.5]] }", "0 or more"),
    ] {
        let text = with_reader(reader, "");
        let e = error(&text);
        assert_eq!(e.key.as_deref(), Some("group.reader"), "{reader}: {e}");
        assert_eq!(e.line, Some(line_of(&text, "reader = ")), "{e}");
        assert!(e.message.contains(words), "{reader}: {e}");
    }
    let seeder = replace(
        "up = \"2 MiB/s\"\n",
        "up = \"2 MiB/s\"\nreader = { rate = 1000 }\n",
    );
    assert!(error(&seeder).message.contains("role = \"leecher\""));
    let turmoil =
        with_reader("{ rate = 1000 }", "").replace("engine = \"fast\"", "engine = \"turmoil\"");
    let e = error(&turmoil);
    assert_eq!(e.key.as_deref(), Some("group.reader"), "{e}");
    assert!(e.message.contains("only on the fast engine"), "{e}");
    let selected = with_reader("{ file = 1, rate = 1000 }", "")
        .replace("max_peers = 30\n", "max_peers = 30\nselect = [0, 2]\n");
    assert!(error(&selected).message.contains("select leaves out"));
    for (expect, words) in [
        ("first_byte_within = 3", "needs a group with a `reader`"),
        (
            "stalls_at_most = { seed = 0 }",
            "group `seed` has no `reader`",
        ),
        (
            "stall_seconds_at_most = { nobody = 1 }",
            "no group named `nobody`",
        ),
    ] {
        let key = expect.split(' ').next().unwrap();
        let e = error(&replace(
            "seeder_upload_at_most = 2.5",
            &format!("seeder_upload_at_most = 2.5\n{expect}"),
        ));
        assert_eq!(
            e.key.as_deref(),
            Some(format!("expect.{key}").as_str()),
            "{e}"
        );
        assert!(e.message.contains(words), "{expect}: {e}");
    }
    let e = error(&with_reader("{ rate = 1000 }", "first_byte_within = 0"));
    assert!(e.message.contains("more than 0 s"), "{e}");
}

#[test]
fn transports_default_to_tcp_and_read_in_order() {
    // Proves a group runs TCP alone unless it says otherwise, and its list keeps its order.
    let s = parse(GOOD).unwrap();
    assert!(s.groups.iter().all(|g| g.transports == [Transport::Tcp]));
    assert_eq!(s.link.buffer, None);
    let s = parse(&replace(
        "name = \"seed\"\n",
        "name = \"seed\"\ntransports = [\"utp\", \"tcp\"]\n",
    ))
    .unwrap();
    assert_eq!(s.groups[0].transports, [Transport::Utp, Transport::Tcp]);
}

#[test]
fn transport_mistakes_are_named() {
    // Proves an unknown or repeated transport, an empty list, a misnamed phase and a stream
    // check without uTP are refused at their key.
    for (from, to, says) in [
        (
            "name = \"seed\"\n",
            "name = \"seed\"\ntransports = [\"quic\"]\n",
            "unknown transport `quic`",
        ),
        (
            "name = \"seed\"\n",
            "name = \"seed\"\ntransports = [\"tcp\", \"tcp\"]\n",
            "listed twice",
        ),
        (
            "name = \"seed\"\n",
            "name = \"seed\"\ntransports = []\n",
            "names no transport",
        ),
        (
            "seeder_upload_at_most = 2.5\n",
            "seeder_upload_at_most = 2.5\nutp_streams_equal = true\n",
            "needs a group with utp",
        ),
        (
            "seeder_upload_at_most = 2.5\n",
            "seeder_upload_at_most = 2.5\nuplink_share_at_least = [{ group = \"seed\", transport = \"tcp\", share = 0.5, phase = \"later\" }]\n",
            "no [[phase]] is named `later`",
        ),
        (
            "loss = 0.01\n",
            "loss = 0.01\nbuffer = 0\n",
            "buffer must be at least 1 B",
        ),
    ] {
        let e = error(&replace(from, to));
        assert!(e.to_string().contains(says), "{e}");
    }
}
