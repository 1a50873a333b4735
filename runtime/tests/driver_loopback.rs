//! The tokio driver over real loopback TCP: a seeding driver and a leeching driver in one process,
//! with in-memory disks; the leecher must finish with the exact bytes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bt_protocol::harness::content;
use bt_protocol::metainfo::{
    BlockRef, Metainfo, NewFile, PieceIndex, TorrentLayout, TorrentOptions, build_torrent,
};
use bt_protocol::session::SessionConfig;
use bt_protocol::torrent::Bitfield;
use bt_runtime::driver::{Driver, Outcome, Report, StopWhen};
use bt_runtime::net::TokioNet;
use bt_runtime::storage::{Storage, StorageError};
use bytes::Bytes;
use sha1::{Digest, Sha1};

struct MemDisk {
    layout: TorrentLayout,
    data: Mutex<Vec<u8>>,
}

impl MemDisk {
    fn at(&self, block: BlockRef) -> usize {
        (self.layout.piece_offset(block.piece) + u64::from(block.offset)) as usize
    }
}

impl Storage for MemDisk {
    fn write(&self, block: BlockRef, data: &[u8]) -> Result<(), StorageError> {
        let at = self.at(block);
        self.data.lock().unwrap()[at..at + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn read(&self, block: BlockRef) -> Result<Bytes, StorageError> {
        let at = self.at(block);
        Ok(Bytes::copy_from_slice(
            &self.data.lock().unwrap()[at..at + block.len as usize],
        ))
    }

    fn hash_piece(&self, piece: PieceIndex) -> Result<[u8; 20], StorageError> {
        let at = self.layout.piece_offset(piece) as usize;
        let len = self.layout.piece_len(piece) as usize;
        Ok(Sha1::digest(&self.data.lock().unwrap()[at..at + len]).into())
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

fn torrent(total: u64, piece_length: u32) -> (Metainfo, Vec<u8>) {
    let data = content(total);
    let pieces: Vec<[u8; 20]> = data
        .chunks(piece_length as usize)
        .map(|c| Sha1::digest(c).into())
        .collect();
    let files = [NewFile {
        path: vec![],
        length: total,
    }];
    let (_, meta) = build_torrent(
        "loopback.bin",
        piece_length,
        &files,
        &pieces,
        &TorrentOptions::default(),
    )
    .unwrap();
    (meta, data)
}

#[tokio::test(flavor = "current_thread")]
async fn seeder_to_leecher_over_loopback_tcp() {
    // Proves the driver moves a whole torrent between two sessions over real sockets, with
    // backpressure and disk work on the blocking pool, and stops when complete.
    let total = 5 * 1024 * 1024 + 777;
    let (meta, data) = torrent(total, 256 * 1024);
    let n = meta.info.layout.piece_count();
    let seed_disk = Arc::new(MemDisk {
        layout: meta.info.layout.clone(),
        data: Mutex::new(data.clone()),
    });
    let leech_disk = Arc::new(MemDisk {
        layout: meta.info.layout.clone(),
        data: Mutex::new(vec![0; total as usize]),
    });

    let mut seeder = Driver::new(
        TokioNet,
        seed_disk,
        &meta,
        Bitfield::full(n),
        SessionConfig::default(),
        1,
    )
    .unwrap();
    let addr = seeder.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut leecher = Driver::new(
        TokioNet,
        leech_disk.clone(),
        &meta,
        Bitfield::new(n),
        SessionConfig::default(),
        2,
    )
    .unwrap();
    leecher.add_peer(addr);

    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let seeding = tokio::spawn(seeder.run(
        StopWhen::Interrupted,
        async {
            let _ = done_rx.await;
        },
        |_| {},
    ));
    let mut failures = Vec::new();
    let leeching = leecher.run(StopWhen::Complete, std::future::pending(), |r| {
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
    assert_eq!(finished.status.have, n);
    assert!(finished.have.is_complete());
    assert!(
        *leech_disk.data.lock().unwrap() == data,
        "the leecher holds wrong bytes"
    );
    assert_eq!(seeded.outcome, Outcome::Interrupted);
    assert!(
        seeded.status.uploaded >= total,
        "seeder uploaded {}",
        seeded.status.uploaded
    );
}
