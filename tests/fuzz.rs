//! Fuzzing of the code that reads untrusted input: the config parser (TOML text and `--set`
//! overrides, and what runs on an accepted config before any work), the host side of the
//! protocol (frame decoders, the `Client` on arbitrary answers, the serial frame finder),
//! the generator on random valid configs, and, through Verilator, the device side of the
//! protocol (`dff_cmd`, with its memory-backed test fixture). The IDX reader's fuzz tests
//! live beside it (`src/data/idx.rs`, `fuzz_*`); both use the harness in tests/common/fuzz.rs.
//!
//! Every input must give `Ok` or an error, never a panic (proptest catches and shrinks one),
//! and every input must finish quickly (each case is timed; a hang fails the test, and the
//! Verilator link has a wall-clock limit). The counts are small in the normal suite; the
//! benchmark run sets `DFFORGE_FUZZ_CASES`. The inputs come from a fixed seed, the same on
//! every run; `DFFORGE_FUZZ_SEED=random` (or a number) explores others:
//!
//! ```sh
//! DFFORGE_FUZZ_SEED=random DFFORGE_FUZZ_CASES=10000 DFFORGE_REQUIRE_TOOLS=1 cargo test --release --test fuzz -- --nocapture
//! DFFORGE_FUZZ_SEED=random DFFORGE_FUZZ_CASES=10000 cargo test --release --lib fuzz_ -- --nocapture   # the IDX reader
//! ```

use dfforge::config::Config;
use dfforge::host::link::{Link, LinkError};
use dfforge::host::protocol::*;
use dfforge::host::Client;
use proptest::prelude::*;
use std::cell::RefCell;
use std::time::Duration;

mod common;

#[path = "common/fuzz.rs"]
mod fuzz_harness;
use fuzz_harness::{fuzz, fuzz_cases};

// ------------------------------------------------------------------------------- config

/// Every leaf key of the built-in config (dotted, inline-table fields included), and the
/// per-learner keys.
fn known_keys() -> Vec<String> {
    fn walk(item: &toml_edit::Item, prefix: &str, out: &mut Vec<String>) {
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match item {
            toml_edit::Item::Table(t) => t.iter().for_each(|(k, v)| walk(v, &join(k), out)),
            toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => {
                for (k, _) in t.iter() {
                    out.push(join(k));
                }
                out.push(prefix.to_string());
            }
            toml_edit::Item::Value(_) => out.push(prefix.to_string()),
            _ => {}
        }
    }
    let doc: toml_edit::DocumentMut = Config::builtin().to_toml().parse().unwrap();
    let mut keys = Vec::new();
    walk(doc.as_item(), "", &mut keys);
    for l in ["df", "ff", "bp"] {
        keys.push(format!("training.{l}.learning_rate"));
        keys.push(format!("training.{l}.optimizer"));
    }
    keys.extend(["training.optimizer", "training.learning_rate"].map(String::from));
    keys
}

/// For every leaf key of the built-in config, values near its own (the neighbours of a
/// number, the other words of an enumeration): overrides that are mostly valid, so that the
/// code behind validation gets exercised.
fn near_values() -> Vec<(String, Vec<String>)> {
    fn walk(item: &toml_edit::Item, prefix: &str, out: &mut Vec<(String, toml_edit::Value)>) {
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match item {
            toml_edit::Item::Table(t) => t.iter().for_each(|(k, v)| walk(v, &join(k), out)),
            toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => {
                t.iter().for_each(|(k, v)| out.push((join(k), v.clone())))
            }
            toml_edit::Item::Value(v) => out.push((prefix.to_string(), v.clone())),
            _ => {}
        }
    }
    let doc: toml_edit::DocumentMut = Config::builtin().to_toml().parse().unwrap();
    let mut leaves = Vec::new();
    walk(doc.as_item(), "", &mut leaves);
    let words = [
        "df",
        "ff",
        "bp",
        "npair",
        "hinge",
        "all",
        "random",
        "hard",
        "none",
        "previous",
        "df-r",
        "df-o",
        "sgd",
        "momentum",
        "adam",
        "constant",
        "linear",
        "cosine",
        "truncate",
        "half-up",
        "stochastic",
        "generic",
        "ulx3s-25f",
        "digits",
        "mnist",
    ];
    leaves
        .into_iter()
        .map(|(k, v)| {
            let vals: Vec<String> = match &v {
                toml_edit::Value::Integer(i) => {
                    let n = *i.value();
                    [n - 2, n - 1, n + 1, n + 2, n * 2, n / 2, 0, 1]
                        .iter()
                        .map(|m| m.to_string())
                        .collect()
                }
                toml_edit::Value::Float(f) => {
                    let x = *f.value();
                    [x * 0.5, x * 0.9, x * 1.1, x * 2.0, 0.0, 1.0]
                        .iter()
                        .map(|y| format!("{y:?}"))
                        .collect()
                }
                toml_edit::Value::Boolean(b) => vec![(!*b.value()).to_string()],
                toml_edit::Value::String(_) => words.iter().map(|w| format!("\"{w}\"")).collect(),
                _ => vec![
                    "[8, 8]".into(),
                    "[2]".into(),
                    "[]".into(),
                    "[12, 11, 10]".into(),
                ],
            };
            (k, vals)
        })
        .collect()
}

