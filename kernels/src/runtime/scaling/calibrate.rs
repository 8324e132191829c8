//! The hand-off costs of the scaling model, measured from steps recorded on several threads.
//!
//! - Steal latency: for a loop whose first task on another worker was taken while that worker
//!   was not inside any task, the time from the loop's start to that task's start.
//! - Join latency: for a loop whose last task ended on another worker than the one that started
//!   the loop, the time from that task's end to the loop's end, less the same time for loops
//!   whose last task ended on the starting worker (that part, the return from the loop, is
//!   already in the one-thread timeline as dispatch time).
//!
//! Each is the lower quartile over every such loop of every step given. On a shared machine the
//! samples fall in two groups, about a microsecond when the other worker was on a core and a
//! scheduler time slice (milliseconds) when it was not; the second group is the machine's load,
//! not the hand-off, and can be half the samples. On a quiet machine the quartile is close to the
//! median.

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
}

/// The percentiles of [`Calibration::steal_percentiles`], nearest rank.
fn percentiles(v: &mut [f64]) -> [f64; 5] {
    if v.is_empty() {
        return [0.0; 5];
    }
    v.sort_by(f64::total_cmp);
    [0.10, 0.25, 0.50, 0.75, 0.90].map(|q| v[((v.len() - 1) as f64 * q).round() as usize])
}

/// The lower quartile (nearest rank), `None` without samples.
fn quartile(v: &mut [f64]) -> Option<f64> {
    (!v.is_empty()).then(|| percentiles(v)[1])
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
    let steal_ns = quartile(&mut steal).unwrap_or(0.0);
    let join_ns = match (quartile(&mut cross), quartile(&mut local)) {
        (Some(c), Some(l)) => (c - l).max(0.0),
        (Some(c), None) => c,
        _ => 0.0,
    };
    Calibration {
        costs: Costs { steal_ns, join_ns },
        steal_samples,
        join_samples,
        steal_percentiles,
        join_percentiles,
        local_join_samples,
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
    fn steal_and_join_latencies_are_lower_quartiles_over_the_loops_that_show_them() {
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
            c.costs.steal_ns, 20.0,
            "lower quartile of 10, 20, 30, 40, 5000"
        );
        assert_eq!((c.join_samples, c.local_join_samples), (3, 2));
        assert_eq!(
            c.costs.join_ns,
            30.0 - 4.0,
            "lower quartile of 10, 30, 50, less that of the local 4, 4"
        );
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
