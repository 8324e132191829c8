//! Every register tile, declared once: its instruction set, rows, vectors and whether it can
//! read masked B rows. [`tile_table!`] turns the table into the kind list ([`TILE_KINDS`]), the
//! dispatch that picks a kind for a strip ([`dispatch`]), and a test module per kind (scalar
//! equivalence, epilogues, its bitwise twin, a property test over shapes; see `tests.rs`).

use super::{Tile, LANES};
use crate::simd::Isa;

/// One register tile: `rows x (8 * vectors)` floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TileKind {
    pub name: &'static str,
    /// The least instruction set it needs: `Avx512` tiles run only there; `Avx2` tiles run
    /// their AVX2+FMA code on AVX2 and AVX-512 CPUs and their portable twin (same bits) on the
    /// portable path.
    pub isa: Isa,
    pub rows: usize,
    pub vectors: usize,
    /// Whether it can read B rows that hold only `cols` valid floats (with a mask).
    pub masked_b: bool,
}

/// The tile height, of `heights` (tallest first), that computes `rows` rows fastest: a group of
/// `h` rows costs about `h + 2` rows' time (the B loads and the loop are paid per group), and a
/// last, partial group costs a whole one (a 12-row strip runs as 2 x 6, not 8 + 8).
pub(crate) fn tile_height(rows: usize, heights: &[usize]) -> usize {
    let cost = |h: usize| rows.div_ceil(h) * (h + 2);
    heights
        .iter()
        .copied()
        .min_by_key(|&h| cost(h))
        .expect("at least one height")
}

