//! The typed Verilog IR and its builders.
//!
//! The IR mirrors the small synthesizable subset of Verilog-2005 that dfforge
//! emits. Widths and dimensions are [`Expr`]s rather than numbers so that a
//! module can stay parameterised (`[W-1:0]`) while its default parameter
//! values come from a runtime config. Everything derives serde so a generated
//! design can be snapshotted or diffed as JSON.
//!
//! Builders are meant to make Rust read close to Verilog:
//!
//! ```
//! use dfforge::hdl::*;
//! let mut m = Module::new("adder").doc("Adds two numbers.");
//! let w = m.param("W", 8);
//! let a = m.input("a_i", &w);
//! let b = m.input("b_i", &w);
//! let s = m.output("s_o", &w);
//! m.assign(s, a + b);
//! assert!(check(&m, &[]).is_ok());
//! ```

use serde::{Deserialize, Serialize};

/// How a literal is printed. Only affects readability, never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Radix {
    Dec,
    Hex,
    Bin,
}

/// A numeric literal. `width: None` is an unsized literal (32-bit in Verilog).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lit {
    pub width: Option<u32>,
    pub value: u64,
    pub signed: bool,
    pub radix: Radix,
}

/// Unary operators, including the reduction operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnOp {
    /// `-x`
    Neg,
    /// `~x`
    Not,
    /// `!x`
    LNot,
    /// `&x`
    RedAnd,
    /// `|x`
    RedOr,
    /// `^x`
    RedXor,
}

impl UnOp {
    pub fn symbol(self) -> &'static str {
        match self {
            UnOp::Neg => "-",
            UnOp::Not => "~",
            UnOp::LNot => "!",
            UnOp::RedAnd => "&",
            UnOp::RedOr => "|",
            UnOp::RedXor => "^",
        }
    }
}

/// Binary operators of Verilog-2005 that dfforge needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    And,
    Or,
    Xor,
    LAnd,
    LOr,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Shl,
    Shr,
    AShl,
    AShr,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::And => "&",
            BinOp::Or => "|",
            BinOp::Xor => "^",
            BinOp::LAnd => "&&",
            BinOp::LOr => "||",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Shl => "<<",
            BinOp::Shr => ">>",
            BinOp::AShl => "<<<",
            BinOp::AShr => ">>>",
        }
    }

    /// Verilog-2005 precedence (IEEE 1364-2005 table 5-4); higher binds tighter.
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Mul | BinOp::Div | BinOp::Mod => 10,
            BinOp::Add | BinOp::Sub => 9,
            BinOp::Shl | BinOp::Shr | BinOp::AShl | BinOp::AShr => 8,
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 7,
            BinOp::Eq | BinOp::Ne => 6,
            BinOp::And => 5,
            BinOp::Xor => 4,
            BinOp::Or => 3,
            BinOp::LAnd => 2,
            BinOp::LOr => 1,
        }
    }

    /// Arithmetic operators are printed without spaces inside `[...]` so that
    /// ranges read like hand-written Verilog (`[(2*W)-1:0]`).
    pub fn is_arith(self) -> bool {
        matches!(
            self,
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod
        )
    }

    /// Comparisons do not chain meaningfully, so the emitter parenthesises
    /// them even when nested at equal precedence.
    pub fn is_compare(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
        )
    }
}

/// A Verilog expression. Parameter references are plain [`Expr::Id`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expr {
    Id(String),
    Lit(Lit),
    /// `base[index]` (bit select or array element).
    Index {
        base: Box<Expr>,
        index: Box<Expr>,
    },
    /// `base[hi:lo]`
    Slice {
        base: Box<Expr>,
        hi: Box<Expr>,
        lo: Box<Expr>,
    },
    /// `base[start +: width]`
    PartUp {
        base: Box<Expr>,
        start: Box<Expr>,
        width: Box<Expr>,
    },
    /// `{a, b, c}`
    Concat(Vec<Expr>),
    /// `{count{a, b}}`
    Repl {
        count: Box<Expr>,
        parts: Vec<Expr>,
    },
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Ternary {
        cond: Box<Expr>,
        then_: Box<Expr>,
        else_: Box<Expr>,
    },
    /// `$signed(x)`
    Signed(Box<Expr>),
    /// `$unsigned(x)`
    Unsigned(Box<Expr>),
    /// `$clog2(x)` (constant expressions only: widths of parameterised memories).
    Clog2(Box<Expr>),
    /// A string literal `"text"`: the value of a vendor primitive's string parameter.
    Str(String),
}

