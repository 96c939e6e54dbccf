//! Simple dual-port block RAM wrapper (one write port, one read port, one clock): its
//! requests registered, then a two-cycle block (the read register and an output
//! register), then a fabric register. Read latency 4 in all.
//!
//! Why the registers sit where they do (each was a critical path, docs/engine.md):
//! - the requests are registered beside the blocks, so the one long wire from the op
//!   engines to a tensor is register to register;
//! - a DP16KD's data leaves the block 5.8 ns after the edge without its output register
//!   and 0.96 ns with it (nextpnr-ecp5's model). Yosys (0.70) never puts a register into
//!   the block, and the placer moved the fabric register behind a block across the chip
//!   (5.8 + 6.4 ns of routing was the engine's critical path at 82 MHz). So for synthesis
//!   each block is a DP16KD instantiated with `REGMODE = "OUTREG"`
//!   ([`block_ecp5`]); simulators get a behavioural model of the same two cycles
//!   ([`block_model`]), chosen by `` `ifdef SYNTHESIS `` (yosys defines it). A test
//!   simulates both, the primitive through [`dp16kd_model`], and requires equal outputs;
//! - a tensor deeper than one block is split here, one block per 2^LB words, with the
//!   blocks' multiplexer after their output registers: yosys's own split put it before
//!   any register, and the placer spreads a tensor's blocks over the chip;
//! - the data then crosses two fabric registers, not one: with one, the placer put it beside
//!   the unit that reads the tensor and the wire from a block to it (9.8 ns of routing at
//!   85 MHz) was a critical path; the second lets one register sit by the blocks and one by
//!   the reader.
//!
//! A memory small enough for LUT RAM (yosys's choice by cost: 4 per 16×4 LUT RAM against
//! 128 per block RAM) stays a behavioural memory, which yosys maps to LUT RAM as before.
//! The memories carry `(* no_rw_check *)`: the engine never reads an address in the cycle it
//! writes it, and without the attribute yosys adds address comparators and bypass muxes
//! around the RAM to emulate read-during-write (tests/synth.rs asserts none remain).

use crate::hdl::*;

/// The block module yosys synthesises: a DP16KD with its output register.
pub const BLOCK_ECP5: &str = "dff_bram_block_ecp5";
/// The block module simulators run: the same two cycles, behavioural.
pub const BLOCK_MODEL: &str = "dff_bram_block_model";

