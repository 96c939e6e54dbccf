//! UART receiver and transmitter (8 data bits, no parity, 1 stop bit, LSB first), the serial
//! side of the board top ([`super::board`]).
//!
//! Both are parameterised by `CLKS_PER_BIT` (clock cycles per bit: 217 for 115200 baud at
//! 25 MHz; the co-simulation overrides it with a small value), which must be at least 4; the
//! bit-timing counter is `$clog2(CLKS_PER_BIT)` bits wide.

use crate::hdl::*;

/// Largest `CLKS_PER_BIT` the board tops accept (a sanity bound: 382 baud at 25 MHz).
pub const MAX_CLKS_PER_BIT: u32 = 65_535;

/// Smallest `CLKS_PER_BIT` the receiver's mid-bit sampling supports.
pub const MIN_CLKS_PER_BIT: u32 = 4;

/// `dff_uart_rx`: 8N1 receiver.
///
/// `rx_i` (asynchronous, idle high) passes a 2-flop synchroniser; a falling edge starts a
/// frame, the start bit is checked at its middle (a glitch shorter than half a bit returns to
/// idle), then each data bit and the stop bit are sampled one bit time apart, at mid-bit.
/// A good stop bit gives a one-cycle `valid_o` with the byte on `data_o` (valid in that cycle
/// only); a low stop bit gives a one-cycle `frame_err_o` and no byte. The receiver is back in
/// idle at the middle of the stop bit, so a sender's slightly fast clock is tolerated; a frame
/// starts only on a falling edge, so a line held low (break, unplugged cable pulled low) gives
/// one framing error, not a stream of them. `busy_o` is high while a frame is being received.
pub fn uart_rx(clks_per_bit: u32) -> Module {
    let mut m = Module::new("dff_uart_rx").doc(
        "UART receiver, 8N1, LSB first. rx_i is asynchronous (2-flop synchroniser);\n\
         bits are sampled at mid-bit, CLKS_PER_BIT clocks apart. valid_o pulses for one\n\
         cycle with the byte on data_o; frame_err_o pulses instead if the stop bit is low.\n\
         CLKS_PER_BIT >= 4. Synchronous active-high reset.",
    );
    let cpb = m.param("CLKS_PER_BIT", clks_per_bit);
    let cnt_w = m.localparam("CNT_W", clog2(&cpb));
    let half = m.localparam("HALF_BIT", (&cpb - 2) / 2);
    let last = m.localparam("LAST_BIT", &cpb - 1);
    let clk = m.input("clk_i", 1);
    let rst = m.input("rst_i", 1);
    let rx_i = m.input("rx_i", 1);
    let data_o = m.output("data_o", 8);
    let valid_o = m.output("valid_o", 1);
    let frame_err_o = m.output("frame_err_o", 1);
    let busy_o = m.output("busy_o", 1);

    let s_idle = m.localparam("S_IDLE", lit(2, 0));
    let s_start = m.localparam("S_START", lit(2, 1));
    let s_data = m.localparam("S_DATA", lit(2, 2));
    let s_stop = m.localparam("S_STOP", lit(2, 3));
    let meta_q = m.reg("rx_meta_q", 1);
    let sync_q = m.reg("rx_sync_q", 1);
    let prev_q = m.reg("rx_prev_q", 1);
    let state_q = m.reg("state_q", 2);
    let cnt_q = m.reg("cnt_q", &cnt_w);
    let bit_q = m.reg("bit_q", 3);
    let shift_q = m.reg("shift_q", 8);
    let valid_q = m.reg("valid_q", 1);
    let frame_err_q = m.reg("frame_err_q", 1);
    let fall = m.wire("fall", 1);
    let mid_start = m.wire("mid_start", 1);
    let bit_end = m.wire("bit_end", 1);

    m.comment("A falling edge of the synchronised line starts a frame.");
    m.assign(&fall, prev_q.clone().land(sync_q.clone().lnot()));
    m.comment(
        "HALF_BIT + 1 cycles after the edge is the middle of the start bit;\n\
         every CLKS_PER_BIT cycles after that is the middle of the next bit.",
    );
    m.assign(&mid_start, cnt_q.clone().eq_(half.slice(&cnt_w - 1, 0)));
    m.assign(&bit_end, cnt_q.clone().eq_(last.slice(&cnt_w - 1, 0)));

    let zero_cnt = nb(&cnt_q, zeros(&cnt_w));
    let count = nb(&cnt_q, &cnt_q + lit(1, 1));
    m.always_ff(
        &clk,
        vec![if_(
            &rst,
            vec![
                nb(&meta_q, lit(1, 1)),
                nb(&sync_q, lit(1, 1)),
                nb(&prev_q, lit(1, 1)),
                nb(&state_q, &s_idle),
                zero_cnt.clone(),
                nb(&bit_q, lit(3, 0)),
                nb(&shift_q, lit(8, 0)),
                nb(&valid_q, lit(1, 0)),
                nb(&frame_err_q, lit(1, 0)),
            ],
        )
        .else_(vec![
            nb(&meta_q, &rx_i),
            nb(&sync_q, &meta_q),
            nb(&prev_q, &sync_q),
            nb(&valid_q, lit(1, 0)),
            nb(&frame_err_q, lit(1, 0)),
            case(
                &state_q,
                vec![
                    arm(
                        &s_idle,
                        vec![if_(&fall, vec![nb(&state_q, &s_start), zero_cnt.clone()])],
                    ),
                    arm(
                        &s_start,
                        vec![if_(
                            &mid_start,
                            vec![
                                zero_cnt.clone(),
                                nb(&bit_q, lit(3, 0)),
                                nb(&state_q, mux(sync_q.clone().lnot(), &s_data, &s_idle)),
                            ],
                        )
                        .else_(vec![count.clone()])],
                    ),
                    arm(
                        &s_data,
                        vec![if_(
                            &bit_end,
                            vec![
                                zero_cnt.clone(),
                                nb(&shift_q, cat([sync_q.clone(), shift_q.slice(7, 1)])),
                                nb(&bit_q, &bit_q + lit(1, 1)),
                                if_(bit_q.clone().eq_(lit(3, 7)), vec![nb(&state_q, &s_stop)]),
                            ],
                        )
                        .else_(vec![count.clone()])],
                    ),
                    arm(
                        &s_stop,
                        vec![if_(
                            &bit_end,
                            vec![
                                zero_cnt.clone(),
                                nb(&state_q, &s_idle),
                                nb(&valid_q, &sync_q),
                                nb(&frame_err_q, sync_q.clone().lnot()),
                            ],
                        )
                        .else_(vec![count.clone()])],
                    ),
                ],
                vec![nb(&state_q, &s_idle)],
            ),
        ])],
    );
    m.assign(data_o, &shift_q);
    m.assign(valid_o, &valid_q);
    m.assign(frame_err_o, &frame_err_q);
    m.assign(busy_o, state_q.ne_(&s_idle));
    m
}

