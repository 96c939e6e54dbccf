//! testbench/<config>/ holds the self-checking Verilog testbenches of the shipped configs
//! (`dfforge gen --testbench`); regenerating must give the same bytes. Every testbench runs
//! under Verilator (`--timing`, parsed as Verilog-2005) next to the committed RTL and must print
//! `PASS <unit> <n> vectors`; next to RTL with deliberate defects ([`Mutation`]) every one must
//! print `FAIL <unit> ...`, so each testbench is shown to be able to fail.
//!
//! Build cost: the Verilator runtime (verilated*.cpp, ~80% of a small build) is compiled once
//! and its objects reused by every testbench build (cached next to the co-simulation builds,
//! `$DFFORGE_SIM_CACHE` or `target/dfforge-sim/`); `-fno-inline` keeps the 12x12 array's C++
//! small. About 3 s per testbench build.
//! The Verilator runs skip with a notice when Verilator is missing (fail under
//! DFFORGE_REQUIRE_TOOLS).

use dfforge::config::Config;
use dfforge::rtl::testbench::{testbenches, UNITS};
use dfforge::rtl::{generate, generate_with, Mutation};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// (name, config, committed RTL, committed testbenches).
const CONFIGS: &[(&str, &str, &str, &str)] = &[
    (
        "default",
        "configs/default.toml",
        "hdl/default",
        "testbench/default",
    ),
    (
        "mnist",
        "configs/mnist.toml",
        "hdl/mnist",
        "testbench/mnist",
    ),
];

/// The defect each unit's testbench must catch (the array's is its PE's).
const MUTANTS: &[(&str, Mutation)] = &[
    ("dff_relu", Mutation::FlipActRounding),
    ("dff_update", Mutation::UpdateSeedFlip),
    ("dff_sumsq", Mutation::SumSqNoClear),
    ("dff_goodness", Mutation::FlipGoodnessRounding),
    ("dff_normalise", Mutation::NormShiftPlusOne),
    ("dff_loss_hinge", Mutation::HingeAtZero),
    ("dff_loss_npair", Mutation::LossRecipPlusOne),
    ("dff_pe", Mutation::PeAccPlusOne),
];

/// Verilator flags of every testbench build (the runtime objects are built with the same).
const VFLAGS: &[&str] = &[
    "--cc",
    "--exe",
    "--main",
    "--timing",
    "--default-language",
    "1364-2005",
    "-fno-inline",
    "-CFLAGS",
    "-O0",
];
const MAKE_OPT: &[&str] = &["OPT_FAST=-O0", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load(cfg: &str) -> Config {
    Config::load(Some(&root().join(cfg))).unwrap()
}

#[test]
fn committed_testbenches_match_regeneration() {
    for &(_, cfg, hdl, tb) in CONFIGS {
        let c = load(cfg);
        let files = testbenches(&c, &generate(&c).unwrap()).unwrap();
        let dir = root().join(tb);
        let hint =
            format!("regenerate with `dfforge --config {cfg} gen --out {hdl} --testbench {tb}`");
        let mut have: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}; {hint}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        have.sort();
        let want: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(have, want, "{tb}: file list differs; {hint}");
        let mut bytes = 0;
        for (name, text) in &files {
            let on_disk = std::fs::read_to_string(dir.join(name)).unwrap();
            assert!(&on_disk == text, "{tb}/{name} differs; {hint}");
            bytes += text.len();
        }
        assert!(bytes < 1 << 20, "{tb}: {bytes} bytes of testbenches");
        for unit in UNITS {
            assert!(
                want.contains(&format!("{unit}_tb.v")),
                "{tb}: no testbench for {unit}"
            );
        }
    }
}

fn have_verilator() -> bool {
    if Command::new("verilator").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("DFFORGE_REQUIRE_TOOLS").is_none(),
        "verilator required"
    );
    eprintln!("NOTICE: verilator not installed; skipping");
    false
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Verilate `<unit>_tb.v` in `dir` (the unit's RTL found there with `-y .`), without building.
fn verilate(dir: &Path, tb: &str, mdir: &str) {
    run_ok(
        Command::new("verilator")
            .current_dir(dir)
            .args(VFLAGS)
            .args(["--top-module", tb, "-Mdir", mdir, "-y", "."])
            .arg(format!("{tb}.v")),
        &format!("verilator {tb}"),
    );
}

fn make(mdir: &Path, tb: &str) {
    run_ok(
        Command::new("make")
            .current_dir(mdir)
            .args(["-s", "-f", &format!("V{tb}.mk"), "-j", "2"])
            .args(MAKE_OPT),
        &format!("make {tb}"),
    );
}

fn runtime_objects(mdir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(mdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("verilated") && n.ends_with(".o")
        })
        .collect();
    v.sort();
    v
}

