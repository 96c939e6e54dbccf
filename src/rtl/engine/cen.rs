//! The CEN op engine (`dff_op_cen`): layer 1's per-hypothesis epilogue
//! h_1 = ReLU(A1[s] + b_1 + U[hyp]).
//!
//! First V[c] = (b_1 << bsh) + (U[c] << ush) for every class, one value per cycle (exact:
//! the sum z below is the golden model's), into V's `cl` column banks. Then row by row
//! (sample s, slot): the row's hypothesis is read, and `cl` consecutive columns per cycle
//! take A1[s][o] (R column banks) + V[hyp][o] (cl banks), saturate, ReLU/requantise, and go
//! to h_1's diagonal banks (bank (r + o) mod banks). Rows follow each other every
//! ⌈d_1/cl⌉ cycles: the next row's hypothesis is read while the current row streams
//! ([`CenTiming`]).

use super::build::*;
use crate::arch::memmap::TensorId;
use crate::arch::schedule::{CenTiming, READ_LAT, RELU_LAT};
use crate::arch::Arch;
use crate::hdl::*;
use crate::rtl::util::{ext, saturate, Sig};

pub fn cen(arch: &Arch) -> Module {
    let s = &arch.shape;
    let f = &s.f;
    let rr = arch.rows;
    let cl = arch.lanes.cen;
    let nbk = arch.lanes.h_banks;
    let d1 = arch.dims[1];
    let ncls = arch.classes;
    let tim = CenTiming::new(arch);
    let mut e = Eng::new(
        "dff_op_cen",
        format!(
            "CEN op engine: V = b1 + U per class, then h1 = ReLU(A1 + V[hyp]) for every row,\n\
             {cl} columns per cycle (arch::schedule::CenTiming)."
        ),
    );
    let io = e.op_io(arch);
    let t = |id_: TensorId| arch.mem.t(id_).clone();
    let b1 = e.mem_port(&t(TensorId::B(0)), false, true);
    let u = e.mem_port(&t(TensorId::U), false, true);
    let v = e.mem_port(&t(TensorId::V), true, true);
    let a1 = e.mem_port(&t(TensorId::A1), false, true);
    let hyp = e.mem_port(&t(TensorId::Hyps), false, true);
    let h1 = e.mem_port(&t(TensorId::H(0)), true, false);
    let (_, sw, rw) = seq_widths(arch);
    let rl = READ_LAT as usize;

    // ---------------------------------------------------------------- phase 1: V
    let jw = cw(ncls * d1);
    let ow = cw(d1);
    let lw_ = cw(cl.max(rr).max(nbk));
    let (st, st_d) = e.reg("st", 2, 0);
    for (n, val) in [("StIdle", 0), ("StTable", 1), ("StRows", 2)] {
        e.m.localparam(n, lit(2, val));
    }
    let in_st = |n: &str| st.clone().eq_(id(n));
    let (j, j_d) = e.reg("j", jw, 0);
    let (o, o_d) = e.reg("o", ow, 0);
    let (om, om_d) = e.reg("o_lane", lw_, 0);
    let (vw, vw_d) = e.reg("v_word", v.aw + 1, 0);
    let table = in_st("StTable");
    let kw_ = cw(arch.hyps.max(ncls));
    // Rows: the header (hypothesis read) every `period` cycles.
    let pw = cw(tim.period as usize);
    let (r, r_d) = e.reg("row", rw, 0);
    let (nr, nr_d) = e.reg("rows_m1", rw, 0);
    let (pc, pc_d) = e.reg("row_cycle", pw, 0);
    let (slot, slot_d) = e.reg("slot", kw_, 0);
    let (sbase, sbase_d) = e.reg("a1_base", a1.aw + 1, 0);
    let (rm, rm_d) = e.reg("row_mod", lw_, 0);
    let tw = cw(tim.tail as usize);
    let (tail, tail_d) = e.reg("tail", tw, 0);
    let (rb, rb_d) = e.reg("row_base", h1.aw + 1, 0);
    let rows = in_st("StRows");
    let header = e.wire("header", 1, rows.clone().land(pc.clone().eq_(lit(pw, 0))));
    let kq = mux(
        io.infer.clone(),
        lit(kw_, ncls as u64),
        lit(kw_, arch.hyps as u64),
    );
    {
        let start = vec![
            set(&st_d, id("StTable")),
            set(&j_d, lit(jw, 0)),
            set(&o_d, lit(ow, 0)),
            set(&om_d, lit(lw_, 0)),
            set(&vw_d, lit(v.aw + 1, 0)),
            set(&r_d, lit(rw, 0)),
            set(&nr_d, io.nrows.clone() - lit(rw, 1)),
            set(&pc_d, lit(pw, 0)),
            set(&slot_d, lit(kw_, 0)),
            set(&sbase_d, lit(a1.aw + 1, 0)),
            set(&rm_d, lit(lw_, 0)),
            set(&rb_d, lit(h1.aw + 1, 0)),
        ];
        let table_step = vec![
            set(&j_d, &j + lit(jw, 1)),
            if_(
                o.clone().eq_(lit(ow, (d1 - 1) as u64)),
                vec![
                    set(&o_d, lit(ow, 0)),
                    set(&om_d, lit(lw_, 0)),
                    set(&vw_d, &vw + lit(v.aw + 1, 1)),
                ],
            )
            .else_(vec![
                set(&o_d, &o + lit(ow, 1)),
                set(&om_d, inc_mod(&om, lw_, cl)),
                if_(
                    om.clone().eq_(lit(lw_, (cl - 1) as u64)),
                    vec![set(&vw_d, &vw + lit(v.aw + 1, 1))],
                ),
            ]),
            if_(
                j.clone().eq_(lit(jw, (ncls * d1 - 1) as u64)),
                vec![set(&st_d, id("StRows"))],
            ),
        ];
        let ng1 = d1.div_ceil(rr) as u64;
        let row_step = vec![if_(
            pc.clone().eq_(lit(pw, tim.period - 1)),
            vec![
                set(&pc_d, lit(pw, 0)),
                set(&r_d, &r + lit(rw, 1)),
                if_(
                    slot.clone().eq_(kq.clone() - lit(kw_, 1)),
                    vec![
                        set(&slot_d, lit(kw_, 0)),
                        set(&sbase_d, &sbase + lit(a1.aw + 1, ng1)),
                    ],
                )
                .else_(vec![set(&slot_d, &slot + lit(kw_, 1))]),
                set(&rm_d, inc_mod(&rm, lw_, nbk)),
                if_(
                    rm.clone().eq_(lit(lw_, (nbk - 1) as u64)),
                    vec![set(&rb_d, &rb + lit(h1.aw + 1, d1 as u64))],
                ),
            ],
        )
        .else_(vec![set(&pc_d, &pc + lit(pw, 1))])];
        // The last row's header: the op ends `tail` cycles later, with its last h_1 write.
        let last_header = vec![set(&st_d, id("StIdle")), set(&tail_d, lit(tw, tim.tail))];
        // row == rows - 1, from a flag loaded with the compare of the row counter's next
        // value with rows - 1 (which is set at the start, a table phase before any row).
        let row_last = e.pipe("row_last", r_d.clone().eq_(nr.clone()), 1);
        let row_step =
            vec![if_(pc.clone().eq_(lit(pw, 0)).land(row_last), last_header).else_(row_step)];
        e.comb.push(
            if_(table.clone(), table_step)
                .else_if(rows.clone(), row_step)
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
    e.read_all(&b1, table.clone(), fit(&o, ow, b1.aw));
    e.read_all(&u, table.clone(), fit(&j, jw, u.aw));
    {
        let bsh = f.accumulator.frac - f.bias.frac;
        let ush = f.accumulator.frac - f.centroid.frac;
        let cvw = v.width;
        let c = e.delay_flag("v_wr", table.clone(), 1, rl);
        let lane = e.delay("v_lane", om.clone(), lw_, rl);
        let word = e.delay("v_word", fit(&vw, v.aw + 1, v.aw), v.aw, rl);
        let shl = |e: &mut Eng, name: &str, x: Expr, bits: u32, sh: u32| {
            let w = e.wire_s(
                name,
                bits + sh,
                if sh == 0 { x } else { cat([x, lit(sh, 0)]) },
            );
            ext(&Sig::new(w, bits + sh, true), cvw)
        };
        let bx = shl(&mut e, "b_shifted", b1.rdata(0), f.bias.bits, bsh);
        let ux = shl(&mut e, "u_shifted", u.rdata(0), f.centroid.bits, ush);
        let sum = e.wire_s("v_sum", cvw, bx + ux);
        let addrs = (0..cl).map(|_| word.clone()).collect();
        let data = (0..cl).map(|_| sum.clone()).collect();
        e.write(&v, c, onehot(&lane, lw_, cl), addrs, data);
        e.unused("v_word_hi", vw.slice(v.aw, v.aw));
    }

    // ---------------------------------------------------------------- phase 2: rows
    // Header: the row's hypothesis (inference: the slot), its A1 base and h_1 position.
    e.read_all(
        &hyp,
        header.clone().land(io.infer.clone().lnot()),
        fit(&r, rw, hyp.aw),
    );
    let hl = rl + 1;
    let cb = arch.class_bits;
    let slot_h = e.delay("slot_h", fit(&slot, kw_, cb), cb, rl);
    let infer_h = io.infer.clone();
    let hyp_now = e.wire("hyp_now", cb, mux(infer_h, slot_h, hyp.rdata(0)));
    let ng = d1.div_ceil(cl) as u64;
    // (hyp · ⌈d1/cl⌉: a constant multiply, registered.)
    let vbase_now = e.wire("v_base_now", v.aw, fit(&hyp_now, cb, v.aw) * lit(v.aw, ng));
    let hv = e.delay_flag("header_v", header.clone(), 1, hl);
    let vbase_h = e.pipe("v_base_h", vbase_now, v.aw);
    let sb_h = e.delay("a1_base_h", fit(&sbase, a1.aw + 1, a1.aw), a1.aw, hl);
    let rm_h = e.delay("row_mod_h", rm.clone(), lw_, hl);
    let rb_h = e.delay("row_base_h", fit(&rb, h1.aw + 1, h1.aw), h1.aw, hl);
    e.unused(
        "hi_bits",
        cat([sbase.slice(a1.aw, a1.aw), rb.slice(h1.aw, h1.aw)]),
    );
    // Columns: g = 0 .. ng−1 from the header's arrival.
    let gw = cw(ng as usize);
    let (g, g_d) = e.reg("group", gw, 0);
    let (gon, gon_d) = e.reg("streaming", 1, 0);
    let (vb, vb_d) = e.reg("v_base", v.aw, 0);
    let (ab, ab_d) = e.reg("a1_word", a1.aw, 0);
    let (am, am_d) = e.reg("a1_lane", lw_, 0);
    let (hr, hr_d) = e.reg("h_row_mod", lw_, 0);
    let (hb, hb_d) = e.reg("h_row_base", h1.aw, 0);
    let (gc, gc_d) = e.reg("col", ow + 1, 0);
    let (gm, gm_d) = e.reg("col_mod", lw_, 0);
    e.comb.push(
        if_(
            hv.clone(),
            vec![
                set(&gon_d, lit(1, 1)),
                set(&g_d, lit(gw, 0)),
                set(&vb_d, vbase_h.clone()),
                set(&ab_d, sb_h.clone()),
                set(&am_d, lit(lw_, 0)),
                set(&hr_d, rm_h.clone()),
                set(&hb_d, rb_h.clone()),
                set(&gc_d, lit(ow + 1, 0)),
                set(&gm_d, lit(lw_, 0)),
            ],
        )
        .else_if(
            gon.clone(),
            vec![
                set(&g_d, &g + lit(gw, 1)),
                set(&vb_d, &vb + lit(v.aw, 1)),
                // A1 columns o = g·cl + i: bank (g·cl mod R) + i, word base + (g·cl) div R.
                if_(
                    am.clone().eq_(lit(lw_, (rr - cl) as u64)),
                    vec![set(&am_d, lit(lw_, 0)), set(&ab_d, &ab + lit(a1.aw, 1))],
                )
                .else_(vec![set(&am_d, &am + lit(lw_, cl as u64))]),
                set(&gc_d, &gc + lit(ow + 1, cl as u64)),
                set(&gm_d, add_mod_const(&gm, cl, lw_, nbk)),
                if_(g.clone().eq_(lit(gw, ng - 1)), vec![set(&gon_d, lit(1, 0))]),
            ],
        ),
    );
    let col_issue = gon.clone();
    e.read_all(&a1, col_issue.clone(), ab.clone());
    e.read_all(&v, col_issue.clone(), vb.clone());
    // Data: z = A1 + V per lane, saturated, ReLU.
    let am_r = e.delay("a1_lane_r", am.clone(), lw_, rl);
    let zw = a1.width.max(v.width).max(f.accumulator.bits) + 1;
    let relu_z = e.m.wire("relu_z", f.accumulator.bits * cl as u32);
    let relu_v = e.m.wire("relu_vi", cl as u32);
    let relu_h = e.m.wire("relu_h", f.hidden.bits * cl as u32);
    let relu_vo = e.m.wire("relu_vo", cl as u32);
    let col_v = e.delay_flag("col_v", col_issue.clone(), 1, rl + 1);
    let gc_r = e.delay("col_r", gc.clone(), ow + 1, rl + 1);
    let mut zs = Vec::new();
    let mut zv = Vec::new();
    for i in 0..cl {
        // Lane i reads A1 bank (g·cl mod R) + i.
        let a = (1..rr / cl).fold(a1.rdata(i), |acc, q| {
            mux(
                am_r.clone().eq_(lit(lw_, (q * cl) as u64)),
                a1.rdata(q * cl + i),
                acc,
            )
        });
        let aw_ = e.wire_s(
            &format!("a1_lane{i}"),
            a1.width,
            if rr == cl { a1.rdata(i) } else { a },
        );
        let vv = e.wire_s(&format!("v_lane{i}"), v.width, v.rdata(i));
        let z = e.pipe_s(
            &format!("z{i}"),
            ext(&Sig::new(aw_, a1.width, true), zw) + ext(&Sig::new(vv, v.width, true), zw),
            zw,
        );
        let zc = saturate(
            &mut e.m,
            &format!("z{i}_sat"),
            &Sig::new(z, zw, true),
            f.accumulator,
        );
        zs.push(zc.e.clone());
        let ok = (gc_r.clone() + lit(ow + 1, i as u64)).lt_(lit(ow + 1, d1 as u64));
        zv.push(col_v.clone().land(ok));
    }
    if rr == cl {
        e.unused("a1_lane_r", am_r);
    }
    e.m.assign(&relu_z, cat(zs.into_iter().rev()));
    e.m.assign(&relu_v, cat(zv.into_iter().rev()));
    for i in 0..cl {
        let part = |x: &Expr, w: u32| x.part(int((i as u64) * u64::from(w)), int(u64::from(w)));
        let bit = |x: &Expr| {
            if cl == 1 {
                x.clone()
            } else {
                x.idx(int(i as u64))
            }
        };
        e.m.instance(
            Instance::new("dff_relu", format!("u_relu{i}"))
                .conn("clk_i", id("clk_i"))
                .conn("rst_i", id("rst_i"))
                .conn("z_i", part(&relu_z, f.accumulator.bits))
                .conn("v_i", bit(&relu_v))
                .conn("h_o", part(&relu_h, f.hidden.bits))
                .conn("v_o", bit(&relu_vo)),
        );
    }
    // h_1 row r, column o = g·cl + i: bank (r + o) mod banks, word (r div banks)·d1 + o.
    // Bank b takes lane i = (b − rot) mod banks, rot = (r + g·cl) mod banks.
    let wl = rl + 1 + RELU_LAT as usize;
    let rot_now = e.add_mod("h_rot", &hr, &gm, lw_, nbk);
    let rot = e.delay("h_rot", rot_now, lw_, wl);
    let wbase_now = e.wire("h_word_now", h1.aw, hb.clone() + fit(&gc, ow + 1, h1.aw));
    let wbase = e.delay("h_word", wbase_now, h1.aw, wl);
    let any = relu_vo.clone().red_or();
    let mut we = Vec::new();
    let mut addrs = Vec::new();
    let mut data = Vec::new();
    for b in 0..nbk {
        let lane = |k: usize| (b + nbk - k) % nbk;
        let pick_lane = |x: &dyn Fn(usize) -> Expr, zero: Expr| {
            pick(&rot, lw_, nbk, |k| {
                if lane(k) < cl {
                    x(lane(k))
                } else {
                    zero.clone()
                }
            })
        };
        let vbit = pick_lane(
            &|i| {
                if cl == 1 {
                    relu_vo.clone()
                } else {
                    relu_vo.idx(int(i as u64))
                }
            },
            lit(1, 0),
        );
        we.push(vbit);
        let off = pick_lane(&|i| lit(h1.aw, i as u64), lit(h1.aw, 0));
        addrs.push(e.wire(&format!("h_addr{b}"), h1.aw, wbase.clone() + off));
        let d = pick_lane(
            &|i| {
                relu_h.part(
                    int((i as u64) * u64::from(f.hidden.bits)),
                    int(u64::from(f.hidden.bits)),
                )
            },
            lit(f.hidden.bits, 0),
        );
        data.push(zext(d, f.hidden.bits, h1.width));
    }
    e.write(&h1, any, cat(we.into_iter().rev()), addrs, data);
    e.finish()
}
