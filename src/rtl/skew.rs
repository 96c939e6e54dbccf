//! The systolic array's input skew: lane r of an edge enters the array r + 1 cycles after
//! lane 0's first register, so that row r (column c) meets its operands in step.

use crate::hdl::*;

/// `dff_skew`: lane r of `x_i` delayed r + 1 cycles (the systolic input skew).
pub fn skew() -> Module {
    let mut m = Module::new("dff_skew")
        .doc("Input skew of the systolic array: lane r is delayed r + 1 cycles.");
    let lanes = m.param("LANES", int(4));
    let wp = m.param("W", int(8));
    let clk = m.input("clk_i", 1);
    let x = m.input("x_i", &lanes * &wp);
    let y = m.output("y_o", &lanes * &wp);
    m.genvar("r");
    m.gen_for("r", int(0), &lanes, "g_lane", |s, r| {
        let r0 = r.clone();
        s.gen_if_else(
            r0.eq_(int(0)),
            "g_first",
            |t| {
                let sr = t.reg("sr_q", &wp);
                t.always_ff(&clk, vec![nb(&sr, x.part(&r * &wp, &wp))]);
                t.assign(y.part(&r * &wp, &wp), &sr);
            },
            "g_rest",
            |t| {
                let sr = t.reg("sr_q", (&r + int(1)) * &wp);
                t.always_ff(
                    &clk,
                    vec![nb(
                        &sr,
                        cat([sr.part(int(0), &r * &wp), x.part(&r * &wp, &wp)]),
                    )],
                );
                t.assign(y.part(&r * &wp, &wp), sr.part(&r * &wp, &wp));
            },
        );
    });
    m
}
