//! The fixed-point golden model as a model of DF: with wide formats it computes the float
//! model's update; with the shipped formats it trains as well; it is deterministic.

use dfforge::config::{Collaboration, Config, Loss, Negatives, Optimizer, Scheme};
use dfforge::data::{self, DatasetSpec};
use dfforge::fixed::model::FixedDf;
use dfforge::fixed::{QFormat, Rounding};
use dfforge::float::df::DfNet;
use dfforge::float::{make_learner, Learner};
use dfforge::train::{gather, train, RunOptions};

fn q(bits: u32, frac: u32, signed: bool) -> QFormat {
    QFormat { bits, frac, signed }
}

fn digits() -> dfforge::data::Dataset {
    data::load(&DatasetSpec::Digits, std::path::Path::new("data")).unwrap()
}

/// Formats wide enough that quantisation is far below the size of one SGD step.
fn wide(cfg: &mut Config) {
    let f = &mut cfg.fixed;
    f.pixel = q(16, 16, false);
    f.act = q(16, 16, false);
    f.weight = q(20, 16, true);
    f.bias = q(20, 16, true);
    f.centroid = q(20, 16, true);
    f.accumulator = q(48, 32, true);
    f.hidden = q(20, 14, false);
    f.goodness = q(30, 22, false);
    f.logit = q(24, 16, true);
    f.beta = q(20, 17, true);
    f.delta = q(24, 22, true);
    f.update = q(48, 38, true);
    f.rsqrt_addr_bits = 16;
    f.rsqrt_frac = 24;
    f.exp_addr_bits = 16;
    f.exp_frac = 24;
    f.recip_frac = 40;
    f.const_frac = 24;
    f.lr_frac = 24;
    f.update_rounding = Rounding::HalfUp;
    f.multiplier_bits = 36;
    f.wide_products = [
        "goodness",
        "delta_scale",
        "logit",
        "learning_rate",
        "loss_recip",
        "normalise",
        "input_normalise",
        "feedback_scale",
    ]
    .map(String::from)
    .to_vec();
}

#[test]
fn wide_formats_reproduce_the_float_update() {
    let ds = digits();
    for scheme in [Scheme::Df, Scheme::DfO] {
        let mut cfg = Config::builtin();
        cfg.network.hidden = vec![32, 16];
        cfg.algorithm.scheme = scheme;
        cfg.algorithm.collaboration = Collaboration::Previous;
        cfg.algorithm.negatives = Negatives::All;
        cfg.training.batch = 8;
        cfg.training.optimizer = Optimizer::Sgd;
        wide(&mut cfg);
        cfg.validate().unwrap();
        let mut float = DfNet::new(&cfg);
        let mut fixed = FixedDf::new(&cfg).unwrap();
        let before = float.params.clone();
        let (x, y) = gather(&ds.train, 64, &(0..8).collect::<Vec<_>>());
        // Move the centroids off zero first (at zero all hypotheses tie and W gets no gradient).
        for (i, v) in float.params.u.data.iter_mut().enumerate() {
            *v = ((i * 37) % 11) as f32 / 5.0 - 1.0;
        }
        for (fx, fl) in fixed.params.u.data.iter_mut().zip(&float.params.u.data) {
            *fx = cfg.fixed.centroid.from_f64(*fl as f64, Rounding::HalfUp) as i32;
        }
        let before_u = float.params.u.clone();
        float.train_batch(&x, &y);
        fixed.train_batch(&x, &y);
        for l in 0..2 {
            let wf = cfg.fixed.weight;
            let step_f: Vec<f64> = float.params.w[l]
                .data
                .iter()
                .zip(&before.w[l].data)
                .map(|(a, b)| (a - b) as f64)
                .collect();
            let step_x: Vec<f64> = fixed.params.w[l]
                .data
                .iter()
                .zip(&before.w[l].data)
                .map(|(a, b)| {
                    wf.to_f64(*a as i64) - wf.to_f64(wf.from_f64(*b as f64, Rounding::HalfUp))
                })
                .collect();
            let scale = step_f.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(
                scale > 1e-3,
                "{scheme:?} layer {l}: the step must be non-trivial, max {scale}"
            );
            let worst = step_f
                .iter()
                .zip(&step_x)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(worst < 0.002 * scale + 4.0 * wf.lsb(), "{scheme:?} layer {l}: fixed step differs from float by {worst}, step scale {scale}");
        }
        let cf = cfg.fixed.centroid;
        let worst_u = float
            .params
            .u
            .data
            .iter()
            .zip(&before_u.data)
            .zip(&fixed.params.u.data)
            .map(|((a, b), x)| {
                ((a - b) as f64
                    - (cf.to_f64(*x as i64) - cf.to_f64(cf.from_f64(*b as f64, Rounding::HalfUp))))
                .abs()
            })
            .fold(0.0, f64::max);
        assert!(
            worst_u < 1e-3,
            "{scheme:?}: centroid steps differ by {worst_u}"
        );
    }
}

