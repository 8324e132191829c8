//! A confusion matrix: how often each true class was predicted as each class.

use std::fmt;

/// Counts of (true class, predicted class) pairs; rows are the true class, columns the
/// predicted one, so the diagonal holds the correct predictions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfusionMatrix {
    classes: usize,
    /// Row-major `classes x classes`.
    counts: Vec<u64>,
}

/// One off-diagonal cell: `count` images of class `truth` were predicted as `predicted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Confusion {
    pub truth: usize,
    pub predicted: usize,
    pub count: u64,
}

impl fmt::Display for Confusion {
    /// `4 -> 9 (12)`: twelve 4s predicted as 9.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} ({})", self.truth, self.predicted, self.count)
    }
}

impl ConfusionMatrix {
    /// An empty matrix over classes `0..classes`.
    pub fn new(classes: usize) -> ConfusionMatrix {
        ConfusionMatrix {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Records one image of class `truth` predicted as `predicted`.
    ///
    /// # Panics
    /// If either class is not below [`ConfusionMatrix::classes`].
    pub fn add(&mut self, truth: usize, predicted: usize) {
        assert!(
            truth < self.classes && predicted < self.classes,
            "class ({truth}, {predicted}) outside 0..{}",
            self.classes
        );
        self.counts[truth * self.classes + predicted] += 1;
    }

    /// Images of class `truth` predicted as `predicted`.
    pub fn count(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.classes + predicted]
    }

    /// The counts of true class `truth`, by predicted class.
    pub fn row(&self, truth: usize) -> &[u64] {
        &self.counts[truth * self.classes..(truth + 1) * self.classes]
    }

    /// Every image recorded.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Images predicted correctly (the diagonal).
    pub fn correct(&self) -> u64 {
        (0..self.classes).map(|c| self.count(c, c)).sum()
    }

    /// Correct over total, computed as [`crate::train::Evaluation::accuracy`] is (0 when empty).
    pub fn accuracy(&self) -> f32 {
        self.correct() as f32 / self.total().max(1) as f32
    }

    /// The `n` largest off-diagonal cells, largest first (ties by true, then predicted class);
    /// empty cells are left out.
    pub fn most_confused(&self, n: usize) -> Vec<Confusion> {
        let mut cells: Vec<Confusion> = (0..self.classes)
            .flat_map(|truth| (0..self.classes).map(move |predicted| (truth, predicted)))
            .filter(|(t, p)| t != p)
            .map(|(truth, predicted)| Confusion {
                truth,
                predicted,
                count: self.count(truth, predicted),
            })
            .filter(|c| c.count > 0)
            .collect();
        cells.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.truth.cmp(&b.truth))
                .then(a.predicted.cmp(&b.predicted))
        });
        cells.truncate(n);
        cells
    }
}

impl serde::Serialize for ConfusionMatrix {
    /// An array of rows (true class), each an array of counts by predicted class.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.classes))?;
        for truth in 0..self.classes {
            seq.serialize_element(self.row(truth))?;
        }
        seq.end()
    }
}

impl fmt::Display for ConfusionMatrix {
    /// A table with one row per true class, one column per predicted class, then the row's total
    /// and the share of it predicted correctly (recall).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .counts
            .iter()
            .map(|c| c.to_string().len())
            .max()
            .unwrap_or(1)
            .max(3);
        write!(f, "{:>10}", "true\\pred")?;
        for p in 0..self.classes {
            write!(f, " {p:>width$}")?;
        }
        writeln!(f, " {:>7} {:>7}", "total", "recall")?;
        for t in 0..self.classes {
            write!(f, "{t:>10}")?;
            for c in self.row(t) {
                write!(f, " {c:>width$}")?;
            }
            let total: u64 = self.row(t).iter().sum();
            let recall = self.count(t, t) as f64 / total.max(1) as f64;
            writeln!(f, " {total:>7} {recall:>7.4}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> ConfusionMatrix {
        let mut m = ConfusionMatrix::new(3);
        for (t, p) in [
            (0, 0),
            (0, 0),
            (0, 1),
            (1, 1),
            (2, 1),
            (2, 1),
            (2, 0),
            (1, 2),
        ] {
            m.add(t, p);
        }
        m
    }

    #[test]
    fn counts_rows_totals_and_accuracy() {
        let m = example();
        assert_eq!(m.row(0), &[2, 1, 0]);
        assert_eq!(m.row(1), &[0, 1, 1]);
        assert_eq!(m.row(2), &[1, 2, 0]);
        assert_eq!((m.total(), m.correct()), (8, 3));
        assert_eq!(m.accuracy(), 3.0 / 8.0);
        assert_eq!(ConfusionMatrix::new(10).accuracy(), 0.0);
    }

    #[test]
    fn most_confused_is_ordered_by_count_then_classes_and_skips_the_diagonal() {
        let got: Vec<String> = example()
            .most_confused(10)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            ["2 -> 1 (2)", "0 -> 1 (1)", "1 -> 2 (1)", "2 -> 0 (1)"]
        );
        assert_eq!(example().most_confused(1).len(), 1);
    }

    #[test]
    fn json_is_an_array_of_rows_by_true_class() {
        let json = serde_json::to_string(&example()).unwrap();
        assert_eq!(json, "[[2,1,0],[0,1,1],[1,2,0]]");
    }

    #[test]
    fn the_table_has_a_row_per_true_class_with_total_and_recall() {
        let table = example().to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].contains("true\\pred") && lines[0].ends_with("recall"));
        let row2: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(row2, ["2", "1", "2", "0", "3", "0.0000"]);
    }

    #[test]
    #[should_panic(expected = "outside 0..3")]
    fn an_out_of_range_class_is_a_caller_bug() {
        ConfusionMatrix::new(3).add(3, 0);
    }
}
