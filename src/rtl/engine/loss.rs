//! The LOSS op engine (`dff_op_loss`): per sample and layer, G̃ of every slot (the
//! collaborating layers' G added with saturation, in layer order as the golden model),
//! the hard negatives (n rounds over the gathered scores, ties to the lower slot), and the
//! loss unit: N-pair (start/done, then the K betas written slot by slot) or hinge (the
//! slots streamed through it). Samples follow each other ([`LossTiming`]).

use super::build::*;
use crate::arch::memmap::TensorId;
use crate::arch::schedule::{LossTiming, READ_LAT};
use crate::arch::Arch;
use crate::config::Collaboration;
use crate::hdl::*;

pub fn loss(arch: &Arch) -> Module {
    let s = &arch.shape;
    let f = &s.f;
    let nl = arch.layers();
    let ncls = arch.classes;
    let kh = arch.hyps;
    let gw = f.goodness.bits;
    let bw = f.beta.bits;
    let npair = arch.npair();
    let hard = arch.hard;
    let tim = LossTiming::new(arch);
    let mut e = Eng::new(
        "dff_op_loss",
        format!(
            "LOSS op engine: G~ of the {kh} slots, {}{} loss unit, beta per slot\n\
             (arch::schedule::LossTiming).",
            if hard.is_some() {
                "hard negatives, "
            } else {
                ""
            },
            if npair { "N-pair" } else { "hinge" }
        ),
    );
    let io = e.op_io(arch);
    let t = |id_: TensorId| arch.mem.t(id_).clone();
    let g: Vec<MemPort> = (0..nl)
        .map(|l| e.mem_port(&t(TensorId::G(l)), false, true))
        .collect();
    let beta: Vec<MemPort> = (0..nl)
        .map(|l| e.mem_port(&t(TensorId::Beta(l)), true, false))
        .collect();
    let (_, sw, rw) = seq_widths(arch);
    let kw = cw(kh.max(2));
    let rl = READ_LAT as usize;

    let states = [
        "StIdle", "StGather", "StWaitG", "StSelect", "StStart", "StWaitL", "StWrite", "StStream",
        "StTail",
    ];
    let stw = 4u32;
    for (i, n) in states.iter().enumerate() {
        e.m.localparam(n, lit(stw, i as u64));
    }
    let (st, st_d) = e.reg("st", stw, 0);
    let in_st = |n: &str| st.clone().eq_(id(n));
    let (k, k_d) = e.reg("slot", kw, 0);
    // The wait counter covers the gather's READ_LAT and the hinge tail's two cycles.
    let ww = cw(rl.max(2));
    let (wc, wc_d) = e.reg("wait", ww, 0);
    let (smp, smp_d) = e.reg("sample", sw, 0);
    let (sb, sb_d) = e.reg("row_base", rw, 0);
    let (act, act_d) = e.reg("active", ncls as u32, 0);
    let nr = hard.unwrap_or(1);
    let (rnd, rnd_d) = e.reg("round", cw(nr), 0);
    let (best, best_d) = e.reg("best", gw, 0);
    let (besti, besti_d) = e.reg("best_slot", kw, 0);
    let (bval, bval_d) = e.reg("best_valid", 1, 0);
    let ls_done = e.m.wire("ls_done", 1);

    // G̃ of the op's layer gathered per slot into gt (slot j at bits [j*gw +: gw]).
    // (The N-pair unit takes a slot per class; the hinge stream only the hypotheses.)
    let nslots = if npair { ncls } else { kh };
    let gt = e.m.reg("gt_q", gw * nslots as u32);
    let slot_of = |x: &Expr, j: usize| x.part(int((j as u64) * u64::from(gw)), int(u64::from(gw)));
    let gmax = f.goodness.max() as u64;
    let mut chain_sel = lit(gw, 0);
    for l in (0..nl).rev() {
        let mut acc = zext(g[l].rdata(0), gw, gw + 1);
        let mut n = 0;
        for t_ in 0..nl {
            let inc = match arch.collaboration {
                Collaboration::None => false,
                Collaboration::Previous => t_ < l,
                Collaboration::All => t_ != l,
            };
            if inc {
                let sum = e.wire(
                    &format!("gt{}_sum{n}", l + 1),
                    gw + 1,
                    acc + zext(g[t_].rdata(0), gw, gw + 1),
                );
                acc = e.wire(
                    &format!("gt{}_sat{n}", l + 1),
                    gw + 1,
                    mux(sum.clone().gt_(lit(gw + 1, gmax)), lit(gw + 1, gmax), sum),
                );
                n += 1;
            }
        }
        let gl = e.wire(&format!("gt{}", l + 1), gw + 1, acc);
        e.unused(&format!("gt{}_top", l + 1), gl.idx(gw));
        chain_sel = mux(io.is_layer(l), gl.slice(gw - 1, 0), chain_sel);
    }
    let gt_now = e.wire("gt_now", gw, chain_sel);
    let gather = in_st("StGather");
    let gv = e.delay_flag("gather_v", gather.clone(), 1, rl);
    let gk = e.delay("gather_slot", k.clone(), kw, rl);
    let gaw = g[0].aw;
    let grow = e.wire("g_row", gaw, fit(&sb, rw, gaw) + fit(&k, kw, gaw));
    for l in 0..nl {
        e.read_all(&g[l], gather.clone(), grow.clone());
    }
    let gt_writes: Vec<Stmt> = (0..kh)
        .map(|j| {
            if_(
                gv.clone().land(gk.clone().eq_(lit(kw, j as u64))),
                vec![nb(slot_of(&gt, j), &gt_now)],
            )
        })
        .collect();
    e.m.always_ff(id("clk_i"), gt_writes);
    if kh < nslots {
        // (Slots beyond the hypotheses exist in the unit's port but stay unused.)
        let pad: Vec<Stmt> = (kh..nslots)
            .map(|j| nb(slot_of(&gt, j), lit(gw, 0)))
            .collect();
        e.m.always_ff(id("clk_i"), pad);
    }

    // ---------------------------------------------------------------- the sample loop
    let k_last = k.clone().eq_(lit(kw, (kh - 1) as u64));
    let nsamp = mux(io.infer.clone(), lit(sw, 1), io.nsamp.clone());
    let last_sample = smp.clone().eq_(nsamp - lit(sw, 1));
    let next_sample = vec![
        set(&smp_d, &smp + lit(sw, 1)),
        set(&sb_d, &sb + lit(rw, kh as u64)),
        set(&k_d, lit(kw, 0)),
        if_(
            last_sample.clone(),
            vec![set(&st_d, id("StIdle")), set(&io.done_d, lit(1, 1))],
        )
        .else_(vec![set(&st_d, id("StGather"))]),
    ];
    let after_gather = if hard.is_some() {
        vec![
            set(&st_d, id("StSelect")),
            set(&k_d, lit(kw, 1)),
            set(&rnd_d, lit(cw(nr), 0)),
            set(&act_d, lit(ncls as u32, 0)),
            set(&bval_d, lit(1, 0)),
        ]
    } else if npair {
        vec![set(&st_d, id("StStart"))]
    } else {
        vec![set(&st_d, id("StStream")), set(&k_d, lit(kw, 0))]
    };
    let after_select = if npair {
        vec![set(&st_d, id("StStart"))]
    } else {
        vec![set(&st_d, id("StStream")), set(&k_d, lit(kw, 0))]
    };
    let mut arms = vec![
        arm(
            id("StIdle"),
            vec![if_(
                io.start.clone(),
                vec![
                    set(&st_d, id("StGather")),
                    set(&k_d, lit(kw, 0)),
                    set(&smp_d, lit(sw, 0)),
                    set(&sb_d, lit(rw, 0)),
                ],
            )],
        ),
        arm(
            id("StGather"),
            vec![if_(
                k_last.clone(),
                vec![set(&st_d, id("StWaitG")), set(&wc_d, lit(ww, 0))],
            )
            .else_(vec![set(&k_d, &k + lit(kw, 1))])],
        ),
        arm(
            id("StWaitG"),
            vec![if_(wc.clone().eq_(lit(ww, (rl - 1) as u64)), after_gather)
                .else_(vec![set(&wc_d, &wc + lit(ww, 1))])],
        ),
    ];
    // Hard negatives: each round marks the highest unmarked G̃ of slots 1..K−1.
    if let Some(n) = hard {
        let cand = pick(&k, kw, kh, |j| slot_of(&gt, j));
        let candw = e.wire("sel_cand", gw, cand);
        let taken = pick(&k, kw, kh, |j| act.idx(int(j as u64)));
        let better = e.wire(
            "sel_better",
            1,
            taken
                .lnot()
                .land(bval.clone().lnot().lor(candw.clone().gt_(best.clone()))),
        );
        let win = e.wire("sel_win", kw, mux(better.clone(), k.clone(), besti.clone()));
        let mark: Vec<Stmt> = (1..kh)
            .map(|j| {
                if_(
                    win.clone().eq_(lit(kw, j as u64)),
                    vec![set(act_d.idx(int(j as u64)), lit(1, 1))],
                )
            })
            .collect();
        let mut end_round = mark;
        end_round.push(set(&bval_d, lit(1, 0)));
        end_round.push(set(&k_d, lit(kw, 1)));
        end_round.push(set(&rnd_d, &rnd + lit(cw(nr), 1)));
        end_round.push(if_(
            rnd.clone().eq_(lit(cw(nr), (n - 1) as u64)),
            after_select,
        ));
        arms.push(arm(
            id("StSelect"),
            vec![
                if_(
                    better.clone(),
                    vec![
                        set(&best_d, candw.clone()),
                        set(&besti_d, k.clone()),
                        set(&bval_d, lit(1, 1)),
                    ],
                ),
                if_(k_last.clone(), end_round).else_(vec![set(&k_d, &k + lit(kw, 1))]),
            ],
        ));
    } else {
        e.unused(
            "select",
            cat([rnd.clone(), best.clone(), besti.clone(), bval.clone()]),
        );
    }
    let act_mask: u64 = ((1u64 << kh) - 1) & !1;
    let act_now = if hard.is_some() {
        act.clone()
    } else {
        e.unused("act", act.clone());
        lit(ncls as u32, act_mask)
    };
    let baw = beta[0].aw;
    let beta_addr = |e: &mut Eng, name: &str, off: Expr| e.wire(name, baw, fit(&sb, rw, baw) + off);
    if npair {
        arms.push(arm(id("StStart"), vec![set(&st_d, id("StWaitL"))]));
        arms.push(arm(
            id("StWaitL"),
            vec![if_(
                ls_done.clone(),
                vec![set(&st_d, id("StWrite")), set(&k_d, lit(kw, 0))],
            )],
        ));
        arms.push(arm(
            id("StWrite"),
            vec![if_(k_last.clone(), next_sample.clone()).else_(vec![set(&k_d, &k + lit(kw, 1))])],
        ));
        let ls_b = e.m.wire("ls_b", bw * ncls as u32);
        let busy = e.m.wire("ls_busy", 1);
        e.m.instance(
            Instance::new("dff_loss_npair", "u_loss")
                .conn("clk_i", id("clk_i"))
                .conn("rst_i", id("rst_i"))
                .conn("start_i", in_st("StStart"))
                .conn("g_i", &gt)
                .conn("act_i", act_now)
                .conn("b_o", &ls_b)
                .conn("done_o", &ls_done)
                .conn("busy_o", &busy),
        );
        e.unused("ls_busy", busy);
        let bsel = pick(&k, kw, kh, |j| {
            ls_b.part(int((j as u64) * u64::from(bw)), int(u64::from(bw)))
        });
        let bv = e.wire("beta_out", bw, bsel);
        let addr = beta_addr(&mut e, "beta_row", fit(&k, kw, baw));
        for l in 0..nl {
            let c = in_st("StWrite").land(io.is_layer(l));
            e.write_one(&beta[l], c, lit(1, 1), addr.clone(), bv.clone());
        }
        if kh < ncls {
            let hi: Vec<Expr> = (kh..ncls)
                .map(|j| ls_b.part(int((j as u64) * u64::from(bw)), int(u64::from(bw))))
                .collect();
            e.unused("ls_b_high", cat(hi));
        }
    } else {
        e.m.assign(&ls_done, lit(1, 0));
        e.unused("ls_done", ls_done.clone());
        // Stream slot k into the hinge unit: slot 0 loads G̃(y), the others give β_k one
        // cycle later, β_y follows the last two cycles after it.
        let on = in_st("StStream");
        let gk_ = pick(&k, kw, kh, |j| slot_of(&gt, j));
        let gsel = e.wire("hg_g", gw, gk_);
        let actk = if hard.is_some() {
            pick(&k, kw, kh, |j| act.idx(int(j as u64)))
        } else {
            lit(1, 1)
        };
        let hb = e.m.wire("hg_b", bw);
        let hbv = e.m.wire("hg_bv", 1);
        let hbyv = e.m.wire("hg_byv", 1);
        e.m.instance(
            Instance::new("dff_loss_hinge", "u_loss")
                .conn("clk_i", id("clk_i"))
                .conn("rst_i", id("rst_i"))
                .conn("gy_i", &gsel)
                .conn("yv_i", on.clone().land(k.clone().eq_(lit(kw, 0))))
                .conn("g_i", &gsel)
                .conn("gv_i", on.clone().land(k.clone().ne_(lit(kw, 0))))
                .conn("act_i", actk)
                .conn("last_i", on.clone().land(k_last.clone()))
                .conn("b_o", &hb)
                .conn("bv_o", &hbv)
                .conn("byv_o", &hbyv),
        );
        arms.push(arm(
            id("StStream"),
            vec![if_(
                k_last.clone(),
                vec![set(&st_d, id("StTail")), set(&wc_d, lit(ww, 0))],
            )
            .else_(vec![set(&k_d, &k + lit(kw, 1))])],
        ));
        arms.push(arm(
            id("StTail"),
            vec![if_(wc.clone().eq_(lit(ww, 1)), next_sample.clone())
                .else_(vec![set(&wc_d, &wc + lit(ww, 1))])],
        ));
        let k1 = e.delay("beta_slot", k.clone(), kw, 1);
        let a = beta_addr(
            &mut e,
            "beta_row",
            mux(hbyv.clone(), lit(baw, 0), fit(&k1, kw, baw)),
        );
        for l in 0..nl {
            let c = hbv.clone().lor(hbyv.clone()).land(io.is_layer(l));
            e.write_one(&beta[l], c, lit(1, 1), a.clone(), hb.clone());
        }
        let _ = &tim;
    }
    e.comb
        .push(case(st.clone(), arms, vec![set(&st_d, id("StIdle"))]));
    e.finish()
}
