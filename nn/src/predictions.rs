//! Per-image results of evaluating a set: each image's label and logits, the predicted class, a
//! CSV table of them and the confusion matrix.

use crate::confusion::ConfusionMatrix;
use crate::loss::{argmax, sigmoid};
use crate::mnist::Dataset;
use crate::network::Network;
use crate::train::{evaluate_with, Evaluation};
use std::io::{self, Write};

/// Every image's label and logits (`Dataset::CLASSES` per image), in the set's order.
#[derive(Clone, Debug, PartialEq)]
pub struct Predictions {
    labels: Vec<u8>,
    logits: Vec<f32>,
}

const CLASSES: usize = Dataset::CLASSES;

impl Predictions {
    /// Images of a set of `labels` with their logits, `Dataset::CLASSES` per image, back to back.
    ///
    /// # Panics
    /// If the lengths disagree.
    pub fn new(labels: Vec<u8>, logits: Vec<f32>) -> Predictions {
        assert_eq!(
            logits.len(),
            labels.len() * CLASSES,
            "{CLASSES} logits per label"
        );
        Predictions { labels, logits }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The true class of image `i`.
    pub fn label(&self, i: usize) -> usize {
        usize::from(self.labels[i])
    }

    /// The logits of image `i`, as the network computed them.
    pub fn logits(&self, i: usize) -> &[f32] {
        &self.logits[i * CLASSES..(i + 1) * CLASSES]
    }

    /// The class with the largest logit (the first on ties), as the accuracy counts it.
    pub fn predicted(&self, i: usize) -> usize {
        argmax(self.logits(i))
    }

    /// Images whose predicted class is their label.
    pub fn correct(&self) -> usize {
        (0..self.len())
            .filter(|&i| self.predicted(i) == self.label(i))
            .count()
    }

    /// True class against predicted class for every image.
    pub fn confusion(&self) -> ConfusionMatrix {
        let mut m = ConfusionMatrix::new(CLASSES);
        for i in 0..self.len() {
            m.add(self.label(i), self.predicted(i));
        }
        m
    }

    /// A CSV table with the header `index,label,predicted,logit0,...,logit9` and one row per
    /// image. Logits are written in the shortest form that reads back as the same `f32`.
    pub fn write_csv(&self, w: &mut dyn Write) -> io::Result<()> {
        write!(w, "index,label,predicted")?;
        for c in 0..CLASSES {
            write!(w, ",logit{c}")?;
        }
        writeln!(w)?;
        for i in 0..self.len() {
            write!(w, "{i},{},{}", self.label(i), self.predicted(i))?;
            for x in self.logits(i) {
                write!(w, ",{x}")?;
            }
            writeln!(w)?;
        }
        Ok(())
    }
}

/// [`crate::train::evaluate`] that also keeps every image's logits. The loss and accuracy are
/// those `evaluate` gives; the predictions agree with the accuracy.
pub fn evaluate_predictions(
    net: &mut Network,
    data: &Dataset,
    batch: usize,
) -> (Evaluation, Predictions) {
    let mut logits = vec![0.0; data.len() * CLASSES];
    let evaluation = evaluate_with(net, data, batch, |first, batch_logits| {
        logits[first * CLASSES..first * CLASSES + batch_logits.len()].copy_from_slice(batch_logits);
    });
    // Under several processes each computed its part of the set: every rank gets them all.
    net.exec()
        .team
        .share_parts(&mut logits, data.len(), CLASSES);
    (evaluation, Predictions::new(data.labels().to_vec(), logits))
}

/// The `k` classes with the largest logits, largest first (ties: the lower class first, as
/// [`argmax`]), each with `sigmoid(logit)`: the probability of that class the network was
/// trained to output (sigmoid cross-entropy per class, so the values need not sum to 1).
pub fn top_classes(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    // Stable sort: equal logits keep the lower class first.
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order
        .into_iter()
        .take(k)
        .map(|c| (c, sigmoid(logits[c])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Predictions {
        let mut logits = vec![0.0; 3 * CLASSES];
        logits[3] = 2.5; // image 0 (label 3): predicted 3
        logits[CLASSES + 7] = 1.0; // image 1 (label 1): predicted 7
        logits[2 * CLASSES + 4] = -0.125; // image 2 (label 0): all others 0 -> predicted 0 (first max)
        logits[2 * CLASSES] = 1e-30;
        Predictions::new(vec![3, 1, 0], logits)
    }

    #[test]
    fn predicted_classes_correct_count_and_confusion_agree() {
        let p = example();
        assert_eq!(
            (0..3).map(|i| p.predicted(i)).collect::<Vec<_>>(),
            [3, 7, 0]
        );
        assert_eq!(p.correct(), 2);
        let m = p.confusion();
        assert_eq!((m.total(), m.correct()), (3, 2));
        assert_eq!(m.count(1, 7), 1);
    }

    #[test]
    fn csv_has_the_header_and_logits_that_read_back_exactly() {
        let p = example();
        let mut out = Vec::new();
        p.write_csv(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "index,label,predicted,logit0,logit1,logit2,logit3,logit4,logit5,logit6,logit7,logit8,logit9"
        );
        for (i, line) in lines.enumerate() {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 13, "{line}");
            assert_eq!(fields[0], i.to_string());
            assert_eq!(fields[1], p.label(i).to_string());
            assert_eq!(fields[2], p.predicted(i).to_string());
            let logits: Vec<f32> = fields[3..].iter().map(|f| f.parse().unwrap()).collect();
            assert_eq!(logits, p.logits(i), "{line}");
        }
        assert_eq!(text.lines().count(), 4);
    }

    #[test]
    fn top_classes_are_ordered_with_sigmoid_probabilities() {
        let logits = [0.0, 3.0, -1.0, 3.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let top = top_classes(&logits, 3);
        assert_eq!(
            top.iter().map(|t| t.0).collect::<Vec<_>>(),
            [1, 3, 4],
            "ties keep the lower class first, like argmax"
        );
        assert_eq!(top[0].0, argmax(&logits));
        assert!((top[0].1 - 0.952_574_1).abs() < 1e-6, "{}", top[0].1);
        assert!((top[2].1 - 0.731_058_6).abs() < 1e-6, "{}", top[2].1);
    }
}
