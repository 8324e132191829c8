//! Keeps the rayon pool's other workers awake while a thread drives many short parallel phases.
//!
//! A training step runs ~150 parallel loops with short serial gaps between them. An idle rayon
//! worker spins only briefly and then sleeps on a futex; waking it again costs tens of
//! microseconds on a virtual machine, about 36 times per step. [`KeepAwake`] occupies every other
//! worker with a job that keeps asking rayon for work ([`rayon::yield_now`]) and spins between
//! asks, so stolen tasks start at once. Scheduling never changes results: every parallel kernel
//! cuts its work by shape alone ([`crate::runtime::partition`]).
//!
//! Several pools can run at once in one process (a seed sweep runs one per job). Spinners are
//! only worth their core while every pool thread has a core of its own, so the guards count the
//! threads of every pool inside one, process-wide: a guard whose pool would take that count past
//! the number of cores starts no spinners, and the spinners already running leave as soon as the
//! count goes past it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Threads of all pools currently inside a [`KeepAwake`] guard, over the whole process.
static GUARDED_THREADS: AtomicUsize = AtomicUsize::new(0);

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// While alive, the pool's other workers spin for work instead of sleeping. Dropping it releases
/// them and waits until they have let go.
pub struct KeepAwake {
    shared: Arc<Shared>,
}

struct Shared {
    stop: AtomicBool,
    /// Spinners not yet finished (each one decrements it as it leaves).
    running: AtomicUsize,
    /// The driving thread: a spinner landing there (while it waits in a join) must leave at once,
    /// or the driver could not return to drop the guard.
    driver: Option<usize>,
    spinners: usize,
    /// This guard's share of [`GUARDED_THREADS`], given back on drop.
    registered: usize,
    cores: usize,
}

impl KeepAwake {
    /// Starts one spinner per other worker of the current pool. Call it from inside the pool (in
    /// `install`). It does nothing outside any pool, with one thread, or when this pool's threads
    /// and those of the other pools inside a guard are more than the machine has cores (spinners
    /// would then take a core another thread needs).
    pub fn start() -> KeepAwake {
        let driver = rayon::current_thread_index();
        let threads = rayon::current_num_threads();
        let cores = cores();
        let registered = if driver.is_some() { threads } else { 0 };
        let guarded = GUARDED_THREADS.fetch_add(registered, Ordering::AcqRel) + registered;
        let spinners = match driver {
            Some(_) if guarded <= cores => threads - 1,
            _ => 0,
        };
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            running: AtomicUsize::new(spinners),
            driver,
            spinners,
            registered,
            cores,
        });
        for _ in 0..spinners {
            spawn_spinner(Arc::clone(&shared));
        }
        KeepAwake { shared }
    }

    /// Spinners started by this guard (0 when it chose not to spin).
    pub fn spinners(&self) -> usize {
        self.shared.spinners
    }
}

fn spawn_spinner(shared: Arc<Shared>) {
    rayon::spawn(move || {
        if shared.stop.load(Ordering::Acquire) {
            shared.running.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        if rayon::current_thread_index() == shared.driver {
            // Picked up by the driver while it waited: hand the spinner back to the pool.
            spawn_spinner(shared);
            return;
        }
        // Leaves when released, or when other pools' guards have taken the process past one
        // thread per core.
        while !shared.stop.load(Ordering::Acquire)
            && GUARDED_THREADS.load(Ordering::Acquire) <= shared.cores
        {
            if rayon::yield_now() != Some(rayon::Yield::Executed) {
                std::hint::spin_loop();
            }
        }
        shared.running.fetch_sub(1, Ordering::AcqRel);
    });
}

impl Drop for KeepAwake {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        while self.shared.running.load(Ordering::Acquire) > 0 {
            // A spinner still queued (not yet picked up) runs here or on its worker and leaves.
            if rayon::yield_now().is_none() {
                std::thread::yield_now();
            }
            std::hint::spin_loop();
        }
        GUARDED_THREADS.fetch_sub(self.shared.registered, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guards of one test would change the spinner counts another test expects.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    fn parallel_work_runs_and_the_guard_releases_every_worker() {
        use rayon::prelude::*;
        let _serial = serial();
        let cores = cores();
        let threads = cores.clamp(2, 4);
        pool(threads).install(|| {
            for round in 0..50u64 {
                let awake = KeepAwake::start();
                assert_eq!(
                    awake.spinners(),
                    if threads <= cores { threads - 1 } else { 0 }
                );
                let sum: u64 = (0..10_000u64).into_par_iter().map(|i| i * round).sum();
                assert_eq!(sum, round * 10_000 * 9_999 / 2);
                // Nested joins while the spinners hold the other workers.
                let (a, b) = rayon::join(|| (0..1000u64).into_par_iter().sum::<u64>(), || 7);
                assert_eq!((a, b), (499_500, 7));
                let shared = Arc::clone(&awake.shared);
                drop(awake);
                assert_eq!(
                    shared.running.load(Ordering::Acquire),
                    0,
                    "a spinner outlived the guard"
                );
            }
        });
    }

    #[test]
    fn does_nothing_outside_a_pool_or_when_oversubscribed() {
        let _serial = serial();
        assert_eq!(KeepAwake::start().spinners(), 0);
        let cores = cores();
        pool(cores + 1).install(|| assert_eq!(KeepAwake::start().spinners(), 0));
        pool(1).install(|| assert_eq!(KeepAwake::start().spinners(), 0));
    }

    #[test]
    fn a_second_pool_that_would_oversubscribe_stops_the_first_pools_spinners() {
        let _serial = serial();
        let cores = cores();
        if cores < 2 {
            eprintln!("SKIPPED: needs 2 cores for a pool with spinners, this machine has {cores}");
            return;
        }
        let (first, second) = (pool(cores), pool(2));
        first.install(|| {
            let awake = KeepAwake::start();
            assert_eq!(awake.spinners(), cores - 1);
            assert_eq!(awake.shared.running.load(Ordering::Acquire), cores - 1);
            std::thread::scope(|s| {
                s.spawn(|| {
                    second.install(|| {
                        let other = KeepAwake::start();
                        assert_eq!(other.spinners(), 0, "{cores} + 2 threads > {cores} cores");
                        let start = std::time::Instant::now();
                        while awake.shared.running.load(Ordering::Acquire) > 0 {
                            assert!(
                                start.elapsed().as_secs() < 10,
                                "the first pool's spinners kept spinning"
                            );
                            std::thread::yield_now();
                        }
                    })
                });
            });
            // With the second pool gone, a new guard spins again.
            drop(awake);
            assert_eq!(KeepAwake::start().spinners(), cores - 1);
        });
        assert_eq!(
            GUARDED_THREADS.load(Ordering::Acquire),
            0,
            "every guard gave its threads back"
        );
    }
}
