//! A training step allocates nothing once the first has run: every buffer (activations,
//! gradients, im2col columns, packed weights, reduction partials, Adam moments, the batch) is
//! reused, including across the reshuffle at an epoch's end; after `Trainer::prepare_buffers`
//! even the first step allocates nothing. A counting global allocator proves it, for every variant and BN path, on 1 and 2 threads, and around the protocol's evaluations.
//! This is a correctness test (no timing involved).
//!
//! With the default GEMM (bnconv's own) the count must be zero. With `--gemm matrixmultiply`
//! the library allocates one packing buffer per call internally; that path is held to exactly
//! its number of matrixmultiply calls, so any allocation of ours still fails it.

use bnconv_kernels::gemm::matrixmultiply_calls;
use bnconv_kernels::runtime::{profile, task_log};
use bnconv_kernels::GemmBackend;
use bnconv_nn::mnist::Dataset;
use bnconv_nn::network::EVAL_BLOCK;
use bnconv_nn::train::{evaluate, single_sample_accuracy, TrainConfig, Trainer};
use bnconv_nn::{BnPath, Network, Variant};
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

/// Training images of the synthetic set: not a multiple of [`BATCH`], so batches straddle the
/// epochs' ends.
const IMAGES: usize = 100;
const BATCH: usize = 32;
/// Steps measured after the one warm-up step: images 32..288 of the stream, which cross the
/// reshuffles at images 100 and 200, each inside a batch.
const MEASURED: usize = 8;
const _: () = assert!(BATCH < IMAGES && (1 + MEASURED) * BATCH > 2 * IMAGES);

/// Allocations made while `f` runs (the counter is process-wide: one test in this file).
fn allocations<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let r = f();
    (ALLOCATIONS.load(Ordering::Relaxed) - before, r)
}

/// One test only: the allocation counter is process-wide, and tests run side by side.
#[test]
fn training_steps_after_the_first_do_not_allocate() {
    let data = synthetic(IMAGES);
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for (variant, bn_path, gemm) in [
            (Variant::Bn, BnPath::Fused, GemmBackend::Native),
            (Variant::Bn, BnPath::Unfused, GemmBackend::Native),
            (Variant::BnLowLevel, BnPath::Fused, GemmBackend::Native),
            (Variant::Plain, BnPath::Fused, GemmBackend::Native),
            (Variant::Bn, BnPath::Fused, GemmBackend::MatrixMultiply),
        ] {
            let what = format!("{variant} {bn_path} {gemm}, {threads} thread(s)");
            let mut cfg = TrainConfig::protocol(variant);
            cfg.batch_size = BATCH;
            cfg.exec.bn_path = bn_path;
            cfg.exec.gemm = gemm;
            if gemm == GemmBackend::Native {
                let mut prepared = Trainer::new(&cfg, data.len());
                pool.install(|| {
                    prepared.prepare_buffers();
                    let (allocated, _) = allocations(|| prepared.step(&data).expect("finite loss"));
                    assert_eq!(
                        allocated, 0,
                        "{what}: the first step after prepare_buffers allocated"
                    );
                });
            }
            let mut trainer = Trainer::new(&cfg, data.len());
            pool.install(|| {
                trainer.step(&data).expect("finite loss");
                let gemms_before = matrixmultiply_calls();
                let (allocated, ()) = allocations(|| {
                    for _ in 0..MEASURED {
                        trainer.step(&data).expect("finite loss");
                    }
                });
                let gemms = (matrixmultiply_calls() - gemms_before) as usize;
                if gemm == GemmBackend::MatrixMultiply {
                    assert!(gemms > 0, "{what}: the steps ran no matrixmultiply GEMM?");
                } else {
                    assert_eq!(gemms, 0, "{what}: must not call matrixmultiply");
                }
                assert_eq!(
                    allocated, gemms,
                    "{what}: {allocated} allocations in {MEASURED} steps, of which {gemms} are \
                     matrixmultiply's packing buffers; the rest come from bnconv"
                );
                if gemm == GemmBackend::Native {
                    assert_eq!(
                        recorded_step_allocations(&mut trainer, &data),
                        0,
                        "{what}: recording allocated"
                    );
                    evaluations_allocate_per_call_not_per_batch(&mut trainer, &data, &what);
                }
            });
        }
    }
}

/// What the protocol runs besides training steps, on a trained network: after the first
/// evaluation-mode pass has made the evaluation buffers, the log's check of the last batch
/// allocates nothing; a whole-set evaluation (validation every 100 steps, the final validation
/// and test) allocates its batch buffers once per call, as many for 25 images as for 100, so
/// nothing per batch, also in batches larger than a block (run per task); the single-image accuracy likewise; and the training steps after them
/// still allocate nothing.
fn evaluations_allocate_per_call_not_per_batch(trainer: &mut Trainer, data: &Dataset, what: &str) {
    trainer.evaluate_last_batch();
    let (allocated, _) = allocations(|| trainer.evaluate_last_batch());
    assert_eq!(allocated, 0, "{what}: evaluate_last_batch allocated");
    // 3 and 10 forward passes, the last one short.
    let (short, long) = (data.slice(0..25), data.slice(0..IMAGES));
    let per_set = |set: &Dataset, net: &mut Network| allocations(|| evaluate(net, set, 11)).0;
    per_set(&short, &mut trainer.net);
    let (a, b) = (
        per_set(&short, &mut trainer.net),
        per_set(&long, &mut trainer.net),
    );
    assert_eq!(a, b, "{what}: evaluating 25 or 100 images in batches of 11");
    // Batches larger than a block run the whole network per task (`EVAL_TASK` images).
    let big = synthetic(3 * EVAL_BLOCK);
    let per_big_set =
        |set: &Dataset, net: &mut Network| allocations(|| evaluate(net, set, EVAL_BLOCK + 1)).0;
    per_big_set(&big, &mut trainer.net);
    let (one, three) = (
        per_big_set(&big.slice(0..EVAL_BLOCK + 1), &mut trainer.net),
        per_big_set(&big, &mut trainer.net),
    );
    assert_eq!(
        one,
        three,
        "{what}: evaluating 1 or 3 batches of {} images, per task",
        EVAL_BLOCK + 1
    );
    let per_image =
        |n: usize, net: &mut Network| allocations(|| single_sample_accuracy(net, data, n)).0;
    assert_eq!(
        per_image(3, &mut trainer.net),
        per_image(30, &mut trainer.net),
        "{what}: the single-image accuracy of 3 or 30 images"
    );
    let (allocated, ()) = allocations(|| {
        for _ in 0..2 {
            trainer.step(data).expect("finite loss");
        }
    });
    assert_eq!(
        allocated, 0,
        "{what}: training steps after evaluations allocated"
    );
}

/// Allocations of 3 steps recorded for the scaling model (profiler and task log on): none, as the
/// log's tables are static, so `bnconv profile --model-threads` times the same steps.
fn recorded_step_allocations(trainer: &mut Trainer, data: &Dataset) -> usize {
    let (allocated, ()) = allocations(|| {
        for _ in 0..3 {
            profile::reset();
            task_log::reset();
            profile::set_enabled(true);
            task_log::set_enabled(true);
            trainer.step(data).expect("finite loss");
            task_log::set_enabled(false);
            profile::set_enabled(false);
        }
    });
    let log = task_log::take(0, 1);
    assert!(
        log.complete && !log.tasks.is_empty(),
        "nothing was recorded"
    );
    allocated
}
