//! The limits a user can set on `bt get` and `bt seed` (`--max-peers`, `--max-half-open`,
//! `--max-requests`, `--max-peer-requests`, `--max-message-size`, `--max-metadata-size`, and the
//! rates `--download-limit` and `--upload-limit`), and how they reach the protocol's
//! configuration and the driver. Every default protects a user who sets
//! nothing: each bounds what one peer or one torrent file can make bt hold.

use std::path::Path;

use anyhow::{Context, bail};
use bt_protocol::client::MAX_HALF_OPEN;
use bt_protocol::metainfo::{MAX_TORRENT_FILE_SIZE, Metainfo};
use bt_protocol::session::SessionConfig;
use bt_runtime::units::{format_bytes, parse_bytes, parse_rate};

/// Limits shared by `bt get` and `bt seed`.
#[derive(Debug, clap::Args)]
pub(crate) struct LimitArgs {
    /// Most peers connected at once.
    #[arg(long, value_name = "N", default_value_t = 80, value_parser = at_least_one)]
    pub(crate) max_peers: usize,
    /// Most outgoing connections being opened at once (half-open).
    #[arg(long, value_name = "N", default_value_t = MAX_HALF_OPEN, value_parser = at_least_one)]
    max_half_open: usize,
    /// Most of our block requests in flight to one peer.
    #[arg(long, value_name = "N", default_value_t = 250, value_parser = at_least_one)]
    max_requests: usize,
    /// Most requests one peer may queue with us; more close its connection.
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = at_least_one)]
    max_peer_requests: usize,
    /// Longest extension message (BEP 10) a peer may send; a longer one closes its connection.
    #[arg(long, value_name = "BYTES", default_value = "1MiB", value_parser = message_size)]
    max_message_size: u64,
    /// Largest torrent metadata accepted: a .torrent file, or a magnet's info dictionary from peers.
    #[arg(long, value_name = "BYTES", default_value = "64MiB", value_parser = metadata_size)]
    max_metadata_size: u64,
    /// Most block data received per second, over all torrents (`4MiB/s`, `500kB/s`; 0: none).
    #[arg(long, value_name = "RATE", default_value = "0", value_parser = rate, allow_negative_numbers = true)]
    download_limit: u64,
    /// Most block data sent per second, over all torrents (`1MiB/s`, `200kB/s`; 0: none).
    #[arg(long, value_name = "RATE", default_value = "0", value_parser = rate, allow_negative_numbers = true)]
    upload_limit: u64,
}

/// A rate in bytes per second; 0 for none.
fn rate(text: &str) -> Result<u64, String> {
    parse_rate(text).map(|r| r.unwrap_or(0))
}

/// The fewest bytes `--max-message-size` allows: an extension handshake of a real client fits in
/// far less, and a smaller bound would refuse honest peers.
const MIN_MESSAGE_SIZE: u64 = 1024;

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

fn message_size(text: &str) -> Result<u64, String> {
    let n = parse_bytes(text)?;
    if !(MIN_MESSAGE_SIZE..=u64::from(u32::MAX)).contains(&n) {
        return Err(format!(
            "must be between {} and 4 GiB",
            format_bytes(MIN_MESSAGE_SIZE)
        ));
    }
    Ok(n)
}

fn metadata_size(text: &str) -> Result<u64, String> {
    let n = parse_bytes(text)?;
    let max = MAX_TORRENT_FILE_SIZE as u64;
    if n == 0 || n > max {
        return Err(format!("must be between 1 byte and {}", format_bytes(max)));
    }
    Ok(n)
}

impl LimitArgs {
    /// Sets the limits in `config`.
    pub(crate) fn apply(&self, config: &mut SessionConfig) {
        let torrent = &mut config.torrent;
        torrent.max_peers = self.max_peers;
        let peer = &mut torrent.peer;
        peer.max_pipeline = u32::try_from(self.max_requests).unwrap_or(u32::MAX);
        peer.min_pipeline = peer.min_pipeline.min(peer.max_pipeline);
        peer.max_peer_requests = self.max_peer_requests;
        peer.max_extended_len = u32::try_from(self.max_message_size).unwrap_or(u32::MAX);
        // The same bound for a magnet's metadata fetched from peers as for a torrent file.
        torrent.max_metadata_size = u32::try_from(self.max_metadata_size).unwrap_or(u32::MAX);
        config.max_connections = config.max_connections.max(self.max_peers);
    }

