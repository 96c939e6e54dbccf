//! Shared datapath snippets of the unit generators: extension, the rounding shifter and the
//! saturation unit, each emitted as named wires so the Verilog reads like the golden model
//! (`crate::fixed::ops`).

use crate::fixed::{QFormat, Rounding};
use crate::hdl::*;

/// A named value and its width/signedness (what the snippets need to extend it correctly).
#[derive(Clone, Debug)]
pub struct Sig {
    pub e: Expr,
    pub w: u32,
    pub signed: bool,
}

impl Sig {
    pub fn new(e: impl Into<Expr>, w: u32, signed: bool) -> Sig {
        Sig {
            e: e.into(),
            w,
            signed,
        }
    }
}

/// Bits of an unsigned integer holding `v`.
pub fn bitlen(v: u128) -> u32 {
    (128 - v.leading_zeros()).max(1)
}

/// Sign/zero extension of a plain name `x` (`w` bits) to `to` bits, as a signed expression.
pub fn ext(x: &Sig, to: u32) -> Expr {
    assert!(to >= x.w, "cannot extend {} bits to {to}", x.w);
    let fill = if x.signed {
        x.e.idx(x.w - 1)
    } else {
        lit(1, 0)
    };
    if to == x.w {
        if x.signed {
            x.e.clone()
        } else {
            x.e.clone().signed()
        }
    } else if to == x.w + 1 {
        cat([fill, x.e.clone()]).signed()
    } else {
        cat([repl(int(u64::from(to - x.w)), [fill]), x.e.clone()]).signed()
    }
}

/// A signed `w`-bit literal of value `v` (negative values as `-W'sdN`).
pub fn slit(w: u32, v: i128) -> Expr {
    if v < 0 {
        -lit_s(w, v.unsigned_abs() as u64)
    } else {
        lit_s(w, v as u64)
    }
}

/// An unsigned `w`-bit literal holding the two's complement bits of `v`.
pub fn ulit(w: u32, v: i64) -> Expr {
    let mask = if w >= 64 { u64::MAX } else { (1u64 << w) - 1 };
    hex(w, (v as u64) & mask)
}

/// Saturation unit: clip the signed wire `q` (`q.w` bits, `q.w > fmt.bits`) to `fmt`;
/// declares `name` (`fmt.bits` wide, signed if `fmt` is).
pub fn saturate(m: &mut Module, name: &str, q: &Sig, fmt: QFormat) -> Sig {
    assert!(q.signed && q.w > fmt.bits);
    let y = if fmt.signed {
        m.wire_s(name, fmt.bits)
    } else {
        m.wire(name, fmt.bits)
    };
    let b = fmt.bits;
    let w = q.w;
    let plain = if fmt.signed {
        (2..=63).contains(&b)
    } else {
        (1..=62).contains(&b)
    };
    let e = if plain {
        // Range checks as bit tests, not comparators: a comparator is a carry chain in
        // series with the one that made `q`. Signed: q fits iff its top w − b + 1 bits
        // agree. Unsigned: q < 0 iff its sign is set, q > max iff a bit in [w−2 : b] is.
        let sign = q.e.idx(w - 1);
        if fmt.signed {
            let top = q.e.slice(w - 1, b - 1);
            let fits = top.clone().red_and().lor(top.red_or().lnot());
            mux(
                fits,
                q.e.slice(b - 1, 0),
                mux(sign, ulit(b, fmt.min()), ulit(b, fmt.max())),
            )
        } else {
            let over = if w - 1 > b {
                q.e.slice(w - 2, b).red_or()
            } else {
                lit(1, 0)
            };
            mux(
                sign,
                ulit(b, fmt.min()),
                mux(over, ulit(b, fmt.max()), q.e.slice(b - 1, 0)),
            )
        }
    } else {
        let lo = slit(q.w, i128::from(fmt.min()));
        let hi = slit(q.w, i128::from(fmt.max()));
        mux(
            q.e.clone().lt_(lo),
            ulit(fmt.bits, fmt.min()),
            mux(
                q.e.clone().gt_(hi),
                ulit(fmt.bits, fmt.max()),
                q.e.slice(fmt.bits - 1, 0),
            ),
        )
    };
    m.assign(&y, e);
    Sig::new(y, fmt.bits, fmt.signed)
}

