//! The ULX3S board top (`dff_ulx3s_top`) around the echo core `dff_echo_core` (each received
//! byte + 1 is sent back): lint-clean at its real parameters and at the simulation's small ones, synthesises
//! for ECP5, and in co-simulation, driven at the pins bit by bit from Rust, it resets on power-up
//! and on btn[1], echoes bytes through both UARTs, and lights its LEDs (heartbeat, rx/tx
//! activity, sticky framing error, reset). Skips with a notice when a tool is missing.

use dfforge::hdl::*;
use dfforge::rtl::board::{self, BoardOpts, ULX3S_TOP};
use dfforge::sim::{out_index, Build, Stim};
use std::process::Command;

mod common;
use common::{decode, tool, write_all, Line};

const CPB: u32 = 8;
const POR_W: u32 = 3;
const BLINK_W: u32 = 6;
const STRETCH_W: u32 = 5;

/// The board modules, the echo core and a wrapper that overrides the top's parameters with
/// small values and gives it a `clk_i` for the per-cycle harness.
fn modules() -> Vec<Module> {
    let core = board::echo_core();
    let mut ms = board::ulx3s_modules(&core, &BoardOpts::default()).unwrap();
    ms.push(core);
    let mut w = Module::new("board_tb").doc("dff_ulx3s_top at simulation parameters.");
    let clk = w.input("clk_i", 1);
    let btn = w.input("btn_i", 7);
    let line_i = w.input("line_i", 1);
    let line_o = w.output("line_o", 1);
    let led = w.output("led_o", 8);
    w.instance(
        Instance::new(ULX3S_TOP, "u_top")
            .param("CLKS_PER_BIT", CPB)
            .param("POR_W", POR_W)
            .param("BLINK_W", BLINK_W)
            .param("STRETCH_W", STRETCH_W)
            .conn("clk_25mhz", clk)
            .conn("btn", btn)
            .conn("ftdi_txd", line_i)
            .conn("ftdi_rxd", line_o)
            .conn("led", led),
    );
    ms.push(w);
    let lib: Vec<&Module> = ms.iter().collect();
    for m in &ms {
        check(m, &lib).unwrap_or_else(|e| panic!("{}: {e:?}", m.name));
    }
    ms
}