/// Identifier / parameter reference.
pub fn id(name: impl Into<String>) -> Expr {
    Expr::Id(name.into())
}

/// Sized unsigned decimal literal, e.g. `lit(8, 5)` is `8'd5`.
pub fn lit(width: u32, value: u64) -> Expr {
    Expr::Lit(Lit {
        width: Some(width),
        value,
        signed: false,
        radix: if width == 1 { Radix::Bin } else { Radix::Dec },
    })
}

/// Sized signed decimal literal, e.g. `lit_s(8, 5)` is `8'sd5`. Negative
/// values are written as `-lit_s(8, 5)` so the text stays readable.
pub fn lit_s(width: u32, value: u64) -> Expr {
    Expr::Lit(Lit {
        width: Some(width),
        value,
        signed: true,
        radix: Radix::Dec,
    })
}

/// Sized unsigned hex literal, e.g. `hex(16, 0xbeef)` is `16'hbeef`.
pub fn hex(width: u32, value: u64) -> Expr {
    Expr::Lit(Lit {
        width: Some(width),
        value,
        signed: false,
        radix: Radix::Hex,
    })
}

/// Unsized decimal literal (`5`), the natural form for parameter arithmetic.
pub fn int(value: u64) -> Expr {
    Expr::Lit(Lit {
        width: None,
        value,
        signed: false,
        radix: Radix::Dec,
    })
}

/// `"text"`: a string parameter value (vendor primitives such as the ECP5 PLL). `text`
/// must not contain `"` or `\\`.
pub fn string(text: impl Into<String>) -> Expr {
    let t = text.into();
    assert!(!t.contains(['"', '\\']), "string literal {t:?}");
    Expr::Str(t)
}

/// `$clog2(x)`: address bits of a memory whose depth is a parameter.
pub fn clog2(x: impl Into<Expr>) -> Expr {
    Expr::Clog2(Box::new(x.into()))
}

/// `{a, b, ...}`
pub fn cat(parts: impl IntoIterator<Item = Expr>) -> Expr {
    Expr::Concat(parts.into_iter().collect())
}

/// `{count{parts}}`
pub fn repl(count: impl Into<Expr>, parts: impl IntoIterator<Item = Expr>) -> Expr {
    Expr::Repl {
        count: Box::new(count.into()),
        parts: parts.into_iter().collect(),
    }
}

/// `{width{1'b0}}`: an all-zero value of a parameterised width. Verilog-2005
/// has no `'0`, and a sized literal cannot take a parameter as its size.
pub fn zeros(width: impl Into<Expr>) -> Expr {
    repl(width, [lit(1, 0)])
}

/// `cond ? a : b`
pub fn mux(cond: impl Into<Expr>, a: impl Into<Expr>, b: impl Into<Expr>) -> Expr {
    Expr::Ternary {
        cond: Box::new(cond.into()),
        then_: Box::new(a.into()),
        else_: Box::new(b.into()),
    }
}

/// Value of an unsized, unsigned decimal literal (the form [`int`] builds).
fn small_int(e: &Expr) -> Option<u64> {
    match e {
        Expr::Lit(Lit {
            width: None,
            value,
            signed: false,
            ..
        }) => Some(*value),
        _ => None,
    }
}

/// Build a binary expression. Identities and arithmetic on unsized
/// literals are folded (`x + 0`, `1 * x`, `0 * C`, `2 + 3`) so index helpers
/// used at the edges of generate loops do not leave `+ 0` in the text.
/// Sized literals are never folded: their width is meaningful.
fn bin(op: BinOp, a: impl Into<Expr>, b: impl Into<Expr>) -> Expr {
    let (a, b) = (a.into(), b.into());
    let (ka, kb) = (small_int(&a), small_int(&b));
    match (op, ka, kb) {
        (BinOp::Add, Some(x), Some(y)) => return int(x.saturating_add(y)),
        (BinOp::Sub, Some(x), Some(y)) if x >= y => return int(x - y),
        (BinOp::Mul, Some(x), Some(y)) => return int(x.saturating_mul(y)),
        (BinOp::Add, Some(0), _) | (BinOp::Mul, Some(1), _) => return b,
        (BinOp::Add | BinOp::Sub, _, Some(0)) | (BinOp::Mul, _, Some(1)) => return a,
        (BinOp::Mul, Some(0), _) | (BinOp::Mul, _, Some(0)) => return int(0),
        _ => {}
    }
    Expr::Binary(op, Box::new(a), Box::new(b))
}

