//! The update engine (`dff_op_update`): the parameter read-modify-writes through the
//! update lanes (one [`crate::rtl::update`] unit per weight bank, each with its LFSR lane).
//!
//! - GRAD l: the drain hands it a gradient column per cycle (R lanes, one W_l word); it
//!   reads the word of every bank, feeds each lane the gradient of the element its bank
//!   holds (DF-O rotates: bank b holds lane (b − n) mod R), and writes the results back;
//! - BUPD l: b_l[j] −= round(Δb_l[j] · η/B) in address order on lane 0;
//! - UUPD: U likewise, clearing ΔU as it goes.
//!
//! The golden model's update walk ([`crate::fixed::model::UpdateUnit::update_tiled`])
//! follows the same order: the one place where order matters (stochastic rounding).

use super::build::*;
use crate::arch::memmap::TensorId;
use crate::arch::program::Op;
use crate::arch::schedule::{update_lat, READ_LAT};
use crate::arch::Arch;
use crate::hdl::*;
use crate::rtl::util::{ext, Sig};

pub fn update(arch: &Arch) -> Module {
    let s = &arch.shape;
    let f = &s.f;
    let rr = arch.rows;
    let nl = arch.layers();
    let accw = s.acc_w;
    let pw = s.param_w;
    let gw = f.update.bits;
    let mut e = Eng::new(
        "dff_op_update",
        format!(
            "Update engine: W_l read-modify-write of the GRAD drain's columns on {rr} update\n\
             lanes, BUPD and UUPD on lane 0 (docs/engine.md)."
        ),
    );
    let io = e.op_io(arch);
    e.unused(
        "io",
        cat([io.infer.clone(), io.nsamp.clone(), io.nrows.clone()]),
    );
    let lr_i = e.m.input("lr_i", s.lr_w);
    let t = |id_: TensorId| arch.mem.t(id_).clone();
    let wmax = (0..nl).map(|l| t(TensorId::W(l)).aw()).max().unwrap_or(1);
    let mw = cw(rr.max(arch.cols).max(arch.lanes.h_banks));
    let gv_i = e.m.input("grad_v_i", 1);
    let gl_i = e.m.input("grad_lanes_i", accw * rr as u32);
    let glv_i = e.m.input("grad_lv_i", rr as u32);
    let gword_i = e.m.input("grad_word_i", wmax);
    let grot_i = e.m.input("grad_rot_i", mw);
    let w: Vec<MemPort> = (0..nl)
        .map(|l| e.mem_port(&t(TensorId::W(l)), true, true))
        .collect();
    let b: Vec<MemPort> = (0..nl)
        .map(|l| e.mem_port(&t(TensorId::B(l)), true, true))
        .collect();
    let u = e.mem_port(&t(TensorId::U), true, true);
    let db: Vec<MemPort> = (0..nl)
        .map(|l| e.mem_port(&t(TensorId::Db(l)), false, true))
        .collect();
    let du = e.mem_port(&t(TensorId::Du), true, true);
    let dl = arch.lanes.delta;
    let lat = (READ_LAT + update_lat(s)) as usize;
    let rl = READ_LAT as usize;

    // ---------------------------------------------------------------- BUPD / UUPD walk
    let n_max = arch
        .dims
        .iter()
        .skip(1)
        .copied()
        .max()
        .unwrap_or(1)
        .max(arch.classes * arch.dims[1]);
    let jw = cw(n_max);
    let d1 = arch.dims[1];
    let (st, st_d) = e.reg("st", 1, 0);
    let (j, j_d) = e.reg("j", jw, 0);
    let (jn, jn_d) = e.reg("count", jw, 0);
    let (isu, isu_d) = e.reg("uupd", 1, 0);
    // ΔU's position of U[c][o]: bank o mod dl, word c·⌈d1/dl⌉ + o div dl.
    let ow = cw(d1);
    let (uo, uo_d) = e.reg("u_col", ow, 0);
    let (um, um_d) = e.reg("u_lane", cw(dl), 0);
    let (uw, uw_d) = e.reg("u_word", du.aw + 1, 0);
    let run = st.clone().eq_(lit(1, 1));
    let walk = e.wire("walk", 1, run.clone());
    {
        let mut nexp = lit(jw, (arch.classes * d1) as u64);
        for l in (0..nl).rev() {
            nexp = mux(io.is_layer(l), lit(jw, arch.dims[l + 1] as u64), nexp);
        }
        let nexp = mux(
            io.is_kind(Op::Uupd),
            lit(jw, (arch.classes * d1) as u64),
            nexp,
        );
        let start = vec![
            set(&st_d, lit(1, 1)),
            set(&j_d, lit(jw, 0)),
            set(&jn_d, nexp),
            set(&isu_d, io.is_kind(Op::Uupd)),
            set(&uo_d, lit(ow, 0)),
            set(&um_d, lit(cw(dl), 0)),
            set(&uw_d, lit(du.aw + 1, 0)),
        ];
        let last = j.clone().eq_(jn.clone() - lit(jw, 1));
        // The walk issues j = 0 .. n−1 from the cycle after start; the op ends with the
        // last write-back, READ_LAT + update_lat later.
        let (tail, tail_d) = e.reg("tail", cw(lat + 1), 0);
        e.comb.push(
            if_(
                run.clone(),
                vec![
                    set(&j_d, &j + lit(jw, 1)),
                    if_(
                        uo.clone().eq_(lit(ow, (d1 - 1) as u64)),
                        vec![
                            set(&uo_d, lit(ow, 0)),
                            set(&um_d, lit(cw(dl), 0)),
                            set(&uw_d, &uw + lit(du.aw + 1, 1)),
                        ],
                    )
                    .else_(vec![
                        set(&uo_d, &uo + lit(ow, 1)),
                        set(&um_d, inc_mod(&um, cw(dl), dl)),
                        if_(
                            um.clone().eq_(lit(cw(dl), (dl - 1) as u64)),
                            vec![set(&uw_d, &uw + lit(du.aw + 1, 1))],
                        ),
                    ]),
                    if_(
                        last,
                        vec![
                            set(&st_d, lit(1, 0)),
                            set(&tail_d, lit(cw(lat + 1), lat as u64)),
                        ],
                    ),
                ],
            )
            .else_if(
                tail.clone().ne_(lit(cw(lat + 1), 0)),
                vec![
                    set(&tail_d, &tail - lit(cw(lat + 1), 1)),
                    if_(
                        tail.clone().eq_(lit(cw(lat + 1), 1)),
                        vec![set(&io.done_d, lit(1, 1))],
                    ),
                ],
            )
            .else_if(io.start.clone(), start),
        );
    }
    // Reads: b_l[j] and Δb_l (bank j mod dl, word j div dl), or U[j] and ΔU.
    let (jdq, jdq_d) = e.reg("db_word", jw, 0);
    let (jdm, jdm_d) = e.reg("db_lane", cw(dl), 0);
    e.comb.push(
        if_(
            io.start.clone(),
            vec![set(&jdq_d, lit(jw, 0)), set(&jdm_d, lit(cw(dl), 0))],
        )
        .else_if(
            run.clone(),
            vec![
                set(&jdm_d, inc_mod(&jdm, cw(dl), dl)),
                if_(
                    jdm.clone().eq_(lit(cw(dl), (dl - 1) as u64)),
                    vec![set(&jdq_d, &jdq + lit(jw, 1))],
                ),
            ],
        ),
    );
    for l in 0..nl {
        let c = walk.clone().land(isu.clone().lnot()).land(io.is_layer(l));
        e.read_all(&b[l], c.clone(), fit(&j, jw, b[l].aw));
        e.read_all(&db[l], c, fit(&jdq, jw, db[l].aw));
    }
    let cu = walk.clone().land(isu.clone());
    e.read_all(&u, cu.clone(), fit(&j, jw, u.aw));
    e.read_all(&du, cu.clone(), fit(&uw, du.aw + 1, du.aw));
    // ΔU is cleared as it is consumed (three cycles after the read).
    {
        let c = e.delay_flag("du_clear", cu, 1, rl);
        let lane = e.delay("du_clear_lane", um.clone(), cw(dl), rl);
        let word = e.delay("du_clear_word", fit(&uw, du.aw + 1, du.aw), du.aw, rl);
        let data = (0..dl).map(|_| lit(du.width, 0)).collect();
        let addrs = (0..dl).map(|_| word.clone()).collect();
        e.write(&du, c, onehot(&lane, cw(dl), dl), addrs, data);
    }
    e.unused("uw_hi", uw.slice(du.aw, du.aw));
    // Data, READ_LAT later: the parameter and its gradient sum.
    let wv = e.delay_flag("walk_v", walk.clone(), 1, rl);
    let lane_r = e.delay("walk_lane", jdm.clone(), cw(dl), rl);
    let ulane_r = e.delay("walk_ulane", um.clone(), cw(dl), rl);
    let gsw = arch.grad_sum_width();
    let sel_lane = |p: &MemPort, sel: &Expr| pick(sel, cw(dl), dl, |k| p.rdata(k));
    let mut par = lit(pw, 0);
    let mut gsum = lit(gsw, 0);
    for l in (0..nl).rev() {
        let bl = e.wire_s(&format!("b{}_old", l + 1), f.bias.bits, b[l].rdata(0));
        par = mux(
            io.is_layer(l),
            ext(&Sig::new(bl, f.bias.bits, true), pw),
            par,
        );
        let g = e.wire(&format!("db{}_sum", l + 1), gsw, sel_lane(&db[l], &lane_r));
        gsum = mux(io.is_layer(l), g, gsum);
    }
    let uold = e.wire_s("u_old", f.centroid.bits, u.rdata(0));
    let par = mux(
        isu.clone(),
        ext(&Sig::new(uold, f.centroid.bits, true), pw),
        par,
    );
    let dug = e.wire("du_sum", gsw, sel_lane(&du, &ulane_r));
    let gsum = e.wire_s("grad_sum", gsw, mux(isu.clone(), dug, gsum));
    let walk_par = e.wire("walk_par", pw, par);
    let walk_g = ext(&Sig::new(gsum, gsw, true), gw);
    let walk_kind = mux(isu.clone(), lit(2, 2), lit(2, 1));

    // ---------------------------------------------------------------- GRAD columns
    // Columns arrive while a GRAD op runs (on the GEMM engine): its registered decode.
    let grad_ops: Vec<Op> = (0..nl).map(Op::Grad).collect();
    let grad_flags = e.op_flags(&io, &grad_ops);
    let is_grad = e.wire(
        "is_grad",
        1,
        grad_ops
            .iter()
            .map(|&o| grad_flags.of(o))
            .reduce(|a, b| a.lor(b))
            .unwrap_or_else(|| lit(1, 0)),
    );
    for l in 0..nl {
        let c = gv_i.clone().land(grad_flags.of(Op::Grad(l)));
        e.read_all(&w[l], c, fit(&gword_i, wmax, w[l].aw));
    }
    let gv = e.delay_flag("grad_v", gv_i.clone().land(is_grad.clone()), 1, rl);
    let glanes = e.delay("grad_lanes", gl_i.clone(), accw * rr as u32, rl);
    let glv = e.delay("grad_lv", glv_i.clone(), rr as u32, rl);
    let gword = e.delay("grad_word", gword_i.clone(), wmax, lat);
    let grot = if arch.diag_w() && rr > 1 {
        e.delay("grad_rot", grot_i.clone(), mw, rl)
    } else {
        e.unused("grad_rot", grot_i.clone());
        lit(mw, 0)
    };
    // Bank b's lane: b, or (b − n) mod R under DF-O.
    let lane_of = |b: usize, x: &Expr, w: u32| -> Expr {
        let part = |i: usize| {
            if w == 1 && rr == 1 {
                x.clone()
            } else if w == 1 {
                x.idx(int(i as u64))
            } else {
                x.part(int((i as u64) * u64::from(w)), int(u64::from(w)))
            }
        };
        if arch.diag_w() && rr > 1 {
            pick(&grot, mw, rr, |r| part((b + rr - r) % rr))
        } else {
            part(b)
        }
    };

    // ---------------------------------------------------------------- update lanes
    let up_w = e.m.wire("up_w", pw * rr as u32);
    let up_g = e.m.wire("up_g", gw * rr as u32);
    let up_v = e.m.wire("up_v", rr as u32);
    let up_wo = e.m.wire("up_wo", pw * rr as u32);
    let up_vo = e.m.wire("up_vo", rr as u32);
    let up_kind = e.wire("up_kind", 2, mux(wv.clone(), walk_kind, lit(2, 0)));
    let mut ws = Vec::new();
    let mut gs = Vec::new();
    let mut vs = Vec::new();
    for bk in 0..rr {
        let mut wsel = lit(f.weight.bits, 0);
        for l in (0..nl).rev() {
            wsel = mux(io.is_layer(l), w[l].rdata(bk), wsel);
        }
        let wold = e.wire_s(&format!("w_old{bk}"), f.weight.bits, wsel);
        let gl = e.wire_s(&format!("grad{bk}"), accw, lane_of(bk, &glanes, accw));
        let gv_b = e.wire(
            &format!("grad_v{bk}"),
            1,
            gv.clone().land(lane_of(bk, &glv, 1)),
        );
        let gx = if gw == accw {
            gl.clone()
        } else {
            ext(&Sig::new(gl, accw, true), gw)
        };
        let wx = ext(&Sig::new(wold, f.weight.bits, true), pw);
        if bk == 0 {
            ws.push(mux(wv.clone(), walk_par.clone(), wx));
            gs.push(mux(wv.clone(), walk_g.clone(), gx));
            vs.push(wv.clone().lor(gv_b));
        } else {
            ws.push(wx);
            gs.push(gx);
            vs.push(gv_b);
        }
    }
    e.m.assign(&up_w, cat(ws.into_iter().rev()));
    e.m.assign(&up_g, cat(gs.into_iter().rev()));
    e.m.assign(&up_v, cat(vs.into_iter().rev()));
    let seeds = crate::fixed::lane_seeds(f.lfsr_seed, rr, f.lfsr_width);
    let lfw = f.lfsr_width;
    for (bk, seed) in seeds.iter().enumerate() {
        let part = |x: &Expr, w: u32| x.part(int((bk as u64) * u64::from(w)), int(u64::from(w)));
        let bit = |x: &Expr| {
            if rr == 1 {
                x.clone()
            } else {
                x.idx(int(bk as u64))
            }
        };
        e.m.instance(
            Instance::new("dff_update", format!("u_update{bk}"))
                .param("SEED", hex(lfw, *seed))
                .conn("clk_i", id("clk_i"))
                .conn("rst_i", id("rst_i"))
                .conn("w_i", part(&up_w, pw))
                .conn("g_i", part(&up_g, gw))
                .conn("kind_i", &up_kind)
                .conn("v_i", bit(&up_v))
                .conn("lr_i", &lr_i)
                .conn("w_o", part(&up_wo, pw))
                .conn("v_o", bit(&up_vo)),
        );
    }
    // Write-back update_lat later: W_l (every valid lane), b_l or U (lane 0).
    let ul = update_lat(s) as usize;
    let gdone = e.delay_flag("grad_wb", gv.clone(), 1, ul);
    let gmask = e.delay("grad_mask", up_v.clone(), rr as u32, ul);
    let wdat: Vec<Expr> = (0..rr)
        .map(|bk| {
            up_wo.part(
                int((bk as u64) * u64::from(pw)),
                int(u64::from(f.weight.bits)),
            )
        })
        .collect();
    // Lanes other than 0 only ever carry weights: their bits above weight.bits (when biases
    // or centroids are wider) are never written anywhere.
    if pw > f.weight.bits {
        for bk in 1..rr as u32 {
            e.unused(
                &format!("up_wo_high{bk}"),
                up_wo.slice(bk * pw + pw - 1, bk * pw + f.weight.bits),
            );
        }
    }
    for l in 0..nl {
        let c = gdone.clone().land(grad_flags.of(Op::Grad(l)));
        let addrs = (0..rr).map(|_| fit(&gword, wmax, w[l].aw)).collect();
        e.write(&w[l], c, gmask.clone(), addrs, wdat.clone());
    }
    let wbv = e.delay_flag("walk_wb", wv.clone(), 1, ul);
    let wbj = e.delay("walk_j", j.clone(), jw, lat);
    let p0 = |w_: u32| up_wo.part(int(0), int(u64::from(w_)));
    for l in 0..nl {
        let c = wbv.clone().land(isu.clone().lnot()).land(io.is_layer(l));
        e.write_one(&b[l], c, lit(1, 1), fit(&wbj, jw, b[l].aw), p0(f.bias.bits));
    }
    let c = wbv.land(isu.clone());
    e.write_one(&u, c, lit(1, 1), fit(&wbj, jw, u.aw), p0(f.centroid.bits));
    e.unused("up_vo", up_vo);
    e.finish()
}
