//! `bnconv profile`'s figures: the profiler's totals turned into wall milliseconds per step for
//! each (layer, phase), the fused/unfused comparison, and the printed tables.
//!
//! Wall time per row. Caller-level scopes (BN passes, dense GEMMs, Adam, ...) are wall time as
//! measured. Scopes inside rayon chunks (im2col, conv GEMMs, col2im) are thread time, summed over
//! threads. Each layer call (forward or backward) is also timed on the wall by the network; the
//! part of it its caller-level scopes do not cover is the layer's parallel work plus its
//! bookkeeping, and is split among its in-chunk phases in proportion to their thread time (a
//! layer without in-chunk phases files it under `other`). Step-level `other` is the step's wall
//! time that no layer and no step scope covers. So the rows of one step add up exactly to its
//! measured wall time.
//!
//! Over the profiled steps each row reports its median (printed; robust to a step that another
//! process preempted) and its mean (in the JSON; the means of the rows add up to the mean step).

use bnconv_kernels::runtime::profile::{Pass, Phase, RowTotals, Snapshot, STEP_ROW};
use serde::Serialize;

/// Attributed wall time of one training step per (layer, phase), in nanoseconds.
#[derive(Clone, Debug)]
pub struct Attribution {
    /// `layers[i][phase as usize]`.
    pub layers: Vec<[f64; Phase::COUNT]>,
    /// Step-level work: data, loss, Adam, and `other` (outside every layer and step scope).
    pub step: [f64; Phase::COUNT],
    /// Time the scopes claimed beyond the span that encloses them (a layer pass's caller-level
    /// scopes beyond the pass, the layers and step scopes beyond the step), before `other` is
    /// clamped at 0. Nested scopes of one clock cannot exceed their span: anything above 0
    /// means a scope is counted twice and the rows no longer describe the step.
    pub overcount_ns: f64,
}

/// Turns one step's profiler totals (`rows` as in [`Snapshot::rows`]) into wall time per
/// (layer, phase) for the first `layers` layers, given the step's measured wall time.
pub fn attribute(rows: &[RowTotals], layers: usize, step_wall_ns: f64) -> Attribution {
    let mut out = vec![[0.0; Phase::COUNT]; layers];
    let mut covered = 0.0;
    let mut overcount = 0.0;
    for (row, cells) in rows.iter().zip(out.iter_mut()) {
        for pass in [Pass::Forward, Pass::Backward] {
            let layer_ns = row.layer_ns[pass as usize] as f64;
            covered += layer_ns;
            let in_pass = |p: &&Phase| p.pass() == Some(pass);
            let wall: f64 = Phase::ALL
                .iter()
                .filter(in_pass)
                .map(|&p| row.wall_ns[p as usize] as f64)
                .sum();
            let thread: f64 = Phase::ALL
                .iter()
                .filter(in_pass)
                .map(|&p| row.thread_ns[p as usize] as f64)
                .sum();
            overcount += (wall - layer_ns).max(0.0);
            let rest = (layer_ns - wall).max(0.0);
            for &p in Phase::ALL.iter().filter(in_pass) {
                let i = p as usize;
                cells[i] = row.wall_ns[i] as f64;
                if thread > 0.0 {
                    cells[i] += rest * row.thread_ns[i] as f64 / thread;
                }
            }
            if thread == 0.0 {
                cells[Phase::Other as usize] += rest;
            }
        }
    }
    let mut step = [0.0; Phase::COUNT];
    for p in [Phase::Data, Phase::Loss, Phase::Optimizer] {
        step[p as usize] = rows[STEP_ROW].wall_ns[p as usize] as f64;
        covered += step[p as usize];
    }
    overcount += (covered - step_wall_ns).max(0.0);
    step[Phase::Other as usize] = (step_wall_ns - covered).max(0.0);
    Attribution {
        layers: out,
        step,
        overcount_ns: overcount,
    }
}

