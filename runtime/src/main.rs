//! `bt`: the command-line BitTorrent client. Parses arguments, runs one subcommand, and turns every
//! failure into one line on stderr and a non-zero exit code (never a backtrace). A panic on any
//! thread or task ends the whole process at once, with one line naming it and exit code 101.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restore_sigpipe();
    exit_on_panic();
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => usage_error(e),
    };
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

/// Reports a command line clap refused and exits. A bad value (`--download-limit fast`) is one
/// line naming the option and what is wrong, exit code [`USAGE_EXIT_CODE`]; help, version and
/// the other errors (which list arguments on the lines that follow) are clap's own.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        e.exit();
    }
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or("error: invalid value");
    eprintln!("bt: {line}");
    std::process::exit(i32::from(USAGE_EXIT_CODE));
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