/// Rounding shifter ([`crate::fixed::ops::shift_round`] / `rescale_wide`): moves `x` from
/// `from` to `to` fraction bits, exact left shift or rounding right shift with `mode`;
/// `rnd` must be exactly `from - to` bits wide for stochastic rounding. Returns a signed wire
/// at least `min_w` bits wide that holds the result exactly.
#[allow(clippy::too_many_arguments)]
pub fn rescale(
    m: &mut Module,
    name: &str,
    x: &Sig,
    from: u32,
    to: u32,
    mode: Rounding,
    rnd: Option<&Expr>,
    min_w: u32,
) -> Sig {
    if to >= from {
        let d = to - from;
        let w = (x.w + 1 + d).max(min_w);
        let q = m.wire_s(&format!("{name}_q"), w);
        let sh = if d == 0 {
            ext(x, w)
        } else {
            let t = m.wire_s(&format!("{name}_sh"), x.w + 1 + d);
            m.assign(&t, cat([ext(x, x.w + 1), lit(d, 0)]));
            ext(&Sig::new(t, x.w + 1 + d, true), w)
        };
        m.assign(&q, sh);
        return Sig::new(q, w, true);
    }
    let s = from - to;
    assert!(s <= 64, "rounding shift {s} > 64 not supported");
    let w = (x.w + 1).max(s + 2).max(min_w) + 1;
    let sum = m.wire_s(&format!("{name}_sum"), w);
    let addend = match mode {
        Rounding::Truncate => None,
        Rounding::HalfUp => Some(lit_s(w, 1u64 << (s - 1))),
        Rounding::Stochastic => {
            let r = rnd.expect("stochastic rounding needs random bits").clone();
            Some(cat([lit(w - s, 0), r]).signed())
        }
    };
    match addend {
        Some(a) => m.assign(&sum, ext(x, w) + a),
        None => m.assign(&sum, ext(x, w)),
    }
    let q = m.wire_s(&format!("{name}_q"), w);
    m.assign(&q, sum.ashr(int(u64::from(s))));
    Sig::new(q, w, true)
}

/// Requantiser ([`crate::fixed::ops::requantize`]): [`rescale`] then [`saturate`] to `to`.
#[allow(clippy::too_many_arguments)]
pub fn requant(
    m: &mut Module,
    name: &str,
    x: &Sig,
    from: u32,
    to: QFormat,
    mode: Rounding,
    rnd: Option<&Expr>,
) -> Sig {
    let q = rescale(m, name, x, from, to.frac, mode, rnd, to.bits + 1);
    saturate(m, &format!("{name}_y"), &q, to)
}

/// `always @(posedge clk_i)` with synchronous reset of `resets` and plain updates `body`.
pub fn ff(m: &mut Module, resets: Vec<(Expr, u32)>, body: Vec<Stmt>) {
    let clk = id("clk_i");
    let rst: Vec<Stmt> = resets.into_iter().map(|(r, w)| nb(r, zeros(w))).collect();
    m.always_ff(&clk, vec![if_(id("rst_i"), rst).else_(body)]);
}

/// The other deterministic rounding mode (mutation tests: a unit that rounds the wrong way).
pub fn flip(mode: Rounding) -> Rounding {
    match mode {
        Rounding::HalfUp => Rounding::Truncate,
        _ => Rounding::HalfUp,
    }
}

