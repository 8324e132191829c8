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

/// Runs `f(rank, across)` for each of `ranks` processes, each on a thread of its own standing in
/// for a process, with an [`Across`] that exchanges subtree roots between them as processes
/// would; returns the results in rank order.
pub(crate) fn as_processes<R: Send>(
    ranks: usize,
    f: impl Fn(usize, &dyn Across) -> R + Sync,
) -> Vec<R> {
    let team = ThreadTeam {
        barrier: Barrier::new(ranks),
        f32s: Mutex::new(vec![Vec::new(); ranks]),
        f64s: Mutex::new(vec![Vec::new(); ranks]),
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..ranks)
            .map(|rank| {
                let (team, f) = (&team, &f);
                scope.spawn(move || f(rank, &Member { team, rank }))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a process thread panicked"))
            .collect()
    })
}

use crate::runtime::shards::{tree_sum, Across};
use std::sync::{Barrier, Mutex};

struct ThreadTeam {
    barrier: Barrier,
    f32s: Mutex<Vec<Vec<f32>>>,
    f64s: Mutex<Vec<Vec<f64>>>,
}

struct Member<'a> {
    team: &'a ThreadTeam,
    rank: usize,
}

impl Member<'_> {
    /// Posts `root`, waits for every rank's, adds them by the shard tree into `root`.
    fn exchange<T>(&self, slots: &Mutex<Vec<Vec<T>>>, root: &mut [T])
    where
        T: Copy + Send + Sync + std::ops::AddAssign,
    {
        slots.lock().unwrap()[self.rank] = root.to_vec();
        self.team.barrier.wait();
        let (ranks, mut all) = {
            let slots = slots.lock().unwrap();
            (slots.len(), slots.concat())
        };
        tree_sum(&mut all, ranks, root.len());
        root.copy_from_slice(&all[..root.len()]);
        self.team.barrier.wait();
    }
}

impl Across for Member<'_> {
    fn sum_f32(&self, root: &mut [f32]) {
        self.exchange(&self.team.f32s, root);
    }
    fn sum_f64(&self, root: &mut [f64]) {
        self.exchange(&self.team.f64s, root);
    }
}
