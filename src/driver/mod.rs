//! The host driver's view of an engine: where every tensor lives on the engine's bus
//! ([`crate::rtl::engine::Layout`]) and how to load, run and read it back, over any
//! transport that can move bus words ([`Bus`]).

pub mod rtl;

use crate::fixed::kernels::IMat;
use crate::fixed::model::FxParams;
use crate::rtl::engine::{counter, hyper, region, Layout};

/// Refuse, before anything is built or opened, a config the engine cannot train, with the
/// reason and the fix: the engine trains DF with plain SGD, at widths the golden model and
/// the engine's layout support. `what` names the command (`--backend rtl`, `cosim`).
pub fn preflight(cfg: &crate::config::Config, what: &str) -> anyhow::Result<()> {
    use crate::config::{Learner, Optimizer};
    let a = cfg.algorithm.name;
    anyhow::ensure!(
        a == Learner::Df,
        "{what} runs the DF engine, which trains DF only; algorithm.name = `{a}` trains with \
         --backend float or --backend fixed (e.g. `dfforge train --algorithm {a} --backend fixed`)"
    );
    let ((opt, from), _) = cfg.training.resolve(a);
    let opt = if cfg.training.optimizer != opt {
        (cfg.training.optimizer, "the code that built this config")
    } else if from == "default" {
        (opt, "dfforge's default for df")
    } else {
        (opt, from)
    };
    anyhow::ensure!(
        opt.0 == Optimizer::Sgd,
        "{what} trains as the hardware does, with plain SGD, but this run's optimizer is `{}` \
         (from {}); use --optimizer sgd or set [training.df] optimizer = \"sgd\"",
        opt.0,
        opt.1
    );
    cfg.check_fixed_learning_rate()
        .map_err(anyhow::Error::msg)?;
    crate::fixed::model::Units::new(cfg)?;
    crate::rtl::engine_layout(cfg)?;
    Ok(())
}

/// Engine cycles of a training step of `n` samples (or of one inference): what the
/// schedule predicts. The host's one use of the engine's schedule formula (reports and
/// timeouts).
pub fn expected_cycles(cfg: &crate::config::Config, lay: &Layout, n: usize, infer: bool) -> u64 {
    crate::rtl::engine::predicted_cycles(cfg, lay, n, infer)
}

/// Write the learning-rate register: η·`factor`/B as the update unit's constant. The host
/// writes it before training (and whenever the schedule moves it): the bitstream's reset
/// value may come from another config with the same hardware ([`crate::rtl::cmd::config_id`]).
pub fn write_lr(bus: &mut dyn Bus, cfg: &crate::config::Config, factor: f32) -> anyhow::Result<()> {
    if let crate::fixed::LearningRate::Mul { value, .. } =
        crate::fixed::model::lr_constant(cfg, factor)
    {
        bus.write_block(region::HYPER, hyper::LR, &[value])?;
    }
    Ok(())
}

/// How long the host waits for the engine: `base` for any answer, plus, for a training step
/// or an inference, its expected cycles ([`expected_cycles`]) at `min_cycles_per_second`,
/// a deliberately slow simulation speed. A stopped or hung simulator is noticed after that,
/// not after a fixed ten minutes; `--timeout` sets `base`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timeouts {
    pub base: std::time::Duration,
    pub min_cycles_per_second: f64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            base: std::time::Duration::from_secs(20),
            min_cycles_per_second: 50_000.0,
        }
    }
}

impl Timeouts {
    /// The wait for an answer that needs `cycles` engine cycles.
    pub fn for_cycles(&self, cycles: u64) -> std::time::Duration {
        self.base
            + std::time::Duration::from_secs_f64(
                cycles as f64 / self.min_cycles_per_second.max(1.0),
            )
    }
}

