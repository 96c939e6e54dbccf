//! The GEMM drain (`dff_gemm_drain`): follows the feed's tiles and reads the PE shadows
//! while the next tile streams ([`GemmTiming`]), then ends the op.
//!
//! - GRAD l: a column per cycle (R lanes, W_l's rows ob·R + i at column n) to the update
//!   engine, which read-modify-writes W_l through its update lanes;
//! - FWD 1: one PE per cycle into A1 (bank o mod R, word n·⌈d_1/R⌉ + ob);
//! - FWD l ≥ 2: one PE per cycle: z = acc + (b_l[o] << shift), saturated, ReLU/requantise,
//!   into h_l's diagonal banks (bank (n + o) mod banks, word (n div banks)·d + o);
//! - FB l: one PE per cycle, scaled by layer l's rsqrt parts of row n
//!   (`Units::scale_by_rsqrt`) into fbb_l[n·d + o].
//!
//! PEs are read column by column (FWD/FB: row by row within a column): a column select
//! (one C:1 mux per array row) and, for one PE per cycle, a row select, each registered.

use super::build::*;
use crate::arch::memmap::TensorId;
use crate::arch::program::Op;
use crate::arch::schedule::{GemmTiming, DRAIN_READ_ALIGN, READ_LAT};
use crate::arch::Arch;
use crate::fixed::Rounding;
use crate::hdl::*;
use crate::rtl::util::{ext, mul_pipelined, saturate, ulit, Sig};

