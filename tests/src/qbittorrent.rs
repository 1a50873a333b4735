//! qBittorrent (`qbittorrent-nox` 4.5, Debian) on loopback for the interop tests, driven through
//! its Web API over plain HTTP/1.1 on 127.0.0.1 with a small std-only client (one request per
//! connection, bodies read by their `content-length`, the multipart upload built by hand).
//!
//! Invariants: each instance has its own profile folder (the caller's, inside the test's temp
//! folder) whose configuration is written before it starts: legal notice accepted, Web API without
//! authentication from localhost, TCP only on 127.0.0.1 with several connections per IP, DHT, LSD,
//! PeX, UPnP and peer-country lookups off. The process is killed by its PID when its guard drops;
//! every request has a 5 s timeout and every wait a bound.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::clients::{Proc, START_TIMEOUT, free_port};
use crate::poll_until;

/// The bound on one Web API request (connect, send, and each read).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest Web API answer read (the torrent lists here are a few KiB).
const MAX_BODY: usize = 4 << 20;

/// A `qbittorrent-nox` process with its Web API on 127.0.0.1; killed when dropped.
pub struct Qbittorrent {
    proc: Proc,
    web: SocketAddr,
    port: u16,
}

impl Qbittorrent {
    /// Writes the configuration into `profile` (`profile/qBittorrent/config/qBittorrent.conf`),
    /// starts `qbittorrent-nox --profile=PROFILE --webui-port=PORT` and waits (at most
    /// [`START_TIMEOUT`]) until its Web API answers.
    pub fn start(profile: &Path) -> Qbittorrent {
        let (web_port, port) = (free_port(), free_port());
        let config = profile.join("qBittorrent/config");
        std::fs::create_dir_all(&config).expect("create the qBittorrent profile");
        std::fs::write(config.join("qBittorrent.conf"), config_text(port, web_port))
            .expect("write qBittorrent.conf");
        let mut cmd = Command::new("qbittorrent-nox");
        cmd.arg(format!("--profile={}", profile.display()))
            .arg(format!("--webui-port={web_port}"));
        let qbt = Qbittorrent {
            proc: Proc::spawn("qbittorrent-nox", cmd),
            web: SocketAddr::from((Ipv4Addr::LOCALHOST, web_port)),
            port,
        };
        let mut answer = None;
        let up = poll_until(START_TIMEOUT, || {
            let a = qbt.try_request("GET", "/api/v2/app/version", None);
            let ok = matches!(a, Ok((200, _)));
            answer = Some(a);
            ok.then_some(())
        });
        assert!(
            up.is_some(),
            "qBittorrent's Web API on {} did not answer within {START_TIMEOUT:?}: {answer:?}\n{}",
            qbt.web,
            qbt.proc.log()
        );
        qbt
    }

    /// The address it listens on for peers.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The process (its output).
    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    /// Adds `torrent` (`POST /api/v2/torrents/add`, multipart) to be saved in (or seeded from)
    /// `save_path`, started at once; with `skip_checking` it trusts the data there without hashing
    /// it. Panics unless qBittorrent answers `Ok.`.
    pub fn add(&self, torrent: &Path, save_path: &Path, skip_checking: bool) {
        let file = std::fs::read(torrent).expect("read the torrent file");
        let boundary = "----bt-tests-boundary-7f3a9c";
        let mut body = Vec::new();
        let fields = [
            ("savepath", save_path.display().to_string()),
            ("skip_checking", skip_checking.to_string()),
            ("paused", "false".to_owned()),
        ];
        for (name, value) in fields {
            write!(
                body,
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .expect("write to a Vec");
        }
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"torrents\"; \
             filename=\"t.torrent\"\r\nContent-Type: application/x-bittorrent\r\n\r\n"
        )
        .expect("write to a Vec");
        body.extend_from_slice(&file);
        write!(body, "\r\n--{boundary}--\r\n").expect("write to a Vec");
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let (status, answer) =
            self.request("POST", "/api/v2/torrents/add", Some((&content_type, &body)));
        assert!(
            status == 200 && answer.trim() == "Ok.",
            "qBittorrent refused {}: HTTP {status} {answer:?}\n{}",
            torrent.display(),
            self.proc.log()
        );
    }

