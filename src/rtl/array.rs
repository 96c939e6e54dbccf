//! The output-stationary R×C systolic array and its processing element.
//!
//! One generic "a×b accumulate" array serves the three GEMMs of training; the routing is in
//! how the sequencer streams operands (see `tests/units_cosim.rs` for the three mappings):
//! forward Z = W·X̂ (a = rows of W, b = rows of X̂, K = d_in), weight gradient ΔW = Eᵀ·X̂
//! (a = columns of E, b = columns of X̂, K = rows) and DF-O's Wᵀ·δ (a = rows of δ, b = W).
//! Row r of A enters the west edge delayed r cycles, column c of B the north edge delayed
//! c cycles; valid/clear/last flags travel east with a. The PE registers its multiplier inputs
//! (a/b forwarding registers) and its product, so BRAM → register → DSP → register → adder.
//! The sum that completes a tile (the product flagged last) is also copied into a shadow
//! register, which is what `acc_o` shows: the next tile can stream (and clear the
//! accumulator) while the engine drains the previous one.

use super::util::*;
use super::Shape;
use crate::hdl::*;

/// The processing element: `acc = sat(acc + a·b)` ([`crate::fixed::ops::mac`]); the sum of
/// a product flagged `last_i` is held in the shadow register `acc_o`.
/// `plus_one` is a deliberate defect for the mutation test (every MAC adds 1 LSB too many).
pub fn pe(s: &Shape, plus_one: bool) -> Module {
    let mut m = Module::new("dff_pe").doc(
        "Systolic PE: registered operands (forwarded east/south with the valid, clear and\n\
         last flags), registered exact product, saturating accumulator (fixed::ops::mac);\n\
         the sum completed by a last-flagged product stays in acc_o until the next one.",
    );
    let (aw, bw, accw) = (s.a_w, s.b_w, s.acc_w);
    let pw = aw + bw;
    m.input("clk_i", 1);
    m.input("rst_i", 1);
    let a_i = m.input_s("a_i", aw);
    let b_i = m.input_s("b_i", bw);
    let v_i = m.input("v_i", 1);
    let c_i = m.input("clr_i", 1);
    let l_i = m.input("last_i", 1);
    let a_o = m.output_s("a_o", aw);
    let b_o = m.output_s("b_o", bw);
    let v_o = m.output("v_o", 1);
    let c_o = m.output("clr_o", 1);
    let l_o = m.output("last_o", 1);
    let acc_o = m.output_s("acc_o", accw);
    let a_q = m.reg_s("a_q", aw);
    let b_q = m.reg_s("b_q", bw);
    let v_q = m.reg("v_q", 1);
    let c_q = m.reg("c_q", 1);
    let l_q = m.reg("l_q", 1);
    let p_q = m.reg_s("p_q", pw);
    let pv_q = m.reg("pv_q", 1);
    let pc_q = m.reg("pc_q", 1);
    let pl_q = m.reg("pl_q", 1);
    let acc_q = m.reg_s("acc_q", accw);
    let sh_q = m.reg_s("shadow_q", accw);
    let prod = m.wire_s("prod", pw);
    m.comment("Operands widened first so the product is exact (one hard multiplier).");
    m.assign(
        &prod,
        ext(&Sig::new(&a_q, aw, true), pw) * ext(&Sig::new(&b_q, bw, true), pw),
    );
    let base = m.wire_s("base", accw);
    m.assign(&base, mux(&pc_q, zeros(accw), &acc_q));
    let sum = m.wire_s("sum", accw + 1);
    let exact =
        ext(&Sig::new(&base, accw, true), accw + 1) + ext(&Sig::new(&p_q, pw, true), accw + 1);
    m.assign(
        &sum,
        if plus_one {
            exact + slit(accw + 1, 1)
        } else {
            exact
        },
    );
    let acc_fmt = crate::fixed::QFormat {
        bits: accw,
        frac: 0,
        signed: true,
    };
    let acc_d = saturate(&mut m, "acc_d", &Sig::new(&sum, accw + 1, true), acc_fmt);
    ff(
        &mut m,
        vec![
            (a_q.clone(), aw),
            (b_q.clone(), bw),
            (v_q.clone(), 1),
            (c_q.clone(), 1),
            (l_q.clone(), 1),
            (p_q.clone(), pw),
            (pv_q.clone(), 1),
            (pc_q.clone(), 1),
            (pl_q.clone(), 1),
            (acc_q.clone(), accw),
            (sh_q.clone(), accw),
        ],
        vec![
            nb(&a_q, &a_i),
            nb(&b_q, &b_i),
            nb(&v_q, &v_i),
            nb(&c_q, &c_i),
            nb(&l_q, &l_i),
            nb(&p_q, &prod),
            nb(&pv_q, &v_q),
            nb(&pc_q, &c_q),
            nb(&pl_q, &l_q),
            if_(&pv_q, vec![nb(&acc_q, &acc_d.e)]),
            if_(pv_q.clone().land(pl_q.clone()), vec![nb(&sh_q, &acc_d.e)]),
        ],
    );
    m.assign(a_o, a_q);
    m.assign(b_o, b_q);
    m.assign(v_o, v_q);
    m.assign(c_o, c_q);
    m.assign(l_o, l_q);
    m.assign(acc_o, sh_q);
    m
}

