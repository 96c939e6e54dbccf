//! Board tops: the pins of a real board around a "byte core" (a module with the ports
//! `clk_i, rst_i, rx_data_i[7:0], rx_valid_i, tx_data_o[7:0], tx_valid_o, tx_ready_i`, such as
//! `dff_cmd_testmem` or the engine behind `dff_cmd`), connected to the host through a UART.
//!
//! [`ulx3s_top`] builds `dff_ulx3s_top` for the ULX3S (LFE5U-85F, 25 MHz oscillator on G2,
//! FT231X USB serial); `constraints/ulx3s.lpf` has its pins. A core that is faster than the
//! oscillator (the engine) runs from the ECP5's PLL ([`Pll`], `dff_clkgen`): the whole top
//! — reset, UART, core — is then one clock domain at the PLL's output, held in reset until
//! the PLL has locked, so no signal crosses between clocks. Small cores (the bring-up echo,
//! the protocol test memory) run on the oscillator directly.
//!
//! Pins (named as in the ULX3S reference constraints, from the FT231X's point of view):
//! * `ftdi_txd` — input: the FTDI transmits, the FPGA receives (host → board);
//! * `ftdi_rxd` — output: the FPGA transmits, the FTDI receives (board → host);
//! * `btn[6:0]` — `btn[1]` (F1, active high, pulled down) is the reset button. `btn[0]` is
//!   `BTN_PWRn`: active low and also the board's power-on button, so it is not used as reset;
//!   the others are free.
//! * `led[7:0]` — active high: `led[0]` heartbeat, `led[1]` a byte was received, `led[2]` a byte
//!   was sent (both stretched to be visible), `led[3]` a framing error was seen since reset
//!   (sticky: wrong baud rate or a line glitch), `led[4]` reset is active, `led[5]` the core's
//!   optional `busy_o` (e.g. the engine is running); `led[7:6]` off.
//!
//! A core may have extra outputs besides the byte-core ports (constant widths): a 1-bit
//! `busy_o` drives `led[5]`, others are left unconnected (wires named `unused_core_*`).

use super::uart;
use crate::hdl::*;

/// The byte-core ports the board top connects: (name, direction, width).
pub const BYTE_CORE_PORTS: [(&str, Dir, u32); 7] = [
    ("clk_i", Dir::In, 1),
    ("rst_i", Dir::In, 1),
    ("rx_data_i", Dir::In, 8),
    ("rx_valid_i", Dir::In, 1),
    ("tx_data_o", Dir::Out, 8),
    ("tx_valid_o", Dir::Out, 1),
    ("tx_ready_i", Dir::In, 1),
];

/// The board top's name.
pub const ULX3S_TOP: &str = "dff_ulx3s_top";

/// ULX3S oscillator frequency (Hz).
pub const ULX3S_CLK_HZ: u32 = 25_000_000;

/// The ECP5 PLL (EHXPLLL) dividers for one output clock from the board's oscillator:
/// f_out = f_in · CLKFB_DIV / CLKI_DIV (feedback from CLKOP), with the phase detector at
/// f_in / CLKI_DIV ≥ 3.125 MHz and the VCO at f_out · CLKOP_DIV within 400–800 MHz
/// (Lattice FPGA-TN-02200, the limits nextpnr's `ecppll` searches).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pll {
    pub clki_div: u32,
    pub clkfb_div: u32,
    pub clkop_div: u32,
    /// The output frequency these dividers give (Hz, rounded).
    pub out_hz: u32,
}

