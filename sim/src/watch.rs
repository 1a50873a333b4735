//! The wire observer, for both engines: reads every byte each peer sends (and, on the turmoil
//! engine, receives), outside the peers, and checks two rules of the peer wire protocol on the
//! stream itself (not on what the sessions believe):
//!
//! - no block goes to a peer we choke, unless it is in a piece we told it was allowed fast
//!   (BEP 6): a `piece` after our `choke` and before our `unchoke` is a violation;
//! - a peer never has more requests in flight to another than the cap (`max_pipeline`): a
//!   request counts from when it is sent until its block or reject comes back, or it is
//!   cancelled. The fast engine sees both ends and counts an answer when the other end sends it
//!   ([`EndWatch::answered`]); the turmoil engine sees one host's socket and counts it when it
//!   arrives ([`EndWatch::received`]). Either way the observer's count never exceeds the
//!   requester's own: no false alarms.
//!
//! The parser skips piece payloads without copying them and keeps only the fields it needs;
//! the requests it tracks per end are bounded by the cap plus one (beyond it, the violation is
//! reported and the excess not stored).

use std::collections::BTreeSet;

/// Bytes of the BEP 3 handshake every stream begins with.
const HANDSHAKE_LEN: usize = 68;

/// Message ids the observer reads.
const CHOKE: u8 = 0;
const UNCHOKE: u8 = 1;
const REQUEST: u8 = 6;
const PIECE: u8 = 7;
const CANCEL: u8 = 8;
const REJECT: u8 = 16;
const ALLOWED_FAST: u8 = 17;

/// Most allowed-fast pieces remembered per end (a peer that sends more is odd, not wrong; the
/// extra ones are forgotten, which can only make the choke rule stricter for them).
const MAX_ALLOWED_FAST: usize = 256;

/// A message the observer cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// `choke`.
    Choke,
    /// `unchoke`.
    Unchoke,
    /// `request`, `cancel`, `reject` or `piece` for a block (piece index, offset; `data` is the
    /// block's bytes a `piece` carries, 0 for the others).
    Block {
        id: u8,
        piece: u32,
        begin: u32,
        data: u64,
    },
    /// `allowed fast` for a piece.
    AllowedFast(u32),
}

/// A streaming reader of one direction of a connection: skips the handshake, then reads frame
/// headers and the few fields it needs, skipping the rest of each frame.
#[derive(Debug)]
pub(crate) struct Parser {
    handshake_left: usize,
    header: [u8; 17],
    have: usize,
    /// Header bytes this frame needs: 4 for the length, then up to 5 + 12.
    need: usize,
    /// Payload bytes of the current frame still to skip.
    skip: u64,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            handshake_left: HANDSHAKE_LEN,
            header: [0; 17],
            have: 0,
            need: 4,
            skip: 0,
        }
    }
}

impl Parser {
    /// Reads `bytes`, calling `seen` for each message of interest, in stream order.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], seen: &mut dyn FnMut(Seen)) {
        let hs = self.handshake_left.min(bytes.len());
        self.handshake_left -= hs;
        bytes = &bytes[hs..];
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = (self.skip.min(bytes.len() as u64)) as usize;
                self.skip -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (self.need - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < self.need {
                break;
            }
            let len = u32::from_be_bytes(self.header[..4].try_into().expect("4 bytes")) as u64;
            if self.need == 4 {
                if len == 0 {
                    // A keep-alive.
                    self.have = 0;
                    continue;
                }
                // The id and the fields this id needs, within the frame.
                self.need = 4 + (1 + 12).min(len as usize);
                continue;
            }
            let id = self.header[4];
            let field = |at: usize| {
                (self.need >= 4 + at + 4).then(|| {
                    u32::from_be_bytes(self.header[4 + at..8 + at].try_into().expect("4 bytes"))
                })
            };
            let message = match id {
                CHOKE => Some(Seen::Choke),
                UNCHOKE => Some(Seen::Unchoke),
                REQUEST | PIECE | CANCEL | REJECT => {
                    field(1).zip(field(5)).map(|(piece, begin)| Seen::Block {
                        id,
                        piece,
                        begin,
                        // The frame: the id, the index and the offset, then the block.
                        data: if id == PIECE {
                            len.saturating_sub(9)
                        } else {
                            0
                        },
                    })
                }
                ALLOWED_FAST => field(1).map(Seen::AllowedFast),
                _ => None,
            };
            if let Some(m) = message {
                seen(m);
            }
            self.skip = len + 4 - self.need as u64;
            self.have = 0;
            self.need = 4;
        }
    }
}

