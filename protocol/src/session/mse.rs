//! The session's encryption layer: connections whose MSE/PE handshake ([`crate::mse`]) is under
//! way, and the RC4 streams of those that settled on it.
//!
//! - An incoming connection whose first byte cannot start a plaintext BitTorrent handshake is
//!   answered as an MSE responder. Once the handshake names one of our torrents (by
//!   `HASH('req2', info hash)`), the peer's BitTorrent handshake and what follows are routed as
//!   for a plaintext connection, and must name the same torrent. A plaintext handshake is
//!   refused when the policy ([`Encryption`]) requires encryption.
//! - An outgoing connection opened with [`Session::connect_encrypted`] runs the initiator: the
//!   torrent's first bytes (our BitTorrent handshake) travel as the initial payload, and what the
//!   torrent sends before the handshake ends is held, then sent in the method selected.
//! - After an RC4 handshake the torrent's bytes are encrypted on their way out and decrypted on
//!   their way in: the torrent sees only plaintext.
//! - The handshake's own bytes are not the torrent's: [`Session::handle_sent`] takes them off the
//!   driver's write reports ([`SentSplit`]) before the torrent hears of the rest.
//!
//! Bounds: a handshake buffers at most [`crate::mse::MAX_BUFFERED`] bytes; what the torrent
//! sends meanwhile is its handshake and first messages (a few hundred bytes). Both end with the
//! handshake, which the session's [`super::SessionConfig::handshake_timeout`] limits as it does a
//! plaintext one. A connection with no encryption costs one emptiness check per transmit.

use core::net::SocketAddr;
use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::{Conn, Output, Session, SessionCloseReason, SessionError, TorrentId};
use crate::io::ConnId;
use crate::mse::{
    Cipher, Established, MAX_INITIAL_PAYLOAD, Methods, MseHandshake, Progress, is_plaintext_start,
};
use crate::rng::Rng;
use crate::time::Instant;

/// What a session does about encryption.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encryption {
    /// Accepts plaintext and encrypted connections, and selects RC4 when an encrypted one offers
    /// it.
    #[default]
    Prefer,
    /// Only RC4: plaintext handshakes, and encrypted ones offering only plaintext, are refused.
    Require,
    /// Never encrypts the stream: an encrypted handshake is answered only if it offers
    /// plaintext (then only the handshake is obscured).
    Plaintext,
}

impl Encryption {
    /// The methods accepted from an encrypted peer, and offered to one we dial.
    pub fn methods(self) -> Methods {
        match self {
            Encryption::Prefer => Methods::BOTH,
            Encryption::Require => Methods::RC4,
            Encryption::Plaintext => Methods::PLAINTEXT,
        }
    }

    /// Whether a plaintext BitTorrent handshake is accepted.
    pub fn accepts_plaintext(self) -> bool {
        self != Encryption::Require
    }
}

impl Handshaking {
    /// The torrent, for a connection we opened.
    pub(super) fn torrent(&self) -> Option<TorrentId> {
        self.torrent
    }
}

/// A connection whose handshake is under way.
#[derive(Debug)]
pub(super) struct Handshaking {
    /// `None` only while [`Session::connect_encrypted`] gathers the initial payload.
    hs: Option<Box<MseHandshake>>,
    /// The torrent, for a connection we opened.
    torrent: Option<TorrentId>,
    addr: SocketAddr,
    /// When it started (its entry in the session's handshake timeouts).
    pub(super) since: Instant,
    /// What the torrent sent that has not gone out yet (outgoing connections).
    held: Vec<u8>,
    /// The initial payload's length, until message 3 carries it.
    payload: Option<usize>,
    /// Whether message 1 is out (an initiator's next transmit is message 3).
    first_sent: bool,
}

/// How a connection's written bytes split between the handshake and the torrent: chunks
/// `(len, torrent_len)` in the order emitted, the torrent's bytes at the end of each, and how
/// much of the first chunk the driver reported written.
#[derive(Debug, Default)]
pub(super) struct SentSplit {
    chunks: VecDeque<(usize, usize)>,
    front_done: usize,
}

