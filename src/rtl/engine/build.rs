//! Building blocks of the op-engine generators: registered memory-client ports, two-process
//! registers (`_q` with a combinational `_d`), and delay lines.
//!
//! Every op engine drives the memory ports it uses from registers that are zero whenever it
//! does not use them, so the engine top can join the clients of a port with a plain OR (one
//! client is active at a time: see [`crate::arch::memmap::Client`]). A read issued in cycle
//! t (an arm of `drive` true in t) puts its data on `rdata` in cycle t + [`READ_LAT`]; a
//! write issued in cycle t lands at the end of cycle t + 2 (the block registers requests
//! too, reads and writes alike, so their order is the issuer's).

use crate::arch::memmap::Tensor;
use crate::arch::schedule::READ_LAT;
use crate::hdl::*;

/// Read latency of an op engine's memory read, from the cycle it is issued.
pub const LAT: usize = READ_LAT as usize;

/// One registered signal with several conditional drivers: `<name>_d` is zero unless an
/// arm's condition holds (later arms win), `<name>_q` registers it (reset to zero) and
/// drives the port `<name>_o`.
struct Driven {
    name: String,
    width: u32,
    arms: Vec<(Expr, Expr)>,
}

/// A memory client's ports on an op engine: `<t>_we_o` (one bit per bank),
/// `<t>_waddr_o`/`<t>_wdata_o`/`<t>_raddr_o` (one field per bank, bank 0 in the low bits),
/// `<t>_rdata_i`.
#[derive(Clone, Debug)]
pub struct MemPort {
    pub name: String,
    pub banks: usize,
    pub aw: u32,
    pub width: u32,
    pub write: bool,
    pub read: bool,
}

impl MemPort {
    /// Read data of bank `b`.
    pub fn rdata(&self, b: usize) -> Expr {
        id(format!("{}_rdata_i", self.name)).part(
            int((b as u64) * u64::from(self.width)),
            int(u64::from(self.width)),
        )
    }
    /// The whole read-data vector.
    pub fn rdata_all(&self) -> Expr {
        id(format!("{}_rdata_i", self.name))
    }
    fn sig(&self, what: &str) -> String {
        format!("{}_{what}", self.name)
    }
}

/// Everything registered that an op engine drives, collected while its generator runs and
/// emitted at the end by [`Eng::finish`].
pub struct Eng {
    pub m: Module,
    driven: Vec<Driven>,
    /// Two-process registers: (name, width, reset value); `<name>_d` defaults to `<name>_q`.
    regs: Vec<(String, u32, Expr)>,
    /// Statements of the combinational next-state block (after the defaults).
    pub comb: Vec<Stmt>,
    /// Data registers without reset (delay lines, pipeline stages).
    pipe: Vec<Stmt>,
    /// Registers with reset (valid flags of delay lines, …): (reg, width, statement).
    flags: Vec<(Expr, u32, Stmt)>,
    /// This engine's own copies of the sequencer's run-wide registers: (copy, source).
    copies: Vec<(String, Expr)>,
    pub ports: Vec<MemPort>,
}

impl Eng {
    pub fn new(name: &str, doc: impl Into<String>) -> Eng {
        TRUNCATED.with(|t| t.borrow_mut().clear());
        let mut m = Module::new(name).doc(doc);
        m.input("clk_i", 1);
        m.input("rst_i", 1);
        Eng {
            m,
            driven: Vec::new(),
            regs: Vec::new(),
            comb: Vec::new(),
            pipe: Vec::new(),
            flags: Vec::new(),
            copies: Vec::new(),
            ports: Vec::new(),
        }
    }