/// The Verilator runtime's objects, compiled once with [`VFLAGS`] and cached by Verilator
/// version and flags.
fn runtime() -> &'static [PathBuf] {
    static RT: OnceLock<Vec<PathBuf>> = OnceLock::new();
    RT.get_or_init(|| {
        let version = dfforge::sim::verilator_version().unwrap();
        let key: String = format!("{version} {} {}", VFLAGS.join(" "), MAKE_OPT.join(" "))
            .bytes()
            .fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
            })
            .to_string();
        let cache = dfforge::sim::cache_root().join(format!("tb-runtime-{key}"));
        if cache.join("done").is_file() {
            return runtime_objects(&cache);
        }
        let t0 = Instant::now();
        std::fs::create_dir_all(dfforge::sim::cache_root()).unwrap();
        let tmp = tempfile::Builder::new()
            .prefix(".tb-runtime-")
            .tempdir_in(dfforge::sim::cache_root())
            .unwrap();
        std::fs::write(
            tmp.path().join("rt_tb.v"),
            "module rt_tb;\n  initial begin\n    #1 $finish;\n  end\nendmodule\n",
        )
        .unwrap();
        verilate(tmp.path(), "rt_tb", "obj");
        make(&tmp.path().join("obj"), "rt_tb");
        for o in runtime_objects(&tmp.path().join("obj")) {
            std::fs::rename(&o, tmp.path().join(o.file_name().unwrap())).unwrap();
        }
        std::fs::write(tmp.path().join("done"), "").unwrap();
        let kept = tmp.keep();
        if std::fs::rename(&kept, &cache).is_err() {
            // Another process finished first: use its objects.
            let _ = std::fs::remove_dir_all(&kept);
        }
        eprintln!("Verilator runtime compiled in {:.1?}", t0.elapsed());
        runtime_objects(&cache)
    })
}

/// Build `<unit>_tb` in `dir` (which holds the testbench, its vectors, the RTL and the ROM
/// tables); returns the executable.
fn build_tb(dir: &Path, unit: &str) -> PathBuf {
    let tb = format!("{unit}_tb");
    let mdir = format!("obj_{unit}");
    verilate(dir, &tb, &mdir);
    // Copied after verilating, so the objects are newer than the makefile and make keeps them.
    for o in runtime() {
        std::fs::copy(o, dir.join(&mdir).join(o.file_name().unwrap())).unwrap();
    }
    make(&dir.join(&mdir), &tb);
    dir.join(mdir).join(format!("V{tb}"))
}

/// Build and run `<unit>_tb` in `dir`; returns its PASS/FAIL line.
fn run_tb(dir: &Path, unit: &str) -> String {
    let t0 = Instant::now();
    let exe = build_tb(dir, unit);
    let built = t0.elapsed();
    let line = run_exe(dir, &exe);
    eprintln!(
        "{}: {unit}: built in {built:.1?}, ran in {:.1?}: {line}",
        dir.display(),
        t0.elapsed() - built
    );
    line
}

/// Run a testbench: its PASS/FAIL line. The exit status must say the same (issue 11, item
/// 12: a failing testbench used to exit 0, so CI had to grep for FAIL).
fn run_exe(dir: &Path, exe: &Path) -> String {
    let out = Command::new(exe).current_dir(dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("PASS ") || l.starts_with("FAIL "))
        .collect();
    assert_eq!(lines.len(), 1, "{}: {text}", exe.display());
    let passed = lines[0].starts_with("PASS ");
    assert_eq!(
        out.status.success(),
        passed,
        "{}: prints {} but exits with {}",
        exe.display(),
        lines[0],
        out.status
    );
    lines[0].to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn every_testbench_passes_under_verilator() {
    if !have_verilator() {
        return;
    }
    for &(name, _, hdl, tb) in CONFIGS {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&root().join(tb), tmp.path());
        copy_dir(&root().join(hdl), tmp.path());
        for unit in UNITS {
            let line = run_tb(tmp.path(), unit);
            assert!(
                line.starts_with(&format!("PASS {unit} ")) && line.ends_with(" vectors"),
                "{name}: {line}"
            );
        }
        if name == "default" {
            // One flipped bit in the first expected vector: the testbench must notice.
            let hex = tmp.path().join("dff_relu_expect.hex");
            let good = std::fs::read_to_string(&hex).unwrap();
            let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
            let mut bits = dfforge::sim::Bits::from_hex(&lines[0]);
            bits.0[0] = !bits.0[0];
            lines[0] = bits.hex();
            std::fs::write(&hex, lines.join("\n") + "\n").unwrap();
            let exe = tmp.path().join("obj_dff_relu/Vdff_relu_tb");
            let bad = run_exe(tmp.path(), &exe);
            eprintln!("corrupted dff_relu_expect.hex: {bad}");
            assert!(
                bad.starts_with("FAIL dff_relu 1 of ") && bad.contains("first at vector 0:"),
                "{bad}"
            );
        }
    }
}

