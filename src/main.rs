//! The `dfforge` command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use dfforge::config::{Config, Learner, Optimizer};
use dfforge::data::{self, DatasetSpec};
use dfforge::float::make_learner;
use dfforge::report::TrainReport;
use dfforge::train::{train, RunOptions};
use std::io::IsTerminal;
use std::path::PathBuf;

const ABOUT: &str = "Distance-Forward (DF) learning, from a float reference to FPGA hardware.

With no command, dfforge trains the built-in default config (a DF network on the 8x8 digits) \
with the float reference and prints its accuracy.";

const EXAMPLES: &str = "Examples:
  dfforge                                         train DF on digits with the built-in config
  dfforge train --backend fixed --report r.json   the same in the hardware's fixed point
  dfforge fetch-data mnist && dfforge --config configs/mnist.toml train --dataset mnist
  dfforge --set algorithm.negatives=random --set algorithm.negatives_count=3 train --backend fixed
  dfforge gen --out build/rtl                     Verilog units, ROM tables, manifest.json
  dfforge board --core echo --out build/ulx3s     ULX3S top (UART + core) and its .lpf
  dfforge ping --backend serial:/dev/ttyUSB0      PING a board (dfforge sim-board: a simulated one)
  dfforge compare a.json b.json --plot curves.png";

#[derive(Parser)]
#[command(name = "dfforge", version, about = ABOUT, long_about = ABOUT, after_help = EXAMPLES)]
struct Cli {
    /// TOML config; without it the built-in default (configs/default.toml) is used.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where data sets are stored and looked for.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "DFFORGE_DATA_DIR",
        default_value = "data"
    )]
    data_dir: PathBuf,
    /// Override one config key, e.g. --set fixed.weight.bits=10 --set algorithm.loss=hinge
    /// (repeatable; VALUE is TOML, bare words are strings).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    sets: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a network and report accuracy and speed (the default command).
    Train(TrainArgs),
    /// Fetch a data set into the data directory (sha256-verified).
    FetchData {
        /// Only `mnist` needs fetching; `digits` ships inside the binary.
        #[arg(value_enum)]
        dataset: FetchName,
    },
    /// Print the resolved config (built-in default or --config) as TOML.
    Config,
    /// Measure training speed (samples/s) of every learner on both software backends at
    /// several batch sizes in one run (repeats interleaved, medians), with GFLOP/s (GOP/s for
    /// fixed) against the machine's peak measured in the same run; prints a table,
    /// optionally writes JSON (docs/performance.md).
    Bench {
        /// Data set (as for train).
        #[arg(long)]
        dataset: Option<String>,
        /// Training samples per measurement (one pass each).
        #[arg(long, default_value_t = 2000)]
        samples: usize,
        /// Batch sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "8,64,256")]
        batches: Vec<usize>,
        /// Learners, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "df,ff,bp", value_parser = ["df", "ff", "bp"])]
        learners: Vec<String>,
        /// Backends, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "float,fixed", value_parser = ["float", "fixed"])]
        backends: Vec<String>,
        /// Runs per cell (interleaved with the other cells); the median is reported.
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Write the measurements here (atomically).
        #[arg(long, value_name = "FILE.json")]
        report: Option<PathBuf>,
    },
    /// Generate the engine's RTL (.v), ROM tables (.hex) and manifest.json into a directory.
    Gen {
        /// Output directory (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Also write self-checking Verilog testbenches with golden vectors here, one per unit
        /// (`<unit>_tb.v`, `<unit>_stim.hex`, `<unit>_expect.hex`; run them next to the RTL).
        #[arg(long, value_name = "DIR")]
        testbench: Option<PathBuf>,
    },
    /// Train N minibatches through the RTL engine and the fixed-point golden model side by
    /// side; compare every weight, bias, centroid, goodness, beta and a prediction after
    /// every step. Exit status 0 only when all are equal; on the first difference, name it
    /// and write a waveform (VCD) of that step.
    Cosim(CosimArgs),
    /// Generate a board top (Verilog and pin constraints) around a byte core: the ULX3S's
    /// FT231X UART connected to the core (see scripts/pnr to place and route it). With
    /// `--core engine`, an engine whose estimated block RAMs or multipliers exceed
    /// hardware.board's FPGA is refused (`dfforge gen` prints the same estimate).
    Board {
        /// Output directory (created if missing): every .v, ROM tables, ulx3s.lpf.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The byte core behind the UART.
        #[arg(long, value_enum, default_value_t = BoardCore::Echo)]
        core: BoardCore,
        /// UART baud rate (the clock is the board's 25 MHz oscillator).
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
        /// Write the engine even when the resource estimate says it does not fit
        /// hardware.board (the estimate errs high on small memories yosys puts in LUT RAM).
        #[arg(long)]
        no_fit_check: bool,
    },
    /// Run the ULX3S board top in Verilator behind a pseudo-terminal (bit-level UART), so host
    /// code can be tried without a board: prints the pty path to use as serial:PATH.
    SimBoard {
        /// The byte core behind the UART.
        #[arg(long, value_enum, default_value_t = BoardCore::Testmem)]
        core: BoardCore,
    },
    /// PING a board (or a simulated one) and print its ID: checks cable, baud rate and
    /// bitstream.
    Ping {
        /// Where the board is: serial:PATH or serial:PATH@BAUD (default 115200 baud),
        /// e.g. serial:/dev/ttyUSB0.
        #[arg(long, value_name = "serial:PATH[@BAUD]")]
        backend: String,
    },
    /// Compare training reports: a Markdown table on stdout, optionally overlaid curves.
    Compare {
        /// Reports written by `dfforge train --report`.
        #[arg(required = true, value_name = "REPORT.json")]
        reports: Vec<PathBuf>,
        /// Also draw their curves into one .png or .svg.
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum BoardCore {
    /// Bring-up: sends back every received byte + 1 (checks the serial path).
    Echo,
    /// dff_cmd (the protocol decoder, ID = this config's hash) in front of a memory-backed
    /// fake engine: the whole host protocol works, no training.
    Testmem,
    /// dff_system: the protocol decoder in front of this config's DF engine (training and
    /// inference; `train --backend serial:PATH` drives it).
    Engine,
}

#[derive(Clone, Copy, ValueEnum)]
enum FetchName {
    Mnist,
}

/// Which model computes the training (`--backend`).
#[derive(Clone, Debug, Default)]
enum Backend {
    /// The f32 reference model.
    #[default]
    Float,
    /// The bit-accurate fixed-point golden model of the hardware (SGD; df, ff and bp).
    Fixed,
    /// The generated engine in Verilator, bit-exact check against the golden model on.
    Rtl,
    /// A board running the engine, over its UART.
    Serial(PathBuf),
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "float" => Ok(Backend::Float),
            "fixed" => Ok(Backend::Fixed),
            "rtl" => Ok(Backend::Rtl),
            _ => match s.strip_prefix("serial:") {
                Some(p) if !p.is_empty() => Ok(Backend::Serial(PathBuf::from(p))),
                _ => Err(format!(
                    "unknown backend `{s}`: use float, fixed, rtl or serial:PATH (e.g. serial:/dev/ttyUSB0)"
                )),
            },
        }
    }
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Float => "float",
            Backend::Fixed => "fixed",
            Backend::Rtl => "rtl",
            Backend::Serial(_) => "serial",
        }
    }
}

