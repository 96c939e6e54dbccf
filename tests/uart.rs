//! The UART units (`dff_uart_rx`, `dff_uart_tx`): `verilator --lint-only -Wall` with no output,
//! yosys synthesis (generic and ECP5), and Verilator co-simulation of tx→rx loopbacks at several
//! CLKS_PER_BIT (random bytes with random gaps, back-to-back bytes at exactly 10 bit times each)
//! and of the receiver alone on a line driven bit by bit from Rust (±3% baud error, glitches,
//! framing errors, a held-low line). Skips with a notice when a tool is missing (fails instead
//! under DFFORGE_REQUIRE_TOOLS).

use dfforge::hdl::*;
use dfforge::rtl::uart;
use dfforge::sim::{out_index, Build, Stim};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::process::Command;

mod common;
use common::{tool, write_all, Line};

#[test]
fn uart_lints_clean_and_synthesises() {
    let ms = uart::modules(217);
    let tmp = tempfile::tempdir().unwrap();
    let files = write_all(tmp.path(), &ms);
    if tool("verilator") {
        for (m, f) in ms.iter().zip(&files) {
            for cpb in [217, 4] {
                common::lint(
                    tmp.path(),
                    &m.name,
                    std::slice::from_ref(f),
                    &[format!("-GCLKS_PER_BIT={cpb}")],
                );
            }
        }
    }
    if tool("yosys") {
        for m in &ms {
            for script in ["synth", "synth_ecp5"] {
                let out = Command::new("yosys")
                    .current_dir(tmp.path())
                    .args([
                        "-q",
                        "-p",
                        &format!(
                            "read_verilog {}; {script} -top {}; stat",
                            files.join(" "),
                            m.name
                        ),
                    ])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "yosys {script} {}: {}{}",
                    m.name,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// Loopback channels (tx → rx at the same CLKS_PER_BIT) and one receiver on a raw line.
const CHANNELS: [u32; 4] = [4, 5, 8, 13];
const RAW_CPB: u32 = 8;

/// Test top: one tx→rx loopback per entry of [`CHANNELS`], and a receiver on `line_i`.
fn loop_top() -> Vec<Module> {
    let mut m = Module::new("uart_loop_tb").doc("UART loopbacks at several CLKS_PER_BIT.");
    let clk = m.input("clk_i", 1);
    let rst = m.input("rst_i", 1);
    for (k, &cpb) in CHANNELS.iter().enumerate() {
        let d = m.input(&format!("data{k}_i"), 8);
        let v = m.input(&format!("valid{k}_i"), 1);
        let r = m.output(&format!("ready{k}_o"), 1);
        let rd = m.output(&format!("rxdata{k}_o"), 8);
        let rv = m.output(&format!("rxvalid{k}_o"), 1);
        let fe = m.output(&format!("ferr{k}_o"), 1);
        let line = m.wire(&format!("line{k}"), 1);
        let tb = m.wire(&format!("unused_txbusy{k}"), 1);
        let rb = m.wire(&format!("unused_rxbusy{k}"), 1);
        m.instance(
            Instance::new("dff_uart_tx", format!("u_tx{k}"))
                .param("CLKS_PER_BIT", cpb)
                .conn("clk_i", &clk)
                .conn("rst_i", &rst)
                .conn("data_i", d)
                .conn("valid_i", v)
                .conn("ready_o", r)
                .conn("tx_o", &line)
                .conn("busy_o", tb),
        );
        m.instance(
            Instance::new("dff_uart_rx", format!("u_rx{k}"))
                .param("CLKS_PER_BIT", cpb)
                .conn("clk_i", &clk)
                .conn("rst_i", &rst)
                .conn("rx_i", &line)
                .conn("data_o", rd)
                .conn("valid_o", rv)
                .conn("frame_err_o", fe)
                .conn("busy_o", rb),
        );
    }
    let line = m.input("line_i", 1);
    let d = m.output("rawdata_o", 8);
    let v = m.output("rawvalid_o", 1);
    let fe = m.output("rawferr_o", 1);
    let b = m.output("rawbusy_o", 1);
    m.instance(
        Instance::new("dff_uart_rx", "u_raw")
            .param("CLKS_PER_BIT", RAW_CPB)
            .conn("clk_i", &clk)
            .conn("rst_i", &rst)
            .conn("rx_i", line)
            .conn("data_o", d)
            .conn("valid_o", v)
            .conn("frame_err_o", fe)
            .conn("busy_o", b),
    );
    let mut ms = uart::modules(217);
    ms.push(m);
    let lib: Vec<&Module> = ms.iter().collect();
    for m in &ms {
        check(m, &lib).unwrap_or_else(|e| panic!("{}: {e:?}", m.name));
    }
    ms
}

fn build() -> Option<Build> {
    common::built(Build::new(&loop_top(), "uart_loop_tb", &[]))
}

/// A byte sent by a loopback channel: when its valid goes high and its value.
#[derive(Clone, Copy, Debug)]
struct Send {
    start: usize,
    byte: u8,
}

/// The schedule of one channel: bytes with random gaps (every third one back to back). The
/// transmitter is idle (ready) whenever valid rises here, because the previous frame has ended:
/// byte i is taken in the cycle its valid rises, so valid is high for exactly that cycle.
fn schedule(rng: &mut ChaCha8Rng, cpb: u32, first: usize, end: usize) -> Vec<Send> {
    let frame = 10 * cpb as usize;
    let mut v = Vec::new();
    let mut t = first;
    // Edge bytes first, then random ones.
    let mut edge = [0x00u8, 0xff, 0x55, 0xaa, 0x01, 0x80].into_iter();
    while t + frame + 4 * (cpb as usize) < end {
        let byte = edge.next().unwrap_or_else(|| rng.gen());
        v.push(Send { start: t, byte });
        let gap = if v.len() % 3 == 0 || v.len() < 8 {
            0
        } else {
            rng.gen_range(1..3 * frame)
        };
        t += frame + gap;
    }
    v
}

/// What the raw receiver should report, in order.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum RxEvent {
    Byte(u8),
    FrameErr,
}

#[test]
fn uart_loopback_and_receiver_cosim() {
    let Some(b) = build() else {
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let reset = 3;
    let total = 14_000;

    // Loopback schedules.
    let mut scheds: Vec<Vec<Send>> = Vec::new();
    for &cpb in &CHANNELS {
        let first = reset + 1 + rng.gen_range(0..7);
        scheds.push(schedule(&mut rng, cpb, first, total));
    }

    // Raw line: good frames at -3%, exact and +3% baud, a glitch, a framing error, a break.
    let mut line = Line::default();
    let mut want_raw = Vec::new();
    line.idle(reset + 20);
    let p = f64::from(RAW_CPB);
    for (i, period) in [p, p * 0.97, p * 1.03].into_iter().enumerate() {
        for _ in 0..12 {
            let byte: u8 = rng.gen();
            line.frame(byte, period, true);
            want_raw.push(RxEvent::Byte(byte));
            // The next start bit right after the stop bit, or after a random pause.
            if i == 0 || rng.gen_bool(0.5) {
                line.idle(rng.gen_range(0..3 * RAW_CPB as usize));
            }
        }
    }
    // A glitch shorter than half a bit: ignored.
    line.low(RAW_CPB as usize / 2 - 1);
    line.idle(3 * RAW_CPB as usize);
    // A framing error (stop bit low), then the line recovers and a good byte follows.
    line.frame(0x3c, p, false);
    want_raw.push(RxEvent::FrameErr);
    line.idle(2 * RAW_CPB as usize);
    line.frame(0xc3, p, true);
    want_raw.push(RxEvent::Byte(0xc3));
    // A break: the line held low for 30 bit times gives one framing error, not a stream.
    line.low(30 * RAW_CPB as usize);
    want_raw.push(RxEvent::FrameErr);
    line.idle(RAW_CPB as usize);
    line.frame(0x5a, p, true);
    want_raw.push(RxEvent::Byte(0x5a));
    line.idle(4 * RAW_CPB as usize);
    assert!(line.level.len() < total, "raw line fits the run");

    let mut s = Stim::new(&b);
    for t in 0..total {
        let mut set: Vec<(String, i64)> = vec![("rst_i".into(), i64::from(t < reset))];
        set.push(("line_i".into(), i64::from(line.level_at(t))));
        for (k, sch) in scheds.iter().enumerate() {
            if let Some(x) = sch.iter().find(|x| x.start == t) {
                set.push((format!("valid{k}_i"), 1));
                set.push((format!("data{k}_i"), i64::from(x.byte)));
            } else {
                // Data present while valid is low must be ignored.
                set.push((format!("data{k}_i"), rng.gen_range(0..256)));
            }
        }
        let refs: Vec<(&str, i64)> = set.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        s.cycle_v(&refs);
    }
    let out = s.run().unwrap();

    for (k, (&cpb, sch)) in CHANNELS.iter().zip(&scheds).enumerate() {
        let (ri, di, vi, fi) = (
            out_index(&b, &format!("ready{k}_o")),
            out_index(&b, &format!("rxdata{k}_o")),
            out_index(&b, &format!("rxvalid{k}_o")),
            out_index(&b, &format!("ferr{k}_o")),
        );
        // Ready in the cycle before each byte's valid (outputs are read after the edge).
        for x in sch {
            assert_eq!(
                out[x.start - 1][ri].field(0, 1, false),
                1,
                "channel {k} (CLKS_PER_BIT={cpb}): tx not ready for byte at cycle {}",
                x.start
            );
        }
        let got: Vec<(usize, u8)> = out
            .iter()
            .enumerate()
            .filter(|(_, l)| l[vi].field(0, 1, false) == 1)
            .map(|(t, l)| (t, l[di].field(0, 8, false) as u8))
            .collect();
        let ferr = out.iter().filter(|l| l[fi].field(0, 1, false) == 1).count();
        assert_eq!(ferr, 0, "channel {k} (CLKS_PER_BIT={cpb}): framing errors");
        let sent: Vec<u8> = sch.iter().map(|x| x.byte).collect();
        let recv: Vec<u8> = got.iter().map(|x| x.1).collect();
        assert_eq!(recv, sent, "channel {k} (CLKS_PER_BIT={cpb}): bytes");
        // Each byte arrives a fixed latency after it was sent: back-to-back bytes are exactly
        // 10 bit times apart at the receiver too.
        let lat: Vec<usize> = got.iter().zip(sch).map(|(g, x)| g.0 - x.start).collect();
        assert!(
            lat.iter().all(|&l| l == lat[0]),
            "channel {k} (CLKS_PER_BIT={cpb}): latencies {lat:?}"
        );
        let b2b = sch
            .windows(2)
            .filter(|w| w[1].start - w[0].start == 10 * cpb as usize)
            .count();
        assert!(b2b >= 5, "channel {k}: only {b2b} back-to-back pairs");
        eprintln!(
            "channel {k} CLKS_PER_BIT={cpb}: {} bytes ({b2b} back to back), latency {} cycles",
            sent.len(),
            lat[0]
        );
    }

    let (di, vi, fi) = (
        out_index(&b, "rawdata_o"),
        out_index(&b, "rawvalid_o"),
        out_index(&b, "rawferr_o"),
    );
    let got_raw: Vec<RxEvent> = out
        .iter()
        .filter_map(|l| {
            let v = l[vi].field(0, 1, false) == 1;
            let f = l[fi].field(0, 1, false) == 1;
            assert!(!(v && f), "valid and framing error together");
            if v {
                Some(RxEvent::Byte(l[di].field(0, 8, false) as u8))
            } else if f {
                Some(RxEvent::FrameErr)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(got_raw, want_raw, "raw receiver events");
    eprintln!("raw receiver: {} events as expected", want_raw.len());
}