    /// Declare this engine's ports on tensor `t` (`write` / `read` access).
    pub fn mem_port(&mut self, t: &Tensor, write: bool, read: bool) -> MemPort {
        let p = MemPort {
            name: t.name.clone(),
            banks: t.banks(),
            aw: t.aw(),
            width: t.width,
            write,
            read,
        };
        let nb = p.banks as u32;
        if write {
            self.driven_port(&p.sig("we"), nb);
            self.driven_port(&p.sig("waddr"), p.aw * nb);
            self.driven_port(&p.sig("wdata"), p.width * nb);
        }
        if read {
            self.driven_port(&p.sig("raddr"), p.aw * nb);
            self.m.input(&p.sig("rdata_i"), p.width * nb);
        }
        self.ports.push(p.clone());
        p
    }

    fn driven_port(&mut self, name: &str, width: u32) {
        self.m.output(&format!("{name}_o"), width);
        self.m.reg(&format!("{name}_d"), width);
        self.m.reg(&format!("{name}_q"), width);
        self.driven.push(Driven {
            name: name.to_string(),
            width,
            arms: Vec::new(),
        });
    }

    fn arm(&mut self, name: &str, cond: Expr, val: Expr) {
        let d = self
            .driven
            .iter_mut()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("{} drives no port {name}", self.m.name));
        d.arms.push((cond, val));
    }

    /// Issue a read of every bank of `p` at the per-bank addresses `addrs` (bank 0 first)
    /// when `cond`.
    pub fn read(&mut self, p: &MemPort, cond: Expr, addrs: Vec<Expr>) {
        assert_eq!(addrs.len(), p.banks, "{}: one address per bank", p.name);
        self.arm(&p.sig("raddr"), cond, cat(addrs.into_iter().rev()));
    }

    /// Issue a read of every bank of `p` at one address.
    pub fn read_all(&mut self, p: &MemPort, cond: Expr, addr: Expr) {
        let a: Vec<Expr> = (0..p.banks).map(|_| addr.clone()).collect();
        self.read(p, cond, a);
    }

    /// Write when `cond`: bank enables `we` (one bit per bank, bank 0 in bit 0), per-bank
    /// addresses and data (bank 0 first).
    pub fn write(&mut self, p: &MemPort, cond: Expr, we: Expr, addrs: Vec<Expr>, data: Vec<Expr>) {
        assert_eq!(addrs.len(), p.banks, "{}: one address per bank", p.name);
        assert_eq!(data.len(), p.banks, "{}: one word per bank", p.name);
        let nb = p.banks as u32;
        self.arm(
            &p.sig("we"),
            cond.clone(),
            mux(cond.clone(), we, lit(nb, 0)),
        );
        self.arm(&p.sig("waddr"), cond.clone(), cat(addrs.into_iter().rev()));
        self.arm(&p.sig("wdata"), cond, cat(data.into_iter().rev()));
    }

    /// Write one word `data` at `addr` of the bank selected by `bank_oh` (one-hot).
    pub fn write_one(&mut self, p: &MemPort, cond: Expr, bank_oh: Expr, addr: Expr, data: Expr) {
        let a = (0..p.banks).map(|_| addr.clone()).collect();
        let d = (0..p.banks).map(|_| data.clone()).collect();
        self.write(p, cond, bank_oh, a, d);
    }

    /// A two-process register `<name>_q` (reset to `reset`) with next value `<name>_d`,
    /// which defaults to `<name>_q`; returns (q, d).
    pub fn reg(&mut self, name: &str, width: u32, reset: u64) -> (Expr, Expr) {
        let q = self.m.reg(&format!("{name}_q"), width);
        let d = self.m.reg(&format!("{name}_d"), width);
        self.regs.push((name.to_string(), width, lit(width, reset)));
        (q, d)
    }

    /// A two-process register whose reset value is an expression (a parameter).
    pub fn reg_init(&mut self, name: &str, width: u32, reset: Expr) -> (Expr, Expr) {
        let q = self.m.reg(&format!("{name}_q"), width);
        let d = self.m.reg(&format!("{name}_d"), width);
        self.regs.push((name.to_string(), width, reset));
        (q, d)
    }

    /// A data register `<name>_q <= value` every cycle (no reset).
    pub fn pipe(&mut self, name: &str, value: Expr, width: u32) -> Expr {
        let q = self.m.reg(&format!("{name}_q"), width);
        self.pipe.push(nb(&q, value));
        q
    }

    /// A signed data register.
    pub fn pipe_s(&mut self, name: &str, value: Expr, width: u32) -> Expr {
        let q = self.m.reg_s(&format!("{name}_q"), width);
        self.pipe.push(nb(&q, value));
        q
    }

    /// A data register loaded with `value` when `en` (no reset).
    pub fn pipe_en(&mut self, name: &str, en: Expr, value: Expr, width: u32) -> Expr {
        let q = self.m.reg(&format!("{name}_q"), width);
        self.pipe.push(if_(en, vec![nb(&q, value)]));
        q
    }

    /// A flag register `<name>_q <= value` every cycle, reset to zero.
    pub fn flag(&mut self, name: &str, value: Expr, width: u32) -> Expr {
        let q = self.m.reg(&format!("{name}_q"), width);
        self.flags.push((q.clone(), width, nb(&q, value)));
        q
    }

    /// `value` delayed `n` cycles through data registers `<name>_p1 … _pn` (no reset).
    pub fn delay(&mut self, name: &str, value: Expr, width: u32, n: usize) -> Expr {
        let mut cur = value;
        for i in 1..=n {
            let r = self.m.reg(&format!("{name}_p{i}"), width);
            self.pipe.push(nb(&r, &cur));
            cur = r;
        }
        cur
    }

    /// `value` delayed `n` cycles through flag registers (reset to zero).
    pub fn delay_flag(&mut self, name: &str, value: Expr, width: u32, n: usize) -> Expr {
        let mut cur = value;
        for i in 1..=n {
            let r = self.m.reg(&format!("{name}_p{i}"), width);
            self.flags.push((r.clone(), width, nb(&r, &cur)));
            cur = r;
        }
        cur
    }

    /// A named wire holding `e`.
    pub fn wire(&mut self, name: &str, width: u32, e: Expr) -> Expr {
        let w = self.m.wire(name, width);
        self.m.assign(&w, e);
        w
    }

    /// A named signed wire holding `e`.
    pub fn wire_s(&mut self, name: &str, width: u32, e: Expr) -> Expr {
        let w = self.m.wire_s(name, width);
        self.m.assign(&w, e);
        w
    }

    /// Mark bits the engine never reads (Verilator's -Wall accepts `unused_*`).
    pub fn unused(&mut self, name: &str, x: Expr) {
        let u = self.m.wire(&format!("unused_{name}"), 1);
        self.m.assign(u, x.red_xor());
    }

    /// Emit the collected registers and port drivers; returns the module. Inputs of the
    /// common op interface that this engine never reads (a config without the feature that
    /// needs them) are marked unused.
    pub fn finish(mut self) -> Module {
        self.prune();
        // The high bits `fit` cut off signals that survived the pruning.
        let declared: std::collections::HashSet<String> = self
            .m
            .items
            .iter()
            .filter_map(|it| match it {
                Item::Decl(d) => Some(d.name.clone()),
                _ => None,
            })
            .chain(self.m.ports.iter().map(|p| p.name.clone()))
            .collect();
        let mut cut: Vec<(String, u32, u32)> =
            TRUNCATED.with(|t| std::mem::take(&mut *t.borrow_mut()));
        cut.sort();
        cut.dedup();
        for (i, (n, w, to)) in cut.into_iter().enumerate() {
            if declared.contains(&n) {
                self.unused(&format!("cut{i}_{n}"), id(&n).slice(w - 1, to));
            }
        }
        let text = crate::hdl::emit(&self.m);
        for name in [
            "kind_i", "layer_i", "infer_i", "nsamp_i", "nrows_i", "start_i",
        ] {
            let copied = self.copies.iter().any(|(_, src)| *src == id(name));
            if !copied && self.m.find_port(name).is_some() && word_count(&text, name) == 1 {
                self.unused(&format!("port_{name}"), id(name));
            }
        }
        let clk = id("clk_i");
        let rst = id("rst_i");
        // Port drivers.
        for d in std::mem::take(&mut self.driven) {
            let dn = id(format!("{}_d", d.name));
            let qn = id(format!("{}_q", d.name));
            let mut body = vec![set(&dn, zeros(int(u64::from(d.width))))];
            for (c, v) in d.arms {
                body.push(if_(c, vec![set(&dn, v)]));
            }
            self.m.always_comb(body);
            self.m.always_ff(
                &clk,
                vec![if_(&rst, vec![nb(&qn, zeros(int(u64::from(d.width))))])
                    .else_(vec![nb(&qn, &dn)])],
            );
            self.m.assign(id(format!("{}_o", d.name)), &qn);
        }
        // Two-process registers.
        if !self.regs.is_empty() {
            let mut body: Vec<Stmt> = self
                .regs
                .iter()
                .map(|(n, _, _)| set(id(format!("{n}_d")), id(format!("{n}_q"))))
                .collect();
            body.append(&mut self.comb);
            self.m.always_comb(body);
            let rst_body: Vec<Stmt> = self
                .regs
                .iter()
                .map(|(n, _, r)| nb(id(format!("{n}_q")), r.clone()))
                .collect();
            let run_body: Vec<Stmt> = self
                .regs
                .iter()
                .map(|(n, _, _)| nb(id(format!("{n}_q")), id(format!("{n}_d"))))
                .collect();
            self.m
                .always_ff(&clk, vec![if_(&rst, rst_body).else_(run_body)]);
        } else {
            assert!(self.comb.is_empty(), "comb statements without registers");
        }
        if !self.flags.is_empty() {
            let rst_body: Vec<Stmt> = self
                .flags
                .iter()
                .map(|(q, w, _)| nb(q.clone(), zeros(int(u64::from(*w)))))
                .collect();
            let run_body: Vec<Stmt> = self.flags.iter().map(|(_, _, s)| s.clone()).collect();
            self.m
                .always_ff(&clk, vec![if_(&rst, rst_body).else_(run_body)]);
        }
        if !self.pipe.is_empty() {
            let body = std::mem::take(&mut self.pipe);
            self.m.always_ff(&clk, body);
        }
        self.finish_copies();
        self.m
    }
}