/// The R×C grid of [`pe`]s (parameters R and C default to the config's array shape).
pub fn array(s: &Shape, pe: &Module) -> Module {
    let mut m = Module::new("dff_array").doc(format!(
        "{}x{} output-stationary systolic array of {}. a (with valid/clear) enters\n\
         on the west edge, b on the north edge; acc_o holds every PE's accumulator,\n\
         PE (r, c) at bits [(r*C + c)*ACC_W +: ACC_W] (the shadow of its last tile).",
        s.rows, s.cols, pe.name
    ));
    let r_p = m.param("R", s.rows);
    let c_p = m.param("C", s.cols);
    let (aw, bw, accw) = (s.a_w, s.b_w, s.acc_w);
    let clk = m.input("clk_i", 1);
    let rst = m.input("rst_i", 1);
    let west = m.input("west_i", &r_p * aw);
    let wv = m.input("wv_i", &r_p);
    let wc = m.input("wc_i", &r_p);
    let wl = m.input("wl_i", &r_p);
    let north = m.input("north_i", &c_p * bw);
    let east = m.output("east_o", &r_p * aw);
    let ev = m.output("ev_o", &r_p);
    let ec = m.output("ec_o", &r_p);
    let el = m.output("el_o", &r_p);
    let south = m.output("south_o", &c_p * bw);
    let acc_o = m.output("acc_o", &r_p * &c_p * accw);
    let h = m.wire("h", &r_p * (&c_p + 1) * aw);
    let hv = m.wire("hv", &r_p * (&c_p + 1));
    let hc = m.wire("hc", &r_p * (&c_p + 1));
    let hl = m.wire("hl", &r_p * (&c_p + 1));
    let v = m.wire("v", (&r_p + 1) * &c_p * bw);
    m.genvar("r");
    m.genvar("c");
    let htap = |r: &Expr, c: Expr| h.part((r * (&c_p + 1) + c) * aw, aw);
    let flag = |f: &Expr, r: &Expr, c: Expr| f.idx(r * (&c_p + 1) + c);
    let vtap = |r: Expr, c: &Expr| v.part((r * &c_p + c) * bw, bw);
    m.gen_for("r", 0, &r_p, "g_row", |row, r| {
        row.assign(htap(&r, int(0)), west.part(&r * aw, aw));
        row.assign(flag(&hv, &r, int(0)), wv.idx(&r));
        row.assign(flag(&hc, &r, int(0)), wc.idx(&r));
        row.assign(flag(&hl, &r, int(0)), wl.idx(&r));
        row.assign(east.part(&r * aw, aw), htap(&r, c_p.clone()));
        row.assign(ev.idx(&r), flag(&hv, &r, c_p.clone()));
        row.assign(ec.idx(&r), flag(&hc, &r, c_p.clone()));
        row.assign(el.idx(&r), flag(&hl, &r, c_p.clone()));
        row.gen_for("c", 0, &c_p, "g_col", |col, c| {
            col.instance(
                Instance::new(&pe.name, "u_pe")
                    .conn("clk_i", &clk)
                    .conn("rst_i", &rst)
                    .conn("a_i", htap(&r, c.clone()))
                    .conn("b_i", vtap(r.clone(), &c))
                    .conn("v_i", flag(&hv, &r, c.clone()))
                    .conn("clr_i", flag(&hc, &r, c.clone()))
                    .conn("last_i", flag(&hl, &r, c.clone()))
                    .conn("a_o", htap(&r, &c + 1))
                    .conn("b_o", vtap(&r + 1, &c))
                    .conn("v_o", flag(&hv, &r, &c + 1))
                    .conn("clr_o", flag(&hc, &r, &c + 1))
                    .conn("last_o", flag(&hl, &r, &c + 1))
                    .conn("acc_o", acc_o.part((&r * &c_p + &c) * accw, accw)),
            );
        });
    });
    m.gen_for("c", 0, &c_p, "g_edge", |col, c| {
        col.assign(vtap(int(0), &c), north.part(&c * bw, bw));
        col.assign(south.part(&c * bw, bw), vtap(r_p.clone(), &c));
    });
    m
}
