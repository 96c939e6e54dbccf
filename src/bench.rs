//! `dfforge bench`: training speed of every learner on both software backends, at several
//! batch sizes, in one run, against the machine's peak measured in the same run.
//!
//! Each (batch, backend, learner) cell trains one pass over the same samples `repeats` times;
//! the repeats of all cells are interleaved (round robin), so slow phases of a shared machine
//! hit every cell alike, and the median is reported. Arithmetic rates count the GEMM work of
//! the step (2 operations per multiply-add, [`step_macs`]); the peak is measured by
//! [`measure_peak`]: FP32 FMA throughput on every thread and, for the integer model, the i16
//! multiply-adds its GEMM uses (`vpdpwssd` with AVX-512 VNNI, else `vpmaddwd`).

use crate::config::{Config, Learner as Kind, Negatives, Optimizer, Scheme};
use crate::data::Dataset;
use crate::fixed::baselines::make_fixed_learner;
use crate::float::{make_learner, Learner};
use crate::train::{train, RunOptions};
use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;
use std::time::Instant;

/// The machine's arithmetic peak, measured.
#[derive(Clone, Debug, Serialize)]
pub struct Peak {
    pub threads: usize,
    /// FP32 GFLOP/s (2 per fused multiply-add) on all threads.
    pub f32_gflops: f64,
    /// GOP/s of i16 multiply-adds into i32 (2 per multiply-add) on all threads.
    pub i16_gops: f64,
    /// Which instructions the kernels used.
    pub isa: String,
}

/// One cell of the table.
#[derive(Clone, Debug, Serialize)]
pub struct BenchCell {
    pub backend: String,
    pub algorithm: String,
    pub batch: usize,
    pub samples: usize,
    /// Median over the repeats.
    pub samples_per_second: f64,
    /// Every repeat, in run order.
    pub runs: Vec<f64>,
    /// GEMM multiply-adds per training sample.
    pub macs_per_sample: f64,
    /// 2 · MACs · samples/s, in 1e9/s (GFLOP/s for float, GOP/s for fixed).
    pub gops: f64,
    /// `gops` over the backend's measured peak.
    pub fraction_of_peak: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub dfforge_version: String,
    pub date_unix: u64,
    pub cpu: String,
    pub peak: Peak,
    pub dataset: String,
    pub network: Vec<usize>,
    pub repeats: usize,
    pub cells: Vec<BenchCell>,
    pub config: Config,
}

/// What to measure.
pub struct BenchPlan {
    pub batches: Vec<usize>,
    pub backends: Vec<String>,
    pub learners: Vec<Kind>,
    pub repeats: usize,
}

/// Multiply-adds of the GEMMs of one training sample (the elementwise work is not counted).
pub fn step_macs(cfg: &Config) -> f64 {
    let w = cfg.network.widths();
    let c = cfg.network.classes;
    let layer = |l: usize| (w[l] * w[l + 1]) as f64;
    let nl = w.len() - 1;
    match cfg.algorithm.name {
        Kind::Df => {
            let k = match cfg.algorithm.negatives {
                Negatives::Random => cfg.algorithm.negatives_count + 1,
                _ => c,
            } as f64;
            // Layer 1 once per sample (forward and weight gradient), the others per hypothesis.
            let mut m = 2.0 * layer(0);
            for l in 1..nl {
                m += 2.0 * k * layer(l);
            }
            if cfg.algorithm.scheme != Scheme::Df {
                // The cross term of every layer below the last.
                for l in 1..nl {
                    m += k * layer(l);
                }
            }
            m
        }
        // Positive and negative rows: forward and weight gradient per layer.
        Kind::Ff => (0..nl).map(|l| 4.0 * layer(l)).sum(),
        Kind::Bp => {
            let head = (w[nl] * c) as f64;
            let all: f64 = (0..nl).map(layer).sum::<f64>() + head;
            // Forward, weight gradients, and the errors sent down through every layer but
            // the first.
            3.0 * all - layer(0)
        }
    }
}

