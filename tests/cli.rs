//! The `dfforge` binary as a user meets it: defaults that run, reports with the promised
//! fields, and errors that name the problem and the fix.

use std::path::Path;
use std::process::{Command, Output};

fn dfforge(args: &[&str], dir: &Path) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_dfforge"))
        .args(args)
        .current_dir(dir)
        .env_remove("DFFORGE_DATA_DIR")
        .output()
        .expect("run dfforge");
    if !o.status.success() {
        assert_clean_error(&String::from_utf8_lossy(&o.stderr));
    }
    o
}

/// Every error message: no clause said twice in a row (issue 11, item 14: "No such file or
/// directory (os error 2): No such file or directory (os error 2)") and no run of spaces
/// inside a sentence (the `fixed.update` message had 18).
fn assert_clean_error(e: &str) {
    for line in e.lines().filter(|l| l.starts_with("error: ")) {
        let parts: Vec<&str> = line.split(": ").collect();
        for w in parts.windows(2) {
            assert!(
                w[0].len() < 10 || w[0].trim_start_matches("error") != w[1],
                "a clause twice: {line}"
            );
        }
        assert!(
            !line.trim_end().contains("   "),
            "a run of spaces: {line:?}"
        );
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// IDX bytes: magic (0, 0, 0x08 = u8, dims), big-endian dims, data.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend(data);
    v
}

/// A tiny IDX data set: 3 classes of 4x4 images, each class a bright quadrant.
fn write_idx_dir(dir: &Path, n_train: u32, n_test: u32) {
    let make = |n: u32| {
        let mut px = Vec::new();
        let mut lab = Vec::new();
        for i in 0..n {
            let c = (i % 3) as u8;
            lab.push(c);
            for p in 0..16u32 {
                let quadrant = ((p / 4) / 2) * 2 + (p % 4) / 2;
                px.push(if quadrant == c as u32 {
                    200 + (i % 50) as u8
                } else {
                    (i * 7 % 30) as u8
                });
            }
        }
        (idx(&[n, 4, 4], &px), idx(&[n], &lab))
    };
    let (ti, tl) = make(n_train);
    let (vi, vl) = make(n_test);
    std::fs::write(dir.join("train-images-idx3-ubyte"), ti).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), tl).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), vi).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), vl).unwrap();
}

const IDX_CONFIG: &str = r#"
[network]
input = 16
hidden = [12, 12]
classes = 3
[algorithm]
name = "df"
loss = "npair"
margin = 0.05
scale = 20.0
negatives = "all"
negatives_count = 2
collaboration = "previous"
scheme = "df"
eval_layers = []
epsilon = 1e-6
ff_threshold = 0.5
feedback_seed = 7
[training]
optimizer = "adam"
learning_rate = 0.01
lr_schedule = "constant"
momentum = 0.9
batch = 8
epochs = 3
seed = 1
[data]
dataset = "idx:tiny"
"#;

