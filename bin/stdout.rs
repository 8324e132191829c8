//! Printing to standard output that survives a closed pipe.
//!
//! `println!` panics when stdout is a pipe its reader closed (`bnconv profile | head`). The
//! printed lines are only a view of the run: the run itself, and the files it writes
//! (checkpoints, JSON, plots), must not die with the reader. So lines that cannot be written are
//! dropped; an error other than a closed pipe (a full disk behind a redirect, say) is reported
//! on stderr once.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set when standard output carries a data file (`--json -`): the printed report then goes to
/// standard error, so `bnconv train --json - | jq` reads clean JSON.
static TO_STDERR: AtomicBool = AtomicBool::new(false);

/// Sends every later [`line`] (and the progress bar) to standard error.
pub fn report_to_stderr() {
    TO_STDERR.store(true, Ordering::Relaxed);
}

/// Whether the report goes to standard error ([`report_to_stderr`]).
pub fn reporting_to_stderr() -> bool {
    TO_STDERR.load(Ordering::Relaxed)
}

/// Whether this process prints nothing: the ranks other than 0 of an MPI job, whose lines rank 0
/// already prints.
static SILENT: AtomicBool = AtomicBool::new(false);

/// Makes [`line`] drop every line from now on (`true`), or print again.
pub fn set_silent(silent: bool) {
    SILENT.store(silent, Ordering::Relaxed);
}

/// Whether this process prints nothing ([`set_silent`]).
pub fn silent() -> bool {
    SILENT.load(Ordering::Relaxed)
}

/// Writes one line to stdout (or stderr, see [`report_to_stderr`]), dropping it if that is gone
/// (or this process is [`silent`]).
pub fn line(args: std::fmt::Arguments) {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if silent() {
        return;
    }
    let written = if reporting_to_stderr() {
        writeln!(std::io::stderr().lock(), "{args}")
    } else {
        writeln!(std::io::stdout().lock(), "{args}")
    };
    if let Err(e) = written {
        if e.kind() != ErrorKind::BrokenPipe && !REPORTED.swap(true, Ordering::Relaxed) {
            eprintln!("warning: cannot write to stdout ({e}); further output lines are dropped");
        }
    }
}

/// `println!` through [`line`].
macro_rules! outln {
    () => {
        $crate::stdout::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::stdout::line(format_args!($($arg)*))
    };
}