#[derive(clap::Args)]
struct CosimArgs {
    /// Minibatches to train.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Seed of the random minibatches (pixels incl. all-zero and saturated rows, labels).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Instead of the config, run this many seeded random small configs (array shapes, widths,
    /// negatives, collaboration, losses, number formats; see dfforge::cosim::random_config).
    #[arg(long, value_name = "N")]
    matrix: Option<usize>,
    /// Write the JSON report here (atomically).
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
    /// Where a failing step's waveform goes.
    #[arg(long, value_name = "DIR", default_value = "build/cosim")]
    waves: PathBuf,
    /// Generate the RTL with a deliberate defect (tests of the failure path):
    /// flip-act-rounding, update-seed-flip, pe-acc-plus-one, feedback-subtracted.
    #[arg(long, hide = true)]
    mutation: Option<String>,
}

#[derive(clap::Args, Default)]
struct TrainArgs {
    #[arg(long, help = dataset_help())]
    dataset: Option<String>,
    /// Which model computes the training: float (f32 reference), fixed (the hardware's
    /// fixed point), rtl (the generated engine in Verilator, checked bit for bit against the
    /// fixed-point model every step; adds cycles and PE utilisation to the report), or
    /// serial:PATH (a board's UART, same check).
    #[arg(long, default_value = "float", value_name = "BACKEND")]
    backend: Backend,
    /// Learner: df (Distance-Forward), ff (Hinton's Forward-Forward) or bp (backprop, softmax head).
    #[arg(long, value_parser = ["df", "ff", "bp"])]
    algorithm: Option<String>,
    /// Override training.epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override training.optimizer.
    #[arg(long, value_parser = ["sgd", "momentum", "adam"])]
    optimizer: Option<String>,
    /// Override training.learning_rate.
    #[arg(long, value_name = "ETA")]
    lr: Option<f32>,
    /// Use only the first N training samples (quick experiments).
    #[arg(long, value_name = "N")]
    limit_train: Option<usize>,
    /// Use only the first N test samples.
    #[arg(long, value_name = "N")]
    limit_test: Option<usize>,
    /// Write the JSON report here (atomically).
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
    /// Write training curves (loss, test accuracy per epoch) as .png or .svg.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// No progress bar or per-epoch lines.
    #[arg(long)]
    quiet: bool,
}

