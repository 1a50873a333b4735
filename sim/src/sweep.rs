//! `btsim sweep`: one scenario over a range of seeds, the runs spread over every core, each
//! judged as `btsim run` judges it; the failing seeds are listed with the command that replays
//! each.
//!
//! Runs are independent (every engine is a pure function of the scenario and the seed), so
//! they can run in any order on any thread; results are handed back in seed order, so the
//! output of a sweep is the same whatever the number of threads.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::engine::{self, RunError};
use crate::report::Report;
use crate::scenario::{EngineKind, Scenario};

/// The most runs one sweep takes.
pub const MAX_SEEDS: u64 = 1_000_000;

/// Parses `A..B` (B excluded, as in Rust), `A..=B` (B included) or a single seed `A`.
pub fn parse_seeds(text: &str) -> Result<RangeInclusive<u64>, String> {
    let number = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|e| format!("`{}` is not a seed (a whole number): {e}", s.trim()))
    };
    let range = if let Some((a, b)) = text.split_once("..=") {
        number(a)?..=number(b)?
    } else if let Some((a, b)) = text.split_once("..") {
        let (a, b) = (number(a)?, number(b)?);
        if b <= a {
            return Err(format!(
                "`{text}` holds no seed (the end is excluded; `A..=B` includes it)"
            ));
        }
        a..=b - 1
    } else {
        let a = number(text)?;
        a..=a
    };
    if range.is_empty() {
        return Err(format!(
            "`{text}` holds no seed: the end comes before the start"
        ));
    }
    let count = range.end() - range.start();
    if count >= MAX_SEEDS {
        return Err(format!(
            "`{text}` is {} seeds; a sweep takes at most {MAX_SEEDS}",
            count.saturating_add(1)
        ));
    }
    Ok(range)
}

/// One seed's run, judged.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SeedResult {
    /// The seed.
    pub seed: u64,
    /// Whether every expectation held.
    pub passed: bool,
    /// The run's fingerprint.
    pub fingerprint: String,
    /// Simulated seconds.
    pub sim_seconds: f64,
    /// Wall-clock seconds this run took.
    pub wall_seconds: f64,
    /// The checks that failed, with what was measured.
    pub failed: Vec<String>,
    /// The command that replays this run.
    pub reproduce: String,
}

impl SeedResult {
    fn from_report(report: &Report) -> Self {
        SeedResult {
            seed: report.seed,
            passed: report.passed,
            fingerprint: report.totals.fingerprint.clone(),
            sim_seconds: report.totals.sim_seconds,
            wall_seconds: report.totals.wall_seconds,
            failed: report
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect(),
            reproduce: report.reproduce.clone(),
        }
    }
}

/// Runs `scenario` (read from `file`, named in the reproduce commands) on `engine` for every
/// seed of `seeds`, on `jobs` threads (at least one), calling `on_result` in seed order as the
/// results come in. Returns every result, in seed order.
pub fn sweep(
    file: &str,
    scenario: &Scenario,
    engine: EngineKind,
    seeds: RangeInclusive<u64>,
    jobs: usize,
    on_result: &mut dyn FnMut(&SeedResult),
) -> Result<Vec<SeedResult>, RunError> {
    let first = *seeds.start();
    let last = *seeds.end();
    let next = AtomicU64::new(first);
    let jobs = jobs.clamp(1, (last - first + 1).min(1024) as usize);
    let (tx, rx) = mpsc::channel::<(u64, Result<SeedResult, RunError>)>();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed > last || seed < first {
                        break;
                    }
                    let (outcome, wall) =
                        timed(|| engine::run(scenario, seed, engine, &mut |_| {}));
                    let result = outcome
                        .map(|o| SeedResult::from_report(&Report::new(file, scenario, &o, wall)));
                    let stop = result.is_err();
                    if tx.send((seed, result)).is_err() || stop {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Hand results back in seed order: hold the early ones until the gap before them fills.
        let mut waiting = BTreeMap::new();
        let mut want = first;
        let mut results = Vec::new();
        for (seed, result) in rx {
            let result = match result {
                Ok(r) => r,
                Err(e) => {
                    // Every seed would fail the same way (the engine cannot run this scenario).
                    next.store(last.saturating_add(1), Ordering::Relaxed);
                    return Err(e);
                }
            };
            waiting.insert(seed, result);
            while let Some(r) = waiting.remove(&want) {
                on_result(&r);
                results.push(r);
                want += 1;
            }
        }
        Ok(results)
    })
}

/// Runs `f` and measures its wall-clock time (reported, never fed to a run).
#[allow(clippy::disallowed_methods)]
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = std::time::Instant::now();
    let value = f();
    (value, start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_parse_as_in_rust() {
        // Proves `A..B` excludes B, `A..=B` includes it, a lone number is one seed, and empty,
        // reversed, huge or malformed ranges are refused with a message naming the text.
        assert_eq!(parse_seeds("1..4"), Ok(1..=3));
        assert_eq!(parse_seeds("1..=4"), Ok(1..=4));
        assert_eq!(parse_seeds(" 7 "), Ok(7..=7));
        assert!(parse_seeds("4..4").unwrap_err().contains("no seed"));
        assert!(parse_seeds("5..=4").unwrap_err().contains("no seed"));
        assert!(parse_seeds("0..=2000000").unwrap_err().contains("at most"));
        assert!(parse_seeds("a..3").unwrap_err().contains("`a`"));
        assert!(parse_seeds("1..").is_err());
    }
}