/// What the observer knows about one end of a connection (one direction of its stream).
#[derive(Debug, Default)]
pub(crate) struct EndWatch {
    parser: Parser,
    /// The other direction, when this end also sees what it receives (turmoil).
    incoming: Parser,
    /// Whether this end chokes the other (every connection starts choked).
    choking: Option<bool>,
    /// Pieces this end told the other it may have while choked.
    allowed_fast: Vec<u32>,
    /// Requests this end sent that are not answered or cancelled yet.
    requests: BTreeSet<(u32, u32)>,
}

/// A rule broken on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Breach {
    /// A block sent while choking the receiver, not allowed fast.
    BlockWhileChoking { piece: u32 },
    /// More requests in flight than the cap.
    TooManyRequests { in_flight: usize },
}

impl EndWatch {
    /// Whether this end chokes the other.
    fn chokes(&self) -> bool {
        self.choking.unwrap_or(true)
    }

    /// Reads what this end sends; `answered` is called for each block this end answers (a
    /// `piece` or `reject`), so the caller can clear it from the other end's requests. Returns
    /// the block bytes of the `piece` messages whose header these bytes complete (a block
    /// counts when its header is read, before its payload has all gone by).
    pub(crate) fn sent(
        &mut self,
        bytes: &[u8],
        cap: usize,
        answered: &mut dyn FnMut(u32, u32),
        breach: &mut dyn FnMut(Breach),
    ) -> u64 {
        let mut block_bytes = 0;
        let mut parser = std::mem::take(&mut self.parser);
        parser.feed(bytes, &mut |m| match m {
            Seen::Choke => self.choking = Some(true),
            Seen::Unchoke => self.choking = Some(false),
            Seen::AllowedFast(p) => {
                if self.allowed_fast.len() < MAX_ALLOWED_FAST && !self.allowed_fast.contains(&p) {
                    self.allowed_fast.push(p);
                }
            }
            Seen::Block {
                id,
                piece,
                begin,
                data,
            } => match id {
                REQUEST => {
                    if self.requests.len() >= cap {
                        breach(Breach::TooManyRequests {
                            in_flight: self.requests.len() + 1,
                        });
                    } else {
                        self.requests.insert((piece, begin));
                    }
                }
                CANCEL => {
                    self.requests.remove(&(piece, begin));
                }
                PIECE => {
                    if self.chokes() && !self.allowed_fast.contains(&piece) {
                        breach(Breach::BlockWhileChoking { piece });
                    }
                    block_bytes += data;
                    answered(piece, begin);
                }
                REJECT => answered(piece, begin),
                _ => {}
            },
        });
        self.parser = parser;
        block_bytes
    }

    /// The other end answered the request for `(piece, begin)`.
    pub(crate) fn answered(&mut self, piece: u32, begin: u32) {
        self.requests.remove(&(piece, begin));
    }

    /// Reads what this end receives: each `piece` or `reject` answers one of its requests.
    /// Returns how many blocks (and rejects) arrived.
    pub(crate) fn received(&mut self, bytes: &[u8]) -> u64 {
        let mut incoming = std::mem::take(&mut self.incoming);
        let mut answers = 0;
        incoming.feed(bytes, &mut |m| {
            if let Seen::Block {
                id: PIECE | REJECT,
                piece,
                begin,
                ..
            } = m
            {
                answers += 1;
                self.answered(piece, begin);
            }
        });
        self.incoming = incoming;
        answers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: u8, fields: &[u32], payload: usize) -> Vec<u8> {
        let len = 1 + 4 * fields.len() + payload;
        let mut f = (len as u32).to_be_bytes().to_vec();
        f.push(id);
        for x in fields {
            f.extend_from_slice(&x.to_be_bytes());
        }
        f.extend(std::iter::repeat_n(0xAB, payload));
        f
    }

    fn stream(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut s = vec![19u8; HANDSHAKE_LEN];
        s.extend_from_slice(&[0, 0, 0, 0]); // keep-alive
        for f in frames {
            s.extend_from_slice(f);
        }
        s
    }

    fn breaches(end: &mut EndWatch, bytes: &[u8], chunk: usize, cap: usize) -> Vec<Breach> {
        let mut out = Vec::new();
        for c in bytes.chunks(chunk) {
            end.sent(c, cap, &mut |_, _| {}, &mut |b| out.push(b));
        }
        out
    }

