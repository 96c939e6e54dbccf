//! `dfforge sweep`: design-space exploration over any config keys.
//!
//! A grid ([`grid`]) is expanded into a job list, written first: JSON lines, one fully
//! resolved config, seed and measurement set per job ([`Job`]). Each job is then measured
//! ([`measure`]) on its own: locally one process per core ([`run`]), or on a cluster, where
//! every task calls `dfforge sweep run-job JOBS INDEX` (scripts from [`run::emit`]). Each
//! result is written atomically to `results/<id>.json`, named by the hash of the job's
//! content, so a rerun (or a second sweep sharing points) skips every finished point.
//! [`collect`] merges the results: Pareto fronts ([`pareto`]), a Markdown table and plots.

pub mod collect;
pub mod grid;
pub mod measure;
pub mod noise;
pub mod pareto;
pub mod run;

use crate::config::Config;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// What each point measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measures {
    /// Fixed-point training on a data set within a budget: test and train accuracy.
    pub accuracy: Option<AccuracyBudget>,
    /// Cycles per training sample and PE utilisation (the schedule's exact formula).
    pub cycles: bool,
    /// Block RAMs, multipliers, the LUT4/FF estimate and whether the engine fits the board.
    pub resources: bool,
    /// Synthesis, place and route of the board top (scripts/pnr, one seed): LUT4, FF,
    /// DP16KD, Fmax. Minutes to an hour per point.
    pub pnr: bool,
}

/// The training budget of an accuracy measurement.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccuracyBudget {
    /// `digits`, `mnist` or `idx:DIR`.
    pub dataset: String,
    /// Training samples (the first N of the split; 0: all).
    pub train_samples: usize,
    /// Test samples (0: all).
    pub test_samples: usize,
    pub epochs: usize,
    /// Which software model trains: the fixed-point golden model (the default, and then not
    /// written, so earlier sweeps keep their job ids) or the float reference.
    #[serde(default, skip_serializing_if = "SoftBackend::is_fixed")]
    pub backend: SoftBackend,
    /// Record the accuracy of a run whose loss diverged instead of failing the point: in a
    /// noise sweep, a learner the noise breaks is a result.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_diverged: bool,
}

/// The software model of an accuracy measurement.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum SoftBackend {
    #[default]
    Fixed,
    Float,
}

impl SoftBackend {
    pub fn is_fixed(&self) -> bool {
        *self == SoftBackend::Fixed
    }
    pub fn name(self) -> &'static str {
        match self {
            SoftBackend::Fixed => "fixed",
            SoftBackend::Float => "float",
        }
    }
}

/// One job of the list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Position in the list (what `run-job JOBS INDEX` takes).
    pub index: usize,
    /// Hash of the job's config, seed and measures: names its result file.
    pub id: String,
    /// The grid point: (key, value as TOML) per varied key.
    pub point: Vec<(String, String)>,
    /// `training.seed` of this job (also inside `config`).
    pub seed: u64,
    pub measures: Measures,
    /// The fully resolved config as TOML; `None` when the point's config is invalid.
    pub config: Option<String>,
    /// Why the point's config is invalid.
    pub error: Option<String>,
}

impl Job {
    /// The job's config, parsed.
    pub fn config(&self) -> Result<Config> {
        match (&self.config, &self.error) {
            (Some(text), _) => Ok(Config::from_toml_str(
                text,
                &format!("<sweep job {}>", self.index),
            )?),
            (None, Some(e)) => bail!("{e}"),
            (None, None) => bail!("job {} has neither a config nor an error", self.index),
        }
    }
}

/// The job list of a grid: every point × seed, each config resolved from the base config
/// (`base`, `base_sets`) with the point's keys and `training.seed` set on top. A point whose
/// config is invalid is kept, with its error, so that it is reported rather than lost.
pub fn plan(
    base: Option<&Path>,
    base_sets: &[String],
    points: &[grid::Point],
    seeds: &[u64],
    measures: &Measures,
) -> Vec<Job> {
    let mut jobs = Vec::new();
    for point in points {
        for &seed in seeds {
            let mut sets = base_sets.to_vec();
            sets.extend(point.iter().map(|(k, v)| format!("{k}={v}")));
            sets.push(format!("training.seed={seed}"));
            let config = Config::load_with(base, &sets).map_err(|e| e.to_string());
            jobs.push(Job::new(
                jobs.len(),
                config.as_ref().map_err(Clone::clone),
                point.clone(),
                seed,
                measures,
            ));
        }
    }
    jobs
}

