//! Times the golden model's hot kernels on the MNIST shapes (a development aid; numbers in
//! docs/performance.md come from `dfforge bench`).
use dfforge::config::Config;
use dfforge::fixed::kernels::{gemm_exact_into, GemmScratch, IMat};
use dfforge::fixed::model::UpdateUnit;
use dfforge::fixed::walk::LaneWalk;
use std::time::Instant;

fn mat(rows: usize, cols: usize, bits: u32, seed: u64) -> IMat {
    let mut s = seed;
    let data = (0..rows * cols)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as i64 % (1 << (bits - 1))) as i32
        })
        .collect();
    IMat { rows, cols, data }
}

fn time(name: &str, macs: f64, mut f: impl FnMut()) {
    f();
    let n = 20;
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    let s = t.elapsed().as_secs_f64() / n as f64;
    println!(
        "{name:>28}: {:8.3} ms  {:6.1} GMAC/s",
        s * 1e3,
        macs / s / 1e9
    );
}

fn main() {
    let mut scratch = GemmScratch::default();
    let mut out = Vec::new();
    for b in [8usize, 64, 256] {
        let x0 = mat(b, 784, 12, 1);
        let w1 = mat(500, 784, 14, 2);
        let x1 = mat(10 * b, 500, 12, 3);
        let w2 = mat(500, 500, 14, 4);
        let d2 = mat(10 * b, 500, 15, 5);
        let e = mat(b, 500, 15, 6);
        time(
            &format!("b{b} fwd1 x0·W1ᵀ"),
            (b * 784 * 500) as f64,
            || gemm_exact_into(&x0, false, &w1, true, &mut out, &mut scratch),
        );
        time(
            &format!("b{b} fwd2 x1·W2ᵀ"),
            (10 * b * 500 * 500) as f64,
            || gemm_exact_into(&x1, false, &w2, true, &mut out, &mut scratch),
        );
        time(
            &format!("b{b} grad2 δᵀ·x1"),
            (10 * b * 500 * 500) as f64,
            || gemm_exact_into(&d2, true, &x1, false, &mut out, &mut scratch),
        );
        time(
            &format!("b{b} grad1 eᵀ·x0"),
            (b * 784 * 500) as f64,
            || gemm_exact_into(&e, true, &x0, false, &mut out, &mut scratch),
        );
    }
    let f = Config::builtin().fixed;
    let mut u = UpdateUnit::with_lanes(
        &f,
        dfforge::fixed::LearningRate::Mul {
            value: 200,
            frac: 16,
        },
        12,
    )
    .unwrap();
    for (rows, cols) in [(500usize, 784usize), (500, 500)] {
        let mut w = mat(rows, cols, 14, 7).data;
        let g: Vec<i64> = mat(rows, cols, 30, 8)
            .data
            .iter()
            .map(|&v| i64::from(v))
            .collect();
        let walk = LaneWalk::tiled((rows, cols), (12, 12), |o, _| o % 12, 12);
        time(&format!("walk {rows}x{cols}"), (rows * cols) as f64, || {
            u.update_walk(&mut w, &g, &walk, 32, f.weight)
        });
        time(
            &format!("tiled {rows}x{cols}"),
            (rows * cols) as f64,
            || {
                u.update_tiled(
                    &mut w,
                    &g,
                    (rows, cols),
                    (12, 12),
                    |o, _| o % 12,
                    32,
                    f.weight,
                )
            },
        );
    }
}