impl Pll {
    /// The dividers whose output is closest to `mhz` from the 25 MHz oscillator; among
    /// equals the VCO nearest the middle of its range (600 MHz), then the smallest input
    /// divider.
    pub fn for_mhz(mhz: f64) -> Result<Pll, BoardError> {
        let fin = f64::from(ULX3S_CLK_HZ) / 1e6;
        let mut best: Option<((f64, f64), Pll)> = None;
        for clki_div in 1..=128u32 {
            let pfd = fin / f64::from(clki_div);
            if pfd < 3.125 {
                break;
            }
            for clkfb_div in 1..=80u32 {
                let fout = pfd * f64::from(clkfb_div);
                for clkop_div in 1..=128u32 {
                    let vco = fout * f64::from(clkop_div);
                    if !(400.0..=800.0).contains(&vco) {
                        continue;
                    }
                    let key = ((fout - mhz).abs(), (vco - 600.0).abs());
                    let better = best.as_ref().is_none_or(|(k, _)| {
                        key.0 < k.0 - 1e-9 || ((key.0 - k.0).abs() <= 1e-9 && key.1 < k.1 - 1e-9)
                    });
                    if better {
                        best = Some((
                            key,
                            Pll {
                                clki_div,
                                clkfb_div,
                                clkop_div,
                                out_hz: (fout * 1e6).round() as u32,
                            },
                        ));
                    }
                }
            }
        }
        match best {
            Some(((err, _), p)) if err <= mhz * 0.01 => Ok(p),
            _ => Err(BoardError::Pll { mhz }),
        }
    }
}

/// Options of a board top.
#[derive(Clone, Debug)]
pub struct BoardOpts {
    /// Clock frequency of the core and the UART (Hz): the oscillator's, or the PLL's output.
    pub clk_hz: u32,
    /// Run the top from the PLL instead of the oscillator directly.
    pub pll: Option<Pll>,
    /// UART baud rate.
    pub baud: u32,
    /// Parameter overrides for the core instance.
    pub core_params: Vec<(String, Expr)>,
}

impl Default for BoardOpts {
    fn default() -> Self {
        BoardOpts {
            clk_hz: ULX3S_CLK_HZ,
            pll: None,
            baud: 115_200,
            core_params: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BoardError {
    #[error(
        "the ECP5 PLL cannot make {mhz} MHz from the 25 MHz oscillator within 1% (its VCO runs \
         at 400-800 MHz); choose a clock between 3.2 and 400 MHz such as 100 or 125"
    )]
    Pll { mhz: f64 },
    #[error(
        "core module `{core}` does not have the byte-core ports the board top connects \
         (clk_i, rst_i, rx_data_i[7:0], rx_valid_i, tx_data_o[7:0], tx_valid_o, tx_ready_i): {problems}; \
         wrap it in a module with exactly these ports (dff_cmd in front of the engine has them)"
    )]
    CorePorts { core: String, problems: String },
    #[error("generated module {module} failed the IR checker: {errors}")]
    Check { module: String, errors: String },
    #[error(
        "{baud} baud at {clk_hz} Hz is {cpb:.2} clocks per bit, which the UART cannot time \
         (it needs {min}..={max} clocks per bit within 2% of the ideal); choose a baud rate \
         such as 115200 or 921600"
    )]
    Baud {
        baud: u32,
        clk_hz: u32,
        cpb: f64,
        min: u32,
        max: u32,
    },
}

impl BoardOpts {
    /// The top at `mhz` from the PLL (or from the oscillator directly at 25 MHz).
    pub fn at_mhz(mhz: f64, baud: u32) -> Result<BoardOpts, BoardError> {
        if (mhz - f64::from(ULX3S_CLK_HZ) / 1e6).abs() < 1e-9 {
            return Ok(BoardOpts {
                baud,
                ..BoardOpts::default()
            });
        }
        let pll = Pll::for_mhz(mhz)?;
        Ok(BoardOpts {
            clk_hz: pll.out_hz,
            pll: Some(pll),
            baud,
            core_params: Vec::new(),
        })
    }

    /// Clock cycles per UART bit, rounded, or an error if the rate cannot be timed closely.
    pub fn clks_per_bit(&self) -> Result<u32, BoardError> {
        let ideal = f64::from(self.clk_hz) / f64::from(self.baud.max(1));
        let cpb = ideal.round();
        let err = ((cpb - ideal) / ideal).abs();
        let (min, max) = (uart::MIN_CLKS_PER_BIT, uart::MAX_CLKS_PER_BIT);
        if self.baud == 0 || cpb < f64::from(min) || cpb > f64::from(max) || err > 0.02 {
            return Err(BoardError::Baud {
                baud: self.baud,
                clk_hz: self.clk_hz,
                cpb: ideal,
                min,
                max,
            });
        }
        Ok(cpb as u32)
    }
}