fn dataset_help() -> String {
    format!(
        "Data set, overriding data.dataset: `digits` (8x8 handwritten digits, built in; {}), \
         `mnist` (60k/10k; run `dfforge fetch-data mnist` first), or `idx:DIR` (a directory \
         with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, \
         t10k-labels-idx1-ubyte, gzipped or not)",
        data::DIGITS_SPLIT_DOC
    )
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let cfg = Config::load_with(cli.config.as_deref(), &cli.sets)?;
    match cli.command.unwrap_or(Command::Train(TrainArgs::default())) {
        Command::Train(args) => cmd_train(cfg, &cli.data_dir, args),
        Command::FetchData {
            dataset: FetchName::Mnist,
        } => {
            let dir = data::fetch_mnist(&cli.data_dir)?;
            println!("MNIST is in {}", dir.display());
            Ok(())
        }
        Command::Config => {
            print!("{}", cfg.to_toml());
            Ok(())
        }
        Command::Compare { reports, plot } => cmd_compare(&reports, plot.as_deref()),
        Command::Cosim(args) => cmd_cosim(cfg, args),
        Command::Bench {
            dataset,
            samples,
            batches,
            learners,
            backends,
            repeats,
            report,
        } => {
            let learners = learners
                .iter()
                .map(|l| match l.as_str() {
                    "ff" => Learner::Ff,
                    "bp" => Learner::Bp,
                    _ => Learner::Df,
                })
                .collect();
            let plan = dfforge::bench::BenchPlan {
                batches,
                backends,
                learners,
                repeats,
            };
            cmd_bench(
                cfg,
                &cli.data_dir,
                dataset,
                samples,
                &plan,
                report.as_deref(),
            )
        }
        Command::Board {
            out,
            core,
            baud,
            no_fit_check,
        } => {
            use dfforge::rtl::board::{self, BoardOpts};
            let opts = BoardOpts {
                baud,
                ..BoardOpts::default()
            };
            let (design, name) = board_design(&cfg, core, &opts, !no_fit_check)?;
            let files = design
                .write(&out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {} files to {} (top {}, core {name}, {baud} baud = {} clocks per bit)",
                files.len(),
                out.display(),
                board::ULX3S_TOP,
                opts.clks_per_bit()?
            );
            Ok(())
        }
        Command::SimBoard { core } => {
            use dfforge::sim::pty::{build_pty_board, PtyBoard, SimBoardParams};
            let (design, name) = board_design(&cfg, core, &Default::default(), false)?;
            let params = SimBoardParams::default();
            eprintln!("building the Verilator model of dff_ulx3s_top around {name} ...");
            let build = build_pty_board(
                &design.modules,
                dfforge::rtl::board::ULX3S_TOP,
                &design.tables,
                &params,
            )?;
            let mut sim = PtyBoard::start(&build, std::time::Duration::from_secs(30))?;
            println!(
                "simulated ULX3S ({name}) on {} ({} clocks per bit; the baud rate setting is ignored)",
                sim.path().display(),
                params.clks_per_bit
            );
            println!(
                "try: dfforge ping --backend serial:{}    (Ctrl-C stops the simulation)",
                sim.path().display()
            );
            let status = sim.wait()?;
            anyhow::bail!("the simulated board exited ({status})")
        }
        Command::Ping { backend } => {
            use dfforge::host::{Client, SerialLink};
            let (path, opts) =
                dfforge::host::serial::parse_backend(&backend).map_err(anyhow::Error::msg)?;
            let baud = opts.baud;
            let mut c = Client::new(SerialLink::open(&path, opts)?);
            let id = c.ping()?;
            let want = dfforge::rtl::cmd::config_id(&cfg);
            println!(
                "{path} ({baud} baud) answered PING: ID {id:016x} ({})",
                if id == want {
                    "built from this config".to_string()
                } else {
                    format!("this config's ID is {want:016x}: the bitstream was built from another config")
                }
            );
            Ok(())
        }
        Command::Gen { out, testbench } => {
            let rtl = dfforge::rtl::generate(&cfg).context("generating RTL")?;
            rtl.write(&out)
                .with_context(|| format!("writing {}", out.display()))?;
            if let Some(dir) = testbench {
                let files = dfforge::rtl::testbench::testbenches(&cfg, &rtl)
                    .context("generating testbenches")?;
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                for (name, text) in &files {
                    std::fs::write(dir.join(name), text)
                        .with_context(|| format!("writing {}/{name}", dir.display()))?;
                }
                println!("wrote {} testbench files to {}", files.len(), dir.display());
            }
            println!(
                "wrote {} files ({} modules) to {}",
                rtl.files().len(),
                rtl.modules.len(),
                out.display()
            );
            let t = &rtl.manifest["schedule"]["train_step"];
            if t.is_object() {
                println!(
                    "schedule: a training step of {} samples takes {} cycles ({:.0} per sample; ideal {:.0} on {}x{} PEs), PE utilisation {:.3}",
                    t["samples"], t["cycles"], t["cycles_per_sample"].as_f64().unwrap_or(0.0),
                    t["ideal_cycles"].as_f64().unwrap_or(0.0) / t["samples"].as_f64().unwrap_or(1.0),
                    cfg.hardware.array_rows, cfg.hardware.array_cols,
                    t["pe_utilisation"].as_f64().unwrap_or(0.0)
                );
                if let (Some(by), Some(total)) =
                    (t["cycles_by_op"].as_object(), t["cycles"].as_f64())
                {
                    let mut ops: Vec<(&String, f64)> = by
                        .iter()
                        .map(|(k, v)| (k, v.as_f64().unwrap_or(0.0)))
                        .collect();
                    ops.sort_by(|a, b| b.1.total_cmp(&a.1));
                    let parts: Vec<String> = ops
                        .iter()
                        .take(5)
                        .map(|(k, v)| format!("{k} {:.0}%", 100.0 * v / total))
                        .collect();
                    println!("  where the cycles go: {}", parts.join(", "));
                }
            } else {
                println!("engine: {}", rtl.manifest["engine"].as_str().unwrap_or(""));
            }
            if let Some(fit) = &rtl.fit {
                // Simulation needs no board, so here it is a warning; `dfforge board` refuses.
                let tag = if fit.fits() { "resources" } else { "warning" };
                println!("{tag}: {}", fit.summary());
            }
            Ok(())
        }
    }
}

