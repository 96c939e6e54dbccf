//! `dff_cmd`: the device side of the host protocol (docs/protocol.md). Bytes in on
//! `rx_data_i`/`rx_valid_i` (one per strobe, always accepted: a UART cannot wait), one
//! response frame per command frame out on `tx_*` (valid/ready), the engine behind a simple
//! request/ack bus plus run/done and soft-reset strobes.
//!
//! Why it is built this way:
//! * The whole payload goes into a byte RAM (`MAX_PAYLOAD` deep, one port, registered read:
//!   a block RAM) and nothing is executed before the CRC and the length checks have passed,
//!   so a corrupted frame never writes engine memory.
//! * Responses are assembled in the same RAM before the first byte goes out, because the
//!   status sits in the header: a READ that hits a bad address after some words must still
//!   be able to answer BAD_ADDR instead of a half-sent OK. Hence a READ's answer is limited
//!   to `MAX_PAYLOAD` bytes too.
//! * The first 8 payload bytes are also captured in a register, so the command's arguments
//!   (region, wbytes, addr, count) need no RAM reads; a WRITE's word-length check runs while
//!   the bytes arrive, so the decision needs no divider.
//! * The CRC is the bytewise CRC-16/CCITT-FALSE of [`crc16_step`]: one byte per cycle, no
//!   bit-serial state machine.
//! * The host's command and status codes come from [`crate::host::protocol`], so the two
//!   sides share one table.

use crate::hdl::*;
use crate::host::protocol::{
    Command, Status, CMD_SYNC, PING_MAGIC, REGION_COUNTERS, REGION_HYPER, RSP_SYNC,
    TRUNCATED_HEADER_CMD, WRITE_HEADER,
};

/// The generator's choice of `dff_cmd`'s parameter defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmdParams {
    /// Largest payload accepted, and largest response (bytes; the RAM's depth).
    pub max_payload: u32,
    /// Idle cycles inside a frame after which it is answered TRUNCATED.
    pub timeout: u32,
    /// Counters READ_COUNTERS returns (bus region 0xF1, addresses 0..NCOUNTERS).
    pub ncounters: u32,
    /// Returned by PING (the config hash prefix, [`config_id`]).
    pub id: u64,
}

impl Default for CmdParams {
    fn default() -> Self {
        CmdParams {
            max_payload: 1024,
            timeout: 1 << 20,
            ncounters: 4,
            id: 0,
        }
    }
}

impl CmdParams {
    /// The ranges `dff_cmd` works in (also documented in docs/protocol.md).
    pub fn check(&self) -> Result<(), String> {
        if !(16..=65535).contains(&self.max_payload) {
            return Err(format!(
                "MAX_PAYLOAD {} is outside 16..=65535 (a PING answer needs 12 bytes; lengths are 16-bit)",
                self.max_payload
            ));
        }
        if self.ncounters == 0 || u64::from(self.ncounters) * 8 > u64::from(self.max_payload) {
            return Err(format!(
                "NCOUNTERS {} needs 1..={} so that READ_COUNTERS' answer fits MAX_PAYLOAD {}",
                self.ncounters,
                self.max_payload / 8,
                self.max_payload
            ));
        }
        if self.timeout < 2 {
            return Err("TIMEOUT must be at least 2 cycles".into());
        }
        Ok(())
    }
}

/// The hardware identity of a config: every value that the generated engine (`dff_system`)
/// bakes in, and nothing that the host sets at run time, so that a bitstream answers PING
/// with the [`config_id`] of every config it can train and of no other.
///
/// Covered, because they are RTL parameters, memory sizes, ROM contents or constants:
/// - `network.input`, `network.hidden`, `network.classes`: memory sizes, loop bounds, the
///   1/d and 2/d constants;
/// - `algorithm.loss`, `margin`, `scale` (as quantised): the loss unit and its constants;
///   `negatives`, `negatives_count` as what they choose in hardware: the hypotheses per
///   sample (memory sizes) and the number of hard negatives the LOSS op selects;
///   `collaboration`, `scheme`, `eval_layers` (as the layer set): the microprogram;
/// - `training.batch`: memory depths (also the BATCH register's reset value; the host
///   writes that register before every step);
/// - every `fixed` format, rounding mode, table size and fraction, and the LFSR (the exp
///   table's range as the table it gives; of the pixels only the width: the host quantises
///   them and the normalisation is scale-free, so `fixed.pixel.frac` changes no hardware)
///   (`fixed.multiplier_bits` and `fixed.wide_products` only steer validation and the fit
///   estimate, and are left out);
/// - `hardware.array_rows`, `hardware.array_cols`;
/// - the width of the learning-rate register ([`super::lr_register_bits`]), which follows
///   from DF's η/B at the start of the run.
///
/// Left out, because the host supplies them: the learning rate's value (the driver writes
/// the LR register before every step; its reset value is the config's, but nothing relies on
/// it), `algorithm.name` (the engine trains DF; the driver refuses other learners),
/// `epsilon` and `ff_threshold` (float and FF only), `feedback_seed` (the host loads DF-R's
/// feedback matrices), `optimizer`, `lr_schedule`, `momentum`, `epochs`, `seed`, `shift`,
/// the per-learner training tables, `data.dataset` and `hardware.board` (the fit check only).
/// `tests/hardware_id.rs` changes every key and checks that the ID changes exactly when the
/// generated RTL does (beyond the LR register's reset value).
pub fn hardware_identity(cfg: &crate::config::Config) -> serde_json::Value {
    use crate::config::Learner;
    // The engine trains DF: its learning rate sets the register width, whichever learner
    // this config otherwise runs.
    let df;
    let cfg = if cfg.algorithm.name == Learner::Df {
        cfg
    } else {
        let mut c = cfg.clone();
        c.set_learner(Learner::Df);
        df = c;
        &df
    };
    let a = &cfg.algorithm;
    let lr = crate::fixed::model::lr_constant(cfg, 1.0);
    // The margin, the scale and the exp table as the hardware holds them (quantised; the
    // table's range only through its step and contents), when they quantise.
    let (margin, scale, exp) = match crate::fixed::model::Units::new(cfg) {
        Ok(u) => {
            use sha2::{Digest, Sha256};
            let words: Vec<String> = u.exp.entries().iter().map(|w| w.to_string()).collect();
            let table = Sha256::digest(words.join(",").as_bytes());
            let table: String = table.iter().take(8).map(|b| format!("{b:02x}")).collect();
            (
                serde_json::json!(u.margin),
                serde_json::json!(u.scale),
                serde_json::json!([u.exp.step_shift(), table]),
            )
        }
        Err(_) => (
            serde_json::json!(a.margin),
            serde_json::json!(a.scale),
            serde_json::json!(cfg.fixed.exp_range),
        ),
    };
    // What the negatives choose in hardware: the hypotheses per sample (memory sizes), and
    // the number of hard negatives the LOSS op selects.
    let hypotheses = match a.negatives {
        crate::config::Negatives::Random => a.negatives_count + 1,
        _ => cfg.network.classes,
    };
    let hard = (a.negatives == crate::config::Negatives::Hard).then_some(a.negatives_count);
    let mut fixed = serde_json::to_value(&cfg.fixed).unwrap_or_default();
    if let Some(f) = fixed.as_object_mut() {
        f.remove("multiplier_bits");
        f.remove("wide_products");
        f.insert("exp_range".into(), exp);
        // Pixels are quantised by the host and normalised scale-free (x · rsqrt Σx²): the
        // hardware is the same for every pixel scale, only their width matters.
        if let Some(p) = f.get_mut("pixel").and_then(|p| p.as_object_mut()) {
            p.remove("frac");
        }
    }
    serde_json::json!({
        "identity": 1,
        "network": cfg.network,
        "algorithm": {
            "loss": a.loss,
            "margin": margin,
            "scale": scale,
            "hypotheses": hypotheses,
            "hard_negatives": hard,
            "collaboration": a.collaboration,
            "scheme": a.scheme,
            "eval_layers": cfg.eval_layer_indices(),
        },
        "batch": cfg.training.batch,
        "fixed": fixed,
        "array": [cfg.hardware.array_rows, cfg.hardware.array_cols],
        "lr_register_bits": super::lr_register_bits(lr, cfg.fixed.lr_frac),
    })
}

