//! The engine top (`dff_engine`): instances and nets only. The sequencer, the bus port and
//! the op engines (one module each), the systolic array with its input skews, and one
//! `dff_bram` per bank of every tensor of the memory map. A memory port takes the OR of
//! its clients' registered requests (each is zero while its client is idle; one client
//! is active at a time); which engines are a tensor's clients is part of the memory map,
//! and the wiring checks that every engine's ports match it.

use super::build::seq_widths;
use crate::arch::memmap::Client;
use crate::arch::program::Engine;
use crate::arch::Arch;
use crate::hdl::*;
use std::collections::BTreeMap;

/// The engine's port list (docs/protocol.md, "engine interface"): the same for every
/// config, so `dff_system` and the bus-level harness do not depend on it.
fn ports(m: &mut Module) {
    m.input("clk_i", 1);
    m.input("rst_i", 1);
    m.input("bus_req_i", 1);
    m.input("bus_we_i", 1);
    m.input("bus_region_i", 8);
    m.input("bus_addr_i", 32);
    m.input("bus_wdata_i", 64);
    m.output("bus_ack_o", 1);
    m.output("bus_err_o", 1);
    m.output("bus_rdata_o", 64);
    m.input("run_i", 1);
    m.input("run_op_i", 8);
    m.output("run_done_o", 1);
    m.output("run_status_o", 8);
    m.output("run_result_o", 8);
    m.output("busy_o", 1);
}

/// The module of each memory client.
fn client_module(c: Client) -> &'static str {
    match c {
        Client::Bus => "dff_bus",
        Client::Init => "dff_seq",
        Client::Norm => "dff_op_norm",
        Client::GemmFeed => "dff_gemm_feed",
        Client::GemmDrain => "dff_gemm_drain",
        Client::Update => "dff_op_update",
        Client::Cen => "dff_op_cen",
        Client::Loss => "dff_op_loss",
        Client::Delta => "dff_op_delta",
        Client::Pred => "dff_op_pred",
    }
}

