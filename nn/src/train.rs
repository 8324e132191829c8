//! The seed experiment's protocol (docs/protocol.md): 800 Adam steps on shuffled batches of 64, with
//! validation every 100 batches and a training-batch check every 25, all in evaluation mode, then
//! final validation, test and single-image accuracies. Throughput is timed over the steps alone.

use crate::adam::{Adam, AdamConfig};
use crate::batches::BatchSampler;
use crate::distributed::Team;
use crate::finite::{self, NonFinite};
use crate::layer::{Exec, Mode, ParamKind};
use crate::loss::{correct_predictions, sigmoid_cross_entropy_grad, sigmoid_cross_entropy_rows};
use crate::mnist::{Dataset, Mnist};
use crate::network::Network;
use crate::seed::{seed_network, Variant, CLASSES};
use bnconv_kernels::runtime::profile::{self, Phase};
use bnconv_kernels::runtime::shards::{valid_shard_count, MAX_SHARDS};
use std::ops::Range;
use std::time::{Duration, Instant};

/// Everything that defines one training run.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub variant: Variant,
    pub batches: usize,
    pub batch_size: usize,
    pub adam: AdamConfig,
    /// Seeds the initial weights and the data order.
    pub seed: u64,
    pub exec: Exec,
    /// Images per forward pass when evaluating whole sets (does not change the results).
    pub eval_batch: usize,
}

impl TrainConfig {
    /// The protocol's settings for `variant`.
    pub fn protocol(variant: Variant) -> TrainConfig {
        TrainConfig {
            variant,
            batches: 800,
            batch_size: 64,
            adam: AdamConfig::default(),
            seed: 1,
            exec: Exec::default(),
            eval_batch: 500,
        }
    }

    /// Rejects settings that cannot run, before any work starts.
    pub fn validate(&self, training_images: usize) -> Result<(), TrainError> {
        let bad = |msg: String| Err(TrainError::Config(msg));
        if self.batches == 0 {
            return bad("the number of batches must be at least 1".into());
        }
        if self.batch_size == 0 || self.batch_size > training_images {
            return bad(format!(
                "batch size {} must be between 1 and the {training_images} training images",
                self.batch_size
            ));
        }
        if !(self.adam.lr.is_finite() && self.adam.lr > 0.0) {
            return bad(format!(
                "learning rate {} must be a positive finite number",
                self.adam.lr
            ));
        }
        if self.eval_batch == 0 {
            return bad("the evaluation batch size must be at least 1".into());
        }
        let shards = self.exec.shards;
        if !valid_shard_count(shards) {
            return bad(format!(
                "the shard count {shards} must be a power of two from 1 to {MAX_SHARDS}"
            ));
        }
        let ranks = self.exec.team.ranks();
        if !self.batch_size.is_multiple_of(ranks) {
            return bad(format!(
                "a batch of {} images cannot be split evenly over {ranks} processes: the \
                 process count must divide the batch size",
                self.batch_size
            ));
        }
        if !shards.is_multiple_of(ranks) {
            return bad(format!(
                "{ranks} processes cannot share {shards} shards: the process count must divide \
                 the shard count (a power of two; see --shards)"
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The processes of a run ended with different weights: a fault (a process with different
    /// data, build or hardware behaviour), never expected.
    #[error("the processes ended with different weights (parameters_sha256 by rank: {0})")]
    RanksDisagree(String),
    /// A NaN or an infinity appeared in step `step` (0-based, the log's batch number); `at` says
    /// which layer and tensor first held one. The weights are not updated by that step.
    #[error(
        "training diverged at step {step}: the {at} (the loss is {loss}); \
         try a smaller learning rate"
    )]
    Diverged {
        step: usize,
        loss: f32,
        at: NonFinite,
    },
    /// The caller's step hook asked to stop ([`AfterStep::Stop`]) after `steps` steps in total;
    /// the trainer is intact and can be saved and resumed.
    #[error("training stopped after step {steps} of {batches}")]
    Stopped { steps: usize, batches: usize },
}

/// What [`continue_protocol_with_hook`] does after a step, as its hook decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterStep {
    Continue,
    /// End the run now, without the final evaluations: [`TrainError::Stopped`].
    Stop,
}

/// One printed line of the seed's log.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LogLine {
    pub batch: usize,
    /// `"training"` (the current batch) or `"validation"` (all 5000 validation images).
    pub set: &'static str,
    pub loss: f32,
    pub accuracy: f32,
}

impl std::fmt::Display for LogLine {
    /// The seed notebook's format, e.g. `Batch: 25: Training loss: 0.32512, Training accuracy: 0.10938`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = if self.set == "training" {
            "Training"
        } else {
            "Validation"
        };
        write!(
            f,
            "Batch: {:>2}: {set} loss: {:>3.5}, {set} accuracy: {:>3.5}",
            self.batch, self.loss, self.accuracy
        )
    }
}

