//! Fixed reduction shards: the order in which a training batch's cross-image sums are added,
//! defined so that it depends on neither the number of threads nor the number of processes.
//!
//! A training batch of `B` images is cut into `S` shards (`S` a power of two; shard `j` holds
//! images `j * B / S .. (j + 1) * B / S`). Every sum over images (batch-norm statistics and
//! gradient sums, weight and bias gradients) is formed per shard, each shard's partial sum
//! computed the same way wherever it runs (its own chunks, added in chunk order), and the `S`
//! partials are added by a fixed binary tree: pairs `(0, 1), (2, 3), ...`, then pairs of those,
//! and so on. A process that holds an aligned power-of-two group of shards (`S / R` of them, for
//! `R` processes) reduces its subtree itself; only subtree roots travel between processes, and the
//! top of the tree is added the same way everywhere ([`Across`]). So 1 process on any number of
//! threads and `R` processes give bitwise the same sums, for any `R` that divides `S`.
//!
//! The shard count is part of the numeric definition, like the batch size: changing it changes
//! the rounding of the sums (not their meaning).

use crate::runtime::profile::Phase;
use crate::runtime::task_log::ForEachTask;
use rayon::prelude::*;
use std::ops::Range;

/// The default shard count: enough for 8 processes and 8 independent weight-gradient tasks in
/// the late layers, few enough that the partial sums stay cheap to add.
pub const DEFAULT_SHARDS: usize = 8;

/// The most shards a batch may be cut into.
pub const MAX_SHARDS: usize = 64;

/// Whether `shards` is a valid shard count: a power of two from 1 to [`MAX_SHARDS`].
pub fn valid_shard_count(shards: usize) -> bool {
    shards.is_power_of_two() && shards <= MAX_SHARDS
}

/// First image of shard `j` of `shards` over a batch of `batch` images.
pub fn shard_start(batch: usize, shards: usize, j: usize) -> usize {
    j * batch / shards
}

/// Completes a sum over the shard tree across processes. Given this process's subtree root (the
/// sum of its own shards), leaves the root of the whole tree in its place, added exactly as
/// [`tree_sum`] would add the subtree roots of every process in order. A single process holds
/// the whole tree and does nothing ([`Alone`]).
pub trait Across: Sync {
    fn sum_f32(&self, root: &mut [f32]);
    fn sum_f64(&self, root: &mut [f64]);
}

/// The single-process [`Across`]: the local tree is the whole tree.
#[derive(Clone, Copy, Debug, Default)]
pub struct Alone;

impl Across for Alone {
    fn sum_f32(&self, _root: &mut [f32]) {}
    fn sum_f64(&self, _root: &mut [f64]) {}
}

/// The shards of a training batch that this process holds: their image ranges within its local
/// images, and how many images the whole batch has. No allocation (it is built every step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardSpan {
    /// Local shard `i` is images `bounds[i]..bounds[i + 1]` of this process's images.
    bounds: [usize; MAX_SHARDS + 1],
    count: usize,
    global_images: usize,
}

impl ShardSpan {
    /// The shards `first..first + count` of `shards` over a batch of `global_batch` images, with
    /// image indices counted from the first image of shard `first`.
    ///
    /// # Panics
    /// If `shards` is not a valid count or the range does not fit in it.
    pub fn new(global_batch: usize, shards: usize, first: usize, count: usize) -> ShardSpan {
        assert!(
            valid_shard_count(shards),
            "shard count {shards} is not a power of two up to {MAX_SHARDS}"
        );
        assert!(
            count > 0 && first + count <= shards,
            "shards {first}..{} of {shards}",
            first + count
        );
        let origin = shard_start(global_batch, shards, first);
        let mut bounds = [0; MAX_SHARDS + 1];
        for (i, b) in bounds[..=count].iter_mut().enumerate() {
            *b = shard_start(global_batch, shards, first + i) - origin;
        }
        ShardSpan {
            bounds,
            count,
            global_images: global_batch,
        }
    }

    /// All `shards` shards of a batch of `batch` images, held by one process.
    pub fn whole(batch: usize, shards: usize) -> ShardSpan {
        ShardSpan::new(batch, shards, 0, shards)
    }

    /// Number of local shards.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always false: a span holds at least one shard (possibly of no images).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Local images of local shard `i`.
    pub fn images(&self, i: usize) -> Range<usize> {
        self.bounds[i]..self.bounds[i + 1]
    }

    /// Images held by this process.
    pub fn local_images(&self) -> usize {
        self.bounds[self.count]
    }

    /// Images of the whole batch, over every process.
    pub fn global_images(&self) -> usize {
        self.global_images
    }

