//! [`Driver`]: runs the protocol [`Session`] on tokio for one torrent.
//!
//! One driver task owns the session (no locks around protocol state). Each connection has a reader
//! task (socket -> driver, through a bounded channel, so a busy driver slows readers down) and a
//! writer task (driver -> socket; after each write it reports the bytes sent, which is the
//! protocol's backpressure, see `Session::handle_sent`). Disk work runs on the blocking pool and
//! comes back as an input. Time comes only from `tokio::time`, so a simulated clock drives it in
//! the simulator; every `select!` is `biased;` for determinism. Disk work goes to a [`Storage`]
//! ([`crate::storage::FsStorage`] for real files) on the blocking pool.
//!
//! Bounds: the input channel holds [`INPUT_QUEUE`] messages; each read is at most [`READ_CHUNK`]
//! bytes; a writer's queue is bounded by the protocol (blocks are queued only under its send-buffer
//! watermark; control messages are small and few per event).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bt_protocol::io::{ConnId, DiskDone};
use bt_protocol::metainfo::Metainfo;
use bt_protocol::session::{Output, Session, SessionConfig, TorrentId};
use bt_protocol::time::Instant as ProtoInstant;
use bt_protocol::torrent::{Bitfield, TorrentEvent};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::net::Net;
use crate::storage::Storage;

/// Messages the input channel holds before readers wait.
pub const INPUT_QUEUE: usize = 256;

/// The most bytes one socket read hands to the driver.
pub const READ_CHUNK: usize = 64 * 1024;

/// When [`Driver::run`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopWhen {
    /// As soon as every piece is verified (`bt get`).
    Complete,
    /// Only on interrupt (`bt seed`, `bt get --seed`).
    Interrupted,
}

/// How [`Driver::run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every piece is verified.
    Complete,
    /// Ctrl-C (or the stop handle) ended it first.
    Interrupted,
}

/// What [`Driver::run`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// Why it stopped.
    pub outcome: Outcome,
    /// The last snapshot.
    pub status: Status,
    /// The verified pieces, for the resume file.
    pub have: Bitfield,
}

/// A snapshot for progress displays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Verified pieces.
    pub have: u32,
    /// All pieces.
    pub pieces: u32,
    /// Bytes verified.
    pub verified_bytes: u64,
    /// Total bytes.
    pub total_bytes: u64,
    /// Block bytes received.
    pub downloaded: u64,
    /// Block bytes sent.
    pub uploaded: u64,
    /// Bytes per second received (rolling window).
    pub download_rate: u64,
    /// Bytes per second sent (rolling window).
    pub upload_rate: u64,
    /// Connected peers.
    pub peers: usize,
}

/// What the driver hands to its caller as things happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// A periodic snapshot.
    Status(Status),
    /// A protocol event (piece verified, peer connected, ...).
    Event(TorrentEvent),
    /// A connection attempt failed.
    ConnectFailed {
        /// Where to.
        addr: SocketAddr,
        /// Why.
        error: String,
    },
}

enum Input<N: Net> {
    Read {
        conn: ConnId,
        data: Bytes,
    },
    Sent {
        conn: ConnId,
        bytes: usize,
    },
    Eof {
        conn: ConnId,
    },
    Connected {
        conn: ConnId,
        addr: SocketAddr,
        reader: N::Reader,
        writer: N::Writer,
    },
    ConnectFailed {
        addr: SocketAddr,
        error: std::io::Error,
    },
    Accepted {
        reader: N::Reader,
        writer: N::Writer,
        addr: SocketAddr,
    },
    Disk {
        torrent: TorrentId,
        done: DiskDone,
    },
}

struct ConnTasks {
    writer: mpsc::UnboundedSender<Bytes>,
    reader: JoinHandle<()>,
}

/// Drives one torrent's protocol session over a [`Net`] and a [`Storage`].
pub struct Driver<N: Net, D: Storage + 'static> {
    net: N,
    disk: Arc<D>,
    session: Session,
    torrent: TorrentId,
    epoch: tokio::time::Instant,
    tx: mpsc::Sender<Input<N>>,
    rx: mpsc::Receiver<Input<N>>,
    conns: BTreeMap<ConnId, ConnTasks>,
    next_conn: u64,
    listener: Option<JoinHandle<()>>,
    local_addr: Option<SocketAddr>,
    status_interval: Duration,
}

