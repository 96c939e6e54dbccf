//! Self-checking plain Verilog-2005 testbenches, one per unit, with golden vectors from the
//! fixed-point model (`dfforge gen --testbench`; `testbench/<config>/` holds those of the
//! shipped configs). They need no Rust and no Verilator harness, so anyone with a simulator
//! (Icarus, Verilator `--binary --timing`, a vendor tool) can check a config's RTL against the
//! golden model on their own.
//!
//! Every testbench has the same shape, described by a [`Bench`]: the unit's inputs are driven
//! from `<unit>_stim.hex` (one line per run of identical clock cycles: a cycle count, then the
//! inputs), and on every clock where the strobe is high (one of the unit's valid outputs, or
//! for units without one, the array and the PE, a flag in the stimulus) the compared outputs
//! must equal (`!==`) the next vectors of `<unit>_expect.hex`. One response may carry several
//! vectors side by side (lanes: the K betas of the N-pair unit, the R×C accumulators of the
//! array). The testbench prints `PASS <unit> <n> vectors` or `FAIL <unit> ...` with the first
//! mismatch; a FAIL then ends the simulation with exit status 1 (`$fatal`, or `exit(1)` under
//! Verilator, whose Verilog-2005 mode has no `$fatal`), a PASS with `$finish` (status 0).
//!
//! The drivers reuse the timing of the co-simulation drivers in `tests/units_cosim.rs` (inputs
//! set before a rising edge, outputs read after it), their golden functions and their edge
//! values (most negative, saturation both ways, zero, rounding ties), and add what a stream
//! allows: bubbles, back-to-back rows, tiles and samples.

use super::{Rtl, RtlError};
use crate::config::{Config, Learner, Loss, Optimizer};
use crate::fixed::kernels::{gemm_exact, rows_times_rows, IMat};
use crate::fixed::model::{update_rnd, FixedDf, Units};
use crate::fixed::ops::goodness as goodness_golden;
use crate::fixed::{lr_update, mac, relu_requant, LearningRate, Lfsr, QFormat};
use crate::hdl::{emit, file_name, Dir};
use crate::sim::{port_descs, Bits, PortDesc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The units with a testbench, in the order [`testbenches`] builds them.
pub const UNITS: &[&str] = &[
    "dff_relu",
    "dff_update",
    "dff_sumsq",
    "dff_goodness",
    "dff_normalise",
    "dff_loss_hinge",
    "dff_loss_npair",
    "dff_array",
    "dff_pe",
];

/// When a testbench compares the unit's outputs with the next expected vector(s).
enum Strobe {
    /// On every clock where one of these output flags is high.
    Valid(&'static [&'static str]),
    /// On the clock cycles the stimulus marks (a `mark` bit in each stimulus line).
    Marked,
}

/// One unit's testbench: the ports, the stimulus cycle by cycle, the expected vectors.
struct Bench {
    top: &'static str,
    /// What the vectors are, for the header comment (one sentence or two).
    about: String,
    /// How a response maps to vectors, if not one vector per response (header comment).
    lanes_doc: String,
    /// The RTL files the testbench needs (the unit's and those of the modules it instantiates).
    rtl_files: Vec<String>,
    /// The unit's inputs driven from the stimulus (all but `clk_i`, `rst_i`), in port order.
    ins: Vec<PortDesc>,
    /// Every output of the unit (declared and connected).
    outs: Vec<PortDesc>,
    strobe: Strobe,
    /// The outputs compared, first in the low bits.
    compare: Vec<PortDesc>,
    /// Vectors per response, side by side in the compared word (lane 0 in the low bits).
    lanes: u32,
    /// Per clock cycle: the input values (in `ins` order) and the mark.
    cycles: Vec<(Vec<Bits>, bool)>,
    /// Expected vectors, in the order they must appear.
    want: Vec<Bits>,
}

fn ceil4(w: u32) -> u32 {
    w.div_ceil(4) * 4
}

/// `v` cut or zero-extended to `w` bits.
fn resize(v: &Bits, w: u32) -> Bits {
    let mut b = v.0.clone();
    b.resize(w as usize, false);
    Bits(b)
}

/// `parts` side by side, the first in the low bits.
fn concat(parts: &[&Bits]) -> Bits {
    Bits(parts.iter().flat_map(|p| p.0.iter().copied()).collect())
}

/// Verilog declaration range of a `w`-bit net (`""` for one bit).
fn range(w: u32) -> String {
    if w == 1 {
        String::new()
    } else {
        format!("[{}:0] ", w - 1)
    }
}

impl Bench {
    fn new(
        rtl: &Rtl,
        top: &'static str,
        strobe: Strobe,
        compare: &[&str],
        lanes: u32,
    ) -> Result<Bench, RtlError> {
        let m = rtl
            .module(top)
            .ok_or_else(|| RtlError::Unsupported(format!("no module {top}")))?;
        let ports = port_descs(m).map_err(|e| RtlError::Unsupported(e.to_string()))?;
        let (ins, outs): (Vec<PortDesc>, Vec<PortDesc>) = ports
            .into_iter()
            .filter(|p| p.name != "clk_i" && p.name != "rst_i")
            .partition(|p| p.dir == Dir::In);
        let out = |n: &str| {
            outs.iter()
                .find(|p| p.name == n)
                .cloned()
                .unwrap_or_else(|| panic!("{top} has no output {n}"))
        };
        if let Strobe::Valid(flags) = &strobe {
            for f in *flags {
                out(f);
            }
        }
        let compare: Vec<PortDesc> = compare.iter().map(|n| out(n)).collect();
        let w: u32 = compare.iter().map(|p| p.width).sum();
        assert!(
            lanes >= 1 && w.is_multiple_of(lanes),
            "{top}: {w} bits in {lanes} lanes"
        );
        let text = emit(m);
        let mut rtl_files = vec![file_name(m)];
        rtl_files.extend(
            rtl.modules
                .iter()
                .filter(|o| o.name != top && text.contains(&format!("{} ", o.name)))
                .map(file_name),
        );
        Ok(Bench {
            top,
            rtl_files,
            about: String::new(),
            lanes_doc: String::new(),
            ins,
            outs,
            strobe,
            compare,
            lanes,
            cycles: Vec::new(),
            want: Vec::new(),
        })
    }

