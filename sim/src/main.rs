//! `btsim`: the deterministic swarm simulator.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(2)
}
