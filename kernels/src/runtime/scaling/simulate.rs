//! A step's tree run on `N` simulated workers.
//!
//! Worker 0 runs the driving strand. A strand runs its serial pieces in order; at a loop it opens
//! the loop's tasks to every worker and waits: its continuation resumes on the same worker once
//! the last task is done (a barrier), `join_ns` later when that task ended on another worker.
//! A free worker takes, in this order: its own continuation when ready; the next task of the
//! newest loop it opened itself; the next task of the oldest open loop of another worker, paying
//! `steal_ns` the first time it takes from that loop (rayon's thieves take half a range at once
//! and run the rest of it locally). Tasks of a loop are taken in index order. Ties between free
//! workers go to the lowest index, so a schedule is a pure function of its inputs.

use crate::runtime::scaling::timeline::{Loop, Piece, Strand};
use std::collections::HashMap;

/// The two hand-off costs of a loop on more than one worker, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Costs {
    /// From a loop's start until another worker can start its first task of it.
    pub steal_ns: f64,
    /// From the end of a loop's last task, run by another worker, until the continuation runs.
    pub join_ns: f64,
}

/// When and where one task ran.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRun {
    /// The loop, numbered as [`Strand::loops`] lists them.
    pub loop_no: usize,
    pub task: usize,
    pub worker: usize,
    pub begin_ns: f64,
    pub end_ns: f64,
}

/// A simulated step.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub workers: usize,
    pub step_ns: f64,
    /// Begin and end of each piece of the driving strand (a loop's span runs from its start to its
    /// continuation).
    pub driver: Vec<(f64, f64)>,
    /// Every task, in the order they ended.
    pub runs: Vec<TaskRun>,
}

#[derive(Clone, Copy)]
struct Cursor<'a> {
    pieces: &'a [Piece],
    pos: usize,
    /// The frame (open loop) this strand is a task of, and its task index; `None` for the driver.
    task: Option<(usize, usize)>,
    begin_ns: f64,
}

struct Frame<'a> {
    loop_no: usize,
    tasks: &'a [Strand],
    next: usize,
    remaining: usize,
    opener: usize,
    continuation: Cursor<'a>,
    /// Workers that have taken a task of this loop (they pay the steal only once).
    joined: Vec<bool>,
}

struct Running<'a> {
    cursor: Cursor<'a>,
    resume_at: f64,
}

struct Sim<'a> {
    costs: Costs,
    numbers: HashMap<*const Loop, usize>,
    frames: Vec<Frame<'a>>,
    /// Frames with tasks not yet taken, oldest first.
    open: Vec<usize>,
    running: Vec<Option<Running<'a>>>,
    /// Continuations waiting for their worker: (ready at, cursor).
    parked: Vec<Vec<(f64, Cursor<'a>)>>,
    driver: Vec<(f64, f64)>,
    runs: Vec<TaskRun>,
    done_at: Option<f64>,
}

impl<'a> Sim<'a> {
    /// Runs worker `w`'s strand from `now` until it starts a serial piece, opens a loop or ends.
    fn advance(&mut self, w: usize, now: f64) {
        let Some(Running { mut cursor, .. }) = self.running[w].take() else {
            return;
        };
        loop {
            let Some(piece) = cursor.pieces.get(cursor.pos) else {
                self.finish(w, cursor, now);
                return;
            };
            cursor.pos += 1;
            match piece {
                Piece::Serial { ns, .. } => {
                    if cursor.task.is_none() {
                        self.driver[cursor.pos - 1] = (now, now + ns);
                    }
                    self.running[w] = Some(Running {
                        cursor,
                        resume_at: now + ns,
                    });
                    return;
                }
                Piece::Loop(l) if l.tasks.is_empty() => {
                    if cursor.task.is_none() {
                        self.driver[cursor.pos - 1] = (now, now);
                    }
                }
                Piece::Loop(l) => {
                    if cursor.task.is_none() {
                        self.driver[cursor.pos - 1].0 = now;
                    }
                    let mut joined = vec![false; self.running.len()];
                    joined[w] = true;
                    self.open.push(self.frames.len());
                    self.frames.push(Frame {
                        loop_no: self.numbers[&(l as *const Loop)],
                        tasks: &l.tasks,
                        next: 0,
                        remaining: l.tasks.len(),
                        opener: w,
                        continuation: cursor,
                        joined,
                    });
                    return;
                }
            }
        }
    }