pub fn gemm_drain(arch: &Arch) -> Module {
    let s = &arch.shape;
    let f = &s.f;
    let (rr, cc) = (arch.rows, arch.cols);
    let nbk = arch.lanes.h_banks;
    let nl = arch.layers();
    let nfb = arch.fb_layers();
    let accw = s.acc_w;
    let mut e = Eng::new(
        "dff_gemm_drain",
        format!(
            "GEMM drain: reads the {rr}x{cc} array's shadows tile by tile behind the feed\n\
             (arch::schedule::GemmTiming): GRAD columns to the update engine, FWD into A1 or\n\
             through bias and ReLU into h, FB through the rsqrt scaling into fbb."
        ),
    );
    let io = e.op_io(arch);
    e.unused("io", io.infer.clone());
    let tile_i = e.m.input("tile_i", 1);
    let acc_i = e.m.input("acc_i", accw * (rr * cc) as u32);
    let t = |id_: TensorId| arch.mem.t(id_).clone();
    let wmax = (0..nl).map(|l| t(TensorId::W(l)).aw()).max().unwrap_or(1);
    let mw = cw(rr.max(cc).max(nbk));
    let gv_o = e.m.output("grad_v_o", 1);
    let glanes_o = e.m.output("grad_lanes_o", accw * rr as u32);
    let glv_o = e.m.output("grad_lv_o", rr as u32);
    let gword_o = e.m.output("grad_word_o", wmax);
    let grot_o = e.m.output("grad_rot_o", mw);

    let a1 = e.mem_port(&t(TensorId::A1), true, false);
    let h: Vec<Option<MemPort>> = (0..nl)
        .map(|l| (l > 0).then(|| e.mem_port(&t(TensorId::H(l)), true, false)))
        .collect();
    let b: Vec<Option<MemPort>> = (0..nl)
        .map(|l| (l > 0).then(|| e.mem_port(&t(TensorId::B(l)), false, true)))
        .collect();
    let fbb: Vec<MemPort> = (0..nfb)
        .map(|l| e.mem_port(&t(TensorId::Fbb(l)), true, false))
        .collect();
    let rsm: Vec<MemPort> = (0..nfb)
        .map(|l| e.mem_port(&t(TensorId::Rs(l)), false, true))
        .collect();

    // Ops and their timing (N, K of the worst case: only m, the lag and the tail matter).
    let mut ops: Vec<Op> = Vec::new();
    for l in 0..nl {
        ops.push(Op::Fwd(l));
        ops.push(Op::Grad(l));
    }
    ops.extend((0..nfb).map(Op::Fb));
    let tim: Vec<GemmTiming> = ops
        .iter()
        .map(|&o| GemmTiming::new(arch, o, 1, 1))
        .collect();
    // The start reads the op decode of the inputs (`is_start`); everything after it, while
    // the op runs and through its tail, the registered one.
    let is_start = |o: Op| io.is_kind(o).land(io.is_layer(o.layer()));
    let flags = e.op_flags(&io, &ops);
    let is = |o: Op| flags.of(o);
    let is_grad = e.wire(
        "is_grad",
        1,
        ops.iter()
            .filter(|o| matches!(o, Op::Grad(_)))
            .map(|&o| is(o))
            .reduce(|a, b| a.lor(b))
            .unwrap_or_else(|| lit(1, 0)),
    );

    // ---------------------------------------------------------------- tile counters
    let (_, sw, rw) = seq_widths(arch);
    let maxmn = arch
        .dims
        .iter()
        .copied()
        .chain([arch.max_rows()])
        .max()
        .unwrap_or(1)
        + rr.max(cc);
    let mnw = cw(maxmn);
    let dwid = cw(arch.dims.iter().copied().max().unwrap_or(1));
    let aw_max = e.ports.iter().map(|p| p.aw).max().unwrap_or(1).max(wmax) + 1;
    let tmax = tim.iter().map(|t| t.tail).max().unwrap_or(1) as usize;
    let tw = cw(tmax);
    let (st, st_d) = e.reg("st", 2, 0);
    const ST_IDLE: u64 = 0;
    const ST_RUN: u64 = 1;
    const ST_TAIL: u64 = 2;
    for (n, v) in [("StIdle", ST_IDLE), ("StRun", ST_RUN), ("StTail", ST_TAIL)] {
        e.m.localparam(n, lit(2, v));
    }
    let in_st = |n: &str| st.clone().eq_(id(n));
    let (mq, mq_d) = e.reg("m", mnw, 0);
    let (nq, nq_d) = e.reg("n", mnw, 0);
    let (dq, dq_d) = e.reg("d", dwid, 0);
    let (tq, tq_d) = e.reg("tail", tw, 0);
    let (obr, obr_d) = e.reg("ob_r", mnw, 0);
    let (obi, obi_d) = e.reg("ob", mnw, 0);
    let (tbc, tbc_d) = e.reg("tb_c", mnw, 0);
    let (act, act_d) = e.reg("active", 1, 0);
    let (dj, dj_d) = e.reg("col", mw, 0);
    let (di, di_d) = e.reg("row", mw, 0);
    // Positions of the drained element in its destination's banks.
    let (obm, obm_d) = e.reg("ob_mod_h", mw, 0);
    let (tbm, tbm_d) = e.reg("tb_mod_h", mw, 0);
    let (tbq, tbq_d) = e.reg("tb_base_h", aw_max, 0);
    let (nmod, nmod_d) = e.reg("n_mod_h", mw, 0);
    let (nbase, nbase_d) = e.reg("n_base_h", aw_max, 0);
    let (om, om_d) = e.reg("o_mod_h", mw, 0);
    let (a1t, a1t_d) = e.reg("a1_base", aw_max, 0);
    let (a1c, a1c_d) = e.reg("a1_word", aw_max, 0);
    let (fbt, fbt_d) = e.reg("fb_base", aw_max, 0);
    let (fbn, fbn_d) = e.reg("fb_word", aw_max, 0);
    let (gwb, gwb_d) = e.reg("grad_base", aw_max, 0);
    let (tbr, tbr_d) = e.reg("tb_mod_r", mw, 0);
    let (nmr, nmr_d) = e.reg("n_mod_r", mw, 0);
    let (tcnt, tcnt_d) = e.reg("tail_count", tw, 0);

    let (obd, obd_d) = e.reg("ob_base", aw_max, 0);
    // d·C: the fbb word step from one column block to the next.
    let (dcq, dcq_d) = e.reg("d_times_c", aw_max, 0);
    // Whether the tile position is in the last column block / R-row block (see below).
    let (tb_last, tbl_d) = e.reg("tb_last", 1, 0);
    let (ob_last, obl_d) = e.reg("ob_last", 1, 0);
    let ng1 = arch.dims[1].div_ceil(rr) as u64;
    let lag_g = tim
        .iter()
        .zip(&ops)
        .find(|(_, o)| matches!(o, Op::Grad(_)))
        .map(|(t, _)| t.lag)
        .unwrap_or(1) as usize;
    let lag_e = tim[0].lag as usize;
    let run = in_st("StRun");
    let final_tile;
    {
        let nexp = {
            let mut v = lit(mnw, 0);
            for o in ops.iter().rev() {
                let n = match *o {
                    Op::Fwd(0) => zext(io.nsamp.clone(), sw, mnw),
                    Op::Fwd(_) | Op::Fb(_) => zext(io.nrows.clone(), rw, mnw),
                    Op::Grad(l) => lit(mnw, arch.dims[l] as u64),
                    _ => unreachable!(),
                };
                v = mux(is_start(*o), n, v);
            }
            e.wire("n_start", mnw, v)
        };
        let mut consts: Option<Stmt> = None;
        for (o, tm) in ops.iter().zip(&tim).rev() {
            // d: the destination's row length (h_l, fbb_l: d_{l+1}; GRAD: W_l's row, d_l).
            let d = match *o {
                Op::Grad(l) => arch.dims[l],
                Op::Fwd(l) | Op::Fb(l) => arch.dims[l + 1],
                _ => unreachable!(),
            } as u64;
            let body = vec![
                set(&mq_d, lit(mnw, tm.m)),
                set(&dq_d, lit(dwid, d)),
                set(&dcq_d, lit(aw_max, d * cc as u64)),
                set(&tq_d, lit(tw, tm.tail)),
            ];
            consts = Some(match consts {
                None => if_(is_start(*o), body),
                Some(rest) => if_(is_start(*o), body).else_(vec![rest]),
            });
        }
        let ob_first = ops.iter().zip(&tim).rev().fold(lit(1, 0), |v, (o, tm)| {
            mux(is_start(*o), lit(1, u64::from(rr as u64 >= tm.m)), v)
        });
        let mut start = vec![
            set(&st_d, id("StRun")),
            set(&nq_d, &nexp),
            set(&tbl_d, lit(mnw, cc as u64).ge_(nexp.clone())),
            set(&obl_d, ob_first),
            set(&obr_d, lit(mnw, 0)),
            set(&obi_d, lit(mnw, 0)),
            set(&tbc_d, lit(mnw, 0)),
            set(&act_d, lit(1, 0)),
            set(&obm_d, lit(mw, 0)),
            set(&tbm_d, lit(mw, 0)),
            set(&tbq_d, lit(aw_max, 0)),
            set(&a1t_d, lit(aw_max, 0)),
            set(&fbt_d, lit(aw_max, 0)),
            set(&gwb_d, lit(aw_max, 0)),
            set(&obd_d, lit(aw_max, 0)),
            set(&tbr_d, lit(mw, 0)),
        ];
        if let Some(c) = consts {
            start.push(c);
        }
        // The feed's tile ends, `lag` cycles later.
        let maxlag = lag_g.max(lag_e) - 1;
        let mut taps = Vec::new();
        let mut cur = tile_i.clone();
        for i in 1..=maxlag {
            let r = e.flag(&format!("tile_p{i}"), cur, 1);
            taps.push(r.clone());
            cur = r;
        }
        // (The drain's counters load the cycle before its first sample, `lag` after the
        // tile's last step.)
        let tile_d = e.wire(
            "tile_due",
            1,
            mux(
                is_grad.clone(),
                taps[lag_g - 2].clone(),
                taps[lag_e - 2].clone(),
            ),
        );
        let last_col = dj.clone().eq_(lit(mw, (cc - 1) as u64));
        let last_row = di.clone().eq_(lit(mw, (rr - 1) as u64));
        let elem_last = e.wire(
            "drain_last",
            1,
            last_col.land(is_grad.clone().lor(last_row.clone())),
        );
        // The tile-position compares, kept in registers with the positions: loaded at the
        // start, and at each tile's end with the compare of the next tile's position (made
        // from the current registers), so the step logic starts at a register.
        let tb_first = lit(mnw, cc as u64).ge_(nq.clone());
        let tb_next = e.wire(
            "tb_next_last",
            1,
            (tbc.clone() + lit(mnw, 2 * cc as u64)).ge_(nq.clone()),
        );
        let ob_next = e.wire(
            "ob_next_last",
            1,
            (obr.clone() + lit(mnw, 2 * rr as u64)).ge_(mq.clone()),
        );
        final_tile = e.wire("final_tile", 1, tb_last.clone().land(ob_last.clone()));
        let dz = |x: &Expr| zext(x.clone(), dwid, aw_max);
        // A tile's drain starts the position counters at its first column.
        // (With a tile exactly as long as its drain, the next tile's drain starts the cycle
        // after the previous one's last sample: it reads the tile positions' next values.)
        let begin = vec![
            set(&act_d, lit(1, 1)),
            set(&dj_d, lit(mw, 0)),
            set(&di_d, lit(mw, 0)),
            set(&nmod_d, tbm_d.clone()),
            set(&nbase_d, tbq_d.clone()),
            set(&om_d, obm_d.clone()),
            set(&a1c_d, a1t_d.clone()),
            set(&fbn_d, fbt_d.clone()),
            set(&nmr_d, tbr_d.clone()),
        ];
        let next_col = vec![
            set(&dj_d, &dj + lit(mw, 1)),
            set(&di_d, lit(mw, 0)),
            set(&om_d, obm.clone()),
            set(&nmod_d, inc_mod(&nmod, mw, nbk)),
            if_(
                nmod.clone().eq_(lit(mw, (nbk - 1) as u64)),
                vec![set(&nbase_d, &nbase + dz(&dq))],
            ),
            set(&a1c_d, &a1c + lit(aw_max, ng1)),
            set(&fbn_d, &fbn + dz(&dq)),
            set(&nmr_d, inc_mod(&nmr, mw, rr)),
        ];
        let next_row = vec![
            set(&di_d, &di + lit(mw, 1)),
            set(&om_d, inc_mod(&om, mw, nbk)),
        ];
        // The next tile (tb inner, ob outer), as the feed streams them.
        let tb_wrap =
            (zext(tbm.clone(), mw, mw + 1) + lit(mw + 1, cc as u64)).ge_(lit(mw + 1, nbk as u64));
        let next_tile = vec![if_(
            tb_last.clone(),
            vec![
                set(&tbl_d, tb_first),
                set(&obl_d, ob_next),
                set(&tbc_d, lit(mnw, 0)),
                set(&tbm_d, lit(mw, 0)),
                set(&tbq_d, lit(aw_max, 0)),
                set(&tbr_d, lit(mw, 0)),
                set(&obr_d, &obr + lit(mnw, rr as u64)),
                set(&obi_d, &obi + lit(mnw, 1)),
                set(&obm_d, add_mod_const(&obm, rr, mw, nbk)),
                set(&a1t_d, fit(&obi, mnw, aw_max) + lit(aw_max, 1)),
                set(&fbt_d, lit(aw_max, 0)),
                set(&obd_d, &obd + dz(&dq)),
                set(&gwb_d, &obd + dz(&dq)),
            ],
        )
        .else_(vec![
            set(&tbl_d, tb_next),
            set(&tbc_d, &tbc + lit(mnw, cc as u64)),
            set(&tbm_d, add_mod_const(&tbm, cc, mw, nbk)),
            if_(tb_wrap, vec![set(&tbq_d, &tbq + dz(&dq))]),
            set(&tbr_d, add_mod_const(&tbr, cc % rr, mw, rr)),
            set(&a1t_d, &a1t + lit(aw_max, cc as u64 * ng1)),
            set(&fbt_d, &fbt + dcq.clone()),
            set(&gwb_d, &gwb + lit(aw_max, cc as u64)),
        ])];
        let mut at_last = next_tile;
        at_last.push(set(&act_d, lit(1, 0)));
        at_last.push(if_(
            final_tile.clone(),
            vec![set(&st_d, id("StTail")), set(&tcnt_d, tq.clone())],
        ));
        let step = if_(elem_last.clone(), at_last)
            .else_if(is_grad.clone().lor(last_row), next_col.clone())
            .else_(next_row);
        e.comb.push(
            if_(
                run.clone(),
                vec![if_(act.clone(), vec![step]), if_(tile_d.clone(), begin)],
            )
            .else_if(
                in_st("StTail"),
                vec![
                    set(&tcnt_d, &tcnt - lit(tw, 1)),
                    if_(
                        tcnt.clone().eq_(lit(tw, 1)),
                        vec![set(&st_d, id("StIdle")), set(&io.done_d, lit(1, 1))],
                    ),
                ],
            )
            .else_if(io.start.clone(), start),
        );
    }
    let _ = &final_tile;

    // ---------------------------------------------------------------- shadow selects
    let shadow = |i: usize, j: usize| {
        acc_i.part(
            int(((i * cc + j) as u64) * u64::from(accw)),
            int(u64::from(accw)),
        )
    };
    let cols: Vec<Expr> = (0..rr)
        .map(|i| pick(&dj, mw, cc, |j| shadow(i, j)))
        .collect();
    let col_q = e.pipe("column", cat(cols.into_iter().rev()), accw * rr as u32);
    let o_lt = |o: Expr| o.lt_(mq.clone());
    let n_now = e.wire("n_now", mnw, &tbc + zext(dj.clone(), mw, mnw));
    let o_now = e.wire("o_now", mnw, &obr + zext(di.clone(), mw, mnw));
    // The element's bounds checks come from registers, each loaded with the compare of the
    // registers' next values, so it equals the compare of the current ones (an add and a
    // compare on a carry chain were the critical path, 87.3 MHz, docs/board.md).
    let n_ok = e.pipe(
        "n_ok",
        (tbc_d.clone() + zext(dj_d.clone(), mw, mnw)).lt_(nq_d.clone()),
        1,
    );
    let o_ok = e.pipe(
        "o_ok",
        (obr_d.clone() + zext(di_d.clone(), mw, mnw)).lt_(mq_d.clone()),
        1,
    );
    let sampled = e.wire("sampled", 1, run.clone().land(act.clone()));

    // GRAD: the column to the update engine.
    {
        let gv = e.flag(
            "grad_v",
            sampled.clone().land(is_grad.clone()).land(n_ok.clone()),
            1,
        );
        let lv: Vec<Expr> = (0..rr)
            .rev()
            .map(|i| o_lt(&obr + lit(mnw, i as u64)))
            .collect();
        let glv = e.pipe("grad_lv", cat(lv), rr as u32);
        let gwn = e.wire(
            "grad_word_now",
            wmax,
            fit(&gwb, aw_max, wmax) + fit(&dj, mw, wmax),
        );
        let gw = e.pipe("grad_word", gwn, wmax);
        let gr = e.pipe("grad_rot", nmr.clone(), mw);
        e.m.assign(gv_o, gv);
        e.m.assign(glanes_o, col_q.clone());
        e.m.assign(glv_o, glv);
        e.m.assign(gword_o, gw);
        e.m.assign(grot_o, gr);
    }

    // FWD / FB: one PE per cycle.
    let di_p1 = e.delay("row_sel", di.clone(), mw, 1);
    let elem = e.pipe_s(
        "elem",
        pick(&di_p1, mw, rr, |i| {
            col_q.part(int((i as u64) * u64::from(accw)), int(u64::from(accw)))
        }),
        accw,
    );
    let ev = e.wire(
        "elem_ok",
        1,
        sampled
            .clone()
            .land(is_grad.clone().lnot())
            .land(n_ok)
            .land(o_ok),
    );
    // FWD 1 → A1: bank o mod R = row, word n·⌈d1/R⌉ + ob.
    {
        let c = e.delay_flag("a1_v", ev.clone().land(is(Op::Fwd(0))), 1, 2);
        let bank = e.delay("a1_bank", di.clone(), mw, 2);
        let word = e.delay("a1_word", fit(&a1c, aw_max, a1.aw), a1.aw, 2);
        let data = e.wire("a1_data", a1.width, elem.slice(a1.width - 1, 0));
        if a1.width < accw {
            e.unused("elem_high", elem.slice(accw - 1, a1.width));
        }
        e.write_one(&a1, c, onehot(&bank, mw, rr), word, data);
    }
    // FWD l ≥ 2 → bias, saturation, ReLU → h_l.
    if nl > 1 {
        let bsh = f.accumulator.frac - f.bias.frac;
        for l in 1..nl {
            let p = b[l].as_ref().expect("bias port");
            let c = ev.clone().land(is(Op::Fwd(l)));
            e.read_all(p, c, fit(&o_now, mnw, p.aw));
        }
        let bias = {
            let mut v = lit(f.bias.bits, 0);
            for l in (1..nl).rev() {
                v = mux(io.is_layer(l), b[l].as_ref().unwrap().rdata(0), v);
            }
            e.wire_s("bias", f.bias.bits, v)
        };
        let elem2 = aligned_elem(&mut e, "elem2", &elem, accw);
        let zw = accw + 2;
        let bext = {
            let shifted = e.wire_s(
                "bias_shifted",
                f.bias.bits + bsh,
                if bsh == 0 {
                    bias.clone()
                } else {
                    cat([bias.clone(), lit(bsh, 0)])
                },
            );
            ext(&Sig::new(shifted, f.bias.bits + bsh, true), zw)
        };
        let z = e.pipe_s("z", ext(&Sig::new(elem2, accw, true), zw) + bext, zw);
        let zc = saturate(&mut e.m, "z_sat", &Sig::new(z, zw, true), f.accumulator);
        let fwd_up = (1..nl)
            .map(|l| is(Op::Fwd(l)))
            .reduce(|a, b| a.lor(b))
            .unwrap_or_else(|| lit(1, 0));
        let zv = e.delay_flag("z_v", ev.clone().land(fwd_up), 1, READ_LAT as usize + 1);
        let hq = e.m.wire("relu_h", f.hidden.bits);
        let hv = e.m.wire("relu_v", 1);
        e.m.instance(
            Instance::new("dff_relu", "u_relu")
                .conn("clk_i", id("clk_i"))
                .conn("rst_i", id("rst_i"))
                .conn("z_i", zc.e.clone())
                .conn("v_i", &zv)
                .conn("h_o", &hq)
                .conn("v_o", &hv),
        );
        // Position: bank (n + o) mod banks, word (n div banks)·d + o; six cycles later.
        let bank_now = e.add_mod("h_bank", &nmod, &om, mw, nbk);
        let haw = h.iter().flatten().map(|p| p.aw).max().unwrap_or(1);
        let hword_now = e.wire(
            "h_word",
            haw,
            fit(&nbase, aw_max, haw) + fit(&o_now, mnw, haw),
        );
        let lat = (READ_LAT + 1 + crate::arch::schedule::RELU_LAT) as usize;
        let hb = e.delay("h_bank", bank_now, mw, lat);
        let hw = e.delay("h_word", hword_now, haw, lat);
        for l in 1..nl {
            let p = h[l].as_ref().expect("h port");
            let c = hv.clone().land(io.is_layer(l));
            let data = zext(hq.clone(), f.hidden.bits, p.width);
            e.write_one(p, c, onehot(&hb, mw, nbk), fit(&hw, haw, p.aw), data);
        }
    }
    // FB l → scaled by layer l's rsqrt parts of row n → fbb_l[n·d + o].
    if nfb > 0 {
        let (rs_w, he_w) = arch.rs_widths();
        for (l, p) in rsm.iter().enumerate() {
            let c = ev.clone().land(is(Op::Fb(l)));
            e.read_all(p, c, fit(&n_now, mnw, p.aw));
        }
        let rs = {
            let mut v = lit(rs_w + he_w, 0);
            for l in (0..nfb).rev() {
                v = mux(io.is_layer(l), rsm[l].rdata(0), v);
            }
            e.wire("fb_rs", rs_w + he_w, v)
        };
        let word = e.wire("fb_rs_word", rs_w, rs.slice(rs_w + he_w - 1, he_w));
        let half_e = rs.slice(he_w - 1, 0);
        let elem2 = aligned_elem(&mut e, "fb_elem", &elem, accw);
        let prod = mul_pipelined(
            &mut e.m,
            "fb_mul",
            &Sig::new(elem2, accw, true),
            &Sig::new(word, rs_w, false),
        );
        let m = crate::arch::schedule::mul_stages(accw, rs_w + 1) as usize;
        // The shift: weight.frac + rsqrt_frac − hidden.frac + e/2 (e/2 ≥ 1 unless S = 0,
        // whose word is 0, so a wrapped shift only ever meets a zero product).
        let shw = 8u32;
        let sh0 = i64::from(f.weight.frac) + i64::from(f.rsqrt_frac) - i64::from(f.hidden.frac);
        let sh_now = e.wire("fb_sh", shw, zext(half_e, he_w, shw) + ulit(shw, sh0));
        let sh = e.delay("fb_sh", sh_now, shw, m);
        let pw = prod.w;
        let sw_ = pw + 1;
        let half = if f.rounding == Rounding::HalfUp {
            mux(
                sh.clone().eq_(lit(shw, 0)),
                lit(sw_, 0),
                lit(sw_, 1) << (sh.clone() - lit(shw, 1)),
            )
        } else {
            lit(sw_, 0)
        };
        let sum = e.pipe_s("fb_sum", ext(&prod, sw_) + half.signed(), sw_);
        let sh2 = e.pipe("fb_sh2", sh.clone(), shw);
        // A shift of pw or more leaves |p| < 2^(sh−1): half-up gives 0, truncation −1 for a
        // negative p, which the arithmetic shift gives.
        let q = if f.rounding == Rounding::HalfUp {
            mux(
                sh2.clone().ge_(lit(shw, u64::from(pw))),
                lit(sw_, 0).signed(),
                sum.ashr(&sh2),
            )
        } else {
            sum.ashr(&sh2)
        };
        let qq = e.pipe_s("fb_q", q, sw_);
        let y = saturate(&mut e.m, "fb_y", &Sig::new(qq, sw_, true), f.delta);
        let lat = READ_LAT as usize + m + 2;
        for (l, p) in fbb.iter().enumerate() {
            let c = e.delay_flag(
                &format!("fbb{}_v", l + 1),
                ev.clone().land(is(Op::Fb(l))),
                1,
                lat,
            );
            let wnow = e.wire(
                &format!("fbb{}_word_now", l + 1),
                p.aw,
                fit(&fbn, aw_max, p.aw) + fit(&o_now, mnw, p.aw),
            );
            let w = e.delay(&format!("fbb{}_word", l + 1), wnow, p.aw, lat);
            e.write_one(p, c, lit(1, 1), w, y.e.clone());
        }
    }
    e.finish()
}

/// The drained element delayed [`DRAIN_READ_ALIGN`] cycles, to meet the per-row operand
/// read issued at its sample.
fn aligned_elem(e: &mut Eng, name: &str, elem: &Expr, w: u32) -> Expr {
    let mut cur = elem.clone();
    for i in 1..=DRAIN_READ_ALIGN {
        let n = if i == DRAIN_READ_ALIGN {
            name.to_string()
        } else {
            format!("{name}_p{i}")
        };
        cur = e.pipe_s(&n, cur, w);
    }
    cur
}
