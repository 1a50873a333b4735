//! [`Requests`]: our requests in flight to one peer, by block and by the time they were sent.
//!
//! Two indexes of the same entries: by block (lookups when a block, reject or cancel arrives) and
//! by send time, so the oldest request (the next request timeout) is found in O(log n) instead of
//! a walk over the pipeline. Invariant: both hold exactly the same `(block, sent)` pairs. Bounded
//! by the caller's pipeline limit ([`super::PeerConfig::max_pipeline`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::metainfo::BlockRef;
use crate::time::Instant;

/// Requests in flight with when each was sent. See the module docs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Requests {
    by_block: BTreeMap<BlockRef, Instant>,
    by_time: BTreeSet<(Instant, BlockRef)>,
}

impl Requests {
    /// How many requests are in flight.
    pub(crate) fn len(&self) -> usize {
        self.by_block.len()
    }

    /// Whether none is.
    pub(crate) fn is_empty(&self) -> bool {
        self.by_block.is_empty()
    }

    /// Whether `block` is in flight.
    pub(crate) fn contains_key(&self, block: &BlockRef) -> bool {
        self.by_block.contains_key(block)
    }

    /// The blocks in flight, in block order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &BlockRef> + '_ {
        self.by_block.keys()
    }

    /// The blocks in flight, the most recently sent first.
    pub(crate) fn newest_first(&self) -> impl Iterator<Item = BlockRef> + '_ {
        self.by_time.iter().rev().map(|(_, block)| *block)
    }

    /// When the oldest request in flight was sent.
    pub(crate) fn oldest(&self) -> Option<Instant> {
        self.by_time.first().map(|(sent, _)| *sent)
    }

    /// Records `block` as sent at `sent` (a block already in flight keeps its older time).
    pub(crate) fn insert(&mut self, block: BlockRef, sent: Instant) {
        if let std::collections::btree_map::Entry::Vacant(e) = self.by_block.entry(block) {
            e.insert(sent);
            self.by_time.insert((sent, block));
        }
    }

    /// Forgets `block`; returns when it was sent, if it was in flight.
    pub(crate) fn remove(&mut self, block: &BlockRef) -> Option<Instant> {
        let sent = self.by_block.remove(block)?;
        self.by_time.remove(&(sent, *block));
        Some(sent)
    }

    /// Every block in flight, in block order, leaving none.
    pub(crate) fn into_keys(self) -> impl Iterator<Item = BlockRef> {
        self.by_block.into_keys()
    }

    /// Removes and returns, in block order, the requests sent at least `timeout` before `now`.
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<BlockRef> {
        // `now - sent` shrinks as `sent` grows, so the expired ones are a prefix by time.
        let mut expired: Vec<BlockRef> = self
            .by_time
            .iter()
            .take_while(|(sent, _)| now - *sent >= timeout)
            .map(|(_, block)| *block)
            .collect();
        expired.sort_unstable();
        for block in &expired {
            self.remove(block);
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::metainfo::TorrentLayout;

    proptest! {
        #[test]
        fn oldest_and_expiry_match_a_walk(
            ops in proptest::collection::vec((0u32..40, 0u64..100, any::<bool>()), 1..200),
            now in 0u64..120,
            timeout in 0u64..60,
        ) {
            // Proves the time index agrees with a walk over every request: the oldest send time,
            // and which requests expire (returned in block order, as the walk returned them).
            let layout = TorrentLayout::new(65536, &[10 * 65536]).unwrap();
            let mut r = Requests::default();
            let mut walk: BTreeMap<BlockRef, Instant> = BTreeMap::new();
            for (i, sent, add) in ops {
                let block = layout.block_at(i / 4, (i % 4) * 16384, 16384).unwrap();
                let sent = Instant::from_micros(sent * 1_000_000);
                if add {
                    r.insert(block, sent);
                    walk.entry(block).or_insert(sent);
                } else {
                    prop_assert_eq!(r.remove(&block), walk.remove(&block));
                }
                prop_assert_eq!(r.oldest(), walk.values().min().copied());
                prop_assert_eq!(r.len(), walk.len());
            }
            let now = Instant::from_micros(now * 1_000_000);
            let timeout = Duration::from_secs(timeout);
            let expected: Vec<BlockRef> =
                walk.iter().filter(|(_, s)| now - **s >= timeout).map(|(b, _)| *b).collect();
            prop_assert_eq!(r.expire(now, timeout), expected);
            walk.retain(|_, s| now - *s < timeout);
            prop_assert_eq!(r.keys().copied().collect::<Vec<_>>(), walk.keys().copied().collect::<Vec<_>>());
            prop_assert_eq!(r.oldest(), walk.values().min().copied());
        }
    }
}
