//! Data-parallel training without MPI: threads standing in for processes
//! ([`bnconv_nn::distributed::ThreadGroup`]), each with its own rayon pool, its own network and
//! its share of every batch, exchanging shard-tree subtree roots as MPI ranks do.
//!
//! - every printed figure (step losses, log lines, final evaluations, single-image accuracy) and
//!   the weights' digest of a short protocol run are bitwise the same for 1, 2 and 4 ranks, any
//!   thread count per rank, and one plain process;
//! - so is every parameter of a `Trainer` after some steps, on every rank;
//! - batch sizes the ranks cannot share are refused before any work;
//! - the shard count is part of the numeric definition: another count gives other bits.
//!
//! The same checks under `mpirun` are in tests/mpi.rs (feature `mpi`).

#[path = "support/cut_mnist.rs"]
mod cut_mnist;
#[path = "support/report_bits.rs"]
mod report_bits;

use bnconv_nn::distributed::{Team, ThreadGroup};
use bnconv_nn::mnist::Mnist;
use bnconv_nn::train::{run_protocol, RunReport, TrainConfig, TrainError, Trainer};
use bnconv_nn::Variant;
use std::sync::{Arc, OnceLock};

const BATCHES: usize = 12;
const BATCH_SIZE: usize = 16;

fn data() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| cut_mnist::load_cut(300, 250))
}

fn config(variant: Variant) -> TrainConfig {
    let mut cfg = TrainConfig::protocol(variant);
    cfg.batches = BATCHES;
    cfg.batch_size = BATCH_SIZE;
    cfg.seed = 7;
    cfg.eval_batch = 64;
    cfg
}

fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
        .install(f)
}

/// Runs `f(cfg for this rank)` on each of `ranks` threads standing in for processes, rank `r`
/// on a pool of `threads[r % threads.len()]` threads; results in rank order.
fn on_ranks<T: Send>(
    cfg: &TrainConfig,
    ranks: usize,
    threads: &[usize],
    f: impl Fn(TrainConfig) -> T + Sync,
) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = ThreadGroup::members(ranks)
            .into_iter()
            .enumerate()
            .map(|(r, member)| {
                let mut cfg = cfg.clone();
                cfg.exec.team = Team::new(Arc::new(member));
                let f = &f;
                let t = threads[r % threads.len()];
                s.spawn(move || with_threads(t, || f(cfg)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a rank panicked"))
            .collect()
    })
}

fn protocol(cfg: &TrainConfig) -> RunReport {
    run_protocol(cfg, data(), &mut |_| {}).expect("a healthy run")
}

#[test]
fn one_two_and_four_ranks_give_the_single_process_protocol_bitwise() {
    for variant in [Variant::Bn, Variant::Plain] {
        let cfg = config(variant);
        let single = with_threads(2, || protocol(&cfg));
        assert_eq!(single.layout.ranks, 1);
        for (ranks, threads) in [(1, &[3][..]), (2, &[1, 2][..]), (4, &[1][..])] {
            let reports = on_ranks(&cfg, ranks, threads, |cfg| protocol(&cfg));
            for (rank, report) in reports.iter().enumerate() {
                let what = format!("{variant}: {ranks} ranks, rank {rank}");
                report_bits::assert_same_results(report, &single, &what);
                assert_eq!(report.layout.ranks, ranks);
                assert_eq!(report.layout.threads_per_rank.len(), ranks);
            }
        }
    }
}

#[test]
fn every_parameter_on_every_rank_equals_the_single_process() {
    let cfg = config(Variant::Bn);
    let train = &data().train;
    let run = |cfg: TrainConfig| {
        let mut t = Trainer::new(&cfg, train.len());
        let losses: Vec<u32> = (0..5)
            .map(|_| t.step(train).expect("finite").to_bits())
            .collect();
        let mut params = vec![("losses".to_string(), losses)];
        t.net.visit_params(&mut |p| {
            params.push((p.full_name(), p.value.iter().map(|v| v.to_bits()).collect()))
        });
        params
    };
    let single = with_threads(1, || run(cfg.clone()));
    for ranks in [2, 4] {
        for (rank, got) in on_ranks(&cfg, ranks, &[2], run).iter().enumerate() {
            for ((name, want), (_, got)) in single.iter().zip(got) {
                let differing = want.iter().zip(got).filter(|(a, b)| a != b).count();
                assert_eq!(
                    differing, 0,
                    "{ranks} ranks, rank {rank}: {name} differs in {differing} values"
                );
            }
        }
    }
}

#[test]
fn batches_the_ranks_cannot_share_are_refused() {
    let cases = [
        (3, 18, 8, "cannot share 8 shards"),
        (3, 16, 8, "cannot be split evenly over 3 processes"),
        (2, 15, 8, "cannot be split evenly over 2 processes"),
        (4, 2, 8, "cannot be split evenly over 4 processes"),
        (2, 16, 6, "must be a power of two"),
        (16, 16, 8, "cannot share 8 shards"),
    ];
    for (ranks, batch, shards, want) in cases {
        let mut cfg = config(Variant::Bn);
        cfg.batch_size = batch;
        cfg.exec.shards = shards;
        let errors = on_ranks(&cfg, ranks, &[1], |cfg| cfg.validate(data().train.len()));
        for e in errors {
            match e {
                Err(TrainError::Config(msg)) => assert!(msg.contains(want), "{msg}"),
                other => panic!("{ranks} ranks, batch {batch}: expected a refusal, got {other:?}"),
            }
        }
    }
}

#[test]
fn the_shard_count_is_part_of_the_numeric_definition() {
    // Guards the comparisons above: the shard tree decides the rounding, so another shard count
    // ends with other weights (while a different rank count does not).
    let cfg = config(Variant::Bn);
    let mut other = cfg.clone();
    other.exec.shards = 4;
    let (a, b) = with_threads(2, || (protocol(&cfg), protocol(&other)));
    assert_ne!(a.parameters_sha256, b.parameters_sha256);
    assert_eq!(b.layout.shards, 4);
}
