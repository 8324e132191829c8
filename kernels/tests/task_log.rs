//! The task log records every parallel loop and task while on, nothing while off, and a step
//! recorded on one thread becomes a timeline that adds up to the step. Its own test binary: the
//! log's tables are process-wide, and tests of other kernels running at the same time would add
//! to them.

use bnconv_kernels::runtime::profile::{self, Pass, Phase, STEP_ROW};
use bnconv_kernels::runtime::scaling::{simulate, Costs, Piece, Strand};
use bnconv_kernels::runtime::task_log::{self, ForEachTask, MarkKind, MAX_TASKS};
use rayon::prelude::*;
use std::sync::Mutex;

/// One test at a time: they share the log.
static LOG: Mutex<()> = Mutex::new(());

fn busy(n: u64) -> u64 {
    (0..n).fold(0, |a, i| std::hint::black_box(a ^ i.wrapping_mul(31)))
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// Layer 2 forward: a loop of 6 tasks, the third of which runs a nested loop of 4; then an Adam
/// scope with serial work.
fn step() {
    let _l = profile::layer(2, Pass::Forward);
    let v: Vec<u64> = (0..6).collect();
    v.par_iter().for_each_task(Phase::BnApply, |&i| {
        busy(20_000);
        if i == 2 {
            (0..4usize)
                .into_par_iter()
                .for_each_task(Phase::Im2col, |_| {
                    busy(10_000);
                });
        }
    });
    drop(_l);
    let _p = profile::scope(Phase::Optimizer);
    busy(30_000);
}

fn record(threads: usize) -> task_log::StepLog {
    pool(threads).install(|| {
        task_log::reset();
        profile::set_enabled(true);
        task_log::set_enabled(true);
        let begin = task_log::now_ns();
        step();
        let end = task_log::now_ns();
        task_log::set_enabled(false);
        profile::set_enabled(false);
        task_log::take(begin, end)
    })
}

#[test]
fn loops_tasks_and_nesting_are_recorded_only_while_on() {
    let _g = LOG.lock().unwrap();
    task_log::set_enabled(false);
    task_log::reset();
    pool(2).install(step);
    let off = task_log::take(0, 0);
    assert!(
        off.loops.is_empty() && off.tasks.is_empty() && off.marks.is_empty(),
        "the log recorded while off"
    );

    let log = record(2);
    assert!(log.complete);
    assert_eq!(log.loops.len(), 2);
    assert_eq!(log.tasks.len(), 10);
    let outer = log
        .loops
        .iter()
        .position(|l| l.phase == Phase::BnApply)
        .unwrap();
    let inner = &log.loops[1 - outer];
    assert_eq!(log.loops[outer].parent, None);
    assert_eq!(log.loops[outer].row, 2, "filed under the open layer");
    let parent = inner.parent.expect("the nested loop names its task");
    assert_eq!(log.tasks[parent].loop_id, outer);
    assert!(
        log.tasks[parent].begin_ns <= inner.begin_ns && inner.end_ns <= log.tasks[parent].end_ns
    );
    for t in &log.tasks {
        let l = &log.loops[t.loop_id];
        assert!(l.begin_ns <= t.begin_ns && t.begin_ns <= t.end_ns && t.end_ns <= l.end_ns);
        assert!(t.thread.is_some_and(|w| w < 2));
    }
    let kinds: Vec<MarkKind> = log.marks.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [
            MarkKind::Layer {
                row: 2,
                pass: Some(Pass::Forward)
            },
            MarkKind::Layer {
                row: STEP_ROW,
                pass: None
            },
            MarkKind::Phase(Some(Phase::Optimizer)),
            MarkKind::Phase(None),
        ]
    );
}

#[test]
fn a_one_thread_step_becomes_a_timeline_that_adds_up_to_it() {
    let _g = LOG.lock().unwrap();
    let log = record(1);
    let step = Strand::from_log(&log).expect("a one-thread log");
    let wall = (log.end_ns - log.begin_ns) as f64;
    assert!(
        (step.serial_ns() - wall).abs() < 1e-6 * wall,
        "{} against {wall}",
        step.serial_ns()
    );
    assert_eq!(step.loops().len(), 2);
    let Some(Piece::Loop(outer)) = step.pieces.iter().find(|p| matches!(p, Piece::Loop(_))) else {
        panic!("no loop on the driving strand");
    };
    assert_eq!(outer.tasks.len(), 6);
    assert_eq!(outer.label.row, 2);
    assert_eq!(outer.label.pass, Some(Pass::Forward));
    // Simulated on one worker it is the step; on more it is shorter, never below its span.
    let one = simulate(&step, 1, Costs::default()).step_ns;
    assert!((one - wall).abs() < 1e-6 * wall);
    let many = simulate(&step, 8, Costs::default()).step_ns;
    assert!(many < one && many >= step.span_ns() - 1e-6);
}

#[test]
fn an_overflowing_step_is_marked_incomplete() {
    let _g = LOG.lock().unwrap();
    pool(1).install(|| {
        task_log::reset();
        task_log::set_enabled(true);
        (0..MAX_TASKS + 10)
            .into_par_iter()
            .for_each_task(Phase::Relu, |_| {});
        task_log::set_enabled(false);
    });
    let log = task_log::take(0, 1);
    assert!(!log.complete);
    assert_eq!(log.tasks.len(), MAX_TASKS);
    assert!(Strand::from_log(&log).is_err());
}
