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
pub mod profile_eval;
pub mod sweep;
pub mod train;

use crate::cli::{Cli, Command};
use crate::launch::{Launch, Refusal};
use anyhow::Result;
use train::Runs;

/// Runs the command `cli` names (`compare` when it names none), as this process's part of the
/// run `launch` describes.
pub fn run(cli: Cli, launch: &Launch) -> Result<()> {
    let team = launch.team.clone();
    let alone = |command: &str| -> Result<()> {
        Err(Refusal(format!(
            "bnconv {command} runs in one process; start it without mpirun (this job has {} ranks)",
            launch.ranks()
        ))
        .into())
    };
    match cli.command {
        Some(Command::Profile(_)) if launch.ranks() > 1 => alone("profile"),
        Some(Command::Predict(_)) if launch.ranks() > 1 => alone("predict"),
        Some(Command::Sweep(_)) if launch.ranks() > 1 => alone("sweep"),
        Some(Command::Train(t)) => train::run(Runs {
            opts: t.common,
            variants: vec![t.variant],
            save: t.save,
            per_variant: false,
            resume: t.resume,
            no_verify: t.no_verify,
            save_every: t.save_every,
            team,
        }),
        Some(Command::Compare(c)) => train::run(Runs {
            opts: c.common,
            variants: c.variants,
            save: c.save,
            per_variant: true,
            resume: None,
            no_verify: false,
            save_every: None,
            team,
        }),
        Some(Command::Eval(e)) => eval::run(&team, &e),
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
            team,
        }),
    }
}
