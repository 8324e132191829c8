//! After the first step, a training step allocates nothing: every buffer (activations, gradients,
//! im2col columns, packed weights, reduction partials, Adam moments, the batch) is reused. A
//! counting global allocator proves it. This is a correctness test (no timing involved).
//!
//! With the default GEMM (bnconv's own) the count must be zero. With `--gemm matrixmultiply`
//! the library allocates one packing buffer per call internally; that path is held to exactly
//! its number of matrixmultiply calls, so any allocation of ours still fails it.

use bnconv_kernels::gemm::matrixmultiply_calls;
use bnconv_kernels::runtime::{profile, task_log};
use bnconv_kernels::GemmBackend;
use bnconv_nn::mnist::Dataset;
use bnconv_nn::train::{TrainConfig, Trainer};
use bnconv_nn::{BnPath, Variant};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn synthetic(n: usize) -> Dataset {
    let pixels = (0..n * Dataset::PIXELS).map(|i| (i % 251) as u8).collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    Dataset::new(pixels, labels).expect("a consistent synthetic set")
}

/// One test only: the allocation counter is process-wide, and tests run side by side.
#[test]
fn training_steps_after_the_first_do_not_allocate() {
    let data = synthetic(256);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for (variant, bn_path, gemm) in [
        (Variant::Bn, BnPath::Fused, GemmBackend::Native),
        (Variant::Bn, BnPath::Unfused, GemmBackend::Native),
        (Variant::Plain, BnPath::Fused, GemmBackend::Native),
        (Variant::Bn, BnPath::Fused, GemmBackend::MatrixMultiply),
    ] {
        let mut cfg = TrainConfig::protocol(variant);
        cfg.batch_size = 32;
        cfg.exec.bn_path = bn_path;
        cfg.exec.gemm = gemm;
        let mut trainer = Trainer::new(&cfg, data.len());
        pool.install(|| {
            for _ in 0..2 {
                trainer.step(&data).expect("finite loss");
            }
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            let gemms_before = matrixmultiply_calls();
            for _ in 0..5 {
                trainer.step(&data).expect("finite loss");
            }
            let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
            let gemms = (matrixmultiply_calls() - gemms_before) as usize;
            if gemm == GemmBackend::MatrixMultiply {
                assert!(gemms > 0, "the steps ran no matrixmultiply GEMM?");
            } else {
                assert_eq!(gemms, 0, "{gemm} must not call matrixmultiply");
            }
            assert_eq!(
                allocated, gemms,
                "{variant} {bn_path} {gemm}: {allocated} allocations in 5 steps, of which {gemms} \
                 are matrixmultiply's packing buffers; the rest come from bnconv"
            );
            if gemm == GemmBackend::Native {
                assert_eq!(
                    recorded_step_allocations(&mut trainer, &data),
                    0,
                    "{variant} {bn_path}: recording allocated"
                );
            }
        });
    }
}

/// Allocations of 3 steps recorded for the scaling model (profiler and task log on): none, as the
/// log's tables are static, so `bnconv profile --model-threads` times the same steps.
fn recorded_step_allocations(trainer: &mut Trainer, data: &Dataset) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..3 {
        profile::reset();
        task_log::reset();
        profile::set_enabled(true);
        task_log::set_enabled(true);
        trainer.step(data).expect("finite loss");
        task_log::set_enabled(false);
        profile::set_enabled(false);
    }
    let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let log = task_log::take(0, 1);
    assert!(
        log.complete && !log.tasks.is_empty(),
        "nothing was recorded"
    );
    allocated
}
