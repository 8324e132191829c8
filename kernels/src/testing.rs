//! Helpers shared by the kernels' unit tests.

/// `n` deterministic values in [-0.5, 0.5) from a linear congruential generator.
pub(crate) fn pseudo(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

/// Runs `f` on a fresh rayon pool of `threads` threads (for tests that compare thread counts).
pub(crate) fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool builds")
        .install(f)
}