/// A board design around the chosen core, and the core's module name.
/// `check_fit`: refuse an engine that does not fit the board (a real build); the simulated
/// board does not need it to.
fn board_design(
    cfg: &Config,
    core: BoardCore,
    opts: &dfforge::rtl::board::BoardOpts,
    check_fit: bool,
) -> Result<(dfforge::rtl::board::BoardDesign, &'static str)> {
    use dfforge::rtl::board::{echo_core, BoardDesign};
    use dfforge::rtl::cmd::{cmd_testmem, config_id, CmdParams};
    let (name, modules) = match core {
        BoardCore::Echo => ("dff_echo_core", vec![echo_core()]),
        BoardCore::Testmem => (
            "dff_cmd_testmem",
            cmd_testmem(&CmdParams {
                id: config_id(cfg),
                ..Default::default()
            }),
        ),
        BoardCore::Engine => {
            let rtl = dfforge::rtl::generate(cfg).context("generating RTL")?;
            anyhow::ensure!(
                rtl.module("dff_system").is_some(),
                "this config has no engine yet: {}",
                rtl.manifest["engine"].as_str().unwrap_or("unsupported")
            );
            if let Some(fit) = rtl.fit.as_ref().filter(|f| check_fit && !f.fits()) {
                anyhow::bail!(
                    "the engine for this config does not fit the board: {} \
                     (--no-fit-check writes it anyway)",
                    fit.summary()
                );
            }
            return Ok((
                BoardDesign::ulx3s("dff_system", rtl.modules, rtl.tables, opts)?,
                "dff_system",
            ));
        }
    };
    Ok((BoardDesign::ulx3s(name, modules, vec![], opts)?, name))
}

