//! The PRED op engine (`dff_op_pred`): after an inference's forward ops, the score of class
//! c is Σ_{l∈S} G_l[c] over the evaluated layers; the first maximum wins (ties to the lower
//! class, as the golden model's arg-max).

use super::build::*;
use crate::arch::memmap::TensorId;
use crate::arch::schedule::READ_LAT;
use crate::arch::Arch;
use crate::hdl::*;

pub fn pred(arch: &Arch) -> Module {
    let f = &arch.shape.f;
    let nl = arch.layers();
    let ncls = arch.classes;
    let mut e = Eng::new(
        "dff_op_pred",
        "PRED op engine: arg-max over the classes of the summed goodness of the evaluated layers.",
    );
    let io = e.op_io(arch);
    let result_o = e.m.output("result_o", 8);
    let t = |id_: TensorId| arch.mem.t(id_).clone();
    let g: Vec<MemPort> = arch
        .eval_layers
        .iter()
        .map(|&l| e.mem_port(&t(TensorId::G(l)), false, true))
        .collect();
    let cw_ = cw(ncls);
    let (st, st_d) = e.reg("st", 1, 0);
    let (c, c_d) = e.reg("class", cw_, 0);
    e.comb.push(
        if_(
            st.clone().eq_(lit(1, 1)),
            vec![
                set(&c_d, &c + lit(cw_, 1)),
                if_(
                    c.clone().eq_(lit(cw_, (ncls - 1) as u64)),
                    vec![set(&st_d, lit(1, 0))],
                ),
            ],
        )
        .else_if(
            io.start.clone(),
            vec![set(&st_d, lit(1, 1)), set(&c_d, lit(cw_, 0))],
        ),
    );
    let issue = st.clone().eq_(lit(1, 1));
    for p in &g {
        e.read_all(p, issue.clone(), fit(&c, cw_, p.aw));
    }
    // The sum is registered before the compare: read data, sum, compare and the best
    // register's enable in one cycle was a critical path (docs/board.md).
    let rl = READ_LAT as usize + 1;
    let v = e.delay_flag("score_v", issue.clone(), 1, rl);
    let cr = e.delay("score_class", c.clone(), cw_, rl);
    let scw = f.goodness.bits + cw(nl);
    let sum = g.iter().fold(lit(scw, 0), |acc, p| {
        acc + zext(p.rdata(0), f.goodness.bits, scw)
    });
    let score = e.delay("score", sum, scw, 1);
    let (best, best_d) = e.reg("best", scw, 0);
    let (res, res_d) = e.reg("result", 8, 0);
    e.comb.push(if_(
        v.clone().land(
            cr.clone()
                .eq_(lit(cw_, 0))
                .lor(score.clone().gt_(best.clone())),
        ),
        vec![
            set(&best_d, score.clone()),
            set(&res_d, zext(cr.clone(), cw_, 8)),
        ],
    ));
    // The last class's comparison is registered with done.
    let last = e.wire("last", 1, v.land(cr.eq_(lit(cw_, (ncls - 1) as u64))));
    e.comb.push(if_(last, vec![set(&io.done_d, lit(1, 1))]));
    e.m.assign(result_o, res);
    e.finish()
}