impl SentSplit {
    fn push(&mut self, len: usize, torrent_len: usize) {
        if len > 0 {
            self.chunks.push_back((len, torrent_len.min(len)));
        }
    }

    /// `n` more bytes written: how many were the torrent's.
    fn written(&mut self, mut n: usize) -> usize {
        let mut torrent = 0;
        while n > 0 {
            let Some(&(len, tlen)) = self.chunks.front() else {
                return torrent + n;
            };
            let step = n.min(len - self.front_done);
            let (from, to) = (self.front_done, self.front_done + step);
            torrent += to.saturating_sub((len - tlen).max(from));
            self.front_done = to;
            n -= step;
            if self.front_done == len {
                self.chunks.pop_front();
                self.front_done = 0;
            }
        }
        torrent
    }
}

/// The layer's state: see the module docs.
#[derive(Debug)]
pub(super) struct Crypto {
    /// RC4 streams of connections that settled on RC4.
    ciphers: BTreeMap<ConnId, Box<Cipher>>,
    /// Connections with handshake bytes not yet reported written (every handshaking one).
    splits: BTreeMap<ConnId, SentSplit>,
    /// Decrypted bytes on their way to a torrent (reused).
    scratch: Vec<u8>,
    /// Private keys and padding: its own stream, so the session's other draws do not depend on
    /// whether anyone encrypts.
    rng: Rng,
}

impl Crypto {
    pub(super) fn new(seed: u64) -> Self {
        Crypto {
            ciphers: BTreeMap::new(),
            splits: BTreeMap::new(),
            scratch: Vec::new(),
            rng: Rng::new(seed ^ 0x6d73_655f_6b65_7973),
        }
    }

    /// Whether no connection is encrypted or handshaking.
    fn idle(&self) -> bool {
        self.ciphers.is_empty() && self.splits.is_empty()
    }

    /// A torrent transmit for `conn`: held while its handshake is under way (`None`),
    /// encrypted after an RC4 one.
    pub(super) fn outgoing(
        &mut self,
        conns: &mut BTreeMap<ConnId, Conn>,
        conn: ConnId,
        bytes: Bytes,
    ) -> Option<Bytes> {
        if self.idle() {
            return Some(bytes);
        }
        if let Some(Conn::Mse(h)) = conns.get_mut(&conn) {
            h.held.extend_from_slice(&bytes);
            return None;
        }
        let bytes = self.encrypt(conn, bytes);
        if let Some(split) = self.splits.get_mut(&conn) {
            split.push(bytes.len(), bytes.len());
        }
        Some(bytes)
    }

    /// In place when the torrent's buffer is ours alone (a block read from disk); copied when it
    /// is shared (a slice of the connection's message buffer, or a block other peers are sent).
    fn encrypt(&mut self, conn: ConnId, bytes: Bytes) -> Bytes {
        let Some(c) = self.ciphers.get_mut(&conn) else {
            return bytes;
        };
        let mut b = bytes
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        c.encrypt(&mut b);
        b.freeze()
    }

    /// `bytes` received on `conn` copied into the layer's reused buffer, when `conn` runs RC4
    /// (`None`: they need no decrypting). Give the buffer back with [`Crypto::give_back`].
    pub(super) fn copy_to_decrypt(&mut self, conn: ConnId, bytes: &[u8]) -> Option<Vec<u8>> {
        if self.ciphers.is_empty() || !self.ciphers.contains_key(&conn) {
            return None;
        }
        let mut copy = std::mem::take(&mut self.scratch);
        copy.clear();
        copy.extend_from_slice(bytes);
        Some(copy)
    }

    /// Decrypts `bytes` received on `conn` in place, if it runs RC4.
    pub(super) fn decrypt(&mut self, conn: ConnId, bytes: &mut [u8]) {
        if self.ciphers.is_empty() {
            return;
        }
        if let Some(c) = self.ciphers.get_mut(&conn) {
            c.decrypt(bytes);
        }
    }

