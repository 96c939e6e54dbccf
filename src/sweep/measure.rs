//! Measuring one job: each requested measurement on its own, so that one that fails (an
//! engine the generator refuses, a diverging training, a synthesis that times out) is
//! recorded with its error beside the others.

use super::{Job, Measures};
use crate::arch::Arch;
use crate::config::Config;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The clock the engine is built for (the board top's PLL), used for samples/s when the
/// point has no measured Fmax.
pub const TARGET_MHZ: f64 = 100.0;

/// What one job measured. Every field but the identity is optional: a measurement that was
/// not asked for, or that failed (its error is in `errors`), is absent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    pub id: String,
    pub index: usize,
    pub point: Vec<(String, String)>,
    pub seed: u64,
    /// Every requested measurement succeeded.
    pub ok: bool,
    /// `measurement: error`, one per failed measurement.
    pub errors: Vec<String>,
    pub test_accuracy: Option<f64>,
    pub train_accuracy: Option<f64>,
    /// Wall time of the fixed-point training (this machine, one core when run by a sweep).
    pub train_seconds: Option<f64>,
    pub cycles_per_sample: Option<f64>,
    pub pe_utilisation: Option<f64>,
    /// The clock samples/s is computed at: the measured Fmax, else [`TARGET_MHZ`].
    pub clock_mhz: Option<f64>,
    /// Training samples per second of the engine at `clock_mhz` (cycles per sample from the
    /// schedule's formula).
    pub samples_per_s: Option<f64>,
    /// Estimates (src/rtl/fit.rs).
    pub dp16kd: Option<usize>,
    pub mult18: Option<usize>,
    pub lut4: Option<usize>,
    pub comb: Option<usize>,
    pub ff: Option<usize>,
    pub fits: Option<bool>,
    /// Synthesis and place-and-route, when asked for.
    pub pnr: Option<PnrResult>,
    pub wall_seconds: f64,
}

/// The figures of scripts/pnr's report.json this sweep keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PnrResult {
    pub lut4: u64,
    pub ff: u64,
    pub dp16kd: u64,
    pub mult18: u64,
    pub comb: u64,
    pub fmax_mhz: f64,
    /// The report's directory.
    pub dir: String,
}

/// Where the measurements find their inputs.
pub struct Env {
    /// Data sets (as `--data-dir`).
    pub data_dir: PathBuf,
    /// scripts/pnr of a dfforge checkout, for the `pnr` measurement.
    pub pnr_script: PathBuf,
}

/// Measure `job`. Never fails: every error is recorded in the result.
pub fn measure(job: &Job, env: &Env) -> PointResult {
    let t0 = Instant::now();
    let mut r = PointResult {
        id: job.id.clone(),
        index: job.index,
        point: job.point.clone(),
        seed: job.seed,
        ..PointResult::default()
    };
    match job.config() {
        Err(e) => r.errors.push(format!("config: {e:#}")),
        Ok(cfg) => measure_config(&cfg, job, &job.measures, env, &mut r),
    }
    r.ok = r.errors.is_empty();
    r.wall_seconds = t0.elapsed().as_secs_f64();
    r
}

fn measure_config(cfg: &Config, job: &Job, m: &Measures, env: &Env, r: &mut PointResult) {
    let mut errors = Vec::new();
    let mut note = |what: &str, res: Result<()>| {
        if let Err(e) = res {
            errors.push(format!("{what}: {e:#}"));
        }
    };
    if m.resources {
        note("resources", resources(cfg, r));
    }
    // Place and route first: its Fmax is the clock of samples/s.
    if m.pnr {
        note("pnr", pnr(cfg, job, env, r));
    }
    if m.cycles {
        note("cycles", cycles(cfg, r));
    }
    if let Some(b) = &m.accuracy {
        note("accuracy", accuracy(cfg, b, env, r));
    }
    r.errors.extend(errors);
    if let (Some(cps), Some(mhz)) = (r.cycles_per_sample, r.clock_mhz) {
        r.samples_per_s = Some(mhz * 1e6 / cps);
    }
}

fn resources(cfg: &Config, r: &mut PointResult) -> Result<()> {
    let rtl = crate::rtl::generate(cfg)?;
    let Some(fit) = rtl.fit else {
        bail!("the generator gave no resource estimate for this config");
    };
    r.fits = Some(fit.fits());
    r.dp16kd = Some(fit.dp16kd);
    r.mult18 = Some(fit.mult18);
    r.lut4 = Some(fit.logic.lut4);
    r.comb = Some(fit.logic.comb);
    r.ff = Some(fit.logic.ff);
    Ok(())
}

fn cycles(cfg: &Config, r: &mut PointResult) -> Result<()> {
    let arch = Arch::new(cfg)?;
    let b = arch.batch;
    let cyc = crate::arch::schedule::predicted_cycles(&arch, b, false);
    let macs = crate::arch::schedule::ideal_macs(&arch, b, false);
    r.cycles_per_sample = Some(cyc as f64 / b as f64);
    r.pe_utilisation = Some(macs as f64 / ((arch.rows * arch.cols) as f64 * cyc as f64));
    if r.clock_mhz.is_none() {
        r.clock_mhz = Some(TARGET_MHZ);
    }
    Ok(())
}