/// Bits of a counter that counts 0 ..= `max`.
pub fn cw(max: usize) -> u32 {
    crate::arch::shape::bitlen(max as u128)
}

/// `x` (`w` bits) as a `to`-bit unsigned value (zero-extended).
pub fn zext(x: Expr, w: u32, to: u32) -> Expr {
    assert!(to >= w, "cannot zero-extend {w} bits to {to}");
    if to == w {
        x
    } else {
        cat([lit(to - w, 0), x])
    }
}

/// Candidate `sel` of `n` (`sw`-bit selector below `n`): a mux chain (rotators and lane
/// selects; `sel` should come from a register).
pub fn pick(sel: &Expr, sw: u32, n: usize, cand: impl Fn(usize) -> Expr) -> Expr {
    (1..n).fold(cand(0), |v, r| {
        mux(sel.clone().eq_(lit(sw, r as u64)), cand(r), v)
    })
}

/// One-hot of an `sw`-bit index below `n`, bit 0 first.
pub fn onehot(idx: &Expr, sw: u32, n: usize) -> Expr {
    if n == 1 {
        return lit(1, 1);
    }
    cat((0..n)
        .rev()
        .map(|b| idx.clone().eq_(lit(sw, b as u64)))
        .collect::<Vec<_>>())
}