    /// The buffer [`Crypto::copy_to_decrypt`] lent.
    pub(super) fn give_back(&mut self, buffer: Vec<u8>) {
        self.scratch = buffer;
    }

    /// `n` bytes of `conn` written: how many were the torrent's. `handshaking`: the connection
    /// may emit more handshake bytes, so its split stays even when all is written.
    pub(super) fn written(&mut self, conn: ConnId, n: usize, handshaking: bool) -> usize {
        let Some(split) = self.splits.get_mut(&conn) else {
            return n;
        };
        let own = split.written(n);
        if split.chunks.is_empty() && !handshaking {
            self.splits.remove(&conn);
        }
        own
    }

    /// Drops what the layer keeps for `conn`.
    pub(super) fn forget(&mut self, conn: ConnId) {
        self.ciphers.remove(&conn);
        self.splits.remove(&conn);
    }
}

impl Session {
    /// Whether `conn`'s stream runs under RC4 (its handshake settled on it).
    pub fn is_rc4(&self, conn: ConnId) -> bool {
        self.crypto.ciphers.contains_key(&conn)
    }

    /// We opened `conn` to `addr` for `torrent` and run an MSE handshake on it, offering
    /// `offer`; our BitTorrent handshake goes as its initial payload. A failure closes the
    /// connection with [`SessionCloseReason::Mse`], and the torrent hears of it as a peer gone.
    pub fn connect_encrypted(
        &mut self,
        now: Instant,
        torrent: TorrentId,
        conn: ConnId,
        addr: SocketAddr,
        offer: Methods,
    ) -> Result<(), SessionError> {
        let info_hash = self.add_outbound(now, torrent, conn, addr)?;
        self.crypto.splits.insert(conn, SentSplit::default());
        self.conns.insert(
            conn,
            Conn::Mse(Handshaking {
                hs: None,
                torrent: Some(torrent),
                addr,
                since: now,
                held: Vec::new(),
                payload: None,
                first_sent: false,
            }),
        );
        self.pending.insert((now, conn));
        // The torrent's handshake, held: it becomes the initial payload.
        self.collect(torrent);
        if let Some(Conn::Mse(h)) = self.conns.get_mut(&conn) {
            let n = h.held.len().min(MAX_INITIAL_PAYLOAD);
            let payload: Vec<u8> = h.held.drain(..n).collect();
            h.payload = Some(payload.len());
            h.hs = Some(Box::new(MseHandshake::initiator(
                now,
                &mut self.crypto.rng,
                info_hash,
                offer,
                payload,
            )));
        }
        self.flush_handshake(conn);
        Ok(())
    }

    /// Sends what the handshake of `conn` has to send.
    fn flush_handshake(&mut self, conn: ConnId) {
        let Some(Conn::Mse(h)) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(hs) = &mut h.hs else {
            return;
        };
        let bytes = hs.take_transmit();
        if bytes.is_empty() {
            return;
        }
        // An initiator's initial payload ends message 3, its first transmit after message 1.
        let torrent_len = if h.first_sent {
            h.payload.take().unwrap_or(0)
        } else {
            h.first_sent = true;
            0
        };
        self.crypto
            .splits
            .entry(conn)
            .or_default()
            .push(bytes.len(), torrent_len);
        self.outputs.push_back(Output::Transmit {
            conn,
            bytes: Bytes::from(bytes),
        });
    }

    /// A pending incoming connection's first bytes decide it: `Some(true)` to route it as
    /// plaintext, `Some(false)` once it has become an MSE responder or been refused, `None`
    /// while too few have come to tell.
    pub(super) fn sort_pending(&mut self, now: Instant, conn: ConnId) -> Option<bool> {
        let Some(Conn::Pending { buffer, .. }) = self.conns.get(&conn) else {
            return Some(false);
        };
        let Some(policy) = self.config.encryption else {
            return Some(true);
        };
        match is_plaintext_start(buffer) {
            None => None,
            Some(true) if policy.accepts_plaintext() => Some(true),
            Some(true) => {
                self.refuse(now, conn, SessionCloseReason::PlaintextRefused);
                Some(false)
            }
            Some(false) => {
                self.start_responder(now, conn);
                Some(false)
            }
        }
    }

