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

/// Every stored weight, bit for bit (a run that diverged compares its NaNs too).
fn weights(l: &mut dyn Learner) -> Vec<u32> {
    l.weights_mut()
        .iter()
        .flat_map(|w| match w {
            WeightsMut::Float(v, _) => v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            WeightsMut::Fixed(v, _) => v.iter().map(|&x| x as u32).collect(),
        })
        .collect()
}

/// Train; the reported test accuracy, the clean evaluation after training and the weights.
fn run(cfg: &Config, fixed: bool, ds: &Dataset) -> (f64, f64, Vec<u32>) {
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
    for (site, level) in [("weight_read", 0.2), ("activation", 0.2)] {
        for fixed in [false, true] {
            for kind in [Kind::Df, Kind::Ff, Kind::Bp] {
                let what = format!("{site} {kind:?} fixed={fixed}");
                let clean = run(&config(kind, |_| {}), fixed, &ds);
                let noisy = config(kind, |c| c.noise.set(site, level, Regime::Train).unwrap());
                let (reported, evaluated, w) = run(&noisy, fixed, &ds);
                assert!(w != clean.2, "{what}: the steps saw the noise");
                assert_eq!(reported, evaluated, "{what}: evaluation is clean");
                // Reproducible from the seed.
                assert!(run(&noisy, fixed, &ds).2 == w, "{what}: not reproducible");
            }
        }
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

// ---- `dfforge noise` end to end through the binary ----

fn dfforge(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dfforge"))
        .args(args)
        .current_dir(dir)
        .env_remove("DFFORGE_DATA_DIR")
        .output()
        .expect("run dfforge")
}

const SWEEP: &[&str] = &[
    "noise",
    "--dataset",
    "digits",
    "--sites",
    "stuck_at,update",
    "--levels",
    "stuck_at=0.01,0.05",
    "--levels",
    "update=1",
    "--learners",
    "df,bp",
    "--seeds",
    "2",
    "--train-samples",
    "300",
    "--test-samples",
    "150",
    "--jobs",
    "2",
    "--out",
    "n",
];

#[test]
fn noise_sweep_writes_curves_and_plots_and_resumes_without_retraining() {
    let dir = tempfile::tempdir().unwrap();
    let o = dfforge(SWEEP, dir.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // Clean: 2 learners × (fixed + the float reference) × 2 seeds = 8; stuck_at: 2 × 2
    // regimes × 2 levels × 2 seeds = 16; update (training only): 2 × 1 × 2 = 4.
    assert!(err.contains("28 trainings (0 already finished)"), "{err}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("n/noise.json")).unwrap())
            .unwrap();
    let curves = report["curves"].as_array().unwrap();
    assert_eq!(curves.len(), 2 * 3);
    for c in curves {
        assert_eq!(c["levels"][0], 0.0);
        assert_eq!(c["seeds"], serde_json::json!([1, 2]));
        let means = c["accuracy_mean"].as_array().unwrap();
        assert!(means
            .iter()
            .all(|m| m.as_f64().is_some_and(|a| (0.0..=1.0).contains(&a))));
    }
    assert_eq!(report["reference"].as_array().unwrap().len(), 2);
    assert_eq!(report["missing"], 0);
    // 5 % stuck bits at inference cost BP accuracy (the shape of the digits curves).
    let bp = curves
        .iter()
        .find(|c| c["learner"] == "bp" && c["site"] == "stuck_at" && c["regime"] == "inference")
        .unwrap();
    assert!(bp["accuracy_mean"][2].as_f64() < bp["accuracy_mean"][0].as_f64());
    for site in ["stuck_at", "update"] {
        let png = dir.path().join(format!("n/plots/{site}.png"));
        assert!(std::fs::metadata(&png).unwrap().len() > 10_000, "{site}");
    }
    // A rerun trains nothing and writes the same curves.
    let o = dfforge(SWEEP, dir.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("(28 already finished)"), "{err}");
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("n/noise.json")).unwrap())
            .unwrap();
    assert_eq!(again["curves"], report["curves"]);
}

#[test]
fn noise_sweep_refuses_bad_arguments_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    for (args, want) in [
        (
            &["noise", "--sites", "gamma"][..],
            "unknown noise site `gamma`",
        ),
        (
            &["noise", "--levels", "bit_flip=0.9"][..],
            "outside (0, 0.5]",
        ),
        (
            &["noise", "--levels", "input=0.1"][..],
            "`input` is not among --sites",
        ),
        (&["noise", "--learners", "sgd"][..], "unknown learner `sgd`"),
    ] {
        let o = dfforge(args, dir.path());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{args:?}: {err}");
    }
    assert!(!dir.path().join("build").exists(), "nothing written");
}
