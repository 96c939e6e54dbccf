//! Running a job list: locally, one `dfforge sweep run-job` process per core; or on a
//! cluster, through the Slurm job-array script and the GNU parallel command line that
//! [`emit`] writes (both call the same `run-job`, so a cluster run and a local one write the
//! same result files).

use super::measure::{measure, Env, PointResult};
use super::{finished, result_path, Job};
use crate::util::write_atomic;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Measure `job` and write its result (atomically) under `dir`. The result is written even
/// when the point failed: the error is part of it.
pub fn run_job(dir: &Path, job: &Job, env: &Env) -> Result<PointResult> {
    let r = measure(job, env);
    write_result(dir, job, &r)?;
    Ok(r)
}

fn write_result(dir: &Path, job: &Job, r: &PointResult) -> Result<()> {
    let mut text = serde_json::to_string_pretty(r)?;
    text.push('\n');
    write_atomic(&result_path(dir, job), text.as_bytes())
}

/// How a local run went.
#[derive(Debug, Default)]
pub struct LocalSummary {
    /// Points measured by this run.
    pub ran: usize,
    /// Points whose result was already there (skipped).
    pub skipped: usize,
    /// Points of this run that failed (their errors are in their results).
    pub failed: usize,
    pub wall_seconds: f64,
}

/// What a local run needs to start its workers.
pub struct Local {
    /// This program (`std::env::current_exe`).
    pub exe: PathBuf,
    /// Arguments every worker gets before `sweep run-job` (e.g. `--data-dir D`).
    pub global_args: Vec<String>,
    /// Arguments every worker gets after `run-job JOBS INDEX` (e.g. `--pnr-script P`).
    pub job_args: Vec<String>,
    /// Workers at once.
    pub parallel: usize,
    pub progress: bool,
}

/// Run every job of `jobs_path` (in `dir`) whose result is missing: `parallel` worker
/// processes at a time, each with one rayon thread (one job per core). A worker that dies
/// without writing its result (a crash, the OOM killer) is recorded as a failed point.
/// With `retry_failed`, a point whose recorded result is a failure is measured again.
pub fn run_local(
    dir: &Path,
    jobs_path: &Path,
    jobs: &[Job],
    how: &Local,
    retry_failed: bool,
) -> Result<LocalSummary> {
    let t0 = Instant::now();
    let todo: Vec<&Job> = jobs
        .iter()
        .filter(|j| match finished(dir, j) {
            None => true,
            Some(r) => retry_failed && !r.ok,
        })
        .collect();
    let mut summary = LocalSummary {
        skipped: jobs.len() - todo.len(),
        ..LocalSummary::default()
    };
    let pb = if how.progress {
        let pb = indicatif::ProgressBar::new(todo.len() as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} sweep [{bar:30}] {pos}/{len} points, {elapsed} elapsed, ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..how.parallel.max(1).min(todo.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = todo.get(i) else { break };
                match run_worker(dir, jobs_path, job, how) {
                    Ok(r) => {
                        if !r.ok {
                            let n = failed.fetch_add(1, Ordering::SeqCst) + 1;
                            pb.set_message(format!("({n} failed)"));
                        }
                    }
                    Err(e) => {
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                        break;
                    }
                }
                pb.inc(1);
            });
        }
    });
    pb.finish_and_clear();
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    summary.ran = todo.len();
    summary.failed = failed.into_inner();
    summary.wall_seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}

