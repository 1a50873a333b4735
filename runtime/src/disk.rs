//! [`DiskPool`]: the threads that carry out the protocol's disk work, hashing pieces as they are
//! written so a finished piece is verified without reading it back.
//!
//! Each operation goes to one worker chosen by its piece, so the writes of a piece and its hash
//! request run in order on one thread. A worker keeps a SHA-1 state per piece being written
//! (`PieceHasher`): a block at the next offset is written and hashed; a block ahead of it waits
//! in the piece's stash until the gap fills. When the protocol asks for the piece's hash and the
//! state covers the whole piece, the digest is at hand; otherwise (a stash that grew too big, a
//! write that failed, a piece written before this run) the piece is read back and hashed as
//! before. The digest is always of the bytes written: the protocol writes each block once (a
//! duplicate is dropped as unwanted before it reaches the disk).
//!
//! Bounds: at most [`MAX_HASHERS`] pieces tracked per worker and [`MAX_STASH_BYTES`] of stashed
//! blocks per worker; past either, pieces fall back to the read-back hash. The queue of a worker
//! holds what the protocol has asked for, which its request pipeline bounds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;

use bt_protocol::io::{DiskDone, DiskOp};
use bt_protocol::metainfo::{BlockRef, TorrentLayout};
use bytes::Bytes;
use sha1::{Digest, Sha1};

use crate::storage::Storage;

/// Most pieces one worker hashes incrementally at once.
pub const MAX_HASHERS: usize = 256;

/// Most bytes of out-of-order blocks one worker holds for incremental hashing.
pub const MAX_STASH_BYTES: usize = 8 * 1024 * 1024;

/// The SHA-1 of a piece's prefix written so far, and blocks written past it.
struct PieceHasher {
    sha: Sha1,
    /// Bytes of the piece hashed (the next offset expected).
    next: u32,
    /// Blocks written beyond `next`, by offset.
    stash: BTreeMap<u32, Bytes>,
}

/// One worker's state.
struct Worker<D: Storage> {
    storage: Arc<D>,
    layout: TorrentLayout,
    hashers: BTreeMap<u32, PieceHasher>,
    stashed: usize,
}

impl<D: Storage> Worker<D> {
    fn perform(&mut self, op: DiskOp) -> DiskDone {
        match op {
            DiskOp::Write { block, data } => {
                let data_for_hash = data.clone();
                let done = self.storage.perform(DiskOp::Write { block, data });
                match &done {
                    DiskDone::Written { result: Ok(()), .. } => self.feed(block, data_for_hash),
                    _ => self.forget(block.piece.get()),
                }
                done
            }
            DiskOp::Hash { piece } => {
                let full = self.layout.piece_len(piece);
                match self.take(piece.get()) {
                    Some(h) if h.next == full && h.stash.is_empty() => DiskDone::Hashed {
                        piece,
                        result: Ok(h.sha.finalize().into()),
                    },
                    _ => self.storage.perform(DiskOp::Hash { piece }),
                }
            }
            op @ (DiskOp::Read { .. } | DiskOp::HashBlocks { .. }) => self.storage.perform(op),
        }
    }

    /// Hashes a written block if it continues its piece's prefix; stashes it if it is ahead.
    fn feed(&mut self, block: BlockRef, data: Bytes) {
        let piece = block.piece.get();
        if !self.hashers.contains_key(&piece) {
            if block.offset != 0 || self.hashers.len() >= MAX_HASHERS {
                return; // the read-back hash will do
            }
            self.hashers.insert(
                piece,
                PieceHasher {
                    sha: Sha1::new(),
                    next: 0,
                    stash: BTreeMap::new(),
                },
            );
        }
        let h = self.hashers.get_mut(&piece).expect("inserted above");
        if block.offset > h.next {
            if self.stashed + data.len() > MAX_STASH_BYTES {
                self.forget(piece);
                return;
            }
            self.stashed += data.len();
            h.stash.insert(block.offset, data);
            return;
        }
        if block.offset < h.next {
            // Cannot happen (each block is written once); stop trusting this state.
            self.forget(piece);
            return;
        }
        h.sha.update(&data);
        h.next += block.len;
        while let Some(next) = h.stash.remove(&h.next) {
            self.stashed -= next.len();
            h.sha.update(&next);
            h.next += u32::try_from(next.len()).expect("a block is at most 16 KiB");
        }
    }

    fn take(&mut self, piece: u32) -> Option<PieceHasher> {
        let h = self.hashers.remove(&piece)?;
        self.stashed -= h.stash.values().map(Bytes::len).sum::<usize>();
        Some(h)
    }

    fn forget(&mut self, piece: u32) {
        self.take(piece);
    }
}

