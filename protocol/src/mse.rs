//! Message stream encryption (MSE, also called PE): the obfuscated handshake that BitTorrent
//! clients run before the BitTorrent handshake, as a sans-IO machine ([`MseHandshake`]) in both
//! roles.
//!
//! The exchange, A dialling B (`S` the Diffie-Hellman secret, `SKEY` the info hash):
//! 1. A → B: `Ya`, then 0 to 512 bytes of padding;
//! 2. B → A: `Yb`, then 0 to 512 bytes of padding;
//! 3. A → B: `HASH('req1', S)`, `HASH('req2', SKEY) xor HASH('req3', S)`, then under RC4 with
//!    key A: `VC`, `crypto_provide`, `len(PadC)`, `PadC`, `len(IA)`, `IA` (the initial payload:
//!    our BitTorrent handshake);
//! 4. B → A: under RC4 with key B: `VC`, `crypto_select`, `len(PadD)`, `PadD`; then the stream in
//!    the method selected.
//!
//! `Y` keys are 768-bit Diffie-Hellman public keys (generator 2), 96 bytes big-endian; private
//! keys are 160 bits from the caller's random stream, so a simulated swarm stays deterministic.
//! RC4 keys are `SHA1('keyA' | S | SKEY)` (A's sending) and `SHA1('keyB' | S | SKEY)` (B's), each
//! stream with its first 1024 bytes discarded. `VC` is eight zero bytes. The methods
//! ([`Methods`]) are plaintext (`0x01`) and RC4 (`0x02`): with plaintext selected only the
//! handshake is obscured, and the stream after it runs in the clear.
//!
//! The responder finds the torrent from `HASH('req2', SKEY)` (see [`req2_hash`]): the caller says
//! which info hash, if any, that names.
//!
//! The pieces the machine is built from are public ([`DhKey`], [`req1_hash`], [`req3_hash`],
//! [`Cipher::initiator`], [`Cipher::responder`], [`VC`]), so a scripted peer (the simulator's
//! hostile MSE peers) can speak a handshake byte by byte, wrong where it means to be, with the
//! one copy of the cryptography.
//!
//! Bounds: the receive buffer holds at most [`MAX_BUFFERED`] bytes (a key, the longest padding,
//! the synchronisation and the longest initial payload); a responder finds `HASH('req1', S)`
//! within [`MAX_PAD`] + 20 bytes after `Ya` or fails, and an initiator finds `VC` within
//! [`MAX_PAD`] + 8 bytes after `Yb`; padding lengths over [`MAX_PAD`] and initial payloads over
//! [`MAX_INITIAL_PAYLOAD`] fail. The whole handshake has a time limit ([`HANDSHAKE_TIME_LIMIT`]).
//!
//! Every failure is an [`MseError`] that names the rule, and no input panics.

use core::time::Duration;

use num_bigint::BigUint;
use rc4::{KeyInit, Rc4, StreamCipher};
use sha1::{Digest, Sha1};

use crate::metainfo::InfoHash;
use crate::rng::Rng;
use crate::time::Instant;

/// The Diffie-Hellman prime the specification gives: 768 bits.
const PRIME_HEX: &[u8] = b"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563";

/// A public key's length in bytes.
pub const KEY_LEN: usize = 96;

/// The longest padding either side may send (`PadA` to `PadD`).
pub const MAX_PAD: usize = 512;

/// The longest initial payload accepted (`IA`): a BitTorrent handshake is 68 bytes, and other
/// clients send at most that and a few messages.
pub const MAX_INITIAL_PAYLOAD: usize = 1024;

/// The most bytes a handshake buffers: `Ya` or `Yb`, the longest padding, and the whole of
/// message 3 with the longest `PadC` and initial payload.
pub const MAX_BUFFERED: usize =
    KEY_LEN + MAX_PAD + 20 + 20 + 8 + 4 + 2 + MAX_PAD + 2 + MAX_INITIAL_PAYLOAD;

/// How long the handshake may take from its start.
pub const HANDSHAKE_TIME_LIMIT: Duration = Duration::from_secs(20);

/// Bytes of each RC4 stream thrown away before use.
const DISCARD: usize = 1024;

/// The verification constant: eight zero bytes.
pub const VC: [u8; 8] = [0; 8];

/// A set of methods (`crypto_provide`, `crypto_select`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Methods(pub u32);

impl Methods {
    /// The stream runs in the clear after the handshake.
    pub const PLAINTEXT: Methods = Methods(0x01);
    /// The stream runs under RC4.
    pub const RC4: Methods = Methods(0x02);
    /// Both.
    pub const BOTH: Methods = Methods(0x03);

    /// Whether every method of `other` is in this set.
    pub fn contains(self, other: Methods) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// The methods in both sets.
    pub fn and(self, other: Methods) -> Methods {
        Methods(self.0 & other.0)
    }
}

/// The method a handshake settled on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Only the handshake was obscured.
    Plaintext,
    /// The stream runs under RC4.
    Rc4,
}