/// Declares the tiles. Each line is a group: an instruction set, a panel width in vectors, which
/// B rows it reads (`any`: plain or masked; `unmasked`: plain only), then its kinds, tallest
/// first, as `name = rows`. [`dispatch`] takes the first group that fits the strip's ISA, panel
/// width and masking, and in it the height [`tile_height`] picks for the strip.
macro_rules! tile_table {
    ($(
        $isa:ident, $nv:literal vectors, $mask:ident B: $($name:ident = $mr:literal),+;
    )*) => {
        /// Every tile kind, in dispatch order.
        #[cfg_attr(not(test), allow(dead_code))]
        pub(crate) const TILE_KINDS: &[TileKind] = &[$($(
            TileKind {
                name: stringify!($name),
                isa: Isa::$isa,
                rows: $mr,
                vectors: $nv,
                masked_b: tile_table!(@masked $mask),
            },
        )+)*];

        /// Runs the strip `t` with the tile kind that fits a panel of `nv` vectors on `isa`
        /// (see `tile_table!`). `MASK_B`: B rows hold only `cols` valid floats.
        ///
        /// # Safety
        /// The contract of [`run_tile`](super::run_tile) for `isa` and `t` (an `Isa::Avx512` caller runs on an
        /// AVX-512 CPU).
        pub(crate) unsafe fn dispatch<const MASK_B: bool>(isa: Isa, nv: usize, t: &Tile) {
            // A panel of `nv` vectors holds more than `nv - 1` vectors' columns (as `panels`
            // cuts them): a narrower one handed to a wider tile would be computed, and B read,
            // past its width.
            assert!(
                (1..=3).contains(&nv) && t.cols <= nv * LANES && t.cols > (nv - 1) * LANES,
                "dispatch: {} columns in a panel of {nv} vectors",
                t.cols
            );
            $(
                if tile_table!(@runs_on $isa, isa)
                    && nv == $nv
                    && (!MASK_B || tile_table!(@masked $mask))
                {
                    let height = tile_height(t.rows, &[$($mr),+]);
                    $(
                        if height == $mr {
                            // SAFETY: forwarded from the caller.
                            return unsafe { tile_table!(@run $isa, $mr, $nv, MASK_B, isa, t) };
                        }
                    )+
                }
            )*
            unreachable!("the tile table has a group for every panel width");
        }

        #[cfg(test)]
        mod generated {
            $($(
                /// Tests of one tile kind, generated from its line of the table.
                mod $name {
                    use crate::gemm::tile::tests::{self, Runner, Tiles};
                    use crate::gemm::tile::Tile;
                    use crate::simd::Isa;

                    const KIND: super::super::TileKind = super::super::TileKind {
                        name: stringify!($name),
                        isa: Isa::$isa,
                        rows: $mr,
                        vectors: $nv,
                        masked_b: tile_table!(@masked $mask),
                    };

                    /// The tile itself.
                    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
                    unsafe fn simd(masked: bool, t: &Tile) {
                        // SAFETY: forwarded from the caller (the harness checked the ISA).
                        unsafe {
                            if masked {
                                tile_table!(@run $isa, $mr, $nv, true, KIND.isa, t)
                            } else {
                                tile_table!(@run $isa, $mr, $nv, false, KIND.isa, t)
                            }
                        }
                    }

                    /// Its portable twin (same shape, any CPU).
                    unsafe fn portable(masked: bool, t: &Tile) {
                        // SAFETY: forwarded from the caller.
                        unsafe {
                            if masked {
                                crate::gemm::tile::portable::tile::<$mr, $nv, true>(t)
                            } else {
                                crate::gemm::tile::portable::tile::<$mr, $nv, false>(t)
                            }
                        }
                    }

                    /// The reference tile of the same shape.
                    unsafe fn scalar(masked: bool, t: &Tile) {
                        // SAFETY: forwarded from the caller.
                        unsafe {
                            if masked {
                                crate::gemm::tile::tile_scalar::<$mr, $nv, true>(t)
                            } else {
                                crate::gemm::tile::tile_scalar::<$mr, $nv, false>(t)
                            }
                        }
                    }

                    const RUN: Runner = Runner {
                        kind: KIND,
                        simd: if cfg!(target_arch = "x86_64") { Some(simd) } else { None },
                        portable,
                        scalar,
                        twin: tests::one_row_twin::<$nv>(),
                    };

                    // The portable twin runs on every CPU.
                    #[test]
                    fn its_portable_twin_matches_the_reference() {
                        tests::matches_the_reference(&RUN, Tiles::Portable);
                    }

                    #[test]
                    fn its_portable_twin_epilogues_equal_separate_passes() {
                        tests::epilogues_equal_separate_passes(&RUN, Tiles::Portable);
                    }

                    #[test]
                    fn its_portable_twin_matches_the_reference_on_long_reductions() {
                        tests::matches_the_reference_on_long_reductions(&RUN, Tiles::Portable);
                    }

                    proptest::proptest! {
                        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
                        #[test]
                        fn any_strip_of_its_portable_twin_matches_the_reference(
                            case in tests::strip_case(KIND)
                        ) {
                            tests::check_case(&RUN, Tiles::Portable, &case);
                        }
                    }

                    tile_table!(@simd_tests $isa);
                }
            )+)*
        }
    };
    // The SIMD tile's tests, reported as ignored where the build machine lacks its path.
    (@simd_tests Avx512) => {
        tile_table!(@simd_tests_unless bnconv_cpu_lacks_avx512, "this CPU has no AVX-512");
    };
    (@simd_tests Avx2) => {
        tile_table!(@simd_tests_unless bnconv_cpu_lacks_avx2, "this CPU has no AVX2 and FMA");
    };
    (@simd_tests_unless $lacks:ident, $why:literal) => {
        #[test]
        #[cfg_attr($lacks, ignore = $why)]
        fn it_and_the_one_row_avx2_tile_match_the_reference() {
            tests::matches_the_reference(&RUN, Tiles::Simd);
        }

        #[test]
        #[cfg_attr($lacks, ignore = $why)]
        fn its_epilogues_equal_separate_passes() {
            tests::epilogues_equal_separate_passes(&RUN, Tiles::Simd);
        }

        #[test]
        #[cfg_attr($lacks, ignore = $why)]
        fn it_matches_the_reference_on_long_reductions() {
            tests::matches_the_reference_on_long_reductions(&RUN, Tiles::Simd);
        }

        proptest::proptest! {
            #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
            #[test]
            #[cfg_attr($lacks, ignore = $why)]
            fn any_strip_of_it_matches_the_reference(case in tests::strip_case(KIND)) {
                tests::check_case(&RUN, Tiles::Simd, &case);
            }
        }
    };
    (@masked any) => { true };
    (@masked unmasked) => { false };
    (@runs_on Avx512, $isa:expr) => { $isa == Isa::Avx512 };
    (@runs_on Avx2, $isa:expr) => { true };
    (@run Avx512, $mr:literal, $nv:literal, $mask:expr, $isa:expr, $t:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            crate::gemm::tile::run_tile_avx512::<$mr, $nv, { usize::div_ceil($nv, 2) }, $mask>($t)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            unreachable!("AVX-512 tiles exist only on x86_64")
        }
    }};
    (@run Avx2, $mr:literal, $nv:literal, $mask:expr, $isa:expr, $t:expr) => {
        crate::gemm::tile::run_tile::<$mr, $nv, $mask>($isa, $t)
    };
}

