//! `bt tracker`: serves a BitTorrent tracker (HTTP and UDP) until Ctrl-C or SIGTERM. Says
//! where it listens on stderr (and as JSON events on stdout with `--json`), then stays quiet
//! apart from socket errors and, with `--json`, a status line when something changed.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bt_protocol::metainfo::InfoHash;
use bt_protocol::tracker::{ServerStats, TrackerConfig, TrackerServer};
use bt_runtime::net::TokioNet;
use bt_runtime::trackerd::{Trackerd, TrackerdReport};

/// The address served when neither --http nor --udp is given (HTTP and UDP both).
const DEFAULT_ADDR: &str = "0.0.0.0:6969";

/// Arguments of `bt tracker`.
#[derive(Debug, clap::Args)]
pub(crate) struct TrackerArgs {
    /// Serve HTTP announces and scrapes here (without --http or --udp: both on 0.0.0.0:6969).
    #[arg(long, value_name = "ADDR:PORT")]
    http: Option<SocketAddr>,
    /// Serve UDP announces and scrapes (BEP 15) here.
    #[arg(long, value_name = "ADDR:PORT")]
    udp: Option<SocketAddr>,
    /// Seconds between a client's announces; a peer silent for twice this is forgotten.
    #[arg(long, value_name = "SECS", default_value_t = 1800,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    interval: u64,
    /// The `min interval` given to clients, in seconds (at most --interval; default 60).
    #[arg(long, value_name = "SECS")]
    min_interval: Option<u64>,
    /// Serve only this torrent, by its 40-hex-digit info hash (repeatable); others are refused.
    #[arg(long = "allow", value_name = "INFO_HASH")]
    allow: Vec<String>,
    /// Print newline-delimited JSON events on stdout.
    #[arg(long)]
    json: bool,
}

fn parse_info_hash(text: &str) -> anyhow::Result<InfoHash> {
    let text = text.trim();
    if text.len() != 40 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("`{text}` is not an info hash (40 hex digits)");
    }
    let mut hash = [0u8; 20];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("checked hex digits");
    }
    Ok(InfoHash(hash))
}

fn seed_from_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()).rotate_left(32)
}

fn stats_json(torrents: usize, peers: usize, s: &ServerStats) -> serde_json::Value {
    serde_json::json!({
        "torrents": torrents, "peers": peers, "announces": s.announces, "scrapes": s.scrapes,
        "connects": s.connects, "refused": s.refused, "bad_requests": s.bad_requests,
        "expired": s.expired,
    })
}

/// Runs `bt tracker`.
pub(crate) fn run(args: TrackerArgs) -> anyhow::Result<()> {
    let (http, udp) = match (args.http, args.udp) {
        (None, None) => {
            let addr: SocketAddr = DEFAULT_ADDR.parse().expect("a valid address");
            (Some(addr), Some(addr))
        }
        given => given,
    };
    let whitelist = if args.allow.is_empty() {
        None
    } else {
        Some(
            args.allow
                .iter()
                .map(|h| parse_info_hash(h))
                .collect::<anyhow::Result<BTreeSet<_>>>()?,
        )
    };
    let interval = Duration::from_secs(args.interval);
    let defaults = TrackerConfig::default();
    let config = TrackerConfig {
        interval,
        min_interval: args
            .min_interval
            .map_or(defaults.min_interval, Duration::from_secs)
            .min(interval),
        whitelist,
        ..defaults
    };
    let json = args.json;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let stop = interrupted();
        let server = TrackerServer::new(config, seed_from_clock());
        let daemon = Trackerd::bind(&TokioNet, server, http, udp).await?;
        for (scheme, addr) in [("http", daemon.http_addr()), ("udp", daemon.udp_addr())] {
            if let Some(addr) = addr {
                let url = format!("{scheme}://{addr}/announce");
                eprintln!("tracker listening on {url}");
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "event": "listening", "proto": scheme, "addr": addr.to_string(),
                            "url": url,
                        })
                    );
                }
            }
        }
        let server = daemon
            .run(stop, |report| match report {
                TrackerdReport::Status {
                    torrents,
                    peers,
                    stats,
                } => {
                    if json {
                        let mut line = stats_json(*torrents, *peers, stats);
                        line["event"] = "status".into();
                        println!("{line}");
                    }
                }
                TrackerdReport::IoError { what, error } => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"event": "io_error", "what": what, "error": error})
                        );
                    } else {
                        eprintln!("bt tracker: warning: {what}: {error}");
                    }
                }
            })
            .await;
        let stats = server.stats();
        if json {
            let mut line = stats_json(server.torrent_count(), server.peer_count(), &stats);
            line["event"] = "stopped".into();
            println!("{line}");
        }
        eprintln!(
            "tracker stopped: {} announces, {} scrapes served; {} peers of {} torrents known",
            stats.announces,
            stats.scrapes,
            server.peer_count(),
            server.torrent_count()
        );
        anyhow::Ok(())
    })
}

/// A future that resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed by this
/// call (inside the runtime), before the tracker says it listens, so a signal sent as soon as
/// it does stops it cleanly.
fn interrupted() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt()).ok();
        let term = signal(SignalKind::terminate()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                biased;
                () = wait(int) => {}
                () = wait(term) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_hashes_parse_from_hex() {
        // Proves --allow takes 40 hex digits in either case and refuses anything else.
        let h = parse_info_hash(&"aB".repeat(20)).unwrap();
        assert_eq!(h, InfoHash([0xab; 20]));
        assert!(parse_info_hash("abc").is_err());
        assert!(parse_info_hash(&"zz".repeat(20)).is_err());
    }
}