/// Median of a non-empty slice.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Run every cell of `plan` on `ds` (its train split, one pass per run).
pub fn run(cfg: &Config, ds: &Dataset, plan: &BenchPlan) -> Result<BenchReport> {
    let peak = measure_peak();
    eprintln!(
        "peak on {} threads ({}): {:.1} GFLOP/s f32, {:.1} GOP/s i16",
        peak.threads, peak.isa, peak.f32_gflops, peak.i16_gops
    );
    struct Cell {
        cfg: Config,
        backend: String,
        runs: Vec<f64>,
    }
    let mut cells = Vec::new();
    for &batch in &plan.batches {
        for backend in &plan.backends {
            for &alg in &plan.learners {
                // Each learner with its own learning rate, all with plain SGD (the
                // fixed-point models support no other).
                let mut c = cfg.clone();
                c.set_learner(alg);
                c.training.optimizer = Optimizer::Sgd;
                c.training.batch = batch;
                c.training.epochs = 1;
                c.validate()?;
                cells.push(Cell {
                    cfg: c,
                    backend: backend.clone(),
                    runs: Vec::new(),
                });
            }
        }
    }
    for rep in 0..plan.repeats {
        // Alternate the direction of the sweep so no cell always runs first.
        let order: Vec<usize> = if rep % 2 == 0 {
            (0..cells.len()).collect()
        } else {
            (0..cells.len()).rev().collect()
        };
        for i in order {
            let cell = &mut cells[i];
            let mut l: Box<dyn Learner> = match cell.backend.as_str() {
                "float" => make_learner(&cell.cfg),
                "fixed" => make_fixed_learner(&cell.cfg)?,
                b => anyhow::bail!("bench runs the software backends float and fixed, not {b}"),
            };
            let opts = RunOptions {
                // Speed is measured here, not learning: a diverging loss is no reason to stop.
                check_divergence: false,
                ..RunOptions::from_config(&cell.cfg)
            };
            let out = train(l.as_mut(), ds, &opts)?;
            cell.runs.push(out.samples_per_second);
        }
        eprintln!("repeat {}/{} done", rep + 1, plan.repeats);
    }
    let cells = cells
        .into_iter()
        .map(|c| {
            let sps = median(&c.runs);
            let macs = step_macs(&c.cfg);
            let gops = 2.0 * macs * sps / 1e9;
            let p = if c.backend == "fixed" {
                peak.i16_gops
            } else {
                peak.f32_gflops
            };
            BenchCell {
                algorithm: c.cfg.algorithm.name.to_string(),
                backend: c.backend,
                batch: c.cfg.training.batch,
                samples: ds.train.len(),
                samples_per_second: sps,
                runs: c.runs,
                macs_per_sample: macs,
                gops,
                fraction_of_peak: gops / p,
            }
        })
        .collect();
    Ok(BenchReport {
        dfforge_version: env!("CARGO_PKG_VERSION").to_string(),
        date_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        cpu: cpu_name(),
        peak,
        dataset: cfg.data.dataset.clone(),
        network: cfg.network.widths(),
        repeats: plan.repeats,
        cells,
        config: cfg.clone(),
    })
}

