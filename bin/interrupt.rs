//! Ctrl-C (SIGINT) and SIGTERM while training: the first asks the run to stop at the next step
//! boundary (the resumable checkpoint is written when `--save` is given, and the process exits
//! with 128 + the signal number: 130, 143); a second one ends the process at once with that code
//! (in a single process: see [`install`] for mpirun).

use signal_hook::consts::{SIGINT, SIGTERM};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Set by the first signal.
static STOP: AtomicBool = AtomicBool::new(false);
/// The number of the last signal received.
static SIGNAL: AtomicUsize = AtomicUsize::new(0);

/// Installs the handlers (training commands only; other commands keep the default: exit at once).
/// `second_exits`: a second signal ends the process at once. Not under `mpirun` with several
/// ranks: there a rank may get the same Ctrl-C twice (from the terminal and forwarded by
/// `mpirun`) and must still reach the step boundary where all ranks stop together; `mpirun`
/// itself ends the job with SIGKILL when its ranks take too long
/// (`odls_base_sigkill_timeout`, see docs/distributed.md).
pub fn install(second_exits: bool) -> anyhow::Result<()> {
    for (signal, code) in [(SIGINT, 130), (SIGTERM, 143)] {
        // Registered first, so it sees STOP as the previous signal left it: set means this is
        // the second signal.
        if second_exits {
            signal_hook::flag::register_conditional_shutdown(signal, code, &STOP)?;
        }
        signal_hook::flag::register_usize(signal, &SIGNAL, signal as usize)?;
        signal_hook::flag::register(signal, &STOP)?;
    }
    Ok(())
}

/// The signal that asked the run to stop, if one did.
pub fn requested() -> Option<i32> {
    STOP.load(Ordering::SeqCst)
        .then(|| SIGNAL.load(Ordering::SeqCst) as i32)
}

fn signal_name(signal: i32) -> String {
    match signal {
        SIGINT => "SIGINT (Ctrl-C)".into(),
        SIGTERM => "SIGTERM".into(),
        other => format!("signal {other}"),
    }
}

/// A run ended early by a signal: what was done, and how to continue. `main` prints it and exits
/// with [`Interrupted::exit_code`].
#[derive(Debug)]
pub struct Interrupted {
    pub signal: i32,
    /// Steps taken, and the run's total.
    pub steps: usize,
    pub batches: usize,
    /// The resumable checkpoint written, if `--save` was given.
    pub saved: Option<PathBuf>,
    /// Options to repeat when resuming (`--data DIR`), already quoted.
    pub resume_options: String,
}

impl Interrupted {
    pub fn exit_code(&self) -> u8 {
        u8::try_from(128 + self.signal).unwrap_or(1)
    }
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stopped by {} after batch {} of {}",
            signal_name(self.signal),
            self.steps,
            self.batches
        )?;
        match &self.saved {
            Some(path) => write!(
                f,
                "; saved the resumable checkpoint {}\nto continue: bnconv train --resume {}{}",
                path.display(),
                shell_quote(&path.display().to_string()),
                self.resume_options
            ),
            None => write!(f, "; nothing was saved (no --save given)"),
        }
    }
}

impl std::error::Error for Interrupted {}

/// `s` quoted for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("run/bn.safetensors"), "run/bn.safetensors");
        assert_eq!(shell_quote("my run.st"), "'my run.st'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn the_message_says_how_to_resume() {
        let i = Interrupted {
            signal: SIGTERM,
            steps: 7,
            batches: 800,
            saved: Some("a b.st".into()),
            resume_options: " --data d".into(),
        };
        assert_eq!(i.exit_code(), 143);
        let text = i.to_string();
        assert!(text.contains("SIGTERM after batch 7 of 800"), "{text}");
        assert!(
            text.ends_with("bnconv train --resume 'a b.st' --data d"),
            "{text}"
        );
    }
}
