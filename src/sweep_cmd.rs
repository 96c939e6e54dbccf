//! `dfforge sweep`: its arguments and the command (the sweep itself is `dfforge::sweep`).

use super::{at_least_one, dataset_help, Cli};
use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use dfforge::config::Config;
use dfforge::data;
use dfforge::sweep;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    action: Option<SweepAction>,
    /// Grid file: a [vary] table of KEY = [values], e.g. "hardware.array_rows" = [2, 4].
    #[arg(long, value_name = "GRID.toml")]
    grid: Option<PathBuf>,
    /// Vary one config key over values (repeatable), e.g. --vary hardware.array_rows=2,4;
    /// a list in [...] is read as a TOML array: --vary 'network.hidden=[[64], [128, 128]]'.
    #[arg(long = "vary", value_name = "KEY=V1,V2,...")]
    vary: Vec<String>,
    /// Seeds per point (training.seed = 1..=N); accuracies are averaged over them.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    seeds: usize,
    /// What each point measures, comma-separated: accuracy (fixed-point training within the
    /// budget below), cycles (cycles per sample and PE utilisation, the schedule's exact
    /// formula), resources (block RAMs, multipliers, LUT4/FF estimate, fits the board), pnr
    /// (yosys + nextpnr through scripts/pnr, one seed: LUT4, DP16KD, Fmax; up to an hour a
    /// point).
    #[arg(long, value_delimiter = ',', default_value = "accuracy,cycles,resources",
          value_parser = ["accuracy", "cycles", "resources", "pnr"])]
    measure: Vec<String>,
    #[command(flatten)]
    budget: BudgetArgs,
    /// Sweep directory: jobs.jsonl, results/<id>.json, summary.md, results.json, pareto.png.
    /// Finished points found there are not measured again.
    #[arg(long, value_name = "DIR", default_value = "build/sweep")]
    out: PathBuf,
    /// Points measured at once, one process each [default: the machine's cores].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    jobs: Option<usize>,
    /// Write the job list and a Slurm job-array script (slurm.sh) or a GNU parallel script
    /// (parallel.sh) into --out instead of running; then `dfforge sweep collect DIR`.
    #[arg(long, value_enum)]
    emit: Option<EmitKind>,
    /// The varied key whose values colour the plots [default: the first varied key].
    #[arg(long, value_name = "KEY")]
    colour_by: Option<String>,
    /// scripts/pnr of a dfforge checkout (the pnr measurement).
    #[arg(long, value_name = "FILE", default_value = "scripts/pnr")]
    pnr_script: PathBuf,
    /// Measure failed points again (a recorded failure is otherwise kept, like a result).
    #[arg(long)]
    retry_failed: bool,
}

/// The training budget of every accuracy point (shared by `dfforge sweep` and `dfforge noise`).
#[derive(clap::Args)]
pub struct BudgetArgs {
    #[arg(long, help = dataset_help())]
    dataset: Option<String>,
    /// Training samples of each training (the first N; 0: all).
    #[arg(long, value_name = "N", default_value_t = 2000)]
    train_samples: usize,
    /// Test samples of each training (0: all).
    #[arg(long, value_name = "N", default_value_t = 0)]
    test_samples: usize,
    /// Epochs of each training.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    epochs: usize,
}

impl BudgetArgs {
    /// The budget, the data set defaulting to the config's; fixed point, diverged runs
    /// failing.
    pub fn budget(&self, cfg: &Config) -> sweep::AccuracyBudget {
        sweep::AccuracyBudget {
            dataset: self
                .dataset
                .clone()
                .unwrap_or_else(|| cfg.data.dataset.clone()),
            train_samples: self.train_samples,
            test_samples: self.test_samples,
            epochs: self.epochs,
            ..Default::default()
        }
    }
}

/// Workers for a local run of a job list (`dfforge sweep` and `dfforge noise`): `jobs` at
/// once (default: the machine's cores), each `dfforge --data-dir D sweep run-job ... JOB_ARGS`.
pub fn local_runner(
    cli: &Cli,
    jobs: Option<usize>,
    job_args: Vec<String>,
) -> Result<dfforge::sweep::run::Local> {
    let data_dir = std::path::absolute(&cli.data_dir).unwrap_or(cli.data_dir.clone());
    Ok(dfforge::sweep::run::Local {
        exe: std::env::current_exe().context("cannot find this program's path")?,
        global_args: vec!["--data-dir".into(), data_dir.display().to_string()],
        job_args,
        parallel: jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        progress: std::io::stderr().is_terminal(),
    })
}