/// The Markdown table of a report: per batch and learner, both backends side by side.
pub fn markdown(r: &BenchReport) -> String {
    let mut s = String::from(
        "| batch | learner | float samples/s | fixed samples/s | fixed / float | float GFLOP/s (of peak) | fixed GOP/s (of peak) |\n|---|---|---|---|---|---|---|\n",
    );
    let find = |b: &str, a: &str, n: usize| {
        r.cells
            .iter()
            .find(|c| c.backend == b && c.algorithm == a && c.batch == n)
    };
    let mut keys: Vec<(usize, String)> = Vec::new();
    for c in &r.cells {
        let k = (c.batch, c.algorithm.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    for (batch, alg) in keys {
        let (fl, fx) = (find("float", &alg, batch), find("fixed", &alg, batch));
        let sps = |c: Option<&BenchCell>| {
            c.map_or("-".into(), |c| format!("{:.0}", c.samples_per_second))
        };
        let rate = |c: Option<&BenchCell>| {
            c.map_or("-".into(), |c| {
                format!("{:.1} ({:.0} %)", c.gops, 100.0 * c.fraction_of_peak)
            })
        };
        let ratio = match (fl, fx) {
            (Some(a), Some(b)) => format!("{:.2}", b.samples_per_second / a.samples_per_second),
            _ => "-".into(),
        };
        s.push_str(&format!(
            "| {batch} | {alg} | {} | {} | {ratio} | {} | {} |\n",
            sps(fl),
            sps(fx),
            rate(fl),
            rate(fx)
        ));
    }
    s
}

/// Peak FP32 and i16 multiply-add throughput on every thread of rayon's pool.
pub fn measure_peak() -> Peak {
    let threads = rayon::current_num_threads();
    let isa = match (simd::available(), simd::vnni()) {
        (true, true) => "avx2+fma (f32), avx512-vnni (i16)",
        (true, false) => "avx2+fma",
        _ => "scalar",
    };
    let best = |f: fn(u64) -> f64| {
        // Calibrate to ~0.2 s per try, take the best of 3 (a peak is a best case).
        let mut iters = 1u64 << 16;
        loop {
            let t = Instant::now();
            f(iters);
            if t.elapsed().as_secs_f64() > 0.05 {
                break;
            }
            iters *= 2;
        }
        iters *= 4;
        (0..3)
            .map(|_| {
                let t = Instant::now();
                let ops: f64 = (0..threads).into_par_iter().map(|_| f(iters)).sum();
                ops / t.elapsed().as_secs_f64() / 1e9
            })
            .fold(0.0, f64::max)
    };
    Peak {
        threads,
        f32_gflops: best(simd::fma_f32),
        i16_gops: best(simd::madd_i16),
        isa: isa.to_string(),
    }
}

/// The peak kernels: long chains of independent multiply-adds, nothing else. Written by hand
/// (no crate measures a machine's peak); the `std::arch` intrinsics need AVX2 and FMA, checked
/// at run time, with a scalar stand-in elsewhere.
mod simd {
    pub fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// `iters` rounds of 12 independent 8-wide FMAs; returns the FLOPs done.
    pub fn fma_f32(iters: u64) -> f64 {
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: AVX2 and FMA are present.
            return unsafe { fma_avx2(iters) };
        }
        let mut a = [1.0f32; 8];
        for _ in 0..iters {
            for v in a.iter_mut() {
                *v = v.mul_add(0.999_999, 1e-7);
            }
        }
        std::hint::black_box(a);
        iters as f64 * 16.0
    }

    /// AVX-512 VNNI, which the exact GEMM uses where present (so its peak is the one to
    /// compare against).
    pub fn vnni() -> bool {
        crate::fixed::kernels::has_vnni()
    }

    /// `iters` rounds of 12 independent i16 multiply-adds (32-wide with VNNI, else 16-wide);
    /// returns the ops done.
    pub fn madd_i16(iters: u64) -> f64 {
        #[cfg(target_arch = "x86_64")]
        if vnni() {
            // SAFETY: AVX-512F and VNNI are present.
            return unsafe { dpwssd_avx512(iters) };
        }
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: AVX2 is present.
            return unsafe { madd_avx2(iters) };
        }
        let mut a = [1i32; 8];
        for i in 0..iters {
            for v in a.iter_mut() {
                *v = v.wrapping_add((i as i16 as i32).wrapping_mul(3));
            }
        }
        std::hint::black_box(a);
        iters as f64 * 16.0
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fma_avx2(iters: u64) -> f64 {
        use std::arch::x86_64::*;
        let m = _mm256_set1_ps(0.999_999);
        let c = _mm256_set1_ps(1e-7);
        let mut acc = [_mm256_set1_ps(1.0); 12];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, m, c);
            }
        }
        std::hint::black_box(acc);
        iters as f64 * 12.0 * 16.0
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn dpwssd_avx512(iters: u64) -> f64 {
        use std::arch::x86_64::*;
        let x = _mm512_set1_epi16(3);
        let mut acc = [_mm512_set1_epi32(1); 12];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_dpwssd_epi32(*a, x, x);
            }
        }
        std::hint::black_box(acc);
        // 32 multiplies and 32 adds per vpdpwssd.
        iters as f64 * 12.0 * 64.0
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn madd_avx2(iters: u64) -> f64 {
        use std::arch::x86_64::*;
        let x = _mm256_set1_epi16(3);
        let mut acc = [_mm256_set1_epi32(1); 12];
        for _ in 0..iters {
            // Each multiply-add reads its own accumulator, so none can be hoisted.
            for a in acc.iter_mut() {
                *a = _mm256_add_epi32(_mm256_madd_epi16(*a, x), *a);
            }
        }
        std::hint::black_box(acc);
        // 16 multiplies and 16 adds per vpmaddwd + vpaddd.
        iters as f64 * 12.0 * 32.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_counts_match_the_mnist_network() {
        let mut cfg = Config::builtin();
        cfg.network.input = 784;
        cfg.network.hidden = vec![500, 500];
        cfg.network.classes = 10;
        cfg.algorithm.name = Kind::Df;
        // 784·500 twice (forward, gradient) + 10 hypotheses · 500·500 twice.
        assert_eq!(step_macs(&cfg), 2.0 * 392_000.0 + 20.0 * 250_000.0);
        cfg.algorithm.name = Kind::Ff;
        assert_eq!(step_macs(&cfg), 4.0 * (392_000.0 + 250_000.0));
        cfg.algorithm.name = Kind::Bp;
        assert_eq!(
            step_macs(&cfg),
            3.0 * (392_000.0 + 250_000.0 + 5_000.0) - 392_000.0
        );
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn peak_kernels_count_their_work() {
        assert_eq!(
            simd::fma_f32(10),
            10.0 * if simd::available() { 192.0 } else { 16.0 }
        );
        assert!(simd::madd_i16(10) > 0.0);
    }
}