/// Loss and accuracy of a whole set.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Evaluation {
    pub loss: f32,
    pub accuracy: f32,
    pub images: usize,
    pub seconds: f64,
}

/// Throughput figures of a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Timing {
    pub threads: usize,
    pub train_steps: usize,
    /// Wall time of the training steps alone (no evaluation).
    pub train_seconds: f64,
    pub train_images_per_second: f64,
    pub ms_per_step: f64,
    pub gflop_per_step: f64,
    /// GEMM flops of the steps divided by their time.
    pub achieved_gflops: f64,
    /// Test-set evaluation throughput (eval mode, batches of `eval_batch`).
    pub eval_images_per_second: f64,
    /// The whole protocol, evaluations included.
    pub wall_seconds: f64,
    /// Wall time per training step spent exchanging sums with the other processes (waiting for
    /// them included), in milliseconds; 0 for a single process.
    pub comm_ms_per_step: f64,
}

/// How a run was spread over processes and threads.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Layout {
    /// Processes (MPI ranks) that trained together.
    pub ranks: usize,
    /// Worker threads of each process, by rank.
    pub threads_per_rank: Vec<usize>,
    /// The host each process ran on, by rank.
    pub hosts: Vec<String>,
    /// The fixed reduction shards of each batch ([`Exec::shards`]).
    pub shards: usize,
}

/// Everything a run produces.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunReport {
    pub variant: Variant,
    pub bn_path: crate::layer::BnPath,
    pub gemm: String,
    pub isa: &'static str,
    pub seed: u64,
    pub batches: usize,
    pub batch_size: usize,
    /// Images per forward pass of the whole-set evaluations (does not change their results).
    pub eval_batch: usize,
    pub adam: AdamConfig,
    /// 0, or the step a resumed run continued from: `step_losses[i]` is step `first_step + i`.
    pub first_step: usize,
    pub log: Vec<LogLine>,
    /// The training loss of every step (train mode, before the update).
    pub step_losses: Vec<f32>,
    pub final_validation: Evaluation,
    pub test: Evaluation,
    /// Accuracy on the first 100 test images fed one at a time.
    pub single_sample_accuracy: f32,
    pub timing: Timing,
    pub layout: Layout,
    /// SHA-256 of every final parameter and BN statistic ([`crate::digest::parameters_sha256`]):
    /// runs with equal digests ended with bitwise-identical weights.
    pub parameters_sha256: String,
}

/// The network, its optimiser and the batch buffers, reused every step. Under several processes
/// ([`Exec::team`]) each holds a `Trainer`: all draw the same batches and each runs its own part
/// of every batch.
pub struct Trainer {
    pub net: Network,
    pub adam: Adam,
    pub(crate) sampler: BatchSampler,
    /// The whole batch, as indices into the training set (the same on every process).
    indices: Vec<usize>,
    /// This process's images of the batch: `indices[local]`.
    local: Range<usize>,
    x: Vec<f32>,
    y: Vec<f32>,
    dlogits: Vec<f32>,
    /// The loss summed over each local image's logits.
    image_losses: Vec<f64>,
    pub(crate) steps: usize,
}

