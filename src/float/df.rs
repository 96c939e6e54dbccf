//! Distance-Forward learning in f32, exactly as DESIGN.md §1 writes it.
//!
//! Rows of every activation matrix are (sample, hypothesis) pairs: row `i * k + j` is sample
//! `i` under hypothesis `hyps[i * k + j]`, and hypothesis slot 0 is always the true label.

use super::linalg::{add_row_bias, argmax, column_sums, gemm, norm, Mat, Op};
use super::optim::Optim;
use super::{normalise_rows_into, unit_input_init, BatchStats, Learner};
use crate::config::{Algorithm, Collaboration, Config, Loss, Scheme};
use crate::hypotheses::{active_slots, every_class, training_hyps};
use crate::noise::activation::perturb_f32;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// The parameters of a DF network.
#[derive(Clone, Debug, PartialEq)]
pub struct DfParams {
    /// `w[l]` is d_{l+1} × d_l.
    pub w: Vec<Mat>,
    pub b: Vec<Vec<f32>>,
    /// Label centroids, stored transposed: row c is U[:, c] (C × d_1).
    pub u: Mat,
}

/// One layer's activations over all (sample, hypothesis) rows.
#[derive(Clone, Debug, Default)]
pub struct LayerAct {
    /// h = ReLU(z); z > 0 exactly where h > 0, so the mask needs no storage.
    pub h: Mat,
    /// x̂ = h / (‖h‖ + ε): the next layer's input.
    pub xhat: Mat,
    /// G = (1/d) Σ h² per row.
    pub goodness: Vec<f32>,
    /// 1 / (‖h‖ + ε) per row (the constant scale of the cross terms).
    pub inv_norm: Vec<f32>,
}

/// A forward pass: hypotheses and every layer's activations.
#[derive(Clone, Debug, Default)]
pub struct Forward {
    /// Hypotheses per sample.
    pub k: usize,
    pub hyps: Vec<u32>,
    /// Normalised input, one row per sample.
    pub x0: Mat,
    pub layers: Vec<LayerAct>,
}

/// Gradients of the minibatch loss (mean over samples), same shapes as `DfParams`.
#[derive(Clone, Debug, Default)]
pub struct DfGrads {
    pub w: Vec<Mat>,
    pub b: Vec<Vec<f32>>,
    pub u: Mat,
    /// Σ over samples of Σ_l L_l.
    pub loss_sum: f64,
    pub correct: Option<usize>,
}

pub struct DfNet {
    /// Activation noise of the forward passes, set by the training loop per regime.
    act_noise: Option<crate::noise::activation::Perturber>,
    /// The stored word of a weight, for the bit-level noise sites.
    word: crate::noise::weights::Word,
    alg: Algorithm,
    classes: usize,
    pub params: DfParams,
    /// DF-R's fixed random feedback: `feedback[l]` has the shape of `w[l]` (used for l ≥ 1).
    pub feedback: Vec<Mat>,
    optim: Optim,
    rng: ChaCha8Rng,
    /// Buffers of the training step, reused from step to step (no allocation once grown).
    ws: Workspace,
}

/// Everything a training step writes, kept across steps.
#[derive(Clone, Debug, Default)]
struct Workspace {
    fwd: Forward,
    grads: DfGrads,
    scratch: Scratch,
}

/// Intermediate matrices of the forward pass and of the gradients.
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    a1: Mat,
    local: Vec<Mat>,
    delta: Vec<Mat>,
    back: Mat,
    e: Mat,
}