fn cmd_train(mut cfg: Config, data_dir: &std::path::Path, args: TrainArgs) -> Result<()> {
    if let Some(d) = args.dataset {
        cfg.data.dataset = d;
    }
    if let Some(a) = args.algorithm {
        cfg.algorithm.name = match a.as_str() {
            "ff" => Learner::Ff,
            "bp" => Learner::Bp,
            _ => Learner::Df,
        };
    }
    if let Some(e) = args.epochs {
        cfg.training.epochs = e;
    }
    if let Some(o) = args.optimizer {
        cfg.training.optimizer = match o.as_str() {
            "adam" => Optimizer::Adam,
            "momentum" => Optimizer::Momentum,
            _ => Optimizer::Sgd,
        };
    }
    if let Some(lr) = args.lr {
        cfg.training.learning_rate = lr;
    }
    cfg.validate()?;
    let spec: DatasetSpec = cfg.data.dataset.parse()?;
    let mut ds = data::load(&spec, data_dir)?;
    ds.truncate(args.limit_train, args.limit_test);
    check_fits(&cfg, &spec, &ds)?;
    anyhow::ensure!(
        !ds.train.is_empty(),
        "data set {spec} has no training samples"
    );
    let progress = !args.quiet && std::io::stderr().is_terminal();
    let backend = args.backend.name();
    eprintln!(
        "training {} on {} ({} train / {} test, {} px, {} classes), backend {backend}, network {:?}",
        cfg.algorithm.name,
        spec,
        ds.train.len(),
        ds.test.len(),
        ds.dim(),
        ds.classes,
        cfg.network.widths()
    );
    let opts = RunOptions {
        progress,
        log_epochs: !args.quiet,
        ..RunOptions::from_config(&cfg)
    };
    let (out, hardware) = match &args.backend {
        Backend::Float => (train(make_learner(&cfg).as_mut(), &ds, &opts), None),
        Backend::Fixed => {
            let mut l = dfforge::fixed::baselines::make_fixed_learner(&cfg)?;
            (train(l.as_mut(), &ds, &opts), None)
        }
        Backend::Rtl | Backend::Serial(_) => {
            anyhow::ensure!(
                cfg.algorithm.name == dfforge::config::Learner::Df,
                "--backend {backend} runs the DF engine, which trains DF only; `{}` runs on --backend float or fixed",
                cfg.algorithm.name
            );
            let bus = open_engine(&cfg, &args.backend)?;
            let mut l = dfforge::driver::rtl::RtlLearner::new(&cfg, bus)?;
            let t0 = std::time::Instant::now();
            let out = train(&mut l, &ds, &opts);
            let wall = t0.elapsed().as_secs_f64();
            if let Some(e) = l.error() {
                anyhow::bail!("the engine failed during training: {e}");
            }
            let hw = hardware_summary(&cfg, &l, wall)?;
            print_hardware(&hw);
            if let Some(m) = l.mismatch() {
                anyhow::bail!(
                    "bit-exact check FAILED: {m} ({} values compared before it)",
                    l.values_compared()
                );
            }
            (out, Some(hw))
        }
    };
    let mut report = TrainReport::new(backend, &cfg, ds.train.len(), ds.test.len(), &out);
    if !matches!(args.backend, Backend::Float) {
        report.fixed_formats = Some(cfg.fixed.clone());
        report.memory_bits = Some(dfforge::fixed::memory::account(&cfg));
    }
    report.hardware = hardware;
    println!(
        "{} {} on {}: train accuracy {:.4}, test accuracy {:.4}, {:.1} s, {:.0} samples/s",
        backend,
        report.algorithm,
        report.dataset,
        report.train_accuracy,
        report.test_accuracy,
        report.train_seconds,
        report.samples_per_second
    );
    if let Some(p) = &args.report {
        report
            .write(p)
            .with_context(|| format!("writing report {}", p.display()))?;
        eprintln!("report written to {}", p.display());
    }
    if let Some(p) = &args.plot {
        let title = format!("{} {} on {}", backend, report.algorithm, report.dataset);
        dfforge::plot::plot_curves(p, &title, &[(&report.algorithm, &report.history)])?;
        eprintln!("plot written to {}", p.display());
    }
    Ok(())
}

/// The data set must have the config's input size and at most its classes.
fn check_fits(cfg: &Config, spec: &DatasetSpec, ds: &data::Dataset) -> Result<()> {
    anyhow::ensure!(
        ds.dim() == cfg.network.input && ds.classes <= cfg.network.classes,
        "data set {} has {} pixels and {} classes, but the config says network.input = {} and \
         network.classes = {}; use a config made for this data set (e.g. configs/mnist.toml for mnist)",
        spec,
        ds.dim(),
        ds.classes,
        cfg.network.input,
        cfg.network.classes
    );
    let side = ds.width.min(ds.height);
    anyhow::ensure!(
        cfg.training.shift < side,
        "training.shift = {} would move a {}x{} image of {} out of its frame; use a shift below {side} \
         (1 or 2 pixels is usual for MNIST)",
        cfg.training.shift,
        ds.width,
        ds.height,
        spec
    );
    Ok(())
}

fn cmd_compare(paths: &[PathBuf], plot: Option<&std::path::Path>) -> Result<()> {
    let reports = paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read report {}", p.display()))?;
            serde_json::from_str::<TrainReport>(&text).with_context(|| {
                format!("{} is not a dfforge training report (JSON written by `dfforge train --report`)", p.display())
            })
        })
        .collect::<Result<Vec<_>>>()?;
    print!("{}", dfforge::report::markdown_table(&reports));
    if let Some(p) = plot {
        let labels: Vec<String> = reports
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} ({})",
                    r.backend, r.algorithm, r.config.training.optimizer, r.dataset
                )
            })
            .collect();
        let runs: Vec<(&str, &[dfforge::train::EpochRecord])> = labels
            .iter()
            .zip(&reports)
            .map(|(l, r)| (l.as_str(), r.history.as_slice()))
            .collect();
        dfforge::plot::plot_curves(p, "dfforge: compared runs", &runs)?;
        eprintln!("plot written to {}", p.display());
    }
    Ok(())
}

