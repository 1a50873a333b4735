//! [`Trackerd`]: a [`TrackerServer`] served over [`Net`] sockets: HTTP on a TCP listener and
//! BEP 15 on a UDP socket, the machine owned by one task.
//!
//! Tasks: the run task owns the machine, its expiry timer (`tokio::time`, through [`Clock`]) and
//! the UDP replies; an accept task takes HTTP connections and gives each its own task, which
//! reads the request head ([`http_head_end`]), hands it to the run task over a channel, writes
//! the answer and closes; a receive task reads datagrams and hands them over the same channel.
//! Every `select!` is `biased;`.
//!
//! Bounds: at most [`MAX_HTTP_CONNECTIONS`] HTTP connections at once (more wait in the listen
//! backlog); a request of at most [`TrackerConfig::max_request_len`] bytes read within
//! [`HTTP_READ_TIMEOUT`], the answer written within [`HTTP_WRITE_TIMEOUT`] (otherwise the
//! connection is closed unanswered); datagrams read into one 64 KiB buffer; at most
//! [`INPUT_QUEUE`] requests waiting for the machine (then the readers wait, and the system drops
//! datagrams).
//!
//! [`TrackerConfig::max_request_len`]: bt_protocol::tracker::TrackerConfig::max_request_len

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bt_protocol::tracker::{ServerStats, TrackerServer, http_head_end};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::net::{Net, NetBoundUdp};
use crate::tracker::Clock;

/// Most HTTP connections served at once.
pub const MAX_HTTP_CONNECTIONS: usize = 256;

/// The longest a client may take to send its request, from the accept.
pub const HTTP_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest writing an answer may take.
pub const HTTP_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most requests (HTTP and UDP) waiting for the machine.
pub const INPUT_QUEUE: usize = 256;

/// How often, at most, a [`TrackerdReport::Status`] is given (only when something changed).
pub const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// What [`Trackerd::run`] tells its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackerdReport {
    /// What the tracker holds and has served so far.
    Status {
        /// Torrents with peers.
        torrents: usize,
        /// Peers stored.
        peers: usize,
        /// Requests served.
        stats: ServerStats,
    },
    /// A socket failed; serving goes on.
    IoError {
        /// What was being done: `accept`, `udp receive` or `udp send`.
        what: &'static str,
        /// The system's message.
        error: String,
    },
}

/// What the socket tasks hand to the run task.
enum Input {
    Http {
        ip: IpAddr,
        request: Vec<u8>,
        reply: oneshot::Sender<Vec<u8>>,
    },
    Datagram {
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    IoError {
        what: &'static str,
        error: String,
    },
}

/// A tracker bound to its sockets, ready to [`Trackerd::run`].
pub struct Trackerd<N: Net> {
    server: TrackerServer,
    http: Option<N::Listener>,
    udp: Option<Arc<N::BoundUdp>>,
    http_addr: Option<SocketAddr>,
    udp_addr: Option<SocketAddr>,
}

impl<N: Net> Trackerd<N> {
    /// Binds the HTTP listener and the UDP socket that are asked for (port 0 picks one).
    pub async fn bind(
        net: &N,
        server: TrackerServer,
        http: Option<SocketAddr>,
        udp: Option<SocketAddr>,
    ) -> io::Result<Self> {
        let (listener, http_addr) = match http {
            Some(addr) => {
                let listener = net
                    .listen(addr)
                    .await
                    .map_err(|e| with_addr(e, "http", addr))?;
                let local = N::local_addr(&listener)?;
                (Some(listener), Some(local))
            }
            None => (None, None),
        };
        let (socket, udp_addr) = match udp {
            Some(addr) => {
                let socket = net
                    .udp_bind(addr)
                    .await
                    .map_err(|e| with_addr(e, "udp", addr))?;
                let local = socket.local_addr()?;
                (Some(Arc::new(socket)), Some(local))
            }
            None => (None, None),
        };
        Ok(Trackerd {
            server,
            http: listener,
            udp: socket,
            http_addr,
            udp_addr,
        })
    }

