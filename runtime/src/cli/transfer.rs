//! `bt get` and `bt seed`: download and seed one torrent with the tokio driver over real sockets
//! and files. `bt get` exits 0 only when every piece on disk is verified; both save resume data on
//! the way out, so a restart rechecks only what the resume file does not vouch for.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bt_protocol::metainfo::Metainfo;
use bt_protocol::session::SessionConfig;
use bt_protocol::torrent::{Bitfield, Strategy, TorrentEvent};
use bt_runtime::driver::{Driver, Finished, Outcome, Report, Status, StopWhen};
use bt_runtime::net::TokioNet;
use bt_runtime::resume::ResumeState;
use bt_runtime::storage::{DEFAULT_MAX_OPEN_FILES, FsStorage, Storage};
use bt_runtime::units::format_bytes;
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `bt get`.
#[derive(Debug, clap::Args)]
pub(crate) struct GetArgs {
    /// The .torrent file.
    torrent: PathBuf,
    /// Where to put the data (created if missing).
    #[arg(short = 'o', long = "output", value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// A peer to connect to (repeatable).
    #[arg(long = "peer", value_name = "ADDR:PORT")]
    peers: Vec<SocketAddr>,
    /// Where to accept incoming peers.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// How to choose pieces.
    #[arg(long, value_enum, default_value = "rarest")]
    strategy: StrategyArg,
    /// Most peers at once.
    #[arg(long, value_name = "N", default_value_t = 80)]
    max_peers: usize,
    /// Keep seeding after the download completes, until interrupted.
    #[arg(long)]
    seed: bool,
    /// Print newline-delimited JSON events instead of a progress display.
    #[arg(long)]
    json: bool,
}

/// Arguments of `bt seed`.
#[derive(Debug, clap::Args)]
pub(crate) struct SeedArgs {
    /// The .torrent file.
    torrent: PathBuf,
    /// The folder that holds the data.
    #[arg(short = 'd', long = "dir", value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Where to accept peers.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:6881")]
    listen: SocketAddr,
    /// Print newline-delimited JSON events.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum StrategyArg {
    Rarest,
    Sequential,
    Random,
}

fn load(path: &PathBuf) -> anyhow::Result<Metainfo> {
    let bytes = super::read_torrent_file(path)?;
    Metainfo::from_bytes(&bytes).with_context(|| path.display().to_string())
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Checks the data already in `dir`, trusting the resume file for pieces whose files are unchanged.
fn check_existing(
    storage: &FsStorage,
    meta: &Metainfo,
    dir: &Path,
    quiet: bool,
) -> anyhow::Result<Bitfield> {
    let n = meta.info.layout.piece_count();
    let vouched = ResumeState::load(dir, &meta.info_hash, &meta.info)
        .map(|r| r.vouched_pieces(&storage.file_stamps()))
        .unwrap_or_else(|| Bitfield::new(n));
    let mut unvouched = Bitfield::new(n);
    for i in 0..n {
        if !vouched.get(i) {
            unvouched.set(i);
        }
    }
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(meta.info.layout.total_length())
    };
    bar.set_style(
        ProgressStyle::with_template("checking {bar:40} {percent:>3}% {bytes}/{total_bytes}")
            .expect("the template is valid"),
    );
    let checked = storage
        .verify(
            &meta.info.pieces,
            Some(&unvouched),
            threads(),
            &mut |done| bar.set_position(done),
        )
        .with_context(|| format!("checking the data in {}", dir.display()))?;
    bar.finish_and_clear();
    let mut have = vouched;
    for i in checked.ones() {
        have.set(i);
    }
    Ok(have)
}

fn save_resume(storage: &FsStorage, meta: &Metainfo, dir: &Path, have: &Bitfield) {
    if storage.flush().is_ok() {
        // A failed save only costs a recheck next time; say so and go on.
        if let Err(e) = ResumeState::save(dir, &meta.info_hash, have, &storage.file_stamps()) {
            eprintln!(
                "bt: warning: could not save resume data in {}: {e}",
                dir.display()
            );
        }
    }
}

fn seed_from_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id())
}

/// What the user sees while a transfer runs.
struct Display {
    json: bool,
    bar: ProgressBar,
    terminal: bool,
    last_plain: std::time::Instant,
}

