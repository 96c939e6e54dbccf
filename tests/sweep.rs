//! `dfforge sweep` end to end through the binary: the job list, the local run, a rerun that
//! measures nothing again, `run-job` giving the same results as the local run, the cluster
//! scripts, `collect`, and the errors of a bad grid.

use serde_json::Value;
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

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "dfforge failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The result files of a sweep directory by name, without the wall-clock fields (which
/// differ from run to run by nature).
fn results(dir: &Path) -> Vec<(String, Value)> {
    let mut v: Vec<(String, Value)> = std::fs::read_dir(dir.join("results"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let mut j: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            let o = j.as_object_mut().unwrap();
            o.remove("wall_seconds");
            o.remove("train_seconds");
            (p.file_name().unwrap().to_string_lossy().into_owned(), j)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

const GRID: &[&str] = &[
    "--vary",
    "hardware.array_rows=2,4",
    "--vary",
    "hardware.array_cols=2,0", // 0 is invalid: recorded as a failed point
    "--measure",
    "accuracy,cycles,resources",
    "--train-samples",
    "60",
    "--test-samples",
    "40",
    "--jobs",
    "2",
];

#[test]
fn local_run_rerun_run_job_and_collect() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sw");
    let d = dir.to_str().unwrap();
    let mut args = vec!["sweep", "--out", d];
    args.extend_from_slice(GRID);
    let first = ok(&dfforge(&args, tmp.path()));
    assert!(
        first
            .contains("4 points x 1 seeds = 4 jobs (2 with an invalid config, 0 already finished)"),
        "{first}"
    );
    assert!(first.contains("measured 4 points (2 failed)"), "{first}");
    let r1 = results(&dir);
    assert_eq!(r1.len(), 4);
    let good: Vec<&Value> = r1
        .iter()
        .map(|(_, v)| v)
        .filter(|v| v["ok"] == true)
        .collect();
    assert_eq!(good.len(), 2);
    for v in &good {
        let acc = v["test_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
        assert!(v["cycles_per_sample"].as_f64().unwrap() > 0.0);
        assert!(v["dp16kd"].as_u64().unwrap() > 0);
    }
    let bad = r1.iter().find(|(_, v)| v["ok"] == false).unwrap();
    assert!(bad.1["errors"][0].as_str().unwrap().contains("array_cols"));
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains("## Pareto front"));
    assert!(summary.contains("## Failed points"));
    assert!(dir.join("pareto.png").is_file());
    let results_json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results_json["finished"], 4);

    // A rerun measures nothing: every result is kept as it is (same bytes, same mtime).
    let stamp = |dir: &Path| -> Vec<(String, std::time::SystemTime, String)> {
        let mut v: Vec<_> = std::fs::read_dir(dir.join("results"))
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.display().to_string(),
                    std::fs::metadata(&p).unwrap().modified().unwrap(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = stamp(&dir);
    let again = ok(&dfforge(&args, tmp.path()));
    assert!(again.contains("4 already finished"), "{again}");
    assert!(again.contains("measured 0 points"), "{again}");
    assert_eq!(stamp(&dir), before);
    // --retry-failed measures the two failed points again, and only them.
    let mut retry = args.clone();
    retry.push("--retry-failed");
    let again = ok(&dfforge(&retry, tmp.path()));
    assert!(again.contains("measured 2 points (2 failed)"), "{again}");

    // run-job of the first and the last index, into another directory, gives the same
    // results as the local run.
    let other = tmp.path().join("cluster");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(dir.join("jobs.jsonl"), other.join("jobs.jsonl")).unwrap();
    let jobs = other.join("jobs.jsonl");
    for i in ["0", "3"] {
        let out = ok(&dfforge(
            &["sweep", "run-job", jobs.to_str().unwrap(), i],
            tmp.path(),
        ));
        assert!(out.contains(&format!("job {i} (")), "{out}");
    }
    let r2 = results(&other);
    assert_eq!(r2.len(), 2);
    for (name, v) in &r2 {
        let local = r1.iter().find(|(n, _)| n == name).expect("same file name");
        assert_eq!(&local.1, v, "{name}");
    }
    // A resubmitted task does nothing: its result is there.
    let again = ok(&dfforge(
        &["sweep", "run-job", jobs.to_str().unwrap(), "0"],
        tmp.path(),
    ));
    assert!(again.contains("already finished"), "{again}");
    assert_eq!(results(&other), r2);
    let bad_index = dfforge(
        &["sweep", "run-job", jobs.to_str().unwrap(), "4"],
        tmp.path(),
    );
    assert!(!bad_index.status.success());
    assert!(String::from_utf8_lossy(&bad_index.stderr).contains("no job 4; the list has 4"));

    // collect on the partial directory: counts what is there.
    let out = ok(&dfforge(
        &["sweep", "collect", other.to_str().unwrap()],
        tmp.path(),
    ));
    assert!(out.contains("2 of 4 jobs finished"), "{out}");
}

#[test]
fn emit_writes_cluster_scripts_and_runs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sw");
    let d = dir.to_str().unwrap();
    let mut args = vec!["sweep", "--out", d, "--emit", "slurm"];
    args.extend_from_slice(GRID);
    let out = ok(&dfforge(&args, tmp.path()));
    assert!(out.contains("sbatch"), "{out}");
    assert!(!dir.join("results").exists());
    let slurm = std::fs::read_to_string(dir.join("slurm.sh")).unwrap();
    assert!(slurm.contains("#SBATCH --array=0-3\n"));
    assert!(slurm.contains("sweep run-job"));
    let par = std::fs::read_to_string(dir.join("parallel.sh")).unwrap();
    assert!(par.contains("seq 0 3 | parallel"));
    for f in ["slurm.sh", "parallel.sh"] {
        let st = Command::new("bash")
            .arg("-n")
            .arg(dir.join(f))
            .status()
            .unwrap();
        assert!(st.success(), "bash -n {f}");
    }
}

#[test]
fn bad_grids_fail_before_any_work_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let err = |args: &[&str]| {
        let o = dfforge(args, tmp.path());
        assert!(!o.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(err(&["sweep"]).contains("nothing to vary"));
    assert!(err(&["sweep", "--vary", "rows"]).contains("write KEY=V1,V2"));
    assert!(err(&["sweep", "--vary", "a=1", "--vary", "a=2"]).contains("varied twice"));
    assert!(err(&["sweep", "--grid", "missing.toml"]).contains("cannot read grid file"));
    assert!(err(&[
        "sweep",
        "--vary",
        "hardware.array_rows=2",
        "--colour-by",
        "x"
    ])
    .contains("not a varied key"));
    assert!(err(&[
        "sweep",
        "--vary",
        "hardware.array_rows=2",
        "--dataset",
        "idx:/nonexistent"
    ])
    .contains("/nonexistent"));
    assert!(!tmp.path().join("build").exists(), "nothing was written");
}

/// The pnr measurement through a stand-in scripts/pnr (the real one takes minutes): the
/// script is found by a relative path, gets the point's config and name, and its report's
/// Fmax becomes the clock of samples/s.
#[test]
fn pnr_measurement_reads_the_scripts_report() {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    let script = scripts.join("pnr");
    std::fs::write(
        &script,
        r#"#!/bin/bash
set -e
while [ $# -gt 0 ]; do case "$1" in --name) name="$2"; shift 2;; --config) cfg="$2"; shift 2;; *) shift;; esac; done
grep -q array_rows "$cfg"
mkdir -p "build/pnr/$name"
cat > "build/pnr/$name/report.json" <<JSON
{"lut4": 1234, "ff": 2345, "dp16kd": 17, "mult18x18d": 4, "trellis_comb": {"used": 1500}, "fmax_mhz": 50.0}
JSON
exit 1   # timing missed: still a result
"#,
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = ok(&dfforge(
        &[
            "sweep",
            "--out",
            "sw",
            "--vary",
            "hardware.array_rows=2",
            "--measure",
            "cycles,pnr",
            "--pnr-script",
            "scripts/pnr",
        ],
        tmp.path(),
    ));
    assert!(out.contains("measured 1 points (0 failed)"), "{out}");
    let r = results(&tmp.path().join("sw"));
    let v = &r[0].1;
    assert_eq!(v["pnr"]["lut4"], 1234);
    assert_eq!(v["pnr"]["fmax_mhz"], 50.0);
    assert_eq!(v["clock_mhz"], 50.0);
    let sps = v["samples_per_s"].as_f64().unwrap();
    let cps = v["cycles_per_sample"].as_f64().unwrap();
    assert_eq!(sps, 50e6 / cps);
    let summary = std::fs::read_to_string(tmp.path().join("sw/summary.md")).unwrap();
    assert!(summary.contains("Fmax MHz"));
}