    /// Where HTTP is served, if it is.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Where UDP is served, if it is.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// Serves until `shutdown` resolves, then returns the machine (for its final counters).
    /// `report` hears socket errors and, every [`STATUS_INTERVAL`] when something changed, the
    /// status.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
        mut report: impl FnMut(&TrackerdReport),
    ) -> TrackerServer {
        let Trackerd {
            mut server,
            http,
            udp,
            ..
        } = self;
        let clock = Clock::start();
        let max_request_len = server.config().max_request_len;
        // `tx` stays alive here, so `rx.recv()` never ends while the loop runs.
        let (tx, mut rx) = mpsc::channel(INPUT_QUEUE);
        let mut tasks = Vec::new();
        if let Some(listener) = http {
            tasks.push(tokio::spawn(accept_loop::<N>(
                listener,
                tx.clone(),
                max_request_len,
            )));
        }
        if let Some(socket) = &udp {
            tasks.push(tokio::spawn(receive_loop(socket.clone(), tx.clone())));
        }
        let mut tick = tokio::time::interval(STATUS_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status = None;
        tokio::pin!(shutdown);
        loop {
            let deadline = server.poll_timeout().map(|at| clock.deadline(at));
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(input) = rx.recv() => match input {
                    Input::Http { ip, request, reply } => {
                        let answer = server.handle_http_request(clock.now(), ip, &request);
                        let _ = reply.send(answer);
                    }
                    Input::Datagram { from, bytes } => {
                        if let Some(answer) = server.handle_datagram(clock.now(), from, &bytes)
                            && let Some(socket) = &udp
                            && let Err(e) = socket.send_to(&answer, from).await
                        {
                            report(&TrackerdReport::IoError {
                                what: "udp send",
                                error: format!("to {from}: {e}"),
                            });
                        }
                    }
                    Input::IoError { what, error } => {
                        report(&TrackerdReport::IoError { what, error });
                    }
                },
                () = sleep_until(deadline) => server.handle_timeout(clock.now()),
                _ = tick.tick() => {
                    let status = TrackerdReport::Status {
                        torrents: server.torrent_count(),
                        peers: server.peer_count(),
                        stats: server.stats(),
                    };
                    if last_status.as_ref() != Some(&status) {
                        report(&status);
                        last_status = Some(status);
                    }
                }
            }
        }
        for task in tasks {
            task.abort();
        }
        server
    }
}

fn with_addr(e: io::Error, what: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(e.kind(), format!("cannot serve {what} on {addr}: {e}"))
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Accepts HTTP connections, each served by its own task, at most [`MAX_HTTP_CONNECTIONS`] at
/// once.
async fn accept_loop<N: Net>(
    mut listener: N::Listener,
    tx: mpsc::Sender<Input>,
    max_request_len: usize,
) {
    let permits = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        match N::accept(&mut listener).await {
            Ok((reader, writer, addr)) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    http_connection::<N>(reader, writer, addr.ip(), tx, max_request_len).await;
                    drop(permit);
                });
            }
            Err(e) => {
                let error = Input::IoError {
                    what: "accept",
                    error: e.to_string(),
                };
                if tx.send(error).await.is_err() {
                    return;
                }
                // Out of file descriptors, say: give connections time to close.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One HTTP exchange: read the head (bounded in size and time), get the answer from the run
/// task, write it, close.
async fn http_connection<N: Net>(
    mut reader: N::Reader,
    mut writer: N::Writer,
    ip: IpAddr,
    tx: mpsc::Sender<Input>,
    max_request_len: usize,
) {
    let mut request = Vec::with_capacity(1024);
    let read = tokio::time::timeout(HTTP_READ_TIMEOUT, async {
        let mut chunk = [0u8; 4096];
        while http_head_end(&request).is_none() && request.len() <= max_request_len {
            match reader.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => request.extend_from_slice(&chunk[..n]),
                Err(_) => return false,
            }
        }
        true
    })
    .await;
    if read != Ok(true) || request.is_empty() {
        return;
    }
    // Past the bound the machine answers 431 without looking further.
    request.truncate(max_request_len + 1);
    let (reply, answer) = oneshot::channel();
    let input = Input::Http {
        ip: ip.to_canonical(),
        request,
        reply,
    };
    if tx.send(input).await.is_err() {
        return;
    }
    let Ok(answer) = answer.await else {
        return;
    };
    let _ = tokio::time::timeout(HTTP_WRITE_TIMEOUT, async {
        writer.write_all(&answer).await?;
        writer.flush().await?;
        writer.shutdown().await
    })
    .await;
}

