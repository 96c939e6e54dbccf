//! End to end over a serial port: the Verilator model of `dff_ulx3s_top` around
//! `dff_cmd_testmem` (the protocol decoder in front of a fake memory engine) runs behind a
//! pseudo-terminal (src/sim/pty.rs: the harness bridges pty bytes to the UART pins bit by bit);
//! the host opens the pty's slave path with `SerialLink` — the same code that opens
//! /dev/ttyUSB0 — and runs real protocol commands through `Client`: PING, writes read back at
//! several word sizes (split over frames), SET_HYPER, TRAIN, READ_COUNTERS, and the error
//! paths a serial line can hit (BAD_ADDR, a corrupted frame → BAD_CRC, a cut frame →
//! TRUNCATED), then closes and reopens the port. The harness process is stopped at the end
//! and must be gone. Skips with a notice when Verilator is missing (fails instead under
//! DFFORGE_REQUIRE_TOOLS).

use dfforge::host::protocol::{encode_command, write_payload, Command, Status};
use dfforge::host::{Client, ProtocolError, SerialLink, SerialOptions};
use dfforge::rtl::board::{BoardDesign, BoardOpts, ULX3S_TOP};
use dfforge::rtl::cmd::{cmd_testmem, CmdParams};
use dfforge::sim::pty::{build_pty_board, PtyBoard, SimBoardParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};

mod common;

const ID: u64 = 0x0123_4567_89ab_cdef;
/// The decoder's TIMEOUT: well above the 80 cycles between bytes at 8 cycles per bit.
const TIMEOUT: u32 = 5000;

