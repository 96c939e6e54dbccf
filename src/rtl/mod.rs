//! The engine's units, generated from the config (DESIGN.md §3): one file per unit
//! generator, every width, fraction, constant and table taken from the config and the golden
//! model's [`Units`], so the RTL and the golden model cannot drift.
//!
//! [`generate`] returns the modules, the ROM tables (`.hex` for `$readmemh`) and a JSON
//! manifest; `dfforge gen` writes them to a directory, and `hdl/<config>/` holds the output of
//! the shipped configs (regenerated and compared by a test).

pub mod act;
pub mod array;
pub mod board;
pub mod bram;
pub mod census;
pub mod cmd;
pub mod engine;
pub mod fit;
pub mod goodness;
pub mod loss;
pub mod normalise;
pub mod skew;
pub mod system;
pub mod testbench;
pub mod uart;
pub mod update;
pub mod util;

use crate::config::Config;
use crate::fixed::model::{FixedError, Units};
use crate::fixed::{to_memh, LearningRate};
use crate::hdl::{check, emit, file_name, Module};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::Path;

pub use crate::arch::shape::Shape;

#[derive(Debug, thiserror::Error)]
pub enum RtlError {
    #[error(transparent)]
    Fixed(#[from] FixedError),
    #[error(transparent)]
    Arch(#[from] crate::arch::ArchError),
    #[error("cannot generate RTL for this config: {0}")]
    Unsupported(String),
    #[error("generated module {module} failed the IR checker: {errors}")]
    Check { module: String, errors: String },
}

pub use crate::arch::shape::lr_register_bits;

/// Deliberate defects for the mutation tests: each must make a co-simulation fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mutation {
    #[default]
    None,
    /// The ReLU/requantise unit truncates instead of rounding half-up (or vice versa).
    FlipActRounding,
    /// The N-pair loss unit's divider returns R + 1 instead of floor(2^F / S).
    LossRecipPlusOne,
    /// The goodness unit rounds the other way (truncate ↔ half-up).
    FlipGoodnessRounding,
    /// The squared-sum unit does not clear at a row's first value.
    SumSqNoClear,
    /// The normalisation unit's output shift is one too large.
    NormShiftPlusOne,
    /// The update unit's LFSR starts from a different seed.
    UpdateSeedFlip,
    /// Every PE multiply-accumulate adds one LSB too many.
    PeAccPlusOne,
    /// The engine's DELTA op subtracts DF-R's feedback B·δ instead of adding it.
    FeedbackSubtracted,
    /// The hinge loss unit counts a negative whose G̃(k) − G̃(y) + m is exactly 0
    /// (`>=` instead of `>`).
    HingeAtZero,
}

/// Everything `dfforge gen` writes.
#[derive(Clone, Debug)]
pub struct Rtl {
    pub modules: Vec<Module>,
    /// (file name, contents) of the ROM tables.
    pub tables: Vec<(String, String)>,
    pub manifest: serde_json::Value,
    pub shape: Shape,
    /// Block RAMs and multipliers against the board (`None` without an engine).
    pub fit: Option<fit::Fit>,
}

/// sha256 of the config's canonical TOML.
pub fn config_hash(cfg: &Config) -> String {
    let d = Sha256::digest(cfg.to_toml().as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn generate(cfg: &Config) -> Result<Rtl, RtlError> {
    generate_with(cfg, Mutation::None)
}

pub fn generate_with(cfg: &Config, mutation: Mutation) -> Result<Rtl, RtlError> {
    // The engine trains DF: a config that names another learner gets DF's engine (DF's
    // learning rate sets the LR register's width and reset value).
    let df;
    let cfg = if cfg.algorithm.name == crate::config::Learner::Df {
        cfg
    } else {
        let mut c = cfg.clone();
        c.set_learner(crate::config::Learner::Df);
        df = c;
        &df
    };
    let units = Units::new(cfg)?;
    let s = Shape::new(cfg)?;
    let f = &s.f;
    let act_mode = match (mutation, f.rounding) {
        (Mutation::FlipActRounding, crate::fixed::Rounding::HalfUp) => {
            crate::fixed::Rounding::Truncate
        }
        (Mutation::FlipActRounding, _) => crate::fixed::Rounding::HalfUp,
        (_, r) => r,
    };
    let pe = array::pe(&s, mutation == Mutation::PeAccPlusOne);
    let arr = array::array(&s, &pe);
    let mut modules = vec![
        pe,
        arr,
        act::relu_requant(&s, act_mode),
        goodness::sumsq(&s, mutation == Mutation::SumSqNoClear),
        goodness::gscale(&s, mutation == Mutation::FlipGoodnessRounding),
        normalise::normalise(&s, mutation == Mutation::NormShiftPlusOne),
        loss::loss_hinge(&s, units.margin, mutation == Mutation::HingeAtZero),
        loss::loss_npair(
            &s,
            loss::NpairConsts {
                margin: units.margin,
                scale: units.scale,
                exp_addr_bits: units.exp.addr_bits(),
                exp_step_shift: units.exp.step_shift(),
                recip_plus_one: mutation == Mutation::LossRecipPlusOne,
            },
        ),
        update::update(&s, mutation == Mutation::UpdateSeedFlip),
        bram::bram(f.weight.bits, 10),
        bram::block_model(),
        bram::block_ecp5(),
        cmd::cmd(&cmd::CmdParams {
            id: cmd::config_id(cfg),
            ..cmd::CmdParams::default()
        }),
    ];
    // The engine (and the skew it needs) for the configs it supports; the units above are
    // generated for every config.
    let mut schedule = serde_json::Value::Null;
    let mut fit: Option<fit::Fit> = None;
    let engine_status = match crate::arch::Arch::new(cfg) {
        Ok(arch) => {
            modules.push(skew::skew());
            modules.extend(engine::modules(
                &arch,
                &units,
                mutation == Mutation::FeedbackSubtracted,
            ));
            let mems: Vec<fit::MemInfo> = arch
                .mem
                .tensors
                .iter()
                .map(|t| fit::MemInfo {
                    name: t.name.clone(),
                    banks: t.banks(),
                    width: t.width,
                    depth: t.depth,
                })
                .collect();
            modules.push(system::system());
            fit = Some(estimate_fit(cfg, &units, &s, &mems, &modules)?);
            schedule = crate::arch::schedule::summary(&arch);
            "generated".to_string()
        }
        Err(e) => e.to_string(),
    };
    {
        // The DP16KD's port list (its model; synthesis has the primitive, so it is not an
        // output file).
        let dp16kd = bram::dp16kd_model();
        let mut lib: Vec<&Module> = modules.iter().collect();
        lib.push(&dp16kd);
        for m in &modules {
            if let Err(e) = check(m, &lib) {
                return Err(RtlError::Check {
                    module: m.name.clone(),
                    errors: format!("{e:?}"),
                });
            }
        }
    }
    modules.sort_by(|a, b| a.name.cmp(&b.name));
    // Both rsqrt tables have the same words (see normalise.rs); one ROM file.
    let rs = &units.rsqrt_hidden;
    let tables = vec![
        (
            "rsqrt.hex".to_string(),
            to_memh(rs.entries(), rs.out_fmt().bits),
        ),
        (
            "exp.hex".to_string(),
            to_memh(units.exp.entries(), units.exp.out_fmt().bits),
        ),
    ];
    let manifest = json!({
        "generator": format!("dfforge {}", env!("CARGO_PKG_VERSION")),
        "config_sha256": config_hash(cfg),
        "hardware_id": format!("{:016x}", cmd::config_id(cfg)),
        "array": { "rows": s.rows, "cols": s.cols, "board": cfg.hardware.board },
        "widths": {
            "pe_a": s.a_w, "pe_b": s.b_w, "pe_acc": s.acc_w, "sum_sq": s.sum_w,
            "recip": s.recip_w, "norm_x": s.norm_x_w, "param": s.param_w, "lr": s.lr_w,
        },
        "constants": {
            "recip_d": units.recip_d.iter().map(|r| r.value()).collect::<Vec<_>>(),
            "two_over_d": units.two_over_d,
            "scale": units.scale,
            "margin": units.margin,
            "lr": match units.lr { LearningRate::Mul { value, frac } => json!({"value": value, "frac": frac}), LearningRate::Shift(k) => json!({"shift": k}) },
            "lfsr": { "width": f.lfsr_width, "taps": crate::fixed::default_taps(f.lfsr_width), "seed": f.lfsr_seed },
        },
        "engine": engine_status,
        "schedule": schedule,
        "resources": fit.as_ref().map(|f| json!({
            "board": f.board,
            "capacity": f.capacity,
            "dp16kd": f.dp16kd,
            "mult18": f.mult18,
            "lut4": f.logic.lut4,
            "trellis_comb": f.logic.comb,
            "ff": f.logic.ff,
            "census_ff": f.census_ff,
            "fits": f.fits(),
            "memories": f.memories,
            "multipliers": f.multipliers,
        })),
        "tables": tables.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        "modules": modules.iter().map(|m| json!({
            "name": m.name,
            "file": file_name(m),
            "params": m.params.iter().map(|p| json!({"name": p.name, "default": crate::hdl::emit_expr(&p.default)})).collect::<Vec<_>>(),
            "ports": m.ports.iter().map(|p| json!({
                "name": p.name,
                "dir": format!("{:?}", p.dir).to_lowercase(),
                "width": crate::hdl::emit_expr(&p.width),
                "signed": p.signed,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    Ok(Rtl {
        modules,
        tables,
        manifest,
        shape: s,
        fit,
    })
}

/// The fit estimate of the engine: block RAMs from the memory map and the ROMs, multipliers
/// and logic from the census of the generated modules under `dff_system`.
fn estimate_fit(
    cfg: &Config,
    units: &Units,
    s: &Shape,
    mems: &[fit::MemInfo],
    modules: &[Module],
) -> Result<fit::Fit, RtlError> {
    let f = &s.f;
    let census = census::census(modules, "dff_system").map_err(|e| RtlError::Check {
        module: "dff_system".into(),
        errors: e,
    })?;
    let mut roms: Vec<(String, u32, usize)> = (0..s.cols as usize)
        .map(|j| {
            (
                format!("rsqrt ROM {j}"),
                f.rsqrt_frac + 2,
                1usize << f.rsqrt_addr_bits,
            )
        })
        .collect();
    roms.push((
        "protocol buffer".to_string(),
        8,
        cmd::CmdParams::default().max_payload as usize,
    ));
    if cfg.algorithm.loss == crate::config::Loss::Npair {
        roms.push((
            "exp ROM".to_string(),
            units.exp.out_fmt().bits,
            1usize << units.exp.addr_bits(),
        ));
    }
    Ok(fit::estimate(&cfg.hardware.board, mems, &roms, &census))
}

impl Rtl {
    /// (file name, text) of every output file, sorted by name.
    pub fn files(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .modules
            .iter()
            .map(|m| (file_name(m), emit(m)))
            .collect();
        v.extend(self.tables.iter().cloned());
        v.push((
            "manifest.json".into(),
            serde_json::to_string_pretty(&self.manifest).unwrap_or_default() + "\n",
        ));
        v.sort();
        v
    }

    /// Write every file into `dir` (created if missing), all of them or, on any error,
    /// none ([`crate::util::write_dir_atomic`]); the error names the file.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        crate::util::write_dir_atomic(dir, &self.files())
    }

    pub fn module(&self, name: &str) -> Option<&Module> {
        self.modules.iter().find(|m| m.name == name)
    }
}
