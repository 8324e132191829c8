//! Training one network with several processes (data parallelism), results bitwise identical to
//! one process.
//!
//! Each process ("rank") holds the same network and runs its share of every training batch: the
//! batch's fixed reduction shards ([`bnconv_kernels::runtime::shards`]) are dealt out in aligned groups,
//! `S / R` consecutive shards per rank. Every sum over the images of the batch (batch-norm
//! statistics and gradient sums, weight and bias gradients) is first added over the rank's own
//! shards by the shard tree, and the ranks' subtree roots are then gathered and added by the top
//! of the same tree on every rank ([`Team`] is the [`Across`] that does it). All ranks thus hold
//! the sums one process would, to the bit, and apply the same Adam update. Losses and accuracies
//! add per-image values in image order ([`Team::ordered_sum`]), whoever computed them.
//!
//! The transport is a [`Collective`]: [`SingleProcess`] (no one to talk to), [`ThreadGroup`]
//! (threads standing in for processes, for tests) or, in the `bnconv` binary built with the
//! `mpi` feature, MPI.

use bnconv_kernels::runtime::keep_awake::KeepAwake;
use bnconv_kernels::runtime::shards::{tree_sum, Across, ShardSpan};
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::time::Instant;

/// What training needs from a group of processes: who is who, and an all-gather. Every rank must
/// make the same calls in the same order, as with MPI collectives.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..ranks()`.
    fn rank(&self) -> usize;
    /// Processes in the group.
    fn ranks(&self) -> usize;
    /// Every rank's `local` (the same length on every rank), concatenated in rank order into
    /// `all` (`ranks()` times as long).
    fn all_gather_f32(&self, local: &[f32], all: &mut [f32]);
    /// [`Collective::all_gather_f32`] for f64.
    fn all_gather_f64(&self, local: &[f64], all: &mut [f64]);
    /// [`Collective::all_gather_f32`] for bytes.
    fn all_gather_bytes(&self, local: &[u8], all: &mut [u8]);
    /// The name of the machine this process runs on (for reports).
    fn host_name(&self) -> String {
        local_host_name()
    }
}

/// This machine's name as the kernel knows it, or `localhost`.
pub fn local_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// One process alone: gathers are copies.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn ranks(&self) -> usize {
        1
    }
    fn all_gather_f32(&self, local: &[f32], all: &mut [f32]) {
        all.copy_from_slice(local);
    }
    fn all_gather_f64(&self, local: &[f64], all: &mut [f64]) {
        all.copy_from_slice(local);
    }
    fn all_gather_bytes(&self, local: &[u8], all: &mut [u8]) {
        all.copy_from_slice(local);
    }
}

/// Threads of one process standing in for the ranks of a group: for tests of the distributed
/// paths without MPI, and for trying layouts on one machine. Each rank must run on a thread of
/// its own (with a rayon pool of its own).
pub struct ThreadGroup {
    barrier: Barrier,
    f32s: Mutex<Vec<Vec<f32>>>,
    f64s: Mutex<Vec<Vec<f64>>>,
    bytes: Mutex<Vec<Vec<u8>>>,
}

/// One rank of a [`ThreadGroup`].
pub struct ThreadRank {
    group: Arc<ThreadGroup>,
    rank: usize,
    ranks: usize,
}