impl<N: Net, D: Storage + 'static> Driver<N, D> {
    /// A driver for `meta`, with the pieces `have` already verified on `disk`.
    pub fn new(
        net: N,
        disk: Arc<D>,
        meta: &Metainfo,
        have: Bitfield,
        config: SessionConfig,
        seed: u64,
    ) -> Result<Self, bt_protocol::session::SessionError> {
        let mut session = Session::new(config, seed);
        let torrent = session.add_torrent(
            meta.info_hash,
            meta.info.layout.clone(),
            meta.info.pieces.clone(),
            have,
        )?;
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        Ok(Driver {
            net,
            disk,
            session,
            torrent,
            epoch: tokio::time::Instant::now(),
            tx,
            rx,
            conns: BTreeMap::new(),
            next_conn: 1,
            listener: None,
            local_addr: None,
            status_interval: Duration::from_secs(1),
        })
    }

    /// How often [`Report::Status`] is produced (default 1 s).
    pub fn set_status_interval(&mut self, every: Duration) {
        self.status_interval = every;
    }

    /// Starts accepting peers on `addr`; returns the bound address.
    pub async fn listen(&mut self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let mut listener = self.net.listen(addr).await?;
        let local = N::local_addr(&listener)?;
        let tx = self.tx.clone();
        self.listener = Some(tokio::spawn(async move {
            loop {
                match N::accept(&mut listener).await {
                    Ok((reader, writer, addr)) => {
                        if tx
                            .send(Input::Accepted {
                                reader,
                                writer,
                                addr,
                            })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    // A failed accept (say, out of file descriptors) must not spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }));
        self.local_addr = Some(local);
        Ok(local)
    }

    /// The address peers can reach us on, once listening.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Dials a peer in the background.
    pub fn add_peer(&mut self, addr: SocketAddr) {
        let conn = self.alloc_conn();
        let net = self.net.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let input = match tokio::time::timeout(Duration::from_secs(10), net.connect(addr)).await
            {
                Ok(Ok((reader, writer))) => Input::Connected {
                    conn,
                    addr,
                    reader,
                    writer,
                },
                Ok(Err(error)) => Input::ConnectFailed { addr, error },
                Err(_) => Input::ConnectFailed {
                    addr,
                    error: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no answer within 10 s",
                    ),
                },
            };
            let _ = tx.send(input).await;
        });
    }

    fn alloc_conn(&mut self) -> ConnId {
        let c = ConnId(self.next_conn);
        self.next_conn += 1;
        c
    }

    fn now(&self) -> ProtoInstant {
        let micros = tokio::time::Instant::now()
            .saturating_duration_since(self.epoch)
            .as_micros();
        ProtoInstant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    fn deadline(&self, at: ProtoInstant) -> tokio::time::Instant {
        self.epoch + Duration::from_micros(at.as_micros())
    }

    /// A snapshot of progress.
    pub fn status(&self) -> Status {
        let t = self
            .session
            .torrent(self.torrent)
            .expect("the driver's torrent exists");
        let stats = t.stats();
        let (download_rate, upload_rate) = t.rates(self.now());
        Status {
            have: t.have().count(),
            pieces: t.layout().piece_count(),
            verified_bytes: t
                .have()
                .ones()
                .filter_map(|i| t.layout().piece(i))
                .map(|p| u64::from(t.layout().piece_len(p)))
                .sum(),
            total_bytes: t.layout().total_length(),
            downloaded: stats.downloaded,
            uploaded: stats.uploaded,
            download_rate,
            upload_rate,
            peers: t.peer_count(),
        }
    }

    fn start_conn(&mut self, conn: ConnId, mut reader: N::Reader, mut writer: N::Writer) {
        let (wtx, mut wrx) = mpsc::unbounded_channel::<Bytes>();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            while let Some(bytes) = wrx.recv().await {
                if writer.write_all(&bytes).await.is_err() {
                    let _ = tx.send(Input::Eof { conn }).await;
                    return;
                }
                if tx
                    .send(Input::Sent {
                        conn,
                        bytes: bytes.len(),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = writer.shutdown().await;
        });
        let tx = self.tx.clone();
        let reader_task = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            loop {
                buf.reserve(READ_CHUNK);
                let mut limited = (&mut reader).take(READ_CHUNK as u64);
                match limited.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(Input::Eof { conn }).await;
                        return;
                    }
                    Ok(_) => {
                        let data = buf.split().freeze();
                        if tx.send(Input::Read { conn, data }).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        self.conns.insert(
            conn,
            ConnTasks {
                writer: wtx,
                reader: reader_task,
            },
        );
    }

    fn close_conn(&mut self, conn: ConnId) {
        if let Some(tasks) = self.conns.remove(&conn) {
            tasks.reader.abort();
            // Dropping the sender ends the writer task after it flushes what is queued.
            drop(tasks.writer);
        }
    }

    /// Carries out every pending output; returns events for the caller.
    fn process_outputs(&mut self, reports: &mut Vec<Report>) {
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::Transmit { conn, bytes } => {
                    if let Some(tasks) = self.conns.get(&conn) {
                        let _ = tasks.writer.send(bytes);
                    }
                }
                Output::Close { conn, .. } => self.close_conn(conn),
                Output::Disk { torrent, op } => {
                    let disk = self.disk.clone();
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        let done = match tokio::task::spawn_blocking(move || disk.perform(op)).await
                        {
                            Ok(done) => done,
                            Err(_) => return, // the blocking pool is shutting down
                        };
                        let _ = tx.send(Input::Disk { torrent, done }).await;
                    });
                }
                Output::Event { event, .. } => reports.push(Report::Event(event)),
            }
        }
    }

    fn handle_input(&mut self, input: Input<N>, reports: &mut Vec<Report>) {
        let now = self.now();
        match input {
            Input::Read { conn, data } => self.session.handle_bytes(now, conn, &data),
            Input::Sent { conn, bytes } => self.session.handle_sent(now, conn, bytes),
            Input::Eof { conn } => {
                self.close_conn(conn);
                self.session.handle_disconnect(now, conn);
            }
            Input::Connected {
                conn,
                addr,
                reader,
                writer,
            } => {
                self.start_conn(conn, reader, writer);
                if self.session.connect(now, self.torrent, conn, addr).is_err() {
                    self.close_conn(conn);
                }
            }
            Input::ConnectFailed { addr, error } => {
                reports.push(Report::ConnectFailed {
                    addr,
                    error: error.to_string(),
                });
            }
            Input::Accepted {
                reader,
                writer,
                addr,
            } => {
                let conn = self.alloc_conn();
                self.start_conn(conn, reader, writer);
                if self.session.accept(now, conn, addr).is_err() {
                    self.close_conn(conn);
                }
            }
            Input::Disk { torrent, done } => self.session.handle_disk(now, torrent, done),
        }
    }

    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.session
            .torrent(self.torrent)
            .is_some_and(|t| t.is_complete())
    }

    /// Runs until `stop` says so, or `interrupt` resolves. `report` hears every event and a status
    /// snapshot every status interval.
    pub async fn run(
        mut self,
        stop: StopWhen,
        interrupt: impl std::future::Future<Output = ()>,
        mut report: impl FnMut(&Report),
    ) -> Finished {
        let mut reports = Vec::new();
        let mut tick = tokio::time::interval(self.status_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(interrupt);
        let outcome = loop {
            self.process_outputs(&mut reports);
            for r in reports.drain(..) {
                report(&r);
            }
            if stop == StopWhen::Complete && self.is_complete() {
                break Outcome::Complete;
            }
            let deadline = self
                .session
                .poll_timeout()
                .map(|t| self.deadline(t))
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = &mut interrupt => break Outcome::Interrupted,
                Some(input) = self.rx.recv() => self.handle_input(input, &mut reports),
                _ = tokio::time::sleep_until(deadline) => {
                    let now = self.now();
                    self.session.handle_timeout(now);
                }
                _ = tick.tick() => report(&Report::Status(self.status())),
            }
        };
        let status = self.status();
        report(&Report::Status(status.clone()));
        let have = self
            .session
            .torrent(self.torrent)
            .expect("the driver's torrent exists")
            .have()
            .clone();
        self.shutdown();
        Finished {
            outcome,
            status,
            have,
        }
    }

    fn shutdown(&mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for c in conns {
            self.close_conn(c);
        }
    }
}
