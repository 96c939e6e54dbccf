//! Simple dual-port block RAM wrapper (one write port, one read port, one clock) with its
//! requests registered, a registered read (the DP16KD's own), an output register (the DP16KD's output register or
//! the fabric, as yosys chooses: 0.23 keeps it in the fabric) and a fabric register after
//! them. The last one is for the clock: a DP16KD's data leaves the block 5.8 ns after the
//! edge (nextpnr-ecp5's model), and a tensor deeper than one block has a LUT multiplexer
//! behind the blocks, so without it BRAM → multiplexer → a register across the chip was the
//! engine's critical path (78 MHz, docs/board.md). The memory carries `(* no_rw_check *)`: the
//! engine never reads an address in the cycle it writes it, and
//! without the attribute yosys 0.23 adds address comparators and bypass muxes around the
//! DP16KD to emulate read-during-write (tests/synth.rs asserts none remain).
//! `DEPTH` is the tensor's exact word count, not 2^AW: yosys maps only the words declared,
//! which saves up to half the block RAMs of a tensor whose size is not a power of two.

use crate::hdl::*;

pub fn bram(width: u32, addr_bits: u32) -> Module {
    let mut m = Module::new("dff_bram").doc(
        "Simple dual-port RAM: write port (we/waddr/wdata), read port; requests\n\
         registered, then the BRAM read and output registers and a fabric register:\n\
         read latency 4, a write lands at the end of the cycle after its request register.",
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
    // The requests registered beside the block (reads and writes alike, so their order is
    // the issuer's): the op engines' request registers sit by their logic, and the one long
    // wire to the block is a register-to-register path. The power-up zero of `we_q` (the
    // FPGA's, Verilator's) and the requests' zero during reset mean no reset is needed.
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
    // Words per DP16KD at this width (16K x 1 ... 512 x 36), as address bits.
    let lb = m.localparam(
        "LB",
        mux(
            wp.clone().le_(int(1)),
            int(14),
            mux(
                wp.clone().le_(int(2)),
                int(13),
                mux(
                    wp.clone().le_(int(4)),
                    int(12),
                    mux(
                        wp.clone().le_(int(9)),
                        int(11),
                        mux(wp.clone().le_(int(18)), int(10), int(9)),
                    ),
                ),
            ),
        ),
    );
    let nblk = m.localparam(
        "NB",
        (depth.clone() + (int(1) << lb.clone()) - int(1)) >> lb.clone(),
    );
    m.genvar("g");
    m.gen_if_else(
        nblk.clone().eq_(int(1)),
        "g_one",
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
        "g_blocks",
        |s| {
            // A memory deeper than one block is split here, one memory per block, each with
            // its own output register: yosys's own split puts the blocks' multiplexer before
            // any register, and the placer spreads a tensor's blocks over the chip, so
            // block → multiplexer → register crossed the die in one cycle (docs/engine.md).
            let sw = aw.clone() - lb.clone();
            let outs = s.wire("outs", nblk.clone() * wp.clone());
            let sel1_q = s.reg("sel1_q", sw.clone());
            let sel2_q = s.reg("sel2_q", sw.clone());
            let top_w = aw.clone() - int(1);
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
                let mem = b.memory("mem", &wp, int(1) << lb.clone(), None);
                b.memory_attr("mem", "no_rw_check");
                let rd_q = b.reg("rd_q", &wp);
                let out_q = b.reg("out_q", &wp);
                let lo = lb.clone() - int(1);
                let here = waddr_q.slice(top_w.clone(), lb.clone()).eq_(k.clone());
                b.always_ff(
                    &clk,
                    vec![if_(
                        we_q.clone().land(here),
                        vec![nb(mem.idx(waddr_q.slice(lo.clone(), int(0))), &wdata_q)],
                    )],
                );
                b.always_ff(
                    &clk,
                    vec![
                        nb(&rd_q, mem.idx(raddr_q.slice(lo, int(0)))),
                        nb(&out_q, &rd_q),
                    ],
                );
                b.assign(outs.part(k * wp.clone(), wp.clone()), &out_q);
            });
        },
    );
    m.assign(rdata, fabric_q);
    m
}