    /// The fixed tasks of a reduction over this process's part of the batch, appended to `tasks`
    /// as `(local shard, range of units)`: each local shard's `units_per_image * images` units
    /// (rows, pixels, images) cut into runs of `per_task` from the shard's first unit, the last
    /// run shorter. A shard without images has no task. Tasks depend on the shard, never on the
    /// number of processes or threads.
    pub fn tasks(
        &self,
        units_per_image: usize,
        per_task: usize,
        tasks: &mut Vec<(usize, Range<usize>)>,
    ) {
        let per_task = per_task.max(1);
        for s in 0..self.count {
            let images = self.images(s);
            let (first, end) = (images.start * units_per_image, images.end * units_per_image);
            for start in (first..end).step_by(per_task) {
                tasks.push((s, start..(start + per_task).min(end)));
            }
        }
    }

    /// The largest number of images in a local shard.
    pub fn max_shard_images(&self) -> usize {
        (0..self.count)
            .map(|i| self.images(i).len())
            .max()
            .unwrap_or(0)
    }
}

/// A process's part of the batch and the way to finish its sums: what a kernel that reduces over
/// images needs.
#[derive(Clone, Copy)]
pub struct Shards<'a> {
    pub span: &'a ShardSpan,
    pub across: &'a dyn Across,
}

