//! Loss unit, hinge variant ([`crate::fixed::model::FixedDf::loss_unit`] with
//! `loss = "hinge"`): `yv_i` loads G̃(y); each negative slot `gv_i` gives
//! β_k = 1 if sat(G̃(k) − G̃(y) + m) > 0 and the slot is active, else 0 (one cycle later on
//! `b_o`/`bv_o`); the lane flagged `last_i` is followed by β_y = −Σ β_k on `b_o` with `byv_o`.
//! (The N-pair variant — exp ROM, restoring divider — is not generated yet.)

use super::util::*;
use super::Shape;
use crate::fixed::QFormat;
use crate::hdl::*;

pub fn loss_hinge(s: &Shape, margin: i64) -> Module {
    let f = &s.f;
    let gw = f.goodness.bits;
    let bw = f.beta.bits;
    let cw = bitlen(u128::from(s.classes as u32)) + 1;
    let mut m = Module::new("dff_loss_hinge").doc(format!(
        "Hinge loss unit: beta_k = [G(k) - G(y) + m > 0], m = {margin} (raw goodness)."
    ));
    m.input("clk_i", 1);
    m.input("rst_i", 1);
    let gy_i = m.input("gy_i", gw);
    let yv_i = m.input("yv_i", 1);
    let g_i = m.input("g_i", gw);
    let gv_i = m.input("gv_i", 1);
    let act_i = m.input("act_i", 1);
    let last_i = m.input("last_i", 1);
    let b_o = m.output_s("b_o", bw);
    let bv_o = m.output("bv_o", 1);
    let byv_o = m.output("byv_o", 1);
    let gy_q = m.reg("gy_q", gw);
    let dw = gw + 2;
    let diff = m.wire_s("diff", dw);
    m.assign(
        &diff,
        ext(&Sig::new(&g_i, gw, false), dw) - ext(&Sig::new(&gy_q, gw, false), dw)
            + slit(dw, i128::from(margin)),
    );
    let dfmt = QFormat {
        bits: gw + 1,
        frac: f.goodness.frac,
        signed: true,
    };
    let d = saturate(&mut m, "d", &Sig::new(&diff, dw, true), dfmt);
    let one = (1i64 << f.beta.frac.min(62)).min(f.beta.max());
    let hit = m.wire("hit", 1);
    m.assign(&hit, act_i.clone().land(d.e.clone().gt_(slit(gw + 1, 0))));
    let cnt_q = m.reg("cnt_q", cw);
    let b_q = m.reg_s("b_q", bw);
    let bv_q = m.reg("bv_q", 1);
    let byv_q = m.reg("byv_q", 1);
    let pend_q = m.reg("pend_q", 1);
    // β_y = −count · one, exact in the beta format (validated: it holds −(K−1)).
    let neg = m.wire_s("neg", bw);
    m.assign(
        &neg,
        -(ext(&Sig::new(&cnt_q, cw, false), bw) * slit(bw, i128::from(one))),
    );
    ff(
        &mut m,
        vec![
            (gy_q.clone(), gw),
            (cnt_q.clone(), cw),
            (b_q.clone(), bw),
            (bv_q.clone(), 1),
            (byv_q.clone(), 1),
            (pend_q.clone(), 1),
        ],
        vec![
            if_(&yv_i, vec![nb(&gy_q, &gy_i), nb(&cnt_q, lit(cw, 0))]).else_if(
                gv_i.clone().land(&hit),
                vec![nb(&cnt_q, &cnt_q + lit(cw, 1))],
            ),
            nb(&bv_q, &gv_i),
            nb(&byv_q, &pend_q),
            nb(&pend_q, gv_i.clone().land(&last_i)),
            if_(&pend_q, vec![nb(&b_q, &neg)]).else_(vec![nb(
                &b_q,
                mux(&hit, slit(bw, i128::from(one)), slit(bw, 0)),
            )]),
        ],
    );
    m.assign(b_o, b_q);
    m.assign(bv_o, bv_q);
    m.assign(byv_o, byv_q);
    m
}