/// `dff_uart_tx`: 8N1 transmitter with a valid/ready input.
///
/// A byte is taken when `valid_i && ready_o`; `tx_o` (registered, idle high) then sends the
/// start bit, 8 data bits LSB first and the stop bit, each `CLKS_PER_BIT` cycles. `ready_o` is
/// already high in the last cycle of a stop bit, so back-to-back bytes take exactly
/// `10 * CLKS_PER_BIT` cycles each. `busy_o` is high while a frame is on the line.
pub fn uart_tx(clks_per_bit: u32) -> Module {
    let mut m = Module::new("dff_uart_tx").doc(
        "UART transmitter, 8N1, LSB first. A byte is taken when valid_i && ready_o and\n\
         sent on tx_o (idle high), CLKS_PER_BIT clocks per bit; back-to-back bytes take\n\
         exactly 10 * CLKS_PER_BIT cycles. Synchronous active-high reset.",
    );
    let cpb = m.param("CLKS_PER_BIT", clks_per_bit);
    let cnt_w = m.localparam("CNT_W", clog2(&cpb));
    let clk = m.input("clk_i", 1);
    let rst = m.input("rst_i", 1);
    let data_i = m.input("data_i", 8);
    let valid_i = m.input("valid_i", 1);
    let ready_o = m.output("ready_o", 1);
    let tx_o = m.output("tx_o", 1);
    let busy_o = m.output("busy_o", 1);

    let last = m.localparam("LAST_BIT", &cpb - 1);
    let tx_q = m.reg("tx_q", 1);
    let busy_q = m.reg("busy_q", 1);
    let cnt_q = m.reg("cnt_q", &cnt_w);
    let left_q = m.reg("bits_left_q", 4);
    let shift_q = m.reg("shift_q", 9);
    let bit_end = m.wire("bit_end", 1);
    let frame_end = m.wire("frame_end", 1);
    let take = m.wire("take", 1);

    m.assign(&bit_end, cnt_q.clone().eq_(last.slice(&cnt_w - 1, 0)));
    m.comment("The last cycle of the stop bit: the next byte may start right after it.");
    m.assign(
        &frame_end,
        busy_q
            .clone()
            .land(bit_end.clone())
            .land(left_q.clone().eq_(lit(4, 0))),
    );
    m.assign(&ready_o, busy_q.clone().lnot().lor(&frame_end));
    m.assign(&take, valid_i.clone().land(&ready_o));
    m.always_ff(
        &clk,
        vec![if_(
            &rst,
            vec![
                nb(&tx_q, lit(1, 1)),
                nb(&busy_q, lit(1, 0)),
                nb(&cnt_q, zeros(&cnt_w)),
                nb(&left_q, lit(4, 0)),
                nb(&shift_q, hex(9, 0x1ff)),
            ],
        )
        .else_if(
            &take,
            vec![
                Stmt::Comment("Start bit now; then 8 data bits and the stop bit.".into()),
                nb(&tx_q, lit(1, 0)),
                nb(&busy_q, lit(1, 1)),
                nb(&cnt_q, zeros(&cnt_w)),
                nb(&left_q, lit(4, 9)),
                nb(&shift_q, cat([lit(1, 1), data_i.clone()])),
            ],
        )
        .else_if(
            &busy_q,
            vec![if_(
                &bit_end,
                vec![
                    nb(&cnt_q, zeros(&cnt_w)),
                    if_(left_q.clone().eq_(lit(4, 0)), vec![nb(&busy_q, lit(1, 0))]).else_(vec![
                        nb(&tx_q, shift_q.idx(0)),
                        nb(&shift_q, cat([lit(1, 1), shift_q.slice(8, 1)])),
                        nb(&left_q, &left_q - lit(1, 1)),
                    ]),
                ],
            )
            .else_(vec![nb(&cnt_q, &cnt_q + lit(1, 1))])],
        )],
    );
    m.assign(tx_o, &tx_q);
    m.assign(busy_o, &busy_q);
    m
}

/// Both UART modules (receiver first).
pub fn modules(clks_per_bit: u32) -> Vec<Module> {
    vec![uart_rx(clks_per_bit), uart_tx(clks_per_bit)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uart_modules_pass_the_checker() {
        let ms = modules(217);
        let lib: Vec<&Module> = ms.iter().collect();
        for m in &ms {
            check(m, &lib).unwrap_or_else(|e| panic!("{}: {e:?}", m.name));
        }
        let rx = emit(&ms[0]);
        assert!(rx.contains("parameter CLKS_PER_BIT = 217"), "{rx}");
    }
}
