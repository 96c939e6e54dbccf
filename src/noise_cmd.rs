//! `dfforge noise`: its arguments and the command (the sweep is `dfforge::sweep::noise`).

use super::sweep_cmd::{local_runner, BudgetArgs};
use super::{at_least_one, Cli};
use anyhow::{Context, Result};
use dfforge::config::Config;
use dfforge::data;
use dfforge::noise::Regime;
use dfforge::sweep::noise::{LearnerName, NoiseGrid, SiteLevels};
use dfforge::sweep::{self, run, SoftBackend};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct NoiseArgs {
    /// Noise sites to sweep, comma-separated: input, weight_read, variation, update,
    /// stuck_at, bit_flip, activation (docs/config.md, [noise]). Each is swept on its own, the others
    /// as the config sets them (off by default).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "SITE,...",
        default_value = "weight_read,variation,update,stuck_at,bit_flip"
    )]
    sites: Vec<String>,
    /// The levels of one site, e.g. --levels bit_flip=1e-5,1e-4,1e-3 (repeatable; 0, the
    /// clean run, is always added). Without it a site takes its default grid: input
    /// 0.1..0.5, weight_read and variation 0.02..0.4 of max |W|, update 0.1..2 of the step,
    /// stuck_at 0.1 %..13.5 % of bits, bit_flip 1e-6..1e-2, activation 0.02..0.2 of max |z|.
    #[arg(long = "levels", value_name = "SITE=L1,L2,...")]
    levels: Vec<String>,
    /// Learners, comma-separated: df, df-r, df-o, ff, bp. Each trains with its own optimizer
    /// and learning rate from the config ([training.df], [training.ff], [training.bp]).
    #[arg(long, value_delimiter = ',', value_name = "LEARNER,...", default_value = "df,ff,bp",
          value_parser = |s: &str| s.parse::<LearnerName>())]
    learners: Vec<LearnerName>,
    /// Software models the noisy runs train on, comma-separated: fixed (the hardware's
    /// fixed point), float. The clean float run of every learner is always measured: it is
    /// the reference drawn on every plot.
    #[arg(long, value_delimiter = ',', value_name = "BACKEND,...", default_value = "fixed",
          value_parser = ["fixed", "float"])]
    backends: Vec<String>,
    /// Regimes, comma-separated: train (noise in the training steps only; the learner can
    /// adapt), inference (the trained model is evaluated under it), both. Update noise is
    /// swept in training only.
    #[arg(long, value_delimiter = ',', value_name = "REGIME,...", default_value = "train,inference",
          value_parser = ["train", "inference", "both"])]
    regimes: Vec<String>,
    /// Seeds per point (training.seed = 1..=N: initial weights, shuffling and every noise
    /// draw).
    #[arg(long, default_value_t = 3, value_parser = at_least_one)]
    seeds: usize,
    #[command(flatten)]
    budget: BudgetArgs,
    /// Directory of the sweep: jobs.jsonl, results/ (one file per finished point: run the
    /// same command again and only the missing points are measured), noise.json, noise.md
    /// and plots/<site>.png.
    #[arg(long, value_name = "DIR", default_value = "build/noise")]
    out: PathBuf,
    /// Points measured at once (default: the machine's cores), each in its own process on
    /// one core.
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    jobs: Option<usize>,
    /// Measure again the points whose recorded result is a failure.
    #[arg(long)]
    retry_failed: bool,
}

fn regime(s: &str) -> Regime {
    match s {
        "train" => Regime::Train,
        "inference" => Regime::Inference,
        _ => Regime::Both,
    }
}