impl Job {
    /// A job of a resolved config (or of the reason it is invalid), its id the hash of
    /// everything that decides its result.
    pub fn new(
        index: usize,
        config: Result<&Config, String>,
        point: grid::Point,
        seed: u64,
        measures: &Measures,
    ) -> Job {
        let (config, error) = match config {
            Ok(c) => (Some(c.to_toml()), None),
            Err(e) => (None, Some(e)),
        };
        Job {
            index,
            id: job_id(config.as_deref(), error.as_deref(), &point, seed, measures),
            point,
            seed,
            measures: measures.clone(),
            config,
            error,
        }
    }
}

/// 16 hex digits of SHA-256 over what decides a job's result.
fn job_id(
    config: Option<&str>,
    error: Option<&str>,
    point: &grid::Point,
    seed: u64,
    measures: &Measures,
) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION"));
    h.update(config.or(error).unwrap_or(""));
    for (k, v) in point {
        h.update(format!("\0{k}={v}"));
    }
    h.update(seed.to_le_bytes());
    h.update(serde_json::to_string(measures).unwrap_or_default());
    let d = h.finalize();
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The job list as JSON lines.
pub fn jobs_jsonl(jobs: &[Job]) -> String {
    let mut s = String::new();
    for j in jobs {
        // A Job is plain data; serialising it cannot fail.
        s.push_str(&serde_json::to_string(j).unwrap_or_default());
        s.push('\n');
    }
    s
}

/// Read a job list written by [`jobs_jsonl`].
pub fn read_jobs(path: &Path) -> Result<Vec<Job>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the job list {}", path.display()))?;
    let mut jobs = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let job: Job = serde_json::from_str(line).with_context(|| {
            format!(
                "{}:{}: not a sweep job (was the file written by `dfforge sweep`?)",
                path.display(),
                i + 1
            )
        })?;
        if job.index != jobs.len() {
            bail!(
                "{}:{}: job index {} where {} was expected: the list is damaged; plan it again",
                path.display(),
                i + 1,
                job.index,
                jobs.len()
            );
        }
        jobs.push(job);
    }
    if jobs.is_empty() {
        bail!("{}: the job list is empty", path.display());
    }
    Ok(jobs)
}

/// Where a job's result goes: `<dir>/results/<id>.json`.
pub fn result_path(dir: &Path, job: &Job) -> PathBuf {
    dir.join("results").join(format!("{}.json", job.id))
}

/// The result of a job, if it is already there and complete (a result of another job with
/// the same file name, or an unreadable one, counts as missing).
pub fn finished(dir: &Path, job: &Job) -> Option<measure::PointResult> {
    let text = std::fs::read_to_string(result_path(dir, job)).ok()?;
    let r: measure::PointResult = serde_json::from_str(&text).ok()?;
    (r.id == job.id).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measures() -> Measures {
        Measures {
            accuracy: None,
            cycles: true,
            resources: false,
            pnr: false,
        }
    }

    #[test]
    fn plan_resolves_each_point_and_keeps_invalid_ones() {
        let axes = vec![
            grid::axis_from_arg("hardware.array_rows=2,0").unwrap(),
            grid::axis_from_arg("fixed.weight.bits=14,16").unwrap(),
        ];
        let points = grid::expand(&axes).unwrap();
        let jobs = plan(None, &[], &points, &[1, 2], &measures());
        assert_eq!(jobs.len(), 8);
        let ok: Vec<&Job> = jobs.iter().filter(|j| j.config.is_some()).collect();
        assert_eq!(ok.len(), 4, "array_rows = 0 is invalid");
        let c = ok[3].config().unwrap();
        assert_eq!(c.hardware.array_rows, 2);
        assert_eq!(c.fixed.weight.bits, 16);
        assert_eq!(c.training.seed, 2);
        let bad = jobs.iter().find(|j| j.config.is_none()).unwrap();
        assert!(bad.error.as_deref().unwrap().contains("array_rows"));
        assert!(bad.config().is_err());
        // Ids are unique and stable.
        let mut ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 8);
        assert_eq!(plan(None, &[], &points, &[1, 2], &measures()), jobs);
    }

    #[test]
    fn job_list_round_trips_and_damage_is_named() {
        let points =
            grid::expand(&[grid::axis_from_arg("hardware.array_cols=2,4").unwrap()]).unwrap();
        let jobs = plan(None, &[], &points, &[1], &measures());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("jobs.jsonl");
        std::fs::write(&p, jobs_jsonl(&jobs)).unwrap();
        assert_eq!(read_jobs(&p).unwrap(), jobs);
        std::fs::write(&p, "{\"index\": 0}\n").unwrap();
        assert!(format!("{:#}", read_jobs(&p).unwrap_err()).contains("not a sweep job"));
        std::fs::write(&p, "").unwrap();
        assert!(format!("{:#}", read_jobs(&p).unwrap_err()).contains("empty"));
    }
}
