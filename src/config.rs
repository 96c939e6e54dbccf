//! The one TOML config: network, algorithm options (DESIGN.md §1), training and data.
//!
//! It is the single source of truth that every backend reads. Parsing is strict: unknown keys
//! and out-of-range values are rejected with the file, the line and a sentence saying what is
//! allowed, because a silently ignored typo in a hardware config costs a synthesis run.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// The built-in default config (also `configs/default.toml`), so the program runs with no files.
pub const DEFAULT_TOML: &str = include_str!("../configs/default.toml");
/// Name used in error messages for the built-in config.
pub const DEFAULT_NAME: &str = "<built-in configs/default.toml>";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub network: Network,
    pub algorithm: Algorithm,
    pub training: Training,
    pub data: Data,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// d_0: pixels per sample.
    pub input: usize,
    /// d_1..d_L.
    pub hidden: Vec<usize>,
    /// C.
    pub classes: usize,
}

impl Network {
    /// Widths d_0..d_L.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.input];
        w.extend(&self.hidden);
        w
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Learner {
    /// Distance-Forward (this project's subject).
    Df,
    /// Hinton's Forward-Forward baseline.
    Ff,
    /// Backpropagation baseline with a softmax head.
    Bp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    Npair,
    Hinge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Negatives {
    All,
    Random,
    Hard,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Collaboration {
    None,
    Previous,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scheme {
    /// Purely local updates.
    #[serde(rename = "df")]
    Df,
    /// Local error plus a fixed random projection of the next layer's error.
    #[serde(rename = "df-r")]
    DfR,
    /// Local error plus the next layer's error through its transposed weights.
    #[serde(rename = "df-o")]
    DfO,
}

/// How the learning rate moves over the run (a multiplier on `learning_rate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Always 1.
    Constant,
    /// From 1 down to 0 at the end of the last epoch.
    Linear,
    /// Half a cosine from 1 down to 0.
    Cosine,
}

impl Schedule {
    /// The multiplier after fraction `progress` (0..1) of all training steps.
    pub fn factor(self, progress: f64) -> f32 {
        let p = progress.clamp(0.0, 1.0);
        match self {
            Schedule::Constant => 1.0,
            Schedule::Linear => (1.0 - p) as f32,
            Schedule::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * p).cos())) as f32,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Sgd,
    Momentum,
    Adam,
}

macro_rules! display_as_serde {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // The serde name is the one users write in TOML and on the command line.
                let v = serde_json::to_value(self).map_err(|_| fmt::Error)?;
                f.write_str(v.as_str().unwrap_or("?"))
            }
        }
    )*};
}
display_as_serde!(
    Learner,
    Loss,
    Negatives,
    Collaboration,
    Scheme,
    Optimizer,
    Schedule
);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Algorithm {
    pub name: Learner,
    pub loss: Loss,
    pub margin: f32,
    pub scale: f32,
    pub negatives: Negatives,
    pub negatives_count: usize,
    pub collaboration: Collaboration,
    pub scheme: Scheme,
    /// 1-based layer indices summed at inference; empty means all.
    pub eval_layers: Vec<usize>,
    pub epsilon: f32,
    pub ff_threshold: f32,
    pub feedback_seed: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub optimizer: Optimizer,
    pub learning_rate: f32,
    pub lr_schedule: Schedule,
    pub momentum: f32,
    pub batch: usize,
    pub epochs: usize,
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Data {
    /// `digits`, `mnist` or `idx:DIR`.
    pub dataset: String,
}

/// A config error that names where it is and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    InvalidNoLine { file: String, message: String },
}

/// A validation failure before it is placed in a file: the dotted key and the sentence.
struct Violation {
    key: &'static str,
    message: String,
}

impl Config {
    /// The built-in default config.
    pub fn builtin() -> Config {
        // The default is compiled in and covered by a test, so failing here is a build defect.
        Config::from_toml_str(DEFAULT_TOML, DEFAULT_NAME).expect("built-in default config is valid")
    }