impl Expr {
    /// `self[i]`
    pub fn idx(&self, i: impl Into<Expr>) -> Expr {
        Expr::Index {
            base: Box::new(self.clone()),
            index: Box::new(i.into()),
        }
    }
    /// `self[hi:lo]`
    pub fn slice(&self, hi: impl Into<Expr>, lo: impl Into<Expr>) -> Expr {
        Expr::Slice {
            base: Box::new(self.clone()),
            hi: Box::new(hi.into()),
            lo: Box::new(lo.into()),
        }
    }
    /// `self[start +: width]`
    pub fn part(&self, start: impl Into<Expr>, width: impl Into<Expr>) -> Expr {
        Expr::PartUp {
            base: Box::new(self.clone()),
            start: Box::new(start.into()),
            width: Box::new(width.into()),
        }
    }
    /// `$signed(self)`
    pub fn signed(self) -> Expr {
        Expr::Signed(Box::new(self))
    }
    /// `$unsigned(self)`
    pub fn unsigned(self) -> Expr {
        Expr::Unsigned(Box::new(self))
    }
    pub fn eq_(self, o: impl Into<Expr>) -> Expr {
        bin(BinOp::Eq, self, o)
    }
    pub fn ne_(self, o: impl Into<Expr>) -> Expr {
        bin(BinOp::Ne, self, o)
    }
    pub fn lt_(self, o: impl Into<Expr>) -> Expr {
        bin(BinOp::Lt, self, o)
    }
    pub fn le_(self, o: impl Into<Expr>) -> Expr {
        bin(BinOp::Le, self, o)
    }
    pub fn gt_(self, o: impl Into<Expr>) -> Expr {
        bin(BinOp::Gt, self, o)
    }
    pub fn ge_(self, o: impl Into<Expr>) -> Expr {
        bin(BinOp::Ge, self, o)
    }
    /// `self && o`
    pub fn land(self, o: impl Into<Expr>) -> Expr {
        bin(BinOp::LAnd, self, o)
    }
    /// `self || o`
    pub fn lor(self, o: impl Into<Expr>) -> Expr {
        bin(BinOp::LOr, self, o)
    }
    /// `!self`
    pub fn lnot(self) -> Expr {
        Expr::Unary(UnOp::LNot, Box::new(self))
    }
    /// `self <<< o`
    pub fn ashl(self, o: impl Into<Expr>) -> Expr {
        bin(BinOp::AShl, self, o)
    }
    /// `self >>> o` (sign-filling only if `self` is signed, as in Verilog)
    pub fn ashr(self, o: impl Into<Expr>) -> Expr {
        bin(BinOp::AShr, self, o)
    }
    pub fn red_and(self) -> Expr {
        Expr::Unary(UnOp::RedAnd, Box::new(self))
    }
    pub fn red_or(self) -> Expr {
        Expr::Unary(UnOp::RedOr, Box::new(self))
    }
    pub fn red_xor(self) -> Expr {
        Expr::Unary(UnOp::RedXor, Box::new(self))
    }
    /// `self ? a : b`
    pub fn select(self, a: impl Into<Expr>, b: impl Into<Expr>) -> Expr {
        mux(self, a, b)
    }
    /// Sign-extend a `from`-bit signal to `to` bits:
    /// `$signed({{(to-from){self[from-1]}}, self})`.
    ///
    /// Spelled out because Verilator -Wall flags implicit extension
    /// (WIDTHEXPAND) and because the sign bit must be a select of a name.
    /// `to` must be strictly greater than `from` (a zero replication count is
    /// illegal in Verilog-2005).
    pub fn sext(&self, from: impl Into<Expr>, to: impl Into<Expr>) -> Expr {
        let from = from.into();
        let to = to.into();
        let sign = self.idx(from.clone() - 1);
        cat([repl(to - from, [sign]), self.clone()]).signed()
    }
}

impl From<&str> for Expr {
    fn from(s: &str) -> Self {
        id(s)
    }
}
impl From<String> for Expr {
    fn from(s: String) -> Self {
        Expr::Id(s)
    }
}
impl From<&Expr> for Expr {
    fn from(e: &Expr) -> Self {
        e.clone()
    }
}
impl From<u32> for Expr {
    fn from(v: u32) -> Self {
        int(v.into())
    }
}
impl From<u64> for Expr {
    fn from(v: u64) -> Self {
        int(v)
    }
}
impl From<usize> for Expr {
    fn from(v: usize) -> Self {
        int(v as u64)
    }
}
impl From<i32> for Expr {
    fn from(v: i32) -> Self {
        if v < 0 {
            Expr::Unary(UnOp::Neg, Box::new(int(v.unsigned_abs().into())))
        } else {
            int(v as u64)
        }
    }
}

