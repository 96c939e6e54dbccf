//! The host driver's view of an engine: where every tensor lives on the engine's bus (the
//! memory map of [`crate::arch`]) and how to load, run and read it back, over any
//! transport that can move bus words ([`Bus`]).

pub mod check;
pub mod rtl;

use crate::arch::abi::{counter, hyper, region};
use crate::arch::memmap::{Tensor, TensorId};
use crate::arch::Arch;
use crate::fixed::kernels::IMat;
use crate::fixed::model::FxParams;

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
    let sites = cfg.noise.model_sites_on();
    anyhow::ensure!(
        sites.is_empty(),
        "{what}: the noise sites {} act inside the learner (its weights or activations), which \
         the engine does not model yet (they run in --backend float and fixed); set their \
         level to 0 or change the backend",
        sites.join(", ")
    );
    cfg.check_fixed_learning_rate()
        .map_err(anyhow::Error::msg)?;
    crate::fixed::model::Units::new(cfg)?;
    Arch::new(cfg)?;
    Ok(())
}

/// Engine cycles of a training step of `n` samples (or of one inference): what the
/// schedule predicts ([`crate::arch::schedule::predicted_cycles`]), for reports and
/// timeouts.
pub fn expected_cycles(arch: &Arch, n: usize, infer: bool) -> u64 {
    crate::arch::schedule::predicted_cycles(arch, n, infer)
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

/// The host's region of a tensor (every tensor the driver moves has one).
fn region_of(t: &Tensor) -> u8 {
    t.region
        .unwrap_or_else(|| panic!("{} is not on the bus", t.name))
        .code
}

/// Write a whole tensor, bank by bank (`get(row, col)` per element; padding words zero).
fn write_tensor(
    bus: &mut dyn Bus,
    t: &Tensor,
    get: impl Fn(usize, usize) -> i64,
) -> anyhow::Result<()> {
    for (b, words) in t.to_banks(get).iter().enumerate() {
        bus.write_block(region_of(t), t.bus_addr(b, 0), words)?;
    }
    Ok(())
}

/// Read a whole tensor back as `rows × cols` row-major values.
fn read_tensor(bus: &mut dyn Bus, t: &Tensor) -> anyhow::Result<Vec<i64>> {
    let banks = (0..t.banks())
        .map(|b| bus.read_block(region_of(t), t.bus_addr(b, 0), t.depth))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut out = vec![0i64; t.rows * t.cols];
    for r in 0..t.rows {
        for k in 0..t.cols {
            let (b, w) = t.bank_word(r, k);
            out[r * t.cols + k] = banks[b][w];
        }
    }
    Ok(out)
}

fn to_imat(rows: usize, cols: usize, v: Vec<i64>) -> IMat {
    IMat {
        rows,
        cols,
        data: v.into_iter().map(|x| x as i32).collect(),
    }
}

/// Load every parameter.
pub fn load_params(bus: &mut dyn Bus, arch: &Arch, p: &FxParams) -> anyhow::Result<()> {
    for (l, w) in p.w.iter().enumerate() {
        write_tensor(bus, arch.mem.t(TensorId::W(l)), |o, k| {
            i64::from(w.data[o * w.cols + k])
        })?;
        write_tensor(bus, arch.mem.t(TensorId::B(l)), |_, o| p.b[l][o])?;
    }
    write_tensor(bus, arch.mem.t(TensorId::U), |c, o| {
        i64::from(p.u.data[c * p.u.cols + o])
    })
}

/// Load DF-R's fixed feedback matrices (`feedback[l]` = B_l, used for l ≥ 1), transposed as
/// the engine's FB ops read them. Nothing to do without DF-R (DF-O feeds back through W).
pub fn load_feedback(bus: &mut dyn Bus, arch: &Arch, feedback: &[IMat]) -> anyhow::Result<()> {
    for l in 0..arch.fb_layers() {
        let Some(t) = arch.mem.get(TensorId::Fbm(l)) else {
            continue;
        };
        let b = &feedback[l + 1];
        write_tensor(bus, t, |j, i| i64::from(b.data[i * b.cols + j]))?;
    }
    Ok(())
}

/// Read every parameter back.
pub fn read_params(bus: &mut dyn Bus, arch: &Arch) -> anyhow::Result<FxParams> {
    let nl = arch.layers();
    let mut w = Vec::with_capacity(nl);
    let mut b = Vec::with_capacity(nl);
    for l in 0..nl {
        let t = arch.mem.t(TensorId::W(l));
        w.push(to_imat(t.rows, t.cols, read_tensor(bus, t)?));
        b.push(read_tensor(bus, arch.mem.t(TensorId::B(l)))?);
    }
    let t = arch.mem.t(TensorId::U);
    let u = to_imat(t.rows, t.cols, read_tensor(bus, t)?);
    Ok(FxParams { w, b, u })
}

/// Write a batch: raw pixels (one row per sample) and, for training, the hypotheses (slot
/// 0 the label, as [`crate::hypotheses`] orders them) and the batch size.
pub fn write_batch(
    bus: &mut dyn Bus,
    arch: &Arch,
    pixels: &IMat,
    hyps: Option<&[u32]>,
) -> anyhow::Result<()> {
    let t = arch.mem.t(TensorId::Pixels);
    // Only the words of the batch's samples: bank b holds samples b, b + C, ….
    let mut banks = vec![Vec::new(); t.banks()];
    for s in 0..pixels.rows {
        for k in 0..pixels.cols {
            let (b, word) = t.bank_word(s, k);
            if banks[b].len() <= word {
                banks[b].resize(word + 1, 0);
            }
            banks[b][word] = i64::from(pixels.data[s * pixels.cols + k]);
        }
    }
    for (b, words) in banks.iter().enumerate().filter(|(_, w)| !w.is_empty()) {
        bus.write_block(region::PIXELS, t.bus_addr(b, 0), words)?;
    }
    if let Some(h) = hyps {
        let hv: Vec<i64> = h.iter().map(|&v| i64::from(v)).collect();
        bus.write_block(region::HYPS, 0, &hv)?;
        bus.write_block(region::HYPER, hyper::BATCH, &[pixels.rows as i64])?;
    }
    Ok(())
}

/// G_l of the first `rows` rows of every layer.
pub fn read_goodness(bus: &mut dyn Bus, arch: &Arch, rows: usize) -> anyhow::Result<Vec<Vec<i64>>> {
    (0..arch.layers())
        .map(|l| bus.read_block(region::GOODNESS + l as u8, 0, rows))
        .collect()
}

/// β_l of the first `rows` rows of every layer.
pub fn read_beta(bus: &mut dyn Bus, arch: &Arch, rows: usize) -> anyhow::Result<Vec<Vec<i64>>> {
    (0..arch.layers())
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

/// The engine behind the host protocol (a simulated `dff_system` or a board).
pub struct ProtocolBus<L: crate::host::Link> {
    pub client: crate::host::Client<L>,
    mem: crate::arch::memmap::MemMap,
    timeouts: Timeouts,
    /// Cycles the next run is expected to take ([`Bus::expect_cycles`]).
    expected: u64,
}

impl<L: crate::host::Link> ProtocolBus<L> {
    /// With [`Timeouts::default`] (set on the link now).
    pub fn new(client: crate::host::Client<L>, arch: &Arch) -> Self {
        ProtocolBus {
            client,
            mem: arch.mem.clone(),
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
        let wb = self.mem.wbytes(region);
        Ok(self.client.write(region, wb, addr, words)?)
    }
    fn read_block(&mut self, region: u8, addr: u32, n: usize) -> anyhow::Result<Vec<i64>> {
        let wb = self.mem.wbytes(region);
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
            crate::arch::abi::RUN_TRAIN => self.client.train(),
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
