//! The board ID ([`config_id`], returned by PING) must cover exactly what the generated
//! hardware bakes in: change any config key, and the ID must change if and only if the
//! generated RTL changes (beyond the reset value of the learning-rate register, which the
//! host writes before every step).
//!
//! Issue 11, item 1: the ID was the sha256 of the whole config, so `--epochs`, `--lr`, the
//! data set or the seed made a board refuse the config it was built from.

use dfforge::config::Config;
use dfforge::rtl::cmd::config_id;
use std::collections::BTreeMap;

/// A small engine (fast to generate) on the built-in config.
const BASE: &[&str] = &[
    "network.hidden=[12, 10]",
    "training.batch=4",
    "hardware.array_rows=2",
    "hardware.array_cols=3",
];

fn load(extra: &[String]) -> Result<Config, String> {
    let mut sets: Vec<String> = BASE.iter().map(|s| s.to_string()).collect();
    sets.extend_from_slice(extra);
    Config::load_with(None, &sets).map_err(|e| e.to_string())
}

/// The generated files with the ID parameter blanked (manifest.json, which records the
/// whole config, left out): what a bitstream is built from.
fn rtl(cfg: &Config) -> BTreeMap<String, String> {
    let r = dfforge::rtl::generate(cfg).unwrap_or_else(|e| panic!("{e}"));
    let id = format!("64'h{:016x}", config_id(cfg));
    r.files()
        .into_iter()
        .filter(|(n, _)| n != "manifest.json")
        .map(|(n, t)| (n, t.replace(&id, "64'hID")))
        .collect()
}

