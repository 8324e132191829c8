//! How this process was started: alone, or as one rank of an `mpirun` job (the `mpi` feature).
//!
//! Under `mpirun` every rank runs the same command on its share of each batch
//! ([`bnconv_nn::distributed`]); rank 0 alone prints and writes files. Before any work the ranks
//! compare what they were asked to do ([`agree`]); a difference is refused, on every rank, with a
//! message naming it. Any other failure of one rank (an error, a panic) ends the whole job at once
//! through `MPI_Abort`, naming the rank, so that no rank waits forever in an exchange; a rank that
//! is killed is noticed by `mpirun`, which ends the others.

use crate::cli::CommonArgs;
use anyhow::Result;
use bnconv_nn::distributed::{SingleProcess, Team};
use bnconv_nn::mnist::Mnist;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Environment variables through which MPI launchers tell a process how many ranks the job has
/// (Open MPI, then PMIx and PMI launchers such as MPICH's Hydra and Slurm's srun).
const SIZE_VARS: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"];

/// The job size a launcher announced, if this process was started by one.
fn launcher_size() -> Option<usize> {
    SIZE_VARS
        .iter()
        .find_map(|v| std::env::var(v).ok())
        .and_then(|v| v.trim().parse().ok())
}

/// This process's place among the processes of the run.
pub struct Launch {
    pub team: Team,
    /// Keeps MPI initialised until the end of `main` (dropping it finalises MPI).
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

impl Launch {
    /// Joins the `mpirun` job this process belongs to, or runs alone.
    pub fn join() -> Result<Launch> {
        let size = launcher_size();
        #[cfg(feature = "mpi")]
        if size.is_some() {
            return mpi_world::join();
        }
        if let Some(n) = size.filter(|&n| n > 1) {
            anyhow::bail!(
                "started as one of {n} MPI processes, but this bnconv was built without MPI: \
                 build it with `cargo build --release --features mpi` (see docs/distributed.md)"
            );
        }
        Ok(Launch::alone())
    }

    /// One process, no MPI.
    pub fn alone() -> Launch {
        Launch {
            team: Team::new(Arc::new(SingleProcess)),
            #[cfg(feature = "mpi")]
            _universe: None,
        }
    }

    pub fn is_root(&self) -> bool {
        self.team.is_root()
    }

    pub fn ranks(&self) -> usize {
        self.team.ranks()
    }

