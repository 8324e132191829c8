//! The commands, one module each: `compare` and `train` ([`train`]), [`eval`], [`profile`],
//! [`predict`] and [`sweep`].
//!
//! Layers: `main` parses and dispatches here; a command uses the modules below it (`cli` for its
//! options, `outpath` for output checks, `report`, `plot`, `progress`, `checkpoints`,
//! `digit_image`, `profile_report` and `profile_doc`), and none of those calls back into a
//! command.

pub mod eval;
pub mod predict;
pub mod profile;
pub mod sweep;
pub mod train;

use crate::cli::{Cli, Command};
use anyhow::Result;
use train::Runs;

/// Runs the command `cli` names (`compare` when it names none).
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Train(t)) => train::run(Runs {
            opts: t.common,
            variants: vec![t.variant],
            save: t.save,
            per_variant: false,
            resume: t.resume,
            no_verify: t.no_verify,
            save_every: t.save_every,
        }),
        Some(Command::Compare(c)) => train::run(Runs {
            opts: c.common,
            variants: c.variants,
            save: c.save,
            per_variant: true,
            resume: None,
            no_verify: false,
            save_every: None,
        }),
        Some(Command::Eval(e)) => eval::run(&e),
        Some(Command::Profile(p)) => profile::run(p),
        Some(Command::Predict(p)) => predict::run(&p),
        Some(Command::Sweep(s)) => sweep::run(&s),
        None => train::run(Runs {
            opts: cli.compare.common,
            variants: cli.compare.variants,
            save: cli.compare.save,
            per_variant: true,
            resume: None,
            no_verify: false,
            save_every: None,
        }),
    }
}