tile_table! {
    // 32 `zmm` registers: up to 12 rows of one `zmm` (16 columns). One-vector (8-column) panels
    // stay on the AVX2 tile (a half-used `zmm` measured slower), and so do three-vector
    // (24-column) panels: on a core that splits a 512-bit FMA in two halves (Zen 4), 8 rows of
    // a `zmm` and a `ymm` ran slower than the AVX2 4 x 24 tile.
    Avx512, 2 vectors, any B: avx512_12x16 = 12, avx512_8x16 = 8, avx512_6x16 = 6;
    // 16 `ymm` registers. The 4 x 24 tile's 12 accumulators, 3 B vectors and a broadcast fill
    // them all, so its reduction loop is written in assembly; a masked B, which needs a mask
    // register too, takes the 3 x 24 tile.
    Avx2, 1 vectors, any B: avx2_6x8 = 6;
    Avx2, 2 vectors, any B: avx2_6x16 = 6;
    Avx2, 3 vectors, unmasked B: avx2_4x24 = 4, avx2_3x24 = 3;
    Avx2, 3 vectors, any B: avx2_3x24_masked = 3;
}

/// [`dispatch`] with the B-masking chosen at run time: `masked` when B rows hold only `cols`
/// readable floats.
///
/// # Safety
/// The contract of [`run_tile`](super::run_tile) for `isa` and `t`, with `MASK_B = masked`.
pub(crate) unsafe fn dispatch_b(isa: Isa, nv: usize, masked: bool, t: &Tile) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if masked {
            dispatch::<true>(isa, nv, t)
        } else {
            dispatch::<false>(isa, nv, t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_heights_avoid_mostly_empty_groups() {
        assert_eq!(tile_height(96, &[8, 6, 4]), 8);
        assert_eq!(tile_height(12, &[8, 6, 4]), 6);
        assert_eq!(tile_height(4, &[8, 6, 4]), 4);
        assert_eq!(tile_height(48, &[12, 8, 6]), 12);
        assert_eq!(tile_height(8, &[12, 8, 6]), 8);
        assert_eq!(tile_height(20, &[4, 3]), 4);
        assert_eq!(tile_height(9, &[4, 3]), 3);
    }

    /// Every panel width has a tile on every path, masked or not, and the table stays within
    /// the row limits the strips assume.
    #[test]
    fn the_table_covers_every_panel_and_masking() {
        for nv in 1..=3 {
            for masked in [false, true] {
                assert!(
                    TILE_KINDS
                        .iter()
                        .any(|k| k.isa == Isa::Avx2 && k.vectors == nv && (k.masked_b || !masked)),
                    "{nv} vectors, masked {masked}"
                );
            }
        }
        for k in TILE_KINDS {
            assert!(k.rows >= 1 && k.rows <= super::super::MAX_ROWS, "{k:?}");
        }
    }
}