fn open(board: &PtyBoard) -> Client<SerialLink> {
    let path = board.path().to_str().expect("utf-8 pty path");
    let link = SerialLink::open(
        path,
        SerialOptions {
            baud: 115_200,
            timeout: Duration::from_secs(30),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Client::new(link)
}

#[test]
fn client_over_serial_pty_against_the_board_top() {
    let core = cmd_testmem(&CmdParams {
        timeout: TIMEOUT,
        id: ID,
        ..CmdParams::default()
    });
    let design = BoardDesign::ulx3s("dff_cmd_testmem", core, vec![], &BoardOpts::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let params = SimBoardParams::default();
    let Some(build) = common::built(build_pty_board(
        &design.modules,
        ULX3S_TOP,
        &design.tables,
        &params,
    )) else {
        return;
    };
    let board = PtyBoard::start(&build, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    let pid = board.pid();
    eprintln!("harness pid {pid} on {}", board.path().display());
    let t0 = Instant::now();
    let mut c = open(&board);

    // PING: magic and ID.
    assert_eq!(c.ping().unwrap(), ID);

    // Writes read back, several word sizes, one long enough to need two frames each way.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (region, wbytes, addr, n) in [
        (0u8, 1u8, 0u32, 7usize),
        (1, 2, 5, 33),
        (2, 8, 0, 200),
        (3, 4, 250, 6),
    ] {
        let bits = 8 * u32::from(wbytes);
        let (lo, hi) = if bits == 64 {
            (i64::MIN, i64::MAX)
        } else {
            (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
        };
        let mut words: Vec<i64> = (0..n).map(|_| rng.gen_range(lo..=hi)).collect();
        words[0] = lo;
        words[n - 1] = hi;
        c.write(region, wbytes, addr, &words).unwrap();
        assert_eq!(
            c.read(region, wbytes, addr, n).unwrap(),
            words,
            "region {region}, {wbytes}-byte words at {addr}"
        );
    }

    // SET_HYPER, TRAIN (the fake engine answers op + 40), READ_COUNTERS.
    c.set_hyper(3, -12345).unwrap();
    assert_eq!(c.read(0xF0, 8, 3, 1).unwrap(), vec![-12345]);
    assert_eq!(c.train().unwrap(), 41);
    let counters = c.read_counters().unwrap();
    assert_eq!(counters.len(), 4);
    assert!(counters[0] > 0, "cycle counter runs: {counters:?}");
    assert_eq!(counters[3], 1, "one run: {counters:?}");

    // Error paths. A region the engine does not have: BAD_ADDR.
    let e = c.read(4, 8, 0, 1).unwrap_err();
    assert!(matches!(e, ProtocolError::BadAddr { region: 4, .. }), "{e}");
    // A frame corrupted on the line (one bit of its payload flipped): BAD_CRC, nothing written.
    c.write(1, 8, 9, &[111]).unwrap();
    let good = encode_command(
        Command::Write.code(),
        &write_payload(1, 8, 9, &[77]).unwrap(),
    )
    .unwrap();
    let mut bad = good.clone();
    bad[8] ^= 0x10;
    let e = c.send_frame(Command::Write.code(), &bad).unwrap_err();
    assert!(matches!(e, ProtocolError::BadCrc { .. }), "{e}");
    assert_eq!(
        c.read(1, 8, 9, 1).unwrap(),
        vec![111],
        "a corrupted frame wrote memory"
    );
    // A frame cut short: the decoder answers TRUNCATED after TIMEOUT cycles of silence.
    let e = c
        .send_frame(Command::Write.code(), &good[..good.len() - 3])
        .unwrap_err();
    assert!(matches!(e, ProtocolError::Truncated { .. }), "{e}");
    let r = c.exchange_frame(Command::Write.code(), &good[..2]).unwrap();
    assert_eq!(r.status, Status::Truncated);
    assert_eq!(
        c.read(1, 8, 9, 1).unwrap(),
        vec![111],
        "a cut frame wrote memory"
    );
    // Still in step: the good frame works.
    c.send_frame(Command::Write.code(), &good).unwrap();
    assert_eq!(c.read(1, 8, 9, 1).unwrap(), vec![77]);

    // Close and reopen the port: the board keeps serving.
    drop(c);
    let mut c = open(&board);
    assert_eq!(c.ping().unwrap(), ID);
    drop(c);
    eprintln!("protocol over the serial pty: {:.2?}", t0.elapsed());

    // The LEDs saw the traffic: rx (bit 1) and tx (bit 2) lit, no framing error (bit 3), out of
    // reset (bit 4) at the end.
    let leds = board.led_events();
    assert!(
        leds.iter().any(|(v, _)| v & 0x02 != 0),
        "rx LED never lit: {leds:?}"
    );
    assert!(
        leds.iter().any(|(v, _)| v & 0x04 != 0),
        "tx LED never lit: {leds:?}"
    );
    assert!(
        leds.iter().all(|(v, _)| v & 0x08 == 0),
        "framing error: {leds:?}"
    );
    assert_eq!(leds.last().map(|l| l.0 & 0x10), Some(0), "{leds:?}");

    // Stop the harness; it must be gone (no leftover process).
    assert!(
        board.stop(Duration::from_secs(10)),
        "harness did not exit cleanly on `q`"
    );
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    let gone = |p: &std::path::Path| {
        !p.exists()
            || std::fs::read_to_string(p.join("stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
    };
    assert!(gone(&proc_dir), "harness process {pid} still running");
}

#[test]
fn serial_link_names_a_missing_device() {
    let e = SerialLink::open("/dev/ttyUSB_dfforge_none", SerialOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("cannot open /dev/ttyUSB_dfforge_none"),
        "{msg}"
    );
    assert!(
        msg.contains("is the board plugged in? pass --backend serial:PATH"),
        "{msg}"
    );
}

/// The same board with the harness's UART at 12 cycles per bit against the design's 8 (a
/// wrong baud rate): nothing gets through, and `SerialLink` times out saying so. Proves the
/// bytes really cross the UART at bit level.
#[test]
fn wrong_baud_rate_times_out_with_a_hint() {
    let core = cmd_testmem(&CmdParams {
        timeout: TIMEOUT,
        id: ID,
        ..CmdParams::default()
    });
    let design = BoardDesign::ulx3s("dff_cmd_testmem", core, vec![], &BoardOpts::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let design_params = SimBoardParams::default();
    let host_params = SimBoardParams {
        clks_per_bit: 12,
        ..SimBoardParams::default()
    };
    let flags = design_params.flags();
    let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let Some(build) = common::built(dfforge::sim::Build::with_harness(
        &design.modules,
        ULX3S_TOP,
        &design.tables,
        Some(dfforge::sim::pty::pty_harness(ULX3S_TOP, &host_params)),
        &refs,
    )) else {
        return;
    };
    let board = PtyBoard::start(&build, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    let link = SerialLink::open(
        board.path().to_str().unwrap(),
        SerialOptions {
            baud: 115_200,
            timeout: Duration::from_secs(2),
        },
    )
    .unwrap();
    let mut c = Client::new(link);
    let e = c.ping().unwrap_err();
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(
        msg.contains("no complete response frame from /dev/"),
        "{msg}"
    );
    assert!(msg.contains("baud"), "{msg}");
    drop(board);
}

/// The serial backend end to end on the real engine: host driver → SerialLink → pty → the
/// board top's UART pins → dff_cmd → dff_engine, two training steps and inferences compared
/// with the golden model.
#[test]
fn engine_trains_over_the_simulated_uart() {
    use dfforge::cosim::{self, random_config, RandomBatches};
    use dfforge::driver::ProtocolBus;
    let cfg = random_config(2408, 3);
    let rtl = dfforge::rtl::generate(&cfg).unwrap();
    let design = BoardDesign::ulx3s("dff_system", rtl.modules, rtl.tables, &BoardOpts::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let params = SimBoardParams::default();
    let Some(build) = common::built(build_pty_board(
        &design.modules,
        ULX3S_TOP,
        &design.tables,
        &params,
    )) else {
        return;
    };
    let board = PtyBoard::start(&build, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    let mut client = open(&board);
    assert_eq!(client.ping().unwrap(), dfforge::rtl::cmd::config_id(&cfg));
    let mut bus = ProtocolBus::new(client, &dfforge::arch::Arch::new(&cfg).unwrap());
    let mut fx = dfforge::fixed::model::FixedDf::new(&cfg).unwrap();
    let mut data = RandomBatches::new(&cfg, 5);
    let bsz = cfg.training.batch;
    let rep = cosim::run(&cfg, &mut fx, &mut bus, &mut |_| data.next(bsz), 2).unwrap();
    eprintln!(
        "over the UART: {} steps, {} values compared, {} mismatches, {} cycles",
        rep.steps, rep.values_compared, rep.mismatches, rep.cycles
    );
    assert_eq!(rep.mismatches, 0, "{:?}", rep.first_mismatch);
    assert_eq!(rep.steps, 2);
    assert!(board.stop(Duration::from_secs(5)), "the harness must exit");
}
