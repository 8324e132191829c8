//! `bnconv profile --model-threads`: the scaling model's figures, printed and in the JSON.
//!
//! The step of median task durations recorded at one thread is simulated on each thread count
//! ([`bnconv_kernels::runtime::scaling`]) with the hand-off costs measured at the smallest
//! multi-thread count of the sweep. Where the sweep measured a thread count, the prediction is
//! set against the measured median step time (profiler off) of the same run.

use bnconv_kernels::runtime::profile::{Pass, STEP_ROW};
use bnconv_kernels::runtime::scaling::{
    calibrate, median_timeline, simulate, Costs, Label, Piece, Strand,
};
use bnconv_kernels::runtime::task_log::StepLog;
use serde::Serialize;
use std::collections::BTreeMap;

/// How far a prediction may miss a measured step time for the check to pass.
pub const CHECK_TOLERANCE: f64 = 0.10;

/// Rows of the printed critical path.
const PRINT_ROWS: usize = 12;

#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    pub threads: usize,
    pub predicted_ms_per_step: f64,
    pub predicted_images_per_second: f64,
    /// Predicted 1-thread step time / predicted step time.
    pub speedup: f64,
    pub efficiency: f64,
    /// Median step time of the sweep at this thread count, profiler off.
    pub measured_ms_per_step: Option<f64>,
    /// predicted / measured - 1.
    pub error: Option<f64>,
}

