//! Dense f32 tensors with a small fixed-capacity shape (rank <= 4), NHWC for images.
//!
//! Buffers are reused from step to step: [`Tensor::set_shape`] resizes in place and only allocates
//! when a larger batch than ever before arrives.

use std::fmt;

/// A tensor shape of rank 1 to 4; `dims()[0]` is the batch.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    dims: [usize; 4],
    rank: usize,
}

impl Shape {
    /// # Panics
    /// If `dims` has more than four entries (a programming error, not user input).
    pub fn new(dims: &[usize]) -> Shape {
        assert!(dims.len() <= 4, "Shape supports rank <= 4, got {dims:?}");
        let mut d = [0; 4];
        d[..dims.len()].copy_from_slice(dims);
        Shape {
            dims: d,
            rank: dims.len(),
        }
    }

    pub fn dims(&self) -> &[usize] {
        &self.dims[..self.rank]
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.dims().iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leading (batch) dimension.
    pub fn batch(&self) -> usize {
        self.dims().first().copied().unwrap_or(0)
    }

    /// Elements per batch item (the flattened feature size).
    pub fn per_item(&self) -> usize {
        self.dims().iter().skip(1).product()
    }

    /// The last dimension: channels for NHWC, features for `[N, F]`.
    pub fn channels(&self) -> usize {
        self.dims().last().copied().unwrap_or(0)
    }

    /// The same shape with another batch size.
    pub fn with_batch(&self, batch: usize) -> Shape {
        let mut s = *self;
        if s.rank > 0 {
            s.dims[0] = batch;
        }
        s
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.dims())
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.dims())
    }
}

/// A shape plus a row-major buffer of exactly `shape.len()` floats.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tensor {
    shape: Shape,
    data: Vec<f32>,
}

impl Tensor {
    pub fn zeros(shape: Shape) -> Tensor {
        Tensor {
            shape,
            data: vec![0.0; shape.len()],
        }
    }

    /// Wraps `data`; errors if its length does not match the shape.
    pub fn from_vec(shape: Shape, data: Vec<f32>) -> Result<Tensor, String> {
        if data.len() != shape.len() {
            return Err(format!(
                "shape {shape} needs {} values, got {}",
                shape.len(),
                data.len()
            ));
        }
        Ok(Tensor { shape, data })
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Reshapes in place, keeping the allocation (new elements are zero, old ones stale).
    pub fn set_shape(&mut self, shape: Shape) {
        self.shape = shape;
        self.data.resize(shape.len(), 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_accessors() {
        let s = Shape::new(&[64, 28, 28, 1]);
        assert_eq!(
            (s.len(), s.batch(), s.per_item(), s.channels()),
            (50176, 64, 784, 1)
        );
        assert_eq!(s.with_batch(2).dims(), &[2, 28, 28, 1]);
        assert_eq!(format!("{s}"), "[64, 28, 28, 1]");
    }

    #[test]
    fn set_shape_reuses_the_buffer() {
        let mut t = Tensor::zeros(Shape::new(&[8, 10]));
        let ptr = t.data().as_ptr();
        t.set_shape(Shape::new(&[4, 10]));
        t.set_shape(Shape::new(&[8, 10]));
        assert_eq!(t.data().as_ptr(), ptr);
        assert!(Tensor::from_vec(Shape::new(&[2, 2]), vec![0.0; 3]).is_err());
    }
}
