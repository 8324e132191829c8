//! The test harness [`tile_table!`](super::table) instantiates for every tile kind: the tile, its
//! portable twin and the one-row AVX2 tile against the reference tile ([`super::tile_scalar`]),
//! bitwise (every tile reduces each element in the reference's order, one fused multiply-add a
//! step), and their epilogues against separate passes, on a grid of strips and on random ones.
//! The portable twin's tests run on every CPU; the SIMD tiles' tests are reported as ignored
//! where the build machine lacks their path.

use super::table::TileKind;
use super::{Tile, Walk, LANES};
use crate::fuse::{Epilogue, Start};
use crate::simd::{relu_s, Isa};
use crate::testing::pseudo;
use proptest::prelude::*;

/// One way of running a strip with the kind under test: `masked` says B rows hold only `cols`
/// valid floats.
pub(crate) type StripFn = unsafe fn(masked: bool, t: &Tile);

/// A tile kind with its twins.
pub(crate) struct Runner {
    pub kind: TileKind,
    /// The tile itself, where this build has it (the AVX tiles exist on x86_64 only).
    pub simd: Option<StripFn>,
    /// The portable tile of the same shape (what `Isa::Portable` runs).
    pub portable: StripFn,
    /// The reference tile of the same shape.
    pub scalar: StripFn,
    /// The one-row AVX2 tile of the same width, where this build has it.
    pub twin: Option<StripFn>,
}

/// The one-row AVX2+FMA tile of `NV` vectors (plain intrinsics, no assembly, one row per
/// group), where this build has it.
pub(crate) const fn one_row_twin<const NV: usize>() -> Option<StripFn> {
    #[cfg(target_arch = "x86_64")]
    {
        Some(one_row_avx2::<NV>)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// # Safety
/// AVX2 and FMA available; the memory contract of [`super::run_tile`].
#[cfg(target_arch = "x86_64")]
unsafe fn one_row_avx2<const NV: usize>(masked: bool, t: &Tile) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if masked {
            super::avx2::tile::<1, NV, true>(t)
        } else {
            super::avx2::tile::<1, NV, false>(t)
        }
    }
}

/// Which tiles of a kind a test runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Tiles {
    /// The portable twin (any CPU).
    Portable,
    /// The SIMD tile and the one-row AVX2 tile of its width: the tests that run them are
    /// reported as ignored where the build machine lacks the kind's path (see `tile_table!`).
    Simd,
}

/// The tiles `which` names, as (name, function); for `Tiles::Simd` fails unless this CPU runs
/// the kind's path (only a test binary carried to another CPU gets there).
fn strips(run: &Runner, which: Tiles) -> Vec<(&'static str, StripFn)> {
    match which {
        Tiles::Portable => vec![("its portable twin", run.portable)],
        Tiles::Simd => {
            crate::testing::require_isa(if run.kind.isa == Isa::Avx512 {
                Isa::Avx512
            } else {
                Isa::Avx2
            });
            let (Some(simd), Some(twin)) = (run.simd, run.twin) else {
                panic!(
                    "{}: this build has no {} tiles",
                    run.kind.name,
                    run.kind.isa.name()
                );
            };
            vec![(run.kind.name, simd), ("the one-row AVX2 tile", twin)]
        }
    }
}

/// A strip for one tile: its shape, strides, columns and epilogue.
#[derive(Clone, Debug)]
pub(crate) struct StripCase {
    pub rows: usize,
    pub segments: usize,
    pub depth: usize,
    /// A's step along the reduction (at least 1).
    pub a_step: usize,
    /// Floats between B rows beyond the panel width.
    pub b_gap: usize,
    /// Valid columns (`1..=8 * vectors`, more than `8 * (vectors - 1)`).
    pub cols: usize,
    pub masked: bool,
    /// 0: zero, 1: accumulate, 2: bias.
    pub start: u8,
    pub relu: bool,
    pub seed: u32,
}

/// Operands laid out for a strip: every read the contract allows is inside them, and a masked
/// B ends right after the last row's `cols` valid floats.
struct Operands {
    a: Vec<f32>,
    a_row: usize,
    b: Vec<f32>,
    bias: Vec<f32>,
    c0: Vec<f32>,
    ldc: usize,
    walk: Walk,
}

/// First column of C the strip writes (column 0 and the columns after `cols` must stay as they
/// were).
const C_COL: usize = 1;

