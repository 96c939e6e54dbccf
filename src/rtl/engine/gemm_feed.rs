//! The GEMM feed (`dff_gemm_feed`): streams the operand tiles of FWD l, GRAD l and FB l
//! into the array, back to back, and tells the drain when each tile's last step left.
//!
//! Tiles are R-row blocks of the outputs (ob, outer) by C-column blocks (tb, inner); each
//! takes `max(K, pad)` steps ([`GemmTiming`]), of which the first K issue one operand step:
//! a read of every source bank, then the lane rotators, then the edge registers
//! ([`EDGE_LAT`] after the issue). The sources ([`crate::arch::memmap`] has the banking):
//! - FWD l: west W_l (row banks; DF-O's diagonal banks rotated by k mod R), north x̂_{l−1}
//!   (C diagonal banks at one column: rotated by k mod C);
//! - GRAD 1: west e (R column banks, saturated to `delta`), GRAD l: west δ_l from h_l's
//!   diagonal banks (R consecutive columns of row k: per-bank words, rotated);
//!   north x̂_{l−1} (C consecutive columns of row k: per-bank words, rotated);
//! - FB l: west B_{l+1}ᵀ (DF-R, row banks) or row k of W_{l+1} (DF-O: per-bank words,
//!   rotated by k mod R), north the local δ_{l+1} (C row banks).

use super::build::*;
use crate::arch::memmap::TensorId;
use crate::arch::program::Op;
use crate::arch::schedule::{GemmTiming, READ_LAT};
use crate::arch::Arch;
use crate::hdl::*;
use crate::rtl::util::{ext, saturate, Sig};

/// Where N or K of an op comes from.
#[derive(Clone, Copy)]
enum Count {
    Fixed(u64),
    Samples,
    Rows,
}

struct FeedOp {
    op: Op,
    m: u64,
    n: Count,
    k: Count,
    pad: u64,
    /// Word stride of the west source's rows (FWD: d_l, FB DF-R: d_{l+2}).
    d_west: u64,
    /// Word stride of the north source's rows (FWD: d_l, FB: d_{l+2}).
    d_north: u64,
    /// Row strides of the per-bank reads: FB DF-O's W_{l+1} (d_{l+1}), GRAD's x̂ (d_l),
    /// GRAD's h_l (d_{l+1}).
    d_rowr: u64,
    d_rowc: u64,
    d_rown: u64,
}

fn feed_ops(arch: &Arch) -> Vec<FeedOp> {
    let d: Vec<u64> = arch.dims.iter().map(|&x| x as u64).collect();
    let nl = arch.layers();
    let mut v = Vec::new();
    for l in 0..nl {
        let t = GemmTiming::new(arch, Op::Fwd(l), 1, 1);
        v.push(FeedOp {
            op: Op::Fwd(l),
            m: d[l + 1],
            n: if l == 0 { Count::Samples } else { Count::Rows },
            k: Count::Fixed(d[l]),
            pad: t.pad,
            d_west: d[l],
            d_north: d[l],
            d_rowr: 0,
            d_rowc: 0,
            d_rown: 0,
        });
        let t = GemmTiming::new(arch, Op::Grad(l), 1, 1);
        v.push(FeedOp {
            op: Op::Grad(l),
            m: d[l + 1],
            n: Count::Fixed(d[l]),
            k: if l == 0 { Count::Samples } else { Count::Rows },
            pad: t.pad,
            d_west: 0,
            d_north: 0,
            d_rowr: 0,
            d_rowc: d[l],
            d_rown: d[l + 1],
        });
    }
    for l in 0..arch.fb_layers() {
        let t = GemmTiming::new(arch, Op::Fb(l), 1, 1);
        v.push(FeedOp {
            op: Op::Fb(l),
            m: d[l + 1],
            n: Count::Rows,
            k: Count::Fixed(d[l + 2]),
            pad: t.pad,
            d_west: d[l + 2],
            d_north: d[l + 2],
            d_rowr: d[l + 1],
            d_rowc: 0,
            d_rown: 0,
        });
    }
    v
}

