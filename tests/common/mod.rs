//! Helpers shared by the UART/board/serial tests: tool detection and a bit-level UART line
//! model (encoder and decoder) driven cycle by cycle from Rust.
#![allow(dead_code)]

use dfforge::hdl::{emit, file_name, Module};
use dfforge::sim::{Build, SimError};
use std::process::Command;

/// True if `name --version` runs; otherwise a notice (or a failure under
/// DFFORGE_REQUIRE_TOOLS).
pub fn tool(name: &str) -> bool {
    if Command::new(name).arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("DFFORGE_REQUIRE_TOOLS").is_none(),
        "{name} required (DFFORGE_REQUIRE_TOOLS is set)"
    );
    eprintln!("NOTICE: {name} not installed; skipping");
    false
}

/// `Ok(build)`, `None` (with a notice) if Verilator is missing, else a panic with the log.
pub fn built(r: Result<Build, SimError>) -> Option<Build> {
    match r {
        Ok(b) => {
            eprintln!(
                "{}: {} in {:.2?}",
                b.top,
                if b.cache_hit { "cache hit" } else { "built" },
                b.build_time
            );
            Some(b)
        }
        Err(SimError::NoVerilator) if std::env::var_os("DFFORGE_REQUIRE_TOOLS").is_none() => {
            eprintln!("NOTICE: verilator not installed; skipping");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// `verilator --lint-only -Wall` of `top` in `dir` with extra arguments: must print nothing.
pub fn lint(dir: &std::path::Path, top: &str, files: &[String], extra: &[String]) {
    let out = Command::new("verilator")
        .current_dir(dir)
        .args(["--lint-only", "-Wall", "--top-module", top])
        .args(extra)
        .args(files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "lint {top} {extra:?}: {text}"
    );
}

/// A serial line level per cycle (idle high), built frame by frame.
#[derive(Default)]
pub struct Line {
    pub level: Vec<bool>,
}

impl Line {
    pub fn idle(&mut self, cycles: usize) {
        self.level.extend(std::iter::repeat_n(true, cycles));
    }
    pub fn low(&mut self, cycles: usize) {
        self.level.extend(std::iter::repeat_n(false, cycles));
    }
    /// One 8N1 frame with a bit period of `period` cycles (fractional: edges at
    /// round(k·period)); `stop` = level of the stop bit.
    pub fn frame(&mut self, byte: u8, period: f64, stop: bool) {
        let mut bits = vec![false];
        bits.extend((0..8).map(|i| (byte >> i) & 1 == 1));
        bits.push(stop);
        let t0 = self.level.len();
        for (k, &b) in bits.iter().enumerate() {
            let a = t0 + (k as f64 * period).round() as usize;
            let z = t0 + ((k + 1) as f64 * period).round() as usize;
            self.level.extend(std::iter::repeat_n(b, z - a));
        }
    }
    pub fn level_at(&self, t: usize) -> bool {
        self.level.get(t).copied().unwrap_or(true)
    }
}

/// Decode 8N1 frames from a sampled line (one level per cycle, `cpb` cycles per bit):
/// (cycle of the start edge, byte, stop bit good).
pub fn decode(level: &[bool], cpb: usize) -> Vec<(usize, u8, bool)> {
    let mut out = Vec::new();
    let mut t = 1;
    while t < level.len() {
        if level[t - 1] && !level[t] {
            let mid = |k: usize| level.get(t + cpb / 2 + k * cpb).copied();
            let (Some(start), Some(stop)) = (mid(0), mid(9)) else {
                break;
            };
            if !start {
                let mut b = 0u8;
                for i in 0..8 {
                    if mid(1 + i).unwrap_or(true) {
                        b |= 1 << i;
                    }
                }
                out.push((t, b, stop));
                t += cpb * 9 + cpb / 2;
                continue;
            }
        }
        t += 1;
    }
    out
}

/// Write each module to `dir/<name>.v`; returns the file names.
pub fn write_all(dir: &std::path::Path, ms: &[Module]) -> Vec<String> {
    ms.iter()
        .map(|m| {
            std::fs::write(dir.join(file_name(m)), emit(m)).unwrap();
            file_name(m)
        })
        .collect()
}
