//! Reference modules built with the IR. They double as the lint/synthesis/
//! simulation test subjects and as worked examples of the builder style;
//! default parameter values come from the Rust arguments (a runtime config).

use super::ir::*;

/// Signed multiply-accumulate processing element for a systolic array.
///
/// Each enabled cycle it forwards `a_i`/`b_i` (registered) to `a_o`/`b_o`
/// and accumulates `a_i * b_i` (full 2W-bit product, sign-extended to
/// ACC_W, wrapping). `clear_i` restarts the sum with the current product.
/// Synchronous active-high reset. Requires `acc_w > 2 * w`.
pub fn mac_pe(name: &str, w: u32, acc_w: u32) -> Module {
    assert!(acc_w > 2 * w, "ACC_W must exceed the 2W-bit product");
    let mut m = Module::new(name).doc(
        "Signed MAC processing element: registered a/b forwarding and a\n\
         wrapping ACC_W-bit accumulator. Synchronous active-high reset.",
    );
    let wp = m.param("W", w);
    let accw = m.param("ACC_W", acc_w);
    let clk = m.input("clk_i", 1);
    let rst = m.input("rst_i", 1);
    let en = m.input("en_i", 1);
    let clear = m.input("clear_i", 1);
    let a_i = m.input_s("a_i", &wp);
    let b_i = m.input_s("b_i", &wp);
    let a_o = m.output_s("a_o", &wp);
    let b_o = m.output_s("b_o", &wp);
    let acc_o = m.output_s("acc_o", &accw);

    let a_d = m.reg_s("a_d", &wp);
    let a_q = m.reg_s("a_q", &wp);
    let b_d = m.reg_s("b_d", &wp);
    let b_q = m.reg_s("b_q", &wp);
    let acc_d = m.reg_s("acc_d", &accw);
    let acc_q = m.reg_s("acc_q", &accw);
    let pw = 2 * &wp;
    let prod = m.wire_s("prod", &pw);
    let prod_ext = m.wire_s("prod_ext", &accw);

    m.comment("Operands widened to 2W first so the product is exact.");
    m.assign(&prod, a_i.sext(&wp, &pw) * b_i.sext(&wp, &pw));
    m.assign(&prod_ext, prod.sext(&pw, &accw));
    m.always_comb(vec![
        set(&a_d, &a_q),
        set(&b_d, &b_q),
        set(&acc_d, &acc_q),
        if_(
            &en,
            vec![
                set(&a_d, &a_i),
                set(&b_d, &b_i),
                if_(&clear, vec![set(&acc_d, &prod_ext)])
                    .else_(vec![set(&acc_d, &acc_q + &prod_ext)]),
            ],
        ),
    ]);
    m.always_ff(
        &clk,
        vec![if_(
            &rst,
            vec![
                nb(&a_q, zeros(&wp)),
                nb(&b_q, zeros(&wp)),
                nb(&acc_q, zeros(&accw)),
            ],
        )
        .else_(vec![nb(&a_q, &a_d), nb(&b_q, &b_d), nb(&acc_q, &acc_d)])],
    );
    m.assign(a_o, a_q);
    m.assign(b_o, b_q);
    m.assign(acc_o, acc_q);
    m
}

