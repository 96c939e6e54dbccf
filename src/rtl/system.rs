//! `dff_system`: the host-protocol decoder ([`super::cmd`]) in front of the engine
//! ([`super::engine`]), with the byte-stream ports the frame harness and the board's UART
//! drive. `RESET` (the decoder's `soft_rst_o`) resets the engine — its LFSR, counters and
//! hyper-parameters — one cycle later through a register, not the decoder, which is
//! answering the command at the time.

use crate::hdl::*;

pub fn system() -> Module {
    let mut m = Module::new("dff_system")
        .doc("Host protocol decoder + DF engine behind one byte stream (docs/protocol.md).");
    let clk = m.input("clk_i", 1);
    let rst = m.input("rst_i", 1);
    let rx_data = m.input("rx_data_i", 8);
    let rx_valid = m.input("rx_valid_i", 1);
    let tx_data = m.output("tx_data_o", 8);
    let tx_valid = m.output("tx_valid_o", 1);
    let tx_ready = m.input("tx_ready_i", 1);
    let busy_o = m.output("busy_o", 1);
    let w = |m: &mut Module, n: &str, width: u32| m.wire(n, width);
    let req = w(&mut m, "bus_req", 1);
    let we = w(&mut m, "bus_we", 1);
    let region = w(&mut m, "bus_region", 8);
    let addr = w(&mut m, "bus_addr", 32);
    let wdata = w(&mut m, "bus_wdata", 64);
    let ack = w(&mut m, "bus_ack", 1);
    let err = w(&mut m, "bus_err", 1);
    let rdata = w(&mut m, "bus_rdata", 64);
    let run = w(&mut m, "run", 1);
    let run_op = w(&mut m, "run_op", 8);
    let done = w(&mut m, "run_done", 1);
    let status = w(&mut m, "run_status", 8);
    let result = w(&mut m, "run_result", 8);
    let soft_rst = w(&mut m, "soft_rst", 1);
    // Registered: the engine's reset reaches thousands of flip-flops; a gate in front of
    // that net would be on the critical path. RESET takes effect one cycle later.
    let eng_rst = m.reg("engine_rst_q", 1);
    m.always_ff(&clk, vec![nb(&eng_rst, rst.clone().lor(&soft_rst))]);
    m.instance(
        Instance::new("dff_cmd", "u_cmd")
            .conn("clk_i", &clk)
            .conn("rst_i", &rst)
            .conn("rx_data_i", &rx_data)
            .conn("rx_valid_i", &rx_valid)
            .conn("tx_data_o", &tx_data)
            .conn("tx_valid_o", &tx_valid)
            .conn("tx_ready_i", &tx_ready)
            .conn("bus_req_o", &req)
            .conn("bus_we_o", &we)
            .conn("bus_region_o", &region)
            .conn("bus_addr_o", &addr)
            .conn("bus_wdata_o", &wdata)
            .conn("bus_ack_i", &ack)
            .conn("bus_err_i", &err)
            .conn("bus_rdata_i", &rdata)
            .conn("run_o", &run)
            .conn("run_op_o", &run_op)
            .conn("run_done_i", &done)
            .conn("run_status_i", &status)
            .conn("run_result_i", &result)
            .conn("soft_rst_o", &soft_rst),
    );
    m.instance(
        Instance::new("dff_engine", "u_engine")
            .conn("clk_i", &clk)
            .conn("rst_i", &eng_rst)
            .conn("bus_req_i", &req)
            .conn("bus_we_i", &we)
            .conn("bus_region_i", &region)
            .conn("bus_addr_i", &addr)
            .conn("bus_wdata_i", &wdata)
            .conn("bus_ack_o", &ack)
            .conn("bus_err_o", &err)
            .conn("bus_rdata_o", &rdata)
            .conn("run_i", &run)
            .conn("run_op_i", &run_op)
            .conn("run_done_o", &done)
            .conn("run_status_o", &status)
            .conn("run_result_o", &result)
            .conn("busy_o", &busy_o),
    );
    m
}
