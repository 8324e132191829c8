//! Scratch: per-layer conv forward / backward time at batch 64 on the current rayon pool.
use bnconv_kernels::conv::{conv_backward, conv_forward, ConvWorkspace};
use bnconv_kernels::{ConvGeometry, GemmBackend};
use std::time::Instant;

fn main() {
    let gemm = GemmBackend::from_name(&std::env::args().nth(1).unwrap_or("bnconv".into())).unwrap();
    let threads: usize = std::env::args().nth(2).map_or(1, |s| s.parse().unwrap());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut hw = 28;
    let mut cin = 1;
    let (mut tf, mut tb) = (0.0, 0.0);
    pool.install(|| {
    let last: usize = std::env::var("LAYERS").map_or(19, |s| s.parse().unwrap());
    for l in 1..=last {
        let stride = if l % 3 == 0 { 2 } else { 1 };
        let g = ConvGeometry::same(64, hw, hw, cin, 4 * l, stride);
        let x = vec![0.3f32; g.input_len()];
        let w = vec![0.1f32; g.weight_len()];
        let dy = vec![0.2f32; g.output_len()];
        let mut y = vec![0.0; g.output_len()];
        let mut dx = vec![0.0; g.input_len()];
        let mut dw = vec![0.0; g.weight_len()];
        let mut ws = ConvWorkspace::default();
        let reps = 20;
        let (mut bf, mut bb, mut bw) = (f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..reps {
            let t = Instant::now();
            conv_forward(gemm, &g, &x, &w, None, &mut ws, &mut y);
            let f = t.elapsed().as_secs_f64();
            let t = Instant::now();
            conv_backward(gemm, &g, &mut ws, &w, &dy, if l > 1 { Some(&mut dx) } else { None }, &mut dw, None);
            let b = t.elapsed().as_secs_f64();
            conv_forward(gemm, &g, &x, &w, None, &mut ws, &mut y);
            let t = Instant::now();
            conv_backward(gemm, &g, &mut ws, &w, &dy, None, &mut dw, None);
            bw = bw.min(t.elapsed().as_secs_f64());
            bf = bf.min(f);
            bb = bb.min(b);
        }
        let fl = g.forward_flops() as f64;
        println!("l{l:2} {:3}x{:<3} cin{cin:3} cout{:3} fwd {:7.3} ms ({:5.1} GF/s)  dW {:7.3} ms ({:5.1})  dx {:7.3} ms ({:5.1})",
            g.out_h, g.out_w, 4*l, bf*1e3, fl/bf/1e9, bw*1e3, fl/bw/1e9, (bb-bw)*1e3, fl/(bb-bw)/1e9);
        tf += bf; tb += bb;
        hw = g.out_h; cin = 4 * l;
    }
    });
    println!("total fwd {:.2} ms bwd {:.2} ms", tf * 1e3, tb * 1e3);
}
