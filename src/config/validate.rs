//! Validation: the range rules of every key, the rule that one setting may not hide another,
//! and errors that name the file, the key's line and what is allowed.

use super::{Config, ConfigFile, Learner};

/// A config error that names where it is and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {err}")]
    Io {
        path: String,
        // Not `#[source]`: the message already quotes it, and `{:#}` would print it twice.
        err: std::io::Error,
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
pub(super) struct Violation {
    pub(super) key: &'static str,
    pub(super) message: String,
}

impl Violation {
    /// The error, at the key's line in `text` when it is there.
    pub(super) fn into_error(self, text: &str, file: &str) -> ConfigError {
        let message = format!("`{}`: {}", self.key, self.message);
        ConfigError::at(file, key_line(text, self.key), message)
    }
}

impl ConfigError {
    /// An error in `file`, at `line` when it is known.
    pub(super) fn at(file: &str, line: Option<usize>, message: String) -> ConfigError {
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
    }
}

/// A config file must not give the optimizer or learning rate both for every learner
/// (`training.learning_rate`) and for one (`[training.bp] learning_rate`): the first would
/// silently hide the second.
pub(super) fn check_shadowing(cf: &ConfigFile, text: &str, file: &str) -> Result<(), ConfigError> {
    let t = &cf.training;
    for (l, own) in [
        (Learner::Df, &t.df),
        (Learner::Ff, &t.ff),
        (Learner::Bp, &t.bp),
    ] {
        let keys = match l {
            Learner::Df => ("training.df.optimizer", "training.df.learning_rate"),
            Learner::Ff => ("training.ff.optimizer", "training.ff.learning_rate"),
            Learner::Bp => ("training.bp.optimizer", "training.bp.learning_rate"),
        };
        let clash = if let (Some(all), Some(_)) = (t.optimizer, own.optimizer) {
            Some((keys.0, "optimizer", all.to_string()))
        } else if let (Some(all), Some(_)) = (t.learning_rate, own.learning_rate) {
            Some((keys.1, "learning_rate", all.to_string()))
        } else {
            None
        };
        if let Some((key, name, all)) = clash {
            return Err(Violation {
                key,
                message: format!(
                    "is given, but training.{name} = {all} applies to every learner and would \
                     hide it; keep one: remove training.{name} to give each learner its own \
                     ([training.df], [training.ff], [training.bp]), or remove this one"
                ),
            }
            .into_error(text, file));
        }
    }
    Ok(())
}

impl Config {
    /// Validate a config that did not come from text (e.g. after CLI overrides).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_in("", "<config after command-line overrides>")
    }

    pub(super) fn validate_in(&self, text: &str, file: &str) -> Result<(), ConfigError> {
        match self.violations().into_iter().next() {
            None => Ok(()),
            Some(v) => Err(v.into_error(text, file)),
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
        for (key, lr) in [
            ("training.learning_rate", t.all_learners.learning_rate),
            ("training.df.learning_rate", t.df.learning_rate),
            ("training.ff.learning_rate", t.ff.learning_rate),
            ("training.bp.learning_rate", t.bp.learning_rate),
            ("training.learning_rate", Some(t.learning_rate)),
        ] {
            if let Some(lr) = lr {
                bad(
                    key,
                    lr.is_finite() && lr > 0.0 && lr <= 1000.0,
                    format!("is {lr}; it must be in (0, 1000]"),
                );
            }
        }
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
        bad(
            "training.shift",
            t.shift <= 8,
            format!(
                "is {}; it must be between 0 and 8 pixels (0 switches augmentation off)",
                t.shift
            ),
        );
        let ni = &self.noise.input;
        let (min, max) = crate::noise::InputNoise::level_range(ni.kind);
        bad(
            "noise.input.level",
            ni.level == 0.0 || (ni.level.is_finite() && ni.level >= min && ni.level <= max),
            format!(
                "is {}; it must be 0 (off) or between {min} and {max}: σ in pixel units for \
                 kind = \"gaussian\", σ at a full-scale pixel for \"shot\" (at least 0.001), \
                 the fraction of pixels hit for \"salt-pepper\"",
                ni.level
            ),
        );
        for site in crate::noise::SITES.iter().filter(|s| s.model_internal) {
            let level = self.noise.level(site.key).unwrap_or(0.0);
            bad(
                site.level_key,
                level == 0.0
                    || (level.is_finite()
                        && level > 0.0
                        && level >= site.min_level
                        && level <= site.max_level),
                if site.min_level > 0.0 {
                    format!(
                        "is {level}; it must be 0 (off) or in [{:e}, {}]: {}",
                        site.min_level, site.max_level, site.level_means
                    )
                } else {
                    format!(
                        "is {level}; it must be 0 (off) or in (0, {}]: {}",
                        site.max_level, site.level_means
                    )
                },
            );
        }
        if let Err(e) = self.data.dataset.parse::<crate::data::DatasetSpec>() {
            bad("data.dataset", false, e.to_string());
        }
        let h = &self.hardware;
        bad(
            "hardware.array_rows",
            (1..=64).contains(&h.array_rows),
            format!("is {}; it must be between 1 and 64", h.array_rows),
        );
        bad(
            "hardware.array_cols",
            (1..=64).contains(&h.array_cols),
            format!("is {}; it must be between 1 and 64", h.array_cols),
        );
        bad(
            "hardware.board",
            ["ulx3s-85f", "ulx3s-45f", "ulx3s-25f", "generic"].contains(&h.board.as_str()),
            format!(
                "is `{}`; known boards: ulx3s-85f, ulx3s-45f, ulx3s-25f, generic",
                h.board
            ),
        );
        if out.is_empty() {
            out.extend(self.fixed.violations(self));
        }
        out
    }
}

/// 1-based line of a byte offset.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
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
