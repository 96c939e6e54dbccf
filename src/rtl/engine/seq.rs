//! The sequencer (`dff_seq`): runs the microprogram ([`crate::arch::program::Program`])
//! one op at a time — fetch from the program ROM, a start pulse to the op's engine with
//! the op kind and layer, wait for that engine's done — and answers the run handshake.
//! After reset it first clears ΔU (the only accumulator that is not overwritten by its
//! first use).

use super::build::*;
use crate::arch::abi::{status, RUN_INFER, RUN_TRAIN};
use crate::arch::memmap::TensorId;
use crate::arch::program::{Engine, Op};
use crate::arch::Arch;
use crate::hdl::*;

pub fn seq(arch: &Arch) -> Module {
    let prog = &arch.program;
    let (lw, sw, rw) = seq_widths(arch);
    let mut e = Eng::new(
        "dff_seq",
        format!(
            "Sequencer: the training program ({} ops) and the inference program ({} ops) in a\n\
             ROM, one op engine at a time (start/done), the run handshake; clears dU after\n\
             reset.",
            prog.run(false).len(),
            prog.run(true).len()
        ),
    );
    let run_i = e.m.input("run_i", 1);
    let run_op_i = e.m.input("run_op_i", 8);
    let done_o = e.m.output("run_done_o", 1);
    let status_o = e.m.output("run_status_o", 8);
    let result_o = e.m.output("run_result_o", 8);
    let busy_o = e.m.output("busy_o", 1);
    let idle_o = e.m.output("idle_o", 1);
    let end_o = e.m.output("run_end_o", 1);
    let batch_i = e.m.input("batch_i", sw);
    let pred_i = e.m.input("pred_result_i", 8);
    let kind_o = e.m.output("kind_o", 4);
    let layer_o = e.m.output("layer_o", lw);
    let infer_o = e.m.output("infer_o", 1);
    let nsamp_o = e.m.output("nsamp_o", sw);
    let nrows_o = e.m.output("nrows_o", rw);
    let mut starts = Vec::new();
    let mut dones = Vec::new();
    for eng in Engine::ALL {
        starts.push(e.m.output(&format!("{}_start_o", eng.name()), 1));
        dones.push(e.m.input(&format!("{}_done_i", eng.name()), 1));
    }
    let du = e.mem_port(arch.mem.t(TensorId::Du), true, false);

    let states = ["StInit", "StIdle", "StFetch", "StIssue", "StWait"];
    for (i, n) in states.iter().enumerate() {
        e.m.localparam(n, lit(3, i as u64));
    }
    let (st, st_d) = e.reg_init("st", 3, id("StInit"));
    let in_st = |n: &str| st.clone().eq_(id(n));
    let pcw = cw(prog.ops.len());
    let (pc, pc_d) = e.reg("pc", pcw, 0);
    let ow = 4 + lw;
    let (op, op_d) = e.reg("op", ow, 0);
    let (kind, kind_d) = e.reg("kind", 4, 0);
    let (layer, layer_d) = e.reg("layer", lw, 0);
    let (infer, infer_d) = e.reg("infer", 1, 0);
    let (nsamp, nsamp_d) = e.reg("nsamp", sw, 0);
    let (nrows, nrows_d) = e.reg("nrows", rw, 0);
    let (done, done_d) = e.reg("done", 1, 0);
    let (stat, stat_d) = e.reg("status", 8, 0);
    let (res, res_d) = e.reg("result", 8, 0);
    let (end, end_d) = e.reg("end", 1, 0);
    let (start, start_d) = e.reg("start", Engine::ALL.len() as u32, 0);
    let (ic, ic_d) = e.reg("init", du.aw + 1, 0);

    // The program ROM.
    let rom = e.m.reg("rom_word", ow);
    let arms: Vec<CaseArm> = prog
        .ops
        .iter()
        .enumerate()
        .map(|(i, o)| {
            arm(
                lit(pcw, i as u64),
                vec![set(&rom, lit(ow, (o.code() << lw) | o.layer() as u64))],
            )
        })
        .collect();
    e.m.always_comb(vec![case(&pc, arms, vec![set(&rom, lit(ow, 0))])]);
    let eng_of = |k: &Expr| -> Vec<Expr> {
        Engine::ALL
            .iter()
            .map(|eng| {
                let codes: Vec<u64> = prog
                    .ops
                    .iter()
                    .filter(|o| o.engine() == Some(*eng))
                    .map(|o| o.code())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                codes
                    .into_iter()
                    .fold(lit(1, 0), |a, c| a.lor(k.clone().eq_(lit(4, c))))
            })
            .collect()
    };
    let op_kind = op.slice(ow - 1, lw);
    let want = e.wire(
        "start_next",
        Engine::ALL.len() as u32,
        cat(eng_of(&op_kind).into_iter().rev()),
    );
    // Which engine the running op waits for: the start bits of its kind, kept in `kind`.
    let waiting: Vec<Expr> = eng_of(&kind);
    let engine_done = Engine::ALL.iter().enumerate().fold(lit(1, 0), |a, (i, _)| {
        a.lor(waiting[i].clone().land(dones[i].clone()))
    });
    let ngroups = arch.mem.t(TensorId::Du).depth;
    let hyps = arch.hyps as u64;
    let ncls = arch.classes as u64;
    e.comb.push(set(&done_d, lit(1, 0)));
    e.comb.push(set(&end_d, lit(1, 0)));
    e.comb.push(set(&start_d, lit(Engine::ALL.len() as u32, 0)));
    e.comb.push(case(
        st.clone(),
        vec![
            arm(
                id("StInit"),
                vec![
                    set(&ic_d, &ic + lit(du.aw + 1, 1)),
                    if_(
                        ic.clone().eq_(lit(du.aw + 1, (ngroups - 1) as u64)),
                        vec![set(&st_d, id("StIdle"))],
                    ),
                ],
            ),
            arm(
                id("StIdle"),
                vec![if_(
                    run_i.clone(),
                    vec![if_(
                        run_op_i.clone().eq_(lit(8, u64::from(RUN_TRAIN))),
                        vec![
                            set(&infer_d, lit(1, 0)),
                            set(&pc_d, lit(pcw, 0)),
                            set(&nsamp_d, batch_i.clone()),
                            set(&nrows_d, zext(batch_i.clone(), sw, rw) * lit(rw, hyps)),
                            set(&stat_d, lit(8, u64::from(status::OK))),
                            set(&res_d, lit(8, 0)),
                            set(&st_d, id("StFetch")),
                        ],
                    )
                    .else_if(
                        run_op_i.clone().eq_(lit(8, u64::from(RUN_INFER))),
                        vec![
                            set(&infer_d, lit(1, 1)),
                            set(&pc_d, lit(pcw, prog.infer_entry as u64)),
                            set(&nsamp_d, lit(sw, 1)),
                            set(&nrows_d, lit(rw, ncls)),
                            set(&stat_d, lit(8, u64::from(status::OK))),
                            set(&res_d, lit(8, 0)),
                            set(&st_d, id("StFetch")),
                        ],
                    )
                    .else_(vec![
                        set(&stat_d, lit(8, u64::from(status::BAD_OP))),
                        set(&done_d, lit(1, 1)),
                    ])],
                )],
            ),
            arm(
                id("StFetch"),
                vec![set(&op_d, rom.clone()), set(&st_d, id("StIssue"))],
            ),
            arm(
                id("StIssue"),
                vec![if_(
                    op_kind.clone().eq_(lit(4, Op::End.code())),
                    vec![
                        set(&st_d, id("StIdle")),
                        set(&done_d, lit(1, 1)),
                        set(&end_d, lit(1, 1)),
                        set(&res_d, pred_i.clone()),
                    ],
                )
                .else_(vec![
                    set(&start_d, want.clone()),
                    set(&kind_d, op_kind.clone()),
                    set(&layer_d, op.slice(lw - 1, 0)),
                    set(&st_d, id("StWait")),
                ])],
            ),
            arm(
                id("StWait"),
                vec![if_(
                    engine_done,
                    vec![set(&pc_d, &pc + lit(pcw, 1)), set(&st_d, id("StFetch"))],
                )],
            ),
        ],
        vec![set(&st_d, id("StIdle"))],
    ));
    // ΔU cleared after reset, every bank at once.
    let addrs = (0..du.banks).map(|_| fit(&ic, du.aw + 1, du.aw)).collect();
    let data = (0..du.banks).map(|_| lit(du.width, 0)).collect();
    e.write(
        &du,
        in_st("StInit"),
        lit(du.banks as u32, (1u64 << du.banks) - 1),
        addrs,
        data,
    );
    e.unused("init_hi", ic.slice(du.aw, du.aw));
    e.m.assign(done_o, done);
    e.m.assign(status_o, stat);
    e.m.assign(result_o, res);
    e.m.assign(busy_o, in_st("StIdle").lor(in_st("StInit")).lnot());
    e.m.assign(idle_o, in_st("StIdle"));
    e.m.assign(end_o, end);
    e.m.assign(kind_o, kind);
    e.m.assign(layer_o, layer);
    e.m.assign(infer_o, infer);
    e.m.assign(nsamp_o, nsamp);
    e.m.assign(nrows_o, nrows);
    for (i, s) in starts.iter().enumerate() {
        e.m.assign(s.clone(), start_bit(&start, i));
    }
    e.finish()
}

fn start_bit(x: &Expr, i: usize) -> Expr {
    if Engine::ALL.len() == 1 {
        x.clone()
    } else {
        x.idx(int(i as u64))
    }
}
