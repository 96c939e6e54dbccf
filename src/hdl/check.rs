//! Structural checker: rejects IR that would produce illegal or suspicious
//! Verilog before any text is written, with errors that name the module, the
//! signal and the problem.
//!
//! It is deliberately not a width checker: widths are parameter expressions
//! and Verilator's WIDTH lint, run on the emitted text, already does that job
//! for the parameter values actually used.

use super::ir::*;
use std::collections::{HashMap, HashSet};

/// One problem found in a module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("module `{module}`: `{name}`: {kind}")]
pub struct CheckError {
    pub module: String,
    /// The signal, port, parameter, instance or module the error is about.
    pub name: String,
    pub kind: ErrorKind,
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("used but not declared")]
    Undeclared,
    #[error("declared more than once in the same scope")]
    Duplicate,
    #[error("is a reg but is driven by a continuous assign (use a wire)")]
    RegAssigned,
    #[error("is a reg but is driven by output `{port}` of instance `{inst}` (use a wire)")]
    RegDrivenByInstance { inst: String, port: String },
    #[error("is a wire but is assigned in an always block (declare it reg)")]
    WireInAlways,
    #[error("is an input port and cannot be driven inside the module")]
    InputDriven,
    #[error("is a {what} and cannot be assigned")]
    NotAssignable { what: String },
    #[error("is driven from two places: {first} and {second}")]
    MultipleDrivers { first: String, second: String },
    #[error(
        "is driven from inside generate loop `{label}` without indexing by genvar `{genvar}`, \
         so every iteration drives the same bits"
    )]
    DrivenPerIteration { label: String, genvar: String },
    #[error("instance `{inst}` refers to unknown module")]
    UnknownModule { inst: String },
    #[error("instance `{inst}` connects a port that module `{module}` does not have")]
    UnknownPort { inst: String, module: String },
    #[error("instance `{inst}` overrides a parameter that module `{module}` does not have")]
    UnknownParam { inst: String, module: String },
    #[error("input of module `{module}` is not connected on instance `{inst}`")]
    UnconnectedInput { inst: String, module: String },
    #[error(
        "output of module `{module}` is not connected on instance `{inst}` \
         (Verilator -Wall PINMISSING; connect it to a wire named `*unused*`)"
    )]
    UnconnectedOutput { inst: String, module: String },
    #[error("instance `{inst}` connects this port twice")]
    DuplicateConnection { inst: String },
    #[error(
        "output `{port}` of instance `{inst}` is connected to an expression that is not assignable"
    )]
    OutputToNonLvalue { inst: String, port: String },
    #[error("blocking `=` in a clocked always block (use `<=`; only loop variables may use `=`)")]
    BlockingInClocked,
    #[error("non-blocking `<=` in a combinational always block (use `=`)")]
    NonBlockingInComb,
    #[error("is used as a procedural for-loop variable but is not declared integer")]
    LoopVarNotInteger,
    #[error("is used as a generate-loop variable but is not declared genvar")]
    LoopVarNotGenvar,
    #[error("appears in {context}, which must be constant (parameters and genvars only)")]
    NotConstant { context: String },
    #[error("is the base of a select but is not a plain name")]
    BadSelectBase,
    #[error("is the target of an assignment but is not a name, select or concatenation")]
    BadLvalue,
    #[error("literal does not fit in {width} bits")]
    LiteralTooWide { width: u32 },
    #[error("literal has zero width")]
    ZeroWidthLiteral,
    #[error("is an output but is never driven")]
    OutputUndriven,
    #[error("is read but never driven")]
    ReadUndriven,
    #[error("is used as a clock but is not an input, wire or reg")]
    BadClock,
}

