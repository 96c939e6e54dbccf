use super::*;
use std::path::Path;

fn err(text: &str) -> String {
    Config::from_toml_str(text, "t.toml")
        .unwrap_err()
        .to_string()
}

fn default_with(old: &str, new: &str) -> String {
    assert!(DEFAULT_TOML.contains(old), "default has no `{old}`");
    DEFAULT_TOML.replacen(old, new, 1)
}

#[test]
fn builtin_default_is_valid_and_round_trips() {
    let c = Config::builtin();
    assert_eq!(c.network.widths(), vec![64, 128, 128]);
    let again = Config::from_toml_str(&c.to_toml(), "x").unwrap();
    assert_eq!(c, again);
}

#[test]
fn unknown_key_is_rejected_with_its_line() {
    let text = default_with("batch = 32", "batch = 32\nbatch_size = 4");
    let line = text
        .lines()
        .position(|l| l.starts_with("batch_size"))
        .unwrap()
        + 1;
    let e = err(&text);
    assert!(e.starts_with(&format!("t.toml:{line}:")), "{e}");
    assert!(e.contains("unknown field `batch_size`"), "{e}");
}

#[test]
fn bad_enum_value_lists_the_allowed_ones() {
    let e = err(&default_with("loss = \"npair\"", "loss = \"triplet\""));
    assert!(e.contains("npair") && e.contains("hinge"), "{e}");
}

#[test]
fn out_of_range_values_name_line_and_rule() {
    let text = default_with("learning_rate = 20.0", "learning_rate = -1.0");
    let line = text
        .lines()
        .position(|l| l.starts_with("learning_rate"))
        .unwrap()
        + 1;
    let e = err(&text);
    assert_eq!(
        e,
        format!("t.toml:{line}: `training.df.learning_rate`: is -1; it must be in (0, 1000]")
    );
    let e = err(&default_with("negatives_count = 9", "negatives_count = 10"));
    assert!(e.contains("between 1 and 9"), "{e}");
    let e = err(&default_with("eval_layers = []", "eval_layers = [3]"));
    assert!(e.contains("between 1 and 2"), "{e}");
    let e = err(&default_with("hidden = [128, 128]", "hidden = []"));
    assert!(e.contains("`network.hidden`"), "{e}");
    let e = err(&default_with("dataset = \"digits\"", "dataset = \"cifar\""));
    assert!(e.contains("`data.dataset`") && e.contains("idx:"), "{e}");
}

#[test]
fn malformed_toml_names_the_line() {
    let e = err("[network]\ninput = 64\nhidden = [1,\n");
    assert!(e.starts_with("t.toml:"), "{e}");
    let e = err("[network]\ninput = \"many\"\n");
    assert!(e.starts_with("t.toml:2:"), "{e}");
}

