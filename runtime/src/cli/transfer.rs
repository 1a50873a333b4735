//! `bt get` and `bt seed`: download and seed one torrent with the tokio driver over real sockets
//! and files. `bt get` exits 0 only when every piece on disk is verified; both save resume data on
//! the way out, so a restart rechecks only what the resume file does not vouch for.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bt_protocol::client::{ClientConfig, GoalReached, SeedGoal, SeedProgress};
use bt_protocol::metainfo::magnet::MagnetLink;
use bt_protocol::metainfo::{InfoHash, Metainfo};
use bt_protocol::rng::Rng;
use bt_protocol::session::{Encryption, SessionConfig};
use bt_protocol::torrent::{Bitfield, FilePriority, Strategy, TorrentEvent, piece_priorities};
use bt_protocol::tracker::{AnnounceRequest, AnnounceResponse, Event as AnnounceEvent, TrackerUrl};
use bt_protocol::wire::PeerId;
use bt_runtime::dht::DhtReport;
use bt_runtime::driver::{
    Driver, Finished, Outcome, PeerTotals, Report, Status, StopWhen, TorrentFinished,
    default_disk_threads,
};
use bt_runtime::net::TokioNet;
use bt_runtime::resume::ResumeState;
use bt_runtime::select::{self, SelectError};
use bt_runtime::storage::{DEFAULT_MAX_OPEN_FILES, FsStorage, Storage};
use bt_runtime::tracker::{Clock, announce};
use bt_runtime::units::format_bytes;

use super::dht::DhtArgs;
use super::goals::GoalArgs;
use super::limits::LimitArgs;
use super::serve::{ServeArgs, Serving};
use super::summary::RunSummary;
use super::transport::TransportArgs;
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `bt get`.
#[derive(Debug, clap::Args)]
pub(crate) struct GetArgs {
    /// The .torrent file, or a magnet link (`magnet:?xt=urn:btih:...`; quote it in the shell).
    #[arg(value_name = "TORRENT|MAGNET")]
    torrent: String,
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
    /// Keep seeding after the download completes, until interrupted (or a seeding goal,
    /// `--seed-ratio`/`--seed-time`, which imply it, is reached).
    #[arg(long)]
    seed: bool,
    #[command(flatten)]
    goals: GoalArgs,
    /// Print newline-delimited JSON events instead of a progress display.
    #[arg(long)]
    json: bool,
    /// Say more: every failed connection, every tracker answer.
    #[arg(short, long)]
    verbose: bool,
    /// Announce to every tracker of the torrent, print what each answered, and exit.
    #[arg(long)]
    announce_only: bool,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    dht: DhtArgs,
    #[command(flatten)]
    serve: ServeArgs,
    /// Message stream encryption (MSE/PE): `prefer` dials encrypted first, falls back to
    /// plaintext, and accepts both; `require` only makes and accepts RC4 connections;
    /// `plaintext` never encrypts the stream.
    #[arg(long, value_enum, default_value = "prefer")]
    encryption: EncryptionArg,
    #[command(flatten)]
    transport: TransportArgs,
    /// Download only these files: indices as `bt info` prints them, e.g. `0,2-4`, or `all`. The
    /// choice is kept in the resume data: a later run without --select/--only makes it again.
    #[arg(long, value_name = "LIST")]
    select: Option<String>,
    /// Download only the files whose path inside the torrent matches GLOB, as in .gitignore
    /// (`*.mkv`, `season1/**`); repeatable, and added to --select.
    #[arg(long = "only", value_name = "GLOB")]
    only: Vec<String>,
    /// How often resume data is saved while downloading (for tests of crash safety).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration, hide = true)]
    resume_interval: Duration,
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
    /// Say more: every failed connection, every tracker answer.
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    goals: GoalArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    dht: DhtArgs,
    #[command(flatten)]
    serve: ServeArgs,
    /// Message stream encryption (MSE/PE), as for `bt get`.
    #[arg(long, value_enum, default_value = "prefer")]
    encryption: EncryptionArg,
    #[command(flatten)]
    transport: TransportArgs,
}

/// `--encryption`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum EncryptionArg {
    Prefer,
    Require,
    Plaintext,
}

