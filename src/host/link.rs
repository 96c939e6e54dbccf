//! Transports for protocol frames: the [`Link`] trait and [`SimLink`], which speaks to a
//! Verilator model of a design that has `dff_cmd`'s byte ports.
//!
//! [`SimLink`] drives a generated C++ "frame harness" ([`frame_harness`]) over the child's
//! stdin/stdout with length-prefixed binary messages (see below). The pipes are served by
//! threads and every wait has a deadline, so a simulator that dies or hangs becomes a
//! [`LinkError`] naming what happened, never a hung host.
//!
//! Pipe protocol (host → harness): `[u8 kind][u32 LE len][len bytes]`.
//!
//! | kind | payload | harness does |
//! |---|---|---|
//! | `F` | u64 LE cycle limit (0 = harness default), then the bytes | feeds the bytes into `rx_data_i` one per cycle (`rx_valid_i` high), then clocks until one complete response frame has come out of `tx_*` or the cycle limit (counted from the first fed byte) has passed |
//! | `T` | a file path | starts an FST waveform dump into it (only in a build with `traced`) |
//! | `t` | — | stops the dump (the file is complete after this) |
//! | `Q` | — | exits |
//!
//! Every message but `Q` gets one reply (harness → host):
//! `[u8 status][u64 LE cycles][u32 LE len][len bytes]`, status 0 = complete frame, 1 = cycle
//! limit reached (the bytes are whatever came out), 2 = the request failed (the bytes are a
//! message). The harness holds `tx_ready_i` high, resets the design for 4 cycles at start, and
//! scans the `tx` stream for a frame (sync 0x5A, header, length, payload, CRC); bytes before a
//! sync and bytes after the first complete frame of a message are dropped. It writes replies on
//! a duplicate of its stdout and points stdout at stderr, so nothing the model prints can
//! corrupt the reply stream.

