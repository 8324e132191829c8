//! Scratch timing of the seed network's GEMM shapes (single thread): bnconv tiles vs matrixmultiply.
use bnconv_kernels::gemm::{sgemm, GemmBackend};
use bnconv_kernels::matmul::*;
use std::time::Instant;

fn time<F: FnMut()>(mut f: F) -> f64 {
    f();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let mut sizes = vec![];
    let mut hw = 28usize;
    let mut cin = 1;
    for l in 1..=19 {
        let stride = if l % 3 == 0 { 2 } else { 1 };
        let out = hw.div_ceil(stride);
        sizes.push((l, 64 * out * out, 9 * cin, 4 * l));
        hw = out;
        cin = 4 * l;
    }
    let (mut t_mm, mut t_own) = (0.0, 0.0);
    for &(l, m, k, n) in &sizes {
        let rpi = m / 64;
        let chunk = bnconv_kernels::partition::images_per_chunk(rpi) * rpi;
        let a = vec![0.5f32; m * k];
        let w = vec![0.25f32; k * n];
        let dy = vec![0.1f32; m * n];
        let mut c = vec![0.0f32; m * n];
        let mut dc = vec![0.0f32; m * k];
        let mut dw = vec![0.0f32; k * n];
        let mut pw = vec![0.0f32; packed_len(k, n)];
        let mut pwt = vec![0.0f32; packed_len(n, k)];
        let mm = [
            time(|| {
                sgemm(
                    GemmBackend::MatrixMultiply,
                    false,
                    false,
                    m,
                    n,
                    k,
                    1.0,
                    &a,
                    k,
                    &w,
                    n,
                    0.0,
                    &mut c,
                    n,
                )
            }),
            time(|| {
                sgemm(
                    GemmBackend::MatrixMultiply,
                    false,
                    true,
                    m,
                    k,
                    n,
                    1.0,
                    &dy,
                    n,
                    &w,
                    n,
                    0.0,
                    &mut dc,
                    k,
                )
            }),
            time(|| {
                for c0 in (0..m).step_by(chunk) {
                    let r = chunk.min(m - c0);
                    sgemm(
                        GemmBackend::MatrixMultiply,
                        true,
                        false,
                        k,
                        n,
                        r,
                        1.0,
                        &a[c0 * k..],
                        k,
                        &dy[c0 * n..],
                        n,
                        1.0,
                        &mut dw,
                        n,
                    )
                }
            }),
        ];
        let own = [
            time(|| {
                pack_panels(k, n, |p, j| w[p * n + j], &mut pw);
                matmul_packed(m, n, k, &a, k, &pw, &mut c, n, false, false)
            }),
            time(|| {
                pack_panels(n, k, |p, j| w[j * n + p], &mut pwt);
                matmul_packed(m, k, n, &dy, n, &pwt, &mut dc, k, false, false)
            }),
            time(|| {
                for c0 in (0..m).step_by(chunk) {
                    let r = chunk.min(m - c0);
                    matmul_at_b(k, n, r, &a[c0 * k..], k, &dy[c0 * n..], n, &mut dw, n, true)
                }
            }),
        ];
        let gf = 2.0 * (m * n * k) as f64 / 1e9;
        println!(
            "l{l:2} m{m:6} k{k:4} n{n:3} | mm GF/s fwd {:6.1} bwdd {:6.1} bwdw {:6.1} | own {:6.1} {:6.1} {:6.1}",
            gf / mm[0], gf / mm[1], gf / mm[2], gf / own[0], gf / own[1], gf / own[2]
        );
        t_mm += mm.iter().sum::<f64>();
        t_own += own.iter().sum::<f64>();
    }
    println!(
        "total ms: matrixmultiply {:.2}  own {:.2}",
        t_mm * 1e3,
        t_own * 1e3
    );
}
