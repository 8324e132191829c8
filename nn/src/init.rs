//! TensorFlow's default initialisers, drawn from a seeded RNG so runs are reproducible.

use rand::Rng;
use rand_distr::{Distribution, Normal};

/// Glorot (Xavier) uniform: `U(-l, l)` with `l = sqrt(6 / (fan_in + fan_out))`, TF's default
/// kernel initialiser. For a 3x3 conv, `fan_in = 9 * Cin` and `fan_out = 9 * Cout`.
pub fn glorot_uniform(fan_in: usize, fan_out: usize, n: usize, rng: &mut impl Rng) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
    (0..n)
        .map(|_| rng.random_range(-limit..limit) as f32)
        .collect()
}

/// Truncated normal as `tf.truncated_normal`: `N(0, stddev)` redrawn until within two stddevs.
pub fn truncated_normal(stddev: f32, n: usize, rng: &mut impl Rng) -> Vec<f32> {
    let normal = Normal::new(0.0f64, stddev as f64).expect("a positive, finite stddev");
    let bound = 2.0 * stddev as f64;
    (0..n)
        .map(|_| loop {
            let v = normal.sample(rng);
            if v.abs() <= bound {
                break v as f32;
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn glorot_has_the_right_range_and_variance() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let w = glorot_uniform(36, 72, 100_000, &mut rng);
        let limit = (6.0f32 / 108.0).sqrt();
        assert!(w.iter().all(|v| v.abs() <= limit));
        let var = w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len() as f64;
        let want = (limit as f64).powi(2) / 3.0;
        assert!((var - want).abs() < 0.02 * want, "{var} vs {want}");
    }

    #[test]
    fn truncated_normal_stays_within_two_stddevs() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let w = truncated_normal(0.05, 100_000, &mut rng);
        assert!(w.iter().all(|v| v.abs() <= 0.1));
        // Variance of a normal truncated at 2 sigma is about 0.774 sigma^2.
        let var = w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len() as f64;
        assert!((var / 0.0025 - 0.774).abs() < 0.02, "{}", var / 0.0025);
    }
}