/// Scopes closed in one snapshot (phase scopes and layer scopes).
pub fn scopes(s: &Snapshot) -> u64 {
    s.rows
        .iter()
        .map(|r| r.calls.iter().sum::<u64>() + r.layer_calls.iter().sum::<u64>())
        .sum()
}

/// Every profiled step of one path.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    pub steps: Vec<Attribution>,
    /// Measured wall time of each step, ns.
    pub step_ns: Vec<f64>,
    /// Thread ns per (layer, phase), summed over the steps (`STEP_ROW` rows).
    pub thread_ns: Vec<[f64; Phase::COUNT]>,
    /// Scopes closed per (layer, phase), summed over the steps.
    pub calls: Vec<[u64; Phase::COUNT]>,
    pub scopes: u64,
}

impl Samples {
    /// Adds one step: its profiler snapshot and measured wall time.
    pub fn push(&mut self, s: &Snapshot, layers: usize, step_ns: f64) {
        self.steps.push(attribute(&s.rows, layers, step_ns));
        self.step_ns.push(step_ns);
        self.thread_ns.resize(STEP_ROW + 1, [0.0; Phase::COUNT]);
        self.calls.resize(STEP_ROW + 1, [0; Phase::COUNT]);
        for (r, row) in s.rows.iter().enumerate() {
            for p in 0..Phase::COUNT {
                self.thread_ns[r][p] += row.thread_ns[p] as f64;
                self.calls[r][p] += row.calls[p];
            }
        }
        self.scopes += scopes(s);
    }

    fn len(&self) -> f64 {
        self.steps.len().max(1) as f64
    }
}

/// Mean and median of some values (0 for none).
pub fn mean_median(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (mean, median)
}

/// Ratio `unfused / fused` as a speed-up, `None` when it has no meaning.
pub fn speedup(unfused: f64, fused: f64) -> Option<f64> {
    (fused > 0.0 && unfused > 0.0).then(|| unfused / fused)
}

