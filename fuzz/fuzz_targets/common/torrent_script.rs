//! What the `torrent` and `torrent_magnet` targets share: reading a script from the fuzz input,
//! a well-formed wire message drawn from it, and an answer to a disk operation (true, with a wrong
//! hash, or failed), with the check that a piece is never verified by a hash that is not its own.

use std::collections::VecDeque;

use bt_protocol::io::{DiskDone, DiskError, DiskOp};
use bt_protocol::metainfo::TorrentLayout;
use bt_protocol::time::Instant;
use bt_protocol::torrent::Torrent;
use bt_protocol::wire::Message;
use bytes::Bytes;

/// The fuzz input, read a byte at a time; past its end every read is `None` (or empty).
pub struct Script<'a>(pub &'a [u8]);

impl Script<'_> {
    pub fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.byte()?,
            self.byte()?,
            self.byte()?,
            self.byte()?,
        ]))
    }

    pub fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

/// A well-formed message of the core protocol (BEP 3 and 6) on pieces 0 to 8 (8 is past the
/// end of the targets' 8-piece torrent), encoded.
pub fn wire_message(s: &mut Script) -> Vec<u8> {
    let kind = s.byte().unwrap_or(0);
    let a = s.u32().unwrap_or(0) % 9;
    let offset = (u32::from(s.byte().unwrap_or(0)) % 3) * 16384;
    let len = if s.byte().unwrap_or(0) & 1 == 0 {
        16384
    } else {
        1000
    };
    let block_data = vec![a as u8; len as usize];
    let bits = [s.byte().unwrap_or(0)];
    let m = match kind % 12 {
        0 => Message::Unchoke,
        1 => Message::Choke,
        2 => Message::Interested,
        3 => Message::NotInterested,
        4 => Message::Have { piece: a },
        5 => Message::Bitfield(&bits),
        6 => Message::HaveAll,
        7 => Message::Request {
            piece: a,
            offset,
            len,
        },
        8 => Message::Piece {
            piece: a,
            offset,
            data: &block_data,
        },
        9 => Message::Cancel {
            piece: a,
            offset,
            len,
        },
        10 => Message::RejectRequest {
            piece: a,
            offset,
            len,
        },
        _ => Message::AllowedFast(a),
    };
    let mut buf = Vec::new();
    m.encode_into(&mut buf);
    buf
}

/// How [`answer_disk`] answers.
#[derive(Clone, Copy)]
pub struct Answer {
    /// The operation fails.
    pub fail: bool,
    /// A hash (of a piece or of blocks) is wrong.
    pub wrong: bool,
    /// Block hashes come back too few.
    pub short: bool,
}

/// Answers the oldest operation in `pending` as `how` says (content: every byte of piece `p` is
/// `p`, whose piece hashes `digest` gives) and feeds the answer to `torrent`; panics if a piece
/// becomes verified by a hash that is not its own.
pub fn answer_disk(
    torrent: &mut Torrent,
    now: Instant,
    pending: &mut VecDeque<DiskOp>,
    how: Answer,
    layout: &TorrentLayout,
    digest: fn(u32, usize) -> [u8; 20],
) {
    let Some(op) = pending.pop_front() else {
        return;
    };
    let err = || DiskError("injected".into());
    let done = match op {
        DiskOp::Write { block, .. } => DiskDone::Written {
            block,
            result: if how.fail { Err(err()) } else { Ok(()) },
        },
        DiskOp::Hash { piece } => DiskDone::Hashed {
            piece,
            result: if how.fail {
                Err(err())
            } else if how.wrong {
                Ok([0xee; 20])
            } else {
                Ok(digest(piece.get(), layout.piece_len(piece) as usize))
            },
        },
        DiskOp::HashBlocks { piece, blocks } => DiskDone::BlockHashes {
            piece,
            result: if how.fail {
                Err(err())
            } else {
                let take = if how.short {
                    blocks.len() / 2
                } else {
                    blocks.len()
                };
                Ok(blocks[..take]
                    .iter()
                    .map(|b| {
                        use sha1::{Digest, Sha1};
                        let byte = b.piece.get() as u8 ^ u8::from(how.wrong);
                        Sha1::digest(vec![byte; b.len as usize]).into()
                    })
                    .collect())
            },
        },
        DiskOp::Read { conn, block } => DiskDone::Read {
            conn,
            block,
            result: if how.fail {
                Err(err())
            } else {
                Ok(Bytes::from(vec![
                    block.piece.get() as u8;
                    block.len as usize
                ]))
            },
        },
    };
    let refuted = match &done {
        DiskDone::Hashed { piece, result } => (result.as_ref().ok()
            != Some(&digest(piece.get(), layout.piece_len(*piece) as usize)))
        .then_some(*piece),
        _ => None,
    };
    let had = refuted.map(|p| torrent.have().get(p.get()));
    torrent.handle_disk(now, done);
    if let (Some(p), Some(false)) = (refuted, had) {
        assert!(
            !torrent.have().get(p.get()),
            "piece {p} verified by a wrong or failed hash"
        );
    }
}