macro_rules! binop_traits {
    ($($tr:ident $m:ident $op:ident;)*) => {$(
        impl<T: Into<Expr>> std::ops::$tr<T> for Expr {
            type Output = Expr;
            fn $m(self, rhs: T) -> Expr { bin(BinOp::$op, self, rhs) }
        }
        impl<T: Into<Expr>> std::ops::$tr<T> for &Expr {
            type Output = Expr;
            fn $m(self, rhs: T) -> Expr { bin(BinOp::$op, self.clone(), rhs) }
        }
    )*};
}
binop_traits! {
    Add add Add;
    Sub sub Sub;
    Mul mul Mul;
    Div div Div;
    Rem rem Mod;
    BitAnd bitand And;
    BitOr bitor Or;
    BitXor bitxor Xor;
    Shl shl Shl;
    Shr shr Shr;
}

macro_rules! int_lhs_traits {
    ($($tr:ident $m:ident $op:ident;)*) => {$(
        impl std::ops::$tr<Expr> for i32 {
            type Output = Expr;
            fn $m(self, rhs: Expr) -> Expr { bin(BinOp::$op, self, rhs) }
        }
        impl std::ops::$tr<&Expr> for i32 {
            type Output = Expr;
            fn $m(self, rhs: &Expr) -> Expr { bin(BinOp::$op, self, rhs) }
        }
    )*};
}
int_lhs_traits! {
    Add add Add;
    Sub sub Sub;
    Mul mul Mul;
}

impl std::ops::Not for Expr {
    type Output = Expr;
    fn not(self) -> Expr {
        Expr::Unary(UnOp::Not, Box::new(self))
    }
}
impl std::ops::Not for &Expr {
    type Output = Expr;
    fn not(self) -> Expr {
        !self.clone()
    }
}
impl std::ops::Neg for Expr {
    type Output = Expr;
    fn neg(self) -> Expr {
        Expr::Unary(UnOp::Neg, Box::new(self))
    }
}
impl std::ops::Neg for &Expr {
    type Output = Expr;
    fn neg(self) -> Expr {
        -self.clone()
    }
}

// ---------------------------------------------------------------- declarations

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dir {
    In,
    Out,
}

/// Net kind. Verilog-2005 distinguishes what may be driven by `assign`
/// (wire) from what may be assigned in `always` (reg); the checker enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetKind {
    Wire,
    Reg,
}

/// `parameter NAME = default` (or `localparam`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    pub default: Expr,
}

/// An ANSI port. A width of unsized literal `1` is emitted without a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub name: String,
    pub dir: Dir,
    pub width: Expr,
    pub signed: bool,
    pub kind: NetKind,
}

/// `wire`/`reg` declaration. `dims` are unpacked array sizes, each emitted
/// as `[0:N-1]` (register files, per-lane arrays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decl {
    pub name: String,
    pub kind: NetKind,
    pub width: Expr,
    pub signed: bool,
    pub dims: Vec<Expr>,
}

/// `reg [W-1:0] name [0:DEPTH-1]`, optionally loaded by `$readmemh(init)`
/// in an `initial` block: the portable way to give a ROM its table so that
/// both Verilator and yosys (which infers a ROM) see the content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    pub name: String,
    pub width: Expr,
    pub depth: Expr,
    pub signed: bool,
    pub init: Option<String>,
    /// Synthesis attributes emitted as `(* a *)` before the declaration (e.g. `no_rw_check`).
    #[serde(default)]
    pub attrs: Vec<String>,
}

/// Sensitivity of an `always` block. Only the two synthesizable forms that
/// dfforge uses exist: synchronous logic on one clock, and combinational.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sensitivity {
    /// `always @(posedge clk)`
    Posedge(String),
    /// `always @*`
    Comb,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Always {
    pub sens: Sensitivity,
    pub body: Vec<Stmt>,
    /// Synthesis attributes emitted as `(* a *)` before the block: `keep` stops yosys
    /// merging the block's registers with equal ones elsewhere (replicated control).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attrs: Vec<String>,
}

/// `always @(posedge clock)` with `body` and synthesis attributes `attrs`.
fn clocked(clock: impl Into<Expr>, body: Vec<Stmt>, attrs: Vec<String>) -> Item {
    let clock = match clock.into() {
        Expr::Id(n) => n,
        other => panic!("clock must be a plain name, got {other:?}"),
    };
    Item::Always(Always {
        sens: Sensitivity::Posedge(clock),
        body,
        attrs,
    })
}