/// Why a handshake failed; [`MseError::name`] gives the rule's name for close reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MseError {
    /// The peer's public key is degenerate (0, 1 or p − 1, or not below p).
    #[error("the peer's Diffie-Hellman key is degenerate")]
    BadKey,
    /// The synchronisation hash (responder) or verification constant (initiator) did not come
    /// within the padding bound.
    #[error("no synchronisation marker within {MAX_PAD} bytes of padding")]
    NoSyncMarker,
    /// The verification constant decrypted to something other than zeros.
    #[error("the verification constant is wrong")]
    BadVc,
    /// The info hash named matches no torrent here.
    #[error("the peer asked for a torrent we do not have")]
    UnknownTorrent,
    /// No method both sides allow.
    #[error("no encryption method both sides allow")]
    NoCommonMethod,
    /// The responder selected a method we did not offer, or more than one.
    #[error("the peer selected a method we did not offer")]
    BadSelect,
    /// A padding length over [`MAX_PAD`].
    #[error("padding of {0} bytes, over {MAX_PAD}")]
    PadTooLong(u16),
    /// An initial payload over [`MAX_INITIAL_PAYLOAD`].
    #[error("an initial payload of {0} bytes, over {MAX_INITIAL_PAYLOAD}")]
    PayloadTooLong(u16),
    /// The handshake did not finish within [`HANDSHAKE_TIME_LIMIT`].
    #[error("the encryption handshake took over {} s", HANDSHAKE_TIME_LIMIT.as_secs())]
    TimedOut,
}

impl MseError {
    /// The rule's name, as close reasons show it (`Mse/NoSyncMarker`, ...).
    pub fn name(self) -> &'static str {
        match self {
            MseError::BadKey => "Mse/BadKey",
            MseError::NoSyncMarker => "Mse/NoSyncMarker",
            MseError::BadVc => "Mse/BadVc",
            MseError::UnknownTorrent => "Mse/UnknownTorrent",
            MseError::NoCommonMethod => "Mse/NoCommonMethod",
            MseError::BadSelect => "Mse/BadSelect",
            MseError::PadTooLong(_) => "Mse/PadTooLong",
            MseError::PayloadTooLong(_) => "Mse/PayloadTooLong",
            MseError::TimedOut => "Mse/TimedOut",
        }
    }
}

/// The two RC4 streams of an encrypted connection: one for what we send, one for what we
/// receive, each already past its discarded bytes and the handshake.
pub struct Cipher {
    send: Rc4,
    receive: Rc4,
}

impl Cipher {
    /// The initiator's streams (A, who dialled): it sends with key A and receives with key B,
    /// both from the shared secret `s` and the torrent `skey`.
    pub fn initiator(s: &[u8; KEY_LEN], skey: &InfoHash) -> Cipher {
        Cipher {
            send: stream(b"keyA", s, skey),
            receive: stream(b"keyB", s, skey),
        }
    }

    /// The responder's streams (B): it sends with key B and receives with key A.
    pub fn responder(s: &[u8; KEY_LEN], skey: &InfoHash) -> Cipher {
        Cipher {
            send: stream(b"keyB", s, skey),
            receive: stream(b"keyA", s, skey),
        }
    }

    /// Encrypts bytes about to be sent, in place.
    pub fn encrypt(&mut self, bytes: &mut [u8]) {
        self.send.apply_keystream(bytes);
    }

    /// Decrypts bytes received, in place.
    pub fn decrypt(&mut self, bytes: &mut [u8]) {
        self.receive.apply_keystream(bytes);
    }
}

impl core::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Cipher { .. }")
    }
}

/// A finished handshake.
#[derive(Debug)]
pub struct Established {
    /// The torrent: the one dialled for, or the one the initiator named.
    pub info_hash: InfoHash,
    /// The method selected.
    pub method: Method,
    /// The streams for RC4; `None` for plaintext.
    pub cipher: Option<Cipher>,
    /// The initiator's initial payload, decrypted (the responder's side; empty for the
    /// initiator, whose payload went out in message 3).
    pub initial_payload: Vec<u8>,
    /// Bytes received after the handshake, decrypted: the start of the stream.
    pub rest: Vec<u8>,
}

/// How a handshake stands after an input.
#[derive(Debug)]
pub enum Progress {
    /// It needs more bytes.
    Pending,
    /// It finished.
    Done(Box<Established>),
    /// It failed.
    Failed(MseError),
}

/// `HASH('req2', SKEY)`: what a responder finds a torrent by.
pub fn req2_hash(info_hash: &InfoHash) -> [u8; 20] {
    hash(&[b"req2", &info_hash.0])
}

/// `HASH('req1', S)`: the marker a responder synchronises on after the initiator's padding.
pub fn req1_hash(s: &[u8; KEY_LEN]) -> [u8; 20] {
    hash(&[b"req1", s])
}

/// `HASH('req3', S)`: what `HASH('req2', SKEY)` is XORed with in message 3.
pub fn req3_hash(s: &[u8; KEY_LEN]) -> [u8; 20] {
    hash(&[b"req3", s])
}

/// One side's Diffie-Hellman key pair: a 160-bit private key from the caller's random stream
/// and its public key `2^x mod p` (see the module docs).
pub struct DhKey {
    private: BigUint,
}

impl core::fmt::Debug for DhKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DhKey { .. }")
    }
}

impl DhKey {
    /// A fresh key pair: 20 bytes drawn from `rng`.
    pub fn new(rng: &mut Rng) -> DhKey {
        let mut x = [0u8; 20];
        rng.fill(&mut x);
        DhKey {
            private: BigUint::from_bytes_be(&x),
        }
    }

    /// The public key (`Ya` or `Yb`), 96 bytes big-endian.
    pub fn public(&self) -> [u8; KEY_LEN] {
        key_bytes(&BigUint::from(2u32).modpow(&self.private, &prime()))
    }

