//! `bt`: the command-line BitTorrent client. Parses arguments, runs one subcommand, and turns every
//! failure into one line on stderr and a non-zero exit code (never a panic or a backtrace).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` puts the whole cause chain on one line.
            eprintln!("bt: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
