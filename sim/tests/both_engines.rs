//! One scenario on both engines: the same torrent (the same info hash, as `btsim run --json`
//! reports it) and the same verdict, every leecher complete.

use std::time::Duration;

use bt_sim::engine::{self, HostEnd};
use bt_sim::report::Report;
use bt_sim::scenario::{EngineKind, Role, Scenario};

/// The quickstart swarm made small: a seeder and three leechers of a 1 MiB torrent in three
/// files (so the file names are in the info dictionary too).
const SMALL: &str = r#"
seed = 3
duration = 60

[torrent]
files = ["300 KiB", "1 KiB", "723 KiB"]
piece_length = "64 KiB"

[[tracker]]
kind = "http"
interval = 30

[link]
latency_ms = 25
jitter_ms = 5

[[group]]
name = "seeder"
role = "seeder"
up = "2 MiB/s"

[[group]]
name = "leechers"
role = "leecher"
count = 3
join = [0, 1]
up = "512 KiB/s"
down = "2 MiB/s"

[expect]
all_complete_by = 30
no_corrupt_piece_kept = true
"#;

#[test]
fn both_engines_share_one_torrent_and_every_leecher_completes_on_each() {
    // Proves the fast and turmoil engines build the same torrent for one scenario and seed (the
    // info hash each reports, in the report `--json` prints, is equal), that it is the seed's
    // torrent (another seed gives another), and that every leecher completes on both.
    let scenario = Scenario::parse("small.toml", SMALL).unwrap_or_else(|e| panic!("{e}"));
    let mut hashes = Vec::new();
    for kind in [EngineKind::Fast, EngineKind::Turmoil] {
        let outcome = engine::run(&scenario, scenario.seed, kind, &mut |_| {})
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        let report = Report::new("small.toml", &scenario, &outcome, Duration::ZERO);
        assert!(report.passed, "{kind:?}: {:#?}", report.checks);
        let leechers: Vec<_> = outcome
            .hosts
            .iter()
            .filter(|h| scenario.groups[h.group].role == Role::Leecher)
            .collect();
        assert_eq!(leechers.len(), 3, "{kind:?}");
        for h in &leechers {
            assert!(h.completed_at.is_some(), "{kind:?}: {h:?}");
            assert_ne!(h.end, HostEnd::NeverJoined, "{kind:?}");
        }
        let json = serde_json::to_value(&report).unwrap();
        let hex = json["info_hash"].as_str().unwrap().to_owned();
        assert_eq!(hex.len(), 40, "{hex}");
        assert_eq!(hex, outcome.info_hash.to_hex());
        hashes.push(hex);
    }
    assert_eq!(
        hashes[0], hashes[1],
        "fast and turmoil built different torrents"
    );
    let other = engine::run(&scenario, scenario.seed + 1, EngineKind::Fast, &mut |_| {})
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(
        other.info_hash.to_hex(),
        hashes[0],
        "the seed makes the content"
    );
}
