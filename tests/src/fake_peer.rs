//! A scripted fake BitTorrent peer over real loopback TCP (`std::net`), for the hostile-peer tests:
//! it speaks raw bytes built here from BEP 3/6 (not with bt's own encoder, so bt is checked
//! against the wire format, not against itself), reads with deadlines, and tells when bt closed
//! the connection.
//!
//! Every read and wait is bounded by a deadline; writes time out too ([`WRITE_TIMEOUT`]), so a
//! fake peer whose victim stopped reading never hangs a test. Loopback only: a fake peer listens
//! on `127.0.0.N` (any address of 127/8 is loopback on Linux), so a test can give each fake peer
//! its own IP and a ban of one bans no other.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How long one write may block before it fails (the victim stopped reading).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Message ids (BEP 3, BEP 6).
pub mod id {
    /// choke
    pub const CHOKE: u8 = 0;
    /// unchoke
    pub const UNCHOKE: u8 = 1;
    /// interested
    pub const INTERESTED: u8 = 2;
    /// have
    pub const HAVE: u8 = 4;
    /// bitfield
    pub const BITFIELD: u8 = 5;
    /// request
    pub const REQUEST: u8 = 6;
    /// piece
    pub const PIECE: u8 = 7;
    /// have all (BEP 6)
    pub const HAVE_ALL: u8 = 0x0e;
    /// have none (BEP 6)
    pub const HAVE_NONE: u8 = 0x0f;
}

/// The 68-byte handshake (BEP 3) for `info_hash` from `peer_id`, with the Fast extension bit
/// (BEP 6: reserved byte 7, bit 0x04) if `fast`.
pub fn handshake(info_hash: &[u8; 20], peer_id: &[u8; 20], fast: bool) -> Vec<u8> {
    let mut reserved = [0u8; 8];
    if fast {
        reserved[7] |= 0x04;
    }
    handshake_reserved(info_hash, peer_id, reserved)
}

/// The extension protocol bit (BEP 10: reserved byte 5, bit 0x10).
pub const EXTENSION_PROTOCOL: [u8; 8] = [0, 0, 0, 0, 0, 0x10, 0, 0];

/// The 68-byte handshake with these `reserved` bytes.
pub fn handshake_reserved(info_hash: &[u8; 20], peer_id: &[u8; 20], reserved: [u8; 8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(68);
    v.push(19);
    v.extend_from_slice(b"BitTorrent protocol");
    v.extend_from_slice(&reserved);
    v.extend_from_slice(info_hash);
    v.extend_from_slice(peer_id);
    v
}

/// The next connection to `listener` (a blocking stream), or `None` if none came by `deadline`.
/// std has no accept with a timeout: a thread waits in `accept`, and at the deadline a connection
/// of our own wakes it (and is thrown away; a real one that came first is kept).
pub fn accept_by(listener: &TcpListener, deadline: Instant) -> Option<TcpStream> {
    listener
        .set_nonblocking(false)
        .expect("a blocking listener");
    let waiting = listener
        .try_clone()
        .expect("a second handle on the listener");
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(waiting.accept().map(|(stream, _)| stream));
    });
    let accepted = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(accepted) => Some(accepted),
        Err(_) => {
            let wake = TcpStream::connect(listener.local_addr().expect("a bound listener"))
                .expect("a connection to our own listener");
            let ours = wake.local_addr().expect("a bound socket");
            let accepted = rx.recv().expect("the waiter answers");
            match &accepted {
                Ok(stream) if stream.peer_addr().ok() == Some(ours) => None,
                // A real one came just before ours: ours is next in the queue, drop it.
                _ => {
                    let _ = listener.accept();
                    Some(accepted)
                }
            }
        }
    };
    waiter.join().expect("the waiter does not panic");
    accepted.map(|a| a.unwrap_or_else(|e| panic!("accept failed: {e}")))
}

/// A frame: 4-byte big-endian length (id plus payload), id, payload.
pub fn frame(message_id: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len() + 1).expect("test frames are small");
    let mut v = Vec::with_capacity(payload.len() + 5);
    v.extend_from_slice(&len.to_be_bytes());
    v.push(message_id);
    v.extend_from_slice(payload);
    v
}

