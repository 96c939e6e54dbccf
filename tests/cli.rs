//! The `dfforge` binary as a user meets it: defaults that run, reports with the promised
//! fields, and errors that name the problem and the fix.

use std::path::Path;
use std::process::{Command, Output};

fn dfforge(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dfforge"))
        .args(args)
        .current_dir(dir)
        .env_remove("DFFORGE_DATA_DIR")
        .output()
        .expect("run dfforge")
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
    // The default engine (batch 32 × 10 hypotheses of 128-wide activations) needs more
    // DP16KDs than the 85F has: refused, naming the memories and the knobs.
    let o = dfforge(&["board", "--core", "engine", "--out", "e"], tmp.path());
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
    let o = dfforge(&["gen", "--out", "g"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("warning: estimated") && out.contains("DOES NOT FIT"),
        "{out}"
    );
    // A smaller batch fits, and the board build goes ahead.
    let o = dfforge(
        &[
            "--set",
            "training.batch=16",
            "board",
            "--core",
            "engine",
            "--out",
            "e16",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(tmp.path().join("e16/dff_engine.v").is_file());
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
