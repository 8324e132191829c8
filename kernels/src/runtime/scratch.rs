//! Scratch buffers of the pool's workers. A task that needs a buffer only while it runs (a
//! bordered image, written and read at once) borrows the one of the worker running it, so tasks
//! can be cut as small as the work calls for, whatever the number of threads, while the scratch
//! memory stays one buffer per worker, hot in that worker's cache.

use std::sync::{Mutex, PoisonError};

/// One buffer per worker of the pool that last prepared it.
#[derive(Debug, Default)]
pub struct WorkerScratch {
    slots: Vec<Mutex<Vec<f32>>>,
}

impl Clone for WorkerScratch {
    /// A fresh, empty set: scratch contents are never worth copying.
    fn clone(&self) -> Self {
        WorkerScratch::default()
    }
}

impl WorkerScratch {
    /// Gives every worker of the current pool a buffer of `len` floats (allocates only when the
    /// pool or a buffer grows).
    pub fn prepare(&mut self, len: usize) {
        let workers = rayon::current_num_threads().max(1);
        if self.slots.len() < workers {
            self.slots.resize_with(workers, Default::default);
        }
        for slot in &mut self.slots {
            slot.get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .resize(len, 0.0);
        }
    }

    /// Runs `f` on the calling worker's buffer. A thread outside the pool, or a worker of a larger
    /// pool than the one prepared for, shares a buffer through its lock: slower, never wrong.
    ///
    /// # Panics
    /// If [`WorkerScratch::prepare`] was never called.
    pub fn with<R>(&self, f: impl FnOnce(&mut [f32]) -> R) -> R {
        assert!(!self.slots.is_empty(), "WorkerScratch::with before prepare");
        let i = rayon::current_thread_index().unwrap_or(0) % self.slots.len();
        let mut buffer = self.slots[i].lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn each_worker_gets_a_buffer_of_the_prepared_size_and_tasks_never_share_one_at_once() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let mut scratch = WorkerScratch::default();
        pool.install(|| scratch.prepare(100));
        assert_eq!(scratch.slots.len(), 3);
        let sums: Vec<f32> = pool.install(|| {
            (0..64usize)
                .into_par_iter()
                .map(|i| {
                    scratch.with(|b| {
                        assert_eq!(b.len(), 100);
                        // Written then read back within the task: another task using the same
                        // buffer at once would show up as a wrong sum.
                        b.fill(i as f32);
                        std::hint::black_box(&b);
                        b.iter().sum()
                    })
                })
                .collect()
        });
        for (i, s) in sums.iter().enumerate() {
            assert_eq!(*s, 100.0 * i as f32);
        }
        // Smaller again: no reallocation, same slots; a clone starts empty.
        pool.install(|| scratch.prepare(10));
        scratch.with(|b| assert_eq!(b.len(), 10));
        assert!(scratch.clone().slots.is_empty());
    }
}