/// `dff_bram`: the wrapper the engine instantiates per bank of a tensor.
pub fn bram(width: u32, addr_bits: u32) -> Module {
    let mut m = Module::new("dff_bram").doc(
        "Simple dual-port RAM: write port (we/waddr/wdata), read port; requests\n\
         registered, then a block RAM with its read and output registers and two fabric\n\
         registers: read latency 5, a write lands at the end of the cycle after its request\n\
         register.",
    );
    let wp = m.param("W", width);
    let aw = m.param("AW", addr_bits);
    let depth = m.param("DEPTH", int(1) << aw.clone());
    let clk = m.input("clk_i", 1);
    let we = m.input("we_i", 1);
    let waddr = m.input("waddr_i", &aw);
    let wdata = m.input("wdata_i", &wp);
    let raddr = m.input("raddr_i", &aw);
    let rdata = m.output("rdata_o", &wp);
    // The power-up zero of `we_q` (the FPGA's, Verilator's) and the requests' zero during
    // reset mean no reset is needed.
    let we_q = m.reg("we_q", 1);
    let waddr_q = m.reg("waddr_q", &aw);
    let wdata_q = m.reg("wdata_q", &wp);
    let raddr_q = m.reg("raddr_q", &aw);
    m.always_ff(
        &clk,
        vec![
            nb(&we_q, &we),
            nb(&waddr_q, &waddr),
            nb(&wdata_q, &wdata),
            nb(&raddr_q, &raddr),
        ],
    );
    let fabric_q = m.reg("fabric_q", &wp);
    let lb = m.localparam("LB", words_log2(&wp));
    let nblk = m.localparam(
        "NB",
        (depth.clone() + (int(1) << lb.clone()) - int(1)) >> lb.clone(),
    );
    // LUT RAM cells (16 x 4) the memory would take, against the 32 that cost a block RAM.
    let lutram = m.localparam(
        "LUTRAM",
        (((depth.clone() + int(15)) >> int(4)) * ((wp.clone() + int(3)) >> int(2))).lt_(int(32)),
    );
    m.genvar("g");
    let block = |name: &str, aw_b: Expr, we: Expr, wa: Expr, ra: Expr, out: Expr| {
        Instance::new(BLOCK_ECP5, name)
            .sim_module(BLOCK_MODEL)
            .param("W", wp.clone())
            .param("AW", aw_b)
            .param("LB", lb.clone())
            .conn("clk_i", clk.clone())
            .conn("we_i", we)
            .conn("waddr_i", wa)
            .conn("wdata_i", wdata_q.clone())
            .conn("raddr_i", ra)
            .conn("rdata_o", out)
    };
    m.gen_if_else(
        lutram,
        "g_lutram",
        |s| {
            let mem = s.memory("mem", &wp, &depth, None);
            s.memory_attr("mem", "no_rw_check");
            let rd_q = s.reg("rd_q", &wp);
            let out_q = s.reg("out_q", &wp);
            s.always_ff(
                &clk,
                vec![if_(&we_q, vec![nb(mem.idx(&waddr_q), &wdata_q)])],
            );
            s.always_ff(
                &clk,
                vec![
                    nb(&rd_q, mem.idx(&raddr_q)),
                    nb(&out_q, &rd_q),
                    nb(&fabric_q, &out_q),
                ],
            );
        },
        "g_bram",
        |s| {
            s.gen_if_else(
                nblk.clone().eq_(int(1)),
                "g_one",
                |s| {
                    let out = s.wire("out", &wp);
                    s.instance(block(
                        "u_block",
                        aw.clone(),
                        we_q.clone(),
                        waddr_q.clone(),
                        raddr_q.clone(),
                        out.clone(),
                    ));
                    s.always_ff(&clk, vec![nb(&fabric_q, &out)]);
                },
                "g_blocks",
                |s| {
                    let sw = aw.clone() - lb.clone();
                    let outs = s.wire("outs", nblk.clone() * wp.clone());
                    let sel1_q = s.reg("sel1_q", sw.clone());
                    let sel2_q = s.reg("sel2_q", sw.clone());
                    let top_w = aw.clone() - int(1);
                    let lo = lb.clone() - int(1);
                    s.always_ff(
                        &clk,
                        vec![
                            nb(&sel1_q, raddr_q.slice(top_w.clone(), lb.clone())),
                            nb(&sel2_q, &sel1_q),
                            nb(
                                &fabric_q,
                                outs.part(sel2_q.clone() * wp.clone(), wp.clone()),
                            ),
                        ],
                    );
                    s.gen_for("g", int(0), nblk.clone(), "g_blk", |b, k| {
                        let here = waddr_q.slice(top_w.clone(), lb.clone()).eq_(k.clone());
                        b.instance(block(
                            "u_block",
                            lb.clone(),
                            we_q.clone().land(here),
                            waddr_q.slice(lo.clone(), int(0)),
                            raddr_q.slice(lo.clone(), int(0)),
                            outs.part(k * wp.clone(), wp.clone()),
                        ));
                    });
                },
            );
        },
    );
    // The second fabric register: see the module doc (why two).
    let far_q = m.reg("far_q", &wp);
    m.always_ff(&clk, vec![nb(&far_q, &fabric_q)]);
    m.assign(rdata, far_q);
    m
}

/// Words per DP16KD at width `w` (16K x 1 ... 512 x 36), as address bits.
fn words_log2(w: &Expr) -> Expr {
    let le = |n: u64| w.clone().le_(int(n));
    ladder(
        &[
            (le(1), 14),
            (le(2), 13),
            (le(4), 12),
            (le(9), 11),
            (le(18), 10),
        ],
        9,
    )
}

/// `c0 ? v0 : c1 ? v1 : ... : last`: a constant chosen by the first true condition.
fn ladder(arms: &[(Expr, u64)], last: u64) -> Expr {
    arms.iter()
        .rev()
        .fold(int(last), |rest, (c, v)| mux(c.clone(), int(*v), rest))
}

/// The block's ports and parameters, shared by [`block_model`] and [`block_ecp5`]:
/// `W`-bit words, `AW` address bits (at most `LB`, the block's own).
fn block_ports(m: &mut Module) -> [Expr; 9] {
    let wp = m.param("W", 16);
    let aw = m.param("AW", 10);
    let lb = m.param("LB", 10);
    let clk = m.input("clk_i", 1);
    let we = m.input("we_i", 1);
    let waddr = m.input("waddr_i", &aw);
    let wdata = m.input("wdata_i", &wp);
    let raddr = m.input("raddr_i", &aw);
    let rdata = m.output("rdata_o", &wp);
    [wp, aw, lb, clk, we, waddr, wdata, raddr, rdata]
}