    fn input_width(&self, name: &str) -> (usize, u32) {
        let i = self
            .ins
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("{} has no input {name}", self.top));
        (i, self.ins[i].width)
    }

    /// One clock cycle with these inputs (wide values as [`Bits`]); the others are 0.
    fn cycle_bits(&mut self, set: &[(&str, Bits)]) {
        let mut line: Vec<Bits> = self.ins.iter().map(|p| Bits::zero(p.width)).collect();
        for (name, v) in set {
            let (i, w) = self.input_width(name);
            line[i] = resize(v, w);
        }
        self.cycles.push((line, false));
    }

    /// One clock cycle with these inputs (two's complement in the port's width); others 0.
    fn cycle(&mut self, set: &[(&str, i64)]) {
        let bits: Vec<(&str, Bits)> = set
            .iter()
            .map(|&(n, v)| (n, Bits::pack(&[(v, self.input_width(n).1)])))
            .collect();
        self.cycle_bits(&bits);
    }

    /// `n` clock cycles with the same inputs.
    fn hold(&mut self, n: usize, set: &[(&str, i64)]) {
        for _ in 0..n {
            self.cycle(set);
        }
    }

    /// `n` clock cycles with every input 0.
    fn idle(&mut self, n: usize) {
        self.hold(n, &[]);
    }

    /// Compare the outputs after the rising edge of cycle `i` ([`Strobe::Marked`]).
    fn mark(&mut self, i: usize) {
        assert!(matches!(self.strobe, Strobe::Marked));
        self.cycles[i].1 = true;
    }

    fn lane_width(&self) -> u32 {
        self.compare.iter().map(|p| p.width).sum::<u32>() / self.lanes
    }

    /// The next response: one value per compared output (one lane).
    fn expect(&mut self, fields: &[i64]) {
        assert_eq!(self.lanes, 1);
        assert_eq!(fields.len(), self.compare.len());
        let f: Vec<(i64, u32)> = fields
            .iter()
            .zip(&self.compare)
            .map(|(&v, p)| (v, p.width))
            .collect();
        self.want.push(Bits::pack(&f));
    }

    /// The next response of a laned unit: one value per lane, lane 0 first.
    fn expect_lanes(&mut self, values: &[i64]) {
        assert_eq!(values.len(), self.lanes as usize);
        let w = self.lane_width();
        self.want
            .extend(values.iter().map(|&v| Bits::pack(&[(v, w)])));
    }

    /// `<top>_tb.v`, `<top>_stim.hex`, `<top>_expect.hex`.
    fn files(&self) -> Vec<(String, String)> {
        let top = self.top;
        let marked = matches!(self.strobe, Strobe::Marked);
        // Runs of identical cycles.
        let mut runs: Vec<(u64, &Vec<Bits>, bool)> = Vec::new();
        for (vals, mark) in &self.cycles {
            match runs.last_mut() {
                Some((n, v, m)) if *v == vals && *m == *mark => *n += 1,
                _ => runs.push((1, vals, *mark)),
            }
        }
        let max_run = runs.iter().map(|r| r.0).max().unwrap_or(1);
        let cw = ceil4(64 - max_run.leading_zeros());
        let sw: u32 = self.ins.iter().map(|p| p.width).sum::<u32>() + u32::from(marked);
        let swp = ceil4(sw);
        let mut stim = String::new();
        for (n, vals, mark) in &runs {
            let mut parts: Vec<&Bits> = vals.iter().collect();
            let m = Bits::pack(&[(i64::from(*mark), 1)]);
            if marked {
                parts.push(&m);
            }
            let line = concat(&[
                &resize(&concat(&parts), swp),
                &Bits::pack(&[(*n as i64, cw)]),
            ]);
            stim.push_str(&line.hex());
            stim.push('\n');
        }
        let vw = self.lane_width();
        let vwp = ceil4(vw);
        let mut want = String::new();
        for v in &self.want {
            want.push_str(&resize(v, vwp).hex());
            want.push('\n');
        }
        let tb = self.verilog(runs.len(), cw, sw, swp);
        vec![
            (format!("{top}_tb.v"), tb),
            (format!("{top}_stim.hex"), stim),
            (format!("{top}_expect.hex"), want),
        ]
    }

    fn verilog(&self, ns: usize, cw: u32, sw: u32, swp: u32) -> String {
        let top = self.top;
        let nv = self.want.len();
        let vw = self.lane_width();
        let vwp = ceil4(vw);
        let marked = matches!(self.strobe, Strobe::Marked);
        let field = |name: &str, w: u32| {
            if w == 1 {
                name.to_string()
            } else {
                format!("{name}[{}:0]", w - 1)
            }
        };
        // Stimulus fields, most significant first (as in a Verilog concatenation).
        let mut lhs: Vec<&str> = Vec::new();
        let mut doc: Vec<String> = vec![field("cycles", cw)];
        if swp > sw {
            doc.push(format!("{}'b0", swp - sw));
        }
        if marked {
            lhs.push("mark");
            doc.push("mark".into());
        }
        for p in self.ins.iter().rev() {
            lhs.push(&p.name);
            doc.push(field(&p.name, p.width));
        }
        let got: Vec<&str> = self.compare.iter().rev().map(|p| p.name.as_str()).collect();
        let got_doc: Vec<String> = self
            .compare
            .iter()
            .rev()
            .map(|p| field(&p.name, p.width))
            .collect();
        let (strobe, when) = match &self.strobe {
            Strobe::Valid(f) => (
                f.join(" || "),
                format!("on every clock where {} is high", f.join(" or ")),
            ),
            Strobe::Marked => (
                "mark".to_string(),
                "on the clocks whose stimulus line has mark = 1".to_string(),
            ),
        };
        let pad = if vwp > vw {
            format!(" (zero-padded to {vwp} bits)")
        } else {
            String::new()
        };
        let mut s = String::new();
        let mut w = |line: &str| {
            s.push_str(line);
            s.push('\n');
        };
        w(&format!(
            "// Self-checking testbench for {top}: {nv} vectors from the dfforge golden model."
        ));
        for l in wrap(&self.about, 92) {
            w(&format!("// {l}"));
        }
        w("//");
        let rtl = self.rtl_files.join(" ");
        w(&format!(
            "// Run it next to the unit's RTL, its ROM tables and the two .hex files below, e.g.\n\
             //   with Verilator: verilator --binary --timing {top}_tb.v {rtl} && ./obj_dir/V{top}_tb\n\
             //   with Icarus:    iverilog -o {top}_tb {top}_tb.v {rtl} && vvp {top}_tb\n\
             // It prints \"PASS {top} {nv} vectors\" or \"FAIL {top} ...\" with the first mismatch;\n\
             // on FAIL it ends with exit status 1 ($fatal; under Verilator, exit(1)), on PASS with 0."
        ));
        w("//");
        w(&format!(
            "// {top}_stim.hex: {ns} lines, each a run of identical clock cycles:"
        ));
        w(&format!("//   {{{}}}", doc.join(", ")));
        w("// The inputs change after a falling edge; rst_i is high for the first rising edge.");
        w(&format!(
            "// {top}_expect.hex: {nv} vectors {{{}}}{pad},",
            got_doc.join(", ")
        ));
        w(&format!(
            "// compared in order {when}, just before the next falling edge."
        ));
        for l in wrap(&self.lanes_doc, 92) {
            w(&format!("// {l}"));
        }
        w("//");
        w("// generated by dfforge, do not edit");
        w("`default_nettype none");
        w("");
        w(&format!("module {top}_tb;"));
        w("");
        w(&format!("  localparam NS = {ns};  // stimulus lines"));
        w(&format!(
            "  localparam SW = {swp};  // inputs in a stimulus line (cycles above)"
        ));
        w(&format!("  localparam CW = {cw};  // cycle count"));
        w(&format!("  localparam NV = {nv};  // expected vectors"));
        w(&format!("  localparam VW = {vw};  // one vector"));
        w(&format!("  localparam VWP = {vwp};  // one vector line"));
        w(&format!(
            "  localparam LANES = {};  // vectors per response",
            self.lanes
        ));
        w("");
        w("  reg clk_i = 1'b0;");
        w("  reg rst_i = 1'b1;");
        if marked {
            w("  reg mark = 1'b0;");
        }
        for p in &self.ins {
            let zero = if p.width == 1 {
                "1'b0".to_string()
            } else {
                format!("{}'d0", p.width)
            };
            w(&format!("  reg {}{} = {zero};", range(p.width), p.name));
        }
        for p in &self.outs {
            w(&format!("  wire {}{};", range(p.width), p.name));
        }
        w(&format!("  wire strobe = {strobe};"));
        w(&format!(
            "  wire [LANES*VW-1:0] got = {{{}}};",
            got.join(", ")
        ));
        w("");
        w("  reg [CW+SW-1:0] stim [0:NS-1];");
        w("  reg [VWP-1:0] want [0:NV-1];");
        w("  reg [CW-1:0] cycles;");
        w("  integer i, lane;");
        w("  integer n_seen = 0;  // vectors compared so far");
        w("  integer n_bad = 0;");
        w("  integer first_bad = -1;");
        w("  reg [VW-1:0] first_want, first_got;");
        w("");
        w(&format!("  {top} dut ("));
        let conns: Vec<String> = ["clk_i", "rst_i"]
            .iter()
            .map(|n| n.to_string())
            .chain(self.ins.iter().map(|p| p.name.clone()))
            .chain(self.outs.iter().map(|p| p.name.clone()))
            .map(|n| format!("    .{n}({n})"))
            .collect();
        w(&conns.join(",\n"));
        w("  );");
        w("");
        w("  always #5 clk_i = ~clk_i;");
        w("");
        w("  // Compare the response on the outputs with the next LANES expected vectors.");
        w("  task check;");
        w("    begin");
        w("      for (lane = 0; lane < LANES; lane = lane + 1) begin");
        w("        if (n_seen >= NV || got[lane*VW +: VW] !== want[n_seen][VW-1:0]) begin");
        w("          if (n_bad == 0) begin");
        w("            first_bad = n_seen;");
        w("            first_want = n_seen < NV ? want[n_seen][VW-1:0] : {VW{1'bx}};");
        w("            first_got = got[lane*VW +: VW];");
        w("          end");
        w("          n_bad = n_bad + 1;");
        w("        end");
        w("        n_seen = n_seen + 1;");
        w("      end");
        w("    end");
        w("  endtask");
        w("");
        w("  initial begin");
        w(&format!("    $readmemh(\"{top}_stim.hex\", stim);"));
        w(&format!("    $readmemh(\"{top}_expect.hex\", want);"));
        w("    @(negedge clk_i);");
        w("    rst_i = 1'b0;");
        w("    for (i = 0; i < NS; i = i + 1) begin");
        w(&format!(
            "      {{{}}} = stim[i][{}:0];",
            lhs.join(", "),
            sw - 1
        ));
        w("      for (cycles = stim[i][CW+SW-1:SW]; cycles != 0; cycles = cycles - 1'b1) begin");
        w("        @(negedge clk_i);");
        w("        if (strobe) check;");
        w("      end");
        w("    end");
        w("    // Vectors that never came count as wrong (got: x).");
        w("    if (n_seen < NV) begin");
        w("      if (n_bad == 0) begin");
        w("        first_bad = n_seen;");
        w("        first_want = want[n_seen][VW-1:0];");
        w("        first_got = {VW{1'bx}};");
        w("      end");
        w("      n_bad = n_bad + (NV - n_seen);");
        w("    end");
        w("    if (n_bad == 0)");
        w(&format!("      $display(\"PASS {top} %0d vectors\", NV);"));
        w("    else begin");
        w(&format!(
            "      $display(\"FAIL {top} %0d of %0d vectors wrong, first at vector %0d: expected %h, got %h\",\n\
             \x20              n_bad, NV, first_bad, first_want, first_got);"
        ));
        w("      // A failure ends with a non-zero exit status, so CI needs no grep: $fatal in any");
        w("      // simulator that has it (IEEE 1800; Icarus Verilog 11 even with -g2005); Verilator");
        w("      // knows it only in SystemVerilog mode, so there the C++ runtime exits.");
        w("`ifdef VERILATOR");
        w("      $c(\"std::exit(1);\");");
        w("`else");
        w(&format!("      $fatal(1, \"FAIL {top}\");"));
        w("`endif");
        w("    end");
        w("    $finish;");
        w("  end");
        w("");
        w("endmodule");
        w("");
        w("`default_nettype wire");
        s
    }
}