fn cmd_bench(
    mut cfg: Config,
    data_dir: &std::path::Path,
    dataset: Option<String>,
    samples: usize,
    plan: &dfforge::bench::BenchPlan,
    report: Option<&std::path::Path>,
) -> Result<()> {
    if let Some(d) = dataset {
        cfg.data.dataset = d;
    }
    anyhow::ensure!(samples > 0, "--samples must be at least 1");
    anyhow::ensure!(plan.repeats > 0, "--repeats must be at least 1");
    anyhow::ensure!(
        plan.batches.iter().all(|&b| b > 0),
        "--batches must all be at least 1"
    );
    let spec: DatasetSpec = cfg.data.dataset.parse()?;
    let mut ds = data::load(&spec, data_dir)?;
    check_fits(&cfg, &spec, &ds)?;
    ds.truncate(Some(samples), Some(1));
    let r = dfforge::bench::run(&cfg, &ds, plan)?;
    print!("{}", dfforge::bench::markdown(&r));
    if let Some(p) = report {
        let text = serde_json::to_string_pretty(&r)?;
        dfforge::util::write_atomic(p, text.as_bytes())?;
    }
    Ok(())
}

/// Build (or reuse) the engine for `cfg` and connect to it.
fn open_engine(cfg: &Config, backend: &Backend) -> Result<Box<dyn dfforge::driver::Bus>> {
    match backend {
        Backend::Rtl => {
            let rtl = dfforge::rtl::generate(cfg).context("generating RTL")?;
            anyhow::ensure!(
                rtl.module("dff_engine").is_some(),
                "this config has no engine yet: {}",
                rtl.manifest["engine"].as_str().unwrap_or("unsupported")
            );
            eprintln!("building dff_system (protocol decoder + engine) with Verilator; cached after the first time ...");
            let b = dfforge::host::link::build_with_flags(
                &rtl.modules,
                "dff_system",
                &rtl.tables,
                false,
                dfforge::sim::FAST_FLAGS,
            )
            .context("building the engine")?;
            eprintln!(
                "engine model {} ({}, {:.1} s)",
                b.exe.display(),
                if b.cache_hit { "cached" } else { "built" },
                b.build_time.as_secs_f64()
            );
            let opts = dfforge::host::SimLinkOptions {
                timeout: std::time::Duration::from_secs(600),
                cycle_limit: 1 << 40,
                ..Default::default()
            };
            let link = dfforge::host::SimLink::spawn(&b, opts)?;
            let mut client = dfforge::host::Client::new(link);
            let id = client.ping().context("PING the simulated engine")?;
            anyhow::ensure!(
                id == dfforge::rtl::cmd::config_id(cfg),
                "the engine answers ID {id:016x}, not this config's {:016x}: the model was built from another config",
                dfforge::rtl::cmd::config_id(cfg)
            );
            Ok(Box::new(dfforge::driver::ProtocolBus::new(client, cfg)))
        }
        Backend::Serial(p) => {
            let spec = format!("serial:{}", p.display());
            let (path, mut opts) =
                dfforge::host::serial::parse_backend(&spec).map_err(anyhow::Error::msg)?;
            // A training step answers when it is done: allow a simulated board's slow steps.
            opts.timeout = opts.timeout.max(std::time::Duration::from_secs(120));
            let link = dfforge::host::SerialLink::open(&path, opts)?;
            let mut client = dfforge::host::Client::new(link);
            let id = client
                .ping()
                .with_context(|| format!("PING the board on {path}"))?;
            anyhow::ensure!(
                id == dfforge::rtl::cmd::config_id(cfg),
                "the board answers ID {id:016x}, not this config's {:016x}: load a bitstream built from this config (dfforge board --core engine)",
                dfforge::rtl::cmd::config_id(cfg)
            );
            client.reset().context("RESET the engine")?;
            Ok(Box::new(dfforge::driver::ProtocolBus::new(client, cfg)))
        }
        _ => unreachable!("software backends have no engine"),
    }
}