/// `(x + 1) mod m` for an `w`-bit counter `x < m`.
pub fn inc_mod(x: &Expr, w: u32, m: usize) -> Expr {
    if m <= 1 {
        return lit(w, 0);
    }
    mux(
        x.clone().eq_(lit(w, (m - 1) as u64)),
        lit(w, 0),
        x + lit(w, 1),
    )
}

/// `(x + a) mod m` for `x < m` and a constant `a < m` (`w` bits, `w` large enough for
/// x + a).
pub fn add_mod_const(x: &Expr, a: usize, w: u32, m: usize) -> Expr {
    let a = a % m.max(1);
    if a == 0 || m <= 1 {
        return x.clone();
    }
    let s = x + lit(w, a as u64);
    mux(
        x.clone().ge_(lit(w, (m - a) as u64)),
        x - lit(w, (m - a) as u64),
        s,
    )
}

/// The sequencer's inputs every op engine takes, and its `done_o`.
pub struct OpIo {
    /// One-cycle start pulse.
    pub start: Expr,
    /// Op code ([`crate::arch::program::Op::code`]), stable from start to done.
    pub kind: Expr,
    /// The op's layer (0-based), stable from start to done.
    pub layer: Expr,
    /// Inference run (one sample under every class) rather than a training step.
    pub infer: Expr,
    /// Samples of this run, rows of this run (`nsamp · hypotheses`, or the classes).
    pub nsamp: Expr,
    pub nrows: Expr,
    /// Widths of `layer`, `nsamp`, `nrows`.
    pub lw: u32,
    pub sw: u32,
    pub rw: u32,
    /// One-cycle done pulse (two-process register `done`).
    pub done_d: Expr,
}