impl Operands {
    fn new(kind: &TileKind, case: &StripCase) -> Operands {
        let width = LANES * kind.vectors;
        let a_step = case.a_step as isize;
        let a_seg = (case.depth * case.a_step + 2) as isize;
        let a_row = case.segments * a_seg as usize + 1;
        let b_step = (width + case.b_gap) as isize;
        let b_seg = case.depth as isize * b_step + 3;
        let last_row =
            (case.segments - 1) * b_seg as usize + case.depth.saturating_sub(1) * b_step as usize;
        let b_len = last_row + if case.masked { case.cols } else { width };
        let ldc = C_COL + case.cols + 2;
        Operands {
            a: pseudo(case.rows * a_row, case.seed),
            a_row,
            b: pseudo(b_len.max(1), case.seed + 1),
            bias: pseudo(case.cols, case.seed + 2),
            c0: pseudo(case.rows * ldc, case.seed + 3),
            ldc,
            walk: Walk::segmented(case.segments, case.depth, (a_step, a_seg), (b_step, b_seg)),
        }
    }

    fn start(&self, case: &StripCase) -> Start<'_> {
        match case.start {
            0 => Start::Zero,
            1 => Start::Accumulate,
            _ => Start::Bias(&self.bias),
        }
    }

    /// C after running `f` over the strip with `epilogue`, starting from `c`; `depth` steps from
    /// step `from` of a one-segment walk (the whole walk when `from` is 0 and `depth` its own).
    fn run_from(
        &self,
        f: StripFn,
        case: &StripCase,
        epilogue: Epilogue,
        mut c: Vec<f32>,
        (from, depth): (usize, usize),
    ) -> Vec<f32> {
        let a_rows: Vec<*const f32> = (0..case.rows)
            .map(|i| self.a[i * self.a_row + from * case.a_step..].as_ptr())
            .collect();
        let c_rows: Vec<*mut f32> = (0..case.rows)
            .map(|i| c[i * self.ldc..].as_mut_ptr())
            .collect();
        let walk = Walk { depth, ..self.walk };
        let b = self.b[from * self.walk.b_step as usize..].as_ptr();
        let t = Tile::new(walk, &a_rows, b, &c_rows, C_COL, case.cols).with_epilogue(epilogue);
        // SAFETY: the caller checked the ISA (`strips`); row `i` of A reads at most
        // `(segments - 1) * a_seg + (depth - 1) * a_step < a_row` floats from its start; B rows
        // lie inside `b` for `8 * vectors` floats, or `cols` when masked (its length is chosen
        // so); C rows are `ldc >= C_COL + cols` floats inside `c`, exclusively borrowed; the bias
        // holds `cols` floats.
        unsafe { f(case.masked, &t) };
        drop(c_rows);
        c
    }

    fn run(&self, f: StripFn, case: &StripCase, epilogue: Epilogue) -> Vec<f32> {
        self.run_from(f, case, epilogue, self.c0.clone(), (0, case.depth))
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The tiles `which` names against the reference tile, bitwise; columns outside
/// `C_COL..C_COL + cols` untouched by any.
pub(crate) fn check_case(run: &Runner, which: Tiles, case: &StripCase) {
    let tiles = strips(run, which);
    let ops = Operands::new(&run.kind, case);
    let epilogue = Epilogue {
        start: ops.start(case),
        scale: None,
        relu: case.relu,
    };
    let want = ops.run(run.scalar, case, epilogue);
    for (i, (w, c0)) in want.iter().zip(&ops.c0).enumerate() {
        let col = i % ops.ldc;
        if !(C_COL..C_COL + case.cols).contains(&col) {
            assert_eq!(
                w.to_bits(),
                c0.to_bits(),
                "the reference wrote column {col}"
            );
        }
    }
    for (name, f) in tiles {
        let got = ops.run(f, case, epilogue);
        assert_eq!(
            bits(&got),
            bits(&want),
            "{}: {name} vs the reference tile: {case:?}",
            run.kind.name
        );
    }
}

/// Columns a panel of `kind` can have: a full panel and a partly filled last vector.
fn column_counts(kind: &TileKind) -> [usize; 3] {
    let width = LANES * kind.vectors;
    [width, width - 3, width - LANES + 1]
}

/// Whether the kind reads masked B rows in this case.
fn maskings(kind: &TileKind) -> &'static [bool] {
    if kind.masked_b {
        &[false, true]
    } else {
        &[false]
    }
}

