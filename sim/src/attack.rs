//! Scripted hostile peers, for both engines: a group of role `attacker` is not a protocol
//! [`bt_protocol::session::Session`] but an [`Attacker`] script that writes raw bytes on every
//! connection it dials (to the peers the tracker gives it) or accepts (from honest peers that
//! dial it), one [`Attack`] per group. The engines carry the bytes (`fast/attack.rs`,
//! `turmoil/attacker.rs`); this module only says what to send and when.
//!
//! What a script sends depends only on the attack, the torrent, the attacker's own random
//! stream (forked from the scenario seed) and, for the MSE attacks, the honest peer's
//! Diffie-Hellman key (the engines hand a script the bytes it receives, [`Attacker::received`]),
//! so runs are deterministic.
//!
//! The MSE attacks speak the message stream encryption handshake (`bt_protocol::mse`, whose
//! public pieces build every byte: the keys, the hashes, the RC4 streams) in the role the
//! connection gives them: the initiator's (message 1 and 3) on a connection the attacker
//! dialled, the responder's (message 2 and 4) on one it accepted. Each goes wrong in one place.
//!
//! Bounds: a script writes at most the room it is given (the engines give [`MAX_QUEUED`] less
//! what is already queued on the connection); there is one script per open connection; of
//! what it receives a script keeps at most the peer's public key ([`KEY_LEN`] bytes), the rest
//! is discarded.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use bt_protocol::io::ConnId;
use bt_protocol::metainfo::{BLOCK_SIZE, InfoHash, TorrentLayout};
use bt_protocol::mse::{
    Cipher, DhKey, KEY_LEN, MAX_PAD, Methods, VC, req1_hash, req2_hash, req3_hash,
};
use bt_protocol::rng::Rng;
use bt_protocol::torrent::OUR_UT_METADATA;
use bt_protocol::wire::{
    ExtendedHandshake, Handshake, METADATA_PIECE_LEN, Message, MetadataMessage, PeerId, Reserved,
    metadata_piece_count,
};

use crate::scenario::Attack;

/// Most bytes an attacker keeps queued on one connection.
pub(crate) const MAX_QUEUED: usize = 64 * 1024;

/// Requests a flooding attacker sends in one go (more than the protocol's 500 queued requests).
const FLOOD_BATCH: u32 = 1_000;

/// How often a [`Attack::BadMetadata`] script sends its round of metadata pieces.
const BAD_METADATA_EVERY: Duration = Duration::from_millis(100);

/// The padding length an [`Attack::MseLongPadding`] script claims: over [`MAX_PAD`].
const LONG_PAD: u16 = 1000;

/// One attacker's state.
pub(crate) struct Attacker {
    attack: Attack,
    rng: Rng,
    /// The size of the torrent's real info dictionary (what [`Attack::BadMetadata`] advertises).
    metadata_size: u32,
    /// The script of each open connection.
    scripts: BTreeMap<ConnId, Script>,
    /// Addresses dialled already: each is dialled once.
    pub(crate) tried: BTreeSet<SocketAddr>,
}

/// Where one connection's script is.
struct Script {
    /// Steps taken (bytes trickled, messages sent, blocks sent: it depends on the attack).
    step: u64,
    /// The first block of the cycle a streaming attack walks.
    start: u32,
    /// The bytes a trickling attack sends one at a time.
    trickle: Vec<u8>,
    /// An MSE attack's handshake.
    mse: Option<MseScript>,
}

/// Where an MSE attack's handshake is on one connection.
struct MseScript {
    /// Our key pair.
    key: DhKey,
    /// Whether we dialled (the MSE initiator).
    initiator: bool,
    /// The peer's public key as it arrives: at most [`KEY_LEN`] bytes.
    peer_key: Vec<u8>,
    /// Whether the part after the peer's key went out (once).
    answered: bool,
}

