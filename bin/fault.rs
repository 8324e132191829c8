//! Fault injection for the tests of failure handling: `BNCONV_TEST_PANIC_AT_STEP=N` makes this
//! process panic right after training step N, as a bug in it would. `tests/mpi.rs` sets it on
//! one rank of an `mpirun` job to check that one rank's panic ends the whole job, naming the
//! rank, instead of leaving the others waiting in an exchange. Unset (always, outside tests), it
//! does nothing.

use std::sync::OnceLock;

/// The variable: the training step (counted from 1) after which to panic.
pub const PANIC_AT_STEP: &str = "BNCONV_TEST_PANIC_AT_STEP";

/// [`PANIC_AT_STEP`] as a step number, read once.
fn panic_step() -> Option<usize> {
    static STEP: OnceLock<Option<usize>> = OnceLock::new();
    *STEP.get_or_init(|| {
        std::env::var(PANIC_AT_STEP)
            .ok()
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Panics if [`PANIC_AT_STEP`] names `step` (called after every training step).
pub fn after_step(step: usize) {
    if panic_step() == Some(step) {
        panic!("{PANIC_AT_STEP}={step}: the fault injected for a test");
    }
}
