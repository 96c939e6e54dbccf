//! The float DF reference against the definition in DESIGN.md §1: β and the weight updates
//! agree with finite differences of the loss, schemes differ only where they should, training
//! is deterministic and reaches the stated accuracy on digits.

use dfforge::config::{Collaboration, Config, Learner as Kind, Loss, Negatives, Scheme};
use dfforge::data::{self, DatasetSpec};
use dfforge::float::df::{loss_coefficients, DfNet};
use dfforge::float::linalg::Mat;
use dfforge::float::make_learner;
use dfforge::train::{gather, train, RunOptions};

fn small_cfg(loss: Loss, collab: Collaboration, scheme: Scheme) -> Config {
    let mut c = Config::builtin();
    c.network.input = 12;
    c.network.hidden = vec![9, 7, 5];
    c.network.classes = 4;
    c.algorithm.loss = loss;
    c.algorithm.collaboration = collab;
    c.algorithm.scheme = scheme;
    c.algorithm.negatives = Negatives::All;
    c.algorithm.negatives_count = 3;
    c.algorithm.margin = 0.3;
    c.algorithm.scale = 4.0;
    // Hinge's β_y reaches −(C−1): the fixed-point β format needs integer bits for it.
    c.fixed.beta.frac = 11;
    c.validate().unwrap();
    c
}

fn batch(n: usize, d: usize, seed: u32) -> (Mat, Vec<u32>) {
    // A fixed pseudo-random batch in [0,1] (a plain LCG keeps the test self-contained).
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let x = Mat::from_fn(n, d, |_, _| {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (s >> 8) as f32 / (1u32 << 24) as f32
    });
    let y = (0..n as u32).map(|i| (i * 3 + seed) % 4).collect();
    (x, y)
}

fn hyps_all(labels: &[u32], c: u32) -> Vec<u32> {
    labels
        .iter()
        .flat_map(|&y| std::iter::once(y).chain((0..c).filter(move |&k| k != y)))
        .collect()
}

#[test]
fn beta_matches_finite_differences_of_the_loss() {
    for loss in [Loss::Npair, Loss::Hinge] {
        let alg = small_cfg(loss, Collaboration::None, Scheme::Df).algorithm;
        // Scores chosen away from the hinge's kinks (m = 0.3).
        let gt = [0.50f32, 0.45, 0.10, 0.95, 0.62];
        let active = [false, true, true, true, true];
        let (_, beta) = loss_coefficients(&alg, &gt, &active);
        let h = 1e-3f32;
        for j in 0..gt.len() {
            let (mut up, mut dn) = (gt, gt);
            up[j] += h;
            dn[j] -= h;
            let fd = (loss_coefficients(&alg, &up, &active).0
                - loss_coefficients(&alg, &dn, &active).0)
                / (up[j] - dn[j]) as f64;
            assert!(
                (fd - beta[j] as f64).abs() < 2e-3,
                "{loss:?} slot {j}: finite difference {fd}, beta {}",
                beta[j]
            );
        }
        let sum: f32 = beta.iter().sum();
        assert!(
            sum.abs() < 1e-6,
            "beta_y must be -sum(beta_k), sum is {sum}"
        );
    }
}

/// Central difference of Σ_i L_l(i) with respect to one parameter.
fn fd(
    net: &mut DfNet,
    layer: usize,
    x: &Mat,
    k: usize,
    hyps: &[u32],
    mut poke: impl FnMut(&mut DfNet, f32),
) -> f64 {
    let h = 2e-3f32;
    poke(net, h);
    let up = net.layer_losses(x, k, hyps)[layer];
    poke(net, -2.0 * h);
    let dn = net.layer_losses(x, k, hyps)[layer];
    poke(net, h);
    (up - dn) / (2.0 * h as f64)
}

fn close(fd: f64, an: f64, what: &str) {
    assert!(
        (fd - an).abs() <= 2e-3 + 0.03 * an.abs(),
        "{what}: finite difference {fd:.6}, analytic {an:.6}"
    );
}

#[test]
fn weight_bias_and_centroid_gradients_match_finite_differences() {
    for loss in [Loss::Npair, Loss::Hinge] {
        for collab in [Collaboration::None, Collaboration::Previous] {
            let cfg = small_cfg(loss, collab, Scheme::Df);
            let mut net = DfNet::new(&cfg);
            // Centroids start at zero, where every hypothesis is alike and the weight
            // gradients cancel exactly; spread them so the check sees real gradients.
            let u = &mut net.params.u;
            for (i, v) in u.data.iter_mut().enumerate() {
                *v = ((i * 7919) % 13) as f32 / 6.0 - 1.0;
            }
            let (x, y) = batch(3, 12, 5);
            let k = 4;
            let hyps = hyps_all(&y, 4);
            let fwd = net.forward(&x, k, &hyps);
            let g = net.gradients_of(&fwd, 3);
            let n = 3.0f64; // gradients are means over the batch; layer_losses are sums
            let mut checked = 0;
            for l in 0..3 {
                let (rows, cols) = (g.w[l].rows, g.w[l].cols);
                for idx in (0..rows * cols).step_by(5) {
                    let f = fd(&mut net, l, &x, k, &hyps, |m, d| {
                        m.params.w[l].data[idx] += d
                    });
                    close(
                        f,
                        g.w[l].data[idx] as f64 * n,
                        &format!("{loss:?} {collab:?} W{l}[{idx}]"),
                    );
                    checked += 1;
                }
                for j in 0..g.b[l].len() {
                    let f = fd(&mut net, l, &x, k, &hyps, |m, d| m.params.b[l][j] += d);
                    close(
                        f,
                        g.b[l][j] as f64 * n,
                        &format!("{loss:?} {collab:?} b{l}[{j}]"),
                    );
                }
            }
            for idx in 0..g.u.data.len() {
                let f = fd(&mut net, 0, &x, k, &hyps, |m, d| m.params.u.data[idx] += d);
                close(
                    f,
                    g.u.data[idx] as f64 * n,
                    &format!("{loss:?} {collab:?} U[{idx}]"),
                );
            }
            assert!(checked > 20);
            let nonzero =
                g.w.iter()
                    .flat_map(|m| &m.data)
                    .filter(|v| v.abs() > 1e-4)
                    .count();
            assert!(nonzero > 10, "the check needs non-trivial gradients");
        }
    }
}