    /// A pending incoming connection that cannot be a plaintext handshake becomes an MSE
    /// responder, fed what it sent so far.
    fn start_responder(&mut self, now: Instant, conn: ConnId) {
        let Some(Conn::Pending {
            addr,
            buffer,
            since,
            ..
        }) = self.conns.remove(&conn)
        else {
            return;
        };
        let accept = self.config.encryption.unwrap_or_default().methods();
        let hs = MseHandshake::responder(now, &mut self.crypto.rng, accept);
        self.crypto.splits.insert(conn, SentSplit::default());
        // It keeps its place among the handshake timeouts (`since` is unchanged).
        self.conns.insert(
            conn,
            Conn::Mse(Handshaking {
                hs: Some(Box::new(hs)),
                torrent: None,
                addr,
                since,
                held: Vec::new(),
                payload: None,
                first_sent: false,
            }),
        );
        self.mse_bytes(now, conn, &buffer);
    }

    /// Bytes for a connection whose handshake is under way.
    pub(super) fn mse_bytes(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let by_req2 = &self.by_req2;
        let lookup = |req2: &[u8; 20]| by_req2.get(req2).copied();
        let Some(Conn::Mse(h)) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(hs) = &mut h.hs else {
            return;
        };
        let progress = hs.handle_bytes(&mut self.crypto.rng, bytes, &lookup);
        self.flush_handshake(conn);
        match progress {
            Progress::Pending => {}
            Progress::Failed(e) => self.refuse(now, conn, SessionCloseReason::Mse(e)),
            Progress::Done(done) => self.mse_done(now, conn, *done),
        }
    }

    fn mse_done(&mut self, now: Instant, conn: ConnId, mut done: Established) {
        let Some(Conn::Mse(h)) = self.remove_conn(conn) else {
            return;
        };
        if let Some(cipher) = done.cipher.take() {
            self.crypto.ciphers.insert(conn, Box::new(cipher));
        }
        let mut stream = std::mem::take(&mut done.initial_payload);
        stream.append(&mut done.rest);
        match h.torrent {
            Some(t) => {
                self.conns.insert(conn, Conn::Attached(t));
                // What the torrent said meanwhile goes out in the method selected.
                if !h.held.is_empty()
                    && let Some(bytes) =
                        self.crypto
                            .outgoing(&mut self.conns, conn, Bytes::from(h.held))
                {
                    self.outputs.push_back(Output::Transmit { conn, bytes });
                }
                if let Some(torrent) = self.torrents.get_mut(&t) {
                    torrent.handle_bytes(now, conn, &stream);
                    self.collect(t);
                }
            }
            None => {
                // Routed as a plaintext connection whose first bytes are these; its BitTorrent
                // handshake must name the torrent the encrypted one did.
                self.conns.insert(
                    conn,
                    Conn::Pending {
                        addr: h.addr,
                        buffer: stream,
                        since: h.since,
                        encrypted: Some(done.info_hash),
                    },
                );
                self.pending.insert((h.since, conn));
                self.route(now, conn);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SentSplit;

    #[test]
    fn written_bytes_split_between_the_handshake_and_the_torrent() {
        let mut s = SentSplit::default();
        s.push(100, 0); // message 1
        s.push(150, 68); // message 3: 82 bytes of handshake, then the torrent's 68
        s.push(30, 30); // the torrent's
        assert_eq!(s.written(50), 0);
        assert_eq!(s.written(100), 0);
        assert_eq!(s.written(40), 8);
        assert_eq!(s.written(100), 100);
        assert_eq!(s.written(7), 7);
    }
}