/// A module instance with named parameter overrides and named connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub module: String,
    pub name: String,
    pub params: Vec<(String, Expr)>,
    pub conns: Vec<(String, Expr)>,
    /// A module with the same ports and parameters that simulators instantiate instead:
    /// the instance is emitted in `` `ifdef SYNTHESIS `` (which yosys defines), `module`
    /// for synthesis, `sim_module` otherwise. For a vendor primitive's wrapper beside its
    /// behavioural model.
    #[serde(default)]
    pub sim_module: Option<String>,
}

impl Instance {
    pub fn new(module: impl Into<String>, name: impl Into<String>) -> Self {
        Instance {
            module: module.into(),
            name: name.into(),
            params: Vec::new(),
            conns: Vec::new(),
            sim_module: None,
        }
    }
    /// Simulate `module` instead of this instance's module (see [`Instance::sim_module`]).
    pub fn sim_module(mut self, module: impl Into<String>) -> Self {
        self.sim_module = Some(module.into());
        self
    }
    /// `.name(value)` in the `#(...)` list.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<Expr>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }
    /// `.port(expr)` in the port list.
    pub fn conn(mut self, port: impl Into<String>, e: impl Into<Expr>) -> Self {
        self.conns.push((port.into(), e.into()));
        self
    }
}

/// `for (var = start; var < limit; var = var + 1) begin : label ... end`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenFor {
    pub var: String,
    pub start: Expr,
    pub limit: Expr,
    pub label: String,
    pub items: Vec<Item>,
}

/// A labelled generate block (`begin : label ... end`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenBlock {
    pub label: String,
    pub items: Vec<Item>,
}

/// `if (cond) begin : a ... end else begin : b ... end`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenIf {
    pub cond: Expr,
    pub then_: GenBlock,
    pub else_: Option<GenBlock>,
}

/// A module item. Declarations may appear anywhere in a scope; the emitter
/// hoists them to the top of their scope so use-before-declaration never
/// reaches the Verilog text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Item {
    Decl(Decl),
    Memory(Memory),
    Integer(String),
    Genvar(String),
    Assign { lhs: Expr, rhs: Expr },
    Always(Always),
    Instance(Instance),
    GenFor(GenFor),
    GenIf(GenIf),
    Comment(String),
}

impl Item {
    pub fn is_decl(&self) -> bool {
        matches!(
            self,
            Item::Decl(_) | Item::Memory(_) | Item::Integer(_) | Item::Genvar(_)
        )
    }
}

/// One arm of a `case`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseArm {
    pub labels: Vec<Expr>,
    pub body: Vec<Stmt>,
}

/// Procedural statements inside `always`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stmt {
    /// `lhs = rhs;`
    Blocking {
        lhs: Expr,
        rhs: Expr,
    },
    /// `lhs <= rhs;`
    NonBlocking {
        lhs: Expr,
        rhs: Expr,
    },
    If {
        cond: Expr,
        then_: Vec<Stmt>,
        else_: Vec<Stmt>,
    },
    /// `case` always carries a `default` arm: Verilator -Wall warns
    /// (CASEINCOMPLETE) otherwise, and it prevents latches in `always @*`.
    Case {
        subject: Expr,
        arms: Vec<CaseArm>,
        default: Vec<Stmt>,
    },
    /// `for (var = start; var < limit; var = var + 1)`, `var` an `integer`.
    For {
        var: String,
        start: Expr,
        limit: Expr,
        body: Vec<Stmt>,
    },
    Comment(String),
}

/// `lhs = rhs;` (blocking; for `always @*`).
pub fn set(lhs: impl Into<Expr>, rhs: impl Into<Expr>) -> Stmt {
    Stmt::Blocking {
        lhs: lhs.into(),
        rhs: rhs.into(),
    }
}

/// `lhs <= rhs;` (non-blocking; for clocked blocks).
pub fn nb(lhs: impl Into<Expr>, rhs: impl Into<Expr>) -> Stmt {
    Stmt::NonBlocking {
        lhs: lhs.into(),
        rhs: rhs.into(),
    }
}

/// `if (cond) begin ... end`; chain `.else_(..)` / `.else_if(..)`.
pub fn if_(cond: impl Into<Expr>, then_: Vec<Stmt>) -> Stmt {
    Stmt::If {
        cond: cond.into(),
        then_,
        else_: Vec::new(),
    }
}