/// R x C systolic grid of [`mac_pe`]s: `a` flows west to east, `b` north to
/// south. Neighbour links live in flattened vectors `h` (R rows of C+1 taps)
/// and `v` (R+1 rows of C taps) so that the text is plain Verilog-2005 that
/// Verilator and yosys read identically. Edge taps are exported
/// (`east_o`, `south_o`) so no net is left unused.
pub fn mac_grid(name: &str, pe: &Module, rows: u32, cols: u32, w: u32, acc_w: u32) -> Module {
    let mut m = Module::new(name).doc(format!(
        "{rows}x{cols} systolic grid of {} processing elements.\n\
         a enters on the west edge and leaves on the east edge; b enters\n\
         on the north edge and leaves on the south edge.",
        pe.name
    ));
    let r_p = m.param("R", rows);
    let c_p = m.param("C", cols);
    let wp = m.param("W", w);
    let accw = m.param("ACC_W", acc_w);
    let clk = m.input("clk_i", 1);
    let rst = m.input("rst_i", 1);
    let en = m.input("en_i", 1);
    let clear = m.input("clear_i", 1);
    let west = m.input("west_i", &r_p * &wp);
    let north = m.input("north_i", &c_p * &wp);
    let east = m.output("east_o", &r_p * &wp);
    let south = m.output("south_o", &c_p * &wp);
    let acc_o = m.output("acc_o", &r_p * &c_p * &accw);

    let h = m.wire("h", &r_p * (&c_p + 1) * &wp);
    let v = m.wire("v", (&r_p + 1) * &c_p * &wp);
    m.genvar("r");
    m.genvar("c");

    // Tap index helpers: h[(r*(C+1)+c)*W +: W], v[(r*C+c)*W +: W].
    let htap = |r: &Expr, c: Expr| h.part((r * (&c_p + 1) + c) * &wp, &wp);
    let vtap = |r: Expr, c: &Expr| v.part((r * &c_p + c) * &wp, &wp);

    m.gen_for("r", 0, &r_p, "g_row", |row, r| {
        row.assign(htap(&r, int(0)), west.part(&r * &wp, &wp));
        row.assign(east.part(&r * &wp, &wp), htap(&r, c_p.clone()));
        row.gen_for("c", 0, &c_p, "g_col", |col, c| {
            col.instance(
                Instance::new(&pe.name, "u_pe")
                    .param("W", &wp)
                    .param("ACC_W", &accw)
                    .conn("clk_i", &clk)
                    .conn("rst_i", &rst)
                    .conn("en_i", &en)
                    .conn("clear_i", &clear)
                    .conn("a_i", htap(&r, c.clone()))
                    .conn("b_i", vtap(r.clone(), &c))
                    .conn("a_o", htap(&r, &c + 1))
                    .conn("b_o", vtap(&r + 1, &c))
                    .conn("acc_o", acc_o.part((&r * &c_p + &c) * &accw, &accw)),
            );
        });
    });
    m.gen_for("c", 0, &c_p, "g_edge", |col, c| {
        col.assign(vtap(int(0), &c), north.part(&c * &wp, &wp));
        col.assign(south.part(&c * &wp, &wp), vtap(r_p.clone(), &c));
    });
    m
}

/// Synchronous-read ROM whose table is loaded with `$readmemh(hex_file)`.
/// DEPTH is `1 << AW` so every address is valid (no WIDTH lint on the index).
pub fn rom(name: &str, w: u32, aw: u32, hex_file: &str) -> Module {
    let mut m = Module::new(name).doc("Lookup table ROM, one registered read port.");
    let wp = m.param("W", w);
    let aw_p = m.param("AW", aw);
    let depth = m.localparam("DEPTH", int(1) << aw_p.clone());
    let clk = m.input("clk_i", 1);
    let addr = m.input("addr_i", &aw_p);
    let data_o = m.output("data_o", &wp);
    let mem = m.memory("mem", &wp, &depth, Some(hex_file));
    let data_q = m.reg("data_q", &wp);
    m.always_ff(&clk, vec![nb(&data_q, mem.idx(&addr))]);
    m.assign(data_o, data_q);
    m
}

