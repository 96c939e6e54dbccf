//! The NORM op engine (`dff_op_norm`): INORM and NORM l, C rows at a time.
//!
//! Each group of C rows (samples for INORM) runs the schedule of
//! [`NormTiming`]: a squares pass over the row's columns into C squared-sum lanes, S into the
//! C normalise lanes and one shared goodness unit (G one lane per cycle, and with feedback
//! the rsqrt parts), then a normalise pass that writes x̂ into its diagonal banks. Pixels
//! come from their sample banks (lane j = bank j); h_l from its diagonal banks (lane j =
//! bank (r0 + j + k) mod the bank count), x̂ goes to bank (j + k) mod C (r0 is a multiple
//! of C), so both edges rotate.

use super::build::*;
use crate::arch::memmap::TensorId;
use crate::arch::program::Op;
use crate::arch::schedule::{
    gscale_lat, normalise_lat, NormTiming, LANE_LAT, NORMALISE_RS_LAT, READ_LAT,
};
use crate::arch::Arch;
use crate::fixed::model::Units;
use crate::hdl::*;

pub fn norm(arch: &Arch, units: &Units) -> Module {
    let s = &arch.shape;
    let f = &s.f;
    let c = arch.lanes.norm;
    let nbk = arch.lanes.h_banks;
    let nl = arch.layers();
    let mut e = Eng::new(
        "dff_op_norm",
        format!(
            "NORM op engine: INORM and NORM l on {c} row lanes (squared sums, normalisation)\n\
             and one shared goodness unit; the schedule is arch::schedule::NormTiming."
        ),
    );
    let io = e.op_io(arch);
    e.unused("io", io.infer.clone());
    let px = e.mem_port(arch.mem.t(TensorId::Pixels), false, true);
    let x0 = e.mem_port(arch.mem.t(TensorId::X0), true, false);
    let h: Vec<MemPort> = (0..nl)
        .map(|l| e.mem_port(arch.mem.t(TensorId::H(l)), false, true))
        .collect();
    let xh: Vec<MemPort> = (0..nl - 1)
        .map(|l| e.mem_port(arch.mem.t(TensorId::Xh(l)), true, false))
        .collect();
    let g: Vec<MemPort> = (0..nl)
        .map(|l| e.mem_port(arch.mem.t(TensorId::G(l)), true, false))
        .collect();
    let rs: Vec<MemPort> = (0..arch.fb_layers())
        .map(|l| e.mem_port(arch.mem.t(TensorId::Rs(l)), true, false))
        .collect();

    // Per-op constants, loaded at start.
    let ops: Vec<Op> = std::iter::once(Op::Inorm)
        .chain((0..nl).map(Op::Norm))
        .collect();
    let tim: Vec<NormTiming> = ops.iter().map(|&o| NormTiming::new(arch, o)).collect();
    let omax = tim.iter().map(|t| t.period.max(t.end)).max().unwrap_or(1) as usize;
    let ow = cw(omax);
    let dmax = tim.iter().map(|t| t.d).max().unwrap_or(1) as usize;
    let dw = cw(dmax);
    let rw = io.rw;
    let lanes = c as u32;
    let ol = |v: u64| lit(ow, v);

    let (st, st_d) = e.reg("st", 1, 0);
    let (oc, oc_d) = e.reg("oc", ow, 0);
    let (dq, dq_d) = e.reg("d", dw, 0);
    let (per, per_d) = e.reg("period", ow, 0);
    let (_, bat_d) = e.reg("b_at", ow, 0);
    let (endq, end_d) = e.reg("end", ow, 0);
    let (_, phb_d) = e.reg("phase_b", 1, 0);
    let (isin, isin_d) = e.reg("inorm", 1, 0);
    let (recip, recip_d) = e.reg("recip", s.recip_w, 0);
    let (nrow, nrow_d) = e.reg("nrows", rw, 0);
    let (k, k_d) = e.reg("k", dw, 0);
    let kbw = cw(nbk.max(c));
    // k mod banks and k mod C, restarted with every pass.
    let (kr, kr_d) = e.reg("kr", kbw, 0);
    let (kc, kc_d) = e.reg("kc", kbw, 0);
    let (r0, r0_d) = e.reg("r0", rw, 0);
    let (lastg, lastg_d) = e.reg("last_group", 1, 0);
    let (lv, lv_d) = e.reg("lanes_valid", lanes, 0);
    // Word bases: x̂ and pixels (r0 div C)·d; h with more banks than lanes also needs
    // r0 mod banks and (r0 div banks)·d.
    let xdepth = arch
        .mem
        .tensors
        .iter()
        .filter(|t| matches!(t.id, TensorId::X0 | TensorId::Xh(_) | TensorId::Pixels))
        .map(|t| t.aw())
        .max()
        .unwrap_or(1);
    let hdepth = h.iter().map(|p| p.aw).max().unwrap_or(1);
    let bw_ = xdepth.max(hdepth) + 1;
    let (xbase, xbase_d) = e.reg("xbase", bw_, 0);
    let wide_h = nbk > c;
    let (rm, rm_d) = e.reg("rm", kbw, 0);
    let (hbase, hbase_d) = e.reg("hbase", bw_, 0);
    if !wide_h {
        e.unused("hbase", cat([rm.clone(), hbase.clone()]));
    }
    let (gon, gon_d) = e.reg("g_on", 1, 0);
    let (gj, gj_d) = e.reg("g_lane", kbw, 0);
    // The bank of lane 0 at the current column: (r0 + k) mod banks.
    let rot = if wide_h {
        e.add_mod("rot", &rm, &kr, kbw, nbk)
    } else {
        e.wire("rot", kbw, kr.clone())
    };

    let run = st.clone().eq_(lit(1, 1));
    // (Compare oc with d at the wider of the two, and one bit more for b_at + d.)
    let cmpw = ow.max(dw);
    // The read issues and the column counter's wrap come from flags loaded with the compare
    // of the next state (`_d`; b_at + d and d − 1 are registers of the op), so each equals
    // the compare of the current state, and the read logic starts at a register.
    let (_, bend_d) = e.reg("b_end", cmpw + 1, 0);
    let (_, dm1_d) = e.reg("d_m1", dw, 0);
    let ocx_d = zext(oc_d.clone(), ow, cmpw + 1);
    let issue_a = e.flag(
        "issue_a",
        st_d.clone()
            .eq_(lit(1, 1))
            .land(ocx_d.clone().lt_(zext(dq_d.clone(), dw, cmpw + 1))),
        1,
    );
    let issue_b = e.flag(
        "issue_b",
        st_d.clone()
            .eq_(lit(1, 1))
            .land(phb_d.clone())
            .land(ocx_d.clone().ge_(zext(bat_d.clone(), ow, cmpw + 1)))
            .land(ocx_d.lt_(bend_d.clone())),
        1,
    );
    let issue = e.wire("issue", 1, issue_a.clone().lor(issue_b.clone()));
    let k_last = e.pipe("k_last", k_d.clone().eq_(dm1_d.clone()), 1);

    // ---------------------------------------------------------------- sequencing
    {
        let mut start = vec![
            set(&st_d, lit(1, 1)),
            set(&oc_d, ol(0)),
            set(&k_d, lit(dw, 0)),
            set(&kr_d, lit(kbw, 0)),
            set(&kc_d, lit(kbw, 0)),
            set(&r0_d, lit(rw, 0)),
            set(&xbase_d, lit(bw_, 0)),
            set(&rm_d, lit(kbw, 0)),
            set(&hbase_d, lit(bw_, 0)),
            set(&gon_d, lit(1, 0)),
        ];
        // Constants of the op: INORM, else NORM of the layer.
        let load = |t: &NormTiming, isin_v: u64, rc: u64| {
            vec![
                set(&dq_d, lit(dw, t.d)),
                set(&dm1_d, lit(dw, t.d.saturating_sub(1))),
                set(&bend_d, lit(cmpw + 1, t.b_at + t.d)),
                set(&per_d, ol(t.period)),
                set(&bat_d, ol(t.b_at)),
                set(&end_d, ol(t.end)),
                set(&phb_d, lit(1, u64::from(t.phase_b))),
                set(&isin_d, lit(1, isin_v)),
                set(&recip_d, lit(s.recip_w, rc)),
            ]
        };
        let mut sel = if_(
            io.is_layer(nl - 1),
            load(&tim[nl], 0, units.recip_d[nl - 1].value() as u64),
        );
        for l in (0..nl - 1).rev() {
            sel = if_(
                io.is_layer(l),
                load(&tim[l + 1], 0, units.recip_d[l].value() as u64),
            )
            .else_(vec![sel]);
        }
        let consts = if_(io.is_kind(Op::Inorm), load(&tim[0], 1, 0)).else_(vec![sel]);
        start.push(consts);
        let n_at_start = mux(
            io.is_kind(Op::Inorm),
            zext(io.nsamp.clone(), io.sw, rw),
            io.nrows.clone(),
        );
        let nstart = e.wire("n_start", rw, n_at_start);
        start.push(set(&nrow_d, &nstart));
        start.push(set(
            &lastg_d,
            zext(lit(cw(c), c as u64), cw(c), rw.max(cw(c))).ge_(zext(
                nstart.clone(),
                rw,
                rw.max(cw(c)),
            )),
        ));
        // (Lanes beyond the most rows an op can have are never valid.)
        let nmax = arch.max_rows().max(arch.batch);
        let lv0: Vec<Expr> = (0..c)
            .rev()
            .map(|j| {
                if j >= nmax {
                    lit(1, 0)
                } else {
                    lit(rw, j as u64).lt_(nstart.clone())
                }
            })
            .collect();
        start.push(set(&lv_d, cat(lv0)));
        // Next group.
        let r0n = e.wire(
            "r0_next",
            rw + 1,
            zext(r0.clone(), rw, rw + 1) + lit(rw + 1, c as u64),
        );
        let nn = zext(nrow.clone(), rw, rw + 1);
        let mut next = vec![
            set(&oc_d, ol(0)),
            set(&r0_d, r0n.slice(rw - 1, 0)),
            set(&xbase_d, &xbase + zext(dq.clone(), dw, bw_)),
            set(
                &lastg_d,
                (r0n.clone() + lit(rw + 1, c as u64)).ge_(nn.clone()),
            ),
            set(
                &lv_d,
                cat((0..c)
                    .rev()
                    .map(|j| (r0n.clone() + lit(rw + 1, j as u64)).lt_(nn.clone()))
                    .collect::<Vec<_>>()),
            ),
        ];
        if wide_h {
            // r0 + C: rm wraps at most once (C < banks).
            // (rm < banks and C < banks: r0 + C wraps iff rm >= banks − C.)
            let wrap = rm.clone().ge_(lit(kbw, (nbk - c) as u64));
            next.push(if_(
                wrap,
                vec![set(&hbase_d, &hbase + zext(dq.clone(), dw, bw_))],
            ));
            next.push(set(&rm_d, add_mod_const(&rm, c, kbw, nbk)));
        }
        let body = vec![if_(
            run.clone(),
            vec![
                set(&oc_d, oc.clone() + ol(1)),
                if_(
                    lastg.clone().land(oc.clone().eq_(endq.clone())),
                    vec![set(&st_d, lit(1, 0)), set(&io.done_d, lit(1, 1))],
                )
                .else_if(
                    lastg
                        .clone()
                        .lnot()
                        .land(oc.clone().eq_(per.clone() - ol(1))),
                    next,
                ),
            ],
        )
        .else_if(io.start.clone(), start)];
        e.comb.extend(body);
        // The column counter and the rotations step with every read; each pass restarts
        // them at the group's rotation r0 mod banks (0 when the banks are the lanes).
        e.comb.push(if_(
            issue.clone(),
            vec![if_(
                k_last.clone(),
                vec![
                    set(&k_d, lit(dw, 0)),
                    set(&kr_d, lit(kbw, 0)),
                    set(&kc_d, lit(kbw, 0)),
                ],
            )
            .else_(vec![
                set(&k_d, &k + lit(dw, 1)),
                set(&kr_d, inc_mod(&kr, kbw, nbk)),
                set(&kc_d, inc_mod(&kc, kbw, c)),
            ])],
        ));
    }

    // ---------------------------------------------------------------- reads
    let wordx = e.wire("word", bw_, &xbase + zext(k.clone(), dw, bw_));
    e.read_all(
        &px,
        issue.clone().land(isin.clone()),
        wordx.slice(px.aw - 1, 0),
    );
    for l in 0..nl {
        let cond = issue.clone().land(isin.clone().lnot()).land(io.is_layer(l));
        let p = &h[l];
        if !wide_h {
            e.read_all(p, cond, wordx.slice(p.aw - 1, 0));
        } else {
            // Bank b holds lane j = (b − rot) mod banks, row r0 + j: one word further when
            // r0 mod banks + j wraps.
            let aw = p.aw;
            let hw_ = e.wire(
                &format!("h{}_word", l + 1),
                aw,
                fit(&hbase, bw_, aw) + fit(&k, dw, aw),
            );
            let addrs: Vec<Expr> = (0..nbk)
                .map(|b| {
                    let w1 = kbw + 1;
                    let rotx = zext(rot.clone(), kbw, w1);
                    let j = mux(
                        lit(w1, b as u64).ge_(rotx.clone()),
                        lit(w1, b as u64) - rotx.clone(),
                        lit(w1, (b + nbk) as u64) - rotx,
                    );
                    let jw = e.wire(&format!("h{}_lane{b}", l + 1), w1, j);
                    let carry = (zext(rm.clone(), kbw, w1) + jw).ge_(lit(w1, nbk as u64));
                    let a = mux(carry, hw_.clone() + fit(&dq, dw, aw), hw_.clone());
                    e.wire(&format!("h{}_addr{b}", l + 1), aw, a)
                })
                .collect();
            e.read(p, cond, addrs);
        }
    }
    if xdepth.max(hdepth) + 1 > 1 {
        e.unused("word_hi", wordx.slice(bw_ - 1, bw_ - 1));
    }

    // ---------------------------------------------------------------- lanes
    let rl = READ_LAT as usize;
    let rot_r = if nbk > 1 {
        e.delay("rot_rd", rot.clone(), kbw, rl)
    } else {
        e.unused("rot", rot.clone());
        lit(kbw, 0)
    };
    let hb = f.hidden.bits;
    let xw = s.norm_x_w;
    let lane_q: Vec<Expr> = (0..c)
        .map(|j| {
            let pxv = zext(px.rdata(j), f.pixel.bits, xw);
            let mut hv = lit(xw, 0);
            for l in (0..nl).rev() {
                let p = &h[l];
                // (h's low hidden.bits bits: layers above the first share the word with δ.)
                let cand = |b: usize| {
                    p.rdata_all()
                        .part(int((b as u64) * u64::from(p.width)), int(u64::from(hb)))
                };
                let bank = if nbk == 1 {
                    cand(0)
                } else {
                    pick(&rot_r, kbw, nbk, |r| cand((r + j) % nbk))
                };
                let v = e.wire(&format!("h{}_lane{j}_rd", l + 1), hb, bank);
                hv = mux(io.is_layer(l), zext(v, hb, xw), hv);
            }
            e.pipe(&format!("lane{j}"), mux(isin.clone(), pxv, hv), xw)
        })
        .collect();
    for p in &h {
        if p.width > hb {
            let hi: Vec<Expr> = (0..nbk)
                .map(|b| {
                    p.rdata_all().part(
                        int((b as u64) * u64::from(p.width) + u64::from(hb)),
                        int(u64::from(p.width - hb)),
                    )
                })
                .collect();
            e.unused(&format!("{}_delta_bits", p.name), cat(hi));
        }
    }
    let ll = LANE_LAT as usize;
    let a_v = e.delay_flag("a_v", issue_a.clone(), 1, ll);
    let a_first = e.delay("a_first", k.clone().eq_(lit(dw, 0)), 1, ll);
    let a_last = e.delay("a_last", k_last.clone(), 1, ll);
    let b_v = e.delay_flag("b_v", issue_b.clone(), 1, ll);
    let lv_l = e.delay("lv_rd", lv.clone(), lanes, ll);

    // Squared sums and normalisation, one unit of each per lane.
    let sw_ = s.sum_w;
    let ss_s = e.m.wire("ss_s", sw_ * lanes);
    let ss_v = e.m.wire("ss_v", lanes);
    let nm_y = e.m.wire("nm_y", f.act.bits * lanes);
    let nm_yv = e.m.wire("nm_yv", lanes);
    let (rs_w, he_w) = arch.rs_widths();
    let nm_word = e.m.wire("nm_rs_word", rs_w * lanes);
    let nm_he = e.m.wire("nm_rs_half_e", he_w * lanes);
    // S is ready a fixed time after the squares pass's last read; with no normalise pass
    // that can be after the next group started, so the group's row and lanes travel along.
    let s_lat = (LANE_LAT + crate::arch::schedule::sumsq_lat(s)) as usize;
    let a_end = issue_a.clone().land(k_last.clone());
    let sv = e.delay_flag("s_load", a_end, 1, s_lat);
    let lv_s = e.delay("s_lanes", lv.clone(), lanes, s_lat);
    let gaw = g[0].aw;
    let r0_s = e.delay("s_row", fit(&r0, rw, gaw), gaw, s_lat);
    // G stream: one lane per cycle after S.
    e.comb.push(
        if_(
            sv.clone(),
            vec![set(&gon_d, lit(1, 1)), set(&gj_d, lit(kbw, 0))],
        )
        .else_if(
            gon.clone(),
            vec![
                set(&gj_d, &gj + lit(kbw, 1)),
                if_(
                    gj.clone().eq_(lit(kbw, (c - 1) as u64)),
                    vec![set(&gon_d, lit(1, 0))],
                ),
            ],
        ),
    );
    for j in 0..c {
        let part = |x: &Expr, w: u32| x.part(int((j as u64) * u64::from(w)), int(u64::from(w)));
        let bit = |x: &Expr| {
            if c == 1 {
                x.clone()
            } else {
                x.idx(int(j as u64))
            }
        };
        let lvj = bit(&lv_l);
        e.m.instance(
            Instance::new("dff_sumsq", format!("u_sumsq{j}"))
                .conn("clk_i", id("clk_i"))
                .conn("rst_i", id("rst_i"))
                .conn("h_i", lane_q[j].slice(hb - 1, 0))
                .conn("v_i", a_v.clone().land(lvj.clone()))
                .conn("first_i", &a_first)
                .conn("last_i", &a_last)
                .conn("s_o", part(&ss_s, sw_))
                .conn("v_o", bit(&ss_v)),
        );
        e.m.instance(
            Instance::new("dff_normalise", format!("u_normalise{j}"))
                .conn("clk_i", id("clk_i"))
                .conn("rst_i", id("rst_i"))
                .conn("s_i", part(&ss_s, sw_))
                .conn("sv_i", &sv)
                .conn("x_i", &lane_q[j])
                .conn("xv_i", b_v.clone().land(lvj))
                .conn("y_o", part(&nm_y, f.act.bits))
                .conn("yv_o", bit(&nm_yv))
                .conn("rs_word_o", part(&nm_word, rs_w))
                .conn("rs_half_e_o", part(&nm_he, he_w)),
        );
    }
    if xw > hb {
        let hi: Vec<Expr> = lane_q.iter().map(|q| q.slice(xw - 1, hb)).collect();
        e.unused("lane_hi", cat(hi));
    }
    // (The lanes' squared sums are ready together: the schedule says when.)
    e.unused("ss_v", ss_v.clone());
    if rs.is_empty() {
        e.unused("nm_rs", cat([nm_word.clone(), nm_he.clone()]));
    }

    // ---------------------------------------------------------------- G (and rsqrt parts)
    let s_hold = e.pipe_en("s_hold", sv.clone(), ss_s.clone(), sw_ * lanes);
    let lv_hold = e.pipe_en("lv_hold", sv.clone(), lv_s, lanes);
    let r0_hold = e.pipe_en("r0_hold", sv.clone(), r0_s, gaw);
    let gs_s = pick(&gj, kbw, c, |j| {
        s_hold.part(int((j as u64) * u64::from(sw_)), int(u64::from(sw_)))
    });
    let gs_lane_v = pick(&gj, kbw, c, |j| {
        if c == 1 {
            lv_hold.clone()
        } else {
            lv_hold.idx(int(j as u64))
        }
    });
    let gs_v = e.wire("gs_v", 1, gon.clone().land(gs_lane_v));
    let g_out = e.m.wire("gs_g", f.goodness.bits);
    let g_outv = e.m.wire("gs_gv", 1);
    e.m.instance(
        Instance::new("dff_goodness", "u_goodness")
            .conn("clk_i", id("clk_i"))
            .conn("rst_i", id("rst_i"))
            .conn("s_i", gs_s)
            .conn("v_i", &gs_v)
            .conn("recip_i", &recip)
            .conn("g_o", &g_out)
            .conn("v_o", &g_outv),
    );
    // (G and the rsqrt parts have one word per row.)
    let row_now = e.wire("g_row", gaw, r0_hold.clone() + fit(&gj, kbw, gaw));
    let gl = gscale_lat(s) as usize;
    let g_row = e.delay("g_row", row_now.clone(), gaw, gl);
    for (l, p) in g.iter().enumerate() {
        let cond = g_outv
            .clone()
            .land(io.is_layer(l))
            .land(isin.clone().lnot());
        e.write_one(p, cond, lit(1, 1), g_row.clone(), g_out.clone());
    }
    if !rs.is_empty() {
        let d = NORMALISE_RS_LAT as usize - 1;
        let rv = e.delay_flag("rs_v", gs_v.clone(), 1, d);
        let rj = e.delay("rs_lane", gj.clone(), kbw, d);
        let rrow = e.delay("rs_row", row_now.clone(), gaw, d);
        let word = pick(&rj, kbw, c, |j| {
            cat([
                nm_word.part(int((j as u64) * u64::from(rs_w)), int(u64::from(rs_w))),
                nm_he.part(int((j as u64) * u64::from(he_w)), int(u64::from(he_w))),
            ])
        });
        let wv = e.wire("rs_data", rs_w + he_w, word);
        for (l, p) in rs.iter().enumerate() {
            let cond = rv.clone().land(io.is_layer(l)).land(isin.clone().lnot());
            e.write_one(p, cond, lit(1, 1), rrow.clone(), wv.clone());
        }
    }

    // ---------------------------------------------------------------- x̂ writes
    let xl = (LANE_LAT + normalise_lat(s)) as usize;
    let xaw = std::iter::once(&x0)
        .chain(xh.iter())
        .map(|p| p.aw)
        .max()
        .unwrap_or(1);
    let xword = e.delay("x_word", fit(&wordx, bw_, xaw), xaw, xl);
    let xrot = if c > 1 {
        e.delay(
            "x_rot",
            if wide_h { kc.clone() } else { kr.clone() },
            kbw,
            xl,
        )
    } else {
        lit(kbw, 0)
    };
    if !wide_h {
        e.unused("kc", kc.clone());
    }
    let any_y = nm_yv.clone().red_or();
    // Bank b takes lane (b − k) mod C.
    let lane_of = |b: usize, x: &Expr, w: u32| {
        pick(&xrot, kbw, c, |r| {
            let j = (b + c - r) % c;
            if w == 1 && c == 1 {
                x.clone()
            } else if w == 1 {
                x.idx(int(j as u64))
            } else {
                x.part(int((j as u64) * u64::from(w)), int(u64::from(w)))
            }
        })
    };
    let we: Vec<Expr> = (0..c).rev().map(|b| lane_of(b, &nm_yv, 1)).collect();
    let xwe = e.wire("x_we", lanes, cat(we));
    let xd: Vec<Expr> = (0..c).map(|b| lane_of(b, &nm_y, f.act.bits)).collect();
    let dst: Vec<(Expr, &MemPort)> = std::iter::once((isin.clone(), &x0))
        .chain(
            xh.iter()
                .enumerate()
                .map(|(l, p)| (isin.clone().lnot().land(io.is_layer(l)), p)),
        )
        .collect();
    for (cond, p) in dst {
        let a: Vec<Expr> = (0..c).map(|_| fit(&xword, xaw, p.aw)).collect();
        e.write(p, any_y.clone().land(cond), xwe.clone(), a, xd.clone());
    }
    e.finish()
}