/// The loss of one layer for one sample and ∂L/∂G̃ for each hypothesis slot.
///
/// `gt[0]` is G̃(y); `active[j]` says whether slot j ≥ 1 is a negative this step.
/// Returns (L, β) with β_y = −Σ β_k in slot 0.
pub fn loss_coefficients(alg: &Algorithm, gt: &[f32], active: &[bool]) -> (f64, Vec<f32>) {
    let mut beta = vec![0.0f32; gt.len()];
    let (m, s) = (alg.margin as f64, alg.scale as f64);
    let gy = gt[0] as f64;
    let mut loss = 0.0f64;
    match alg.loss {
        Loss::Npair => {
            let t: Vec<f64> = (1..gt.len()).map(|j| s * (gt[j] as f64 - gy + m)).collect();
            // log(1 + Σ e^t) computed around its largest exponent so it cannot overflow.
            let mx = t
                .iter()
                .zip(&active[1..])
                .filter(|(_, &a)| a)
                .map(|(&t, _)| t)
                .fold(0.0f64, f64::max);
            let mut denom = (-mx).exp();
            for (tj, &a) in t.iter().zip(&active[1..]) {
                if a {
                    denom += (tj - mx).exp();
                }
            }
            loss = (mx + denom.ln()) / s;
            for (j, (tj, &a)) in t.iter().zip(&active[1..]).enumerate() {
                if a {
                    beta[j + 1] = ((tj - mx).exp() / denom) as f32;
                }
            }
        }
        Loss::Hinge => {
            for j in 1..gt.len() {
                let v = m + gt[j] as f64 - gy;
                if active[j] && v > 0.0 {
                    loss += v;
                    beta[j] = 1.0;
                }
            }
        }
    }
    beta[0] = -beta[1..].iter().sum::<f32>();
    (loss, beta)
}

