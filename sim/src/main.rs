//! `btsim`: the deterministic swarm simulator.
//!
//! `btsim run FILE [--seed N] [--engine fast|turmoil] [--json]` runs a scenario and prints its
//! report; `btsim sweep FILE --seeds A..B` runs it for many seeds on every core and lists the
//! failing ones; `btsim bench` measures the fast engine on flash crowds. Exit codes: 0 when every
//! expectation held, 1 when one failed (the report ends with the command that replays the run),
//! 2 when the run could not happen (a bad scenario file, a scenario too big for the engine, bad arguments).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bt_sim::bench::{BenchRow, flash_crowd_scenario};
use bt_sim::engine::{self, Progress};
use bt_sim::report::Report;
use bt_sim::scenario::{EngineKind, Scenario, parse_size};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "btsim",
    version,
    about = "Deterministic BitTorrent swarm simulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum EngineArg {
    /// Protocol sessions on an event-driven clock.
    Fast,
    /// The real runtime on turmoil (up to 200 hosts).
    Turmoil,
}

impl EngineArg {
    fn kind(self) -> EngineKind {
        match self {
            EngineArg::Fast => EngineKind::Fast,
            EngineArg::Turmoil => EngineKind::Turmoil,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario file and report on it.
    Run {
        /// The scenario (TOML; see sim/README.md).
        file: PathBuf,
        /// Overrides the file's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Overrides the file's engine.
        #[arg(long, value_enum)]
        engine: Option<EngineArg>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Write the run's event stream to FILE, one line per record (`-` for stdout is not
        /// taken: the report goes there).
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
    },
    /// Run a scenario for many seeds (on every core) and list the ones that fail.
    Sweep {
        /// The scenario (TOML; see sim/README.md).
        file: PathBuf,
        /// The seeds: `A..B` (B excluded), `A..=B` (B included) or one seed.
        #[arg(long, default_value = "1..=100", value_parser = bt_sim::sweep::parse_seeds)]
        seeds: std::ops::RangeInclusive<u64>,
        /// Overrides the file's engine.
        #[arg(long, value_enum)]
        engine: Option<EngineArg>,
        /// Runs at once (default: one per core).
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
        /// Print one JSON object per seed, then a summary object.
        #[arg(long)]
        json: bool,
    },
    /// Measure an engine on flash crowds (build with --release).
    Bench {
        /// The engine to measure (turmoil runs at most 200 hosts).
        #[arg(long, value_enum, default_value = "fast")]
        engine: EngineArg,
        /// Swarm sizes to run, in peers (one of them the seeder).
        #[arg(long, value_delimiter = ',', default_values_t = [100u32, 1000, 10000])]
        peers: Vec<u32>,
        /// Torrent size, e.g. 64MiB.
        #[arg(long, default_value = "64 MiB", value_parser = parse_size)]
        size: u64,
        /// The seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Stop each run after this many simulated seconds (default: when every leecher has
        /// completed, at most two hours); the speed is still measured.
        #[arg(long)]
        duration: Option<u64>,
        /// Print rows as JSON lines.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            file,
            seed,
            engine,
            json,
            trace,
        } => run(&file, seed, engine, json, trace.as_deref()),
        Command::Sweep {
            file,
            seeds,
            engine,
            jobs,
            json,
        } => sweep(&file, seeds, engine, jobs, json),
        Command::Bench {
            engine,
            peers,
            size,
            seed,
            duration,
            json,
        } => match bench(engine.kind(), &peers, size, seed, duration, json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("btsim: error: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

/// Reads the scenario (a mistake is printed) and picks the engine `--engine` names, else the
/// file's.
fn load(file: &std::path::Path, arg: Option<EngineArg>) -> Option<(Scenario, EngineKind)> {
    let scenario = Scenario::load(file)
        .map_err(|e| eprintln!("btsim: {e}"))
        .ok()?;
    let engine = match arg {
        Some(EngineArg::Fast) => EngineKind::Fast,
        Some(EngineArg::Turmoil) => EngineKind::Turmoil,
        None => scenario.engine,
    };
    Some((scenario, engine))
}

fn sweep(
    file: &std::path::Path,
    seeds: std::ops::RangeInclusive<u64>,
    engine: Option<EngineArg>,
    jobs: Option<usize>,
    json: bool,
) -> ExitCode {
    let Some((scenario, engine)) = load(file, engine) else {
        return ExitCode::from(2);
    };
    let jobs = jobs
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1);
    let name = file.display().to_string();
    let count = seeds.end() - seeds.start() + 1;
    if !json {
        let header = format!(
            "btsim: sweeping {name}, seeds {} to {} ({count} runs), {} engine, {jobs} at once\n",
            seeds.start(),
            seeds.end(),
            engine.name()
        );
        if !emit(&header) {
            return ExitCode::SUCCESS;
        }
    }
    let mut closed = false;
    let (result, wall) = timed(|| {
        bt_sim::sweep::sweep(&name, &scenario, engine, seeds, jobs, &mut |r| {
            if closed {
                return;
            }
            let line = if json {
                serde_json::to_string(r).expect("a result serialises")
            } else {
                let verdict = if r.passed { "ok  " } else { "FAIL" };
                let mut line = format!(
                    "{verdict} seed {:<8} {:>9.1} s simulated {:>7.2} s wall  {}",
                    r.seed, r.sim_seconds, r.wall_seconds, r.fingerprint
                );
                for f in &r.failed {
                    line.push_str("\n       ");
                    line.push_str(f);
                }
                line
            };
            closed = !emit(&(line + "\n"));
        })
    });
    let results = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("btsim: {e}");
            return ExitCode::from(2);
        }
    };
    let failing: Vec<&bt_sim::sweep::SeedResult> = results.iter().filter(|r| !r.passed).collect();
    let summary = if json {
        serde_json::json!({
            "scenario": name,
            "engine": engine.name(),
            "runs": results.len(),
            "failing_seeds": failing.iter().map(|r| r.seed).collect::<Vec<_>>(),
            "wall_seconds": wall.as_secs_f64(),
        })
        .to_string()
            + "\n"
    } else if failing.is_empty() {
        format!(
            "PASS: all {} seeds met every expectation ({:.1} s wall)\n",
            results.len(),
            wall.as_secs_f64()
        )
    } else {
        let mut text = format!(
            "FAIL: {} of {} seeds failed: {}\n",
            failing.len(),
            results.len(),
            failing
                .iter()
                .map(|r| r.seed.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for r in failing.iter().take(10) {
            text.push_str(&format!("  reproduce: {}\n", r.reproduce));
        }
        text
    };
    if !closed {
        emit(&summary);
    }
    if failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run(
    file: &std::path::Path,
    seed: Option<u64>,
    engine: Option<EngineArg>,
    json: bool,
    trace: Option<&std::path::Path>,
) -> ExitCode {
    let Some((scenario, engine)) = load(file, engine) else {
        return ExitCode::from(2);
    };
    let trace_out = match trace.map(std::fs::File::create).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "btsim: cannot create the trace file {}: {e}",
                trace.expect("set").display()
            );
            return ExitCode::from(2);
        }
    };
    let seed = seed.unwrap_or(scenario.seed);
    let name = file.display().to_string();
    let (result, wall) = timed(|| {
        let mut meter = ProgressMeter::new(&name);
        let result = match trace_out {
            Some(f) => {
                engine::run_traced(&scenario, seed, engine, &mut |p| meter.show(p), Box::new(f))
            }
            None => engine::run(&scenario, seed, engine, &mut |p| meter.show(p)),
        };
        meter.clear();
        result
    });
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            eprintln!("btsim: {e}");
            return ExitCode::from(2);
        }
    };
    let report = Report::new(&name, &scenario, &outcome, wall);
    let text = if json {
        serde_json::to_string_pretty(&report).expect("a report serialises") + "\n"
    } else {
        report.human()
    };
    if !emit(&text) {
        // stdout was closed (`btsim run ... | head`): the verdict still sets the exit code.
        return ExitCode::from(if report.passed { 0 } else { 1 });
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        if json {
            eprintln!("btsim: FAIL; reproduce with: {}", report.reproduce);
        }
        ExitCode::from(1)
    }
}

