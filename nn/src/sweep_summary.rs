//! What a seed sweep says about each variant: the final test accuracy of every seed, their mean,
//! spread and range, and how many runs stayed near chance.

use crate::seed::Variant;
use crate::sweep::SweepRun;

/// A final test accuracy at or below this counts as near chance (ten classes: chance is 0.1).
pub const NEAR_CHANCE: f32 = 0.15;

/// One variant's runs in a sweep.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct VariantSummary {
    pub variant: Variant,
    /// Seeds whose run finished, with their final test accuracy, in the sweep's seed order.
    pub test_accuracy: Vec<SeedAccuracy>,
    /// Seeds whose run stopped with an error (e.g. diverged).
    pub failed_seeds: Vec<u64>,
    /// Mean, sample standard deviation (n - 1; 0 for a single run), min and max of the finished
    /// runs' test accuracies (all 0 when none finished).
    pub mean: f64,
    pub std: f64,
    pub min: f32,
    pub max: f32,
    /// Finished runs with a test accuracy of at most [`NEAR_CHANCE`], and their share of the
    /// finished runs.
    pub near_chance: usize,
    pub near_chance_share: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct SeedAccuracy {
    pub seed: u64,
    pub accuracy: f32,
}

impl VariantSummary {
    /// The summary of `variant` from each seed's final test accuracy (`None`: the run failed).
    pub fn new(variant: Variant, results: &[(u64, Option<f32>)]) -> VariantSummary {
        let test_accuracy: Vec<SeedAccuracy> = results
            .iter()
            .filter_map(|&(seed, acc)| acc.map(|accuracy| SeedAccuracy { seed, accuracy }))
            .collect();
        let failed_seeds = results
            .iter()
            .filter(|(_, acc)| acc.is_none())
            .map(|&(seed, _)| seed)
            .collect();
        let values: Vec<f64> = test_accuracy.iter().map(|s| s.accuracy as f64).collect();
        let n = values.len();
        let mean = if n == 0 {
            0.0
        } else {
            values.iter().sum::<f64>() / n as f64
        };
        let std = if n < 2 {
            0.0
        } else {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        };
        let accs = test_accuracy.iter().map(|s| s.accuracy);
        let near_chance = accs.clone().filter(|&a| a <= NEAR_CHANCE).count();
        VariantSummary {
            variant,
            mean,
            std,
            min: if n == 0 {
                0.0
            } else {
                accs.clone().fold(f32::INFINITY, f32::min)
            },
            max: if n == 0 {
                0.0
            } else {
                accs.fold(f32::NEG_INFINITY, f32::max)
            },
            near_chance,
            near_chance_share: near_chance as f64 / n.max(1) as f64,
            test_accuracy,
            failed_seeds,
        }
    }
}

/// One summary per variant of `variants`, from a sweep's runs.
pub fn summarize(variants: &[Variant], runs: &[SweepRun]) -> Vec<VariantSummary> {
    variants
        .iter()
        .map(|&variant| {
            let results: Vec<(u64, Option<f32>)> = runs
                .iter()
                .filter(|r| r.variant == variant)
                .map(|r| (r.seed, r.outcome.as_ref().ok().map(|rep| rep.test.accuracy)))
                .collect();
            VariantSummary::new(variant, &results)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_of_the_finished_runs() {
        let s = VariantSummary::new(
            Variant::Plain,
            &[
                (1, Some(0.1)),
                (2, Some(0.5)),
                (3, None),
                (4, Some(0.15)),
                (5, Some(0.9)),
            ],
        );
        assert_eq!(s.failed_seeds, [3]);
        assert_eq!(
            s.test_accuracy.iter().map(|a| a.seed).collect::<Vec<_>>(),
            [1, 2, 4, 5]
        );
        let values = [0.1f32 as f64, 0.5f32 as f64, 0.15f32 as f64, 0.9f32 as f64];
        let mean = values.iter().sum::<f64>() / 4.0;
        assert!((s.mean - mean).abs() < 1e-12);
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 3.0;
        assert!((s.std - var.sqrt()).abs() < 1e-12, "sample std, n - 1");
        assert_eq!((s.min, s.max), (0.1, 0.9));
        assert_eq!(s.near_chance, 2, "0.15 itself counts as near chance");
        assert_eq!(s.near_chance_share, 0.5);
    }

    #[test]
    fn one_run_has_no_spread_and_none_gives_zeros() {
        let one = VariantSummary::new(Variant::Bn, &[(7, Some(0.97))]);
        assert_eq!(
            (one.mean as f32, one.std, one.min, one.max),
            (0.97, 0.0, 0.97, 0.97)
        );
        assert_eq!(one.near_chance_share, 0.0);
        let none = VariantSummary::new(Variant::Bn, &[(7, None)]);
        assert_eq!(
            (none.mean, none.std, none.min, none.max),
            (0.0, 0.0, 0.0, 0.0)
        );
        assert_eq!(none.failed_seeds, [7]);
    }
}