impl DfNet {
    pub fn new(cfg: &Config) -> DfNet {
        let widths = cfg.network.widths();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.training.seed);
        let w: Vec<Mat> = widths
            .windows(2)
            .map(|p| unit_input_init(p[1], p[0], &mut rng))
            .collect();
        let b = widths[1..].iter().map(|&d| vec![0.0; d]).collect();
        // Zero centroids: every hypothesis starts equal, and the N-pair gradient separates them.
        let u = Mat::zeros(cfg.network.classes, widths[1]);
        let mut fb_rng = ChaCha8Rng::seed_from_u64(cfg.algorithm.feedback_seed);
        let feedback = w
            .iter()
            .map(|m| unit_input_init(m.rows, m.cols, &mut fb_rng))
            .collect();
        let params = DfParams { w, b, u };
        let mut sizes = Vec::new();
        for l in 0..params.w.len() {
            sizes.push(params.w[l].data.len());
            sizes.push(params.b[l].len());
        }
        sizes.push(params.u.data.len());
        DfNet {
            alg: cfg.algorithm.clone(),
            act_noise: None,
            word: super::weight_word(cfg),
            classes: cfg.network.classes,
            params,
            feedback,
            optim: Optim::new(&cfg.training, &sizes),
            rng: ChaCha8Rng::seed_from_u64(cfg.training.seed.wrapping_add(0x5eed)),
            ws: Workspace::default(),
        }
    }

    /// The forward pass of every layer for the given hypotheses.
    pub fn forward(&self, x: &Mat, k: usize, hyps: &[u32]) -> Forward {
        let mut out = Forward::default();
        self.forward_into(x, k, hyps, &mut out, &mut Scratch::default());
        out
    }

    /// [`DfNet::forward`] into `out`, reusing its buffers.
    pub fn forward_into(
        &self,
        x: &Mat,
        k: usize,
        hyps: &[u32],
        out: &mut Forward,
        scratch: &mut Scratch,
    ) {
        let p = &self.params;
        let eps = self.alg.epsilon;
        out.k = k;
        out.hyps.clear();
        out.hyps.extend_from_slice(hyps);
        normalise_rows_into(x, eps, &mut out.x0);
        let bsz = x.rows;
        let a1 = &mut scratch.a1;
        a1.reshape(bsz, p.w[0].rows);
        gemm(1.0, &out.x0, Op::N, &p.w[0], Op::T, 0.0, a1);
        add_row_bias(a1, &p.b[0]);
        let nl = p.w.len();
        out.layers.resize_with(nl, LayerAct::default);
        // W_1 x̂_0 + b_1 is computed once per sample; each hypothesis only adds its centroid.
        let z = &mut out.layers[0].h;
        z.reshape(bsz * k, a1.cols);
        for (r, &h) in hyps.iter().enumerate() {
            let (row, cen) = (a1.row(r / k), p.u.row(h as usize));
            for ((o, a), c) in z.row_mut(r).iter_mut().zip(row).zip(cen) {
                *o = a + c;
            }
        }
        perturb_f32(&self.act_noise, &mut out.layers[0].h.data);
        activate(&mut out.layers[0], eps);
        for l in 1..nl {
            let (below, rest) = out.layers.split_at_mut(l);
            let prev = &below[l - 1].xhat;
            let z = &mut rest[0].h;
            z.reshape(prev.rows, p.w[l].rows);
            gemm(1.0, prev, Op::N, &p.w[l], Op::T, 0.0, z);
            add_row_bias(z, &p.b[l]);
            perturb_f32(&self.act_noise, &mut z.data);
            activate(&mut rest[0], eps);
        }
    }

    /// G̃_l for every row: own goodness plus the stopped-gradient goodness of collaborators.
    fn collaborative_goodness(&self, fwd: &Forward) -> Vec<Vec<f32>> {
        let nl = fwd.layers.len();
        (0..nl)
            .map(|l| {
                let mut g = fwd.layers[l].goodness.clone();
                for t in 0..nl {
                    let include = match self.alg.collaboration {
                        Collaboration::None => false,
                        Collaboration::Previous => t < l,
                        Collaboration::All => t != l,
                    };
                    if include {
                        for (a, b) in g.iter_mut().zip(&fwd.layers[t].goodness) {
                            *a += b;
                        }
                    }
                }
                g
            })
            .collect()
    }

    /// Which hypothesis slots are negatives this step, for layer scores `gt` of one sample.
    fn active_slots(&self, gt: &[f32]) -> Vec<bool> {
        active_slots(&self.alg, gt, |a, b| a.total_cmp(b))
    }

    /// Inference scores: Σ_{l∈S} G_l(k) for each row.
    fn scores(&self, fwd: &Forward, eval: &[usize]) -> Vec<f32> {
        let mut s = vec![0.0f32; fwd.hyps.len()];
        for &l in eval {
            for (a, b) in s.iter_mut().zip(&fwd.layers[l].goodness) {
                *a += b;
            }
        }
        s
    }

    fn eval_layers(&self) -> Vec<usize> {
        if self.alg.eval_layers.is_empty() {
            (0..self.params.w.len()).collect()
        } else {
            self.alg.eval_layers.iter().map(|l| l - 1).collect()
        }
    }

    /// Loss and gradients of one minibatch (no update), for training and gradient checks.
    pub fn gradients(&mut self, x: &Mat, labels: &[u32]) -> DfGrads {
        let (k, hyps) = training_hyps(&self.alg, self.classes, &mut self.rng, labels);
        let fwd = self.forward(x, k, &hyps);
        self.gradients_of(&fwd, labels.len())
    }

    /// Loss and gradients for a forward pass already made.
    pub fn gradients_of(&self, fwd: &Forward, bsz: usize) -> DfGrads {
        let mut g = DfGrads::default();
        self.gradients_into(fwd, bsz, &mut g, &mut Scratch::default());
        g
    }

    /// [`DfNet::gradients_of`] into `g`, reusing its buffers and `scratch`'s.
    pub fn gradients_into(
        &self,
        fwd: &Forward,
        bsz: usize,
        g: &mut DfGrads,
        scratch: &mut Scratch,
    ) {
        let p = &self.params;
        let nl = fwd.layers.len();
        let k = fwd.k;
        let gtilde = self.collaborative_goodness(fwd);
        let mut loss_sum = 0.0f64;
        // Local errors δ_l = β (2/d_l) h ⊙ 1[z>0] (h is already zero where z ≤ 0).
        scratch.local.resize_with(nl, Mat::default);
        for (l, act) in fwd.layers.iter().enumerate() {
            let cols = act.h.cols;
            let d = cols as f32;
            let delta = &mut scratch.local[l];
            delta.reshape_zeroed(act.h.rows, cols);
            // Samples are independent: a task takes whole samples (k rows each).
            let per = (k * cols).max(1);
            let losses: Vec<f64> = delta
                .data
                .par_chunks_mut(per)
                .zip(act.h.data.par_chunks(per))
                .zip(gtilde[l].par_chunks(k.max(1)))
                .take(bsz)
                .with_min_len((1 << 13) / per + 1)
                .map(|((delta, h), gt)| {
                    let active = self.active_slots(gt);
                    let (loss, beta) = loss_coefficients(&self.alg, gt, &active);
                    for (j, &bj) in beta.iter().enumerate() {
                        if bj != 0.0 {
                            let f = bj * 2.0 / d;
                            let (o, h) = (&mut delta[j * cols..(j + 1) * cols], &h[j * cols..]);
                            for (o, h) in o.iter_mut().zip(h) {
                                *o = f * h;
                            }
                        }
                    }
                    loss
                })
                .collect();
            // Summed in sample order (a float sum depends on its order).
            for v in losses {
                loss_sum += v;
            }
        }
        // Cross terms: the next layer's local error reaches back through W (DF-O) or a fixed
        // random B (DF-R); the normalisation in between is taken as the constant 1/(‖h‖+ε).
        // Plain DF needs no copy: its errors are the local ones.
        let delta: &[Mat] = if self.alg.scheme != Scheme::Df {
            scratch.delta.resize_with(nl, Mat::default);
            for (d, l) in scratch.delta.iter_mut().zip(&scratch.local) {
                d.reshape(l.rows, l.cols);
                d.data.copy_from_slice(&l.data);
            }
            for l in 0..nl.saturating_sub(1) {
                let m = match self.alg.scheme {
                    Scheme::DfO => &p.w[l + 1],
                    _ => &self.feedback[l + 1],
                };
                let act = &fwd.layers[l];
                let back = &mut scratch.back;
                back.reshape(act.h.rows, act.h.cols);
                gemm(1.0, &scratch.local[l + 1], Op::N, m, Op::N, 0.0, back);
                for r in 0..back.rows {
                    let s = act.inv_norm[r];
                    for ((o, bv), h) in scratch.delta[l]
                        .row_mut(r)
                        .iter_mut()
                        .zip(back.row(r))
                        .zip(act.h.row(r))
                    {
                        if *h > 0.0 {
                            *o += bv * s;
                        }
                    }
                }
            }
            &scratch.delta
        } else {
            &scratch.local
        };
        let inv_b = 1.0 / bsz as f32;
        g.w.resize_with(nl, Mat::default);
        g.b.resize_with(nl, Vec::new);
        // Layer 1: x̂_0 is shared by all hypotheses, so ΔW_1 = e x̂_0ᵀ with e = Σ_k δ_1(k).
        let e = &mut scratch.e;
        e.reshape_zeroed(bsz, p.w[0].rows);
        g.u.reshape_zeroed(p.u.rows, p.u.cols);
        for r in 0..delta[0].rows {
            let dr = delta[0].row(r);
            for (o, v) in e.row_mut(r / k).iter_mut().zip(dr) {
                *o += v;
            }
            for (o, v) in g.u.row_mut(fwd.hyps[r] as usize).iter_mut().zip(dr) {
                *o += v * inv_b;
            }
        }
        g.w[0].reshape(p.w[0].rows, p.w[0].cols);
        gemm(inv_b, e, Op::T, &fwd.x0, Op::N, 0.0, &mut g.w[0]);
        g.b[0].resize(p.b[0].len(), 0.0);
        column_sums(e, inv_b, &mut g.b[0]);
        for l in 1..nl {
            g.w[l].reshape(p.w[l].rows, p.w[l].cols);
            gemm(
                inv_b,
                &delta[l],
                Op::T,
                &fwd.layers[l - 1].xhat,
                Op::N,
                0.0,
                &mut g.w[l],
            );
            g.b[l].resize(p.b[l].len(), 0.0);
            column_sums(&delta[l], inv_b, &mut g.b[l]);
        }
        g.correct = (k == self.classes).then(|| {
            let s = self.scores(fwd, &self.eval_layers());
            (0..bsz)
                .filter(|&i| argmax(&s[i * k..(i + 1) * k]) == 0)
                .count()
        });
        g.loss_sum = loss_sum;
    }

    /// Per-layer losses Σ_i L_l(i) for fixed hypotheses (all negatives active unless hard).
    pub fn layer_losses(&self, x: &Mat, k: usize, hyps: &[u32]) -> Vec<f64> {
        let fwd = self.forward(x, k, hyps);
        let gtilde = self.collaborative_goodness(&fwd);
        gtilde
            .iter()
            .map(|g| {
                (0..x.rows)
                    .map(|i| {
                        let gt = &g[i * k..(i + 1) * k];
                        loss_coefficients(&self.alg, gt, &self.active_slots(gt)).0
                    })
                    .sum()
            })
            .collect()
    }

    /// Goodness G_l(c) of every class for each sample: `out[l]` is batch × C.
    pub fn goodness_table(&self, x: &Mat) -> Vec<Mat> {
        let c = self.classes;
        let hyps = every_class(x.rows, c);
        let fwd = self.forward(x, c, &hyps);
        fwd.layers
            .iter()
            .map(|a| Mat {
                rows: x.rows,
                cols: c,
                data: a.goodness.clone(),
            })
            .collect()
    }

    fn apply(&mut self, g: &DfGrads) {
        self.optim.begin_step();
        let p = &mut self.params;
        for l in 0..p.w.len() {
            self.optim.apply(2 * l, &mut p.w[l].data, &g.w[l].data);
            self.optim.apply(2 * l + 1, &mut p.b[l], &g.b[l]);
        }
        self.optim.apply(2 * p.w.len(), &mut p.u.data, &g.u.data);
    }
}