fn hardware_summary(
    cfg: &Config,
    l: &dfforge::driver::rtl::RtlLearner,
    wall: f64,
) -> Result<serde_json::Value> {
    let lay = l.layout();
    let pes = (lay.rows * lay.cols) as f64;
    let c = l.counters()?;
    let (icyc, infers) = l.infer_cycles();
    let samples = l.train_samples.max(1) as f64;
    Ok(serde_json::json!({
        "array": [lay.rows, lay.cols],
        "train_steps": l.steps,
        "train_cycles": l.train_cycles,
        "cycles_per_train_sample": l.train_cycles as f64 / samples,
        "ideal_cycles_per_train_sample": l.macs as f64 / pes / samples,
        "predicted_cycles_per_train_sample": dfforge::rtl::engine::predicted_cycles(cfg, lay, cfg.training.batch, false) as f64 / cfg.training.batch as f64,
        "pe_utilisation": l.macs as f64 / (pes * l.train_cycles.max(1) as f64),
        "cycles_per_inference": icyc as f64 / infers.max(1) as f64,
        "engine_cycles_total": c[0],
        "simulated_cycles_per_second": c[0] as f64 / wall.max(1e-9),
        "train_samples_per_second_engine": samples / l.engine_seconds.max(1e-9),
        "train_samples_per_second_golden": samples / l.golden_seconds.max(1e-9),
        "values_compared": l.values_compared(),
        "mismatches": if l.mismatch().is_some() { 1 } else { 0 },
        "first_mismatch": l.mismatch().map(|m| m.to_string()),
    }))
}

fn print_hardware(hw: &serde_json::Value) {
    let f = |k: &str| hw[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "engine: {:.0} cycles per training sample (ideal {:.0}, schedule predicts {:.0}), PE utilisation {:.3}, \
         {:.0} cycles per inference, {:.0} simulated cycles/s, training {:.1} samples/s through the engine vs {:.0} in the golden model; \
         bit-exact check: {} values compared, {}",
        f("cycles_per_train_sample"),
        f("ideal_cycles_per_train_sample"),
        f("predicted_cycles_per_train_sample"),
        f("pe_utilisation"),
        f("cycles_per_inference"),
        f("simulated_cycles_per_second"),
        f("train_samples_per_second_engine"),
        f("train_samples_per_second_golden"),
        hw["values_compared"],
        if hw["mismatches"] == 0 { "0 mismatches" } else { "MISMATCH" }
    );
}

/// One co-simulation of `cfg` over the host protocol (dff_system in Verilator); on a
/// difference, replays the run with a traced model and dumps the failing step.
fn cosim_one(
    cfg: &Config,
    steps: usize,
    seed: u64,
    waves: &std::path::Path,
    mutation: dfforge::rtl::Mutation,
) -> Result<dfforge::cosim::CosimReport> {
    use dfforge::cosim;
    cfg.validate()?;
    let rtl = dfforge::rtl::generate_with(cfg, mutation).context("generating RTL")?;
    anyhow::ensure!(
        rtl.module("dff_engine").is_some(),
        "this config has no engine yet: {}",
        rtl.manifest["engine"].as_str().unwrap_or("unsupported")
    );
    let open = |traced: bool| -> Result<dfforge::host::SimLink> {
        let b = dfforge::host::link::build(&rtl.modules, "dff_system", &rtl.tables, traced)
            .context("building dff_system")?;
        let opts = dfforge::host::SimLinkOptions {
            traced,
            timeout: std::time::Duration::from_secs(600),
            cycle_limit: 1 << 40,
        };
        Ok(dfforge::host::SimLink::spawn(&b, opts)?)
    };
    let go = |link: dfforge::host::SimLink,
              trace_at: Option<(usize, PathBuf)>|
     -> Result<(
        cosim::CosimReport,
        dfforge::driver::ProtocolBus<dfforge::host::SimLink>,
    )> {
        let mut bus = dfforge::driver::ProtocolBus::new(dfforge::host::Client::new(link), cfg);
        let mut fx = dfforge::fixed::model::FixedDf::new(cfg)?;
        let mut data = cosim::RandomBatches::new(cfg, seed);
        let bsz = cfg.training.batch;
        let mut batches = |_s: usize| data.next(bsz);
        let rep = match &trace_at {
            None => cosim::run(cfg, &mut fx, &mut bus, &mut batches, steps)?,
            Some((k, path)) => {
                let mut tb = TraceBus {
                    inner: &mut bus,
                    at: *k,
                    path: path.clone(),
                    step: 0,
                };
                cosim::run(cfg, &mut fx, &mut tb, &mut batches, k + 1)?
            }
        };
        Ok((rep, bus))
    };
    let (mut rep, _bus) = go(open(false)?, None)?;
    if let Some(m) = rep.first_mismatch.clone() {
        std::fs::create_dir_all(waves).with_context(|| format!("creating {}", waves.display()))?;
        let path = waves.join(format!("cosim-step{}.fst", m.step));
        eprintln!("first difference: {m}; replaying with a traced model for the waveform ...");
        let (_r, mut bus) = go(
            open(true)?,
            Some((
                m.step,
                std::fs::canonicalize(waves)?.join(path.file_name().unwrap()),
            )),
        )?;
        let _ = bus.client.link_mut().trace_stop();
        rep.waveform = Some(path.display().to_string());
    }
    Ok(rep)
}

