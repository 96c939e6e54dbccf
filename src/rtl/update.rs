//! Local update unit: `w − round(g · η/B)` saturated to the parameter's format
//! ([`crate::fixed::ops::lr_update`]), with the stochastic-rounding bits from the Galois LFSR
//! of the golden model ([`crate::fixed::Lfsr`], stepped once per parameter, exactly as
//! `FixedDf::update` walks W, b, U). The engine instantiates one per weight bank, each
//! with the `SEED` of its lane ([`crate::fixed::lane_seeds`]). `kind_i` selects the
//! parameter: 0 = weight (gradient in `update`), 1 = bias, 2 = centroid (gradients in `delta`
//! fraction bits). The read-modify-write
//! sits on the weight BRAM's two ports: `w_i` is the registered read data, `w_o`/`v_o` the
//! write-back three cycles later.

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
    // Stage 2: exact product g * lr.
    let p2 = m.reg_s("p2_q", pw);
    let w2 = m.reg_s("w2_q", ww);
    let k2 = m.reg("k2_q", 2);
    let v2 = m.reg("v2_q", 1);
    let r2 = m.reg("r2_q", width);
    let prod = m.wire_s("prod", pw);
    m.assign(
        &prod,
        ext(&Sig::new(&g1, gw, true), pw) * cat([lit(gw + 1, 0), lr_q.clone()]).signed(),
    );
    let lr_frac = f.lr_frac;
    let kinds = [
        ("wt", f.update.frac, f.weight),
        ("bi", f.delta.frac, f.bias),
        ("ce", f.delta.frac, f.centroid),
    ];
    if f.update_rounding != crate::fixed::Rounding::Stochastic {
        // Deterministic rounding reads no random bits; the LFSR still steps per parameter
        // (as the golden model's), so switching modes keeps the walk identical.
        let u = m.wire("unused_rnd", 1);
        m.assign(u, r2.clone().red_xor());
    }
    let mut outs = Vec::new();
    for (name, gf, fmt) in kinds {
        let from = gf + lr_frac;
        let sh = from.saturating_sub(fmt.frac);
        // The random addend: the low `sh` bits of update_rnd(state, sh, width).
        let rnd = if sh == 0 || f.update_rounding != crate::fixed::Rounding::Stochastic {
            None
        } else {
            let r = m.wire(&format!("{name}_rnd"), sh);
            // Same layout as update_rnd(state, sh, width), masked to sh bits.
            let e = if sh > width {
                cat([r2.clone(), lit(sh - width, 0)])
            } else {
                r2.slice(sh - 1, 0)
            };
            m.assign(&r, e);
            Some(r)
        };
        let step = rescale(
            &mut m,
            &format!("{name}_st"),
            &Sig::new(&p2, pw, true),
            from,
            fmt.frac,
            f.update_rounding,
            rnd.as_ref(),
            ww + 1,
        );
        let dw = step.w.max(ww) + 1;
        let diff = m.wire_s(&format!("{name}_diff"), dw);
        m.assign(&diff, ext(&Sig::new(&w2, ww, true), dw) - ext(&step, dw));
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
    let w3 = m.reg_s("w3_q", ww);
    let v3 = m.reg("v3_q", 1);
    let sel = mux(
        k2.clone().eq_(lit(2, 0)),
        &outs[0],
        mux(k2.clone().eq_(lit(2, 1)), &outs[1], &outs[2]),
    );
    let seed = if seed_flip {
        seed_p ^ hex(width, 2)
    } else {
        seed_p
    };
    m.always_ff(
        id("clk_i"),
        vec![if_(id("rst_i"), vec![nb(&lfsr_q, seed)]).else_if(&v_i, vec![nb(&lfsr_q, &nxt)])],
    );
    ff(
        &mut m,
        vec![
            (w1.clone(), ww),
            (g1.clone(), gw),
            (k1.clone(), 2),
            (v1.clone(), 1),
            (r1.clone(), width),
            (lr_q.clone(), lw),
            (p2.clone(), pw),
            (w2.clone(), ww),
            (k2.clone(), 2),
            (v2.clone(), 1),
            (r2.clone(), width),
            (w3.clone(), ww),
            (v3.clone(), 1),
        ],
        vec![
            nb(&w1, &w_i),
            nb(&g1, &g_i),
            nb(&k1, &kind_i),
            nb(&v1, &v_i),
            nb(&r1, &nxt),
            nb(&lr_q, &lr_i),
            nb(&p2, &prod),
            nb(&w2, &w1),
            nb(&k2, &k1),
            nb(&v2, &v1),
            nb(&r2, &r1),
            nb(&w3, sel),
            nb(&v3, &v2),
        ],
    );
    m.assign(w_o, w3);
    m.assign(v_o, v3);
    m
}