/// `case (subject) ... default: ... endcase`
pub fn case(subject: impl Into<Expr>, arms: Vec<CaseArm>, default: Vec<Stmt>) -> Stmt {
    Stmt::Case {
        subject: subject.into(),
        arms,
        default,
    }
}

/// One case arm with a single label.
pub fn arm(label: impl Into<Expr>, body: Vec<Stmt>) -> CaseArm {
    CaseArm {
        labels: vec![label.into()],
        body,
    }
}

/// `for (var = start; var < limit; var = var + 1) begin ... end`
pub fn for_(
    var: impl Into<String>,
    start: impl Into<Expr>,
    limit: impl Into<Expr>,
    body: Vec<Stmt>,
) -> Stmt {
    Stmt::For {
        var: var.into(),
        start: start.into(),
        limit: limit.into(),
        body,
    }
}

impl Stmt {
    /// Attach an else branch to the innermost open `if` of an if/else-if chain.
    pub fn else_(mut self, body: Vec<Stmt>) -> Stmt {
        let mut cur = &mut self;
        loop {
            match cur {
                Stmt::If { else_, .. } => {
                    if else_.len() == 1 && matches!(else_[0], Stmt::If { .. }) {
                        cur = &mut else_[0];
                    } else {
                        assert!(else_.is_empty(), "else_ on an if that already has one");
                        *else_ = body;
                        return self;
                    }
                }
                _ => panic!("else_ called on a statement that is not an if"),
            }
        }
    }
    /// Append `else if (cond) begin ... end` to an if/else-if chain.
    pub fn else_if(self, cond: impl Into<Expr>, body: Vec<Stmt>) -> Stmt {
        self.else_(vec![if_(cond, body)])
    }
}

// ---------------------------------------------------------------- scopes

/// Anything that holds items: a module body or a generate block. The default
/// methods return the declared name as an [`Expr`] so it can be used right away.
pub trait Scope {
    fn items_mut(&mut self) -> &mut Vec<Item>;