/// `text` in lines of at most `width` characters (at word boundaries).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        if !cur.is_empty() && cur.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// Random value of `fmt` with its edges (min, max, 0, ±1 LSB) mixed in.
fn sample(rng: &mut ChaCha8Rng, fmt: QFormat) -> i64 {
    match rng.gen_range(0..10) {
        0 => fmt.min(),
        1 => fmt.max(),
        2 => 0,
        3 => rng.gen_range(-2..=2i64).clamp(fmt.min(), fmt.max()),
        _ => rng.gen_range(fmt.min()..=fmt.max()),
    }
}

fn signed(bits: u32) -> QFormat {
    QFormat {
        bits,
        frac: 0,
        signed: true,
    }
}

/// The golden model of `cfg` with the given loss (the loss units do not depend on the
/// learner or the optimizer, which `FixedDf` insists on).
fn golden_df(cfg: &Config, loss: Loss) -> Result<FixedDf, RtlError> {
    let mut c = cfg.clone();
    c.algorithm.name = Learner::Df;
    c.algorithm.loss = loss;
    c.training.optimizer = Optimizer::Sgd;
    Ok(FixedDf::new(&c)?)
}

// ------------------------------------------------------------------ ReLU/requantise

fn relu(cfg: &Config, rtl: &Rtl) -> Result<Bench, RtlError> {
    let f = &cfg.fixed;
    let mut b = Bench::new(rtl, "dff_relu", Strobe::Valid(&["v_o"]), &["h_o"], 1)?;
    b.about = format!(
        "Accumulators z through fixed::ops::relu_requant ({:?}): zero, ±1, the most negative and \
         the largest z, rounding ties, the saturation boundary of the hidden format, random \
         values; every 37th cycle a bubble (v_i = 0, garbage z_i) that must give no output.",
        f.rounding
    );
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let shift = f.accumulator.frac - f.hidden.frac;
    let hmax = f.hidden.max() << shift;
    let mut z = vec![
        f.accumulator.min(),
        f.accumulator.max(),
        0,
        -1,
        1,
        hmax,
        hmax + 1,
    ];
    // Rounding ties and saturation boundaries.
    for k in 0..8i64 {
        z.push((k << shift) + (1 << (shift - 1)));
        z.push((k << shift) + (1 << (shift - 1)) - 1);
        z.push(hmax + (1 << (shift - 1)) - 1 + k);
    }
    while z.len() < 1000 {
        z.push(if rng.gen_bool(0.5) {
            sample(&mut rng, f.accumulator)
        } else {
            rng.gen_range(-hmax..=2 * hmax)
        });
    }
    for (i, &v) in z.iter().enumerate() {
        if i % 37 == 36 {
            b.cycle(&[("z_i", sample(&mut rng, f.accumulator))]);
        }
        b.cycle(&[("z_i", v), ("v_i", 1)]);
        b.expect(&[relu_requant(v, f.accumulator.frac, f.hidden, f.rounding, 0)]);
    }
    b.idle(4);
    Ok(b)
}

