//! The DHT flags of `bt get` and `bt seed` (`--no-dht`, `--dht-bootstrap`, `--dht-state`), and
//! where the routing table is kept between runs: `--dht-state`, else
//! `$XDG_DATA_HOME/bt/dht.dat`, else `$HOME/.local/share/bt/dht.dat`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bt_runtime::dht::{DEFAULT_BOOTSTRAP, DhtSetup};

/// The largest routing-table file read (a full table is a few tens of kilobytes).
const MAX_STATE_FILE: u64 = 1024 * 1024;

/// DHT flags shared by `bt get` and `bt seed`.
#[derive(Debug, clap::Args)]
pub(crate) struct DhtArgs {
    /// Do not use the DHT (trackers, PEX and given peers only). Private torrents never use it.
    #[arg(long)]
    no_dht: bool,
    /// A DHT node to start from (repeatable; default: the public routers of libtorrent,
    /// Transmission and uTorrent).
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT")]
    bootstrap: Vec<String>,
    /// Where the DHT routing table is saved between runs.
    #[arg(long = "dht-state", value_name = "FILE")]
    state: Option<PathBuf>,
}

impl DhtArgs {
    /// Whether `--no-dht` was given.
    pub(crate) fn is_off(&self) -> bool {
        self.no_dht
    }

    /// How to start the DHT next to a listener bound at `listening`, or `None` when it is off
    /// (`--no-dht`, or `private`).
    pub(crate) fn setup(&self, listening: SocketAddr, private: bool) -> Option<DhtSetup> {
        if self.no_dht || private {
            return None;
        }
        let bootstrap = if self.bootstrap.is_empty() {
            DEFAULT_BOOTSTRAP.iter().map(|s| (*s).to_owned()).collect()
        } else {
            self.bootstrap.clone()
        };
        Some(DhtSetup {
            bind: listening,
            bootstrap,
            saved: self.state_path().and_then(|p| read_bounded(&p)),
        })
    }

    /// The routing-table file, if there is anywhere to keep it.
    pub(crate) fn state_path(&self) -> Option<PathBuf> {
        if let Some(p) = &self.state {
            return Some(p.clone());
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))?;
        Some(data.join("bt").join("dht.dat"))
    }

    /// Saves the routing table (a temporary file renamed over the old one, so concurrent runs
    /// never leave half a file); a failure is a warning.
    pub(crate) fn save(&self, state: &[u8]) {
        let Some(path) = self.state_path() else {
            return;
        };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, state)?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            eprintln!(
                "bt: warning: could not save the DHT routing table to {}: {e}",
                path.display()
            );
        }
    }
}

fn read_bounded(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_STATE_FILE)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}