fn near_set() -> impl Strategy<Value = String> {
    prop::sample::select(near_values())
        .prop_flat_map(|(k, vals)| prop::sample::select(vals).prop_map(move |v| format!("{k}={v}")))
}

/// A value as `--set` takes it: TOML of every kind, edge numbers, bare words, garbage.
fn set_value() -> impl Strategy<Value = String> {
    prop_oneof![
        (-3i64..70).prop_map(|v| v.to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        (0.0f64..2.0).prop_map(|v| format!("{v:?}")),
        prop::sample::select(vec![
            "nan",
            "inf",
            "-inf",
            "-0.0",
            "1e30",
            "1e-40",
            "true",
            "false",
            "\"\"",
            "[]",
            "[1, 2]",
            "[0]",
            "[65536, 65536]",
            "[3, 2, 1]",
            "[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]",
            "{ bits = 8, frac = 9, signed = false }",
            "{ bits = 64, frac = 0, signed = true }",
            "{ bits = 2, frac = 62, signed = true }",
            "{ bits = 1 }",
            "hinge",
            "npair",
            "df-o",
            "df-r",
            "random",
            "hard",
            "all",
            "none",
            "previous",
            "stochastic",
            "truncate",
            "half-up",
            "sgd",
            "adam",
            "momentum",
            "bp",
            "ff",
            "df",
            "idx:/nonexistent",
            "mnist",
            "digits",
            "generic",
            "cosine",
            "\"transpose\"",
            "[\"nope\"]",
            "=",
            "a=b",
            "[",
            "{",
            "\"unterminated",
            "'x'",
            "0x10",
            "1_000",
        ])
        .prop_map(String::from),
        "[ -~]{0,16}",
    ]
}

fn set_key(keys: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(keys),
        1 => "[a-z_.]{0,20}",
        1 => prop::sample::select(vec![
            "", ".", "..", "training.", ".training", "fixed.weight.bits.x", "network.hidden.0",
            "fixed.weight.bits.frac", "algorithm.name.x", "x.y.z",
        ])
        .prop_map(String::from),
    ]
}

