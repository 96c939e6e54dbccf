//! Squared-sum (goodness) unit: streams the lanes h of one row, accumulates S = Σ h²
//! (exact, [`crate::fixed::ops::squared_sum`] with a wide enough accumulator) and
//! G = requantize(S · recip, 2·hidden.frac + const_frac → goodness) with the layer's 1/d
//! constant ([`crate::fixed::RecipConst`]) on `recip_i`. Registered multiplier inputs and
//! outputs; `v_o` pulses with S and G four cycles after the lane flagged `last_i`.

use super::util::*;
use super::Shape;
use crate::hdl::*;

/// `flip_rounding` is a deliberate defect for the mutation test (truncate ↔ half-up).
pub fn goodness(s: &Shape, flip_rounding: bool) -> Module {
    let f = &s.f;
    let hw = f.hidden.bits;
    let sw = s.sum_w;
    let rw = s.recip_w;
    let mut m = Module::new("dff_goodness").doc(format!(
        "Goodness: S = sum h^2 ({sw} bits, exact), G = S * recip requantised to goodness\n\
         ({}.{} unsigned, {:?}).",
        f.goodness.bits, f.goodness.frac, f.rounding
    ));
    m.input("clk_i", 1);
    m.input("rst_i", 1);
    let h_i = m.input("h_i", hw);
    let v_i = m.input("v_i", 1);
    let first_i = m.input("first_i", 1);
    let last_i = m.input("last_i", 1);
    let recip_i = m.input("recip_i", rw);
    let s_o = m.output("s_o", sw);
    let g_o = m.output("g_o", f.goodness.bits);
    let v_o = m.output("v_o", 1);
    // Stage 1: multiplier inputs.
    let h_q = m.reg("h_q", hw);
    let v1 = m.reg("v1_q", 1);
    let f1 = m.reg("f1_q", 1);
    let l1 = m.reg("l1_q", 1);
    // Stage 2: product.
    let sq_q = m.reg("sq_q", 2 * hw);
    let v2 = m.reg("v2_q", 1);
    let f2 = m.reg("f2_q", 1);
    let l2 = m.reg("l2_q", 1);
    // Stage 3: accumulator.
    let acc_q = m.reg("acc_q", sw);
    let d3 = m.reg("d3_q", 1);
    // Stage 4: S · recip (registered product), stage 5: output.
    let r_q = m.reg("r_q", rw);
    let gp_q = m.reg("gp_q", sw + rw);
    let s4 = m.reg("s4_q", sw);
    let d4 = m.reg("d4_q", 1);
    let s_q = m.reg("s_q", sw);
    let g_q = m.reg("g_q", f.goodness.bits);
    let d5 = m.reg("d5_q", 1);
    let sq = m.wire("sq", 2 * hw);
    m.assign(
        &sq,
        cat([lit(hw, 0), h_q.clone()]) * cat([lit(hw, 0), h_q.clone()]),
    );
    let acc_d = m.wire("acc_d", sw);
    let sq_ext = cat([lit(sw - 2 * hw, 0), sq_q.clone()]);
    m.assign(&acc_d, mux(&f2, sq_ext.clone(), &acc_q + sq_ext));
    let gp = m.wire("gp", sw + rw);
    m.assign(
        &gp,
        cat([lit(rw, 0), acc_q.clone()]) * cat([lit(sw, 0), r_q.clone()]),
    );
    let g = requant(
        &mut m,
        "rq",
        &Sig::new(&gp_q, sw + rw, false),
        2 * f.hidden.frac + f.const_frac,
        f.goodness,
        if flip_rounding {
            flip(f.rounding)
        } else {
            f.rounding
        },
        None,
    );
    ff(
        &mut m,
        vec![
            (h_q.clone(), hw),
            (v1.clone(), 1),
            (f1.clone(), 1),
            (l1.clone(), 1),
            (sq_q.clone(), 2 * hw),
            (v2.clone(), 1),
            (f2.clone(), 1),
            (l2.clone(), 1),
            (acc_q.clone(), sw),
            (d3.clone(), 1),
            (r_q.clone(), rw),
            (gp_q.clone(), sw + rw),
            (s4.clone(), sw),
            (d4.clone(), 1),
            (s_q.clone(), sw),
            (g_q.clone(), f.goodness.bits),
            (d5.clone(), 1),
        ],
        vec![
            nb(&h_q, &h_i),
            nb(&v1, &v_i),
            nb(&f1, &first_i),
            nb(&l1, &last_i),
            nb(&sq_q, &sq),
            nb(&v2, &v1),
            nb(&f2, &f1),
            nb(&l2, &l1),
            if_(&v2, vec![nb(&acc_q, &acc_d)]),
            nb(&d3, v2.clone().land(&l2)),
            nb(&r_q, &recip_i),
            nb(&gp_q, &gp),
            nb(&s4, &acc_q),
            nb(&d4, &d3),
            nb(&s_q, &s4),
            nb(&g_q, &g.e),
            nb(&d5, &d4),
        ],
    );
    m.assign(s_o, s_q);
    m.assign(g_o, g_q);
    m.assign(v_o, d5);
    m
}

