//! Simple dual-port block RAM wrapper (one write port, one read port, one clock) with a
//! registered read (the DP16KD's own), an output register (the DP16KD's output register or
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
        "Simple dual-port RAM: write port (we/waddr/wdata), read port with three\n\
         registers (BRAM read and output registers, a fabric register), read latency 3.",
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
    let mem = m.memory("mem", &wp, &depth, None);
    m.memory_attr("mem", "no_rw_check");
    let rd_q = m.reg("rd_q", &wp);
    let out_q = m.reg("out_q", &wp);
    let fabric_q = m.reg("fabric_q", &wp);
    m.always_ff(&clk, vec![if_(&we, vec![nb(mem.idx(&waddr), &wdata)])]);
    m.always_ff(
        &clk,
        vec![
            nb(&rd_q, mem.idx(&raddr)),
            nb(&out_q, &rd_q),
            nb(&fabric_q, &out_q),
        ],
    );
    m.assign(rdata, fabric_q);
    m
}