/// A mutated text: byte edits of the built-in config.
fn mutated_toml() -> impl Strategy<Value = String> {
    let base = dfforge::config::DEFAULT_TOML.as_bytes().to_vec();
    let n = base.len();
    prop::collection::vec((0..n, 0u8..4, any::<u8>(), 0usize..40), 1..6).prop_map(move |edits| {
        let mut b = base.clone();
        for (pos, op, byte, len) in edits {
            let pos = pos % (b.len() + 1);
            match op {
                0 => b.insert(pos, byte),
                1 if pos < b.len() => b[pos] = byte,
                2 => {
                    let end = (pos + len).min(b.len());
                    b.drain(pos..end);
                }
                _ => {
                    // Duplicate a span (repeated keys and sections).
                    let end = (pos + len).min(b.len());
                    let span: Vec<u8> = b[pos..end].to_vec();
                    b.splice(pos..pos, span);
                }
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    })
}

/// What runs on an accepted config before any long work: none of it may panic, and the
/// config must survive its own TOML (reports are read back by `compare`).
fn exercise(cfg: &Config) -> Result<(), TestCaseError> {
    prop_assert!(cfg.validate().is_ok());
    let again = Config::from_toml_str(&cfg.to_toml(), "again");
    prop_assert!(again.is_ok(), "{:?}\n{}", again.err(), cfg.to_toml());
    prop_assert_eq!(&again.unwrap(), cfg);
    let _ = dfforge::rtl::cmd::config_id(cfg);
    let _ = cfg.fixed.products(cfg);
    let _ = dfforge::fixed::memory::account(cfg);
    let _ = dfforge::driver::preflight(cfg, "fuzz");
    let _ = dfforge::train::RunOptions::from_config(cfg);
    let _: Result<dfforge::data::DatasetSpec, _> = cfg.data.dataset.parse();
    Ok(())
}

#[test]
fn fuzz_config_parser() {
    let keys = known_keys();
    let strategy = prop_oneof![
        // Arbitrary text.
        1 => "[ -~\n\t]{0,300}".prop_map(|t| (t, vec![])),
        1 => prop::collection::vec(any::<u8>(), 0..300)
            .prop_map(|b| (String::from_utf8_lossy(&b).into_owned(), vec![])),
        // The built-in config, edited.
        3 => mutated_toml().prop_map(|t| (t, vec![])),
        // `--set` overrides of the built-in config: anything...
        3 => prop::collection::vec((set_key(keys), set_value()), 1..5).prop_map(|kv| {
            let sets = kv.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            (String::new(), sets)
        }),
        // ...and values near the defaults, mostly valid.
        3 => prop::collection::vec(near_set(), 1..5).prop_map(|sets| (String::new(), sets)),
    ];
    let accepted = std::cell::Cell::new(0u32);
    fuzz(
        "config parser",
        fuzz_cases(2000),
        Some(Duration::from_secs(2)),
        strategy,
        |(text, sets): (String, Vec<String>)| {
            let r = if sets.is_empty() {
                Config::from_toml_str(&text, "fuzz.toml")
            } else {
                Config::load_with(None, &sets)
            };
            match r {
                Ok(cfg) => {
                    accepted.set(accepted.get() + 1);
                    exercise(&cfg)
                }
                Err(e) => {
                    // Errors name the source and are single-spaced sentences.
                    let m = e.to_string();
                    prop_assert!(m.contains("fuzz.toml") || m.contains("default.toml"), "{m}");
                    Ok(())
                }
            }
        },
    );
    eprintln!("  of which accepted: {}", accepted.get());
}

/// The generator on random valid configs: small networks with a few keys changed. It must
/// generate or refuse with an error, never panic (it did for update.bits < accumulator.bits).
#[test]
fn fuzz_generator_on_valid_configs() {
    let base = [
        "network.hidden=[9, 7]",
        "network.input=12",
        "network.classes=4",
        "algorithm.negatives_count=3",
        "training.batch=3",
        "hardware.array_rows=2",
        "hardware.array_cols=3",
    ];
    let hardware = |k: &str| {
        [
            "fixed.",
            "algorithm.",
            "hardware.",
            "network.",
            "training.batch",
            "training.df",
        ]
        .iter()
        .any(|p| k.starts_with(p))
    };
    let near: Vec<(String, Vec<String>)> = near_values()
        .into_iter()
        .filter(|(k, _)| hardware(k))
        .collect();
    let one = prop::sample::select(near).prop_flat_map(|(k, vals)| {
        prop::sample::select(vals).prop_map(move |v| format!("{k}={v}"))
    });
    let generated = std::cell::Cell::new(0u32);
    let refused = std::cell::Cell::new(0u32);
    fuzz(
        "generator",
        fuzz_cases(300),
        Some(Duration::from_secs(20)),
        prop::collection::vec(one, 1..4),
        |extra: Vec<String>| {
            let mut sets: Vec<String> = base.iter().map(|s| s.to_string()).collect();
            sets.extend(extra);
            if let Ok(cfg) = Config::load_with(None, &sets) {
                match dfforge::rtl::generate(&cfg) {
                    Ok(_) => generated.set(generated.get() + 1),
                    Err(_) => refused.set(refused.get() + 1),
                }
            }
            Ok(())
        },
    );
    eprintln!(
        "  generated {}, refused with an error {}",
        generated.get(),
        refused.get()
    );
}

// ------------------------------------------------------------------- protocol, host side

/// A response frame: valid (random command, status, payload), then maybe damaged.
fn response_bytes() -> impl Strategy<Value = Vec<u8>> {
    let valid = (
        any::<u8>(),
        prop_oneof![(0u8..8), any::<u8>()],
        prop::collection::vec(any::<u8>(), 0..80),
    )
        .prop_map(|(cmd, st, p)| encode_response(cmd, Status::from_code(st), &p).unwrap());
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        valid.clone(),
        (valid.clone(), any::<usize>(), any::<u8>()).prop_map(|(mut f, i, b)| {
            let i = i % f.len();
            f[i] = b;
            f
        }),
        (valid.clone(), any::<usize>()).prop_map(|(f, n)| f[..n % (f.len() + 1)].to_vec()),
        (valid, prop::collection::vec(any::<u8>(), 1..20)).prop_map(|(mut f, tail)| {
            f.extend(tail);
            f
        }),
        // A plausible header with any length field.
        (
            any::<u8>(),
            any::<u8>(),
            any::<u16>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(c, s, n, body)| {
                let mut f = vec![RSP_SYNC, c, s];
                f.extend(n.to_le_bytes());
                f.extend(body);
                f
            }),
    ]
}

/// A link that answers every frame with the same bytes.
struct Replay(Vec<u8>);

impl Link for Replay {
    fn transact(&mut self, _frame: &[u8]) -> Result<Vec<u8>, LinkError> {
        Ok(self.0.clone())
    }
}

#[test]
fn fuzz_protocol_host_side() {
    fuzz(
        "protocol decoders (host)",
        fuzz_cases(3000),
        Some(Duration::from_secs(1)),
        (response_bytes(), any::<u8>(), any::<u32>(), 0usize..300),
        |(bytes, region, addr, n): (Vec<u8>, u8, u32, usize)| {
            let _ = decode_response(&bytes);
            let mut c = bytes.clone();
            if let Some(b) = c.first_mut() {
                *b = CMD_SYNC;
            }
            let _ = decode_command(&c);
            let _ = decode_words(&bytes, 1 + region % 8);
            // The serial link's frame finder on a receive buffer, and its `--backend` parser.
            if let Some((start, len)) = dfforge::host::serial::find_response(&bytes) {
                prop_assert!(start + len <= bytes.len());
            }
            let spec = format!(
                "serial:{}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(24)])
            );
            let _ = dfforge::host::serial::parse_backend(&spec);
            // Every client command on this answer: an error or a result, never a panic.
            let mut cl = Client::new(Replay(bytes));
            let _ = cl.ping();
            let _ = cl.read(region, 1 + region % 8, addr, n);
            let _ = cl.write(region, 1 + region % 8, addr, &vec![1; n % 40]);
            let _ = cl.set_hyper(region, i64::from(addr));
            let _ = cl.train();
            let _ = cl.infer();
            let _ = cl.read_counters();
            let _ = cl.reset();
            Ok(())
        },
    );
}

// ------------------------------------------------------------------ protocol, RTL side

const TOP: &str = "dff_cmd_testmem";
const ID: u64 = 0x5eed_f00d_0bad_cafe;
/// The decoder's idle limit inside a frame (small, so truncated frames are answered soon).
const FRAME_TIMEOUT: u32 = 200;
const CANARY_REGION: u8 = 3;
const CANARY_ADDR: u32 = 200;
const CANARY: [i64; 3] = [-7, 0x1234, 77];

/// One fuzz input for the device: bytes as they arrive on its receive port.
fn device_input() -> impl Strategy<Value = Vec<u8>> {
    let cmd = prop_oneof![3 => 0u8..8, 1 => any::<u8>()];
    let valid = (cmd, prop::collection::vec(any::<u8>(), 0..40))
        .prop_map(|(c, p)| encode_command(c, &p).unwrap());
    prop_oneof![
        // Line noise.
        2 => prop::collection::vec(any::<u8>(), 0..64),
        // Whole, well-formed frames of any command with any payload.
        3 => valid.clone(),
        // Damaged frames: a byte changed, cut short, or with noise around.
        2 => (valid.clone(), any::<usize>(), any::<u8>()).prop_map(|(mut f, i, b)| {
            let i = i % f.len();
            f[i] = b;
            f
        }),
        2 => (valid.clone(), any::<usize>()).prop_map(|(f, n)| f[..n % (f.len() + 1)].to_vec()),
        1 => (prop::collection::vec(any::<u8>(), 0..8), valid, prop::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(a, f, b)| [a, f, b].concat()),
        // Headers announcing a long payload, with a little of it.
        1 => (0u8..8, 1000u16..=u16::MAX, prop::collection::vec(any::<u8>(), 0..20)).prop_map(
            |(c, n, body)| {
                let mut f = vec![CMD_SYNC, c];
                f.extend(n.to_le_bytes());
                f.extend(body);
                f
            }
        ),
        // A payload beyond MAX_PAYLOAD (BAD_LEN after the bytes).
        1 => (0u8..8, 1020usize..1040).prop_map(|(c, n)| encode_command(c, &vec![0x55; n]).unwrap()),
    ]
}

/// Could `bytes` contain a well-formed WRITE that reaches the canary words, or a RESET?
fn may_touch_canary(bytes: &[u8]) -> bool {
    (0..bytes.len()).any(|i| {
        if bytes[i] != CMD_SYNC || i + 4 > bytes.len() {
            return false;
        }
        let n = usize::from(u16::from_le_bytes([bytes[i + 2], bytes[i + 3]]));
        let Some(frame) = bytes.get(i..i + 6 + n) else {
            return false;
        };
        match decode_command(frame) {
            Ok(f) if f.cmd == Command::Write.code() => f.payload.first() == Some(&CANARY_REGION),
            _ => false,
        }
    })
}

#[test]
fn fuzz_protocol_device_side_in_verilator() {
    use dfforge::host::link::{self, SimLink};
    use dfforge::host::SimLinkOptions;
    use dfforge::rtl::cmd::{cmd_testmem, CmdParams};
    if !common::tool("verilator") {
        return;
    }
    let params = CmdParams {
        timeout: FRAME_TIMEOUT,
        id: ID,
        ..CmdParams::default()
    };
    let Some(build) = common::built(link::build(&cmd_testmem(&params), TOP, &[], false).map_err(
        |e| match e {
            LinkError::Build(s) => s,
            e => panic!("{e}"),
        },
    )) else {
        return;
    };
    let opts = SimLinkOptions {
        // Wall clock: a hung model fails the test instead of hanging it.
        timeout: Duration::from_secs(20),
        ..SimLinkOptions::default()
    };
    let sim = RefCell::new(SimLink::spawn(&build, opts).unwrap());
    let canary = |sim: &mut SimLink| {
        let mut c = Client::new(sim);
        c.write(CANARY_REGION, 8, CANARY_ADDR, &CANARY).unwrap();
    };
    canary(&mut sim.borrow_mut());
    // Cycles a frame of `n` input bytes may need before its answer is out.
    let limit = |n: usize| (n as u64) + 2 * u64::from(FRAME_TIMEOUT) + 4000;
    let answered = std::cell::Cell::new(0u32);
    fuzz(
        "dff_cmd (RTL, Verilator)",
        fuzz_cases(300),
        Some(Duration::from_secs(10)),
        device_input(),
        |bytes: Vec<u8>| {
            let mut sim = sim.borrow_mut();
            let (st, out) = sim
                .transact_raw(&bytes, limit(bytes.len()))
                .map_err(|e| TestCaseError::fail(format!("link: {e}")))?;
            // A complete answer is a well-formed frame with a known status.
            if st == 0 {
                answered.set(answered.get() + 1);
                let r = decode_response(&out);
                prop_assert!(r.is_ok(), "answer {out:02x?}: {:?}", r.err());
                let r = r.unwrap();
                prop_assert!(!matches!(r.status, Status::Other(_)), "{r:?}");
            }
            // Drain whatever else the input provoked (several frames, a pending timeout):
            // the device must fall quiet within a bounded number of cycles...
            let mut quiet = 0;
            for _ in 0..200 {
                let (st, _) = sim
                    .transact_raw(&[], limit(0))
                    .map_err(|e| TestCaseError::fail(format!("link: {e}")))?;
                quiet = if st == 1 { quiet + 1 } else { 0 };
                if quiet == 2 {
                    break;
                }
            }
            prop_assert_eq!(quiet, 2, "the device kept talking after {:02x?}", bytes);
            // ...and then answer as before, with its memory intact.
            let mut c = Client::new(&mut *sim);
            let id = c.ping();
            prop_assert!(matches!(id, Ok(ID)), "PING after {bytes:02x?}: {id:?}");
            if may_touch_canary(&bytes) {
                c.write(CANARY_REGION, 8, CANARY_ADDR, &CANARY).unwrap();
            } else {
                let v = c.read(CANARY_REGION, 8, CANARY_ADDR, CANARY.len());
                prop_assert!(
                    matches!(&v, Ok(v) if v == &CANARY),
                    "memory changed by {bytes:02x?}: {v:?}"
                );
            }
            Ok(())
        },
    );
    eprintln!("  inputs answered with a frame: {}", answered.get());
}