impl Trainer {
    /// A fresh run of `cfg` (which [`TrainConfig::validate`] accepted) on this process's part of
    /// the batch.
    pub fn new(cfg: &TrainConfig, training_images: usize) -> Trainer {
        let local = cfg.exec.team.part(cfg.batch_size);
        let n = local.len();
        Trainer {
            net: seed_network(cfg.variant, cfg.seed, cfg.exec.clone()),
            adam: Adam::new(cfg.adam),
            // A separate stream from the weights', so changing one does not move the other.
            sampler: BatchSampler::new(training_images, cfg.seed ^ 0x5EED_DA7A),
            indices: vec![0; cfg.batch_size],
            local,
            x: vec![0.0; n * Dataset::PIXELS],
            y: vec![0.0; n * CLASSES],
            dlogits: vec![0.0; n * CLASSES],
            image_losses: vec![0.0; n],
            steps: 0,
        }
    }

    fn team(&self) -> &Team {
        &self.net.exec().team
    }

    /// Training steps taken so far (including any before a checkpoint it was resumed from).
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Images per step.
    pub fn batch_size(&self) -> usize {
        self.indices.len()
    }

    /// One training step on the next shuffled batch: forward (train mode), loss, backward, Adam.
    /// Returns the batch loss; fails, leaving the weights untouched, if the loss or a parameter
    /// gradient is not finite, naming the first layer that held a NaN or an infinity.
    pub fn step(&mut self, train: &Dataset) -> Result<f32, TrainError> {
        let data = profile::scope(Phase::Data);
        self.sampler.next_batch(&mut self.indices);
        train.gather(&self.indices[self.local.clone()], &mut self.x, &mut self.y);
        drop(data);
        let logits = self.net.forward(&self.x, self.local.len(), Mode::Train);
        let loss_scope = profile::scope(Phase::Loss);
        let elements = self.indices.len() * CLASSES;
        sigmoid_cross_entropy_rows(logits.data(), &self.y, CLASSES, &mut self.image_losses);
        sigmoid_cross_entropy_grad(logits.data(), &self.y, elements, &mut self.dlogits);
        let team = &self.net.exec().team;
        let loss =
            (team.ordered_sum(&self.image_losses, self.indices.len()) / elements as f64) as f32;
        drop(loss_scope);
        self.steps += 1;
        if !loss.is_finite() {
            return Err(TrainError::Diverged {
                step: self.steps - 1,
                loss,
                at: finite::locate_activation(&mut self.net, loss),
            });
        }
        self.net.backward(&self.dlogits);
        if !finite::gradients_finite(&mut self.net) {
            return Err(TrainError::Diverged {
                step: self.steps - 1,
                loss,
                at: finite::locate_gradient(&mut self.net),
            });
        }
        let _p = profile::scope(Phase::Optimizer);
        self.adam.step(&mut self.net);
        Ok(loss)
    }

    /// Runs a training forward and backward pass over the batch buffers as they are, then undoes
    /// what the passes change (the batch norms' moving statistics, the parameter gradients), so
    /// that every buffer a step uses is allocated and written here and the first step pays no
    /// first-touch page faults. Takes no batch, changes no weight, statistic or data order:
    /// the steps after it give the same bits as without it. Under several processes every one
    /// must call it (the passes exchange their sums).
    pub fn prepare_buffers(&mut self) {
        let mut statistics = Vec::new();
        self.net.visit_params(&mut |p| {
            if p.kind == ParamKind::Statistic {
                statistics.push(p.value.to_vec());
            }
        });
        self.net.forward(&self.x, self.local.len(), Mode::Train);
        self.net.backward(&self.dlogits);
        let mut saved = statistics.iter();
        self.net.visit_params(&mut |p| match p.kind {
            ParamKind::Statistic => {
                let value = saved.next().expect("the same parameters on both visits");
                p.value.copy_from_slice(value);
            }
            ParamKind::Trainable => p.grad.fill(0.0),
        });
        self.adam.prepare(&mut self.net);
    }

    /// Loss and accuracy of the network in eval mode on the batch the last step trained on
    /// (every process's part of it).
    pub fn evaluate_last_batch(&mut self) -> (f32, f32) {
        let batch = self.indices.len();
        let logits = self.net.forward(&self.x, self.local.len(), Mode::Eval);
        sigmoid_cross_entropy_rows(logits.data(), &self.y, CLASSES, &mut self.image_losses);
        let correct = correct_predictions(logits.data(), &self.y, CLASSES);
        let team = self.team();
        let loss = team.ordered_sum(&self.image_losses, batch) / (batch * CLASSES) as f64;
        let correct = team.sum_count(correct);
        (loss as f32, correct as f32 / batch as f32)
    }
}

