//! `bt create`: make a `.torrent` from a file or a folder, hashing on all cores with a progress bar
//! on a terminal. The same input and options give the same bytes.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bt_protocol::metainfo::TorrentOptions;
use bt_runtime::create::{auto_piece_length, check_piece_length, create_torrent, walk};
use bt_runtime::units::{format_bytes, format_count, parse_bytes};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `bt create`.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// The file or folder to share.
    path: PathBuf,
    /// Tracker announce URL; repeat for more tiers. Several URLs joined by commas form one tier.
    #[arg(short = 't', long = "tracker", value_name = "URL")]
    trackers: Vec<String>,
    /// Piece length in bytes (a power of two, 16 KiB to 512 MiB; 256K and 1M are understood).
    /// Default: chosen for about 1,500 pieces.
    #[arg(short = 'l', long, value_name = "BYTES", value_parser = parse_bytes)]
    piece_length: Option<u64>,
    /// Mark the torrent private (BEP 27): peers only from its trackers.
    #[arg(short = 'p', long)]
    private: bool,
    /// A web seed URL (BEP 19); repeat for more.
    #[arg(short = 'w', long = "web-seed", value_name = "URL")]
    web_seeds: Vec<String>,
    /// A comment stored in the torrent.
    #[arg(short = 'c', long)]
    comment: Option<String>,
    /// Record the current time as the creation date (then the output differs from run to run).
    #[arg(long)]
    date: bool,
    /// Where to write the torrent. Default: NAME.torrent in the current folder.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Overwrite the output file if it exists.
    #[arg(short = 'f', long)]
    force: bool,
    /// Hashing threads. Default: one per core.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: CreateArgs) -> anyhow::Result<()> {
    let source = walk(&args.path)?;
    let total = source.total_length();
    for skipped in &source.skipped {
        eprintln!(
            "bt: warning: {}: not a regular file (or a link to a folder); left out",
            skipped.display()
        );
    }
    let piece_length = match args.piece_length {
        Some(pl) => check_piece_length(pl)?,
        None => auto_piece_length(total),
    };
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.torrent", source.name)));
    if output.exists() && !args.force {
        bail!("{} exists; use --force to overwrite it", output.display());
    }
    let trackers: Vec<Vec<String>> = args
        .trackers
        .iter()
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|tier| !tier.is_empty())
        .collect();
    let options = TorrentOptions {
        trackers,
        web_seeds: args.web_seeds.clone(),
        private: args.private,
        comment: args.comment.clone(),
        created_by: Some(concat!("bt/", env!("CARGO_PKG_VERSION")).to_owned()),
        creation_date: if args.date {
            Some(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64)
        } else {
            None
        },
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

    // Drawn only when stderr is a terminal; indicatif hides itself otherwise.
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "hashing {bar:40} {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("the template is valid"),
    );
    let (bytes, meta) = create_torrent(&source, piece_length, &options, threads, &mut |done| {
        bar.set_position(done)
    })?;
    bar.finish_and_clear();

    let mut file = if args.force {
        std::fs::File::create(&output)
    } else {
        std::fs::File::create_new(&output)
    }
    .with_context(|| format!("cannot write {}", output.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", output.display()))?;

    let layout = &meta.info.layout;
    if args.json {
        let summary = serde_json::json!({
            "torrent": output,
            "name": meta.info.name,
            "info_hash": meta.info_hash.to_hex(),
            "files": meta.info.files.len(),
            "total_size": layout.total_length(),
            "piece_length": layout.piece_length(),
            "piece_count": layout.piece_count(),
        });
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "wrote {}: {} ({} in {} file{}, {} pieces of {}), info hash {}",
            output.display(),
            meta.info.name,
            format_bytes(layout.total_length()),
            format_count(meta.info.files.len() as u64),
            if meta.info.files.len() == 1 { "" } else { "s" },
            format_count(u64::from(layout.piece_count())),
            format_bytes(u64::from(layout.piece_length())),
            meta.info_hash
        );
    }
    Ok(())
}