// ------------------------------------------------------------------ update

fn update(rtl: &Rtl, u: &Units) -> Result<Bench, RtlError> {
    let f = &u.f;
    let mut lfsr = Lfsr::with_default_taps(f.lfsr_width, f.lfsr_seed)
        .map_err(|e| RtlError::Unsupported(e.to_string()))?;
    let (lr_frac, lr_val) = match u.lr {
        LearningRate::Mul { value, frac } => (frac, value),
        LearningRate::Shift(_) => {
            return Err(RtlError::Unsupported(
                "the update testbench needs a multiplying learning rate".into(),
            ))
        }
    };
    let mut b = Bench::new(rtl, "dff_update", Strobe::Valid(&["v_o"]), &["w_o"], 1)?;
    b.about = format!(
        "Parameter updates through fixed::ops::lr_update ({:?} rounding, the random words from \
         the golden model's LFSR, stepped once per parameter): weights, biases and centroids at \
         their edges, gradients of every size (a sub-LSB step to saturation both ways); every \
         23rd cycle a bubble (v_i = 0) that must neither give an output nor step the LFSR.",
        f.update_rounding
    );
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for i in 0..1000 {
        let kind = [0i64, 0, 0, 1, 2][i % 5];
        let (g_frac, fmt) = match kind {
            0 => (f.update.frac, f.weight),
            1 => (f.delta.frac, f.bias),
            _ => (f.delta.frac, f.centroid),
        };
        let w = sample(&mut rng, fmt);
        let g = sample(&mut rng, f.update) >> rng.gen_range(0..f.update.bits);
        let word = lfsr.next_bits(64);
        let shift = (g_frac + lr_frac).saturating_sub(fmt.frac);
        let rnd = update_rnd(word, shift, lfsr.width());
        if i % 23 == 22 {
            b.cycle(&[("w_i", w), ("g_i", g), ("kind_i", kind), ("lr_i", lr_val)]);
        }
        b.cycle(&[
            ("w_i", w),
            ("g_i", g),
            ("kind_i", kind),
            ("v_i", 1),
            ("lr_i", lr_val),
        ]);
        b.expect(&[lr_update(w, g, g_frac, fmt, u.lr, f.update_rounding, rnd)]);
    }
    b.idle(crate::arch::schedule::update_lat(&rtl.shape) as usize + 2);
    Ok(b)
}