#[derive(Subcommand)]
enum SweepAction {
    /// Measure job INDEX of a job list and write its result to DIR/results/<id>.json (what
    /// each Slurm or GNU parallel task runs); a job whose result is there is skipped. A
    /// point that fails is written with its error and exits 0; exit 1 means no result could
    /// be written.
    RunJob {
        /// jobs.jsonl written by `dfforge sweep`.
        jobs: PathBuf,
        /// 0-based line of the job list.
        index: usize,
        /// Sweep directory [default: the job list's directory].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// scripts/pnr of a dfforge checkout (the pnr measurement).
        #[arg(long, value_name = "FILE", default_value = "scripts/pnr")]
        pnr_script: PathBuf,
        /// Measure the job again if its recorded result is a failure (a finished job is
        /// otherwise skipped, so a resubmitted array redoes nothing).
        #[arg(long)]
        retry_failed: bool,
    },
    /// Merge the results of a sweep directory into summary.md, results.json and the plot.
    Collect {
        /// The sweep directory (with jobs.jsonl).
        dir: PathBuf,
        /// The varied key whose values colour the plots [default: the first varied key].
        #[arg(long, value_name = "KEY")]
        colour_by: Option<String>,
        /// The plot, .png or .svg [default: DIR/pareto.png].
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum EmitKind {
    /// A Slurm job array (sbatch DIR/slurm.sh).
    Slurm,
    /// GNU parallel, here or over ssh hosts (bash DIR/parallel.sh).
    Parallel,
}

pub fn cmd_sweep(cfg: &Config, cli: &Cli, args: SweepArgs) -> Result<()> {
    use dfforge::sweep::{self, grid, measure, run};
    match args.action {
        Some(SweepAction::RunJob {
            jobs,
            index,
            out,
            pnr_script,
            retry_failed,
        }) => {
            let list = sweep::read_jobs(&jobs)?;
            let job = list.get(index).with_context(|| {
                format!(
                    "{}: no job {index}; the list has {} (0..={})",
                    jobs.display(),
                    list.len(),
                    list.len() - 1
                )
            })?;
            let dir = out.unwrap_or_else(|| {
                jobs.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."))
                    .to_path_buf()
            });
            if let Some(r) = sweep::finished(&dir, job).filter(|r| r.ok || !retry_failed) {
                println!(
                    "job {index} ({}): already finished ({}) -> {}",
                    job.id,
                    if r.ok { "ok" } else { "failed" },
                    sweep::result_path(&dir, job).display()
                );
                return Ok(());
            }
            let env = measure::Env {
                data_dir: cli.data_dir.clone(),
                pnr_script,
            };
            let r = run::run_job(&dir, job, &env)?;
            println!(
                "job {index} ({}): {} -> {}",
                job.id,
                if r.ok {
                    "ok".to_string()
                } else {
                    format!("FAILED: {}", r.errors.join("; "))
                },
                sweep::result_path(&dir, job).display()
            );
            Ok(())
        }
        Some(SweepAction::Collect {
            dir,
            colour_by,
            plot,
        }) => sweep_collect(&dir, colour_by.as_deref(), plot.as_deref()),
        None => {
            // The grid, the job list and every output are checked before any work.
            let mut axes = Vec::new();
            if let Some(g) = &args.grid {
                axes.extend(grid::axes_from_file(g)?);
            }
            for v in &args.vary {
                axes.push(grid::axis_from_arg(v)?);
            }
            anyhow::ensure!(
                !axes.is_empty(),
                "nothing to vary: give --vary KEY=V1,V2,... (e.g. --vary hardware.array_rows=2,4) \
                 or --grid FILE.toml"
            );
            if let Some(k) = &args.colour_by {
                anyhow::ensure!(
                    axes.iter().any(|a| &a.key == k),
                    "--colour-by {k}: not a varied key (varied: {})",
                    axes.iter()
                        .map(|a| a.key.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let points = grid::expand(&axes)?;
            let measures = sweep::Measures {
                accuracy: args
                    .measure
                    .iter()
                    .any(|m| m == "accuracy")
                    .then(|| args.budget.budget(cfg)),
                cycles: args.measure.iter().any(|m| m == "cycles"),
                resources: args.measure.iter().any(|m| m == "resources"),
                pnr: args.measure.iter().any(|m| m == "pnr"),
            };
            if let Some(b) = &measures.accuracy {
                // A data set that is not there fails here, not in every point.
                let spec: data::DatasetSpec = b.dataset.parse()?;
                data::load(&spec, &cli.data_dir)?;
            }
            if measures.pnr {
                anyhow::ensure!(
                    args.pnr_script.is_file(),
                    "--measure pnr: {} not found; run from a dfforge checkout or give --pnr-script",
                    args.pnr_script.display()
                );
            }
            dfforge::util::check_output_dir(&args.out, "--out")?;
            let seeds: Vec<u64> = (1..=args.seeds as u64).collect();
            let jobs = sweep::plan(cli.config.as_deref(), &cli.sets, &points, &seeds, &measures);
            let jobs_path = args.out.join("jobs.jsonl");
            dfforge::util::write_atomic(&jobs_path, sweep::jobs_jsonl(&jobs).as_bytes())?;
            let invalid = jobs.iter().filter(|j| j.config.is_none()).count();
            let done = jobs
                .iter()
                .filter(|j| sweep::finished(&args.out, j).is_some())
                .count();
            eprintln!(
                "sweep: {} points x {} seeds = {} jobs ({invalid} with an invalid config, {done} \
                 already finished) -> {}",
                points.len(),
                seeds.len(),
                jobs.len(),
                jobs_path.display()
            );
            if let Some(kind) = args.emit {
                let (slurm, par) = run::emit(&args.out, &jobs_path, jobs.len())?;
                match kind {
                    EmitKind::Slurm => println!(
                        "Slurm job array: sbatch {}\nthen: dfforge sweep collect {}",
                        slurm.display(),
                        args.out.display()
                    ),
                    EmitKind::Parallel => println!(
                        "GNU parallel: bash {}\nthen: dfforge sweep collect {}",
                        par.display(),
                        args.out.display()
                    ),
                }
                return Ok(());
            }
            let mut job_args = vec!["--pnr-script".into(), args.pnr_script.display().to_string()];
            if args.retry_failed {
                job_args.push("--retry-failed".into());
            }
            let how = local_runner(cli, args.jobs, job_args)?;
            let parallel = how.parallel;
            let s = run::run_local(&args.out, &jobs_path, &jobs, &how, args.retry_failed)?;
            eprintln!(
                "sweep: measured {} points ({} failed) in {:.1} s with {parallel} workers ({:.3} \
                 points/s); {} were already finished",
                s.ran,
                s.failed,
                s.wall_seconds,
                s.ran as f64 / s.wall_seconds.max(1e-9),
                s.skipped
            );
            sweep_collect(&args.out, args.colour_by.as_deref(), None)
        }
    }
}

/// `dfforge sweep collect`: summary.md, results.json and the plot of a sweep directory.
fn sweep_collect(
    dir: &std::path::Path,
    colour_by: Option<&str>,
    plot: Option<&std::path::Path>,
) -> Result<()> {
    use dfforge::sweep::{self, collect};
    let jobs = sweep::read_jobs(&dir.join("jobs.jsonl"))?;
    let plot = plot.map_or_else(|| dir.join("pareto.png"), |p| p.to_path_buf());
    dfforge::plot::check_plot_path(&plot)?;
    let c = collect::collect(dir, &jobs);
    let title = format!("dfforge sweep {}", dir.display());
    collect::plot(&c, &plot, &title, colour_by)?;
    let rel = plot
        .strip_prefix(dir)
        .map_or_else(|_| plot.display().to_string(), |p| p.display().to_string());
    let md = collect::markdown(&c, &title, Some(&rel));
    dfforge::util::write_atomic(&dir.join("summary.md"), md.as_bytes())?;
    let mut json = serde_json::to_string_pretty(&c)?;
    json.push('\n');
    dfforge::util::write_atomic(&dir.join("results.json"), json.as_bytes())?;
    println!(
        "Pareto front ({} of {} points):\n",
        c.front.len(),
        c.rows.len()
    );
    print!("{}", collect::table(&c, &c.front));
    eprintln!(
        "\n{} of {} jobs finished ({} failed); {} , {}, {}",
        c.finished,
        c.jobs,
        c.failed,
        dir.join("summary.md").display(),
        dir.join("results.json").display(),
        plot.display()
    );
    Ok(())
}
