//! The task log: when and where every task of a training step's parallel loops ran, recorded for
//! the scaling model of `bnconv profile` ([`crate::runtime::scaling`]).
//!
//! Every parallel loop of the kernels runs through [`ForEachTask::for_each_task`] (a `for_each`
//! that names its [`Phase`]). While the log is on, the loop records its begin and end on the
//! thread that started it, with the layer it belongs to and the task it was started from (loops
//! nest: a convolution chunk may run its own loop over images); each task records its begin, end
//! and worker. Layer calls leave marks ([`mark`]) that attribute the serial time between loops.
//!
//! Records go into fixed static tables (no allocation, one relaxed `fetch_add` to claim a slot, a
//! few relaxed stores); a step that overflows them is reported as incomplete, not cut short. When
//! the log is off, a loop costs one relaxed load and each task one branch.

use crate::runtime::profile::{self, Pass, Phase};
use rayon::iter::IndexedParallelIterator;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Loops one step may record.
pub const MAX_LOOPS: usize = 1 << 14;
/// Tasks one step may record.
pub const MAX_TASKS: usize = 1 << 16;
/// Layer marks one step may record.
pub const MAX_MARKS: usize = 1 << 11;

/// No parent task, no worker: the field's "none" value in the packed tables.
const NONE: u32 = u32::MAX;

struct Slot {
    begin: AtomicU64,
    end: AtomicU64,
    /// Loops: parent task (32 bits) | row (16) | phase (8) | thread + 1 (8, 0 = outside the pool,
    /// saturating). Tasks: loop (32) | thread + 1 (32, 0 = outside the pool).
    meta: AtomicU64,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            begin: AtomicU64::new(0),
            end: AtomicU64::new(0),
            meta: AtomicU64::new(0),
        }
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static LOOPS: [Slot; MAX_LOOPS] = [const { Slot::new() }; MAX_LOOPS];
static TASKS: [Slot; MAX_TASKS] = [const { Slot::new() }; MAX_TASKS];
static MARKS: [Slot; MAX_MARKS] = [const { Slot::new() }; MAX_MARKS];
static LOOP_COUNT: AtomicUsize = AtomicUsize::new(0);
static TASK_COUNT: AtomicUsize = AtomicUsize::new(0);
static MARK_COUNT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The task this thread is running (its loops are nested in it), or [`NONE`].
    static CURRENT_TASK: Cell<u32> = const { Cell::new(NONE) };
}

/// Switches recording on or off (off at start).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

#[inline(always)]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Forgets every record (call it between steps, with no loop running).
pub fn reset() {
    LOOP_COUNT.store(0, Ordering::Relaxed);
    TASK_COUNT.store(0, Ordering::Relaxed);
    MARK_COUNT.store(0, Ordering::Relaxed);
}

/// Nanoseconds since the log's epoch (the first call in the process): the clock of every record.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn worker() -> u64 {
    rayon::current_thread_index().map_or(0, |t| t as u64 + 1)
}

/// Claims the next slot of `table`, or `None` when it is full (the count still grows, so the
/// overflow is visible).
fn claim(count: &AtomicUsize, max: usize) -> Option<usize> {
    let i = count.fetch_add(1, Ordering::Relaxed);
    (i < max).then_some(i)
}

/// What a mark says from its time on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkKind {
    /// The driving thread works for layer `row` in `pass`, or at step level (`None`).
    Layer { row: usize, pass: Option<Pass> },
    /// The driving thread's innermost open profiler scope is now `phase` (`None`: none).
    Phase(Option<Phase>),
}

/// Records a change of what the driving thread works on: serial time between loops is filed
/// under the marks before it. Called by [`profile::layer`] and [`profile::scope`].
pub fn mark(kind: MarkKind) {
    if !enabled() {
        return;
    }
    if let Some(i) = claim(&MARK_COUNT, MAX_MARKS) {
        // Bit 0: phase mark. Layer marks: pass code in bits 1-2, row from bit 8. Phase marks:
        // phase + 1 from bit 8 (0 = none).
        let meta = match kind {
            MarkKind::Layer { row, pass } => {
                let code = match pass {
                    None => 0,
                    Some(Pass::Forward) => 1,
                    Some(Pass::Backward) => 2,
                };
                ((row as u64) << 8) | (code << 1)
            }
            MarkKind::Phase(phase) => (phase.map_or(0, |p| p as u64 + 1) << 8) | 1,
        };
        MARKS[i].begin.store(now_ns(), Ordering::Relaxed);
        MARKS[i].meta.store(meta, Ordering::Relaxed);
    }
}

