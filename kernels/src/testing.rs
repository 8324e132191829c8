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

/// Whether the build machine lacks `isa` (kernels/build.rs): the tests of that path are then
/// reported as ignored, and [`tested_paths`] leaves it out.
pub(crate) fn build_lacks(isa: crate::simd::Isa) -> bool {
    use crate::simd::Isa;
    match isa {
        Isa::Avx512 => cfg!(bnconv_cpu_lacks_avx512),
        Isa::Avx2 => cfg!(bnconv_cpu_lacks_avx2),
        Isa::Portable => false,
    }
}

/// The code paths the tests compare: the portable path always, and every SIMD path the build
/// machine runs, each checked with [`require_isa`]. Tests that loop over paths take them from
/// here rather than from the paths this CPU happens to run, so that a path is never dropped silently: one
/// the build machine lacks is named by the build's warning, by the ignored tests of that path
/// and, under CI, by `under_ci_every_simd_path_is_tested_or_its_absence_explained`; a test
/// binary carried to a CPU without a path its build had fails.
pub(crate) fn tested_paths() -> Vec<crate::simd::Isa> {
    crate::simd::Isa::ALL
        .into_iter()
        .filter(|&isa| !build_lacks(isa))
        .inspect(|&isa| require_isa(isa))
        .collect()
}

/// Fails unless this CPU runs `isa`. For tests of one SIMD path, which the build marks ignored
/// where the build machine lacks the path (kernels/build.rs): should the test binary run on
/// another CPU that lacks it, the test fails naming the path instead of passing untested.
pub(crate) fn require_isa(isa: crate::simd::Isa) {
    assert!(
        isa.supported(),
        "this CPU does not run the {} path, but the tests were built on one that does: rebuild \
         them here (`cargo test`) so that they are reported as ignored",
        isa.name()
    );
}

/// Under CI, a SIMD path whose tests the build ignored needs a stated reason: the variable
/// `BNCONV_MISSING_ISA_REASON` (e.g. "the CI runners are AVX2-only"). Without it the run fails, so
/// that a change of CI machine cannot silently drop the AVX-512 (or AVX2) tests.
#[test]
fn under_ci_every_simd_path_is_tested_or_its_absence_explained() {
    let ignored: Vec<&str> = crate::simd::Isa::ALL
        .into_iter()
        .filter(|&isa| build_lacks(isa))
        .map(|isa| isa.name())
        .collect();
    if ignored.is_empty() {
        return;
    }
    let reason = std::env::var("BNCONV_MISSING_ISA_REASON").unwrap_or_default();
    eprintln!(
        "the tests of the {} path(s) are ignored in this build (the CPU lacks them){}",
        ignored.join(", "),
        if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        }
    );
    let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
    assert!(
        !ci || !reason.trim().is_empty(),
        "CI is set and the tests of the {} path(s) did not run: run CI on a CPU that has them, or \
         set BNCONV_MISSING_ISA_REASON to say why they may be skipped",
        ignored.join(", ")
    );
}
