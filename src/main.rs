//! The `dfforge` command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use dfforge::config::{Config, Learner};
use dfforge::data::{self, DatasetSpec};
use dfforge::float::make_learner;
use dfforge::report::TrainReport;
use dfforge::train::{train, RunOptions};
use noise_cmd::{cmd_noise, NoiseArgs};
use std::io::IsTerminal;
use std::path::PathBuf;
use sweep_cmd::{cmd_sweep, SweepArgs};

mod noise_cmd;
mod sweep_cmd;

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
  dfforge compare a.json b.json --plot curves.png
  dfforge sweep --vary hardware.array_rows=2,4 --vary fixed.weight.bits=13,16   design-space sweep";

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
    /// Override one config key, e.g. --set fixed.weight.bits=14 --set algorithm.scheme=df-r
    /// (repeatable; VALUE is TOML, bare words are strings; `dfforge config` shows the result).
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
    /// `--core engine`, an engine whose estimated block RAMs, multipliers or logic exceed
    /// hardware.board's FPGA is refused (`dfforge gen` prints the same estimate).
    Board {
        /// Output directory (created if missing): every .v, ROM tables, ulx3s.lpf.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The byte core behind the UART.
        #[arg(long, value_enum, default_value_t = BoardCore::Echo)]
        core: BoardCore,
        /// UART baud rate.
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
        /// Clock of the core and the UART in MHz: 25 runs from the board's oscillator, any
        /// other value from the ECP5 PLL (the nearest frequency it makes). Default: 100 for
        /// the engine (its measured Fmax is in docs/board.md), 25 for the small cores.
        #[arg(long, value_name = "MHZ", value_parser = positive_f64)]
        mhz: Option<f64>,
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
        /// Seconds of silence after which the board is taken as not answering.
        #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = positive_f64)]
        timeout: f64,
    },
    /// Design-space exploration: vary config keys over a grid (--grid FILE, --vary
    /// KEY=V1,V2,...), measure every point (fixed-point accuracy, cycles per sample, block
    /// RAMs, multipliers, LUT estimate, optionally place and route), one process per core,
    /// resumable; then the Pareto front as a table and plots (docs/dse.md). `--emit` writes
    /// Slurm / GNU parallel scripts that run the same job list on a cluster.
    Sweep(SweepArgs),
    /// Hardware-noise robustness: accuracy against level for each noise site (input, weight
    /// read noise, device variation, update noise, stuck-at bits, bit flips), learner (DF,
    /// FF, BP), backend and regime (noise in training or at inference), over several seeds,
    /// one process per core and resumable; writes noise.json (curves), noise.md and one plot
    /// per site, with each learner's clean float reference drawn (docs/robustness.md).
    Noise(NoiseArgs),
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

/// The engine's default clock on the board (MHz): what it meets on the 85F in the measured
/// place and route (docs/board.md).
const ENGINE_MHZ: f64 = 100.0;

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
    /// Minibatches to train (at least 1: a check that compares nothing has not passed).
    #[arg(long, default_value_t = 5, value_parser = at_least_one)]
    steps: usize,
    /// Seed of the random minibatches (pixels incl. all-zero and saturated rows, labels).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Instead of the config, run this many (at least 1) seeded random small configs (array
    /// shapes, widths, negatives, collaboration, losses, number formats; see
    /// dfforge::cosim::random_config).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    matrix: Option<usize>,
    /// Seconds to wait for any answer of the simulated engine, on top of a step's expected
    /// cycles at 50,000 cycles/s (the schedule predicts them): a hung or stopped simulator is
    /// noticed after that [default: 20].
    #[arg(long, value_name = "SECS", value_parser = positive_f64)]
    timeout: Option<f64>,
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
    /// Optimizer of this run (= --set training.optimizer=NAME). Without it each learner
    /// uses its own from the config.
    #[arg(long, value_parser = ["sgd", "momentum", "adam"])]
    optimizer: Option<String>,
    /// Learning rate of this run (= --set training.learning_rate=ETA). Without it each
    /// learner uses its own from the config ([training.df], [training.ff], [training.bp]).
    #[arg(long, value_name = "ETA", value_parser = positive_f32)]
    lr: Option<f32>,
    /// Use only the first N training samples (quick experiments; N >= 1).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    limit_train: Option<usize>,
    /// Use only the first N test samples (N >= 1: accuracy needs samples).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
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
    /// --backend rtl or serial: seconds to wait for any answer of the engine, on top of a
    /// training step's or an inference's expected cycles at 50,000 cycles/s (the schedule
    /// predicts them); a hung or stopped simulator or board is noticed after that
    /// [default: 20].
    #[arg(long, value_name = "SECS", value_parser = positive_f64)]
    timeout: Option<f64>,
}