#[test]
fn cross_terms_change_only_the_lower_layers() {
    let (x, y) = batch(4, 12, 9);
    let hyps = hyps_all(&y, 4);
    let grads = |s| {
        let net = DfNet::new(&small_cfg(Loss::Npair, Collaboration::Previous, s));
        let fwd = net.forward(&x, 4, &hyps);
        net.gradients_of(&fwd, 4)
    };
    let (df, dfr, dfo) = (grads(Scheme::Df), grads(Scheme::DfR), grads(Scheme::DfO));
    // The top layer has no layer above it: identical in all schemes.
    assert_eq!(df.w[2], dfr.w[2]);
    assert_eq!(df.w[2], dfo.w[2]);
    for l in 0..2 {
        assert_ne!(
            df.w[l], dfr.w[l],
            "DF-R must add a feedback term to layer {l}"
        );
        assert_ne!(
            df.w[l], dfo.w[l],
            "DF-O must add a feedback term to layer {l}"
        );
        assert_ne!(dfr.w[l], dfo.w[l]);
    }
}

fn digits_cfg() -> (Config, dfforge::data::Dataset) {
    let cfg = Config::builtin();
    let ds = data::load(&DatasetSpec::Digits, std::path::Path::new("data")).unwrap();
    (cfg, ds)
}

#[test]
fn same_seed_same_result_bit_for_bit() {
    let (mut cfg, ds) = digits_cfg();
    cfg.training.epochs = 2;
    for kind in [Kind::Df, Kind::Ff, Kind::Bp] {
        cfg.set_learner(kind);
        for neg in [Negatives::Random, Negatives::Hard] {
            cfg.algorithm.negatives = neg;
            cfg.algorithm.negatives_count = 3;
            let run = || {
                let mut l = make_learner(&cfg);
                let opts = RunOptions {
                    epochs: 2,
                    batch: 16,
                    seed: 3,
                    schedule: dfforge::config::Schedule::Constant,
                    progress: false,
                    log_epochs: false,
                    // Augmentation draws from its own seeded stream: still deterministic.
                    shift: 1,
                    ..RunOptions::from_config(&cfg)
                };
                let out = train(l.as_mut(), &ds, &opts).unwrap();
                let (x, _) = gather(&ds.test, 64, &(0..50).collect::<Vec<_>>());
                (
                    serde_json::to_string(&out.history).unwrap(),
                    out.train_accuracy,
                    l.predict(&x),
                )
            };
            assert_eq!(run(), run(), "{kind:?} {neg:?}");
        }
    }
}

#[test]
fn every_option_trains_digits_above_chance() {
    let (base, ds) = digits_cfg();
    let opts = RunOptions {
        epochs: 3,
        batch: 32,
        seed: 1,
        schedule: dfforge::config::Schedule::Constant,
        progress: false,
        log_epochs: false,
        shift: 0,
        ..RunOptions::from_config(&base)
    };
    for loss in [Loss::Npair, Loss::Hinge] {
        for neg in [Negatives::All, Negatives::Random, Negatives::Hard] {
            for collab in [
                Collaboration::None,
                Collaboration::Previous,
                Collaboration::All,
            ] {
                for scheme in [Scheme::Df, Scheme::DfR, Scheme::DfO] {
                    let mut c = base.clone();
                    c.algorithm.loss = loss;
                    c.algorithm.negatives = neg;
                    c.algorithm.negatives_count = 3;
                    c.algorithm.collaboration = collab;
                    c.algorithm.scheme = scheme;
                    c.fixed.beta.frac = 11;
                    if loss == Loss::Hinge {
                        // Hinge β is 1 per violating negative (N-pair's sum to at most 1), so
                        // its steps are up to C−1 times larger: SGD needs a smaller rate.
                        c.training.learning_rate /= 4.0;
                    }
                    let mut l = make_learner(&c);
                    let out = train(l.as_mut(), &ds, &opts).unwrap();
                    assert!(
                        out.test_accuracy > 0.6,
                        "{loss:?} {neg:?} {collab:?} {scheme:?}: {}",
                        out.test_accuracy
                    );
                }
            }
        }
    }
}

#[test]
fn default_config_reaches_095_on_digits() {
    let (cfg, ds) = digits_cfg();
    let mut l = make_learner(&cfg);
    let opts = RunOptions::from_config(&cfg);
    let out = train(l.as_mut(), &ds, &opts).unwrap();
    assert!(
        out.test_accuracy >= 0.95,
        "DF digits test accuracy {}",
        out.test_accuracy
    );
}