/// (b − rot) mod n for a register `rot` < n (`w` bits), as a `w + 1`-bit wire.
fn lane_of_bank(e: &mut Eng, name: &str, b: usize, rot: &Expr, w: u32, n: usize) -> Expr {
    let w1 = w + 1;
    let r = zext(rot.clone(), w, w1);
    let j = mux(
        lit(w1, b as u64).ge_(r.clone()),
        lit(w1, b as u64) - r.clone(),
        lit(w1, (b + n) as u64) - r,
    );
    e.wire(name, w1, j)
}

pub fn gemm_feed(arch: &Arch) -> Module {
    let s = &arch.shape;
    let f = &s.f;
    let (rr, cc) = (arch.rows, arch.cols);
    let nbk = arch.lanes.h_banks;
    let nl = arch.layers();
    let mut e = Eng::new(
        "dff_gemm_feed",
        format!(
            "GEMM feed: streams FWD/GRAD/FB operand tiles into the {rr}x{cc} array back to\n\
             back (arch::schedule::GemmTiming); tile_o marks each tile's last step."
        ),
    );
    let io = e.op_io_with(arch, false);
    e.unused("io", io.infer.clone());
    let west_o = e.m.output("west_o", s.a_w * rr as u32);
    let north_o = e.m.output("north_o", s.b_w * cc as u32);
    let av_o = e.m.output("av_o", 1);
    let ac_o = e.m.output("ac_o", 1);
    let al_o = e.m.output("al_o", 1);
    let issue_o = e.m.output("issue_o", 1);
    let tile_o = e.m.output("tile_o", 1);

    let ops = feed_ops(arch);
    let t = |id_: TensorId| arch.mem.t(id_).clone();
    let w: Vec<MemPort> = (0..nl)
        .map(|l| e.mem_port(&t(TensorId::W(l)), false, true))
        .collect();
    let x: Vec<MemPort> = (0..nl)
        .map(|l| {
            let id_ = if l == 0 {
                TensorId::X0
            } else {
                TensorId::Xh(l - 1)
            };
            e.mem_port(&t(id_), false, true)
        })
        .collect();
    let ep = e.mem_port(&t(TensorId::E), false, true);
    let h: Vec<Option<MemPort>> = (0..nl)
        .map(|l| (l > 0).then(|| e.mem_port(&t(TensorId::H(l)), false, true)))
        .collect();
    let nfb = arch.fb_layers();
    let fbm: Vec<MemPort> = if arch.diag_w() {
        Vec::new()
    } else {
        (0..nfb)
            .map(|l| e.mem_port(&t(TensorId::Fbm(l)), false, true))
            .collect()
    };
    let dc: Vec<Option<MemPort>> = (0..nl)
        .map(|l| (arch.feedback() && l > 0).then(|| e.mem_port(&t(TensorId::Dc(l)), false, true)))
        .collect();

    // ---------------------------------------------------------------- counters
    let (_, sw, rw) = seq_widths(arch);
    let maxk = ops
        .iter()
        .map(|o| {
            match o.k {
                Count::Fixed(v) => v,
                Count::Samples => arch.batch as u64,
                Count::Rows => arch.max_rows() as u64,
            }
            .max(o.pad)
        })
        .max()
        .unwrap_or(1) as usize;
    let kw = cw(maxk);
    let maxmn = ops
        .iter()
        .map(|o| {
            o.m.max(match o.n {
                Count::Fixed(v) => v,
                Count::Samples => arch.batch as u64,
                Count::Rows => arch.max_rows() as u64,
            })
        })
        .max()
        .unwrap_or(1) as usize
        + rr.max(cc);
    let mnw = cw(maxmn);
    let maxd = arch.dims.iter().copied().max().unwrap_or(1) as u64;
    let dwid = cw(maxd as usize);
    // Word bases grow to the largest memory the feed reads.
    let aw_max = e.ports.iter().map(|p| p.aw).max().unwrap_or(1) + 1;
    let mw = cw(rr.max(cc).max(nbk));

    let (st, st_d) = e.reg("st", 1, 0);
    let (kk, kk_d) = e.reg("k", kw, 0);
    let (kq, kq_d) = e.reg("k_count", kw, 0);
    // Steps per tile and K, both minus one (the compares below read them so).
    let (pq, pq_d) = e.reg("steps_m1", kw, 0);
    let (kq1, kq1_d) = e.reg("k_count_m1", kw, 0);
    let (mq, mq_d) = e.reg("m", mnw, 0);
    let (nq, nq_d) = e.reg("n", mnw, 0);
    let (obr, obr_d) = e.reg("ob_r", mnw, 0);
    let (obi, obi_d) = e.reg("ob", mnw, 0);
    let (tbc, tbc_d) = e.reg("tb_c", mnw, 0);
    let (obm, obm_d) = e.reg("ob_mod", mw, 0);
    let (wrb, wrb_d) = e.reg("west_base", aw_max, 0);
    let (nrb, nrb_d) = e.reg("north_base", aw_max, 0);
    let (kmr, kmr_d) = e.reg("k_mod_r", mw, 0);
    let (kmc, kmc_d) = e.reg("k_mod_c", mw, 0);
    let (kmn, kmn_d) = e.reg("k_mod_h", mw, 0);
    let (kdr, kdr_d) = e.reg("k_base_r", aw_max, 0);
    let (kdc, kdc_d) = e.reg("k_base_c", aw_max, 0);
    let (kdn, kdn_d) = e.reg("k_base_h", aw_max, 0);
    let (ekb, ekb_d) = e.reg("e_base", aw_max, 0);
    let (dwq, dwq_d) = e.reg("d_west", dwid, 0);
    let (dnq, dnq_d) = e.reg("d_north", dwid, 0);
    let (drr, drr_d) = e.reg("d_row_r", dwid, 0);
    let (drc, drc_d) = e.reg("d_row_c", dwid, 0);
    let (drn, drn_d) = e.reg("d_row_h", dwid, 0);

    let run = st.clone().eq_(lit(1, 1));
    let count = |c: Count, io: &OpIo| -> Expr {
        match c {
            Count::Fixed(v) => lit(kw.max(mnw), v),
            Count::Samples => zext(io.nsamp.clone(), sw, kw.max(mnw)),
            Count::Rows => zext(io.nrows.clone(), rw, kw.max(mnw)),
        }
    };
    let xw = kw.max(mnw);
    let kn = e.m.wire("k_start", xw);
    let nn = e.m.wire("n_start", xw);
    let pad = e.m.wire("pad_start", xw);
    let mut kexp = lit(xw, 0);
    let mut nexp = lit(xw, 0);
    let mut pexp = lit(xw, 0);
    // R >= M of the op (its only R-row block is the last).
    let mut one_ob = lit(1, 0);
    let mut consts: Option<Stmt> = None;
    for o in ops.iter().rev() {
        let cond = io.is_kind(o.op).land(io.is_layer(o.op.layer()));
        kexp = mux(cond.clone(), count(o.k, &io), kexp);
        nexp = mux(cond.clone(), count(o.n, &io), nexp);
        pexp = mux(cond.clone(), lit(xw, o.pad), pexp);
        one_ob = mux(cond.clone(), lit(1, u64::from(rr as u64 >= o.m)), one_ob);
        let body = vec![
            set(&mq_d, lit(mnw, o.m)),
            set(&dwq_d, lit(dwid, o.d_west)),
            set(&dnq_d, lit(dwid, o.d_north)),
            set(&drr_d, lit(dwid, o.d_rowr)),
            set(&drc_d, lit(dwid, o.d_rowc)),
            set(&drn_d, lit(dwid, o.d_rown)),
        ];
        consts = Some(match consts {
            None => if_(cond, body),
            Some(rest) => if_(cond, body).else_(vec![rest]),
        });
    }
    e.m.assign(&kn, kexp);
    e.m.assign(&nn, nexp);
    e.m.assign(&pad, pexp);
    // Control reads its compares from flag registers, each loaded with the compare of the
    // next state: in a running cycle from the registers' next values, in the start cycle
    // from the op's start values (compares of the op inputs with constants). So each flag
    // equals the compare of the current state whenever the feed runs, and the step logic
    // and the enables of the wide base registers start at a register instead of behind a
    // subtract and a compare.
    let steps_is_one = mux(
        kn.clone().lt_(pad.clone()),
        pad.clone().eq_(lit(xw, 1)),
        kn.clone().eq_(lit(xw, 1)),
    );
    let step_last = e.pipe(
        "step_last",
        mux(run.clone(), kk_d.clone().eq_(pq.clone()), steps_is_one),
        1,
    );
    let live = e.pipe(
        "live",
        mux(
            run.clone(),
            kk_d.clone().lt_(kq.clone()),
            kn.clone().ne_(lit(xw, 0)),
        ),
        1,
    );
    let k_last = e.pipe(
        "k_last",
        mux(
            run.clone(),
            kk_d.clone().eq_(kq1.clone()),
            kn.clone().eq_(lit(xw, 1)),
        ),
        1,
    );
    let tb_last = e.pipe(
        "tb_last",
        mux(
            run.clone(),
            (tbc_d.clone() + lit(mnw, cc as u64)).ge_(nq.clone()),
            lit(xw, cc as u64).ge_(nn.clone()),
        ),
        1,
    );
    let ob_last = e.pipe(
        "ob_last",
        mux(
            run.clone(),
            (obr_d.clone() + lit(mnw, rr as u64)).ge_(mq.clone()),
            one_ob,
        ),
        1,
    );
    let issue = e.wire("issue", 1, run.clone().land(live));
    {
        let mut start = vec![
            set(&st_d, lit(1, 1)),
            set(&kk_d, lit(kw, 0)),
            set(&obr_d, lit(mnw, 0)),
            set(&obi_d, lit(mnw, 0)),
            set(&tbc_d, lit(mnw, 0)),
            set(&obm_d, lit(mw, 0)),
            set(&wrb_d, lit(aw_max, 0)),
            set(&nrb_d, lit(aw_max, 0)),
        ];
        if let Some(c) = consts {
            start.push(c);
        }
        start.push(set(&kq_d, fit(&kn, xw, kw)));
        start.push(set(&kq1_d, fit(&kn, xw, kw) - lit(kw, 1)));
        start.push(set(&nq_d, fit(&nn, xw, mnw)));
        let steps = e.wire(
            "steps_start_m1",
            kw,
            mux(
                kn.clone().lt_(pad.clone()),
                fit(&pad, xw, kw),
                fit(&kn, xw, kw),
            ) - lit(kw, 1),
        );
        start.push(set(&pq_d, steps));
        // Tiles: the next step, tile, R-row block.
        let next_tile = vec![
            set(&kk_d, lit(kw, 0)),
            if_(
                tb_last,
                vec![
                    set(&tbc_d, lit(mnw, 0)),
                    set(&nrb_d, lit(aw_max, 0)),
                    if_(ob_last, vec![set(&st_d, lit(1, 0))]).else_(vec![
                        set(&obr_d, &obr + lit(mnw, rr as u64)),
                        set(&obi_d, &obi + lit(mnw, 1)),
                        set(&wrb_d, &wrb + zext(dwq.clone(), dwid, aw_max)),
                        set(&obm_d, add_mod_const(&obm, rr, mw, nbk)),
                    ]),
                ],
            )
            .else_(vec![
                set(&tbc_d, &tbc + lit(mnw, cc as u64)),
                set(&nrb_d, &nrb + zext(dnq.clone(), dwid, aw_max)),
            ]),
        ];
        e.comb.push(
            if_(
                run.clone(),
                vec![if_(step_last.clone(), next_tile).else_(vec![set(&kk_d, &kk + lit(kw, 1))])],
            )
            .else_if(io.start.clone(), start),
        );
        // The step's position in the bank cycles, restarted with every tile.
        let first = run.clone().land(step_last.clone()).lor(io.start.clone());
        let wrap = |m: &Expr, n: usize| m.clone().eq_(lit(mw, (n - 1) as u64));
        e.comb.push(
            if_(
                first,
                vec![
                    set(&kmr_d, lit(mw, 0)),
                    set(&kmc_d, lit(mw, 0)),
                    set(&kmn_d, lit(mw, 0)),
                    set(&kdr_d, lit(aw_max, 0)),
                    set(&kdc_d, lit(aw_max, 0)),
                    set(&kdn_d, lit(aw_max, 0)),
                    set(&ekb_d, lit(aw_max, 0)),
                ],
            )
            .else_if(
                run.clone(),
                vec![
                    set(&kmr_d, inc_mod(&kmr, mw, rr)),
                    set(&kmc_d, inc_mod(&kmc, mw, cc)),
                    set(&kmn_d, inc_mod(&kmn, mw, nbk)),
                    if_(
                        wrap(&kmr, rr),
                        vec![set(&kdr_d, &kdr + zext(drr.clone(), dwid, aw_max))],
                    ),
                    if_(
                        wrap(&kmc, cc),
                        vec![set(&kdc_d, &kdc + zext(drc.clone(), dwid, aw_max))],
                    ),
                    if_(
                        wrap(&kmn, nbk),
                        vec![set(&kdn_d, &kdn + zext(drn.clone(), dwid, aw_max))],
                    ),
                    set(&ekb_d, &ekb + lit(aw_max, arch.dims[1].div_ceil(rr) as u64)),
                ],
            ),
        );
    }
    // Reads issue only while the op runs: they read the registered op decode.
    let run_ops: Vec<Op> = ops.iter().map(|o| o.op).collect();
    let flags = e.op_flags(&io, &run_ops);
    let is = |o: Op| flags.of(o);

    // ---------------------------------------------------------------- reads
    // FWD l: W_l at word ob·d_l + k in every bank; x̂ at tb·d_l + k.
    for l in 0..nl {
        let c = issue.clone().land(is(Op::Fwd(l)));
        let p = &w[l];
        let a = e.wire(
            &format!("fwd{}_w_addr", l + 1),
            p.aw,
            fit(&wrb, aw_max, p.aw) + fit(&kk, kw, p.aw),
        );
        e.read_all(p, c.clone(), a);
        let p = &x[l];
        let a = e.wire(
            &format!("fwd{}_x_addr", l + 1),
            p.aw,
            fit(&nrb, aw_max, p.aw) + fit(&kk, kw, p.aw),
        );
        e.read_all(p, c, a);
    }
    // GRAD l: x̂ row k, columns tb·C + j: bank b holds j = (b − k) mod C at word
    // (k div C)·d_l + tb·C + j.
    for l in 0..nl {
        let c = issue.clone().land(is(Op::Grad(l)));
        let p = x[l].clone();
        let addrs: Vec<Expr> = (0..cc)
            .map(|b| {
                let j = lane_of_bank(&mut e, &format!("grad{}_x_lane{b}", l + 1), b, &kmc, mw, cc);
                let a = fit(&kdc, aw_max, p.aw) + fit(&tbc, mnw, p.aw) + fit(&j, mw + 1, p.aw);
                e.wire(&format!("grad{}_x_addr{b}", l + 1), p.aw, a)
            })
            .collect();
        e.read(&p, c.clone(), addrs);
        if l == 0 {
            // e: sample k, R columns of block ob: word k·⌈d1/R⌉ + ob.
            let a = e.wire(
                "grad1_e_addr",
                ep.aw,
                fit(&ekb, aw_max, ep.aw) + fit(&obi, mnw, ep.aw),
            );
            e.read_all(&ep, c, a);
        } else if let Some(p) = h[l].clone() {
            // δ_l in h_l: row k, columns ob·R + i: bank b holds i = (b − rot) mod banks,
            // rot = (k + ob·R) mod banks, at word (k div banks)·d + ob·R + i.
            let rot = e.add_mod(&format!("grad{}_h_rot", l + 1), &kmn, &obm, mw, nbk);
            let addrs: Vec<Expr> = (0..nbk)
                .map(|b| {
                    let i = lane_of_bank(
                        &mut e,
                        &format!("grad{}_h_lane{b}", l + 1),
                        b,
                        &rot,
                        mw,
                        nbk,
                    );
                    let a = fit(&kdn, aw_max, p.aw) + fit(&obr, mnw, p.aw) + fit(&i, mw + 1, p.aw);
                    e.wire(&format!("grad{}_h_addr{b}", l + 1), p.aw, a)
                })
                .collect();
            e.read(&p, c, addrs);
        }
    }
    // FB l: west B_{l+1}ᵀ (word ob·d_{l+2} + k) or W_{l+1}'s row k (bank b holds column
    // ob·R + (b − k) mod R at word (k div R)·d_{l+1} + ob·R + (b − k) mod R); north δ_{l+1}
    // at word tb·d_{l+2} + k.
    for l in 0..nfb {
        let c = issue.clone().land(is(Op::Fb(l)));
        if arch.diag_w() {
            let p = w[l + 1].clone();
            let addrs: Vec<Expr> = (0..rr)
                .map(|b| {
                    let i =
                        lane_of_bank(&mut e, &format!("fb{}_w_lane{b}", l + 1), b, &kmr, mw, rr);
                    let a = fit(&kdr, aw_max, p.aw) + fit(&obr, mnw, p.aw) + fit(&i, mw + 1, p.aw);
                    e.wire(&format!("fb{}_w_addr{b}", l + 1), p.aw, a)
                })
                .collect();
            e.read(&p, c.clone(), addrs);
        } else {
            let p = &fbm[l];
            let a = e.wire(
                &format!("fb{}_m_addr", l + 1),
                p.aw,
                fit(&wrb, aw_max, p.aw) + fit(&kk, kw, p.aw),
            );
            e.read_all(p, c.clone(), a);
        }
        let p = dc[l + 1].clone().expect("local δ copy of the layer above");
        let a = e.wire(
            &format!("fb{}_dc_addr", l + 1),
            p.aw,
            fit(&nrb, aw_max, p.aw) + fit(&kk, kw, p.aw),
        );
        e.read_all(&p, c, a);
    }

    // ---------------------------------------------------------------- edge data
    let rl = READ_LAT as usize;
    let rot_r = if rr > 1 && arch.diag_w() {
        e.delay("rot_r", kmr.clone(), mw, rl)
    } else {
        lit(mw, 0)
    };
    let rot_c = if cc > 1 {
        e.delay("rot_c", kmc.clone(), mw, rl)
    } else {
        lit(mw, 0)
    };
    let rot_h = if nl > 1 && nbk > 1 {
        // (GRAD l ≥ 2's rotation, recomputed from the delayed counters.)
        let a = e.delay("rot_hk", kmn.clone(), mw, rl);
        let b = e.delay("rot_ho", obm.clone(), mw, rl);
        e.add_mod("rot_h", &a, &b, mw, nbk)
    } else {
        lit(mw, 0)
    };
    let op_r = |e: &mut Eng, o: Op| {
        e.delay(
            &format!("op_{}{}", o.name().to_lowercase(), o.layer() + 1),
            is(o),
            1,
            rl,
        )
    };
    let rot = |sel: &Expr, n: usize, lane: usize, cand: &dyn Fn(usize) -> Expr| {
        if n == 1 {
            cand(0)
        } else {
            pick(sel, mw, n, |r| cand((r + lane) % n))
        }
    };
    let aw_ = s.a_w;
    let bw_ = s.b_w;
    let sx = |x: Expr, w: u32, to: u32| ext(&Sig::new(x, w, true), to);
    let mut west_lanes: Vec<Expr> = vec![lit(aw_, 0); rr];
    let mut north_lanes: Vec<Expr> = vec![lit(bw_, 0); cc];
    for l in 0..nl {
        let fwd = op_r(&mut e, Op::Fwd(l));
        let grad = op_r(&mut e, Op::Grad(l));
        for i in 0..rr {
            let p = &w[l];
            let v = if arch.diag_w() {
                rot(&rot_r, rr, i, &|b| p.rdata(b))
            } else {
                p.rdata(i)
            };
            let vw = e.wire(&format!("fwd{}_w{i}", l + 1), f.weight.bits, v);
            west_lanes[i] = mux(
                fwd.clone(),
                sx(vw, f.weight.bits, aw_),
                west_lanes[i].clone(),
            );
            // GRAD: e (layer 1, saturated to delta) or δ_l from h_l.
            let gv = if l == 0 {
                let lane = e.wire_s(&format!("grad1_e{i}"), ep.width, ep.rdata(i));
                let sat = saturate(
                    &mut e.m,
                    &format!("grad1_e{i}_sat"),
                    &Sig::new(lane, ep.width, true),
                    f.delta,
                );
                sx(sat.e, f.delta.bits, aw_)
            } else {
                let p = h[l].as_ref().expect("h");
                let cand = |b: usize| {
                    p.rdata_all().part(
                        int((b as u64) * u64::from(p.width)),
                        int(u64::from(f.delta.bits)),
                    )
                };
                let v = rot(&rot_h, nbk, i, &cand);
                let vw = e.wire(&format!("grad{}_d{i}", l + 1), f.delta.bits, v);
                sx(vw, f.delta.bits, aw_)
            };
            west_lanes[i] = mux(grad.clone(), gv, west_lanes[i].clone());
        }
        let xp = &x[l];
        for j in 0..cc {
            let v = rot(&rot_c, cc, j, &|b| xp.rdata(b));
            let vw = e.wire(&format!("x{}_lane{j}", l + 1), xp.width, v);
            north_lanes[j] = mux(
                fwd.clone().lor(grad.clone()),
                zext(vw, xp.width, bw_),
                north_lanes[j].clone(),
            );
        }
        if l > 0 {
            if let Some(p) = &h[l] {
                if p.width > f.delta.bits {
                    let hi: Vec<Expr> = (0..nbk)
                        .map(|b| {
                            p.rdata_all().part(
                                int((b as u64) * u64::from(p.width) + u64::from(f.delta.bits)),
                                int(u64::from(p.width - f.delta.bits)),
                            )
                        })
                        .collect();
                    e.unused(&format!("h{}_high", l + 1), cat(hi));
                }
            }
        }
    }
    for l in 0..nfb {
        let fb = op_r(&mut e, Op::Fb(l));
        for i in 0..rr {
            let v = if arch.diag_w() {
                let p = &w[l + 1];
                rot(&rot_r, rr, i, &|b| p.rdata(b))
            } else {
                fbm[l].rdata(i)
            };
            let vw = e.wire(&format!("fb{}_w{i}", l + 1), f.weight.bits, v);
            west_lanes[i] = mux(
                fb.clone(),
                sx(vw, f.weight.bits, aw_),
                west_lanes[i].clone(),
            );
        }
        let p = dc[l + 1].as_ref().expect("dc");
        for j in 0..cc {
            let vw = e.wire(&format!("fb{}_d{j}", l + 1), f.delta.bits, p.rdata(j));
            north_lanes[j] = mux(
                fb.clone(),
                sx(vw, f.delta.bits, bw_),
                north_lanes[j].clone(),
            );
        }
    }
    let west = e.pipe("west", cat(west_lanes.into_iter().rev()), aw_ * rr as u32);
    let north = e.pipe("north", cat(north_lanes.into_iter().rev()), bw_ * cc as u32);
    let ll = rl + 1;
    let av = e.delay_flag("av", issue.clone(), 1, ll);
    let ac = e.delay_flag("ac", issue.clone().land(kk.clone().eq_(lit(kw, 0))), 1, ll);
    let al = e.delay_flag("al", issue.clone().land(k_last.clone()), 1, ll);
    e.m.assign(west_o, west);
    e.m.assign(north_o, north);
    e.m.assign(av_o, av);
    e.m.assign(ac_o, ac);
    e.m.assign(al_o, al);
    e.m.assign(issue_o, issue.clone());
    e.m.assign(tile_o, issue.land(k_last));
    e.finish()
}