/// Squared-sum unit of one lane: streams the lanes h of one row (`first_i` on the first,
/// `last_i` on the last) and accumulates S = Σ h² exactly
/// ([`crate::fixed::ops::squared_sum`]); `v_o` pulses with S on `s_o`
/// [`crate::arch::schedule::sumsq_lat`] cycles after the input flagged last, and S holds
/// until the next row's first value reaches the accumulator.
/// `no_clear` is a deliberate defect for the mutation test: the first value of a row adds
/// to the previous row's sum.
pub fn sumsq(s: &Shape, no_clear: bool) -> Module {
    let f = &s.f;
    let hw = f.hidden.bits;
    let sw = s.sum_w;
    let mut m = Module::new("dff_sumsq").doc(format!(
        "Squared sum of one lane: S = sum h^2 ({sw} bits, exact), registered multiplier\n\
         inputs and product; v_o pulses with S {} cycles after the value flagged last.",
        crate::arch::schedule::sumsq_lat(s)
    ));
    m.input("clk_i", 1);
    m.input("rst_i", 1);
    let h_i = m.input("h_i", hw);
    let v_i = m.input("v_i", 1);
    let first_i = m.input("first_i", 1);
    let last_i = m.input("last_i", 1);
    let s_o = m.output("s_o", sw);
    let v_o = m.output("v_o", 1);
    let h_q = m.reg("h_q", hw);
    m.always_ff(id("clk_i"), vec![nb(&h_q, &h_i)]);
    let sq = mul_pipelined(
        &mut m,
        "sq",
        &Sig::new(&h_q, hw, false),
        &Sig::new(&h_q, hw, false),
    );
    // Valid, first and last travel with the product.
    let stages = crate::arch::schedule::mul_stages(hw + 1, hw + 1) as usize + 1;
    let mut flags = vec![
        (v_i.clone(), "v"),
        (first_i.clone(), "f"),
        (last_i.clone(), "l"),
    ];
    let mut regs = Vec::new();
    let mut body = Vec::new();
    for st in 1..=stages {
        for (e, tag) in flags.iter_mut() {
            let r = m.reg(&format!("{tag}{st}_q"), 1);
            regs.push((r.clone(), 1));
            body.push(nb(&r, e.clone()));
            *e = r;
        }
    }
    let (v, first, last) = (flags[0].0.clone(), flags[1].0.clone(), flags[2].0.clone());
    let acc_q = m.reg("acc_q", sw);
    let done_q = m.reg("done_q", 1);
    // |h|² < 2^(2·hw): the product's top bits are zero.
    let sq_u = m.wire("sq_u", 2 * hw);
    m.assign(&sq_u, sq.e.slice(2 * hw - 1, 0));
    let sq_ext = cat([lit(sw - 2 * hw, 0), sq_u.clone()]);
    let un = m.wire("unused_sq", 1);
    m.assign(&un, sq.e.slice(sq.w - 1, 2 * hw).red_xor());
    regs.push((acc_q.clone(), sw));
    regs.push((done_q.clone(), 1));
    let first_clears = if no_clear { lit(1, 0) } else { first.clone() };
    body.push(if_(
        &v,
        vec![nb(
            &acc_q,
            mux(first_clears, sq_ext.clone(), &acc_q + sq_ext),
        )],
    ));
    if no_clear {
        let u = m.wire("unused_first", 1);
        m.assign(u, first);
    }
    body.push(nb(&done_q, v.clone().land(&last)));
    ff(&mut m, regs, body);
    m.assign(s_o, acc_q);
    m.assign(v_o, done_q);
    m
}