/// What a script step hands the engine: bytes to queue, and when to be called again.
pub(crate) struct Step {
    pub(crate) bytes: Vec<u8>,
    pub(crate) again: Option<Duration>,
}

impl Attacker {
    /// An attacker running `attack`, drawing from `rng`, for a torrent whose info dictionary
    /// has `metadata_size` bytes.
    pub(crate) fn new(attack: Attack, rng: Rng, metadata_size: u32) -> Self {
        Attacker {
            attack,
            rng,
            metadata_size,
            scripts: BTreeMap::new(),
            tried: BTreeSet::new(),
        }
    }

    /// Whether `conn` has a script running.
    pub(crate) fn runs(&self, conn: ConnId) -> bool {
        self.scripts.contains_key(&conn)
    }

    /// Forgets `conn`; whether it had a script.
    pub(crate) fn forget(&mut self, conn: ConnId) -> bool {
        self.scripts.remove(&conn).is_some()
    }

    /// Our handshake, for `info_hash`, with a fresh peer id (one per connection, so no two of
    /// an attacker's connections are duplicates of each other) and no extension bits but for
    /// [`Attack::RequestFloodFast`] (without the Fast extension an honest peer cannot reject
    /// requests: it has to close) and the extension protocol for [`Attack::BadMetadata`] (BEP 10).
    fn handshake(&mut self, info_hash: InfoHash) -> [u8; 68] {
        let mut id = *b"-XX0001-000000000000";
        self.rng.fill(&mut id[8..]);
        let mut reserved = Reserved::NONE;
        reserved.set_fast(self.attack == Attack::RequestFloodFast);
        reserved.set_extension_protocol(self.attack == Attack::BadMetadata);
        Handshake {
            reserved,
            info_hash,
            peer_id: PeerId(id),
        }
        .encode()
    }

    /// The connection `conn` opened (`dialled`: by the attacker): what the script sends first.
    pub(crate) fn opened(
        &mut self,
        conn: ConnId,
        dialled: bool,
        info_hash: InfoHash,
        layout: &TorrentLayout,
    ) -> Step {
        let mut script = Script {
            step: 0,
            start: self.rng.below(u64::from(total_blocks(layout))) as u32,
            trickle: Vec::new(),
            mse: None,
        };
        let mut out = Vec::new();
        let again = match self.attack {
            Attack::MseGarbageAfterKey
            | Attack::MseLongPadding
            | Attack::MseWrongVc
            | Attack::MseStall => {
                let mse = MseScript {
                    key: DhKey::new(&mut self.rng),
                    initiator: dialled,
                    peer_key: Vec::new(),
                    answered: false,
                };
                out.extend_from_slice(&mse.key.public());
                if self.attack == Attack::MseGarbageAfterKey {
                    // Past the bound either role searches for its marker in: the responder's
                    // `HASH('req1', S)` within MAX_PAD + 20 bytes, the initiator's VC within
                    // MAX_PAD + 8.
                    let len = MAX_PAD + 21 + self.rng.below(64) as usize;
                    let start = out.len();
                    out.resize(start + len, 0);
                    self.rng.fill(&mut out[start..]);
                }
                script.mse = Some(mse);
                None
            }
            Attack::Silent => None,
            Attack::WrongInfoHash => {
                let mut other = info_hash;
                self.rng.fill(&mut other.0);
                if other == info_hash {
                    other.0[0] ^= 0xff;
                }
                out.extend_from_slice(&self.handshake(other));
                None
            }
            Attack::SlowlorisHandshake => {
                script.trickle = self.handshake(info_hash).to_vec();
                Some(Duration::ZERO)
            }
            _ => {
                out.extend_from_slice(&self.handshake(info_hash));
                self.after_handshake(&mut script, layout, &mut out)
            }
        };
        self.scripts.insert(conn, script);
        Step { bytes: out, again }
    }