// ------------------------------------------------------------------ squared sum, goodness

/// A row of `len` hidden values of one of six kinds (maximum, zero, below 1.0, scaled,
/// random): the cases that matter to S and G.
fn hidden_row(
    rng: &mut ChaCha8Rng,
    f: &crate::config::FixedPoint,
    kind: usize,
    len: usize,
) -> Vec<i64> {
    (0..len)
        .map(|_| match kind {
            0 => f.hidden.max(),
            1 => 0,
            2 => rng.gen_range(0..1i64 << f.hidden.frac),
            3 => sample(rng, f.hidden) >> rng.gen_range(0..f.hidden.bits),
            _ => sample(rng, f.hidden),
        })
        .collect()
}

fn sumsq(cfg: &Config, rtl: &Rtl, u: &Units) -> Result<Bench, RtlError> {
    let f = &u.f;
    let mut b = Bench::new(rtl, "dff_sumsq", Strobe::Valid(&["v_o"]), &["s_o"], 1)?;
    b.about = "Rows of hidden values h (first_i/last_i framed): S = sum h^2, exact          (fixed::ops::squared_sum): all-maximum rows (the largest S), zero rows, values below          1.0, scaled and random values; one-lane rows, short, partial and full-width rows,          back to back and with bubbles."
        .to_string();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let layers = cfg.network.hidden.len();
    for row in 0..36 {
        let d = cfg.network.hidden[row % layers];
        let len = match row % 4 {
            0 => d,
            1 => 1,
            2 => rng.gen_range(1..=d.min(16)),
            _ => rng.gen_range(1..=d),
        };
        let kind = row % 6;
        let h = hidden_row(&mut rng, f, kind, len);
        let s: i64 = h.iter().map(|&x| x * x).sum();
        for (i, &x) in h.iter().enumerate() {
            if kind == 5 && i > 0 && rng.gen_bool(0.2) {
                b.cycle(&[("h_i", sample(&mut rng, f.hidden))]);
            }
            b.cycle(&[
                ("h_i", x),
                ("v_i", 1),
                ("first_i", i64::from(i == 0)),
                ("last_i", i64::from(i + 1 == len)),
            ]);
        }
        b.expect(&[s]);
    }
    b.idle(crate::arch::schedule::sumsq_lat(&rtl.shape) as usize + 2);
    Ok(b)
}

fn goodness(cfg: &Config, rtl: &Rtl, u: &Units) -> Result<Bench, RtlError> {
    let f = &u.f;
    let mut b = Bench::new(rtl, "dff_goodness", Strobe::Valid(&["v_o"]), &["g_o"], 1)?;
    b.about = format!(
        "Squared sums S with a layer's 1/d on recip_i, one per cycle or with gaps: G =          fixed::ops::goodness(S, 1/d) ({:?}): the largest S of a row (G saturates), zero, the          sums of rows below 1.0 (G inside the format, so the rounding shows), scaled and          random rows; each layer's constant.",
        f.rounding
    );
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let layers = cfg.network.hidden.len();
    for row in 0..48 {
        let l = row % layers;
        let d = cfg.network.hidden[l];
        let rc = &u.recip_d[l];
        let h = hidden_row(&mut rng, f, row % 6, d);
        let s: i64 = h.iter().map(|&x| x * x).sum();
        let g = goodness_golden(s, 2 * f.hidden.frac, rc, f.goodness, f.rounding, 0);
        if row % 5 == 4 {
            b.idle(rng.gen_range(1..4));
        }
        b.cycle(&[("s_i", s), ("v_i", 1), ("recip_i", rc.value())]);
        b.expect(&[g]);
    }
    b.idle(crate::arch::schedule::gscale_lat(&rtl.shape) as usize + 2);
    Ok(b)
}

// ------------------------------------------------------------------ normalise

fn normalise(cfg: &Config, rtl: &Rtl, u: &Units) -> Result<Bench, RtlError> {
    let f = &u.f;
    let mut b = Bench::new(rtl, "dff_normalise", Strobe::Valid(&["yv_o"]), &["y_o"], 1)?;
    b.about = format!(
        "Rows alternately of pixels and of hidden values: S on s_i (sv_i), then the row on x_i \
         (xv_i), y = Units::normalise (rsqrt ROM, {:?}): zero rows (S = 0), full-width rows of \
         the largest value (largest S), the smallest non-zero S, sparse rows of varied \
         magnitude; every third row follows the previous one with no idle cycle.",
        f.rounding
    );
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    for row in 0..32 {
        let pixel = row % 2 == 0;
        let (fmt, table, d) = if pixel {
            (f.pixel, &u.rsqrt_pixel, cfg.network.input)
        } else {
            (f.hidden, &u.rsqrt_hidden, cfg.network.hidden[0])
        };
        let kind = row % 8;
        let len = if kind == 2 || kind == 3 { d } else { d.min(64) };
        let v: Vec<i32> = (0..len)
            .map(|i| match kind {
                0 | 1 => 0,
                2 | 3 => fmt.max() as i32,
                4 | 5 => i32::from(i == 0),
                _ => {
                    if rng.gen_bool(0.3) {
                        0
                    } else {
                        (sample(&mut rng, fmt) >> rng.gen_range(0..fmt.bits)) as i32
                    }
                }
            })
            .collect();
        let (out, sum, _) = u.normalise(&v, fmt.frac, table);
        b.cycle(&[("s_i", sum), ("sv_i", 1)]);
        for &x in &v {
            b.cycle(&[("x_i", i64::from(x)), ("xv_i", 1)]);
        }
        if row % 3 != 2 {
            b.idle(3);
        }
        for &y in &out {
            b.expect(&[i64::from(y)]);
        }
    }
    b.idle(crate::arch::schedule::normalise_lat(&rtl.shape) as usize + 2);
    Ok(b)
}

// ------------------------------------------------------------------ loss (hinge)

