//! Simple dual-port block RAM wrapper (one write port, one read port, one clock) with a
//! registered read and an output register: the form yosys's `memory_bram` maps to ECP5 DP16KD,
//! and the extra register keeps BRAM → LUT → DSP out of one cycle. The memory carries
//! `(* no_rw_check *)`: the engine never reads an address in the cycle it writes it, and
//! without the attribute yosys 0.23 adds address comparators and bypass muxes around the
//! DP16KD to emulate read-during-write (tests/synth.rs asserts none remain).
//! `DEPTH` is the tensor's exact word count, not 2^AW: yosys maps only the words declared,
//! which saves up to half the block RAMs of a tensor whose size is not a power of two.

use crate::hdl::*;

pub fn bram(width: u32, addr_bits: u32) -> Module {
    let mut m = Module::new("dff_bram").doc(
        "Simple dual-port RAM: write port (we/waddr/wdata), read port with two\n\
         registers (BRAM output register + fabric register), read latency 2.",
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
    m.always_ff(&clk, vec![if_(&we, vec![nb(mem.idx(&waddr), &wdata)])]);
    m.always_ff(&clk, vec![nb(&rd_q, mem.idx(&raddr)), nb(&out_q, &rd_q)]);
    m.assign(rdata, out_q);
    m
}