    /// The shared secret `S` from the peer's public key (any length; read big-endian), or
    /// [`MseError::BadKey`] when that key is degenerate (0, 1, p − 1 or more).
    pub fn shared(&self, peer_public: &[u8]) -> Result<[u8; KEY_LEN], MseError> {
        let p = prime();
        let y = BigUint::from_bytes_be(peer_public);
        let one = BigUint::from(1u32);
        if y <= one || y >= &p - &one {
            return Err(MseError::BadKey);
        }
        Ok(key_bytes(&y.modpow(&self.private, &p)))
    }
}

/// Whether a connection's first bytes are a plaintext BitTorrent handshake (`Some(true)`), can
/// only be an encrypted one (`Some(false)`), or are too few to tell (`None`).
pub fn is_plaintext_start(bytes: &[u8]) -> Option<bool> {
    const PROTOCOL: &[u8] = b"\x13BitTorrent protocol";
    let n = bytes.len().min(PROTOCOL.len());
    if bytes[..n] != PROTOCOL[..n] {
        return Some(false);
    }
    (n == PROTOCOL.len()).then_some(true)
}

fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn prime() -> BigUint {
    BigUint::parse_bytes(PRIME_HEX, 16).expect("the prime is valid hex")
}

/// `n` as 96 bytes, big-endian.
fn key_bytes(n: &BigUint) -> [u8; KEY_LEN] {
    let raw = n.to_bytes_be();
    let mut out = [0u8; KEY_LEN];
    out[KEY_LEN - raw.len()..].copy_from_slice(&raw);
    out
}

/// An RC4 stream keyed with `SHA1(label | S | SKEY)`, past its discarded bytes.
fn stream(label: &[u8], s: &[u8; KEY_LEN], skey: &InfoHash) -> Rc4 {
    let key = hash(&[label, s, &skey.0]);
    let mut rc4 = Rc4::new_from_slice(&key).expect("RC4 takes 20-byte keys");
    let mut discard = [0u8; DISCARD];
    rc4.apply_keystream(&mut discard);
    rc4
}

/// Where a handshake is.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Initiator: waiting for `Yb`.
    AwaitKey,
    /// Initiator: `Yb` read, looking for `VC` as it appears encrypted.
    AwaitVc { marker: [u8; 8] },
    /// Initiator: `VC` read; waiting for `crypto_select` and `len(PadD)`.
    AwaitSelect,
    /// Initiator: waiting for `PadD`.
    AwaitPadD { method: Method, pad: usize },
    /// Responder: waiting for `Ya`.
    AwaitPeerKey,
    /// Responder: `Ya` read, looking for `HASH('req1', S)`.
    AwaitReq1 { s: [u8; KEY_LEN], req1: [u8; 20] },
    /// Responder: the torrent known; waiting for `VC`, `crypto_provide`, `len(PadC)`.
    AwaitProvide,
    /// Responder: waiting for `PadC` and `len(IA)`.
    AwaitPadC { method: Method, pad: usize },
    /// Responder: waiting for `IA`.
    AwaitPayload { method: Method, len: usize },
    /// Finished or failed.
    Over,
}

enum Role {
    Initiator {
        offer: Methods,
        initial_payload: Vec<u8>,
    },
    Responder {
        allow: Methods,
    },
}

/// One side of an MSE handshake: see the module docs.
///
/// Drive it with [`MseHandshake::handle_bytes`] and [`MseHandshake::handle_timeout`]; send what
/// [`MseHandshake::take_transmit`] gives after creating it and after every input.
pub struct MseHandshake {
    role: Role,
    key: DhKey,
    /// Received and not yet consumed: at most [`MAX_BUFFERED`] bytes.
    buf: Vec<u8>,
    transmit: Vec<u8>,
    step: Step,
    deadline: Instant,
    /// The torrent: known from the start by an initiator, from message 3 by a responder.
    info_hash: Option<InfoHash>,
    /// The RC4 streams, once `S` and the torrent are known (they obscure the handshake's end
    /// whatever the method selected).
    cipher: Option<Cipher>,
}

impl core::fmt::Debug for MseHandshake {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MseHandshake")
            .field("step", &self.step)
            .field("buffered", &self.buf.len())
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// What one step did.
enum Moved {
    /// It needs more bytes.
    Wait,
    /// It moved on: try the next step on what is buffered.
    On,
    Failed(MseError),
    Done(Box<Established>),
}

impl MseHandshake {
    /// The dialling side, for the torrent `info_hash`, offering `offer`, with
    /// `initial_payload` (our BitTorrent handshake; at most [`MAX_INITIAL_PAYLOAD`] bytes are
    /// sent) to go in message 3. Message 1 is ready to send at once.
    pub fn initiator(
        now: Instant,
        rng: &mut Rng,
        info_hash: InfoHash,
        offer: Methods,
        initial_payload: Vec<u8>,
    ) -> Self {
        let mut hs = MseHandshake::new(
            now,
            rng,
            Role::Initiator {
                offer,
                initial_payload,
            },
            Step::AwaitKey,
        );
        hs.info_hash = Some(info_hash);
        hs.send_key(rng);
        hs
    }