fn hinge(cfg: &Config, rtl: &Rtl) -> Result<Bench, RtlError> {
    let fx = golden_df(cfg, Loss::Hinge)?;
    let f = &cfg.fixed;
    let gf = f.goodness;
    let k = cfg.network.classes;
    let margin = Units::new(cfg)?.margin;
    // β_y = −(hits) in the beta format: configs with loss = "hinge" are validated to hold
    // −(K−1); others (whose RTL still has the hinge unit) are tested within what β holds.
    let one = (1i64 << f.beta.frac.min(62)).min(f.beta.max());
    let cap = ((-f.beta.min()) / one).clamp(0, k as i64 - 1) as usize;
    let mut b = Bench::new(
        rtl,
        "dff_loss_hinge",
        Strobe::Valid(&["bv_o", "byv_o"]),
        &["b_o", "bv_o", "byv_o"],
        1,
    )?;
    b.about = format!(
        "Samples of K = {k} goodness scores (gy_i, then g_i with act_i, last_i on the last): \
         beta_k on bv_o and then beta_y on byv_o, from FixedDf::loss_unit with loss = hinge \
         (margin {margin} raw): random and small scores, differences of exactly 0 and ±1 LSB \
         around the margin, the extremes 0 and max (the difference saturates high, the most \
         negative one), no active negative; half the samples back to back.{}",
        if cap < k - 1 {
            format!(
                " This config's beta format (s{}.{}) holds beta_y down to -{cap}, so at most \
                 {cap} negatives per sample are positive (configs with loss = \"hinge\" are \
                 validated to hold -(K-1)).",
                f.beta.bits, f.beta.frac
            )
        } else {
            String::new()
        }
    );
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    for i in 0..240 {
        let mut gt: Vec<i64> = (0..k).map(|_| sample(&mut rng, gf)).collect();
        let mut active: Vec<bool> = (0..k).map(|_| rng.gen_bool(0.8)).collect();
        match i % 6 {
            1 => gt = (0..k).map(|_| rng.gen_range(0..64)).collect(),
            2 => {
                // Differences of exactly 0 and ±1 around the margin.
                let gy = rng.gen_range((margin + 1).clamp(0, gf.max())..=gf.max());
                gt[0] = gy;
                for g in gt.iter_mut().skip(1) {
                    *g = (gy - margin + rng.gen_range(-1..=1)).clamp(0, gf.max());
                }
            }
            3 => {
                for g in gt.iter_mut() {
                    *g = if rng.gen_bool(0.5) { 0 } else { gf.max() };
                }
            }
            4 => active = vec![false; k],
            _ => {}
        }
        active[0] = false;
        let mut beta = fx.loss_unit(&gt, &active);
        while beta[1..].iter().filter(|&&x| x > 0).count() > cap {
            let j = (1..k).rev().find(|&j| beta[j] > 0).unwrap_or(1);
            active[j] = false;
            beta = fx.loss_unit(&gt, &active);
        }
        b.cycle(&[("gy_i", gt[0]), ("yv_i", 1)]);
        for j in 1..k {
            b.cycle(&[
                ("g_i", gt[j]),
                ("gv_i", 1),
                ("act_i", i64::from(active[j])),
                ("last_i", i64::from(j + 1 == k)),
            ]);
            b.expect(&[beta[j], 1, 0]);
        }
        b.expect(&[beta[0], 0, 1]);
        if i % 2 == 1 {
            b.idle(1);
        }
    }
    b.idle(3);
    Ok(b)
}

// ------------------------------------------------------------------ loss (N-pair)

/// G̃ and active masks of `n` samples: random, plus the edges — one active negative, none,
/// equal scores, differences that saturate the logit both ways, small differences.
fn npair_samples(cfg: &Config, n: usize, seed: u64) -> Vec<(Vec<i64>, Vec<bool>)> {
    let gf = cfg.fixed.goodness;
    let k = cfg.network.classes;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v = Vec::new();
    for i in 0..n {
        let mut gt: Vec<i64> = (0..k).map(|_| sample(&mut rng, gf)).collect();
        let mut active: Vec<bool> = (0..k).map(|_| rng.gen_bool(0.8)).collect();
        match i % 8 {
            0 => {
                let j = rng.gen_range(1..k);
                active = (0..k).map(|x| x == j).collect();
            }
            1 => gt = vec![rng.gen_range(0..=gf.max()); k],
            2 => {
                gt[0] = 0;
                for g in gt.iter_mut().skip(1) {
                    *g = gf.max() - rng.gen_range(0..4);
                }
            }
            3 => {
                gt[0] = gf.max();
                for g in gt.iter_mut().skip(1) {
                    *g = rng.gen_range(0..4);
                }
            }
            4 => {
                let base = rng.gen_range(0..gf.max() / 2);
                for g in gt.iter_mut() {
                    *g = base + rng.gen_range(0..300);
                }
            }
            5 if i % 16 == 5 => active = vec![false; k],
            _ => {}
        }
        active[0] = false;
        v.push((gt, active));
    }
    v
}

fn npair(cfg: &Config, rtl: &Rtl) -> Result<Bench, RtlError> {
    let fx = golden_df(cfg, Loss::Npair)?;
    let f = &cfg.fixed;
    let k = cfg.network.classes;
    let (gw, bw) = (f.goodness.bits, f.beta.bits);
    // The unit's cycles from start to done (the schedule's), and a few idle ones.
    let shape = crate::arch::shape::Shape::new(cfg)?;
    let wait = crate::arch::schedule::NpairTiming::new(&shape).cycles(&shape) as usize + 3;
    let mut b = Bench::new(
        rtl,
        "dff_loss_npair",
        Strobe::Valid(&["done_o"]),
        &["b_o"],
        k as u32,
    )?;
    b.about = format!(
        "Samples of K = {k} goodness scores (g_i, slot j at bits [j*{gw} +: {gw}], slot 0 the \
         true label) and active masks (act_i), one start_i pulse each, then {wait} idle cycles: \
         the betas from FixedDf::loss_unit with loss = npair: random scores, one active \
         negative, none, equal scores, differences that saturate the logit both ways, small \
         differences around the margin."
    );
    b.lanes_doc = format!(
        "Each done_o gives {k} vectors, vector j = b_o[j*{bw} +: {bw}] (beta of slot j; slot 0 \
         is beta_y), so vector i is slot i % {k} of sample i / {k}."
    );
    for (gt, active) in npair_samples(cfg, 240, 8) {
        let g: Vec<(i64, u32)> = gt.iter().map(|&x| (x, gw)).collect();
        let a: Vec<(i64, u32)> = active.iter().map(|&on| (i64::from(on), 1)).collect();
        b.cycle_bits(&[
            ("start_i", Bits::pack(&[(1, 1)])),
            ("g_i", Bits::pack(&g)),
            ("act_i", Bits::pack(&a)),
        ]);
        b.idle(wait);
        b.expect_lanes(&fx.loss_unit(&gt, &active));
    }
    Ok(b)
}

