//! The DF engine: a sequencer and one op engine per kind of op, each its own module
//! (docs/engine.md). Everything they agree on — the memory map, the microprograms, the
//! schedule and the bus ABI — comes from [`crate::arch`].

pub mod build;
pub mod bus;
pub mod cen;
pub mod delta;
pub mod gemm_drain;
pub mod gemm_feed;
pub mod loss;
pub mod norm;
pub mod pred;
pub mod seq;
pub mod top;
pub mod update;

/// Every module of the engine for `arch`: the op engines, the sequencer, the bus port and
/// the top (the units they instantiate come from [`super::generate`]).
/// `fb_sub` is a deliberate defect for the mutation test: DELTA subtracts the feedback.
pub fn modules(
    arch: &crate::arch::Arch,
    units: &crate::fixed::model::Units,
    fb_sub: bool,
) -> Vec<crate::hdl::Module> {
    let engines = vec![
        seq::seq(arch),
        bus::bus(arch, units),
        norm::norm(arch, units),
        gemm_feed::gemm_feed(arch),
        gemm_drain::gemm_drain(arch),
        update::update(arch),
        cen::cen(arch),
        loss::loss(arch),
        delta::delta(arch, units, fb_sub),
        pred::pred(arch),
    ];
    let t = top::top(arch, &engines);
    let mut v = engines;
    v.push(t);
    v
}
