//! `dfforge noise`: accuracy against noise level, per site, learner, backend and regime
//! (issue 12). A noise sweep is an ordinary sweep job list ([`super::Job`]): each
//! (learner, backend, site, regime, level, seed) is one job, measured by the same workers,
//! resumable the same way (a finished point's result file is never redone). This module
//! plans that list ([`plan`]) and turns its results into curves ([`collect`]) and plots
//! ([`plot_site`]).
//!
//! Level 0 of every curve is the learner's clean run on that backend: one job per learner,
//! backend and seed, shared by every site and regime. The clean float run of each learner is
//! the software reference drawn on every plot.

use super::{finished, AccuracyBudget, Job, Measures, SoftBackend};
use crate::config::{Config, Learner, Scheme};
use crate::noise::{Regime, Site};
use anyhow::{anyhow, bail, Result};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A learner of the comparison: DF in its three schemes, FF or BP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LearnerName {
    Df,
    DfR,
    DfO,
    Ff,
    Bp,
}

impl LearnerName {
    pub const ALL: [LearnerName; 5] = [
        LearnerName::Df,
        LearnerName::DfR,
        LearnerName::DfO,
        LearnerName::Ff,
        LearnerName::Bp,
    ];
    pub fn name(self) -> &'static str {
        match self {
            LearnerName::Df => "df",
            LearnerName::DfR => "df-r",
            LearnerName::DfO => "df-o",
            LearnerName::Ff => "ff",
            LearnerName::Bp => "bp",
        }
    }
    /// The config training this learner: its optimizer and learning rate as the config
    /// resolves them for it, DF's scheme set.
    fn configure(self, cfg: &mut Config) {
        let (kind, scheme) = match self {
            LearnerName::Df => (Learner::Df, Some(Scheme::Df)),
            LearnerName::DfR => (Learner::Df, Some(Scheme::DfR)),
            LearnerName::DfO => (Learner::Df, Some(Scheme::DfO)),
            LearnerName::Ff => (Learner::Ff, None),
            LearnerName::Bp => (Learner::Bp, None),
        };
        cfg.set_learner(kind);
        if let Some(s) = scheme {
            cfg.algorithm.scheme = s;
        }
    }
}

impl std::str::FromStr for LearnerName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        LearnerName::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| format!("unknown learner `{s}`; known: df, df-r, df-o, ff, bp"))
    }
}

/// One site and the levels it is swept over (0 is always added: the clean run).
#[derive(Clone, Debug, PartialEq)]
pub struct SiteLevels {
    pub site: &'static Site,
    pub levels: Vec<f64>,
}

/// What a noise sweep covers.
#[derive(Clone, Debug)]
pub struct NoiseGrid {
    pub learners: Vec<LearnerName>,
    pub backends: Vec<SoftBackend>,
    pub sites: Vec<SiteLevels>,
    pub regimes: Vec<Regime>,
    pub seeds: Vec<u64>,
    /// Data set, samples and epochs of every training (its backend is set per job).
    pub budget: AccuracyBudget,
}

/// The regimes a site is swept in: update noise exists in training only.
fn regimes_of(site: &Site, regimes: &[Regime]) -> Vec<Regime> {
    if site.key == "update" {
        vec![Regime::Train]
    } else {
        regimes.to_vec()
    }
}

fn regime_name(r: Regime) -> &'static str {
    match r {
        Regime::Train => "train",
        Regime::Inference => "inference",
        Regime::Both => "both",
    }
}

/// `base` with the learner, one site at `level` in `regime`, and the seed set; validated.
fn point_config(
    base: &Config,
    learner: LearnerName,
    site: Option<(&Site, f64, Regime)>,
    seed: u64,
) -> Result<Config, String> {
    let mut c = base.clone();
    learner.configure(&mut c);
    c.training.seed = seed;
    if let Some((site, level, regime)) = site {
        c.noise
            .set(site.key, level, regime)
            .map_err(|e| e.to_string())?;
    }
    Config::from_toml_str(&c.to_toml(), "<noise point>").map_err(|e| e.to_string())
}

