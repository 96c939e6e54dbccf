//! The DELTA op engine (`dff_op_delta`): the local errors of one layer, row by row
//! ([`DeltaTiming`]).
//!
//! A row's header reads β (and, for layer 1, the row's hypothesis); then its column groups
//! stream, `lanes` consecutive columns per cycle: h from its diagonal banks, the
//! coefficient β·(2/d), δ = requant(coefficient · h) onto `delta`, with feedback (DF-R/DF-O,
//! one lane) δ = sat(δ_local + [h > 0]·fb). δ then goes back into h_l in place (layers ≥ 2:
//! the gradient GEMM reads it there), to the local copy `dc` (feedback), and into the
//! exact sums Δb_l (first row assigns), e (layer 1, per sample: first slot assigns) and ΔU
//! (layer 1, per hypothesis), each a read-modify-write of block RAM.

use super::build::*;
use crate::arch::memmap::TensorId;
use crate::arch::schedule::{delta_coef_bits, mul_stages, DeltaTiming, READ_LAT};
use crate::arch::Arch;
use crate::fixed::model::Units;
use crate::hdl::*;
use crate::rtl::util::{ext, mul_pipelined, rescale, saturate, Sig};

pub fn delta(arch: &Arch, units: &Units, fb_sub: bool) -> Module {
    let s = &arch.shape;
    let f = &s.f;
    let nl = arch.layers();
    let nfb = arch.fb_layers();
    let dl = arch.lanes.delta;
    let nbk = arch.lanes.h_banks;
    let (rr, cc) = (arch.rows, arch.cols);
    let kh = arch.hyps;
    let tims: Vec<DeltaTiming> = (0..nl).map(|l| DeltaTiming::new(arch, l)).collect();
    let mut e = Eng::new(
        "dff_op_delta",
        format!(
            "DELTA op engine: delta = requant(beta * 2/d * h) on {dl} column lanes, written\n\
             in place into h, and accumulated into db, e and dU (arch::schedule::DeltaTiming)."
        ),
    );
    let io = e.op_io(arch);
    e.unused("io", io.infer.clone());
    let t = |id_: TensorId| arch.mem.t(id_).clone();
    let beta: Vec<MemPort> = (0..nl)
        .map(|l| e.mem_port(&t(TensorId::Beta(l)), false, true))
        .collect();
    let hyp = e.mem_port(&t(TensorId::Hyps), false, true);
    let h: Vec<MemPort> = (0..nl)
        .map(|l| e.mem_port(&t(TensorId::H(l)), l > 0, true))
        .collect();
    let ep = e.mem_port(&t(TensorId::E), true, true);
    let db: Vec<MemPort> = (0..nl)
        .map(|l| e.mem_port(&t(TensorId::Db(l)), true, true))
        .collect();
    let du = e.mem_port(&t(TensorId::Du), true, true);
    let fbb: Vec<MemPort> = (0..nfb)
        .map(|l| e.mem_port(&t(TensorId::Fbb(l)), false, true))
        .collect();
    let dc: Vec<Option<MemPort>> = (0..nl)
        .map(|l| (arch.feedback() && l > 0).then(|| e.mem_port(&t(TensorId::Dc(l)), true, false)))
        .collect();
    let (_, sw, rw) = seq_widths(arch);
    let rl = READ_LAT as usize;

    // ---------------------------------------------------------------- rows and groups
    let pmax = tims.iter().map(|t| t.period).max().unwrap_or(1) as usize;
    let gmax = tims.iter().map(|t| t.groups).max().unwrap_or(1) as usize;
    let dmax = arch.dims.iter().skip(1).copied().max().unwrap_or(1);
    let pw = cw(pmax);
    let gw = cw(gmax);
    let dw = cw(dmax);
    let kw = cw(kh);
    let lw_ = cw(rr.max(cc).max(nbk).max(dl));
    let (tc, tod_bits) = delta_coef_bits(arch);
    let (st, st_d) = e.reg("st", 1, 0);
    let (r, r_d) = e.reg("row", rw, 0);
    let (pc, pc_d) = e.reg("row_cycle", pw, 0);
    let (per, per_d) = e.reg("period", pw, 0);
    let (ngq, ngq_d) = e.reg("groups", gw, 0);
    let (dq, dq_d) = e.reg("d", dw, 0);
    let (tod, tod_d) = e.reg("two_over_d", tod_bits, 0);
    let (slot, slot_d) = e.reg("slot", kw, 0);
    // From the last row's header to the op's last write.
    let tmax = tims
        .iter()
        .map(|t| t.header + t.groups - 1 + t.fin)
        .max()
        .unwrap_or(1) as usize;
    let tw = cw(tmax);
    let (tailn, tailn_d) = e.reg("tail_len", tw, 0);
    let (tail, tail_d) = e.reg("tail", tw, 0);
    // Row positions (advanced with the header): r mod banks and (r div banks)·d for h,
    // r mod C and (r div C)·d for dc, r·d for fbb, s·⌈d1/R⌉ for e.
    let haw = h.iter().map(|p| p.aw).max().unwrap_or(1);
    let (rmh, rmh_d) = e.reg("row_mod_h", lw_, 0);
    let (rbh, rbh_d) = e.reg("row_base_h", haw + 1, 0);
    let (rmc, rmc_d) = e.reg("row_mod_c", lw_, 0);
    let dcaw = dc.iter().flatten().map(|p| p.aw).max().unwrap_or(1);
    let (rbc, rbc_d) = e.reg("row_base_c", dcaw + 1, 0);
    let fbaw = fbb.iter().map(|p| p.aw).max().unwrap_or(1);
    let (rfb, rfb_d) = e.reg("row_base_fb", fbaw + 1, 0);
    let (ebs, ebs_d) = e.reg("e_base", ep.aw + 1, 0);
    let run = st.clone().eq_(lit(1, 1));
    let header = e.wire("header", 1, run.clone().land(pc.clone().eq_(lit(pw, 0))));
    let ng1 = arch.dims[1].div_ceil(rr) as u64;
    {
        let mut consts: Option<Stmt> = None;
        for l in (0..nl).rev() {
            let tm = &tims[l];
            let body = vec![
                set(&per_d, lit(pw, tm.period)),
                set(&ngq_d, lit(gw, tm.groups)),
                set(&dq_d, lit(dw, arch.dims[l + 1] as u64)),
                set(&tod_d, lit(tod_bits, units.two_over_d[l] as u64)),
                set(&tailn_d, lit(tw, tm.header + tm.groups - 1 + tm.fin)),
            ];
            consts = Some(match consts {
                None => if_(io.is_layer(l), body),
                Some(rest) => if_(io.is_layer(l), body).else_(vec![rest]),
            });
        }
        let mut start = vec![
            set(&st_d, lit(1, 1)),
            set(&r_d, lit(rw, 0)),
            set(&pc_d, lit(pw, 0)),
            set(&slot_d, lit(kw, 0)),
            set(&rmh_d, lit(lw_, 0)),
            set(&rbh_d, lit(haw + 1, 0)),
            set(&rmc_d, lit(lw_, 0)),
            set(&rbc_d, lit(dcaw + 1, 0)),
            set(&rfb_d, lit(fbaw + 1, 0)),
            set(&ebs_d, lit(ep.aw + 1, 0)),
        ];
        start.extend(consts);
        let dz = |w: u32| fit(&dq, dw, w);
        let next_row = vec![
            set(&pc_d, lit(pw, 0)),
            set(&r_d, &r + lit(rw, 1)),
            if_(
                slot.clone().eq_(lit(kw, (kh - 1) as u64)),
                vec![
                    set(&slot_d, lit(kw, 0)),
                    set(&ebs_d, &ebs + lit(ep.aw + 1, ng1)),
                ],
            )
            .else_(vec![set(&slot_d, &slot + lit(kw, 1))]),
            set(&rmh_d, inc_mod(&rmh, lw_, nbk)),
            if_(
                rmh.clone().eq_(lit(lw_, (nbk - 1) as u64)),
                vec![set(&rbh_d, &rbh + dz(haw + 1))],
            ),
            set(&rmc_d, inc_mod(&rmc, lw_, cc)),
            if_(
                rmc.clone().eq_(lit(lw_, (cc - 1) as u64)),
                vec![set(&rbc_d, &rbc + dz(dcaw + 1))],
            ),
            set(&rfb_d, &rfb + dz(fbaw + 1)),
        ];
        // The last row's header ends the row loop; the op ends `tail_len` later.
        let last_header = header
            .clone()
            .land(r.clone().eq_(io.nrows.clone() - lit(rw, 1)));
        e.comb.push(
            if_(
                run.clone(),
                vec![
                    if_(pc.clone().eq_(per.clone() - lit(pw, 1)), next_row)
                        .else_(vec![set(&pc_d, &pc + lit(pw, 1))]),
                    if_(
                        last_header,
                        vec![set(&st_d, lit(1, 0)), set(&tail_d, tailn.clone())],
                    ),
                ],
            )
            .else_if(
                tail.clone().ne_(lit(tw, 0)),
                vec![
                    set(&tail_d, &tail - lit(tw, 1)),
                    if_(
                        tail.clone().eq_(lit(tw, 1)),
                        vec![set(&io.done_d, lit(1, 1))],
                    ),
                ],
            )
            .else_if(io.start.clone(), start),
        );
    }
    e.unused("nsamp", io.nsamp.clone());
    let _ = sw;
    // Header reads: β_l[r] (and hyp[r] for layer 1); the row's values arrive READ_LAT later
    // and are held for its groups.
    for l in 0..nl {
        e.read_all(
            &beta[l],
            header.clone().land(io.is_layer(l)),
            fit(&r, rw, beta[l].aw),
        );
    }
    e.read_all(
        &hyp,
        header.clone().land(io.is_layer(0)),
        fit(&r, rw, hyp.aw),
    );
    let hv = e.delay_flag("header_v", header.clone(), 1, rl);
    let mut bsel = lit(f.beta.bits, 0);
    for l in (0..nl).rev() {
        bsel = mux(io.is_layer(l), beta[l].rdata(0), bsel);
    }
    let beta_row = e.pipe_en("beta_row", hv.clone(), bsel, f.beta.bits);
    let cb = arch.class_bits;
    let hyp_row = e.pipe_en("hyp_row", hv.clone(), hyp.rdata(0), cb);
    // The row's other positions, held like β.
    let hold = |e: &mut Eng, n: &str, x: &Expr, w: u32| {
        let d = e.delay(&format!("{n}_h"), x.clone(), w, rl);
        e.pipe_en(n, hv.clone(), d, w)
    };
    let row_first = hold(&mut e, "first_row", &r.clone().eq_(lit(rw, 0)), 1);
    let slot_first = hold(&mut e, "first_slot", &slot.clone().eq_(lit(kw, 0)), 1);
    let rmh_r = hold(&mut e, "rmod_h", &rmh, lw_);
    let rbh_r = hold(&mut e, "rbase_h", &fit(&rbh, haw + 1, haw), haw);
    let rmc_r = hold(&mut e, "rmod_c", &rmc, lw_);
    let rbc_r = hold(&mut e, "rbase_c", &fit(&rbc, dcaw + 1, dcaw), dcaw);
    let rfb_r = hold(&mut e, "rbase_fb", &fit(&rfb, fbaw + 1, fbaw), fbaw);
    let ebs_r = hold(&mut e, "ebase", &fit(&ebs, ep.aw + 1, ep.aw), ep.aw);
    e.unused(
        "row_hi",
        cat([
            rbh.slice(haw, haw),
            rbc.slice(dcaw, dcaw),
            rfb.slice(fbaw, fbaw),
            ebs.slice(ep.aw, ep.aw),
        ]),
    );
    // ΔU's row base hyp·⌈d1/dl⌉.
    let ngu = arch.dims[1].div_ceil(dl) as u64;
    let ub_r = e.wire("du_base", du.aw, fit(&hyp_row, cb, du.aw) * lit(du.aw, ngu));

    // Groups: from `header` cycles after the row's header.
    let hd = tims[0].header as usize;
    // (The group counter loads the cycle before the first group issues.)
    let gstart = e.delay_flag("groups_start", header.clone(), 1, hd - 1);
    let (g, g_d) = e.reg("group", gw, 0);
    let (gon, gon_d) = e.reg("streaming", 1, 0);
    let (go, go_d) = e.reg("col", dw + 1, 0);
    let (gm, gm_d) = e.reg("col_mod_h", lw_, 0);
    let (gr, gr_d) = e.reg("col_mod_r", lw_, 0);
    let (gq, gq_d) = e.reg("col_div_r", ep.aw, 0);
    let (gd, gd_d) = e.reg("db_word", db.iter().map(|p| p.aw).max().unwrap_or(1), 0);
    let gdw = db.iter().map(|p| p.aw).max().unwrap_or(1);
    e.comb.push(
        if_(
            gstart.clone(),
            vec![
                set(&gon_d, lit(1, 1)),
                set(&g_d, lit(gw, 0)),
                set(&go_d, lit(dw + 1, 0)),
                set(&gm_d, lit(lw_, 0)),
                set(&gr_d, lit(lw_, 0)),
                set(&gq_d, lit(ep.aw, 0)),
                set(&gd_d, lit(gdw, 0)),
            ],
        )
        .else_if(
            gon.clone(),
            vec![
                set(&g_d, &g + lit(gw, 1)),
                set(&go_d, &go + lit(dw + 1, dl as u64)),
                set(&gm_d, add_mod_const(&gm, dl, lw_, nbk)),
                if_(
                    gr.clone().eq_(lit(lw_, (rr - dl) as u64)),
                    vec![set(&gr_d, lit(lw_, 0)), set(&gq_d, &gq + lit(ep.aw, 1))],
                )
                .else_(vec![set(&gr_d, &gr + lit(lw_, dl as u64))]),
                set(&gd_d, &gd + lit(gdw, 1)),
                if_(
                    g.clone().eq_(ngq.clone() - lit(gw, 1)),
                    vec![set(&gon_d, lit(1, 0))],
                ),
            ],
        ),
    );
    let issue = gon.clone();
    // h read: row r, columns o = g·dl + i: lane i in bank (rot + i) mod banks, rot =
    // (r + g·dl) mod banks; bank b holds lane (b − rot) mod banks at word
    // (r div banks)·d + g·dl + that lane.
    let rot = e.add_mod("h_rot", &rmh_r, &gm, lw_, nbk);
    let hw_now = e.wire("h_word", haw, rbh_r.clone() + fit(&go, dw + 1, haw));
    let lane_at = |b: usize, rot: &Expr| {
        // (b − rot) mod banks as a `lw_ + 1`-bit value.
        let w1 = lw_ + 1;
        let rx = zext(rot.clone(), lw_, w1);
        mux(
            lit(w1, b as u64).ge_(rx.clone()),
            lit(w1, b as u64) - rx.clone(),
            lit(w1, (b + nbk) as u64) - rx,
        )
    };
    let mut haddr = Vec::new();
    for b in 0..nbk {
        let j = e.wire(&format!("h_lane{b}"), lw_ + 1, lane_at(b, &rot));
        haddr.push(e.wire(
            &format!("h_addr{b}"),
            haw,
            hw_now.clone() + fit(&j, lw_ + 1, haw),
        ));
    }
    for l in 0..nl {
        let addrs = haddr.iter().map(|a| fit(a, haw, h[l].aw)).collect();
        e.read(&h[l], issue.clone().land(io.is_layer(l)), addrs);
    }
    // Lane data (rotated), the coefficient recomputed per group on one multiplier.
    let hb = f.hidden.bits;
    let rot_r = e.delay("h_rot_rd", rot.clone(), lw_, rl);
    let mut lanes_h = Vec::new();
    for i in 0..dl {
        let mut v = lit(hb, 0);
        for l in (0..nl).rev() {
            let p = &h[l];
            let cand = |b: usize| {
                p.rdata_all()
                    .part(int((b as u64) * u64::from(p.width)), int(u64::from(hb)))
            };
            let x = if nbk == 1 {
                cand(0)
            } else {
                pick(&rot_r, lw_, nbk, |k| cand((k + i) % nbk))
            };
            v = mux(io.is_layer(l), x, v);
        }
        lanes_h.push(e.pipe(&format!("h{i}"), v, hb));
    }
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
            e.unused(&format!("{}_high", p.name), cat(hi));
        }
    }
    let coef = mul_pipelined(
        &mut e.m,
        "coef",
        &Sig::new(beta_row.clone(), f.beta.bits, true),
        &Sig::new(tod.clone(), tod_bits, false),
    );
    let m_coef = mul_stages(f.beta.bits, tod_bits + 1) as usize;
    let ops_at = tims[0].operands as usize;
    let coef_x = e.delay("coef_op", coef.e.clone(), coef.w, ops_at - m_coef);
    assert_eq!(coef.w, tc);
    let lane_x: Vec<Expr> = lanes_h
        .iter()
        .enumerate()
        .map(|(i, x)| e.delay(&format!("h{i}_op"), x.clone(), hb, ops_at - (rl + 1)))
        .collect();
    let m_d = mul_stages(tc, hb + 1) as usize;
    let from = f.beta.frac + f.hidden.frac + f.const_frac;
    let mut dloc = Vec::new();
    for i in 0..dl {
        let p = mul_pipelined(
            &mut e.m,
            &format!("d{i}"),
            &Sig::new(coef_x.clone(), tc, true),
            &Sig::new(lane_x[i].clone(), hb, false),
        );
        let q = rescale(
            &mut e.m,
            &format!("d{i}_rq"),
            &p,
            from,
            f.delta.frac,
            f.rounding,
            None,
            f.delta.bits + 1,
        );
        let qq = e.pipe_s(&format!("d{i}_rnd"), q.e.clone(), q.w);
        let y = saturate(
            &mut e.m,
            &format!("d{i}_y"),
            &Sig::new(qq, q.w, true),
            f.delta,
        );
        dloc.push(e.pipe_s(&format!("d{i}_local"), y.e.clone(), f.delta.bits));
    }
    // Feedback (one lane): fbb_l[r·d + o] read to arrive with δ_local; added where h > 0.
    let t_loc = ops_at + m_d + 2; // issue → δ_local visible
    let mask_d = e.delay(
        "h0_pos",
        lanes_h[0].clone().ne_(lit(hb, 0)),
        1,
        t_loc - (rl + 1),
    );
    let dfin: Vec<Expr> = if nfb > 0 {
        let fb_issue = e.delay_flag("fb_issue", issue.clone(), 1, t_loc - rl);
        let fword_now = e.wire("fbb_word", fbaw, rfb_r.clone() + fit(&go, dw + 1, fbaw));
        let fword = e.delay("fbb_word", fword_now, fbaw, t_loc - rl);
        for (l, p) in fbb.iter().enumerate() {
            e.read_all(
                p,
                fb_issue.clone().land(io.is_layer(l)),
                fit(&fword, fbaw, p.aw),
            );
        }
        let mut fsel = lit(f.delta.bits, 0);
        for l in (0..nfb).rev() {
            fsel = mux(io.is_layer(l), fbb[l].rdata(0), fsel);
        }
        let has = io.layer.clone().lt_(lit(io.lw, nfb as u64));
        let fbv = e.wire_s(
            "fb",
            f.delta.bits,
            mux(has.land(mask_d.clone()), fsel, lit(f.delta.bits, 0)),
        );
        let tw_ = f.delta.bits + 1;
        let a = ext(&Sig::new(dloc[0].clone(), f.delta.bits, true), tw_);
        let b = ext(&Sig::new(fbv, f.delta.bits, true), tw_);
        let tot = e.wire_s("d_total", tw_, if fb_sub { a - b } else { a + b });
        let y = saturate(&mut e.m, "d_fin", &Sig::new(tot, tw_, true), f.delta);
        vec![e.pipe_s("d0_final", y.e.clone(), f.delta.bits)]
    } else {
        e.unused("h0_pos", mask_d);
        dloc.iter()
            .enumerate()
            .map(|(i, x)| e.pipe_s(&format!("d{i}_final"), x.clone(), f.delta.bits))
            .collect()
    };
    let fin = tims[0].fin as usize;
    assert_eq!(fin, t_loc + 1);
    // Column validity (o + i < d) and positions at the writes.
    let valid_now: Vec<Expr> = (0..dl)
        .map(|i| (go.clone() + lit(dw + 1, i as u64)).lt_(zext(dq.clone(), dw, dw + 1)))
        .collect();
    let lv = e.delay("lanes_ok", cat(valid_now.into_iter().rev()), dl as u32, fin);
    let wv = e.delay_flag("write_v", issue.clone(), 1, fin);
    let lbit = |x: &Expr, i: usize| {
        if dl == 1 {
            x.clone()
        } else {
            x.idx(int(i as u64))
        }
    };

    // In place into h_l (l ≥ 2): bank b takes lane (b − rot) mod banks.
    if nl > 1 {
        let rot_w = e.delay("h_rot_wr", rot.clone(), lw_, fin);
        // (Only layers ≥ 2 are written back.)
        let waw = h[1..].iter().map(|p| p.aw).max().unwrap_or(1);
        let addr_w: Vec<Expr> = haddr
            .iter()
            .enumerate()
            .map(|(b, a)| e.delay(&format!("h_addr{b}_wr"), fit(a, haw, waw), waw, fin))
            .collect();
        let mut we = Vec::new();
        let mut data = Vec::new();
        for b in 0..nbk {
            let lane = |k: usize| (b + nbk - k) % nbk;
            we.push(pick(&rot_w, lw_, nbk, |k| {
                if lane(k) < dl {
                    lbit(&lv, lane(k))
                } else {
                    lit(1, 0)
                }
            }));
            data.push(pick(&rot_w, lw_, nbk, |k| {
                if lane(k) < dl {
                    dfin[lane(k)].clone()
                } else {
                    lit(f.delta.bits, 0)
                }
            }));
        }
        let wen = e.wire("h_we", nbk as u32, cat(we.into_iter().rev()));
        for l in 1..nl {
            let p = &h[l];
            let c = wv.clone().land(io.is_layer(l));
            let d = data
                .iter()
                .map(|x| ext(&Sig::new(x.clone(), f.delta.bits, true), p.width))
                .collect();
            let a = addr_w.iter().map(|x| fit(x, waw, p.aw)).collect();
            e.write(p, c, wen.clone(), a, d);
        }
    }
    // The local δ copy (feedback, one lane): bank r mod C, word (r div C)·d + o.
    if dc.iter().any(|x| x.is_some()) {
        let bank = e.delay("dc_bank", rmc_r.clone(), lw_, fin);
        let word_now = e.wire("dc_word", dcaw, rbc_r.clone() + fit(&go, dw + 1, dcaw));
        let word = e.delay("dc_word", word_now, dcaw, fin);
        let loc = e.pipe_s("d0_local_wr", dloc[0].clone(), f.delta.bits);
        for (l, p) in dc.iter().enumerate() {
            if let Some(p) = p {
                let c = wv.clone().land(io.is_layer(l)).land(lbit(&lv, 0));
                e.write_one(
                    p,
                    c,
                    onehot(&bank, lw_, cc),
                    fit(&word, dcaw, p.aw),
                    loc.clone(),
                );
            }
        }
    }
    // Read-modify-writes: issued `fin − READ_LAT` after the group, data with δ.
    let rmw_issue = e.delay_flag("rmw_issue", issue.clone(), 1, fin - rl);
    let gsw = arch.grad_sum_width();
    let ew = arch.e_width();
    let dx = |x: &Expr, w: u32| ext(&Sig::new(x.clone(), f.delta.bits, true), w);
    // Δb_l: word g, lane i = bank i; the first row assigns.
    {
        let word = e.delay("db_word", gd.clone(), gdw, fin - rl);
        for l in 0..nl {
            e.read_all(
                &db[l],
                rmw_issue.clone().land(io.is_layer(l)),
                fit(&word, gdw, db[l].aw),
            );
        }
        let word_w = e.delay("db_word_wr", word.clone(), gdw, rl);
        let first = e.delay("first_row_wr", row_first.clone(), 1, fin);
        for l in 0..nl {
            let p = &db[l];
            let sums: Vec<Expr> = (0..dl)
                .map(|i| {
                    let old = e.wire_s(&format!("db{}_old{i}", l + 1), gsw, p.rdata(i));
                    e.wire_s(
                        &format!("db{}_sum{i}", l + 1),
                        gsw,
                        mux(first.clone(), dx(&dfin[i], gsw), old + dx(&dfin[i], gsw)),
                    )
                })
                .collect();
            let c = wv.clone().land(io.is_layer(l));
            let addrs = (0..dl).map(|_| fit(&word_w, gdw, p.aw)).collect();
            e.write(p, c, lv.clone(), addrs, sums);
        }
    }
    // Layer 1: e[s][o] (bank o mod R, word s·⌈d1/R⌉ + o div R; the first slot assigns) and
    // ΔU[hyp][o] (bank i, word hyp·⌈d1/dl⌉ + g).
    {
        let c1 = rmw_issue.clone().land(io.is_layer(0));
        let eword_now = e.wire("e_word", ep.aw, ebs_r.clone() + gq.clone());
        let eword = e.delay("e_word", eword_now, ep.aw, fin - rl);
        e.read_all(&ep, c1.clone(), eword.clone());
        let uword_now = e.wire("du_word", du.aw, ub_r.clone() + fit(&g, gw, du.aw));
        let uword = e.delay("du_word", uword_now, du.aw, fin - rl);
        e.read_all(&du, c1, uword.clone());
        let ebank = e.delay("e_lane0", gr.clone(), lw_, fin);
        let eword_w = e.delay("e_word_wr", eword, ep.aw, rl);
        let uword_w = e.delay("du_word_wr", uword, du.aw, rl);
        let firsts = e.delay("first_slot_wr", slot_first.clone(), 1, fin);
        let c = wv.clone().land(io.is_layer(0));
        // e bank b takes lane b − (g·dl mod R) when that lane is in use.
        let mut we = Vec::new();
        let mut data = Vec::new();
        for b in 0..rr {
            let old = e.wire_s(&format!("e_old{b}"), ew, ep.rdata(b));
            let mut v = lit(1, 0);
            let mut dv = old.clone();
            for i in 0..dl.min(b + 1) {
                let hit = ebank.clone().eq_(lit(lw_, (b - i) as u64));
                v = mux(hit.clone(), lbit(&lv, i), v);
                dv = mux(
                    hit,
                    mux(
                        firsts.clone(),
                        dx(&dfin[i], ew),
                        old.clone() + dx(&dfin[i], ew),
                    ),
                    dv,
                );
            }
            we.push(v);
            data.push(e.wire_s(&format!("e_new{b}"), ew, dv));
        }
        let addrs = (0..rr).map(|_| eword_w.clone()).collect();
        e.write(&ep, c.clone(), cat(we.into_iter().rev()), addrs, data);
        let sums: Vec<Expr> = (0..dl)
            .map(|i| {
                let old = e.wire_s(&format!("du_old{i}"), gsw, du.rdata(i));
                e.wire_s(&format!("du_sum{i}"), gsw, old + dx(&dfin[i], gsw))
            })
            .collect();
        let addrs = (0..dl).map(|_| uword_w.clone()).collect();
        e.write(&du, c, lv.clone(), addrs, sums);
    }
    e.finish()
}