fn bench(
    engine: EngineKind,
    peers: &[u32],
    size: u64,
    seed: u64,
    duration: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    if cfg!(debug_assertions) && !json {
        eprintln!("btsim: note: a debug build; figures for the record come from --release");
    }
    if !json {
        let header = format!(
            "{:>7} {:>10} {:>10} {:>10} {:>10} {:>13} {:>12} {:>9}  {:<4} fingerprint\n",
            "peers", "size", "sim s", "wall s", "sim/wall", "events", "events/s", "complete", "ok"
        );
        if !emit(&header) {
            return Ok(());
        }
    }
    for &n in peers {
        let mut scenario = flash_crowd_scenario(n, size, seed).context("building the scenario")?;
        if let Some(d) = duration {
            scenario.duration = Duration::from_secs(d.max(1));
        }
        let name = format!("flash crowd of {n}");
        let (outcome, wall) = timed(|| {
            let mut meter = ProgressMeter::new(&name);
            let o = engine::run(&scenario, seed, engine, &mut |p| meter.show(p));
            meter.clear();
            o
        });
        let outcome = outcome?;
        let report = Report::new(&name, &scenario, &outcome, wall);
        let row = BenchRow::from_report(&report, wall);
        let line = if json {
            serde_json::to_string(&row)?
        } else {
            format!(
                "{:>7} {:>10} {:>10.1} {:>10.2} {:>10.2} {:>13} {:>12.0} {:>9}  {:<4} {}",
                row.peers,
                bt_runtime::units::format_bytes(row.size_bytes),
                row.sim_seconds,
                row.wall_seconds,
                row.speed,
                bt_runtime::units::format_count(row.events),
                row.events_per_second,
                row.completed,
                if row.passed { "yes" } else { "NO" },
                row.fingerprint
            )
        };
        if !emit(&(line + "\n")) {
            return Ok(());
        }
    }
    Ok(())
}

