//! The real driver on turmoil: a seeder host and a leecher host.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bt_protocol::content::ContentSpec;
use bt_protocol::metainfo::Metainfo;
use bt_protocol::session::SessionConfig;
use bt_protocol::torrent::Bitfield;
use bt_runtime::driver::{Driver, Outcome, StopWhen};
use bt_runtime::storage::MemStorage;

use super::net::TurmoilNet;

const CONTENT_SEED: u64 = 9;

fn torrent(total: u64, piece_length: u32) -> Metainfo {
    let spec = ContentSpec::single("sim.bin", piece_length, total);
    bt_protocol::content::torrent(CONTENT_SEED, &spec).unwrap()
}

/// Runs a seeder and a leecher of a 2 MiB torrent under turmoil with `rng_seed`; returns the
/// simulated time the leecher took.
fn run(rng_seed: u64) -> Duration {
    let meta = torrent(2 * 1024 * 1024 + 123, 64 * 1024);
    let n = meta.info.layout.piece_count();
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(120))
        .min_message_latency(Duration::from_millis(5))
        .max_message_latency(Duration::from_millis(20))
        .rng_seed(rng_seed)
        .build();
    let seed_meta = meta.clone();
    sim.host("seeder", move || {
        let meta = seed_meta.clone();
        async move {
            let disk = Arc::new(MemStorage::complete(meta.info.layout.clone(), CONTENT_SEED));
            let mut driver = Driver::with_disk_threads(
                TurmoilNet::default(),
                disk,
                &meta,
                Bitfield::full(n),
                SessionConfig::default(),
                1,
                0,
            )
            .map_err(|e| e.to_string())?;
            driver.listen("0.0.0.0:6881".parse()?).await?;
            driver
                .run(StopWhen::Interrupted, std::future::pending(), |_, _| {})
                .await;
            Ok(())
        }
    });
    let took = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let took_out = took.clone();
    sim.client("leecher", async move {
        let disk = Arc::new(MemStorage::empty(meta.info.layout.clone(), CONTENT_SEED));
        let mut driver = Driver::with_disk_threads(
            TurmoilNet::default(),
            disk.clone(),
            &meta,
            Bitfield::new(n),
            SessionConfig::default(),
            2,
            0,
        )
        .map_err(|e| e.to_string())?;
        driver.listen("0.0.0.0:6881".parse()?).await?;
        let torrent = driver.first_torrent().ok_or("no torrent")?;
        driver.add_peer(torrent, SocketAddr::new(turmoil::lookup("seeder"), 6881));
        let started = tokio::time::Instant::now();
        let finished = driver
            .run(StopWhen::Complete, std::future::pending(), |_, _| {})
            .await;
        assert_eq!(finished.outcome, Outcome::Complete);
        assert!(
            disk.is_correct_and_complete(),
            "the leecher holds the content"
        );
        *took_out.lock().unwrap() = started.elapsed();
        Ok(())
    });
    sim.run().expect("the simulation completes");
    *took.lock().unwrap()
}

#[test]
fn a_leecher_downloads_from_a_seeder_on_turmoil() {
    // Proves the runtime's driver runs unchanged over turmoil's network with in-memory storage.
    let took = run(1);
    assert!(
        took > Duration::ZERO && took < Duration::from_secs(120),
        "{took:?}"
    );
}

#[test]
fn the_same_seed_gives_the_same_run() {
    // Proves a turmoil run is a function of its seeds: the same seed, the same simulated time.
    assert_eq!(run(7), run(7));
}

/// Sends `bytes` from host "up" to host "down" over each of `conns` connections at once, with
/// `pace` on the sender; returns the simulated time each connection took.
fn paced_transfer(pace: super::pace::Pace, conns: usize, bytes: usize) -> Vec<Duration> {
    use bt_runtime::net::Net;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60))
        .min_message_latency(Duration::from_millis(10))
        .max_message_latency(Duration::from_millis(10))
        .rng_seed(1)
        .build();
    sim.host("down", move || async move {
        let net = TurmoilNet::default();
        let mut listener = net.listen("0.0.0.0:7000".parse()?).await?;
        loop {
            let (mut r, w, _) = TurmoilNet::accept(&mut listener).await?;
            tokio::spawn(async move {
                // Both halves stay open until the sender is done (a closed pair resets).
                let _w = w;
                let mut sink = vec![0u8; 64 * 1024];
                while r.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            });
        }
    });
    let took = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = took.clone();
    sim.client("up", async move {
        let net = TurmoilNet::paced(Arc::new(pace));
        let to = SocketAddr::new(turmoil::lookup("down"), 7000);
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (r, mut w) = net.connect(to).await?;
            tasks.push(tokio::spawn(async move {
                let _r = r;
                let start = tokio::time::Instant::now();
                let data = vec![7u8; bytes];
                for chunk in data.chunks(16 * 1024) {
                    w.write_all(chunk).await.expect("the sink reads everything");
                }
                start.elapsed()
            }));
        }
        for t in tasks {
            let took = t.await?;
            out.lock().unwrap().push(took);
        }
        Ok(())
    });
    sim.run().expect("the simulation completes");
    took.lock().unwrap().clone()
}

#[test]
fn an_uplink_paces_its_connections_fairly_at_its_rate() {
    // Proves a 1 MiB/s uplink carries 2 × 1 MiB in about 2 s, the two connections finishing
    // together (round robin), where an unpaced host sends at once.
    let pace = super::pace::Pace {
        up: Some(super::pace::Link::new(1024 * 1024)),
        ..Default::default()
    };
    let took = paced_transfer(pace, 2, 1024 * 1024);
    for t in &took {
        assert!(
            *t >= Duration::from_millis(1950) && *t <= Duration::from_millis(2100),
            "{took:?}"
        );
    }
    let unpaced = paced_transfer(super::pace::Pace::default(), 2, 1024 * 1024);
    assert!(
        unpaced.iter().all(|t| *t < Duration::from_millis(200)),
        "{unpaced:?}"
    );
}
