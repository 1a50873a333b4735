//! Hashing many pieces on worker threads: the scheduling shared by `bt create` (hashing a source
//! that is not a torrent yet) and [`FsStorage::verify`](super::FsStorage::verify) (checking data
//! already on disk).
//!
//! Pieces are handed out in order, a small batch at a time, so each worker reads mostly
//! sequentially. Each worker is built on its own thread by a factory, so it can keep its own
//! buffer and open file; memory is whatever one worker holds, times the number of threads. The
//! first error stops every worker after its current piece.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bt_protocol::metainfo::{PieceIndex, TorrentLayout};

/// How many pieces a worker takes at a time.
const BATCH: usize = 4;

/// How often `progress` is called at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Hashes `pieces` on `threads` threads (at least 1, at most one per piece).
///
/// `make_worker` is called once on each thread; the worker it returns is called with each piece
/// that thread takes and answers its SHA-1, or `None` when the piece's data is absent (not an
/// error: for example a file not downloaded yet). The answer has one entry per entry of `pieces`,
/// in the same order.
///
/// `progress` is called on the calling thread with the bytes of the pieces done so far (absent
/// ones included), about ten times a second and once at the end. On error, the first error is
/// returned, once every worker has stopped.
pub fn hash_parallel<E, M, W>(
    layout: &TorrentLayout,
    pieces: &[PieceIndex],
    threads: usize,
    make_worker: M,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<Option<[u8; 20]>>, E>
where
    E: Send,
    M: Fn() -> W + Sync,
    W: FnMut(PieceIndex) -> Result<Option<[u8; 20]>, E>,
{
    if pieces.is_empty() {
        progress(0);
        return Ok(Vec::new());
    }
    let threads = threads.clamp(1, pieces.len());
    let hashes = Mutex::new(vec![None; pieces.len()]);
    let done = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<E>> = Mutex::new(None);
    let next = AtomicUsize::new(0);

    // Each worker sends one message when it stops, so the progress loop wakes at once at the end.
    let (finished_tx, finished_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let finished = finished_tx.clone();
            scope.spawn(|| {
                let _finished = Finished(finished);
                let mut worker = make_worker();
                loop {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let start = next.fetch_add(BATCH, Ordering::Relaxed);
                    if start >= pieces.len() {
                        return;
                    }
                    let end = (start + BATCH).min(pieces.len());
                    for (slot, &piece) in (start..end).zip(&pieces[start..end]) {
                        match worker(piece) {
                            Ok(digest) => {
                                hashes.lock().expect("no worker panics holding it")[slot] = digest;
                                done.fetch_add(
                                    u64::from(layout.piece_len(piece)),
                                    Ordering::Relaxed,
                                );
                            }
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                first_error
                                    .lock()
                                    .expect("no worker panics holding it")
                                    .get_or_insert(e);
                                return;
                            }
                        }
                    }
                }
            });
        }
        drop(finished_tx);
        let mut running = threads;
        while running > 0 {
            progress(done.load(Ordering::Relaxed));
            match finished_rx.recv_timeout(PROGRESS_EVERY) {
                Ok(()) => running -= 1,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        progress(done.load(Ordering::Relaxed));
    });

    if let Some(e) = first_error.into_inner().expect("workers are joined") {
        return Err(e);
    }
    Ok(hashes.into_inner().expect("workers are joined"))
}

/// Tells the progress loop that a worker stopped, however it stopped (even by panicking).
struct Finished(std::sync::mpsc::Sender<()>);

impl Drop for Finished {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_in_order_and_stops_at_the_first_error() {
        // Proves each piece's answer lands in its own slot whatever thread hashed it, absent
        // pieces stay None, progress ends at the bytes done, and an error is returned.
        let layout = TorrentLayout::new(100, &[950]).unwrap();
        let mut pieces: Vec<PieceIndex> = layout.pieces().collect();
        pieces.reverse();
        let mut last = 0;
        let got = hash_parallel(
            &layout,
            &pieces,
            4,
            || {
                |p: PieceIndex| -> Result<_, ()> {
                    Ok((!p.get().is_multiple_of(3)).then(|| [p.get() as u8; 20]))
                }
            },
            &mut |done| last = done,
        )
        .unwrap();
        let expected: Vec<_> = pieces
            .iter()
            .map(|p| (!p.get().is_multiple_of(3)).then(|| [p.get() as u8; 20]))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(last, 950);

        let failed = hash_parallel(
            &layout,
            &pieces,
            3,
            || {
                |p: PieceIndex| {
                    if p.get() == 4 {
                        Err(p.get())
                    } else {
                        Ok(Some([0; 20]))
                    }
                }
            },
            &mut |_| {},
        );
        assert_eq!(failed, Err(4));
        assert_eq!(
            hash_parallel(&layout, &[], 3, || |_| Err::<_, ()>(()), &mut |_| {}),
            Ok(Vec::new())
        );
    }
}