/// The job list: first the clean runs (every learner on every backend and on float, the
/// reference), then every noisy point. Jobs with equal content appear once.
pub fn plan(base: &Config, g: &NoiseGrid) -> Vec<Job> {
    let mut jobs: Vec<Job> = Vec::new();
    let mut push = |cfg: Result<Config, String>, point: Vec<(String, String)>, seed, b| {
        let measures = Measures {
            accuracy: Some(AccuracyBudget {
                backend: b,
                keep_diverged: true,
                ..g.budget.clone()
            }),
            cycles: false,
            resources: false,
            pnr: false,
        };
        let job = Job::new(
            jobs.len(),
            cfg.as_ref().map_err(Clone::clone),
            point,
            seed,
            &measures,
        );
        if !jobs.iter().any(|j| j.id == job.id) {
            jobs.push(job);
        }
    };
    let mut clean_backends = g.backends.clone();
    if !clean_backends.contains(&SoftBackend::Float) {
        clean_backends.push(SoftBackend::Float);
    }
    for &l in &g.learners {
        for &b in &clean_backends {
            for &seed in &g.seeds {
                let point = vec![
                    ("learner".into(), l.name().into()),
                    ("backend".into(), b.name().into()),
                ];
                push(point_config(base, l, None, seed), point, seed, b);
            }
        }
    }
    for &l in &g.learners {
        for &b in &g.backends {
            for s in &g.sites {
                for r in regimes_of(s.site, &g.regimes) {
                    for &level in s.levels.iter().filter(|&&v| v != 0.0) {
                        for &seed in &g.seeds {
                            let point = vec![
                                ("learner".into(), l.name().into()),
                                ("backend".into(), b.name().into()),
                                ("site".into(), s.site.key.into()),
                                ("regime".into(), regime_name(r).into()),
                                ("level".into(), format!("{level}")),
                            ];
                            let cfg = point_config(base, l, Some((s.site, level, r)), seed);
                            push(cfg, point, seed, b);
                        }
                    }
                }
            }
        }
    }
    jobs
}

/// Accuracy over seeds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub accuracy_mean: Option<f64>,
    /// Sample standard deviation (0 with one seed).
    pub accuracy_std: Option<f64>,
    /// Test accuracy of each seed that finished.
    pub accuracy_by_seed: Vec<f64>,
    pub seeds: Vec<u64>,
}

