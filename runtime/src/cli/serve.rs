//! `--serve` on `bt get` and `bt seed`: where the HTTP server of [`bt_runtime::serve`] listens,
//! and starting it beside the driver. A bare port means 127.0.0.1; an address that cannot be read
//! is refused by clap in one line (exit code 2).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bt_protocol::metainfo::Metainfo;
use bt_protocol::session::TorrentId;
use bt_protocol::torrent::{Bitfield, FilePriority, TorrentEvent};
use bt_runtime::driver::{Command, Report};
use bt_runtime::serve::{Catalog, Progress, Server, Timeouts};
use bt_runtime::storage::Storage;
use tokio::sync::mpsc;

/// The HTTP server's options, shared by `bt get` and `bt seed`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Stream the torrent's files over HTTP at ADDR:PORT (a bare PORT listens on 127.0.0.1):
    /// `/` lists them, `/files/INDEX/NAME` serves one with Range requests (one range per
    /// request; several get the whole file), `/playlist.m3u` lists the video and audio files
    /// for a player (`mpv http://127.0.0.1:PORT/playlist.m3u`). A read waits until its pieces
    /// are verified, and the pieces it needs are fetched first. With it, `bt get` keeps running
    /// (serving and seeding) after the download completes, until interrupted.
    #[arg(long, value_name = "ADDR:PORT", value_parser = serve_addr)]
    serve: Option<SocketAddr>,
    /// Close an HTTP connection idle this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration, hide = true)]
    serve_idle_timeout: Duration,
    /// End a response that waited this long for a piece or for its client.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration, hide = true)]
    serve_stall_timeout: Duration,
}

fn serve_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    text.parse()
        .map_err(|_| format!("`{text}` is not ADDR:PORT (say 127.0.0.1:8080) or a port"))
}

impl ServeArgs {
    /// Whether `--serve` was given.
    pub(crate) fn enabled(&self) -> bool {
        self.serve.is_some()
    }

    /// Starts the server for torrent `torrent` of `meta` (the files `priorities` chose, the
    /// pieces `have` verified), if `--serve` was given; `readers` is the driver's command channel.
    /// Call it inside the tokio runtime.
    pub(crate) fn start<D: Storage + 'static>(
        &self,
        torrent: TorrentId,
        meta: &Metainfo,
        priorities: Option<&[FilePriority]>,
        storage: Arc<D>,
        have: Bitfield,
        readers: mpsc::Sender<Command>,
    ) -> anyhow::Result<Option<Serving>> {
        let Some(addr) = self.serve else {
            return Ok(None);
        };
        let progress = Progress::new(have);
        let server = Server::start(
            addr,
            Catalog::new(torrent, &meta.info, priorities),
            meta.info.layout.clone(),
            storage,
            progress.clone(),
            readers,
            Timeouts {
                idle: self.serve_idle_timeout,
                stall: self.serve_stall_timeout,
            },
        )
        .with_context(|| format!("cannot serve HTTP on {addr}"))?;
        Ok(Some(Serving { server, progress }))
    }
}

/// A running server and the progress it waits on.
pub(crate) struct Serving {
    server: Server,
    progress: Progress,
}

impl Serving {
    /// The URL of its index page.
    pub(crate) fn url(&self) -> String {
        self.server.url()
    }

    /// Sees the driver's reports: a verified piece can be served from now on.
    pub(crate) fn observe(&self, report: &Report) {
        if let Report::Event(TorrentEvent::PieceVerified(p)) = report {
            self.progress.mark_verified(p.get());
        }
    }
}