    /// A strand ended on worker `w` at `now`.
    fn finish(&mut self, w: usize, cursor: Cursor<'a>, now: f64) {
        let Some((f, task)) = cursor.task else {
            self.done_at = Some(now);
            return;
        };
        let frame = &mut self.frames[f];
        self.runs.push(TaskRun {
            loop_no: frame.loop_no,
            task,
            worker: w,
            begin_ns: cursor.begin_ns,
            end_ns: now,
        });
        frame.remaining -= 1;
        if frame.remaining == 0 {
            let ready = now
                + if w == frame.opener {
                    0.0
                } else {
                    self.costs.join_ns
                };
            self.parked[frame.opener].push((ready, frame.continuation));
        }
    }

    /// Gives idle worker `w` work available at `now`; false when there is none.
    fn pick(&mut self, w: usize, now: f64) -> bool {
        let parked = &mut self.parked[w];
        if let Some(i) = (0..parked.len())
            .filter(|&i| parked[i].0 <= now)
            .min_by(|&a, &b| parked[a].0.total_cmp(&parked[b].0))
        {
            let (_, cursor) = parked.swap_remove(i);
            if cursor.task.is_none() {
                self.driver[cursor.pos - 1].1 = now;
            }
            self.running[w] = Some(Running {
                cursor,
                resume_at: now,
            });
            return true;
        }
        let own = self.open.iter().rposition(|&f| self.frames[f].opener == w);
        let Some(slot) = own.or_else(|| (!self.open.is_empty()).then_some(0)) else {
            return false;
        };
        let f = self.open[slot];
        let frame = &mut self.frames[f];
        let start = if frame.joined[w] {
            now
        } else {
            frame.joined[w] = true;
            now + self.costs.steal_ns
        };
        let task = frame.next;
        frame.next += 1;
        if frame.next == frame.tasks.len() {
            self.open.remove(slot);
        }
        self.running[w] = Some(Running {
            cursor: Cursor {
                pieces: &frame.tasks[task].pieces,
                pos: 0,
                task: Some((f, task)),
                begin_ns: start,
            },
            resume_at: start,
        });
        true
    }
}