impl Stat {
    fn of(runs: &[(u64, f64)]) -> Stat {
        let n = runs.len() as f64;
        let mean = (!runs.is_empty()).then(|| runs.iter().map(|r| r.1).sum::<f64>() / n);
        let std = mean.map(|m| {
            if runs.len() < 2 {
                0.0
            } else {
                (runs.iter().map(|r| (r.1 - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
            }
        });
        Stat {
            accuracy_mean: mean,
            accuracy_std: std,
            accuracy_by_seed: runs.iter().map(|r| r.1).collect(),
            seeds: runs.iter().map(|r| r.0).collect(),
        }
    }
}

/// One learner's clean accuracy on one backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Clean {
    pub learner: String,
    pub backend: String,
    #[serde(flatten)]
    pub stat: Stat,
}

/// Accuracy against level for one learner, backend, site and regime; `levels[0]` is 0 (the
/// clean run).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    pub learner: String,
    pub backend: String,
    pub site: String,
    pub regime: String,
    pub levels: Vec<f64>,
    /// Per level; `null` where no seed finished.
    pub accuracy_mean: Vec<Option<f64>>,
    pub accuracy_std: Vec<Option<f64>>,
    pub accuracy_by_seed: Vec<Vec<f64>>,
    /// The seeds of the sweep.
    pub seeds: Vec<u64>,
}

/// `noise.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseReport {
    /// Data set, training samples, test samples, epochs.
    pub budget: AccuracyBudget,
    pub seeds: Vec<u64>,
    /// What each swept site's level means, and whether it is plotted on a log axis.
    pub sites: Vec<SiteInfo>,
    /// The clean float run of each learner: the software reference.
    pub reference: Vec<Clean>,
    /// The clean run of each learner on each backend.
    pub clean: Vec<Clean>,
    pub curves: Vec<Curve>,
    /// Points that failed, with their errors (their accuracy is missing from the curves).
    pub failed: Vec<String>,
    /// Points not measured yet.
    pub missing: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteInfo {
    pub site: String,
    pub level_means: String,
    pub log_axis: bool,
}

fn point_value<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.point
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Merge the finished results of `jobs` (in `dir`) into curves.
pub fn collect(dir: &Path, jobs: &[Job], g: &NoiseGrid) -> NoiseReport {
    let mut runs: Vec<(&Job, Option<f64>)> = Vec::new();
    let mut failed = Vec::new();
    let mut missing = 0;
    for j in jobs {
        match finished(dir, j) {
            None => {
                missing += 1;
                runs.push((j, None));
            }
            Some(r) => {
                if !r.ok {
                    failed.push(format!(
                        "{} seed {}: {}",
                        j.point
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                        j.seed,
                        r.errors.join("; ")
                    ));
                }
                runs.push((j, r.test_accuracy));
            }
        }
    }
    let select = |want: &[(&str, &str)]| -> Vec<(u64, f64)> {
        runs.iter()
            .filter(|(j, _)| {
                j.point.len() == want.len()
                    && want.iter().all(|(k, v)| point_value(j, k) == Some(*v))
            })
            .filter_map(|(j, a)| a.map(|a| (j.seed, a)))
            .collect()
    };
    let clean_of = |l: LearnerName, b: SoftBackend| Clean {
        learner: l.name().into(),
        backend: b.name().into(),
        stat: Stat::of(&select(&[("learner", l.name()), ("backend", b.name())])),
    };
    let reference = g
        .learners
        .iter()
        .map(|&l| clean_of(l, SoftBackend::Float))
        .collect();
    let clean = g
        .learners
        .iter()
        .flat_map(|&l| g.backends.iter().map(move |&b| (l, b)))
        .map(|(l, b)| clean_of(l, b))
        .collect();
    let mut curves = Vec::new();
    for &l in &g.learners {
        for &b in &g.backends {
            for s in &g.sites {
                for r in regimes_of(s.site, &g.regimes) {
                    let mut levels = vec![0.0];
                    levels.extend(s.levels.iter().filter(|&&v| v != 0.0));
                    let stats: Vec<Stat> = levels
                        .iter()
                        .map(|&level| {
                            if level == 0.0 {
                                clean_of(l, b).stat
                            } else {
                                let lv = format!("{level}");
                                Stat::of(&select(&[
                                    ("learner", l.name()),
                                    ("backend", b.name()),
                                    ("site", s.site.key),
                                    ("regime", regime_name(r)),
                                    ("level", &lv),
                                ]))
                            }
                        })
                        .collect();
                    curves.push(Curve {
                        learner: l.name().into(),
                        backend: b.name().into(),
                        site: s.site.key.into(),
                        regime: regime_name(r).into(),
                        levels,
                        accuracy_mean: stats.iter().map(|s| s.accuracy_mean).collect(),
                        accuracy_std: stats.iter().map(|s| s.accuracy_std).collect(),
                        accuracy_by_seed: stats.into_iter().map(|s| s.accuracy_by_seed).collect(),
                        seeds: g.seeds.clone(),
                    });
                }
            }
        }
    }
    NoiseReport {
        budget: g.budget.clone(),
        seeds: g.seeds.clone(),
        sites: g
            .sites
            .iter()
            .map(|s| SiteInfo {
                site: s.site.key.into(),
                level_means: s.site.level_means.into(),
                log_axis: s.site.log_axis,
            })
            .collect(),
        reference,
        clean,
        curves,
        failed,
        missing,
    }
}

/// Accuracy against level for one site: a panel per regime, a line (mean ± std over seeds)
/// per learner and backend, each learner's clean float reference dashed. A log-axis site
/// (bit-error and fault rates) leaves out level 0, which its reference line stands for.
pub fn plot_site(report: &NoiseReport, site: &str, path: &Path) -> Result<()> {
    let curves: Vec<&Curve> = report.curves.iter().filter(|c| c.site == site).collect();
    if curves.is_empty() {
        bail!("no curves for site `{site}`");
    }
    let mut regimes: Vec<&str> = Vec::new();
    for c in &curves {
        if !regimes.contains(&c.regime.as_str()) {
            regimes.push(&c.regime);
        }
    }
    let width = 40 + 560 * regimes.len() as u32;
    crate::plot::render!(path, (width, 460), |root| draw_site(
        &root, report, site, &curves, &regimes
    ))
}

fn draw_site<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    report: &NoiseReport,
    site: &str,
    curves: &[&Curve],
    regimes: &[&str],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    crate::plot::register_font();
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("plot failed: {e:?}");
    root.fill(&WHITE).map_err(e)?;
    let info = report.sites.iter().find(|s| s.site == site);
    let log = info.is_some_and(|s| s.log_axis);
    let samples = match report.budget.train_samples {
        0 => "all".to_string(),
        n => n.to_string(),
    };
    let title = format!(
        "{site} noise, {} ({samples} train samples, {} epoch(s), {} seed(s))",
        report.budget.dataset,
        report.budget.epochs,
        report.seeds.len()
    );
    let root = root.titled(&title, ("sans-serif", 20)).map_err(e)?;
    let panels = root.split_evenly((1, regimes.len()));
    // One colour per learner (and line style per backend), the same on every panel.
    let mut learners: Vec<&str> = Vec::new();
    for c in curves {
        if !learners.contains(&c.learner.as_str()) {
            learners.push(&c.learner);
        }
    }
    let colour =
        |l: &str| Palette99::pick(learners.iter().position(|x| *x == l).unwrap_or(0)).to_rgba();
    let levels: Vec<f64> = curves
        .iter()
        .flat_map(|c| c.levels.iter().copied())
        .filter(|&v| !log || v > 0.0)
        .collect();
    let (lo, hi) = levels
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    // No level to place (a log-axis site swept at 0 only): an axis that still draws.
    let (lo, hi) = match (lo > hi, log) {
        (false, _) => (lo, hi),
        (true, true) => (1e-6, 1e-2),
        (true, false) => (0.0, 1.0),
    };
    let min_acc = curves
        .iter()
        .flat_map(|c| c.accuracy_mean.iter().flatten())
        .fold(1.0f64, |a, &b| a.min(b));
    let y0 = ((min_acc - 0.05).max(0.0) * 10.0).floor() / 10.0;
    let xdesc = info.map_or("level".to_string(), |s| format!("level: {}", s.level_means));
    for (area, regime) in panels.iter().zip(regimes) {
        let caption = format!("regime: {regime}");
        macro_rules! body {
            ($chart:expr, $xs:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(xdesc.chars().take(70).collect::<String>())
                    .y_desc("test accuracy")
                    .x_labels(8)
                    .x_label_formatter(&|v: &f64| {
                        if log {
                            format!("{v:.0e}")
                        } else {
                            format!("{v}")
                        }
                    })
                    .light_line_style(WHITE.mix(0.0))
                    .label_style(("sans-serif", 12))
                    .draw()
                    .map_err(e)?;
                let (x_lo, x_hi) = $xs;
                for r in &report.reference {
                    if let Some(m) = r.stat.accuracy_mean {
                        let c = colour(&r.learner);
                        chart
                            .draw_series(DashedLineSeries::new(
                                vec![(x_lo, m), (x_hi, m)],
                                6,
                                4,
                                c.stroke_width(1).into(),
                            ))
                            .map_err(e)?
                            .label(format!("{} float, clean", r.learner))
                            .legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(1))
                            });
                    }
                }
                for c in curves.iter().filter(|c| c.regime == *regime) {
                    let col = colour(&c.learner);
                    let width = if c.backend == "fixed" { 2 } else { 1 };
                    let pts: Vec<(f64, f64, f64)> = c
                        .levels
                        .iter()
                        .zip(c.accuracy_mean.iter().zip(&c.accuracy_std))
                        .filter(|(l, _)| !log || **l > 0.0)
                        .filter_map(|(&l, (m, s))| m.map(|m| (l, m, s.unwrap_or(0.0))))
                        .collect();
                    chart
                        .draw_series(LineSeries::new(
                            pts.iter().map(|p| (p.0, p.1)),
                            col.stroke_width(width),
                        ))
                        .map_err(e)?
                        .label(format!("{} {}", c.learner, c.backend))
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(width))
                        });
                    chart
                        .draw_series(pts.iter().map(|p| {
                            ErrorBar::new_vertical(p.0, p.1 - p.2, p.1, p.1 + p.2, col.filled(), 6)
                        }))
                        .map_err(e)?;
                }
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 12))
                    .position(SeriesLabelPosition::LowerLeft)
                    .draw()
                    .map_err(e)?;
            }};
        }
        let builder = |area| {
            let mut b = ChartBuilder::on(area);
            b.caption(&caption, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56);
            b
        };
        if log {
            let chart = builder(area)
                .build_cartesian_2d((lo * 0.7..hi * 1.4).log_scale(), y0..1.0)
                .map_err(e)?;
            body!(chart, (lo * 0.7, hi * 1.4));
        } else {
            let pad = (hi - lo) * 0.03;
            let chart = builder(area)
                .build_cartesian_2d(lo - pad..hi + pad, y0..1.0)
                .map_err(e)?;
            body!(chart, (lo - pad, hi + pad));
        }
    }
    Ok(())
}

