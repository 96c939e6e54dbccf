//! testbench/<config>/ holds the self-checking Verilog testbenches of the default config
//! (`dfforge gen --testbench`); regenerating must give the same bytes. The relu and update
//! testbenches run under Verilator (`--binary --timing`) against the committed RTL and must
//! print PASS; a corrupted expected value must make the relu one print FAIL.
//! The run skips with a notice when Verilator is missing (fails under DFFORGE_REQUIRE_TOOLS).

use dfforge::config::Config;
use dfforge::rtl::{generate, testbench::testbenches};
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn default_cfg() -> Config {
    Config::load(Some(&root().join("configs/default.toml"))).unwrap()
}

#[test]
fn committed_testbenches_match_regeneration() {
    let cfg = default_cfg();
    let files = testbenches(&cfg, &generate(&cfg).unwrap()).unwrap();
    let dir = root().join("testbench/default");
    let hint = "regenerate with `dfforge gen --config configs/default.toml --out hdl/default --testbench testbench/default`";
    let mut have: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; {hint}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    have.sort();
    let want: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(have, want, "file list differs; {hint}");
    for (name, text) in &files {
        let on_disk = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(&on_disk == text, "testbench/default/{name} differs; {hint}");
    }
}

/// Build `<unit>_tb` with Verilator in `dir` (which holds the tb, vectors and RTL); returns
/// the executable.
fn build_tb(dir: &Path, unit: &str) -> std::path::PathBuf {
    let t0 = std::time::Instant::now();
    let tb = format!("{unit}_tb");
    let out = Command::new("verilator")
        .current_dir(dir)
        .args(["--binary", "--timing", "-O1", "-CFLAGS", "-O1", "-j", "2"])
        .args(["--top-module", &tb, "-Mdir", &format!("obj_{unit}")])
        .args([format!("{tb}.v"), format!("{unit}.v")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verilator build of {tb} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{tb}: built in {:.2?}", t0.elapsed());
    dir.join(format!("obj_{unit}")).join(format!("V{tb}"))
}

fn run_tb(dir: &Path, exe: &Path) -> String {
    let out = Command::new(exe).current_dir(dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{} failed: {text}", exe.display());
    text
}

#[test]
fn relu_and_update_testbenches_pass_under_verilator() {
    if Command::new("verilator").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("DFFORGE_REQUIRE_TOOLS").is_none(),
            "verilator required"
        );
        eprintln!("NOTICE: verilator not installed; skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for sub in ["testbench/default", "hdl/default"] {
        for e in std::fs::read_dir(root().join(sub)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    for unit in ["dff_relu", "dff_update"] {
        let exe = build_tb(tmp.path(), unit);
        let text = run_tb(tmp.path(), &exe);
        eprint!("{text}");
        assert!(
            text.contains("PASS") && !text.contains("FAIL"),
            "{unit}: {text}"
        );
        if unit == "dff_relu" {
            // Flip one bit of the first expected output: the testbench must notice.
            let hex = tmp.path().join("dff_relu_vectors.hex");
            let good = std::fs::read_to_string(&hex).unwrap();
            let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
            let mut bits = dfforge::sim::Bits::from_hex(&lines[0]);
            // The expected output is in the top bits; hex padding is at most 3 bits.
            let i = bits.0.len() - 8;
            bits.0[i] = !bits.0[i];
            lines[0] = bits.hex();
            std::fs::write(&hex, lines.join("\n") + "\n").unwrap();
            let bad = run_tb(tmp.path(), &exe);
            eprint!("corrupted vectors: {bad}");
            assert!(bad.contains("FAIL") && !bad.contains("PASS"), "{bad}");
            std::fs::write(&hex, good).unwrap();
        }
    }
}
