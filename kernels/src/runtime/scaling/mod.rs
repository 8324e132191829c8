//! The scaling model: how long a training step would take on `N` workers, from the tasks one
//! step actually ran on one thread.
//!
//! - [`timeline`]: a step as the task log recorded it on one thread ([`crate::runtime::task_log`]),
//!   turned into a tree: the driving thread's serial pieces and parallel loops, each loop's tasks,
//!   each task's own serial pieces and nested loops; the median of several steps.
//! - [`simulate`]: that tree run on `N` simulated workers: greedy list scheduling (a free worker
//!   takes the next task of its own innermost loop, else steals from the oldest open loop), a
//!   loop's continuation resumes on the worker that started the loop once every task is done (a
//!   barrier), and two measured hand-off costs: the latency of the first steal of a loop by
//!   another worker, and the latency of a join whose last task ended on another worker.
//! - [`calibrate`]: those two costs, measured from a step recorded on several threads.
//!
//! What it leaves out: tasks are taken to last as long on `N` busy cores as on one (no shared
//! memory bandwidth or caches, no NUMA, SMT or turbo effects), and rayon's exact stealing order.

pub mod calibrate;
pub mod simulate;
pub mod timeline;

pub use calibrate::{calibrate, Calibration};
pub use simulate::{simulate, Costs, Schedule, TaskRun};
pub use timeline::{median_timeline, Label, Loop, Piece, Strand, TimelineError};