impl From<EncryptionArg> for Encryption {
    fn from(arg: EncryptionArg) -> Self {
        match arg {
            EncryptionArg::Prefer => Encryption::Prefer,
            EncryptionArg::Require => Encryption::Require,
            EncryptionArg::Plaintext => Encryption::Plaintext,
        }
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum StrategyArg {
    Rarest,
    Sequential,
    Random,
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What [`check_existing`] found.
struct Checked {
    /// The verified pieces.
    have: Bitfield,
    /// The seeding progress of earlier runs, from the resume file.
    seeding: SeedProgress,
    /// How many of them the resume file vouched for (the rest were rechecked).
    vouched: u32,
}

/// Checks the data already in `dir`, trusting the resume file for pieces whose files are unchanged.
fn check_existing(
    storage: &FsStorage,
    meta: &Metainfo,
    dir: &Path,
    quiet: bool,
) -> anyhow::Result<Checked> {
    let n = meta.info.layout.piece_count();
    let saved = ResumeState::load(dir, &meta.info_hash, &meta.info);
    let seeding = saved.as_ref().map(ResumeState::seeding).unwrap_or_default();
    let vouched = saved
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
    let vouched_count = vouched.count();
    let mut have = vouched;
    for i in checked.ones() {
        have.set(i);
    }
    Ok(Checked {
        have,
        seeding,
        vouched: vouched_count,
    })
}

fn save_resume(
    storage: &FsStorage,
    meta: &Metainfo,
    dir: &Path,
    have: &Bitfield,
    priorities: Option<&[FilePriority]>,
    seeding: SeedProgress,
) {
    // A failed save only costs a recheck next time; say so and go on.
    if let Err(e) = write_resume(storage, &meta.info_hash, dir, have, priorities, seeding) {
        eprintln!(
            "bt: warning: could not save resume data in {}: {e}",
            dir.display()
        );
    }
}

/// Saves resume data, with the files chosen (`priorities`) and the seeding progress, without
/// syncing the data files where the system allows it (the state then holds until the system
/// restarts; see `resume`), else after syncing them.
fn write_resume(
    storage: &FsStorage,
    info_hash: &bt_protocol::metainfo::InfoHash,
    dir: &Path,
    have: &Bitfield,
    priorities: Option<&[FilePriority]>,
    seeding: SeedProgress,
) -> Result<(), String> {
    let stamps = storage.file_stamps();
    if let Some(saved) =
        ResumeState::save_unsynced(dir, info_hash, have, &stamps, priorities, seeding)
    {
        return saved.map_err(|e| e.to_string());
    }
    storage.flush().map_err(|e| e.to_string())?;
    ResumeState::save(
        dir,
        info_hash,
        have,
        &storage.file_stamps(),
        priorities,
        seeding,
    )
    .map_err(|e| e.to_string())
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
    verbose: bool,
    bar: ProgressBar,
    terminal: bool,
    last_plain: std::time::Instant,
    started: std::time::Instant,
    /// Whether a peer was ever connected, and whether "no peers" was already said.
    had_peers: bool,
    said_no_peers: bool,
    /// The write stall last said (its episode, error and wait), until it is said to be over.
    stall: Option<(u64, String, Duration)>,
}

/// After this long without a single peer, the user is told.
const NO_PEERS_NOTICE: Duration = Duration::from_secs(60);

impl Display {
    fn new(json: bool, verbose: bool, total: u64) -> Self {
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
            verbose,
            terminal: !bar.is_hidden(),
            bar,
            last_plain: std::time::Instant::now(),
            started: std::time::Instant::now(),
            had_peers: false,
            said_no_peers: false,
            stall: None,
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
            // A write stall was said with the status before it.
            Report::Event(TorrentEvent::DiskError(e))
                if self.stall.as_ref().is_some_and(|(_, said, _)| *said == e.to_string()) => {}
            Report::Event(TorrentEvent::DiskError(e)) => self.line(
                serde_json::json!({"event": "disk_error", "error": e.to_string()}),
                format!("disk error: {e}"),
            ),
            Report::Event(TorrentEvent::PieceVerified(p)) if self.json => {
                println!("{}", serde_json::json!({"event": "piece_verified", "piece": p.get()}))
            }
            // What is in flight: requested and not verified yet.
            Report::Event(TorrentEvent::PieceStarted(p)) if self.json => {
                println!("{}", serde_json::json!({"event": "piece_started", "piece": p.get()}))
            }
            Report::ConnectFailed {
                addr,
                error,
                transport,
            } if self.json || self.verbose => self.line(
                serde_json::json!({
                    "event": "connect_failed", "addr": addr.to_string(), "error": error,
                    "transport": transport.name(),
                }),
                format!("could not connect to {addr} over {}: {error}", transport.name()),
            ),
            Report::TrackerAnswered {
                url,
                event,
                response,
                next_in,
            } => self.tracker_answered(url, *event, response, *next_in),
            Report::TrackerFailed {
                url,
                error,
                retry_in,
            } => {
                let next = match retry_in {
                    Some(d) if d.is_zero() => "; trying the next tracker".to_owned(),
                    Some(d) => format!("; next try in {}", humantime::format_duration(*d)),
                    None => String::new(),
                };
                self.line(
                    serde_json::json!({
                        "event": "tracker_error", "url": url, "error": error.to_string(),
                        "retry_in_s": retry_in.map(|d| d.as_secs()),
                    }),
                    format!("tracker {url}: {error}{next}"),
                );
            }
            Report::TrackerSlow { url, waited } => self.line(
                serde_json::json!({"event": "tracker_slow", "url": url, "waited_s": waited.as_secs()}),
                format!(
                    "tracker {url} has not answered in {} s; still trying",
                    waited.as_secs()
                ),
            ),
            Report::PeerClosed {
                addr,
                reason,
                downloaded,
                uploaded,
            } if self.json || self.verbose => self.line(
                serde_json::json!({
                    "event": "peer_closed", "addr": addr.to_string(), "reason": reason,
                    "downloaded": downloaded, "uploaded": uploaded,
                }),
                format!(
                    "closed {addr}: {reason} (received {}, sent {})",
                    format_bytes(*downloaded),
                    format_bytes(*uploaded)
                ),
            ),
            Report::PeerConnected {
                addr,
                source,
                encrypted,
                transport,
            } if self.json || self.verbose => self.line(
                serde_json::json!({
                    "event": "peer_connected", "addr": addr.to_string(), "source": source.name(),
                    "encrypted": encrypted, "transport": transport.name(),
                }),
                format!(
                    "connected to {addr} over {} (from {}{})",
                    transport.name(),
                    source.name(),
                    if *encrypted { ", encrypted" } else { "" }
                ),
            ),
            Report::PeersFound {
                source,
                from,
                count,
            } if (self.json || self.verbose) && *count > 0 => {
                let from_text = from.map_or(String::new(), |f| format!(" from {f}"));
                self.line(
                    serde_json::json!({
                        "event": "peers_found", "source": source.name(), "count": count,
                        "from": from.map(|f| f.to_string()),
                    }),
                    format!(
                        "{}{from_text}: {count} new peer{}",
                        source.name(),
                        if *count == 1 { "" } else { "s" }
                    ),
                );
            }
            Report::Dht(d) => self.dht(d),
            Report::SeedGoalReached {
                reached,
                uploaded,
                seeded,
            } => {
                let (goal, text) = match reached {
                    GoalReached::Ratio(r) => ("ratio", format!("ratio {r}")),
                    GoalReached::Time(t) => (
                        "time",
                        format!("seeding time {}", humantime::format_duration(*t)),
                    ),
                };
                self.line(
                    serde_json::json!({
                        "event": "seed_goal_reached", "goal": goal,
                        "ratio": match reached { GoalReached::Ratio(r) => Some(r.to_string()), _ => None },
                        "seed_time_s": match reached { GoalReached::Time(t) => Some(t.as_secs()), _ => None },
                        "uploaded": uploaded, "seeded_s": seeded.as_secs(),
                    }),
                    format!(
                        "seeding goal reached ({text}): sent {} in {} of seeding; stopping",
                        format_bytes(*uploaded),
                        humantime::format_duration(Duration::from_secs(seeded.as_secs()))
                    ),
                );
            }
            // Said by `metadata_received`, which the caller calls with what it needs.
            Report::MetadataReceived(_) => {}
            Report::ConnectFailed { .. }
            | Report::PeerClosed { .. }
            | Report::PeerConnected { .. }
            | Report::PeersFound { .. }
            | Report::Event(_) => {}
            // `bt get` and `bt seed` never pause their torrent.
            Report::Paused | Report::Resumed => {}
        }
    }

    /// The HTTP server (`--serve`) is up: one line with its URL.
    fn serving(&self, serving: &Serving) {
        let url = serving.url();
        self.line(
            serde_json::json!({"event": "serving", "url": url}),
            format!("serving the files at {url}"),
        );
    }

    /// At the end of a run: the summary (see [`RunSummary`]), on stdout.
    fn summary(&self, summary: &RunSummary) {
        if self.json {
            println!("{}", summary.json());
        } else {
            println!("{}", summary.text());
        }
    }

    /// Where we listen: TCP at `addr`, and uTP at `udp` when uTP is on (the same port unless
    /// that UDP port was taken, which is worth a warning: peers dial the TCP port over uTP).
    fn listening(&self, addr: SocketAddr, udp: Option<SocketAddr>) {
        self.line(
            serde_json::json!({
                "event": "listening", "addr": addr.to_string(),
                "udp": udp.map(|u| u.to_string()),
            }),
            format!("listening on {addr}"),
        );
        if let Some(udp) = udp
            && udp.port() != addr.port()
        {
            eprintln!(
                "bt: warning: UDP port {} is taken: uTP listens on {udp} instead, where peers \
                 will not look",
                addr.port()
            );
        }
    }

    /// At the end of a run: the block bytes received from and sent to each peer met, every
    /// connection counted (`--json`: one `peer_summary` event; `-v`: a line per peer).
    fn peer_summary(&self, totals: &PeerTotals) {
        if self.json {
            let peers: Vec<serde_json::Value> = totals
                .by_addr
                .iter()
                .map(|(addr, t)| {
                    serde_json::json!({
                        "addr": addr.to_string(), "downloaded": t.downloaded, "uploaded": t.uploaded,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "event": "peer_summary", "peers": peers,
                    "others": {"downloaded": totals.others.downloaded, "uploaded": totals.others.uploaded},
                })
            );
        } else if self.verbose {
            for (addr, t) in &totals.by_addr {
                let line = format!(
                    "peer {addr}: received {}, sent {}",
                    format_bytes(t.downloaded),
                    format_bytes(t.uploaded)
                );
                self.bar.suspend(|| eprintln!("{line}"));
            }
        }
    }

    fn dht(&mut self, d: &DhtReport) {
        let loud = self.json || self.verbose;
        match d {
            DhtReport::Listening(addr) if loud => self.line(
                serde_json::json!({"event": "dht_listening", "addr": addr.to_string()}),
                format!("DHT node on udp {addr}"),
            ),
            DhtReport::Stopped(why) if loud => self.line(
                serde_json::json!({"event": "dht_stopped", "reason": why}),
                format!("DHT off: {why}"),
            ),
            DhtReport::BadState(e) => self.line(
                serde_json::json!({"event": "dht_bad_state", "error": e}),
                format!("warning: ignoring the saved DHT routing table: {e}"),
            ),
            DhtReport::BootstrapFailed { node, error } if loud => self.line(
                serde_json::json!({"event": "dht_bootstrap_failed", "node": node, "error": error}),
                format!("DHT bootstrap node {node}: {error}"),
            ),
            DhtReport::Bootstrapped { nodes } if loud => self.line(
                serde_json::json!({"event": "dht_bootstrapped", "nodes": nodes}),
                format!("DHT: {nodes} nodes"),
            ),
            DhtReport::Announced {
                peers,
                announced,
                nodes,
            } if loud => self.line(
                serde_json::json!({
                    "event": "dht_announced", "peers": peers, "announced_to": announced,
                    "nodes": nodes,
                }),
                format!("DHT announce: {peers} peers found, announced to {announced} nodes ({nodes} in the table)"),
            ),
            _ => {}
        }
    }

    /// A magnet's metadata arrived `after` the start: says what the torrent is, and the bar now
    /// measures its bytes.
    fn metadata_received(&mut self, meta: &Metainfo, after: Duration) {
        let layout = &meta.info.layout;
        self.bar.set_length(layout.total_length());
        self.line(
            serde_json::json!({
                "event": "metadata_received", "name": meta.info.name,
                "pieces": layout.piece_count(), "total_bytes": layout.total_length(),
                "metadata_bytes": meta.info_bytes.len(), "after_s": after.as_secs_f64(),
            }),
            format!(
                "metadata received in {:.1} s: {} ({}, {} pieces)",
                after.as_secs_f64(),
                meta.info.name,
                format_bytes(layout.total_length()),
                layout.piece_count()
            ),
        );
    }

    fn tracker_answered(
        &mut self,
        url: &str,
        event: AnnounceEvent,
        r: &AnnounceResponse,
        next_in: Option<Duration>,
    ) {
        if let Some(warning) = &r.warning {
            self.line(
                serde_json::json!({"event": "tracker_warning", "url": url, "warning": warning}),
                format!("tracker {url} warns: {warning}"),
            );
        }
        let json = serde_json::json!({
            "event": "tracker_answer", "url": url, "announced": event.as_param(),
            "peers": r.peers.len(), "seeders": r.complete, "leechers": r.incomplete,
            "interval_s": r.interval.as_secs(),
            "next_announce_s": next_in.map(|d| d.as_secs()),
        });
        // One line for the first answer, then only when asked to say more.
        if self.json || self.verbose || event == AnnounceEvent::Started {
            self.line(
                json,
                format!("tracker {url}: {}", describe_answer(r, next_in)),
            );
        }
    }

    /// Says when writes stall ("disk full writing /x/y; paused, retrying in 5 s") and when they
    /// work again, once per stall; with `-v` or `--json`, each failed retry too.
    fn write_stall(&mut self, s: &Status) {
        let retry_s = |st: &bt_runtime::driver::StallStatus| {
            st.retry_in.unwrap_or(st.backoff).as_secs_f64().ceil() as u64
        };
        match (&s.write_stall, &self.stall) {
            (Some(st), Some((episode, _, backoff)))
                if *episode == st.episode && *backoff != st.backoff =>
            {
                if self.json || self.verbose {
                    self.line(
                        serde_json::json!({"event": "writes_still_failing", "retry_in_s": retry_s(st)}),
                        format!("writing still fails; retrying in {} s", retry_s(st)),
                    );
                }
                self.stall = Some((st.episode, st.error.clone(), st.backoff));
            }
            (Some(st), said) if said.as_ref().map(|(episode, ..)| *episode) != Some(st.episode) => {
                self.line(
                    serde_json::json!({
                        "event": "writes_paused", "error": st.error, "retry_in_s": retry_s(st),
                        "verified_bytes": s.verified_bytes,
                    }),
                    format!("{}; paused, retrying in {} s", st.error, retry_s(st)),
                );
                self.stall = Some((st.episode, st.error.clone(), st.backoff));
            }
            (None, Some(_)) => {
                self.stall = None;
                self.line(
                    serde_json::json!({"event": "writes_resumed", "verified_bytes": s.verified_bytes}),
                    "writing works again; the download goes on".into(),
                );
            }
            _ => {}
        }
    }

    fn status(&mut self, s: &Status) {
        self.write_stall(s);
        self.had_peers |= s.peers > 0;
        if !self.had_peers
            && !self.said_no_peers
            && (s.have < s.pieces || s.metadata.is_some())
            && self.started.elapsed() >= NO_PEERS_NOTICE
        {
            self.said_no_peers = true;
            self.line(
                serde_json::json!({"event": "no_peers", "after_s": NO_PEERS_NOTICE.as_secs()}),
                format!(
                    "no peers found after {} s; still looking",
                    NO_PEERS_NOTICE.as_secs()
                ),
            );
        }
        let peers = format!("{} peer{}", s.peers, if s.peers == 1 { "" } else { "s" });
        let eta = s.eta();
        let msg = match s.metadata {
            Some((got, 0)) => format!("fetching metadata ({got} pieces), {peers}"),
            Some((got, all)) => format!("fetching metadata ({got}/{all} pieces), {peers}"),
            // Seeding: nothing is left to wait for.
            None if s.left() == 0 => format!(
                "down {}/s up {}/s, {peers}",
                format_bytes(s.download_rate),
                format_bytes(s.upload_rate),
            ),
            None => format!(
                "down {}/s up {}/s, {peers}, ETA {}",
                format_bytes(s.download_rate),
                format_bytes(s.upload_rate),
                eta.map_or_else(
                    || "--".to_owned(),
                    |d| humantime::format_duration(d).to_string()
                ),
            ),
        };
        if self.json {
            println!(
                "{}",
                serde_json::json!({
                    "event": "status", "elapsed_s": self.started.elapsed().as_secs_f64(),
                    "have": s.have, "pieces": s.pieces,
                    "verified_bytes": s.verified_bytes, "total_bytes": s.total_bytes,
                    "downloaded": s.downloaded, "uploaded": s.uploaded,
                    "download_rate": s.download_rate, "upload_rate": s.upload_rate, "peers": s.peers,
                    "eta_s": eta.map(|d| d.as_secs()),
                    "writes_paused": s.write_stall.is_some(),
                    "metadata": s.metadata.map(|(got, all)| serde_json::json!({"received": got, "pieces": all})),
                    "sources": {
                        "tracker": s.sources.tracker, "dht": s.sources.dht, "pex": s.sources.pex,
                        "direct": s.sources.direct, "incoming": s.sources.incoming,
                    },
                })
            );
        } else if self.terminal {
            self.bar.set_position(s.verified_bytes);
            self.bar.set_message(msg);
        } else if self.last_plain.elapsed() >= Duration::from_secs(5) {
            self.last_plain = std::time::Instant::now();
            if s.metadata.is_some() {
                eprintln!("{msg}");
                return;
            }
            eprintln!(
                "{:.1}% ({}/{} pieces), {msg}",
                s.verified_bytes as f64 * 100.0 / s.total_bytes.max(1) as f64,
                s.have,
                s.pieces
            );
        }
    }
}

/// "12 peers (3 seeders, 9 leechers), next announce in 30m".
fn describe_answer(r: &AnnounceResponse, next_in: Option<Duration>) -> String {
    let mut out = format!(
        "{} peer{}",
        r.peers.len(),
        if r.peers.len() == 1 { "" } else { "s" }
    );
    if let (Some(s), Some(l)) = (r.complete, r.incomplete) {
        out.push_str(&format!(" ({s} seeders, {l} leechers)"));
    }
    if let Some(next) = next_in {
        out.push_str(&format!(
            ", next announce in {}",
            humantime::format_duration(next)
        ));
    }
    out
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM: both stop the transfer cleanly.
async fn interrupted() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        biased;
        () = ctrl_c => {}
        () = term => {}
    }
}

/// How often, at most, resume data is saved while a download runs (`bt seed`'s; `bt get` takes
/// `--resume-interval`, 10 s by default).
const RESUME_SAVE_INTERVAL: Duration = Duration::from_secs(10);

/// Saves resume data on its own thread while the driver runs, so a crash or a kill costs at most
/// one save interval of rechecking. It sees the driver's reports: verified pieces add to
/// its copy of the verified set; a status report at least that long after the last save hands a
/// snapshot to the thread, which writes the resume file ([`write_resume`]: every piece in the
/// snapshot was written before it was verified). One save at a time: a snapshot waits while one
/// is running.
struct ResumeSaver {
    have: Bitfield,
    /// The seeding progress as the last status gave it.
    seeding: SeedProgress,
    dirty: bool,
    every: Duration,
    last: std::time::Instant,
    tx: Option<std::sync::mpsc::SyncSender<(Bitfield, SeedProgress)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ResumeSaver {
    fn start(
        storage: Arc<FsStorage>,
        meta: &Metainfo,
        dir: &Path,
        have: Bitfield,
        seeding: SeedProgress,
        every: Duration,
        priorities: Option<Vec<FilePriority>>,
    ) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Bitfield, SeedProgress)>(1);
        let (info_hash, dir) = (meta.info_hash, dir.to_owned());
        let thread = std::thread::spawn(move || {
            let mut warned = false;
            for (have, seeding) in rx {
                let priorities = priorities.as_deref();
                if let Err(e) = write_resume(&storage, &info_hash, &dir, &have, priorities, seeding)
                    && !std::mem::replace(&mut warned, true)
                {
                    eprintln!("bt: warning: could not save resume data: {e}");
                }
            }
        });
        ResumeSaver {
            have,
            seeding,
            dirty: false,
            every,
            last: std::time::Instant::now(),
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    fn observe(&mut self, report: &Report) {
        match report {
            Report::Event(TorrentEvent::PieceVerified(p)) => {
                self.have.set(p.get());
                self.dirty = true;
            }
            Report::Status(status) => {
                if let Some(seeding) = status.seeding
                    && seeding != self.seeding
                {
                    self.seeding = seeding;
                    self.dirty = true;
                }
                if !self.dirty || self.last.elapsed() < self.every {
                    return;
                }
                if let Some(tx) = &self.tx
                    && tx.try_send((self.have.clone(), self.seeding)).is_ok()
                {
                    self.dirty = false;
                    self.last = std::time::Instant::now();
                }
            }
            _ => {}
        }
    }

    /// Waits for a save in progress, so the final save does not race it.
    fn finish(mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Everything one driver run needs.
struct Run<'a> {
    meta: &'a Metainfo,
    dir: &'a Path,
    storage: Arc<FsStorage>,
    have: Bitfield,
    config: ClientConfig,
    listen: SocketAddr,
    peers: &'a [SocketAddr],
    stop: StopWhen,
    max_half_open: usize,
    resume_interval: Duration,
    dht: &'a DhtArgs,
    /// The files chosen (`None`: all).
    priorities: Option<&'a [FilePriority]>,
    /// The global rate limits (download, upload), bytes per second.
    rates: (Option<u64>, Option<u64>),
    /// When seeding stops by itself.
    goal: Option<SeedGoal>,
    /// The progress toward it in earlier runs.
    seeding: SeedProgress,
    /// The HTTP server (`--serve`).
    serve: &'a ServeArgs,
}

async fn run_driver(run: Run<'_>, display: &mut Display) -> anyhow::Result<Finished> {
    let mut saver = ResumeSaver::start(
        run.storage.clone(),
        run.meta,
        run.dir,
        run.have.clone(),
        run.seeding,
        run.resume_interval,
        run.priorities.map(<[FilePriority]>::to_vec),
    );
    let mut driver = Driver::new(
        TokioNet,
        run.storage.clone(),
        run.meta,
        run.have.clone(),
        run.config,
        seed_from_clock(),
    )?;
    let id = driver
        .first_torrent()
        .context("the driver holds no torrent")?;
    driver.set_max_half_open(run.max_half_open);
    if let Some(p) = run.priorities {
        driver.set_file_priorities(id, p)?;
    }
    apply_controls(&mut driver, id, run.rates, run.goal, run.seeding)?;
    let addr = driver
        .listen(run.listen)
        .await
        .with_context(|| format!("cannot listen on {}", run.listen))?;
    display.listening(addr, driver.udp_addr());
    let serving = if run.serve.enabled() {
        let readers = driver.commands();
        run.serve
            .start(id, run.meta, run.priorities, run.storage, run.have, readers)?
    } else {
        None
    };
    if let Some(serving) = &serving {
        display.serving(serving);
    }
    // After listening: an announce carries the port peers can reach us on.
    driver.set_trackers(id, run.meta.trackers.clone());
    start_dht(&mut driver, run.dht, addr, run.meta.info.private).await;
    for p in run.peers {
        driver.add_peer(id, *p);
    }
    let finished = driver
        .run(run.stop, interrupted(), |_, r| {
            saver.observe(r);
            if let Some(serving) = &serving {
                serving.observe(r);
            }
            display.report(r);
        })
        .await;
    drop(serving);
    saver.finish();
    let done = finished.first().context("the driver ran no torrent")?;
    display.peer_summary(&done.peers);
    if let Some(state) = &finished.dht_state {
        run.dht.save(state);
    }
    Ok(finished)
}

/// Sets the user's rate limits and seeding goal on torrent `id`, with the progress toward it of
/// earlier runs (`seeding`, saved in the resume file).
fn apply_controls<D: Storage + 'static>(
    driver: &mut Driver<TokioNet, D>,
    id: bt_protocol::session::TorrentId,
    (download, upload): (Option<u64>, Option<u64>),
    goal: Option<SeedGoal>,
    seeding: SeedProgress,
) -> anyhow::Result<()> {
    driver.set_rate_limits(download, upload);
    driver.restore_seed_progress(id, seeding)?;
    if let Some(goal) = goal {
        driver.set_seed_goal(id, goal)?;
    }
    Ok(())
}

/// Starts the DHT beside the listener at `addr` unless it is off; a failure is a warning (the
/// transfer goes on with its other peer sources).
async fn start_dht<D: Storage + 'static>(
    driver: &mut Driver<TokioNet, D>,
    dht: &DhtArgs,
    addr: SocketAddr,
    private: bool,
) {
    let Some(setup) = dht.setup(addr, private) else {
        return;
    };
    // The TCP port for UDP too, as BitTorrent clients do; any port if it is taken.
    let any = SocketAddr::new(addr.ip(), 0);
    if let Err(e) = driver.start_dht(setup.clone()).await {
        let retry = bt_runtime::dht::DhtSetup { bind: any, ..setup };
        if let Err(e2) = driver.start_dht(retry).await {
            eprintln!("bt: warning: no DHT: cannot bind UDP on {addr} ({e}) or {any} ({e2})");
        }
    }
}

pub(crate) fn get(args: GetArgs) -> anyhow::Result<()> {
    if args.torrent.starts_with("magnet:") {
        let magnet = MagnetLink::parse(&args.torrent)
            .with_context(|| format!("cannot use the magnet link {}", args.torrent))?;
        if args.announce_only {
            bail!("--announce-only needs a .torrent file");
        }
        let peers = magnet_peers(&magnet, &args.peers);
        // A torrent saved by an earlier run of the same magnet: go on from its data.
        return match saved_torrent(&args.dir, &magnet.info_hash, &args.limits) {
            Some(mut meta) => {
                for url in &magnet.trackers {
                    if !meta.tracker_urls().any(|u| u == url) {
                        meta.trackers.push(vec![url.clone()]);
                    }
                }
                get_torrent(&meta, &args, &peers, &magnet.select_only)
            }
            None => get_magnet(&magnet, &args, &peers),
        };
    }
    let meta = args.limits.load(Path::new(&args.torrent))?;
    if args.announce_only {
        return announce_only(&meta, &args);
    }
    get_torrent(&meta, &args, &args.peers, &[])
}

/// The peers to dial for a magnet: `--peer`s and the link's `x.pe` (IP literals; names are
/// skipped with a warning, as resolving them could stall the start).
fn magnet_peers(magnet: &MagnetLink, given: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut peers = given.to_vec();
    for p in &magnet.peers {
        match p.parse::<SocketAddr>() {
            Ok(addr) => peers.push(addr),
            Err(_) => eprintln!("bt: warning: ignoring the magnet's peer `{p}`: not IP:PORT"),
        }
    }
    peers
}

/// The most `.torrent` files [`saved_torrent`] looks at in a folder.
const MAX_SAVED_TORRENTS: usize = 64;

/// A `.torrent` in `dir` for `info_hash` (the one [`save_torrent_file`] wrote for a magnet).
fn saved_torrent(dir: &Path, info_hash: &InfoHash, limits: &LimitArgs) -> Option<Metainfo> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "torrent") && p.is_file())
        .take(MAX_SAVED_TORRENTS)
        .filter_map(|p| limits.load(&p).ok())
        .find(|m| m.info_hash == *info_hash)
}

