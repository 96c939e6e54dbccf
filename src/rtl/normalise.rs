//! Normalisation unit: x̂_i = x_i · rsqrt(S) onto `act` ([`crate::fixed::model::Units::normalise`]).
//!
//! `sv_i` loads S = Σ x² (from the goodness unit); a leading-one detector gives n = bitlen(S),
//! e = n rounded up to even, the table address = the top `rsqrt_addr_bits` bits of S aligned at
//! e, and the rsqrt ROM (registered read, `rsqrt.hex`) gives the word. The exponent
//! k = (e − 2·frac)/2 folds into one variable output shift: because the sum's fraction bits are
//! even the total shift is `rsqrt_frac + e/2 − act.frac`, whatever the input format, so the
//! same unit normalises pixels and hidden values. Lanes (`xv_i`) may start the cycle after
//! `sv_i`; `yv_o` marks outputs ([`crate::arch::schedule::normalise_lat`] later). `rs_word_o`/`rs_half_e_o` expose the row's
//! rsqrt parts for DF-R's feedback scaling.

use super::util::*;
use super::Shape;
use crate::hdl::*;

/// `shift_plus_one` is a deliberate defect for the mutation test (output shift one too large).
pub fn normalise(s: &Shape, shift_plus_one: bool) -> Module {
    let f = &s.f;
    let sw = s.sum_w;
    let xw = s.norm_x_w;
    let a = f.rsqrt_addr_bits;
    let rw = f.rsqrt_frac + 2;
    let ew = bitlen(u128::from(sw + 1));
    let shw = 8u32;
    let pw = xw + rw;
    let mut m = Module::new("dff_normalise").doc(format!(
        "Normalise: y = x * rsqrt(S) onto act ({}.{} unsigned, {:?}); rsqrt ROM of 2^{a} words.",
        f.act.bits, f.act.frac, f.rounding
    ));
    let clk = m.input("clk_i", 1);
    m.input("rst_i", 1);
    let s_i = m.input("s_i", sw);
    let sv_i = m.input("sv_i", 1);
    let x_i = m.input("x_i", xw);
    let xv_i = m.input("xv_i", 1);
    let y_o = m.output("y_o", f.act.bits);
    let yv_o = m.output("yv_o", 1);
    // The row's rsqrt parts (word, e/2), valid from NORMALISE_RS_LAT cycles after `sv_i`
    // until the next one: DF-R's feedback scaling reuses them (`Units::scale_by_rsqrt`).
    let word_o = m.output("rs_word_o", rw);
    let half_e_o = m.output("rs_half_e_o", ew - 1);

    // S path, one step per stage: the leading one, the table address (and e/2), the ROM.
    m.comment(
        "S: leading one, then the table address and e/2, then the rsqrt ROM (registered twice).",
    );
    // The leading one of s as a one-hot register (bit i: s[i] set, no higher bit set).
    // From it, flat OR trees give e/2 = ceil((i + 1) / 2) (e: the bit length rounded up to
    // even) and the table address, the `a` bits of s below bit e (s >> (e - a), or
    // s << (a - e)): a one-hot select of fixed windows, not a priority chain, an adder and a
    // barrel shifter in one cycle.
    let top = m.wire("top_one", sw);
    let hot: Vec<Expr> = (0..sw)
        .map(|i| {
            if i + 1 == sw {
                s_i.idx(i)
            } else {
                s_i.idx(i).land(s_i.slice(sw - 1, i + 1).red_or().lnot())
            }
        })
        .collect();
    m.assign(&top, cat(hot.into_iter().rev()));
    let s_q = m.reg("s_q", sw);
    let lead_q = m.reg("lead_q", sw);
    let half_e = m.wire("half_e", ew - 1);
    let e_of = |i: u32| u64::from(i) / 2 + 1;
    let bits: Vec<Expr> = (0..ew - 1)
        .map(|k| {
            (0..sw)
                .filter(|&i| e_of(i) >> k & 1 == 1)
                .map(|i| lead_q.idx(i))
                .reduce(|a, b| a | b)
                .unwrap_or_else(|| lit(1, 0))
        })
        .collect();
    m.assign(&half_e, cat(bits.into_iter().rev()));
    let idx = m.wire("table_idx", a);
    let idx_bits: Vec<Expr> = (0..a)
        .map(|b| {
            (0..sw)
                .filter_map(|i| {
                    // Leading one at i: bit b of the address is bit b + 2·e_of(i) − a of s.
                    let src = i64::from(b) + 2 * e_of(i) as i64 - i64::from(a);
                    (0..i64::from(sw))
                        .contains(&src)
                        .then(|| lead_q.idx(i).land(s_q.idx(src as u32)))
                })
                .reduce(|x, y| x.lor(y))
                .unwrap_or_else(|| lit(1, 0))
        })
        .collect();
    m.assign(&idx, cat(idx_bits.into_iter().rev()));
    let addr_q = m.reg("addr_q", a);
    let e1_q = m.reg("e1_q", ew - 1);
    let e2_q = m.reg("e2_q", ew - 1);
    let e3_q = m.reg("e3_q", ew - 1);
    let rom_q = m.reg("rom_q", rw);
    let word_q = m.reg("word_q", rw);
    let rom = m.memory("rom", rw, int(1u64 << a), Some("rsqrt.hex"));
    m.always_ff(
        &clk,
        vec![nb(&rom_q, rom.idx(&addr_q)), nb(&word_q, &rom_q)],
    );
    ff(
        &mut m,
        vec![
            (s_q.clone(), sw),
            (lead_q.clone(), sw),
            (addr_q.clone(), a),
            (e1_q.clone(), ew - 1),
            (e2_q.clone(), ew - 1),
            (e3_q.clone(), ew - 1),
        ],
        vec![
            if_(&sv_i, vec![nb(&s_q, &s_i), nb(&lead_q, &top)]),
            nb(&addr_q, &idx),
            nb(&e1_q, &half_e),
            nb(&e2_q, &e1_q),
            nb(&e3_q, &e2_q),
        ],
    );

    // x path: three input registers (the S path is two stages longer than the lanes wait),
    // the pipelined product with the word, the rounding add, the shift and saturation. The
    // output shift rsqrt_frac + e/2 - act.frac travels with its datum, so the lanes of one row
    // may follow the previous row's without a gap.
    m.comment("x: x * word on DSPs, then + rounding, then >> shift and saturate.");
    let c = (i64::from(f.rsqrt_frac) - i64::from(f.act.frac) + i64::from(shift_plus_one))
        .rem_euclid(1 << shw) as u64;
    let sh = m.wire("sh", shw);
    m.assign(
        &sh,
        cat([lit(shw - (ew - 1), 0), e3_q.clone()]) + lit(shw, c),
    );
    let x_q = m.reg("x_q", xw);
    let x2_q = m.reg("x2_q", xw);
    let x3_q = m.reg("x3_q", xw);
    let prod = mul_pipelined(
        &mut m,
        "xw",
        &Sig::new(&x3_q, xw, false),
        &Sig::new(&word_q, rw, false),
    );
    let ms = crate::arch::schedule::mul_stages(xw + 1, rw + 1) as u32;
    // The product of two non-negative operands: its sign bits are 0.
    let p = m.wire("p", pw);
    m.assign(&p, prod.e.slice(pw - 1, 0));
    let u = m.wire("unused_p_sign", 1);
    m.assign(u, prod.e.slice(prod.w - 1, pw).red_xor());
    let sh_pipe: Vec<Expr> = (0..ms).map(|k| m.reg(&format!("sh{k}_q"), shw)).collect();
    // Rounding shift in two stages: the barrel shift first, the rounding add and the
    // saturation after it (one shifter and one adder per stage, not both). With
    // ps = {p, 0} >> sh = p >> (sh - 1) (or {p, 0} when sh = 0):
    // (p + 2^(sh-1)) >> sh = (ps >> 1) + ps[0], and p >> sh = ps >> 1.
    let ps_q = m.reg("ps_q", pw + 1);
    let y_q = m.reg("y_q", f.act.bits);
    let sh_last = sh_pipe[ms as usize - 1].clone();
    let half_up = f.rounding == crate::fixed::Rounding::HalfUp;
    let round_bit = if half_up {
        cat([lit(pw + 1, 0), ps_q.idx(0)])
    } else {
        let u = m.wire("unused_ps_round", 1);
        m.assign(u, ps_q.idx(0));
        lit(pw + 2, 0)
    };
    let q = m.wire("q", pw + 2);
    m.assign(&q, cat([lit(2, 0), ps_q.slice(pw, 1)]) + round_bit);
    let y = m.wire("y", f.act.bits);
    m.assign(
        &y,
        mux(
            q.clone().gt_(lit(pw + 2, f.act.max() as u64)),
            ulit(f.act.bits, f.act.max()),
            q.slice(f.act.bits - 1, 0),
        ),
    );
    // The valid flag, delayed as the data: input, second input, product, sum, output.
    let lat = crate::arch::schedule::normalise_lat(s) as u32;
    let v_q = m.reg("v_q", lat);
    let mut body = vec![
        nb(&x_q, &x_i),
        nb(&x2_q, &x_q),
        nb(&x3_q, &x2_q),
        nb(&sh_pipe[0], &sh),
        nb(&ps_q, cat([p.clone(), lit(1, 0)]) >> sh_last.clone()),
        nb(&y_q, &y),
        nb(
            &v_q,
            if lat == 1 {
                xv_i.clone()
            } else {
                cat([v_q.slice(lat - 2, 0), xv_i.clone()])
            },
        ),
    ];
    for k in 1..ms as usize {
        body.push(nb(&sh_pipe[k], &sh_pipe[k - 1]));
    }
    m.always_ff(&clk, body);
    assert_eq!(lat, 5 + ms, "normalise_lat and the pipeline built here");
    m.assign(word_o, &word_q);
    m.assign(half_e_o, &e3_q);
    m.assign(y_o, y_q);
    m.assign(yv_o, v_q.idx(lat - 1));
    m
}
