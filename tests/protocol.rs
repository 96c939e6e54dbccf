//! The host protocol end to end (docs/protocol.md): the Rust [`Client`] through [`SimLink`]
//! (the frame harness) against `dff_cmd` in front of its memory-backed test fixture
//! (`dff_cmd_testmem`). Every error case must come back as a clear typed error with the device
//! still usable afterwards. Skips with a notice when Verilator is missing (fails instead under
//! DFFORGE_REQUIRE_TOOLS).

use dfforge::host::link::{self, Link, LinkError};
use dfforge::host::protocol::*;
use dfforge::host::{Client, ProtocolError, SimLink, SimLinkOptions};
use dfforge::rtl::cmd::{cmd_testmem, CmdParams};
use dfforge::sim::{Build, SimError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::process::Command as Proc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TOP: &str = "dff_cmd_testmem";
/// Small, so the truncated-frame test does not clock a million cycles.
const TIMEOUT: u32 = 300;
const ID: u64 = 0x0123_4567_89ab_cdef;
const MAX_PAYLOAD: usize = 1024;

fn params() -> CmdParams {
    CmdParams {
        max_payload: MAX_PAYLOAD as u32,
        timeout: TIMEOUT,
        ncounters: 4,
        id: ID,
    }
}

/// One build per test process (tests run in parallel threads and share it).
fn build(traced: bool) -> Option<&'static Build> {
    static PLAIN: OnceLock<Option<Build>> = OnceLock::new();
    static TRACED: OnceLock<Option<Build>> = OnceLock::new();
    let cell = if traced { &TRACED } else { &PLAIN };
    cell.get_or_init(
        || match link::build(&cmd_testmem(&params()), TOP, &[], traced) {
            Ok(b) => {
                eprintln!(
                    "{TOP}{}: {} in {:.2?}",
                    if traced { " (traced)" } else { "" },
                    if b.cache_hit { "cache hit" } else { "built" },
                    b.build_time
                );
                Some(b)
            }
            Err(LinkError::Build(SimError::NoVerilator))
                if std::env::var_os("DFFORGE_REQUIRE_TOOLS").is_none() =>
            {
                eprintln!("NOTICE: verilator not installed; skipping");
                None
            }
            Err(e) => panic!("{e}"),
        },
    )
    .as_ref()
}

/// Counts frames, to check the client's splitting.
struct Counting<L: Link> {
    inner: L,
    frames: usize,
}

impl<L: Link> Link for Counting<L> {
    fn transact(&mut self, frame: &[u8]) -> Result<Vec<u8>, LinkError> {
        self.frames += 1;
        self.inner.transact(frame)
    }
}

fn open_with(opts: SimLinkOptions) -> Option<Client<Counting<SimLink>>> {
    let b = build(opts.traced)?;
    let link = SimLink::spawn(b, opts).unwrap();
    Some(Client::new(Counting {
        inner: link,
        frames: 0,
    }))
}

fn open() -> Option<Client<Counting<SimLink>>> {
    open_with(SimLinkOptions {
        timeout: Duration::from_secs(60),
        cycle_limit: 1_000_000,
        ..SimLinkOptions::default()
    })
}

fn sim(c: &mut Client<Counting<SimLink>>) -> &mut SimLink {
    &mut c.link_mut().inner
}

/// Send a signal to the simulator this test started (the shell's builtin `kill`: no procps
/// needed).
fn signal(sig: &str, pid: u32) {
    let st = Proc::new("sh")
        .args(["-c", &format!("kill -{sig} {pid}")])
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pid}");
}

/// The device still answers and its memory is intact after an error.
fn assert_usable(c: &mut Client<Counting<SimLink>>) {
    assert_eq!(c.ping().unwrap(), ID, "device unusable after the error");
    c.write(3, 2, 200, &[-7, 7]).unwrap();
    assert_eq!(c.read(3, 2, 200, 2).unwrap(), vec![-7, 7]);
}

/// Random words of `wbytes` bytes, with the edges (min, max, 0, -1) first.
fn words(rng: &mut ChaCha8Rng, wbytes: u8, n: usize) -> Vec<i64> {
    let (min, max) = word_range(wbytes);
    let mut v = vec![min, max, 0, -1, 1];
    while v.len() < n {
        v.push(rng.gen_range(min..=max));
    }
    v.truncate(n);
    v
}