/// `dff_bram_block_model`: one block RAM as simulators see it. A write lands at the edge
/// it is presented; a read address presented at edge t gives its word after edge t+1
/// (read register, then output register).
pub fn block_model() -> Module {
    let mut m = Module::new(BLOCK_MODEL).doc(
        "One block RAM, behavioural (simulation; synthesis uses dff_bram_block_ecp5):\n\
         read register and output register, read latency 2.",
    );
    let [wp, aw, lb, clk, we, waddr, wdata, raddr, rdata] = block_ports(&mut m);
    // LB only sizes the ECP5 block; the model holds the 2^AW words addressed.
    let unused_lb = m.wire("unused_lb", 1);
    m.assign(&unused_lb, lb.red_xor());
    let mem = m.memory("mem", &wp, int(1) << aw.clone(), None);
    m.memory_attr("mem", "no_rw_check");
    let rd_q = m.reg("rd_q", &wp);
    let out_q = m.reg("out_q", &wp);
    m.always_ff(&clk, vec![if_(&we, vec![nb(mem.idx(&waddr), &wdata)])]);
    m.always_ff(&clk, vec![nb(&rd_q, mem.idx(&raddr)), nb(&out_q, &rd_q)]);
    m.assign(rdata, out_q);
    m
}

/// `dff_bram_block_ecp5`: one DP16KD in simple dual-port use (port A writes, port B
/// reads) with its output register on. The pin conventions are those of yosys's own
/// DP16KD mapping (techlibs/lattice/brams_map_16kd.v): an address sits at the top of the
/// 14 address pins; at 18 bits the two lowest are byte enables, at 36 bits the four
/// lowest are, with write enable tied high, and the data is {DIB, DIA} / {DOB, DOA}.
pub fn block_ecp5() -> Module {
    let mut m = Module::new(BLOCK_ECP5).doc(
        "One ECP5 DP16KD block RAM, port A writing and port B reading, with the block's\n\
         output register on (REGMODE OUTREG): read latency 2, the data out 0.96 ns after\n\
         the edge instead of 5.8 ns. Synthesis only; simulators use dff_bram_block_model.",
    );
    let [wp, aw, lb, clk, we, waddr, wdata, raddr, rdata] = block_ports(&mut m);
    // The port width: the narrowest of the DP16KD's that holds W.
    let le = |n: u64| wp.clone().le_(int(n));
    let pw = m.localparam(
        "PW",
        ladder(
            &[(le(1), 1), (le(2), 2), (le(4), 4), (le(9), 9), (le(18), 18)],
            36,
        ),
    );
    let lo = m.localparam("LO", int(14) - lb.clone());
    // Byte-enable pins at the bottom of port A's address (all set: whole words).
    let be = m.localparam(
        "BE",
        mux(
            pw.clone().eq_(int(36)),
            int(4),
            mux(pw.clone().eq_(int(18)), int(2), int(0)),
        ),
    );
    let ada = m.wire("ada", 14);
    let adb = m.wire("adb", 14);
    let di = m.wire("di", 36);
    let dout = m.wire("dout", 36);
    m.genvar("i");
    m.gen_for("i", int(0), int(14), "g_addr", |s, i| {
        s.gen_if_else(
            i.clone()
                .ge_(lo.clone())
                .land(i.clone().lt_(lo.clone() + aw.clone())),
            "g_word",
            |s| {
                s.assign(ada.idx(i.clone()), waddr.idx(i.clone() - lo.clone()));
                s.assign(adb.idx(i.clone()), raddr.idx(i.clone() - lo.clone()));
            },
            "g_low",
            |s| {
                // At 36 bits the byte enables carry the write enable (WEA is tied high).
                s.assign(
                    ada.idx(i.clone()),
                    mux(
                        i.clone().lt_(be.clone()),
                        mux(pw.clone().eq_(int(36)), we.clone(), lit(1, 1)),
                        lit(1, 0),
                    ),
                );
                s.assign(adb.idx(i.clone()), lit(1, 0));
            },
        );
    });
    m.gen_for("i", int(0), int(36), "g_data", |s, i| {
        s.gen_if_else(
            i.clone().lt_(wp.clone()),
            "g_bit",
            |s| s.assign(di.idx(i.clone()), wdata.idx(i.clone())),
            "g_pad",
            |s| s.assign(di.idx(i.clone()), lit(1, 0)),
        );
    });
    // Up to 18 bits the word comes out of port B; at 36, low half on A, high on B.
    m.gen_for("i", int(0), wp.clone(), "g_out", |s, i| {
        s.assign(
            rdata.idx(i.clone()),
            mux(
                pw.clone().eq_(int(36)),
                dout.idx(i.clone()),
                dout.idx(i.clone() + int(18)),
            ),
        );
    });
    let unused_dout = m.wire("unused_dout", 1);
    m.assign(&unused_dout, dout.clone().red_xor());
    let mut inst = Instance::new("DP16KD", "u_ram")
        .param("DATA_WIDTH_A", pw.clone())
        .param("DATA_WIDTH_B", pw.clone())
        .param("REGMODE_A", string("OUTREG"))
        .param("REGMODE_B", string("OUTREG"))
        .param("RESETMODE", string("SYNC"))
        .param("ASYNC_RESET_RELEASE", string("SYNC"))
        .param("CSDECODE_A", string("0b000"))
        .param("CSDECODE_B", string("0b000"))
        .param("WRITEMODE_A", string("NORMAL"))
        .param("WRITEMODE_B", string("NORMAL"))
        .param("GSR", string("DISABLED"))
        .conn("CLKA", clk.clone())
        .conn("CEA", lit(1, 1))
        .conn("OCEA", lit(1, 1))
        .conn("WEA", mux(pw.clone().eq_(int(36)), lit(1, 1), we.clone()))
        .conn("RSTA", lit(1, 0))
        .conn("CLKB", clk.clone())
        .conn("CEB", lit(1, 1))
        .conn("OCEB", lit(1, 1))
        .conn("WEB", lit(1, 0))
        .conn("RSTB", lit(1, 0));
    for p in ["CSA0", "CSA1", "CSA2", "CSB0", "CSB1", "CSB2"] {
        inst = inst.conn(p, lit(1, 0));
    }
    for k in 0..14u64 {
        inst = inst
            .conn(format!("ADA{k}"), ada.idx(int(k)))
            .conn(format!("ADB{k}"), adb.idx(int(k)));
    }
    for k in 0..18u64 {
        inst = inst
            .conn(format!("DIA{k}"), di.idx(int(k)))
            .conn(format!("DIB{k}"), di.idx(int(k + 18)))
            .conn(format!("DOA{k}"), dout.idx(int(k)))
            .conn(format!("DOB{k}"), dout.idx(int(k + 18)));
    }
    m.instance(inst);
    m
}