/// Three-state sequencer: IDLE --start--> RUN (counts `len_i` cycles down)
/// --> DONE (one cycle, `done_o`) --> IDLE.
pub fn seq_fsm(name: &str, n_w: u32) -> Module {
    let mut m = Module::new(name).doc("Start/run/done sequencer with a down counter.");
    let nw = m.param("N_W", n_w);
    let s_idle = m.localparam("S_IDLE", lit(2, 0));
    let s_run = m.localparam("S_RUN", lit(2, 1));
    let s_done = m.localparam("S_DONE", lit(2, 2));
    let clk = m.input("clk_i", 1);
    let rst = m.input("rst_i", 1);
    let start = m.input("start_i", 1);
    let len = m.input("len_i", &nw);
    let busy = m.output("busy_o", 1);
    let done = m.output("done_o", 1);
    let state_d = m.reg("state_d", 2);
    let state_q = m.reg("state_q", 2);
    let cnt_d = m.reg("cnt_d", &nw);
    let cnt_q = m.reg("cnt_q", &nw);

    m.always_comb(vec![
        set(&state_d, &state_q),
        set(&cnt_d, &cnt_q),
        case(
            &state_q,
            vec![
                arm(
                    &s_idle,
                    vec![if_(&start, vec![set(&state_d, &s_run), set(&cnt_d, &len)])],
                ),
                arm(
                    &s_run,
                    vec![
                        if_(cnt_q.clone().eq_(zeros(&nw)), vec![set(&state_d, &s_done)])
                            .else_(vec![set(&cnt_d, &cnt_q - 1)]),
                    ],
                ),
                arm(&s_done, vec![set(&state_d, &s_idle)]),
            ],
            vec![set(&state_d, &s_idle)],
        ),
    ]);
    m.always_ff(
        &clk,
        vec![
            if_(&rst, vec![nb(&state_q, &s_idle), nb(&cnt_q, zeros(&nw))])
                .else_(vec![nb(&state_q, &state_d), nb(&cnt_q, &cnt_d)]),
        ],
    );
    m.assign(busy, state_q.clone().ne_(&s_idle));
    m.assign(done, state_q.eq_(&s_done));
    m
}

/// Small register file exercising the remaining constructs: an unpacked
/// `reg` array, a reset `for` loop with an `integer`, a generate-if choosing
/// write-through bypass, a multi-label `case`, concatenation, reduction and
/// arithmetic shift of a signed value.
pub fn regfile(name: &str, n: u32, w: u32, aw: u32, bypass: bool) -> Module {
    let mut m = Module::new(name).doc("Register file with optional write-through bypass.");
    let n_p = m.param("N", n);
    let wp = m.param("W", w);
    let aw_p = m.param("AW", aw);
    let byp = m.param("BYPASS", u32::from(bypass));
    let clk = m.input("clk_i", 1);
    let rst = m.input("rst_i", 1);
    let we = m.input("we_i", 1);
    let waddr = m.input("waddr_i", &aw_p);
    let wdata = m.input("wdata_i", &wp);
    let raddr = m.input("raddr_i", &aw_p);
    let rdata = m.output("rdata_o", &wp);
    let parity = m.output("parity_o", 1);
    let half = m.output_s("half_o", &wp);
    let upper = m.output_reg("upper_o", 1);
    let i = m.integer("i");
    let regs = m.decl(Decl {
        name: "regs".into(),
        kind: NetKind::Reg,
        width: wp.clone(),
        signed: false,
        dims: vec![n_p.clone()],
    });
    let raw = m.wire("raw", &wp);
    m.always_ff(
        &clk,
        vec![if_(
            &rst,
            vec![for_("i", 0, &n_p, vec![nb(regs.idx(&i), zeros(&wp))])],
        )
        .else_if(&we, vec![nb(regs.idx(&waddr), &wdata)])],
    );
    m.assign(&raw, regs.idx(&raddr));
    m.gen_if_else(
        byp.clone().ne_(0),
        "g_bypass",
        |b| {
            b.assign(
                &rdata,
                mux(we.clone().land(waddr.clone().eq_(&raddr)), &wdata, &raw),
            )
        },
        "g_direct",
        |b| b.assign(&rdata, &raw),
    );
    m.assign(parity, cat([raw.slice(&wp - 1, 1), raw.idx(0)]).red_xor());
    m.assign(half, raw.clone().signed().ashr(1));
    m.always_comb(vec![case(
        raddr.idx(&aw_p - 1),
        vec![CaseArm {
            labels: vec![lit(1, 0)],
            body: vec![set(&upper, lit(1, 0))],
        }],
        vec![set(&upper, lit(1, 1))],
    )]);
    m
}