/// One parallel loop, recorded from its creation to its drop (see [`ForEachTask`]).
#[must_use = "a loop record ends when it is dropped; bind it with `let l = ...`"]
pub struct LoopRecord {
    id: u32,
}

/// Starts recording a parallel loop of `phase`, filed under the profiler's current layer.
#[inline(always)]
pub fn begin_loop(phase: Phase) -> LoopRecord {
    if !enabled() {
        return LoopRecord { id: NONE };
    }
    begin_loop_slow(phase)
}

#[inline(never)]
fn begin_loop_slow(phase: Phase) -> LoopRecord {
    let Some(i) = claim(&LOOP_COUNT, MAX_LOOPS) else {
        return LoopRecord { id: NONE };
    };
    let parent = CURRENT_TASK.with(Cell::get) as u64;
    let row = profile::current_row() as u64 & 0xffff;
    let meta = (parent << 32) | (row << 16) | ((phase as u64) << 8) | worker().min(0xff);
    LOOPS[i].meta.store(meta, Ordering::Relaxed);
    LOOPS[i].begin.store(now_ns(), Ordering::Relaxed);
    LoopRecord { id: i as u32 }
}

impl LoopRecord {
    /// Starts recording one task of this loop; loops begun inside it are filed as its children.
    #[inline(always)]
    pub fn task(&self) -> TaskRecord {
        if self.id == NONE {
            return TaskRecord {
                id: NONE,
                outer: NONE,
            };
        }
        self.task_slow()
    }

    #[inline(never)]
    fn task_slow(&self) -> TaskRecord {
        let Some(i) = claim(&TASK_COUNT, MAX_TASKS) else {
            return TaskRecord {
                id: NONE,
                outer: NONE,
            };
        };
        TASKS[i]
            .meta
            .store(((self.id as u64) << 32) | worker(), Ordering::Relaxed);
        TASKS[i].begin.store(now_ns(), Ordering::Relaxed);
        let outer = CURRENT_TASK.with(|c| c.replace(i as u32));
        TaskRecord {
            id: i as u32,
            outer,
        }
    }
}

impl Drop for LoopRecord {
    #[inline(always)]
    fn drop(&mut self) {
        if self.id != NONE {
            LOOPS[self.id as usize]
                .end
                .store(now_ns(), Ordering::Relaxed);
        }
    }
}

/// One task, recorded from its creation to its drop.
#[must_use = "a task record ends when it is dropped; bind it with `let _t = ...`"]
pub struct TaskRecord {
    id: u32,
    /// The task this thread was running before (restored on drop: a thread waiting in a join may
    /// run another loop's task in between).
    outer: u32,
}

impl Drop for TaskRecord {
    #[inline(always)]
    fn drop(&mut self) {
        if self.id != NONE {
            TASKS[self.id as usize]
                .end
                .store(now_ns(), Ordering::Relaxed);
            CURRENT_TASK.with(|c| c.set(self.outer));
        }
    }
}

/// `for_each` over a parallel iterator whose items are a loop's tasks, recorded in the task log.
/// Each item is one task: cut the iterator into the kernel's chunks first.
pub trait ForEachTask: IndexedParallelIterator {
    /// Runs the loop, recorded under `phase`.
    fn for_each_task<F>(self, phase: Phase, f: F)
    where
        F: Fn(Self::Item) + Sync + Send,
    {
        let record = begin_loop(phase);
        let record = &record;
        self.for_each(move |item| {
            let _t = record.task();
            f(item)
        });
    }