    #[test]
    fn a_block_sent_while_choking_is_caught_unless_allowed_fast() {
        // Proves the choke rule on a stream cut at every size: a piece before any unchoke,
        // or after a choke, breaches; one after unchoke or in an allowed-fast piece does not.
        let s = stream(&[
            frame(ALLOWED_FAST, &[3], 0),
            frame(PIECE, &[3, 0], 16384),
            frame(PIECE, &[4, 0], 100),
            frame(UNCHOKE, &[], 0),
            frame(PIECE, &[4, 16384], 100),
            frame(CHOKE, &[], 0),
            frame(9, &[], 2),
            frame(PIECE, &[5, 0], 7),
        ]);
        for chunk in [1, 2, 3, 7, 68, 1000, s.len()] {
            let mut end = EndWatch::default();
            assert_eq!(
                breaches(&mut end, &s, chunk, 250),
                [
                    Breach::BlockWhileChoking { piece: 4 },
                    Breach::BlockWhileChoking { piece: 5 }
                ],
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn requests_in_flight_are_counted_until_answered_or_cancelled() {
        // Proves the request count: cancels and answers free a slot; the cap + 1st breaches.
        let mut end = EndWatch::default();
        let reqs: Vec<Vec<u8>> = (0..3).map(|i| frame(REQUEST, &[i, 0, 16384], 0)).collect();
        assert!(breaches(&mut end, &stream(&reqs), 5, 3).is_empty());
        assert_eq!(
            breaches(&mut end, &frame(REQUEST, &[9, 0, 16384], 0), 100, 3),
            [Breach::TooManyRequests { in_flight: 4 }]
        );
        end.answered(0, 0);
        let cancel = frame(CANCEL, &[1, 0, 16384], 0);
        let more = [
            cancel,
            frame(REQUEST, &[7, 0, 1], 0),
            frame(REQUEST, &[8, 0, 1], 0),
        ]
        .concat();
        assert!(breaches(&mut end, &more, 4, 3).is_empty());
        assert_eq!(end.requests.len(), 3);
    }

    #[test]
    fn answers_received_free_request_slots() {
        // Proves the turmoil side: blocks and rejects arriving on the receive side, split at any
        // point, clear the requests they answer.
        let mut end = EndWatch::default();
        let reqs: Vec<Vec<u8>> = (0..3).map(|i| frame(REQUEST, &[i, 0, 16384], 0)).collect();
        assert!(breaches(&mut end, &stream(&reqs), 100, 3).is_empty());
        let back = stream(&[
            frame(PIECE, &[0, 0], 16384),
            frame(REJECT, &[2, 0, 16384], 0),
        ]);
        let mut answers = 0;
        for c in back.chunks(5) {
            answers += end.received(c);
        }
        assert_eq!(answers, 2);
        assert_eq!(end.requests.iter().copied().collect::<Vec<_>>(), [(1, 0)]);
    }

    #[test]
    fn answers_sent_are_reported_for_the_other_end() {
        // Proves a piece or reject sent names the block it answers, so the requester's count
        // drops when the answer leaves.
        let mut end = EndWatch::default();
        let s = stream(&[
            frame(UNCHOKE, &[], 0),
            frame(PIECE, &[2, 16384], 30),
            frame(REJECT, &[6, 0, 16384], 0),
        ]);
        let mut got = Vec::new();
        end.sent(&s, 250, &mut |p, b| got.push((p, b)), &mut |_| {
            panic!("no breach")
        });
        assert_eq!(got, [(2, 16384), (6, 0)]);
    }

    #[test]
    fn block_bytes_sent_are_counted_from_piece_headers() {
        // Proves the payload count: each `piece` message adds its block's length, once, however
        // the stream is cut; requests, rejects and other messages add nothing.
        let s = stream(&[
            frame(UNCHOKE, &[], 0),
            frame(PIECE, &[2, 0], 16384),
            frame(REQUEST, &[1, 0, 16384], 0),
            frame(REJECT, &[6, 0, 16384], 0),
            frame(PIECE, &[3, 16384], 30),
            frame(9, &[], 2),
        ]);
        for chunk in [1, 3, 13, 100, s.len()] {
            let mut end = EndWatch::default();
            let total: u64 = s
                .chunks(chunk)
                .map(|c| end.sent(c, 250, &mut |_, _| {}, &mut |_| {}))
                .sum();
            assert_eq!(total, 16384 + 30, "chunks of {chunk}");
        }
    }
}
