//! A training step as a tree of serial pieces and parallel loops, built from the task log of a
//! step run on one thread.
//!
//! On one thread nothing overlaps, so the log decomposes the step exactly: the driving thread's
//! time is its serial pieces (split at layer marks) plus its top-level loops; a loop's time is its
//! tasks plus the loop's own overhead (splitting, calls), which is shared out evenly over its
//! tasks as per-task dispatch time; a task's time is its own serial pieces plus its nested loops.
//! The durations of the tree add up to the step's measured time.

use crate::runtime::profile::{Pass, Phase, STEP_ROW};
use crate::runtime::task_log::{Mark, MarkKind, StepLog};
use std::fmt;

/// What a piece of a step belongs to: a layer row (or [`STEP_ROW`]), its pass (`None` for
/// step-level work), and for loop work the loop's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    pub row: usize,
    pub pass: Option<Pass>,
    pub phase: Option<Phase>,
}

/// One piece of a strand: serial time on the strand's worker, or a parallel loop it waits for.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    Serial { ns: f64, label: Label },
    Loop(Loop),
}

/// A parallel loop: its tasks may run on any workers; the strand that started it goes on when
/// every task is done.
#[derive(Clone, Debug, PartialEq)]
pub struct Loop {
    pub label: Label,
    pub tasks: Vec<Strand>,
}

/// A sequence of pieces run in order: the driving thread's step, or one task.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Strand {
    pub pieces: Vec<Piece>,
}

impl Strand {
    /// Total time on one worker: every serial piece, nested loops included.
    pub fn serial_ns(&self) -> f64 {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Serial { ns, .. } => *ns,
                Piece::Loop(l) => l.work_ns(),
            })
            .sum()
    }

    /// Time on unlimited workers without hand-off costs: serial pieces plus, for each loop, its
    /// longest task's span. No number of workers runs the strand faster.
    pub fn span_ns(&self) -> f64 {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Serial { ns, .. } => *ns,
                Piece::Loop(l) => l.span_ns(),
            })
            .sum()
    }

    /// Every loop of the tree, depth first in piece order (the numbering of
    /// [`crate::runtime::scaling::TaskRun::loop_no`]).
    pub fn loops(&self) -> Vec<&Loop> {
        let mut out = Vec::new();
        fn walk<'a>(s: &'a Strand, out: &mut Vec<&'a Loop>) {
            for p in &s.pieces {
                if let Piece::Loop(l) = p {
                    out.push(l);
                    for t in &l.tasks {
                        walk(t, out);
                    }
                }
            }
        }
        walk(self, &mut out);
        out
    }

    /// Whether `other` has the same structure (pieces, labels, loops and task counts), whatever
    /// the durations.
    pub fn same_shape(&self, other: &Strand) -> bool {
        self.pieces.len() == other.pieces.len()
            && self
                .pieces
                .iter()
                .zip(&other.pieces)
                .all(|(a, b)| match (a, b) {
                    (Piece::Serial { label: x, .. }, Piece::Serial { label: y, .. }) => x == y,
                    (Piece::Loop(x), Piece::Loop(y)) => {
                        x.label == y.label
                            && x.tasks.len() == y.tasks.len()
                            && x.tasks.iter().zip(&y.tasks).all(|(s, t)| s.same_shape(t))
                    }
                    _ => false,
                })
    }

    fn durations(&self, out: &mut Vec<f64>) {
        for p in &self.pieces {
            match p {
                Piece::Serial { ns, .. } => out.push(*ns),
                Piece::Loop(l) => l.tasks.iter().for_each(|t| t.durations(out)),
            }
        }
    }

    fn set_durations(&mut self, values: &mut impl Iterator<Item = f64>) {
        for p in &mut self.pieces {
            match p {
                Piece::Serial { ns, .. } => *ns = values.next().unwrap_or(0.0),
                Piece::Loop(l) => l.tasks.iter_mut().for_each(|t| t.set_durations(values)),
            }
        }
    }
}

impl Loop {
    /// Total time of the loop's tasks on one worker.
    pub fn work_ns(&self) -> f64 {
        self.tasks.iter().map(Strand::serial_ns).sum()
    }

    /// The longest task on one worker.
    pub fn longest_task_ns(&self) -> f64 {
        self.tasks.iter().map(Strand::serial_ns).fold(0.0, f64::max)
    }

    /// The loop on unlimited workers: its largest task span ([`Strand::span_ns`]).
    pub fn span_ns(&self) -> f64 {
        self.tasks.iter().map(Strand::span_ns).fold(0.0, f64::max)
    }
}