#[test]
fn ping_returns_the_id() {
    let Some(mut c) = open() else { return };
    assert_eq!(c.ping().unwrap(), ID);
    eprintln!("PING: {} cycles", sim(&mut c).last_cycles());
    // Bytes before the sync are ignored.
    let mut f = vec![0x00, 0x13, 0x5A, 0xFF];
    f.extend(encode_command(Command::Ping.code(), &[]).unwrap());
    let r = decode_response(&c.transact(&f).unwrap()).unwrap();
    assert_eq!((r.cmd, r.status), (0, Status::Ok));
    assert_eq!(&r.payload[..4], b"DFF1");
}

#[test]
fn every_region_and_word_size_reads_back() {
    let Some(mut c) = open() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for wbytes in 1..=8u8 {
        for region in 0..4u8 {
            // 256 words: with 8-byte words that is 3 WRITE frames and 2 READ frames.
            let w = words(&mut rng, wbytes, 256);
            c.write(region, wbytes, 0, &w).unwrap();
            assert_eq!(
                c.read(region, wbytes, 0, 256).unwrap(),
                w,
                "region {region} wbytes {wbytes}"
            );
            // The device sign-extended: the full 64-bit words hold the same values.
            assert_eq!(
                c.read(region, 8, 0, 256).unwrap(),
                w,
                "region {region} wbytes {wbytes} as i64"
            );
        }
    }
    // A narrower read returns the low bytes, sign-extended by the host.
    c.write(1, 8, 10, &[0x1234_5678_9abc_def0, -300]).unwrap();
    assert_eq!(c.read(1, 2, 10, 2).unwrap(), vec![-0x2110, -300]);
    assert_eq!(c.read(1, 1, 11, 1).unwrap(), vec![-44]);
}

#[test]
fn long_writes_and_reads_split_into_frames() {
    let Some(mut c) = open() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let w = words(&mut rng, 8, 256);
    c.link_mut().frames = 0;
    c.write(2, 8, 0, &w).unwrap();
    // (1024 - 6) / 8 = 127 words per WRITE frame.
    assert_eq!(c.link().frames, 3);
    let t0 = Instant::now();
    let back = c.read(2, 8, 0, 256).unwrap();
    let cycles = sim(&mut c).last_cycles();
    assert_eq!(back, w);
    // 1024 / 8 = 128 words per READ frame.
    assert_eq!(c.link().frames, 5);
    eprintln!(
        "READ of 128 x 8 bytes: {cycles} cycles (both reads {:.2?})",
        t0.elapsed()
    );
    // A write crossing a frame boundary in the middle of the region, odd word size.
    let w3 = words(&mut rng, 3, 700);
    c.write(0, 3, 0, &w3[..256]).unwrap();
    c.write(1, 3, 0, &w3[256..512]).unwrap();
    assert_eq!(c.read(0, 3, 0, 256).unwrap(), w3[..256]);
    assert_eq!(c.read(1, 3, 0, 256).unwrap(), w3[256..512]);
}

#[test]
fn hyper_parameters_and_counters() {
    let Some(mut c) = open() else { return };
    let vals: Vec<i64> = (0..15).map(|i| (i - 7) * 1_000_000_007).collect();
    for (i, &v) in vals.iter().enumerate() {
        c.set_hyper(i as u8, v).unwrap();
    }
    assert_eq!(c.read(REGION_HYPER, 8, 0, 15).unwrap(), vals);
    c.set_hyper(15, 0).unwrap();

    c.reset().unwrap();
    let a = c.read_counters().unwrap();
    assert_eq!(a.len(), 4);
    // Counter 0 is a free-running cycle counter, cleared by RESET a few hundred cycles ago.
    assert!(a[0] > 0 && a[0] < 2000, "{a:?}");
    // RESET cleared the rest; the read counter counts READ_COUNTERS' own reads (2 before
    // counter 2 itself is read).
    assert_eq!(a[1..], [0, 2, 0], "{a:?}");
    c.write(0, 4, 0, &[1, 2, 3]).unwrap();
    c.read(0, 4, 0, 2).unwrap();
    c.train().unwrap();
    let b = c.read_counters().unwrap();
    assert!(b[0] > a[0], "{a:?} then {b:?}");
    // 3 writes; 4 reads of the first READ_COUNTERS + 2 + 2 of this one; 1 run.
    assert_eq!(b[1..], [3, 8, 1], "{b:?}");
}