/// The driving thread's pieces of one (layer, pass, phase), simulated on `threads` workers.
#[derive(Clone, Debug, Serialize)]
pub struct PathRow {
    pub layer: String,
    pub pass: &'static str,
    /// The phase of the loops, or of the profiler scope around serial work ("-" for none).
    pub phase: &'static str,
    /// The driving thread's own work between loops, not loops.
    pub serial: bool,
    pub ms_per_step: f64,
    pub share: f64,
    /// Loops (or serial pieces) of this row per step.
    pub pieces: usize,
    /// The most tasks one of them has.
    pub max_tasks: usize,
    /// Their tasks' total time on one thread.
    pub work_ms: f64,
    /// The sum of each loop's span on unlimited workers (its longest chain of tasks and nested
    /// loops): no number of threads beats it.
    pub span_ms: f64,
    /// Time beyond `max(span, work / threads)` per loop: hand-offs and uneven packing.
    pub beyond_bound_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CriticalPath {
    pub threads: usize,
    pub predicted_ms_per_step: f64,
    /// Every row, largest first.
    pub rows: Vec<PathRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CalibrationOut {
    pub threads: usize,
    pub steal_ns: f64,
    pub join_ns: f64,
    pub steal_samples: usize,
    pub join_samples: usize,
    pub local_join_samples: usize,
    /// 10th, 25th, 50th, 75th and 90th percentiles of the samples, in nanoseconds.
    pub steal_percentiles_ns: [f64; 5],
    pub join_percentiles_ns: [f64; 5],
    /// Time of tasks without nested loops per step at `threads` / at one thread: above 1 when
    /// threads slow each other down (shared caches and memory, or a busy machine), which the model
    /// does not include.
    pub leaf_task_time_ratio: Option<f64>,
    /// The samples the costs rest on (on-core: under 8x the 10th percentile and under 50 us).
    pub steal_on_core_samples: usize,
    pub join_on_core_samples: usize,
    /// Why the measured costs cannot be trusted (too few on-core samples: another program held
    /// a core), or null.
    pub doubt: Option<String>,
}

/// The hand-off costs the predictions use.
#[derive(Clone, Debug, Serialize)]
pub struct CostsUsed {
    pub steal_ns: f64,
    pub join_ns: f64,
    /// "measured" (the calibration's), "given" (`--model-handoff-us`) or "none" (no calibration,
    /// taken as 0).
    pub source: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub tolerance: f64,
    /// Every measured thread count predicted within the tolerance.
    pub passed: bool,
    pub largest_abs_error: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScalingDoc {
    pub method: &'static str,
    pub recorded_threads: usize,
    pub steps_recorded: usize,
    /// Steps of the most common shape, whose per-piece medians make the modelled step.
    pub steps_used: usize,
    /// Why some recorded steps could not be used.
    pub unusable_steps: Vec<String>,
    pub loops_per_step: usize,
    pub tasks_per_step: usize,
    pub calibration: Option<CalibrationOut>,
    pub costs: CostsUsed,
    pub predictions: Vec<Prediction>,
    pub check: Option<Check>,
    pub critical_paths: Vec<CriticalPath>,
    pub notes: Vec<&'static str>,
}

pub const METHOD: &str = "One training step (fused path) recorded at 1 thread by the task log: \
every parallel loop, its tasks and their nested loops, and the serial time between them; the \
median of each piece over the recorded steps of the common shape. It is replayed on N simulated \
workers: a free worker takes its own continuation, else the next task of its newest own loop, \
else steals from the oldest open loop (paying the steal latency once per loop); a loop's \
continuation resumes on its opener when every task is done (a barrier), after the join latency \
when the last task ran elsewhere. Steal and join latencies are measured at the \
calibration thread count: the median of the on-core samples, those within 8x the 10th \
percentile (on a shared machine many samples are a descheduled worker, not a hand-off).";

const NOTES: [&str; 3] = [
    "Tasks are taken to last as long on N busy cores as on one: memory bandwidth and last-level \
cache shared by cores, NUMA (memory on another socket), SMT (two threads on one core) and turbo \
(clocks falling as more cores work) are not modelled. leaf_task_time_ratio shows how much tasks \
slowed down at the calibration thread count on this machine.",
    "Hand-off costs are measured at the calibration thread count; on many cores a loop reaches \
its N-th worker after about log2(N) rayon splits, so real hand-offs grow slowly with N.",
    "Task cutting depends on the problem shape only (runtime::partition), so the recorded tasks \
are the tasks of any thread count.",
];

fn pass_name(pass: Option<Pass>) -> &'static str {
    match pass {
        Some(Pass::Forward) => "fwd",
        Some(Pass::Backward) => "bwd",
        None => "step",
    }
}

fn layer_name(names: &[String], row: usize) -> String {
    if row == STEP_ROW {
        "step".to_string()
    } else {
        names
            .get(row)
            .cloned()
            .unwrap_or_else(|| format!("layer {row}"))
    }
}

/// Time of tasks without nested loops, per step, over `logs`.
fn leaf_task_ns(logs: &[StepLog]) -> Option<f64> {
    if logs.is_empty() {
        return None;
    }
    let total: u64 = logs
        .iter()
        .map(|log| {
            let mut nests = vec![false; log.tasks.len()];
            for l in &log.loops {
                if let Some(p) = l.parent.and_then(|p| nests.get_mut(p)) {
                    *p = true;
                }
            }
            log.tasks
                .iter()
                .zip(&nests)
                .filter(|(_, nests)| !**nests)
                .map(|(t, _)| t.end_ns.saturating_sub(t.begin_ns))
                .sum::<u64>()
        })
        .sum();
    Some(total as f64 / logs.len() as f64)
}

fn critical_path(names: &[String], step: &Strand, workers: usize, costs: Costs) -> CriticalPath {
    let schedule = simulate(step, workers, costs);
    let mut rows: BTreeMap<(Label, bool), PathRow> = BTreeMap::new();
    for (piece, &(begin, end)) in step.pieces.iter().zip(&schedule.driver) {
        let (label, serial, tasks, work, span) = match piece {
            Piece::Serial { ns, label } => (*label, true, 1, *ns, *ns),
            Piece::Loop(l) => (l.label, false, l.tasks.len(), l.work_ns(), l.span_ns()),
        };
        let bound = span.max(work / workers as f64);
        let row = rows.entry((label, serial)).or_insert_with(|| PathRow {
            layer: layer_name(names, label.row),
            pass: pass_name(label.pass),
            phase: label.phase.map_or("-", |p| p.name()),
            serial,
            ms_per_step: 0.0,
            share: 0.0,
            pieces: 0,
            max_tasks: 0,
            work_ms: 0.0,
            span_ms: 0.0,
            beyond_bound_ms: 0.0,
        });
        row.ms_per_step += (end - begin) / 1e6;
        row.pieces += 1;
        row.max_tasks = row.max_tasks.max(tasks);
        row.work_ms += work / 1e6;
        row.span_ms += span / 1e6;
        row.beyond_bound_ms += (end - begin - bound).max(0.0) / 1e6;
    }
    let step_ms = schedule.step_ns / 1e6;
    let mut rows: Vec<PathRow> = rows.into_values().collect();
    for r in &mut rows {
        r.share = r.ms_per_step / step_ms.max(f64::MIN_POSITIVE);
    }
    rows.sort_by(|a, b| b.ms_per_step.total_cmp(&a.ms_per_step));
    CriticalPath {
        threads: workers,
        predicted_ms_per_step: step_ms,
        rows,
    }
}

/// The model from `base` (steps logged at one thread), hand-off costs from `calibration` (its
/// thread count and steps), predictions for `threads`, checked against `measured` (thread count,
/// median ms per step). `given` hand-off costs replace the calibration's in the predictions.
pub fn build(
    names: &[String],
    batch: usize,
    base: &[StepLog],
    calibration: Option<(usize, &[StepLog])>,
    threads: &[usize],
    measured: &[(usize, f64)],
    given: Option<Costs>,
) -> Result<ScalingDoc, String> {
    let mut unusable = Vec::new();
    let mut steps = Vec::new();
    for (i, log) in base.iter().enumerate() {
        match Strand::from_log(log) {
            Ok(s) => steps.push(s),
            Err(e) => unusable.push(format!("step {i}: {e}")),
        }
    }
    let Some((step, used)) = median_timeline(&steps) else {
        return Err(format!(
            "no recorded step could be modelled ({})",
            unusable.join("; ")
        ));
    };
    let loops = step.loops();
    let tasks_per_step = loops.iter().map(|l| l.tasks.len()).sum();
    let (costs, calibration) = match calibration {
        Some((t, logs)) => {
            let c = calibrate(logs);
            let ratio = match (leaf_task_ns(logs), leaf_task_ns(base)) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            (
                c.costs,
                Some(CalibrationOut {
                    threads: t,
                    steal_ns: c.costs.steal_ns,
                    join_ns: c.costs.join_ns,
                    steal_samples: c.steal_samples,
                    join_samples: c.join_samples,
                    local_join_samples: c.local_join_samples,
                    steal_percentiles_ns: c.steal_percentiles,
                    join_percentiles_ns: c.join_percentiles,
                    leaf_task_time_ratio: ratio,
                    steal_on_core_samples: c.steal_on_core,
                    join_on_core_samples: c.join_on_core,
                    doubt: c.doubt(),
                }),
            )
        }
        None => (Costs::default(), None),
    };
    let (costs, source) = match (given, &calibration) {
        (Some(g), _) => (g, "given"),
        (None, Some(_)) => (costs, "measured"),
        (None, None) => (costs, "none"),
    };
    let mut all: Vec<usize> = threads
        .iter()
        .copied()
        .chain(measured.iter().map(|m| m.0))
        .chain([1])
        .collect();
    all.sort_unstable();
    all.dedup();
    let one = simulate(&step, 1, costs).step_ns;
    let predictions: Vec<Prediction> = all
        .iter()
        .map(|&n| {
            let ns = simulate(&step, n, costs).step_ns;
            let measured = measured.iter().find(|m| m.0 == n).map(|m| m.1);
            let speedup = one / ns;
            Prediction {
                threads: n,
                predicted_ms_per_step: ns / 1e6,
                predicted_images_per_second: batch as f64 * 1e9 / ns,
                speedup,
                efficiency: speedup / n as f64,
                measured_ms_per_step: measured,
                error: measured.map(|m| ns / 1e6 / m - 1.0),
            }
        })
        .collect();
    let errors: Vec<f64> = predictions.iter().filter_map(|p| p.error).collect();
    let check = (!errors.is_empty()).then(|| {
        let largest = errors.iter().map(|e| e.abs()).fold(0.0, f64::max);
        Check {
            tolerance: CHECK_TOLERANCE,
            passed: largest <= CHECK_TOLERANCE,
            largest_abs_error: largest,
        }
    });
    let critical_paths = all
        .iter()
        .map(|&n| critical_path(names, &step, n, costs))
        .collect();
    Ok(ScalingDoc {
        method: METHOD,
        recorded_threads: 1,
        steps_recorded: base.len(),
        steps_used: used,
        unusable_steps: unusable,
        loops_per_step: loops.len(),
        tasks_per_step,
        calibration,
        costs: CostsUsed {
            steal_ns: costs.steal_ns,
            join_ns: costs.join_ns,
            source,
        },
        predictions,
        check,
        critical_paths,
        notes: NOTES.to_vec(),
    })
}

fn pct(x: f64) -> String {
    format!("{:+.1}%", 100.0 * x)
}

/// Prints the model: predictions, the check, and the critical path at the largest thread count.
pub fn print(d: &ScalingDoc) {
    outln!(
        "\nscaling model (fused path): one step's tasks recorded at {} thread, median of {} of {} steps ({} loops, {} tasks per step){}",
        d.recorded_threads,
        d.steps_used,
        d.steps_recorded,
        d.loops_per_step,
        d.tasks_per_step,
        if d.unusable_steps.is_empty() {
            String::new()
        } else {
            format!("; {} steps unusable", d.unusable_steps.len())
        }
    );
    match &d.calibration {
        Some(c) => outln!(
            "hand-off costs measured at {} threads: steal {:.2} us (median of the on-core samples of {} loops), join {:.2} us (of {} loops, less that of the {} that ended on their opener); tasks without nested loops took {} as long per step there as at 1 thread (the model assumes no slow-down)",
            c.threads,
            c.steal_ns / 1e3,
            c.steal_samples,
            c.join_ns / 1e3,
            c.join_samples,
            c.local_join_samples,
            c.leaf_task_time_ratio
                .map_or("-".to_string(), |r| format!("{r:.2}x")),
        ),
        None => outln!(
            "hand-off costs: not measured (no thread count above 1 within the cores was swept), taken as 0"
        ),
    }
    let doubt = d.calibration.as_ref().and_then(|c| c.doubt.as_deref());
    if d.costs.source == "given" {
        outln!(
            "the predictions use the given hand-off costs (--model-handoff-us): steal {:.2} us, join {:.2} us",
            d.costs.steal_ns / 1e3,
            d.costs.join_ns / 1e3
        );
    } else if let Some(doubt) = doubt {
        outln!(
            "WARNING: the measured hand-off costs cannot be trusted: {doubt}. Another program held a core, and the predictions below show its time slices, not bnconv's hand-offs: rerun on a quieter machine, or give the costs with --model-handoff-us"
        );
    }
    outln!(
        "{:>7} {:>12} {:>9} {:>8} {:>10} {:>12} {:>8}",
        "threads",
        "predicted ms",
        "img/s",
        "speed-up",
        "efficiency",
        "measured ms",
        "error"
    );
    for p in &d.predictions {
        outln!(
            "{:>7} {:>12.3} {:>9.0} {:>7.2}x {:>9.0}% {:>12} {:>8}",
            p.threads,
            p.predicted_ms_per_step,
            p.predicted_images_per_second,
            p.speedup,
            100.0 * p.efficiency,
            p.measured_ms_per_step
                .map_or("-".to_string(), |m| format!("{m:.3}")),
            p.error.map_or("-".to_string(), pct),
        );
    }
    if let Some(c) = &d.check {
        let measured: Vec<String> = d
            .predictions
            .iter()
            .filter_map(|p| {
                p.error
                    .map(|e| format!("{} thread(s) {}", p.threads, pct(e)))
            })
            .collect();
        if c.passed {
            outln!(
                "check: the model predicts the measured step within {:.0}% ({})",
                100.0 * c.tolerance,
                measured.join(", ")
            );
        } else {
            outln!(
                "check: the model misses the measured step by more than {:.0}% ({}); on a busy machine the measured figures are not the machine's own",
                100.0 * c.tolerance,
                measured.join(", ")
            );
        }
    }
    if let Some(cp) = d.critical_paths.last() {
        outln!(
            "\ncritical path at {} threads: where the predicted {:.3} ms/step go (the driving thread's serial work and the span of each loop, by layer, pass and phase; largest {} rows)",
            cp.threads,
            cp.predicted_ms_per_step,
            PRINT_ROWS.min(cp.rows.len())
        );
        outln!(
            "{:<8} {:<4} {:<22} {:<6} {:>8} {:>6} {:>6} {:>6} {:>9} {:>8} {:>10}",
            "layer",
            "pass",
            "phase",
            "kind",
            "ms",
            "share",
            "pieces",
            "tasks",
            "work ms",
            "span ms",
            "beyond ms"
        );
        for r in cp.rows.iter().take(PRINT_ROWS) {
            outln!(
                "{:<8} {:<4} {:<22} {:<6} {:>8.3} {:>5.1}% {:>6} {:>6} {:>9.3} {:>8.3} {:>10.3}",
                r.layer,
                r.pass,
                r.phase,
                if r.serial { "serial" } else { "loops" },
                r.ms_per_step,
                100.0 * r.share,
                r.pieces,
                r.max_tasks,
                r.work_ms,
                r.span_ms,
                r.beyond_bound_ms
            );
        }
        outln!("(tasks: the most one loop has; span ms: the loops' time on unlimited threads, their longest chains of tasks, a floor no thread count breaks; beyond ms: time above max(span, work / threads), i.e. hand-offs and uneven packing)");
    }
    for n in &d.notes {
        outln!("note: {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bnconv_kernels::runtime::profile::Phase;
    use bnconv_kernels::runtime::task_log::{LoopEvent, Mark, MarkKind, TaskEvent};

    /// A step of 120 ns on one thread: 20 ns serial in layer 0, then a loop of four 25 ns tasks.
    fn one_thread_log() -> StepLog {
        StepLog {
            begin_ns: 0,
            end_ns: 120,
            loops: vec![LoopEvent {
                begin_ns: 20,
                end_ns: 120,
                parent: None,
                row: 0,
                phase: Phase::BnApply,
                thread: Some(0),
            }],
            tasks: (0..4)
                .map(|i| TaskEvent {
                    loop_id: 0,
                    begin_ns: 20 + 25 * i,
                    end_ns: 45 + 25 * i,
                    thread: Some(0),
                })
                .collect(),
            marks: vec![Mark {
                at_ns: 0,
                kind: MarkKind::Layer {
                    row: 0,
                    pass: Some(Pass::Forward),
                },
            }],
            complete: true,
        }
    }

    #[test]
    fn predictions_speed_up_the_loop_and_check_against_measured_steps() {
        let names = vec!["bn01".to_string()];
        let base = vec![one_thread_log(); 3];
        let doc = build(
            &names,
            64,
            &base,
            None,
            &[4, 8],
            &[(1, 120e-6), (2, 80e-6)],
            None,
        )
        .unwrap();
        let ms: Vec<(usize, f64)> = doc
            .predictions
            .iter()
            .map(|p| (p.threads, p.predicted_ms_per_step * 1e6))
            .collect();
        // 20 serial + 100 / min(n, 4) (no hand-off costs without a calibration).
        assert_eq!(ms, [(1, 120.0), (2, 70.0), (4, 45.0), (8, 45.0)]);
        assert_eq!(doc.predictions[0].error, Some(0.0));
        let check = doc.check.unwrap();
        assert!(!check.passed, "70 against 80 misses by 12.5%");
        assert!((check.largest_abs_error - 0.125).abs() < 1e-12);
        let cp = doc.critical_paths.last().unwrap();
        assert_eq!(cp.threads, 8);
        assert_eq!(cp.rows[0].phase, "bn apply");
        assert_eq!(cp.rows[0].layer, "bn01");
        assert!(!cp.rows[0].serial);
        assert_eq!(cp.rows[0].max_tasks, 4);
        assert!((cp.rows[0].ms_per_step * 1e6 - 25.0).abs() < 1e-9);
        assert!((cp.rows[0].span_ms * 1e6 - 25.0).abs() < 1e-9);
        assert!(cp.rows[1].serial);
    }

    #[test]
    fn no_usable_step_is_an_error_not_a_model() {
        let mut log = one_thread_log();
        log.complete = false;
        let err = build(&[], 64, &[log], None, &[4], &[], None).unwrap_err();
        assert!(err.contains("overflowed"), "{err}");
    }
}
