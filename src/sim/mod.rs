//! Verilator co-simulation, built at run time from generated RTL (no compile-time link).
//!
//! [`Build::new`] wraps a top module in a generated C++ stdin/stdout harness, builds it with
//! `verilator --cc --exe --build` into a cache directory keyed by a hash of (RTL, tables,
//! harness, Verilator version, flags) — `$DFFORGE_SIM_CACHE` or `target/dfforge-sim/<hash>` —
//! and reuses it on the next run. [`Build::run`] streams one line per clock cycle (input ports
//! in hex, in port order; inputs are applied before the rising edge) and returns one line per
//! cycle (output ports in hex, read after the edge's eval), with a timeout so a dead simulator
//! is an error, never a hang. The child's stdin is written from its own thread.

pub mod engine;
pub mod pty;

use crate::hdl::{emit, file_name, Dir, Expr, Lit, Module};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const VERILATOR_FLAGS: &[&str] = &[
    "--cc",
    "--exe",
    "--build",
    "-O1",
    "--x-assign",
    "fast",
    "--x-initial",
    "fast",
    "-Wall",
    "-Wno-DECLFILENAME",
    "-j",
    "2",
    // The simulations are short and the builds dominate a cold run: compile the C++ at -O0
    // (the 12x12 array builds in about half the time; the runs stay well under a second).
    "-CFLAGS",
    "-O0",
    "-MAKEFLAGS",
    "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0",
];