/// A fixed set of disk threads for one torrent, or none: then the work is done inline, on the
/// caller's thread, which keeps a simulated run deterministic.
pub struct DiskPool {
    queues: Vec<mpsc::Sender<DiskOp>>,
    inline: Option<Box<dyn InlineDisk>>,
}

/// A worker run on the caller's thread.
trait InlineDisk: Send {
    fn perform(&mut self, op: DiskOp) -> DiskDone;
}

impl<D: Storage> InlineDisk for Worker<D> {
    fn perform(&mut self, op: DiskOp) -> DiskDone {
        Worker::perform(self, op)
    }
}

impl DiskPool {
    /// A pool without threads: [`DiskPool::submit`] does the work at once and returns the result
    /// (the same incremental hashing as the threads).
    pub fn inline<D: Storage + 'static>(storage: Arc<D>, layout: &TorrentLayout) -> Self {
        DiskPool {
            queues: Vec::new(),
            inline: Some(Box::new(Worker {
                storage,
                layout: layout.clone(),
                hashers: BTreeMap::new(),
                stashed: 0,
            })),
        }
    }

    /// Starts `workers` threads (at least one) doing `storage`'s work for a torrent of `layout`;
    /// each result goes to `done` (called on the worker's thread).
    pub fn start<D: Storage + 'static>(
        storage: Arc<D>,
        layout: &TorrentLayout,
        workers: usize,
        done: impl Fn(DiskDone) + Clone + Send + 'static,
    ) -> std::io::Result<Self> {
        let mut queues = Vec::new();
        for i in 0..workers.max(1) {
            let (tx, rx) = mpsc::channel::<DiskOp>();
            let mut worker = Worker {
                storage: storage.clone(),
                layout: layout.clone(),
                hashers: BTreeMap::new(),
                stashed: 0,
            };
            let done = done.clone();
            std::thread::Builder::new()
                .name(format!("bt-disk-{i}"))
                .spawn(move || {
                    for op in rx {
                        done(worker.perform(op));
                    }
                })?;
            queues.push(tx);
        }
        Ok(DiskPool {
            queues,
            inline: None,
        })
    }

    /// Queues `op` on the worker of its piece; an inline pool does it now and returns the result.
    pub fn submit(&mut self, op: DiskOp) -> Option<DiskDone> {
        if let Some(inline) = &mut self.inline {
            return Some(inline.perform(op));
        }
        let piece = match &op {
            DiskOp::Write { block, .. } | DiskOp::Read { block, .. } => block.piece.get(),
            DiskOp::Hash { piece } | DiskOp::HashBlocks { piece, .. } => piece.get(),
        };
        let worker = piece as usize % self.queues.len();
        // A worker only ends when its queue is dropped, so the send cannot fail while we hold it.
        let _ = self.queues[worker].send(op);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::Model;

    /// Runs `ops` through one worker over the odd model's storage.
    fn worker(model: &Model) -> Worker<crate::storage::FsStorage> {
        let storage = Arc::new(model.storage(4));
        storage.create_empty_files().unwrap();
        Worker {
            storage,
            layout: model.info().layout.clone(),
            hashers: BTreeMap::new(),
            stashed: 0,
        }
    }

    fn blocks(model: &Model, piece: u32) -> Vec<(BlockRef, Bytes)> {
        let layout = &model.info().layout;
        let p = layout.piece(piece).unwrap();
        layout
            .blocks(p)
            .map(|b| (b, Bytes::copy_from_slice(model.block_data(b))))
            .collect()
    }

    #[test]
    fn in_order_and_out_of_order_writes_hash_without_reading_back() {
        // Proves the digest from incremental hashing equals the piece's real SHA-1 whether the
        // blocks come in order or reversed, and no stash is left behind.
        let model = Model::odd();
        for reverse in [false, true] {
            let mut w = worker(&model);
            for piece in 0..model.info().layout.piece_count() {
                let mut bs = blocks(&model, piece);
                if reverse {
                    bs.reverse();
                }
                for (block, data) in bs {
                    w.perform(DiskOp::Write { block, data });
                }
                let p = model.info().layout.piece(piece).unwrap();
                assert!(
                    w.hashers
                        .get(&piece)
                        .is_some_and(|h| h.next == model.info().layout.piece_len(p)),
                    "piece {piece} hashed incrementally"
                );
                let DiskDone::Hashed { result, .. } = w.perform(DiskOp::Hash { piece: p }) else {
                    panic!("a hash answer");
                };
                assert_eq!(result.unwrap(), model.expected_hash(p));
            }
            assert_eq!(w.stashed, 0);
            assert!(w.hashers.is_empty());
        }
    }
}
