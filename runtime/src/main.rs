//! `bt`: the command-line BitTorrent client. Parses arguments, runs one subcommand, and turns every
//! failure into one line on stderr and a non-zero exit code (never a panic or a backtrace).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restore_sigpipe();
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

/// Rust ignores SIGPIPE, so printing into a closed pipe (`bt get --announce-only | head -1`)
/// would panic; with the default action the process ends quietly, as other command-line tools do.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any thread exists; it only resets a signal
    // disposition to the system default.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