/// Writes `text` to stdout; `false` if stdout is closed (a broken pipe is not an error here:
/// whoever closed it did not want the rest).
fn emit(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => false,
        Err(e) => {
            eprintln!("btsim: cannot write the report: {e}");
            false
        }
    }
}

/// Runs `f` and measures its wall-clock time (the one place btsim reads the real clock, besides
/// the progress line).
#[allow(clippy::disallowed_methods)]
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = std::time::Instant::now();
    let value = f();
    (value, start.elapsed())
}

/// The progress line on stderr: redrawn on a terminal, else a line every few seconds; silent for
/// the first second, so short runs print nothing.
struct ProgressMeter {
    name: String,
    terminal: bool,
    start: std::time::Instant,
    last: Option<std::time::Instant>,
    drawn: bool,
}

impl ProgressMeter {
    #[allow(clippy::disallowed_methods)]
    fn new(name: &str) -> Self {
        ProgressMeter {
            name: name.to_owned(),
            terminal: std::io::stderr().is_terminal(),
            start: std::time::Instant::now(),
            last: None,
            drawn: false,
        }
    }

    #[allow(clippy::disallowed_methods)]
    fn show(&mut self, p: &Progress) {
        let now = std::time::Instant::now();
        let elapsed = now - self.start;
        if elapsed < Duration::from_secs(1) {
            return;
        }
        let every = if self.terminal {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        if self.last.is_some_and(|l| now - l < every) {
            return;
        }
        self.last = Some(now);
        let line = format!(
            "btsim: {}: {:.1}/{} s simulated, {} of {} peers running, {} complete, {} events, {:.0} s wall",
            self.name,
            p.now.as_micros() as f64 / 1e6,
            p.duration.as_secs(),
            p.running,
            p.hosts,
            p.complete,
            bt_runtime::units::format_count(p.events),
            elapsed.as_secs_f64()
        );
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{line}");
            self.drawn = true;
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    fn clear(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.drawn = false;
        }
    }
}