/// One `run-job` process; its result, or a failed result when it wrote none.
fn run_worker(dir: &Path, jobs_path: &Path, job: &Job, how: &Local) -> Result<PointResult> {
    let out = std::process::Command::new(&how.exe)
        .args(&how.global_args)
        .args(["sweep", "run-job"])
        .arg(jobs_path)
        .arg(job.index.to_string())
        .arg("--out")
        .arg(dir)
        .args(&how.job_args)
        .env("RAYON_NUM_THREADS", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot start {}", how.exe.display()))?;
    if let Some(r) = finished(dir, job) {
        return Ok(r);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    let r = PointResult {
        id: job.id.clone(),
        index: job.index,
        point: job.point.clone(),
        seed: job.seed,
        ok: false,
        errors: vec![format!(
            "worker: run-job exited ({}) without a result: {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        )],
        ..PointResult::default()
    };
    write_result(dir, job, &r)?;
    Ok(r)
}

/// Write `slurm.sh` (a job array, one task per job) and `parallel.sh` (GNU parallel, on
/// this machine or over `--sshloginfile`) into `dir`; both run `run-job` on the job list at
/// its absolute path, so the directory must be on a file system the nodes share. Returns the
/// two paths.
pub fn emit(dir: &Path, jobs_path: &Path, n_jobs: usize) -> Result<(PathBuf, PathBuf)> {
    let abs_dir = std::path::absolute(dir)
        .with_context(|| format!("cannot make {} absolute", dir.display()))?;
    let abs_jobs = std::path::absolute(jobs_path)
        .with_context(|| format!("cannot make {} absolute", jobs_path.display()))?;
    let q = |p: &Path| shell_quote(&p.display().to_string());
    let last = n_jobs.saturating_sub(1);
    let slurm = format!(
        "#!/bin/bash\n\
         # dfforge sweep as a Slurm job array: one task per job (point x seed), {n_jobs} in all.\n\
         #   sbatch {slurm_path}            (add e.g. --array=0-{last}%16 to cap running tasks)\n\
         # Each task writes {dir}/results/<id>.json; a task whose result is there does nothing.\n\
         # Then: dfforge sweep collect {dir}\n\
         #SBATCH --job-name=dfforge-sweep\n\
         #SBATCH --array=0-{last}\n\
         #SBATCH --cpus-per-task=1\n\
         #SBATCH --output={logs}/%A_%a.log\n\
         set -euo pipefail\n\
         export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-1}}\"\n\
         exec \"${{DFFORGE:-dfforge}}\" sweep run-job {jobs} \"$SLURM_ARRAY_TASK_ID\" --out {dir}\n",
        slurm_path = q(&abs_dir.join("slurm.sh")),
        dir = q(&abs_dir),
        logs = abs_dir.join("logs").display(),
        jobs = q(&abs_jobs),
    );
    let parallel = format!(
        "#!/bin/bash\n\
         # dfforge sweep with GNU parallel: one process per core here, or over hosts with\n\
         #   PARALLEL_ARGS='--sshloginfile hosts.txt' bash {par_path}\n\
         # (each host needs dfforge on its PATH and this directory at the same path).\n\
         # --joblog/--resume-failed let an interrupted run go on; run-job also skips finished jobs.\n\
         # Then: dfforge sweep collect {dir}\n\
         set -euo pipefail\n\
         export RAYON_NUM_THREADS=1\n\
         seq 0 {last} | parallel --jobs \"${{JOBS:-100%}}\" --joblog {dir}/parallel.joblog --resume-failed \\\n  \
         ${{PARALLEL_ARGS:-}} \"${{DFFORGE:-dfforge}}\" sweep run-job {jobs} {{}} --out {dir}\n",
        par_path = q(&abs_dir.join("parallel.sh")),
        dir = q(&abs_dir),
        jobs = q(&abs_jobs),
    );
    // Slurm does not create the directory of --output; a task would fail without a word.
    std::fs::create_dir_all(abs_dir.join("logs"))
        .with_context(|| format!("cannot create {}", abs_dir.join("logs").display()))?;
    let sp = dir.join("slurm.sh");
    let pp = dir.join("parallel.sh");
    write_atomic(&sp, slurm.as_bytes())?;
    write_atomic(&pp, parallel.as_bytes())?;
    #[cfg(unix)]
    for p in [&sp, &pp] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", p.display()))?;
    }
    Ok((sp, pp))
}

/// `s` as one shell word.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(shell_quote("/a/b-1.x"), "/a/b-1.x");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn emitted_scripts_are_valid_bash() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("my sweep");
        std::fs::create_dir_all(&d).unwrap();
        let (s, p) = emit(&d, &d.join("jobs.jsonl"), 24).unwrap();
        let slurm = std::fs::read_to_string(&s).unwrap();
        assert!(slurm.contains("#SBATCH --array=0-23\n"));
        assert!(slurm.contains("sweep run-job '"));
        for f in [&s, &p] {
            let st = std::process::Command::new("bash")
                .arg("-n")
                .arg(f)
                .status()
                .unwrap();
            assert!(st.success(), "bash -n {}", f.display());
        }
    }
}