fn accuracy(cfg: &Config, b: &super::AccuracyBudget, env: &Env, r: &mut PointResult) -> Result<()> {
    let mut cfg = cfg.clone();
    cfg.data.dataset = b.dataset.clone();
    cfg.training.epochs = b.epochs;
    let mut learner = match b.backend {
        super::SoftBackend::Fixed => {
            cfg.check_fixed_learning_rate()
                .map_err(anyhow::Error::msg)?;
            crate::fixed::baselines::make_fixed_learner(&cfg)?
        }
        super::SoftBackend::Float => crate::float::make_learner(&cfg),
    };
    let spec: crate::data::DatasetSpec = b.dataset.parse()?;
    let mut ds = crate::data::load(&spec, &env.data_dir)?;
    let cap = |n: usize| (n > 0).then_some(n);
    ds.truncate(cap(b.train_samples), cap(b.test_samples));
    if ds.dim() != cfg.network.input || ds.classes > cfg.network.classes {
        bail!(
            "data set {spec} has {} pixels and {} classes, but the config says network.input = \
             {} and network.classes = {}",
            ds.dim(),
            ds.classes,
            cfg.network.input,
            cfg.network.classes
        );
    }
    let mut opts = crate::train::RunOptions::from_config(&cfg);
    opts.check_divergence = !b.keep_diverged;
    let out = crate::train::train(learner.as_mut(), &ds, &opts)?;
    r.test_accuracy = Some(out.test_accuracy);
    r.train_accuracy = Some(out.train_accuracy);
    r.train_seconds = Some(out.train_seconds);
    Ok(())
}

/// Run scripts/pnr on the point's config (one seed) and read its report. A point that misses
/// the clock still has an Fmax: scripts/pnr's exit status 1 then is not a failure here.
fn pnr(cfg: &Config, job: &Job, env: &Env, r: &mut PointResult) -> Result<()> {
    // Absolute: a relative program path would be looked up from the child's directory.
    let script = &std::path::absolute(&env.pnr_script)
        .with_context(|| format!("cannot resolve {}", env.pnr_script.display()))?;
    if !script.is_file() {
        bail!(
            "{} not found: run the sweep from a dfforge checkout or give --pnr-script",
            script.display()
        );
    }
    let root = script
        .parent()
        .and_then(Path::parent)
        .context("scripts/pnr has no checkout around it")?;
    let name = format!("sweep-{}", job.id);
    let cfg_dir = root.join("build").join("pnr-configs");
    let cfg_path = cfg_dir.join(format!("{name}.toml"));
    crate::util::write_atomic(&cfg_path, cfg.to_toml().as_bytes())?;
    let out = std::process::Command::new(script)
        .current_dir(root)
        .args([
            "--core", "engine", "--seeds", "1", "--name", &name, "--config",
        ])
        .arg(&cfg_path)
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    let dir = root.join("build").join("pnr").join(&name);
    let report = dir.join("report.json");
    let text = std::fs::read_to_string(&report).with_context(|| {
        let tail: String = String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" / ");
        format!("scripts/pnr wrote no report ({}): {tail}", out.status)
    })?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", report.display()))?;
    let n = |k: &str| {
        v[k].as_u64()
            .with_context(|| format!("{}: no `{k}`", report.display()))
    };
    let p = PnrResult {
        lut4: n("lut4")?,
        ff: n("ff")?,
        dp16kd: n("dp16kd")?,
        mult18: n("mult18x18d")?,
        comb: v["trellis_comb"]["used"]
            .as_u64()
            .with_context(|| format!("{}: no `trellis_comb.used`", report.display()))?,
        fmax_mhz: v["fmax_mhz"]
            .as_f64()
            .with_context(|| format!("{}: no `fmax_mhz`", report.display()))?,
        dir: dir.display().to_string(),
    };
    r.clock_mhz = Some(p.fmax_mhz);
    r.pnr = Some(p);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{grid, plan, AccuracyBudget};
    use super::*;

    #[test]
    fn a_point_measures_what_was_asked_and_records_failures() {
        let m = Measures {
            accuracy: Some(AccuracyBudget {
                dataset: "digits".into(),
                train_samples: 200,
                test_samples: 100,
                epochs: 1,
                ..Default::default()
            }),
            cycles: true,
            resources: true,
            pnr: false,
        };
        let points =
            grid::expand(&[grid::axis_from_arg("hardware.array_rows=2,0").unwrap()]).unwrap();
        let jobs = plan(None, &[], &points, &[1], &m);
        let env = Env {
            data_dir: PathBuf::from("data"),
            pnr_script: PathBuf::from("scripts/pnr"),
        };
        let good = measure(&jobs[0], &env);
        assert!(good.ok, "{:?}", good.errors);
        let acc = good.test_accuracy.unwrap();
        assert!((0.0..=1.0).contains(&acc));
        assert!(good.cycles_per_sample.unwrap() > 0.0);
        let u = good.pe_utilisation.unwrap();
        assert!(u > 0.0 && u <= 1.0, "{u}");
        assert_eq!(good.clock_mhz, Some(TARGET_MHZ));
        let sps = good.samples_per_s.unwrap();
        assert_eq!(sps, TARGET_MHZ * 1e6 / good.cycles_per_sample.unwrap());
        assert!(good.dp16kd.unwrap() > 0 && good.lut4.unwrap() > 0);
        // The invalid point is a result with its error, not a crash.
        let bad = measure(&jobs[1], &env);
        assert!(!bad.ok);
        assert!(bad.errors[0].starts_with("config:"), "{:?}", bad.errors);
        assert!(bad.test_accuracy.is_none());
    }
}
