//! `bnconv`: trains the seed network on MNIST and reports accuracy and throughput.
//!
//! `bnconv` alone (or `bnconv compare`) runs the notebook's comparison, plain vs batch norm, over
//! the protocol of PROTOCOL.md; `bnconv train --variant bn` runs one variant.

mod cli;
mod report;

use anyhow::{Context, Result};
use bnconv_nn::mnist::Mnist;
use bnconv_nn::train::{run_protocol, RunReport};
use clap::Parser;
use cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let (opts, variants) = match cli.command {
        Some(Command::Train(t)) => (t.common, vec![t.variant]),
        Some(Command::Compare(c)) => (c.common, c.variants),
        None => (cli.compare.common, cli.compare.variants),
    };
    let plan = opts.plan()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(plan.threads)
        .build()
        .context("could not start the thread pool")?;
    let data = Mnist::load(&plan.data_dir)
        .with_context(|| format!("could not load MNIST from {}", plan.data_dir.display()))?;
    // Settings that depend on the data (the batch size vs the training set) fail here, before
    // anything is printed or trained.
    for &variant in &variants {
        plan.config(variant)
            .validate(data.train.len())
            .with_context(|| format!("variant {variant}"))?;
    }
    println!(
        "bnconv: {} training / {} validation / {} test images from {}; {} thread(s), BN {}, GEMM {}, SIMD {}",
        data.train.len(),
        data.validation.len(),
        data.test.len(),
        plan.data_dir.display(),
        plan.threads,
        plan.exec.bn_path,
        plan.exec.gemm,
        bnconv_kernels::simd::active_isa().name(),
    );
    let mut reports: Vec<RunReport> = Vec::new();
    for variant in variants {
        let cfg = plan.config(variant);
        if !plan.quiet {
            println!(
                "\n== {variant}: {} batches of {} ==",
                cfg.batches, cfg.batch_size
            );
        }
        let quiet = plan.quiet;
        let report = pool
            .install(|| {
                run_protocol(&cfg, &data, &mut |line| {
                    if !quiet {
                        println!("{line}");
                    }
                })
            })
            .with_context(|| format!("variant {variant}"))?;
        report::print_final(&report);
        reports.push(report);
    }
    report::print_summary(&reports);
    if let Some(path) = &plan.json {
        report::write_json(path, &reports)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