    /// What the script sends right after a well-formed handshake; when it is due again.
    fn after_handshake(
        &mut self,
        script: &mut Script,
        layout: &TorrentLayout,
        out: &mut Vec<u8>,
    ) -> Option<Duration> {
        let pieces = layout.piece_count();
        let bitfield_len = pieces.div_ceil(8) as usize;
        match self.attack {
            Attack::Silent
            | Attack::WrongInfoHash
            | Attack::SlowlorisHandshake
            | Attack::MseGarbageAfterKey
            | Attack::MseLongPadding
            | Attack::MseWrongVc
            | Attack::MseStall => None,
            Attack::BadBitfield => {
                // Spare bits need a piece count that is not a multiple of 8.
                let len = if !pieces.is_multiple_of(8) && self.rng.below(2) == 0 {
                    bitfield_len
                } else {
                    bitfield_len - 1
                };
                Message::Bitfield(&vec![0xff; len]).encode_into(out);
                None
            }
            Attack::HaveOutOfRange => {
                let piece = pieces + self.rng.below(1 << 16) as u32;
                Message::Have { piece }.encode_into(out);
                None
            }
            Attack::BadRequest => {
                Message::Interested.encode_into(out);
                let piece = self.rng.below(u64::from(pieces)) as u32;
                let (offset, len) = if self.rng.below(2) == 0 {
                    // The block just past the piece's end.
                    let index = layout.piece(piece).expect("below the piece count");
                    (layout.piece_len(index), BLOCK_SIZE)
                } else {
                    (0, 2 * BLOCK_SIZE)
                };
                Message::Request { piece, offset, len }.encode_into(out);
                None
            }
            Attack::RequestFlood | Attack::RequestFloodFast => {
                Message::Interested.encode_into(out);
                flood(script, layout, FLOOD_BATCH, out);
                Some(Duration::from_millis(100))
            }
            Attack::UnrequestedPiece => Some(Duration::ZERO),
            Attack::HugeLengthPrefix => {
                out.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 7]);
                None
            }
            Attack::Slowloris => {
                // A block message that would take four and a half hours to arrive.
                let data = vec![0u8; BLOCK_SIZE as usize];
                Message::Piece {
                    piece: 0,
                    offset: 0,
                    data: &data,
                }
                .encode_into(&mut script.trickle);
                Some(Duration::from_secs(1))
            }
            Attack::ChokeStorm => {
                // Every piece (spare bits clear), so leechers want it, then an unchoke.
                Message::Bitfield(&full_bitfield(pieces)).encode_into(out);
                Message::Unchoke.encode_into(out);
                Some(Duration::from_millis(50))
            }
            Attack::BadMetadata => {
                // BEP 10: the extension handshake comes right after the BitTorrent one, offering
                // the metadata at its true size; then every piece, so magnets want it.
                let handshake = ExtendedHandshake {
                    m: [("ut_metadata".to_owned(), 1)].into_iter().collect(),
                    metadata_size: Some(u64::from(self.metadata_size)),
                    ..ExtendedHandshake::default()
                }
                .encode();
                Message::Extended {
                    id: 0,
                    payload: &handshake,
                }
                .encode_into(out);
                Message::Bitfield(&full_bitfield(pieces)).encode_into(out);
                Some(BAD_METADATA_EVERY)
            }
        }
    }

    /// Whether the script reads what it receives (the engines need not hand the bytes over
    /// otherwise).
    pub(crate) fn reads(&self) -> bool {
        self.attack.is_mse()
    }

    /// `bytes` arrived on `conn`: what the script answers. An MSE attack waits for the peer's
    /// public key and then sends the rest of its handshake, wrong where the attack says; every
    /// other script ignores what it receives.
    pub(crate) fn received(&mut self, conn: ConnId, bytes: &[u8], info_hash: InfoHash) -> Step {
        let attack = self.attack;
        let mut out = Vec::new();
        if let Some(mse) = self.scripts.get_mut(&conn).and_then(|s| s.mse.as_mut())
            && !mse.answered
        {
            let want = KEY_LEN - mse.peer_key.len();
            mse.peer_key
                .extend_from_slice(&bytes[..bytes.len().min(want)]);
            if mse.peer_key.len() == KEY_LEN {
                mse.answered = true;
                // A degenerate key from an honest peer cannot happen; say nothing to one.
                if let Ok(s) = mse.key.shared(&mse.peer_key) {
                    let initiator = mse.initiator;
                    mse_answer(attack, initiator, &s, info_hash, &mut self.rng, &mut out);
                }
            }
        }
        Step {
            bytes: out,
            again: None,
        }
    }

    /// The script of `conn` is due: its next bytes (at most `room`), and when it is due again.
    pub(crate) fn tick(&mut self, conn: ConnId, layout: &TorrentLayout, room: usize) -> Step {
        let attack = self.attack;
        let metadata_size = self.metadata_size;
        let Some(script) = self.scripts.get_mut(&conn) else {
            return Step {
                bytes: Vec::new(),
                again: None,
            };
        };
        let mut out = Vec::new();
        let again = match attack {
            Attack::Slowloris | Attack::SlowlorisHandshake => {
                match script.trickle.get(script.step as usize) {
                    Some(b) if room > 0 => {
                        out.push(*b);
                        script.step += 1;
                        Some(Duration::from_secs(1))
                    }
                    Some(_) => Some(Duration::from_secs(1)),
                    None => None,
                }
            }
            Attack::ChokeStorm => {
                if room >= 5 {
                    let m = if script.step.is_multiple_of(2) {
                        Message::Choke
                    } else {
                        Message::Unchoke
                    };
                    m.encode_into(&mut out);
                    script.step += 1;
                }
                Some(Duration::from_millis(50))
            }
            Attack::RequestFlood | Attack::RequestFloodFast => {
                let fit = (room / 17) as u32;
                flood(script, layout, fit.min(FLOOD_BATCH), &mut out);
                Some(Duration::from_millis(100))
            }
            Attack::UnrequestedPiece => {
                let data = vec![0u8; BLOCK_SIZE as usize];
                let blocks = total_blocks(layout);
                let mut room = room;
                while room >= BLOCK_SIZE as usize + 13 {
                    let n = (u64::from(script.start) + script.step) % u64::from(blocks);
                    let block = nth_block(layout, n as u32);
                    let before = out.len();
                    Message::Piece {
                        piece: block.0,
                        offset: block.1,
                        data: &data[..block.2 as usize],
                    }
                    .encode_into(&mut out);
                    room -= out.len() - before;
                    script.step += 1;
                }
                Some(Duration::from_millis(50))
            }
            Attack::BadMetadata => {
                // Every metadata piece in turn, each of its true length and wrong bytes, sent
                // under the id bt advertises for ut_metadata (the script does not read what bt
                // sends, so it cannot wait for the requests: a fetch takes what it asked for).
                let pieces = metadata_piece_count(metadata_size).max(1);
                let mut room = room;
                // A round goes on from where the last one stopped for want of room.
                for _ in 0..pieces {
                    let piece = (script.step % u64::from(pieces)) as u32;
                    let start = piece as usize * METADATA_PIECE_LEN;
                    let len = (metadata_size as usize - start).min(METADATA_PIECE_LEN);
                    let mut data = vec![0u8; len];
                    self.rng.fill(&mut data);
                    let mut payload = Vec::with_capacity(len + 64);
                    MetadataMessage::Data {
                        piece,
                        total_size: u64::from(metadata_size),
                        data: &data,
                    }
                    .encode_into(&mut payload);
                    let before = out.len();
                    Message::Extended {
                        id: OUR_UT_METADATA,
                        payload: &payload,
                    }
                    .encode_into(&mut out);
                    if out.len() - before > room {
                        out.truncate(before);
                        break;
                    }
                    room -= out.len() - before;
                    script.step += 1;
                }
                Some(BAD_METADATA_EVERY)
            }
            _ => None,
        };
        Step { bytes: out, again }
    }
}

