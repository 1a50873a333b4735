//! Transmission (`transmission-cli` 3.00, Debian) as a seeder on loopback for the interop tests.
//!
//! Transmission never dials 127.0.0.0/8 peers it learns of (it treats loopback as a martian
//! address) but accepts incoming connections, so it is only ever a seeder here: the leecher learns
//! its address from the tracker and dials it. It rechokes every 10 s, so expect about 10 s before
//! data flows.
//!
//! Invariants: each instance has its own configuration folder (`settings.json` written before it
//! starts: 127.0.0.1 only, RPC, DHT, LPD, PEX, uTP and port forwarding off, no encryption). Its
//! stdout is a status line rewritten with `\r` once a second, so it goes to a file, not through
//! [`crate::Proc`]'s line reader; the process is killed by its PID when its guard drops, and every
//! wait is bounded.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::clients::{START_TIMEOUT, free_port};
use crate::{POLL, poll_until};

/// A `transmission-cli` seeder listening on 127.0.0.1 and announcing to the torrent's trackers;
/// killed when dropped.
pub struct TransmissionSeeder {
    child: Child,
    port: u16,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl TransmissionSeeder {
    /// Starts `transmission-cli -g WORK/config -w DIR -p PORT TORRENT`, seeding `torrent` from
    /// `dir` (the folder that holds the torrent's name), with its configuration and output files
    /// in `work`; waits (at most [`START_TIMEOUT`]) until it accepts connections. It verifies the
    /// data before it announces itself complete: wait for the tracker to count it as a seeder.
    pub fn start(torrent: &Path, dir: &Path, work: &Path) -> TransmissionSeeder {
        let config = work.join("config");
        std::fs::create_dir_all(&config).expect("create Transmission's config folder");
        let port = free_port();
        let settings = serde_json::json!({
            "bind-address-ipv4": "127.0.0.1",
            "bind-address-ipv6": "::1",
            "peer-port": port,
            "peer-port-random-on-start": false,
            "rpc-enabled": false,
            "dht-enabled": false,
            "lpd-enabled": false,
            "pex-enabled": false,
            "utp-enabled": false,
            "port-forwarding-enabled": false,
            "encryption": 0,
            "message-level": 2,
        });
        std::fs::write(config.join("settings.json"), settings.to_string())
            .expect("write settings.json");
        let (stdout, stderr) = (work.join("stdout.txt"), work.join("stderr.txt"));
        let mut cmd = Command::new("transmission-cli");
        cmd.arg("-g")
            .arg(&config)
            .arg("-w")
            .arg(dir)
            .args(["-p", &port.to_string()])
            .arg(torrent)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("create stdout.txt"))
            .stderr(File::create(&stderr).expect("create stderr.txt"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start transmission-cli ({cmd:?}): {e}"));
        let mut seeder = TransmissionSeeder {
            child,
            port,
            stdout,
            stderr,
        };
        let up = poll_until(START_TIMEOUT, || {
            if let Ok(Some(status)) = seeder.child.try_wait() {
                panic!("transmission-cli exited ({status})\n{}", seeder.log());
            }
            TcpStream::connect_timeout(&seeder.addr(), POLL).ok()
        });
        assert!(
            up.is_some(),
            "transmission-cli did not accept on port {port} within {START_TIMEOUT:?}\n{}",
            seeder.log()
        );
        seeder
    }

    /// The address it listens on for peers.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The share ratio on its latest status line (`Seeding, uploading to 1 of 1 peer(s), 470 kB/s
    /// [1.00]`): bytes uploaded over the torrent's size for a seeder that downloaded nothing.
    pub fn ratio(&self) -> Option<f64> {
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        out.rsplit(['\r', '\n']).find_map(|line| {
            let open = line.rfind('[')?;
            let close = open + line[open..].find(']')?;
            line[open + 1..close].trim().parse().ok()
        })
    }

    /// Polls [`TransmissionSeeder::ratio`] (at most `timeout`) until it reaches `at_least`;
    /// panics with its output otherwise.
    pub fn wait_ratio(&self, at_least: f64, timeout: Duration) {
        let reached = poll_until(timeout, || self.ratio().filter(|r| *r >= at_least));
        assert!(
            reached.is_some(),
            "Transmission's ratio is {:?} after {timeout:?}, wanted {at_least}\n{}",
            self.ratio(),
            self.log()
        );
    }

    /// Its latest status line and the tail of its log, for a failure message.
    pub fn log(&self) -> String {
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let status = out.rsplit(['\r', '\n']).find(|l| !l.trim().is_empty());
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let skip = err.lines().count().saturating_sub(40);
        let tail: Vec<&str> = err.lines().skip(skip).collect();
        format!(
            "--- transmission-cli status ---\n{}\n--- transmission-cli log (last 40 lines) ---\n{}",
            status.unwrap_or(""),
            tail.join("\n")
        )
    }
}

impl Drop for TransmissionSeeder {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