/// A frame with no payload (choke, unchoke, interested, have-all, have-none).
pub fn bare(message_id: u8) -> Vec<u8> {
    frame(message_id, &[])
}

/// `have` of piece `index`.
pub fn have(index: u32) -> Vec<u8> {
    frame(id::HAVE, &index.to_be_bytes())
}

/// `request` of `len` bytes at `offset` of `piece`.
pub fn request(piece: u32, offset: u32, len: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(12);
    for x in [piece, offset, len] {
        p.extend_from_slice(&x.to_be_bytes());
    }
    frame(id::REQUEST, &p)
}

/// `piece` carrying `data` at `offset` of `piece`.
pub fn piece(index: u32, offset: u32, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(8 + data.len());
    p.extend_from_slice(&index.to_be_bytes());
    p.extend_from_slice(&offset.to_be_bytes());
    p.extend_from_slice(data);
    frame(id::PIECE, &p)
}

/// The 20 bytes of a 40-digit hex info hash.
pub fn info_hash_bytes(hex: &str) -> [u8; 20] {
    assert_eq!(hex.len(), 40, "an info hash is 40 hex digits: {hex:?}");
    let mut out = [0u8; 20];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .unwrap_or_else(|_| panic!("not hex: {hex:?}"));
    }
    out
}

/// A process's resident memory in KiB (`VmRSS` in `/proc/PID/status`), if it still runs.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:")
}

/// A process's peak resident memory in KiB (`VmHWM`), if it still runs.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM:")
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Content for fake peers to meet bt over: generated `files` in `src/` of a fresh folder, a
/// torrent of `src/<top>` (pieces of `piece_len`, no tracker), and its info hash as bytes.
pub struct Swarm {
    /// The folder (content under `src/`, the torrent as `t.torrent`).
    pub tmp: crate::TempDir,
    /// The torrent.
    pub torrent: crate::MadeTorrent,
    /// Its info hash.
    pub hash: [u8; 20],
}

impl Swarm {
    /// Makes the content of `files` (paths under `top/`) and its torrent, in a folder named
    /// after `name`.
    pub fn new(name: &str, top: &str, files: &[(&str, usize)], piece_len: &str) -> Swarm {
        let tmp = crate::TempDir::new(name);
        let src = tmp.path().join("src");
        crate::gen_files(&src, files);
        let torrent = crate::make_torrent(
            &src.join(top),
            &[],
            piece_len,
            &tmp.path().join("t.torrent"),
        );
        let hash = info_hash_bytes(&torrent.info_hash);
        Swarm { tmp, torrent, hash }
    }

    /// The folder a seed serves.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.tmp.path().join("src")
    }
}

/// How a wait for the victim to close ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The victim closed (EOF, or a reset) after this long.
    After(Duration),
    /// It was still open at the deadline.
    StillOpen,
}

/// One frame the victim sent: its id (`None` for a keep-alive) and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The message id.
    pub id: Option<u8>,
    /// The bytes after the id.
    pub payload: Vec<u8>,
}

impl Received {
    /// The three big-endian u32 of a request (piece, offset, length), if it is one.
    pub fn as_request(&self) -> Option<(u32, u32, u32)> {
        if self.id != Some(id::REQUEST) || self.payload.len() != 12 {
            return None;
        }
        let at = |i: usize| {
            u32::from_be_bytes(
                self.payload[i..i + 4]
                    .try_into()
                    .expect("four bytes of a request"),
            )
        };
        Some((at(0), at(4), at(8)))
    }
}

/// One connection of a fake peer.
pub struct FakePeer {
    stream: TcpStream,
    /// Bytes read and not yet taken as a handshake or frame.
    buf: Vec<u8>,
}