/// A torrent file holding `info` (the raw info dictionary) and `trackers`, one per tier.
fn torrent_file_bytes(info: &[u8], trackers: &[String]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(s.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(s);
    }
    let mut out = b"d".to_vec();
    if let Some(first) = trackers.first() {
        string(&mut out, b"announce");
        string(&mut out, first.as_bytes());
        string(&mut out, b"announce-list");
        out.push(b'l');
        for t in trackers {
            out.push(b'l');
            string(&mut out, t.as_bytes());
            out.push(b'e');
        }
        out.push(b'e');
    }
    string(&mut out, b"info");
    out.extend_from_slice(info);
    out.push(b'e');
    out
}

/// Saves a magnet's torrent as `<dir>/<name>.torrent`, beside the data; returns its path.
fn save_torrent_file(dir: &Path, meta: &Metainfo, trackers: &[String]) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("{}.torrent", meta.info.name));
    let tmp = dir.join(format!(".{}.torrent.part", meta.info.name));
    std::fs::write(&tmp, torrent_file_bytes(&meta.info_bytes, trackers))?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The file priorities the user chose for `meta`: `--select`/`--only`; else the choice the
/// resume data in `dir` recorded (said in one line); else the magnet link's `so=`; `None` for
/// every file. Patterns that matched no file are warned about.
fn chosen_priorities(
    meta: &Metainfo,
    dir: &Path,
    select: Option<&str>,
    only: &[String],
    so: &[std::ops::RangeInclusive<u32>],
) -> Result<Option<Vec<FilePriority>>, SelectError> {
    let info = &meta.info;
    if let Some(selection) = select::choose(info, select, only)? {
        for pattern in &selection.unmatched {
            eprintln!("bt: warning: --only '{pattern}' matches no file");
        }
        return Ok(Some(selection.priorities));
    }
    let saved = ResumeState::load(dir, &meta.info_hash, info)
        .and_then(|state| state.priorities().map(<[FilePriority]>::to_vec));
    if let Some(saved) = saved {
        eprintln!(
            "bt: downloading the files chosen before: {} (--select all for every file)",
            select::describe(&saved)
        );
        return Ok(Some(saved));
    }
    select::select_only(info, so)
}