/// `DP16KD`: a simulation model of the part of the ECP5 primitive [`block_ecp5`] uses,
/// and the primitive's port list for the IR checker. Not written to an output directory:
/// synthesis has the real primitive. Modelled: port A writes (with byte enables at 18 and
/// 36 bits, write enable high at 36), port B reads, both at any one of the widths, with
/// the output register or without. Not modelled: port B writes, port A's read data below
/// 36 bits (0 here), chip selects, resets, clock enables low, read-during-write.
pub fn dp16kd_model() -> Module {
    let mut m = Module::new("DP16KD").doc(
        "Simulation model of the ECP5 DP16KD block RAM, for the part dff_bram_block_ecp5\n\
         uses: port A writes, port B reads (at 36 bits: low half on DOA, high on DOB),\n\
         REGMODE NOREG or OUTREG. Test fixture; synthesis has the primitive.",
    );
    let pw_a = m.param("DATA_WIDTH_A", 18);
    let pw_b = m.param("DATA_WIDTH_B", 18);
    let regmode_a = m.param("REGMODE_A", string("NOREG"));
    let regmode_b = m.param("REGMODE_B", string("NOREG"));
    // Settings that change nothing the model covers.
    let others: Vec<Expr> = [
        ("RESETMODE", "SYNC"),
        ("ASYNC_RESET_RELEASE", "SYNC"),
        ("CSDECODE_A", "0b000"),
        ("CSDECODE_B", "0b000"),
        ("WRITEMODE_A", "NORMAL"),
        ("WRITEMODE_B", "NORMAL"),
        ("GSR", "ENABLED"),
    ]
    .into_iter()
    .map(|(n, v)| {
        let p = m.param(n, string(v));
        p.eq_(string(v))
    })
    .collect();
    // A bus of scalar pins (DIA17 ... DIA0) as one wire (`dia`).
    let pin = |m: &mut Module, base: &str, n: u64| -> Expr {
        let mut bits: Vec<Expr> = (0..n).map(|k| m.input(&format!("{base}{k}"), 1)).collect();
        bits.reverse();
        let w = m.wire(&base.to_lowercase(), n);
        m.assign(&w, cat(bits));
        w
    };
    let dia = pin(&mut m, "DIA", 18);
    let ada = pin(&mut m, "ADA", 14);
    let [clka, cea, ocea, wea, rsta] =
        ["CLKA", "CEA", "OCEA", "WEA", "RSTA"].map(|p| m.input(p, 1));
    let csa = pin(&mut m, "CSA", 3);
    let dib = pin(&mut m, "DIB", 18);
    let adb = pin(&mut m, "ADB", 14);
    let [clkb, ceb, oceb, web, rstb] =
        ["CLKB", "CEB", "OCEB", "WEB", "RSTB"].map(|p| m.input(p, 1));
    let csb = pin(&mut m, "CSB", 3);
    let doa: Vec<Expr> = (0..18).map(|k| m.output(&format!("DOA{k}"), 1)).collect();
    let dob: Vec<Expr> = (0..18).map(|k| m.output(&format!("DOB{k}"), 1)).collect();
    // Address bits below the word address at each width (16K x 1 ... 512 x 36).
    let is = |n: u64| pw_a.clone().eq_(int(n));
    let lo = m.localparam(
        "LO",
        ladder(
            &[(is(36), 5), (is(18), 4), (is(9), 3), (is(4), 2), (is(2), 1)],
            0,
        ),
    );
    let wide = pw_a.clone().eq_(int(36));
    let mem = m.memory("mem", 36u32, int(16384), None);
    let wa = m.wire("wa", 14);
    let ra = m.wire("ra", 14);
    m.assign(&wa, ada.clone() >> lo.clone());
    m.assign(&ra, adb.clone() >> lo.clone());
    // Which of the 36 bits a write changes: whole bytes by enable at 18 and 36 bits, the
    // low DATA_WIDTH_A bits below.
    let ben = m.localparam(
        "BEN",
        mux(
            wide.clone(),
            int(4),
            mux(pw_a.clone().eq_(int(18)), int(2), int(0)),
        ),
    );
    let mask = m.wire("mask", 36u32);
    m.genvar("i");
    m.gen_for("i", int(0), int(36), "g_mask", |s, i| {
        let byte = i.clone() / int(9);
        s.assign(
            mask.idx(i.clone()),
            mux(
                ben.clone().gt_(byte.clone()),
                ada.idx(byte),
                i.clone().lt_(pw_a.clone()),
            ),
        );
    });
    let data = m.wire("data", 36);
    m.assign(
        &data,
        mux(
            wide.clone(),
            cat([dib.clone(), dia.clone()]),
            cat([lit(18, 0), dia.clone()]),
        ),
    );
    m.always_ff(
        &clka,
        vec![if_(
            cea.clone().land(wea.clone()),
            vec![nb(
                mem.idx(&wa),
                (mem.idx(&wa) & !mask.clone()) | (data.clone() & mask.clone()),
            )],
        )],
    );
    let rd_q = m.reg("rd_q", 36);
    let out_q = m.reg("out_q", 36);
    m.always_ff(
        &clkb,
        vec![
            if_(&ceb, vec![nb(&rd_q, mem.idx(&ra))]),
            if_(&oceb, vec![nb(&out_q, &rd_q)]),
        ],
    );
    let q = m.wire("q", 36);
    m.assign(&q, mux(regmode_b.eq_(string("OUTREG")), &out_q, &rd_q));
    for k in 0..18u64 {
        m.assign(
            &doa[k as usize],
            mux(wide.clone(), q.idx(int(k)), lit(1, 0)),
        );
        m.assign(
            &dob[k as usize],
            mux(wide.clone(), q.idx(int(k + 18)), q.idx(int(k))),
        );
    }
    // The pins the model does not use.
    let unused = m.wire("unused_pins", 1);
    m.assign(
        &unused,
        cat([ocea, rsta, csa, dib, web, rstb, csb]
            .into_iter()
            .chain(others)
            .chain([pw_b.eq_(pw_a.clone()), regmode_a.eq_(string("OUTREG"))]))
        .red_xor(),
    );
    m
}