impl FakePeer {
    /// Dials `addr` (bounded to 5 s).
    pub fn dial(addr: SocketAddr) -> FakePeer {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("fake peer cannot dial {addr}: {e}"));
        FakePeer::new(stream)
    }

    /// Waits (at most `timeout`) for the victim to dial `listener` with a plaintext BitTorrent
    /// handshake. Like any peer that speaks only plaintext, it hangs up on a connection that
    /// opens with anything else (an encrypted handshake: bt then dials again in plaintext) and
    /// waits for the next.
    pub fn accept(listener: &TcpListener, timeout: Duration) -> FakePeer {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(stream) = accept_by(listener, deadline) else {
                panic!(
                    "nobody dialled {:?} within {timeout:?}",
                    listener.local_addr()
                );
            };
            let mut peer = FakePeer::new(stream);
            if peer.opens_in_plaintext(deadline) {
                return peer;
            }
        }
    }

    /// Whether the first 20 bytes (read by `deadline`, kept for [`FakePeer::read_handshake`])
    /// are a plaintext handshake's.
    fn opens_in_plaintext(&mut self, deadline: Instant) -> bool {
        while self.buf.len() < 20 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !matches!(self.fill(left), Ok(true)) {
                return false;
            }
        }
        &self.buf[..20] == b"\x13BitTorrent protocol"
    }

    /// A listener on `127.0.0.{n}` (port chosen by the system) for the victim to dial.
    pub fn listen(n: u8) -> TcpListener {
        TcpListener::bind((Ipv4Addr::new(127, 0, 0, n), 0))
            .unwrap_or_else(|e| panic!("cannot listen on 127.0.0.{n}: {e}"))
    }

    fn new(stream: TcpStream) -> FakePeer {
        stream
            .set_write_timeout(Some(WRITE_TIMEOUT))
            .expect("a write timeout");
        stream.set_nodelay(true).ok();
        FakePeer {
            stream,
            buf: Vec::new(),
        }
    }

    /// This end's address (what the victim reports as the peer's address when it was dialled).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("a local address")
    }

    /// Writes all of `bytes`; an error once the victim closed or stopped reading.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads what is there (waiting at most `wait`) into the buffer; `Ok(false)` on EOF.
    fn fill(&mut self, wait: Duration) -> std::io::Result<bool> {
        let mut chunk = [0u8; 64 * 1024];
        self.stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        match self.stream.read(&mut chunk) {
            Ok(0) => Ok(false),
            Ok(n) => {
                // Bounded: callers take frames as they come; a victim sends small messages or
                // blocks the fake peer asked for.
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Reads the victim's 68-byte handshake (at most `timeout`) and returns its info hash.
    pub fn read_handshake(&mut self, timeout: Duration) -> [u8; 20] {
        let deadline = Instant::now() + timeout;
        while self.buf.len() < 68 {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no handshake within {timeout:?}");
            match self.fill(left) {
                Ok(true) => {}
                Ok(false) | Err(_) => panic!("the victim closed before its handshake"),
            }
        }
        let hs: Vec<u8> = self.buf.drain(..68).collect();
        assert_eq!(
            &hs[..20],
            b"\x13BitTorrent protocol",
            "a BitTorrent handshake"
        );
        hs[28..48].try_into().expect("20 bytes")
    }

    /// The next frame the victim sends, waiting at most `timeout`: `None` if none came whole in
    /// time or the connection closed.
    pub fn read_frame(&mut self, timeout: Duration) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
                assert!(
                    len <= 16 * 1024 + 9 + 1024,
                    "the victim sent a frame of {len} bytes"
                );
                if self.buf.len() >= 4 + len {
                    let body: Vec<u8> = self.buf.drain(..4 + len).skip(4).collect();
                    return Some(Received {
                        id: body.first().copied(),
                        payload: body.get(1..).unwrap_or_default().to_vec(),
                    });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.fill(left) {
                Ok(true) => {}
                Ok(false) | Err(_) => return None,
            }
        }
    }

    /// Reads (and drops) what the victim sends until it closes the connection or `timeout`
    /// passes.
    pub fn wait_closed(&mut self, timeout: Duration) -> Closed {
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Closed::StillOpen;
            }
            match self.fill(left.min(Duration::from_millis(200))) {
                Ok(true) => self.buf.clear(),
                Ok(false) | Err(_) => return Closed::After(start.elapsed()),
            }
        }
    }
}