/// Check `m`; `library` holds every module `m` may instantiate.
pub fn check(m: &Module, library: &[&Module]) -> Result<(), Vec<CheckError>> {
    let mut c = Checker::new(m, library);
    c.run();
    if c.errors.is_empty() {
        Ok(())
    } else {
        Err(c.errors)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SymKind {
    Param,
    Input,
    OutWire,
    OutReg,
    Wire,
    Reg,
    Memory { init: bool },
    Integer,
    Genvar,
    Label,
}

impl SymKind {
    fn describe(self) -> &'static str {
        match self {
            SymKind::Param => "parameter",
            SymKind::Input => "input",
            SymKind::OutWire => "output wire",
            SymKind::OutReg => "output reg",
            SymKind::Wire => "wire",
            SymKind::Reg => "reg",
            SymKind::Memory { .. } => "memory",
            SymKind::Integer => "integer",
            SymKind::Genvar => "genvar",
            SymKind::Label => "generate block label",
        }
    }
    fn is_const(self) -> bool {
        matches!(self, SymKind::Param | SymKind::Genvar)
    }
}

struct Sym {
    name: String,
    kind: SymKind,
    /// Number of generate loops enclosing the declaration.
    loop_depth: usize,
    read: bool,
    drivers: Vec<Driver>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    /// `assign` or instance output: net drivers.
    Cont,
    /// `always` block.
    Proc,
}

#[derive(Clone, Debug)]
enum Region {
    Whole,
    Bits(i64, i64),
    Unknown,
}

#[derive(Clone, Debug)]
struct Driver {
    item: usize,
    class: Class,
    region: Region,
    desc: String,
    /// Generate-if branches enclosing the driver: (gen-if id, branch).
    branches: Vec<(usize, u8)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Assign,
    Clocked,
    Comb,
}

struct Checker<'a> {
    m: &'a Module,
    lib: HashMap<&'a str, &'a Module>,
    syms: Vec<Sym>,
    scopes: Vec<HashMap<String, usize>>,
    /// Enclosing generate loops: (genvar, label).
    loops: Vec<(String, String)>,
    /// Enclosing generate-if branches: (gen-if id, 0 = then / 1 = else).
    branches: Vec<(usize, u8)>,
    /// Integers used as procedural loop variables anywhere in the module.
    loop_vars: HashSet<String>,
    next_item: usize,
    errors: Vec<CheckError>,
}