    fn push(&mut self, item: Item) {
        self.items_mut().push(item);
    }
    /// Add the synthesis attribute `attr` to the memory `name` declared in this scope.
    fn memory_attr(&mut self, name: &str, attr: &str) {
        for it in self.items_mut().iter_mut() {
            if let Item::Memory(mem) = it {
                if mem.name == name {
                    mem.attrs.push(attr.to_string());
                }
            }
        }
    }
    fn decl(&mut self, d: Decl) -> Expr {
        let e = id(&d.name);
        self.push(Item::Decl(d));
        e
    }
    /// `wire [width-1:0] name;`
    fn wire(&mut self, name: &str, width: impl Into<Expr>) -> Expr {
        self.decl(Decl {
            name: name.into(),
            kind: NetKind::Wire,
            width: width.into(),
            signed: false,
            dims: vec![],
        })
    }
    /// `wire signed [width-1:0] name;`
    fn wire_s(&mut self, name: &str, width: impl Into<Expr>) -> Expr {
        self.decl(Decl {
            name: name.into(),
            kind: NetKind::Wire,
            width: width.into(),
            signed: true,
            dims: vec![],
        })
    }
    /// `reg [width-1:0] name;`
    fn reg(&mut self, name: &str, width: impl Into<Expr>) -> Expr {
        self.decl(Decl {
            name: name.into(),
            kind: NetKind::Reg,
            width: width.into(),
            signed: false,
            dims: vec![],
        })
    }
    /// `reg signed [width-1:0] name;`
    fn reg_s(&mut self, name: &str, width: impl Into<Expr>) -> Expr {
        self.decl(Decl {
            name: name.into(),
            kind: NetKind::Reg,
            width: width.into(),
            signed: true,
            dims: vec![],
        })
    }
    /// `reg [width-1:0] name [0:depth-1];` with optional `$readmemh(init)`.
    fn memory(
        &mut self,
        name: &str,
        width: impl Into<Expr>,
        depth: impl Into<Expr>,
        init: Option<&str>,
    ) -> Expr {
        self.push(Item::Memory(Memory {
            name: name.into(),
            width: width.into(),
            depth: depth.into(),
            signed: false,
            init: init.map(Into::into),
            attrs: Vec::new(),
        }));
        id(name)
    }
    /// `integer name;` (loop variables of procedural `for`).
    fn integer(&mut self, name: &str) -> Expr {
        self.push(Item::Integer(name.into()));
        id(name)
    }
    /// `genvar name;`
    fn genvar(&mut self, name: &str) -> Expr {
        self.push(Item::Genvar(name.into()));
        id(name)
    }
    /// `assign lhs = rhs;`
    fn assign(&mut self, lhs: impl Into<Expr>, rhs: impl Into<Expr>) {
        self.push(Item::Assign {
            lhs: lhs.into(),
            rhs: rhs.into(),
        });
    }
    /// `always @(posedge clock) begin ... end`
    fn always_ff(&mut self, clock: impl Into<Expr>, body: Vec<Stmt>) {
        self.push(clocked(clock, body, Vec::new()));
    }
    /// `(* keep *) always @(posedge clock) begin ... end`: registers that copy a signal
    /// on purpose, one copy near each group of its readers, which yosys would otherwise
    /// merge back into one register with the fan-out (and the long wires) the copies
    /// exist to avoid.
    fn always_ff_keep(&mut self, clock: impl Into<Expr>, body: Vec<Stmt>) {
        self.push(clocked(clock, body, vec!["keep".to_string()]));
    }
    /// `always @* begin ... end`
    fn always_comb(&mut self, body: Vec<Stmt>) {
        self.push(Item::Always(Always {
            sens: Sensitivity::Comb,
            body,
            attrs: Vec::new(),
        }));
    }
    fn instance(&mut self, inst: Instance) {
        self.push(Item::Instance(inst));
    }
    fn comment(&mut self, text: &str) {
        self.push(Item::Comment(text.into()));
    }
    /// Generate loop `for (var = start; var < limit; var = var + 1) begin : label`.
    /// `var` must be declared with [`Scope::genvar`] in an enclosing scope.
    fn gen_for(
        &mut self,
        var: &str,
        start: impl Into<Expr>,
        limit: impl Into<Expr>,
        label: &str,
        body: impl FnOnce(&mut Vec<Item>, Expr),
    ) {
        let mut items = Vec::new();
        body(&mut items, id(var));
        self.push(Item::GenFor(GenFor {
            var: var.into(),
            start: start.into(),
            limit: limit.into(),
            label: label.into(),
            items,
        }));
    }
    /// Generate `if (cond) begin : label ... end` without an else branch.
    fn gen_if(&mut self, cond: impl Into<Expr>, label: &str, then_: impl FnOnce(&mut Vec<Item>)) {
        let mut items = Vec::new();
        then_(&mut items);
        self.push(Item::GenIf(GenIf {
            cond: cond.into(),
            then_: GenBlock {
                label: label.into(),
                items,
            },
            else_: None,
        }));
    }
    /// Generate `if (cond) begin : then_label ... end else begin : else_label ... end`.
    fn gen_if_else(
        &mut self,
        cond: impl Into<Expr>,
        then_label: &str,
        then_: impl FnOnce(&mut Vec<Item>),
        else_label: &str,
        else_: impl FnOnce(&mut Vec<Item>),
    ) {
        let mut t = Vec::new();
        then_(&mut t);
        let mut e = Vec::new();
        else_(&mut e);
        self.push(Item::GenIf(GenIf {
            cond: cond.into(),
            then_: GenBlock {
                label: then_label.into(),
                items: t,
            },
            else_: Some(GenBlock {
                label: else_label.into(),
                items: e,
            }),
        }));
    }
}

impl Scope for Vec<Item> {
    fn items_mut(&mut self) -> &mut Vec<Item> {
        self
    }
}

// ---------------------------------------------------------------- module

/// One Verilog module; emitted as one file (`<name>.v`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    pub name: String,
    /// Free text put in the header comment: say what the module is for.
    pub doc: String,
    pub params: Vec<Param>,
    pub localparams: Vec<Param>,
    pub ports: Vec<Port>,
    pub items: Vec<Item>,
}

impl Scope for Module {
    fn items_mut(&mut self) -> &mut Vec<Item> {
        &mut self.items
    }
}