/// The top, given the op-engine modules (to read their memory ports).
pub fn top(arch: &Arch, engines: &[Module]) -> Module {
    let s = &arch.shape;
    let (rr, cc) = (arch.rows, arch.cols);
    let d = &arch.dims;
    let mut m = Module::new("dff_engine").doc(format!(
        "DF training engine: {} network on a {rr}x{cc} array, batch {}, {} hypotheses per\n\
         sample. Sequencer, bus port, op engines, array and block RAMs (docs/engine.md;\n\
         dfforge src/rtl/engine/).",
        d.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("-"),
        arch.batch,
        arch.hyps
    ));
    ports(&mut m);
    let (lw, sw, rw) = seq_widths(arch);
    let w = |m: &mut Module, n: &str, width: u32| m.wire(n, width);
    // Sequencer nets.
    for (n, width) in [
        ("kind", 4),
        ("layer", lw),
        ("infer", 1),
        ("nsamp", sw),
        ("nrows", rw),
        ("idle", 1),
        ("busy", 1),
        ("run_end", 1),
        ("batch", sw),
        ("lr", s.lr_w),
        ("pred_result", 8),
        ("array_issue", 1),
        ("tile", 1),
    ] {
        w(&mut m, n, width);
    }
    for eng in Engine::ALL {
        w(&mut m, &format!("{}_start", eng.name()), 1);
        w(&mut m, &format!("{}_done", eng.name()), 1);
    }
    let module = |name: &str| -> &Module {
        engines
            .iter()
            .find(|x| x.name == name)
            .unwrap_or_else(|| panic!("no module {name}"))
    };
    // Memory port nets of every client instance: `<client>_<tensor>_<signal>`.
    let mut by_tensor: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut conns: BTreeMap<&'static str, Vec<(String, Expr)>> = BTreeMap::new();
    let clients = [
        Client::Bus,
        Client::Init,
        Client::Norm,
        Client::GemmFeed,
        Client::GemmDrain,
        Client::Update,
        Client::Cen,
        Client::Loss,
        Client::Delta,
        Client::Pred,
    ];
    for c in clients {
        let md = module(client_module(c));
        let mut touched = Vec::new();
        for t in &arch.mem.tensors {
            let writes = md.find_port(&format!("{}_we_o", t.name)).is_some();
            let reads = md.find_port(&format!("{}_raddr_o", t.name)).is_some();
            assert_eq!(
                writes,
                t.writers.contains(&c),
                "{} writes {} against the memory map",
                md.name,
                t.name
            );
            assert_eq!(
                reads,
                t.readers.contains(&c),
                "{} reads {} against the memory map",
                md.name,
                t.name
            );
            let nb = t.banks() as u32;
            let p = c.prefix();
            let mut sigs = Vec::new();
            if writes {
                sigs.push(("we", nb));
                sigs.push(("waddr", t.aw() * nb));
                sigs.push(("wdata", t.width * nb));
            }
            if reads {
                sigs.push(("raddr", t.aw() * nb));
            }
            for (sig, width) in sigs {
                let net = format!("{p}_{}_{sig}", t.name);
                w(&mut m, &net, width);
                conns
                    .entry(client_module(c))
                    .or_default()
                    .push((format!("{}_{sig}_o", t.name), id(&net)));
            }
            if reads {
                conns.entry(client_module(c)).or_default().push((
                    format!("{}_rdata_i", t.name),
                    id(format!("{}_rdata", t.name)),
                ));
            }
            if writes || reads {
                touched.push(t.name.clone());
            }
            if writes {
                by_tensor
                    .entry(t.name.clone())
                    .or_default()
                    .push(p.to_string());
            }
        }
        let _ = touched;
    }
    // Memories: each bank's ports are the OR of its clients'.
    for t in &arch.mem.tensors {
        let nb = t.banks() as u32;
        let aw = t.aw();
        for (sig, width, list) in [
            ("we", nb, &t.writers),
            ("waddr", aw * nb, &t.writers),
            ("wdata", t.width * nb, &t.writers),
            ("raddr", aw * nb, &t.readers),
        ] {
            let net = w(&mut m, &format!("{}_{sig}", t.name), width);
            let or = list
                .iter()
                .map(|c| id(format!("{}_{}_{sig}", c.prefix(), t.name)))
                .reduce(|a, b| a | b)
                .unwrap_or_else(|| lit(width, 0));
            m.assign(&net, or);
        }
        let rdata = w(&mut m, &format!("{}_rdata", t.name), t.width * nb);
        let inst = |b: Option<Expr>| {
            let part = |x: &str, width: u32| match &b {
                None => id(format!("{}_{x}", t.name)),
                Some(b) => id(format!("{}_{x}", t.name))
                    .part(b * int(u64::from(width)), int(u64::from(width))),
            };
            let we = match &b {
                None => id(format!("{}_we", t.name)),
                Some(b) => id(format!("{}_we", t.name)).idx(b.clone()),
            };
            Instance::new(
                "dff_bram",
                if b.is_some() {
                    "u_bank".to_string()
                } else {
                    format!("u_{}", t.name)
                },
            )
            .param("W", int(u64::from(t.width)))
            .param("AW", int(u64::from(aw)))
            .param("DEPTH", int(t.depth as u64))
            .conn("clk_i", id("clk_i"))
            .conn("we_i", we)
            .conn("waddr_i", part("waddr", aw))
            .conn("wdata_i", part("wdata", t.width))
            .conn("raddr_i", part("raddr", aw))
            .conn("rdata_o", part("rdata", t.width))
        };
        if nb == 1 {
            m.instance(inst(None));
        } else {
            let gv = format!("b_{}", t.name);
            m.genvar(&gv);
            m.gen_for(
                &gv,
                int(0),
                int(u64::from(nb)),
                &format!("g_{}", t.name),
                |sc, b| {
                    sc.instance(inst(Some(b)));
                },
            );
        }
        let _ = &rdata;
    }
    // The sequencer.
    let mut seq = Instance::new("dff_seq", "u_seq")
        .conn("clk_i", id("clk_i"))
        .conn("rst_i", id("rst_i"))
        .conn("run_i", id("run_i"))
        .conn("run_op_i", id("run_op_i"))
        .conn("run_done_o", id("run_done_o"))
        .conn("run_status_o", id("run_status_o"))
        .conn("run_result_o", id("run_result_o"))
        .conn("busy_o", id("busy"))
        .conn("idle_o", id("idle"))
        .conn("run_end_o", id("run_end"))
        .conn("batch_i", id("batch"))
        .conn("pred_result_i", id("pred_result"))
        .conn("kind_o", id("kind"))
        .conn("layer_o", id("layer"))
        .conn("infer_o", id("infer"))
        .conn("nsamp_o", id("nsamp"))
        .conn("nrows_o", id("nrows"));
    for eng in Engine::ALL {
        seq = seq
            .conn(
                format!("{}_start_o", eng.name()),
                id(format!("{}_start", eng.name())),
            )
            .conn(
                format!("{}_done_i", eng.name()),
                id(format!("{}_done", eng.name())),
            );
    }
    for (p, e) in conns.remove("dff_seq").unwrap_or_default() {
        seq = seq.conn(p, e);
    }
    m.instance(seq);
    m.assign(id("busy_o"), id("busy"));
    // The bus port.
    let mut bus = Instance::new("dff_bus", "u_bus")
        .conn("clk_i", id("clk_i"))
        .conn("rst_i", id("rst_i"))
        .conn("bus_req_i", id("bus_req_i"))
        .conn("bus_we_i", id("bus_we_i"))
        .conn("bus_region_i", id("bus_region_i"))
        .conn("bus_addr_i", id("bus_addr_i"))
        .conn("bus_wdata_i", id("bus_wdata_i"))
        .conn("bus_ack_o", id("bus_ack_o"))
        .conn("bus_err_o", id("bus_err_o"))
        .conn("bus_rdata_o", id("bus_rdata_o"))
        .conn("idle_i", id("idle"))
        .conn("busy_i", id("busy"))
        .conn("array_issue_i", id("array_issue"))
        .conn("run_end_i", id("run_end"))
        .conn("lr_o", id("lr"))
        .conn("batch_o", id("batch"));
    for (p, e) in conns.remove("dff_bus").unwrap_or_default() {
        bus = bus.conn(p, e);
    }
    m.instance(bus);
    // The op engines.
    let op = |name: &str, inst: &str, eng: &str, done: bool| {
        let mut i = Instance::new(name, inst)
            .conn("clk_i", id("clk_i"))
            .conn("rst_i", id("rst_i"))
            .conn("start_i", id(format!("{eng}_start")))
            .conn("kind_i", id("kind"))
            .conn("layer_i", id("layer"))
            .conn("infer_i", id("infer"))
            .conn("nsamp_i", id("nsamp"))
            .conn("nrows_i", id("nrows"));
        if done {
            i = i.conn("done_o", id(format!("{eng}_done")));
        }
        i
    };
    // Array edges.
    let (aw_, bw_, accw) = (s.a_w, s.b_w, s.acc_w);
    for (n, width) in [
        ("west", aw_ * rr as u32),
        ("north", bw_ * cc as u32),
        ("av", 1),
        ("ac", 1),
        ("al", 1),
        ("west_sk", aw_ * rr as u32),
        ("north_sk", bw_ * cc as u32),
        ("wv_sk", rr as u32),
        ("wc_sk", rr as u32),
        ("wl_sk", rr as u32),
        ("acc_all", accw * (rr * cc) as u32),
        ("grad_v", 1),
        ("grad_lanes", accw * rr as u32),
        ("grad_lv", rr as u32),
        (
            "grad_rot",
            crate::rtl::engine::build::cw(rr.max(cc).max(arch.lanes.h_banks)),
        ),
    ] {
        w(&mut m, n, width);
    }
    let wmax = (0..arch.layers())
        .map(|l| arch.mem.t(crate::arch::memmap::TensorId::W(l)).aw())
        .max()
        .unwrap_or(1);
    w(&mut m, "grad_word", wmax);
    let mut with = |m: &mut Module, mut i: Instance, module: &'static str| {
        for (p, e) in conns.remove(module).unwrap_or_default() {
            i = i.conn(p, e);
        }
        m.instance(i);
    };
    with(
        &mut m,
        op("dff_op_norm", "u_norm", "norm", true),
        "dff_op_norm",
    );
    with(
        &mut m,
        op("dff_gemm_feed", "u_feed", "gemm", false)
            .conn("west_o", id("west"))
            .conn("north_o", id("north"))
            .conn("av_o", id("av"))
            .conn("ac_o", id("ac"))
            .conn("al_o", id("al"))
            .conn("issue_o", id("array_issue"))
            .conn("tile_o", id("tile")),
        "dff_gemm_feed",
    );
    with(
        &mut m,
        op("dff_gemm_drain", "u_drain", "gemm", true)
            .conn("tile_i", id("tile"))
            .conn("acc_i", id("acc_all"))
            .conn("grad_v_o", id("grad_v"))
            .conn("grad_lanes_o", id("grad_lanes"))
            .conn("grad_lv_o", id("grad_lv"))
            .conn("grad_word_o", id("grad_word"))
            .conn("grad_rot_o", id("grad_rot")),
        "dff_gemm_drain",
    );
    with(
        &mut m,
        op("dff_op_update", "u_update", "update", true)
            .conn("lr_i", id("lr"))
            .conn("grad_v_i", id("grad_v"))
            .conn("grad_lanes_i", id("grad_lanes"))
            .conn("grad_lv_i", id("grad_lv"))
            .conn("grad_word_i", id("grad_word"))
            .conn("grad_rot_i", id("grad_rot")),
        "dff_op_update",
    );
    with(&mut m, op("dff_op_cen", "u_cen", "cen", true), "dff_op_cen");
    with(
        &mut m,
        op("dff_op_loss", "u_loss", "loss", true),
        "dff_op_loss",
    );
    with(
        &mut m,
        op("dff_op_delta", "u_delta", "delta", true),
        "dff_op_delta",
    );
    with(
        &mut m,
        op("dff_op_pred", "u_pred", "pred", true).conn("result_o", id("pred_result")),
        "dff_op_pred",
    );
    assert!(
        conns.is_empty(),
        "memory ports of no instance: {:?}",
        conns.keys()
    );
    // Skews and the array.
    let skew = |m: &mut Module, name: &str, lanes: usize, width: u32, x: Expr, y: &str| {
        m.instance(
            Instance::new("dff_skew", format!("u_{name}_skew"))
                .param("LANES", int(lanes as u64))
                .param("W", int(u64::from(width)))
                .conn("clk_i", id("clk_i"))
                .conn("x_i", x)
                .conn("y_o", id(y)),
        );
    };
    skew(&mut m, "west", rr, aw_, id("west"), "west_sk");
    skew(&mut m, "north", cc, bw_, id("north"), "north_sk");
    skew(
        &mut m,
        "wv",
        rr,
        1,
        repl(int(rr as u64), [id("av")]),
        "wv_sk",
    );
    skew(
        &mut m,
        "wc",
        rr,
        1,
        repl(int(rr as u64), [id("ac")]),
        "wc_sk",
    );
    skew(
        &mut m,
        "wl",
        rr,
        1,
        repl(int(rr as u64), [id("al")]),
        "wl_sk",
    );
    for (n, width) in [
        ("unused_east", aw_ * rr as u32),
        ("unused_ev", rr as u32),
        ("unused_ec", rr as u32),
        ("unused_el", rr as u32),
        ("unused_south", bw_ * cc as u32),
    ] {
        w(&mut m, n, width);
    }
    m.instance(
        Instance::new("dff_array", "u_array")
            .param("R", int(rr as u64))
            .param("C", int(cc as u64))
            .conn("clk_i", id("clk_i"))
            .conn("rst_i", id("rst_i"))
            .conn("west_i", id("west_sk"))
            .conn("wv_i", id("wv_sk"))
            .conn("wc_i", id("wc_sk"))
            .conn("wl_i", id("wl_sk"))
            .conn("north_i", id("north_sk"))
            .conn("east_o", id("unused_east"))
            .conn("ev_o", id("unused_ev"))
            .conn("ec_o", id("unused_ec"))
            .conn("el_o", id("unused_el"))
            .conn("south_o", id("unused_south"))
            .conn("acc_o", id("acc_all")),
    );
    let _ = by_tensor;
    m
}