/// Reads datagrams and hands them to the run task.
async fn receive_loop<U: NetBoundUdp>(socket: Arc<U>, tx: mpsc::Sender<Input>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let input = match socket.recv_from(&mut buf).await {
            Ok((n, from)) => Input::Datagram {
                from,
                bytes: buf[..n].to_vec(),
            },
            Err(e) => {
                // An ICMP error for an earlier answer, say: one line, then go on.
                tokio::time::sleep(Duration::from_millis(10)).await;
                Input::IoError {
                    what: "udp receive",
                    error: e.to_string(),
                }
            }
        };
        if tx.send(input).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::TokioNet;
    use crate::tracker::announce;
    use bt_protocol::metainfo::InfoHash;
    use bt_protocol::rng::Rng;
    use bt_protocol::tracker::{AnnounceRequest, Event, TrackerConfig, TrackerError, TrackerUrl};
    use bt_protocol::wire::PeerId;

    fn request(port: u16, left: u64) -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash([3; 20]),
            peer_id: PeerId([port as u8; 20]),
            port,
            uploaded: 0,
            downloaded: 0,
            left,
            event: Event::Started,
            numwant: None,
            key: 1,
            tracker_id: None,
        }
    }

    #[tokio::test]
    async fn runtime_announces_reach_the_served_tracker_over_http_and_udp() {
        // Proves the served tracker answers bt's own runtime announces over real loopback
        // sockets, HTTP and UDP sharing one peer store, and hands back the machine on shutdown.
        let server = TrackerServer::new(TrackerConfig::default(), 1);
        let local = "127.0.0.1:0".parse().ok();
        let daemon = Trackerd::bind(&TokioNet, server, local, local)
            .await
            .unwrap();
        let http =
            TrackerUrl::parse(&format!("http://{}/announce", daemon.http_addr().unwrap())).unwrap();
        let udp =
            TrackerUrl::parse(&format!("udp://{}/announce", daemon.udp_addr().unwrap())).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let run = tokio::spawn(daemon.run(
            async {
                let _ = stopped.await;
            },
            |_| {},
        ));
        let clock = Clock::start();
        let mut rng = Rng::new(1);
        let seeder = announce(
            &TokioNet,
            clock,
            &http,
            request(1111, 0),
            |_| None,
            &mut rng,
        )
        .await;
        assert_eq!(seeder.result.unwrap().complete, Some(1));
        let leecher = announce(&TokioNet, clock, &udp, request(2222, 9), |_| None, &mut rng).await;
        let answer = leecher.result.unwrap();
        assert_eq!(answer.peers, ["127.0.0.1:1111".parse().unwrap()]);
        assert_eq!((answer.complete, answer.incomplete), (Some(1), Some(1)));
        let again = announce(
            &TokioNet,
            clock,
            &http,
            request(1111, 0),
            |_| None,
            &mut rng,
        )
        .await;
        assert_eq!(
            again.result.unwrap().peers,
            ["127.0.0.1:2222".parse().unwrap()]
        );
        // A wrong path gets an HTTP error, reported as such.
        let wrong = TrackerUrl::parse(&format!("http://{}/nothing", http.authority())).unwrap();
        let err = announce(
            &TokioNet,
            clock,
            &wrong,
            request(3333, 9),
            |_| None,
            &mut rng,
        )
        .await;
        assert!(matches!(err.result, Err(TrackerError::Failure(m)) if m.contains("not found")));
        stop.send(()).unwrap();
        let server = run.await.unwrap();
        assert_eq!((server.peer_count(), server.stats().announces), (2, 3));
    }

    #[tokio::test]
    async fn slow_or_oversized_http_requests_are_bounded() {
        // Proves a request larger than the bound gets 431 without waiting for its end, and the
        // tracker keeps serving others meanwhile.
        use tokio::net::TcpStream;
        let config = TrackerConfig {
            max_request_len: 256,
            ..TrackerConfig::default()
        };
        let server = TrackerServer::new(config, 1);
        let daemon = Trackerd::bind(&TokioNet, server, "127.0.0.1:0".parse().ok(), None)
            .await
            .unwrap();
        let addr = daemon.http_addr().unwrap();
        assert_eq!(daemon.udp_addr(), None);
        let run = tokio::spawn(daemon.run(std::future::pending(), |_| {}));
        // A client that says nothing holds its connection but not the tracker.
        let _idle = TcpStream::connect(addr).await.unwrap();
        let mut big = TcpStream::connect(addr).await.unwrap();
        big.write_all(&[b'a'; 1000]).await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), big.read_to_end(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert!(reply.starts_with(b"HTTP/1.1 431 "), "{reply:?}");
        run.abort();
    }
}
