//! The DF engine (under reconstruction: `v1` is the monolithic engine being replaced by the
//! op-engine hierarchy of this folder).

pub mod build;
pub mod v1;
pub use v1::{counter, hyper, region, Layout, RUN_INFER, RUN_TRAIN};
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