#[test]
fn set_overrides_reach_nested_keys_and_are_validated() {
    let sets = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let c = Config::load_with(
        None,
        &sets(&[
            "training.epochs=3",
            "algorithm.loss=hinge",
            "fixed.beta.frac=11",
            "network.hidden=[8, 4]",
        ]),
    )
    .unwrap();
    assert_eq!(c.training.epochs, 3);
    assert_eq!(c.algorithm.loss, Loss::Hinge);
    assert_eq!(c.fixed.beta.frac, 11);
    assert_eq!(c.network.hidden, vec![8, 4]);
    let e = Config::load_with(None, &sets(&["training.epoch=3"]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `epoch`"), "{e}");
    let e = Config::load_with(None, &sets(&["training.batch=0"]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`training.batch`"), "{e}");
    let e = Config::load_with(None, &sets(&["nokey"]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("KEY=VALUE"), "{e}");
}

fn sets(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn set_err(v: &[&str]) -> String {
    Config::load_with(None, &sets(v)).unwrap_err().to_string()
}

// Issue 11, item 6: a format whose fraction bits leave no room for its values
// (frac > bits) was accepted and trained to chance with exit status 0.
#[test]
fn formats_too_narrow_for_their_values_are_refused() {
    for (set, key) in [
        ("fixed.hidden.frac=30", "fixed.hidden"),
        ("fixed.logit.frac=20", "fixed.logit"),
        ("fixed.pixel.frac=12", "fixed.pixel"),
        ("fixed.act.frac=13", "fixed.act"),
        ("fixed.weight.frac=16", "fixed.weight"),
        ("fixed.goodness.frac=19", "fixed.goodness"),
    ] {
        let e = set_err(&[set]);
        assert!(
            e.contains(&format!("`{key}`")) && e.contains("use frac <="),
            "{set}: {e}"
        );
    }
    // The exp table's input must span its range: 16 needs 4 integer bits.
    let e = set_err(&["fixed.logit.frac=12"]);
    assert!(
        e.contains("`fixed.logit`") && e.contains("frac <= 11"),
        "{e}"
    );
    Config::load_with(None, &sets(&["fixed.logit.frac=11"])).unwrap();
    // Formats that are all fraction by design stay allowed (δ has frac > bits).
    let c = Config::builtin();
    assert!(c.fixed.delta.frac > c.fixed.delta.bits);
    Config::load_with(None, &sets(&["fixed.pixel.frac=7", "fixed.hidden.frac=16"])).unwrap();
}

// Issue 11, item 14: the `fixed.update` message carried 18 embedded spaces (and the
// `wide_products` one a run of them): messages are single-spaced sentences.
#[test]
fn validation_messages_have_no_runs_of_spaces() {
    for v in [
        &["fixed.update.bits=20"][..],
        &["fixed.multiplier_bits=8"],
        &["fixed.accumulator.bits=20"],
        &["fixed.beta.frac=14", "algorithm.loss=hinge"],
        &["fixed.hidden.frac=30"],
        &["fixed.wide_products=[\"nope\"]"],
        &["training.df.learning_rate=-1"],
        &["training.learning_rate=5", "training.epochs=0"],
    ] {
        let e = set_err(v);
        assert!(!e.contains("  "), "{v:?}: {e:?}");
    }
}

// Issue 11, item 14: hinge with `negatives = "hard"` and `negatives_count = 1` was held
// to the β bound of all ten hypotheses; β_y is minus the number of active negatives.
#[test]
fn hinge_beta_bound_counts_the_negatives_that_enter_the_loss() {
    let hinge = ["algorithm.loss=hinge", "fixed.beta.frac=14"];
    let ok = |extra: &[&str]| {
        let mut v = hinge.to_vec();
        v.extend_from_slice(extra);
        Config::load_with(None, &sets(&v))
    };
    // β is 16 bits with 14 fraction bits: it holds -2 but not -3.
    ok(&["algorithm.negatives=hard", "algorithm.negatives_count=1"]).unwrap();
    ok(&["algorithm.negatives=random", "algorithm.negatives_count=2"]).unwrap();
    let e = ok(&["algorithm.negatives=hard", "algorithm.negatives_count=3"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("beta_y = -3") && e.contains("3 negatives"),
        "{e}"
    );
    let e = ok(&[]).unwrap_err().to_string();
    assert!(
        e.contains("beta_y = -9") && e.contains("9 negatives"),
        "{e}"
    );
}

// Issue 11, item 14: the operating system's message appeared twice ("No such file or
// directory (os error 2): No such file or directory (os error 2)").
#[test]
fn io_errors_are_quoted_once() {
    let e = Config::load(Some(Path::new("/nonexistent/dfforge.toml"))).unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(e));
    assert_eq!(chain.matches("os error 2").count(), 1, "{chain}");
    assert!(chain.contains("/nonexistent/dfforge.toml"), "{chain}");
}

// Issue 11, item 13: every learner used DF's learning rate (20), on which backprop
// diverges; each learner now has its own, and old configs keep working.
#[test]
fn each_learner_has_its_own_optimizer_and_learning_rate() {
    let lr = |v: &[&str]| {
        let c = Config::load_with(None, &sets(v)).unwrap();
        (c.training.optimizer, c.training.learning_rate)
    };
    assert_eq!(lr(&[]), (Optimizer::Sgd, 20.0));
    assert_eq!(lr(&["algorithm.name=bp"]), (Optimizer::Sgd, 1.0));
    assert_eq!(lr(&["algorithm.name=ff"]), (Optimizer::Sgd, 50.0));
    // For every learner: training.learning_rate and training.optimizer.
    assert_eq!(
        lr(&[
            "algorithm.name=bp",
            "training.learning_rate=0.01",
            "training.optimizer=adam"
        ]),
        (Optimizer::Adam, 0.01)
    );
    // One learner's own.
    assert_eq!(
        lr(&["algorithm.name=bp", "training.bp.learning_rate=0.3"]),
        (Optimizer::Sgd, 0.3)
    );
    // A config without any (older configs had only the shared keys): the defaults.
    let mut text: String = DEFAULT_TOML
        .lines()
        .take_while(|l| !l.starts_with("# Each learner"))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&DEFAULT_TOML[DEFAULT_TOML.find("[data]").unwrap()..]);
    let c = Config::from_toml_str(&text, "t.toml").unwrap();
    assert_eq!(c.training.learning_rate, Learner::Df.default_training().1);
    let bp = text.replace("name = \"df\"", "name = \"bp\"");
    let c = Config::from_toml_str(&bp, "t.toml").unwrap();
    assert_eq!(c.training.learning_rate, Learner::Bp.default_training().1);
    // An old config with the shared keys: they apply to every learner, as before.
    let old = text.replace(
        "epochs = 30\n",
        "epochs = 30\noptimizer = \"sgd\"\nlearning_rate = 7.0\n",
    );
    let c = Config::from_toml_str(&old.replace("name = \"df\"", "name = \"bp\""), "t").unwrap();
    assert_eq!(c.training.learning_rate, 7.0);
    // A file giving both would hide one: refused, by line.
    let both = DEFAULT_TOML.replace("epochs = 30\n", "epochs = 30\nlearning_rate = 7.0\n");
    let e = err(&both);
    assert!(
        e.contains("`training.df.learning_rate`") && e.contains("would hide it"),
        "{e}"
    );
    // The resolved config round-trips, for this learner and for the others.
    for v in [
        &[][..],
        &["algorithm.name=bp"],
        &["training.learning_rate=3.0"],
        &["algorithm.name=ff", "training.optimizer=adam"],
    ] {
        let c = Config::load_with(None, &sets(v)).unwrap();
        let again = Config::from_toml_str(&c.to_toml(), "x").unwrap();
        assert_eq!(c, again, "{v:?}");
        // The learner changed in code (its rate not re-resolved): what runs is written.
        let mut bp = c.clone();
        bp.algorithm.name = Learner::Bp;
        let again = Config::from_toml_str(&bp.to_toml(), "x").unwrap().training;
        assert_eq!(
            (again.optimizer, again.learning_rate),
            (c.training.optimizer, c.training.learning_rate),
            "{v:?}"
        );
    }
    // A value changed in code is written out, so a report records what ran.
    let mut c = Config::builtin();
    c.training.learning_rate = 5.0;
    let again = Config::from_toml_str(&c.to_toml(), "x").unwrap();
    assert_eq!(again.training.learning_rate, 5.0);
}

// Found by the config fuzzer: `--set training.df.learning_rate=1` after
// `--set training.learning_rate=2` was silently hidden by the shared key, and the
// config did not round-trip through its own TOML. The later --set now wins.
#[test]
fn a_learners_own_set_after_the_shared_one_wins() {
    for (v, df, ff) in [
        (
            &["training.learning_rate=2", "training.df.learning_rate=1"][..],
            (Optimizer::Sgd, 1.0),
            (Optimizer::Sgd, 2.0),
        ),
        (
            &["training.df.learning_rate=1", "training.learning_rate=2"],
            (Optimizer::Sgd, 2.0),
            (Optimizer::Sgd, 2.0),
        ),
        (
            &["training.optimizer=adam", "training.ff.optimizer=momentum"],
            (Optimizer::Adam, 20.0),
            (Optimizer::Momentum, 50.0),
        ),
    ] {
        let c = Config::load_with(None, &sets(v)).unwrap();
        let got = |l: Learner| {
            let ((o, _), (r, _)) = c.training.resolve(l);
            (o, r)
        };
        assert_eq!((got(Learner::Df), got(Learner::Ff)), (df, ff), "{v:?}");
        assert_eq!(
            (c.training.optimizer, c.training.learning_rate),
            df,
            "{v:?}"
        );
        let again = Config::from_toml_str(&c.to_toml(), "x").unwrap();
        assert_eq!(c, again, "{v:?}");
    }
}

#[test]
fn missing_section_is_reported() {
    let e = err("[network]\ninput = 4\nhidden=[2]\nclasses=2\n");
    assert!(e.contains("missing field `algorithm`"), "{e}");
}

// Issue 12: the `[noise]` table. Off by default and then not written out; levels outside
// their range and sites that do not exist are refused with the key.
#[test]
fn noise_table_is_validated_and_left_out_when_off() {
    let c = Config::builtin();
    assert!(c.noise.is_off());
    assert!(
        !c.to_toml().contains("noise"),
        "an unused table is not written"
    );
    let on = default_with(
        "[data]",
        "[noise.input]\nkind = \"shot\"\nlevel = 0.2\nregime = \"train\"\n\n[data]",
    );
    let c = Config::from_toml_str(&on, "on.toml").unwrap();
    assert_eq!(c.noise.input.kind, crate::noise::InputKind::Shot);
    assert_eq!(c.noise.input.regime, crate::noise::Regime::Train);
    assert_eq!(Config::from_toml_str(&c.to_toml(), "x").unwrap(), c);
    let e = err(&default_with(
        "[data]",
        "[noise.input]\nlevel = 1.5\n\n[data]",
    ));
    assert!(
        e.contains("noise.input.level") && e.contains("0 (off) or between 0 and 1"),
        "{e}"
    );
    // Shot noise at a vanishing level would need an astronomical photon count.
    let e = err(&default_with(
        "[data]",
        "[noise.input]\nkind = \"shot\"\nlevel = 1e-200\n\n[data]",
    ));
    assert!(e.contains("between 0.001 and 1"), "{e}");
    let e = err(&default_with(
        "[data]",
        "[noise.input]\nlevel = -0.1\n\n[data]",
    ));
    assert!(e.contains("noise.input.level"), "{e}");
    let e = err(&default_with(
        "[data]",
        "[noise.weight_read]\nlevel = 0.1\nspread = 2\n\n[data]",
    ));
    assert!(e.contains("spread"), "{e}");
    let e = err(&default_with(
        "[data]",
        "[noise.bit_flip]\nlevel = 0.7\n\n[data]",
    ));
    assert!(
        e.contains("noise.bit_flip.level") && e.contains("[1e-12, 0.5]"),
        "{e}"
    );
    // A rate so small that 1 - p rounds to 1 would hang the fault sampler.
    let e = err(&default_with(
        "[data]",
        "[noise.bit_flip]\nlevel = 1e-17\n\n[data]",
    ));
    assert!(
        e.contains("noise.bit_flip.level") && e.contains("1e-12"),
        "{e}"
    );
    let e = err(&default_with(
        "[data]",
        "[noise.update]\nlevel = -1\n\n[data]",
    ));
    assert!(e.contains("noise.update.level"), "{e}");
    let e = err(&default_with(
        "[data]",
        "[noise.stuck_at]\nlevel = nan\n\n[data]",
    ));
    assert!(e.contains("noise.stuck_at.level"), "{e}");
    // Each weight site is read, and only the sites that are on are written out.
    let c = Config::from_toml_str(
        &default_with(
            "[data]",
            "[noise.stuck_at]\nlevel = 0.01\npolarity = \"zero\"\nregime = \"inference\"\n\n\
         [noise.weight_read]\nlevel = 0.05\nform = \"multiplicative\"\n\n[data]",
        ),
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.noise.model_sites_on(), ["weight_read", "stuck_at"]);
    assert_eq!(c.noise.stuck_at.polarity, crate::noise::Polarity::Zero);
    assert_eq!(c.noise.weight_read.form, crate::noise::Form::Multiplicative);
    let toml = c.to_toml();
    assert!(
        toml.contains("[noise.stuck_at]") && !toml.contains("bit_flip"),
        "{toml}"
    );
    assert_eq!(
        Config::from_toml_str(&toml, "<round trip>").unwrap().noise,
        c.noise
    );
    let e = set_err(&["noise.input.kind=\"speckle\""]);
    assert!(e.contains("gaussian") && e.contains("salt-pepper"), "{e}");
}