/// A count of at least 1.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A finite number above 0.
fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(v) => Err(format!("{v} is not a positive finite number")),
        Err(e) => Err(e.to_string()),
    }
}

/// [`dfforge::driver::Timeouts`] with `--timeout SECS` as the base, if given.
fn timeouts(secs: Option<f64>) -> dfforge::driver::Timeouts {
    let mut t = dfforge::driver::Timeouts::default();
    if let Some(s) = secs {
        t.base = std::time::Duration::from_secs_f64(s);
    }
    t
}

/// A finite number above 0.
fn positive_f32(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(v) => Err(format!("{v} is not a positive finite number")),
        Err(e) => Err(e.to_string()),
    }
}

impl TrainArgs {
    /// The flags that are config keys, as `--set` overrides.
    fn config_sets(&self) -> Vec<String> {
        let quote = |v: &str| toml_edit::Value::from(v).to_string();
        let mut sets = Vec::new();
        if let Some(d) = &self.dataset {
            sets.push(format!("data.dataset={}", quote(d)));
        }
        if let Some(a) = &self.algorithm {
            sets.push(format!("algorithm.name={}", quote(a)));
        }
        if let Some(e) = self.epochs {
            sets.push(format!("training.epochs={e}"));
        }
        if let Some(o) = &self.optimizer {
            sets.push(format!("training.optimizer={}", quote(o)));
        }
        if let Some(lr) = self.lr {
            sets.push(format!("training.learning_rate={lr:?}"));
        }
        sets
    }
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
    keep_freed_memory();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        // `exit` runs no destructors: drop the error first, so that nothing it owns (a
        // temporary file, a child process) outlives the run.
        drop(e);
        std::process::exit(1);
    }
}

