//! An opt-in record of the byte streams of each uTP connection, for a simulator's observer:
//! digests of the bytes the client wrote into the socket and of the bytes the socket delivered,
//! in fixed chunks, so that the two ends of a connection can be compared after a run
//! ([`StreamDigest::compare`]).
//!
//! On only with [`super::ClientConfig::utp_stream_taps`]; off, nothing is recorded and nothing
//! allocated (the connections carry `None`). A tap is keyed so the driver can pair the two ends:
//! the initiator's address, the acceptor's address (the driver knows its own) and
//! [`UtpTap::conn_id`], the connection id of the initiator's SYN.
//!
//! Digests: FNV-1a (64 bits) of each [`STREAM_CHUNK`] bytes of the stream, in order, and of
//! the last partial chunk. Not cryptographic: it catches a lost, repeated, reordered or changed
//! byte, which is what a transport can get wrong.
//!
//! Bounds: a direction keeps at most [`MAX_STREAM_CHUNKS`] chunk digests (the rest are counted
//! in its total, not compared); the client keeps at most [`MAX_FINISHED_TAPS`] taps of ended
//! connections until the driver takes them ([`super::Client::take_utp_taps`]), dropping the
//! oldest beyond and counting them.

use core::net::SocketAddr;

/// Bytes per digested chunk.
pub const STREAM_CHUNK: usize = 64 * 1024;

/// Most chunk digests one direction keeps (a GiB of stream).
pub const MAX_STREAM_CHUNKS: usize = 16 * 1024;

/// Most taps of ended connections the client keeps for the driver.
pub const MAX_FINISHED_TAPS: usize = 1024;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The digest of one direction of a byte stream: see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamDigest {
    chunks: Vec<u64>,
    partial: u64,
    partial_len: usize,
    total: u64,
}

impl Default for StreamDigest {
    fn default() -> Self {
        StreamDigest {
            chunks: Vec::new(),
            partial: FNV_OFFSET,
            partial_len: 0,
            total: 0,
        }
    }
}

/// Where two digests of one stream part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamMismatch {
    /// More bytes were delivered than sent.
    Longer {
        /// Bytes sent.
        sent: u64,
        /// Bytes delivered.
        delivered: u64,
    },
    /// The chunk starting at this stream offset differs.
    Chunk {
        /// Its first byte's offset in the stream.
        offset: u64,
    },
}

impl StreamDigest {
    /// Adds `bytes`, the next ones of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        while !bytes.is_empty() {
            let take = (STREAM_CHUNK - self.partial_len).min(bytes.len());
            let mut h = self.partial;
            for b in &bytes[..take] {
                h ^= u64::from(*b);
                h = h.wrapping_mul(FNV_PRIME);
            }
            self.partial = h;
            self.partial_len += take;
            bytes = &bytes[take..];
            if self.partial_len == STREAM_CHUNK {
                if self.chunks.len() < MAX_STREAM_CHUNKS {
                    self.chunks.push(self.partial);
                }
                self.partial = FNV_OFFSET;
                self.partial_len = 0;
            }
        }
    }

    /// Bytes fed in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Compares what one end `delivered` with what the other `sent`: the delivered stream must
    /// be a prefix of the sent one. Every whole chunk delivered (that both kept) is compared,
    /// and the last partial chunk when both ends stopped at the same byte. Gives the bytes found
    /// equal.
    pub fn compare(sent: &StreamDigest, delivered: &StreamDigest) -> Result<u64, StreamMismatch> {
        if delivered.total > sent.total {
            return Err(StreamMismatch::Longer {
                sent: sent.total,
                delivered: delivered.total,
            });
        }
        let whole = delivered.chunks.len().min(sent.chunks.len());
        for i in 0..whole {
            if delivered.chunks[i] != sent.chunks[i] {
                return Err(StreamMismatch::Chunk {
                    offset: (i * STREAM_CHUNK) as u64,
                });
            }
        }
        let mut equal = (whole * STREAM_CHUNK) as u64;
        let all_kept = sent.chunks.len() < MAX_STREAM_CHUNKS;
        if delivered.total == sent.total && all_kept && delivered.partial_len > 0 {
            if delivered.partial != sent.partial {
                return Err(StreamMismatch::Chunk { offset: equal });
            }
            equal += delivered.partial_len as u64;
        }
        Ok(equal)
    }
}

/// The record of one uTP connection at one end: see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UtpTap {
    /// The other end's address.
    pub remote: SocketAddr,
    /// Whether this end sent the SYN.
    pub initiator: bool,
    /// The connection id the initiator's SYN carried (the initiator's receive id, the
    /// acceptor's send id): the same at both ends.
    pub conn_id: u16,
    /// What the client wrote into the socket.
    pub sent: StreamDigest,
    /// What the socket delivered to the client.
    pub delivered: StreamDigest,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn a_stream_delivered_whole_compares_equal_whatever_the_pieces() {
        // Proves the digest does not depend on how the stream was cut into writes and reads.
        let data = stream(3 * STREAM_CHUNK + 1234);
        let mut sent = StreamDigest::default();
        for piece in data.chunks(1400) {
            sent.feed(piece);
        }
        let mut delivered = StreamDigest::default();
        for piece in data.chunks(STREAM_CHUNK - 3) {
            delivered.feed(piece);
        }
        assert_eq!(
            StreamDigest::compare(&sent, &delivered),
            Ok(data.len() as u64)
        );
        // A prefix is fine too (the reader went away): its whole chunks are compared.
        let mut prefix = StreamDigest::default();
        prefix.feed(&data[..2 * STREAM_CHUNK + 10]);
        assert_eq!(
            StreamDigest::compare(&sent, &prefix),
            Ok(2 * STREAM_CHUNK as u64)
        );
    }

    #[test]
    fn one_corrupted_byte_is_a_mismatch_at_its_chunk() {
        // Proves the observer can fail: one byte changed in the second chunk, or in the last
        // partial one, is found; so is a stream delivered longer than sent.
        let data = stream(2 * STREAM_CHUNK + 500);
        let mut sent = StreamDigest::default();
        sent.feed(&data);
        let mut bad = data.clone();
        bad[STREAM_CHUNK + 17] ^= 1;
        let mut delivered = StreamDigest::default();
        delivered.feed(&bad);
        assert_eq!(
            StreamDigest::compare(&sent, &delivered),
            Err(StreamMismatch::Chunk {
                offset: STREAM_CHUNK as u64
            })
        );
        let mut bad = data.clone();
        *bad.last_mut().unwrap() ^= 0x80;
        let mut delivered = StreamDigest::default();
        delivered.feed(&bad);
        assert_eq!(
            StreamDigest::compare(&sent, &delivered),
            Err(StreamMismatch::Chunk {
                offset: 2 * STREAM_CHUNK as u64
            })
        );
        let mut longer = StreamDigest::default();
        longer.feed(&data);
        longer.feed(b"x");
        assert!(matches!(
            StreamDigest::compare(&sent, &longer),
            Err(StreamMismatch::Longer { .. })
        ));
    }
}