impl OpIo {
    /// `layer == l` as an expression.
    pub fn is_layer(&self, l: usize) -> Expr {
        self.layer.clone().eq_(lit(self.lw, l as u64))
    }
    /// `kind == op.code()`.
    pub fn is_kind(&self, op: crate::arch::program::Op) -> Expr {
        self.kind.clone().eq_(lit(4, op.code()))
    }
}

/// Registered op decodes ([`Eng::op_flags`]).
pub struct OpFlags(Vec<(crate::arch::program::Op, Expr)>);

impl OpFlags {
    /// The flag of `op` (one of the ops the flags were made for).
    pub fn of(&self, op: crate::arch::program::Op) -> Expr {
        self.0
            .iter()
            .find(|(o, _)| *o == op)
            .map(|(_, q)| q.clone())
            .unwrap_or_else(|| panic!("no op flag for {op:?}"))
    }
}

/// Widths of the sequencer's layer, sample-count and row-count signals.
pub fn seq_widths(arch: &crate::arch::Arch) -> (u32, u32, u32) {
    (
        cw(arch.layers().saturating_sub(1)),
        cw(arch.batch),
        cw(arch.max_rows()),
    )
}

impl Eng {
    /// "`op` is the running op", registered, for each of `ops` (named `is_<kind><layer>`):
    /// valid from the cycle after the op's start, as the sequencer sets kind and layer with
    /// the start pulse and holds them until `done`. For logic that acts only while the op
    /// runs; it keeps the decode of the sequencer's kind/layer (a net that reaches every
    /// engine) off the engine's own paths.
    pub fn op_flags(&mut self, io: &OpIo, ops: &[crate::arch::program::Op]) -> OpFlags {
        let flags = ops
            .iter()
            .map(|&o| {
                let name = format!("is_{}{}", o.name().to_lowercase(), o.layer() + 1);
                let q = self.pipe(&name, io.is_kind(o).land(io.is_layer(o.layer())), 1);
                (o, q)
            })
            .collect();
        OpFlags(flags)
    }

    /// The copies of run-wide registers this engine reads get their `(* keep *)` block;
    /// the ones it does not read are dropped and their input marked unused. Runs last, when
    /// every statement that could read a copy is in the module.
    fn finish_copies(&mut self) {
        let copies = std::mem::take(&mut self.copies);
        if copies.is_empty() {
            return;
        }
        let text = crate::hdl::emit(&self.m);
        let mut body = Vec::new();
        for (name, src) in copies {
            if word_count(&text, &name) > 1 {
                body.push(nb(id(&name), src));
            } else {
                self.m
                    .items
                    .retain(|it| !matches!(it, Item::Decl(d) if d.name == name));
                if let Expr::Id(port) = &src {
                    self.unused(&format!("port_{port}"), src.clone());
                }
            }
        }
        if !body.is_empty() {
            self.m.always_ff_keep(id("clk_i"), body);
        }
    }