/// Exact product of `a` and `b` in [`crate::arch::schedule::mul_stages`] register stages
/// after the operands: every pair of operand pieces (17-bit unsigned low pieces, a signed
/// top piece of at most 18 bits) is one registered 18×18 signed multiply (one MULT18X18D),
/// then the shifted partial products are summed by a tree of registered two-input adds.
/// Yosys does not pipeline the adds of a wide multiply it splits itself, which puts a DSP
/// and a long carry chain in one cycle; this keeps each stage to one of them.
/// The operands should be registers. Returns the signed product register.
pub fn mul_pipelined(m: &mut Module, name: &str, a: &Sig, b: &Sig) -> Sig {
    mul_operands(m, name, Operand::Sig(a), Operand::Sig(b))
}

/// [`mul_pipelined`] by the constant `c` of `cw` signed bits: the same stages (so the
/// same latency), but a piece of the constant that is zero costs no multiplier.
pub fn mul_const_pipelined(m: &mut Module, name: &str, a: &Sig, c: i128, cw: u32) -> Sig {
    assert!(
        cw < 127 && c >= -(1i128 << (cw - 1)) && c < (1i128 << (cw - 1)),
        "{c} does not fit {cw} signed bits"
    );
    mul_operands(m, name, Operand::Sig(a), Operand::Const { value: c, w: cw })
}

#[derive(Clone, Copy)]
enum Operand<'a> {
    Sig(&'a Sig),
    Const { value: i128, w: u32 },
}

/// One 18-bit piece of an operand.
#[derive(Clone)]
enum Piece {
    /// A signed 18-bit wire.
    Wire(Expr),
    /// One unsigned bit (an unsigned operand's top bit): a 1×18 product is a select, not a
    /// multiplier; writing it as one keeps yosys from spending a MULT18X18D on it, and the
    /// census from counting one.
    Bit(Expr),
    /// A piece of a constant.
    Const(i64),
}