impl ThreadGroup {
    /// The `ranks` members of a new group, in rank order.
    ///
    /// # Panics
    /// If `ranks` is 0.
    pub fn members(ranks: usize) -> Vec<ThreadRank> {
        assert!(ranks > 0, "a group needs at least one rank");
        let group = Arc::new(ThreadGroup {
            barrier: Barrier::new(ranks),
            f32s: Mutex::new(vec![Vec::new(); ranks]),
            f64s: Mutex::new(vec![Vec::new(); ranks]),
            bytes: Mutex::new(vec![Vec::new(); ranks]),
        });
        (0..ranks)
            .map(|rank| ThreadRank {
                group: group.clone(),
                rank,
                ranks,
            })
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ThreadRank {
    fn gather<T: Copy>(&self, slots: &Mutex<Vec<Vec<T>>>, local: &[T], all: &mut [T]) {
        assert_eq!(all.len(), local.len() * self.ranks, "all_gather sizes");
        {
            let mut slots = lock(slots);
            slots[self.rank].clear();
            slots[self.rank].extend_from_slice(local);
        }
        self.group.barrier.wait();
        if !local.is_empty() {
            let slots = lock(slots);
            for (dst, src) in all.chunks_exact_mut(local.len()).zip(slots.iter()) {
                dst.copy_from_slice(src);
            }
        }
        // Nobody posts the next gather before everyone has read this one.
        self.group.barrier.wait();
    }
}

impl Collective for ThreadRank {
    fn rank(&self) -> usize {
        self.rank
    }
    fn ranks(&self) -> usize {
        self.ranks
    }
    fn all_gather_f32(&self, local: &[f32], all: &mut [f32]) {
        self.gather(&self.group.f32s, local, all);
    }
    fn all_gather_f64(&self, local: &[f64], all: &mut [f64]) {
        self.gather(&self.group.f64s, local, all);
    }
    fn all_gather_bytes(&self, local: &[u8], all: &mut [u8]) {
        self.gather(&self.group.bytes, local, all);
    }
}

/// Buffers for gathered values, grown on first use and kept (no allocation per step).
#[derive(Default)]
struct Gathered {
    f32s: Vec<f32>,
    f64s: Vec<f64>,
}

/// This process's place in a training group, and the sums across it: the [`Across`] the
/// kernels finish their shard trees with. Cloning shares the group. A `Team` of one process
/// (the default) exchanges nothing.
#[derive(Clone)]
pub struct Team {
    comm: Arc<dyn Collective>,
    gathered: Arc<Mutex<Gathered>>,
    /// Wall time spent in collectives (waiting for other ranks included), in nanoseconds.
    comm_nanos: Arc<AtomicU64>,
}

impl Default for Team {
    fn default() -> Team {
        Team::new(Arc::new(SingleProcess))
    }
}

impl fmt::Debug for Team {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Team(rank {} of {})", self.rank(), self.ranks())
    }
}

impl PartialEq for Team {
    /// The same group: clones of one team.
    fn eq(&self, other: &Team) -> bool {
        Arc::ptr_eq(&self.gathered, &other.gathered)
    }
}

impl Eq for Team {}

impl Team {
    pub fn new(comm: Arc<dyn Collective>) -> Team {
        Team {
            comm,
            gathered: Arc::default(),
            comm_nanos: Arc::default(),
        }
    }

    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    pub fn ranks(&self) -> usize {
        self.comm.ranks()
    }

    /// Whether this process prints and writes the run's results (rank 0).
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// The transport.
    pub fn collective(&self) -> &dyn Collective {
        self.comm.as_ref()
    }

    /// Wall time spent in collectives so far, in seconds.
    pub fn comm_seconds(&self) -> f64 {
        self.comm_nanos.load(Ordering::Relaxed) as f64 * 1e-9
    }

    /// Runs `f`, counting its wall time as communication.
    fn timed<T>(&self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.comm_nanos
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        out
    }

    /// This rank's shards of a training batch of `local_batch` images per rank (`ranks()` times
    /// as many in all) cut into `shards` shards: the aligned group `rank * S / R ..
    /// (rank + 1) * S / R`.
    ///
    /// # Panics
    /// If the rank count does not divide `shards` (training configurations are checked first).
    pub fn span(&self, local_batch: usize, shards: usize) -> ShardSpan {
        let (r, n) = (self.rank(), self.ranks());
        assert!(
            shards.is_multiple_of(n),
            "{n} ranks cannot share {shards} shards"
        );
        ShardSpan::new(local_batch * n, shards, r * shards / n, shards / n)
    }