/// Eval-mode loss and accuracy over a whole set, `batch` images per forward pass. Under several
/// processes ([`Exec::team`]) each evaluates its part of the set; the loss adds per-image sums
/// in image order, so the figures do not depend on the split.
pub fn evaluate(net: &mut Network, data: &Dataset, batch: usize) -> Evaluation {
    evaluate_with(net, data, batch, |_, _| {})
}

/// [`evaluate`], also handing `on_logits(first, logits)` the logits of each forward pass: images
/// `first..` of `data`, `CLASSES` values per image, as the network computed them. A no-op
/// callback compiles to exactly [`evaluate`].
pub fn evaluate_with(
    net: &mut Network,
    data: &Dataset,
    batch: usize,
    mut on_logits: impl FnMut(usize, &[f32]),
) -> Evaluation {
    let start = Instant::now();
    let team = net.exec().team.clone();
    let part = team.part(data.len());
    let batch = batch.max(1);
    let mut x = vec![0.0; batch * Dataset::PIXELS];
    let mut y = vec![0.0; batch * CLASSES];
    let mut losses = vec![0.0f64; part.len()];
    let mut correct = 0usize;
    let mut first = part.start;
    while first < part.end {
        let n = batch.min(part.end - first);
        let (x, y) = (&mut x[..n * Dataset::PIXELS], &mut y[..n * CLASSES]);
        data.copy_range(first..first + n, x, y);
        let logits = net.forward(x, n, Mode::Eval);
        let at = first - part.start;
        sigmoid_cross_entropy_rows(logits.data(), y, CLASSES, &mut losses[at..at + n]);
        correct += correct_predictions(logits.data(), y, CLASSES);
        on_logits(first, logits.data());
        first += n;
    }
    let loss_sum = team.ordered_sum(&losses, data.len());
    let correct = team.sum_count(correct);
    let images = data.len().max(1);
    Evaluation {
        loss: (loss_sum / (images * CLASSES) as f64) as f32,
        accuracy: correct as f32 / images as f32,
        images: data.len(),
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// Runs the whole protocol for one variant on the current rayon pool, calling `on_log` for each
/// log line as it happens.
pub fn run_protocol(
    cfg: &TrainConfig,
    data: &Mnist,
    on_log: &mut dyn FnMut(&LogLine),
) -> Result<RunReport, TrainError> {
    run_protocol_with_progress(cfg, data, on_log, &mut |_| {})
}

/// Where a run stands after a training step (for progress bars).
#[derive(Clone, Copy, Debug)]
pub struct StepProgress {
    /// Training steps completed.
    pub step: usize,
    pub batches: usize,
    pub batch_size: usize,
    /// Wall time of the training steps so far (no evaluation).
    pub train_seconds: f64,
}

impl StepProgress {
    /// Training images per second over the steps so far.
    pub fn images_per_second(&self) -> f64 {
        (self.step * self.batch_size) as f64 / self.train_seconds.max(1e-9)
    }
}

/// [`run_protocol`], also calling `on_step` after every training step, outside its timing.
pub fn run_protocol_with_progress(
    cfg: &TrainConfig,
    data: &Mnist,
    on_log: &mut dyn FnMut(&LogLine),
    on_step: &mut dyn FnMut(&StepProgress),
) -> Result<RunReport, TrainError> {
    cfg.validate(data.train.len())?;
    let mut trainer = Trainer::new(cfg, data.train.len());
    continue_protocol_with_progress(cfg, data, &mut trainer, on_log, on_step)
}

/// Runs the protocol from the step `trainer` has reached (0 when new, or where a checkpoint left
/// off) up to `cfg.batches` in total, on the current rayon pool. Batch numbers, and so the
/// evaluation schedule, count from the start of the whole run: a run resumed at step k logs and
/// evaluates exactly at the batches an uninterrupted run would after k. Evaluations never change
/// the weights, statistics or data order, so the final state does not depend on where a run was
/// split.
pub fn continue_protocol(
    cfg: &TrainConfig,
    data: &Mnist,
    trainer: &mut Trainer,
    on_log: &mut dyn FnMut(&LogLine),
) -> Result<RunReport, TrainError> {
    continue_protocol_with_progress(cfg, data, trainer, on_log, &mut |_| {})
}

/// [`continue_protocol`], also calling `on_step` after every training step, outside its timing.
pub fn continue_protocol_with_progress(
    cfg: &TrainConfig,
    data: &Mnist,
    trainer: &mut Trainer,
    on_log: &mut dyn FnMut(&LogLine),
    on_step: &mut dyn FnMut(&StepProgress),
) -> Result<RunReport, TrainError> {
    continue_protocol_with_hook(cfg, data, trainer, on_log, &mut |progress, _| {
        on_step(progress);
        AfterStep::Continue
    })
}

/// [`continue_protocol`], also calling `after_step` after every training step (and its log
/// line), outside its timing, with the trainer: it may save it (periodic checkpoints: a saved
/// trainer resumes to the same bits) and may stop the run at that step boundary.
pub fn continue_protocol_with_hook(
    cfg: &TrainConfig,
    data: &Mnist,
    trainer: &mut Trainer,
    on_log: &mut dyn FnMut(&LogLine),
    after_step: &mut dyn FnMut(&StepProgress, &mut Trainer) -> AfterStep,
) -> Result<RunReport, TrainError> {
    cfg.validate(data.train.len())?;
    check_resumable(cfg, trainer, data.train.len())?;
    let wall = Instant::now();
    // The other workers spin for work between a step's ~150 parallel loops instead of sleeping.
    let awake = crate::distributed::keep_awake(trainer.team());
    let first_step = trainer.steps;
    let steps_run = cfg.batches - first_step;
    let mut log = Vec::new();
    let mut step_losses = Vec::with_capacity(steps_run);
    let mut train_time = Duration::ZERO;
    let mut comm_seconds = 0.0;
    // The validation evaluation logged after the last step, while no step has run since.
    let mut fresh_validation = None;
    if steps_run > 0 {
        // The first step's buffers are written here, outside the timed steps.
        trainer.prepare_buffers();
    }
    for batch_i in first_step..cfg.batches {
        let start = Instant::now();
        let comm_before = trainer.team().comm_seconds();
        let loss = trainer.step(&data.train)?;
        train_time += start.elapsed();
        comm_seconds += trainer.team().comm_seconds() - comm_before;
        step_losses.push(loss);
        fresh_validation = None;
        let line = if batch_i % 100 == 0 {
            let e = evaluate(&mut trainer.net, &data.validation, cfg.eval_batch);
            fresh_validation = Some(e);
            Some(LogLine {
                batch: batch_i,
                set: "validation",
                loss: e.loss,
                accuracy: e.accuracy,
            })
        } else if batch_i % 25 == 0 {
            let (loss, accuracy) = trainer.evaluate_last_batch();
            Some(LogLine {
                batch: batch_i,
                set: "training",
                loss,
                accuracy,
            })
        } else {
            None
        };
        if let Some(line) = line {
            on_log(&line);
            log.push(line);
        }
        let progress = StepProgress {
            step: batch_i + 1,
            batches: cfg.batches,
            batch_size: cfg.batch_size,
            train_seconds: train_time.as_secs_f64(),
        };
        if after_step(&progress, trainer) == AfterStep::Stop && batch_i + 1 < cfg.batches {
            return Err(TrainError::Stopped {
                steps: batch_i + 1,
                batches: cfg.batches,
            });
        }
    }
    // A run that ends on a validation batch (1 batch, 101, ...) has just evaluated these
    // weights on the validation set: evaluation is deterministic and changes no state, so that
    // evaluation is the final one (the same bits, without a second pass over the set).
    let final_validation = match fresh_validation {
        Some(e) => e,
        None => evaluate(&mut trainer.net, &data.validation, cfg.eval_batch),
    };
    let test = evaluate(&mut trainer.net, &data.test, cfg.eval_batch);
    let single = single_sample_accuracy(&mut trainer.net, &data.test, 100);
    drop(awake);
    let parameters_sha256 = crate::digest::parameters_sha256(&mut trainer.net);
    let layout = check_agreement(trainer.team(), cfg.exec.shards, &parameters_sha256)?;
    let secs = train_time.as_secs_f64();
    let gflop = trainer.net.train_flops(cfg.batch_size) as f64 / 1e9;
    Ok(RunReport {
        variant: cfg.variant,
        bn_path: cfg.exec.bn_path,
        gemm: cfg.exec.gemm.name().to_string(),
        isa: bnconv_kernels::simd::active_isa().name(),
        seed: cfg.seed,
        batches: cfg.batches,
        batch_size: cfg.batch_size,
        eval_batch: cfg.eval_batch,
        adam: cfg.adam,
        first_step,
        log,
        step_losses,
        final_validation,
        single_sample_accuracy: single,
        timing: Timing {
            threads: rayon::current_num_threads(),
            train_steps: steps_run,
            train_seconds: secs,
            train_images_per_second: (steps_run * cfg.batch_size) as f64 / secs,
            ms_per_step: secs * 1e3 / steps_run as f64,
            gflop_per_step: gflop,
            achieved_gflops: gflop * steps_run as f64 / secs,
            eval_images_per_second: test.images as f64 / test.seconds,
            wall_seconds: wall.elapsed().as_secs_f64(),
            comm_ms_per_step: comm_seconds * 1e3 / steps_run as f64,
        },
        layout,
        test,
        parameters_sha256,
    })
}

/// The run's layout, after checking that every process ended with the weights of `digest`.
fn check_agreement(team: &Team, shards: usize, digest: &str) -> Result<Layout, TrainError> {
    let mut local = [0u8; 64 + 8 + HOST_BYTES];
    local[..64].copy_from_slice(&digest.as_bytes()[..64.min(digest.len())]);
    local[64..72].copy_from_slice(&(rayon::current_num_threads() as u64).to_le_bytes());
    let host = team.collective().host_name();
    let host = &host.as_bytes()[..host.len().min(HOST_BYTES)];
    local[72..72 + host.len()].copy_from_slice(host);
    let all = team.gather_bytes(&local);
    let text = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .trim_end_matches('\0')
            .to_string()
    };
    let digests: Vec<String> = all.iter().map(|b| text(&b[..64])).collect();
    if digests.iter().any(|d| d != &digests[0]) {
        return Err(TrainError::RanksDisagree(digests.join(", ")));
    }
    Ok(Layout {
        ranks: team.ranks(),
        threads_per_rank: all
            .iter()
            .map(|b| u64::from_le_bytes(b[64..72].try_into().expect("8 bytes")) as usize)
            .collect(),
        hosts: all.iter().map(|b| text(&b[72..])).collect(),
        shards,
    })
}

/// Longest host name a layout reports.
const HOST_BYTES: usize = 64;

/// Whether `trainer` can continue under `cfg` on a training set of `training_images`.
fn check_resumable(
    cfg: &TrainConfig,
    trainer: &Trainer,
    training_images: usize,
) -> Result<(), TrainError> {
    let bad = |msg: String| Err(TrainError::Config(msg));
    if trainer.steps >= cfg.batches {
        return bad(format!(
            "the run has already taken {} steps; the number of batches ({}) must be larger",
            trainer.steps, cfg.batches
        ));
    }
    if trainer.batch_size() != cfg.batch_size {
        return bad(format!(
            "the run uses batches of {}, not {}",
            trainer.batch_size(),
            cfg.batch_size
        ));
    }
    if trainer.sampler.set_size() != training_images {
        return bad(format!(
            "the run's data order covers {} training images, but the training set has {}",
            trainer.sampler.set_size(),
            training_images
        ));
    }
    Ok(())
}

/// Accuracy on the first `n` images of `data`, each fed alone (batch of 1, eval mode), shared
/// out between the processes of [`Exec::team`].
pub fn single_sample_accuracy(net: &mut Network, data: &Dataset, n: usize) -> f32 {
    let n = n.min(data.len());
    let mut x = vec![0.0; Dataset::PIXELS];
    let mut y = vec![0.0; CLASSES];
    let team = net.exec().team.clone();
    let correct: usize = team
        .part(n)
        .map(|i| {
            data.copy_range(i..i + 1, &mut x, &mut y);
            let logits = net.forward(&x, 1, Mode::Eval);
            correct_predictions(logits.data(), &y, CLASSES)
        })
        .sum();
    team.sum_count(correct) as f32 / n.max(1) as f32
}
