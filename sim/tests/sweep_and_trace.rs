//! `btsim sweep`: many seeds of one scenario, in seed order whatever the threads, failing seeds
//! listed with the command that replays each; `btsim run --trace FILE`: the event stream as
//! text, the same for the same seed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
}

fn btsim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_btsim"))
        .args(args)
        .output()
        .expect("btsim runs")
}

/// The `(seed, fingerprint)` of each per-seed JSON line.
fn seeds_and_fingerprints(stdout: &[u8]) -> Vec<(u64, String)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .filter(|v| v.get("seed").is_some())
        .map(|v| {
            (
                v["seed"].as_u64().unwrap(),
                v["fingerprint"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_sweep_reports_every_seed_in_order_and_the_same_on_one_thread_or_two() {
    // Proves a sweep runs each seed of the range once, hands results back in seed order, gives
    // each seed the fingerprint `btsim run --seed` gives, and does not depend on the threads.
    let file = scenario("quickstart.toml");
    let file = file.to_str().unwrap();
    let two = btsim(&["sweep", file, "--seeds", "3..7", "-j", "2", "--json"]);
    assert_eq!(two.status.code(), Some(0), "{:?}", two);
    let one = btsim(&["sweep", file, "--seeds", "3..=6", "-j", "1", "--json"]);
    assert_eq!(one.status.code(), Some(0));
    let runs = seeds_and_fingerprints(&two.stdout);
    assert_eq!(
        runs.iter().map(|r| r.0).collect::<Vec<_>>(),
        [3, 4, 5, 6],
        "B excluded in A..B"
    );
    assert_eq!(runs, seeds_and_fingerprints(&one.stdout));
    let single = btsim(&["run", file, "--seed", "5", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&single.stdout).unwrap();
    assert_eq!(
        report["totals"]["fingerprint"].as_str(),
        Some(runs[2].1.as_str())
    );
}

#[test]
fn a_sweep_with_failing_seeds_exits_1_and_lists_them_with_their_commands() {
    // Proves failing seeds are named with the command that replays each, and the exit code
    // says so. The scenario demands completion sooner than a 4 MiB swarm can manage.
    let dir = std::env::temp_dir().join(format!("btsim-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(scenario("quickstart.toml"))
        .unwrap()
        .replace("all_complete_by = 60", "all_complete_by = 1");
    let file = dir.join("impossible.toml");
    std::fs::write(&file, text).unwrap();
    let out = btsim(&["sweep", file.to_str().unwrap(), "--seeds", "1..=3"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL: 3 of 3 seeds failed: 1, 2, 3"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("reproduce: btsim run {} --seed 2", file.display())),
        "{stdout}"
    );
    let bad = btsim(&["sweep", file.to_str().unwrap(), "--seeds", "5..2"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no seed"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_same_seed_writes_the_same_trace_and_another_seed_another() {
    // Proves `--trace` writes the run's records (named, timed), identically for the same seed,
    // differently for another, without changing the fingerprint; an unwritable path exits 2.
    let dir = std::env::temp_dir().join(format!("btsim-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = scenario("quickstart.toml");
    let file = file.to_str().unwrap();
    let trace = |seed: &str, name: &str| {
        let path = dir.join(name);
        let out = btsim(&[
            "run",
            file,
            "--seed",
            seed,
            "--json",
            "--trace",
            path.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let fp = report["totals"]["fingerprint"].as_str().unwrap().to_owned();
        (std::fs::read_to_string(path).unwrap(), fp)
    };
    let (a, fa) = trace("1", "a");
    let (b, fb) = trace("1", "b");
    let (c, _) = trace("2", "c");
    assert_eq!(a, b);
    assert_eq!(fa, fb);
    assert_ne!(a, c);
    assert!(
        a.starts_with("0.000000 join host=0\n"),
        "{}",
        &a[..200.min(a.len())]
    );
    assert_eq!(
        a.lines().filter(|l| l.contains(" complete host=")).count(),
        10,
        "one completion per leecher"
    );
    let plain = btsim(&["run", file, "--seed", "1", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert_eq!(report["totals"]["fingerprint"].as_str(), Some(fa.as_str()));
    let bad = btsim(&["run", file, "--trace", "/nonexistent-dir/t"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent-dir/t"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_turmoil_engine_writes_the_same_trace_for_the_same_seed() {
    // Proves `--trace` works on the turmoil engine too: the real drivers' reports, named and
    // timed, identical for the same seed.
    let dir = std::env::temp_dir().join(format!("btsim-trace-turmoil-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = scenario("quickstart.toml");
    let run = |name: &str| {
        let path = dir.join(name);
        let out = btsim(&[
            "run",
            file.to_str().unwrap(),
            "--engine",
            "turmoil",
            "--trace",
            path.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0));
        std::fs::read_to_string(path).unwrap()
    };
    let (a, b) = (run("a"), run("b"));
    assert_eq!(a, b);
    assert_eq!(
        a.lines().filter(|l| l.contains(" complete host=")).count(),
        10
    );
    assert!(a.lines().any(|l| l.contains(" piece_verified host=")));
    std::fs::remove_dir_all(&dir).unwrap();
}