impl<'a> Checker<'a> {
    fn new(m: &'a Module, library: &[&'a Module]) -> Self {
        Checker {
            m,
            lib: library.iter().map(|l| (l.name.as_str(), *l)).collect(),
            syms: vec![],
            scopes: vec![],
            loops: vec![],
            branches: vec![],
            loop_vars: HashSet::new(),
            next_item: 0,
            errors: vec![],
        }
    }

    fn err(&mut self, name: impl Into<String>, kind: ErrorKind) {
        let e = CheckError {
            module: self.m.name.clone(),
            name: name.into(),
            kind,
        };
        if !self.errors.contains(&e) {
            self.errors.push(e);
        }
    }

    fn declare(&mut self, name: &str, kind: SymKind) {
        let idx = self.syms.len();
        self.syms.push(Sym {
            name: name.into(),
            kind,
            loop_depth: self.loops.len(),
            read: false,
            drivers: vec![],
        });
        let scope = self.scopes.last_mut().expect("scope");
        if scope.insert(name.to_string(), idx).is_some() {
            self.err(name, ErrorKind::Duplicate);
        }
    }

    fn lookup(&self, name: &str) -> Option<usize> {
        self.scopes.iter().rev().find_map(|s| s.get(name).copied())
    }

    fn run(&mut self) {
        let m = self.m;
        collect_loop_vars(&m.items, &mut self.loop_vars);
        self.scopes.push(HashMap::new());
        for p in m.params.iter().chain(&m.localparams) {
            self.declare(&p.name, SymKind::Param);
        }
        for p in &m.ports {
            let k = match (p.dir, p.kind) {
                (Dir::In, _) => SymKind::Input,
                (Dir::Out, NetKind::Wire) => SymKind::OutWire,
                (Dir::Out, NetKind::Reg) => SymKind::OutReg,
            };
            self.declare(&p.name, k);
        }
        for p in m.params.iter().chain(&m.localparams) {
            self.constant(&p.default, &format!("the value of parameter `{}`", p.name));
        }
        for p in &m.ports {
            self.constant(&p.width, &format!("the width of port `{}`", p.name));
            if p.dir == Dir::In {
                // Inputs are driven from outside.
                let idx = self.lookup(&p.name).expect("declared");
                self.syms[idx].drivers.push(Driver {
                    item: usize::MAX,
                    class: Class::Cont,
                    region: Region::Whole,
                    desc: "the module input".into(),
                    branches: vec![],
                });
            }
        }
        self.scope_items(&m.items);
        self.scopes.pop();
        self.final_checks();
    }

    /// Declare the scope's declarations first (they are hoisted on emission),
    /// then check behaviour.
    fn scope_items(&mut self, items: &[Item]) {
        for it in items {
            match it {
                Item::Decl(d) => {
                    let k = match d.kind {
                        NetKind::Wire => SymKind::Wire,
                        NetKind::Reg => SymKind::Reg,
                    };
                    self.declare(&d.name, k);
                }
                Item::Memory(mm) => self.declare(
                    &mm.name,
                    SymKind::Memory {
                        init: mm.init.is_some(),
                    },
                ),
                Item::Integer(n) => self.declare(n, SymKind::Integer),
                Item::Genvar(n) => self.declare(n, SymKind::Genvar),
                Item::GenFor(g) => self.declare(&g.label, SymKind::Label),
                Item::GenIf(g) => {
                    self.declare(&g.then_.label, SymKind::Label);
                    if let Some(e) = &g.else_ {
                        if e.label != g.then_.label {
                            self.declare(&e.label, SymKind::Label);
                        }
                    }
                }
                Item::Instance(i) => self.declare(&i.name, SymKind::Label),
                _ => {}
            }
        }
        for it in items {
            self.item(it);
        }
    }

    fn item(&mut self, it: &Item) {
        match it {
            Item::Decl(d) => {
                self.constant(&d.width, &format!("the width of `{}`", d.name));
                for dim in &d.dims {
                    self.constant(dim, &format!("the array size of `{}`", d.name));
                }
            }
            Item::Memory(mm) => {
                self.constant(&mm.width, &format!("the width of `{}`", mm.name));
                self.constant(&mm.depth, &format!("the depth of `{}`", mm.name));
            }
            Item::Integer(_) | Item::Genvar(_) | Item::Comment(_) => {}
            Item::Assign { lhs, rhs } => {
                let item = self.new_item();
                self.read(rhs);
                self.lvalue(lhs, Ctx::Assign, item, "a continuous assign", None);
            }
            Item::Always(a) => {
                let item = self.new_item();
                let ctx = match &a.sens {
                    Sensitivity::Posedge(clk) => {
                        match self.lookup(clk) {
                            None => self.err(clk.clone(), ErrorKind::Undeclared),
                            Some(i) => {
                                self.syms[i].read = true;
                                if !matches!(
                                    self.syms[i].kind,
                                    SymKind::Input | SymKind::Wire | SymKind::Reg
                                ) {
                                    self.err(clk.clone(), ErrorKind::BadClock);
                                }
                            }
                        }
                        Ctx::Clocked
                    }
                    Sensitivity::Comb => Ctx::Comb,
                };
                self.stmts(&a.body, ctx, item);
            }
            Item::Instance(inst) => self.instance(inst),
            Item::GenFor(g) => {
                match self.lookup(&g.var) {
                    None => self.err(g.var.clone(), ErrorKind::Undeclared),
                    Some(i) if self.syms[i].kind != SymKind::Genvar => {
                        self.err(g.var.clone(), ErrorKind::LoopVarNotGenvar)
                    }
                    Some(_) => {}
                }
                let ctx = format!("the bounds of generate loop `{}`", g.label);
                self.constant(&g.start, &ctx);
                self.constant(&g.limit, &ctx);
                self.loops.push((g.var.clone(), g.label.clone()));
                self.scopes.push(HashMap::new());
                self.scope_items(&g.items);
                self.scopes.pop();
                self.loops.pop();
            }
            Item::GenIf(g) => {
                self.constant(
                    &g.cond,
                    &format!("the condition of generate if `{}`", g.then_.label),
                );
                let gid = self.new_item();
                for (bi, b) in std::iter::once(&g.then_).chain(&g.else_).enumerate() {
                    self.branches.push((gid, bi as u8));
                    self.scopes.push(HashMap::new());
                    self.scope_items(&b.items);
                    self.scopes.pop();
                    self.branches.pop();
                }
            }
        }
    }

    fn new_item(&mut self) -> usize {
        self.next_item += 1;
        self.next_item
    }

    fn instance(&mut self, inst: &Instance) {
        // The simulation model must take the same parameters and ports as the module:
        // checked as an instance of its own, whose reads and drives are the same nets.
        if let Some(sim) = &inst.sim_module {
            let mut model = inst.clone();
            model.module = sim.clone();
            model.sim_module = None;
            self.instance_ports(&model, false);
        }
        self.instance_ports(inst, true);
    }

    /// Check `inst` against its module's parameters and ports; `drives`: record the nets
    /// its outputs drive (once per instance, not for its simulation model).
    fn instance_ports(&mut self, inst: &Instance, drives: bool) {
        let item = self.new_item();
        for (_, v) in &inst.params {
            self.constant(
                v,
                &format!("a parameter override of instance `{}`", inst.name),
            );
        }
        let Some(target) = self.lib.get(inst.module.as_str()).copied() else {
            self.err(
                inst.module.clone(),
                ErrorKind::UnknownModule {
                    inst: inst.name.clone(),
                },
            );
            for (_, e) in &inst.conns {
                self.read(e);
            }
            return;
        };
        for (p, _) in &inst.params {
            if !target.params.iter().any(|tp| &tp.name == p) {
                self.err(
                    p.clone(),
                    ErrorKind::UnknownParam {
                        inst: inst.name.clone(),
                        module: target.name.clone(),
                    },
                );
            }
        }
        let mut seen = HashSet::new();
        for (p, e) in &inst.conns {
            if !seen.insert(p.as_str()) {
                self.err(
                    p.clone(),
                    ErrorKind::DuplicateConnection {
                        inst: inst.name.clone(),
                    },
                );
            }
            match target.find_port(p) {
                None => {
                    self.err(
                        p.clone(),
                        ErrorKind::UnknownPort {
                            inst: inst.name.clone(),
                            module: target.name.clone(),
                        },
                    );
                    self.read(e);
                }
                Some(tp) if tp.dir == Dir::In => self.read(e),
                Some(_) => {
                    if !is_lvalue(e) {
                        self.err(
                            root_name(e).unwrap_or("<expr>").to_string(),
                            ErrorKind::OutputToNonLvalue {
                                inst: inst.name.clone(),
                                port: p.clone(),
                            },
                        );
                        self.read(e);
                    } else if drives {
                        let desc = format!("output `{}` of instance `{}`", p, inst.name);
                        self.lvalue(e, Ctx::Assign, item, &desc, Some((&inst.name, p)));
                    }
                }
            }
        }
        for tp in &target.ports {
            if !seen.contains(tp.name.as_str()) {
                let kind = match tp.dir {
                    Dir::In => ErrorKind::UnconnectedInput {
                        inst: inst.name.clone(),
                        module: target.name.clone(),
                    },
                    Dir::Out => ErrorKind::UnconnectedOutput {
                        inst: inst.name.clone(),
                        module: target.name.clone(),
                    },
                };
                self.err(tp.name.clone(), kind);
            }
        }
    }

    fn stmts(&mut self, ss: &[Stmt], ctx: Ctx, item: usize) {
        for s in ss {
            self.stmt(s, ctx, item);
        }
    }

    fn stmt(&mut self, s: &Stmt, ctx: Ctx, item: usize) {
        let desc = match ctx {
            Ctx::Clocked => "a clocked always block",
            _ => "a combinational always block",
        };
        match s {
            Stmt::Blocking { lhs, rhs } => {
                self.read(rhs);
                if ctx == Ctx::Clocked {
                    let is_loop_var = matches!(lhs, Expr::Id(n) if self.loop_vars.contains(n));
                    if !is_loop_var {
                        self.err(
                            root_name(lhs).unwrap_or("<expr>").to_string(),
                            ErrorKind::BlockingInClocked,
                        );
                    }
                }
                self.lvalue(lhs, ctx, item, desc, None);
            }
            Stmt::NonBlocking { lhs, rhs } => {
                self.read(rhs);
                if ctx == Ctx::Comb {
                    self.err(
                        root_name(lhs).unwrap_or("<expr>").to_string(),
                        ErrorKind::NonBlockingInComb,
                    );
                }
                self.lvalue(lhs, ctx, item, desc, None);
            }
            Stmt::If { cond, then_, else_ } => {
                self.read(cond);
                self.stmts(then_, ctx, item);
                self.stmts(else_, ctx, item);
            }
            Stmt::Case {
                subject,
                arms,
                default,
            } => {
                self.read(subject);
                for a in arms {
                    for l in &a.labels {
                        self.read(l);
                    }
                    self.stmts(&a.body, ctx, item);
                }
                self.stmts(default, ctx, item);
            }
            Stmt::For {
                var,
                start,
                limit,
                body,
            } => {
                match self.lookup(var) {
                    None => self.err(var.clone(), ErrorKind::Undeclared),
                    Some(i) if self.syms[i].kind != SymKind::Integer => {
                        self.err(var.clone(), ErrorKind::LoopVarNotInteger)
                    }
                    Some(i) => self.syms[i].read = true,
                }
                self.read(start);
                self.read(limit);
                self.stmts(body, ctx, item);
            }
            Stmt::Comment(_) => {}
        }
    }

    /// Check a read expression: names declared, selects well formed,
    /// literals fit.
    fn read(&mut self, e: &Expr) {
        self.walk(e, &mut |c, n| {
            if let Some(i) = c.lookup(n) {
                c.syms[i].read = true;
                if c.syms[i].kind == SymKind::Label {
                    c.err(n, ErrorKind::Undeclared);
                }
            } else {
                c.err(n, ErrorKind::Undeclared);
            }
        });
    }

    /// Check a constant expression: only parameters and genvars.
    fn constant(&mut self, e: &Expr, context: &str) {
        self.walk(e, &mut |c, n| match c.lookup(n) {
            None => c.err(n, ErrorKind::Undeclared),
            Some(i) => {
                c.syms[i].read = true;
                if !c.syms[i].kind.is_const() {
                    c.err(
                        n,
                        ErrorKind::NotConstant {
                            context: context.to_string(),
                        },
                    );
                }
            }
        });
    }

    fn walk(&mut self, e: &Expr, f: &mut dyn FnMut(&mut Self, &str)) {
        match e {
            Expr::Id(n) => f(self, n),
            Expr::Str(_) => {}
            Expr::Lit(l) => match l.width {
                Some(0) => self.err(lit_name(l), ErrorKind::ZeroWidthLiteral),
                Some(w) if w < 64 && l.value >> w != 0 => {
                    self.err(lit_name(l), ErrorKind::LiteralTooWide { width: w })
                }
                _ => {}
            },
            Expr::Index { base, index } => {
                self.select_base(base, f);
                self.walk(index, f);
            }
            Expr::Slice { base, hi, lo } => {
                self.select_base(base, f);
                self.walk(hi, f);
                self.walk(lo, f);
            }
            Expr::PartUp { base, start, width } => {
                self.select_base(base, f);
                self.walk(start, f);
                self.walk(width, f);
            }
            Expr::Concat(ps) => {
                for p in ps {
                    self.walk(p, f);
                }
            }
            Expr::Repl { count, parts } => {
                self.constant(count, "a replication count");
                for p in parts {
                    self.walk(p, f);
                }
            }
            Expr::Unary(_, x) | Expr::Signed(x) | Expr::Unsigned(x) => self.walk(x, f),
            Expr::Clog2(x) => self.constant(x, "a $clog2 argument"),
            Expr::Binary(_, a, b) => {
                self.walk(a, f);
                self.walk(b, f);
            }
            Expr::Ternary { cond, then_, else_ } => {
                self.walk(cond, f);
                self.walk(then_, f);
                self.walk(else_, f);
            }
        }
    }

    /// Verilog-2005 only allows selects of names (`a[3]`, `mem[i][7:0]`).
    fn select_base(&mut self, base: &Expr, f: &mut dyn FnMut(&mut Self, &str)) {
        match base {
            Expr::Id(_) | Expr::Index { .. } => self.walk(base, f),
            other => {
                let n = root_name(other)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{other:?}").chars().take(300).collect());
                self.err(n, ErrorKind::BadSelectBase);
                self.walk(other, f);
            }
        }
    }

    /// Check an assignment target and record it as a driver.
    fn lvalue(
        &mut self,
        lhs: &Expr,
        ctx: Ctx,
        item: usize,
        desc: &str,
        inst: Option<(&String, &String)>,
    ) {
        if let Expr::Concat(parts) = lhs {
            for p in parts {
                self.lvalue(p, ctx, item, desc, inst);
            }
            return;
        }
        if !is_lvalue(lhs) {
            self.err(
                root_name(lhs).unwrap_or("<expr>").to_string(),
                ErrorKind::BadLvalue,
            );
            self.read(lhs);
            return;
        }
        // Index expressions of the target are reads.
        let mut sel_names = HashSet::new();
        let mut cur = lhs;
        loop {
            match cur {
                Expr::Id(_) => break,
                Expr::Index { base, index } => {
                    self.read(index);
                    collect_ids(index, &mut sel_names);
                    cur = base;
                }
                Expr::Slice { base, hi, lo } => {
                    self.read(hi);
                    self.read(lo);
                    collect_ids(hi, &mut sel_names);
                    collect_ids(lo, &mut sel_names);
                    cur = base;
                }
                Expr::PartUp { base, start, width } => {
                    self.read(start);
                    self.read(width);
                    collect_ids(start, &mut sel_names);
                    cur = base;
                }
                _ => unreachable!("is_lvalue checked"),
            }
        }
        let Expr::Id(name) = cur else { unreachable!() };
        let Some(idx) = self.lookup(name) else {
            self.err(name.clone(), ErrorKind::Undeclared);
            return;
        };
        let kind = self.syms[idx].kind;
        let class = match ctx {
            Ctx::Assign => Class::Cont,
            _ => Class::Proc,
        };
        match (kind, ctx) {
            (SymKind::Input, _) => return self.err(name.clone(), ErrorKind::InputDriven),
            (SymKind::Param | SymKind::Genvar | SymKind::Label, _) => {
                return self.err(
                    name.clone(),
                    ErrorKind::NotAssignable {
                        what: kind.describe().into(),
                    },
                )
            }
            (SymKind::Integer, Ctx::Assign) => {
                return self.err(
                    name.clone(),
                    ErrorKind::NotAssignable {
                        what: "integer outside an always block".into(),
                    },
                )
            }
            // Integers are scratch loop variables: no driver bookkeeping.
            (SymKind::Integer, _) => return,
            (SymKind::Reg | SymKind::OutReg | SymKind::Memory { .. }, Ctx::Assign) => {
                let k = match inst {
                    Some((i, p)) => ErrorKind::RegDrivenByInstance {
                        inst: i.clone(),
                        port: p.clone(),
                    },
                    None => ErrorKind::RegAssigned,
                };
                self.err(name.clone(), k);
            }
            (SymKind::Wire | SymKind::OutWire, Ctx::Clocked | Ctx::Comb) => {
                self.err(name.clone(), ErrorKind::WireInAlways)
            }
            _ => {}
        }
        // A target declared outside a generate loop must be indexed by that
        // loop's genvar, or all iterations drive the same bits.
        let depth = self.syms[idx].loop_depth;
        let unindexed: Vec<ErrorKind> = self.loops[depth..]
            .iter()
            .filter(|(gv, _)| !sel_names.contains(gv))
            .map(|(gv, label)| ErrorKind::DrivenPerIteration {
                label: label.clone(),
                genvar: gv.clone(),
            })
            .collect();
        for k in unindexed {
            self.err(name.clone(), k);
        }
        let region = region_of(lhs);
        self.syms[idx].drivers.push(Driver {
            item,
            class,
            region,
            desc: desc.to_string(),
            branches: self.branches.clone(),
        });
    }

    fn final_checks(&mut self) {
        let mut errs = vec![];
        for s in &self.syms {
            // Multiple drivers.
            'outer: for (i, a) in s.drivers.iter().enumerate() {
                for b in &s.drivers[i + 1..] {
                    if a.item != b.item && conflict(a, b) {
                        errs.push((
                            s.name.clone(),
                            ErrorKind::MultipleDrivers {
                                first: a.desc.clone(),
                                second: b.desc.clone(),
                            },
                        ));
                        break 'outer;
                    }
                }
            }
            let driven = !s.drivers.is_empty() || s.kind == SymKind::Memory { init: true };
            if !driven {
                match s.kind {
                    SymKind::OutWire | SymKind::OutReg => {
                        errs.push((s.name.clone(), ErrorKind::OutputUndriven))
                    }
                    SymKind::Wire | SymKind::Reg | SymKind::Memory { .. } if s.read => {
                        errs.push((s.name.clone(), ErrorKind::ReadUndriven))
                    }
                    _ => {}
                }
            }
        }
        for (n, k) in errs {
            self.err(n, k);
        }
    }
}