    /// Ends a failed run: alone, with exit status 1 after printing `error`; as one of several
    /// ranks, by aborting the whole job (every rank exits at once) after printing the error with
    /// this rank's number and host. A [`Refusal`] that every rank reached the same way is printed
    /// once, by rank 0, and every rank exits normally with status 1.
    pub fn fail(self, error: anyhow::Error) -> std::process::ExitCode {
        let (rank, ranks) = (self.team.rank(), self.team.ranks());
        if ranks == 1 {
            eprintln!("error: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
        if error.downcast_ref::<Refusal>().is_some() {
            if rank == 0 {
                eprintln!("error: {error:#}");
            }
            // Finalise MPI on every rank (the refusal was reached by all), then exit.
            drop(self);
            return std::process::ExitCode::FAILURE;
        }
        // The same host name as the panic hook's and the layout's: the communicator's.
        eprintln!(
            "error on rank {rank} of {ranks} ({}): {error:#}",
            self.team.collective().host_name()
        );
        abort_job(1)
    }
}

/// An error every rank of the job reaches in the same way at the same point (a configuration
/// the ranks agreed on, or disagree about): reported once, without aborting.
#[derive(Debug)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// Ends every process of the job now with `code` (never returns). Outside an MPI job, exits.
pub fn abort_job(code: i32) -> ! {
    #[cfg(feature = "mpi")]
    mpi_world::abort(code);
    #[cfg(not(feature = "mpi"))]
    std::process::exit(code)
}

/// What a run was asked to do, as `(name, value)` pairs that must be equal on every rank.
pub type RunDescription = Vec<(String, String)>;

/// The build, the options that decide a training run's results (not the thread count, the data
/// directory or the output files, which may differ between ranks) and the data itself.
pub fn describe_common(opts: &CommonArgs, data: &Mnist) -> RunDescription {
    let mut d = describe_build();
    for (k, v) in [
        ("batches", format!("{:?}", opts.run.batches)),
        ("batch size", opts.run.batch_size.to_string()),
        ("learning rate", format!("{:e}", opts.run.lr)),
        ("seed", opts.seed.to_string()),
        ("shards", opts.run.shards.to_string()),
        ("BN path", opts.run.bn.to_string()),
        ("GEMM", format!("{:?}", opts.run.gemm)),
        ("eval batch", opts.run.eval_batch.to_string()),
        ("data (SHA-256)", data_sha256(data)),
    ] {
        d.push((k.to_string(), v));
    }
    d
}

/// The bnconv version and build features. Not the SIMD path: every path gives the same bits
/// (docs/design.md), so ranks on different CPUs (AVX-512, AVX2, portable) may train together.
pub fn describe_build() -> RunDescription {
    let features = [
        cfg!(feature = "mpi").then_some("mpi"),
        cfg!(feature = "blas").then_some("blas"),
    ];
    vec![
        ("bnconv version".into(), env!("CARGO_PKG_VERSION").into()),
        (
            "build features".into(),
            features
                .iter()
                .flatten()
                .copied()
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]
}

/// SHA-256 over every image's pixels and every label of the three sets, in order.
pub fn data_sha256(data: &Mnist) -> String {
    let mut h = Sha256::new();
    for set in [&data.train, &data.validation, &data.test] {
        h.update((set.len() as u64).to_le_bytes());
        h.update(set.pixels());
        h.update(set.labels());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks that every rank was started with the same `description`; on a difference, a
/// [`Refusal`] on every rank naming what differs and where. A single process agrees with itself.
pub fn agree(team: &Team, description: &RunDescription) -> Result<()> {
    if team.ranks() == 1 {
        return Ok(());
    }
    let text: String = description
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    let lengths = team.gather_bytes(&(text.len() as u64).to_le_bytes());
    let longest = lengths
        .iter()
        .map(|b| u64::from_le_bytes(b[..8].try_into().expect("8 bytes")) as usize)
        .max()
        .unwrap_or(0);
    let mut mine = text.into_bytes();
    mine.resize(longest, 0);
    let all = team.gather_bytes(&mine);
    let parse = |b: &[u8]| -> Vec<(String, String)> {
        String::from_utf8_lossy(b)
            .trim_end_matches('\0')
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let root = parse(&all[0]);
    let mut differences = Vec::new();
    for (rank, bytes) in all.iter().enumerate().skip(1) {
        let theirs = parse(bytes);
        for (key, value) in &root {
            let other = theirs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str());
            if other != Some(value.as_str()) {
                differences.push(format!(
                    "{key} is {} on rank {rank} but {value} on rank 0",
                    other.unwrap_or("missing")
                ));
            }
        }
        for (key, value) in &theirs {
            if !root.iter().any(|(k, _)| k == key) {
                differences.push(format!(
                    "{key} is {value} on rank {rank} but missing on rank 0"
                ));
            }
        }
    }
    if differences.is_empty() {
        return Ok(());
    }
    Err(Refusal(format!(
        "the {} MPI processes were not started with the same run: {}",
        team.ranks(),
        differences.join("; ")
    ))
    .into())
}

#[cfg(feature = "mpi")]
mod mpi_world {
    //! The MPI transport: `MPI_COMM_WORLD` all-gathers, `MPI_Abort` on failure.

    use super::Launch;
    use anyhow::Result;
    use bnconv_nn::distributed::{Collective, Team};
    use mpi::environment::Threading;
    use mpi::topology::{Communicator, SimpleCommunicator};
    use mpi::traits::CommunicatorCollectives;
    use std::sync::Arc;

    /// One rank of `MPI_COMM_WORLD`. Calls come from one thread at a time (the one running the
    /// training step), which `MPI_THREAD_SERIALIZED` allows.
    struct World {
        rank: usize,
        size: usize,
        host: String,
    }

    impl Collective for World {
        fn rank(&self) -> usize {
            self.rank
        }
        fn ranks(&self) -> usize {
            self.size
        }
        fn all_gather_f32(&self, local: &[f32], all: &mut [f32]) {
            SimpleCommunicator::world().all_gather_into(local, all);
        }
        fn all_gather_f64(&self, local: &[f64], all: &mut [f64]) {
            SimpleCommunicator::world().all_gather_into(local, all);
        }
        fn all_gather_bytes(&self, local: &[u8], all: &mut [u8]) {
            SimpleCommunicator::world().all_gather_into(local, all);
        }
        fn host_name(&self) -> String {
            self.host.clone()
        }
    }

    /// Open MPI's setting for how a rank waits in an exchange: `1` yields the core between polls.
    const YIELD_WHEN_IDLE: &str = "OMPI_MCA_mpi_yield_when_idle";

    pub(super) fn join() -> Result<Launch> {
        // A rank waiting for the others spins on its core by default, taking it from the rank
        // (or the other programs) it waits for whenever cores are shared: on a busy 2-core
        // machine that made 2 ranks several times slower than yielding. Yield unless the user
        // chose (`--mca mpi_yield_when_idle 0` or the variable).
        if std::env::var_os(YIELD_WHEN_IDLE).is_none() {
            std::env::set_var(YIELD_WHEN_IDLE, "1");
        }
        let Some((universe, threading)) = mpi::initialize_with_threading(Threading::Serialized)
        else {
            anyhow::bail!("MPI could not be initialised (was it initialised already?)");
        };
        if threading < Threading::Serialized {
            anyhow::bail!(
                "this MPI library offers thread level {threading:?}; bnconv needs Serialized"
            );
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let host = mpi::environment::processor_name()
            .unwrap_or_else(|_| bnconv_nn::distributed::local_host_name());
        // A panic anywhere ends the whole job instead of leaving the other ranks waiting.
        let default_hook = std::panic::take_hook();
        let on = host.clone();
        std::panic::set_hook(Box::new(move |info| {
            default_hook(info);
            eprintln!("bnconv: rank {rank} of {size} ({on}) panicked; aborting the MPI job");
            abort(101);
        }));
        Ok(Launch {
            team: Team::new(Arc::new(World { rank, size, host })),
            _universe: Some(universe),
        })
    }

    /// `MPI_Abort` on the world: every rank of the job ends with `code`.
    pub(super) fn abort(code: i32) -> ! {
        SimpleCommunicator::world().abort(code)
    }
}
