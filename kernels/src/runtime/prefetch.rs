//! Software prefetch for the operand a weight gradient reads cold.
//!
//! [`crate::gemm::matmul::matmul_at_b`] reads what the forward pass saved (the im2col rows) long after
//! it was written: by then it has left L2, and the product's strided reads (a few floats of each
//! long row at a time) bring it back one missed line after another, faster than the hardware
//! prefetchers follow. Asking for the next block of rows while computing this one overlaps the
//! memory traffic with the arithmetic (figures in docs/performance/kernel-notes.md).
//! The implicit path's bordered images are a few KiB each; prefetching the next image there did
//! not help, so it does not.
//!
//! On some cores the hints do little (a burst of them can outrun the miss buffers); [`warm_l2`]
//! streams a block in with real loads before the product that reads it.

/// Floats per 64-byte cache line.
const LINE_FLOATS: usize = 16;

/// Asks the CPU to bring `data` into L2. A hint only: it changes no result, cannot fault, and is
/// a no-op off x86_64.
#[inline]
pub(crate) fn prefetch_l2(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        let lines = data.chunks(LINE_FLOATS).map(|l| l.as_ptr());
        for p in lines.chain(data.last().map(|l| l as *const f32)) {
            // SAFETY: a prefetch reads nothing architecturally and never faults; `p` points into
            // `data` anyway. SSE, which has it, is part of every x86_64 CPU.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// [`prefetch_l2`] of rows `rows` of a row-major matrix (`ld` floats apart), `cols` floats each.
#[inline]
pub(crate) fn prefetch_rows_l2(a: &[f32], ld: usize, cols: usize, rows: std::ops::Range<usize>) {
    for r in rows {
        if let Some(row) = a.get(r * ld..).and_then(|row| row.get(..cols)) {
            prefetch_l2(row);
        }
    }
}

/// Reads `data` in order, one float per cache line, so that it is in L2 (or at worst L3) when the
/// caller's product reads it. Unlike [`prefetch_l2`]'s hints, which a burst of misses can
/// outrun, these are real loads: in address order, they also engage the hardware stream
/// prefetchers and keep many misses in flight. Row blocks warmed first beat both column strips
/// and the same blocks not warmed (figures in docs/performance/).
#[inline]
pub(crate) fn warm_l2(data: &[f32]) {
    let mut sum = 0.0f32;
    for line in data.chunks(LINE_FLOATS) {
        sum += line[0];
    }
    std::hint::black_box(sum);
}