    /// What `GET /api/v2/torrents/info?hashes=HASH` says about the torrent (`state`, `progress`,
    /// `uploaded`, `downloaded`, ...), or `None` if qBittorrent does not have it.
    pub fn info(&self, info_hash: &str) -> Option<Value> {
        let (status, body) = self.request(
            "GET",
            &format!("/api/v2/torrents/info?hashes={info_hash}"),
            None,
        );
        assert_eq!(status, 200, "torrents/info answered {status}: {body}");
        let list: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("torrents/info is not JSON ({e}): {body}"));
        list.as_array().and_then(|l| l.first()).cloned()
    }

    /// Polls [`Qbittorrent::info`] (at most `timeout`) until `done` accepts it and returns it;
    /// panics naming `what` with the last answer and the process's output otherwise.
    pub fn wait_torrent(
        &self,
        info_hash: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        let mut last = None;
        poll_until(timeout, || {
            last = self.info(info_hash);
            last.clone().filter(|i| done(i))
        })
        .unwrap_or_else(|| {
            panic!(
                "qBittorrent: not {what} within {timeout:?}; last torrents/info: {last:?}\n{}",
                self.proc.log()
            )
        })
    }

    /// One Web API request; panics with the process's output if it fails.
    fn request(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> (u16, String) {
        self.try_request(method, path, body).unwrap_or_else(|e| {
            panic!(
                "{method} {path} to qBittorrent at {} failed: {e}\n{}",
                self.web,
                self.proc.log()
            )
        })
    }

    /// Sends one HTTP/1.1 request on a fresh connection and reads the status and the body (by
    /// its `content-length`, at most [`MAX_BODY`]).
    fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&self.web, REQUEST_TIMEOUT)?;
        s.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        s.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.web
        )
        .into_bytes();
        if let Some((content_type, bytes)) = body {
            write!(
                request,
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                bytes.len()
            )?;
            request.extend_from_slice(b"\r\n");
            request.extend_from_slice(bytes);
        } else {
            request.extend_from_slice(b"\r\n");
        }
        s.write_all(&request)?;
        let mut reader = BufReader::new(s.take(MAX_BODY as u64 + 64 * 1024));
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad_answer(format!("no HTTP status line: {line:?}")))?;
        let mut length = None;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.trim().eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let length = length.ok_or_else(|| bad_answer("no content-length".to_owned()))?;
        if length > MAX_BODY {
            return Err(bad_answer(format!("a {length}-byte answer")));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

fn bad_answer(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why)
}

/// Whether a `torrents/info` entry is complete and seeding (`progress` 1, state `uploading` or
/// `stalledUP`, that is serving or waiting for leechers).
pub fn is_seeding(info: &Value) -> bool {
    info.get("progress").and_then(Value::as_f64) == Some(1.0)
        && matches!(
            info.get("state").and_then(Value::as_str),
            Some("uploading" | "stalledUP")
        )
}

/// The profile's `qBittorrent.conf`: peers on `port` (TCP, 127.0.0.1 only), the Web API on
/// `web_port` without authentication from localhost.
fn config_text(port: u16, web_port: u16) -> String {
    format!(
        "[LegalNotice]
Accepted=true

[BitTorrent]
Session\\BTProtocol=TCP
Session\\DHTEnabled=false
Session\\LSDEnabled=false
Session\\PeXEnabled=false
Session\\Interface=lo
Session\\InterfaceName=lo
Session\\InterfaceAddress=127.0.0.1
Session\\MultiConnectionsPerIp=true
Session\\Port={port}
Session\\QueueingSystemEnabled=false
Session\\AddTorrentPaused=false

[Preferences]
Connection\\ResolvePeerCountries=false
Connection\\UPnP=false
General\\UseRandomPort=false
WebUI\\Address=127.0.0.1
WebUI\\Port={web_port}
WebUI\\LocalHostAuth=false
WebUI\\CSRFProtection=false
WebUI\\HostHeaderValidation=false
"
    )
}
