//! The hand-off costs of the scaling model, measured from steps recorded on several threads.
//!
//! - Steal latency: for a loop whose first task on another worker was taken while that worker
//!   was not inside any task, the time from the loop's start to that task's start.
//! - Join latency: for a loop whose last task ended on another worker than the one that started
//!   the loop, the time from that task's end to the loop's end, less the same time for loops
//!   whose last task ended on the starting worker (that part, the return from the loop, is
//!   already in the one-thread timeline as dispatch time).
//!
//! On a shared machine the samples fall in groups: about a microsecond when the other worker was
//! on a core, and up to a scheduler time slice (milliseconds) when it was not; the slow groups are
//! the machine's load, not the hand-off, and can be most of the samples. Each cost is therefore
//! the median of the on-core samples, those within [`ON_CORE_FACTOR`] times the 10th percentile
//! and below [`PLAUSIBLE_NS`] (on a quiet machine that is nearly every sample, and the figure is
//! the plain median).
//!
//! When another program holds a core for most of the run, nearly every sample waited for the
//! scheduler, the 10th percentile with them, and no figure drawn from them is a hand-off: the
//! calibration says so ([`Calibration::doubt`]) instead of passing a scheduler's time slice off
//! as one.

use crate::runtime::scaling::simulate::Costs;
use crate::runtime::task_log::StepLog;

/// The measured costs and what they rest on.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    pub costs: Costs,
    pub steal_samples: usize,
    pub join_samples: usize,
    /// The 10th, 25th, 50th, 75th and 90th percentiles of the steal and (cross-worker) join
    /// samples, in nanoseconds (zeros without samples): a busy machine shows as a long tail.
    pub steal_percentiles: [f64; 5],
    pub join_percentiles: [f64; 5],
    /// Loops whose last task ended on the worker that started them (the join baseline).
    pub local_join_samples: usize,
    /// The samples the costs rest on: the on-core steal and cross-worker join samples.
    pub steal_on_core: usize,
    pub join_on_core: usize,
}