#[derive(Clone, Debug, Serialize)]
pub struct CellOut {
    /// Median over the profiled steps of the attributed wall milliseconds.
    pub ms_per_step: f64,
    /// `ms_per_step` / the median profiled step time.
    pub share: f64,
    /// Mean over the profiled steps (the means of all rows add up to the mean step time).
    pub mean_ms_per_step: f64,
    /// `mean_ms_per_step` / the mean profiled step time.
    pub mean_share: f64,
    /// Mean thread milliseconds per step (in-chunk phases only; 0 for caller-level ones).
    pub thread_ms_per_step: f64,
    pub calls_per_step: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RowOut {
    pub layer: String,
    /// Position in the network, `None` for step-level work.
    pub layer_index: Option<usize>,
    pub phase: &'static str,
    pub fused: CellOut,
    pub unfused: CellOut,
    /// Unfused time / fused time, medians (above 1: the fused path is faster).
    pub speedup: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerOut {
    pub layer: String,
    pub layer_index: Option<usize>,
    /// True for convolution and dense layers (GEMM work).
    pub gemm: bool,
    /// Median over steps of the layer's time (all its phases).
    pub fused_ms_per_step: f64,
    pub unfused_ms_per_step: f64,
    pub fused_mean_ms_per_step: f64,
    pub unfused_mean_ms_per_step: f64,
    pub speedup: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PhaseOut {
    pub phase: &'static str,
    /// Median over steps of the phase's time summed over every layer.
    pub fused_ms_per_step: f64,
    pub unfused_ms_per_step: f64,
    pub fused_share: f64,
    pub unfused_share: f64,
    pub fused_mean_ms_per_step: f64,
    pub unfused_mean_ms_per_step: f64,
    pub speedup: Option<f64>,
}

/// The per-row, per-layer and per-phase tables of both paths.
#[derive(Clone, Debug, Serialize)]
pub struct Breakdown {
    pub rows: Vec<RowOut>,
    pub layers: Vec<LayerOut>,
    pub phases: Vec<PhaseOut>,
}

fn is_gemm(p: Phase) -> bool {
    matches!(
        p,
        Phase::Im2col
            | Phase::ConvGemmForward
            | Phase::Col2im
            | Phase::ConvGemmBackwardData
            | Phase::ConvGemmBackwardWeights
            | Phase::DenseForward
            | Phase::DenseBackward
    )
}

/// The attributed ns of one step for a row (`None`: the step row) and phase.
fn cell(a: &Attribution, row: Option<usize>, p: Phase) -> f64 {
    match row {
        Some(i) => a.layers[i][p as usize],
        None => a.step[p as usize],
    }
}

/// Both paths side by side; `names[i]` names layer `i`.
pub fn breakdown(names: &[String], fused: &Samples, unfused: &Samples) -> Breakdown {
    let paths = [fused, unfused];
    let step = paths.map(|s| mean_median(s.step_ns.iter().copied()));
    let ms = |ns: (f64, f64)| (ns.0 / 1e6, ns.1 / 1e6);
    let out_cell = |k: usize, row: Option<usize>, p: Phase| {
        let s = paths[k];
        let (mean, median) = ms(mean_median(s.steps.iter().map(|a| cell(a, row, p))));
        let r = row.unwrap_or(STEP_ROW);
        CellOut {
            ms_per_step: median,
            share: median * 1e6 / step[k].1.max(f64::MIN_POSITIVE),
            mean_ms_per_step: mean,
            mean_share: mean * 1e6 / step[k].0.max(f64::MIN_POSITIVE),
            thread_ms_per_step: s.thread_ns.get(r).map_or(0.0, |t| t[p as usize]) / 1e6 / s.len(),
            calls_per_step: s.calls.get(r).map_or(0, |c| c[p as usize]) as f64 / s.len(),
        }
    };
    let (mut rows, mut layers) = (Vec::new(), Vec::new());
    for row in (0..names.len()).map(Some).chain([None]) {
        let name = row.map_or("step".to_string(), |i| names[i].clone());
        let present: Vec<Phase> = Phase::ALL
            .into_iter()
            .filter(|&p| {
                paths
                    .iter()
                    .any(|s| s.steps.iter().any(|a| cell(a, row, p) > 0.0))
            })
            .collect();
        for &p in &present {
            let (f, u) = (out_cell(0, row, p), out_cell(1, row, p));
            rows.push(RowOut {
                layer: name.clone(),
                layer_index: row,
                phase: p.name(),
                speedup: speedup(u.ms_per_step, f.ms_per_step),
                fused: f,
                unfused: u,
            });
        }
        let total = |k: usize| {
            ms(mean_median(
                paths[k]
                    .steps
                    .iter()
                    .map(|a| present.iter().map(|&p| cell(a, row, p)).sum()),
            ))
        };
        let (f, u) = (total(0), total(1));
        layers.push(LayerOut {
            layer: name,
            layer_index: row,
            gemm: present.iter().any(|&p| is_gemm(p)),
            fused_ms_per_step: f.1,
            unfused_ms_per_step: u.1,
            fused_mean_ms_per_step: f.0,
            unfused_mean_ms_per_step: u.0,
            speedup: speedup(u.1, f.1),
        });
    }
    let phases = Phase::ALL
        .into_iter()
        .filter_map(|p| {
            let total = |k: usize| {
                ms(mean_median(paths[k].steps.iter().map(|a| {
                    a.layers.iter().map(|l| l[p as usize]).sum::<f64>() + a.step[p as usize]
                })))
            };
            let (f, u) = (total(0), total(1));
            (f.0 > 0.0 || u.0 > 0.0).then(|| PhaseOut {
                phase: p.name(),
                fused_ms_per_step: f.1,
                unfused_ms_per_step: u.1,
                fused_share: f.1 * 1e6 / step[0].1.max(f64::MIN_POSITIVE),
                unfused_share: u.1 * 1e6 / step[1].1.max(f64::MIN_POSITIVE),
                fused_mean_ms_per_step: f.0,
                unfused_mean_ms_per_step: u.0,
                speedup: speedup(u.1, f.1),
            })
        })
        .collect();
    Breakdown {
        rows,
        layers,
        phases,
    }
}

fn fmt_speedup(s: Option<f64>) -> String {
    s.map_or("-".to_string(), |s| format!("{s:.2}x"))
}

/// Rows below this many ms/step in both paths are left out of the printed table (not the JSON).
pub const PRINT_MIN_MS: f64 = 0.005;

/// The per-layer, per-phase table, then totals per phase.
pub fn print_breakdown(b: &Breakdown) {
    outln!(
        "{:<8} {:<22} {:>10} {:>7} {:>11} {:>7} {:>9}",
        "layer",
        "phase",
        "fused ms",
        "share",
        "unfused ms",
        "share",
        "speed-up"
    );
    let mut last = String::new();
    let mut hidden = 0;
    for r in &b.rows {
        if r.fused.ms_per_step < PRINT_MIN_MS && r.unfused.ms_per_step < PRINT_MIN_MS {
            hidden += 1;
            continue;
        }
        let layer = if r.layer == last { "" } else { &r.layer };
        outln!(
            "{:<8} {:<22} {:>10.3} {:>6.1}% {:>11.3} {:>6.1}% {:>9}",
            layer,
            r.phase,
            r.fused.ms_per_step,
            100.0 * r.fused.share,
            r.unfused.ms_per_step,
            100.0 * r.unfused.share,
            fmt_speedup(r.speedup),
        );
        last.clone_from(&r.layer);
    }
    if hidden > 0 {
        outln!("({hidden} rows under {PRINT_MIN_MS} ms/step in both paths are only in the JSON)");
    }
    outln!(
        "{:-<8} {:-<22} {:->10} {:->7} {:->11} {:->7} {:->9}",
        "",
        "",
        "",
        "",
        "",
        "",
        ""
    );
    for p in &b.phases {
        outln!(
            "{:<8} {:<22} {:>10.3} {:>6.1}% {:>11.3} {:>6.1}% {:>9}",
            "all",
            p.phase,
            p.fused_ms_per_step,
            100.0 * p.fused_share,
            p.unfused_ms_per_step,
            100.0 * p.unfused_share,
            fmt_speedup(p.speedup),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(t: &mut [u64; Phase::COUNT], p: Phase, v: u64) {
        t[p as usize] = v;
    }

    fn one_step() -> Vec<RowTotals> {
        let mut rows = vec![RowTotals::default(); STEP_ROW + 1];
        // Layer 0 (a conv): forward 10 ms of wall, im2col 6 ms and GEMM 12 ms of thread time on
        // two threads; backward 20 ms of wall, of which a 2 ms caller-level reduction.
        let r = &mut rows[0];
        r.layer_ns = [10_000_000, 20_000_000];
        ns(&mut r.thread_ns, Phase::Im2col, 6_000_000);
        ns(&mut r.thread_ns, Phase::ConvGemmForward, 12_000_000);
        ns(&mut r.thread_ns, Phase::ConvGemmBackwardWeights, 9_000_000);
        ns(&mut r.thread_ns, Phase::ConvGemmBackwardData, 18_000_000);
        ns(&mut r.wall_ns, Phase::ConvGemmBackwardWeights, 2_000_000);
        ns(&mut r.calls, Phase::Im2col, 4);
        // Layer 1 (BN): forward 3 ms of wall, 1 ms stats + 1.5 ms apply measured.
        let r = &mut rows[1];
        r.layer_ns = [3_000_000, 0];
        ns(&mut r.wall_ns, Phase::BnStats, 1_000_000);
        ns(&mut r.wall_ns, Phase::BnApply, 1_500_000);
        // Step: 1 ms loss, 4 ms Adam.
        let r = &mut rows[STEP_ROW];
        ns(&mut r.wall_ns, Phase::Loss, 1_000_000);
        ns(&mut r.wall_ns, Phase::Optimizer, 4_000_000);
        rows
    }

    #[test]
    fn layer_wall_time_is_split_by_thread_time_and_rows_add_up_to_the_step() {
        let a = attribute(&one_step(), 2, 40_000_000.0);
        let ms = |row: usize, p: Phase| a.layers[row][p as usize] / 1e6;
        assert!((ms(0, Phase::Im2col) - 10.0 / 3.0).abs() < 1e-9);
        assert!((ms(0, Phase::ConvGemmForward) - 20.0 / 3.0).abs() < 1e-9);
        // Backward: 18 ms beyond the reduction, split 1:2; the reduction stays with weights.
        assert!((ms(0, Phase::ConvGemmBackwardWeights) - (2.0 + 6.0)).abs() < 1e-9);
        assert!((ms(0, Phase::ConvGemmBackwardData) - 12.0).abs() < 1e-9);
        assert_eq!(ms(0, Phase::Other), 0.0);
        assert!(
            (ms(1, Phase::Other) - 0.5).abs() < 1e-9,
            "BN's uncovered time"
        );
        let other = a.step[Phase::Other as usize] / 1e6;
        assert!((other - 2.0).abs() < 1e-9, "40 - 30 - 3 - 5 = {other}");
        assert_eq!(a.overcount_ns, 0.0, "the scopes nest");
        let total: f64 = a.layers.iter().flatten().sum::<f64>() + a.step.iter().sum::<f64>();
        assert!(
            (total - 40e6).abs() < 1e-3,
            "rows add up to the step: {total}"
        );
    }

    /// Scopes claiming more than their span (a double count) still give rows that add up to the
    /// step, because `other` is clamped at 0; the overcount is what shows it.
    #[test]
    fn scopes_beyond_their_span_are_reported_as_overcount() {
        let mut rows = one_step();
        // BN's caller-level scopes now claim 4 ms of a 3 ms pass.
        rows[1].wall_ns[Phase::BnApply as usize] = 3_000_000;
        let a = attribute(&rows, 2, 40_000_000.0);
        assert!((a.overcount_ns - 1e6).abs() < 1e-3, "{}", a.overcount_ns);
        // The step: 30 + 3 + 5 ms of a 36 ms step.
        let a = attribute(&one_step(), 2, 36_000_000.0);
        assert_eq!(a.step[Phase::Other as usize], 0.0, "clamped");
        assert!((a.overcount_ns - 2e6).abs() < 1e-3, "{}", a.overcount_ns);
    }

    #[test]
    fn breakdown_takes_medians_over_steps_and_means_add_up() {
        let names = vec!["conv01".to_string(), "bn01".to_string()];
        let mut fused = Samples::default();
        let snap = Snapshot { rows: one_step() };
        for _ in 0..3 {
            fused.push(&snap, 2, 40e6);
        }
        // A step that was interrupted: everything twice as long. The median ignores it.
        let mut slow = one_step();
        for r in &mut slow {
            r.layer_ns = r.layer_ns.map(|v| 2 * v);
            r.wall_ns = r.wall_ns.map(|v| 2 * v);
            r.thread_ns = r.thread_ns.map(|v| 2 * v);
        }
        fused.push(&Snapshot { rows: slow }, 2, 80e6);
        let b = breakdown(&names, &fused, &fused);
        assert_eq!(b.layers.len(), 3);
        assert!(b.layers[0].gemm && !b.layers[1].gemm && !b.layers[2].gemm);
        assert!(
            (b.layers[0].fused_ms_per_step - 30.0).abs() < 1e-9,
            "median"
        );
        assert!(
            (b.layers[0].fused_mean_ms_per_step - 37.5).abs() < 1e-9,
            "mean"
        );
        let mean_share: f64 = b.rows.iter().map(|r| r.fused.mean_share).sum();
        assert!((mean_share - 1.0).abs() < 1e-9, "{mean_share}");
        let im2col = b.rows.iter().find(|r| r.phase == "im2col").unwrap();
        assert_eq!(im2col.fused.calls_per_step, 4.0);
        assert!((im2col.fused.thread_ms_per_step - 7.5).abs() < 1e-9);
        assert!(b.rows.iter().all(|r| r.speedup.is_none_or(|s| s == 1.0)));
        assert!(b.phases.iter().any(|p| p.phase == "adam"));
    }
}