/// Anything that reaches the engine's bus: the bus-level Verilator harness, or the host
/// protocol over a pipe or a UART.
pub trait Bus {
    /// Write consecutive words from `addr`.
    fn write_block(&mut self, region: u8, addr: u32, words: &[i64]) -> anyhow::Result<()>;
    /// Read `n` consecutive words from `addr` (64-bit bus words, sign-extended by the engine
    /// for signed formats).
    fn read_block(&mut self, region: u8, addr: u32, n: usize) -> anyhow::Result<Vec<i64>>;
    /// Run `op` (train / infer) to completion; (status, result, cycles of the run).
    fn run(&mut self, op: u8) -> anyhow::Result<(u8, u8, u64)>;
    /// The next [`Bus::run`] is expected to take `cycles` engine cycles (for its timeout).
    fn expect_cycles(&mut self, _cycles: u64) {}
}

impl Bus for crate::sim::engine::EngineSim {
    fn write_block(&mut self, region: u8, addr: u32, words: &[i64]) -> anyhow::Result<()> {
        for (i, &w) in words.iter().enumerate() {
            self.write(region, addr + i as u32, w)?;
        }
        Ok(())
    }
    fn read_block(&mut self, region: u8, addr: u32, n: usize) -> anyhow::Result<Vec<i64>> {
        (0..n)
            .map(|i| Ok(self.read(region, addr + i as u32)?))
            .collect()
    }
    fn run(&mut self, op: u8) -> anyhow::Result<(u8, u8, u64)> {
        // Cycles = the engine's busy counter, as over the protocol.
        let before = self.read(region::COUNTERS, counter::BUSY)? as u64;
        let (st, res, _) = crate::sim::engine::EngineSim::run(self, op, 1 << 40)?;
        let after = self.read(region::COUNTERS, counter::BUSY)? as u64;
        Ok((st, res, after - before))
    }
}

/// A matrix as the engine stores it, bank by bank: `place(row, col)` gives (bank, word);
/// words no element maps to (padding) are zero.
fn to_banks(
    m: &IMat,
    banks: usize,
    depth: usize,
    place: impl Fn(usize, usize) -> (usize, usize),
) -> Vec<Vec<i64>> {
    let mut out = vec![vec![0i64; depth]; banks];
    for r in 0..m.rows {
        for c in 0..m.cols {
            let (b, word) = place(r, c);
            out[b][word] = i64::from(m.data[r * m.cols + c]);
        }
    }
    out
}

/// W_l as the engine stores it ([`Layout::w_bank_word`]).
fn w_banks(lay: &Layout, l: usize, w: &IMat) -> Vec<Vec<i64>> {
    to_banks(w, lay.rows, lay.w_depth(l), |o, k| lay.w_bank_word(l, o, k))
}

/// Bus address of the first word of W_l's bank `b`.
fn bank_base(lay: &Layout, l: usize, b: usize) -> u32 {
    lay.w_addr(l, b, 0)
}

/// Load every parameter.
pub fn load_params(bus: &mut dyn Bus, lay: &Layout, p: &FxParams) -> anyhow::Result<()> {
    for (l, w) in p.w.iter().enumerate() {
        for (b, words) in w_banks(lay, l, w).iter().enumerate() {
            bus.write_block(region::WEIGHTS + l as u8, bank_base(lay, l, b), words)?;
        }
        bus.write_block(region::BIASES + l as u8, 0, &p.b[l])?;
    }
    let u: Vec<i64> = p.u.data.iter().map(|&v| i64::from(v)).collect();
    bus.write_block(region::CENTROIDS, 0, &u)?;
    Ok(())
}