    /// This rank's part of `total` items dealt out in `ranks()` contiguous parts (sizes differ by
    /// at most one): for splitting evaluations.
    pub fn part(&self, total: usize) -> Range<usize> {
        part(total, self.rank(), self.ranks())
    }

    /// Every rank's per-item values for its [`Team::part`] of `total` items, added in item order
    /// (f64). The same on every rank, and equal to one process adding all `total` values in order.
    pub fn ordered_sum(&self, local: &[f64], total: usize) -> f64 {
        let n = self.ranks();
        if n == 1 {
            return local.iter().sum();
        }
        assert_eq!(
            local.len(),
            self.part(total).len(),
            "ordered_sum: part size"
        );
        let width = total.div_ceil(n);
        let mut g = lock(&self.gathered);
        let Gathered { f32s: _, f64s } = &mut *g;
        f64s.clear();
        f64s.resize((n + 1) * width, 0.0);
        let (mine, all) = f64s.split_at_mut(width);
        mine[..local.len()].copy_from_slice(local);
        self.timed(|| self.comm.all_gather_f64(mine, all));
        (0..n)
            .flat_map(|r| {
                let len = part(total, r, n).len();
                all[r * width..][..len].iter().copied()
            })
            .sum()
    }

    /// Completes `items` (`total` items of `per_item` values, one after the other) on every rank:
    /// each rank filled its own [`Team::part`], and receives every other rank's part.
    pub fn share_parts(&self, items: &mut [f32], total: usize, per_item: usize) {
        let n = self.ranks();
        if n == 1 {
            return;
        }
        assert_eq!(items.len(), total * per_item, "share_parts: size");
        let width = total.div_ceil(n) * per_item;
        let mine = self.part(total);
        let mut local = vec![0.0f32; width];
        local[..mine.len() * per_item]
            .copy_from_slice(&items[mine.start * per_item..mine.end * per_item]);
        let mut all = vec![0.0f32; n * width];
        self.timed(|| self.comm.all_gather_f32(&local, &mut all));
        for r in 0..n {
            let theirs = part(total, r, n);
            items[theirs.start * per_item..theirs.end * per_item]
                .copy_from_slice(&all[r * width..][..theirs.len() * per_item]);
        }
    }

    /// The largest of every rank's `local` byte (a collective: every rank must ask). The
    /// training loop's stop check: a signal number, 0 for none, so that every rank stops at the
    /// same step and reports the same signal.
    pub fn max_byte(&self, local: u8) -> u8 {
        let n = self.ranks();
        if n == 1 {
            return local;
        }
        // On the stack for the usual rank counts: called once per training step.
        let mut stack = [0u8; 64];
        let mut heap = Vec::new();
        let all = if n <= stack.len() {
            &mut stack[..n]
        } else {
            heap.resize(n, 0);
            &mut heap[..]
        };
        self.timed(|| self.comm.all_gather_bytes(&[local], all));
        all.iter().copied().max().unwrap_or(local)
    }

    /// Waits until every rank has called it (a collective). Used where one rank's work (rank 0
    /// writing a checkpoint and saying so) must end before any rank exits: `mpirun` ends the
    /// whole job as soon as one rank exits with a non-zero status.
    pub fn barrier(&self) {
        self.max_byte(0);
    }

    /// The sum over ranks of a count.
    pub fn sum_count(&self, local: usize) -> usize {
        if self.ranks() == 1 {
            return local;
        }
        let mut all = vec![0u8; 8 * self.ranks()];
        self.timed(|| {
            self.comm
                .all_gather_bytes(&(local as u64).to_le_bytes(), &mut all)
        });
        all.chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
            .sum()
    }

    /// How many ranks of the group run on this host (a collective: every rank must ask).
    pub fn ranks_on_this_host(&self) -> usize {
        if self.ranks() == 1 {
            return 1;
        }
        let mut name = [0u8; 256];
        let host = self.comm.host_name();
        let host = &host.as_bytes()[..host.len().min(name.len())];
        name[..host.len()].copy_from_slice(host);
        self.gather_bytes(&name)
            .iter()
            .filter(|other| other[..] == name[..])
            .count()
    }

