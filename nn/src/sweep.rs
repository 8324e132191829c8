//! Seed sweeps: the protocol for every (variant, seed) pair, run as independent jobs that share
//! the machine.
//!
//! Each job is an OS thread with a rayon pool of its own (`threads_per_job` workers) that takes
//! the next run not yet started until none are left, so `jobs` runs are always in flight. Runs
//! share nothing but the read-only data set. Because every kernel splits its work by shape alone,
//! a run's results do not depend on its pool's size or on what runs beside it: each run is
//! bitwise the run `bnconv train --variant V --seed S` gives, with any thread count.
//!
//! Independent runs scale with cores far better than one run does (a run's small layers and its
//! serial steps leave threads idle), so on a many-core machine a sweep keeps every core busy with
//! useful work: `jobs * threads_per_job` should equal the number of cores.

use crate::mnist::Mnist;
use crate::seed::Variant;
use crate::train::{run_protocol, RunReport, TrainConfig, TrainError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// What a sweep runs and how it shares the machine.
#[derive(Clone, Debug)]
pub struct SweepConfig {
    /// Settings every run shares; each run replaces `variant` and `seed`.
    pub base: TrainConfig,
    pub variants: Vec<Variant>,
    pub seeds: Vec<u64>,
    /// Runs in flight at once, each on a pool of its own.
    pub jobs: usize,
    /// Worker threads of each job's pool.
    pub threads_per_job: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("invalid sweep: {0}")]
    Config(String),
    #[error("could not start a thread pool of {threads} threads: {detail}")]
    Pool { threads: usize, detail: String },
}

impl SweepConfig {
    /// Every run, in the order the jobs start them: seed by seed, the variants of a seed side by
    /// side (so that results come in for every variant from the start).
    pub fn runs(&self) -> Vec<TrainConfig> {
        self.seeds
            .iter()
            .flat_map(|&seed| {
                self.variants.iter().map(move |&variant| TrainConfig {
                    variant,
                    seed,
                    ..self.base.clone()
                })
            })
            .collect()
    }

    /// Rejects a sweep that cannot run, before any work starts: no variants or seeds, one listed
    /// twice, zero jobs or threads, or run settings that [`TrainConfig::validate`] refuses.
    pub fn validate(&self, training_images: usize) -> Result<(), SweepError> {
        let bad = |msg: String| Err(SweepError::Config(msg));
        if self.variants.is_empty() || self.seeds.is_empty() {
            return bad("it needs at least one variant and one seed".into());
        }
        for (i, v) in self.variants.iter().enumerate() {
            if self.variants[..i].contains(v) {
                return bad(format!("variant {v} is listed twice"));
            }
        }
        for (i, s) in self.seeds.iter().enumerate() {
            if self.seeds[..i].contains(s) {
                return bad(format!("seed {s} is listed twice"));
            }
        }
        if self.jobs == 0 || self.threads_per_job == 0 {
            return bad("jobs and threads per job must be at least 1".into());
        }
        self.base
            .validate(training_images)
            .map_err(|e| SweepError::Config(e.to_string()))
    }
}

/// One finished run of a sweep.
#[derive(Debug)]
pub struct SweepRun {
    /// Position in [`SweepConfig::runs`].
    pub index: usize,
    pub variant: Variant,
    pub seed: u64,
    /// Which job ran it (0-based).
    pub job: usize,
    /// The run's report, or why it stopped (e.g. it diverged); the other runs go on either way.
    pub outcome: Result<RunReport, TrainError>,
}

/// The runs of a sweep, in [`SweepConfig::runs`] order, and its wall time.
#[derive(Debug)]
pub struct SweepResult {
    pub runs: Vec<SweepRun>,
    pub wall_seconds: f64,
}

/// Runs every (variant, seed) of `cfg`, `cfg.jobs` at a time, calling `on_done` from the job's
/// thread as each run finishes (in completion order). Fails only if a thread pool cannot start.
pub fn run_sweep(
    cfg: &SweepConfig,
    data: &Mnist,
    on_done: &(dyn Fn(&SweepRun) + Sync),
) -> Result<SweepResult, SweepError> {
    cfg.validate(data.train.len())?;
    let start = Instant::now();
    let runs = cfg.runs();
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<SweepRun>> = Mutex::new(Vec::with_capacity(runs.len()));
    let jobs = cfg.jobs.min(runs.len());
    let pool_errors: Vec<SweepError> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|job| {
                let (runs, next, done) = (&runs, &next, &done);
                scope.spawn(move || -> Result<(), SweepError> {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(cfg.threads_per_job)
                        .thread_name(move |i| format!("sweep-job{job}-{i}"))
                        .build()
                        .map_err(|e| SweepError::Pool {
                            threads: cfg.threads_per_job,
                            detail: e.to_string(),
                        })?;
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(run_cfg) = runs.get(index) else {
                            return Ok(());
                        };
                        let outcome = pool.install(|| run_protocol(run_cfg, data, &mut |_| {}));
                        let run = SweepRun {
                            index,
                            variant: run_cfg.variant,
                            seed: run_cfg.seed,
                            job,
                            outcome,
                        };
                        on_done(&run);
                        done.lock().unwrap_or_else(|e| e.into_inner()).push(run);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|w| match w.join() {
                Ok(result) => result.err(),
                // A panicking run is a bug: pass it on rather than report a partial sweep.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    let mut runs = done.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = pool_errors.into_iter().next() {
        return Err(e);
    }
    runs.sort_by_key(|r| r.index);
    Ok(SweepResult {
        runs,
        wall_seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SweepConfig {
        SweepConfig {
            base: TrainConfig::protocol(Variant::Bn),
            variants: vec![Variant::Plain, Variant::Bn],
            seeds: vec![3, 1, 2],
            jobs: 2,
            threads_per_job: 1,
        }
    }

    #[test]
    fn runs_go_seed_by_seed_with_the_variants_side_by_side() {
        let runs: Vec<(Variant, u64)> = config()
            .runs()
            .iter()
            .map(|r| (r.variant, r.seed))
            .collect();
        use Variant::{Bn, Plain};
        assert_eq!(
            runs,
            [
                (Plain, 3),
                (Bn, 3),
                (Plain, 1),
                (Bn, 1),
                (Plain, 2),
                (Bn, 2)
            ]
        );
        assert!(config().runs().iter().all(|r| r.batches == 800));
    }

    #[test]
    fn sweeps_that_cannot_run_are_refused() {
        let refused = |change: &dyn Fn(&mut SweepConfig), want: &str| {
            let mut cfg = config();
            change(&mut cfg);
            let err = cfg.validate(55_000).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        };
        refused(&|c| c.variants.clear(), "at least one variant");
        refused(&|c| c.seeds.clear(), "at least one variant and one seed");
        refused(&|c| c.seeds.push(1), "seed 1 is listed twice");
        refused(
            &|c| c.variants.push(Variant::Bn),
            "variant bn is listed twice",
        );
        refused(&|c| c.jobs = 0, "at least 1");
        refused(&|c| c.threads_per_job = 0, "at least 1");
        refused(&|c| c.base.batches = 0, "batches");
        assert!(config().validate(55_000).is_ok());
    }
}
