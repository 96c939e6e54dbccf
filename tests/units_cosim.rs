//! Unit co-simulation (DESIGN.md §4 step 2): every generated RTL unit against its golden
//! function, bit for bit (==), on random and edge vectors, on three configs that differ in
//! array shape and widths; plus a mutation test proving the comparison can fail.
//! Skips with a notice when Verilator is missing (fails instead under DFFORGE_REQUIRE_TOOLS).

use dfforge::arch::schedule::{normalise_lat, update_lat};
use dfforge::arch::shape::Shape;
use dfforge::config::{Config, Loss, Optimizer};
use dfforge::fixed::kernels::{gemm_exact, rows_times_rows, IMat};
use dfforge::fixed::model::{update_rnd, FixedDf, Units};
use dfforge::fixed::ops::requant_wide;
use dfforge::fixed::{lr_update, relu_requant, Lfsr, QFormat};
use dfforge::rtl::{generate, generate_with, Mutation, Rtl};
use dfforge::sim::{out_index, Bits, Build, SimError, Stim};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn load(path: &str) -> Config {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let mut c = Config::load(Some(&p)).unwrap();
    c.training.optimizer = Optimizer::Sgd;
    c
}

/// Three configs: default 4×4, MNIST 12×12, and a narrow 3×5 one with other widths.
fn configs() -> Vec<(&'static str, Config)> {
    let mut narrow = Config::builtin();
    narrow.hardware.array_rows = 3;
    narrow.hardware.array_cols = 5;
    narrow.network.hidden = vec![40, 24];
    let f = &mut narrow.fixed;
    f.weight = q(14, 10, true);
    f.act = q(10, 10, false);
    f.accumulator = q(40, 20, true);
    f.bias = q(14, 10, true);
    f.centroid = q(14, 10, true);
    f.hidden = q(12, 8, false);
    f.goodness = q(16, 10, false);
    f.delta = q(16, 18, true);
    f.update = q(44, 28, true);
    f.rounding = dfforge::fixed::Rounding::Truncate;
    f.rsqrt_addr_bits = 8;
    f.rsqrt_frac = 12;
    f.lfsr_width = 16;
    f.lfsr_seed = 0xace1;
    narrow.validate().unwrap();
    vec![
        ("default", load("configs/default.toml")),
        ("mnist", load("configs/mnist.toml")),
        ("narrow", narrow),
    ]
}

fn q(bits: u32, frac: u32, signed: bool) -> QFormat {
    QFormat { bits, frac, signed }
}