    /// Load from a file, or the built-in default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Ok(Config::builtin()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Io {
                    path: p.display().to_string(),
                    source,
                })?;
                Config::from_toml_str(&text, &p.display().to_string())
            }
        }
    }

    /// Parse and validate TOML text; `file` names the source in errors.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let message = e.message().trim().to_string();
            match line {
                Some(line) => ConfigError::Invalid {
                    file: file.to_string(),
                    line,
                    message,
                },
                None => ConfigError::InvalidNoLine {
                    file: file.to_string(),
                    message,
                },
            }
        })?;
        cfg.validate_in(text, file)?;
        Ok(cfg)
    }

    /// Validate a config that did not come from text (e.g. after CLI overrides).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_in("", "<config after command-line overrides>")
    }

    fn validate_in(&self, text: &str, file: &str) -> Result<(), ConfigError> {
        match self.violations().into_iter().next() {
            None => Ok(()),
            Some(v) => match key_line(text, v.key) {
                Some(line) => Err(ConfigError::Invalid {
                    file: file.to_string(),
                    line,
                    message: format!("`{}`: {}", v.key, v.message),
                }),
                None => Err(ConfigError::InvalidNoLine {
                    file: file.to_string(),
                    message: format!("`{}`: {}", v.key, v.message),
                }),
            },
        }
    }

    fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut bad = |key: &'static str, ok: bool, message: String| {
            if !ok {
                out.push(Violation { key, message });
            }
        };
        let n = &self.network;
        bad(
            "network.input",
            (1..=1 << 20).contains(&n.input),
            format!("is {}; it must be between 1 and 1048576 pixels", n.input),
        );
        bad(
            "network.hidden",
            !n.hidden.is_empty() && n.hidden.len() <= 16,
            format!(
                "has {} layers; give between 1 and 16 layer widths, e.g. [128, 128]",
                n.hidden.len()
            ),
        );
        bad(
            "network.hidden",
            n.hidden.iter().all(|&w| (1..=65536).contains(&w)),
            format!("is {:?}; every width must be between 1 and 65536", n.hidden),
        );
        bad(
            "network.classes",
            (2..=256).contains(&n.classes),
            format!("is {}; it must be between 2 and 256", n.classes),
        );
        let a = &self.algorithm;
        bad(
            "algorithm.margin",
            a.margin.is_finite() && a.margin >= 0.0,
            format!("is {}; it must be a finite number >= 0", a.margin),
        );
        bad(
            "algorithm.scale",
            a.scale.is_finite() && a.scale > 0.0 && a.scale <= 1000.0,
            format!("is {}; it must be in (0, 1000]", a.scale),
        );
        bad(
            "algorithm.negatives_count",
            a.negatives_count >= 1 && a.negatives_count < n.classes,
            format!(
                "is {}; with {} classes it must be between 1 and {} (the number of wrong labels)",
                a.negatives_count,
                n.classes,
                n.classes.saturating_sub(1)
            ),
        );
        let layers = n.hidden.len();
        let mut seen = std::collections::BTreeSet::new();
        bad(
            "algorithm.eval_layers",
            a.eval_layers
                .iter()
                .all(|&l| l >= 1 && l <= layers && seen.insert(l)),
            format!(
                "is {:?}; list distinct 1-based layer numbers between 1 and {layers}, or [] for all",
                a.eval_layers
            ),
        );
        bad(
            "algorithm.epsilon",
            a.epsilon.is_finite() && a.epsilon > 0.0 && a.epsilon < 1.0,
            format!("is {}; it must be in (0, 1)", a.epsilon),
        );
        bad(
            "algorithm.ff_threshold",
            a.ff_threshold.is_finite() && a.ff_threshold >= 0.0,
            format!("is {}; it must be a finite number >= 0", a.ff_threshold),
        );
        bad(
            "algorithm.name",
            a.name != Learner::Ff || n.input >= n.classes,
            format!(
                "is ff, which writes the label into the first {} pixels, but network.input is only {}",
                n.classes, n.input
            ),
        );
        let t = &self.training;
        bad(
            "training.learning_rate",
            t.learning_rate.is_finite() && t.learning_rate > 0.0 && t.learning_rate <= 1000.0,
            format!("is {}; it must be in (0, 1000]", t.learning_rate),
        );
        bad(
            "training.momentum",
            t.momentum.is_finite() && (0.0..1.0).contains(&t.momentum),
            format!("is {}; it must be in [0, 1)", t.momentum),
        );
        bad(
            "training.batch",
            (1..=65536).contains(&t.batch),
            format!("is {}; it must be between 1 and 65536", t.batch),
        );
        bad(
            "training.epochs",
            (1..=100_000).contains(&t.epochs),
            format!("is {}; it must be between 1 and 100000", t.epochs),
        );
        if let Err(e) = self.data.dataset.parse::<crate::data::DatasetSpec>() {
            bad("data.dataset", false, e.to_string());
        }
        out
    }

    /// Number of DF layers L.
    pub fn layers(&self) -> usize {
        self.network.hidden.len()
    }

    /// The inference layer set S as 0-based indices.
    pub fn eval_layer_indices(&self) -> Vec<usize> {
        if self.algorithm.eval_layers.is_empty() {
            (0..self.layers()).collect()
        } else {
            self.algorithm.eval_layers.iter().map(|l| l - 1).collect()
        }
    }

    /// The config as TOML text (for reports and `dfforge config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// 1-based line of a dotted key's value in TOML text, if present.
fn key_line(text: &str, dotted: &str) -> Option<usize> {
    let doc: toml_edit::ImDocument<&str> = toml_edit::ImDocument::parse(text).ok()?;
    let mut item = doc.as_item();
    for part in dotted.split('.') {
        item = item.get(part)?;
    }
    let span = item.span()?;
    Some(line_of(text, span.start))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            format!("t.toml:{line}: `training.learning_rate`: is -1; it must be in (0, 1000]")
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
    fn missing_section_is_reported() {
        let e = err("[network]\ninput = 4\nhidden=[2]\nclasses=2\n");
        assert!(e.contains("missing field `algorithm`"), "{e}");
    }
}
