//! The engine under Verilator at bus level: a generated C++ harness drives `dff_engine`'s
//! bus and run ports from text commands on stdin, so the Rust side can load memories, run a
//! training step and read results without the host protocol in between. (The protocol path,
//! `dff_cmd` in front of the engine, is the same engine behind a frame decoder.)
//!
//! Commands, one per line, one reply line each:
//! - `W region addr value` → `err`
//! - `R region addr` → `err value` (the 64-bit bus word, unsigned decimal)
//! - `X op max_cycles` → `status result cycles` (`T` on timeout)
//! - `V path` / `v`: start / stop a VCD waveform (trace builds only) → `0`
//! - `Q`: quit.

use super::{Build, SimError};
use crate::hdl::Module;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

/// The harness source for a top with the engine's ports.
pub fn harness(top: &str, trace: bool) -> String {
    let (inc, on, off, dump) = if trace {
        (
            "#include \"verilated_vcd_c.h\"\nstatic VerilatedVcdC* tfp = nullptr;",
            r#"{ if (!tfp) { tfp = new VerilatedVcdC; top->trace(tfp, 99); tfp->open(arg); } printf("0\n"); }"#,
            r#"{ if (tfp) { tfp->close(); delete tfp; tfp = nullptr; } printf("0\n"); }"#,
            "if (tfp) tfp->dump(cycles * 2); ",
        )
    } else {
        ("", r#"{ printf("1\n"); }"#, r#"{ printf("1\n"); }"#, "")
    };
    let trace_on = if trace {
        "Verilated::traceEverOn(true);"
    } else {
        ""
    };
    format!(
        r#"// dfforge bus-level harness for {top} (generated; see src/sim/engine.rs)
#include "V{top}.h"
#include "verilated.h"
#include <cstdio>
#include <cstdint>
#include <cstring>
{inc}
static V{top}* top;
static uint64_t cycles = 0;
static void tick() {{
  top->clk_i = 0; top->eval(); {dump}
  top->clk_i = 1; top->eval(); cycles++;
}}
int main(int argc, char** argv) {{
  Verilated::commandArgs(argc, argv);
  {trace_on}
  top = new V{top};
  top->rst_i = 1; tick(); tick(); top->rst_i = 0;
  char line[4096];
  while (fgets(line, sizeof line, stdin)) {{
    char c = line[0];
    char* arg = line + 2;
    arg[strcspn(arg, "\n")] = 0;
    if (c == 'W' || c == 'R') {{
      unsigned r = 0; unsigned long long a = 0, v = 0;
      sscanf(line + 1, "%u %llu %llu", &r, &a, &v);
      top->bus_req_i = 1; top->bus_we_i = (c == 'W'); top->bus_region_i = r;
      top->bus_addr_i = (uint32_t)a; top->bus_wdata_i = v;
      uint64_t n = 0;
      do {{ tick(); n++; }} while (!top->bus_ack_o && n < 10000000ULL);
      top->bus_req_i = 0;
      if (!top->bus_ack_o) printf("T\n");
      else if (c == 'W') printf("%d\n", (int)top->bus_err_o);
      else printf("%d %llu\n", (int)top->bus_err_o, (unsigned long long)top->bus_rdata_o);
      tick();
    }} else if (c == 'X') {{
      unsigned op = 0; unsigned long long maxc = 0;
      sscanf(line + 1, "%u %llu", &op, &maxc);
      uint64_t c0 = cycles;
      top->run_i = 1; top->run_op_i = op; tick(); top->run_i = 0;
      bool done = top->run_done_o;
      while (!done && cycles - c0 < maxc) {{ tick(); done = top->run_done_o; }}
      if (!done) printf("T\n");
      else printf("%d %d %llu\n", (int)top->run_status_o, (int)top->run_result_o,
                  (unsigned long long)(cycles - c0));
    }} else if (c == 'V') {on}
    else if (c == 'v') {off}
    else if (c == 'Q') break;
    else printf("?\n");
    fflush(stdout);
  }}
  {close}
  top->final();
  delete top;
  return 0;
}}
"#,
        close = if trace {
            "if (tfp) { tfp->close(); }"
        } else {
            ""
        }
    )
}

/// Build the engine (`dff_engine` among `modules`) with the bus harness. `fast` compiles
/// the model's C++ with optimisation (a longer build for a several times faster model: for
/// training runs, not for short co-simulations).
pub fn build(
    modules: &[Module],
    tables: &[(String, String)],
    trace: bool,
    fast: bool,
) -> Result<Build, SimError> {
    let mut flags: Vec<&str> = Vec::new();
    if trace {
        flags.push("--trace");
    }
    if fast {
        flags.extend(super::FAST_FLAGS);
    }
    let flags = &flags[..];
    Build::with_harness(
        modules,
        "dff_engine",
        tables,
        Some(harness("dff_engine", trace)),
        flags,
    )
}

/// A running engine simulation.
pub struct EngineSim {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    exe: String,
    /// Longest wait for one reply.
    pub timeout: Duration,
}

impl EngineSim {
    pub fn start(b: &Build) -> Result<EngineSim, SimError> {
        let dir = b
            .exe
            .parent()
            .and_then(std::path::Path::parent)
            .unwrap_or(std::path::Path::new("."));
        let mut child = Command::new(&b.exe)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Ok(EngineSim {
            child,
            stdin,
            lines: rx,
            exe: b.exe.display().to_string(),
            timeout: Duration::from_secs(600),
        })
    }

    fn ask(&mut self, cmd: &str) -> Result<String, SimError> {
        let dead = |msg: String| SimError::Run {
            exe: self.exe.clone(),
            msg,
        };
        writeln!(self.stdin, "{cmd}")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| {
                dead(format!(
                    "cannot send `{cmd}`: {e} (did the simulator exit?)"
                ))
            })?;
        match self.lines.recv_timeout(self.timeout) {
            Ok(l) => Ok(l),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                Err(SimError::Timeout(self.exe.clone(), self.timeout))
            }
            Err(_) => {
                let st = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(dead(format!(
                    "simulator exited ({st}) while answering `{cmd}`"
                )))
            }
        }
    }

    fn bus_err(&self, what: &str, region: u8, addr: u32) -> SimError {
        SimError::Run {
            exe: self.exe.clone(),
            msg: format!("engine refused {what} of region 0x{region:02x} address {addr}"),
        }
    }

    pub fn write(&mut self, region: u8, addr: u32, value: i64) -> Result<(), SimError> {
        let r = self.ask(&format!("W {region} {addr} {}", value as u64))?;
        if r.trim() != "0" {
            return Err(self.bus_err("a write", region, addr));
        }
        Ok(())
    }

    /// The raw 64-bit bus word (the engine sign-extends signed formats).
    pub fn read(&mut self, region: u8, addr: u32) -> Result<i64, SimError> {
        let r = self.ask(&format!("R {region} {addr}"))?;
        let mut it = r.split_whitespace();
        match (it.next(), it.next().and_then(|v| v.parse::<u64>().ok())) {
            (Some("0"), Some(v)) => Ok(v as i64),
            _ => Err(self.bus_err("a read", region, addr)),
        }
    }

    /// Run `op`; returns (status, result, cycles).
    pub fn run(&mut self, op: u8, max_cycles: u64) -> Result<(u8, u8, u64), SimError> {
        let r = self.ask(&format!("X {op} {max_cycles}"))?;
        let v: Vec<u64> = r
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() != 3 {
            return Err(SimError::Run {
                exe: self.exe.clone(),
                msg: format!("run {op} did not finish within {max_cycles} cycles (reply `{r}`)"),
            });
        }
        Ok((v[0] as u8, v[1] as u8, v[2]))
    }

    /// Start (`Some(path)`) or stop (`None`) a VCD waveform; needs a trace build.
    pub fn trace(&mut self, path: Option<&str>) -> Result<bool, SimError> {
        let r = match path {
            Some(p) => self.ask(&format!("V {p}"))?,
            None => self.ask("v")?,
        };
        Ok(r.trim() == "0")
    }
}

impl Drop for EngineSim {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "Q");
        let _ = self.stdin.flush();
        std::thread::sleep(Duration::from_millis(1));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