use crate::hdl::Module;
use crate::sim::{Build, SimError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A transport for whole frames.
pub trait Link {
    /// Send one whole command frame, return one whole response frame.
    fn transact(&mut self, frame: &[u8]) -> Result<Vec<u8>, LinkError>;
    /// Wait at most `t` (wall clock) for each following response, until set again: the
    /// caller knows how long its next command runs (links without a limit ignore it).
    fn set_timeout(&mut self, _t: Duration) {}
}

impl<L: Link + ?Sized> Link for &mut L {
    fn transact(&mut self, frame: &[u8]) -> Result<Vec<u8>, LinkError> {
        (**self).transact(frame)
    }
    fn set_timeout(&mut self, t: Duration) {
        (**self).set_timeout(t)
    }
}

impl<L: Link + ?Sized> Link for Box<L> {
    fn transact(&mut self, frame: &[u8]) -> Result<Vec<u8>, LinkError> {
        (**self).transact(frame)
    }
    fn set_timeout(&mut self, t: Duration) {
        (**self).set_timeout(t)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("simulator exited ({status}) — it died or was killed while serving the link; its stderr ended with: {stderr}")]
    Exited { status: String, stderr: String },
    #[error("no response within {secs} s from the simulator (pid {pid}): it is hung, stopped or far too slow; it has been killed — if it was only slow, allow more time (dfforge: --timeout SECS; library: SimLinkOptions::timeout or Link::set_timeout), else trace the design (SimLinkOptions::traced) to see where it stops")]
    Timeout { secs: f64, pid: u32 },
    #[error("no complete response frame after {cycles} cycles ({} byte(s) came out: {bytes:02x?}): the device did not answer — check the frame is complete, or raise the cycle limit for slow commands", bytes.len())]
    CycleLimit { cycles: u64, bytes: Vec<u8> },
    #[error("the harness refused the request: {0}")]
    Harness(String),
    #[error("the harness sent a malformed reply ({0}): harness and host code come from different dfforge builds; rebuild")]
    BadReply(String),
    #[error("this link is closed after an earlier failure ({0}); open a new SimLink")]
    Closed(String),
    // Not `#[from]`: that would also make the SimError the source, and `{:#}` would print
    // it twice.
    #[error("could not build the simulator: {0}")]
    Build(SimError),
    #[error("could not start or talk to the simulator {exe}: {err}")]
    Io { exe: String, err: std::io::Error },
    #[error(transparent)]
    Serial(#[from] crate::host::serial::SerialError),
}

impl From<SimError> for LinkError {
    fn from(e: SimError) -> Self {
        LinkError::Build(e)
    }
}

/// How a [`SimLink`] is built and run.
#[derive(Clone, Debug)]
pub struct SimLinkOptions {
    /// Build the waveform-capable variant (`--trace-fst`): needed for
    /// [`SimLink::trace_start`]; slows the model, so off by default.
    pub traced: bool,
    /// Wall-clock limit for one reply; past it the child is killed.
    pub timeout: Duration,
    /// Default cycle limit of a transaction (from its first byte).
    pub cycle_limit: u64,
}

impl Default for SimLinkOptions {
    fn default() -> Self {
        SimLinkOptions {
            traced: false,
            timeout: Duration::from_secs(60),
            cycle_limit: 50_000_000,
        }
    }
}

/// The ports the frame harness drives; any top with these can be served.
pub const HARNESS_PORTS: [&str; 7] = [
    "clk_i",
    "rst_i",
    "rx_data_i",
    "rx_valid_i",
    "tx_data_o",
    "tx_valid_o",
    "tx_ready_i",
];

/// The generated C++ frame harness for `top` (see the module docs for its pipe protocol).
pub fn frame_harness(top: &str, traced: bool) -> String {
    let (inc, decl, on, dump0, dump1, start, stop, fin) = if traced {
        (
            "#include \"verilated_fst_c.h\"\n",
            "static VerilatedFstC* tfp = nullptr;\nstatic bool tracing = false;\n",
            "  Verilated::traceEverOn(true);\n",
            "  if (tracing) tfp->dump(now);\n",
            "  if (tracing) tfp->dump(now);\n",
            "      if (tracing) tfp->close();\n      if (!tfp) { tfp = new VerilatedFstC; t->trace(tfp, 99); }\n      tfp->open(path.c_str());\n      if (!tfp->isOpen()) { reply_msg(2, \"cannot open the trace file \" + path); continue; }\n      tracing = true;\n      reply_msg(0, \"\");\n",
            "      if (tracing) { tfp->close(); tracing = false; }\n      reply_msg(0, \"\");\n",
            "  if (tracing) tfp->close();\n",
        )
    } else {
        (
            "",
            "",
            "",
            "",
            "",
            "      (void)path;\n      reply_msg(2, \"this simulator was built without tracing; open the SimLink with SimLinkOptions { traced: true, .. }\");\n",
            "      reply_msg(0, \"\");\n",
            "",
        )
    };
    format!(
        r#"// Generated by dfforge: frame harness for {top} (src/host/link.rs documents the pipe protocol).
#include "V{top}.h"
#include "verilated.h"
{inc}#include <cstdint>
#include <cstdio>
#include <string>
#include <unistd.h>
#include <vector>

static V{top}* t;
static FILE* proto;        // the reply stream: a duplicate of the original stdout
static uint64_t now = 0;   // trace time in half cycles
{decl}
// Finds the first complete response frame in the tx byte stream.
struct Scan {{
  std::vector<uint8_t> buf;
  bool done = false;
  void push(uint8_t b) {{
    if (done) return;
    if (buf.empty() && b != 0x5A) return;
    buf.push_back(b);
    if (buf.size() >= 5) {{
      size_t n = (size_t)buf[3] | ((size_t)buf[4] << 8);
      if (buf.size() == 7 + n) done = true;
    }}
  }}
}};

// One clock cycle: inputs are already set; a tx byte moves when valid and ready are both high
// before the rising edge.
static void tick(Scan& s) {{
  t->clk_i = 0;
  t->eval();
{dump0}  now++;
  bool took = t->tx_valid_o && t->tx_ready_i;
  uint8_t b = (uint8_t)t->tx_data_o;
  t->clk_i = 1;
  t->eval();
{dump1}  now++;
  if (took) s.push(b);
}}

static bool read_exact(void* p, size_t n) {{ return n == 0 || fread(p, 1, n, stdin) == n; }}

static void reply(uint8_t status, uint64_t cycles, const uint8_t* data, uint32_t len) {{
  uint8_t h[13];
  h[0] = status;
  for (int i = 0; i < 8; ++i) h[1 + i] = (uint8_t)(cycles >> (8 * i));
  for (int i = 0; i < 4; ++i) h[9 + i] = (uint8_t)(len >> (8 * i));
  fwrite(h, 1, 13, proto);
  if (len) fwrite(data, 1, len, proto);
  fflush(proto);
}}

static void reply_msg(uint8_t status, const std::string& m) {{
  reply(status, 0, (const uint8_t*)m.data(), (uint32_t)m.size());
}}

int main(int argc, char** argv) {{
  // Replies go to a duplicate of stdout; stdout itself now goes to stderr.
  int fd = dup(1);
  if (fd < 0 || dup2(2, 1) < 0) return 3;
  proto = fdopen(fd, "wb");
  if (!proto) return 3;
  Verilated::commandArgs(argc, argv);
{on}  t = new V{top};
  t->tx_ready_i = 1;
  t->rx_valid_i = 0;
  t->rx_data_i = 0;
  Scan s;
  t->rst_i = 1;
  for (int i = 0; i < 4; ++i) tick(s);
  t->rst_i = 0;
  for (;;) {{
    uint8_t kind;
    uint8_t lb[4];
    if (!read_exact(&kind, 1) || !read_exact(lb, 4)) break;
    uint32_t len = (uint32_t)lb[0] | ((uint32_t)lb[1] << 8) | ((uint32_t)lb[2] << 16) | ((uint32_t)lb[3] << 24);
    std::vector<uint8_t> p(len);
    if (!read_exact(p.data(), len)) break;
    if (kind == 'Q') break;
    if (kind == 'F') {{
      if (len < 8) {{ reply_msg(2, "an F message starts with a u64 cycle limit"); continue; }}
      uint64_t limit = 0;
      for (int i = 0; i < 8; ++i) limit |= (uint64_t)p[i] << (8 * i);
      if (limit == 0) limit = 10000000ULL;
      Scan f;
      uint64_t c = 0;
      for (size_t i = 8; i < len; ++i) {{
        t->rx_data_i = p[i];
        t->rx_valid_i = 1;
        tick(f);
        ++c;
      }}
      t->rx_valid_i = 0;
      while (!f.done && c < limit) {{
        tick(f);
        ++c;
      }}
      reply(f.done ? 0 : 1, c, f.buf.data(), (uint32_t)f.buf.size());
    }} else if (kind == 'T') {{
      std::string path(p.begin(), p.end());
{start}    }} else if (kind == 't') {{
{stop}    }} else {{
      reply_msg(2, std::string("unknown message kind '") + (char)kind + "'");
    }}
  }}
{fin}  t->final();
  delete t;
  fclose(proto);
  return 0;
}}
"#
    )
}

/// Build (or find in the cache) the frame-harness simulator of `top`.
pub fn build(
    modules: &[Module],
    top: &str,
    tables: &[(String, String)],
    traced: bool,
) -> Result<Build, LinkError> {
    let Some(m) = modules.iter().find(|m| m.name == top) else {
        return Err(LinkError::Harness(format!(
            "top module {top} is not among the modules given"
        )));
    };
    let missing: Vec<&str> = HARNESS_PORTS
        .iter()
        .copied()
        .filter(|p| m.find_port(p).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(LinkError::Harness(format!(
            "{top} lacks the port(s) {} the frame harness drives; wrap it in a top with clk_i, rst_i, rx_data_i[7:0], rx_valid_i, tx_data_o[7:0], tx_valid_o, tx_ready_i",
            missing.join(", ")
        )));
    }
    build_with_flags(modules, top, tables, traced, &[])
}

/// [`build`] with extra Verilator flags (e.g. C++ optimisation for long training runs).
pub fn build_with_flags(
    modules: &[Module],
    top: &str,
    tables: &[(String, String)],
    traced: bool,
    extra: &[&str],
) -> Result<Build, LinkError> {
    let mut flags: Vec<&str> = if traced { vec!["--trace-fst"] } else { vec![] };
    flags.extend_from_slice(extra);
    Ok(Build::with_harness(
        modules,
        top,
        tables,
        Some(frame_harness(top, traced)),
        &flags,
    )?)
}

enum Reply {
    Msg {
        status: u8,
        cycles: u64,
        bytes: Vec<u8>,
    },
    Eof,
    Bad(String),
}

/// A Verilator model of a design with `dff_cmd`'s byte ports, as a [`Link`].
pub struct SimLink {
    child: Child,
    exe: String,
    to_child: Option<Sender<Vec<u8>>>,
    replies: Receiver<Reply>,
    stderr: Arc<Mutex<Vec<u8>>>,
    opts: SimLinkOptions,
    last_cycles: u64,
    traced: bool,
    closed: Option<String>,
}

impl SimLink {
    /// Build `top` with the frame harness (cached) and start it.
    pub fn open(
        modules: &[Module],
        top: &str,
        tables: &[(String, String)],
        opts: SimLinkOptions,
    ) -> Result<SimLink, LinkError> {
        let b = build(modules, top, tables, opts.traced)?;
        SimLink::spawn(&b, opts)
    }

    /// Start an already built frame-harness simulator (from [`build`]). `opts.traced` must
    /// match how it was built.
    pub fn spawn(b: &Build, opts: SimLinkOptions) -> Result<SimLink, LinkError> {
        let exe = b.exe.display().to_string();
        let io = |err| LinkError::Io {
            exe: exe.clone(),
            err,
        };
        // Tables ($readmemh) are read relative to the build directory.
        let dir = b
            .exe
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut child = Command::new(&b.exe)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io)?;
        let (Some(mut stdin), Some(stdout), Some(mut err)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io(std::io::Error::other("child pipes missing")));
        };
        // The writer thread owns stdin: a child that stops reading blocks it, not the host.
        let (to_child, from_host) = mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            for msg in from_host {
                if write_msg(&mut stdin, &msg).is_err() {
                    break;
                }
            }
        });
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || read_replies(stdout, tx));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    // Keep the tail only: it is for error messages.
                    s.extend_from_slice(&buf[..n]);
                    let over = s.len().saturating_sub(16384);
                    s.drain(..over);
                }
            }
        });
        Ok(SimLink {
            child,
            exe,
            to_child: Some(to_child),
            replies,
            stderr,
            traced: opts.traced,
            opts,
            last_cycles: 0,
            closed: None,
        })
    }

    /// Process id of the simulator (tests kill it to check the error path).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Clock cycles of the last transaction, from its first byte to the response's last.
    pub fn last_cycles(&self) -> u64 {
        self.last_cycles
    }

    /// Options in force (change the timeout or cycle limit with [`SimLink::options_mut`]).
    pub fn options(&self) -> &SimLinkOptions {
        &self.opts
    }

    pub fn options_mut(&mut self) -> &mut SimLinkOptions {
        &mut self.opts
    }

    /// Send one frame and clock for at most `cycle_limit` cycles (0: the harness default).
    /// Returns the harness status (0 complete, 1 cycle limit) and the bytes that came out.
    pub fn transact_raw(
        &mut self,
        frame: &[u8],
        cycle_limit: u64,
    ) -> Result<(u8, Vec<u8>), LinkError> {
        let mut p = Vec::with_capacity(frame.len() + 8);
        p.extend_from_slice(&cycle_limit.to_le_bytes());
        p.extend_from_slice(frame);
        let (status, cycles, bytes) = self.request(b'F', &p)?;
        self.last_cycles = cycles;
        match status {
            0 | 1 => Ok((status, bytes)),
            _ => Err(LinkError::Harness(String::from_utf8_lossy(&bytes).into())),
        }
    }

    /// Start dumping an FST waveform into `path` (the link must be opened with `traced`).
    pub fn trace_start(&mut self, path: &Path) -> Result<(), LinkError> {
        if !self.traced {
            return Err(LinkError::Harness(
                "this simulator was built without tracing; open the SimLink with SimLinkOptions { traced: true, .. }".into(),
            ));
        }
        let p = path.to_string_lossy().into_owned();
        self.control(b'T', p.as_bytes())
    }

    /// Stop the waveform dump; the file is complete afterwards.
    pub fn trace_stop(&mut self) -> Result<(), LinkError> {
        self.control(b't', &[])
    }

    fn control(&mut self, kind: u8, payload: &[u8]) -> Result<(), LinkError> {
        let (status, _, bytes) = self.request(kind, payload)?;
        if status == 0 {
            Ok(())
        } else {
            Err(LinkError::Harness(String::from_utf8_lossy(&bytes).into()))
        }
    }

    /// One message, one reply, within the timeout; any failure closes the link.
    fn request(&mut self, kind: u8, payload: &[u8]) -> Result<(u8, u64, Vec<u8>), LinkError> {
        if let Some(why) = &self.closed {
            return Err(LinkError::Closed(why.clone()));
        }
        let r = self.request_inner(kind, payload);
        if let Err(e) = &r {
            self.closed = Some(e.to_string());
            self.shut_down(false);
        }
        r
    }

    fn request_inner(&mut self, kind: u8, payload: &[u8]) -> Result<(u8, u64, Vec<u8>), LinkError> {
        let len = u32::try_from(payload.len())
            .map_err(|_| LinkError::Harness("message longer than 4 GiB".into()))?;
        let mut msg = Vec::with_capacity(payload.len() + 5);
        msg.push(kind);
        msg.extend_from_slice(&len.to_le_bytes());
        msg.extend_from_slice(payload);
        // A send error means the writer thread is gone (the child closed stdin, i.e. it
        // exited); the reply channel then says how.
        if let Some(tx) = &self.to_child {
            let _ = tx.send(msg);
        }
        match self.replies.recv_timeout(self.opts.timeout) {
            Ok(Reply::Msg {
                status,
                cycles,
                bytes,
            }) => Ok((status, cycles, bytes)),
            Ok(Reply::Bad(why)) => Err(LinkError::BadReply(why)),
            Ok(Reply::Eof) | Err(RecvTimeoutError::Disconnected) => Err(self.exited()),
            Err(RecvTimeoutError::Timeout) => {
                let pid = self.child.id();
                let _ = self.child.kill();
                let _ = self.child.wait();
                Err(LinkError::Timeout {
                    secs: self.opts.timeout.as_secs_f64(),
                    pid,
                })
            }
        }
    }

    /// The child closed its reply stream: wait briefly for its exit status.
    fn exited(&mut self) -> LinkError {
        let mut status = None;
        for _ in 0..200 {
            if let Ok(Some(s)) = self.child.try_wait() {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let status = match status {
            Some(s) => s.to_string(),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                "closed its output but did not exit; killed".to_string()
            }
        };
        // Give the stderr thread a moment to collect the last words.
        std::thread::sleep(Duration::from_millis(20));
        let tail = self
            .stderr
            .lock()
            .map(|s| String::from_utf8_lossy(&s).trim().to_string())
            .unwrap_or_default();
        let stderr = if tail.is_empty() {
            format!("(nothing; {})", self.exe)
        } else {
            tail
        };
        LinkError::Exited { status, stderr }
    }

    /// Stop the child: politely (`Q`) if it is healthy, else kill it.
    fn shut_down(&mut self, polite: bool) {
        if polite {
            if let Some(tx) = &self.to_child {
                let _ = tx.send(vec![b'Q', 0, 0, 0, 0]);
            }
        }
        // Dropping the sender ends the writer thread, which closes the child's stdin.
        self.to_child = None;
        if polite {
            for _ in 0..100 {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Link for SimLink {
    fn set_timeout(&mut self, t: Duration) {
        self.opts.timeout = t;
    }

    fn transact(&mut self, frame: &[u8]) -> Result<Vec<u8>, LinkError> {
        let limit = self.opts.cycle_limit;
        match self.transact_raw(frame, limit)? {
            (0, bytes) => Ok(bytes),
            (_, bytes) => Err(LinkError::CycleLimit {
                cycles: self.last_cycles,
                bytes,
            }),
        }
    }
}

impl Drop for SimLink {
    fn drop(&mut self) {
        let healthy = self.closed.is_none();
        self.shut_down(healthy);
    }
}

fn write_msg(w: &mut ChildStdin, msg: &[u8]) -> std::io::Result<()> {
    w.write_all(msg)?;
    w.flush()
}

/// Reader thread: one [`Reply`] per harness reply, then `Eof` when the stream ends.
fn read_replies(mut r: impl Read, tx: Sender<Reply>) {
    loop {
        let mut h = [0u8; 13];
        match read_full(&mut r, &mut h) {
            Ok(true) => {}
            Ok(false) => {
                let _ = tx.send(Reply::Eof);
                return;
            }
            Err(e) => {
                let _ = tx.send(Reply::Bad(format!("reading the reply header: {e}")));
                return;
            }
        }
        let status = h[0];
        let mut c = [0u8; 8];
        c.copy_from_slice(&h[1..9]);
        let cycles = u64::from_le_bytes(c);
        let len = u32::from_le_bytes([h[9], h[10], h[11], h[12]]) as usize;
        if status > 2 || len > (1 << 24) {
            let _ = tx.send(Reply::Bad(format!("status {status}, length {len}")));
            return;
        }
        let mut bytes = vec![0u8; len];
        match read_full(&mut r, &mut bytes) {
            Ok(true) => {}
            Ok(false) => {
                let _ = tx.send(Reply::Eof);
                return;
            }
            Err(e) => {
                let _ = tx.send(Reply::Bad(format!("reading {len} reply bytes: {e}")));
                return;
            }
        }
        if tx
            .send(Reply::Msg {
                status,
                cycles,
                bytes,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Fill `buf`; `Ok(false)` on a clean or mid-buffer end of stream.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
