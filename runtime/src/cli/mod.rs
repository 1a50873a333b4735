//! The `bt` command line: argument definitions (clap) and dispatch. Subcommands that are not built
//! yet are not defined, so they do not appear in `--help`.

mod create;
mod dht;
mod goals;
mod info;
mod limits;
mod serve;
mod summary;
mod tracker;
mod transfer;
mod transport;

use std::path::Path;

use clap::{Parser, Subcommand};

/// bt: a BitTorrent client.
#[derive(Debug, Parser)]
#[command(name = "bt", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what a .torrent file or magnet link holds.
    Info {
        /// A .torrent file, or a magnet: link.
        torrent: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make a .torrent from a file or a folder.
    Create(create::CreateArgs),
    /// Download a torrent from the peers its trackers give and any --peer.
    Get(transfer::GetArgs),
    /// Check the data in a folder and seed it.
    Seed(transfer::SeedArgs),
    /// Run a BitTorrent tracker (HTTP and UDP) until interrupted.
    Tracker(tracker::TrackerArgs),
}

/// Runs the parsed command.
pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Info { torrent, json } => info::run(&torrent, json),
        Command::Create(args) => create::run(args),
        Command::Get(args) => transfer::get(args),
        Command::Seed(args) => transfer::seed(args),
        Command::Tracker(args) => tracker::run(args),
    }
}

/// Reads a `.torrent` file with a bound on its size, naming the file in any error.
/// At most `limit` + 1 bytes are read, so a caller can tell a file over the limit.
pub(crate) fn read_torrent_file(path: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    use std::io::Read;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(bytes)
}