fn mul_operands(m: &mut Module, name: &str, a: Operand, b: Operand) -> Sig {
    let pieces = |m: &mut Module, tag: &str, x: Operand| -> Vec<(Piece, u32)> {
        let (xw, signed) = match x {
            Operand::Sig(s) => (s.w, s.signed),
            Operand::Const { w, .. } => (w, true),
        };
        let ws = xw + u32::from(!signed);
        let n = crate::arch::schedule::mul_pieces(ws);
        let mut out = Vec::new();
        for i in 0..n {
            let lo = 17 * i;
            let top = i + 1 == n;
            let x = match x {
                Operand::Const { value, .. } => {
                    // Low pieces: 17 unsigned bits; the top piece: the rest, signed.
                    let v = if top {
                        value >> lo
                    } else {
                        (value >> lo) & 0x1_ffff
                    };
                    out.push((Piece::Const(v as i64), lo));
                    continue;
                }
                Operand::Sig(x) => x,
            };
            if top && n > 1 && x.w - lo == 1 && !x.signed {
                let tw = m.wire(&format!("{name}_{tag}{i}_bit"), 1);
                m.assign(&tw, x.e.idx(lo));
                out.push((Piece::Bit(tw), lo));
                continue;
            }
            let w = m.wire_s(&format!("{name}_{tag}{i}"), 18);
            let e = if n == 1 {
                ext(x, 18)
            } else if !top {
                cat([lit(1, 0), x.e.slice(lo + 16, lo)]).signed()
            } else {
                // The top piece: the remaining bits, sign- (or zero-) extended.
                let t = Sig::new(x.e.slice(x.w - 1, lo), x.w - lo, x.signed);
                let tw = m.wire(&format!("{name}_{tag}{i}_bits"), x.w - lo);
                m.assign(&tw, t.e.clone());
                ext(&Sig::new(tw, x.w - lo, x.signed), 18)
            };
            m.assign(&w, e);
            out.push((Piece::Wire(w), lo));
        }
        out
    };
    let width_of = |x: Operand| match x {
        Operand::Sig(s) => s.w + u32::from(!s.signed),
        Operand::Const { w, .. } => w,
    };
    let ap = pieces(m, "a", a);
    let bp = pieces(m, "b", b);
    let width = width_of(a) + width_of(b);
    let clk = id("clk_i");
    let out = m.wire_s(&format!("{name}_prod"), width);
    let wide = |e: &Expr| ext(&Sig::new(e.clone(), 18, true), 36);
    // The 36-bit product of two pieces; `None` when it is the constant zero.
    let product = |pa: &Piece, pb: &Piece| -> Option<Expr> {
        use Piece::*;
        match (pa, pb) {
            (Const(0), _) | (_, Const(0)) => None,
            (Const(x), Const(y)) => Some(slit(36, i128::from(*x) * i128::from(*y))),
            (Bit(x), Bit(y)) => Some(ext(&Sig::new(x & y.clone(), 1, false), 36)),
            (Bit(x), Wire(w)) | (Wire(w), Bit(x)) => Some(mux(x.clone(), wide(w), lit_s(36, 0))),
            (Bit(x), Const(c)) | (Const(c), Bit(x)) => {
                Some(mux(x.clone(), slit(36, i128::from(*c)), lit_s(36, 0)))
            }
            (Wire(x), Wire(y)) => Some(x * y.clone()),
            (Wire(x), Const(c)) | (Const(c), Wire(x)) => Some(x * slit(18, i128::from(*c))),
        }
    };
    if ap.len() == 1 && bp.len() == 1 {
        let p = m.reg_s(&format!("{name}_p00_q"), 36);
        let e = product(&ap[0].0, &bp[0].0).unwrap_or_else(|| lit_s(36, 0));
        m.always_ff(&clk, vec![nb(&p, e)]);
        if width < 36 {
            // (Its top bits are copies of the sign.)
            let u = m.wire(&format!("unused_{name}_sign"), 1);
            m.assign(u, p.slice(35, width).red_xor());
            m.assign(&out, p.slice(width - 1, 0));
        } else {
            m.assign(&out, p);
        }
        return Sig::new(out, width, true);
    }
    // Partial sums of a subset of the products can exceed the product's range by one bit.
    let iw = width + 1;
    let mut level: Vec<Expr> = Vec::new();
    let mut body = Vec::new();
    for (i, pa) in ap.iter().enumerate() {
        for (j, pb) in bp.iter().enumerate() {
            let (sa, sb) = (pa.1, pb.1);
            let Some(e) = product(&pa.0, &pb.0) else {
                // A zero piece of a constant: no multiplier, no register; the adder tree
                // keeps its shape (and the latency its stage count).
                level.push(lit_s(iw, 0));
                continue;
            };
            let p = m.reg_s(&format!("{name}_p{i}{j}_q"), 36);
            body.push(nb(&p, e));
            let sh = sa + sb;
            // (Each partial product fits `iw` bits: when `iw` < 36 its top bits are copies
            // of the sign.)
            let e = if iw >= 36 {
                ext(&Sig::new(p, 36, true), iw)
            } else {
                let u = m.wire(&format!("unused_{name}_p{i}{j}_sign"), 1);
                m.assign(u, p.slice(35, iw).red_xor());
                p.slice(iw - 1, 0).signed()
            };
            level.push(if sh == 0 {
                e
            } else {
                e.ashl(int(u64::from(sh)))
            });
        }
    }
    m.always_ff(&clk, body);
    let mut lvl = 0;
    while level.len() > 1 {
        lvl += 1;
        let mut next = Vec::new();
        let mut body = Vec::new();
        for (k, pair) in level.chunks(2).enumerate() {
            let r = m.reg_s(&format!("{name}_s{lvl}_{k}_q"), iw);
            let sum = if pair.len() == 2 {
                pair[0].clone() + pair[1].clone()
            } else {
                pair[0].clone()
            };
            body.push(nb(&r, sum));
            next.push(r);
        }
        m.always_ff(&clk, body);
        level = next;
    }
    let last = level.pop().expect("one sum");
    m.assign(&out, last.slice(width - 1, 0));
    let u = m.wire(&format!("unused_{name}_sign"), 1);
    m.assign(u, last.idx(width));
    Sig::new(out, width, true)
}