/// The grid of the arguments, every site, level and the data set checked before any work.
fn grid(cfg: &Config, args: &NoiseArgs) -> Result<NoiseGrid> {
    let mut sites = Vec::new();
    for key in &args.sites {
        let site = dfforge::noise::site(key).with_context(|| {
            format!(
                "--sites: unknown noise site `{key}`; known: {}",
                dfforge::noise::SITES
                    .iter()
                    .map(|s| s.key)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        sites.push(SiteLevels {
            site,
            levels: site.default_levels.to_vec(),
        });
    }
    for spec in &args.levels {
        let (key, list) = spec.split_once('=').with_context(|| {
            format!("--levels {spec}: write SITE=L1,L2,... (e.g. bit_flip=1e-4,1e-3)")
        })?;
        let entry = sites
            .iter_mut()
            .find(|s| s.site.key == key)
            .with_context(|| {
                format!(
                    "--levels {spec}: `{key}` is not among --sites ({})",
                    args.sites.join(",")
                )
            })?;
        let mut levels = Vec::new();
        for v in list.split(',') {
            let l: f64 = v
                .trim()
                .parse()
                .with_context(|| format!("--levels {spec}: `{v}` is not a number"))?;
            anyhow::ensure!(
                l == 0.0
                    || (l.is_finite()
                        && l > 0.0
                        && l >= entry.site.min_level
                        && l <= entry.site.max_level),
                "--levels {spec}: {l} is outside (0, {}] for {key} ({}){}",
                entry.site.max_level,
                entry.site.level_means,
                if entry.site.min_level > 0.0 {
                    format!("; the smallest non-zero rate is {:e}", entry.site.min_level)
                } else {
                    String::new()
                }
            );
            levels.push(l);
        }
        entry.levels = levels;
    }
    let mut backends: Vec<SoftBackend> = Vec::new();
    for b in &args.backends {
        let b = if b == "float" {
            SoftBackend::Float
        } else {
            SoftBackend::Fixed
        };
        if !backends.contains(&b) {
            backends.push(b);
        }
    }
    let budget = args.budget.budget(cfg);
    Ok(NoiseGrid {
        learners: args.learners.clone(),
        backends,
        sites,
        regimes: args.regimes.iter().map(|r| regime(r)).collect(),
        seeds: (1..=args.seeds as u64).collect(),
        budget,
    })
}

pub fn cmd_noise(cfg: &Config, cli: &Cli, args: NoiseArgs) -> Result<()> {
    let g = grid(cfg, &args)?;
    // A data set that is not there fails here, not in every point.
    let spec: data::DatasetSpec = g.budget.dataset.parse()?;
    data::load(&spec, &cli.data_dir)?;
    dfforge::util::check_output_dir(&args.out, "--out")?;
    let jobs = sweep::noise::plan(cfg, &g);
    if let Some(bad) = jobs.iter().find(|j| j.config.is_none()) {
        anyhow::bail!(
            "noise point {}: {}",
            bad.point
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            bad.error.as_deref().unwrap_or("invalid config")
        );
    }
    let jobs_path = args.out.join("jobs.jsonl");
    dfforge::util::write_atomic(&jobs_path, sweep::jobs_jsonl(&jobs).as_bytes())?;
    let done = jobs
        .iter()
        .filter(|j| sweep::finished(&args.out, j).is_some())
        .count();
    eprintln!(
        "noise: {} learners x {} backends x {} sites x {} regimes x {} seeds on {}: {} trainings \
         ({done} already finished) -> {}",
        g.learners.len(),
        g.backends.len(),
        g.sites.len(),
        g.regimes.len(),
        g.seeds.len(),
        g.budget.dataset,
        jobs.len(),
        jobs_path.display()
    );
    let job_args = if args.retry_failed {
        vec!["--retry-failed".into()]
    } else {
        vec![]
    };
    let how = local_runner(cli, args.jobs, job_args)?;
    let parallel = how.parallel;
    let s = run::run_local(&args.out, &jobs_path, &jobs, &how, args.retry_failed)?;
    eprintln!(
        "noise: trained {} points ({} failed) in {:.1} s with {parallel} workers; {} were \
         already finished",
        s.ran, s.failed, s.wall_seconds, s.skipped
    );
    let report = sweep::noise::collect(&args.out, &jobs, &g);
    let mut json = serde_json::to_string_pretty(&report)?;
    json.push('\n');
    dfforge::util::write_atomic(&args.out.join("noise.json"), json.as_bytes())?;
    let md = sweep::noise::markdown(&report);
    dfforge::util::write_atomic(&args.out.join("noise.md"), md.as_bytes())?;
    std::fs::create_dir_all(args.out.join("plots"))
        .with_context(|| format!("cannot create {}", args.out.join("plots").display()))?;
    let mut plots = Vec::new();
    for s in &g.sites {
        let p = args.out.join("plots").join(format!("{}.png", s.site.key));
        sweep::noise::plot_site(&report, s.site.key, &p)?;
        plots.push(p.display().to_string());
    }
    print!("{md}");
    eprintln!(
        "\n{} of {} trainings finished ({} failed); {}, {}, plots: {}",
        jobs.len() - report.missing,
        jobs.len(),
        report.failed.len(),
        args.out.join("noise.json").display(),
        args.out.join("noise.md").display(),
        plots.join(", ")
    );
    Ok(())
}
