//! Reading a config: the built-in default or a file, `--set KEY=VALUE` overrides applied to
//! the TOML document before it is parsed, then validation.

use super::validate::{check_shadowing, line_of};
use super::{Config, ConfigError, ConfigFile, DEFAULT_NAME, DEFAULT_TOML};
use std::path::Path;

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
                let text = std::fs::read_to_string(p).map_err(|err| ConfigError::Io {
                    path: p.display().to_string(),
                    err,
                })?;
                Config::from_toml_str(&text, &p.display().to_string())
            }
        }
    }

    /// Load (file or built-in) and apply `KEY=VALUE` overrides, e.g. `fixed.weight.bits=14`.
    ///
    /// VALUE is read as a TOML value (`3`, `0.5`, `"hinge"`, `[64, 64]`, `{ bits = 8, frac = 8,
    /// signed = false }`); anything that is not valid TOML is taken as a string, so
    /// `algorithm.loss=hinge` works without quotes.
    pub fn load_with(path: Option<&Path>, sets: &[String]) -> Result<Config, ConfigError> {
        if sets.is_empty() {
            return Config::load(path);
        }
        let (text, name) = match path {
            None => (DEFAULT_TOML.to_string(), DEFAULT_NAME.to_string()),
            Some(p) => (
                std::fs::read_to_string(p).map_err(|err| ConfigError::Io {
                    path: p.display().to_string(),
                    err,
                })?,
                p.display().to_string(),
            ),
        };
        let bad = |message: String| ConfigError::InvalidNoLine {
            file: name.clone(),
            message,
        };
        // The file on its own must not give a setting both for every learner and for one.
        if let Ok(cf) = toml::from_str::<ConfigFile>(&text) {
            check_shadowing(&cf, &text, &name)?;
        }
        let mut doc: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e: toml_edit::TomlError| bad(e.to_string()))?;
        for set in sets {
            let (key, value) = set.split_once('=').ok_or_else(|| {
                bad(format!(
                    "--set `{set}`: write KEY=VALUE, e.g. --set training.epochs=5"
                ))
            })?;
            let parts: Vec<&str> = key.trim().split('.').collect();
            // `training.optimizer`/`learning_rate` set here apply to every learner: drop the
            // per-learner ones they override, so they cannot shadow each other.
            if let ["training", k @ ("optimizer" | "learning_rate")] = parts.as_slice() {
                if let Some(t) = doc.get_mut("training").and_then(|t| t.as_table_like_mut()) {
                    for l in ["df", "ff", "bp"] {
                        if let Some(own) = t.get_mut(l).and_then(|o| o.as_table_like_mut()) {
                            own.remove(k);
                        }
                    }
                }
            }
            // And the other way round: a learner's own value set after the shared one wins
            // for that learner. The shared value moves into the other learners' tables, so
            // that they keep it and nothing is hidden.
            if let ["training", l @ ("df" | "ff" | "bp"), k @ ("optimizer" | "learning_rate")] =
                parts.as_slice()
            {
                if let Some(t) = doc.get_mut("training").and_then(|t| t.as_table_like_mut()) {
                    if let Some(shared) = t.remove(k) {
                        for other in ["df", "ff", "bp"].into_iter().filter(|o| o != l) {
                            if t.get(other).is_none() {
                                t.insert(other, toml_edit::Item::Table(toml_edit::Table::new()));
                            }
                            if let Some(own) = t.get_mut(other).and_then(|o| o.as_table_like_mut())
                            {
                                own.insert(k, shared.clone());
                            }
                        }
                    }
                }
            }
            let value: toml_edit::Value = value
                .trim()
                .parse()
                .unwrap_or_else(|_| toml_edit::Value::from(value.trim()));
            let mut item = doc.as_item_mut();
            for part in &parts[..parts.len() - 1] {
                let t = item.as_table_like_mut().ok_or_else(|| {
                    bad(format!(
                        "--set `{key}`: `{part}` is inside a value, not a table"
                    ))
                })?;
                if t.get(part).is_none() {
                    t.insert(part, toml_edit::Item::Table(toml_edit::Table::new()));
                }
                item = t.get_mut(part).ok_or_else(|| {
                    bad(format!(
                        "--set `{key}`: cannot create the table `{part}` here"
                    ))
                })?;
            }
            let t = item
                .as_table_like_mut()
                .ok_or_else(|| bad(format!("--set `{key}`: its parent is not a table")))?;
            t.insert(parts[parts.len() - 1], toml_edit::Item::Value(value));
        }
        Config::parse(
            &doc.to_string(),
            &format!("{name} (with --set overrides)"),
            false,
        )
    }

    /// Parse and validate TOML text; `file` names the source in errors.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::parse(text, file, true)
    }

    /// Parse, resolve and validate; `shadowing`: refuse a setting given both for every
    /// learner and for one ([`check_shadowing`]).
    fn parse(text: &str, file: &str, shadowing: bool) -> Result<Config, ConfigError> {
        let cf: ConfigFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            ConfigError::at(file, line, e.message().trim().to_string())
        })?;
        if shadowing {
            check_shadowing(&cf, text, file)?;
        }
        let cfg = Config::from(cf);
        cfg.validate_in(text, file)?;
        Ok(cfg)
    }
}
