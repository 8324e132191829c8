//! Printing to standard output that survives a closed pipe.
//!
//! `println!` panics when stdout is a pipe its reader closed (`bnconv profile | head`). The
//! printed lines are only a view of the run: the run itself, and the files it writes
//! (checkpoints, JSON, plots), must not die with the reader. So lines that cannot be written are
//! dropped; an error other than a closed pipe (a full disk behind a redirect, say) is reported
//! on stderr once.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Writes one line to stdout, dropping it if stdout is gone.
pub fn line(args: std::fmt::Arguments) {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if let Err(e) = writeln!(std::io::stdout().lock(), "{args}") {
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