/// glibc's malloc returns freed blocks above 128 KiB to the kernel (and trims the heap's
/// top), so a training step that frees and re-allocates its matrices (tens of MB per step at
/// batch 256) page-faults every page back in, from both threads at once. Keeping freed
/// memory in the process makes re-allocation a memset: `dfforge bench` measured about 10 %
/// more samples/s at batch 256 for both models (docs/performance.md).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        // 32 MiB is glibc's largest mmap threshold on 64-bit targets.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn run(mut cli: Cli) -> Result<()> {
    let command = cli
        .command
        .take()
        .unwrap_or(Command::Train(TrainArgs::default()));
    // The train flags that set config keys are `--set`s applied after the user's own, so the
    // config is resolved once, with them (e.g. --algorithm bp picks backprop's own learning
    // rate), and validated with the same messages.
    let mut sets = cli.sets.clone();
    if let Command::Train(args) = &command {
        sets.extend(args.config_sets());
    }
    let cfg = Config::load_with(cli.config.as_deref(), &sets)?;
    match command {
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
        Command::Sweep(args) => cmd_sweep(&cfg, &cli, args),
        Command::Noise(args) => cmd_noise(&cfg, &cli, args),
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
            mhz,
            no_fit_check,
        } => {
            use dfforge::rtl::board::{self, BoardOpts};
            dfforge::util::check_output_dir(&out, "--out")?;
            let mhz = mhz.unwrap_or(match core {
                BoardCore::Engine => ENGINE_MHZ,
                _ => f64::from(board::ULX3S_CLK_HZ) / 1e6,
            });
            let opts = BoardOpts::at_mhz(mhz, baud)?;
            let (design, name) = board_design(&cfg, core, &opts, !no_fit_check)?;
            let files = design
                .write(&out)
                .with_context(|| format!("writing {}", out.display()))?;
            let clock = match &opts.pll {
                Some(p) => format!(
                    "{:.3} MHz from the PLL (25 x {} / {})",
                    f64::from(p.out_hz) / 1e6,
                    p.clkfb_div,
                    p.clki_div
                ),
                None => "the 25 MHz oscillator".into(),
            };
            println!(
                "wrote {} files to {} (top {}, core {name}, clock {clock}, {baud} baud = {} clocks per bit)",
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
        Command::Ping { backend, timeout } => {
            use dfforge::host::{Client, SerialLink};
            let (path, mut opts) =
                dfforge::host::serial::parse_backend(&backend).map_err(anyhow::Error::msg)?;
            opts.timeout = std::time::Duration::from_secs_f64(timeout);
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
            dfforge::util::check_output_dir(&out, "--out")?;
            if let Some(dir) = &testbench {
                dfforge::util::check_output_dir(dir, "--testbench")?;
            }
            let rtl = dfforge::rtl::generate(&cfg).context("generating RTL")?;
            let bytes = |files: Vec<(String, String)>| -> dfforge::util::DirFiles {
                files
                    .into_iter()
                    .map(|(n, t)| (n, t.into_bytes()))
                    .collect()
            };
            let mut groups = vec![(out.clone(), bytes(rtl.files()))];
            if let Some(dir) = &testbench {
                let files = dfforge::rtl::testbench::testbenches(&cfg, &rtl)
                    .context("generating testbenches")?;
                groups.push((dir.clone(), bytes(files)));
            }
            let n_tb = groups.get(1).map(|g| g.1.len());
            // RTL and testbenches together: all files or, on any error, none.
            dfforge::util::write_dirs_atomic(groups)?;
            if let (Some(dir), Some(n)) = (&testbench, n_tb) {
                println!("wrote {n} testbench files to {}", dir.display());
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

fn cmd_train(cfg: Config, data_dir: &std::path::Path, args: TrainArgs) -> Result<()> {
    // (--dataset, --algorithm, --epochs, --optimizer and --lr are already in `cfg`.)
    // Every output is checked before any work: a bad path must not waste a training run.
    if let Some(p) = &args.report {
        dfforge::util::check_output_file(p, "--report")?;
    }
    if let Some(p) = &args.plot {
        dfforge::plot::check_plot_path(p)?;
    }
    // What the backend cannot do, before the data is loaded or an engine built.
    match &args.backend {
        Backend::Float => {}
        Backend::Fixed => {
            dfforge::fixed::baselines::make_fixed_learner(&cfg)?;
            cfg.check_fixed_learning_rate()
                .map_err(anyhow::Error::msg)?;
        }
        Backend::Rtl | Backend::Serial(_) => {
            dfforge::driver::preflight(&cfg, &format!("--backend {}", args.backend.name()))?
        }
    }
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
        Backend::Float => (train(make_learner(&cfg).as_mut(), &ds, &opts)?, None),
        Backend::Fixed => {
            let mut l = dfforge::fixed::baselines::make_fixed_learner(&cfg)?;
            (train(l.as_mut(), &ds, &opts)?, None)
        }
        Backend::Rtl | Backend::Serial(_) => {
            let bus = open_engine(&cfg, &args.backend, timeouts(args.timeout))?;
            let mut l = dfforge::driver::rtl::RtlLearner::new(&cfg, bus)?;
            let t0 = std::time::Instant::now();
            let out = train(&mut l, &ds, &opts)?;
            let wall = t0.elapsed().as_secs_f64();
            let hw = hardware_summary(&l, wall)?;
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
    if let Some(p) = plot {
        dfforge::plot::check_plot_path(p)?;
    }
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
    if let Some(p) = report {
        dfforge::util::check_output_file(p, "--report")?;
    }
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
fn open_engine(
    cfg: &Config,
    backend: &Backend,
    timeouts: dfforge::driver::Timeouts,
) -> Result<Box<dyn dfforge::driver::Bus>> {
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
                timeout: timeouts.base,
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
            Ok(Box::new(
                dfforge::driver::ProtocolBus::new(client, &dfforge::arch::Arch::new(cfg)?)
                    .with_timeouts(timeouts),
            ))
        }
        Backend::Serial(p) => {
            let spec = format!("serial:{}", p.display());
            let (path, mut opts) =
                dfforge::host::serial::parse_backend(&spec).map_err(anyhow::Error::msg)?;
            // A training step answers when it is done: ProtocolBus allows each its expected
            // cycles (a simulated board is slow) on top of this.
            opts.timeout = timeouts.base;
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
            Ok(Box::new(
                dfforge::driver::ProtocolBus::new(client, &dfforge::arch::Arch::new(cfg)?)
                    .with_timeouts(timeouts),
            ))
        }
        _ => unreachable!("software backends have no engine"),
    }
}

fn hardware_summary(l: &dfforge::driver::rtl::RtlLearner, wall: f64) -> Result<serde_json::Value> {
    let lay = l.arch();
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
        // Per step with its own size: a partial last batch is predicted as what it is.
        "predicted_cycles_per_train_sample": l.predicted_train_cycles as f64 / samples,
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
    timeouts: dfforge::driver::Timeouts,
) -> Result<dfforge::cosim::CosimReport> {
    use dfforge::cosim;
    cfg.validate()?;
    dfforge::driver::preflight(cfg, "cosim")?;
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
            timeout: timeouts.base,
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
        let mut bus = dfforge::driver::ProtocolBus::new(
            dfforge::host::Client::new(link),
            &dfforge::arch::Arch::new(cfg)?,
        )
        .with_timeouts(timeouts);
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
    fn expect_cycles(&mut self, cycles: u64) {
        self.inner.expect_cycles(cycles)
    }
    fn run(&mut self, op: u8) -> Result<(u8, u8, u64)> {
        if op == dfforge::arch::abi::RUN_TRAIN {
            if self.step == self.at {
                self.inner.client.link_mut().trace_start(&self.path)?;
            }
            self.step += 1;
        }
        let r = self.inner.run(op);
        if op == dfforge::arch::abi::RUN_TRAIN && self.step == self.at + 1 {
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
    if let Some(p) = &args.report {
        dfforge::util::check_output_file(p, "--report")?;
    }
    dfforge::util::check_output_dir(&args.waves, "--waves")?;
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
    // Every config the engine cannot train is refused before the first (long) build.
    for (name, c) in &configs {
        c.validate()
            .map_err(anyhow::Error::from)
            .and_then(|_| dfforge::driver::preflight(c, "cosim"))
            .with_context(|| format!("co-simulating {name}"))?;
    }
    let mut reports = Vec::new();
    let mut failed = 0;
    for (name, c) in &configs {
        let t0 = std::time::Instant::now();
        let rep = cosim_one(
            c,
            args.steps,
            args.seed,
            &args.waves,
            mutation,
            timeouts(args.timeout),
        )
        .with_context(|| format!("co-simulating {name}"))?;
        // A check that compared nothing has not passed.
        anyhow::ensure!(
            rep.values_compared > 0,
            "co-simulating {name}: no values were compared, so nothing was checked"
        );
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
