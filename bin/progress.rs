//! A progress bar with training images/s while a variant trains, when stdout is a terminal and
//! `--quiet` is not given; otherwise the seed's plain log lines. With the bar, the log lines are
//! printed above it, so they stay on screen.

use bnconv_nn::train::{LogLine, StepProgress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Steps between two updates of the images/s figure.
const RATE_EVERY: usize = 5;

pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Progress {
    /// A bar for `batches` steps of `variant` when stdout is a terminal and not `quiet`.
    pub fn new(batches: usize, variant: &str, quiet: bool) -> Progress {
        let show = !quiet && std::io::stdout().is_terminal();
        let bar = show.then(|| {
            let pb =
                ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stdout());
            let style = ProgressStyle::with_template(
                "{prefix:>11} [{bar:40}] {pos}/{len} batches  {msg}  {elapsed} elapsed, eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            pb.set_style(style);
            pb.set_prefix(variant.to_string());
            pb.set_message("training");
            pb
        });
        Progress { bar, quiet }
    }

    /// Prints a seed-style log line (above the bar, if any).
    pub fn log(&self, line: &LogLine) {
        match &self.bar {
            Some(pb) => pb.println(line.to_string()),
            None if !self.quiet => outln!("{line}"),
            None => {}
        }
    }

    /// Moves the bar after a training step.
    pub fn step(&self, p: &StepProgress) {
        if let Some(pb) = &self.bar {
            pb.set_position(p.step as u64);
            if p.step == p.batches {
                pb.set_message(format!(
                    "{:.0} train img/s; final evaluation",
                    p.images_per_second()
                ));
            } else if p.step.is_multiple_of(RATE_EVERY) {
                pb.set_message(format!("{:.0} train img/s", p.images_per_second()));
            }
        }
    }

    /// Removes the bar; the log lines stay.
    pub fn finish(&self) {
        if let Some(pb) = &self.bar {
            pb.finish_and_clear();
        }
    }
}