#[test]
fn train_and_infer_results() {
    let Some(mut c) = open() else { return };
    assert_eq!(c.train().unwrap(), 41);
    assert_eq!(c.infer().unwrap(), 42);
    // Hyper word 15 shifts the fixture's op to 3 and 4: its engine reports status 1.
    c.set_hyper(15, 2).unwrap();
    let e = c.train().unwrap_err();
    assert!(
        matches!(
            e,
            ProtocolError::Engine {
                status: 1,
                result: 43,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("status 1 (result 43)"), "{e}");
    assert!(matches!(
        c.infer(),
        Err(ProtocolError::Engine {
            status: 1,
            result: 44,
            ..
        })
    ));
    c.set_hyper(15, 0).unwrap();
    assert_eq!(c.infer().unwrap(), 42);
    assert_usable(&mut c);
}

#[test]
fn bad_crc_is_refused_and_writes_nothing() {
    let Some(mut c) = open() else { return };
    c.write(1, 8, 5, &[111]).unwrap();
    let good = encode_command(
        Command::Write.code(),
        &write_payload(1, 8, 5, &[222]).unwrap(),
    )
    .unwrap();
    // Flip one bit in the word, in the CRC, and in the command code.
    for (byte, bit) in [(8, 3), (good.len() - 1, 0), (1, 6)] {
        let mut f = good.clone();
        f[byte] ^= 1 << bit;
        let e = c.send_frame(Command::Write.code(), &f).unwrap_err();
        assert!(matches!(e, ProtocolError::BadCrc { .. }), "{e}");
        assert!(e.to_string().contains("did not act on it"), "{e}");
        assert_eq!(
            c.read(1, 8, 5, 1).unwrap(),
            vec![111],
            "a corrupted frame wrote memory"
        );
    }
    // A flipped length bit makes the device wait for bytes that never come: TRUNCATED, and
    // still nothing written.
    let mut f = good.clone();
    f[3] ^= 0x01;
    let e = c.send_frame(Command::Write.code(), &f).unwrap_err();
    assert!(matches!(e, ProtocolError::Truncated { .. }), "{e}");
    assert_eq!(c.read(1, 8, 5, 1).unwrap(), vec![111]);
    c.send_frame(Command::Write.code(), &good).unwrap();
    assert_eq!(c.read(1, 8, 5, 1).unwrap(), vec![222]);
    assert_usable(&mut c);
}

#[test]
fn unknown_command_is_refused() {
    let Some(mut c) = open() else { return };
    for code in [0x08, 0x42, 0xFE] {
        let r = c.exchange(code, &[1, 2, 3]).unwrap();
        assert_eq!(
            (r.cmd, r.status, r.payload.len()),
            (code, Status::UnknownCmd, 0)
        );
        let f = encode_command(code, &[]).unwrap();
        let e = c.send_frame(code, &f).unwrap_err();
        assert!(matches!(e, ProtocolError::UnknownCommand { .. }), "{e}");
        assert!(e.to_string().contains("protocol versions"), "{e}");
    }
    assert_usable(&mut c);
}

#[test]
fn out_of_range_addresses_are_refused() {
    let Some(mut c) = open() else { return };
    // A write running off the end of region 0: the 6 words before address 256 are written.
    let w: Vec<i64> = (0..10).map(|i| 1000 + i).collect();
    let e = c.write(0, 8, 250, &w).unwrap_err();
    assert!(
        matches!(
            e,
            ProtocolError::BadAddr {
                region: 0,
                addr: 256,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("address 256"), "{e}");
    assert_eq!(c.read(0, 8, 250, 6).unwrap(), w[..6]);
    // Reads off the end, in a region that does not exist, in hyper and counter space.
    assert!(matches!(
        c.read(3, 4, 250, 10),
        Err(ProtocolError::BadAddr {
            region: 3,
            addr: 256,
            ..
        })
    ));
    assert!(matches!(
        c.read(5, 2, 7, 1),
        Err(ProtocolError::BadAddr {
            region: 5,
            addr: 7,
            ..
        })
    ));
    assert!(matches!(
        c.write(0x77, 1, 0, &[1]),
        Err(ProtocolError::BadAddr {
            region: 0x77,
            addr: 0,
            ..
        })
    ));
    assert!(matches!(
        c.set_hyper(16, 1),
        Err(ProtocolError::BadAddr {
            region: REGION_HYPER,
            addr: 16,
            ..
        })
    ));
    assert!(matches!(
        c.read(REGION_COUNTERS, 8, 2, 3),
        Err(ProtocolError::BadAddr {
            region: REGION_COUNTERS,
            addr: 4,
            ..
        })
    ));
    assert!(matches!(
        c.read(0, 1, 0x1_0000, 1),
        Err(ProtocolError::BadAddr { addr: 0x1_0000, .. })
    ));
    assert_usable(&mut c);
}

#[test]
fn bad_lengths_are_refused() {
    let Some(mut c) = open() else { return };
    c.write(2, 8, 0, &[55]).unwrap();
    let bad_len = |c: &mut Client<Counting<SimLink>>, cmd: Command, payload: &[u8]| {
        let f = encode_command(cmd.code(), payload).unwrap();
        let e = c.send_frame(cmd.code(), &f).unwrap_err();
        assert!(
            matches!(e, ProtocolError::BadLen { .. }),
            "{} with {} bytes: {e}",
            cmd.name(),
            payload.len()
        );
        assert!(e.to_string().contains("MAX_PAYLOAD"), "{e}");
    };
    // wbytes 0 and 9, for WRITE and READ.
    for wb in [0u8, 9] {
        bad_len(
            &mut c,
            Command::Write,
            &[2, wb, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        );
        bad_len(&mut c, Command::Read, &read_payload(2, wb, 0, 1));
    }
    // A WRITE whose words do not divide evenly, one with no room for its header.
    let mut ragged = write_payload(2, 4, 0, &[9, 9]).unwrap();
    ragged.pop();
    bad_len(&mut c, Command::Write, &ragged);
    bad_len(&mut c, Command::Write, &[2, 1, 0]);
    // Payload longer than MAX_PAYLOAD (the frame is consumed, nothing is written).
    let long = write_payload(2, 1, 0, &vec![1; MAX_PAYLOAD]).unwrap();
    bad_len(&mut c, Command::Write, &long);
    assert_eq!(c.read(2, 8, 0, 1).unwrap(), vec![55]);
    // A READ whose answer would not fit MAX_PAYLOAD.
    bad_len(&mut c, Command::Read, &read_payload(2, 8, 0, 129));
    // Fixed-length commands with the wrong length.
    bad_len(&mut c, Command::Read, &[2, 8, 0, 0, 0, 0, 1]);
    bad_len(&mut c, Command::Ping, &[0]);
    bad_len(&mut c, Command::SetHyper, &[1, 2, 3, 4, 5, 6, 7, 8]);
    bad_len(&mut c, Command::Train, &[0]);
    bad_len(&mut c, Command::Infer, &[0, 0]);
    bad_len(&mut c, Command::ReadCounters, &[0]);
    bad_len(&mut c, Command::Reset, &[0]);
    // The host refuses what it can before sending.
    assert!(matches!(
        c.write(0, 9, 0, &[1]),
        Err(ProtocolError::BadWordBytes { wbytes: 9 })
    ));
    assert!(matches!(
        c.read(0, 0, 0, 1),
        Err(ProtocolError::BadWordBytes { wbytes: 0 })
    ));
    // A zero-word WRITE and a zero-count READ are no-ops (raw frames: the client sends none).
    let f = encode_command(Command::Write.code(), &write_payload(2, 4, 0, &[]).unwrap()).unwrap();
    assert_eq!(
        c.send_frame(Command::Write.code(), &f).unwrap(),
        Vec::<u8>::new()
    );
    let f = encode_command(Command::Read.code(), &read_payload(2, 4, 0, 0)).unwrap();
    assert_eq!(
        c.send_frame(Command::Read.code(), &f).unwrap(),
        Vec::<u8>::new()
    );
    assert_eq!(c.read(2, 8, 0, 1).unwrap(), vec![55]);
    assert_usable(&mut c);
}

#[test]
fn truncated_frames_time_out() {
    let Some(mut c) = open() else { return };
    c.write(0, 2, 9, &[4]).unwrap();
    let f = encode_command(
        Command::Write.code(),
        &write_payload(0, 2, 9, &[5; 20]).unwrap(),
    )
    .unwrap();
    // Header and half the payload: answered TRUNCATED (with its code) after TIMEOUT cycles.
    let half = &f[..4 + (f.len() - 6) / 2];
    let e = c.send_frame(Command::Write.code(), half).unwrap_err();
    assert!(matches!(e, ProtocolError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("resend"), "{e}");
    let cycles = sim(&mut c).last_cycles();
    assert!(
        cycles >= u64::from(TIMEOUT) && cycles < u64::from(TIMEOUT) + 100,
        "answered after {cycles} cycles, TIMEOUT is {TIMEOUT}"
    );
    assert_eq!(
        c.read(0, 2, 9, 1).unwrap(),
        vec![4],
        "a truncated frame wrote memory"
    );
    // Only the sync and the code: the header is incomplete, so the echo is 0xFF.
    let r = c.exchange_frame(Command::Write.code(), &f[..2]).unwrap();
    assert_eq!((r.cmd, r.status), (TRUNCATED_HEADER_CMD, Status::Truncated));
    assert_usable(&mut c);
}

#[test]
fn a_silent_device_hits_the_cycle_limit() {
    let Some(mut c) = open() else { return };
    // No sync byte: the device never answers.
    sim(&mut c).options_mut().cycle_limit = 500;
    let e = c.transact(&[1, 2, 3]).unwrap_err();
    assert!(
        matches!(
            e,
            ProtocolError::Link(LinkError::CycleLimit { cycles: 500, .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("did not answer"), "{e}");
    assert_usable(&mut c);
}

#[test]
fn a_killed_simulator_is_a_clear_error() {
    let Some(mut c) = open() else { return };
    c.ping().unwrap();
    let pid = sim(&mut c).pid();
    signal("KILL", pid);
    let t0 = Instant::now();
    let e = c.ping().unwrap_err();
    assert!(
        matches!(e, ProtocolError::Link(LinkError::Exited { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("simulator exited"), "{e}");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:.2?}",
        t0.elapsed()
    );
    // The link stays closed with a message that says so.
    let e = c.ping().unwrap_err();
    assert!(e.to_string().contains("open a new SimLink"), "{e}");
}

#[test]
fn a_hung_simulator_times_out() {
    let Some(mut c) = open_with(SimLinkOptions {
        timeout: Duration::from_secs(2),
        ..SimLinkOptions::default()
    }) else {
        return;
    };
    c.ping().unwrap();
    let pid = sim(&mut c).pid();
    // A stopped process neither answers nor exits: only the timeout can notice.
    signal("STOP", pid);
    let t0 = Instant::now();
    let e = c.ping().unwrap_err();
    let took = t0.elapsed();
    assert!(
        matches!(e, ProtocolError::Link(LinkError::Timeout { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("no response within 2 s"), "{e}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:.2?}"
    );
}

#[test]
fn waveforms_only_when_asked() {
    let Some(mut c) = open() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let e = sim(&mut c)
        .trace_start(&tmp.path().join("x.fst"))
        .unwrap_err();
    assert!(e.to_string().contains("traced: true"), "{e}");
    drop(c);
    let Some(mut t) = open_with(SimLinkOptions {
        traced: true,
        ..SimLinkOptions::default()
    }) else {
        return;
    };
    for name in ["a.fst", "b.fst"] {
        let path = tmp.path().join(name);
        sim(&mut t).trace_start(&path).unwrap();
        assert_eq!(t.ping().unwrap(), ID);
        sim(&mut t).trace_stop().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len > 100, "{name}: {len} bytes");
    }
}