/// ReLU, goodness and normalisation of one layer's pre-activations (in `act.h` on entry).
fn activate(act: &mut LayerAct, eps: f32) {
    let h = &mut act.h;
    let (rows, cols) = (h.rows, h.cols);
    let d = cols as f32;
    act.xhat.reshape(rows, cols);
    act.goodness.resize(rows, 0.0);
    act.inv_norm.resize(rows, 0.0);
    // Rows are independent (each row's arithmetic is the same on any thread).
    let c = cols.max(1);
    h.data
        .par_chunks_mut(c)
        .zip(act.xhat.data.par_chunks_mut(c))
        .zip(act.goodness.par_iter_mut().zip(act.inv_norm.par_iter_mut()))
        .with_min_len((1 << 13) / c + 1)
        .for_each(|((h, x), (g, inv))| {
            h.iter_mut().for_each(|v| *v = v.max(0.0));
            let n = norm(h);
            *g = n * n / d;
            let s = 1.0 / (n + eps);
            *inv = s;
            for (x, &v) in x.iter_mut().zip(h.iter()) {
                *x = v * s;
            }
        });
}

impl Learner for DfNet {
    fn activation_noise(&mut self) -> Option<&mut Option<crate::noise::activation::Perturber>> {
        Some(&mut self.act_noise)
    }