/// A grid of strips: every row count up to two groups and a tail, reductions of zero, one and
/// many steps in one or three segments, every start, ReLU on and off.
fn grid(kind: &TileKind) -> Vec<StripCase> {
    let mut cases = Vec::new();
    let mut seed = 1;
    for rows in 1..=2 * kind.rows + 1 {
        for &(segments, depth, a_step) in &[(1, 0, 1), (1, 1, 1), (1, 13, 2), (3, 7, 1)] {
            for cols in column_counts(kind) {
                for &masked in maskings(kind) {
                    for (start, relu) in [(0, false), (1, true), (2, true), (2, false)] {
                        seed += 4;
                        cases.push(StripCase {
                            rows,
                            segments,
                            depth,
                            a_step,
                            b_gap: 3,
                            cols,
                            masked,
                            start,
                            relu,
                            seed,
                        });
                    }
                }
            }
        }
    }
    cases
}

pub(crate) fn matches_the_reference(run: &Runner, which: Tiles) {
    for case in grid(&run.kind) {
        check_case(run, which, &case);
    }
}

pub(crate) fn matches_the_reference_on_long_reductions(run: &Runner, which: Tiles) {
    // Long reductions, where any difference in the order of the multiply-adds shows.
    for mut case in grid(&run.kind) {
        case.depth *= 9;
        check_case(run, which, &case);
    }
}

/// The epilogues equal the passes they replace, bitwise, on the tile `which` names (the SIMD
/// tile or the portable twin, not the one-row AVX2 tile): a
/// bias start equals accumulating onto rows filled with the bias; ReLU on the tile equals ReLU
/// after it; a reduction split in two (the second half accumulating) equals one pass.
pub(crate) fn epilogues_equal_separate_passes(run: &Runner, which: Tiles) {
    for (tile, f) in strips(run, which).into_iter().take(1) {
        for case in grid(&run.kind) {
            if case.segments != 1 || case.depth == 0 {
                continue;
            }
            let ops = Operands::new(&run.kind, &case);
            let name = format!("{} ({tile})", run.kind.name);
            let bias = ops.run(f, &case, Epilogue::bias(Some(&ops.bias)));
            let mut filled = ops.c0.clone();
            for row in filled.chunks_exact_mut(ops.ldc) {
                row[C_COL..C_COL + case.cols].copy_from_slice(&ops.bias);
            }
            let accumulated =
                ops.run_from(f, &case, Epilogue::accumulate(), filled, (0, case.depth));
            assert_eq!(bits(&bias), bits(&accumulated), "{name} bias: {case:?}");

            let plain = ops.run(f, &case, Epilogue::NONE);
            let relu = ops.run(f, &case, Epilogue::NONE.with_relu(true));
            for (i, (r, p)) in relu.iter().zip(&plain).enumerate() {
                let col = i % ops.ldc;
                let want = if (C_COL..C_COL + case.cols).contains(&col) {
                    relu_s(*p)
                } else {
                    *p
                };
                assert_eq!(r.to_bits(), want.to_bits(), "{name} relu at {i}: {case:?}");
            }

            let half = case.depth / 2;
            let first = ops.run_from(f, &case, Epilogue::NONE, ops.c0.clone(), (0, half));
            let split = ops.run_from(
                f,
                &case,
                Epilogue::accumulate(),
                first,
                (half, case.depth - half),
            );
            assert_eq!(
                bits(&split),
                bits(&plain),
                "{name} split at {half}: {case:?}"
            );
        }
    }
}

/// Random strips for `kind`: any row count up to four groups, up to three segments of up to 40
/// steps, any A step and B gap, any valid column count, masking where the kind reads it, every
/// start and ReLU.
pub(crate) fn strip_case(kind: TileKind) -> impl Strategy<Value = StripCase> {
    let width = LANES * kind.vectors;
    (
        1..=4 * kind.rows,
        1usize..=3,
        0usize..=40,
        1usize..=3,
        0usize..=9,
        (width - LANES + 1)..=width,
        proptest::bool::weighted(if kind.masked_b { 0.5 } else { 0.0 }),
        0u8..3,
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(
            |(rows, segments, depth, a_step, b_gap, cols, masked, start, relu, seed)| StripCase {
                rows,
                segments,
                depth,
                a_step,
                b_gap,
                cols,
                masked,
                start,
                relu,
                seed,
            },
        )
}