impl<'a> Shards<'a> {
    /// All shards local ([`Alone`]).
    pub fn local(span: &'a ShardSpan) -> Shards<'a> {
        Shards {
            span,
            across: &Alone,
        }
    }

    /// Adds the `span.len()` partials of `width` floats in `parts` (one per local shard, in
    /// shard order) by the shard tree into `parts[..width]`, then completes the sum across
    /// processes. The rest of `parts` is left spent.
    pub fn finish_f32(&self, parts: &mut [f32], width: usize) {
        tree_sum(parts, self.span.len(), width);
        self.across.sum_f32(&mut parts[..width]);
    }

    /// [`Shards::finish_f32`] in f64.
    pub fn finish_f64(&self, parts: &mut [f64], width: usize) {
        tree_sum(parts, self.span.len(), width);
        self.across.sum_f64(&mut parts[..width]);
    }

    /// The sum over the whole batch of per-task partials: `partials` holds one partial of `width`
    /// f32 values per task of `tasks` ([`ShardSpan::tasks`], in order). Each shard's task
    /// partials are added in task order in f64 and rounded once (a lone partial is taken as
    /// is), a shard without tasks is zero; the shards are added by the shard tree, then across
    /// processes as in [`Shards::finish_f32`]. The total is left in `root[..width]`.
    ///
    /// The values are finished in parallel, [`FINISH_COLUMNS`] at a time, each block through
    /// its shards and the whole tree at once in stack buffers: every value sees the same
    /// additions in the same order as shard by shard, then level by level, so the result is
    /// bitwise that of [`tree_sum`] over the shard partials, on any number of threads. The
    /// task log files the loop under `phase`.
    pub fn finish_tasks(
        &self,
        tasks: &[(usize, Range<usize>)],
        partials: &[f32],
        width: usize,
        root: &mut Vec<f32>,
        phase: Phase,
    ) {
        let n = self.span.len();
        // Shard `s` owns tasks `first[s]..first[s + 1]`.
        let mut first = [0; MAX_SHARDS + 1];
        let mut t = 0;
        for (s, f) in first[..n].iter_mut().enumerate() {
            *f = t;
            while t < tasks.len() && tasks[t].0 == s {
                t += 1;
            }
        }
        first[n] = t;
        assert_eq!(t, tasks.len(), "finish_tasks: tasks out of shard order");
        assert!(
            partials.len() >= t * width,
            "finish_tasks: partials too short"
        );
        root.resize(width, 0.0);
        let first = &first[..=n];
        root[..width]
            .par_chunks_mut(FINISH_COLUMNS)
            .enumerate()
            .for_each_task(phase, |(b, out)| {
                finish_columns(first, partials, width, b * FINISH_COLUMNS, out)
            });
        self.across.sum_f32(&mut root[..width]);
    }
}

/// Values per task of [`Shards::finish_tasks`]: its stack buffers (the tree's levels) stay in L1
/// and L2, and a late layer's weight gradient (tens of thousands of values) still splits into
/// many tasks.
pub const FINISH_COLUMNS: usize = 1024;

/// Levels of the shard tree, leaves included: [`MAX_SHARDS`] is `2^(LEVELS - 1)`.
const LEVELS: usize = MAX_SHARDS.trailing_zeros() as usize + 1;

/// Values `from..from + out.len()` of [`Shards::finish_tasks`]'s total into `out`. The shards'
/// values are made in shard order and added by the tree as a binary counter: shard `s` is added
/// to the pending left sibling of every level at which `s` has a one bit (the tree's pairs
/// `(0, 1)`, then `(01, 23)`, ...), so each addition is one of [`tree_sum`]'s.
fn finish_columns(first: &[usize], partials: &[f32], width: usize, from: usize, out: &mut [f32]) {
    let len = out.len();
    let mut levels = [[0.0f32; FINISH_COLUMNS]; LEVELS];
    let mut wide = [0.0f64; FINISH_COLUMNS];
    let shards = first.len() - 1;
    for s in 0..shards {
        let mine = &partials[first[s] * width..first[s + 1] * width];
        let mut value = [0.0f32; FINISH_COLUMNS];
        let v = &mut value[..len];
        match first[s + 1] - first[s] {
            0 => {}
            1 => v.copy_from_slice(&mine[from..from + len]),
            _ => {
                let w = &mut wide[..len];
                w.fill(0.0);
                for part in mine.chunks_exact(width) {
                    for (sum, p) in w.iter_mut().zip(&part[from..from + len]) {
                        *sum += *p as f64;
                    }
                }
                for (o, sum) in v.iter_mut().zip(w.iter()) {
                    *o = *sum as f32;
                }
            }
        }
        let mut level = 0;
        while s >> level & 1 == 1 {
            // `left + right`, as `tree_sum` adds them (one addition: the operands' order
            // changes no bit).
            for (x, left) in v.iter_mut().zip(&levels[level][..len]) {
                *x += *left;
            }
            level += 1;
        }
        levels[level][..len].copy_from_slice(v);
    }
    out.copy_from_slice(&levels[shards.trailing_zeros() as usize][..len]);
}

/// Elements per task when a tree sum is split across threads (each element's additions are the
/// same whatever the split).
const TREE_TASK: usize = 1 << 14;

/// Adds `n` partials of `width` values each (stored back to back in `parts`, `n` a power of two)
/// by the fixed binary tree: `p[0] += p[1], p[2] += p[3], ...`, then `p[0] += p[2], ...`, until
/// `parts[..width]` holds the total. Bitwise the same for any number of threads.
///
/// # Panics
/// If `n` is not a power of two or `parts` holds fewer than `n * width` values.
pub fn tree_sum<T>(parts: &mut [T], n: usize, width: usize)
where
    T: Copy + Send + Sync + std::ops::AddAssign,
{
    assert!(n.is_power_of_two(), "tree_sum: {n} partials");
    assert!(parts.len() >= n * width, "tree_sum: partials too short");
    if n == 1 || width == 0 {
        return;
    }
    let add = |a: &mut [T], b: &[T]| {
        for (x, y) in a.iter_mut().zip(b) {
            *x += *y;
        }
    };
    let parallel = n * width > TREE_TASK;
    let mut step = 1;
    while step < n {
        let pair = |group: &mut [T]| {
            let (a, b) = group.split_at_mut(step * width);
            let (a, b) = (&mut a[..width], &b[..width]);
            if parallel && width > TREE_TASK {
                a.par_chunks_mut(TREE_TASK)
                    .zip(b.par_chunks(TREE_TASK))
                    .for_each(|(a, b)| add(a, b));
            } else {
                add(a, b);
            }
        };
        let level = &mut parts[..n * width];
        if parallel {
            level.par_chunks_mut(2 * step * width).for_each(pair);
        } else {
            level.chunks_mut(2 * step * width).for_each(pair);
        }
        step *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::on_threads;

    #[test]
    fn shards_cover_the_batch_in_order() {
        let span = ShardSpan::whole(64, 8);
        assert_eq!(span.len(), 8);
        assert_eq!(span.images(3), 24..32);
        assert_eq!(span.local_images(), 64);
        // Uneven and empty shards: 3 images in 8 shards.
        let span = ShardSpan::whole(3, 8);
        let sizes: Vec<usize> = (0..8).map(|i| span.images(i).len()).collect();
        assert_eq!(sizes, [0, 0, 1, 0, 0, 1, 0, 1]);
        // The second half of 8 shards over 64 images, as process 1 of 2 holds them.
        let half = ShardSpan::new(64, 8, 4, 4);
        assert_eq!(half.images(0), 0..8);
        assert_eq!(half.local_images(), 32);
        assert_eq!(half.global_images(), 64);
        assert!(valid_shard_count(1) && valid_shard_count(64));
        assert!(!valid_shard_count(0) && !valid_shard_count(6) && !valid_shard_count(128));
    }

    /// The most shards a batch may have: the span keeps every bound (`MAX_SHARDS + 1` of them),
    /// and the shards cover each image once, in order.
    #[test]
    fn the_most_shards_cover_every_image_once() {
        let images = MAX_SHARDS + 3;
        let span = ShardSpan::whole(images, MAX_SHARDS);
        assert_eq!(span.len(), MAX_SHARDS);
        assert!(!span.is_empty());
        let covered: Vec<usize> = (0..MAX_SHARDS).flat_map(|i| span.images(i)).collect();
        assert_eq!(covered, (0..images).collect::<Vec<_>>());
        assert_eq!(span.local_images(), images);
        assert_eq!(span.max_shard_images(), 2);
    }

    /// The reference of [`Shards::finish_tasks`]: each shard's task partials added in f64 (a
    /// lone one taken as is, none giving zero), then [`tree_sum`] over the shards.
    fn finish_tasks_reference(
        n: usize,
        tasks: &[(usize, Range<usize>)],
        partials: &[f32],
        width: usize,
    ) -> Vec<f32> {
        let mut shards = vec![0.0f32; n * width];
        for (s, out) in shards.chunks_exact_mut(width).enumerate() {
            let mine: Vec<&[f32]> = (0..tasks.len())
                .filter(|&t| tasks[t].0 == s)
                .map(|t| &partials[t * width..(t + 1) * width])
                .collect();
            match mine.len() {
                0 => {}
                1 => out.copy_from_slice(mine[0]),
                _ => {
                    for (j, o) in out.iter_mut().enumerate() {
                        *o = mine.iter().map(|p| p[j] as f64).sum::<f64>() as f32;
                    }
                }
            }
        }
        tree_sum(&mut shards, n, width);
        shards.truncate(width);
        shards
    }

    /// Blocks of the values through every shard and the tree at once give the bits of shard by
    /// shard, then level by level: shards of no, one and several tasks, widths that leave a
    /// short last block, every shard count up to the most, on 1 and 3 threads.
    #[test]
    fn finish_tasks_equals_shard_by_shard_then_the_tree_on_any_threads() {
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
        for (batch, shards, per_task, width) in [
            (64, 8, 3, 2 * FINISH_COLUMNS + 37),
            (3, 8, 1, 700),
            (64, 1, 5, FINISH_COLUMNS),
            (70, MAX_SHARDS, 1, 5),
            (200, 4, 16, 1),
        ] {
            let span = ShardSpan::whole(batch, shards);
            let mut tasks = Vec::new();
            span.tasks(1, per_task, &mut tasks);
            let partials: Vec<f32> = (0..tasks.len() * width)
                .map(|i| ((i * 7919 % 1013) as f32 - 506.0) * 1.37e-3 * (1 + i % 17) as f32)
                .collect();
            let want = finish_tasks_reference(shards, &tasks, &partials, width);
            for threads in [1, 3] {
                let got = on_threads(threads, || {
                    let mut root = vec![f32::NAN; 3];
                    Shards::local(&span).finish_tasks(
                        &tasks,
                        &partials,
                        width,
                        &mut root,
                        Phase::Other,
                    );
                    root.truncate(width);
                    root
                });
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{batch} images, {shards} shards, {per_task} per task, width {width}, {threads} threads"
                );
            }
        }
    }

    /// The tree adds pairs, then pairs of pairs: visible in f32 rounding, where a sequential sum
    /// differs.
    #[test]
    fn tree_sum_adds_pairs_of_pairs() {
        let v = [1.0f32, 1e8, -1e8, 1.0];
        let mut parts = v;
        tree_sum(&mut parts, 4, 1);
        assert_eq!(parts[0], (v[0] + v[1]) + (v[2] + v[3]));
        assert_ne!(parts[0], ((v[0] + v[1]) + v[2]) + v[3]);
    }

    /// A process's subtree, finished by the tree over every process's root, is the whole tree;
    /// and the column-parallel split does not change a bit.
    #[test]
    fn subtrees_then_roots_equal_the_whole_tree_on_any_threads() {
        let (n, width) = (8, 5000);
        let parts: Vec<f32> = (0..n * width)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1.37e-3 * (1 + i % 13) as f32)
            .collect();
        let whole = |threads| {
            on_threads(threads, || {
                let mut p = parts.clone();
                tree_sum(&mut p, n, width);
                p[..width].to_vec()
            })
        };
        let one = whole(1);
        assert_eq!(one, whole(3));
        for ranks in [2, 4, 8] {
            let per = n / ranks;
            let mut roots = Vec::new();
            for r in 0..ranks {
                let mut sub = parts[r * per * width..(r + 1) * per * width].to_vec();
                tree_sum(&mut sub, per, width);
                roots.extend_from_slice(&sub[..width]);
            }
            tree_sum(&mut roots, ranks, width);
            assert_eq!(&roots[..width], &one[..], "{ranks} subtrees");
        }
    }
}