    /// The answering side, accepting `allow` (RC4 chosen over plaintext when both are
    /// offered). It answers message 1 as soon as it has it.
    pub fn responder(now: Instant, rng: &mut Rng, allow: Methods) -> Self {
        MseHandshake::new(now, rng, Role::Responder { allow }, Step::AwaitPeerKey)
    }

    fn new(now: Instant, rng: &mut Rng, role: Role, step: Step) -> Self {
        MseHandshake {
            role,
            key: DhKey::new(rng),
            buf: Vec::new(),
            transmit: Vec::new(),
            step,
            deadline: now + HANDSHAKE_TIME_LIMIT,
            info_hash: None,
            cipher: None,
        }
    }

    /// Queues our public key and 0 to [`MAX_PAD`] bytes of random padding.
    fn send_key(&mut self, rng: &mut Rng) {
        self.transmit.extend_from_slice(&self.key.public());
        let pad = rng.below(MAX_PAD as u64 + 1) as usize;
        let start = self.transmit.len();
        self.transmit.resize(start + pad, 0);
        rng.fill(&mut self.transmit[start..]);
    }

    /// When the handshake fails for taking too long (`None` once it is over).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!matches!(self.step, Step::Over)).then_some(self.deadline)
    }

    /// Time passes: past the deadline, the handshake fails.
    pub fn handle_timeout(&mut self, now: Instant) -> Progress {
        if !matches!(self.step, Step::Over) && now >= self.deadline {
            return self.fail(MseError::TimedOut);
        }
        Progress::Pending
    }