/// `ID` of a config (returned by PING): the first 8 bytes, big-endian, of the sha256 of its
/// [`hardware_identity`]. Two configs that differ only in what the host sets at run time
/// (epochs, data set, seed, the learning rate's value, ...) have the same ID.
pub fn config_id(cfg: &crate::config::Config) -> u64 {
    use sha2::{Digest, Sha256};
    let text = hardware_identity(cfg).to_string();
    let d = Sha256::digest(text.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// One byte of CRC-16/CCITT-FALSE, the formula the RTL uses (no table, no loop):
/// `x = crc>>8 ^ b; x ^= x>>4; crc = crc<<8 ^ x<<12 ^ x<<5 ^ x`.
pub fn crc16_step(crc: u16, byte: u8) -> u16 {
    let mut x = (crc >> 8) as u8 ^ byte;
    x ^= x >> 4;
    let x = u16::from(x);
    (crc << 8) ^ (x << 12) ^ (x << 5) ^ x
}

/// [`crc16_step`] as wires: declares `<name>_x1`, `<name>_x`, `<name>` (the new CRC).
fn crc_step_rtl(m: &mut Module, name: &str, crc: &Expr, byte: &Expr) -> Expr {
    let x1 = m.wire(&format!("{name}_x1"), 8);
    m.assign(&x1, crc.slice(15, 8) ^ byte.clone());
    let x = m.wire(&format!("{name}_x"), 8);
    m.assign(&x, &x1 ^ cat([lit(4, 0), x1.slice(7, 4)]));
    let next = m.wire(name, 16);
    m.assign(
        &next,
        cat([crc.slice(7, 0), lit(8, 0)])
            ^ cat([x.slice(3, 0), lit(12, 0)])
            ^ cat([lit(3, 0), x.clone(), lit(5, 0)])
            ^ cat([lit(8, 0), x.clone()]),
    );
    next
}

// FSM states. Receive: SYNC..CRC_HI; decide: CHECK (into act_q), then ACT; execute: WR_*,
// RD_*, RUN_WAIT and the *_STORE states that put an answer into the RAM; send:
// TX_START/TX_LOAD/TX_WAIT.
const STATES: [&str; 20] = [
    "S_SYNC",
    "S_CMD",
    "S_LEN_LO",
    "S_LEN_HI",
    "S_PAYLOAD",
    "S_CRC_LO",
    "S_CRC_HI",
    "S_CHECK",
    "S_ACT",
    "S_WR_FETCH",
    "S_WR_LOAD",
    "S_WR_BUS",
    "S_RD_BUS",
    "S_RD_STORE",
    "S_RUN_WAIT",
    "S_ENG_STORE",
    "S_PING_STORE",
    "S_ERR_STORE",
    "S_TX_START",
    "S_TX_LOAD",
];
const S_TX_WAIT: &str = "S_TX_WAIT";
const SW: u32 = 5;

/// Split a decision tree (ifs and cases whose leaves are action statement lists) into a
/// decide step and an act step: every leaf becomes `act <= i; <goto_act>`, and the distinct
/// leaves are returned in `actions` (index i), for a `case (act)` in the next state.
fn split_decision(
    tree: Vec<Stmt>,
    act: &Expr,
    act_w: u32,
    goto_act: &Stmt,
    actions: &mut Vec<Vec<Stmt>>,
) -> Vec<Stmt> {
    let control = |s: &Stmt| matches!(s, Stmt::If { .. } | Stmt::Case { .. });
    if !tree.iter().any(control) {
        let i = actions.iter().position(|a| *a == tree).unwrap_or_else(|| {
            actions.push(tree);
            actions.len() - 1
        });
        return vec![nb(act, lit(act_w, i as u64)), goto_act.clone()];
    }
    assert!(
        tree.iter().all(control),
        "split_decision: a branch mixes actions and decisions"
    );
    tree.into_iter()
        .map(|s| match s {
            Stmt::If { cond, then_, else_ } => Stmt::If {
                cond,
                then_: split_decision(then_, act, act_w, goto_act, actions),
                else_: split_decision(else_, act, act_w, goto_act, actions),
            },
            Stmt::Case {
                subject,
                arms,
                default,
            } => Stmt::Case {
                subject,
                arms: arms
                    .into_iter()
                    .map(|a| CaseArm {
                        labels: a.labels,
                        body: split_decision(a.body, act, act_w, goto_act, actions),
                    })
                    .collect(),
                default: split_decision(default, act, act_w, goto_act, actions),
            },
            other => other,
        })
        .collect()
}

fn st(name: &str) -> Expr {
    id(name)
}

fn status(s: Status) -> Expr {
    id(format!("ST_{}", s.name()))
}

fn command(c: Command) -> Expr {
    id(format!("CMD_{}", c.name()))
}

/// `{16'd0, e}`: a 16-bit value widened to compare with a 32-bit parameter.
fn w32(e: &Expr) -> Expr {
    cat([lit(16, 0), e.clone()])
}

/// The `dff_cmd` module with `p` as its parameter defaults. Panics if `p` fails
/// [`CmdParams::check`] (the values come from code, never from user input).
pub fn cmd(p: &CmdParams) -> Module {
    if let Err(e) = p.check() {
        panic!("dff_cmd parameters: {e}");
    }
    let mut m = Module::new("dff_cmd").doc(
        "Host protocol decoder/encoder (docs/protocol.md): command frames in on rx_*, one\n\
         response frame per command out on tx_*, the engine behind a request/ack bus.\n\
         The payload is buffered and CRC-checked before anything is executed.\n\
         MAX_PAYLOAD: 16..65535 bytes (buffer depth; also the longest response).\n\
         TIMEOUT: idle cycles inside a frame before it is answered TRUNCATED.\n\
         NCOUNTERS: READ_COUNTERS reads bus region 0xF1, addresses 0..NCOUNTERS-1\n\
         (NCOUNTERS*8 <= MAX_PAYLOAD). ID: 64-bit value returned by PING.",
    );
    let max_payload = m.param("MAX_PAYLOAD", p.max_payload);
    let timeout = m.param("TIMEOUT", p.timeout);
    let ncounters = m.param("NCOUNTERS", p.ncounters);
    let idp = m.param("ID", hex(64, p.id));
    let aw = m.localparam("AW", clog2(&max_payload));
    for (i, s) in STATES.iter().chain([&S_TX_WAIT]).enumerate() {
        m.localparam(s, lit(SW, i as u64));
    }
    for c in Command::ALL {
        m.localparam(&format!("CMD_{}", c.name()), hex(8, c.code().into()));
    }
    for s in Status::KNOWN {
        m.localparam(&format!("ST_{}", s.name()), lit(8, s.code().into()));
    }

    let clk = m.input("clk_i", 1);
    m.input("rst_i", 1);
    let rx_data = m.input("rx_data_i", 8);
    let rx_valid = m.input("rx_valid_i", 1);
    let tx_data_o = m.output("tx_data_o", 8);
    let tx_valid_o = m.output("tx_valid_o", 1);
    let tx_ready = m.input("tx_ready_i", 1);
    let bus_req_o = m.output("bus_req_o", 1);
    let bus_we_o = m.output("bus_we_o", 1);
    let bus_region_o = m.output("bus_region_o", 8);
    let bus_addr_o = m.output("bus_addr_o", 32);
    let bus_wdata_o = m.output("bus_wdata_o", 64);
    let bus_ack = m.input("bus_ack_i", 1);
    let bus_err = m.input("bus_err_i", 1);
    let bus_rdata = m.input("bus_rdata_i", 64);
    let run_o = m.output("run_o", 1);
    let run_op_o = m.output("run_op_o", 8);
    let run_done = m.input("run_done_i", 1);
    let run_status = m.input("run_status_i", 8);
    let run_result = m.input("run_result_i", 8);
    let soft_rst_o = m.output("soft_rst_o", 1);

    // ---------------------------------------------------------------- registers
    let state_q = m.reg("state_q", SW);
    let cmd_q = m.reg("cmd_q", 8);
    let len_q = m.reg("len_q", 16);
    // Payload byte index while receiving, RAM pointer while executing and sending.
    let pos_q = m.reg("pos_q", 16);
    let crc_q = m.reg("crc_q", 16);
    let crc_lo_q = m.reg("crc_lo_q", 8);
    let crc_ok_q = m.reg("crc_ok_q", 1);
    // Payload bytes 0..7 (the arguments of WRITE, READ and SET_HYPER).
    let arg_q = m.reg("arg_q", 64);
    // Byte position within a WRITE word while receiving: nonzero at the end = ragged length.
    let wpos_q = m.reg("wpos_q", 3);
    let tmo_q = m.reg("tmo_q", 32);
    let status_q = m.reg("status_q", 8);
    let rlen_q = m.reg("rlen_q", 16);
    // Response byte being sent: 0..4 header, 5 payload, 6..7 CRC.
    let txp_q = m.reg("txp_q", 3);
    let txd_q = m.reg("txd_q", 8);
    let crc_pend_q = m.reg("crc_pend_q", 1);
    let txv_q = m.reg("txv_q", 1);
    let txlast_q = m.reg("txlast_q", 1);
    let word_q = m.reg("word_q", 64);
    let wdata_q = m.reg("wdata_q", 64);
    let bcnt_q = m.reg("bcnt_q", 3);
    let widx_q = m.reg("widx_q", 16);
    let region_q = m.reg("region_q", 8);
    let wbm1_q = m.reg("wbm1_q", 3);
    let addr_q = m.reg("addr_q", 32);
    let count_q = m.reg("count_q", 16);
    let req_q = m.reg("req_q", 1);
    let we_q = m.reg("we_q", 1);
    let run_q = m.reg("run_q", 1);
    let op_q = m.reg("op_q", 8);
    let srst_q = m.reg("srst_q", 1);
    let runst_q = m.reg("runst_q", 8);

    // ---------------------------------------------------------------- payload RAM
    m.comment("Payload/response RAM: one port, registered read (a block RAM). It is never");
    m.comment("read and written at one address in one cycle, hence no_rw_check.");
    let mem = m.memory("buf_mem", 8, &max_payload, None);
    m.memory_attr("buf_mem", "no_rw_check");
    let ram_addr = m.wire("ram_addr", &aw);
    m.assign(&ram_addr, pos_q.slice(aw.clone() - 1, 0));
    let ram_we = m.reg("ram_we", 1);
    let ram_wdata = m.reg("ram_wdata", 8);
    let ram_rdata_q = m.reg("ram_rdata_q", 8);
    m.always_ff(
        &clk,
        vec![
            if_(&ram_we, vec![nb(mem.idx(&ram_addr), &ram_wdata)]),
            nb(&ram_rdata_q, mem.idx(&ram_addr)),
        ],
    );

    // ---------------------------------------------------------------- datapath
    m.comment("Bytewise CRC-16/CCITT-FALSE of the received and of the sent byte.");
    let crc_rx = crc_step_rtl(&mut m, "crc_rx", &crc_q, &rx_data);
    let tx_byte = m.reg("tx_byte", 8);
    // The sent byte's CRC step reads the registered byte (in the first S_TX_WAIT cycle),
    // so no path runs from the buffer RAM's output through the CRC.
    let crc_tx = crc_step_rtl(&mut m, "crc_tx", &crc_q, &txd_q);

    m.comment("Arguments: region, wbytes, addr (u32), count (u16) / hyper id.");
    let arg_region = arg_q.slice(7, 0);
    let arg_wbytes = arg_q.slice(15, 8);
    let arg_addr = arg_q.slice(47, 16);
    let arg_count = arg_q.slice(63, 48);
    let wbytes_bad = m.wire("wbytes_bad", 1);
    m.assign(
        &wbytes_bad,
        arg_wbytes
            .clone()
            .eq_(lit(8, 0))
            .lor(arg_wbytes.clone().gt_(lit(8, 8))),
    );
    // Registered: the product is a DSP, and the dispatch that reads it comes at least two
    // bytes (the CRC) after the last argument byte.
    let read_bytes = m.reg("read_bytes_q", 20);
    m.always_ff(
        &clk,
        vec![nb(
            &read_bytes,
            cat([lit(4, 0), arg_count.clone()]) * cat([lit(16, 0), arg_q.slice(11, 8)]),
        )],
    );
    let read_too_long = m.wire("read_too_long", 1);
    m.assign(
        &read_too_long,
        cat([lit(12, 0), read_bytes.clone()]).gt_(&max_payload),
    );
    let len_over = m.wire("len_over", 1);
    m.assign(&len_over, w32(&len_q).gt_(&max_payload));
    let pos_in_ram = m.wire("pos_in_ram", 1);
    m.assign(&pos_in_ram, w32(&pos_q).lt_(&max_payload));
    let len_zero = m.wire("len_zero", 1);
    m.assign(&len_zero, len_q.clone().eq_(lit(16, 0)));
    // The dispatch (S_CHECK) and the word loops read their compares from registers, so the
    // decisions that enable most of this module's registers stay a few gates deep. Each
    // flag is in time: S_CHECK comes two received bytes (the CRC) after the last length or
    // argument byte (read_too_long, behind the registered product, needs both); the word
    // counters of S_RD_STORE and pos_q of S_WR_BUS settle a cycle before they are read
    // (a bus slave acknowledges from a register, so never in the request's first cycle).
    let mut flag = |name: &str, e: Expr| {
        let r = m.reg(&format!("{name}_q"), 1);
        m.always_ff(&clk, vec![nb(&r, e)]);
        r
    };
    let len_over = flag("len_over", len_over);
    let len_zero = flag("len_zero", len_zero);
    let wbytes_bad = flag("wbytes_bad", wbytes_bad);
    let read_too_long = flag("read_too_long", read_too_long);
    let cmd_unknown = flag("cmd_unknown", cmd_q.clone().gt_(command(Command::Reset)));
    let write_len_bad = flag(
        "write_len_bad",
        len_q
            .clone()
            .lt_(lit(16, WRITE_HEADER as u64))
            .lor(wpos_q.clone().ne_(lit(3, 0))),
    );
    let write_empty = flag(
        "write_empty",
        len_q.clone().eq_(lit(16, WRITE_HEADER as u64)),
    );
    let read_len_bad = flag("read_len_bad", len_q.clone().ne_(lit(16, 8)));
    let hyper_len_bad = flag("hyper_len_bad", len_q.clone().ne_(lit(16, 9)));
    let count_zero = flag("count_zero", arg_q.slice(63, 48).eq_(lit(16, 0)));
    let rd_last = flag("rd_last", widx_q.clone().eq_(&count_q - lit(16, 1)));
    let wr_last = flag("wr_last", pos_q.clone().eq_(&len_q));
    // pos_q == len_q - 1 in S_PAYLOAD, kept with pos_q (bytes may come every cycle).
    let payload_last = m.reg("payload_last_q", 1);

    m.comment("WRITE word: byte bcnt_q (from RAM) goes to lane bcnt_q, lanes below keep what");
    m.comment("came before, lanes above repeat its sign: after the last byte, the sign-extended");
    m.comment("word (per-lane muxes, cheaper than a 64-bit arithmetic shifter).");
    m.comment("The lane selects and the last-byte flag are registered decodes of bcnt_q:");
    m.comment("S_WR_LOAD always follows S_WR_FETCH, where bcnt_q had the same value, so the");
    m.comment("block RAM's output (5.6 ns after the edge) meets only the lane mux.");
    let wr_word = m.wire("wr_word", 64);
    let lane_new_q = m.reg("lane_new_q", 8);
    let lane_keep_q = m.reg("lane_keep_q", 7);
    let wr_lastb_q = m.reg("wr_lastb_q", 1);
    let new_bits: Vec<Expr> = (0..8u64).rev().map(|j| lit(3, j).eq_(&bcnt_q)).collect();
    // Lanes 0-6 (lane 7 is never below bcnt_q, a 3-bit count).
    let keep_bits: Vec<Expr> = (0..7u64).rev().map(|j| lit(3, j).lt_(&bcnt_q)).collect();
    m.always_ff(
        &clk,
        vec![
            nb(&lane_new_q, cat(new_bits)),
            nb(&lane_keep_q, cat(keep_bits)),
            nb(&wr_lastb_q, bcnt_q.clone().eq_(&wbm1_q)),
        ],
    );
    let sign = ram_rdata_q.idx(7);
    let lanes: Vec<Expr> = (0..8u64)
        .rev()
        .map(|j| {
            let new_or_sign = mux(
                lane_new_q.idx(int(j)),
                ram_rdata_q.clone(),
                repl(int(8), [sign.clone()]),
            );
            if j == 7 {
                new_or_sign
            } else {
                mux(
                    lane_keep_q.idx(int(j)),
                    word_q.slice(8 * j + 7, 8 * j),
                    new_or_sign,
                )
            }
        })
        .collect();
    m.assign(&wr_word, cat(lanes));

    m.comment("PING answer: \"DFF1\" then ID, little-endian, shifted out a byte per cycle");
    m.comment(
        "(a byte picked by pos_q would be a ROM that synthesis reads at pos_q's next value).",
    );
    let id_w = m.wire("id_w", 64);
    m.assign(&id_w, &idp);
    let magic = u32::from_le_bytes(*PING_MAGIC);
    let ping_w = m.wire("ping_w", 96);
    m.assign(&ping_w, cat([id_w.clone(), hex(32, magic.into())]));
    let ping_sr = m.reg("ping_sr_q", 96);
    let ping_byte = m.wire("ping_byte", 8);
    m.assign(&ping_byte, ping_sr.slice(7, 0));

    // ---------------------------------------------------------------- RAM write port
    m.always_comb(vec![
        set(&ram_we, lit(1, 0)),
        set(&ram_wdata, &rx_data),
        case(
            &state_q,
            vec![
                arm(
                    st("S_PAYLOAD"),
                    vec![set(&ram_we, rx_valid.clone().land(&pos_in_ram))],
                ),
                arm(
                    st("S_RD_STORE"),
                    vec![set(&ram_we, lit(1, 1)), set(&ram_wdata, word_q.slice(7, 0))],
                ),
                arm(
                    st("S_PING_STORE"),
                    vec![set(&ram_we, lit(1, 1)), set(&ram_wdata, &ping_byte)],
                ),
                arm(
                    st("S_ERR_STORE"),
                    vec![
                        set(&ram_we, lit(1, 1)),
                        set(
                            &ram_wdata,
                            mux(pos_q.idx(0), widx_q.slice(15, 8), widx_q.slice(7, 0)),
                        ),
                    ],
                ),
                arm(
                    st("S_RUN_WAIT"),
                    vec![set(&ram_we, &run_done), set(&ram_wdata, &run_result)],
                ),
                arm(
                    st("S_ENG_STORE"),
                    vec![set(&ram_we, lit(1, 1)), set(&ram_wdata, &runst_q)],
                ),
            ],
            vec![],
        ),
    ]);

    // ---------------------------------------------------------------- response byte
    m.always_comb(vec![case(
        &txp_q,
        vec![
            arm(lit(3, 0), vec![set(&tx_byte, hex(8, RSP_SYNC.into()))]),
            arm(lit(3, 1), vec![set(&tx_byte, &cmd_q)]),
            arm(lit(3, 2), vec![set(&tx_byte, &status_q)]),
            arm(lit(3, 3), vec![set(&tx_byte, rlen_q.slice(7, 0))]),
            arm(lit(3, 4), vec![set(&tx_byte, rlen_q.slice(15, 8))]),
            arm(lit(3, 5), vec![set(&tx_byte, &ram_rdata_q)]),
            arm(lit(3, 6), vec![set(&tx_byte, crc_q.slice(7, 0))]),
        ],
        vec![set(&tx_byte, crc_q.slice(15, 8))],
    )]);

    // ---------------------------------------------------------------- FSM
    m.comment("Receiving a frame after its sync byte (the timeout runs); its header.");
    let in_frame = m.wire("in_frame", 1);
    m.assign(
        &in_frame,
        state_q
            .clone()
            .ge_(st("S_CMD"))
            .land(state_q.clone().le_(st("S_CRC_HI"))),
    );
    let in_header = m.wire("in_header", 1);
    m.assign(&in_header, state_q.clone().le_(st("S_LEN_HI")));
    let goto = |s: &str| nb(&state_q, st(s));
    // Answer with `s`; the payload (if any) is already in RAM from address 0.
    let respond =
        |s: Expr, rlen: Expr| vec![nb(&status_q, s), nb(&rlen_q, rlen), goto("S_TX_START")];
    let inc16 = |r: &Expr| nb(r, r + lit(16, 1));
    let rx_arm = |s: &str, on_byte: Vec<Stmt>| arm(st(s), vec![if_(&rx_valid, on_byte)]);
    // The engine refused the access at word widx_q: answer BAD_ADDR with that index.
    let bad_addr = vec![nb(&pos_q, lit(16, 0)), goto("S_ERR_STORE")];
    let bad_len = respond(status(Status::BadLen), lit(16, 0));
    // Start the word loop of WRITE (words from RAM at `from`) or SET_HYPER.
    let start_write = |region: Expr, wbm1: Expr, addr: Expr, from: u64| {
        vec![
            nb(&region_q, region),
            nb(&wbm1_q, wbm1),
            nb(&addr_q, addr),
            nb(&pos_q, lit(16, from)),
            nb(&widx_q, lit(16, 0)),
            nb(&bcnt_q, lit(3, 0)),
            goto("S_WR_FETCH"),
        ]
    };
    // Start the word loop of READ / READ_COUNTERS (answer built in RAM from address 0).
    let start_read = |region: Expr, wbm1: Expr, addr: Expr, count: Expr| {
        vec![
            nb(&region_q, region),
            nb(&wbm1_q, wbm1),
            nb(&addr_q, addr),
            nb(&count_q, count),
            nb(&pos_q, lit(16, 0)),
            nb(&widx_q, lit(16, 0)),
            nb(&bcnt_q, lit(3, 0)),
            nb(&req_q, lit(1, 1)),
            nb(&we_q, lit(1, 0)),
            goto("S_RD_BUS"),
        ]
    };
    let wbm1_of_arg = arg_q.slice(10, 8) - lit(3, 1);

    let check_arms = vec![
        arm(
            command(Command::Ping),
            vec![if_(!len_zero.clone(), bad_len.clone()).else_(vec![
                nb(&pos_q, lit(16, 0)),
                nb(&ping_sr, &ping_w),
                goto("S_PING_STORE"),
            ])],
        ),
        arm(
            command(Command::Write),
            vec![if_(write_len_bad.clone().lor(&wbytes_bad), bad_len.clone())
                .else_if(write_empty.clone(), respond(status(Status::Ok), lit(16, 0)))
                .else_(start_write(
                    arg_region.clone(),
                    wbm1_of_arg.clone(),
                    arg_addr.clone(),
                    WRITE_HEADER as u64,
                ))],
        ),
        arm(
            command(Command::Read),
            vec![if_(
                read_len_bad.clone().lor(&wbytes_bad).lor(&read_too_long),
                bad_len.clone(),
            )
            .else_if(count_zero.clone(), respond(status(Status::Ok), lit(16, 0)))
            .else_(start_read(arg_region, wbm1_of_arg, arg_addr, arg_count))],
        ),
        arm(
            command(Command::SetHyper),
            vec![
                if_(hyper_len_bad.clone(), bad_len.clone()).else_(start_write(
                    hex(8, REGION_HYPER.into()),
                    lit(3, 7),
                    cat([lit(24, 0), arg_q.slice(7, 0)]),
                    1,
                )),
            ],
        ),
        CaseArm {
            labels: vec![command(Command::Train), command(Command::Infer)],
            body: vec![if_(!len_zero.clone(), bad_len.clone()).else_(vec![
                nb(&run_q, lit(1, 1)),
                nb(
                    &op_q,
                    mux(
                        cmd_q.clone().eq_(command(Command::Train)),
                        lit(8, 1),
                        lit(8, 2),
                    ),
                ),
                nb(&pos_q, lit(16, 0)),
                goto("S_RUN_WAIT"),
            ])],
        },
        arm(
            command(Command::ReadCounters),
            vec![if_(
                (!len_zero.clone()).lor((ncounters.clone() * 8).gt_(&max_payload)),
                bad_len.clone(),
            )
            .else_(start_read(
                hex(8, REGION_COUNTERS.into()),
                lit(3, 7),
                lit(32, 0),
                ncounters.slice(15, 0),
            ))],
        ),
        arm(
            command(Command::Reset),
            vec![if_(!len_zero.clone(), bad_len.clone()).else_({
                let mut v = vec![nb(&srst_q, lit(1, 1))];
                v.extend(respond(status(Status::Ok), lit(16, 0)));
                v
            })],
        ),
    ];

    let decide = vec![if_(
        !crc_ok_q.clone(),
        respond(status(Status::BadCrc), lit(16, 0)),
    )
    .else_if(
        cmd_unknown.clone(),
        respond(status(Status::UnknownCmd), lit(16, 0)),
    )
    .else_if(&len_over, bad_len.clone())
    .else_(vec![case(
        &cmd_q,
        check_arms,
        respond(status(Status::UnknownCmd), lit(16, 0)),
    )])];
    let mut actions = Vec::new();
    let act_w = 4;
    let act_q = m.reg("act_q", act_w);
    let check = split_decision(decide, &act_q, act_w, &goto("S_ACT"), &mut actions);
    assert!(
        actions.len() <= 1 << act_w,
        "dff_cmd: more actions than act_q holds"
    );
    let act_arms: Vec<CaseArm> = actions
        .into_iter()
        .enumerate()
        .map(|(i, body)| arm(lit(act_w, i as u64), body))
        .collect();

    let fsm_arms = vec![
        arm(
            st("S_SYNC"),
            vec![if_(
                rx_valid
                    .clone()
                    .land(rx_data.clone().eq_(hex(8, CMD_SYNC.into()))),
                vec![nb(&crc_q, hex(16, 0xffff)), goto("S_CMD")],
            )],
        ),
        rx_arm(
            "S_CMD",
            vec![nb(&cmd_q, &rx_data), nb(&crc_q, &crc_rx), goto("S_LEN_LO")],
        ),
        rx_arm(
            "S_LEN_LO",
            vec![
                nb(&len_q, cat([lit(8, 0), rx_data.clone()])),
                nb(&crc_q, &crc_rx),
                goto("S_LEN_HI"),
            ],
        ),
        rx_arm(
            "S_LEN_HI",
            vec![
                nb(&len_q, cat([rx_data.clone(), len_q.slice(7, 0)])),
                nb(&crc_q, &crc_rx),
                nb(&pos_q, lit(16, 0)),
                nb(&wpos_q, lit(3, 0)),
                nb(
                    &payload_last,
                    cat([rx_data.clone(), len_q.slice(7, 0)]).eq_(lit(16, 1)),
                ),
                if_(
                    cat([rx_data.clone(), len_q.slice(7, 0)]).eq_(lit(16, 0)),
                    vec![goto("S_CRC_LO")],
                )
                .else_(vec![goto("S_PAYLOAD")]),
            ],
        ),
        rx_arm(
            "S_PAYLOAD",
            vec![
                nb(&crc_q, &crc_rx),
                if_(
                    pos_q.clone().lt_(lit(16, 8)),
                    vec![nb(
                        arg_q.part(cat([pos_q.slice(2, 0), lit(3, 0)]), 8),
                        &rx_data,
                    )],
                ),
                // WRITE words start at byte 6; wbytes (byte 1) is known by then.
                if_(
                    pos_q.clone().ge_(lit(16, WRITE_HEADER as u64)),
                    vec![if_(
                        cat([lit(5, 0), wpos_q.clone()]).eq_(arg_wbytes.clone() - lit(8, 1)),
                        vec![nb(&wpos_q, lit(3, 0))],
                    )
                    .else_(vec![nb(&wpos_q, &wpos_q + lit(3, 1))])],
                ),
                inc16(&pos_q),
                nb(&payload_last, (&pos_q + lit(16, 2)).eq_(&len_q)),
                if_(payload_last.clone(), vec![goto("S_CRC_LO")]),
            ],
        ),
        rx_arm("S_CRC_LO", vec![nb(&crc_lo_q, &rx_data), goto("S_CRC_HI")]),
        rx_arm(
            "S_CRC_HI",
            vec![
                nb(
                    &crc_ok_q,
                    cat([rx_data.clone(), crc_lo_q.clone()]).eq_(&crc_q),
                ),
                goto("S_CHECK"),
            ],
        ),
        // Order of the checks: a corrupted frame says BAD_CRC whatever its fields claim.
        // S_CHECK only decides (which action, into act_q); S_ACT does it, so the decision
        // tree and the registers it loads are in different cycles.
        arm(st("S_CHECK"), check),
        arm(
            st("S_ACT"),
            vec![case(&act_q, act_arms, vec![goto("S_SYNC")])],
        ),
        // WRITE / SET_HYPER: gather wbytes bytes (one RAM read each), then one bus write.
        arm(st("S_WR_FETCH"), vec![goto("S_WR_LOAD")]),
        arm(
            st("S_WR_LOAD"),
            vec![
                nb(&word_q, &wr_word),
                inc16(&pos_q),
                if_(
                    &wr_lastb_q,
                    vec![
                        nb(&bcnt_q, lit(3, 0)),
                        nb(&wdata_q, &wr_word),
                        nb(&req_q, lit(1, 1)),
                        nb(&we_q, lit(1, 1)),
                        goto("S_WR_BUS"),
                    ],
                )
                .else_(vec![nb(&bcnt_q, &bcnt_q + lit(3, 1)), goto("S_WR_FETCH")]),
            ],
        ),
        arm(
            st("S_WR_BUS"),
            vec![if_(
                &bus_ack,
                vec![
                    nb(&req_q, lit(1, 0)),
                    if_(&bus_err, bad_addr.clone())
                        .else_if(wr_last.clone(), respond(status(Status::Ok), lit(16, 0)))
                        .else_(vec![
                            inc16(&widx_q),
                            nb(&addr_q, &addr_q + lit(32, 1)),
                            goto("S_WR_FETCH"),
                        ]),
                ],
            )],
        ),
        // READ / READ_COUNTERS: one bus read, then its low wbytes bytes into the RAM.
        arm(
            st("S_RD_BUS"),
            vec![if_(
                &bus_ack,
                vec![
                    nb(&req_q, lit(1, 0)),
                    if_(&bus_err, bad_addr.clone())
                        .else_(vec![nb(&word_q, &bus_rdata), goto("S_RD_STORE")]),
                ],
            )],
        ),
        arm(
            st("S_RD_STORE"),
            vec![
                nb(&word_q, cat([lit(8, 0), word_q.slice(63, 8)])),
                if_(
                    bcnt_q.clone().ne_(&wbm1_q),
                    vec![nb(&bcnt_q, &bcnt_q + lit(3, 1)), inc16(&pos_q)],
                )
                .else_if(rd_last.clone(), {
                    // The last byte of the last word: pos_q + 1 = count * wbytes.
                    respond(status(Status::Ok), &pos_q + lit(16, 1))
                })
                .else_(vec![
                    nb(&bcnt_q, lit(3, 0)),
                    inc16(&pos_q),
                    inc16(&widx_q),
                    nb(&addr_q, &addr_q + lit(32, 1)),
                    nb(&req_q, lit(1, 1)),
                    goto("S_RD_BUS"),
                ]),
            ],
        ),
        // TRAIN / INFER: the result byte goes to RAM[0] in the cycle run_done_i is seen.
        arm(
            st("S_RUN_WAIT"),
            vec![if_(
                &run_done,
                vec![if_(
                    run_status.clone().eq_(lit(8, 0)),
                    respond(status(Status::Ok), lit(16, 1)),
                )
                .else_(vec![
                    nb(&runst_q, &run_status),
                    nb(&pos_q, lit(16, 1)),
                    goto("S_ENG_STORE"),
                ])],
            )],
        ),
        arm(
            st("S_ENG_STORE"),
            respond(status(Status::Engine), lit(16, 2)),
        ),
        arm(
            st("S_PING_STORE"),
            vec![
                inc16(&pos_q),
                nb(&ping_sr, cat([lit(8, 0), ping_sr.slice(95, 8)])),
                if_(
                    pos_q.clone().eq_(lit(16, 11)),
                    respond(status(Status::Ok), lit(16, 12)),
                ),
            ],
        ),
        arm(
            st("S_ERR_STORE"),
            vec![
                inc16(&pos_q),
                if_(pos_q.idx(0), respond(status(Status::BadAddr), lit(16, 2))),
            ],
        ),
        // Send: load one byte (and advance), then hold it until the receiver takes it. The
        // RAM is read at pos_q during the wait, so the next payload byte is ready.
        arm(
            st("S_TX_START"),
            vec![
                nb(&pos_q, lit(16, 0)),
                nb(&txp_q, lit(3, 0)),
                nb(&crc_q, hex(16, 0xffff)),
                goto("S_TX_LOAD"),
            ],
        ),
        arm(
            st("S_TX_LOAD"),
            vec![
                nb(&txd_q, &tx_byte),
                nb(&txv_q, lit(1, 1)),
                nb(
                    &crc_pend_q,
                    txp_q
                        .clone()
                        .ne_(lit(3, 0))
                        .land(txp_q.clone().lt_(lit(3, 6))),
                ),
                case(
                    &txp_q,
                    vec![
                        arm(
                            lit(3, 4),
                            vec![nb(
                                &txp_q,
                                mux(rlen_q.clone().eq_(lit(16, 0)), lit(3, 6), lit(3, 5)),
                            )],
                        ),
                        arm(
                            lit(3, 5),
                            vec![
                                inc16(&pos_q),
                                if_(
                                    pos_q.clone().eq_(&rlen_q - lit(16, 1)),
                                    vec![nb(&txp_q, lit(3, 6))],
                                ),
                            ],
                        ),
                        arm(lit(3, 7), vec![nb(&txlast_q, lit(1, 1))]),
                    ],
                    vec![nb(&txp_q, &txp_q + lit(3, 1))],
                ),
                goto(S_TX_WAIT),
            ],
        ),
        arm(
            st(S_TX_WAIT),
            vec![
                // The CRC covers the frame's bytes from the command to the payload's last.
                if_(
                    &crc_pend_q,
                    vec![nb(&crc_q, &crc_tx), nb(&crc_pend_q, lit(1, 0))],
                ),
                if_(
                    &tx_ready,
                    vec![
                        nb(&txv_q, lit(1, 0)),
                        nb(&txlast_q, lit(1, 0)),
                        if_(&txlast_q, vec![goto("S_SYNC")]).else_(vec![goto("S_TX_LOAD")]),
                    ],
                ),
            ],
        ),
    ];

    let regs: Vec<(Expr, u32)> = vec![
        (state_q.clone(), SW),
        (cmd_q.clone(), 8),
        (len_q.clone(), 16),
        (pos_q.clone(), 16),
        (crc_q.clone(), 16),
        (crc_lo_q.clone(), 8),
        (crc_ok_q.clone(), 1),
        (arg_q.clone(), 64),
        (wpos_q.clone(), 3),
        (tmo_q.clone(), 32),
        (status_q.clone(), 8),
        (rlen_q.clone(), 16),
        (txp_q.clone(), 3),
        (txd_q.clone(), 8),
        (crc_pend_q.clone(), 1),
        (txv_q.clone(), 1),
        (txlast_q.clone(), 1),
        (word_q.clone(), 64),
        (wdata_q.clone(), 64),
        (bcnt_q.clone(), 3),
        (widx_q.clone(), 16),
        (region_q.clone(), 8),
        (wbm1_q.clone(), 3),
        (addr_q.clone(), 32),
        (count_q.clone(), 16),
        (req_q.clone(), 1),
        (we_q.clone(), 1),
        (run_q.clone(), 1),
        (op_q.clone(), 8),
        (srst_q.clone(), 1),
        (runst_q.clone(), 8),
        (payload_last.clone(), 1),
        (act_q.clone(), 4),
        (ping_sr.clone(), 96),
    ];
    m.comment("Control FSM. run_q and srst_q are one-cycle strobes. Inside a frame, TIMEOUT");
    m.comment("idle cycles end it with TRUNCATED (echoing 0xFF while the header is incomplete).");
    super::util::ff(
        &mut m,
        regs,
        vec![
            nb(&run_q, lit(1, 0)),
            nb(&srst_q, lit(1, 0)),
            case(&state_q, fsm_arms, vec![goto("S_SYNC")]),
            if_(
                rx_valid.clone().lor(!in_frame.clone()),
                vec![nb(&tmo_q, lit(32, 0))],
            )
            .else_if(tmo_q.clone().eq_(timeout.clone() - 1), {
                let mut v = vec![if_(
                    &in_header,
                    vec![nb(&cmd_q, hex(8, TRUNCATED_HEADER_CMD.into()))],
                )];
                v.extend(respond(status(Status::Truncated), lit(16, 0)));
                v
            })
            .else_(vec![nb(&tmo_q, &tmo_q + lit(32, 1))]),
        ],
    );

    m.assign(tx_data_o, txd_q);
    m.assign(tx_valid_o, txv_q);
    m.assign(bus_req_o, req_q);
    m.assign(bus_we_o, we_q);
    m.assign(bus_region_o, region_q);
    m.assign(bus_addr_o, addr_q);
    m.assign(bus_wdata_o, wdata_q);
    m.assign(run_o, run_q);
    m.assign(run_op_o, op_q);
    m.assign(soft_rst_o, srst_q);
    m
}

/// Test fixture, not part of any design: `dff_cmd_testmem` is `dff_cmd` (with `p` as its
/// parameters) in front of a small memory-backed fake engine, so the decoder can be
/// co-simulated alone through the frame harness. The fake engine:
/// * regions 0..3: 256 words of 64 bits each; region 0xF0 (hyper): 16 words; region 0xF1
///   (counters, read-only): 0 = free-running cycle counter, 1 = bus writes, 2 = bus reads,
///   3 = runs (the soft reset clears all four); any other region or address: `bus_err_i`;
/// * acks each request 2 to 4 cycles after `bus_req_o` rises (the delay from an LFSR), so
///   the decoder sees varying latency;
/// * answers `run_o` 5 cycles later with result = op + 40 and status 1 if op >= 3, else 0,
///   where op = `run_op_o` + hyper word 15 (low byte): dff_cmd only sends ops 1 and 2, so a
///   test sets hyper word 15 to reach the engine-error path.
///
/// Returns `[dff_cmd, dff_cmd_testmem]`; build with `dff_cmd_testmem` as the top.
pub fn cmd_testmem(p: &CmdParams) -> Vec<Module> {
    let c = cmd(p);
    let mut m = Module::new("dff_cmd_testmem").doc(
        "TEST FIXTURE: dff_cmd in front of a memory-backed fake engine (regions 0..3 x 256\n\
         words, hyper 0xF0 x 16, counters 0xF1 x 4; ack 2..4 cycles after req; run_done 5 cycles\n\
         after run with result op+40, status op>=3, op = run_op + hyper[15]).",
    );
    let clk = m.input("clk_i", 1);
    let rst = m.input("rst_i", 1);
    let rx_data = m.input("rx_data_i", 8);
    let rx_valid = m.input("rx_valid_i", 1);
    let tx_data = m.output("tx_data_o", 8);
    let tx_valid = m.output("tx_valid_o", 1);
    let tx_ready = m.input("tx_ready_i", 1);
    let req = m.wire("bus_req", 1);
    let we = m.wire("bus_we", 1);
    let region = m.wire("bus_region", 8);
    let addr = m.wire("bus_addr", 32);
    let wdata = m.wire("bus_wdata", 64);
    let run = m.wire("run", 1);
    let run_op = m.wire("run_op", 8);
    let soft_rst = m.wire("soft_rst", 1);
    let ack_q = m.reg("ack_q", 1);
    let err_q = m.reg("err_q", 1);
    let rdata_q = m.reg("rdata_q", 64);
    let done_q = m.reg("done_q", 1);
    let rstatus_q = m.reg("rstatus_q", 8);
    let rresult_q = m.reg("rresult_q", 8);
    m.instance(
        Instance::new("dff_cmd", "u_cmd")
            .param("MAX_PAYLOAD", p.max_payload)
            .param("TIMEOUT", p.timeout)
            .param("NCOUNTERS", p.ncounters)
            .param("ID", hex(64, p.id))
            .conn("clk_i", &clk)
            .conn("rst_i", &rst)
            .conn("rx_data_i", &rx_data)
            .conn("rx_valid_i", &rx_valid)
            .conn("tx_data_o", &tx_data)
            .conn("tx_valid_o", &tx_valid)
            .conn("tx_ready_i", &tx_ready)
            .conn("bus_req_o", &req)
            .conn("bus_we_o", &we)
            .conn("bus_region_o", &region)
            .conn("bus_addr_o", &addr)
            .conn("bus_wdata_o", &wdata)
            .conn("bus_ack_i", &ack_q)
            .conn("bus_err_i", &err_q)
            .conn("bus_rdata_i", &rdata_q)
            .conn("run_o", &run)
            .conn("run_op_o", &run_op)
            .conn("run_done_i", &done_q)
            .conn("run_status_i", &rstatus_q)
            .conn("run_result_i", &rresult_q)
            .conn("soft_rst_o", &soft_rst),
    );
    let data_mem = m.memory("data_mem", 64, 1024, None);
    let hyp_mem = m.memory("hyp_mem", 64, 16, None);
    let in_data = m.wire("in_data", 1);
    m.assign(
        &in_data,
        region
            .slice(7, 2)
            .eq_(lit(6, 0))
            .land(addr.slice(31, 8).eq_(lit(24, 0))),
    );
    let in_hyp = m.wire("in_hyp", 1);
    m.assign(
        &in_hyp,
        region
            .clone()
            .eq_(hex(8, REGION_HYPER.into()))
            .land(addr.slice(31, 4).eq_(lit(28, 0))),
    );
    let in_cnt = m.wire("in_cnt", 1);
    m.assign(
        &in_cnt,
        region
            .clone()
            .eq_(hex(8, REGION_COUNTERS.into()))
            .land(addr.slice(31, 2).eq_(lit(30, 0))),
    );
    let data_idx = m.wire("data_idx", 10);
    m.assign(&data_idx, cat([region.slice(1, 0), addr.slice(7, 0)]));
    let cyc_q = m.reg("cyc_q", 64);
    let nwr_q = m.reg("nwr_q", 64);
    let nrd_q = m.reg("nrd_q", 64);
    let nrun_q = m.reg("nrun_q", 64);
    let cnt_val = m.wire("cnt_val", 64);
    m.assign(
        &cnt_val,
        mux(
            addr.idx(1),
            mux(addr.idx(0), &nrun_q, &nrd_q),
            mux(addr.idx(0), &nwr_q, &cyc_q),
        ),
    );
    let lfsr_q = m.reg("lfsr_q", 8);
    let busy_q = m.reg("busy_q", 1);
    let dly_q = m.reg("dly_q", 2);
    let run_busy_q = m.reg("run_busy_q", 1);
    let run_cnt_q = m.reg("run_cnt_q", 2);
    let op_q = m.reg("op_q", 8);
    let op_eff = m.wire("op_eff", 8);
    let hyp15 = m.wire("hyp15", 64);
    m.assign(&hyp15, hyp_mem.idx(lit(4, 15)));
    let unused = m.wire("unused_hyp15", 1);
    m.assign(unused, hyp15.slice(63, 8).red_xor());
    m.assign(&op_eff, &run_op + hyp15.slice(7, 0));
    // The access happens at the ack: the request is held until then.
    let access = m.wire("access", 1);
    m.assign(&access, busy_q.clone().land(dly_q.clone().eq_(lit(2, 0))));
    let ok = m.wire("ok", 1);
    m.assign(&ok, in_data.clone().lor(&in_hyp).lor(&in_cnt));
    m.always_ff(
        &clk,
        vec![
            if_(
                access.clone().land(&we).land(&in_data),
                vec![nb(data_mem.idx(&data_idx), &wdata)],
            ),
            if_(
                access.clone().land(&we).land(&in_hyp),
                vec![nb(hyp_mem.idx(addr.slice(3, 0)), &wdata)],
            ),
        ],
    );
    super::util::ff(
        &mut m,
        vec![
            (ack_q.clone(), 1),
            (err_q.clone(), 1),
            (rdata_q.clone(), 64),
            (done_q.clone(), 1),
            (rstatus_q.clone(), 8),
            (rresult_q.clone(), 8),
            (cyc_q.clone(), 64),
            (nwr_q.clone(), 64),
            (nrd_q.clone(), 64),
            (nrun_q.clone(), 64),
            (busy_q.clone(), 1),
            (dly_q.clone(), 2),
            (run_busy_q.clone(), 1),
            (run_cnt_q.clone(), 2),
            (op_q.clone(), 8),
        ],
        vec![
            // Galois LFSR (taps 0xb8) for the ack delay; it would stick at 0, so 0 seeds it.
            if_(
                lfsr_q.clone().eq_(lit(8, 0)),
                vec![nb(&lfsr_q, hex(8, 0xa5))],
            )
            .else_(vec![nb(
                &lfsr_q,
                cat([lit(1, 0), lfsr_q.slice(7, 1)]) ^ mux(lfsr_q.idx(0), hex(8, 0xb8), lit(8, 0)),
            )]),
            nb(&ack_q, lit(1, 0)),
            nb(&err_q, lit(1, 0)),
            nb(&done_q, lit(1, 0)),
            nb(&cyc_q, &cyc_q + lit(64, 1)),
            if_(
                req.clone().land(!busy_q.clone()).land(!ack_q.clone()),
                vec![
                    nb(&busy_q, lit(1, 1)),
                    nb(
                        &dly_q,
                        mux(
                            lfsr_q.slice(1, 0).eq_(lit(2, 3)),
                            lit(2, 0),
                            lfsr_q.slice(1, 0),
                        ),
                    ),
                ],
            )
            .else_if(
                &access,
                vec![
                    nb(&busy_q, lit(1, 0)),
                    nb(&ack_q, lit(1, 1)),
                    nb(&err_q, !ok.clone()),
                    nb(
                        &rdata_q,
                        mux(
                            &in_data,
                            data_mem.idx(&data_idx),
                            mux(&in_hyp, hyp_mem.idx(addr.slice(3, 0)), &cnt_val),
                        ),
                    ),
                    if_(ok.clone().land(&we), vec![nb(&nwr_q, &nwr_q + lit(64, 1))]),
                    if_(
                        ok.clone().land(!we.clone()),
                        vec![nb(&nrd_q, &nrd_q + lit(64, 1))],
                    ),
                ],
            )
            .else_if(&busy_q, vec![nb(&dly_q, &dly_q - lit(2, 1))]),
            if_(
                &run,
                vec![
                    nb(&run_busy_q, lit(1, 1)),
                    nb(&run_cnt_q, lit(2, 3)),
                    nb(&op_q, &op_eff),
                ],
            )
            .else_if(
                run_busy_q.clone().land(run_cnt_q.clone().eq_(lit(2, 0))),
                vec![
                    nb(&run_busy_q, lit(1, 0)),
                    nb(&done_q, lit(1, 1)),
                    nb(&rresult_q, &op_q + lit(8, 40)),
                    nb(
                        &rstatus_q,
                        mux(op_q.clone().ge_(lit(8, 3)), lit(8, 1), lit(8, 0)),
                    ),
                    nb(&nrun_q, &nrun_q + lit(64, 1)),
                ],
            )
            .else_if(&run_busy_q, vec![nb(&run_cnt_q, &run_cnt_q - lit(2, 1))]),
            // Soft reset clears the counters (last, so it wins over the increments).
            if_(
                &soft_rst,
                vec![
                    nb(&cyc_q, lit(64, 0)),
                    nb(&nwr_q, lit(64, 0)),
                    nb(&nrd_q, lit(64, 0)),
                    nb(&nrun_q, lit(64, 0)),
                ],
            ),
        ],
    );
    vec![c, m]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::protocol::crc16;

    #[test]
    fn a_decision_splits_into_distinct_numbered_actions() {
        let (x, y) = (
            vec![nb(id("r_q"), lit(1, 1))],
            vec![nb(id("r_q"), lit(1, 0))],
        );
        let tree = vec![if_(id("a"), x.clone())
            .else_if(id("b"), y.clone())
            .else_(vec![case(
                id("c"),
                vec![arm(lit(2, 1), x.clone())],
                y.clone(),
            )])];
        let act = id("act_q");
        let go = nb(id("state_q"), id("S_ACT"));
        let mut actions = Vec::new();
        let decided = split_decision(tree, &act, 4, &go, &mut actions);
        // Two distinct actions, each once; every leaf of the decision records its number.
        assert_eq!(actions, vec![x, y]);
        let leaf = |i: u64| vec![nb(act.clone(), lit(4, i)), go.clone()];
        let want = vec![if_(id("a"), leaf(0))
            .else_if(id("b"), leaf(1))
            .else_(vec![case(id("c"), vec![arm(lit(2, 1), leaf(0))], leaf(1))])];
        assert_eq!(decided, want);
    }

    #[test]
    #[should_panic(expected = "mixes actions and decisions")]
    fn a_branch_that_mixes_actions_and_decisions_is_refused() {
        let tree = vec![
            nb(id("r_q"), lit(1, 1)),
            if_(id("a"), vec![nb(id("s_q"), lit(1, 1))]),
        ];
        split_decision(
            tree,
            &id("act_q"),
            4,
            &nb(id("x"), id("y")),
            &mut Vec::new(),
        );
    }

    #[test]
    fn bytewise_crc_formula_matches_the_catalogue() {
        let run = |b: &[u8]| b.iter().fold(0xffffu16, |c, &x| crc16_step(c, x));
        assert_eq!(run(b"123456789"), 0x29B1);
        let mut state = 0x1234_5678u32;
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (state >> 16) as u8
                })
                .collect();
            assert_eq!(run(&bytes), crc16(&bytes));
        }
    }

    #[test]
    fn modules_pass_the_checker() {
        let mods = cmd_testmem(&CmdParams::default());
        let lib: Vec<&Module> = mods.iter().collect();
        for m in &mods {
            if let Err(e) = check(m, &lib) {
                panic!(
                    "{}: {}",
                    m.name,
                    e.iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        }
    }

    #[test]
    fn params_are_checked() {
        assert!(CmdParams::default().check().is_ok());
        let p = CmdParams {
            max_payload: 8,
            ..CmdParams::default()
        };
        assert!(p.check().unwrap_err().contains("MAX_PAYLOAD 8"));
        let p = CmdParams {
            ncounters: 200,
            ..CmdParams::default()
        };
        assert!(p.check().unwrap_err().contains("NCOUNTERS 200"));
    }
}