/// The accuracy a learner loses at each noisy level (its clean accuracy minus the noisy one)
/// and the larger seed spread of the two numbers.
fn drops(c: &Curve) -> Vec<Option<(f64, f64)>> {
    let clean = c.accuracy_mean[0];
    let clean_sd = c.accuracy_std[0].unwrap_or(0.0);
    (1..c.levels.len())
        .map(|i| {
            let (m, s) = (c.accuracy_mean[i]?, c.accuracy_std[i].unwrap_or(0.0));
            Some((clean? - m, s.max(clean_sd)))
        })
        .collect()
}

/// DF against BP, site by site: at how many levels DF loses less accuracy than BP, by more
/// than the seeds' spread, and at how many more. Each learner is measured against its own
/// clean accuracy.
pub fn comparison(report: &NoiseReport) -> String {
    let mut out = String::from(
        "| site | regime | backend | levels | DF's loss (mean over levels) | BP's loss | FF's loss | DF loses less than BP | DF loses more | within the seeds' spread |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let find = |l: &str, c: &Curve| {
        report.curves.iter().find(|d| {
            d.learner == l && d.backend == c.backend && d.site == c.site && d.regime == c.regime
        })
    };
    let mean_drop = |c: Option<&Curve>| {
        c.and_then(|c| {
            let d: Vec<f64> = drops(c).into_iter().flatten().map(|d| d.0).collect();
            (!d.is_empty()).then(|| d.iter().sum::<f64>() / d.len() as f64)
        })
        .map_or("—".to_string(), |v| format!("{v:+.4}"))
    };
    for c in report.curves.iter().filter(|c| c.learner == "df") {
        let Some(bp) = find("bp", c) else { continue };
        let (mut less, mut more, mut tie) = (0, 0, 0);
        for (d, b) in drops(c).into_iter().zip(drops(bp)) {
            if let (Some((d, ds)), Some((b, bs))) = (d, b) {
                let spread = ds.max(bs);
                if d + spread < b {
                    less += 1;
                } else if b + spread < d {
                    more += 1;
                } else {
                    tie += 1;
                }
            }
        }
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {less} | {more} | {tie} |\n",
            c.site,
            c.regime,
            c.backend,
            c.levels[1..]
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            mean_drop(Some(c)),
            mean_drop(Some(bp)),
            mean_drop(find("ff", c)),
        ));
    }
    out
}