fn lit_name(l: &Lit) -> String {
    format!("{}'d{}", l.width.unwrap_or(32), l.value)
}

/// Two drivers from different items conflict when they can coexist and their bit ranges may
/// overlap. Selects by genvar or variable are `Unknown`: between two net
/// drivers they are assumed disjoint (the per-iteration rule covers loops);
/// between two always blocks they are assumed to overlap, since a signal
/// split across always blocks is almost always a mistake.
fn conflict(a: &Driver, b: &Driver) -> bool {
    // Drivers in different branches of one generate-if never coexist.
    let exclusive = a
        .branches
        .iter()
        .any(|(ga, ba)| b.branches.iter().any(|(gb, bb)| ga == gb && ba != bb));
    if exclusive {
        return false;
    }
    if a.class != b.class {
        return true;
    }
    match (&a.region, &b.region) {
        (Region::Whole, _) | (_, Region::Whole) => true,
        (Region::Bits(l1, h1), Region::Bits(l2, h2)) => l1 <= h2 && l2 <= h1,
        _ => a.class == Class::Proc,
    }
}

fn region_of(lhs: &Expr) -> Region {
    match lhs {
        Expr::Id(_) => Region::Whole,
        Expr::Index { base, index } if matches!(**base, Expr::Id(_)) => match const_eval(index) {
            Some(i) => Region::Bits(i, i),
            None => Region::Unknown,
        },
        Expr::Slice { base, hi, lo } if matches!(**base, Expr::Id(_)) => {
            match (const_eval(hi), const_eval(lo)) {
                (Some(h), Some(l)) => Region::Bits(l.min(h), l.max(h)),
                _ => Region::Unknown,
            }
        }
        Expr::PartUp { base, start, width } if matches!(**base, Expr::Id(_)) => {
            match (const_eval(start), const_eval(width)) {
                (Some(s), Some(w)) => Region::Bits(s, s + w - 1),
                _ => Region::Unknown,
            }
        }
        _ => Region::Unknown,
    }
}