// ------------------------------------------------------------------ array and PE

fn rand_imat(rng: &mut ChaCha8Rng, rows: usize, cols: usize, fmt: QFormat) -> IMat {
    IMat {
        rows,
        cols,
        data: (0..rows * cols).map(|_| sample(rng, fmt) as i32).collect(),
    }
}

fn to_rows(m: &IMat, transpose: bool) -> Vec<Vec<i64>> {
    let (r, c) = if transpose {
        (m.cols, m.rows)
    } else {
        (m.rows, m.cols)
    };
    (0..r)
        .map(|i| {
            (0..c)
                .map(|j| {
                    i64::from(if transpose {
                        m.data[j * m.cols + i]
                    } else {
                        m.data[i * m.cols + j]
                    })
                })
                .collect()
        })
        .collect()
}

/// C = A·B on the array (A: m×k, B: k×n; `c` the golden m×n result, row-major), tile by
/// tile with zero padding, tiles back to back; each tile's accumulators are compared on its
/// last cycle (PEs outside the matrices must hold 0: they were cleared and added zeros).
fn array_gemm(b: &mut Bench, rows: usize, cols: usize, a: &[Vec<i64>], bm: &[Vec<i64>], c: &[i64]) {
    let (m, k, n) = (a.len(), bm.len(), bm[0].len());
    let (aw, bw) = (
        b.input_width("west_i").1 / rows as u32,
        b.input_width("north_i").1 / cols as u32,
    );
    for ti in (0..m).step_by(rows) {
        for tj in (0..n).step_by(cols) {
            for t in 0..k + rows + cols + 1 {
                let mut west = Vec::new();
                let (mut wv, mut wc, mut wl) = (0i64, 0i64, 0i64);
                for r in 0..rows {
                    let kk = t as isize - r as isize;
                    let on = kk >= 0 && (kk as usize) < k;
                    let v = if on && ti + r < m {
                        a[ti + r][kk as usize]
                    } else {
                        0
                    };
                    west.push((v, aw));
                    if on {
                        wv |= 1 << r;
                    }
                    if kk == 0 {
                        wc |= 1 << r;
                    }
                    if kk == k as isize - 1 {
                        wl |= 1 << r;
                    }
                }
                let north: Vec<(i64, u32)> = (0..cols)
                    .map(|cc| {
                        let kk = t as isize - cc as isize;
                        let on = kk >= 0 && (kk as usize) < k && tj + cc < n;
                        (if on { bm[kk as usize][tj + cc] } else { 0 }, bw)
                    })
                    .collect();
                b.cycle_bits(&[
                    ("west_i", Bits::pack(&west)),
                    ("wv_i", Bits::pack(&[(wv, rows as u32)])),
                    ("wc_i", Bits::pack(&[(wc, rows as u32)])),
                    ("wl_i", Bits::pack(&[(wl, rows as u32)])),
                    ("north_i", Bits::pack(&north)),
                ]);
            }
            let last = b.cycles.len() - 1;
            b.mark(last);
            let lanes: Vec<i64> = (0..rows * cols)
                .map(|p| {
                    let (r, cc) = (ti + p / cols, tj + p % cols);
                    if r < m && cc < n {
                        c[r * n + cc]
                    } else {
                        0
                    }
                })
                .collect();
            b.expect_lanes(&lanes);
        }
    }
}

/// Operand pairs of `a_w` × `b_w` bits whose products drive a saturating `acc_w`-bit
/// accumulator past its maximum (min·min) and past its minimum (min·max), and how many
/// products that takes; `None` past 2^17 (the vectors would get long).
fn saturating_products(a_w: u32, b_w: u32, acc_w: u32) -> Option<([(i64, i64); 2], usize)> {
    let (af, bf) = (signed(a_w), signed(b_w));
    let pairs = [(af.min(), bf.min()), (af.min(), bf.max())];
    let half = 1i128 << (acc_w - 1);
    let k = pairs
        .iter()
        .map(|&(x, y)| half / (i128::from(x) * i128::from(y)).abs().max(1) + 2)
        .max()
        .unwrap_or(1);
    (k <= 1 << 17).then_some((pairs, k as usize))
}