#[test]
fn board_top_lints_clean_and_synthesises() {
    let ms = modules();
    let tmp = tempfile::tempdir().unwrap();
    let files = write_all(tmp.path(), &ms);
    if tool("verilator") {
        common::lint(tmp.path(), ULX3S_TOP, &files, &[]);
        common::lint(
            tmp.path(),
            ULX3S_TOP,
            &files,
            &[
                format!("-GCLKS_PER_BIT={CPB}"),
                format!("-GPOR_W={POR_W}"),
                format!("-GBLINK_W={BLINK_W}"),
                format!("-GSTRETCH_W={STRETCH_W}"),
            ],
        );
    }
    if tool("yosys") {
        let out = Command::new("yosys")
            .current_dir(tmp.path())
            .args([
                "-q",
                "-p",
                &format!(
                    "read_verilog {}; synth_ecp5 -top {ULX3S_TOP}; tee -o stat.txt stat",
                    files.join(" ")
                ),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "yosys: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stat = std::fs::read_to_string(tmp.path().join("stat.txt")).unwrap();
        assert!(stat.contains("TRELLIS_FF"), "{stat}");
    }
}

/// A core with the optional `busy_o` (led[5]) and another extra output lints clean too.
#[test]
fn board_top_with_extra_core_outputs_lints_clean() {
    if !tool("verilator") {
        return;
    }
    let mut core = board::echo_core();
    let b = core.output("busy_o", 1);
    core.assign(b, id("full_q"));
    let d = core.output("dbg_o", 8);
    core.assign(d, id("data_q"));
    let mut ms = board::ulx3s_modules(&core, &BoardOpts::default()).unwrap();
    ms.push(core);
    let tmp = tempfile::tempdir().unwrap();
    let files = write_all(tmp.path(), &ms);
    common::lint(tmp.path(), ULX3S_TOP, &files, &[]);
}

#[test]
fn board_top_echoes_and_lights_leds() {
    let Some(b) = common::built(Build::new(&modules(), "board_tb", &[])) else {
        return;
    };
    let cpb = CPB as usize;
    let frame = 10 * cpb;
    let por = 1 << POR_W;
    // Stimulus: line level and buttons per cycle.
    let mut line = Line::default();
    let mut btn1 = Vec::new();
    line.idle(por + 10);
    let bytes = [0x00u8, 0x41, 0xfe, 0x7f, 0x80, 0x13];
    for &x in &bytes {
        line.frame(x, f64::from(CPB), true);
    }
    line.idle(2 * frame);
    let t_ferr = line.level.len();
    line.frame(0x55, f64::from(CPB), false);
    line.idle(2 * frame);
    // Press F1 for 5 cycles: reset, framing-error LED cleared.
    let t_press = line.level.len();
    line.idle(5);
    let t_release = line.level.len();
    line.idle(por + 10);
    let t_after = line.level.len();
    line.frame(0x99, f64::from(CPB), true);
    line.idle(3 * frame);
    btn1.resize(line.level.len(), false);
    for v in &mut btn1[t_press..t_release] {
        *v = true;
    }

    let mut s = Stim::new(&b);
    for (t, &pressed) in btn1.iter().enumerate() {
        // btn[0] is the active-low power button: not pressed = 1.
        let btn = 1 | (i64::from(pressed) << 1);
        s.cycle_v(&[("btn_i", btn), ("line_i", i64::from(line.level_at(t)))]);
    }
    let out = s.run().unwrap();
    let (lo, li) = (out_index(&b, "line_o"), out_index(&b, "led_o"));
    let tx: Vec<bool> = out.iter().map(|l| l[lo].field(0, 1, false) == 1).collect();
    let led: Vec<u8> = out.iter().map(|l| l[li].field(0, 8, false) as u8).collect();
    let bit = |t: usize, k: u32| (led[t] >> k) & 1 == 1;

    // Echo: every good byte comes back + 1, the framing error gives nothing.
    let got = decode(&tx, cpb);
    let want: Vec<u8> = bytes
        .iter()
        .chain(&[0x99])
        .map(|x| x.wrapping_add(1))
        .collect();
    assert!(got.iter().all(|g| g.2), "stop bits: {got:?}");
    assert_eq!(got.iter().map(|g| g.1).collect::<Vec<_>>(), want);
    // Reset: led[4] during power-on reset and while F1 is held (plus POR time), not otherwise.
    assert!(bit(0, 4) || bit(1, 4), "power-on reset visible on led[4]");
    assert!(!bit(por + 8, 4), "power-on reset ends");
    assert!(bit(t_press + 4, 4), "F1 resets");
    assert!(!bit(t_after, 4), "reset ends after release");
    assert!(
        bit(t_release + por - 1, 4),
        "reset held 2**POR_W after release"
    );
    // Heartbeat: led[0] toggles every 2**(BLINK_W-1) cycles out of reset.
    let toggles = (por + 8..t_press)
        .filter(|&t| bit(t, 0) != bit(t - 1, 0))
        .count();
    let expect = (t_press - por - 8) >> (BLINK_W - 1);
    assert!(
        toggles.abs_diff(expect) <= 1,
        "heartbeat toggled {toggles} times, expected about {expect}"
    );
    // Activity: led[1] lit shortly after the first byte's stop bit, led[2] once the echo starts.
    let first_rx = por + 10 + frame;
    assert!(!bit(first_rx - frame, 1), "rx LED dark before any byte");
    assert!(bit(first_rx + 4, 1), "rx LED lit after a byte");
    assert!(bit(got[0].0 + 2, 2), "tx LED lit while sending");
    assert!(
        !bit(t_ferr - 1, 1) && !bit(t_ferr - 1, 2),
        "activity LEDs go dark"
    );
    // Framing error: sticky until reset.
    assert!(!bit(t_ferr - 1, 3), "no framing error before");
    assert!(bit(t_press - 1, 3), "framing error seen");
    assert!(!bit(t_after, 3), "framing error LED cleared by reset");
    assert!(led.iter().all(|l| l >> 5 == 0), "led[7:5] off");
    eprintln!("board_tb: {} bytes echoed, LEDs as specified", got.len());
}

/// constraints/ulx3s.lpf locates exactly the top's pins (every bit), each with an IOBUF line.
#[test]
fn lpf_matches_the_top_ports() {
    let ms = modules();
    let top = ms.iter().find(|m| m.name == ULX3S_TOP).unwrap();
    let mut want: Vec<String> = Vec::new();
    for p in &top.ports {
        let w = match &p.width {
            Expr::Lit(l) => l.value,
            other => panic!("{}: width {other:?}", p.name),
        };
        if w == 1 {
            want.push(p.name.clone());
        } else {
            want.extend((0..w).map(|i| format!("{}[{i}]", p.name)));
        }
    }
    want.sort();
    let lpf = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("constraints/ulx3s.lpf"),
    )
    .unwrap();
    let names = |kw: &str| {
        let mut v: Vec<String> = lpf
            .lines()
            .filter(|l| l.starts_with(kw))
            .filter_map(|l| l.split('"').nth(1).map(str::to_string))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("LOCATE COMP"), want, "LOCATE lines");
    assert_eq!(names("IOBUF PORT"), want, "IOBUF lines");
    assert_eq!(names("FREQUENCY PORT"), vec!["clk_25mhz".to_string()]);
}
