//! Sigmoid cross-entropy with logits, averaged over every element (as `tf.reduce_mean` of
//! `tf.nn.sigmoid_cross_entropy_with_logits`), and argmax accuracy.

/// `max(x, 0) - x * z + ln(1 + exp(-|x|))`: exact and overflow-free for any finite logit.
fn element_loss(x: f32, z: f32) -> f64 {
    let x = x as f64;
    x.max(0.0) - x * z as f64 + (-x.abs()).exp().ln_1p()
}

/// `1 / (1 + exp(-x))` without overflow for large |x|.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The mean loss over all elements; when `dlogits` is given it receives the gradient of that mean,
/// `(sigmoid(x) - z) / len`.
///
/// # Panics
/// If the slices differ in length.
pub fn sigmoid_cross_entropy(logits: &[f32], labels: &[f32], dlogits: Option<&mut [f32]>) -> f32 {
    assert_eq!(logits.len(), labels.len(), "logits and labels sizes");
    let n = logits.len().max(1) as f64;
    let total: f64 = logits
        .iter()
        .zip(labels)
        .map(|(x, z)| element_loss(*x, *z))
        .sum();
    if let Some(d) = dlogits {
        assert_eq!(d.len(), logits.len(), "dlogits size");
        sigmoid_cross_entropy_grad(logits, labels, logits.len(), d);
    }
    (total / n) as f32
}

/// The loss summed over each row of `classes` elements: `out[i]` for row `i` (in f64, summed in
/// element order). A mean over many rows adds these in row order ([`crate::distributed::Team::ordered_sum`]),
/// whichever process computed them.
///
/// # Panics
/// If the sizes disagree.
pub fn sigmoid_cross_entropy_rows(logits: &[f32], labels: &[f32], classes: usize, out: &mut [f64]) {
    assert_eq!(logits.len(), labels.len(), "logits and labels sizes");
    assert_eq!(logits.len(), out.len() * classes, "one sum per row");
    for ((sum, x), z) in out
        .iter_mut()
        .zip(logits.chunks_exact(classes))
        .zip(labels.chunks_exact(classes))
    {
        *sum = x.iter().zip(z).map(|(x, z)| element_loss(*x, *z)).sum();
    }
}

/// The gradient of a mean loss over `count` elements (those of `logits` and maybe others
/// elsewhere) with respect to `logits`: `(sigmoid(x) - z) / count`, as
/// [`sigmoid_cross_entropy`] computes it for `count = logits.len()`.
///
/// # Panics
/// If the sizes disagree.
pub fn sigmoid_cross_entropy_grad(
    logits: &[f32],
    labels: &[f32],
    count: usize,
    dlogits: &mut [f32],
) {
    assert!(
        logits.len() == labels.len() && dlogits.len() == logits.len(),
        "logits, labels and dlogits sizes"
    );
    let inv = (1.0 / count.max(1) as f64) as f32;
    for ((g, x), z) in dlogits.iter_mut().zip(logits).zip(labels) {
        *g = (sigmoid(*x) - z) * inv;
    }
}

/// The sum of the per-element losses (to combine batches into one mean).
pub fn sigmoid_cross_entropy_sum(logits: &[f32], labels: &[f32]) -> f64 {
    logits
        .iter()
        .zip(labels)
        .map(|(x, z)| element_loss(*x, *z))
        .sum()
}

/// Index of the largest value (the first on ties, like `tf.argmax`).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// How many rows of `logits` have their argmax where the one-hot `labels` row has its 1.
pub fn correct_predictions(logits: &[f32], labels: &[f32], classes: usize) -> usize {
    logits
        .chunks_exact(classes)
        .zip(labels.chunks_exact(classes))
        .filter(|(l, z)| argmax(l) == argmax(z))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_logits_stay_finite_and_exact() {
        let logits = [100.0, -100.0, 50.0, -50.0, 0.0];
        let labels = [1.0, 0.0, 0.0, 1.0, 1.0];
        let mut d = [0.0; 5];
        let loss = sigmoid_cross_entropy(&logits, &labels, Some(&mut d));
        let want = (0.0 + 0.0 + 50.0 + 50.0 + std::f64::consts::LN_2) / 5.0;
        assert!((loss as f64 - want).abs() < 1e-5, "{loss} vs {want}");
        assert!(d.iter().all(|g| g.is_finite()));
        assert_eq!(d[2], 0.2);
        assert_eq!(d[3], -0.2);
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(
            correct_predictions(&[0.1, 0.9, 0.8, 0.2], &[0.0, 1.0, 0.0, 1.0], 2),
            1
        );
    }
}
