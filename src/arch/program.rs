//! The engine's microprograms: the op sequence of a training step and of an inference, as
//! typed values. The sequencer's program ROM is generated from [`Program`], the schedule
//! ([`super::schedule`]) sums the cycles of the same ops, and each op kind has exactly one
//! op engine in the RTL.

/// One op of a microprogram (layer indices 0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Op {
    /// Input normalisation: x̂_0 = x / ‖x‖ for every sample.
    Inorm,
    /// Forward GEMM of layer l (layer 1: W_1 x̂_0 once per sample into A1).
    Fwd(usize),
    /// Layer 1's per-hypothesis epilogue: h_1 = ReLU(A1 + b_1 + U[hyp]).
    Cen,
    /// Goodness and normalisation of layer l: G_l, x̂_l (and the rsqrt parts for feedback).
    Norm(usize),
    /// Loss unit of layer l: G̃, hard negatives, β_l.
    Loss(usize),
    /// DF-R/DF-O feedback into layer l: B_{l+1}ᵀδ_{l+1} scaled by rsqrt(S_l).
    Fb(usize),
    /// Local errors of layer l: δ_l, Δb_l (and e, ΔU for layer 1).
    Delta(usize),
    /// Weight-gradient GEMM of layer l, drained through the update lanes into W_l.
    Grad(usize),
    /// Bias update of layer l.
    Bupd(usize),
    /// Centroid update.
    Uupd,
    /// Inference: the arg-max of Σ G over the classes.
    Pred,
    /// End of the program.
    End,
}

/// The op engines of the RTL (one Verilog module each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Engine {
    Norm,
    Gemm,
    Cen,
    Loss,
    Delta,
    Update,
    Pred,
}

impl Op {
    /// The op kind's code in the program ROM (4 bits).
    pub fn code(self) -> u64 {
        match self {
            Op::End => 0,
            Op::Inorm => 1,
            Op::Fwd(_) => 2,
            Op::Cen => 3,
            Op::Norm(_) => 4,
            Op::Pred => 5,
            Op::Loss(_) => 6,
            Op::Delta(_) => 7,
            Op::Grad(_) => 8,
            Op::Bupd(_) => 9,
            Op::Uupd => 10,
            Op::Fb(_) => 11,
        }
    }

    /// The layer the op works on (0 for the layer-less ops).
    pub fn layer(self) -> usize {
        match self {
            Op::Fwd(l)
            | Op::Norm(l)
            | Op::Loss(l)
            | Op::Fb(l)
            | Op::Delta(l)
            | Op::Grad(l)
            | Op::Bupd(l) => l,
            _ => 0,
        }
    }

    /// The kind's name as the schedule and the RTL spell it.
    pub fn name(self) -> &'static str {
        match self {
            Op::Inorm => "INORM",
            Op::Fwd(_) => "FWD",
            Op::Cen => "CEN",
            Op::Norm(_) => "NORM",
            Op::Loss(_) => "LOSS",
            Op::Fb(_) => "FB",
            Op::Delta(_) => "DELTA",
            Op::Grad(_) => "GRAD",
            Op::Bupd(_) => "BUPD",
            Op::Uupd => "UUPD",
            Op::Pred => "PRED",
            Op::End => "END",
        }
    }

    /// The op engine that runs it (`None` for END, which the sequencer handles).
    pub fn engine(self) -> Option<Engine> {
        Some(match self {
            Op::Inorm | Op::Norm(_) => Engine::Norm,
            Op::Fwd(_) | Op::Grad(_) | Op::Fb(_) => Engine::Gemm,
            Op::Cen => Engine::Cen,
            Op::Loss(_) => Engine::Loss,
            Op::Delta(_) => Engine::Delta,
            Op::Bupd(_) | Op::Uupd => Engine::Update,
            Op::Pred => Engine::Pred,
            Op::End => return None,
        })
    }
}

impl Engine {
    pub const ALL: [Engine; 7] = [
        Engine::Norm,
        Engine::Gemm,
        Engine::Cen,
        Engine::Loss,
        Engine::Delta,
        Engine::Update,
        Engine::Pred,
    ];

    /// Instance / signal name in the RTL.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Norm => "norm",
            Engine::Gemm => "gemm",
            Engine::Cen => "cen",
            Engine::Loss => "loss",
            Engine::Delta => "delta",
            Engine::Update => "update",
            Engine::Pred => "pred",
        }
    }
}

/// The training and inference programs, one ROM: training from word 0, inference from
/// [`Program::infer_entry`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Program {
    pub ops: Vec<Op>,
    pub infer_entry: usize,
}

impl Program {
    /// `train`: INORM, FWD 1, CEN, NORM 1, (FWD l, NORM l)…, LOSS l…, DELTA l…, (GRAD l,
    /// BUPD l)…, UUPD, END; with feedback DELTA runs from the top layer down with FB l
    /// between DELTA l+1 (which wrote δ_{l+1}) and DELTA l (which adds it). `infer`: the
    /// forward ops, PRED, END.
    pub fn new(layers: usize, feedback: bool) -> Program {
        let mut fwd = vec![Op::Inorm, Op::Fwd(0), Op::Cen, Op::Norm(0)];
        for l in 1..layers {
            fwd.push(Op::Fwd(l));
            fwd.push(Op::Norm(l));
        }
        let mut ops = fwd.clone();
        ops.extend((0..layers).map(Op::Loss));
        if feedback {
            for l in (0..layers).rev() {
                if l + 1 < layers {
                    ops.push(Op::Fb(l));
                }
                ops.push(Op::Delta(l));
            }
        } else {
            ops.extend((0..layers).map(Op::Delta));
        }
        for l in 0..layers {
            ops.push(Op::Grad(l));
            ops.push(Op::Bupd(l));
        }
        ops.push(Op::Uupd);
        ops.push(Op::End);
        let infer_entry = ops.len();
        ops.extend(fwd);
        ops.push(Op::Pred);
        ops.push(Op::End);
        Program { ops, infer_entry }
    }

    /// The ops of a training step (`infer = false`) or an inference, END excluded.
    pub fn run(&self, infer: bool) -> &[Op] {
        let from = if infer { self.infer_entry } else { 0 };
        let end = self.ops[from..]
            .iter()
            .position(|&o| o == Op::End)
            .map_or(self.ops.len(), |p| from + p);
        &self.ops[from..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_runs_delta_top_down_with_fb_between() {
        let p = Program::new(3, true);
        let t = p.run(false);
        let pos = |o: Op| t.iter().position(|&x| x == o).unwrap();
        assert!(pos(Op::Delta(2)) < pos(Op::Fb(1)) && pos(Op::Fb(1)) < pos(Op::Delta(1)));
        assert!(pos(Op::Delta(1)) < pos(Op::Fb(0)) && pos(Op::Fb(0)) < pos(Op::Delta(0)));
        assert_eq!(p.run(true).last(), Some(&Op::Pred));
        assert!(!t.contains(&Op::End) && !p.run(true).contains(&Op::Loss(0)));
    }
}
