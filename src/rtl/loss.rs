//! Loss unit, hinge variant ([`crate::fixed::model::FixedDf::loss_unit`] with
//! `loss = "hinge"`): `yv_i` loads G̃(y); each negative slot `gv_i` gives
//! β_k = 1 if sat(G̃(k) − G̃(y) + m) > 0 and the slot is active, else 0 (one cycle later on
//! `b_o`/`bv_o`); the lane flagged `last_i` is followed by β_y = −Σ β_k on `b_o` with `byv_o`.
//!
//! N-pair variant ([`loss_npair`], `loss = "npair"`, [`crate::fixed::ops::loss_beta_npair`]):
//! a sequential unit with a start/done handshake, one exp ROM and one restoring divider.

use super::util::*;
use super::Shape;
use crate::fixed::QFormat;
use crate::hdl::*;

/// `at_zero` is a deliberate defect for the mutation test (a zero difference counts as a hit).
pub fn loss_hinge(s: &Shape, margin: i64, at_zero: bool) -> Module {
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
    let positive = if at_zero {
        d.e.clone().ge_(slit(gw + 1, 0))
    } else {
        d.e.clone().gt_(slit(gw + 1, 0))
    };
    m.assign(&hit, act_i.clone().land(positive));
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

/// Options of [`loss_npair`] besides the shape (the golden model's constants and tables).
#[derive(Clone, Copy, Debug)]
pub struct NpairConsts {
    pub margin: i64,
    /// s, raw with `const_frac` fraction bits.
    pub scale: i64,
    pub exp_addr_bits: u32,
    /// log2 of the logit LSBs per exp ROM word ([`crate::fixed::ExpTable::step_shift`]).
    pub exp_step_shift: u32,
    /// Mutation: the divider's quotient is one too large (must fail the co-simulation).
    pub recip_plus_one: bool,
}

/// Wire `unused_<name>` reading `e`, so Verilator's -Wall accepts bits a unit never needs.
fn consume(m: &mut Module, name: &str, e: Expr) {
    let u = m.wire(&format!("unused_{name}"), 1);
    m.assign(u, e.red_xor());
}

/// N-pair loss unit. `start_i` loads G̃ of the K slots (`g_i`, slot j at bits
/// `[j*gw +: gw]`, slot 0 = true label) and the active mask (`act_i`, bit 0 ignored); `done_o`
/// pulses when `b_o` holds β (slot 0 = β_y = −Σβ_k), held until the next start.
///
/// Why sequential: the loss runs once per sample and layer while the array runs a whole GEMM,
/// so one ROM port, one multiplier per phase and one divider are enough. The K−1 negative
/// slots sit in a rotating chain (head = bits `[xw-1:0]`) that each phase rewrites in place:
/// G̃ → t (LOGIT, one slot per cycle, also m = max(0, max t)), t → E (EXP, three cycles
/// per slot: ROM read, E registered, accumulate S; E_0 = exp(−m) first), one restoring divider for
/// R = floor(2^F / S) (DIV, F+1 cycles), E → β = sat(E·R >> (F − fb)) (BETA).
pub fn loss_npair(s: &Shape, c: NpairConsts) -> Module {
    let f = &s.f;
    let k = s.classes as u32;
    let n = k - 1;
    let gw = f.goodness.bits;
    let lw = f.logit.bits;
    let ew = f.exp_frac + 1;
    let bw = f.beta.bits;
    let a = c.exp_addr_bits;
    let sh = c.exp_step_shift;
    let ff_ = f.recip_frac.min(62);
    let rw = ff_ + 1;
    let sw = ew + bitlen(u128::from(k));
    let xw = gw.max(lw).max(ew).max(bw);
    let timing = crate::arch::schedule::NpairTiming::new(s);
    let (pl, pb) = (timing.logit_lat as u32, timing.beta_lat as u32);
    let cw = bitlen(u128::from((2 * n + 2).max(rw).max(n + pl).max(n + pb)));
    let mut m = Module::new("dff_loss_npair").doc(format!(
        "N-pair loss unit: t = sat(G(k) - G(y) + m) * s -> logit, E = exp ROM(t - max),\n\
         R = floor(2^{ff_} / S) by a restoring divider, beta_k = sat(E_k * R >> {}).",
        i64::from(ff_) - i64::from(f.beta.frac)
    ));
    let clk = m.input("clk_i", 1);
    m.input("rst_i", 1);
    let start_i = m.input("start_i", 1);
    let g_i = m.input("g_i", k * gw);
    let act_i = m.input("act_i", k);
    let b_o = m.output("b_o", k * bw);
    let done_o = m.output("done_o", 1);
    let busy_o = m.output("busy_o", 1);
    consume(&mut m, "act0", act_i.idx(0));

    // FSM states.
    const IDLE: u64 = 0;
    const LOGIT: u64 = 1;
    const EXP: u64 = 2;
    const DIV: u64 = 3;
    const BETA: u64 = 4;
    const FIN: u64 = 5;
    let st_q = m.reg("st_q", 3);
    let cnt_q = m.reg("cnt_q", cw);
    let x_q = m.reg("x_q", n * xw);
    let a_q = m.reg("a_q", n);
    let gy_q = m.reg("gy_q", gw);
    let m_q = m.reg_s("m_q", lw);
    let word_q = m.reg("word_q", ew);
    let zero_q = m.reg("zero_q", 1);
    let ph_q = m.reg("ph_q", 2);
    let s_q = m.reg("s_q", sw);
    let rem_q = m.reg("rem_q", sw);
    let r_q = m.reg("r_q", rw);
    let sumw = bw + 2;
    let sum_q = m.reg_s("sum_q", sumw);
    let by_q = m.reg("by_q", bw);
    let done_q = m.reg("done_q", 1);

    let a_head = a_q.idx(0);
    // The chain shifted by one slot with `new` entering at the top.
    let shifted = |new: Expr| {
        if n == 1 {
            new
        } else {
            cat([new, x_q.slice(n * xw - 1, xw)])
        }
    };
    let rotated_mask = if n == 1 {
        a_q.clone()
    } else {
        cat([a_head.clone(), a_q.slice(n - 1, 1)])
    };
    let widen = |m: &mut Module, name: &str, v: &Sig| -> Expr {
        let w = m.wire(name, xw);
        if v.w == xw {
            m.assign(&w, v.e.clone());
        } else if v.signed {
            m.assign(&w, ext(v, xw));
        } else {
            m.assign(&w, cat([lit(xw - v.w, 0), v.e.clone()]));
        }
        w
    };

    // LOGIT: t = requant(sat(G̃k − G̃y + m) · s), a pipeline of `pl` stages: the saturated
    // difference, the product with s on DSPs, the requantised t.
    m.comment("LOGIT: t = requant(sat(G(k) - G(y) + m) * s) of the head slot, pipelined.");
    let hg = m.wire("head_g", gw);
    m.assign(&hg, x_q.slice(gw - 1, 0));
    let dw = gw + 2;
    let diff = m.wire_s("diff", dw);
    m.assign(
        &diff,
        ext(&Sig::new(&hg, gw, false), dw) - ext(&Sig::new(&gy_q, gw, false), dw)
            + slit(dw, i128::from(c.margin)),
    );
    let dfmt = QFormat {
        bits: gw + 1,
        frac: f.goodness.frac,
        signed: true,
    };
    let d = saturate(&mut m, "d", &Sig::new(&diff, dw, true), dfmt);
    let d_q = m.reg_s("d_q", gw + 1);
    let scw = s.logit_scale_w;
    assert!(
        bitlen(c.scale.unsigned_abs() as u128) < scw,
        "logit scale {} needs more than {scw} bits",
        c.scale
    );
    let prod = mul_const_pipelined(
        &mut m,
        "logit",
        &Sig::new(&d_q, gw + 1, true),
        i128::from(c.scale),
        scw,
    );
    let t = requant(
        &mut m,
        "t",
        &prod,
        f.goodness.frac + f.const_frac,
        f.logit,
        f.rounding,
        None,
    );
    let logit_q = m.reg_s("logit_q", lw);
    // The slots' active bits, delayed alongside their logits.
    let la_q = m.reg("la_q", pl);
    m.always_ff(&clk, vec![nb(&d_q, &d.e), nb(&logit_q, &t.e)]);
    let t_x = widen(&mut m, "t_x", &Sig::new(&logit_q, lw, true));

    // EXP: address (m − t) >> step, or m >> step for E_0 (first step); out of the table → 0.
    m.comment("EXP: ROM address (m - t) >> step (m >> step for E_0); past the table E = 0.");
    let ht = m.wire_s("head_t", lw);
    m.assign(&ht, x_q.slice(lw - 1, 0));
    let adw = lw + 1;
    let e0 = m.wire("e0", 1);
    m.assign(&e0, cnt_q.clone().eq_(lit(cw, 0)));
    let ad = m.wire("ad", adw);
    m.assign(
        &ad,
        mux(
            &e0,
            ext(&Sig::new(&m_q, lw, true), adw),
            ext(&Sig::new(&m_q, lw, true), adw) - ext(&Sig::new(&ht, lw, true), adw),
        ),
    );
    assert!(sh < adw, "exp step shift {sh} >= logit width");
    let top = (a + sh).min(adw);
    let addr = m.wire("addr", a);
    let got = top - sh;
    if got == a {
        m.assign(&addr, ad.slice(top - 1, sh));
    } else {
        m.assign(&addr, cat([lit(a - got, 0), ad.slice(top - 1, sh)]));
    }
    let oob = m.wire("oob", 1);
    if adw > a + sh {
        m.assign(&oob, ad.slice(adw - 1, a + sh).red_or());
    } else {
        m.assign(&oob, lit(1, 0));
    }
    if sh > 0 {
        consume(&mut m, "ad", ad.slice(sh - 1, 0));
    }
    let rom = m.memory("rom", ew, int(1u64 << a), Some("exp.hex"));
    // Registered ROM read (block-RAM friendly); no reset on the ROM word.
    // E registered once more after the block RAM (whose output is slow) before the sum.
    let e_q = m.reg("e_q", ew);
    m.always_ff(
        &clk,
        vec![
            nb(&word_q, rom.idx(&addr)),
            nb(&e_q, mux(&zero_q, lit(ew, 0), &word_q)),
        ],
    );
    let e_x = widen(&mut m, "e_x", &Sig::new(&e_q, ew, false));

    // DIV: restoring division of 2^F by S, one quotient bit per cycle (MSB first).
    m.comment("DIV: restoring divider, quotient bit per cycle: R = floor(2^F / S).");
    let trial = m.wire("trial", sw + 1);
    m.assign(&trial, cat([rem_q.clone(), cnt_q.clone().eq_(lit(cw, 0))]));
    let ge = m.wire("ge", 1);
    m.assign(&ge, trial.clone().ge_(cat([lit(1, 0), s_q.clone()])));
    let sub = m.wire("sub", sw + 1);
    m.assign(&sub, &trial - cat([lit(1, 0), s_q.clone()]));
    consume(&mut m, "sub", sub.idx(sw));
    let rem_next = m.wire("rem_next", sw);
    m.assign(
        &rem_next,
        mux(&ge, sub.slice(sw - 1, 0), trial.slice(sw - 1, 0)),
    );
    consume(&mut m, "trial", trial.idx(sw));

    // BETA: β = sat(E · R >> (F − fb)) (truncating, E·R <= 2^F), a pipeline of `pb`
    // stages: the product on DSPs, the saturated β.
    m.comment("BETA: beta = sat(E * R >> (F - fb)), truncating, pipelined.");
    let he = m.wire("head_e", ew);
    m.assign(&he, x_q.slice(ew - 1, 0));
    let r_eff = m.wire("r_eff", rw);
    m.assign(
        &r_eff,
        if c.recip_plus_one {
            &r_q + lit(rw, 1)
        } else {
            r_q.clone()
        },
    );
    let er = mul_pipelined(
        &mut m,
        "beta",
        &Sig::new(&he, ew, false),
        &Sig::new(&r_eff, rw, false),
    );
    let beta = requant(
        &mut m,
        "b",
        &er,
        ff_,
        f.beta,
        crate::fixed::Rounding::Truncate,
        None,
    );
    let bq_q = m.reg_s("bq_q", bw);
    m.always_ff(&clk, vec![nb(&bq_q, &beta.e)]);
    let bq = Sig::new(&bq_q, bw, true);
    let b_x = widen(&mut m, "b_x", &bq);
    let negsum = m.wire_s("negsum", sumw);
    m.assign(&negsum, -&sum_q);
    consume(&mut m, "negsum", negsum.slice(sumw - 1, bw));

    // Start: slots 1..K−1 into the chain (slot 1 at the head), G̃y and the mask latched.
    let mut init = Vec::new();
    for j in (1..k).rev() {
        let g = g_i.slice((j + 1) * gw - 1, j * gw);
        init.push(if xw > gw {
            cat([lit(xw - gw, 0), g])
        } else {
            g
        });
    }
    let init = if init.len() == 1 {
        init.pop().unwrap_or_else(|| lit(1, 0))
    } else {
        cat(init)
    };
    let la_in = if pl == 1 {
        a_head.clone()
    } else {
        cat([la_q.slice(pl - 2, 0), a_head.clone()])
    };
    let last = |v: u32| cnt_q.clone().eq_(lit(cw, u64::from(v)));
    let inc = nb(&cnt_q, &cnt_q + lit(cw, 1));
    let goto = |st: u64| vec![nb(&st_q, lit(3, st)), nb(&cnt_q, lit(cw, 0))];
    let body = vec![
        nb(&done_q, lit(1, 0)),
        case(
            &st_q,
            vec![
                arm(
                    lit(3, IDLE),
                    vec![if_(
                        &start_i,
                        vec![
                            nb(&x_q, init),
                            nb(&a_q, act_i.slice(k - 1, 1)),
                            nb(&gy_q, g_i.slice(gw - 1, 0)),
                            nb(&m_q, lit(lw, 0)),
                            nb(&s_q, lit(sw, 0)),
                            nb(&st_q, lit(3, LOGIT)),
                            nb(&cnt_q, lit(cw, 0)),
                        ],
                    )],
                ),
                arm(
                    lit(3, LOGIT),
                    vec![
                        // The chain shifts every cycle: slot c leaves the head into the
                        // pipeline at c < n, its t enters the top at c + pl; the first pl
                        // entries are flushed out again by the last pl shifts.
                        nb(&x_q, shifted(t_x.clone())),
                        nb(&la_q, la_in),
                        if_(
                            cnt_q.clone().lt_(lit(cw, u64::from(n))),
                            vec![nb(&a_q, rotated_mask.clone())],
                        ),
                        if_(
                            cnt_q
                                .clone()
                                .ge_(lit(cw, u64::from(pl)))
                                .land(la_q.idx(pl - 1))
                                .land(logit_q.clone().gt_(&m_q)),
                            vec![nb(&m_q, &logit_q)],
                        ),
                        if_(last(n + pl - 1), goto(EXP)).else_(vec![inc.clone()]),
                    ],
                ),
                arm(
                    lit(3, EXP),
                    vec![
                        // Three cycles per slot (E_0 first, then the K − 1 slots): the
                        // ROM read at phase 0, E registered at phase 1, summed at phase 2.
                        nb(
                            &zero_q,
                            mux(&e0, &oob, oob.clone().lor(a_head.clone().lnot())),
                        ),
                        if_(
                            ph_q.clone().eq_(lit(2, 2)),
                            vec![
                                nb(&ph_q, lit(2, 0)),
                                nb(&s_q, &s_q + cat([lit(sw - ew, 0), e_q.clone()])),
                                if_(
                                    e0.clone().lnot(),
                                    vec![nb(&x_q, shifted(e_x.clone())), nb(&a_q, rotated_mask)],
                                ),
                                if_(last(n), {
                                    let mut v = goto(DIV);
                                    v.push(nb(&rem_q, lit(sw, 0)));
                                    v.push(nb(&r_q, lit(rw, 0)));
                                    v
                                })
                                .else_(vec![inc.clone()]),
                            ],
                        )
                        .else_(vec![nb(&ph_q, &ph_q + lit(2, 1))]),
                    ],
                ),
                arm(
                    lit(3, DIV),
                    vec![
                        nb(&rem_q, &rem_next),
                        nb(
                            &r_q,
                            if rw == 1 {
                                ge.clone()
                            } else {
                                cat([r_q.slice(rw - 2, 0), ge.clone()])
                            },
                        ),
                        if_(last(rw - 1), {
                            let mut v = goto(BETA);
                            v.push(nb(&sum_q, lit(sumw, 0)));
                            v
                        })
                        .else_(vec![inc.clone()]),
                    ],
                ),
                arm(
                    lit(3, BETA),
                    vec![
                        // As in LOGIT: β of slot c enters the top at c + pb.
                        nb(&x_q, shifted(b_x)),
                        if_(
                            cnt_q.clone().ge_(lit(cw, u64::from(pb))),
                            vec![nb(&sum_q, &sum_q + ext(&bq, sumw))],
                        ),
                        if_(last(n + pb - 1), goto(FIN)).else_(vec![inc]),
                    ],
                ),
                arm(
                    lit(3, FIN),
                    vec![
                        nb(&by_q, negsum.slice(bw - 1, 0)),
                        nb(&done_q, lit(1, 1)),
                        nb(&st_q, lit(3, IDLE)),
                    ],
                ),
            ],
            vec![nb(&st_q, lit(3, IDLE))],
        ),
    ];
    ff(
        &mut m,
        vec![
            (st_q.clone(), 3),
            (cnt_q.clone(), cw),
            (x_q.clone(), n * xw),
            (a_q.clone(), n),
            (gy_q.clone(), gw),
            (m_q.clone(), lw),
            (zero_q.clone(), 1),
            (ph_q.clone(), 2),
            (s_q.clone(), sw),
            (rem_q.clone(), sw),
            (r_q.clone(), rw),
            (sum_q.clone(), sumw),
            (by_q.clone(), bw),
            (done_q.clone(), 1),
        ],
        body,
    );
    let mut outs = Vec::new();
    for j in (0..n).rev() {
        outs.push(x_q.slice(j * xw + bw - 1, j * xw));
    }
    outs.push(by_q.clone());
    m.assign(b_o, cat(outs));
    m.assign(done_o, done_q);
    m.assign(busy_o, st_q.ne_(lit(3, IDLE)));
    m
}