/// The curves as Markdown: the clean references, one table per site and regime (a row per
/// learner and backend), then DF against BP ([`comparison`]).
pub fn markdown(report: &NoiseReport) -> String {
    let mut out = String::new();
    let fmt = |m: Option<f64>, s: Option<f64>| match (m, s) {
        (Some(m), Some(s)) => format!("{m:.4} ± {s:.4}"),
        (Some(m), None) => format!("{m:.4}"),
        _ => "—".into(),
    };
    out.push_str("| learner | float, clean |\n|---|---|\n");
    for r in &report.reference {
        out.push_str(&format!(
            "| {} | {} |\n",
            r.learner,
            fmt(r.stat.accuracy_mean, r.stat.accuracy_std)
        ));
    }
    for site in &report.sites {
        let mut regimes: Vec<&str> = Vec::new();
        for c in report.curves.iter().filter(|c| c.site == site.site) {
            if !regimes.contains(&c.regime.as_str()) {
                regimes.push(&c.regime);
            }
        }
        for regime in regimes {
            let curves: Vec<&Curve> = report
                .curves
                .iter()
                .filter(|c| c.site == site.site && c.regime == regime)
                .collect();
            let Some(first) = curves.first() else {
                continue;
            };
            out.push_str(&format!(
                "\n**{}, regime {regime}** (level: {})\n\n| learner | backend |",
                site.site, site.level_means
            ));
            for l in &first.levels {
                out.push_str(&format!(" {l} |"));
            }
            out.push_str("\n|---|---|");
            out.push_str(&"---|".repeat(first.levels.len()));
            out.push('\n');
            for c in curves {
                out.push_str(&format!("| {} | {} |", c.learner, c.backend));
                for (m, s) in c.accuracy_mean.iter().zip(&c.accuracy_std) {
                    out.push_str(&format!(" {} |", fmt(*m, *s)));
                }
                out.push('\n');
            }
        }
    }
    if report.curves.iter().any(|c| c.learner == "df")
        && report.curves.iter().any(|c| c.learner == "bp")
    {
        out.push_str(
            "\n**DF against BP** (accuracy lost against each learner's own clean run)\n\n",
        );
        out.push_str(&comparison(report));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> NoiseGrid {
        NoiseGrid {
            learners: vec![LearnerName::Df, LearnerName::Bp],
            backends: vec![SoftBackend::Fixed],
            sites: vec![
                SiteLevels {
                    site: crate::noise::site("stuck_at").unwrap(),
                    levels: vec![0.0, 0.01, 0.05],
                },
                SiteLevels {
                    site: crate::noise::site("update").unwrap(),
                    levels: vec![0.5],
                },
            ],
            regimes: vec![Regime::Train, Regime::Inference],
            seeds: vec![1, 2],
            budget: AccuracyBudget {
                dataset: "digits".into(),
                train_samples: 200,
                test_samples: 100,
                epochs: 1,
                ..Default::default()
            },
        }
    }

    #[test]
    fn the_plan_shares_clean_runs_and_sets_one_site_per_point() {
        let jobs = plan(&Config::builtin(), &grid());
        // Clean: 2 learners × (fixed + float reference) × 2 seeds = 8; stuck_at: 2 learners
        // × 2 regimes × 2 levels × 2 seeds = 16; update (training only): 2 × 1 × 2 = 4.
        assert_eq!(jobs.len(), 28);
        assert!(jobs.iter().all(|j| j.error.is_none()));
        let mut ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 28);
        let j = jobs
            .iter()
            .find(|j| point_value(j, "site") == Some("stuck_at") && j.seed == 2)
            .unwrap();
        let c = j.config().unwrap();
        assert_eq!(c.noise.model_sites_on(), ["stuck_at"]);
        assert_eq!(c.training.seed, 2);
        let bp = jobs
            .iter()
            .find(|j| point_value(j, "learner") == Some("bp"))
            .unwrap()
            .config()
            .unwrap();
        assert_eq!(bp.algorithm.name, Learner::Bp);
        // The learner's own learning rate, as `--algorithm bp` would take it.
        let mut want = Config::builtin();
        want.set_learner(Learner::Bp);
        assert_eq!(bp.training.learning_rate, want.training.learning_rate);
    }

    #[test]
    fn collect_builds_curves_from_finished_points_only() {
        let g = grid();
        let jobs = plan(&Config::builtin(), &g);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("results")).unwrap();
        // Finish every job but one, with a made-up accuracy that falls with the level.
        for j in jobs.iter().skip(1) {
            let level: f64 = point_value(j, "level").map_or(0.0, |v| v.parse().unwrap());
            let r = super::super::measure::PointResult {
                id: j.id.clone(),
                index: j.index,
                point: j.point.clone(),
                seed: j.seed,
                ok: true,
                test_accuracy: Some(0.9 - level - 0.01 * j.seed as f64),
                ..Default::default()
            };
            std::fs::write(
                super::super::result_path(dir.path(), j),
                serde_json::to_string(&r).unwrap(),
            )
            .unwrap();
        }
        let rep = collect(dir.path(), &jobs, &g);
        assert_eq!(rep.missing, 1);
        assert_eq!(rep.curves.len(), 2 * (2 + 1));
        let c = rep
            .curves
            .iter()
            .find(|c| c.learner == "bp" && c.site == "stuck_at" && c.regime == "inference")
            .unwrap();
        assert_eq!(c.levels, [0.0, 0.01, 0.05]);
        let m: Vec<f64> = c.accuracy_mean.iter().map(|m| m.unwrap()).collect();
        assert!(
            (m[0] - 0.885).abs() < 1e-12 && (m[2] - 0.835).abs() < 1e-12,
            "{m:?}"
        );
        let sd = c.accuracy_std[1].unwrap();
        assert!((sd - 0.01 / 2f64.sqrt()).abs() < 1e-12, "{sd}");
        // The skipped job (DF's first clean fixed run) leaves one seed at level 0.
        let df = rep.curves.iter().find(|c| c.learner == "df").unwrap();
        assert_eq!(df.accuracy_by_seed[0].len(), 1);
        assert_eq!(rep.reference.len(), 2);
        let md = markdown(&rep);
        assert!(md.contains("**stuck_at, regime inference**"), "{md}");
        // Made-up accuracies fall alike for both learners (DF has one clean seed, the skipped
        // job): no level separates them.
        assert!(
            md.contains(
                "| stuck_at | inference | fixed | 0.01, 0.05 | +0.0250 | +0.0300 | — | 0 | 0 | 2 |"
            ),
            "{md}"
        );
        let png = dir.path().join("stuck_at.png");
        plot_site(&rep, "stuck_at", &png).unwrap();
        assert!(std::fs::metadata(&png).unwrap().len() > 10_000);
        let svg = dir.path().join("update.svg");
        plot_site(&rep, "update", &svg).unwrap();
        assert!(std::fs::read_to_string(&svg)
            .unwrap()
            .contains("regime: train"));
    }
}