    /// Runs the loop, recorded under the phase of the profiler scope open around it
    /// ([`profile::current_phase`], "other" outside any): for kernels that serve several phases.
    fn for_each_task_in_scope<F>(self, f: F)
    where
        F: Fn(Self::Item) + Sync + Send,
    {
        let phase = if enabled() {
            profile::current_phase().unwrap_or(Phase::Other)
        } else {
            Phase::Other
        };
        self.for_each_task(phase, f)
    }
}

impl<I: IndexedParallelIterator> ForEachTask for I {}

/// A recorded parallel loop.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopEvent {
    pub begin_ns: u64,
    pub end_ns: u64,
    /// The task (index into [`StepLog::tasks`]) the loop was started from, if any.
    pub parent: Option<usize>,
    /// The profiler's layer row ([`profile::STEP_ROW`] outside any layer).
    pub row: usize,
    pub phase: Phase,
    /// The rayon worker that started it (`None` outside the pool).
    pub thread: Option<usize>,
}

/// A recorded task.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskEvent {
    /// Index into [`StepLog::loops`].
    pub loop_id: usize,
    pub begin_ns: u64,
    pub end_ns: u64,
    pub thread: Option<usize>,
}

/// A mark: from `at_ns` on, the driving thread works as `kind` says.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub at_ns: u64,
    pub kind: MarkKind,
}

/// Everything recorded between two [`reset`]s, with the step's own begin and end.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepLog {
    pub begin_ns: u64,
    pub end_ns: u64,
    pub loops: Vec<LoopEvent>,
    pub tasks: Vec<TaskEvent>,
    pub marks: Vec<Mark>,
    /// False when a table overflowed and records were dropped.
    pub complete: bool,
}

fn thread_of(code: u64) -> Option<usize> {
    (code != 0).then(|| code as usize - 1)
}

/// Reads the records of the step that ran from `begin_ns` to `end_ns` (allocates; call it after
/// the step, with no loop running).
pub fn take(begin_ns: u64, end_ns: u64) -> StepLog {
    let counts = [
        LOOP_COUNT.load(Ordering::Relaxed),
        TASK_COUNT.load(Ordering::Relaxed),
        MARK_COUNT.load(Ordering::Relaxed),
    ];
    let complete = counts[0] <= MAX_LOOPS && counts[1] <= MAX_TASKS && counts[2] <= MAX_MARKS;
    let loops = LOOPS[..counts[0].min(MAX_LOOPS)]
        .iter()
        .map(|s| {
            let meta = s.meta.load(Ordering::Relaxed);
            let parent = (meta >> 32) as u32;
            LoopEvent {
                begin_ns: s.begin.load(Ordering::Relaxed),
                end_ns: s.end.load(Ordering::Relaxed),
                parent: (parent != NONE).then_some(parent as usize),
                row: ((meta >> 16) & 0xffff) as usize,
                phase: Phase::ALL[((meta >> 8) & 0xff) as usize],
                thread: thread_of(meta & 0xff),
            }
        })
        .collect();
    let tasks = TASKS[..counts[1].min(MAX_TASKS)]
        .iter()
        .map(|s| {
            let meta = s.meta.load(Ordering::Relaxed);
            TaskEvent {
                loop_id: (meta >> 32) as usize,
                begin_ns: s.begin.load(Ordering::Relaxed),
                end_ns: s.end.load(Ordering::Relaxed),
                thread: thread_of(meta & 0xffff_ffff),
            }
        })
        .collect();
    let marks = MARKS[..counts[2].min(MAX_MARKS)]
        .iter()
        .map(|s| {
            let meta = s.meta.load(Ordering::Relaxed);
            let kind = if meta & 1 == 1 {
                let code = (meta >> 8) as usize;
                MarkKind::Phase(code.checked_sub(1).map(|p| Phase::ALL[p]))
            } else {
                MarkKind::Layer {
                    row: (meta >> 8) as usize,
                    pass: match (meta >> 1) & 3 {
                        1 => Some(Pass::Forward),
                        2 => Some(Pass::Backward),
                        _ => None,
                    },
                }
            };
            Mark {
                at_ns: s.begin.load(Ordering::Relaxed),
                kind,
            }
        })
        .collect();
    StepLog {
        begin_ns,
        end_ns,
        loops,
        tasks,
        marks,
        complete,
    }
}