/// Why a log cannot be read as a one-thread timeline.
#[derive(Clone, Debug, PartialEq)]
pub enum TimelineError {
    /// The log's tables overflowed.
    Incomplete,
    /// Tasks ran on more than one worker: the pieces overlap.
    NotSerial,
    /// Records that contradict each other (a loop that never ended, overlapping loops, a task of
    /// an unknown loop).
    Inconsistent(String),
}

impl fmt::Display for TimelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimelineError::Incomplete => f.write_str("the task log overflowed"),
            TimelineError::NotSerial => f.write_str("the step ran on more than one worker"),
            TimelineError::Inconsistent(why) => write!(f, "inconsistent task log: {why}"),
        }
    }
}

impl std::error::Error for TimelineError {}

const STEP: Label = Label {
    row: STEP_ROW,
    pass: None,
    phase: None,
};

/// The driving thread's label from each mark on, in time order: a layer mark sets the row and
/// pass and clears the phase, a phase mark sets the phase.
fn label_states(marks: &[Mark]) -> Vec<(u64, Label)> {
    let mut sorted: Vec<&Mark> = marks.iter().collect();
    sorted.sort_by_key(|m| m.at_ns);
    let mut label = STEP;
    sorted
        .into_iter()
        .map(|m| {
            label = match m.kind {
                MarkKind::Layer { row, pass } => Label {
                    row,
                    pass,
                    phase: None,
                },
                MarkKind::Phase(phase) => Label { phase, ..label },
            };
            (m.at_ns, label)
        })
        .collect()
}

/// The label of serial time at `t`: the state of the last mark at or before it.
fn label_at(states: &[(u64, Label)], t: u64) -> Label {
    let i = states.partition_point(|s| s.0 <= t);
    i.checked_sub(1).map_or(STEP, |i| states[i].1)
}

struct Builder<'a> {
    log: &'a StepLog,
    marks: Vec<(u64, Label)>,
    /// Tasks of each loop, by begin time.
    tasks_of: Vec<Vec<usize>>,
    /// Loops started from each task, by begin time.
    loops_of: Vec<Vec<usize>>,
}

impl Builder<'_> {
    /// Serial pieces from `a` to `b` (split at the marks in between on the driving strand).
    fn serial(&self, a: u64, b: u64, fixed: Option<Label>, out: &mut Vec<Piece>) {
        if b <= a {
            return;
        }
        if let Some(label) = fixed {
            out.push(Piece::Serial {
                ns: (b - a) as f64,
                label,
            });
            return;
        }
        let mut t = a;
        let first = self.marks.partition_point(|m| m.0 <= a);
        let cuts = self.marks[first..]
            .iter()
            .map(|m| m.0)
            .take_while(|&at| at < b);
        for cut in cuts.chain(std::iter::once(b)) {
            if cut > t {
                out.push(Piece::Serial {
                    ns: (cut - t) as f64,
                    label: label_at(&self.marks, t),
                });
                t = cut;
            }
        }
    }

    /// A strand from `a` to `b` with the loops `loops` (sorted, inside it).
    fn strand(
        &self,
        a: u64,
        b: u64,
        loops: &[usize],
        fixed: Option<Label>,
    ) -> Result<Strand, TimelineError> {
        let mut pieces = Vec::new();
        let mut t = a;
        for &l in loops {
            let ev = &self.log.loops[l];
            if ev.begin_ns < t || ev.end_ns > b || ev.end_ns < ev.begin_ns {
                return Err(TimelineError::Inconsistent(format!(
                    "loop {l} ({}) at {}..{} ns outside or overlapping its strand {t}..{b}",
                    ev.phase.name(),
                    ev.begin_ns,
                    ev.end_ns
                )));
            }
            self.serial(t, ev.begin_ns, fixed, &mut pieces);
            pieces.push(Piece::Loop(self.parallel_loop(l, fixed)?));
            t = ev.end_ns;
        }
        self.serial(t, b, fixed, &mut pieces);
        Ok(Strand { pieces })
    }

    fn parallel_loop(&self, l: usize, outer: Option<Label>) -> Result<Loop, TimelineError> {
        let ev = &self.log.loops[l];
        let pass = match outer {
            Some(label) => label.pass,
            None => label_at(&self.marks, ev.begin_ns).pass,
        };
        let label = Label {
            row: ev.row,
            pass,
            phase: Some(ev.phase),
        };
        let ids = &self.tasks_of[l];
        let mut tasks = Vec::with_capacity(ids.len());
        let mut busy = 0u64;
        for &t in ids {
            let task = &self.log.tasks[t];
            if task.end_ns < task.begin_ns {
                return Err(TimelineError::Inconsistent(format!("task {t} never ended")));
            }
            busy += task.end_ns - task.begin_ns;
            tasks.push(self.strand(task.begin_ns, task.end_ns, &self.loops_of[t], Some(label))?);
        }
        // The loop's own time (splitting, calls) becomes per-task dispatch time.
        let overhead = (ev.end_ns - ev.begin_ns).saturating_sub(busy);
        if overhead > 0 && !tasks.is_empty() {
            let share = overhead as f64 / tasks.len() as f64;
            for t in &mut tasks {
                t.pieces.insert(0, Piece::Serial { ns: share, label });
            }
        } else if tasks.is_empty() && overhead > 0 {
            tasks.push(Strand {
                pieces: vec![Piece::Serial {
                    ns: overhead as f64,
                    label,
                }],
            });
        }
        Ok(Loop { label, tasks })
    }
}

