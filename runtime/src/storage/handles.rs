//! The bounded cache of open file handles behind [`FsStorage`](super::FsStorage).
//!
//! Invariants: at most `max_open` handles are cached (at least 1); the lock is held only to look
//! up, insert or evict, never during I/O or while opening or closing a file (handles are shared as
//! `Arc<File>`, and an evicted one closes when its last user drops it, so a file may briefly stay
//! open past the bound while an operation on it finishes); the set of files written since the last
//! flush is tracked here, so a flush reaches files whose handles were evicted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::sync::{Arc, Mutex, MutexGuard};

/// Least-recently-used open files, by file index.
#[derive(Debug)]
pub(super) struct Handles {
    max_open: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    open: BTreeMap<usize, Slot>,
    /// Bumped on every use; a slot's `used` is the tick of its last use.
    tick: u64,
    /// Files written since the last flush took them.
    dirty: BTreeSet<usize>,
}

#[derive(Debug)]
struct Slot {
    file: Arc<File>,
    writable: bool,
    used: u64,
}

impl Handles {
    /// An empty cache holding at most `max_open` handles (at least 1).
    pub(super) fn new(max_open: usize) -> Self {
        Handles {
            max_open: max_open.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No code panics while holding it: every critical section is plain map updates.
        self.inner
            .lock()
            .expect("no panic while holding the handle cache lock")
    }

    /// The cached handle of `file`, if there is one good enough (writable when `write`).
    pub(super) fn get(&self, file: usize, write: bool) -> Option<Arc<File>> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let slot = inner.open.get_mut(&file)?;
        if write && !slot.writable {
            return None;
        }
        slot.used = tick;
        Some(slot.file.clone())
    }

    /// Caches a freshly opened handle of `file`, unless a handle at least as good was cached by
    /// another thread meanwhile; evicts the least recently used handle beyond the bound.
    pub(super) fn insert(&self, file: usize, handle: &Arc<File>, writable: bool) {
        let evicted;
        {
            let mut inner = self.lock();
            inner.tick += 1;
            let tick = inner.tick;
            match inner.open.get_mut(&file) {
                Some(slot) if slot.writable || !writable => {
                    slot.used = tick;
                    return;
                }
                _ => {}
            }
            let old = inner.open.insert(
                file,
                Slot {
                    file: handle.clone(),
                    writable,
                    used: tick,
                },
            );
            evicted = if old.is_none() && inner.open.len() > self.max_open {
                // The new slot has the newest tick, so it is never the one chosen.
                let oldest = inner
                    .open
                    .iter()
                    .min_by_key(|(_, slot)| slot.used)
                    .map(|(&index, _)| index)
                    .expect("the cache holds more than one handle");
                inner.open.remove(&oldest)
            } else {
                old
            };
        }
        // Closing happens here, outside the lock.
        drop(evicted);
    }

    /// Notes that `file` was written (call after the write, so a concurrent flush that already
    /// took the dirty set leaves the mark for the next one).
    pub(super) fn mark_dirty(&self, file: usize) {
        self.lock().dirty.insert(file);
    }

    /// The files written since the last call, now marked clean.
    pub(super) fn take_dirty(&self) -> BTreeSet<usize> {
        std::mem::take(&mut self.lock().dirty)
    }

    /// Puts files back in the dirty set (a flush that failed on them).
    pub(super) fn restore_dirty(&self, files: impl IntoIterator<Item = usize>) {
        self.lock().dirty.extend(files);
    }

    /// How many handles are cached.
    pub(super) fn len(&self) -> usize {
        self.lock().open.len()
    }
}
