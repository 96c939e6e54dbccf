//! The JSON report of a training run: what ran, on what, how well and how fast.

use crate::config::Config;
use crate::train::{EpochRecord, TrainOutcome};
use crate::util::write_atomic;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainReport {
    pub dfforge_version: String,
    /// Which model computed the run: `float` (later `fixed`, `rtl`, ...).
    pub backend: String,
    /// `df`, `ff` or `bp`.
    pub algorithm: String,
    pub dataset: String,
    pub epochs: usize,
    pub train_samples: usize,
    pub test_samples: usize,
    /// Fractions in 0..1.
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    pub train_seconds: f64,
    pub samples_per_second: f64,
    pub history: Vec<EpochRecord>,
    /// The full resolved config (file or built-in, after command-line overrides).
    pub config: Config,
    /// Fixed-point backends: the number formats used (also inside `config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_formats: Option<crate::config::FixedPoint>,
    /// Fixed-point backends: on-chip memory needed by DF and by backprop at these widths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bits: Option<crate::fixed::memory::MemoryAccount>,
    /// Hardware backends: the engine's counters and the bit-exact check
    /// (cycles per sample, PE utilisation, simulation speed, values compared, mismatch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<serde_json::Value>,
}

impl TrainReport {
    pub fn new(
        backend: &str,
        cfg: &Config,
        train_samples: usize,
        test_samples: usize,
        out: &TrainOutcome,
    ) -> TrainReport {
        TrainReport {
            dfforge_version: env!("CARGO_PKG_VERSION").to_string(),
            backend: backend.to_string(),
            algorithm: cfg.algorithm.name.to_string(),
            dataset: cfg.data.dataset.clone(),
            epochs: cfg.training.epochs,
            train_samples,
            test_samples,
            train_accuracy: out.train_accuracy,
            test_accuracy: out.test_accuracy,
            train_seconds: out.train_seconds,
            samples_per_second: out.samples_per_second,
            history: out.history.clone(),
            config: cfg.clone(),
            fixed_formats: None,
            memory_bits: None,
            hardware: None,
        }
    }

    /// Write as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        write_atomic(path, text.as_bytes())
    }
}

/// A Markdown table of reports, one row each, in the given order.
pub fn markdown_table(reports: &[TrainReport]) -> String {
    let mut t = String::from(
        "| data set | network | algorithm | backend | bits w/act | training | epochs | train acc | test acc | samples/s |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        let widths: Vec<String> = r
            .config
            .network
            .widths()
            .iter()
            .map(|w| w.to_string())
            .collect();
        let tr = &r.config.training;
        let shift = if tr.shift > 0 {
            format!(" shift ±{}px", tr.shift)
        } else {
            String::new()
        };
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} η={} B={}{shift} | {} | {:.4} | {:.4} | {:.0} |\n",
            r.dataset,
            widths.join("-"),
            r.algorithm,
            r.backend,
            r.fixed_formats
                .as_ref()
                .map_or("f32".to_string(), |f| format!(
                    "{}/{}",
                    f.weight.bits, f.act.bits
                )),
            tr.optimizer,
            tr.learning_rate,
            tr.batch,
            r.epochs,
            r.train_accuracy,
            r.test_accuracy,
            r.samples_per_second
        ));
    }
    t
}