    /// Bytes to send (empty when there are none).
    pub fn take_transmit(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.transmit)
    }

    /// Bytes received. A responder calls `lookup` with `HASH('req2', SKEY)` to learn which of
    /// its torrents that names (see [`req2_hash`]). Bytes past the handshake come back,
    /// decrypted, in [`Established::rest`]; after the handshake is over, this does nothing.
    pub fn handle_bytes(
        &mut self,
        rng: &mut Rng,
        bytes: &[u8],
        lookup: &dyn Fn(&[u8; 20]) -> Option<InfoHash>,
    ) -> Progress {
        if matches!(self.step, Step::Over) {
            return Progress::Pending;
        }
        // Take what the bound allows, step, and repeat with the rest. Every step moves on or
        // fails before the buffer is full (the bound covers the longest legal handshake), so a
        // full buffer that leaves a step waiting is a peer past the bounds.
        let mut input = bytes;
        loop {
            let room = MAX_BUFFERED.saturating_sub(self.buf.len());
            let (taken, later) = input.split_at(input.len().min(room));
            input = later;
            self.buf.extend_from_slice(taken);
            let moved = loop {
                match self.advance(rng, lookup) {
                    Moved::On => {}
                    other => break other,
                }
            };
            match moved {
                Moved::On | Moved::Wait if input.is_empty() => return Progress::Pending,
                Moved::On | Moved::Wait if taken.is_empty() => {
                    return self.fail(MseError::NoSyncMarker);
                }
                Moved::On | Moved::Wait => {}
                Moved::Failed(e) => return self.fail(e),
                Moved::Done(mut done) => {
                    self.step = Step::Over;
                    let start = done.rest.len();
                    done.rest.extend_from_slice(input);
                    if let Some(c) = &mut done.cipher {
                        c.decrypt(&mut done.rest[start..]);
                    }
                    return Progress::Done(done);
                }
            }
        }
    }

    fn fail(&mut self, error: MseError) -> Progress {
        self.step = Step::Over;
        self.buf = Vec::new();
        self.cipher = None;
        Progress::Failed(error)
    }

    /// Decrypts and takes the first `n` buffered bytes, once all are here.
    fn take_decrypted(&mut self, n: usize) -> Option<Vec<u8>> {
        if self.buf.len() < n {
            return None;
        }
        let mut head: Vec<u8> = self.buf.drain(..n).collect();
        if let Some(c) = &mut self.cipher {
            c.decrypt(&mut head);
        }
        Some(head)
    }

    fn advance(&mut self, rng: &mut Rng, lookup: &dyn Fn(&[u8; 20]) -> Option<InfoHash>) -> Moved {
        match self.step {
            Step::AwaitKey => self.on_key(),
            Step::AwaitVc { marker } => self.on_vc(marker),
            Step::AwaitSelect => self.on_select(),
            Step::AwaitPadD { method, pad } => {
                if self.take_decrypted(pad).is_none() {
                    return Moved::Wait;
                }
                self.finish(method, Vec::new())
            }
            Step::AwaitPeerKey => self.on_peer_key(rng),
            Step::AwaitReq1 { s, req1 } => self.on_req1(s, req1, lookup),
            Step::AwaitProvide => self.on_provide(),
            Step::AwaitPadC { method, pad } => {
                let Some(head) = self.take_decrypted(pad + 2) else {
                    return Moved::Wait;
                };
                let len = [head[pad], head[pad + 1]];
                match bounded(len, MAX_INITIAL_PAYLOAD, MseError::PayloadTooLong) {
                    Ok(len) => self.step = Step::AwaitPayload { method, len },
                    Err(e) => return Moved::Failed(e),
                }
                Moved::On
            }
            Step::AwaitPayload { method, len } => {
                let Some(payload) = self.take_decrypted(len) else {
                    return Moved::Wait;
                };
                self.finish(method, payload)
            }
            Step::Over => Moved::Wait,
        }
    }

    /// The handshake is over: what is buffered is the stream.
    fn finish(&mut self, method: Method, initial_payload: Vec<u8>) -> Moved {
        let mut cipher = self
            .cipher
            .take()
            .expect("the streams exist once the keys are known");
        let mut rest = std::mem::take(&mut self.buf);
        let cipher = match method {
            Method::Rc4 => {
                cipher.decrypt(&mut rest);
                Some(cipher)
            }
            Method::Plaintext => None,
        };
        Moved::Done(Box::new(Established {
            info_hash: self.info_hash.expect("known once the handshake is over"),
            method,
            cipher,
            initial_payload,
            rest,
        }))
    }

    /// Takes the peer's key once all of it is here, as `S` (its key to the power of ours), if
    /// valid.
    fn take_key(&mut self) -> Option<Result<[u8; KEY_LEN], MseError>> {
        if self.buf.len() < KEY_LEN {
            return None;
        }
        let key: Vec<u8> = self.buf.drain(..KEY_LEN).collect();
        Some(self.key.shared(&key))
    }

    // ---- initiator ----

    fn on_key(&mut self) -> Moved {
        let s = match self.take_key() {
            None => return Moved::Wait,
            Some(Err(e)) => return Moved::Failed(e),
            Some(Ok(s)) => s,
        };
        let Role::Initiator {
            offer,
            initial_payload,
        } = &self.role
        else {
            unreachable!("only an initiator awaits a key");
        };
        let info_hash = self.info_hash.expect("an initiator knows its torrent");
        let mut cipher = Cipher::initiator(&s, &info_hash);
        // Message 3.
        let req2 = req2_hash(&info_hash);
        let req3 = req3_hash(&s);
        self.transmit.extend_from_slice(&req1_hash(&s));
        self.transmit
            .extend(req2.iter().zip(req3.iter()).map(|(a, b)| a ^ b));
        let start = self.transmit.len();
        let ia = &initial_payload[..initial_payload.len().min(MAX_INITIAL_PAYLOAD)];
        self.transmit.extend_from_slice(&VC);
        self.transmit.extend_from_slice(&offer.0.to_be_bytes());
        self.transmit.extend_from_slice(&0u16.to_be_bytes());
        self.transmit
            .extend_from_slice(&(ia.len() as u16).to_be_bytes());
        self.transmit.extend_from_slice(ia);
        cipher.encrypt(&mut self.transmit[start..]);
        let mut marker = VC;
        cipher.decrypt(&mut marker);
        self.cipher = Some(cipher);
        self.step = Step::AwaitVc { marker };
        Moved::On
    }

    fn on_vc(&mut self, marker: [u8; 8]) -> Moved {
        match find(&self.buf, &marker, MAX_PAD) {
            Found::At(at) => {
                self.buf.drain(..at + marker.len());
                self.step = Step::AwaitSelect;
                Moved::On
            }
            Found::NotYet => Moved::Wait,
            Found::Never => Moved::Failed(MseError::NoSyncMarker),
        }
    }

    fn on_select(&mut self) -> Moved {
        let Some(head) = self.take_decrypted(6) else {
            return Moved::Wait;
        };
        let select = Methods(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        let Role::Initiator { offer, .. } = &self.role else {
            unreachable!("only an initiator awaits a select");
        };
        let method = if select == Methods::RC4 && offer.contains(Methods::RC4) {
            Method::Rc4
        } else if select == Methods::PLAINTEXT && offer.contains(Methods::PLAINTEXT) {
            Method::Plaintext
        } else {
            return Moved::Failed(MseError::BadSelect);
        };
        match bounded([head[4], head[5]], MAX_PAD, MseError::PadTooLong) {
            Ok(pad) => self.step = Step::AwaitPadD { method, pad },
            Err(e) => return Moved::Failed(e),
        }
        Moved::On
    }

    // ---- responder ----

    fn on_peer_key(&mut self, rng: &mut Rng) -> Moved {
        let s = match self.take_key() {
            None => return Moved::Wait,
            Some(Err(e)) => return Moved::Failed(e),
            Some(Ok(s)) => s,
        };
        self.send_key(rng);
        self.step = Step::AwaitReq1 {
            s,
            req1: req1_hash(&s),
        };
        Moved::On
    }

    fn on_req1(
        &mut self,
        s: [u8; KEY_LEN],
        req1: [u8; 20],
        lookup: &dyn Fn(&[u8; 20]) -> Option<InfoHash>,
    ) -> Moved {
        let at = match find(&self.buf, &req1, MAX_PAD) {
            Found::At(at) => at,
            Found::NotYet => return Moved::Wait,
            Found::Never => return Moved::Failed(MseError::NoSyncMarker),
        };
        if self.buf.len() < at + 40 {
            return Moved::Wait;
        }
        let req3 = req3_hash(&s);
        let mut req2 = [0u8; 20];
        for (i, b) in req2.iter_mut().enumerate() {
            *b = self.buf[at + 20 + i] ^ req3[i];
        }
        let Some(info_hash) = lookup(&req2) else {
            return Moved::Failed(MseError::UnknownTorrent);
        };
        self.buf.drain(..at + 40);
        self.info_hash = Some(info_hash);
        self.cipher = Some(Cipher::responder(&s, &info_hash));
        self.step = Step::AwaitProvide;
        Moved::On
    }

    fn on_provide(&mut self) -> Moved {
        let Some(head) = self.take_decrypted(8 + 4 + 2) else {
            return Moved::Wait;
        };
        if head[..8] != VC {
            return Moved::Failed(MseError::BadVc);
        }
        let provide = Methods(u32::from_be_bytes([head[8], head[9], head[10], head[11]]));
        let pad = match bounded([head[12], head[13]], MAX_PAD, MseError::PadTooLong) {
            Ok(pad) => pad,
            Err(e) => return Moved::Failed(e),
        };
        let Role::Responder { allow } = &self.role else {
            unreachable!("only a responder awaits a provide");
        };
        let common = provide.and(*allow);
        let (method, select) = if common.contains(Methods::RC4) {
            (Method::Rc4, Methods::RC4)
        } else if common.contains(Methods::PLAINTEXT) {
            (Method::Plaintext, Methods::PLAINTEXT)
        } else {
            return Moved::Failed(MseError::NoCommonMethod);
        };
        // Message 4, with no padding.
        let mut answer = Vec::with_capacity(14);
        answer.extend_from_slice(&VC);
        answer.extend_from_slice(&select.0.to_be_bytes());
        answer.extend_from_slice(&0u16.to_be_bytes());
        if let Some(c) = &mut self.cipher {
            c.encrypt(&mut answer);
        }
        self.transmit.extend_from_slice(&answer);
        self.step = Step::AwaitPadC { method, pad };
        Moved::On
    }
}

