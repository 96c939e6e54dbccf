//! The engine's bus port (`dff_bus`, docs/protocol.md "engine interface"): host reads and
//! writes of the tensors that have a region ([`crate::arch::memmap::Region`]: bank above
//! the word bits), the hyper-parameters (η/B and the run's batch size) and the counters.
//! It answers only while the sequencer is idle. A request is decoded into registers first
//! (`StDecode`: region, range and value checks are compares of 32- and 64-bit inputs, too
//! deep for the cycle that acts on them); a write is acknowledged the cycle after that, a
//! read once the data is back (the memory's latency, the bank select, the region select).
//! The decoder holds a request's inputs until its acknowledge, so the registered decode
//! always describes the request being served.

use super::build::*;
use crate::arch::abi::{counter, hyper, region};
use crate::arch::Arch;
use crate::fixed::model::Units;
use crate::fixed::LearningRate;
use crate::hdl::*;
use crate::rtl::util::{ext, Sig};

pub fn bus(arch: &Arch, units: &Units) -> Module {
    let s = &arch.shape;
    let (_, sw, _) = seq_widths(arch);
    let mut e = Eng::new(
        "dff_bus",
        "Bus port: host access to the tensors with a region, the hyper-parameters and the\n\
         counters, while the sequencer is idle.",
    );
    let req = e.m.input("bus_req_i", 1);
    let we = e.m.input("bus_we_i", 1);
    let rg = e.m.input("bus_region_i", 8);
    let addr = e.m.input("bus_addr_i", 32);
    let wdata = e.m.input("bus_wdata_i", 64);
    let ack_o = e.m.output("bus_ack_o", 1);
    let err_o = e.m.output("bus_err_o", 1);
    let rdata_o = e.m.output("bus_rdata_o", 64);
    let idle_i = e.m.input("idle_i", 1);
    let busy_i = e.m.input("busy_i", 1);
    let issue_i = e.m.input("array_issue_i", 1);
    let end_i = e.m.input("run_end_i", 1);
    let lr_o = e.m.output("lr_o", s.lr_w);
    let batch_o = e.m.output("batch_o", sw);

    let vis: Vec<crate::arch::memmap::Tensor> = arch
        .mem
        .tensors
        .iter()
        .filter(|t| t.region.is_some())
        .cloned()
        .collect();
    let ports: Vec<(MemPort, crate::arch::memmap::Region)> = vis
        .iter()
        .map(|t| {
            let r = t.region.expect("region");
            (e.mem_port(t, r.writable, true), r)
        })
        .collect();

    let (st, st_d) = e.reg("st", 3, 0);
    for (i, n) in ["StIdle", "StDecode", "StRead"].iter().enumerate() {
        e.m.localparam(n, lit(3, i as u64));
    }
    let in_st = |n: &str| st.clone().eq_(id(n));
    let (ack, ack_d) = e.reg("ack", 1, 0);
    let (err, err_d) = e.reg("err", 1, 0);
    let (rd, rd_d) = e.reg("rdata", 64, 0);
    let (wc, wc_d) = e.reg("wait", 3, 0);
    let lr_init = match units.lr {
        LearningRate::Mul { value, .. } => value as u64,
        LearningRate::Shift(_) => 1,
    };
    let (lr, lr_d) = e.reg("lr", s.lr_w, lr_init);
    let (batch, batch_d) = e.reg("batch", sw, arch.batch as u64);
    let (cyc, cyc_d) = e.reg("cnt_cycles", 64, 0);
    let (cbusy, cbusy_d) = e.reg("cnt_busy", 64, 0);
    let (carr, carr_d) = e.reg("cnt_array", 64, 0);
    let (cruns, cruns_d) = e.reg("cnt_runs", 64, 0);
    e.comb.push(set(&cyc_d, &cyc + lit(64, 1)));
    e.comb.push(if_(
        busy_i.clone(),
        vec![set(&cbusy_d, &cbusy + lit(64, 1))],
    ));
    e.comb
        .push(if_(issue_i.clone(), vec![set(&carr_d, &carr + lit(64, 1))]));
    e.comb
        .push(if_(end_i.clone(), vec![set(&cruns_d, &cruns + lit(64, 1))]));

    let take = e.wire(
        "take",
        1,
        req.clone()
            .land(in_st("StIdle"))
            .land(idle_i.clone())
            .land(ack.clone().lnot()),
    );
    let go = e.wire("go", 1, in_st("StDecode"));
    let wr = go.clone().land(we.clone());
    let rdg = go.clone().land(we.clone().lnot());
    // Decode: a tensor region, in range.
    let mut ok = lit(1, 0);
    let mut hits = Vec::new();
    for (p, r) in &ports {
        let aw = p.aw;
        let hit = e.wire(
            &format!("hit_{}", p.name),
            1,
            rg.clone().eq_(lit(8, u64::from(r.code))),
        );
        let depth = arch
            .mem
            .tensors
            .iter()
            .find(|t| t.name == p.name)
            .map_or(1, |t| t.depth);
        let word = addr.slice(aw - 1, 0);
        let valid = if p.banks > 1 {
            let bank = addr.slice(aw + 7, aw);
            let hi_ok = if aw + 8 < 32 {
                addr.slice(31, aw + 8).eq_(lit(32 - aw - 8, 0))
            } else {
                lit(1, 1)
            };
            hit.clone()
                .land(bank.lt_(lit(8, p.banks as u64)))
                .land(zext(word.clone(), aw, aw + 1).lt_(lit(aw + 1, depth as u64)))
                .land(hi_ok)
        } else {
            hit.clone().land(addr.clone().lt_(lit(32, depth as u64)))
        };
        let valid = e.wire(&format!("valid_{}", p.name), 1, valid);
        ok = ok.lor(if r.writable {
            valid.clone()
        } else {
            valid.clone().land(we.clone().lnot())
        });
        let valid = e.pipe(&format!("dec_valid_{}", p.name), valid, 1);
        let bank_oh = if p.banks > 1 {
            onehot(&addr.slice(aw + 7, aw), 8, p.banks)
        } else {
            lit(1, 1)
        };
        if r.writable {
            let a = (0..p.banks).map(|_| word.clone()).collect();
            let d = (0..p.banks).map(|_| wdata.slice(p.width - 1, 0)).collect();
            e.write(p, wr.clone().land(valid.clone()), bank_oh, a, d);
        }
        e.read_all(p, rdg.clone().land(valid.clone()), word.clone());
        let hit = e.pipe(&format!("dec_hit_{}", p.name), hit, 1);
        hits.push((p.clone(), *r, hit));
    }
    let hyper_lr = rg
        .clone()
        .eq_(lit(8, u64::from(region::HYPER)))
        .land(addr.clone().eq_(lit(32, u64::from(hyper::LR))));
    let hyper_b = rg
        .clone()
        .eq_(lit(8, u64::from(region::HYPER)))
        .land(addr.clone().eq_(lit(32, u64::from(hyper::BATCH))));
    let b_ok = we.clone().lnot().lor(
        wdata
            .clone()
            .ge_(lit(64, 1))
            .land(wdata.clone().le_(lit(64, arch.batch as u64))),
    );
    let cnt = rg
        .clone()
        .eq_(lit(8, u64::from(region::COUNTERS)))
        .land(addr.clone().lt_(lit(32, u64::from(counter::COUNT))))
        .land(we.clone().lnot());
    let okw = e.wire(
        "ok",
        1,
        ok.lor(hyper_lr.clone())
            .lor(hyper_b.clone().land(b_ok))
            .lor(cnt.clone()),
    );
    let special = e.wire(
        "special",
        1,
        hyper_lr.clone().lor(hyper_b.clone()).lor(cnt.clone()),
    );
    let okw = e.pipe("dec_ok", okw, 1);
    let special = e.pipe("dec_special", special, 1);
    let hyper_lr = e.pipe("dec_hyper_lr", hyper_lr, 1);
    let hyper_b = e.pipe("dec_hyper_b", hyper_b, 1);
    // Read data: the held address picks the bank; the region picks the tensor.
    let (sval, sval_d) = e.reg("special_value", 64, 0);
    let (isspec, isspec_d) = e.reg("special_read", 1, 0);
    let ca = addr.slice(1, 0);
    let cval = mux(
        ca.clone().eq_(lit(2, 0)),
        cyc.clone(),
        mux(
            ca.clone().eq_(lit(2, 1)),
            cbusy.clone(),
            mux(ca.eq_(lit(2, 2)), carr.clone(), cruns.clone()),
        ),
    );
    let spec_now = mux(
        hyper_lr.clone(),
        zext(lr.clone(), s.lr_w, 64),
        mux(hyper_b.clone(), zext(batch.clone(), sw, 64), cval),
    );
    let mut picked = Vec::new();
    for (p, r, hit) in &hits {
        let aw = p.aw;
        let v = if p.banks > 1 {
            pick(&addr.slice(aw + 7, aw), 8, p.banks, |b| p.rdata(b))
        } else {
            p.rdata(0)
        };
        let v = e.wire(&format!("rd_{}", p.name), p.width, v);
        let x = if r.signed {
            ext(&Sig::new(v, p.width, true), 64).unsigned()
        } else {
            zext(v, p.width, 64)
        };
        // Registered per tensor (the bank select), gated by the region.
        picked.push(e.pipe(
            &format!("rd_{}_sel", p.name),
            mux(hit.clone(), x, lit(64, 0)),
            64,
        ));
    }
    let mem_rd = picked.into_iter().fold(lit(64, 0), |a, x| a | x);
    // Read: READ_LAT for the data, one for the bank select, then the answer.
    let rwait = crate::arch::schedule::READ_LAT;
    e.comb.push(set(&ack_d, lit(1, 0)));
    e.comb.push(case(
        st.clone(),
        vec![
            arm(
                id("StIdle"),
                vec![if_(take.clone(), vec![set(&st_d, id("StDecode"))])],
            ),
            arm(
                id("StDecode"),
                vec![
                    set(&st_d, id("StIdle")),
                    if_(
                        go.clone(),
                        vec![if_(
                            okw.clone().lnot().lor(we.clone()),
                            vec![set(&ack_d, lit(1, 1)), set(&err_d, okw.clone().lnot())],
                        )
                        .else_(vec![
                            set(&st_d, id("StRead")),
                            set(&wc_d, lit(3, 0)),
                            set(&isspec_d, special.clone()),
                            set(&sval_d, spec_now),
                        ])],
                    ),
                    if_(
                        wr.clone().land(hyper_lr.clone()),
                        vec![set(&lr_d, wdata.slice(s.lr_w - 1, 0))],
                    ),
                    if_(
                        wr.clone().land(hyper_b.clone()).land(okw.clone()),
                        vec![set(&batch_d, wdata.slice(sw - 1, 0))],
                    ),
                ],
            ),
            arm(
                id("StRead"),
                vec![if_(
                    wc.clone().eq_(lit(3, rwait)),
                    vec![
                        set(&st_d, id("StIdle")),
                        set(&ack_d, lit(1, 1)),
                        set(&err_d, lit(1, 0)),
                        set(&rd_d, mux(isspec.clone(), sval.clone(), mem_rd)),
                    ],
                )
                .else_(vec![set(&wc_d, &wc + lit(3, 1))])],
            ),
        ],
        vec![set(&st_d, id("StIdle"))],
    ));
    e.m.assign(ack_o, ack);
    e.m.assign(err_o, err);
    e.m.assign(rdata_o, rd);
    e.m.assign(lr_o, lr);
    e.m.assign(batch_o, batch);
    e.finish()
}
