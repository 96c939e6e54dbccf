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
    let lo = slit(q.w, i128::from(fmt.min()));
    let hi = slit(q.w, i128::from(fmt.max()));
    m.assign(
        &y,
        mux(
            q.e.clone().lt_(lo),
            ulit(fmt.bits, fmt.min()),
            mux(
                q.e.clone().gt_(hi),
                ulit(fmt.bits, fmt.max()),
                q.e.slice(fmt.bits - 1, 0),
            ),
        ),
    );
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
