//! `btsim`: the deterministic swarm simulator. Not built yet: issue 5 brings the engines and the
//! scenario format; until then the binary says so and exits non-zero.

fn main() -> std::process::ExitCode {
    eprintln!("btsim: the swarm simulator is not built yet (see issue 5)");
    std::process::ExitCode::from(2)
}