/// Lines of `b` that differ from `a`, file by file.
fn diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, tb) in b {
        match a.get(name) {
            None => out.push(format!("{name}: new file")),
            Some(ta) if ta != tb => {
                let la: Vec<&str> = ta.lines().collect();
                let lb: Vec<&str> = tb.lines().collect();
                if la.len() != lb.len() {
                    out.push(format!("{name}: {} lines -> {}", la.len(), lb.len()));
                } else {
                    for (x, y) in la.iter().zip(&lb) {
                        if x != y {
                            out.push(format!("{name}: {y}"));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out.extend(
        a.keys()
            .filter(|n| !b.contains_key(*n))
            .map(|n| format!("{n}: removed")),
    );
    out
}

/// Every leaf key of the config as TOML has it (dotted, inline tables included).
fn leaves(item: &toml_edit::Item, prefix: &str, out: &mut Vec<(String, toml_edit::Value)>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match item {
        toml_edit::Item::Table(t) => {
            for (k, v) in t.iter() {
                leaves(v, &join(k), out);
            }
        }
        toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => {
            for (k, v) in t.iter() {
                out.push((join(k), v.clone()));
            }
        }
        toml_edit::Item::Value(v) => out.push((prefix.to_string(), v.clone())),
        _ => {}
    }
}

/// Other values to try for a key, in order (the first valid one is used).
fn candidates(key: &str, v: &toml_edit::Value) -> Vec<String> {
    let last = key.rsplit('.').next().unwrap_or(key);
    let words: &[&str] = match last {
        "name" => &["ff", "bp"],
        "loss" => &["hinge", "npair"],
        "negatives" => &["hard", "random", "all"],
        "collaboration" => &["all", "none", "previous"],
        "scheme" => &["df-r", "df-o", "df"],
        "optimizer" => &["momentum", "adam", "sgd"],
        "lr_schedule" => &["linear", "constant", "cosine"],
        "rounding" | "update_rounding" => &["truncate", "half-up", "stochastic"],
        "board" => &["generic", "ulx3s-45f"],
        "dataset" => &["mnist", "idx:somewhere"],
        _ => &[],
    };
    let cur = v.to_string().trim().trim_matches('"').to_string();
    match v {
        toml_edit::Value::String(_) => words
            .iter()
            .filter(|w| **w != cur)
            .map(|w| format!("\"{w}\""))
            .collect(),
        toml_edit::Value::Integer(i) => {
            let n = *i.value();
            [n + 1, n - 1, n + 2, n * 2, n / 2, 7, 3]
                .into_iter()
                .filter(|&m| m >= 0 && m != n)
                .map(|m| m.to_string())
                .collect()
        }
        toml_edit::Value::Float(f) => {
            let x = *f.value();
            // A small change and a large one (the learning rate's register width changes
            // only with the large one).
            [x * 1.05, x * 0.95, x + 1.0, x * 20.0, 0.5]
                .into_iter()
                .filter(|&y| y != x)
                .map(|y| format!("{y:?}"))
                .collect()
        }
        toml_edit::Value::Boolean(b) => vec![(!*b.value()).to_string()],
        toml_edit::Value::Array(a) => match last {
            "hidden" => vec!["[12, 11]".into(), "[12, 10, 8]".into()],
            "eval_layers" => vec!["[2]".into(), "[1]".into()],
            "wide_products" => vec![format!(
                "[{}, \"transpose\"]",
                a.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )],
            _ => vec![],
        },
        _ => vec![],
    }
}

/// Keys validation ties to a changed one: set along with it.
fn companions(key: &str, cand: &str) -> Vec<String> {
    let n = |v: &str| v.parse::<i64>().unwrap_or(0);
    match key {
        // β_y = −(active negatives) under hinge needs integer bits in β.
        "algorithm.loss" if cand.contains("hinge") => vec!["fixed.beta.frac=11".into()],
        // accumulator.frac = weight.frac + act.frac; update.frac = delta.frac + act.frac.
        "fixed.act.frac" => vec![
            format!("fixed.accumulator.frac={}", 12 + n(cand)),
            format!("fixed.update.frac={}", 20 + n(cand)),
        ],
        "fixed.weight.frac" => vec![format!("fixed.accumulator.frac={}", n(cand) + 12)],
        "fixed.delta.frac" => vec![format!("fixed.update.frac={}", n(cand) + 12)],
        _ => vec![],
    }
}

#[test]
fn the_id_changes_exactly_when_the_hardware_does() {
    let base = load(&[]).unwrap();
    let base_rtl = rtl(&base);
    let base_id = config_id(&base);
    let doc: toml_edit::DocumentMut = base.to_toml().parse().unwrap();
    let mut keys = Vec::new();
    leaves(doc.as_item(), "", &mut keys);
    // The per-learner tables are not in the base's TOML when empty: add FF's and BP's.
    for l in ["ff", "bp"] {
        if !keys
            .iter()
            .any(|(k, _)| k == &format!("training.{l}.learning_rate"))
        {
            keys.push((format!("training.{l}.learning_rate"), 3.0.into()));
        }
    }
    let (mut in_id, mut out_of_id, mut untried) = (Vec::new(), Vec::new(), Vec::new());
    for (key, value) in &keys {
        let mut tried = false;
        for cand in candidates(key, value) {
            let mut sets = vec![format!("{key}={cand}")];
            sets.extend(companions(key, &cand));
            let Ok(cfg) = load(&sets) else {
                continue;
            };
            if dfforge::rtl::generate(&cfg).is_err() {
                continue;
            }
            tried = true;
            let d = diff(&base_rtl, &rtl(&cfg));
            // The LR register's reset value (`lr_q <= ...'d...;`) is the only RTL that may
            // change without the ID: the host overwrites the register.
            let lr_reset_only = !d.is_empty() && d.iter().all(|l| l.contains("lr_q <= "));
            let hardware_changed = !d.is_empty() && !lr_reset_only;
            let id_changed = config_id(&cfg) != base_id;
            assert_eq!(
                id_changed,
                hardware_changed,
                "{key} = {cand}: ID {} but the RTL {}: {:?}",
                if id_changed {
                    "changed"
                } else {
                    "did not change"
                },
                if hardware_changed {
                    "changed"
                } else {
                    "did not (beyond the LR reset value)"
                },
                &d[..d.len().min(5)]
            );
            if id_changed {
                in_id.push(format!("{key}={cand}"));
            } else {
                out_of_id.push(format!("{key}={cand}"));
            }
        }
        if !tried {
            untried.push(key.clone());
        }
    }
    eprintln!("in the ID: {in_id:?}");
    eprintln!("not in the ID: {out_of_id:?}");
    // Only keys validation pins down have no other valid value: the signs, and the fracs
    // that are sums of others (tried through those).
    for k in &untried {
        assert!(
            k.ends_with(".signed") || k == "fixed.accumulator.frac" || k == "fixed.update.frac",
            "no valid other value tried for {k} (of {untried:?})"
        );
    }
    // The ones the issue names: epochs, the learning rate's value, the data set, the seed.
    for k in [
        "training.epochs=",
        "training.df.learning_rate=21",
        "data.dataset=",
        "training.seed=",
    ] {
        assert!(
            out_of_id.iter().any(|s| s.starts_with(k)),
            "{k}: {out_of_id:?}"
        );
    }
    // A learning rate that needs a wider register is another bitstream.
    assert!(
        in_id
            .iter()
            .any(|s| s.starts_with("training.df.learning_rate=")),
        "{in_id:?}"
    );
}

/// The shipped configs: a board built from one answers PING with the ID of the same config
/// with other run-time settings (the commands of the issue).
#[test]
fn run_time_settings_keep_the_shipped_configs_ids() {
    let sets = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // (Learning rates whose η/B needs the same register width as the config's.)
    for (path, lr) in [
        (None, "training.learning_rate=10.0"),
        (Some("configs/mnist.toml"), "training.learning_rate=150.0"),
    ] {
        let path = path.map(|p| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p));
        let base = Config::load_with(path.as_deref(), &[]).unwrap();
        for v in [
            &["training.epochs=1"][..],
            &[lr],
            &["training.seed=9", "data.dataset=\"idx:elsewhere\""],
            &["algorithm.name=bp"],
            &["training.shift=1", "training.lr_schedule=\"constant\""],
        ] {
            let c = Config::load_with(path.as_deref(), &sets(v)).unwrap();
            assert_eq!(config_id(&c), config_id(&base), "{path:?} {v:?}");
        }
        let c = Config::load_with(path.as_deref(), &sets(&["training.batch=2"])).unwrap();
        assert_ne!(config_id(&c), config_id(&base), "{path:?}");
    }
}