impl Display {
    fn new(json: bool, total: u64) -> Self {
        let bar = if json {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total)
        };
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {percent:>3}% {bytes}/{total_bytes} {msg}")
                .expect("the template is valid"),
        );
        Display {
            json,
            terminal: !bar.is_hidden(),
            bar,
            last_plain: std::time::Instant::now(),
        }
    }

    fn line(&self, json: serde_json::Value, text: String) {
        if self.json {
            println!("{json}");
        } else {
            self.bar.suspend(|| eprintln!("{text}"));
        }
    }

    fn report(&mut self, r: &Report) {
        match r {
            Report::Status(s) => self.status(s),
            Report::Event(TorrentEvent::Complete) => {
                self.line(serde_json::json!({"event": "complete"}), "download complete".into())
            }
            Report::Event(TorrentEvent::PeerBanned(ip)) => self.line(
                serde_json::json!({"event": "peer_banned", "ip": ip.to_string()}),
                format!("banned {ip}: it sent data that failed verification"),
            ),
            Report::Event(TorrentEvent::DiskError(e)) => self.line(
                serde_json::json!({"event": "disk_error", "error": e.to_string()}),
                format!("disk error: {e}"),
            ),
            Report::Event(TorrentEvent::PieceVerified(p)) if self.json => {
                println!("{}", serde_json::json!({"event": "piece_verified", "piece": p.get()}))
            }
            Report::ConnectFailed { addr, error } => self.line(
                serde_json::json!({"event": "connect_failed", "addr": addr.to_string(), "error": error}),
                format!("could not connect to {addr}: {error}"),
            ),
            Report::Event(_) => {}
        }
    }

    fn status(&mut self, s: &Status) {
        let msg = format!(
            "down {}/s up {}/s, {} peer{}",
            format_bytes(s.download_rate),
            format_bytes(s.upload_rate),
            s.peers,
            if s.peers == 1 { "" } else { "s" }
        );
        if self.json {
            println!(
                "{}",
                serde_json::json!({
                    "event": "status", "have": s.have, "pieces": s.pieces,
                    "verified_bytes": s.verified_bytes, "total_bytes": s.total_bytes,
                    "downloaded": s.downloaded, "uploaded": s.uploaded,
                    "download_rate": s.download_rate, "upload_rate": s.upload_rate, "peers": s.peers,
                })
            );
        } else if self.terminal {
            self.bar.set_position(s.verified_bytes);
            self.bar.set_message(msg);
        } else if self.last_plain.elapsed() >= Duration::from_secs(5) {
            self.last_plain = std::time::Instant::now();
            eprintln!(
                "{:.1}% ({}/{} pieces), {msg}",
                s.verified_bytes as f64 * 100.0 / s.total_bytes.max(1) as f64,
                s.have,
                s.pieces
            );
        }
    }
}

async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Everything one driver run needs.
struct Run<'a> {
    meta: &'a Metainfo,
    storage: Arc<FsStorage>,
    have: Bitfield,
    config: SessionConfig,
    listen: SocketAddr,
    peers: &'a [SocketAddr],
    stop: StopWhen,
}

async fn run_driver(run: Run<'_>, display: &mut Display) -> anyhow::Result<Finished> {
    let mut driver = Driver::new(
        TokioNet,
        run.storage,
        run.meta,
        run.have,
        run.config,
        seed_from_clock(),
    )?;
    let addr = driver
        .listen(run.listen)
        .await
        .with_context(|| format!("cannot listen on {}", run.listen))?;
    display.line(
        serde_json::json!({"event": "listening", "addr": addr.to_string()}),
        format!("listening on {addr}"),
    );
    for p in run.peers {
        driver.add_peer(*p);
    }
    Ok(driver
        .run(run.stop, interrupted(), |r| display.report(r))
        .await)
}

pub(crate) fn get(args: GetArgs) -> anyhow::Result<()> {
    let meta = load(&args.torrent)?;
    if args.peers.is_empty() {
        bail!(
            "announcing to trackers is not built yet ({} tracker tier{} in the torrent); give peers with --peer ADDR:PORT",
            meta.trackers.len(),
            if meta.trackers.len() == 1 { "" } else { "s" }
        );
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let storage = Arc::new(FsStorage::open(
        &args.dir,
        &meta.info,
        DEFAULT_MAX_OPEN_FILES,
    )?);
    storage.create_empty_files()?;
    let have = check_existing(&storage, &meta, &args.dir, args.json)?;
    let mut config = SessionConfig::default();
    config.torrent.strategy = match args.strategy {
        StrategyArg::Rarest => Strategy::RarestFirst,
        StrategyArg::Sequential => Strategy::Sequential,
        StrategyArg::Random => Strategy::Random,
    };
    config.torrent.max_peers = args.max_peers;
    let mut display = Display::new(args.json, meta.info.layout.total_length());
    let stop = if args.seed {
        StopWhen::Interrupted
    } else {
        StopWhen::Complete
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let run = Run {
        meta: &meta,
        storage: storage.clone(),
        have,
        config,
        listen: args.listen,
        peers: &args.peers,
        stop,
    };
    let finished = runtime.block_on(run_driver(run, &mut display))?;
    display.bar.finish_and_clear();
    save_resume(&storage, &meta, &args.dir, &finished.have);
    if finished.have.is_complete() {
        if !args.json {
            println!(
                "{}: complete and verified in {}",
                meta.info.name,
                args.dir.display()
            );
        }
        Ok(())
    } else {
        bail!(
            "stopped with {} of {} pieces verified{}",
            finished.have.count(),
            finished.have.len(),
            if finished.outcome == Outcome::Interrupted {
                " (interrupted)"
            } else {
                ""
            }
        )
    }
}

pub(crate) fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let meta = load(&args.torrent)?;
    if !args.dir.is_dir() {
        bail!("{} is not a folder", args.dir.display());
    }
    let storage = Arc::new(FsStorage::open(
        &args.dir,
        &meta.info,
        DEFAULT_MAX_OPEN_FILES,
    )?);
    let have = check_existing(&storage, &meta, &args.dir, args.json)?;
    if !have.is_complete() {
        bail!(
            "{} holds {} of {} pieces of {}: bt seed needs the complete, correct data",
            args.dir.display(),
            have.count(),
            have.len(),
            meta.info.name
        );
    }
    save_resume(&storage, &meta, &args.dir, &have);
    let mut display = Display::new(args.json, meta.info.layout.total_length());
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let run = Run {
        meta: &meta,
        storage,
        have,
        config: SessionConfig::default(),
        listen: args.listen,
        peers: &[],
        stop: StopWhen::Interrupted,
    };
    let finished = runtime.block_on(run_driver(run, &mut display))?;
    display.bar.finish_and_clear();
    if !args.json {
        println!(
            "stopped seeding; uploaded {}",
            format_bytes(finished.status.uploaded)
        );
    }
    Ok(())
}
