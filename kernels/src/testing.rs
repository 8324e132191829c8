//! Helpers shared by the kernels' unit tests.

/// A stream of deterministic values in [-0.5, 0.5) from a linear congruential generator: each
/// [`Pseudo::take`] continues where the last one stopped.
pub(crate) struct Pseudo {
    state: u32,
}

impl Pseudo {
    pub(crate) fn new(seed: u32) -> Pseudo {
        Pseudo { state: seed }
    }

    /// The next value.
    pub(crate) fn next_value(&mut self) -> f32 {
        self.state = self.state.wrapping_mul(1664525).wrapping_add(1013904223);
        (self.state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    }

    /// The next `n` values.
    pub(crate) fn take(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next_value()).collect()
    }
}

/// `n` deterministic values in [-0.5, 0.5): the start of [`Pseudo`]'s stream for `seed`.
pub(crate) fn pseudo(n: usize, seed: u32) -> Vec<f32> {
    Pseudo::new(seed).take(n)
}

/// Runs `f` on a fresh rayon pool of `threads` threads (for tests that compare thread counts).
pub(crate) fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool builds")
        .install(f)
}