/// A big-endian length field, if at most `max`; else `too_long` of it.
fn bounded(field: [u8; 2], max: usize, too_long: fn(u16) -> MseError) -> Result<usize, MseError> {
    let len = u16::from_be_bytes(field);
    if usize::from(len) > max {
        return Err(too_long(len));
    }
    Ok(usize::from(len))
}

/// Where a marker is in a buffer that may hold up to `pad` bytes before it.
enum Found {
    At(usize),
    NotYet,
    Never,
}

fn find(buf: &[u8], marker: &[u8], pad: usize) -> Found {
    let searched = buf.len().min(pad + marker.len());
    match buf[..searched]
        .windows(marker.len())
        .position(|w| w == marker)
    {
        Some(at) => Found::At(at),
        None if buf.len() >= pad + marker.len() => Found::Never,
        None => Found::NotYet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_A: InfoHash = InfoHash([7; 20]);
    const HASH_B: InfoHash = InfoHash([9; 20]);

    fn lookup(req2: &[u8; 20]) -> Option<InfoHash> {
        [HASH_A, HASH_B].into_iter().find(|h| req2_hash(h) == *req2)
    }

    /// Runs a handshake between `a` (initiator) and `b` (responder), delivering bytes in chunks
    /// of `chunk`, with `extra` appended to B's first transmit after message 4 is out (stream
    /// bytes B sends at once). Returns both outcomes.
    fn run(
        mut a: MseHandshake,
        mut b: MseHandshake,
        chunk: usize,
        rng: &mut Rng,
    ) -> (Progress, Progress) {
        let (mut ra, mut rb) = (Progress::Pending, Progress::Pending);
        for _ in 0..100 {
            let to_b = a.take_transmit();
            for c in to_b.chunks(chunk.max(1)) {
                if matches!(rb, Progress::Pending) {
                    rb = b.handle_bytes(rng, c, &lookup);
                }
            }
            let to_a = b.take_transmit();
            for c in to_a.chunks(chunk.max(1)) {
                if matches!(ra, Progress::Pending) {
                    ra = a.handle_bytes(rng, c, &lookup);
                }
            }
            if !matches!(ra, Progress::Pending) && !matches!(rb, Progress::Pending) {
                break;
            }
            if to_a.is_empty() && a.transmit.is_empty() && b.transmit.is_empty() {
                break;
            }
        }
        (ra, rb)
    }

    fn done(p: Progress) -> Established {
        match p {
            Progress::Done(d) => *d,
            other => panic!("not done: {other:?}"),
        }
    }

    fn failed(p: Progress) -> MseError {
        match p {
            Progress::Failed(e) => e,
            other => panic!("not failed: {other:?}"),
        }
    }

    #[test]
    fn both_roles_agree_on_every_method_and_chunking() {
        let cases = [
            (Methods::BOTH, Methods::BOTH, Method::Rc4),
            (Methods::RC4, Methods::BOTH, Method::Rc4),
            (Methods::BOTH, Methods::RC4, Method::Rc4),
            (Methods::PLAINTEXT, Methods::BOTH, Method::Plaintext),
            (Methods::BOTH, Methods::PLAINTEXT, Method::Plaintext),
        ];
        for (seed, (offer, allow, method)) in cases.into_iter().enumerate() {
            for chunk in [1, 7, 96, 100_000] {
                let mut rng = Rng::new(seed as u64 * 31 + chunk as u64);
                let now = Instant::ZERO;
                let ia = b"\x13BitTorrent protocol and the rest of it".to_vec();
                let a = MseHandshake::initiator(now, &mut rng, HASH_B, offer, ia.clone());
                let b = MseHandshake::responder(now, &mut rng, allow);
                let (ra, rb) = run(a, b, chunk, &mut rng);
                let (mut da, mut db) = (done(ra), done(rb));
                assert_eq!((da.method, db.method), (method, method));
                assert_eq!((da.info_hash, db.info_hash), (HASH_B, HASH_B));
                assert_eq!(db.initial_payload, ia);
                assert!(da.initial_payload.is_empty());
                assert!(da.rest.is_empty() && db.rest.is_empty());
                assert_eq!(da.cipher.is_some(), method == Method::Rc4);
                if let (Some(ca), Some(cb)) = (&mut da.cipher, &mut db.cipher) {
                    for round in 0..3u8 {
                        let plain = vec![round; 5000];
                        let mut wire = plain.clone();
                        ca.encrypt(&mut wire);
                        assert_ne!(wire, plain);
                        cb.decrypt(&mut wire);
                        assert_eq!(wire, plain);
                        let mut back = plain.clone();
                        cb.encrypt(&mut back);
                        ca.decrypt(&mut back);
                        assert_eq!(back, plain);
                    }
                }
            }
        }
    }

    #[test]
    fn stream_bytes_behind_the_handshake_come_back_decrypted() {
        let mut rng = Rng::new(5);
        let now = Instant::ZERO;
        let mut a = MseHandshake::initiator(now, &mut rng, HASH_A, Methods::RC4, vec![1, 2, 3]);
        let mut b = MseHandshake::responder(now, &mut rng, Methods::BOTH);
        let m1 = a.take_transmit();
        assert!(matches!(
            b.handle_bytes(&mut rng, &m1, &lookup),
            Progress::Pending
        ));
        let m2 = b.take_transmit();
        assert!(matches!(
            a.handle_bytes(&mut rng, &m2, &lookup),
            Progress::Pending
        ));
        let m3 = a.take_transmit();
        let mut db = done(b.handle_bytes(&mut rng, &m3, &lookup));
        // B answers with message 4 and, in the same write, its first stream bytes.
        let mut m4 = b.take_transmit();
        let mut stream_bytes = b"bitfield and more".to_vec();
        db.cipher.as_mut().expect("rc4").encrypt(&mut stream_bytes);
        m4.extend_from_slice(&stream_bytes);
        let da = done(a.handle_bytes(&mut rng, &m4, &lookup));
        assert_eq!(da.rest, b"bitfield and more");
        assert_eq!(db.initial_payload, [1, 2, 3]);
    }

    #[test]
    fn a_plaintext_selection_leaves_the_stream_in_the_clear() {
        let mut rng = Rng::new(6);
        let now = Instant::ZERO;
        let mut a = MseHandshake::initiator(now, &mut rng, HASH_A, Methods::BOTH, Vec::new());
        let mut b = MseHandshake::responder(now, &mut rng, Methods::PLAINTEXT);
        let m1 = a.take_transmit();
        let _ = b.handle_bytes(&mut rng, &m1, &lookup);
        let m2 = b.take_transmit();
        let _ = a.handle_bytes(&mut rng, &m2, &lookup);
        let m3 = a.take_transmit();
        let db = done(b.handle_bytes(&mut rng, &m3, &lookup));
        assert_eq!(db.method, Method::Plaintext);
        let mut m4 = b.take_transmit();
        m4.extend_from_slice(b"clear");
        let da = done(a.handle_bytes(&mut rng, &m4, &lookup));
        assert_eq!(da.rest, b"clear");
    }

    /// A responder fed `m1`, then `after` in place of message 3.
    fn responder_fails_on(after: &[u8]) -> MseError {
        let mut rng = Rng::new(8);
        let now = Instant::ZERO;
        let mut a = MseHandshake::initiator(now, &mut rng, HASH_A, Methods::BOTH, Vec::new());
        let mut b = MseHandshake::responder(now, &mut rng, Methods::BOTH);
        let m1 = a.take_transmit();
        let key = &m1[..KEY_LEN];
        let _ = b.handle_bytes(&mut rng, key, &lookup);
        failed(b.handle_bytes(&mut rng, after, &lookup))
    }

    #[test]
    fn garbage_after_the_key_fails_as_no_sync_marker_within_the_bound() {
        // 531 bytes: one short of padding plus the hash, so still waiting.
        let mut rng = Rng::new(8);
        let now = Instant::ZERO;
        let mut a = MseHandshake::initiator(now, &mut rng, HASH_A, Methods::BOTH, Vec::new());
        let mut b = MseHandshake::responder(now, &mut rng, Methods::BOTH);
        let m1 = a.take_transmit();
        let _ = b.handle_bytes(&mut rng, &m1[..KEY_LEN], &lookup);
        let garbage = vec![0xaa; MAX_PAD + 20 - 1];
        assert!(matches!(
            b.handle_bytes(&mut rng, &garbage, &lookup),
            Progress::Pending
        ));
        assert_eq!(
            failed(b.handle_bytes(&mut rng, &[0xaa], &lookup)),
            MseError::NoSyncMarker
        );
        assert_eq!(
            responder_fails_on(&vec![0x55; 5000]),
            MseError::NoSyncMarker
        );
    }

    /// A full exchange up to message 3, which `tamper` may change (it gets `S`'s `req1` offset
    /// of 0 and the bytes after the 40 bytes of hashes, still encrypted) before the responder
    /// reads it.
    fn tampered(offer: Methods, allow: Methods, tamper: impl Fn(&mut Vec<u8>)) -> Progress {
        let mut rng = Rng::new(9);
        let now = Instant::ZERO;
        let mut a = MseHandshake::initiator(now, &mut rng, HASH_A, offer, vec![0; 10]);
        let mut b = MseHandshake::responder(now, &mut rng, allow);
        let m1 = a.take_transmit();
        let _ = b.handle_bytes(&mut rng, &m1, &lookup);
        let m2 = b.take_transmit();
        let _ = a.handle_bytes(&mut rng, &m2, &lookup);
        let mut m3 = a.take_transmit();
        tamper(&mut m3);
        b.handle_bytes(&mut rng, &m3, &lookup)
    }

    #[test]
    fn a_wrong_vc_an_unknown_torrent_and_no_common_method_are_named() {
        assert_eq!(
            failed(tampered(Methods::BOTH, Methods::BOTH, |m| m[40] ^= 1)),
            MseError::BadVc
        );
        assert_eq!(
            failed(tampered(Methods::BOTH, Methods::BOTH, |m| m[25] ^= 1)),
            MseError::UnknownTorrent
        );
        assert_eq!(
            failed(tampered(Methods::PLAINTEXT, Methods::RC4, |_| {})),
            MseError::NoCommonMethod
        );
        assert!(matches!(
            tampered(Methods::BOTH, Methods::BOTH, |_| {}),
            Progress::Done(_)
        ));
    }

    #[test]
    fn padding_past_the_bound_is_refused() {
        // len(PadC) sits at bytes 52..54 of message 3, encrypted: flipping a high bit of the
        // ciphertext flips the same bit of the length.
        let e = failed(tampered(Methods::BOTH, Methods::BOTH, |m| m[52] ^= 0x80));
        assert!(
            matches!(e, MseError::PadTooLong(n) if usize::from(n) > MAX_PAD),
            "{e:?}"
        );
    }

    #[test]
    fn degenerate_keys_are_refused() {
        let mut rng = Rng::new(10);
        for key in [
            vec![0u8; KEY_LEN],
            {
                let mut k = vec![0u8; KEY_LEN];
                k[KEY_LEN - 1] = 1;
                k
            },
            vec![0xff; KEY_LEN],
        ] {
            let mut b = MseHandshake::responder(Instant::ZERO, &mut rng, Methods::BOTH);
            assert_eq!(
                failed(b.handle_bytes(&mut rng, &key, &lookup)),
                MseError::BadKey
            );
        }
    }

    #[test]
    fn a_stalled_handshake_times_out_once() {
        let mut rng = Rng::new(11);
        let mut b = MseHandshake::responder(Instant::ZERO, &mut rng, Methods::BOTH);
        let limit = b.poll_timeout().expect("running");
        assert_eq!(limit, Instant::ZERO + HANDSHAKE_TIME_LIMIT);
        assert!(matches!(b.handle_timeout(Instant::ZERO), Progress::Pending));
        assert_eq!(failed(b.handle_timeout(limit)), MseError::TimedOut);
        assert_eq!(b.poll_timeout(), None);
        assert!(matches!(b.handle_timeout(limit), Progress::Pending));
    }

    #[test]
    fn a_plaintext_handshake_is_told_from_an_encrypted_one() {
        assert_eq!(is_plaintext_start(b""), None);
        assert_eq!(is_plaintext_start(b"\x13BitTor"), None);
        assert_eq!(
            is_plaintext_start(b"\x13BitTorrent protocol\0\0"),
            Some(true)
        );
        assert_eq!(is_plaintext_start(b"\x13BitTorrenX"), Some(false));
        assert_eq!(is_plaintext_start(&[0x8f, 1, 2]), Some(false));
    }

    #[test]
    fn the_public_pieces_make_the_handshake_the_machine_accepts() {
        // Proves a peer built from DhKey, the hashes and Cipher, as a script would, is
        // understood by the responder machine: the same S on both sides, the same streams.
        let mut rng = Rng::new(12);
        let now = Instant::ZERO;
        let mut b = MseHandshake::responder(now, &mut rng, Methods::BOTH);
        let a = DhKey::new(&mut rng);
        let _ = b.handle_bytes(&mut rng, &a.public(), &lookup);
        let m2 = b.take_transmit();
        let s = a.shared(&m2[..KEY_LEN]).expect("a sound key");
        let mut m3 = req1_hash(&s).to_vec();
        m3.extend(
            req2_hash(&HASH_B)
                .iter()
                .zip(req3_hash(&s))
                .map(|(x, y)| x ^ y),
        );
        let mut cipher = Cipher::initiator(&s, &HASH_B);
        let mut tail = VC.to_vec();
        tail.extend_from_slice(&Methods::RC4.0.to_be_bytes());
        tail.extend_from_slice(&[0, 0, 0, 3, 1, 2, 3]);
        cipher.encrypt(&mut tail);
        m3.extend_from_slice(&tail);
        let db = done(b.handle_bytes(&mut rng, &m3, &lookup));
        assert_eq!((db.info_hash, db.method), (HASH_B, Method::Rc4));
        assert_eq!(db.initial_payload, [1, 2, 3]);
        let mut m4 = b.take_transmit();
        cipher.decrypt(&mut m4);
        assert_eq!(m4[..8], VC);
        assert_eq!(
            DhKey::new(&mut rng).shared(&[0; KEY_LEN]),
            Err(MseError::BadKey)
        );
    }

    #[test]
    fn names_are_the_rules() {
        assert_eq!(MseError::NoSyncMarker.name(), "Mse/NoSyncMarker");
        assert_eq!(MseError::PadTooLong(600).name(), "Mse/PadTooLong");
    }
}
