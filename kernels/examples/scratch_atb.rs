use bnconv_kernels::matmul::{matmul_at_b, matmul_packed, pack_panels, packed_len};
use std::time::Instant;
fn main() {
    let shapes: &[(&str, usize, usize, usize)] = &[
        // name, k, n, depth  (dW = cols^T dy)
        ("conv09 dW", 288, 36, 512),
        ("conv10 dW", 324, 40, 512),
        ("conv11 dW", 360, 44, 512),
        ("conv13 dW", 432, 52, 256),
        ("conv14 dW", 468, 56, 256),
        ("conv19 dW", 72, 76, 64),
    ];
    for &(name, k, n, depth) in shapes {
        let a: Vec<f32> = (0..depth * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..depth * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0.0f32; k * n];
        let reps = (2e8 / (2.0 * (k * n * depth) as f64)) as usize + 1;
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                matmul_at_b(k, n, depth, &a, k, &b, n, &mut c, n, false);
            }
            best = best.min(t.elapsed().as_secs_f64() / reps as f64);
        }
        println!(
            "{name}: {:.1} us, {:.1} GF/s",
            best * 1e6,
            2.0 * (k * n * depth) as f64 / best / 1e9
        );
    }
    let fwd: &[(&str, usize, usize, usize)] = &[
        ("conv11 fwd", 1024, 44, 360),
        ("conv14 fwd", 256, 56, 468),
        ("conv19 fwd", 64, 76, 72),
        ("conv12 dx", 256, 396, 48),
    ];
    for &(name, m, n, depth) in fwd {
        let a: Vec<f32> = (0..m * depth).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..depth * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut packed = vec![0.0; packed_len(depth, n)];
        pack_panels(depth, n, |p, j| b[p * n + j], &mut packed);
        let mut c = vec![0.0f32; m * n];
        let reps = (2e8 / (2.0 * (m * n * depth) as f64)) as usize + 1;
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                matmul_packed(m, n, depth, &a, depth, &packed, &mut c, n, false, false);
            }
            best = best.min(t.elapsed().as_secs_f64() / reps as f64);
        }
        println!(
            "{name}: {:.1} us, {:.1} GF/s",
            best * 1e6,
            2.0 * (m * n * depth) as f64 / best / 1e9
        );
    }
}