impl Module {
    pub fn new(name: impl Into<String>) -> Self {
        Module {
            name: name.into(),
            doc: String::new(),
            params: vec![],
            localparams: vec![],
            ports: vec![],
            items: vec![],
        }
    }
    /// Set the header documentation (builder style).
    pub fn doc(mut self, doc: impl Into<String>) -> Self {
        self.doc = doc.into();
        self
    }
    /// `parameter name = default`; returns the reference.
    pub fn param(&mut self, name: &str, default: impl Into<Expr>) -> Expr {
        self.params.push(Param {
            name: name.into(),
            default: default.into(),
        });
        id(name)
    }
    /// `localparam name = value`; returns the reference.
    pub fn localparam(&mut self, name: &str, value: impl Into<Expr>) -> Expr {
        self.localparams.push(Param {
            name: name.into(),
            default: value.into(),
        });
        id(name)
    }
    pub fn port(&mut self, p: Port) -> Expr {
        let e = id(&p.name);
        self.ports.push(p);
        e
    }
    fn add_port(&mut self, name: &str, dir: Dir, kind: NetKind, signed: bool, width: Expr) -> Expr {
        self.port(Port {
            name: name.into(),
            dir,
            width,
            signed,
            kind,
        })
    }
    /// `input wire [width-1:0] name`
    pub fn input(&mut self, name: &str, width: impl Into<Expr>) -> Expr {
        self.add_port(name, Dir::In, NetKind::Wire, false, width.into())
    }
    /// `input wire signed [width-1:0] name`
    pub fn input_s(&mut self, name: &str, width: impl Into<Expr>) -> Expr {
        self.add_port(name, Dir::In, NetKind::Wire, true, width.into())
    }
    /// `output wire [width-1:0] name`
    pub fn output(&mut self, name: &str, width: impl Into<Expr>) -> Expr {
        self.add_port(name, Dir::Out, NetKind::Wire, false, width.into())
    }
    /// `output wire signed [width-1:0] name`
    pub fn output_s(&mut self, name: &str, width: impl Into<Expr>) -> Expr {
        self.add_port(name, Dir::Out, NetKind::Wire, true, width.into())
    }
    /// `output reg [width-1:0] name`
    pub fn output_reg(&mut self, name: &str, width: impl Into<Expr>) -> Expr {
        self.add_port(name, Dir::Out, NetKind::Reg, false, width.into())
    }
    /// `output reg signed [width-1:0] name`
    pub fn output_reg_s(&mut self, name: &str, width: impl Into<Expr>) -> Expr {
        self.add_port(name, Dir::Out, NetKind::Reg, true, width.into())
    }
    pub fn find_port(&self, name: &str) -> Option<&Port> {
        self.ports.iter().find(|p| p.name == name)
    }
}

/// Value of a constant expression of literals and the names bound in `env` (parameters,
/// genvars); `None` if it reads anything else or overflows.
pub fn eval_const(e: &Expr, env: &std::collections::HashMap<String, i64>) -> Option<i64> {
    Some(match e {
        Expr::Lit(l) => i64::try_from(l.value).ok()?,
        Expr::Id(n) => *env.get(n)?,
        Expr::Signed(x) | Expr::Unsigned(x) => eval_const(x, env)?,
        Expr::Unary(op, x) => {
            let x = eval_const(x, env)?;
            match op {
                UnOp::Neg => x.checked_neg()?,
                UnOp::LNot => i64::from(x == 0),
                _ => return None,
            }
        }
        Expr::Clog2(x) => {
            let x = eval_const(x, env)?;
            if x <= 1 {
                0
            } else {
                64 - i64::from((x - 1).leading_zeros())
            }
        }
        Expr::Ternary { cond, then_, else_ } => {
            if eval_const(cond, env)? != 0 {
                eval_const(then_, env)?
            } else {
                eval_const(else_, env)?
            }
        }
        Expr::Binary(op, a, b) => {
            let (a, b) = (eval_const(a, env)?, eval_const(b, env)?);
            match op {
                BinOp::Add => a.checked_add(b)?,
                BinOp::Sub => a.checked_sub(b)?,
                BinOp::Mul => a.checked_mul(b)?,
                BinOp::Div => a.checked_div(b)?,
                BinOp::Mod => a.checked_rem(b)?,
                BinOp::Shl | BinOp::AShl => a.checked_shl(u32::try_from(b).ok()?)?,
                BinOp::Shr | BinOp::AShr => a.checked_shr(u32::try_from(b).ok()?)?,
                BinOp::Eq => i64::from(a == b),
                BinOp::Ne => i64::from(a != b),
                BinOp::Lt => i64::from(a < b),
                BinOp::Le => i64::from(a <= b),
                BinOp::Gt => i64::from(a > b),
                BinOp::Ge => i64::from(a >= b),
                BinOp::LAnd => i64::from(a != 0 && b != 0),
                BinOp::LOr => i64::from(a != 0 || b != 0),
                BinOp::And => a & b,
                BinOp::Or => a | b,
                BinOp::Xor => a ^ b,
            }
        }
        _ => return None,
    })
}