#[test]
fn same_seed_same_weights_and_seed_matters() {
    let ds = digits();
    let run = |seed: u64| {
        let mut cfg = Config::builtin();
        cfg.training.seed = seed;
        cfg.algorithm.negatives = Negatives::Random;
        cfg.algorithm.negatives_count = 3;
        let mut m = FixedDf::new(&cfg).unwrap();
        for start in (0..256).step_by(32) {
            let (x, y) = gather(&ds.train, 64, &(start..start + 32).collect::<Vec<_>>());
            m.train_batch(&x, &y);
        }
        m.params
    };
    let a = run(1);
    assert_eq!(a, run(1));
    assert_ne!(a, run(2));
}

#[test]
fn hinge_and_dfr_train_in_fixed_point() {
    let ds = digits();
    let mut cfg = Config::builtin();
    cfg.algorithm.loss = Loss::Hinge;
    cfg.algorithm.scheme = Scheme::DfR;
    cfg.algorithm.negatives = Negatives::Hard;
    cfg.algorithm.negatives_count = 3;
    cfg.fixed.beta = q(16, 11, true);
    cfg.training.learning_rate = 5.0;
    cfg.validate().unwrap();
    let mut m = FixedDf::new(&cfg).unwrap();
    let opts = RunOptions {
        epochs: 3,
        batch: 32,
        seed: 1,
        schedule: cfg.training.lr_schedule,
        progress: false,
        log_epochs: false,
        shift: 0,
        ..RunOptions::from_config(&cfg)
    };
    let out = train(&mut m, &ds, &opts).unwrap();
    assert!(out.test_accuracy > 0.8, "{}", out.test_accuracy);
}

#[test]
fn default_config_fixed_is_within_1_5_points_of_float_on_digits() {
    let ds = digits();
    let cfg = Config::builtin();
    let opts = RunOptions::from_config(&cfg);
    let mut float = make_learner(&cfg);
    let f = train(float.as_mut(), &ds, &opts).unwrap().test_accuracy;
    let mut fixed = FixedDf::new(&cfg).unwrap();
    let x = train(&mut fixed, &ds, &opts).unwrap().test_accuracy;
    assert!(x >= f - 0.015, "fixed {x} vs float {f}");
    assert!(x >= 0.95, "fixed {x}");
}

#[test]
fn fixed_refuses_what_the_hardware_cannot_do() {
    let mut cfg = Config::builtin();
    cfg.training.optimizer = Optimizer::Adam;
    let e = FixedDf::new(&cfg).err().unwrap().to_string();
    assert!(e.contains("optimizer = \"sgd\""), "{e}");
    let mut cfg = Config::builtin();
    cfg.fixed.rounding = Rounding::Stochastic;
    let e = FixedDf::new(&cfg).err().unwrap().to_string();
    assert!(e.contains("update_rounding"), "{e}");
}

#[test]
fn fixed_baselines_train_like_their_float_versions() {
    use dfforge::config::Learner as Kind;
    use dfforge::fixed::baselines::make_fixed_learner;
    let ds = digits();
    for (kind, lr, epochs) in [(Kind::Bp, 1.0, 15), (Kind::Ff, 50.0, 30)] {
        let mut cfg = Config::builtin();
        cfg.algorithm.name = kind;
        cfg.training.learning_rate = lr;
        cfg.training.epochs = epochs;
        let opts = RunOptions::from_config(&cfg);
        let mut float = make_learner(&cfg);
        let f = train(float.as_mut(), &ds, &opts).unwrap().test_accuracy;
        let mut fixed = make_fixed_learner(&cfg).unwrap();
        let x = train(fixed.as_mut(), &ds, &opts).unwrap().test_accuracy;
        assert!(x > 0.85 && x >= f - 0.03, "{kind:?}: fixed {x}, float {f}");
    }
}
