//! ReLU/requantise unit: `h = requantize(max(0, z), accumulator.frac → hidden)`
//! ([`crate::fixed::ops::relu_requant`]); registered input and output, latency 2.

use super::util::*;
use super::Shape;
use crate::fixed::Rounding;
use crate::hdl::*;

pub fn relu_requant(s: &Shape, mode: Rounding) -> Module {
    let f = &s.f;
    let mut m = Module::new("dff_relu").doc(format!(
        "ReLU + requantise: accumulator Q{}.{} -> hidden {}Q{}.{} ({:?}, saturating).",
        f.accumulator.bits - f.accumulator.frac,
        f.accumulator.frac,
        if f.hidden.signed { "s" } else { "u" },
        f.hidden.bits - f.hidden.frac,
        f.hidden.frac,
        mode
    ));
    let zw = f.accumulator.bits;
    m.input("clk_i", 1);
    m.input("rst_i", 1);
    let z_i = m.input_s("z_i", zw);
    let v_i = m.input("v_i", 1);
    let h_o = m.output("h_o", f.hidden.bits);
    let v_o = m.output("v_o", 1);
    let z_q = m.reg_s("z_q", zw);
    let v_q = m.reg("v_q", 1);
    let zp = m.wire_s("zp", zw);
    m.assign(&zp, mux(z_q.idx(zw - 1), zeros(zw), &z_q));
    let y = requant(
        &mut m,
        "rq",
        &Sig::new(&zp, zw, true),
        f.accumulator.frac,
        f.hidden,
        mode,
        None,
    );
    let h_q = m.reg("h_q", f.hidden.bits);
    let hv_q = m.reg("hv_q", 1);
    ff(
        &mut m,
        vec![
            (z_q.clone(), zw),
            (v_q.clone(), 1),
            (h_q.clone(), f.hidden.bits),
            (hv_q.clone(), 1),
        ],
        vec![
            nb(&z_q, &z_i),
            nb(&v_q, &v_i),
            nb(&h_q, &y.e),
            nb(&hv_q, &v_q),
        ],
    );
    m.assign(h_o, h_q);
    m.assign(v_o, hv_q);
    m
}