/// Runs `driver` on `workers` simulated workers (at least one) with hand-off `costs`.
pub fn simulate(driver: &Strand, workers: usize, costs: Costs) -> Schedule {
    let workers = workers.max(1);
    let numbers = driver
        .loops()
        .into_iter()
        .enumerate()
        .map(|(i, l)| (l as *const Loop, i))
        .collect();
    let mut sim = Sim {
        costs,
        numbers,
        frames: Vec::new(),
        open: Vec::new(),
        running: (0..workers).map(|_| None).collect(),
        parked: vec![Vec::new(); workers],
        driver: vec![(0.0, 0.0); driver.pieces.len()],
        runs: Vec::new(),
        done_at: None,
    };
    sim.running[0] = Some(Running {
        cursor: Cursor {
            pieces: &driver.pieces,
            pos: 0,
            task: None,
            begin_ns: 0.0,
        },
        resume_at: 0.0,
    });
    let mut now = 0.0;
    loop {
        let mut progressed = true;
        while progressed {
            progressed = false;
            for w in 0..workers {
                if sim.running[w].as_ref().is_some_and(|r| r.resume_at <= now) {
                    sim.advance(w, now);
                    progressed = true;
                }
            }
            for w in 0..workers {
                if sim.running[w].is_none() && sim.pick(w, now) {
                    progressed = true;
                }
            }
        }
        if let Some(end) = sim.done_at {
            return Schedule {
                workers,
                step_ns: end,
                driver: sim.driver,
                runs: sim.runs,
            };
        }
        let busy = sim.running.iter().flatten().map(|r| r.resume_at);
        let waiting = (0..workers)
            .filter(|&w| sim.running[w].is_none())
            .flat_map(|w| sim.parked[w].iter().map(|p| p.0));
        now = busy
            .chain(waiting)
            .filter(|&t| t > now)
            .min_by(f64::total_cmp)
            .expect("the simulated step can always move on");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::profile::Phase;
    use crate::runtime::scaling::timeline::Label;

    const L: Label = Label {
        row: 0,
        pass: None,
        phase: None,
    };

    fn s(ns: f64) -> Piece {
        Piece::Serial { ns, label: L }
    }

    fn strand(pieces: Vec<Piece>) -> Strand {
        Strand { pieces }
    }

    fn lp(tasks: Vec<Strand>) -> Piece {
        Piece::Loop(Loop {
            label: Label {
                phase: Some(Phase::Im2col),
                ..L
            },
            tasks,
        })
    }

    fn flat(ns: &[f64]) -> Piece {
        lp(ns.iter().map(|&n| strand(vec![s(n)])).collect())
    }

    fn run(loop_no: usize, task: usize, worker: usize, begin: f64, end: f64) -> TaskRun {
        TaskRun {
            loop_no,
            task,
            worker,
            begin_ns: begin,
            end_ns: end,
        }
    }

    fn sorted(mut runs: Vec<TaskRun>) -> Vec<TaskRun> {
        runs.sort_by_key(|r| (r.loop_no, r.task));
        runs
    }

    #[test]
    fn one_worker_runs_everything_in_order_without_hand_off_costs() {
        let step = strand(vec![s(1.0), flat(&[3.0, 1.0, 2.0]), s(2.0)]);
        let costs = Costs {
            steal_ns: 10.0,
            join_ns: 10.0,
        };
        let sc = simulate(&step, 1, costs);
        assert_eq!(sc.step_ns, 9.0);
        assert_eq!(sc.step_ns, step.serial_ns());
        assert_eq!(sc.driver, vec![(0.0, 1.0), (1.0, 7.0), (7.0, 9.0)]);
        assert_eq!(
            sorted(sc.runs),
            vec![
                run(0, 0, 0, 1.0, 4.0),
                run(0, 1, 0, 4.0, 5.0),
                run(0, 2, 0, 5.0, 7.0)
            ]
        );
    }

    #[test]
    fn a_thief_pays_the_steal_once_per_loop_and_the_opener_finishes_last() {
        // Tasks 3, 1, 2, 2 on two workers, steal 0.5, join 0.25: worker 1 steals task 1 at 0.5
        // (ends 1.5), then takes task 2 at no cost (ends 3.5); worker 0 ends task 0 at 3 and takes
        // task 3 (ends 5). The last task ended on the opener: no join cost.
        let step = strand(vec![flat(&[3.0, 1.0, 2.0, 2.0])]);
        let costs = Costs {
            steal_ns: 0.5,
            join_ns: 0.25,
        };
        let sc = simulate(&step, 2, costs);
        assert_eq!(
            sorted(sc.runs),
            vec![
                run(0, 0, 0, 0.0, 3.0),
                run(0, 1, 1, 0.5, 1.5),
                run(0, 2, 1, 1.5, 3.5),
                run(0, 3, 0, 3.0, 5.0),
            ]
        );
        assert_eq!(sc.step_ns, 5.0);
        // Tasks 1, 3: worker 1's task ends last (3.5), so the continuation waits for the join.
        let sc = simulate(&strand(vec![flat(&[1.0, 3.0]), s(1.0)]), 2, costs);
        assert_eq!(sc.driver, vec![(0.0, 3.75), (3.75, 4.75)]);
        assert_eq!(sc.step_ns, 4.75);
    }

    #[test]
    fn more_workers_than_tasks_leave_the_longest_task_as_the_bound() {
        let step = strand(vec![flat(&[5.0, 1.0, 1.0]), flat(&[2.0; 8])]);
        let sc = simulate(&step, 64, Costs::default());
        assert_eq!(sc.driver, vec![(0.0, 5.0), (5.0, 7.0)]);
        let workers: Vec<usize> = sorted(sc.runs).iter().map(|r| r.worker).collect();
        assert_eq!(workers, [0, 1, 2, 0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn a_nested_loop_shares_the_workers_with_its_outer_loop() {
        // Serial 1, loop A of [serial 1, loop B of two tasks of 2, serial 1] and [serial 4], then
        // serial 1. Two workers, free hand-offs: A0 runs 1-2 on worker 0, A1 1-5 on worker 1;
        // worker 0 opens B at 2 and runs both its tasks (2-4, 4-6) since worker 1 is busy until 5;
        // A0 resumes at 6 (6-7); the driver goes on at 7 and ends at 8. One worker: 12.
        let a0 = strand(vec![s(1.0), flat(&[2.0, 2.0]), s(1.0)]);
        let a1 = strand(vec![s(4.0)]);
        let step = strand(vec![s(1.0), lp(vec![a0, a1]), s(1.0)]);
        let sc = simulate(&step, 2, Costs::default());
        assert_eq!(sc.step_ns, 8.0);
        assert_eq!(
            sorted(sc.runs),
            vec![
                run(0, 0, 0, 1.0, 7.0),
                run(0, 1, 1, 1.0, 5.0),
                run(1, 0, 0, 2.0, 4.0),
                run(1, 1, 0, 4.0, 6.0),
            ]
        );
        assert_eq!(simulate(&step, 1, Costs::default()).step_ns, 12.0);
        // Three workers: B's second task goes to worker 2 at 2, so A0 resumes at 4 and ends at 5
        // with A1; the step ends at 6.
        assert_eq!(simulate(&step, 3, Costs::default()).step_ns, 6.0);
    }

    #[test]
    fn empty_loops_and_empty_steps_take_no_time() {
        assert_eq!(
            simulate(&strand(vec![lp(vec![])]), 4, Costs::default()).step_ns,
            0.0
        );
        assert_eq!(
            simulate(&Strand::default(), 4, Costs::default()).step_ns,
            0.0
        );
    }
}