impl Strand {
    /// The step of `log`, recorded on one worker, as a tree rooted at the driving thread.
    pub fn from_log(log: &StepLog) -> Result<Strand, TimelineError> {
        if !log.complete {
            return Err(TimelineError::Incomplete);
        }
        let threads = log
            .loops
            .iter()
            .map(|l| l.thread)
            .chain(log.tasks.iter().map(|t| t.thread));
        let mut first = None;
        for t in threads {
            match first {
                None => first = Some(t),
                Some(f) if f != t => return Err(TimelineError::NotSerial),
                _ => {}
            }
        }
        let mut tasks_of = vec![Vec::new(); log.loops.len()];
        for (i, t) in log.tasks.iter().enumerate() {
            tasks_of
                .get_mut(t.loop_id)
                .ok_or_else(|| {
                    TimelineError::Inconsistent(format!("task {i} of unknown loop {}", t.loop_id))
                })?
                .push(i);
        }
        let mut loops_of = vec![Vec::new(); log.tasks.len()];
        let mut top = Vec::new();
        for (i, l) in log.loops.iter().enumerate() {
            match l.parent {
                Some(p) => loops_of
                    .get_mut(p)
                    .ok_or_else(|| {
                        TimelineError::Inconsistent(format!("loop {i} of unknown task {p}"))
                    })?
                    .push(i),
                None => top.push(i),
            }
        }
        for list in &mut tasks_of {
            list.sort_by_key(|&t| log.tasks[t].begin_ns);
        }
        for list in &mut loops_of {
            list.sort_by_key(|&l| log.loops[l].begin_ns);
        }
        top.sort_by_key(|&l| log.loops[l].begin_ns);
        let b = Builder {
            log,
            marks: label_states(&log.marks),
            tasks_of,
            loops_of,
        };
        b.strand(log.begin_ns, log.end_ns, &top, None)
    }
}