#[test]
fn every_testbench_fails_on_mutated_rtl() {
    if !have_verilator() {
        return;
    }
    let (_, cfg, _, tb) = CONFIGS[0];
    let c = load(cfg);
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&root().join(tb), tmp.path());
    generate(&c).unwrap().write(tmp.path()).unwrap();
    // One directory with every unit's defect (the array gets its PE's).
    for &(unit, mutation) in MUTANTS {
        let rtl = generate_with(&c, mutation).unwrap();
        let m = rtl.module(unit).unwrap();
        std::fs::write(
            tmp.path().join(dfforge::hdl::file_name(m)),
            dfforge::hdl::emit(m),
        )
        .unwrap();
    }
    for unit in UNITS {
        let line = run_tb(tmp.path(), unit);
        assert!(
            line.starts_with(&format!("FAIL {unit} ")) && line.contains(", first at vector "),
            "the {unit} testbench did not catch the mutant: {line}"
        );
    }
}

/// True if Icarus Verilog (`iverilog`, `vvp`) is installed; otherwise a notice, or a
/// failure under DFFORGE_REQUIRE_TOOLS (scripts/install-deps installs it).
fn have_icarus() -> bool {
    if Command::new("iverilog").arg("-V").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("DFFORGE_REQUIRE_TOOLS").is_none(),
        "iverilog required (DFFORGE_REQUIRE_TOOLS is set)"
    );
    eprintln!("NOTICE: iverilog not installed; skipping the Icarus Verilog runs");
    false
}

/// Compile `<unit>_tb` in `dir` with Icarus Verilog as Verilog-2005 (modules found by file
/// name in `dir`), run it, and return its PASS/FAIL line and whether it exited with 0.
fn run_icarus(dir: &Path, unit: &str) -> (String, bool) {
    let tb = format!("{unit}_tb");
    let vvp = format!("{tb}.vvp");
    let out = Command::new("iverilog")
        .current_dir(dir)
        .args([
            "-g2005",
            "-y",
            ".",
            "-s",
            &tb,
            "-o",
            &vvp,
            &format!("{tb}.v"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "iverilog {tb}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("vvp")
        .current_dir(dir)
        .args(["-n", &vvp])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("PASS ") || l.starts_with("FAIL "))
        .collect();
    assert_eq!(lines.len(), 1, "vvp {tb}: {text}");
    (lines[0].to_string(), out.status.success())
}

// Issue 11, item 12: a failing testbench printed FAIL and then exited 0 (`$finish`), so CI
// had to grep. The emitted testbenches must exit non-zero on failure in any simulator, not
// only under Verilator (`exit(1)` there): under Icarus Verilog they end with `$fatal`.
// Every committed testbench passes with status 0 next to its RTL, and fails with a non-zero
// status on a corrupted expected vector and on RTL with each unit's defect.
#[test]
fn every_testbench_exits_with_its_verdict_under_icarus() {
    if !have_icarus() {
        return;
    }
    let (_, cfg, hdl, tb) = CONFIGS[0];
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&root().join(tb), tmp.path());
    copy_dir(&root().join(hdl), tmp.path());
    for unit in UNITS {
        let (line, ok) = run_icarus(tmp.path(), unit);
        assert!(
            line.starts_with(&format!("PASS {unit} ")) && ok,
            "{unit}: {line}, exit status 0: {ok}"
        );
    }
    // One flipped bit in the first expected vector.
    let hex = tmp.path().join("dff_relu_expect.hex");
    let good = std::fs::read_to_string(&hex).unwrap();
    let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
    let mut bits = dfforge::sim::Bits::from_hex(&lines[0]);
    bits.0[0] = !bits.0[0];
    lines[0] = bits.hex();
    std::fs::write(&hex, lines.join("\n") + "\n").unwrap();
    let (line, ok) = run_icarus(tmp.path(), "dff_relu");
    assert!(
        line.starts_with("FAIL dff_relu 1 of ") && !ok,
        "corrupted vector: {line}, exit status 0: {ok}"
    );
    std::fs::write(&hex, good).unwrap();
    // Every unit's defect: FAIL, with a non-zero exit status.
    let c = load(cfg);
    for &(unit, mutation) in MUTANTS {
        let rtl = generate_with(&c, mutation).unwrap();
        let m = rtl.module(unit).unwrap();
        std::fs::write(
            tmp.path().join(dfforge::hdl::file_name(m)),
            dfforge::hdl::emit(m),
        )
        .unwrap();
    }
    for unit in UNITS {
        let (line, ok) = run_icarus(tmp.path(), unit);
        assert!(
            line.starts_with(&format!("FAIL {unit} ")) && !ok,
            "the {unit} testbench on its mutant: {line}, exit status 0: {ok}"
        );
    }
}
