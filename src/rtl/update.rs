//! Local update unit: `w − round(g · η/B)` saturated to the parameter's format
//! ([`crate::fixed::ops::lr_update`]), with the stochastic-rounding bits from the Galois LFSR
//! of the golden model ([`crate::fixed::Lfsr`], stepped once per parameter, exactly as
//! `FixedDf::update` walks W, b, U). The engine instantiates one per weight bank, each
//! with the `SEED` of its lane ([`crate::fixed::lane_seeds`]). `kind_i` selects the
//! parameter: 0 = weight (gradient in `update`), 1 = bias, 2 = centroid (gradients in `delta`
//! fraction bits). The read-modify-write
//! sits on the weight BRAM's two ports: `w_i` is the registered read data, `w_o`/`v_o` the
//! write-back [`crate::arch::schedule::update_lat`] cycles later.

use super::util::*;
use super::Shape;
use crate::hdl::*;

/// `seed_flip` is a deliberate defect for the mutation test (LFSR seed with bit 1 flipped).
pub fn update(s: &Shape, seed_flip: bool) -> Module {
    let f = &s.f;
    let ww = s.param_w;
    let gw = f.update.bits;
    let lw = s.lr_w;
    let pw = gw + lw + 1;
    let width = f.lfsr_width;
    let taps = crate::fixed::default_taps(width).expect("validated LFSR width");
    let mut m = Module::new("dff_update").doc(format!(
        "Update: w - round(g * lr) ({:?}), {width}-bit Galois LFSR taps 0x{taps:x}\n\
         seeded SEED (default fixed.lfsr_seed {}; the engine's lanes override it).",
        f.update_rounding, f.lfsr_seed
    ));
    let seed_p = m.param("SEED", hex(width, f.lfsr_seed));
    m.input("clk_i", 1);
    m.input("rst_i", 1);
    let w_i = m.input_s("w_i", ww);
    let g_i = m.input_s("g_i", gw);
    let kind_i = m.input("kind_i", 2);
    let v_i = m.input("v_i", 1);
    let lr_i = m.input("lr_i", lw);
    let w_o = m.output_s("w_o", ww);
    let v_o = m.output("v_o", 1);
    let lfsr_q = m.reg("lfsr_q", width);
    let nxt = m.wire("lfsr_next", width);
    m.comment("Galois LFSR: shift right, xor the taps when the bit shifted out is 1.");
    m.assign(
        &nxt,
        cat([lit(1, 0), lfsr_q.slice(width - 1, 1)])
            ^ mux(lfsr_q.idx(0), hex(width, taps), lit(width, 0)),
    );
    // Stage 1: operands and the random word.
    let w1 = m.reg_s("w1_q", ww);
    let g1 = m.reg_s("g1_q", gw);
    let k1 = m.reg("k1_q", 2);
    let v1 = m.reg("v1_q", 1);
    let r1 = m.reg("r1_q", width);
    let lr_q = m.reg("lr_q", lw);
    // The exact product g · lr on DSPs, `ms` stages; the other operands wait beside it.
    let prod = mul_pipelined(
        &mut m,
        "gl",
        &Sig::new(&g1, gw, true),
        &Sig::new(&lr_q, lw, false),
    );
    let ms = crate::arch::schedule::mul_stages(gw, lw + 1) as usize;
    assert_eq!(prod.w, pw);
    let p = prod.e.clone();
    let delayed = |m: &mut Module, name: &str, w: u32, signed: bool| -> Vec<Expr> {
        (0..ms)
            .map(|k| {
                let n = format!("{name}_d{k}_q");
                if signed {
                    m.reg_s(&n, w)
                } else {
                    m.reg(&n, w)
                }
            })
            .collect()
    };
    let wd = delayed(&mut m, "w", ww, true);
    let kd = delayed(&mut m, "k", 2, false);
    let vd = delayed(&mut m, "v", 1, false);
    let rd = delayed(&mut m, "r", width, false);
    let (wp, kp, vp, rp) = (
        wd[ms - 1].clone(),
        kd[ms - 1].clone(),
        vd[ms - 1].clone(),
        rd[ms - 1].clone(),
    );
    let lr_frac = f.lr_frac;
    let kinds = [
        ("wt", f.update.frac, f.weight),
        ("bi", f.delta.frac, f.bias),
        ("ce", f.delta.frac, f.centroid),
    ];
    let stochastic = f.update_rounding == crate::fixed::Rounding::Stochastic;
    if !stochastic {
        // Deterministic rounding reads no random bits; the LFSR still steps per parameter
        // (as the golden model's), so switching modes keeps the walk identical.
        let u = m.wire("unused_rnd", 1);
        m.assign(u, rp.clone().red_xor());
    }
    // The step round(p >> sh) of each kind, split so that no stage holds a long chain:
    // p = hi·2^sh + lo with 0 <= lo < 2^sh, so (p + rnd) >> sh = hi + carry(lo + rnd) for any
    // rounding addend rnd < 2^sh. The low halves and addends are left-aligned to `lw_` bits,
    // so one adder gives every kind's carry at bit `lw_`; a kind that shifts left
    // (sh = 0) has no low half.
    let shifts: Vec<(u32, u32)> = kinds
        .iter()
        .map(|(_, gf, fmt)| (gf + lr_frac, fmt.frac))
        .collect();
    let lw_ = shifts
        .iter()
        .map(|&(from, to)| from.saturating_sub(to))
        .max()
        .unwrap_or(0)
        .max(1);
    let hi_w = shifts
        .iter()
        .map(|&(from, to)| {
            if to >= from {
                pw + (to - from)
            } else {
                pw.saturating_sub(from - to).max(1)
            }
        })
        .max()
        .unwrap_or(1)
        + 1;
    let mut his = Vec::new();
    let mut los = Vec::new();
    let mut rnds = Vec::new();
    for ((name, _, _), &(from, to)) in kinds.iter().zip(&shifts) {
        // `ext` selects the sign bit, so its operand must be a plain wire.
        let named = |m: &mut Module, tag: &str, e: Expr, w: u32| -> Sig {
            let x = m.wire_s(&format!("{name}_{tag}"), w);
            m.assign(&x, e);
            Sig::new(x, w, true)
        };
        let (hi, lo, rnd) = if to >= from {
            let d = to - from;
            let hi = if d == 0 {
                ext(&prod, hi_w)
            } else {
                let t = named(&mut m, "shl", cat([p.clone(), lit(d, 0)]), pw + d);
                ext(&t, hi_w)
            };
            (hi, lit(lw_, 0), lit(lw_, 0))
        } else {
            let sh = from - to;
            assert!(sh <= 64, "rounding shift {sh} > 64 not supported");
            // lo = p mod 2^sh (p sign-extended when sh > pw), hi = p >> sh (arithmetic).
            let lo = if sh <= pw {
                p.slice(sh - 1, 0)
            } else {
                ext(&prod, sh)
            };
            let hi = if sh < pw {
                let t = named(&mut m, "top", p.slice(pw - 1, sh), pw - sh);
                ext(&t, hi_w)
            } else {
                let t = named(&mut m, "top", p.idx(pw - 1), 1);
                ext(&t, hi_w)
            };
            let rnd = match f.update_rounding {
                crate::fixed::Rounding::Truncate => lit(sh, 0),
                crate::fixed::Rounding::HalfUp => lit(sh, 1u64 << (sh - 1)),
                crate::fixed::Rounding::Stochastic => {
                    // The low `sh` bits of update_rnd(state, sh, width).
                    if sh > width {
                        cat([rp.clone(), lit(sh - width, 0)])
                    } else {
                        rp.slice(sh - 1, 0)
                    }
                }
            };
            let align = |e: Expr| {
                if sh == lw_ {
                    e
                } else {
                    cat([e, lit(lw_ - sh, 0)])
                }
            };
            (hi, align(lo), align(rnd))
        };
        let h = m.wire_s(&format!("{name}_hi"), hi_w);
        m.assign(&h, hi);
        let l = m.wire(&format!("{name}_lo"), lw_);
        m.assign(&l, lo);
        let r = m.wire(&format!("{name}_rnd"), lw_);
        m.assign(&r, rnd);
        his.push(h);
        los.push(l);
        rnds.push(r);
    }
    let by_kind = |k: &Expr, v: &[Expr]| {
        mux(
            k.clone().eq_(lit(2, 0)),
            &v[0],
            mux(k.clone().eq_(lit(2, 1)), &v[1], &v[2]),
        )
    };
    let lo_sum = m.wire("lo_sum", lw_ + 1);
    m.assign(
        &lo_sum,
        cat([lit(1, 0), by_kind(&kp, &los)]) + cat([lit(1, 0), by_kind(&kp, &rnds)]),
    );
    let u = m.wire("unused_lo_sum", 1);
    m.assign(u, lo_sum.slice(lw_ - 1, 0).red_xor());
    // Stage A: hi and the carry.
    let hi_q = m.reg_s("hi_q", hi_w);
    let c_q = m.reg("c_q", 1);
    let wa = m.reg_s("wa_q", ww);
    let ka = m.reg("ka_q", 2);
    let va = m.reg("va_q", 1);
    // Stage B: w − (hi + carry); stage C: saturated to the kind's format.
    let dw = hi_w.max(ww) + 2;
    let diff = m.reg_s("diff_q", dw);
    let kb = m.reg("kb_q", 2);
    let vb0 = m.reg("vb0_q", 1);
    let mut outs = Vec::new();
    for (name, _, fmt) in kinds {
        let y = saturate(
            &mut m,
            &format!("{name}_y"),
            &Sig::new(&diff, dw, true),
            fmt,
        );
        let yx = m.wire_s(&format!("{name}_yx"), ww);
        m.assign(
            &yx,
            if fmt.bits == ww {
                y.e.clone()
            } else {
                ext(&y, ww)
            },
        );
        outs.push(yx);
    }
    let wb = m.reg_s("wb_q", ww);
    let vb = m.reg("vb_q", 1);
    let seed = if seed_flip {
        seed_p ^ hex(width, 2)
    } else {
        seed_p
    };
    m.always_ff(
        id("clk_i"),
        vec![if_(id("rst_i"), vec![nb(&lfsr_q, seed)]).else_if(&v_i, vec![nb(&lfsr_q, &nxt)])],
    );
    let mut body = vec![
        nb(&w1, &w_i),
        nb(&g1, &g_i),
        nb(&k1, &kind_i),
        nb(&v1, &v_i),
        nb(&r1, &nxt),
        nb(&lr_q, &lr_i),
    ];
    for (d, first) in [(&wd, &w1), (&kd, &k1), (&vd, &v1), (&rd, &r1)] {
        body.push(nb(&d[0], first));
        for k in 1..ms {
            body.push(nb(&d[k], &d[k - 1]));
        }
    }
    body.extend([
        nb(&hi_q, by_kind(&kp, &his)),
        nb(&c_q, lo_sum.idx(lw_)),
        nb(&wa, &wp),
        nb(&ka, &kp),
        nb(&va, &vp),
        nb(
            &diff,
            ext(&Sig::new(&wa, ww, true), dw)
                - ext(&Sig::new(&hi_q, hi_w, true), dw)
                - cat([lit(dw - 1, 0), c_q.clone()]).signed(),
        ),
        nb(&kb, &ka),
        nb(&vb0, &va),
        nb(&wb, by_kind(&kb, &outs)),
        nb(&vb, &vb0),
    ]);
    // Only the valid flags need a reset; the data registers follow them.
    let valid: Vec<Expr> = std::iter::once(v1.clone())
        .chain(vd.iter().cloned())
        .chain([va.clone(), vb0.clone(), vb.clone()])
        .collect();
    m.always_ff(
        id("clk_i"),
        vec![if_(
            id("rst_i"),
            valid.iter().map(|v| nb(v, lit(1, 0))).collect(),
        )
        .else_(body)],
    );
    m.assign(w_o, wb);
    m.assign(v_o, vb);
    m
}
