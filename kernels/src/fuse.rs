//! One vocabulary for the work fused around a product, used from the GEMM tile up to the layers.
//!
//! A memory-bound per-channel operation (a bias, a batch norm, a ReLU) costs a pass over its
//! tensor when it runs on its own; fused, it rides on a pass that happens anyway:
//! - an [`Epilogue`] is applied to a product's output tile before the tile is stored:
//!   `C = relu?(start + A @ (B * scale))`. The register tiles apply `start` and `relu`; `scale`
//!   (per output column) is multiplied into `B` when `B` is packed, so only operations that pack
//!   their own `B` (the convolutions) take one.
//! - a [`Prologue`] is applied to an operand as it is read: `relu?((x - mean) * scale + beta)`,
//!   with exactly the arithmetic of the batch-norm and ReLU kernels, so fusing never changes a
//!   bit. The implicit convolution applies it while zero-bordering its input.
//!
//! In `bnconv-nn`, a batch norm or ReLU layer describes itself with these same types: in
//! training as the [`Prologue`] the next convolution applies to its input, in evaluation as the
//! [`Epilogue`] the previous convolution applies to its output.

/// What each element of a product's output starts from before `A @ B` is added.
#[derive(Clone, Copy, Debug, Default)]
pub enum Start<'a> {
    /// Zero: `C = A @ B`.
    #[default]
    Zero,
    /// C's own values: `C += A @ B` (a long sum reduced block by block gives bitwise the result
    /// of one pass).
    Accumulate,
    /// `bias[j]` for output column `j`: added on the output tile instead of by a pass that fills
    /// C first (the same arithmetic, so bitwise the same result).
    Bias(&'a [f32]),
}

impl<'a> Start<'a> {
    /// The start of the output columns from `first` on (a bias is shifted with them).
    pub fn from_column(self, first: usize) -> Start<'a> {
        match self {
            Start::Bias(b) => Start::Bias(&b[first..]),
            other => other,
        }
    }

    /// The bias, if the start is one.
    pub fn bias(self) -> Option<&'a [f32]> {
        match self {
            Start::Bias(b) => Some(b),
            _ => None,
        }
    }
}

/// What a product does to its output tile before storing it: `C = relu?(start + A @ (B *
/// scale))`. See the [module](self) documentation for who applies which part.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    pub start: Start<'a>,
    /// Per output column, multiplied into `B` as it is packed (evaluation folds a batch norm's
    /// scale into the convolution's weights this way).
    pub scale: Option<&'a [f32]>,
    /// ReLU (NaN passes through, as in the ReLU kernels) on the result.
    pub relu: bool,
}

impl<'a> Epilogue<'a> {
    /// Nothing fused: `C = A @ B`.
    pub const NONE: Epilogue<'static> = Epilogue {
        start: Start::Zero,
        scale: None,
        relu: false,
    };

    /// `C = bias + A @ B` (no bias: `C = A @ B`).
    pub fn bias(bias: Option<&'a [f32]>) -> Epilogue<'a> {
        Epilogue {
            start: bias.map_or(Start::Zero, Start::Bias),
            ..Epilogue::NONE
        }
    }

    /// `C += A @ B`.
    pub fn accumulate() -> Epilogue<'a> {
        Epilogue {
            start: Start::Accumulate,
            ..Epilogue::NONE
        }
    }

    /// This epilogue, then ReLU when `relu`.
    pub fn with_relu(self, relu: bool) -> Epilogue<'a> {
        Epilogue { relu, ..self }
    }

    /// The part a register tile applies (start and ReLU) for the output columns from `first`
    /// on.
    ///
    /// # Panics
    /// If a `scale` is left: it belongs in the packed `B`, which a tile cannot change.
    pub fn on_tile(self, first: usize) -> Epilogue<'a> {
        assert!(
            self.scale.is_none(),
            "a scale is folded into B when B is packed, not applied on a tile"
        );
        Epilogue {
            start: self.start.from_column(first),
            ..self
        }
    }
}

/// The per-channel map a batch-norm forward applies: `y = (x - mean) * scale + beta`, with
/// `scale = gamma / sqrt(var + eps)` (batch statistics in training, moving ones in evaluation).
#[derive(Clone, Copy, Debug)]
pub struct BnApply<'a> {
    pub mean: &'a [f32],
    pub scale: &'a [f32],
    pub beta: &'a [f32],
}

impl BnApply<'_> {
    /// Channels of the map (the length of each of its slices, which [`BnApply::fits`] checks).
    pub fn channels(&self) -> usize {
        self.scale.len()
    }

    /// Whether every slice holds `channels` values.
    pub fn fits(&self, channels: usize) -> bool {
        self.mean.len() == channels && self.scale.len() == channels && self.beta.len() == channels
    }
}

/// What is applied to an operand as it is read: `relu?(normalize?(x))`, `normalize` being a
/// batch norm's [`BnApply`]. The arithmetic is exactly that of the batch-norm and ReLU kernels,
/// so a fused prologue gives bitwise the results of the separate passes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Prologue<'a> {
    pub normalize: Option<BnApply<'a>>,
    pub relu: bool,
}

impl<'a> Prologue<'a> {
    /// Nothing applied: the operand as it is.
    pub const NONE: Prologue<'static> = Prologue {
        normalize: None,
        relu: false,
    };

    /// Whether the prologue leaves the operand as it is.
    pub fn is_identity(&self) -> bool {
        self.normalize.is_none() && !self.relu
    }
}