fn build(rtl: &Rtl, top: &str) -> Option<Build> {
    match Build::new(&rtl.modules, top, &rtl.tables) {
        Ok(b) => {
            eprintln!(
                "{top}: {} in {:.2?}",
                if b.cache_hit { "cache hit" } else { "built" },
                b.build_time
            );
            Some(b)
        }
        Err(SimError::NoVerilator) if std::env::var_os("DFFORGE_REQUIRE_TOOLS").is_none() => {
            eprintln!("NOTICE: verilator not installed; skipping");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Random values of `fmt` with the edges (min, max, 0, ±1 LSB) mixed in.
fn sample(rng: &mut ChaCha8Rng, fmt: QFormat) -> i64 {
    match rng.gen_range(0..10) {
        0 => fmt.min(),
        1 => fmt.max(),
        2 => 0,
        3 => rng.gen_range(-2..=2i64).clamp(fmt.min(), fmt.max()),
        _ => rng.gen_range(fmt.min()..=fmt.max()),
    }
}

/// Sequence of a unit's outputs at the cycles its valid flag is high.
fn valid_outputs(
    out: &[Vec<Bits>],
    b: &Build,
    valid: &str,
    fields: &[(&str, bool)],
) -> Vec<Vec<i64>> {
    let vi = out_index(b, valid);
    let idx: Vec<(usize, u32, bool)> = fields
        .iter()
        .map(|&(n, s)| {
            let i = out_index(b, n);
            (i, b.outputs()[i].width, s)
        })
        .collect();
    out.iter()
        .filter(|l| l[vi].field(0, 1, false) == 1)
        .map(|l| idx.iter().map(|&(i, w, s)| l[i].field(0, w, s)).collect())
        .collect()
}

fn mismatches(got: &[Vec<i64>], want: &[Vec<i64>]) -> usize {
    assert_eq!(got.len(), want.len(), "number of outputs");
    got.iter().zip(want).filter(|(g, w)| g != w).count()
}

// ------------------------------------------------------------------ ReLU/requantise

fn relu_vectors(cfg: &Config, n: usize, seed: u64) -> (Vec<i64>, Vec<Vec<i64>>) {
    let f = &cfg.fixed;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let shift = f.accumulator.frac - f.hidden.frac;
    let hmax = f.hidden.max() << shift;
    let mut z: Vec<i64> = vec![
        f.accumulator.min(),
        f.accumulator.max(),
        0,
        -1,
        1,
        hmax,
        hmax + 1,
    ];
    // Rounding ties and saturation boundaries.
    for k in 0..8i64 {
        z.push((k << shift) + (1 << (shift - 1)));
        z.push((k << shift) + (1 << (shift - 1)) - 1);
        z.push(hmax + (1 << (shift - 1)) - 1 + k);
    }
    while z.len() < n {
        let v = if rng.gen_bool(0.5) {
            sample(&mut rng, f.accumulator)
        } else {
            rng.gen_range(-hmax..=2 * hmax)
        };
        z.push(v);
    }
    let want = z
        .iter()
        .map(|&v| vec![relu_requant(v, f.accumulator.frac, f.hidden, f.rounding, 0)])
        .collect();
    (z, want)
}

fn run_relu(b: &Build, z: &[i64]) -> Vec<Vec<i64>> {
    let mut s = Stim::new(b);
    s.cycle_v(&[("rst_i", 1)]);
    for &v in z {
        s.cycle_v(&[("z_i", v), ("v_i", 1)]);
    }
    for _ in 0..3 {
        s.cycle_v(&[]);
    }
    let out = s.run().unwrap();
    valid_outputs(&out, b, "v_o", &[("h_o", false)])
}

/// Every config's run of a unit had zero mismatches against its golden function.
fn assert_matches(unit: &str, runs: Vec<(&'static str, usize, usize)>) {
    for (name, bad, n) in runs {
        assert_eq!(bad, 0, "{name}: {unit}, {bad} of {n} mismatches");
    }
}

/// Every config's run of a mutated unit showed mismatches: the comparison can fail.
fn assert_caught(unit: &str, runs: Vec<(&'static str, usize, usize)>) {
    for (name, bad, n) in runs {
        eprintln!("{name}: mutant {unit}: {bad} of {n} mismatches");
        assert!(bad > 0, "{name}: the {unit} mutant was not caught");
    }
}

#[test]
fn relu_requant_unit_matches_golden() {
    for (name, cfg) in configs() {
        let rtl = generate(&cfg).unwrap();
        let Some(b) = build(&rtl, "dff_relu") else {
            return;
        };
        let (z, want) = relu_vectors(&cfg, 4000, 1);
        let got = run_relu(&b, &z);
        assert_eq!(mismatches(&got, &want), 0, "{name}: relu");
        eprintln!("{name}: relu {} vectors, 0 mismatches", z.len());
    }
}

#[test]
fn mutation_flipped_rounding_is_caught() {
    for (name, cfg) in mutant_configs() {
        let rtl = generate_with(&cfg, Mutation::FlipActRounding).unwrap();
        let Some(b) = build(&rtl, "dff_relu") else {
            return;
        };
        let (z, want) = relu_vectors(&cfg, 500, 2);
        let got = run_relu(&b, &z);
        let bad = mismatches(&got, &want);
        eprintln!("{name}: mutant relu: {bad} of {} mismatches", z.len());
        assert!(bad > 0, "{name}: the mutant was not caught");
    }
}

// ------------------------------------------------------------------ goodness

/// Configs the mutants run on: one is enough to show the comparison can fail.
fn mutant_configs() -> Vec<(&'static str, Config)> {
    configs().into_iter().take(1).collect()
}

/// A row of `d` hidden values of one of six kinds: all maximum, zero, below 1.0 (G inside
/// the format, not saturated, so the rounding of the last shift shows), scaled, random.
fn hidden_row(
    rng: &mut ChaCha8Rng,
    f: &dfforge::config::FixedPoint,
    kind: usize,
    d: usize,
) -> Vec<i64> {
    (0..d)
        .map(|_| match kind {
            0 => f.hidden.max(),
            1 => 0,
            2 => rng.gen_range(0..1i64 << f.hidden.frac),
            3 => sample(rng, f.hidden) >> rng.gen_range(0..f.hidden.bits),
            _ => sample(rng, f.hidden),
        })
        .collect()
}

/// (config, mismatches, outputs) of the squared-sum unit (generated with `mutation`): rows
/// streamed back to back, S compared at `v_o`.
fn sumsq_runs(
    cfgs: Vec<(&'static str, Config)>,
    mutation: Mutation,
) -> Vec<(&'static str, usize, usize)> {
    let mut res = Vec::new();
    for (name, cfg) in cfgs {
        let rtl = generate_with(&cfg, mutation).unwrap();
        let Some(b) = build(&rtl, "dff_sumsq") else {
            return res;
        };
        let u = Units::new(&cfg).unwrap();
        let f = &u.f;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut s = Stim::new(&b);
        s.cycle_v(&[("rst_i", 1)]);
        let mut want = Vec::new();
        for row in 0..60 {
            let d = cfg.network.hidden[row % cfg.network.hidden.len()];
            let h = hidden_row(&mut rng, f, row % 6, d);
            want.push(vec![h.iter().map(|&x| x * x).sum::<i64>()]);
            for (i, &x) in h.iter().enumerate() {
                s.cycle_v(&[
                    ("h_i", x),
                    ("v_i", 1),
                    ("first_i", i64::from(i == 0)),
                    ("last_i", i64::from(i + 1 == d)),
                ]);
            }
        }
        for _ in 0..8 {
            s.cycle_v(&[]);
        }
        let got = valid_outputs(&s.run().unwrap(), &b, "v_o", &[("s_o", false)]);
        eprintln!("{name}: squared sums of {} rows", want.len());
        res.push((name, mismatches(&got, &want), want.len()));
    }
    res
}

/// (config, mismatches, outputs) of the goodness (scale) unit: one S per cycle with its
/// layer's 1/d, G compared at `v_o`.
fn goodness_runs(
    cfgs: Vec<(&'static str, Config)>,
    mutation: Mutation,
) -> Vec<(&'static str, usize, usize)> {
    let mut res = Vec::new();
    for (name, cfg) in cfgs {
        let rtl = generate_with(&cfg, mutation).unwrap();
        let Some(b) = build(&rtl, "dff_goodness") else {
            return res;
        };
        let u = Units::new(&cfg).unwrap();
        let f = &u.f;
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut s = Stim::new(&b);
        s.cycle_v(&[("rst_i", 1)]);
        let mut want = Vec::new();
        for row in 0..120 {
            let l = row % cfg.network.hidden.len();
            let d = cfg.network.hidden[l];
            let rc = &u.recip_d[l];
            let h = hidden_row(&mut rng, f, row % 6, d);
            let sum: i64 = h.iter().map(|&x| x * x).sum();
            let g = requant_wide(
                i128::from(sum) * i128::from(rc.value()),
                2 * f.hidden.frac + rc.frac(),
                f.goodness,
                f.rounding,
                0,
            );
            want.push(vec![g]);
            s.cycle_v(&[("s_i", sum), ("v_i", 1), ("recip_i", rc.value())]);
            if row % 7 == 3 {
                s.cycle_v(&[]);
            }
        }
        for _ in 0..10 {
            s.cycle_v(&[]);
        }
        let got = valid_outputs(&s.run().unwrap(), &b, "v_o", &[("g_o", false)]);
        eprintln!("{name}: goodness of {} sums", want.len());
        res.push((name, mismatches(&got, &want), want.len()));
    }
    res
}

#[test]
fn squared_sum_unit_matches_golden() {
    assert_matches("squared sum", sumsq_runs(configs(), Mutation::None));
}

#[test]
fn mutation_squared_sum_clear_is_caught() {
    assert_caught(
        "squared sum",
        sumsq_runs(mutant_configs(), Mutation::SumSqNoClear),
    );
}

#[test]
fn goodness_unit_matches_golden() {
    assert_matches("goodness", goodness_runs(configs(), Mutation::None));
}

#[test]
fn mutation_goodness_rounding_is_caught() {
    assert_caught(
        "goodness",
        goodness_runs(mutant_configs(), Mutation::FlipGoodnessRounding),
    );
}

// ------------------------------------------------------------------ normalise

fn normalise_runs(
    cfgs: Vec<(&'static str, Config)>,
    mutation: Mutation,
) -> Vec<(&'static str, usize, usize)> {
    let mut res = Vec::new();
    for (name, cfg) in cfgs {
        let rtl = generate_with(&cfg, mutation).unwrap();
        let Some(b) = build(&rtl, "dff_normalise") else {
            return res;
        };
        let u = Units::new(&cfg).unwrap();
        let f = u.f.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut s = Stim::new(&b);
        s.cycle_v(&[("rst_i", 1)]);
        let mut want = Vec::new();
        for row in 0..80 {
            let pixel = row % 2 == 0;
            let (fmt, table, d) = if pixel {
                (f.pixel, &u.rsqrt_pixel, cfg.network.input.min(200))
            } else {
                (f.hidden, &u.rsqrt_hidden, cfg.network.hidden[0])
            };
            let v: Vec<i32> = (0..d)
                .map(|i| match row % 8 {
                    0 | 1 => 0,                 // zero vector
                    2 | 3 => fmt.max() as i32,  // largest sum
                    4 | 5 => i32::from(i == 0), // smallest non-zero sum
                    _ => {
                        // Sparse, varied magnitudes: sums over many exponents.
                        if rng.gen_bool(0.3) {
                            0
                        } else {
                            (sample(&mut rng, fmt) >> rng.gen_range(0..fmt.bits)) as i32
                        }
                    }
                })
                .collect();
            let (out, sum, _) = u.normalise(&v, fmt.frac, table);
            s.cycle_v(&[("s_i", sum), ("sv_i", 1)]);
            for &x in &v {
                s.cycle_v(&[("x_i", i64::from(x)), ("xv_i", 1)]);
            }
            // Rows follow each other at once; the last one drains through the pipeline.
            if row == 79 {
                for _ in 0..normalise_lat(&Shape::new(&cfg).unwrap()) {
                    s.cycle_v(&[]);
                }
            }
            want.extend(out.iter().map(|&y| vec![i64::from(y)]));
        }
        let got = valid_outputs(&s.run().unwrap(), &b, "yv_o", &[("y_o", false)]);
        eprintln!("{name}: normalise 80 rows ({} lanes)", want.len());
        res.push((name, mismatches(&got, &want), want.len()));
    }
    res
}

#[test]
fn normalise_unit_matches_golden() {
    assert_matches("normalise", normalise_runs(configs(), Mutation::None));
}

#[test]
fn mutation_normalise_shift_is_caught() {
    assert_caught(
        "normalise",
        normalise_runs(mutant_configs(), Mutation::NormShiftPlusOne),
    );
}

// ------------------------------------------------------------------ update

fn update_runs(
    cfgs: Vec<(&'static str, Config)>,
    mutation: Mutation,
) -> Vec<(&'static str, usize, usize)> {
    let mut res = Vec::new();
    for (name, cfg) in cfgs {
        let rtl = generate_with(&cfg, mutation).unwrap();
        let Some(b) = build(&rtl, "dff_update") else {
            return res;
        };
        let u = Units::new(&cfg).unwrap();
        let f = u.f.clone();
        let mut lfsr = Lfsr::with_default_taps(f.lfsr_width, f.lfsr_seed).unwrap();
        let lr_frac = match u.lr {
            dfforge::fixed::LearningRate::Mul { frac, .. } => frac,
            dfforge::fixed::LearningRate::Shift(s) => s,
        };
        let lr_val = match u.lr {
            dfforge::fixed::LearningRate::Mul { value, .. } => value,
            dfforge::fixed::LearningRate::Shift(_) => unreachable!(),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut s = Stim::new(&b);
        s.cycle_v(&[("rst_i", 1)]);
        let mut want = Vec::new();
        for i in 0..6000 {
            let kind = [0i64, 0, 0, 1, 2][i % 5];
            let (g_frac, fmt) = match kind {
                0 => (f.update.frac, f.weight),
                1 => (f.delta.frac, f.bias),
                _ => (f.delta.frac, f.centroid),
            };
            let w = sample(&mut rng, fmt);
            // Gradients of every size: the step ranges from sub-LSB to saturating.
            let g = sample(&mut rng, f.update) >> rng.gen_range(0..f.update.bits);
            let word = lfsr.next_bits(64);
            let shift = (g_frac + lr_frac).saturating_sub(fmt.frac);
            let rnd = update_rnd(word, shift, lfsr.width());
            want.push(vec![lr_update(
                w,
                g,
                g_frac,
                fmt,
                u.lr,
                f.update_rounding,
                rnd,
            )]);
            s.cycle_v(&[
                ("w_i", w),
                ("g_i", g),
                ("kind_i", kind),
                ("v_i", 1),
                ("lr_i", lr_val),
            ]);
        }
        for _ in 0..update_lat(&Shape::new(&cfg).unwrap()) {
            s.cycle_v(&[]);
        }
        let got = valid_outputs(&s.run().unwrap(), &b, "v_o", &[("w_o", true)]);
        eprintln!("{name}: update {} parameters", want.len());
        res.push((name, mismatches(&got, &want), want.len()));
    }
    res
}

#[test]
fn update_unit_matches_golden() {
    assert_matches("update", update_runs(configs(), Mutation::None));
}

#[test]
fn mutation_update_lfsr_seed_is_caught() {
    assert_caught(
        "update",
        update_runs(mutant_configs(), Mutation::UpdateSeedFlip),
    );
}

// ------------------------------------------------------------------ loss (hinge)

#[test]
fn hinge_loss_unit_matches_golden() {
    for (name, mut cfg) in configs() {
        cfg.algorithm.loss = Loss::Hinge;
        cfg.fixed.beta.frac = cfg.fixed.beta.bits - 6;
        cfg.validate().unwrap();
        let rtl = generate(&cfg).unwrap();
        let Some(b) = build(&rtl, "dff_loss_hinge") else {
            return;
        };
        let fx = FixedDf::new(&cfg).unwrap();
        let gf = cfg.fixed.goodness;
        let k = cfg.network.classes;
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let mut s = Stim::new(&b);
        s.cycle_v(&[("rst_i", 1)]);
        let (mut neg, mut ys) = (Vec::new(), Vec::new());
        for i in 0..400 {
            let gt: Vec<i64> = (0..k)
                .map(|_| {
                    if i % 3 == 0 {
                        rng.gen_range(0..64)
                    } else {
                        sample(&mut rng, gf)
                    }
                })
                .collect();
            let mut active: Vec<bool> = (0..k).map(|_| rng.gen_bool(0.8)).collect();
            active[0] = false;
            let beta = fx.loss_unit(&gt, &active);
            s.cycle_v(&[("gy_i", gt[0]), ("yv_i", 1)]);
            for j in 1..k {
                s.cycle_v(&[
                    ("g_i", gt[j]),
                    ("gv_i", 1),
                    ("act_i", i64::from(active[j])),
                    ("last_i", i64::from(j + 1 == k)),
                ]);
                neg.push(vec![beta[j]]);
            }
            s.cycle_v(&[]);
            ys.push(vec![beta[0]]);
        }
        for _ in 0..3 {
            s.cycle_v(&[]);
        }
        let out = s.run().unwrap();
        let got_n = valid_outputs(&out, &b, "bv_o", &[("b_o", true)]);
        let got_y = valid_outputs(&out, &b, "byv_o", &[("b_o", true)]);
        assert_eq!(mismatches(&got_n, &neg), 0, "{name}: hinge beta_k");
        assert_eq!(mismatches(&got_y, &ys), 0, "{name}: hinge beta_y");
        eprintln!(
            "{name}: hinge loss 400 samples ({} betas), 0 mismatches",
            neg.len() + ys.len()
        );
    }
}

// ------------------------------------------------------------------ array: three GEMMs

/// C = A·B on the array (A: m×k, B: k×n, row-major i64), tiles padded with zeros.
#[allow(clippy::too_many_arguments)]
fn array_gemm(
    b: &Build,
    rows: usize,
    cols: usize,
    aw: u32,
    bw: u32,
    accw: u32,
    a: &[Vec<i64>],
    bm: &[Vec<i64>],
) -> Vec<i64> {
    let (m, k, n) = (a.len(), bm.len(), bm[0].len());
    let mut s = Stim::new(b);
    s.cycle_v(&[("rst_i", 1)]);
    let per = k + rows + cols + 1;
    let mut reads = Vec::new();
    for ti in (0..m).step_by(rows) {
        for tj in (0..n).step_by(cols) {
            for t in 0..per {
                let mut west = Vec::new();
                let (mut wv, mut wc, mut wl) = (0i64, 0i64, 0i64);
                for r in 0..rows {
                    let kk = t as isize - r as isize;
                    let on = kk >= 0 && (kk as usize) < k;
                    let v = if on && ti + r < m {
                        a[ti + r][kk as usize]
                    } else {
                        0
                    };
                    west.push((v, aw));
                    if on {
                        wv |= 1 << r;
                    }
                    if kk == 0 {
                        wc |= 1 << r;
                    }
                    if kk == k as isize - 1 {
                        wl |= 1 << r;
                    }
                }
                let north: Vec<(i64, u32)> = (0..cols)
                    .map(|c| {
                        let kk = t as isize - c as isize;
                        let v = if kk >= 0 && (kk as usize) < k && tj + c < n {
                            bm[kk as usize][tj + c]
                        } else {
                            0
                        };
                        (v, bw)
                    })
                    .collect();
                s.cycle(&[
                    ("west_i", Bits::pack(&west)),
                    ("wv_i", Bits::pack(&[(wv, rows as u32)])),
                    ("wc_i", Bits::pack(&[(wc, rows as u32)])),
                    ("wl_i", Bits::pack(&[(wl, rows as u32)])),
                    ("north_i", Bits::pack(&north)),
                ]);
            }
            reads.push((ti, tj, s.len() - 1));
        }
    }
    let out = s.run().unwrap();
    let ai = out_index(b, "acc_o");
    let mut c = vec![0i64; m * n];
    for (ti, tj, line) in reads {
        for r in 0..rows.min(m - ti) {
            for cc in 0..cols.min(n - tj) {
                let lo = ((r * cols + cc) as u32) * accw;
                c[(ti + r) * n + tj + cc] = out[line][ai].field(lo, accw, true);
            }
        }
    }
    c
}

fn rand_imat(rng: &mut ChaCha8Rng, rows: usize, cols: usize, fmt: QFormat) -> IMat {
    IMat {
        rows,
        cols,
        data: (0..rows * cols).map(|_| sample(rng, fmt) as i32).collect(),
    }
}

fn to_rows(m: &IMat, transpose: bool) -> Vec<Vec<i64>> {
    let (r, c) = if transpose {
        (m.cols, m.rows)
    } else {
        (m.rows, m.cols)
    };
    (0..r)
        .map(|i| {
            (0..c)
                .map(|j| {
                    i64::from(if transpose {
                        m.data[j * m.cols + i]
                    } else {
                        m.data[i * m.cols + j]
                    })
                })
                .collect()
        })
        .collect()
}

/// Elements of the three GEMMs that differ from the golden ones, and the element count.
fn array_runs(
    cfgs: Vec<(&'static str, Config)>,
    mutation: Mutation,
) -> Vec<(&'static str, usize, usize)> {
    let mut res = Vec::new();
    for (name, cfg) in cfgs {
        let rtl = generate_with(&cfg, mutation).unwrap();
        let Some(b) = build(&rtl, "dff_array") else {
            return res;
        };
        let sh = &rtl.shape;
        let f = &cfg.fixed;
        let (rows, cols) = (sh.rows as usize, sh.cols as usize);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        // Dimensions that are not multiples of R or C.
        let (d_out, d_in, batch) = (2 * rows + 1, 37, cols + 2);
        let w = rand_imat(&mut rng, d_out, d_in, f.weight);
        let x = rand_imat(&mut rng, batch, d_in, f.act);
        let delta = rand_imat(&mut rng, batch, d_out, f.delta);
        let run = |a: Vec<Vec<i64>>, bm: Vec<Vec<i64>>| {
            array_gemm(&b, rows, cols, sh.a_w, sh.b_w, sh.acc_w, &a, &bm)
        };
        let diff = |got: &[i64], want: &[i64]| {
            assert_eq!(got.len(), want.len());
            got.iter().zip(want).filter(|(g, w)| g != w).count()
        };
        // Forward Z = W·X̂ᵀ (d_out × batch), golden rows_times_rows(X̂, W) is batch × d_out.
        let z = run(to_rows(&w, false), to_rows(&x, true));
        let gz = rows_times_rows(&x, &w);
        let zt: Vec<i64> = (0..d_out * batch)
            .map(|i| gz[(i % batch) * d_out + i / batch])
            .collect();
        // Weight gradient ΔW = δᵀ·X̂ (d_out × d_in), K = batch.
        let dw = run(to_rows(&delta, true), to_rows(&x, false));
        let gdw = gemm_exact(&delta, true, &x, false);
        // DF-O feedback Wᵀ·δ per row: δ·W (batch × d_in), K = d_out.
        let back = run(to_rows(&delta, false), to_rows(&w, false));
        let gback = gemm_exact(&delta, false, &w, false);
        let bad = [diff(&z, &zt), diff(&dw, &gdw), diff(&back, &gback)];
        eprintln!(
            "{name}: array {rows}x{cols}: forward {d_out}x{d_in}x{batch}, gradient, transposed: {bad:?} mismatches"
        );
        res.push((name, bad.iter().sum(), zt.len() + gdw.len() + gback.len()));
    }
    res
}

#[test]
fn array_three_gemms_match_golden() {
    assert_matches("array", array_runs(configs(), Mutation::None));
}

#[test]
fn mutation_pe_accumulate_is_caught() {
    assert_caught(
        "array",
        array_runs(mutant_configs(), Mutation::PeAccPlusOne),
    );
}

// ------------------------------------------------------------------ loss (N-pair)

/// The N-pair configs: the three of [`configs`], the narrow one also with other logit, exp,
/// reciprocal and beta widths (the loss unit's own parameters).
fn npair_configs() -> Vec<(&'static str, Config)> {
    configs()
        .into_iter()
        .map(|(name, mut cfg)| {
            cfg.algorithm.loss = Loss::Npair;
            if name == "narrow" {
                let f = &mut cfg.fixed;
                f.logit = q(12, 5, true);
                f.beta = q(12, 9, true);
                f.exp_addr_bits = 8;
                f.exp_frac = 12;
                f.exp_range = 10.0;
                f.recip_frac = 18;
            }
            cfg.validate().unwrap();
            (name, cfg)
        })
        .collect()
}

/// G̃ and active masks of `n` samples: random, plus the edges — one active negative, none,
/// equal scores, differences that saturate the logit both ways, tiny differences.
fn npair_samples(cfg: &Config, n: usize, seed: u64) -> Vec<(Vec<i64>, Vec<bool>)> {
    let gf = cfg.fixed.goodness;
    let k = cfg.network.classes;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v = Vec::new();
    for i in 0..n {
        let mut gt: Vec<i64> = (0..k).map(|_| sample(&mut rng, gf)).collect();
        let mut active: Vec<bool> = (0..k).map(|_| rng.gen_bool(0.8)).collect();
        match i % 8 {
            0 => {
                // Only one negative active.
                let j = rng.gen_range(1..k);
                active = (0..k).map(|x| x == j).collect();
            }
            1 => gt = vec![rng.gen_range(0..=gf.max()); k], // equal scores
            2 => {
                // Huge positive differences: the logit saturates high.
                gt[0] = 0;
                for g in gt.iter_mut().skip(1) {
                    *g = gf.max() - rng.gen_range(0..4);
                }
            }
            3 => {
                // Huge negative differences: every E_k underflows.
                gt[0] = gf.max();
                for g in gt.iter_mut().skip(1) {
                    *g = rng.gen_range(0..4);
                }
            }
            4 => {
                // Small differences around the margin.
                let base = rng.gen_range(0..gf.max() / 2);
                for g in gt.iter_mut() {
                    *g = base + rng.gen_range(0..300);
                }
            }
            5 if i % 16 == 5 => active = vec![false; k], // no negative at all
            _ => {}
        }
        active[0] = false;
        v.push((gt, active));
    }
    v
}

fn run_npair(b: &Build, cfg: &Config, samples: &[(Vec<i64>, Vec<bool>)]) -> Vec<Vec<i64>> {
    let f = &cfg.fixed;
    let k = cfg.network.classes;
    let (gw, bw) = (f.goodness.bits, f.beta.bits);
    // The unit takes exactly the schedule's cycles (asserted below); a few more are idle.
    let shape = dfforge::arch::shape::Shape::new(cfg).unwrap();
    let cycles = dfforge::arch::schedule::NpairTiming::new(&shape).cycles(&shape) as usize;
    let wait = cycles + 3;
    let mut s = Stim::new(b);
    s.cycle_v(&[("rst_i", 1)]);
    for (gt, active) in samples {
        let g: Vec<(i64, u32)> = gt.iter().map(|&x| (x, gw)).collect();
        let a: i64 = active
            .iter()
            .enumerate()
            .map(|(j, &on)| i64::from(on) << j)
            .sum();
        s.cycle(&[
            ("start_i", Bits::pack(&[(1, 1)])),
            ("g_i", Bits::pack(&g)),
            ("act_i", Bits::pack(&[(a, k as u32)])),
        ]);
        for _ in 0..wait {
            s.cycle_v(&[]);
        }
    }
    let out = s.run().unwrap();
    let (di, bi) = (out_index(b, "done_o"), out_index(b, "b_o"));
    let done_at: Vec<usize> = (0..out.len())
        .filter(|&i| out[i][di].field(0, 1, false) == 1)
        .collect();
    // Line 1 + j(wait + 1) applies sample j's start; the unit's `cycles` count that edge.
    let want_at: Vec<usize> = (0..samples.len())
        .map(|j| j * (wait + 1) + cycles)
        .collect();
    assert_eq!(done_at.len(), want_at.len(), "one done_o per start");
    if let Some(i) = (0..want_at.len()).find(|&i| done_at[i] != want_at[i]) {
        panic!(
            "sample {i}: done_o on line {}, NpairTiming predicts line {}",
            done_at[i], want_at[i]
        );
    }
    out.iter()
        .filter(|l| l[di].field(0, 1, false) == 1)
        .map(|l| {
            (0..k as u32)
                .map(|j| l[bi].field(j * bw, bw, true))
                .collect()
        })
        .collect()
}

#[test]
fn npair_loss_unit_matches_golden() {
    for (name, cfg) in npair_configs() {
        let rtl = generate(&cfg).unwrap();
        let Some(b) = build(&rtl, "dff_loss_npair") else {
            return;
        };
        let fx = FixedDf::new(&cfg).unwrap();
        let samples = npair_samples(&cfg, 480, 8);
        let want: Vec<Vec<i64>> = samples.iter().map(|(g, a)| fx.loss_unit(g, a)).collect();
        let got = run_npair(&b, &cfg, &samples);
        assert_eq!(mismatches(&got, &want), 0, "{name}: npair beta");
        let nonzero = want.iter().filter(|w| w[0] != 0).count();
        eprintln!(
            "{name}: npair loss {} samples ({nonzero} with beta_y != 0), 0 mismatches",
            samples.len()
        );
    }
}

#[test]
fn mutation_npair_divider_off_by_one_is_caught() {
    // Mutants on one config, as the other units' (each build costs ~10 s).
    for (name, cfg) in npair_configs().into_iter().take(1) {
        let rtl = generate_with(&cfg, Mutation::LossRecipPlusOne).unwrap();
        let Some(b) = build(&rtl, "dff_loss_npair") else {
            return;
        };
        let fx = FixedDf::new(&cfg).unwrap();
        let samples = npair_samples(&cfg, 100, 9);
        let want: Vec<Vec<i64>> = samples.iter().map(|(g, a)| fx.loss_unit(g, a)).collect();
        let bad = mismatches(&run_npair(&b, &cfg, &samples), &want);
        eprintln!(
            "{name}: mutant npair: {bad} of {} mismatches",
            samples.len()
        );
        assert!(bad > 0, "{name}: the mutant was not caught");
    }
}