/// What an MSE attack sends once it has the shared secret `s`: as the initiator, message 3
/// (`HASH('req1', S)`, `HASH('req2', SKEY) xor HASH('req3', S)`, then under RC4 `VC`,
/// `crypto_provide`, `len(PadC)`, `len(IA)`); as the responder, message 4 (under RC4 `VC`,
/// `crypto_select`, `len(PadD)`). [`Attack::MseStall`] stops after the initiator's two hashes
/// (the responder's stall is its key alone); [`Attack::MseLongPadding`] claims [`LONG_PAD`]
/// bytes of padding; [`Attack::MseWrongVc`] sends a `VC` that is not zero (the responder's is
/// followed by [`MAX_PAD`] random bytes, so the initiator, which finds `VC` by searching for it,
/// runs past its bound instead of waiting).
fn mse_answer(
    attack: Attack,
    initiator: bool,
    s: &[u8; KEY_LEN],
    info_hash: InfoHash,
    rng: &mut Rng,
    out: &mut Vec<u8>,
) {
    if attack == Attack::MseGarbageAfterKey {
        return;
    }
    let mut cipher = if initiator {
        out.extend_from_slice(&req1_hash(s));
        out.extend(
            req2_hash(&info_hash)
                .iter()
                .zip(req3_hash(s))
                .map(|(a, b)| a ^ b),
        );
        Cipher::initiator(s, &info_hash)
    } else {
        Cipher::responder(s, &info_hash)
    };
    if attack == Attack::MseStall {
        return;
    }
    let mut vc = VC;
    if attack == Attack::MseWrongVc {
        rng.fill(&mut vc);
        vc[7] |= 1;
    }
    let pad = if attack == Attack::MseLongPadding {
        LONG_PAD
    } else {
        0
    };
    let start = out.len();
    out.extend_from_slice(&vc);
    let methods = if initiator {
        Methods::BOTH
    } else {
        Methods::RC4
    };
    out.extend_from_slice(&methods.0.to_be_bytes());
    out.extend_from_slice(&pad.to_be_bytes());
    if initiator {
        // len(IA): no initial payload.
        out.extend_from_slice(&0u16.to_be_bytes());
    } else if attack == Attack::MseWrongVc {
        let at = out.len();
        out.resize(at + MAX_PAD, 0);
        rng.fill(&mut out[at..]);
    }
    cipher.encrypt(&mut out[start..]);
}