    /// A register copy of `src`, a run-wide value the sequencer sets two cycles or more
    /// before it starts an op (see [`Eng::op_io_with`]).
    fn run_copy(&mut self, name: &str, src: Expr, width: u32) -> Expr {
        let q = format!("{name}_run_q");
        self.m.reg(&q, width);
        self.copies.push((q.clone(), src));
        id(q)
    }

    /// Declare the op-engine interface ports (and the `done` register).
    pub fn op_io(&mut self, arch: &crate::arch::Arch) -> OpIo {
        self.op_io_with(arch, true)
    }

    /// [`Eng::op_io`], without `done_o` when `done` is false (an engine whose op another
    /// engine ends).
    pub fn op_io_with(&mut self, arch: &crate::arch::Arch, done: bool) -> OpIo {
        let (lw, sw, rw) = seq_widths(arch);
        let start = self.m.input("start_i", 1);
        let kind = self.m.input("kind_i", 4);
        let layer = self.m.input("layer_i", lw);
        // The run-wide values (inference or training, samples, rows) are read through this
        // engine's own register copy: the sequencer's one register fanned out to every op
        // engine across the die was a critical path (docs/board.md). The sequencer sets
        // them when a run starts, two cycles before the first op's start, so a copy one
        // cycle behind is already right when an op starts.
        let infer_i = self.m.input("infer_i", 1);
        let nsamp_i = self.m.input("nsamp_i", sw);
        let nrows_i = self.m.input("nrows_i", rw);
        let infer = self.run_copy("infer", infer_i, 1);
        let nsamp = self.run_copy("nsamp", nsamp_i, sw);
        let nrows = self.run_copy("nrows", nrows_i, rw);
        let (done_q, done_d) = self.reg("done", 1, 0);
        if done {
            let done_o = self.m.output("done_o", 1);
            self.m.assign(done_o, done_q);
        } else {
            self.unused("done", done_q);
        }
        // Every op engine ends its done pulse after one cycle.
        self.comb.push(set(&done_d, lit(1, 0)));
        OpIo {
            start,
            kind,
            layer,
            infer,
            nsamp,
            nrows,
            lw,
            sw,
            rw,
            done_d,
        }
    }
}