/// Opens the storage for `meta` in `dir` downloading only the files `priorities` want.
fn open_storage(
    dir: &Path,
    meta: &Metainfo,
    priorities: Option<&[FilePriority]>,
) -> Result<FsStorage, bt_runtime::storage::StorageError> {
    let selected = match priorities {
        Some(p) => p.iter().map(|p| *p != FilePriority::Skip).collect(),
        None => vec![true; meta.info.files.len()],
    };
    FsStorage::open(dir, &meta.info, DEFAULT_MAX_OPEN_FILES)?
        .with_selection(selected, &meta.info.pieces)
}

/// Whether every piece the priorities want (all, without priorities) is in `have`.
fn wanted_done(meta: &Metainfo, priorities: Option<&[FilePriority]>, have: &Bitfield) -> bool {
    match priorities {
        None => have.is_complete(),
        Some(p) => piece_priorities(&meta.info.layout, p)
            .iter()
            .enumerate()
            .all(|(i, p)| *p == FilePriority::Skip || have.get(i as u32)),
    }
}

/// The client's settings: `session`, dialling over `transports`.
fn client_config(session: SessionConfig, transports: &TransportArgs) -> ClientConfig {
    ClientConfig {
        session,
        transports: transports.transports(),
        ..ClientConfig::default()
    }
}

