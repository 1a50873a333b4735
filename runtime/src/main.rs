//! `bt`: the command-line BitTorrent client. Parses arguments, runs one subcommand, and turns every
//! failure into one line on stderr and a non-zero exit code (never a backtrace). A panic on any
//! thread or task ends the whole process at once, with one line naming it and exit code 101.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restore_sigpipe();
    exit_on_panic();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` puts the whole cause chain on one line.
            eprintln!("bt: error: {e:#}");
            if e.downcast_ref::<bt_runtime::select::SelectError>()
                .is_some()
            {
                // Bad command-line input, as clap reports its own.
                ExitCode::from(USAGE_EXIT_CODE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Exit code of a command line bt cannot use (clap's too).
const USAGE_EXIT_CODE: u8 = 2;

/// Exit code of a process ended by a panic (Rust's own for a panicking main thread).
const PANIC_EXIT_CODE: i32 = 101;

/// Makes a panic on any thread or task end the whole process at once: one line on stderr naming
/// the thread, the source location and the message, then exit code [`PANIC_EXIT_CODE`]. Without
/// it a panic inside a tokio task or a disk thread is caught there and `bt` runs on half-alive
/// (a peer's reader gone, the disk pool short of a thread).
///
/// The process ends with `_exit`: no destructor runs, so no half-updated state is flushed
/// anywhere. Resume files are written to a temporary file and renamed, so the last complete save
/// stays valid; stdout is line-buffered, so every whole JSON line already printed is out.
fn exit_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let at = info
            .location()
            .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        eprintln!("bt: panic in thread '{name}'{at}: {message}; stopping");
        // SAFETY: `_exit` ends the process without running anything else; it is
        // async-signal-safe and sound to call from any thread.
        unsafe { libc::_exit(PANIC_EXIT_CODE) }
    }));
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