    /// Most outgoing connects at once, for [`bt_runtime::driver::Driver::set_max_half_open`].
    pub(crate) fn max_half_open(&self) -> usize {
        self.max_half_open
    }

    /// The global rate limits (download, upload) in bytes per second, `None` for none, for
    /// [`bt_runtime::driver::Driver::set_rate_limits`].
    pub(crate) fn rates(&self) -> (Option<u64>, Option<u64>) {
        let some = |r: u64| (r > 0).then_some(r);
        (some(self.download_limit), some(self.upload_limit))
    }

    /// Reads and parses the torrent at `path`, refusing a file over `--max-metadata-size`.
    pub(crate) fn load(&self, path: &Path) -> anyhow::Result<Metainfo> {
        let bytes = super::read_torrent_file(path, self.max_metadata_size)?;
        if bytes.len() as u64 > self.max_metadata_size {
            bail!(
                "{}: the torrent is larger than --max-metadata-size {}",
                path.display(),
                format_bytes(self.max_metadata_size)
            );
        }
        Metainfo::from_bytes(&bytes).with_context(|| path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bt_protocol::wire::DEFAULT_MAX_EXTENDED_LEN;

    #[test]
    fn defaults_are_the_protocol_defaults() {
        // Proves setting no flag leaves the protocol's own defaults (the flags only change them).
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            limits: LimitArgs,
        }
        let cli = <Cli as clap::Parser>::try_parse_from(["bt"]).unwrap();
        let mut config = SessionConfig::default();
        cli.limits.apply(&mut config);
        assert_eq!(config, SessionConfig::default());
        assert_eq!(cli.limits.max_half_open(), MAX_HALF_OPEN);
        assert_eq!(
            cli.limits.max_message_size,
            u64::from(DEFAULT_MAX_EXTENDED_LEN)
        );
        assert_eq!(cli.limits.max_metadata_size, MAX_TORRENT_FILE_SIZE as u64);
        assert_eq!(cli.limits.rates(), (None, None));
    }

    #[test]
    fn flags_reach_the_config_and_bad_values_are_refused() {
        // Proves each flag sets its bound, and zero or out-of-range values get a clear error.
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            limits: LimitArgs,
        }
        let cli = <Cli as clap::Parser>::try_parse_from([
            "bt",
            "--max-peers",
            "600",
            "--max-half-open",
            "3",
            "--max-requests",
            "2",
            "--max-peer-requests",
            "7",
            "--max-message-size",
            "64K",
            "--download-limit",
            "1MiB/s",
            "--upload-limit",
            "500kB/s",
        ])
        .unwrap();
        let mut config = SessionConfig::default();
        cli.limits.apply(&mut config);
        assert_eq!(config.torrent.max_peers, 600);
        assert_eq!(config.max_connections, 600);
        assert_eq!(config.torrent.peer.max_pipeline, 2);
        assert_eq!(config.torrent.peer.min_pipeline, 2);
        assert_eq!(config.torrent.peer.max_peer_requests, 7);
        assert_eq!(config.torrent.peer.max_extended_len, 64 * 1024);
        assert_eq!(cli.limits.max_half_open(), 3);
        assert_eq!(cli.limits.rates(), (Some(1 << 20), Some(500_000)));
        for bad in [
            &["--max-peers", "0"][..],
            &["--max-half-open", "x"],
            &["--max-message-size", "10"],
            &["--max-metadata-size", "65M"],
            &["--max-metadata-size", "0"],
            &["--download-limit", "fast"],
            &["--upload-limit", "-1"],
        ] {
            let err = <Cli as clap::Parser>::try_parse_from(["bt"].iter().chain(bad))
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad:?}"
            );
        }
    }
}
