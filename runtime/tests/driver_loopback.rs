//! The tokio driver over real loopback sockets (TCP, and uTP over UDP): a seeding driver and a leecher
//! with in-memory disks ([`MemStorage`]), disk work on threads or inline; the leecher must finish
//! with the exact bytes.

use std::sync::Arc;
use std::time::Duration;

use bt_protocol::client::{ClientConfig, Transport};
use bt_protocol::content::ContentSpec;
use bt_protocol::metainfo::Metainfo;
use bt_protocol::session::SessionConfig;
use bt_protocol::session::TorrentId;
use bt_protocol::torrent::Bitfield;
use bt_protocol::torrent::TorrentEvent;
use bt_runtime::driver::{Command, Driver, Finished, Outcome, Report, StopWhen};
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

/// A seeding driver listening on loopback and a leeching driver told its address, for `meta`,
/// each with `disk_threads` disk threads; the seeder uploads at most `upload_limit` bytes per
/// second. The leecher's torrent and disk come too.
async fn seeder_and_leecher(
    meta: &Metainfo,
    disk_threads: usize,
    upload_limit: Option<u64>,
) -> (
    Driver<TokioNet, MemStorage>,
    Driver<TokioNet, MemStorage>,
    TorrentId,
    Arc<MemStorage>,
) {
    let n = meta.info.layout.piece_count();
    let seed_disk = Arc::new(MemStorage::complete(meta.info.layout.clone(), SEED));
    let leech_disk = Arc::new(MemStorage::empty(meta.info.layout.clone(), SEED));
    let mut seeder = Driver::with_disk_threads(
        TokioNet,
        seed_disk,
        meta,
        Bitfield::full(n),
        SessionConfig::default(),
        1,
        disk_threads,
    )
    .unwrap();
    seeder.set_rate_limits(None, upload_limit);
    let addr = seeder.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut leecher = Driver::with_disk_threads(
        TokioNet,
        leech_disk.clone(),
        meta,
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
    (seeder, leecher, torrent, leech_disk)
}

/// Runs `seeder` on a task until the sender returned is used (or dropped).
fn seed(
    seeder: Driver<TokioNet, MemStorage>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Finished>,
) {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let seeding = tokio::spawn(seeder.run(
        StopWhen::Interrupted,
        async {
            let _ = done_rx.await;
        },
        |_, _| {},
    ));
    (done_tx, seeding)
}

async fn transfer(disk_threads: usize) {
    let total = 5 * 1024 * 1024 + 777;
    let meta = torrent(total, 256 * 1024);
    let n = meta.info.layout.piece_count();
    let (seeder, leecher, _, leech_disk) = seeder_and_leecher(&meta, disk_threads, None).await;
    let (done_tx, seeding) = seed(seeder);
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

#[tokio::test(flavor = "current_thread")]
async fn three_torrents_through_one_client_each_side() {
    // Proves one driver (one protocol Client) runs several torrents over real sockets: a seeding
    // driver holds three torrents and a leeching driver fetches all three at once, each
    // connection routed to its torrent by the info hash; every torrent ends byte-exact.
    let metas: Vec<Metainfo> = (0..3u64)
        .map(|i| {
            let spec = ContentSpec::single(&format!("t{i}.bin"), 64 * 1024, 700_000 + i * 1000);
            bt_protocol::content::torrent(SEED + i, &spec).unwrap()
        })
        .collect();
    let mut seeder = Driver::empty(TokioNet, SessionConfig::default().into(), 1, 2);
    let mut leecher = Driver::empty(TokioNet, SessionConfig::default().into(), 2, 2);
    let mut leech_disks = Vec::new();
    let mut leech_ids = Vec::new();
    for (i, meta) in metas.iter().enumerate() {
        let layout = meta.info.layout.clone();
        let n = layout.piece_count();
        let full = Arc::new(MemStorage::complete(layout.clone(), SEED + i as u64));
        seeder
            .add_torrent(full, meta, Bitfield::full(n), Vec::new())
            .unwrap();
        let empty = Arc::new(MemStorage::empty(layout, SEED + i as u64));
        leech_ids.push(
            leecher
                .add_torrent(empty.clone(), meta, Bitfield::new(n), Vec::new())
                .unwrap(),
        );
        leech_disks.push(empty);
    }
    let addr = seeder.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    for &id in &leech_ids {
        leecher.add_peer(id, addr);
    }
    let (done_tx, seeding) = seed(seeder);
    let leeching = leecher.run(StopWhen::Complete, std::future::pending(), |_, _| {});
    let finished = tokio::time::timeout(Duration::from_secs(60), leeching)
        .await
        .expect("the downloads finish within 60 s");
    let _ = done_tx.send(());
    let seeded = seeding.await.unwrap();
    assert_eq!(finished.outcome, Outcome::Complete);
    assert_eq!(finished.torrents.len(), 3);
    for (id, disk) in leech_ids.iter().zip(&leech_disks) {
        let done = finished.torrent(*id).expect("every torrent is reported");
        assert!(done.have.is_complete(), "torrent {id:?} incomplete");
        assert!(
            disk.is_correct_and_complete(),
            "torrent {id:?} holds wrong bytes"
        );
    }
    assert_eq!(seeded.torrents.len(), 3);
    for (t, meta) in seeded.torrents.iter().zip(&metas) {
        assert!(
            t.status.uploaded >= meta.info.layout.total_length(),
            "seeder uploaded {} of torrent {:?}",
            t.status.uploaded,
            t.id
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_running_driver_pauses_and_resumes_through_its_command_channel() {
    // Proves the command channel reaches a running driver: a `Pause` sent at the first verified
    // piece is reported (`Paused`) once its connections are closed, nothing is verified while
    // paused (disk work inline, so none was in flight), a `Resume` half a second later is
    // reported (`Resumed`), the driver dials its peer again and the download completes
    // byte-exact.
    let total = 2 * 1024 * 1024;
    let meta = torrent(total, 64 * 1024);
    let n = meta.info.layout.piece_count();
    // Slow enough that the pause lands mid-download.
    let (seeder, mut leecher, torrent, leech_disk) =
        seeder_and_leecher(&meta, 0, Some(1024 * 1024)).await;
    let commands = leecher.commands();
    let (done_tx, seeding) = seed(seeder);
    // Resumes half a second after the pause is reported.
    let (paused_tx, mut paused_rx) = tokio::sync::mpsc::channel::<()>(1);
    let resumer = {
        let commands = commands.clone();
        tokio::spawn(async move {
            if paused_rx.recv().await.is_some() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                commands.send(Command::Resume { torrent }).await.unwrap();
            }
        })
    };
    let (mut paused, mut pauses, mut resumes) = (false, 0, 0);
    let (mut verified_before_pause, mut verified_while_paused) = (0, 0);
    let leeching = leecher.run(StopWhen::Complete, std::future::pending(), |_, r| match r {
        Report::Event(TorrentEvent::PieceVerified(_)) if paused => verified_while_paused += 1,
        Report::Event(TorrentEvent::PieceVerified(_)) if pauses == 0 => {
            verified_before_pause += 1;
            if verified_before_pause == 1 {
                commands.try_send(Command::Pause { torrent }).unwrap();
            }
        }
        Report::Paused => {
            paused = true;
            pauses += 1;
            paused_tx.try_send(()).unwrap();
        }
        Report::Resumed => {
            paused = false;
            resumes += 1;
        }
        _ => {}
    });
    let finished = tokio::time::timeout(Duration::from_secs(60), leeching)
        .await
        .expect("the download finishes within 60 s");
    let _ = done_tx.send(());
    seeding.await.unwrap();
    resumer.await.unwrap();
    assert_eq!(finished.outcome, Outcome::Complete);
    assert_eq!(
        (pauses, resumes),
        (1, 1),
        "one pause and one resume reported"
    );
    assert_eq!(verified_while_paused, 0, "nothing verified while paused");
    assert!(
        (verified_before_pause as u32) < n,
        "the pause came mid-download"
    );
    assert!(leech_disk.is_correct_and_complete());
}

#[tokio::test(flavor = "current_thread")]
async fn seeder_to_leecher_over_loopback_utp() {
    // Proves the driver carries uTP over real UDP: with uTP the only transport, the seeder's UDP
    // socket shares its TCP port, the leecher dials it there, and the whole torrent arrives
    // over a connection reported as uTP.
    let total = 1024 * 1024 + 333;
    let meta = torrent(total, 64 * 1024);
    let n = meta.info.layout.piece_count();
    let utp_only = |seed| {
        let config = ClientConfig {
            transports: vec![Transport::Utp],
            ..ClientConfig::default()
        };
        let disk = if seed == 1 {
            Arc::new(MemStorage::complete(meta.info.layout.clone(), SEED))
        } else {
            Arc::new(MemStorage::empty(meta.info.layout.clone(), SEED))
        };
        let have = if seed == 1 {
            Bitfield::full(n)
        } else {
            Bitfield::new(n)
        };
        let driver = Driver::new(TokioNet, disk.clone(), &meta, have, config, seed).unwrap();
        (driver, disk)
    };
    let (mut seeder, _) = utp_only(1);
    let addr = seeder.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    assert_eq!(seeder.udp_addr(), Some(addr), "uTP listens on the TCP port");
    let (mut leecher, leech_disk) = utp_only(2);
    let torrent = leecher.first_torrent().unwrap();
    leecher.add_peer(torrent, addr);
    let (done_tx, seeding) = seed(seeder);
    let mut transports = Vec::new();
    let leeching = leecher.run(StopWhen::Complete, std::future::pending(), |_, r| {
        if let Report::PeerConnected { transport, .. } = r {
            transports.push(*transport);
        }
    });
    let finished = tokio::time::timeout(Duration::from_secs(60), leeching)
        .await
        .expect("the download finishes within 60 s");
    let _ = done_tx.send(());
    seeding.await.unwrap();
    assert_eq!(finished.outcome, Outcome::Complete);
    assert!(leech_disk.is_correct_and_complete(), "wrong bytes over uTP");
    assert_eq!(transports, [Transport::Utp]);
}