/// Evaluate a literal-only expression (no parameters).
fn const_eval(e: &Expr) -> Option<i64> {
    super::eval_const(e, &std::collections::HashMap::new())
}

fn is_lvalue(e: &Expr) -> bool {
    match e {
        Expr::Id(_) => true,
        Expr::Index { base, .. } | Expr::Slice { base, .. } | Expr::PartUp { base, .. } => {
            matches!(**base, Expr::Id(_) | Expr::Index { .. }) && is_lvalue(base)
        }
        Expr::Concat(ps) => !ps.is_empty() && ps.iter().all(is_lvalue),
        _ => false,
    }
}

fn root_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Id(n) => Some(n),
        Expr::Index { base, .. } | Expr::Slice { base, .. } | Expr::PartUp { base, .. } => {
            root_name(base)
        }
        Expr::Signed(x) | Expr::Unsigned(x) | Expr::Unary(_, x) => root_name(x),
        Expr::Binary(_, a, _) => root_name(a),
        Expr::Concat(ps) => ps.first().and_then(root_name),
        _ => None,
    }
}

fn collect_ids(e: &Expr, out: &mut HashSet<String>) {
    match e {
        Expr::Id(n) => {
            out.insert(n.clone());
        }
        Expr::Lit(_) | Expr::Str(_) => {}
        Expr::Index { base, index } => {
            collect_ids(base, out);
            collect_ids(index, out);
        }
        Expr::Slice { base, hi, lo } => {
            collect_ids(base, out);
            collect_ids(hi, out);
            collect_ids(lo, out);
        }
        Expr::PartUp { base, start, width } => {
            collect_ids(base, out);
            collect_ids(start, out);
            collect_ids(width, out);
        }
        Expr::Concat(ps) => ps.iter().for_each(|p| collect_ids(p, out)),
        Expr::Repl { count, parts } => {
            collect_ids(count, out);
            parts.iter().for_each(|p| collect_ids(p, out));
        }
        Expr::Unary(_, x) | Expr::Signed(x) | Expr::Unsigned(x) | Expr::Clog2(x) => {
            collect_ids(x, out)
        }
        Expr::Binary(_, a, b) => {
            collect_ids(a, out);
            collect_ids(b, out);
        }
        Expr::Ternary { cond, then_, else_ } => {
            collect_ids(cond, out);
            collect_ids(then_, out);
            collect_ids(else_, out);
        }
    }
}

fn collect_loop_vars(items: &[Item], out: &mut HashSet<String>) {
    fn stmts(ss: &[Stmt], out: &mut HashSet<String>) {
        for s in ss {
            match s {
                Stmt::For { var, body, .. } => {
                    out.insert(var.clone());
                    stmts(body, out);
                }
                Stmt::If { then_, else_, .. } => {
                    stmts(then_, out);
                    stmts(else_, out);
                }
                Stmt::Case { arms, default, .. } => {
                    arms.iter().for_each(|a| stmts(&a.body, out));
                    stmts(default, out);
                }
                _ => {}
            }
        }
    }
    for it in items {
        match it {
            Item::Always(a) => stmts(&a.body, out),
            Item::GenFor(g) => collect_loop_vars(&g.items, out),
            Item::GenIf(g) => {
                collect_loop_vars(&g.then_.items, out);
                if let Some(e) = &g.else_ {
                    collect_loop_vars(&e.items, out);
                }
            }
            _ => {}
        }
    }
}
