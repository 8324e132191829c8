//! Comparing two training runs bit for bit: every result of a `RunReport` except its timing.
// Each test file uses only some of these.
#![allow(dead_code)]

use bnconv_nn::train::RunReport;

/// Every result of a report as bits: per-step losses, log lines, final evaluations, the
/// single-image accuracy and the weights' digest. Timing is left out.
pub fn results(r: &RunReport) -> Vec<(String, Vec<u32>)> {
    let mut out = vec![(
        "step_losses".to_string(),
        r.step_losses.iter().map(|v| v.to_bits()).collect(),
    )];
    for line in &r.log {
        out.push((
            format!("log batch {} {}", line.batch, line.set),
            vec![line.loss.to_bits(), line.accuracy.to_bits()],
        ));
    }
    for (name, e) in [("final_validation", &r.final_validation), ("test", &r.test)] {
        out.push((name.into(), vec![e.loss.to_bits(), e.accuracy.to_bits()]));
    }
    out.push((
        "single_sample_accuracy".into(),
        vec![r.single_sample_accuracy.to_bits()],
    ));
    out.push((
        format!("parameters_sha256 {}", r.parameters_sha256),
        Vec::new(),
    ));
    out
}

/// Fails, naming the first differing result, unless `a` and `b` have the same results bit for bit.
pub fn assert_same_results(a: &RunReport, b: &RunReport, what: &str) {
    let (ra, rb) = (results(a), results(b));
    assert_eq!(ra.len(), rb.len(), "{what}: different numbers of results");
    for ((name_a, bits_a), (name_b, bits_b)) in ra.iter().zip(&rb) {
        assert_eq!(name_a, name_b, "{what}");
        assert_eq!(bits_a, bits_b, "{what}: {name_a} differs");
    }
}