#[test]
fn no_arguments_trains_the_builtin_default() {
    let dir = tempfile::tempdir().unwrap();
    let o = dfforge(&["--quiet-not-a-flag"], dir.path());
    assert!(!o.status.success(), "unknown flags are rejected");
    let o = dfforge(&["train", "--epochs", "2", "--quiet"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("float df on digits: train accuracy"), "{out}");
}

#[test]
fn report_and_plots_are_written_with_the_promised_fields() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tiny")).unwrap();
    write_idx_dir(&dir.path().join("tiny"), 60, 30);
    std::fs::write(dir.path().join("c.toml"), IDX_CONFIG).unwrap();
    let o = dfforge(
        &[
            "train",
            "--config",
            "c.toml",
            "--report",
            "out/r.json",
            "--plot",
            "out/c.svg",
            "--quiet",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/r.json")).unwrap()).unwrap();
    for key in [
        "backend",
        "algorithm",
        "dataset",
        "epochs",
        "train_accuracy",
        "test_accuracy",
        "train_seconds",
        "samples_per_second",
        "config",
        "history",
    ] {
        assert!(r.get(key).is_some(), "report lacks {key}: {r}");
    }
    assert_eq!(r["backend"], "float");
    assert_eq!(r["dataset"], "idx:tiny");
    assert_eq!(
        r["config"]["network"]["hidden"],
        serde_json::json!([12, 12])
    );
    assert_eq!(r["history"].as_array().unwrap().len(), 3);
    let acc = r["test_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    assert!(acc > 0.9, "three bright quadrants are easy: {acc}");
    let svg = std::fs::read_to_string(dir.path().join("out/c.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("test accuracy"));
    let o = dfforge(
        &[
            "train", "--config", "c.toml", "--plot", "c.png", "--quiet", "--epochs", "1",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let png = std::fs::read(dir.path().join("c.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let o = dfforge(
        &[
            "train", "--config", "c.toml", "--plot", "c.gif", "--quiet", "--epochs", "1",
        ],
        dir.path(),
    );
    assert!(
        stderr(&o).contains("must end in .png or .svg"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn config_errors_name_file_line_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let bad = IDX_CONFIG.replace("batch = 8", "batch = 0");
    std::fs::write(dir.path().join("bad.toml"), &bad).unwrap();
    let line = bad
        .lines()
        .position(|l| l.starts_with("batch = 0"))
        .unwrap()
        + 1;
    let o = dfforge(&["train", "--config", "bad.toml"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!(
            "bad.toml:{line}: `training.batch`: is 0; it must be between 1 and 65536"
        )),
        "{}",
        stderr(&o)
    );
    let o = dfforge(&["train", "--config", "missing.toml"], dir.path());
    assert!(
        stderr(&o).contains("cannot read config missing.toml"),
        "{}",
        stderr(&o)
    );
    std::fs::write(
        dir.path().join("typo.toml"),
        IDX_CONFIG.replace("margin", "margni"),
    )
    .unwrap();
    let o = dfforge(&["config", "--config", "typo.toml"], dir.path());
    assert!(
        stderr(&o).contains("unknown field `margni`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn data_errors_name_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), IDX_CONFIG).unwrap();
    // Missing directory.
    let o = dfforge(&["train", "--config", "c.toml"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("train-images-idx3-ubyte"),
        "{}",
        stderr(&o)
    );
    // Truncated image file.
    std::fs::create_dir(dir.path().join("tiny")).unwrap();
    write_idx_dir(&dir.path().join("tiny"), 20, 10);
    let p = dir.path().join("tiny/train-images-idx3-ubyte");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
    let o = dfforge(&["train", "--config", "c.toml"], dir.path());
    let e = stderr(&o);
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("truncated"),
        "{e}"
    );
    // Data set that does not fit the network.
    write_idx_dir(&dir.path().join("tiny"), 20, 10);
    let o = dfforge(&["train", "--dataset", "idx:tiny"], dir.path());
    let e = stderr(&o);
    assert!(
        e.contains("16 pixels") && e.contains("network.input = 64"),
        "{e}"
    );
    // MNIST not fetched yet.
    let o = dfforge(
        &["train", "--dataset", "mnist", "--data-dir", "nowhere"],
        dir.path(),
    );
    assert!(
        stderr(&o).contains("dfforge fetch-data mnist"),
        "{}",
        stderr(&o)
    );
    // A data set name that does not exist.
    let o = dfforge(&["train", "--dataset", "cifar"], dir.path());
    assert!(stderr(&o).contains("idx:DIR"), "{}", stderr(&o));
}

#[test]
fn bench_measures_every_learner_on_both_software_backends() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tiny")).unwrap();
    write_idx_dir(&dir.path().join("tiny"), 40, 10);
    std::fs::write(
        dir.path().join("c.toml"),
        IDX_CONFIG.replace("\"adam\"", "\"sgd\""),
    )
    .unwrap();
    let o = dfforge(
        &[
            "bench",
            "--config",
            "c.toml",
            "--samples",
            "24",
            "--batches",
            "4,8",
            "--repeats",
            "2",
            "--report",
            "b.json",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // One table row per (batch, learner), both backends side by side.
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("| 4 |") || l.starts_with("| 8 |"))
            .count(),
        6,
        "{out}"
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("b.json")).unwrap()).unwrap();
    assert!(r["peak"]["f32_gflops"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["peak"]["i16_gops"].as_f64().unwrap() > 0.0, "{r}");
    let cells = r["cells"].as_array().unwrap();
    // 2 batches x 2 backends x 3 learners.
    assert_eq!(cells.len(), 12);
    for backend in ["float", "fixed"] {
        for alg in ["df", "ff", "bp"] {
            for batch in [4, 8] {
                let c = cells
                    .iter()
                    .find(|c| {
                        c["backend"] == backend && c["algorithm"] == alg && c["batch"] == batch
                    })
                    .unwrap_or_else(|| panic!("no cell {backend} {alg} {batch}: {r}"));
                assert_eq!(c["samples"], 24);
                assert_eq!(c["runs"].as_array().unwrap().len(), 2);
                assert!(c["samples_per_second"].as_f64().unwrap() > 0.0);
                assert!(c["gops"].as_f64().unwrap() > 0.0);
            }
        }
    }
}

#[test]
fn hardware_backends_explain_what_they_cannot_do() {
    let tmp = tempfile::tempdir().unwrap();
    // A learner the engine does not train: refused by name, before any build.
    let o = dfforge(
        &["train", "--backend", "rtl", "--algorithm", "ff"],
        tmp.path(),
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("DF only") && e.contains("`ff`") && !e.contains("building"),
        "{e}"
    );
    // A config the engine cannot be generated for: the reason, by key.
    let o = dfforge(
        &[
            "--set",
            "fixed.rounding=\"stochastic\"",
            "cosim",
            "--steps",
            "1",
        ],
        tmp.path(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("fixed.rounding"), "{}", stderr(&o));
    // An unknown backend names the ones that exist.
    let o = dfforge(&["train", "--backend", "fpga"], tmp.path());
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("serial:PATH") && e.contains("rtl"), "{e}");
}

#[test]
fn board_writes_the_top_and_pins_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let o = dfforge(
        &["board", "--core", "testmem", "--out", "ulx3s"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "dff_ulx3s_top.v",
        "dff_uart_rx.v",
        "dff_uart_tx.v",
        "dff_cmd.v",
        "dff_cmd_testmem.v",
        "ulx3s.lpf",
    ] {
        assert!(tmp.path().join("ulx3s").join(f).is_file(), "{f} missing");
    }
    let top = std::fs::read_to_string(tmp.path().join("ulx3s/dff_ulx3s_top.v")).unwrap();
    assert!(top.contains("parameter CLKS_PER_BIT = 217"), "{top}");
    let o = dfforge(&["board", "--baud", "9", "--out", "x"], tmp.path());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("choose a baud rate"), "{}", stderr(&o));
    assert!(!tmp.path().join("x").exists(), "nothing written on error");
}

#[test]
fn board_refuses_an_engine_that_does_not_fit_and_gen_warns() {
    let tmp = tempfile::tempdir().unwrap();
    let mnist = root().join("configs/mnist.toml");
    let mnist = mnist.to_str().unwrap();
    // The MNIST network (784-500-500 at 16-bit weights) needs more DP16KDs than the 85F
    // has: refused, naming the memories and the knobs.
    let o = dfforge(
        &["--config", mnist, "board", "--core", "engine", "--out", "e"],
        tmp.path(),
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("does not fit") && e.contains("of 208 DP16KD") && e.contains("training.batch"),
        "{e}"
    );
    assert!(!tmp.path().join("e").exists(), "nothing written on error");
    assert!(e.contains("--no-fit-check"), "{e}");
    let o = dfforge(
        &[
            "--config",
            mnist,
            "board",
            "--core",
            "engine",
            "--out",
            "forced",
            "--no-fit-check",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // `gen` writes the files (simulation needs no board) with the same estimate as a warning.
    let o = dfforge(&["--config", mnist, "gen", "--out", "g"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("warning: estimated") && out.contains("DOES NOT FIT"),
        "{out}"
    );
    // The default engine fits, and the board build goes ahead.
    let o = dfforge(&["board", "--core", "engine", "--out", "e0"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(tmp.path().join("e0/dff_engine.v").is_file());
}

#[test]
fn ping_names_a_missing_board_and_a_bad_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let o = dfforge(
        &["ping", "--backend", "serial:/dev/ttyUSB_dfforge_none"],
        tmp.path(),
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("cannot open /dev/ttyUSB_dfforge_none: no such device"),
        "{e}"
    );
    assert!(
        e.contains("is the board plugged in? pass --backend serial:PATH"),
        "{e}"
    );
    let o = dfforge(&["ping", "--backend", "/dev/ttyUSB0"], tmp.path());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("use serial:PATH"), "{}", stderr(&o));
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// Issue 11, item 2: `--report` onto an existing directory exited 1 but left a `.tmpXXXXXX`
// holding the whole report in the current directory.
#[test]
fn report_onto_a_directory_is_refused_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    let o = dfforge(
        &["train", "--epochs", "1", "--quiet", "--report", "d"],
        tmp.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(names(tmp.path()), vec!["d"], "stray files left behind");
    assert!(names(&tmp.path().join("d")).is_empty());
    let e = stderr(&o);
    assert!(
        e.contains("--report d") && e.contains("is a directory"),
        "{e}"
    );
}

// Issue 11, item 3: `gen` onto a directory where a file name is taken by a directory wrote
// 8 of 16 files and no manifest, and the error named the directory, not the file.
#[test]
fn gen_writes_all_files_or_none_and_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("g/dff_pe.v")).unwrap();
    let o = dfforge(&["gen", "--out", "g"], tmp.path());
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("g/dff_pe.v") && e.contains("is a directory"),
        "{e}"
    );
    assert_eq!(names(&tmp.path().join("g")), vec!["dff_pe.v"]);
    assert_eq!(names(tmp.path()), vec!["g"], "no staging directory left");
    // RTL and testbenches into one directory (run them next to each other): every file, no
    // staging directory left behind, and a rerun replaces them.
    for _ in 0..2 {
        let o = dfforge(&["gen", "--out", "h", "--testbench", "h"], tmp.path());
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let h = names(&tmp.path().join("h"));
    assert!(
        h.contains(&"manifest.json".to_string())
            && h.contains(&"dff_relu_tb.v".to_string())
            && h.iter().all(|n| !n.starts_with('.')),
        "{h:?}"
    );
    assert_eq!(names(tmp.path()), vec!["g", "h"]);
}

// Issue 11, item 10: a bad `--plot` extension or an unwritable `--report`/`--plot` path was
// reported only after training had finished.
#[test]
fn output_paths_are_checked_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("f"), "a file").unwrap();
    for (args, want) in [
        (vec!["train", "--plot", "c.gif"], "must end in .png or .svg"),
        (vec!["train", "--report", "f/r.json"], "is a file"),
        (vec!["train", "--plot", "f/c.png"], "is a file"),
        (vec!["bench", "--report", "f/b.json"], "is a file"),
        (vec!["cosim", "--report", "f/c.json"], "is a file"),
        (vec!["cosim", "--waves", "f"], "is a file"),
        (vec!["gen", "--out", "f"], "is a file"),
        (
            vec!["gen", "--out", "g", "--testbench", "f/tb"],
            "is a file",
        ),
        (vec!["board", "--out", "f"], "is a file"),
        (vec!["compare", "r.json", "--plot", "c.txt"], ".png or .svg"),
    ] {
        let t0 = std::time::Instant::now();
        let o = dfforge(&args, tmp.path());
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(e.contains(want), "{args:?}: {e}");
        assert!(
            !e.contains("training") && !e.contains("building") && t0.elapsed().as_secs() < 10,
            "{args:?}: refused only after starting work: {e}"
        );
    }
    assert_eq!(names(tmp.path()), vec!["f"], "nothing created");
}

// Issue 11, item 14: reports and plots were created with mode 0600 whatever the umask.
#[cfg(unix)]
#[test]
fn reports_and_plots_get_the_usual_file_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let o = dfforge(
        &[
            "train", "--epochs", "1", "--quiet", "--report", "r.json", "--plot", "c.svg",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // What any file created here gets under the umask this test runs with.
    std::fs::write(tmp.path().join("probe"), "").unwrap();
    let mode = |n: &str| {
        std::fs::metadata(tmp.path().join(n))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("r.json"), mode("probe"), "report");
    assert_eq!(mode("c.svg"), mode("probe"), "plot");
}

// Issue 11, item 9: `--limit-test 0` printed "test accuracy 0.0000", an accuracy over zero
// samples.
#[test]
fn zero_samples_are_refused_not_scored() {
    let tmp = tempfile::tempdir().unwrap();
    for flag in ["--limit-test", "--limit-train"] {
        let o = dfforge(&["train", "--epochs", "1", flag, "0"], tmp.path());
        let e = stderr(&o);
        assert!(!o.status.success(), "{flag} 0: {e}");
        assert!(
            e.contains(flag) && e.contains("at least 1"),
            "{flag} 0: {e}"
        );
        assert!(!String::from_utf8_lossy(&o.stdout).contains("accuracy"));
    }
}

// Issue 11, item 13: backprop on the shipped default config used DF's learning rate (20)
// and diverged silently (loss 216,739.8, accuracy 0.1003, exit status 0).
#[test]
fn backprop_trains_on_the_default_config_and_divergence_stops_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let o = dfforge(
        &[
            "train",
            "--algorithm",
            "bp",
            "--epochs",
            "3",
            "--quiet",
            "--report",
            "r.json",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("r.json")).unwrap()).unwrap();
    let acc = r["test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.9, "bp on digits: {acc}");
    let lr = r["config"]["training"]["bp"]["learning_rate"]
        .as_f64()
        .unwrap();
    assert!(lr < 20.0, "bp's own learning rate: {lr}");
    // DF's rate forced on backprop: stopped, with the cause and the fix.
    let o = dfforge(
        &["train", "--algorithm", "bp", "--lr", "20", "--epochs", "3"],
        tmp.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("training diverged at epoch 1")
            && e.contains("learning rate too high for bp: 20 with sgd")
            && e.contains("--lr"),
        "{e}"
    );
    assert!(
        !e.contains("epoch 1/3:"),
        "no epoch line for a diverged epoch: {e}"
    );
}

/// A synthetic MNIST-shaped data set in `dir/mnist/` (28x28 pixels, 10 classes, IDX files
/// under MNIST's names): class c is a bright 7x7 block at its own place on a 4x3 grid, over
/// low noise that varies by sample. Learnable in a few epochs, unlike pure noise.
fn write_mnist_like(dir: &Path, n_train: u32, n_test: u32) {
    let d = dir.join("mnist");
    std::fs::create_dir_all(&d).unwrap();
    let make = |n: u32, salt: u32| {
        let (mut px, mut lab) = (Vec::new(), Vec::new());
        for i in 0..n {
            let c = i % 10;
            lab.push(c as u8);
            let (by, bx) = (c / 4 * 9 + 1, c % 4 * 7);
            for p in 0..784u32 {
                let (y, x) = (p / 28, p % 28);
                let inside = (by..by + 7).contains(&y) && (bx..bx + 7).contains(&x);
                // 0..31, a hash of the pixel and the sample.
                let noise = ((p * 31 + i * 17 + salt).wrapping_mul(2_654_435_761) >> 27) as u8;
                px.push(if inside { 180 + noise * 2 } else { noise });
            }
        }
        (idx(&[n, 28, 28], &px), idx(&[n], &lab))
    };
    let (ti, tl) = make(n_train, 0);
    let (vi, vl) = make(n_test, 12_345);
    std::fs::write(d.join("train-images-idx3-ubyte"), ti).unwrap();
    std::fs::write(d.join("train-labels-idx1-ubyte"), tl).unwrap();
    std::fs::write(d.join("t10k-images-idx3-ubyte"), vi).unwrap();
    std::fs::write(d.join("t10k-labels-idx1-ubyte"), vl).unwrap();
}

// Issue 11, item 13, on configs/mnist.toml: backprop with that config (784-500-500, batch
// 8, whose DF learning rate is 200) reached accuracy 0.1000, silently. With the config as
// shipped (its own [training.bp]: sgd, 0.2) it trains; DF's rate forced on it is stopped.
// MNIST-shaped synthetic data stands in for MNIST (not fetched in tests).
#[test]
fn backprop_trains_on_the_mnist_config_and_divergence_stops_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    write_mnist_like(tmp.path(), 400, 100);
    let mnist = root().join("configs/mnist.toml");
    let mnist = mnist.to_str().unwrap();
    let base = [
        "--config",
        mnist,
        "--data-dir",
        ".",
        "train",
        "--algorithm",
        "bp",
        "--epochs",
        "2",
    ];
    let mut args = base.to_vec();
    args.extend(["--report", "r.json"]);
    let o = dfforge(&args, tmp.path());
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("r.json")).unwrap()).unwrap();
    let t = &r["config"]["training"];
    assert_eq!(
        (
            t["bp"]["optimizer"].as_str(),
            t["bp"]["learning_rate"].as_f64()
        ),
        (Some("sgd"), Some(0.2)),
        "the shipped config's own settings for bp: {t}"
    );
    assert_eq!(
        r["config"]["network"]["hidden"],
        serde_json::json!([500, 500])
    );
    let losses: Vec<f64> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        // (JSON has no NaN or infinity: a non-finite loss is written as null.)
        .map(|h| h["train_loss"].as_f64().unwrap_or(f64::NAN))
        .collect();
    assert!(
        losses.len() == 2 && losses.iter().all(|l| l.is_finite()) && losses[1] < losses[0],
        "the loss must fall: {losses:?}"
    );
    let acc = r["test_accuracy"].as_f64().unwrap();
    assert!(
        acc > 0.9,
        "bp on the mnist config: test accuracy {acc} ({e})"
    );
    // DF's rate (200) forced on backprop: stopped in the first epoch, naming the cause.
    let mut args = base.to_vec();
    args.extend(["--lr", "200"]);
    let o = dfforge(&args, tmp.path());
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("training diverged at epoch 1")
            && e.contains("learning rate too high for bp: 200 with sgd"),
        "{e}"
    );
    assert!(!e.contains("epoch 1/2:"), "{e}");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("accuracy"));
}

/// A concrete `KEY=VALUE` (not a placeholder such as `<KEY=VALUE>` or `KEY=ETA`).
fn is_example(v: &str) -> bool {
    match v.split_once('=') {
        Some((k, val)) => {
            !k.starts_with('<')
                && !val
                    .trim_end_matches(|c: char| !c.is_alphanumeric())
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_')
        }
        None => false,
    }
}

/// Every `--set` example in the docs and in `--help`: (its `--config`, its `--set`s).
fn set_examples(text: &str) -> Vec<(Option<String>, Vec<String>)> {
    text.lines()
        .filter(|l| l.contains("--set "))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let (mut config, mut sets) = (None, Vec::new());
            for w in words.windows(2) {
                let v = w[1].trim_matches(|c| c == '`' || c == ',' || c == '(' || c == ')');
                match w[0] {
                    // (Not the placeholders of the usage lines: <KEY=VALUE>, KEY=ETA.)
                    "--set" if is_example(v) => sets.push(v.to_string()),
                    "--config" => config = Some(v.to_string()),
                    _ => {}
                }
            }
            (config, sets)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

// Issue 11, item 14: the `--help` example `--set fixed.weight.bits=10 --set
// algorithm.loss=hinge` was itself refused. Every example config override in the help and
// the docs must be accepted.
#[test]
fn every_documented_set_example_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts = vec![
        String::from_utf8(dfforge(&["--help"], tmp.path()).stdout).unwrap(),
        String::from_utf8(dfforge(&["train", "--help"], tmp.path()).stdout).unwrap(),
        std::fs::read_to_string(root.join("README.md")).unwrap(),
    ];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            texts.push(std::fs::read_to_string(p).unwrap());
        }
    }
    let mut n = 0;
    for text in &texts {
        for (config, sets) in set_examples(text) {
            let mut args: Vec<String> = Vec::new();
            if let Some(c) = config {
                args.extend(["--config".into(), root.join(c).display().to_string()]);
            }
            for s in sets {
                args.extend(["--set".into(), s]);
            }
            args.push("config".into());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = dfforge(&args, tmp.path());
            assert!(o.status.success(), "{args:?}: {}", stderr(&o));
            n += 1;
        }
    }
    assert!(n >= 4, "only {n} examples found");
}

// Issue 11, item 7: `cosim --steps 0` built for 45 s and exited 0 with "0 values compared";
// `cosim --matrix 0` exited 0 and printed nothing. A check that compared nothing has not
// passed.
#[test]
fn a_cosim_that_would_compare_nothing_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        &["cosim", "--steps", "0"][..],
        &["cosim", "--matrix", "0"],
        &["cosim", "--matrix", "0", "--steps", "0"],
    ] {
        let t0 = std::time::Instant::now();
        let o = dfforge(args, tmp.path());
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?}: exit 0: {e}");
        assert!(e.contains("at least 1"), "{args:?}: {e}");
        assert!(
            t0.elapsed().as_secs() < 10,
            "{args:?}: refused only after a build"
        );
    }
}

// Issue 11, item 8: `--set algorithm.name=ff cosim` was refused only after a 26–39 s
// Verilator build, and with a false reason ("the fixed-point model implements DF only so
// far"). Refused before building, with the true reason.
#[test]
fn cosim_refuses_what_the_engine_cannot_train_before_building() {
    let tmp = tempfile::tempdir().unwrap();
    for (set, want) in [
        ("algorithm.name=ff", "trains DF only"),
        ("algorithm.name=bp", "trains DF only"),
        ("training.optimizer=adam", "plain SGD"),
    ] {
        let t0 = std::time::Instant::now();
        let o = dfforge(&["--set", set, "cosim", "--steps", "2"], tmp.path());
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{set}: {e}");
        assert!(e.contains(want), "{set}: {e}");
        assert!(!e.contains("so far"), "{set}: {e}");
        assert!(
            !e.contains("building") && t0.elapsed().as_secs() < 10,
            "{set}: refused only after a build: {e}"
        );
    }
    // The same for train on the engine.
    let o = dfforge(
        &["train", "--backend", "rtl", "--optimizer", "adam"],
        tmp.path(),
    );
    let e = stderr(&o);
    assert!(e.contains("plain SGD") && !e.contains("building"), "{e}");
}

// Issue 11, item 14: with both a plain and a gzipped IDX file present, one was picked
// silently.
#[test]
fn an_idx_file_present_plain_and_gzipped_is_refused() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tiny")).unwrap();
    write_idx_dir(&dir.path().join("tiny"), 30, 9);
    std::fs::write(dir.path().join("c.toml"), IDX_CONFIG).unwrap();
    // Different test labels in the .gz copy: which one is used would matter.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&idx(&[9], &[0; 9])).unwrap();
    std::fs::write(
        dir.path().join("tiny/t10k-labels-idx1-ubyte.gz"),
        enc.finish().unwrap(),
    )
    .unwrap();
    let o = dfforge(&["train", "--config", "c.toml", "--quiet"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("t10k-labels-idx1-ubyte and t10k-labels-idx1-ubyte.gz")
            && e.contains("remove or rename all but one"),
        "{e}"
    );
}

// Beyond issue 11 (the class of item 6): a learning rate whose η/B rounds to 0 in the
// fixed-point update constant trained nothing, at chance accuracy, with exit status 0.
#[test]
fn a_fixed_point_learning_rate_that_rounds_to_zero_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for alg in ["df", "bp"] {
        let o = dfforge(
            &[
                "train",
                "--backend",
                "fixed",
                "--algorithm",
                alg,
                "--lr",
                "0.0001",
            ],
            tmp.path(),
        );
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{alg}: {e}");
        assert!(
            e.contains("rounds to 0") && e.contains("fixed.lr_frac") && !e.contains("training "),
            "{alg}: {e}"
        );
    }
}
