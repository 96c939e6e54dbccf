//! Issue 12: the weight-memory noise sites, applied by the training loop to real learners of
//! both software backends. Regimes must mean what they say: a site in the training regime
//! shapes the learned weights but not the evaluation, one in the inference regime the
//! evaluation but not the learned weights; and a run is reproducible from its seed.

use dfforge::config::{Config, Learner as Kind};
use dfforge::data::{self, Dataset, DatasetSpec};
use dfforge::float::Learner;
use dfforge::noise::weights::WeightsMut;
use dfforge::noise::Regime;
use dfforge::train::{evaluate, train, RunOptions};

fn digits() -> Dataset {
    let mut ds = data::load(&DatasetSpec::Digits, std::path::Path::new("data")).unwrap();
    ds.truncate(Some(400), Some(200));
    ds
}

fn config(kind: Kind, set: impl FnOnce(&mut Config)) -> Config {
    let mut cfg = Config::builtin();
    cfg.set_learner(kind);
    cfg.training.epochs = 2;
    set(&mut cfg);
    cfg
}

fn learner(cfg: &Config, fixed: bool) -> Box<dyn Learner> {
    if fixed {
        dfforge::fixed::baselines::make_fixed_learner(cfg).unwrap()
    } else {
        dfforge::float::make_learner(cfg)
    }
}

/// Every stored weight, as numbers.
fn weights(l: &mut dyn Learner) -> Vec<f64> {
    l.weights_mut()
        .iter()
        .flat_map(|w| match w {
            WeightsMut::Float(v, _) => v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
            WeightsMut::Fixed(v, _) => v.iter().map(|&x| f64::from(x)).collect(),
        })
        .collect()
}

/// Train; the reported test accuracy, the clean evaluation after training and the weights.
fn run(cfg: &Config, fixed: bool, ds: &Dataset) -> (f64, f64, Vec<f64>) {
    let mut l = learner(cfg, fixed);
    let mut opts = RunOptions::from_config(cfg);
    opts.check_divergence = false;
    let out = train(l.as_mut(), ds, &opts).unwrap();
    let clean = evaluate(l.as_ref(), &ds.test, ds.dim(), 256);
    (out.test_accuracy, clean, weights(l.as_mut()))
}

#[test]
fn every_learner_of_both_backends_exposes_its_weights() {
    for kind in [Kind::Df, Kind::Ff, Kind::Bp] {
        for fixed in [false, true] {
            let cfg = config(kind, |_| {});
            let mut l = learner(&cfg, fixed);
            let n: usize = l.weights_mut().iter().map(|w| w.len()).sum();
            let widths = cfg.network.widths();
            let hidden: usize = widths.windows(2).map(|p| p[0] * p[1]).sum();
            assert!(n >= hidden, "{kind:?} fixed={fixed}: {n} weights");
        }
    }
}

#[test]
fn a_training_regime_site_shapes_the_weights_and_leaves_evaluation_clean() {
    let ds = digits();
    for fixed in [false, true] {
        let clean = run(&config(Kind::Df, |_| {}), fixed, &ds);
        let noisy = config(Kind::Df, |c| {
            c.noise.weight_read.level = 0.2;
            c.noise.weight_read.regime = Regime::Train;
        });
        let (reported, evaluated, w) = run(&noisy, fixed, &ds);
        assert_ne!(w, clean.2, "fixed={fixed}: the steps saw the noise");
        assert_eq!(reported, evaluated, "fixed={fixed}: evaluation is clean");
        // Reproducible from the seed.
        assert_eq!(run(&noisy, fixed, &ds).2, w);
    }
}

#[test]
fn an_inference_regime_site_leaves_the_learned_weights_alone() {
    let ds = digits();
    for fixed in [false, true] {
        for kind in [Kind::Df, Kind::Bp] {
            let clean = run(&config(kind, |_| {}), fixed, &ds);
            let noisy = config(kind, |c| {
                c.noise.stuck_at.level = 0.05;
                c.noise.stuck_at.regime = Regime::Inference;
            });
            let (reported, evaluated, w) = run(&noisy, fixed, &ds);
            assert_eq!(w, clean.2, "{kind:?} fixed={fixed}: training untouched");
            assert_eq!(
                evaluated, clean.1,
                "{kind:?} fixed={fixed}: weights restored"
            );
            assert!(
                reported < evaluated - 0.05,
                "{kind:?} fixed={fixed}: 5 % stuck bits cost accuracy ({reported} vs {evaluated})"
            );
        }
    }
}