/// Load DF-R's fixed feedback matrices (`feedback[l]` = B_l, used for l ≥ 1), transposed as
/// the engine's FB ops read them ([`Layout::fb_addr`]). Nothing to do without feedback.
pub fn load_feedback(bus: &mut dyn Bus, lay: &Layout, feedback: &[IMat]) -> anyhow::Result<()> {
    if !lay.feedback || lay.diag_w {
        return Ok(()); // DF-O feeds back through W itself
    }
    for l in 0..lay.layers() - 1 {
        let banks = to_banks(&feedback[l + 1], lay.rows, lay.fb_depth(l), |i, j| {
            lay.fb_bank_word(l, i, j)
        });
        for (bank, words) in banks.iter().enumerate() {
            bus.write_block(region::FEEDBACK + l as u8, lay.fb_addr(l, 0, bank), words)?;
        }
    }
    Ok(())
}

/// Read every parameter back.
pub fn read_params(bus: &mut dyn Bus, lay: &Layout) -> anyhow::Result<FxParams> {
    let nl = lay.layers();
    let mut w = Vec::with_capacity(nl);
    let mut b = Vec::with_capacity(nl);
    for l in 0..nl {
        let (d_out, d_in) = (lay.dims[l + 1], lay.dims[l]);
        // Whole banks, then every element from where the layout puts it (row banks, or
        // DF-O's diagonal banks).
        let banks = (0..lay.rows)
            .map(|bank| {
                bus.read_block(
                    region::WEIGHTS + l as u8,
                    bank_base(lay, l, bank),
                    lay.w_depth(l),
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut m = IMat::zeros(d_out, d_in);
        for o in 0..d_out {
            for k in 0..d_in {
                let (bank, word) = lay.w_bank_word(l, o, k);
                m.data[o * d_in + k] = banks[bank][word] as i32;
            }
        }
        w.push(m);
        b.push(bus.read_block(region::BIASES + l as u8, 0, d_out)?);
    }
    let (c, d1) = (lay.classes, lay.dims[1]);
    let u = bus.read_block(region::CENTROIDS, 0, c * d1)?;
    Ok(FxParams {
        w,
        b,
        u: IMat {
            rows: c,
            cols: d1,
            data: u.into_iter().map(|v| v as i32).collect(),
        },
    })
}

/// Write a batch: raw pixels (one row per sample, in the engine's sample banks,
/// [`Layout::px_bank_word`]) and, for training, the hypotheses (slot 0 the label, as
/// [`crate::hypotheses`] orders them).
pub fn write_batch(
    bus: &mut dyn Bus,
    lay: &Layout,
    pixels: &IMat,
    hyps: Option<&[u32]>,
) -> anyhow::Result<()> {
    let depth = pixels.rows.div_ceil(lay.cols) * lay.dims[0];
    let banks = to_banks(pixels, lay.cols, depth, |s, k| lay.px_bank_word(s, k));
    for (b, words) in banks.iter().enumerate().take(pixels.rows) {
        bus.write_block(region::PIXELS, lay.px_bank_base(b), words)?;
    }
    if let Some(h) = hyps {
        let hv: Vec<i64> = h.iter().map(|&v| i64::from(v)).collect();
        bus.write_block(region::HYPS, 0, &hv)?;
        bus.write_block(region::HYPER, hyper::BATCH, &[pixels.rows as i64])?;
    }
    Ok(())
}

/// G_l of the first `rows` rows of every layer.
pub fn read_goodness(
    bus: &mut dyn Bus,
    lay: &Layout,
    rows: usize,
) -> anyhow::Result<Vec<Vec<i64>>> {
    (0..lay.layers())
        .map(|l| bus.read_block(region::GOODNESS + l as u8, 0, rows))
        .collect()
}

/// β_l of the first `rows` rows of every layer.
pub fn read_beta(bus: &mut dyn Bus, lay: &Layout, rows: usize) -> anyhow::Result<Vec<Vec<i64>>> {
    (0..lay.layers())
        .map(|l| bus.read_block(region::BETA + l as u8, 0, rows))
        .collect()
}

/// The engine's counters (cycles, busy, array, runs).
pub fn read_counters(bus: &mut dyn Bus) -> anyhow::Result<Vec<u64>> {
    Ok(bus
        .read_block(region::COUNTERS, 0, counter::COUNT as usize)?
        .into_iter()
        .map(|v| v as u64)
        .collect())
}

/// Bytes per word on the protocol for each region: enough for the memory's format with a
/// sign bit to spare for unsigned ones (the device sign-extends what it receives).
pub fn region_wbytes(cfg: &crate::config::Config, region: u8) -> u8 {
    let f = &cfg.fixed;
    let bits = |q: crate::fixed::QFormat| q.bits + u32::from(!q.signed);
    let b = match region {
        region::PIXELS => bits(f.pixel),
        region::HYPS => 16,
        r if (region::WEIGHTS..region::WEIGHTS + 16).contains(&r) => bits(f.weight),
        r if (region::BIASES..region::BIASES + 16).contains(&r) => bits(f.bias),
        region::CENTROIDS => bits(f.centroid),
        r if (region::GOODNESS..region::GOODNESS + 16).contains(&r) => bits(f.goodness),
        r if (region::BETA..region::BETA + 16).contains(&r) => bits(f.beta),
        r if (region::FEEDBACK..region::FEEDBACK + 16).contains(&r) => bits(f.weight),
        _ => 64,
    };
    b.div_ceil(8).clamp(1, 8) as u8
}

/// The engine behind the host protocol (a simulated `dff_system` or a board).
pub struct ProtocolBus<L: crate::host::Link> {
    pub client: crate::host::Client<L>,
    cfg: crate::config::Config,
    timeouts: Timeouts,
    /// Cycles the next run is expected to take ([`Bus::expect_cycles`]).
    expected: u64,
}

impl<L: crate::host::Link> ProtocolBus<L> {
    /// With [`Timeouts::default`] (set on the link now).
    pub fn new(client: crate::host::Client<L>, cfg: &crate::config::Config) -> Self {
        ProtocolBus {
            client,
            cfg: cfg.clone(),
            timeouts: Timeouts::default(),
            expected: 0,
        }
        .with_timeouts(Timeouts::default())
    }

    /// Wait for answers as `t` says.
    pub fn with_timeouts(mut self, t: Timeouts) -> Self {
        self.timeouts = t;
        self.client.link_mut().set_timeout(t.base);
        self
    }
}

impl<L: crate::host::Link> Bus for ProtocolBus<L> {
    fn write_block(&mut self, region: u8, addr: u32, words: &[i64]) -> anyhow::Result<()> {
        let wb = region_wbytes(&self.cfg, region);
        Ok(self.client.write(region, wb, addr, words)?)
    }
    fn read_block(&mut self, region: u8, addr: u32, n: usize) -> anyhow::Result<Vec<i64>> {
        let wb = region_wbytes(&self.cfg, region);
        Ok(self.client.read(region, wb, addr, n)?)
    }
    fn expect_cycles(&mut self, cycles: u64) {
        self.expected = cycles;
    }

    fn run(&mut self, op: u8) -> anyhow::Result<(u8, u8, u64)> {
        // The engine's busy counter measures the run itself (not the frames around it).
        let before = self.client.read_counters()?[counter::BUSY as usize];
        // The run answers when it is done: allow its expected cycles, then the base again.
        let expected = std::mem::take(&mut self.expected);
        self.client
            .link_mut()
            .set_timeout(self.timeouts.for_cycles(expected));
        let res = match op {
            crate::rtl::engine::RUN_TRAIN => self.client.train(),
            _ => self.client.infer(),
        };
        self.client.link_mut().set_timeout(self.timeouts.base);
        let (status, result) = match res {
            Ok(r) => (0, r),
            Err(crate::host::ProtocolError::Engine { status, result, .. }) => (status, result),
            Err(e) => return Err(e.into()),
        };
        let after = self.client.read_counters()?[counter::BUSY as usize];
        Ok((status, result, after - before))
    }
}
