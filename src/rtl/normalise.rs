//! Normalisation unit: x̂_i = x_i · rsqrt(S) onto `act` ([`crate::fixed::model::Units::normalise`]).
//!
//! `sv_i` loads S = Σ x² (from the goodness unit); a leading-one detector gives n = bitlen(S),
//! e = n rounded up to even, the table address = the top `rsqrt_addr_bits` bits of S aligned at
//! e, and the rsqrt ROM (registered read, `rsqrt.hex`) gives the word. The exponent
//! k = (e − 2·frac)/2 folds into one variable output shift: because the sum's fraction bits are
//! even the total shift is `rsqrt_frac + e/2 − act.frac`, whatever the input format, so the
//! same unit normalises pixels and hidden values. Lanes (`xv_i`) may start the cycle after
//! `sv_i`; `yv_o` marks outputs (latency 3). `rs_word_o`/`rs_half_e_o` expose the row's
//! rsqrt parts for DF-R's feedback scaling.

use super::util::*;
use super::Shape;
use crate::hdl::*;

/// `shift_plus_one` is a deliberate defect for the mutation test (output shift one too large).
pub fn normalise(s: &Shape, shift_plus_one: bool) -> Module {
    let f = &s.f;
    let sw = s.sum_w;
    let xw = s.norm_x_w;
    let a = f.rsqrt_addr_bits;
    let rw = f.rsqrt_frac + 2;
    let ew = bitlen(u128::from(sw + 1));
    let shw = 8u32;
    let pw = xw + rw;
    let mut m = Module::new("dff_normalise").doc(format!(
        "Normalise: y = x * rsqrt(S) onto act ({}.{} unsigned, {:?}); rsqrt ROM of 2^{a} words.",
        f.act.bits, f.act.frac, f.rounding
    ));
    let clk = m.input("clk_i", 1);
    m.input("rst_i", 1);
    let s_i = m.input("s_i", sw);
    let sv_i = m.input("sv_i", 1);
    let x_i = m.input("x_i", xw);
    let xv_i = m.input("xv_i", 1);
    let y_o = m.output("y_o", f.act.bits);
    let yv_o = m.output("yv_o", 1);
    // The row's rsqrt parts (word, e/2), valid from two cycles after `sv_i` until the next
    // one: DF-R's feedback scaling reuses them (`Units::scale_by_rsqrt`).
    let word_o = m.output("rs_word_o", rw);
    let half_e_o = m.output("rs_half_e_o", ew - 1);
    // Leading-one detector and table address (combinational on the input).
    let n = m.reg("n", ew);
    let mut lod = vec![set(&n, lit(ew, 0))];
    for i in 0..sw {
        lod.push(if_(s_i.idx(i), vec![set(&n, lit(ew, u64::from(i + 1)))]));
    }
    m.always_comb(lod);
    let e = m.wire("e", ew);
    m.assign(&e, &n + cat([lit(ew - 1, 0), n.idx(0)]));
    let idx_full = m.wire("idx_full", sw);
    m.assign(
        &idx_full,
        mux(
            e.clone().ge_(lit(ew, u64::from(a))),
            s_i.clone() >> (e.clone() - lit(ew, u64::from(a))),
            s_i.clone() << (lit(ew, u64::from(a)) - e.clone()),
        ),
    );
    if sw > a {
        let u = m.wire("unused_idx", 1);
        m.assign(u, idx_full.slice(sw - 1, a).red_and());
    }
    let addr_q = m.reg("addr_q", a);
    // e is even: keep e/2.
    let e_q = m.reg("e_q", ew - 1);
    let e2_q = m.reg("e2_q", ew - 1);
    let word_q = m.reg("word_q", rw);
    let rom = m.memory("rom", rw, int(1u64 << a), Some("rsqrt.hex"));
    m.always_ff(&clk, vec![nb(&word_q, rom.idx(&addr_q))]);
    // Output shift: rsqrt_frac + e/2 - act.frac (modulo 2^shw; only S = 0, whose word is 0,
    // can wrap).
    let c = (i64::from(f.rsqrt_frac) - i64::from(f.act.frac) + i64::from(shift_plus_one))
        .rem_euclid(1 << shw) as u64;
    let sh = m.wire("sh", shw);
    m.assign(
        &sh,
        cat([lit(shw - (ew - 1), 0), e2_q.clone()]) + lit(shw, c),
    );
    let x_q = m.reg("x_q", xw);
    let xv1 = m.reg("xv1_q", 1);
    let p_q = m.reg("p_q", pw);
    let sh_q = m.reg("sh_q", shw);
    let xv2 = m.reg("xv2_q", 1);
    let y_q = m.reg("y_q", f.act.bits);
    let yv = m.reg("yv_q", 1);
    let p = m.wire("p", pw);
    m.assign(
        &p,
        cat([lit(rw, 0), x_q.clone()]) * cat([lit(xw, 0), word_q.clone()]),
    );
    let add = m.wire("add", pw + 2);
    let half_up = f.rounding == crate::fixed::Rounding::HalfUp;
    if half_up {
        m.assign(
            &add,
            mux(
                sh_q.clone().eq_(lit(shw, 0)),
                lit(pw + 2, 0),
                lit(pw + 2, 1) << (sh_q.clone() - lit(shw, 1)),
            ),
        );
    } else {
        m.assign(&add, lit(pw + 2, 0));
    }
    let q = m.wire("q", pw + 2);
    m.assign(&q, (cat([lit(2, 0), p_q.clone()]) + &add) >> sh_q.clone());
    let y = m.wire("y", f.act.bits);
    m.assign(
        &y,
        mux(
            q.clone().gt_(lit(pw + 2, f.act.max() as u64)),
            ulit(f.act.bits, f.act.max()),
            q.slice(f.act.bits - 1, 0),
        ),
    );
    ff(
        &mut m,
        vec![
            (addr_q.clone(), a),
            (e_q.clone(), ew - 1),
            (e2_q.clone(), ew - 1),
            (x_q.clone(), xw),
            (xv1.clone(), 1),
            (p_q.clone(), pw),
            (sh_q.clone(), shw),
            (xv2.clone(), 1),
            (y_q.clone(), f.act.bits),
            (yv.clone(), 1),
        ],
        vec![
            if_(
                &sv_i,
                vec![
                    nb(&addr_q, idx_full.slice(a - 1, 0)),
                    nb(&e_q, e.slice(ew - 1, 1)),
                ],
            ),
            nb(&e2_q, &e_q),
            nb(&x_q, &x_i),
            nb(&xv1, &xv_i),
            nb(&p_q, &p),
            nb(&sh_q, &sh),
            nb(&xv2, &xv1),
            nb(&y_q, &y),
            nb(&yv, &xv2),
        ],
    );
    m.assign(word_o, &word_q);
    m.assign(half_e_o, &e2_q);
    m.assign(y_o, y_q);
    m.assign(yv_o, yv);
    m
}
