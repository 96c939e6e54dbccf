//! Every op engine of the generated engine, on its own: the IR checker and Verilator's
//! `--lint-only -Wall` accept it on configs that exercise its options.

use dfforge::arch::Arch;
use dfforge::config::Config;
use dfforge::fixed::model::Units;
use dfforge::hdl::{check, emit, file_name, Module};
use std::process::Command;

fn lint(top: &Module, deps: &[Module]) {
    let mut lib: Vec<&Module> = deps.iter().collect();
    lib.push(top);
    if let Err(e) = check(top, &lib) {
        panic!("{}: {e:?}", top.name);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for m in deps.iter().chain(std::iter::once(top)) {
        let p = dir.path().join(file_name(m));
        std::fs::write(&p, emit(m)).unwrap();
        files.push(p);
    }
    let out = Command::new("verilator")
        .args(["--lint-only", "-Wall", "--top-module", &top.name])
        .args(&files)
        .output()
        .expect("verilator");
    assert!(
        out.status.success(),
        "{} lint:\n{}",
        top.name,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn units(cfg: &Config) -> (Arch, Units, Vec<Module>) {
    let arch = Arch::new(cfg).unwrap();
    let u = Units::new(cfg).unwrap();
    let s = &arch.shape;
    let deps = vec![
        dfforge::rtl::goodness::sumsq(s, false),
        dfforge::rtl::goodness::gscale(s, false),
        dfforge::rtl::normalise::normalise(s, false),
    ];
    (arch, u, deps)
}

#[test]
fn norm_engine_lints() {
    for (r, c) in [(4, 4), (3, 2), (2, 5), (1, 1)] {
        let mut cfg = Config::builtin();
        cfg.hardware.array_rows = r;
        cfg.hardware.array_cols = c;
        let (arch, u, deps) = units(&cfg);
        lint(&dfforge::rtl::engine::norm::norm(&arch, &u), &deps);
    }
}

/// Configs that exercise the engines' options: array shapes (square, wide, tall, 1×1),
/// one to three layers, DF / DF-R / DF-O.
fn configs() -> Vec<Config> {
    use dfforge::config::Scheme;
    let mut v = Vec::new();
    for (i, (r, c)) in [(4, 4), (3, 2), (2, 5), (1, 1), (4, 1)]
        .into_iter()
        .enumerate()
    {
        let mut cfg = Config::builtin();
        cfg.hardware.array_rows = r;
        cfg.hardware.array_cols = c;
        cfg.network.hidden = match i % 3 {
            0 => vec![12, 10],
            1 => vec![9],
            _ => vec![7, 6, 5],
        };
        cfg.algorithm.scheme = [Scheme::Df, Scheme::DfR, Scheme::DfO][i % 3];
        cfg.validate().unwrap();
        v.push(cfg);
    }
    v
}

#[test]
fn gemm_and_update_engines_lint() {
    for cfg in configs() {
        let (arch, _u, _) = units(&cfg);
        let s = &arch.shape;
        lint(&dfforge::rtl::engine::gemm_feed::gemm_feed(&arch), &[]);
        lint(
            &dfforge::rtl::engine::gemm_drain::gemm_drain(&arch),
            &[dfforge::rtl::act::relu_requant(s, cfg.fixed.rounding)],
        );
        lint(
            &dfforge::rtl::engine::update::update(&arch),
            &[dfforge::rtl::update::update(s, false)],
        );
    }
}

/// The whole system (`dff_system`: protocol decoder and engine) of many seeded random
/// configs: Verilator's -Wall finds no warning, whatever the shapes and options.
#[test]
fn whole_system_lints_on_random_configs() {
    let n: usize = std::env::var("DFFORGE_LINT_CONFIGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    // The shipped configs first (ulx3s-mnist's 9-bit weights under 16-bit centroids once
    // left bits of the update lanes unread), then the random ones.
    let shipped = [
        "configs/default.toml",
        "configs/mnist.toml",
        "configs/ulx3s-mnist.toml",
    ];
    let configs = shipped
        .iter()
        .map(|p| {
            dfforge::config::Config::load(Some(
                &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p),
            ))
            .unwrap()
        })
        .chain((0..n).map(|i| dfforge::cosim::random_config(77, i)));
    for (i, cfg) in configs.enumerate() {
        let rtl = dfforge::rtl::generate(&cfg).unwrap();
        let top = rtl.module("dff_system").unwrap().clone();
        let deps: Vec<Module> = rtl
            .modules
            .iter()
            .filter(|m| m.name != "dff_system")
            .cloned()
            .collect();
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in &rtl.tables {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let mut files = Vec::new();
        for m in deps.iter().chain(std::iter::once(&top)) {
            let p = dir.path().join(file_name(m));
            std::fs::write(&p, emit(m)).unwrap();
            files.push(p);
        }
        let out = Command::new("verilator")
            .current_dir(dir.path())
            .args(["--lint-only", "-Wall", "--top-module", "dff_system"])
            .args(&files)
            .output()
            .expect("verilator");
        assert!(
            out.status.success(),
            "config {i} (shipped first; {:?} on {}x{}, {:?}): lint\n{}",
            cfg.network.widths(),
            cfg.hardware.array_rows,
            cfg.hardware.array_cols,
            cfg.algorithm.scheme,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