/// The step of median durations: among `steps`, those of the most common shape, and each piece's
/// median duration over them (robust to a step preempted on a busy machine). Returns it with the
/// number of steps used, or `None` for no steps.
pub fn median_timeline(steps: &[Strand]) -> Option<(Strand, usize)> {
    let mut best: Option<(usize, usize)> = None;
    for (i, s) in steps.iter().enumerate() {
        if steps[..i].iter().any(|e| e.same_shape(s)) {
            continue;
        }
        let count = steps[i..].iter().filter(|e| e.same_shape(s)).count();
        if best.is_none_or(|(_, c)| count > c) {
            best = Some((i, count));
        }
    }
    let (first, count) = best?;
    let group: Vec<&Strand> = steps
        .iter()
        .filter(|s| s.same_shape(&steps[first]))
        .collect();
    let columns: Vec<Vec<f64>> = group
        .iter()
        .map(|s| {
            let mut d = Vec::new();
            s.durations(&mut d);
            d
        })
        .collect();
    let medians = (0..columns[0].len()).map(|j| {
        let mut v: Vec<f64> = columns.iter().map(|c| c[j]).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    });
    let mut out = steps[first].clone();
    out.set_durations(&mut medians.collect::<Vec<_>>().into_iter());
    Some((out, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::task_log::{LoopEvent, TaskEvent};

    fn lp(begin: u64, end: u64, parent: Option<usize>, row: usize, phase: Phase) -> LoopEvent {
        LoopEvent {
            begin_ns: begin,
            end_ns: end,
            parent,
            row,
            phase,
            thread: Some(0),
        }
    }

    fn task(loop_id: usize, begin: u64, end: u64) -> TaskEvent {
        TaskEvent {
            loop_id,
            begin_ns: begin,
            end_ns: end,
            thread: Some(0),
        }
    }

    fn serial(ns: f64, row: usize, pass: Option<Pass>, phase: Option<Phase>) -> Piece {
        Piece::Serial {
            ns,
            label: Label { row, pass, phase },
        }
    }

    /// A step of 100 ns: serial 0-10 (step level), layer 3 forward from 10: serial 10-20, a loop
    /// 20-60 of two tasks (the first 22-40 with a nested loop 25-35 of one task 26-34, the second
    /// 40-58), serial 60-70, then step level again 70-100, in an Adam scope 80-95.
    fn log() -> StepLog {
        StepLog {
            begin_ns: 0,
            end_ns: 100,
            loops: vec![
                lp(20, 60, None, 3, Phase::ConvGemmForward),
                lp(25, 35, Some(0), 3, Phase::Im2col),
            ],
            tasks: vec![task(0, 22, 40), task(1, 26, 34), task(0, 40, 58)],
            marks: vec![
                Mark {
                    at_ns: 10,
                    kind: MarkKind::Layer {
                        row: 3,
                        pass: Some(Pass::Forward),
                    },
                },
                Mark {
                    at_ns: 70,
                    kind: MarkKind::Layer {
                        row: STEP_ROW,
                        pass: None,
                    },
                },
                Mark {
                    at_ns: 80,
                    kind: MarkKind::Phase(Some(Phase::Optimizer)),
                },
                Mark {
                    at_ns: 95,
                    kind: MarkKind::Phase(None),
                },
            ],
            complete: true,
        }
    }

    #[test]
    fn a_one_thread_log_becomes_the_exact_tree() {
        let s = Strand::from_log(&log()).unwrap();
        let fwd = Some(Pass::Forward);
        let outer = Some(Phase::ConvGemmForward);
        let inner_label = Label {
            row: 3,
            pass: fwd,
            phase: outer,
        };
        // The outer loop's 40 ns hold 36 ns of tasks: 2 ns of dispatch per task. The nested loop
        // (10 ns, one task of 8 ns) has its own phase, the pass of the loop around it, and 2 ns
        // of dispatch.
        let expected = Strand {
            pieces: vec![
                serial(10.0, STEP_ROW, None, None),
                serial(10.0, 3, fwd, None),
                Piece::Loop(Loop {
                    label: inner_label,
                    tasks: vec![
                        Strand {
                            pieces: vec![
                                serial(2.0, 3, fwd, outer),
                                serial(3.0, 3, fwd, outer),
                                Piece::Loop(Loop {
                                    label: Label {
                                        row: 3,
                                        pass: fwd,
                                        phase: Some(Phase::Im2col),
                                    },
                                    tasks: vec![Strand {
                                        pieces: vec![
                                            serial(2.0, 3, fwd, Some(Phase::Im2col)),
                                            serial(8.0, 3, fwd, Some(Phase::Im2col)),
                                        ],
                                    }],
                                }),
                                serial(5.0, 3, fwd, outer),
                            ],
                        },
                        Strand {
                            pieces: vec![serial(2.0, 3, fwd, outer), serial(18.0, 3, fwd, outer)],
                        },
                    ],
                }),
                serial(10.0, 3, fwd, None),
                serial(10.0, STEP_ROW, None, None),
                serial(15.0, STEP_ROW, None, Some(Phase::Optimizer)),
                serial(5.0, STEP_ROW, None, None),
            ],
        };
        assert_eq!(s, expected);
        assert_eq!(s.serial_ns(), 100.0, "the tree adds up to the step");
        // Unlimited workers: the loop takes its first task's 20 ns (its nested loop has one task).
        assert_eq!(s.span_ns(), 80.0);
        assert_eq!(s.loops().len(), 2);
    }

    #[test]
    fn logs_that_are_not_one_thread_or_not_whole_are_refused() {
        let mut two = log();
        two.tasks[2].thread = Some(1);
        assert_eq!(Strand::from_log(&two), Err(TimelineError::NotSerial));
        let mut cut = log();
        cut.complete = false;
        assert_eq!(Strand::from_log(&cut), Err(TimelineError::Incomplete));
        let mut overlap = log();
        overlap.loops[1].parent = None;
        assert!(matches!(
            Strand::from_log(&overlap),
            Err(TimelineError::Inconsistent(_))
        ));
    }

    #[test]
    fn the_median_step_takes_each_piece_median_over_steps_of_the_common_shape() {
        let base = Strand::from_log(&log()).unwrap();
        let scaled = |k: f64| {
            let mut s = base.clone();
            let mut d = Vec::new();
            s.durations(&mut d);
            s.set_durations(&mut d.into_iter().map(|x| x * k));
            s
        };
        let mut odd = base.clone();
        odd.pieces.pop();
        let (m, used) = median_timeline(&[scaled(1.0), odd, scaled(3.0), scaled(2.0)]).unwrap();
        assert_eq!(used, 3);
        assert_eq!(m, scaled(2.0));
        assert!(median_timeline(&[]).is_none());
    }
}
