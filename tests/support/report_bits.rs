//! Comparing two training runs bit for bit: every result of a `RunReport` except its timing, or
//! any trace of named values.
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
    assert_same_bits(&results(a), &results(b), what);
}

/// Fails unless two traces of named values (results, tensors) are the same bit for bit, naming
/// the first value that differs and in how many of its elements.
pub fn assert_same_bits(a: &[(String, Vec<u32>)], b: &[(String, Vec<u32>)], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: different numbers of values");
    for ((name_a, va), (name_b, vb)) in a.iter().zip(b) {
        assert_eq!(name_a, name_b, "{what}");
        assert_eq!(va.len(), vb.len(), "{what}: {name_a} sizes");
        let differing = va.iter().zip(vb).filter(|(x, y)| x != y).count();
        assert_eq!(
            differing,
            0,
            "{what}: {name_a} differs in {differing} of {} values",
            va.len()
        );
    }
}