thread_local! {
    /// Signals [`fit`] dropped high bits of while the current engine was generated:
    /// (name, width, kept bits).
    static TRUNCATED: std::cell::RefCell<Vec<(String, u32, u32)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The named value `x` (`w` bits) as `to` bits: zero-extended, or its low bits (address
/// arithmetic is done at the width of the memory it addresses, where it cannot overflow;
/// a counter shared by memories of different depths is cut to each one's width). The bits
/// cut off are recorded so that [`Eng::finish`] marks them unused when nothing else reads
/// them.
pub fn fit(x: &Expr, w: u32, to: u32) -> Expr {
    if to >= w {
        zext(x.clone(), w, to)
    } else {
        if let Expr::Id(n) = x {
            TRUNCATED.with(|t| t.borrow_mut().push((n.clone(), w, to)));
        }
        x.slice(to - 1, 0)
    }
}

impl Eng {
    /// Drop registers and wires that nothing reads (the delay lines, counters and
    /// positions of a feature this config does not have), repeatedly, with their
    /// declarations. A two-process register's own next-state assignments do not count as
    /// reads of it; conditions do.
    fn prune(&mut self) {
        use crate::hdl::reads::{expr_ids, item_reads, stmt_reads};
        fn target(s: &Stmt) -> Option<String> {
            match s {
                Stmt::NonBlocking {
                    lhs: Expr::Id(n), ..
                } => Some(n.clone()),
                Stmt::If { then_, else_, .. } if then_.len() == 1 && else_.is_empty() => {
                    target(&then_[0])
                }
                _ => None,
            }
        }
        let mut dropped: Vec<String> = Vec::new();
        loop {
            let mut reads = std::collections::HashSet::new();
            item_reads(&self.m.items, &mut reads);
            let own: std::collections::HashSet<String> =
                self.regs.iter().map(|(n, _, _)| format!("{n}_d")).collect();
            comb_reads(&self.comb, &own, &mut reads);
            stmt_reads(&self.pipe, &mut reads);
            for (_, _, s) in &self.flags {
                stmt_reads(std::slice::from_ref(s), &mut reads);
            }
            for d in &self.driven {
                for (c, v) in &d.arms {
                    expr_ids(c, &mut reads);
                    expr_ids(v, &mut reads);
                }
            }
            let mut changed = false;
            // Two-process registers.
            let dead_regs: Vec<String> = self
                .regs
                .iter()
                .map(|(n, _, _)| n.clone())
                .filter(|n| {
                    !reads.contains(&format!("{n}_q")) && !reads.contains(&format!("{n}_d"))
                })
                .collect();
            if !dead_regs.is_empty() {
                let targets: std::collections::HashSet<String> =
                    dead_regs.iter().map(|n| format!("{n}_d")).collect();
                self.regs.retain(|(n, _, _)| !dead_regs.contains(n));
                self.comb = drop_assigns(std::mem::take(&mut self.comb), &targets);
                for n in &dead_regs {
                    dropped.push(format!("{n}_q"));
                    dropped.push(format!("{n}_d"));
                }
                changed = true;
            }
            // Wires assigned and never read.
            let wires: std::collections::HashSet<String> = self
                .m
                .items
                .iter()
                .filter_map(|it| match it {
                    Item::Decl(d) if d.kind == NetKind::Wire && !d.name.starts_with("unused") => {
                        Some(d.name.clone())
                    }
                    _ => None,
                })
                .collect();
            let dead_wire = |it: &Item| {
                matches!(it, Item::Assign { lhs: Expr::Id(n), .. }
                    if wires.contains(n) && !reads.contains(n))
            };
            let wgone: Vec<String> = self
                .m
                .items
                .iter()
                .filter(|it| dead_wire(it))
                .filter_map(|it| match it {
                    Item::Assign {
                        lhs: Expr::Id(n), ..
                    } => Some(n.clone()),
                    _ => None,
                })
                .collect();
            if !wgone.is_empty() {
                self.m.items.retain(|it| !dead_wire(it));
                dropped.extend(wgone);
                changed = true;
            }
            // Pipeline and flag registers.
            let dead = |s: &Stmt| target(s).is_some_and(|n| !reads.contains(&n));
            let mut gone: Vec<String> = self
                .pipe
                .iter()
                .filter(|s| dead(s))
                .filter_map(target)
                .collect();
            gone.extend(
                self.flags
                    .iter()
                    .filter(|(_, _, s)| dead(s))
                    .filter_map(|(_, _, s)| target(s)),
            );
            if !gone.is_empty() {
                self.pipe.retain(|s| !dead(s));
                self.flags.retain(|(_, _, s)| !dead(s));
                dropped.extend(gone);
                changed = true;
            }
            if !changed {
                break;
            }
        }
        self.m
            .items
            .retain(|it| !matches!(it, Item::Decl(d) if dropped.contains(&d.name)));
        // State names of states this config's FSM does not have.
        let mut reads = std::collections::HashSet::new();
        item_reads(&self.m.items, &mut reads);
        comb_reads(&self.comb, &std::collections::HashSet::new(), &mut reads);
        for (_, _, r) in &self.regs {
            expr_ids(r, &mut reads);
        }
        self.m.localparams.retain(|p| reads.contains(&p.name));
    }
}

/// Names read by combinational statements, not counting the right-hand sides of
/// assignments to `own` (registers' next values computed from themselves).
fn comb_reads(
    ss: &[Stmt],
    own: &std::collections::HashSet<String>,
    out: &mut std::collections::HashSet<String>,
) {
    use crate::hdl::reads::{expr_ids, stmt_reads};
    for s in ss {
        match s {
            Stmt::Blocking { lhs, rhs } => {
                let root = match lhs {
                    Expr::Id(n) => Some(n.clone()),
                    Expr::Index { base, .. }
                    | Expr::Slice { base, .. }
                    | Expr::PartUp { base, .. } => match base.as_ref() {
                        Expr::Id(n) => Some(n.clone()),
                        _ => None,
                    },
                    _ => None,
                };
                if root.as_ref().is_some_and(|n| own.contains(n)) {
                    // Its own next value: only select indices count.
                    let mut ids = std::collections::HashSet::new();
                    expr_ids(rhs, &mut ids);
                    let self_q = root.map(|n| format!("{}_q", n.trim_end_matches("_d")));
                    for id_ in ids {
                        if Some(&id_) != self_q.as_ref() {
                            out.insert(id_);
                        }
                    }
                    if let Expr::Index { index, .. } = lhs {
                        expr_ids(index, out);
                    }
                } else {
                    stmt_reads(std::slice::from_ref(s), out);
                }
            }
            Stmt::If { cond, then_, else_ } => {
                expr_ids(cond, out);
                comb_reads(then_, own, out);
                comb_reads(else_, own, out);
            }
            Stmt::Case {
                subject,
                arms,
                default,
            } => {
                expr_ids(subject, out);
                for a in arms {
                    a.labels.iter().for_each(|l| expr_ids(l, out));
                    comb_reads(&a.body, own, out);
                }
                comb_reads(default, own, out);
            }
            other => stmt_reads(std::slice::from_ref(other), out),
        }
    }
}

/// `ss` without the assignments to `targets` (a dead register's next values).
fn drop_assigns(ss: Vec<Stmt>, targets: &std::collections::HashSet<String>) -> Vec<Stmt> {
    let hits = |lhs: &Expr| match lhs {
        Expr::Id(n) => targets.contains(n),
        Expr::Index { base, .. } | Expr::Slice { base, .. } | Expr::PartUp { base, .. } => {
            matches!(base.as_ref(), Expr::Id(n) if targets.contains(n))
        }
        _ => false,
    };
    ss.into_iter()
        .filter_map(|s| match s {
            Stmt::Blocking { ref lhs, .. } if hits(lhs) => None,
            Stmt::If { cond, then_, else_ } => Some(Stmt::If {
                cond,
                then_: drop_assigns(then_, targets),
                else_: drop_assigns(else_, targets),
            }),
            Stmt::Case {
                subject,
                arms,
                default,
            } => Some(Stmt::Case {
                subject,
                arms: arms
                    .into_iter()
                    .map(|a| CaseArm {
                        labels: a.labels,
                        body: drop_assigns(a.body, targets),
                    })
                    .collect(),
                default: drop_assigns(default, targets),
            }),
            other => Some(other),
        })
        .collect()
}

/// Occurrences of the identifier `name` in Verilog `text`.
fn word_count(text: &str, name: &str) -> usize {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$';
    text.match_indices(name)
        .filter(|(i, _)| {
            let before = text[..*i].chars().next_back();
            let after = text[i + name.len()..].chars().next();
            !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
        })
        .count()
}

impl Eng {
    /// `(a + b) mod n` of two `w`-bit values below `n`, as a `w`-bit wire `name` (0 when
    /// n = 1).
    pub fn add_mod(&mut self, name: &str, a: &Expr, b: &Expr, w: u32, n: usize) -> Expr {
        if n <= 1 {
            return lit(w, 0);
        }
        let sum = zext(a.clone(), w, w + 1) + zext(b.clone(), w, w + 1);
        let r = mux(
            sum.clone().ge_(lit(w + 1, n as u64)),
            sum.clone() - lit(w + 1, n as u64),
            sum,
        );
        let wide = self.wire(&format!("{name}_sum"), w + 1, r);
        // (The sum is below n: its top bit is always zero.)
        self.unused(&format!("{name}_sum"), wide.clone());
        self.wire(name, w, wide.slice(w - 1, 0))
    }
}
