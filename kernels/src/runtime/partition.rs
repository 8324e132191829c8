//! How parallel kernels cut their work: by shape alone, never by thread count.
//!
//! A chunk's partial sums are reduced in chunk order, so the same inputs give bitwise the same
//! weight gradients and batch-norm statistics on 1, 2 or 64 threads.

/// Rows of a `[rows, channels]` tensor per reduction chunk (batch-norm statistics and gradients).
pub const REDUCTION_ROWS: usize = 256;

/// Output rows (pixels) a convolution chunk aims for: enough to keep a GEMM efficient, small
/// enough that the seed network's 64-image batches split into many chunks in the early layers.
pub const CONV_TARGET_ROWS: usize = 512;

/// Whole images per convolution chunk for a layer with `rows_per_image` output pixels per image.
pub fn images_per_chunk(rows_per_image: usize) -> usize {
    CONV_TARGET_ROWS.div_ceil(rows_per_image.max(1)).max(1)
}

/// Number of chunks of `chunk` items needed for `total` items.
pub fn chunk_count(total: usize, chunk: usize) -> usize {
    total.div_ceil(chunk.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_everything_and_ignore_threads() {
        assert_eq!(images_per_chunk(784), 1);
        assert_eq!(images_per_chunk(16), 32);
        assert_eq!(images_per_chunk(1), CONV_TARGET_ROWS);
        assert_eq!(images_per_chunk(0), CONV_TARGET_ROWS);
        assert_eq!(chunk_count(64, 32), 2);
        assert_eq!(chunk_count(65, 32), 3);
        assert_eq!(chunk_count(0, 32), 0);
    }
}