/// Goodness scale unit: G = requantize(S · recip, 2·hidden.frac + const_frac → goodness)
/// ([`crate::fixed::ops::goodness`]) with the layer's 1/d constant on `recip_i`; one S per
/// cycle, `v_o` [`crate::arch::schedule::gscale_lat`] cycles after `v_i`. NORM shares one
/// between its lanes (S arrives once per row).
/// `flip_rounding` is a deliberate defect for the mutation test (truncate ↔ half-up).
pub fn gscale(s: &Shape, flip_rounding: bool) -> Module {
    let f = &s.f;
    let sw = s.sum_w;
    let rw = s.recip_w;
    let mut m = Module::new("dff_goodness").doc(format!(
        "Goodness: G = S * recip requantised to goodness ({}.{} unsigned, {:?});\n\
         pipelined multiplier, then rounding, then saturation.",
        f.goodness.bits, f.goodness.frac, f.rounding
    ));
    m.input("clk_i", 1);
    m.input("rst_i", 1);
    let s_i = m.input("s_i", sw);
    let v_i = m.input("v_i", 1);
    let recip_i = m.input("recip_i", rw);
    let g_o = m.output("g_o", f.goodness.bits);
    let v_o = m.output("v_o", 1);
    let s_q = m.reg("s_q", sw);
    let r_q = m.reg("r_q", rw);
    m.always_ff(id("clk_i"), vec![nb(&s_q, &s_i), nb(&r_q, &recip_i)]);
    let p = mul_pipelined(
        &mut m,
        "gp",
        &Sig::new(&s_q, sw, false),
        &Sig::new(&r_q, rw, false),
    );
    let mode = if flip_rounding {
        flip(f.rounding)
    } else {
        f.rounding
    };
    // Rounding (add and shift) in one cycle, saturation in the next.
    let q = rescale(
        &mut m,
        "rq",
        &p,
        2 * f.hidden.frac + f.const_frac,
        f.goodness.frac,
        mode,
        None,
        f.goodness.bits + 1,
    );
    let q_q = m.reg_s("rnd_q", q.w);
    m.always_ff(id("clk_i"), vec![nb(&q_q, &q.e)]);
    let g = saturate(&mut m, "rq_y", &Sig::new(&q_q, q.w, true), f.goodness);
    let g_q = m.reg("g_q", f.goodness.bits);
    m.always_ff(id("clk_i"), vec![nb(&g_q, &g.e)]);
    let lat = crate::arch::schedule::gscale_lat(s) as usize;
    let mut v = v_i.clone();
    let mut regs = Vec::new();
    let mut body = Vec::new();
    for st in 1..=lat {
        let r = m.reg(&format!("v{st}_q"), 1);
        regs.push((r.clone(), 1));
        body.push(nb(&r, v));
        v = r;
    }
    ff(&mut m, regs, body);
    m.assign(g_o, g_q);
    m.assign(v_o, v);
    m
}
