//! The tokio driver over real loopback TCP: a seeding driver and a leeching driver in one process,
//! with in-memory disks ([`MemStorage`]), disk work on threads or inline; the leecher must finish
//! with the exact bytes.

use std::sync::Arc;
use std::time::Duration;

use bt_protocol::content::ContentSpec;
use bt_protocol::metainfo::Metainfo;
use bt_protocol::session::SessionConfig;
use bt_protocol::torrent::Bitfield;
use bt_runtime::driver::{Driver, Outcome, Report, StopWhen};
use bt_runtime::net::TokioNet;
use bt_runtime::storage::MemStorage;

/// A torrent of `total` bytes of the content generated from `SEED`.
fn torrent(total: u64, piece_length: u32) -> Metainfo {
    let spec = ContentSpec::single("loopback.bin", piece_length, total);
    bt_protocol::content::torrent(SEED, &spec).unwrap()
}

const SEED: u64 = 42;

#[tokio::test(flavor = "current_thread")]
async fn seeder_to_leecher_over_loopback_tcp() {
    // Proves the driver moves a whole torrent between two sessions over real sockets, with
    // backpressure and disk work on the disk threads, and stops when complete.
    transfer(2).await;
}

#[tokio::test(flavor = "current_thread")]
async fn seeder_to_leecher_with_inline_disk_work() {
    // Proves the same with disk work done inline on the driver's task (the simulator's mode).
    transfer(0).await;
}

async fn transfer(disk_threads: usize) {
    let total = 5 * 1024 * 1024 + 777;
    let meta = torrent(total, 256 * 1024);
    let n = meta.info.layout.piece_count();
    let seed_disk = Arc::new(MemStorage::complete(meta.info.layout.clone(), SEED));
    let leech_disk = Arc::new(MemStorage::empty(meta.info.layout.clone(), SEED));

    let mut seeder = Driver::with_disk_threads(
        TokioNet,
        seed_disk,
        &meta,
        Bitfield::full(n),
        SessionConfig::default(),
        1,
        disk_threads,
    )
    .unwrap();
    let addr = seeder.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut leecher = Driver::with_disk_threads(
        TokioNet,
        leech_disk.clone(),
        &meta,
        Bitfield::new(n),
        SessionConfig::default(),
        2,
        disk_threads,
    )
    .unwrap();
    let torrent = leecher
        .first_torrent()
        .expect("the driver holds its torrent");
    leecher.add_peer(torrent, addr);

    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let seeding = tokio::spawn(seeder.run(
        StopWhen::Interrupted,
        async {
            let _ = done_rx.await;
        },
        |_, _| {},
    ));
    let mut failures = Vec::new();
    let leeching = leecher.run(StopWhen::Complete, std::future::pending(), |_, r| {
        if let Report::ConnectFailed { error, .. } = r {
            failures.push(error.clone());
        }
    });
    let finished = tokio::time::timeout(Duration::from_secs(60), leeching)
        .await
        .expect("the download finishes within 60 s");
    let _ = done_tx.send(());
    let seeded = seeding.await.unwrap();
    assert_eq!(
        finished.outcome,
        Outcome::Complete,
        "connect failures: {failures:?}"
    );
    assert_eq!(finished.first().unwrap().status.have, n);
    assert!(finished.first().unwrap().have.is_complete());
    assert!(
        leech_disk.is_correct_and_complete(),
        "the leecher holds wrong bytes"
    );
    assert_eq!(seeded.outcome, Outcome::Interrupted);
    assert!(
        seeded.first().unwrap().status.uploaded >= total,
        "seeder uploaded {}",
        seeded.first().unwrap().status.uploaded
    );
}