    fn weights_mut(&mut self) -> Vec<crate::noise::weights::WeightsMut<'_>> {
        super::float_weights(&mut self.params.w, self.word)
    }

    fn train_batch(&mut self, x: &Mat, labels: &[u32]) -> BatchStats {
        // The same step as `gradients` + `apply`, in buffers kept from the last step.
        let (k, hyps) = training_hyps(&self.alg, self.classes, &mut self.rng, labels);
        let mut ws = std::mem::take(&mut self.ws);
        self.forward_into(x, k, &hyps, &mut ws.fwd, &mut ws.scratch);
        self.gradients_into(&ws.fwd, labels.len(), &mut ws.grads, &mut ws.scratch);
        self.apply(&ws.grads);
        let stats = BatchStats {
            loss_sum: ws.grads.loss_sum,
            correct: ws.grads.correct,
        };
        self.ws = ws;
        stats
    }

    fn set_lr_factor(&mut self, f: f32) {
        self.optim.set_lr_factor(f);
    }

    fn predict(&self, x: &Mat) -> Vec<u32> {
        let c = self.classes;
        let hyps = every_class(x.rows, c);
        let fwd = self.forward(x, c, &hyps);
        let s = self.scores(&fwd, &self.eval_layers());
        (0..x.rows)
            .map(|i| argmax(&s[i * c..(i + 1) * c]) as u32)
            .collect()
    }
}