/// Extra flags for models that run long (training through the RTL): optimised C++, a slower
/// build for a several times faster model.
pub const FAST_FLAGS: &[&str] = &[
    "-CFLAGS",
    "-O2",
    "-MAKEFLAGS",
    "OPT_FAST=-O2 OPT_SLOW=-O1 OPT_GLOBAL=-O1",
];

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("Verilator is not installed (or not on PATH): install it with `sudo apt-get install -y verilator` (Debian/Ubuntu; CI runs scripts/install-deps)")]
    NoVerilator,
    #[error("verilator build of {top} failed in {dir}:\n{log}")]
    Build {
        top: String,
        dir: String,
        log: String,
    },
    #[error("simulator {0} timed out after {1:?} (killed)")]
    Timeout(String, Duration),
    #[error("simulator {exe} failed: {msg}")]
    Run { exe: String, msg: String },
    #[error("port {0} has a non-constant width; set it with a literal")]
    Width(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One port of the simulated top: name, direction, width in bits.
#[derive(Clone, Debug)]
pub struct PortDesc {
    pub name: String,
    pub dir: Dir,
    pub width: u32,
}

/// Value of a constant width expression, with the module's parameters at their defaults.
fn const_eval(e: &Expr, m: &Module) -> Option<u64> {
    use crate::hdl::BinOp;
    match e {
        Expr::Lit(Lit { value, .. }) => Some(*value),
        Expr::Id(n) => m
            .params
            .iter()
            .chain(&m.localparams)
            .find(|p| &p.name == n)
            .and_then(|p| const_eval(&p.default, m)),
        Expr::Binary(op, a, b) => {
            let (a, b) = (const_eval(a, m)?, const_eval(b, m)?);
            match op {
                BinOp::Add => a.checked_add(b),
                BinOp::Sub => a.checked_sub(b),
                BinOp::Mul => a.checked_mul(b),
                BinOp::Shl => a.checked_shl(b as u32),
                _ => None,
            }
        }
        Expr::Clog2(x) => {
            let v = const_eval(x, m)?;
            Some(if v <= 1 {
                0
            } else {
                u64::from(64 - (v - 1).leading_zeros())
            })
        }
        _ => None,
    }
}

/// The ports of `m` with their widths (parameters at their defaults).
pub fn port_descs(m: &Module) -> Result<Vec<PortDesc>, SimError> {
    m.ports
        .iter()
        .map(|p| {
            Ok(PortDesc {
                name: p.name.clone(),
                dir: p.dir,
                width: const_eval(&p.width, m)
                    .map(|w| w as u32)
                    .ok_or_else(|| SimError::Width(p.name.clone()))?,
            })
        })
        .collect()
}

/// `verilator --version` (first line), or [`SimError::NoVerilator`].
pub fn verilator_version() -> Result<String, SimError> {
    let out = Command::new("verilator")
        .arg("--version")
        .output()
        .map_err(|_| SimError::NoVerilator)?;
    if !out.status.success() {
        return Err(SimError::NoVerilator);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The file in a build's temporary directory that names the process building there.
const OWNER_FILE: &str = ".dfforge-owner";
/// Temporary directories in the cache older than this are stale whatever their owner.
const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Is process `pid` alive? (`None`: this system cannot tell.)
fn process_alive(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return None;
    }
    Some(proc.join(pid.to_string()).exists())
}

/// Remove the temporary build directories in `root` that nobody is building in any more: a
/// build that was killed (Ctrl-C, SIGKILL, a crash) never removes its own. A directory is
/// stale when the process named in its owner file has gone, or when it is older than a day.
/// Returns the directories removed.
pub fn sweep_stale_builds(root: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return removed;
    };
    for e in entries.flatten() {
        let path = e.path();
        let hidden = e.file_name().to_string_lossy().starts_with('.');
        if !hidden || !path.is_dir() {
            continue;
        }
        let owner_gone = std::fs::read_to_string(path.join(OWNER_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .and_then(|pid| process_alive(pid).map(|alive| !alive && pid != std::process::id()))
            .unwrap_or(false);
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if (owner_gone || old) && std::fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// The cache root: `$DFFORGE_SIM_CACHE`, else `<crate>/target/dfforge-sim`.
pub fn cache_root() -> PathBuf {
    match std::env::var_os("DFFORGE_SIM_CACHE") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dfforge-sim"),
    }
}

/// The generated C++ harness for a top with these ports (clock `clk_i` is driven by it).
pub fn harness(top: &str, ports: &[PortDesc]) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "// Generated by dfforge: stdin/stdout harness for {top}.\n\
         #include \"V{top}.h\"\n#include \"verilated.h\"\n#include <cstdio>\n#include <cstdint>\n#include <cstring>\n#include <iostream>\n#include <string>\n#include <sstream>\n\n\
         static void set_words(uint32_t* w, int n, const std::string& h) {{\n\
           for (int i = 0; i < n; ++i) w[i] = 0;\n\
           int len = (int)h.size();\n\
           for (int i = 0; i < len; ++i) {{\n\
             char c = h[len - 1 - i];\n\
             uint32_t v = (c >= 'a') ? (uint32_t)(c - 'a' + 10) : (c >= 'A') ? (uint32_t)(c - 'A' + 10) : (uint32_t)(c - '0');\n\
             if (i / 8 < n) w[i / 8] |= v << (4 * (i % 8));\n\
           }}\n\
         }}\n\
         static void put_words(const uint32_t* w, int n) {{\n\
           for (int i = n - 1; i >= 0; --i) std::printf(\"%08x\", w[i]);\n\
         }}\n\n\
         int main(int argc, char** argv) {{\n\
           Verilated::commandArgs(argc, argv);\n\
           V{top}* t = new V{top};\n\
           t->clk_i = 0;\n\
           t->eval();\n\
           std::string line, tok;\n\
           while (std::getline(std::cin, line)) {{\n\
             std::istringstream is(line);\n"
    ));
    for p in ports
        .iter()
        .filter(|p| p.dir == Dir::In && p.name != "clk_i")
    {
        s.push_str("    is >> tok;\n");
        if p.width > 64 {
            s.push_str(&format!(
                "    set_words(t->{}.data(), {}, tok);\n",
                p.name,
                p.width.div_ceil(32)
            ));
        } else {
            s.push_str(&format!(
                "    t->{} = std::stoull(tok, nullptr, 16);\n",
                p.name
            ));
        }
    }
    s.push_str("    t->clk_i = 1;\n    t->eval();\n    t->clk_i = 0;\n    t->eval();\n");
    let mut first = true;
    for p in ports.iter().filter(|p| p.dir == Dir::Out) {
        if !first {
            s.push_str("    std::printf(\" \");\n");
        }
        first = false;
        if p.width > 64 {
            s.push_str(&format!(
                "    put_words(t->{}.data(), {});\n",
                p.name,
                p.width.div_ceil(32)
            ));
        } else {
            s.push_str(&format!(
                "    std::printf(\"%llx\", (unsigned long long)t->{});\n",
                p.name
            ));
        }
    }
    s.push_str(
        "    std::printf(\"\\n\");\n  }\n  std::fflush(stdout);\n  t->final();\n  delete t;\n  return 0;\n}\n",
    );
    s
}

/// A built (or cached) simulator.
#[derive(Clone, Debug)]
pub struct Build {
    pub top: String,
    pub exe: PathBuf,
    pub ports: Vec<PortDesc>,
    /// True if this call found the build in the cache.
    pub cache_hit: bool,
    pub build_time: Duration,
    pub timeout: Duration,
}

impl Build {
    /// Build `top` (which must be in `modules`) with the extra files (ROM tables) next to it.
    pub fn new(
        modules: &[Module],
        top: &str,
        tables: &[(String, String)],
    ) -> Result<Build, SimError> {
        Build::with_harness(modules, top, tables, None, &[])
    }

    /// Like [`Build::new`], with a caller-supplied C++ harness (`None`: the per-cycle line
    /// harness of [`harness`]) and extra Verilator flags (e.g. `--trace-fst`). Both enter the
    /// cache key.
    pub fn with_harness(
        modules: &[Module],
        top: &str,
        tables: &[(String, String)],
        custom_harness: Option<String>,
        extra_flags: &[&str],
    ) -> Result<Build, SimError> {
        let version = verilator_version()?;
        let t0 = Instant::now();
        let topm = modules
            .iter()
            .find(|m| m.name == top)
            .expect("top module is among the modules");
        let ports = port_descs(topm)?;
        let cpp = custom_harness.unwrap_or_else(|| harness(top, &ports));
        // Only the top, the modules it instantiates (at any depth) and the tables they read
        // go into the build (and its hash), so changing one unit does not rebuild the others.
        let mut files: Vec<(String, String)> = vec![(file_name(topm), emit(topm))];
        let mut used = vec![top.to_string()];
        let mut i = 0;
        while i < files.len() {
            for m in modules {
                if !used.contains(&m.name) && files[i].1.contains(&format!("{} ", m.name)) {
                    used.push(m.name.clone());
                    files.push((file_name(m), emit(m)));
                }
            }
            i += 1;
        }
        let all_text: String = files.iter().map(|(_, t)| t.as_str()).collect();
        files.extend(
            tables
                .iter()
                .filter(|(n, _)| all_text.contains(n.as_str()))
                .cloned(),
        );
        files.sort();
        let mut h = Sha256::new();
        for (n, t) in &files {
            h.update(n.as_bytes());
            h.update([0]);
            h.update(t.as_bytes());
            h.update([0]);
        }
        h.update(cpp.as_bytes());
        h.update(version.as_bytes());
        h.update(VERILATOR_FLAGS.join(" ").as_bytes());
        h.update(extra_flags.join(" ").as_bytes());
        h.update(top.as_bytes());
        let hash: String = h
            .finalize()
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect();
        let root = cache_root();
        let dir = root.join(format!("{top}-{hash}"));
        let exe = dir.join("obj").join(format!("V{top}"));
        let mk = |cache_hit| Build {
            top: top.to_string(),
            exe: exe.clone(),
            ports: ports.clone(),
            cache_hit,
            build_time: t0.elapsed(),
            timeout: Duration::from_secs(120),
        };
        // (Every call, hit or miss: a killed build's leftovers go at the next use of the
        // cache.)
        sweep_stale_builds(&root);
        if exe.is_file() {
            return Ok(mk(true));
        }
        // Build in a private directory, then rename: parallel builders never share one. The
        // directory names its builder, so that a later build removes it if this one is killed.
        std::fs::create_dir_all(&root)?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{top}-{hash}-"))
            .tempdir_in(&root)?;
        std::fs::write(tmp.path().join(OWNER_FILE), std::process::id().to_string())?;
        for (n, t) in &files {
            std::fs::write(tmp.path().join(n), t)?;
        }
        std::fs::write(tmp.path().join("harness.cpp"), &cpp)?;
        let vfiles: Vec<&String> = files
            .iter()
            .map(|(n, _)| n)
            .filter(|n| n.ends_with(".v"))
            .collect();
        let out = Command::new("verilator")
            .current_dir(tmp.path())
            .args(VERILATOR_FLAGS)
            .args(extra_flags)
            .args([
                "--top-module",
                top,
                "--Mdir",
                "obj",
                "-o",
                &format!("V{top}"),
            ])
            .args(&vfiles)
            .arg("harness.cpp")
            .output()?;
        if !out.status.success() {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                if let Some(sig) = out.status.signal() {
                    // Killed, not a compile error: nothing to look at; `tmp` is removed.
                    return Err(SimError::Run {
                        exe: "verilator".into(),
                        msg: format!(
                            "the build of {top} was killed (signal {sig}); nothing was cached, \
                             run the command again to rebuild"
                        ),
                    });
                }
            }
            // A compile error: keep the directory for its files and log (the next build
            // leaves it alone for a day).
            let _ = std::fs::remove_file(tmp.path().join(OWNER_FILE));
            let keep = tmp.keep();
            return Err(SimError::Build {
                top: top.into(),
                dir: keep.display().to_string(),
                log: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        // The ROM tables are read at run time relative to the working directory: keep them.
        let _ = std::fs::remove_file(tmp.path().join(OWNER_FILE));
        let tmp_path = tmp.keep();
        if std::fs::rename(&tmp_path, &dir).is_err() {
            // Someone else finished the same build first: use theirs.
            let _ = std::fs::remove_dir_all(&tmp_path);
        }
        if !exe.is_file() {
            return Err(SimError::Run {
                exe: exe.display().to_string(),
                msg: "build finished but the executable is missing".into(),
            });
        }
        Ok(mk(false))
    }

    /// Run one line per cycle through the simulator; returns one output line per cycle.
    pub fn run(&self, lines: Vec<String>) -> Result<Vec<String>, SimError> {
        let dir = self
            .exe
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."));
        let mut child = Command::new(&self.exe)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let n = lines.len();
        let writer = std::thread::spawn(move || {
            let mut buf = std::io::BufWriter::new(&mut stdin);
            for l in lines {
                if buf.write_all(l.as_bytes()).is_err() || buf.write_all(b"\n").is_err() {
                    break;
                }
            }
            let _ = buf.flush();
        });
        let mut stdout = child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SimError::Timeout(
                    self.exe.display().to_string(),
                    self.timeout,
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let _ = writer.join();
        let out = reader.join().unwrap_or_default();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let res: Vec<String> = out.lines().map(str::to_string).collect();
        if !status.success() || res.len() != n {
            return Err(SimError::Run {
                exe: self.exe.display().to_string(),
                msg: format!(
                    "exit {status}, {} of {n} output lines; stderr: {err}",
                    res.len()
                ),
            });
        }
        Ok(res)
    }

    pub fn inputs(&self) -> Vec<&PortDesc> {
        self.ports
            .iter()
            .filter(|p| p.dir == Dir::In && p.name != "clk_i")
            .collect()
    }
    pub fn outputs(&self) -> Vec<&PortDesc> {
        self.ports.iter().filter(|p| p.dir == Dir::Out).collect()
    }
}

/// Bits of a (possibly very wide) port value, least significant first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bits(pub Vec<bool>);

impl Bits {
    pub fn zero(w: u32) -> Bits {
        Bits(vec![false; w as usize])
    }
    /// `fields` (value, width) packed from bit 0 upwards, two's complement.
    pub fn pack(fields: &[(i64, u32)]) -> Bits {
        let mut b = Vec::new();
        for &(v, w) in fields {
            for i in 0..w {
                b.push(if i < 64 { (v >> i) & 1 == 1 } else { v < 0 });
            }
        }
        Bits(b)
    }
    pub fn hex(&self) -> String {
        let n = self.0.len().div_ceil(4).max(1);
        let mut s = String::with_capacity(n);
        for d in (0..n).rev() {
            let mut v = 0u32;
            for k in 0..4 {
                if self.0.get(d * 4 + k).copied().unwrap_or(false) {
                    v |= 1 << k;
                }
            }
            s.push(char::from_digit(v, 16).unwrap_or('0'));
        }
        s
    }
    pub fn from_hex(h: &str) -> Bits {
        let mut b = Vec::with_capacity(h.len() * 4);
        for c in h.chars().rev() {
            let v = c.to_digit(16).unwrap_or(0);
            for k in 0..4 {
                b.push((v >> k) & 1 == 1);
            }
        }
        Bits(b)
    }
    /// Field `[lo, lo+w)` as an integer, sign-extended if `signed`.
    pub fn field(&self, lo: u32, w: u32, signed: bool) -> i64 {
        let mut v: i64 = 0;
        for i in 0..w.min(64) {
            if self.0.get((lo + i) as usize).copied().unwrap_or(false) {
                v |= 1i64 << i;
            }
        }
        if signed && w < 64 && (v >> (w - 1)) & 1 == 1 {
            v -= 1i64 << w;
        }
        v
    }
}

/// A cycle-by-cycle stimulus for a [`Build`]: named inputs, zero when not set.
pub struct Stim<'a> {
    build: &'a Build,
    lines: Vec<Vec<Bits>>,
}

impl<'a> Stim<'a> {
    pub fn new(build: &'a Build) -> Stim<'a> {
        Stim {
            build,
            lines: Vec::new(),
        }
    }
    /// Append a cycle with the given (port, value) pairs; other inputs 0.
    pub fn cycle(&mut self, set: &[(&str, Bits)]) {
        let ins = self.build.inputs();
        let mut line: Vec<Bits> = ins.iter().map(|p| Bits::zero(p.width)).collect();
        for (name, v) in set {
            let i = ins
                .iter()
                .position(|p| p.name == *name)
                .unwrap_or_else(|| panic!("no input port {name} on {}", self.build.top));
            line[i] = v.clone();
        }
        self.lines.push(line);
    }
    /// Scalar convenience: each value packed into the port's width.
    pub fn cycle_v(&mut self, set: &[(&str, i64)]) {
        let ins = self.build.inputs();
        let bits: Vec<(&str, Bits)> = set
            .iter()
            .map(|&(n, v)| {
                let w = ins
                    .iter()
                    .find(|p| p.name == n)
                    .map(|p| p.width)
                    .unwrap_or_else(|| panic!("no input port {n}"));
                (n, Bits::pack(&[(v, w)]))
            })
            .collect();
        self.cycle(&bits);
    }
    pub fn len(&self) -> usize {
        self.lines.len()
    }
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
    /// Run; returns per cycle the output ports by name order of [`Build::outputs`].
    pub fn run(self) -> Result<Vec<Vec<Bits>>, SimError> {
        let text: Vec<String> = self
            .lines
            .iter()
            .map(|l| l.iter().map(Bits::hex).collect::<Vec<_>>().join(" "))
            .collect();
        let out = self.build.run(text)?;
        Ok(out
            .iter()
            .map(|l| l.split_whitespace().map(Bits::from_hex).collect())
            .collect())
    }
}

/// Index of output port `name` in a [`Stim::run`] line.
pub fn out_index(build: &Build, name: &str) -> usize {
    build
        .outputs()
        .iter()
        .position(|p| p.name == name)
        .unwrap_or_else(|| panic!("no output port {name} on {}", build.top))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 11, item 11: a killed Verilator build left its temporary directory (2 MB) in the
    // cache for good. The next use of the cache removes it; live builds are left alone.
    #[test]
    fn stale_build_directories_are_swept() {
        let root = tempfile::tempdir().unwrap();
        let make = |name: &str, owner: Option<u32>| {
            let d = root.path().join(name);
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("big.o"), vec![0u8; 1024]).unwrap();
            if let Some(pid) = owner {
                std::fs::write(d.join(OWNER_FILE), pid.to_string()).unwrap();
            }
        };
        // A process that has exited: its pid names nobody.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        make(".dff_system-abc-killed", Some(dead));
        make(".dff_system-abc-live", Some(std::process::id()));
        make(".dff_system-abc-noowner", None);
        make("dff_system-abc", None); // a finished build
        if process_alive(dead).is_none() {
            return; // no /proc here
        }
        let removed = sweep_stale_builds(root.path());
        assert_eq!(removed, vec![root.path().join(".dff_system-abc-killed")]);
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                ".dff_system-abc-live",
                ".dff_system-abc-noowner",
                "dff_system-abc"
            ]
        );
    }
}