    /// Every rank's `local` bytes (the same length everywhere), in rank order.
    pub fn gather_bytes(&self, local: &[u8]) -> Vec<Vec<u8>> {
        let n = self.ranks();
        let mut all = vec![0u8; local.len() * n];
        self.timed(|| self.comm.all_gather_bytes(local, &mut all));
        all.chunks(local.len().max(1))
            .take(n)
            .map(<[u8]>::to_vec)
            .collect()
    }
}

/// Keeps the current rayon pool's workers spinning between parallel loops
/// ([`KeepAwake`]) when this process is the only rank on its host: ranks sharing a host would
/// take each other's cores. A collective: every rank of `team` must call it.
pub fn keep_awake(team: &Team) -> Option<KeepAwake> {
    (team.ranks_on_this_host() == 1).then(KeepAwake::start)
}

/// Part `r` of `total` items dealt out in `n` contiguous parts.
fn part(total: usize, r: usize, n: usize) -> Range<usize> {
    r * total / n..(r + 1) * total / n
}

impl Across for Team {
    fn sum_f32(&self, root: &mut [f32]) {
        let n = self.ranks();
        if n == 1 {
            return;
        }
        let width = root.len();
        let mut g = lock(&self.gathered);
        let all = &mut g.f32s;
        all.clear();
        all.resize(n * width, 0.0);
        self.timed(|| self.comm.all_gather_f32(root, all));
        tree_sum(all, n, width);
        root.copy_from_slice(&all[..width]);
    }

    fn sum_f64(&self, root: &mut [f64]) {
        let n = self.ranks();
        if n == 1 {
            return;
        }
        let width = root.len();
        let mut g = lock(&self.gathered);
        let all = &mut g.f64s;
        all.clear();
        all.resize(n * width, 0.0);
        self.timed(|| self.comm.all_gather_f64(root, all));
        tree_sum(all, n, width);
        root.copy_from_slice(&all[..width]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f(team)` on `ranks` threads of a [`ThreadGroup`]; results in rank order.
    fn on_group<T: Send>(ranks: usize, f: impl Fn(Team) -> T + Sync) -> Vec<T> {
        std::thread::scope(|s| {
            let handles: Vec<_> = ThreadGroup::members(ranks)
                .into_iter()
                .map(|m| {
                    let f = &f;
                    s.spawn(move || f(Team::new(Arc::new(m))))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn ordered_sums_equal_one_process_adding_in_order() {
        let values: Vec<f64> = (0..13)
            .map(|i| 1e16 * (i % 3) as f64 - 1e16 + i as f64)
            .collect();
        let want: f64 = values.iter().sum();
        for ranks in [1, 2, 3, 4] {
            let got = on_group(ranks, |team| {
                let part = team.part(values.len());
                (
                    team.ordered_sum(&values[part.clone()], values.len()),
                    team.sum_count(part.len()),
                )
            });
            for (sum, count) in got {
                assert_eq!(sum.to_bits(), want.to_bits(), "{ranks} ranks");
                assert_eq!(count, values.len());
            }
        }
    }

    #[test]
    fn subtree_roots_are_added_by_the_top_of_the_tree() {
        let roots = [1.0f32, 1e8, -1e8, 1.0];
        let got = on_group(4, |team| {
            let mut root = [roots[team.rank()]];
            team.sum_f32(&mut root);
            root[0]
        });
        let want = (roots[0] + roots[1]) + (roots[2] + roots[3]);
        assert!(got.iter().all(|v| v.to_bits() == want.to_bits()), "{got:?}");
        let spans = on_group(4, |team| team.span(16, 8));
        assert_eq!(spans[3].images(0), 0..8);
        assert_eq!(spans[3].global_images(), 64);
    }
}
