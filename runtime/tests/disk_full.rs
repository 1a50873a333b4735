//! The tokio driver on a disk that is full for a while: a leecher whose [`Storage`]
//! fails every write with "disk full" until the test gives space back keeps running, reports the
//! stall once, and completes with the exact bytes once writes work again.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bt_protocol::content::ContentSpec;
use bt_protocol::io::DiskError;
use bt_protocol::metainfo::{BlockRef, Metainfo, PieceIndex};
use bt_protocol::session::SessionConfig;
use bt_protocol::torrent::{Bitfield, TorrentEvent};
use bt_runtime::driver::{Driver, Outcome, Report, StopWhen};
use bt_runtime::net::TokioNet;
use bt_runtime::storage::{MemStorage, Storage, StorageError};
use bytes::Bytes;

const SEED: u64 = 7;

/// A [`MemStorage`] whose writes fail as a full disk's do while `full` is set.
struct FillingDisk {
    inner: MemStorage,
    full: AtomicBool,
    failed_writes: AtomicU64,
}

impl Storage for FillingDisk {
    fn write(&self, block: BlockRef, data: &[u8]) -> Result<(), StorageError> {
        if self.full.load(Ordering::SeqCst) {
            self.failed_writes.fetch_add(1, Ordering::SeqCst);
            return Err(StorageError::Io {
                doing: "writing",
                path: "/x/y".into(),
                source: io::Error::from(io::ErrorKind::StorageFull),
            });
        }
        self.inner.write(block, data)
    }

    fn read(&self, block: BlockRef) -> Result<Bytes, StorageError> {
        self.inner.read(block)
    }

    fn hash_piece(&self, piece: PieceIndex) -> Result<[u8; 20], StorageError> {
        self.inner.hash_piece(piece)
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.inner.flush()
    }
}

fn torrent(total: u64, piece_length: u32) -> Metainfo {
    let spec = ContentSpec::single("full.bin", piece_length, total);
    bt_protocol::content::torrent(SEED, &spec).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_disk_stalls_the_download_once_and_it_completes_when_space_is_back() {
    // Proves a leecher on a full disk stays running and connected, reports one stall for many
    // failed writes (with a status saying when it retries, before the disk error), retries with a
    // growing wait, and completes with the right bytes once space is back.
    let total = 2 * 1024 * 1024 + 333;
    let meta = torrent(total, 64 * 1024);
    let n = meta.info.layout.piece_count();
    let disk = Arc::new(FillingDisk {
        inner: MemStorage::empty(meta.info.layout.clone(), SEED),
        full: AtomicBool::new(true),
        failed_writes: AtomicU64::new(0),
    });
    let mut seeder = Driver::with_disk_threads(
        TokioNet,
        Arc::new(MemStorage::complete(meta.info.layout.clone(), SEED)),
        &meta,
        Bitfield::full(n),
        SessionConfig::default(),
        1,
        1,
    )
    .unwrap();
    let addr = seeder.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut config = SessionConfig::default();
    config.torrent.disk_retry_first = Duration::from_millis(200);
    config.torrent.disk_retry_max = Duration::from_millis(800);
    let mut leecher = Driver::with_disk_threads(
        TokioNet,
        disk.clone(),
        &meta,
        Bitfield::new(n),
        config,
        2,
        2,
    )
    .unwrap();
    let torrent = leecher
        .first_torrent()
        .expect("the driver holds its torrent");
    leecher.add_peer(torrent, addr);

    let (stop_seeder, stopped) = tokio::sync::oneshot::channel::<()>();
    let seeding = tokio::spawn(seeder.run(
        StopWhen::Interrupted,
        async {
            let _ = stopped.await;
        },
        |_, _| {},
    ));
    // Space comes back 2 s after the stall is first seen: several retries fail before.
    let paused = Arc::new(tokio::sync::Notify::new());
    let give_space = {
        let (paused, disk) = (paused.clone(), disk.clone());
        tokio::spawn(async move {
            paused.notified().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            disk.full.store(false, Ordering::SeqCst);
        })
    };
    let mut disk_errors: Vec<DiskError> = Vec::new();
    let mut episodes = Vec::new();
    let mut backoffs = Vec::new();
    let mut stalled_before_error = false;
    let mut last_stalled = false;
    let leeching = leecher.run(StopWhen::Complete, std::future::pending(), |_, r| match r {
        Report::Status(s) => {
            last_stalled = s.write_stall.is_some();
            if let Some(st) = &s.write_stall {
                assert_eq!(st.error, "disk full writing /x/y");
                if !episodes.contains(&st.episode) {
                    episodes.push(st.episode);
                    paused.notify_one();
                }
                if !backoffs.contains(&st.backoff) {
                    backoffs.push(st.backoff);
                }
            }
        }
        Report::Event(TorrentEvent::DiskError(e)) => {
            stalled_before_error |= last_stalled;
            disk_errors.push(e.clone());
        }
        _ => {}
    });
    let finished = tokio::time::timeout(Duration::from_secs(60), leeching)
        .await
        .expect("the download finishes within 60 s of space coming back");
    give_space.await.unwrap();
    let _ = stop_seeder.send(());
    seeding.await.unwrap();

    assert_eq!(finished.outcome, Outcome::Complete);
    assert!(finished.first().unwrap().have.is_complete());
    assert!(disk.inner.is_correct_and_complete(), "wrong bytes");
    let failed = disk.failed_writes.load(Ordering::SeqCst);
    assert!(failed > 1, "several writes failed ({failed})");
    assert_eq!(
        disk_errors,
        vec![DiskError("disk full writing /x/y".into())],
        "one report for {failed} failed writes"
    );
    assert!(
        stalled_before_error,
        "the status before the error shows the stall"
    );
    assert_eq!(episodes, vec![1], "one stall");
    assert!(
        backoffs.iter().any(|b| *b > Duration::from_millis(200)),
        "the wait grew while retries failed: {backoffs:?}"
    );
    assert!(
        finished.first().unwrap().status.write_stall.is_none(),
        "the stall ended"
    );
}