fn array(cfg: &Config, rtl: &Rtl) -> Result<Bench, RtlError> {
    let sh = &rtl.shape;
    let f = &cfg.fixed;
    let (rows, cols) = (sh.rows as usize, sh.cols as usize);
    let mut b = Bench::new(
        rtl,
        "dff_array",
        Strobe::Marked,
        &["acc_o"],
        sh.rows * sh.cols,
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    // Dimensions that are not multiples of R or C.
    let (d_out, d_in, batch) = (2 * rows + 1, 37, cols + 2);
    let w = rand_imat(&mut rng, d_out, d_in, f.weight);
    let x = rand_imat(&mut rng, batch, d_in, f.act);
    let delta = rand_imat(&mut rng, batch, d_out, f.delta);
    // Forward Z = W·X̂ᵀ (d_out × batch); the golden rows_times_rows(X̂, W) is batch × d_out.
    let gz = rows_times_rows(&x, &w);
    let zt: Vec<i64> = (0..d_out * batch)
        .map(|i| gz[(i % batch) * d_out + i / batch])
        .collect();
    array_gemm(
        &mut b,
        rows,
        cols,
        &to_rows(&w, false),
        &to_rows(&x, true),
        &zt,
    );
    // Weight gradient ΔW = δᵀ·X̂ (d_out × d_in), K = batch.
    let gdw = gemm_exact(&delta, true, &x, false);
    array_gemm(
        &mut b,
        rows,
        cols,
        &to_rows(&delta, true),
        &to_rows(&x, false),
        &gdw,
    );
    // DF-O feedback: δ·W (batch × d_in), K = d_out.
    let gback = gemm_exact(&delta, false, &w, false);
    array_gemm(
        &mut b,
        rows,
        cols,
        &to_rows(&delta, false),
        &to_rows(&w, false),
        &gback,
    );
    let tiles = |m: usize, n: usize| m.div_ceil(rows) * n.div_ceil(cols);
    let n_tiles = tiles(d_out, batch) + tiles(d_out, d_in) + tiles(batch, d_in);
    b.idle(2);
    b.about = format!(
        "The three GEMMs of training on the {rows}x{cols} array, as the sequencer streams them \
         (row r of A on the west edge delayed r cycles with its valid and clear flags, column c \
         of B on the north edge delayed c cycles, tiles back to back, the clear flag on each \
         tile's first product): forward W·X^T ({d_out}x{d_in}x{batch}, golden \
         kernels::rows_times_rows), weight gradient delta^T·X (K = {batch}) and DF-O's \
         delta·W (K = {d_out}) (golden kernels::gemm_exact), random operands with their \
         edges. (Saturating an accumulator takes far longer streams: dff_pe_tb has it.)"
    );
    b.lanes_doc = format!(
        "Each marked clock (the last cycle of a tile, {n_tiles} tiles) gives {} vectors, vector \
         r*{cols} + c = acc_o of PE (r, c); PEs outside the matrices hold 0.",
        rows * cols
    );
    Ok(b)
}

fn pe(rtl: &Rtl) -> Result<Bench, RtlError> {
    let sh = &rtl.shape;
    let (aw, bw, accw) = (sh.a_w, sh.b_w, sh.acc_w);
    let (af, bf, accf) = (signed(aw), signed(bw), signed(accw));
    let mut b = Bench::new(rtl, "dff_pe", Strobe::Marked, &["acc_o"], 1)?;
    let mut rng = ChaCha8Rng::seed_from_u64(18);
    let mut marks = Vec::new();
    // One dot product: clear on the first product, bubbles (v_i = 0, garbage operands) that
    // must not count, compared two cycles after the last product (the next one may have
    // started).
    let mut dot = |b: &mut Bench, pairs: &[(i64, i64)], rng: &mut ChaCha8Rng, bubbles: bool| {
        let mut acc = 0;
        for (i, &(x, y)) in pairs.iter().enumerate() {
            if bubbles && i > 0 && rng.gen_bool(0.2) {
                b.cycle(&[("a_i", sample(rng, af)), ("b_i", sample(rng, bf))]);
            }
            b.cycle(&[
                ("a_i", x),
                ("b_i", y),
                ("v_i", 1),
                ("clr_i", i64::from(i == 0)),
                ("last_i", i64::from(i + 1 == pairs.len())),
            ]);
            acc = mac(acc, x, y, accf);
        }
        marks.push(b.cycles.len() + 1);
        acc
    };
    let mut want = Vec::new();
    for g in 0..150 {
        let len = match g % 4 {
            0 => 1,
            1 => rng.gen_range(2..8),
            _ => rng.gen_range(8..40),
        };
        let pairs: Vec<(i64, i64)> = (0..len)
            .map(|_| (sample(&mut rng, af), sample(&mut rng, bf)))
            .collect();
        want.push(dot(&mut b, &pairs, &mut rng, g % 3 == 0));
        b.idle(rng.gen_range(0..3));
    }
    let mut doc = String::new();
    if let Some((extremes, k)) = saturating_products(aw, bw, accw) {
        // Saturate high (min·min), then low (min·max), each followed by 8 products back.
        for (x, y) in extremes {
            let back = if (x < 0) == (y < 0) { -15 } else { 15 };
            let mut pairs = vec![(x, y); k];
            pairs.extend(std::iter::repeat_n((back, 1), 8));
            want.push(dot(&mut b, &pairs, &mut rng, false));
        }
        doc = format!(
            " Two dot products of {k} + 8 terms drive acc past the maximum and past the minimum, \
             then 8 terms back (the golden mac saturates at every step)."
        );
    }
    b.idle(3);
    for (i, v) in marks.into_iter().zip(want) {
        b.mark(i);
        b.expect(&[v]);
    }
    b.about = format!(
        "Dot products a·b through one PE (clr_i with the first product, last_i with the last, \
         v_i on every product), \
         acc_o compared two cycles after the last product: golden fixed::ops::mac ({accw}-bit \
         saturating accumulator) over random operands with their edges, lengths 1 to 39, \
         bubbles, back to back or up to 2 idle cycles apart.{doc}"
    );
    Ok(b)
}

/// (file name, text) of every testbench file of `rtl` (generated from `cfg`), sorted:
/// `<unit>_tb.v`, `<unit>_stim.hex` and `<unit>_expect.hex` for each of [`UNITS`].
pub fn testbenches(cfg: &Config, rtl: &Rtl) -> Result<Vec<(String, String)>, RtlError> {
    let u = Units::new(cfg)?;
    let benches = [
        relu(cfg, rtl)?,
        update(rtl, &u)?,
        sumsq(cfg, rtl, &u)?,
        goodness(cfg, rtl, &u)?,
        normalise(cfg, rtl, &u)?,
        hinge(cfg, rtl)?,
        npair(cfg, rtl)?,
        array(cfg, rtl)?,
        pe(rtl)?,
    ];
    debug_assert!(benches.iter().map(|b| b.top).eq(UNITS.iter().copied()));
    let mut v: Vec<(String, String)> = benches.iter().flat_map(Bench::files).collect();
    v.sort();
    Ok(v)
}
