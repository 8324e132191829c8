//! Whether `bnconv profile`'s timings can be trusted: the spread between its rounds.
//!
//! The timed steps of every configuration run in rounds (a block of steps per path, paths
//! alternating), so each configuration has one mean step time per round. On a quiet machine the
//! rounds agree within a few percent; when another program starts or stops during the run they do
//! not, and every figure built on them (speed-ups, efficiencies, phase shares, the scaling model's
//! check) is then the machine's load as much as bnconv's. The spread of a configuration is its
//! slowest round's mean step time over its fastest's, minus 1; above [`SPREAD_LIMIT`] the figures
//! are reported as not to be trusted.

use serde::Serialize;

/// The largest spread between rounds whose figures are still to be trusted (10%: a 1.1x
/// difference between two rounds of the same configuration is as large as many of the effects
/// the profile is meant to show).
pub const SPREAD_LIMIT: f64 = 0.10;

/// Slowest round / fastest round - 1, over the rounds' mean step times; `None` with fewer than two
/// rounds (or a round that took no time), where the spread cannot be known.
pub fn spread(round_ms: &[f64]) -> Option<f64> {
    if round_ms.len() < 2 {
        return None;
    }
    let fastest = round_ms.iter().copied().fold(f64::INFINITY, f64::min);
    let slowest = round_ms.iter().copied().fold(0.0, f64::max);
    (fastest > 0.0 && fastest.is_finite()).then(|| slowest / fastest - 1.0)
}

/// One configuration's rounds: where they were taken and their spread.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundSet {
    /// E.g. "2 threads, unfused, profiler off".
    pub label: String,
    pub spread: Option<f64>,
    /// Rounds with more threads than cores are expected to spread and do not count against trust.
    pub counts: bool,
}

/// The verdict on a run's timings, in the JSON as `trust`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Trust {
    /// [`SPREAD_LIMIT`].
    pub spread_limit: f64,
    /// Rounds per configuration.
    pub rounds: usize,
    /// The largest spread over the configurations that count (none above the cores); `None`
    /// when each configuration ran one round.
    pub largest_spread: Option<f64>,
    /// The configuration with the largest spread.
    pub largest_spread_at: Option<String>,
    /// Every counted configuration had at least two rounds, all within the limit.
    pub trusted: bool,
}

/// The verdict on `sets`, each configuration having run `rounds` rounds.
pub fn assess(rounds: usize, sets: &[RoundSet]) -> Trust {
    let worst = sets
        .iter()
        .filter(|s| s.counts)
        .filter_map(|s| s.spread.map(|x| (x, &s.label)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let known = rounds >= 2 && sets.iter().filter(|s| s.counts).all(|s| s.spread.is_some());
    Trust {
        spread_limit: SPREAD_LIMIT,
        rounds,
        largest_spread: worst.map(|w| w.0),
        largest_spread_at: worst.map(|w| w.1.clone()),
        trusted: known && worst.is_none_or(|w| w.0 <= SPREAD_LIMIT),
    }
}

/// A spread as printed: `12%`, or `-` when unknown.
pub fn shown(spread: Option<f64>) -> String {
    spread.map_or_else(|| "-".to_string(), |s| format!("{:.0}%", 100.0 * s))
}

/// The line printed under the figures: a warning when they cannot be trusted.
pub fn verdict_line(t: &Trust) -> String {
    let limit = format!("{:.0}%", 100.0 * t.spread_limit);
    match (t.largest_spread, &t.largest_spread_at) {
        _ if t.rounds < 2 => "WARNING: one round per configuration, so the spread of these timings is unknown and they cannot be trusted: use --steps 2 or more (5 or more gives 5 rounds)".to_string(),
        (Some(s), Some(at)) if s > t.spread_limit => format!(
            "WARNING: the timings above cannot be trusted: the rounds of {at} spread by {} (slowest round over fastest; limit {limit}), so the machine's load changed during the run. Speed-ups, efficiencies, phase shares and the model's check are load as much as bnconv: rerun on a quieter machine or with more --steps",
            shown(Some(s))
        ),
        (Some(s), Some(at)) => format!(
            "timings consistent: the rounds spread by at most {} ({at}; limit {limit})",
            shown(Some(s))
        ),
        _ => "WARNING: no configuration within the cores has a known spread, so these timings cannot be judged".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(label: &str, spread: Option<f64>, counts: bool) -> RoundSet {
        RoundSet {
            label: label.to_string(),
            spread,
            counts,
        }
    }

    #[test]
    fn spread_is_the_slowest_round_over_the_fastest() {
        assert_eq!(spread(&[10.0, 12.5, 11.0]), Some(0.25));
        assert_eq!(spread(&[4.0, 4.0]), Some(0.0));
        assert_eq!(spread(&[3.0]), None, "one round: unknown");
        assert_eq!(spread(&[]), None);
        assert_eq!(spread(&[0.0, 1.0]), None, "a round of no time");
    }

    #[test]
    fn the_largest_counted_spread_decides_and_is_named() {
        let t = assess(
            5,
            &[
                set("1 thread, fused, profiler off", Some(0.03), true),
                set("2 threads, unfused, profiler off", Some(0.4), true),
                set("4 threads, fused, profiler off", Some(0.9), false),
            ],
        );
        assert_eq!(t.largest_spread, Some(0.4));
        assert_eq!(
            t.largest_spread_at.as_deref(),
            Some("2 threads, unfused, profiler off")
        );
        assert!(!t.trusted);
        let line = verdict_line(&t);
        assert!(
            line.starts_with("WARNING: the timings above cannot be trusted"),
            "{line}"
        );
        assert!(
            line.contains("2 threads, unfused, profiler off spread by 40%"),
            "{line}"
        );
        assert!(line.contains("limit 10%"), "{line}");
    }

    #[test]
    fn spreads_within_the_limit_are_trusted_and_oversubscribed_ones_do_not_count() {
        let t = assess(
            5,
            &[
                set("1 thread, fused, profiler off", Some(0.02), true),
                set("1 thread, fused, profiler on", Some(SPREAD_LIMIT), true),
                set("64 threads, fused, profiler off", Some(3.0), false),
            ],
        );
        assert!(t.trusted);
        assert_eq!(t.largest_spread, Some(SPREAD_LIMIT));
        let line = verdict_line(&t);
        assert!(line.starts_with("timings consistent"), "{line}");
        assert!(!line.contains("WARNING"), "{line}");
    }

    #[test]
    fn one_round_is_never_trusted() {
        let t = assess(1, &[set("1 thread, fused, profiler off", None, true)]);
        assert!(!t.trusted);
        assert_eq!(t.largest_spread, None);
        let line = verdict_line(&t);
        assert!(line.starts_with("WARNING: one round"), "{line}");
    }
}
