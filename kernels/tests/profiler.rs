//! The profiler's switch: nothing is recorded while it is off, everything while it is on. It has
//! its own test binary because the profiler's tables are process-wide: kernel tests running in
//! parallel threads of the same process would add to them while it is on.

use bnconv_kernels::runtime::profile::{
    layer, reset, scope, set_enabled, snapshot, thread_scope, Pass, Phase, RowTotals, MAX_LAYERS,
};

fn busy() -> u64 {
    // Work the optimiser cannot drop, so that a scope has something to time.
    (0..10_000u64).fold(0, |a, i| std::hint::black_box(a ^ i.wrapping_mul(31)))
}

#[test]
fn records_nothing_when_disabled_and_everything_when_enabled() {
    set_enabled(false);
    reset();
    {
        let _l = layer(3, Pass::Forward);
        let _p = scope(Phase::BnApply);
        let _t = thread_scope(Phase::Im2col);
        busy();
    }
    {
        let _p = scope(Phase::Optimizer);
        busy();
    }
    assert!(
        snapshot().is_empty(),
        "the disabled profiler recorded something"
    );

    set_enabled(true);
    {
        let _l = layer(3, Pass::Forward);
        {
            let _p = scope(Phase::BnApply);
            busy();
        }
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let _t = thread_scope(Phase::Im2col);
                    busy();
                });
            }
        });
    }
    {
        let _l = layer(3, Pass::Backward);
        let _p = scope(Phase::BnBackward);
        busy();
    }
    {
        let _p = scope(Phase::Optimizer);
        busy();
    }
    {
        let _l = layer(MAX_LAYERS + 5, Pass::Forward);
    }
    set_enabled(false);
    {
        let _p = scope(Phase::Loss);
        busy();
    }

    let s = snapshot();
    let row = &s.rows[3];
    let (apply, im2col) = (Phase::BnApply as usize, Phase::Im2col as usize);
    assert_eq!(row.calls[apply], 1);
    assert_eq!(
        row.calls[im2col], 2,
        "scopes on other threads go to the current layer"
    );
    assert_eq!(row.calls[Phase::BnBackward as usize], 1);
    assert!(row.wall_ns[apply] > 0 && row.thread_ns[im2col] > 0);
    assert_eq!(
        row.thread_ns[apply], 0,
        "a wall scope went to the thread table"
    );
    assert_eq!(
        row.wall_ns[im2col], 0,
        "a thread scope went to the wall table"
    );
    assert_eq!(row.layer_calls, [1, 1]);
    assert!(row.layer_ns[0] >= row.wall_ns[apply]);
    let step = s.step();
    assert_eq!(
        step.calls[Phase::Optimizer as usize],
        1,
        "outside layers: the step row"
    );
    assert_eq!(
        step.calls[Phase::Loss as usize],
        0,
        "recorded after being disabled"
    );
    assert_eq!(
        step.layer_calls[0], 1,
        "an out-of-range layer goes to the step row"
    );
    assert_eq!(s.rows[2], RowTotals::default());
    let recorded: u64 = s.rows.iter().flat_map(|r| r.calls.iter()).sum();
    assert_eq!(recorded, 5);

    reset();
    assert!(snapshot().is_empty(), "reset left totals behind");
}