fn session_config(args: &GetArgs) -> SessionConfig {
    let mut config = SessionConfig::default();
    config.torrent.strategy = match args.strategy {
        StrategyArg::Rarest => Strategy::RarestFirst,
        StrategyArg::Sequential => Strategy::Sequential,
        StrategyArg::Random => Strategy::Random,
    };
    args.limits.apply(&mut config);
    config.encryption = Some(args.encryption.into());
    config
}

/// `bt get` of a magnet whose metadata is not on disk yet: fetches it from peers, saves the
/// `.torrent` beside the data, then downloads as for a torrent file (same run, same connections).
fn get_magnet(magnet: &MagnetLink, args: &GetArgs, peers: &[SocketAddr]) -> anyhow::Result<()> {
    if peers.is_empty() && magnet.trackers.is_empty() && args.dht.is_off() {
        bail!(
            "the magnet link names no tracker (tr=) and no peer (x.pe=), no --peer was given and \
             the DHT is off: nowhere to find peers"
        );
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let opened: Arc<std::sync::Mutex<Option<Arc<FsStorage>>>> = Arc::default();
    // The files chosen, known once the metadata is: the opener chooses, the driver applies.
    let chosen: Arc<std::sync::Mutex<Option<Vec<FilePriority>>>> = Arc::default();
    // A selection the metadata refutes (`--select 9` of 3 files) is a usage error: kept to be
    // returned as such (exit code 2), where the driver only reports its text.
    let refused: Arc<std::sync::Mutex<Option<SelectError>>> = Arc::default();
    let open = {
        let (dir, trackers, opened) = (args.dir.clone(), magnet.trackers.clone(), opened.clone());
        let (select, only, so) = (
            args.select.clone(),
            args.only.clone(),
            magnet.select_only.clone(),
        );
        let (chosen, refused) = (chosen.clone(), refused.clone());
        Box::new(move |meta: &Metainfo| -> Result<Arc<FsStorage>, String> {
            let priorities =
                chosen_priorities(meta, &dir, select.as_deref(), &only, &so).map_err(|e| {
                    let text = e.to_string();
                    *refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    text
                })?;
            let storage =
                open_storage(&dir, meta, priorities.as_deref()).map_err(|e| format!("{e:#}"))?;
            *chosen.lock().unwrap_or_else(|p| p.into_inner()) = priorities;
            storage.create_empty_files().map_err(|e| format!("{e:#}"))?;
            if let Err(e) = save_torrent_file(&dir, meta, &trackers) {
                eprintln!("bt: warning: could not save the torrent file: {e}");
            }
            let storage = Arc::new(storage);
            *opened.lock().unwrap_or_else(|p| p.into_inner()) = Some(storage.clone());
            Ok(storage)
        })
    };
    let mut display = Display::new(args.json, args.verbose, 0);
    let stop = get_stop(args);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let started = std::time::Instant::now();
    let mut meta: Option<Metainfo> = None;
    let mut saver: Option<ResumeSaver> = None;
    let finished = runtime.block_on(async {
        let mut driver = Driver::new_magnet(
            TokioNet,
            magnet.info_hash,
            open,
            client_config(session_config(args), &args.transport),
            seed_from_clock(),
            default_disk_threads(),
        )?;
        let id = driver
            .first_torrent()
            .context("the driver holds no torrent")?;
        driver.set_max_half_open(args.limits.max_half_open());
        let fresh = SeedProgress::default();
        apply_controls(&mut driver, id, args.limits.rates(), args.goals.goal(), fresh)?;
        {
            let chosen = chosen.clone();
            driver.set_priorities_on_metadata(
                id,
                Box::new(move |meta: &Metainfo| {
                    let chosen = chosen.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    Ok(chosen.unwrap_or_else(|| vec![FilePriority::Normal; meta.info.files.len()]))
                }),
            );
        }
        let addr = driver
            .listen(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        display.listening(addr, driver.udp_addr());
        // Whether the torrent is private is known only with its metadata; a magnet link is
        // public by nature (BEP 27 torrents are shared as files).
        // After listening: an announce carries the port peers can reach us on.
        driver.set_trackers(
            id,
            magnet.trackers.iter().map(|t| vec![t.clone()]).collect(),
        );
        start_dht(&mut driver, &args.dht, addr, false).await;
        for p in peers {
            driver.add_peer(id, *p);
        }
        // The server starts with the metadata, when there are files to serve.
        let readers = args.serve.enabled().then(|| driver.commands());
        let mut serving: Option<Serving> = None;
        let finished = driver
            .run(stop, interrupted(), |_, r| {
                if let Report::MetadataReceived(m) = r {
                    display.metadata_received(m, started.elapsed());
                    let storage = opened.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    if let (Some(storage), Some(readers)) = (&storage, &readers) {
                        let have = Bitfield::new(m.info.layout.piece_count());
                        let chosen = chosen.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        let started = args.serve.start(
                            id,
                            m,
                            chosen.as_deref(),
                            storage.clone(),
                            have,
                            readers.clone(),
                        );
                        match started {
                            Ok(s) => serving = s,
                            Err(e) => display.line(
                                serde_json::json!({"event": "serve_failed", "error": format!("{e:#}")}),
                                format!("warning: {e:#}"),
                            ),
                        }
                        if let Some(s) = &serving {
                            display.serving(s);
                        }
                    }
                    if let Some(storage) = storage {
                        let have = Bitfield::new(m.info.layout.piece_count());
                        saver = Some(ResumeSaver::start(
                            storage,
                            m,
                            &args.dir,
                            have,
                            SeedProgress::default(),
                            args.resume_interval,
                            chosen.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                        ));
                    }
                    meta = Some((**m).clone());
                }
                if let Some(saver) = &mut saver {
                    saver.observe(r);
                }
                if let Some(serving) = &serving {
                    serving.observe(r);
                }
                display.report(r);
            })
            .await;
        drop(serving);
        anyhow::Ok(finished)
    })?;
    if let Some(saver) = saver {
        saver.finish();
    }
    if let Some(e) = refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
        display.bar.finish_and_clear();
        return Err(e.into());
    }
    let done = finished.first().context("the driver ran no torrent")?;
    display.peer_summary(&done.peers);
    if let Some(state) = &finished.dht_state {
        args.dht.save(state);
    }
    display.bar.finish_and_clear();
    let storage = opened.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let priorities = chosen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let (Some(meta), Some(storage)) = (&meta, storage) {
        let seeding = done.status.seeding.unwrap_or_default();
        let priorities = priorities.as_deref();
        save_resume(&storage, meta, &args.dir, &done.have, priorities, seeding);
    }
    display.summary(&RunSummary::new(
        finished.outcome,
        done,
        display.started.elapsed(),
        meta.as_ref(),
        priorities.as_deref(),
    ));
    finish_get(
        meta.as_ref(),
        priorities.as_deref(),
        args,
        finished.outcome,
        done,
    )
}

/// The end of `bt get`: success only with every wanted piece verified.
fn finish_get(
    meta: Option<&Metainfo>,
    priorities: Option<&[FilePriority]>,
    args: &GetArgs,
    outcome: Outcome,
    finished: &TorrentFinished,
) -> anyhow::Result<()> {
    if let Some(error) = &finished.error {
        bail!("{error}");
    }
    let interrupted = if outcome == Outcome::Interrupted {
        " (interrupted)"
    } else {
        ""
    };
    let Some(meta) = meta else {
        bail!("stopped before the torrent's metadata arrived{interrupted}");
    };
    if wanted_done(meta, priorities, &finished.have) {
        if !args.json {
            println!(
                "{}: {} and verified in {}",
                meta.info.name,
                if priorities.is_some() {
                    "chosen files complete"
                } else {
                    "complete"
                },
                args.dir.display()
            );
        }
        Ok(())
    } else {
        bail!(
            "stopped with {} of {} pieces verified{interrupted}",
            finished.have.count(),
            finished.have.len(),
        )
    }
}

/// When `bt get` ends: at completion, or with `--seed`, `--serve` or a seeding goal on interrupt
/// or when the goal is reached.
fn get_stop(args: &GetArgs) -> StopWhen {
    if args.seed || args.goals.goal().is_some() || args.serve.enabled() {
        StopWhen::Interrupted
    } else {
        StopWhen::Complete
    }
}

/// `bt get` of a torrent whose metadata we have (a file, or a magnet's saved torrent).
fn get_torrent(
    meta: &Metainfo,
    args: &GetArgs,
    peers: &[SocketAddr],
    so: &[std::ops::RangeInclusive<u32>],
) -> anyhow::Result<()> {
    let priorities = chosen_priorities(meta, &args.dir, args.select.as_deref(), &args.only, so)?;
    if peers.is_empty()
        && meta.trackers.iter().all(Vec::is_empty)
        && (args.dht.is_off() || meta.info.private)
    {
        bail!(
            "{} names no tracker, no --peer was given and the DHT is off{}: nowhere to find peers",
            args.torrent,
            if meta.info.private {
                " (the torrent is private)"
            } else {
                ""
            }
        );
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let storage = Arc::new(open_storage(&args.dir, meta, priorities.as_deref())?);
    storage.create_empty_files()?;
    let checked = check_existing(&storage, meta, &args.dir, args.json)?;
    let (have, seeding) = (checked.have, checked.seeding);
    if args.json {
        // What this run starts from: how a test sees that a restart kept what was verified.
        let layout = &meta.info.layout;
        let verified_bytes: u64 = have
            .ones()
            .filter_map(|i| layout.piece(i))
            .map(|p| u64::from(layout.piece_len(p)))
            .sum();
        println!(
            "{}",
            serde_json::json!({
                "event": "checked", "have": have.count(), "pieces": have.len(),
                "vouched": checked.vouched, "verified_bytes": verified_bytes,
            })
        );
    }
    let config = client_config(session_config(args), &args.transport);
    let mut display = Display::new(args.json, args.verbose, meta.info.layout.total_length());
    let stop = get_stop(args);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let run = Run {
        meta,
        dir: &args.dir,
        storage: storage.clone(),
        have,
        config,
        listen: args.listen,
        peers,
        stop,
        max_half_open: args.limits.max_half_open(),
        resume_interval: args.resume_interval,
        dht: &args.dht,
        priorities: priorities.as_deref(),
        rates: args.limits.rates(),
        goal: args.goals.goal(),
        seeding,
        serve: &args.serve,
    };
    let finished = runtime.block_on(run_driver(run, &mut display))?;
    display.bar.finish_and_clear();
    let done = finished.first().context("the driver ran no torrent")?;
    let seeding = done.status.seeding.unwrap_or(seeding);
    save_resume(
        &storage,
        meta,
        &args.dir,
        &done.have,
        priorities.as_deref(),
        seeding,
    );
    display.summary(&RunSummary::new(
        finished.outcome,
        done,
        display.started.elapsed(),
        Some(meta),
        priorities.as_deref(),
    ));
    finish_get(
        Some(meta),
        priorities.as_deref(),
        args,
        finished.outcome,
        done,
    )
}

pub(crate) fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let meta = args.limits.load(&args.torrent)?;
    if !args.dir.is_dir() {
        bail!("{} is not a folder", args.dir.display());
    }
    let storage = Arc::new(FsStorage::open(
        &args.dir,
        &meta.info,
        DEFAULT_MAX_OPEN_FILES,
    )?);
    let Checked { have, seeding, .. } = check_existing(&storage, &meta, &args.dir, args.json)?;
    if !have.is_complete() {
        bail!(
            "{} holds {} of {} pieces of {}: bt seed needs the complete, correct data",
            args.dir.display(),
            have.count(),
            have.len(),
            meta.info.name
        );
    }
    save_resume(&storage, &meta, &args.dir, &have, None, seeding);
    let mut display = Display::new(args.json, args.verbose, meta.info.layout.total_length());
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut config = SessionConfig::default();
    args.limits.apply(&mut config);
    config.encryption = Some(args.encryption.into());
    let config = client_config(config, &args.transport);
    let run = Run {
        meta: &meta,
        dir: &args.dir,
        storage,
        have,
        config,
        listen: args.listen,
        peers: &[],
        stop: StopWhen::Interrupted,
        max_half_open: args.limits.max_half_open(),
        resume_interval: RESUME_SAVE_INTERVAL,
        dht: &args.dht,
        priorities: None,
        rates: args.limits.rates(),
        goal: args.goals.goal(),
        seeding,
        serve: &args.serve,
    };
    let storage = run.storage.clone();
    let finished = runtime.block_on(run_driver(run, &mut display))?;
    display.bar.finish_and_clear();
    let done = finished.first().context("the driver ran no torrent")?;
    let seeding = done.status.seeding.unwrap_or(seeding);
    save_resume(&storage, &meta, &args.dir, &done.have, None, seeding);
    display.summary(&RunSummary::new(
        finished.outcome,
        done,
        display.started.elapsed(),
        Some(&meta),
        None,
    ));
    Ok(())
}

/// `bt get --announce-only`: announces `started` to every tracker of the torrent (each URL of
/// each tier, not just the first that answers), prints each answer, then announces `stopped` to
/// those that answered so no tracker keeps listing a peer that is not there.
fn announce_only(meta: &Metainfo, args: &GetArgs) -> anyhow::Result<()> {
    let urls: Vec<&String> = meta.trackers.iter().flatten().collect();
    if urls.is_empty() {
        bail!("{} names no tracker", args.torrent);
    }
    let mut rng = Rng::new(seed_from_clock());
    let mut id = *b"-BT0100-000000000000";
    rng.fill(&mut id[8..]);
    let port = match args.listen.port() {
        0 => 6881,
        p => p,
    };
    let request = |event| AnnounceRequest {
        info_hash: meta.info_hash,
        peer_id: PeerId(id),
        port,
        uploaded: 0,
        downloaded: 0,
        left: meta.info.layout.total_length(),
        event,
        numwant: Some(200),
        key: 0x6274_0001,
        tracker_id: None,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let clock = runtime.block_on(async { Clock::start() });
    let mut answered = 0;
    for url in urls {
        let tracker = match TrackerUrl::parse(url) {
            Ok(t) => t,
            Err(e) => {
                announce_line(args.json, url, &Err(e.to_string()));
                continue;
            }
        };
        let started = runtime.block_on(announce(
            &TokioNet,
            clock,
            &tracker,
            request(AnnounceEvent::Started),
            |_| None,
            &mut rng,
        ));
        match &started.result {
            Ok(r) => {
                answered += 1;
                announce_line(args.json, url, &Ok(r));
                let cached = started.udp;
                let _ = runtime.block_on(announce(
                    &TokioNet,
                    clock,
                    &tracker,
                    request(AnnounceEvent::Stopped),
                    |addr| cached.filter(|(a, _)| *a == addr).map(|(_, c)| c),
                    &mut rng,
                ));
            }
            Err(e) => announce_line(args.json, url, &Err(e.to_string())),
        }
    }
    if answered == 0 {
        bail!("no tracker answered");
    }
    Ok(())
}

fn announce_line(json: bool, url: &str, result: &Result<&AnnounceResponse, String>) {
    match (json, result) {
        (true, Ok(r)) => println!(
            "{}",
            serde_json::json!({
                "event": "tracker_answer", "url": url,
                "peers": r.peers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "seeders": r.complete, "leechers": r.incomplete,
                "interval_s": r.interval.as_secs(),
                "min_interval_s": r.min_interval.map(|d| d.as_secs()),
                "warning": r.warning,
            })
        ),
        (true, Err(e)) => println!(
            "{}",
            serde_json::json!({"event": "tracker_error", "url": url, "error": e})
        ),
        (false, Ok(r)) => {
            println!(
                "{url}: {}, interval {}",
                describe_answer(r, None),
                humantime::format_duration(r.interval)
            );
            if let Some(w) = &r.warning {
                println!("  warning: {w}");
            }
            for p in &r.peers {
                println!("  {p}");
            }
        }
        (false, Err(e)) => println!("{url}: {e}"),
    }
}