impl Calibration {
    /// Why the costs cannot be trusted, if they cannot: fewer than [`MIN_ON_CORE`] on-core
    /// samples of either kind (the other worker was almost never on a core at once).
    pub fn doubt(&self) -> Option<String> {
        let few = |name: &str, kept: usize, all: usize| {
            (kept < MIN_ON_CORE).then(|| {
                format!("{kept} of {all} {name} samples were on-core hand-offs (under {} us; at least {MIN_ON_CORE} wanted)", PLAUSIBLE_NS / 1e3)
            })
        };
        let reasons: Vec<String> = [
            few("steal", self.steal_on_core, self.steal_samples),
            few("join", self.join_on_core, self.join_samples),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}

/// The percentiles of [`Calibration::steal_percentiles`], nearest rank.
fn percentiles(v: &mut [f64]) -> [f64; 5] {
    if v.is_empty() {
        return [0.0; 5];
    }
    v.sort_by(f64::total_cmp);
    [0.10, 0.25, 0.50, 0.75, 0.90].map(|q| v[((v.len() - 1) as f64 * q).round() as usize])
}

/// Samples up to this many times the 10th percentile count as hand-offs to a worker that was on
/// a core; slower ones waited for the scheduler.
pub const ON_CORE_FACTOR: f64 = 8.0;

/// No hand-off between two workers on cores takes this long (they take about a microsecond); a
/// sample above it waited for the scheduler, whatever the other samples are.
pub const PLAUSIBLE_NS: f64 = 50_000.0;

/// On-core samples of each kind below which the calibration is in doubt.
pub const MIN_ON_CORE: usize = 20;

/// The median (nearest rank) of the on-core samples and their number; `None` without any.
fn on_core_median(v: &mut [f64]) -> Option<(f64, usize)> {
    let p10 = *percentiles(v).first().filter(|_| !v.is_empty())?;
    // A zero 10th percentile (hand-offs below the clock's resolution) keeps samples up to 1 us.
    let cut = (p10 * ON_CORE_FACTOR).clamp(1_000.0, PLAUSIBLE_NS);
    let kept = v.partition_point(|&x| x <= cut);
    let kept_or_all = if kept == 0 { v.len() } else { kept };
    Some((v[((kept_or_all - 1) as f64 * 0.5).round() as usize], kept))
}

/// The hand-off costs seen in `steps` (zero where no loop shows one).
pub fn calibrate(steps: &[StepLog]) -> Calibration {
    let mut steal = Vec::new();
    let mut cross = Vec::new();
    let mut local = Vec::new();
    for log in steps.iter().filter(|l| l.complete) {
        let mut tasks_of = vec![Vec::new(); log.loops.len()];
        for (i, t) in log.tasks.iter().enumerate() {
            if let Some(list) = tasks_of.get_mut(t.loop_id) {
                list.push(i);
            }
        }
        // Whether `thread` was inside a task (of another loop than `l`) at `at`.
        let inside = |thread: Option<usize>, at: u64, l: usize| {
            log.tasks
                .iter()
                .any(|t| t.thread == thread && t.loop_id != l && t.begin_ns <= at && at < t.end_ns)
        };
        for (l, ev) in log.loops.iter().enumerate() {
            let tasks = &tasks_of[l];
            if tasks.len() < 2 || ev.end_ns < ev.begin_ns {
                continue;
            }
            let foreign = tasks
                .iter()
                .map(|&t| &log.tasks[t])
                .filter(|t| t.thread != ev.thread)
                .min_by_key(|t| t.begin_ns);
            if let Some(t) = foreign {
                if !inside(t.thread, ev.begin_ns, l) && t.begin_ns >= ev.begin_ns {
                    steal.push((t.begin_ns - ev.begin_ns) as f64);
                }
            }
            let last = tasks
                .iter()
                .map(|&t| &log.tasks[t])
                .max_by_key(|t| t.end_ns)
                .expect("two tasks or more");
            let tail = ev.end_ns.saturating_sub(last.end_ns) as f64;
            if last.thread == ev.thread {
                local.push(tail);
            } else {
                cross.push(tail);
            }
        }
    }
    let (steal_samples, join_samples, local_join_samples) = (steal.len(), cross.len(), local.len());
    let (steal_percentiles, join_percentiles) = (percentiles(&mut steal), percentiles(&mut cross));
    let (steal_ns, steal_on_core) = on_core_median(&mut steal).unwrap_or((0.0, 0));
    let (join_ns, join_on_core) = match (on_core_median(&mut cross), on_core_median(&mut local)) {
        (Some((c, kept)), Some((l, _))) => ((c - l).max(0.0), kept),
        (Some(c), None) => c,
        _ => (0.0, 0),
    };
    Calibration {
        costs: Costs { steal_ns, join_ns },
        steal_samples,
        join_samples,
        steal_percentiles,
        join_percentiles,
        local_join_samples,
        steal_on_core,
        join_on_core,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::profile::Phase;
    use crate::runtime::task_log::{LoopEvent, TaskEvent};

    fn lp(begin: u64, end: u64) -> LoopEvent {
        LoopEvent {
            begin_ns: begin,
            end_ns: end,
            parent: None,
            row: 0,
            phase: Phase::BnApply,
            thread: Some(0),
        }
    }

    fn task(loop_id: usize, thread: usize, begin: u64, end: u64) -> TaskEvent {
        TaskEvent {
            loop_id,
            begin_ns: begin,
            end_ns: end,
            thread: Some(thread),
        }
    }

    #[test]
    fn steal_and_join_latencies_are_on_core_medians_over_the_loops_that_show_them() {
        let log = StepLog {
            begin_ns: 0,
            end_ns: 10_000,
            loops: vec![
                lp(0, 100),
                lp(200, 300),
                lp(400, 500),
                lp(600, 700),
                lp(1000, 7000),
                lp(8000, 8100),
            ],
            tasks: vec![
                // Loop 0: the thief starts at 10; its task ends last (at 90): join tail 10.
                task(0, 0, 2, 50),
                task(0, 1, 10, 90),
                // Loop 1: thief at 20; the opener ends last (at 296): local tail 4.
                task(1, 0, 202, 296),
                task(1, 1, 220, 280),
                // Loop 2: thief at 30, ends last: join tail 30.
                task(2, 0, 401, 450),
                task(2, 1, 430, 470),
                // Loop 3: thief at 40, ends last: join tail 50.
                task(3, 0, 601, 640),
                task(3, 1, 640, 650),
                // Loop 4: the thief was off its core for 5000 ns; the opener ends last.
                task(4, 0, 1001, 6996),
                task(4, 1, 6000, 6500),
                // Loop 5: one task: no sample.
                task(5, 1, 8010, 8090),
            ],
            marks: vec![],
            complete: true,
        };
        let c = calibrate(&[log]);
        assert_eq!(c.steal_samples, 5);
        assert_eq!(c.steal_percentiles, [10.0, 20.0, 30.0, 40.0, 5000.0]);
        assert_eq!(
            c.costs.steal_ns, 30.0,
            "median of 10, 20, 30, 40 (5000 waited for the scheduler)"
        );
        assert_eq!((c.join_samples, c.local_join_samples), (3, 2));
        assert_eq!(
            c.costs.join_ns,
            30.0 - 4.0,
            "median of 10, 30, 50, less that of the local 4, 4"
        );
    }

    #[test]
    fn on_a_busy_machine_descheduled_samples_are_left_out_however_many() {
        // 3 hand-offs on a core (1.0-1.4 us), 7 that waited 90 us to 12 ms for the scheduler: a
        // lower quartile would take 90 us.
        let mut v = vec![
            1_200.0, 90_000.0, 1_000.0, 8e6, 12e6, 1_400.0, 9e6, 10e6, 11e6, 2e6,
        ];
        assert_eq!(on_core_median(&mut v), Some((1_200.0, 3)));
        // A quiet machine: every sample kept, the plain median.
        let mut quiet = vec![900.0, 1_500.0, 1_100.0, 1_300.0, 2_000.0];
        assert_eq!(on_core_median(&mut quiet), Some((1_300.0, 5)));
        assert_eq!(on_core_median(&mut []), None);
        // Nearly every sample waited for the scheduler, the 10th percentile too (80 us): none is
        // on-core, whatever 8x that percentile would let in.
        let mut busy = vec![
            80_000.0, 4e6, 4.1e6, 4.2e6, 90_000.0, 4.3e6, 2e5, 4.4e6, 5e6, 6e6,
        ];
        assert_eq!(on_core_median(&mut busy).map(|m| m.1), Some(0));
    }

    /// A calibration of too few on-core samples says so; one of enough does not.
    #[test]
    fn too_few_on_core_samples_put_the_costs_in_doubt() {
        let mut c = Calibration {
            costs: Costs::default(),
            steal_samples: 144,
            join_samples: 0,
            steal_percentiles: [0.0; 5],
            join_percentiles: [0.0; 5],
            local_join_samples: 5520,
            steal_on_core: 3,
            join_on_core: 0,
        };
        let doubt = c.doubt().expect("3 and 0 on-core samples");
        assert!(
            doubt.contains("3 of 144 steal") && doubt.contains("0 of 0 join"),
            "{doubt}"
        );
        c.steal_on_core = MIN_ON_CORE;
        c.join_on_core = MIN_ON_CORE;
        assert_eq!(c.doubt(), None);
    }

    #[test]
    fn a_worker_busy_in_another_task_gives_no_steal_sample_and_nothing_gives_zero() {
        let log = StepLog {
            begin_ns: 0,
            end_ns: 100,
            loops: vec![lp(10, 60)],
            tasks: vec![
                task(0, 0, 11, 40),
                task(0, 1, 50, 55),
                // Worker 1 was busy elsewhere when the loop began.
                TaskEvent {
                    loop_id: 9,
                    begin_ns: 0,
                    end_ns: 50,
                    thread: Some(1),
                },
            ],
            marks: vec![],
            complete: true,
        };
        assert_eq!(calibrate(&[log]).steal_samples, 0);
        let none = calibrate(&[]);
        assert_eq!(none.costs, Costs::default());
    }
}
