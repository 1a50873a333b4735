//! Benchmark: how many 16 KiB blocks per second the protocol machines move on one core, through the
//! in-memory harness (wire encoding and decoding, the picker, the choker, verification with SHA-1,
//! and the harness's own bookkeeping). Run with `cargo bench -p bt-protocol --bench swarm`.
//!
//! Plain `harness = false` timing with `std::time::Instant` (wall clock, one thread): the protocol
//! itself never reads a clock; only this benchmark does.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use bt_protocol::harness::{NodeSpec, Swarm};

const MIB: u64 = 1024 * 1024;

fn run(name: &str, leechers: usize, total: u64, repeats: u32) {
    let mut best = Duration::MAX;
    let mut blocks = 0;
    for _ in 0..repeats {
        let mut specs = vec![NodeSpec {
            seed: true,
            upload_bytes_per_s: 1 << 34,
            corrupt: false,
        }];
        specs.extend(std::iter::repeat_n(
            NodeSpec {
                seed: false,
                upload_bytes_per_s: 1 << 34,
                corrupt: false,
            },
            leechers,
        ));
        let mut swarm = Swarm::new(7, 256 * 1024, total, &specs, Duration::from_millis(5));
        swarm.connect_all();
        let start = Instant::now();
        swarm.run(Duration::from_secs(100_000), u64::MAX);
        let elapsed = start.elapsed();
        assert!(
            swarm.nodes.iter().all(|n| n.completed_at.is_some()),
            "{name}: did not complete"
        );
        let moved: u64 = swarm
            .nodes
            .iter()
            .map(|n| n.torrent.stats().downloaded)
            .sum();
        blocks = moved / 16384;
        best = best.min(elapsed);
    }
    let per_s = blocks as f64 / best.as_secs_f64();
    println!(
        "{name}: {blocks} blocks ({} MiB) in {:.3} s (best of {repeats}): {:.0} blocks/s, {:.0} MiB/s",
        blocks * 16384 / MIB,
        best.as_secs_f64(),
        per_s,
        per_s * 16384.0 / MIB as f64
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    if quick {
        run("smoke: 1 seeder -> 1 leecher", 1, 4 * MIB, 1);
        return;
    }
    run("1 seeder -> 1 leecher", 1, 256 * MIB, 3);
    run("1 seeder -> 20 leechers", 20, 32 * MIB, 3);
}
