//! Matrix views: a slice with its shape and row stride, checked once when the view is made, so
//! the GEMMs take three operands instead of a dozen loose numbers.

/// Floats a row-major `rows x cols` matrix with row stride `ld` spans.
///
/// # Panics
/// If `ld < cols` (rows would overlap; BLAS refuses it even for one row) or the span overflows
/// `usize`.
fn span(rows: usize, cols: usize, ld: usize) -> usize {
    assert!(
        ld >= cols,
        "matrix view: row stride {ld} is shorter than a row of {cols}"
    );
    if rows == 0 || cols == 0 {
        return 0;
    }
    (rows - 1)
        .checked_mul(ld)
        .and_then(|x| x.checked_add(cols))
        .unwrap_or_else(|| panic!("matrix view: {rows} x {cols} with stride {ld} overflows"))
}

/// Checks that `len` floats hold a `rows x cols` matrix with row stride `ld`.
fn check(len: usize, rows: usize, cols: usize, ld: usize) {
    let need = span(rows, cols, ld);
    assert!(
        len >= need,
        "matrix view: {rows} x {cols} with row stride {ld} needs {need} floats, got {len}"
    );
}

/// A matrix read from a slice: `rows x cols` stored row-major with row stride `ld` (element
/// `(i, j)` at `data[i * ld + j]`), or the transpose of such a matrix ([`MatRef::t`]), which
/// reads the same storage with the roles of rows and columns swapped.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    /// The stored matrix's rows, columns and row stride.
    rows: usize,
    cols: usize,
    ld: usize,
    transposed: bool,
}

impl<'a> MatRef<'a> {
    /// The `rows x cols` matrix stored row-major in `data` with row stride `ld`.
    ///
    /// # Panics
    /// If `data` is too short for it, or `ld < cols`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, ld: usize) -> MatRef<'a> {
        check(data.len(), rows, cols, ld);
        MatRef {
            data,
            rows,
            cols,
            ld,
            transposed: false,
        }
    }

    /// The `rows x cols` matrix stored densely (`ld = cols`) in `data`.
    pub fn dense(data: &'a [f32], rows: usize, cols: usize) -> MatRef<'a> {
        MatRef::new(data, rows, cols, cols)
    }

    /// The transpose, read from the same storage.
    pub fn t(self) -> MatRef<'a> {
        MatRef {
            transposed: !self.transposed,
            ..self
        }
    }

    /// Rows of the matrix this view reads (after any transpose).
    pub fn rows(&self) -> usize {
        if self.transposed {
            self.cols
        } else {
            self.rows
        }
    }

    /// Columns of the matrix this view reads (after any transpose).
    pub fn cols(&self) -> usize {
        if self.transposed {
            self.rows
        } else {
            self.cols
        }
    }

    /// The storage's row stride.
    pub fn ld(&self) -> usize {
        self.ld
    }

    /// Whether the view reads the transpose of its storage.
    pub fn is_transposed(&self) -> bool {
        self.transposed
    }

    /// The storage.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// `(row stride, column stride)` of the matrix this view reads.
    pub fn strides(&self) -> (usize, usize) {
        if self.transposed {
            (1, self.ld)
        } else {
            (self.ld, 1)
        }
    }

    /// Element `(i, j)` of the matrix this view reads.
    pub fn get(&self, i: usize, j: usize) -> f32 {
        let (rs, cs) = self.strides();
        self.data[i * rs + j * cs]
    }
}

/// A matrix written in a slice: `rows x cols`, row-major with row stride `ld`.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    ld: usize,
}

impl<'a> MatMut<'a> {
    /// The `rows x cols` matrix stored row-major in `data` with row stride `ld`.
    ///
    /// # Panics
    /// If `data` is too short for it, or `ld < cols`.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, ld: usize) -> MatMut<'a> {
        check(data.len(), rows, cols, ld);
        MatMut {
            data,
            rows,
            cols,
            ld,
        }
    }

    /// The `rows x cols` matrix stored densely (`ld = cols`) in `data`.
    pub fn dense(data: &'a mut [f32], rows: usize, cols: usize) -> MatMut<'a> {
        MatMut::new(data, rows, cols, cols)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn ld(&self) -> usize {
        self.ld
    }

    /// The storage.
    pub fn data(&mut self) -> &mut [f32] {
        self.data
    }

    /// Row `i`'s `cols` elements.
    pub fn row(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.ld..][..self.cols]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_check_their_storage_and_transpose_without_copying() {
        let data: Vec<f32> = (0..11).map(|v| v as f32).collect();
        let a = MatRef::new(&data, 3, 2, 4);
        assert_eq!((a.rows(), a.cols(), a.get(2, 1)), (3, 2, 9.0));
        let t = a.t();
        assert_eq!((t.rows(), t.cols(), t.get(1, 2)), (2, 3, 9.0));
        assert_eq!(t.t().strides(), a.strides());
        let empty = MatRef::new(&[], 0, 5, 5);
        assert_eq!((empty.rows(), empty.cols()), (0, 5));
    }

    #[test]
    #[should_panic(expected = "needs 10 floats, got 9")]
    fn a_short_slice_is_refused() {
        MatRef::new(&[0.0; 9], 3, 2, 4);
    }

    #[test]
    #[should_panic(expected = "row stride 1 is shorter")]
    fn overlapping_rows_are_refused() {
        MatMut::new(&mut [0.0; 9], 3, 2, 1);
    }
}
