//! `bnconv`: trains the seed network on MNIST and reports accuracy and throughput.
//!
//! `bnconv` alone (or `bnconv compare`) runs the notebook's comparison, plain vs batch norm, over
//! the protocol of docs/protocol.md; `bnconv train --variant bn` runs one variant; `bnconv eval
//! --checkpoint FILE` evaluates a saved checkpoint.

#[macro_use]
mod stdout;

mod checkpoints;
mod cli;
mod commands;
mod digit_image;
mod fault;
mod interrupt;
mod launch;
mod memory;
mod outpath;
mod plot;
mod profile_doc;
mod profile_report;
mod profile_trust;
mod progress;
mod report;
mod scaling_report;

use anyhow::{Context, Result};
use clap::Parser;
use cli::Cli;

/// Environment variable naming the SIMD code path: `avx512`, `avx2` or `portable` (default: the
/// best this CPU runs), for comparing the paths (docs/design.md says which give the same bits)
/// and for working around a faulty one.
const ISA_VAR: &str = "BNCONV_ISA";

/// Applies [`ISA_VAR`] when it is set.
fn choose_isa() -> Result<()> {
    use bnconv_kernels::simd::{force_isa, Isa};
    // Set but empty means unset, as for most tools' variables.
    let Some(value) = std::env::var_os(ISA_VAR).filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let names = Isa::ALL.map(Isa::name).join(", ");
    let name = value.to_string_lossy();
    let isa = Isa::from_name(&name)
        .with_context(|| format!("{ISA_VAR}={name:?} names no SIMD path (one of: {names})"))?;
    if !force_isa(isa) {
        anyhow::bail!("{ISA_VAR}={name}: this CPU does not run the {name} path");
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this bnconv is a debug build (built without --release): it runs tens of \
             times slower than `cargo run --release` or `cargo build --release`"
        );
    }
    let launch = match launch::Launch::join() {
        Ok(launch) => launch,
        Err(e) => return launch::Launch::alone().fail(e),
    };
    // Under mpirun, rank 0 prints for everyone.
    stdout::set_silent(!launch.is_root());
    match choose_isa().and_then(|()| commands::run(cli, &launch)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<interrupt::Interrupted>() {
            // Stopped by Ctrl-C or SIGTERM (every rank at the same step): not a failure of
            // bnconv, but not a finished run.
            Some(stopped) => {
                if launch.is_root() {
                    eprintln!("{stopped}");
                }
                // The others leave only once rank 0 has saved and said so: mpirun ends the job
                // when the first rank exits with the signal's status.
                launch.team.barrier();
                std::process::ExitCode::from(stopped.exit_code())
            }
            None => launch.fail(e),
        },
    }
}