/// A bitfield of every one of `pieces` pieces, spare bits clear.
fn full_bitfield(pieces: u32) -> Vec<u8> {
    let len = pieces.div_ceil(8) as usize;
    let mut bits = vec![0xff; len];
    if !pieces.is_multiple_of(8) {
        bits[len - 1] = 0xff << (8 - pieces % 8);
    }
    bits
}

/// Blocks in the torrent.
fn total_blocks(layout: &TorrentLayout) -> u32 {
    layout.pieces().map(|p| layout.block_count(p)).sum()
}

/// Block `n` of the torrent in order: (piece, offset, length).
fn nth_block(layout: &TorrentLayout, mut n: u32) -> (u32, u32, u32) {
    for p in layout.pieces() {
        let count = layout.block_count(p);
        if n < count {
            let b = layout.block(p, n).expect("in range");
            return (p.get(), b.offset, b.len);
        }
        n -= count;
    }
    (0, 0, BLOCK_SIZE.min(layout.piece_length()))
}

/// Appends `count` requests for the blocks after the script's last, cycling.
fn flood(script: &mut Script, layout: &TorrentLayout, count: u32, out: &mut Vec<u8>) {
    let blocks = total_blocks(layout);
    for _ in 0..count {
        let n = (u64::from(script.start) + script.step) % u64::from(blocks);
        let (piece, offset, len) = nth_block(layout, n as u32);
        Message::Request { piece, offset, len }.encode_into(out);
        script.step += 1;
    }
}