/// A [`Bus`] that starts a waveform before the training run of step `at`.
struct TraceBus<'a> {
    inner: &'a mut dfforge::driver::ProtocolBus<dfforge::host::SimLink>,
    at: usize,
    path: PathBuf,
    step: usize,
}

impl dfforge::driver::Bus for TraceBus<'_> {
    fn write_block(&mut self, r: u8, a: u32, w: &[i64]) -> Result<()> {
        self.inner.write_block(r, a, w)
    }
    fn read_block(&mut self, r: u8, a: u32, n: usize) -> Result<Vec<i64>> {
        self.inner.read_block(r, a, n)
    }
    fn run(&mut self, op: u8) -> Result<(u8, u8, u64)> {
        if op == dfforge::rtl::engine::RUN_TRAIN {
            if self.step == self.at {
                self.inner.client.link_mut().trace_start(&self.path)?;
            }
            self.step += 1;
        }
        let r = self.inner.run(op);
        if op == dfforge::rtl::engine::RUN_TRAIN && self.step == self.at + 1 {
            let _ = self.inner.client.link_mut().trace_stop();
        }
        r
    }
}

fn cmd_cosim(cfg: Config, args: CosimArgs) -> Result<()> {
    use dfforge::rtl::Mutation;
    let mutation = match args.mutation.as_deref() {
        None => Mutation::None,
        Some("flip-act-rounding") => Mutation::FlipActRounding,
        Some("update-seed-flip") => Mutation::UpdateSeedFlip,
        Some("pe-acc-plus-one") => Mutation::PeAccPlusOne,
        Some("feedback-subtracted") => Mutation::FeedbackSubtracted,
        Some(m) => anyhow::bail!("unknown mutation `{m}`"),
    };
    let configs: Vec<(String, Config)> = match args.matrix {
        None => vec![("config".to_string(), cfg)],
        Some(n) => (0..n)
            .map(|i| {
                (
                    format!("random #{i}"),
                    dfforge::cosim::random_config(args.seed, i),
                )
            })
            .collect(),
    };
    let mut reports = Vec::new();
    let mut failed = 0;
    for (name, c) in &configs {
        let t0 = std::time::Instant::now();
        let rep = cosim_one(c, args.steps, args.seed, &args.waves, mutation)
            .with_context(|| format!("co-simulating {name}"))?;
        let a = &c.algorithm;
        println!(
            "{name}: {:?} on {}x{}, {}/{}/{}/{}: {} steps, {} values compared, {} mismatches, \
             {:.0} cycles/step (predicted {:.0}), PE utilisation {:.3} ({:.1} s)",
            c.network.widths(),
            c.hardware.array_rows,
            c.hardware.array_cols,
            a.loss,
            a.negatives,
            a.collaboration,
            a.scheme,
            rep.steps,
            rep.values_compared,
            rep.mismatches,
            rep.cycles_per_step,
            rep.predicted_cycles as f64 / rep.steps.max(1) as f64,
            rep.pe_utilisation,
            t0.elapsed().as_secs_f64()
        );
        if let Some(m) = &rep.first_mismatch {
            failed += 1;
            println!("  FIRST DIFFERENCE {m}");
            if let Some(w) = &rep.waveform {
                println!("  waveform of that step: {w}");
            }
        }
        reports.push(serde_json::json!({
            "name": name,
            "config": c,
            "steps": rep.steps,
            "values_compared": rep.values_compared,
            "mismatches": rep.mismatches,
            "cycles": rep.cycles,
            "predicted_cycles": rep.predicted_cycles,
            "cycles_per_sample": rep.cycles_per_sample,
            "pe_utilisation": rep.pe_utilisation,
            "first_mismatch": rep.first_mismatch,
            "waveform": rep.waveform,
        }));
    }
    if let Some(p) = &args.report {
        let total = |k: &str| {
            reports
                .iter()
                .map(|r| r[k].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        let j = serde_json::json!({
            "steps": args.steps,
            "configs": reports.len(),
            "values_compared": total("values_compared"),
            "mismatches": total("mismatches"),
            "cycles": total("cycles"),
            "pe_utilisation": reports.first().map(|r| r["pe_utilisation"].clone()),
            "runs": reports,
        });
        dfforge::util::write_atomic(p, serde_json::to_string_pretty(&j)?.as_bytes())
            .with_context(|| format!("writing {}", p.display()))?;
        eprintln!("report written to {}", p.display());
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} co-simulations differ from the golden model",
        configs.len()
    );
    Ok(())
}