/// The optional core output shown on `led[5]`.
pub const CORE_BUSY: &str = "busy_o";

/// Width of an extra core output, if it is a plain number.
fn const_width(p: &Port) -> Option<u64> {
    match &p.width {
        Expr::Lit(l) => Some(l.value),
        _ => None,
    }
}

/// Check that `core` has the byte-core ports (widths at the default parameters); extra
/// outputs of constant width are allowed, extra inputs are not (nothing could drive them).
pub fn check_core(core: &Module) -> Result<(), BoardError> {
    let mut problems = Vec::new();
    for (name, dir, w) in BYTE_CORE_PORTS {
        match core.find_port(name) {
            None => problems.push(format!("no port `{name}`")),
            Some(p) => {
                if p.dir != dir {
                    let want = if dir == Dir::In {
                        "an input"
                    } else {
                        "an output"
                    };
                    problems.push(format!("`{name}` is not {want}"));
                }
                if p.width != int(u64::from(w)) {
                    problems.push(format!(
                        "`{name}` is [{}] wide, not {w} bit(s)",
                        emit_expr(&p.width)
                    ));
                }
            }
        }
    }
    for p in &core.ports {
        if BYTE_CORE_PORTS.iter().any(|(n, _, _)| *n == p.name) {
            continue;
        }
        if p.dir == Dir::In {
            problems.push(format!(
                "unexpected input `{}` (the board top cannot drive it)",
                p.name
            ));
        } else if const_width(p).is_none() {
            problems.push(format!(
                "extra output `{}` has a parameterised width [{}] (give it a constant width)",
                p.name,
                emit_expr(&p.width)
            ));
        } else if p.name == CORE_BUSY && const_width(p) != Some(1) {
            problems.push(format!(
                "`{CORE_BUSY}` (shown on led[5]) must be 1 bit wide"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(BoardError::CorePorts {
            core: core.name.clone(),
            problems: problems.join(", "),
        })
    }
}

/// `dff_ulx3s_top` around `core` (which must have the byte-core ports).
///
/// Parameters (the co-simulation overrides all of them with small values):
/// `CLKS_PER_BIT` (from `opts`: 217 for 115200 baud at 25 MHz), `POR_W` (reset is held for
/// `2**POR_W` cycles after configuration and after the reset button is released: 2.6 ms),
/// `BLINK_W` (the heartbeat LED toggles every `2**(BLINK_W-1)` cycles: 0.67 s),
/// `STRETCH_W` (activity LEDs stay lit `2**STRETCH_W` cycles after a byte: 84 ms).
pub fn ulx3s_top(core: &Module, opts: &BoardOpts) -> Result<Module, BoardError> {
    check_core(core)?;
    let cpb_default = opts.clks_per_bit()?;
    let mut m = Module::new(ULX3S_TOP).doc(format!(
        "ULX3S top: FT231X UART ({} baud at {} MHz{}) <-> byte core `{}`.\n\
         ftdi_txd: host -> FPGA, ftdi_rxd: FPGA -> host. Reset: btn[1] (F1) or power-on.\n\
         LEDs: 0 heartbeat, 1 rx byte, 2 tx byte, 3 framing error (sticky), 4 in reset,\n\
         5 core busy.",
        opts.baud,
        f64::from(opts.clk_hz) / 1e6,
        if opts.pll.is_some() {
            " from the PLL"
        } else {
            ""
        },
        core.name
    ));
    let cpb = m.param("CLKS_PER_BIT", cpb_default);
    let por_w = m.param("POR_W", 16u32);
    let blink_w = m.param("BLINK_W", 25u32);
    let stretch_w = m.param("STRETCH_W", 21u32);
    let osc = m.input("clk_25mhz", 1);
    let btn = m.input("btn", 7);
    let ftdi_txd = m.input("ftdi_txd", 1);
    let ftdi_rxd = m.output("ftdi_rxd", 1);
    let led = m.output("led", 8);

    // ---- clock: the oscillator, or the PLL's output (the one clock of everything below)
    let (clk, locked) = match &opts.pll {
        None => (osc.clone(), lit(1, 1)),
        Some(_) => {
            let c = m.wire("clk", 1);
            let l = m.wire("pll_locked", 1);
            m.instance(
                Instance::new(CLKGEN, "u_clkgen")
                    .conn("clk_i", &osc)
                    .conn("clk_o", &c)
                    .conn("locked_o", &l),
            );
            (c, l)
        }
    };

    // ---- reset
    let btn_meta_q = m.reg("rst_btn_meta_q", 1);
    let btn_sync_q = m.reg("rst_btn_sync_q", 1);
    let por_cnt_q = m.reg("por_cnt_q", &por_w);
    let por_done = m.wire("por_done", 1);
    let rst_q = m.reg("rst_q", 1);
    let unused_btn = m.wire("unused_btn", 1);
    m.comment(
        "Reset: btn[1] through a 2-flop synchroniser; reset is held while it is pressed (or\n\
         the PLL has not locked) and for 2**POR_W cycles after release or after\n\
         configuration (the FPGA starts every register at 0, so por_cnt_q counts up from 0).\n\
         These flops have no reset: they make it.",
    );
    m.assign(&unused_btn, cat([btn.slice(6, 2), btn.idx(0)]).red_xor());
    m.assign(&por_done, por_cnt_q.clone().red_and());
    m.always_ff(
        &clk,
        vec![
            nb(&btn_meta_q, btn.idx(1)),
            nb(&btn_sync_q, &btn_meta_q),
            if_(
                btn_sync_q.clone().lor(locked.clone().lnot()),
                vec![nb(&por_cnt_q, zeros(&por_w))],
            )
            .else_if(
                por_done.clone().lnot(),
                vec![nb(&por_cnt_q, &por_cnt_q + lit(1, 1))],
            ),
            nb(&rst_q, por_done.clone().lnot().lor(&btn_sync_q)),
        ],
    );

    // ---- UART and core
    let rx_data = m.wire("rx_data", 8);
    let rx_valid = m.wire("rx_valid", 1);
    let rx_frame_err = m.wire("rx_frame_err", 1);
    let rx_busy = m.wire("unused_rx_busy", 1);
    let tx_data = m.wire("tx_data", 8);
    let tx_valid = m.wire("tx_valid", 1);
    let tx_ready = m.wire("tx_ready", 1);
    let tx_busy = m.wire("unused_tx_busy", 1);
    let tx_line = m.wire("tx_line", 1);
    m.instance(
        Instance::new("dff_uart_rx", "u_uart_rx")
            .param("CLKS_PER_BIT", &cpb)
            .conn("clk_i", &clk)
            .conn("rst_i", &rst_q)
            .conn("rx_i", &ftdi_txd)
            .conn("data_o", &rx_data)
            .conn("valid_o", &rx_valid)
            .conn("frame_err_o", &rx_frame_err)
            .conn("busy_o", &rx_busy),
    );
    // Two register stages from the receiver (beside the pins) to the core (wherever the
    // placer puts it): the wire across the die was a critical path (9.8 ns of routing), and
    // two cycles are nothing at a byte per CLKS_PER_BIT * 10 cycles.
    let rx_mid_data_q = m.reg("rx_mid_data_q", 8);
    let rx_mid_valid_q = m.reg("rx_mid_valid_q", 1);
    let rx_in_data_q = m.reg("rx_in_data_q", 8);
    let rx_in_valid_q = m.reg("rx_in_valid_q", 1);
    m.always_ff(
        &clk,
        vec![
            nb(&rx_mid_data_q, &rx_data),
            nb(&rx_in_data_q, &rx_mid_data_q),
            if_(
                &rst_q,
                vec![
                    nb(&rx_mid_valid_q, lit(1, 0)),
                    nb(&rx_in_valid_q, lit(1, 0)),
                ],
            )
            .else_(vec![
                nb(&rx_mid_valid_q, &rx_valid),
                nb(&rx_in_valid_q, &rx_mid_valid_q),
            ]),
        ],
    );
    let mut core_inst = Instance::new(&core.name, "u_core");
    for (n, v) in &opts.core_params {
        core_inst = core_inst.param(n, v.clone());
    }
    let core_busy = m.wire("core_busy", 1);
    let mut has_busy = false;
    for p in &core.ports {
        if p.dir != Dir::Out || BYTE_CORE_PORTS.iter().any(|(n, _, _)| *n == p.name) {
            continue;
        }
        if p.name == CORE_BUSY {
            core_inst = core_inst.conn(CORE_BUSY, &core_busy);
            has_busy = true;
        } else {
            let w = const_width(p).unwrap_or(1);
            let u = m.wire(&format!("unused_core_{}", p.name), w);
            core_inst = core_inst.conn(&p.name, u);
        }
    }
    if !has_busy {
        m.assign(&core_busy, lit(1, 0));
    }
    m.instance(
        core_inst
            .conn("clk_i", &clk)
            .conn("rst_i", &rst_q)
            .conn("rx_data_i", &rx_in_data_q)
            .conn("rx_valid_i", &rx_in_valid_q)
            .conn("tx_data_o", &tx_data)
            .conn("tx_valid_o", &tx_valid)
            .conn("tx_ready_i", &tx_ready),
    );
    m.instance(
        Instance::new("dff_uart_tx", "u_uart_tx")
            .param("CLKS_PER_BIT", &cpb)
            .conn("clk_i", &clk)
            .conn("rst_i", &rst_q)
            .conn("data_i", &tx_data)
            .conn("valid_i", &tx_valid)
            .conn("ready_o", &tx_ready)
            .conn("tx_o", &tx_line)
            .conn("busy_o", &tx_busy),
    );
    m.assign(&ftdi_rxd, &tx_line);

    // ---- status LEDs
    let blink_q = m.reg("blink_q", &blink_w);
    let rx_led_q = m.reg("rx_led_q", &stretch_w);
    let tx_led_q = m.reg("tx_led_q", &stretch_w);
    let ferr_q = m.reg("frame_err_seen_q", 1);
    let tx_take = m.wire("tx_take", 1);
    m.assign(&tx_take, tx_valid.clone().land(&tx_ready));
    m.comment("Activity LEDs: reload on a byte, count down to 0 (lit while nonzero).");
    let stretch = |q: &Expr, ev: &Expr| {
        if_(ev, vec![nb(q, repl(&stretch_w, [lit(1, 1)]))])
            .else_if(q.clone().red_or(), vec![nb(q, q - lit(1, 1))])
    };
    m.always_ff(
        &clk,
        vec![if_(
            &rst_q,
            vec![
                nb(&blink_q, zeros(&blink_w)),
                nb(&rx_led_q, zeros(&stretch_w)),
                nb(&tx_led_q, zeros(&stretch_w)),
                nb(&ferr_q, lit(1, 0)),
            ],
        )
        .else_(vec![
            nb(&blink_q, &blink_q + lit(1, 1)),
            stretch(&rx_led_q, &rx_valid),
            stretch(&tx_led_q, &tx_take),
            if_(&rx_frame_err, vec![nb(&ferr_q, lit(1, 1))]),
        ])],
    );
    m.assign(
        &led,
        cat([
            lit(2, 0),
            core_busy.clone(),
            rst_q.clone(),
            ferr_q.clone(),
            tx_led_q.clone().red_or(),
            rx_led_q.clone().red_or(),
            blink_q.idx(&blink_w - 1),
        ]),
    );
    Ok(m)
}

/// The name of the clock generator module.
pub const CLKGEN: &str = "dff_clkgen";

/// `dff_clkgen`: the core clock from the oscillator through one EHXPLLL output (CLKOP, fed
/// back to itself), and the PLL's lock.
pub fn clkgen(pll: &Pll) -> Module {
    let mut m = Module::new(CLKGEN).doc(format!(
        "Core clock: ECP5 PLL (EHXPLLL), 25 MHz x {} / {} = {:.3} MHz (VCO {:.0} MHz).",
        pll.clkfb_div,
        pll.clki_div,
        f64::from(pll.out_hz) / 1e6,
        f64::from(pll.out_hz) / 1e6 * f64::from(pll.clkop_div)
    ));
    let clk_i = m.input("clk_i", 1);
    let clk_o = m.output("clk_o", 1);
    let locked_o = m.output("locked_o", 1);
    let unused = ["CLKOS", "CLKOS2", "CLKOS3", "CLKINTFB", "INTLOCK", "REFCLK"];
    for u in unused {
        m.wire(&format!("unused_{}", u.to_lowercase()), 1);
    }
    let mut inst = Instance::new("EHXPLLL", "u_pll")
        .param("PLLRST_ENA", string("DISABLED"))
        .param("INTFB_WAKE", string("DISABLED"))
        .param("STDBY_ENABLE", string("DISABLED"))
        .param("DPHASE_SOURCE", string("DISABLED"))
        .param("OUTDIVIDER_MUXA", string("DIVA"))
        .param("OUTDIVIDER_MUXB", string("DIVB"))
        .param("OUTDIVIDER_MUXC", string("DIVC"))
        .param("OUTDIVIDER_MUXD", string("DIVD"))
        .param("CLKI_DIV", int(u64::from(pll.clki_div)))
        .param("CLKOP_ENABLE", string("ENABLED"))
        .param("CLKOP_DIV", int(u64::from(pll.clkop_div)))
        .param("CLKOP_CPHASE", int(u64::from((pll.clkop_div - 1) / 2)))
        .param("CLKOP_FPHASE", int(0))
        .param("FEEDBK_PATH", string("CLKOP"))
        .param("CLKFB_DIV", int(u64::from(pll.clkfb_div)))
        .conn("RST", lit(1, 0))
        .conn("STDBY", lit(1, 0))
        .conn("CLKI", &clk_i)
        .conn("CLKOP", &clk_o)
        .conn("CLKFB", &clk_o)
        .conn("PHASESEL0", lit(1, 0))
        .conn("PHASESEL1", lit(1, 0))
        .conn("PHASEDIR", lit(1, 1))
        .conn("PHASESTEP", lit(1, 1))
        .conn("PHASELOADREG", lit(1, 1))
        .conn("PLLWAKESYNC", lit(1, 0))
        .conn("ENCLKOP", lit(1, 0))
        .conn("ENCLKOS", lit(1, 0))
        .conn("ENCLKOS2", lit(1, 0))
        .conn("ENCLKOS3", lit(1, 0))
        .conn("LOCK", &locked_o);
    for u in unused {
        inst = inst.conn(u, id(format!("unused_{}", u.to_lowercase())));
    }
    m.instance(inst);
    m
}

/// The EHXPLLL primitive's ports, for the IR checker only: synthesis (yosys's ECP5 cell
/// library) provides the primitive, so no file is written for it.
pub fn ehxplll_ports() -> Module {
    let mut m = Module::new("EHXPLLL");
    for p in [
        "CLKI",
        "CLKFB",
        "PHASESEL1",
        "PHASESEL0",
        "PHASEDIR",
        "PHASESTEP",
        "PHASELOADREG",
        "STDBY",
        "PLLWAKESYNC",
        "RST",
        "ENCLKOP",
        "ENCLKOS",
        "ENCLKOS2",
        "ENCLKOS3",
    ] {
        m.input(p, 1);
    }
    for p in [
        "CLKOP", "CLKOS", "CLKOS2", "CLKOS3", "LOCK", "INTLOCK", "REFCLK", "CLKINTFB",
    ] {
        m.output(p, 1);
    }
    for (n, v) in [
        ("PLLRST_ENA", string("DISABLED")),
        ("INTFB_WAKE", string("DISABLED")),
        ("STDBY_ENABLE", string("DISABLED")),
        ("DPHASE_SOURCE", string("DISABLED")),
        ("OUTDIVIDER_MUXA", string("DIVA")),
        ("OUTDIVIDER_MUXB", string("DIVB")),
        ("OUTDIVIDER_MUXC", string("DIVC")),
        ("OUTDIVIDER_MUXD", string("DIVD")),
        ("CLKI_DIV", int(1)),
        ("CLKOP_ENABLE", string("ENABLED")),
        ("CLKOP_DIV", int(8)),
        ("CLKOP_CPHASE", int(0)),
        ("CLKOP_FPHASE", int(0)),
        ("FEEDBK_PATH", string("CLKOP")),
        ("CLKFB_DIV", int(1)),
    ] {
        m.param(n, v);
    }
    m
}

/// Everything a board build needs besides the core's own modules: the UART and the top.
pub fn ulx3s_modules(core: &Module, opts: &BoardOpts) -> Result<Vec<Module>, BoardError> {
    let cpb = opts.clks_per_bit()?;
    let mut ms = uart::modules(cpb);
    ms.push(ulx3s_top(core, opts)?);
    if let Some(p) = &opts.pll {
        ms.push(clkgen(p));
    }
    Ok(ms)
}

/// `dff_echo_core`: a byte core that sends back every received byte plus one (a one-byte
/// buffer; the UARTs run at the same rate, so it never overflows). Behind the board top it
/// checks the serial path on a real board before any engine is involved.
pub fn echo_core() -> Module {
    let mut m = Module::new("dff_echo_core")
        .doc("Byte core for bring-up: sends back each received byte + 1.");
    let clk = m.input("clk_i", 1);
    let rst = m.input("rst_i", 1);
    let rx_data = m.input("rx_data_i", 8);
    let rx_valid = m.input("rx_valid_i", 1);
    let tx_data = m.output("tx_data_o", 8);
    let tx_valid = m.output("tx_valid_o", 1);
    let tx_ready = m.input("tx_ready_i", 1);
    let data_q = m.reg("data_q", 8);
    let full_q = m.reg("full_q", 1);
    m.always_ff(
        &clk,
        vec![
            if_(&rst, vec![nb(&data_q, lit(8, 0)), nb(&full_q, lit(1, 0))])
                .else_if(
                    &rx_valid,
                    vec![nb(&data_q, &rx_data + lit(8, 1)), nb(&full_q, lit(1, 1))],
                )
                .else_if(tx_ready, vec![nb(&full_q, lit(1, 0))]),
        ],
    );
    m.assign(tx_data, data_q);
    m.assign(tx_valid, full_q);
    m
}

/// The ULX3S pin constraints (`constraints/ulx3s.lpf`), for writing next to generated RTL.
pub const ULX3S_LPF: &str = include_str!("../../constraints/ulx3s.lpf");

/// A board build's files: the board modules, the core's modules and their ROM tables.
#[derive(Clone, Debug)]
pub struct BoardDesign {
    pub modules: Vec<Module>,
    pub tables: Vec<(String, String)>,
}

impl BoardDesign {
    /// `dff_ulx3s_top` around `core` (the first of `core_modules` with the byte-core ports is
    /// the one named `core_name`); checks every module with the IR checker.
    pub fn ulx3s(
        core_name: &str,
        core_modules: Vec<Module>,
        tables: Vec<(String, String)>,
        opts: &BoardOpts,
    ) -> Result<BoardDesign, BoardError> {
        let core = core_modules
            .iter()
            .find(|m| m.name == core_name)
            .ok_or_else(|| BoardError::CorePorts {
                core: core_name.into(),
                problems: "no module of that name was generated".into(),
            })?;
        let mut modules = ulx3s_modules(core, opts)?;
        modules.extend(core_modules);
        {
            let pll = ehxplll_ports();
            let dp16kd = super::bram::dp16kd_model();
            let mut lib: Vec<&Module> = modules.iter().collect();
            lib.push(&pll);
            lib.push(&dp16kd);
            for m in &modules {
                check(m, &lib).map_err(|e| BoardError::Check {
                    module: m.name.clone(),
                    errors: format!("{e:?}"),
                })?;
            }
        }
        modules.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(BoardDesign { modules, tables })
    }

    /// Write every module (`<name>.v`), the tables and `ulx3s.lpf` into `dir`: all of them
    /// or, on any error, none ([`crate::util::write_dir_atomic`]).
    pub fn write(&self, dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
        let files = self.files();
        crate::util::write_dir_atomic(dir, &files)?;
        Ok(files.into_iter().map(|(n, _)| n).collect())
    }

    /// (file name, text) of every file [`BoardDesign::write`] writes.
    pub fn files(&self) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = self
            .modules
            .iter()
            .map(|m| (file_name(m), emit(m)))
            .collect();
        files.extend(self.tables.iter().cloned());
        files.push(("ulx3s.lpf".into(), ULX3S_LPF.to_string()));
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The echo core with a `busy_o` and a debug output: busy drives led[5].
    #[test]
    fn extra_core_outputs() {
        let mut core = echo_core();
        let b = core.output("busy_o", 1);
        core.assign(b, lit(1, 1));
        let d = core.output("dbg_o", 4);
        core.assign(d, lit(4, 5));
        let ms = ulx3s_modules(&core, &BoardOpts::default()).unwrap();
        let mut lib: Vec<&Module> = ms.iter().collect();
        lib.push(&core);
        for m in &ms {
            check(m, &lib).unwrap_or_else(|e| panic!("{}: {e:?}", m.name));
        }
        let top = emit(ms.last().unwrap());
        assert!(top.contains(".busy_o(core_busy)"), "{top}");
        assert!(top.contains(".dbg_o(unused_core_dbg_o)"), "{top}");
        let mut wide = echo_core();
        let w = wide.output("busy_o", 2);
        wide.assign(w, lit(2, 0));
        let e = check_core(&wide).unwrap_err().to_string();
        assert!(e.contains("must be 1 bit wide"), "{e}");
    }

    #[test]
    fn pll_dividers_hit_the_clock_with_the_vco_in_range() {
        // 100 MHz is ecppll's 25 x 4 / 1 with CLKOP_DIV 6 (VCO 600 MHz).
        let p = Pll::for_mhz(100.0).unwrap();
        assert_eq!(
            (p.clki_div, p.clkfb_div, p.clkop_div, p.out_hz),
            (1, 4, 6, 100_000_000)
        );
        for mhz in [50.0, 75.0, 100.0, 125.0, 133.0, 150.0, 200.0] {
            let p = Pll::for_mhz(mhz).unwrap();
            let fout = 25.0 * f64::from(p.clkfb_div) / f64::from(p.clki_div);
            let vco = fout * f64::from(p.clkop_div);
            assert!((fout - mhz).abs() <= mhz * 0.01, "{mhz}: {p:?}");
            assert!((400.0..=800.0).contains(&vco), "{mhz}: VCO {vco}");
            assert!(25.0 / f64::from(p.clki_div) >= 3.125);
        }
        assert!(Pll::for_mhz(1000.0).is_err());
        let o = BoardOpts::at_mhz(125.0, 115_200).unwrap();
        assert_eq!(o.clk_hz, 125_000_000);
        assert_eq!(o.clks_per_bit(), Ok(1085));
        assert!(BoardOpts::at_mhz(25.0, 115_200).unwrap().pll.is_none());
    }

    #[test]
    fn baud_rates() {
        let o = BoardOpts::default();
        assert_eq!(o.clks_per_bit(), Ok(217));
        let fast = BoardOpts {
            baud: 921_600,
            ..o.clone()
        };
        assert_eq!(fast.clks_per_bit(), Ok(27));
        for baud in [0, 10_000_000, 100, 3_000_000] {
            let e = BoardOpts { baud, ..o.clone() }.clks_per_bit();
            assert!(matches!(e, Err(BoardError::Baud { .. })), "{baud}: {e:?}");
        }
        let msg = BoardOpts { baud: 100, ..o }
            .clks_per_bit()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("choose a baud rate"), "{msg}");
    }

    #[test]
    fn core_ports_are_checked() {
        let mut bad = Module::new("bad");
        bad.input("clk_i", 1);
        bad.input("rx_data_i", 16);
        bad.output("rst_i", 1);
        bad.input("mode_i", 1);
        bad.output("dbg_o", id("W"));
        let e = check_core(&bad).unwrap_err().to_string();
        for s in [
            "`bad`",
            "no port `tx_data_o`",
            "`rx_data_i` is [16] wide",
            "`rst_i` is not an input",
            "unexpected input `mode_i`",
            "extra output `dbg_o` has a parameterised width [W]",
        ] {
            assert!(e.contains(s), "{s} missing in: {e}");
        }
        let core = echo_core();
        let ms = ulx3s_modules(&core, &BoardOpts::default()).unwrap();
        let mut lib: Vec<&Module> = ms.iter().collect();
        lib.push(&core);
        for m in &ms {
            check(m, &lib).unwrap_or_else(|e| panic!("{}: {e:?}", m.name));
        }
    }
}
