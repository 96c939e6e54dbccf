//! Optimizers over a learner's parameter tensors (SGD, momentum, Adam).
//!
//! The hardware only does plain SGD with a shift; momentum and Adam exist for the float
//! reference, to show the accuracy ceiling of each algorithm on a given network.

use crate::config::{Optimizer, Training};

/// Per-tensor optimizer state; one `Optim` serves all tensors of a learner, indexed by slot.
pub struct Optim {
    kind: Optimizer,
    base_lr: f32,
    lr: f32,
    momentum: f32,
    step: i32,
    first: Vec<Vec<f32>>,
    second: Vec<Vec<f32>>,
}

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const ADAM_EPS: f32 = 1e-8;

impl Optim {
    /// `sizes` are the lengths of the tensors, in slot order.
    pub fn new(t: &Training, sizes: &[usize]) -> Optim {
        let state = |on: bool| {
            sizes
                .iter()
                .map(|&n| if on { vec![0.0; n] } else { Vec::new() })
                .collect()
        };
        Optim {
            kind: t.optimizer,
            base_lr: t.learning_rate,
            lr: t.learning_rate,
            momentum: t.momentum,
            step: 0,
            first: state(t.optimizer != Optimizer::Sgd),
            second: state(t.optimizer == Optimizer::Adam),
        }
    }

    /// Scale the configured learning rate (the schedule's multiplier).
    pub fn set_lr_factor(&mut self, f: f32) {
        self.lr = self.base_lr * f;
    }

    /// Call once per minibatch, before the `apply` calls of that batch.
    pub fn begin_step(&mut self) {
        self.step = self.step.saturating_add(1);
    }

    /// `param -= update(grad)` for tensor `slot`.
    pub fn apply(&mut self, slot: usize, param: &mut [f32], grad: &[f32]) {
        debug_assert_eq!(param.len(), grad.len());
        match self.kind {
            Optimizer::Sgd => {
                for (p, g) in param.iter_mut().zip(grad) {
                    *p -= self.lr * g;
                }
            }
            Optimizer::Momentum => {
                let v = &mut self.first[slot];
                for ((p, g), v) in param.iter_mut().zip(grad).zip(v.iter_mut()) {
                    *v = self.momentum * *v + g;
                    *p -= self.lr * *v;
                }
            }
            Optimizer::Adam => {
                let t = self.step.max(1);
                let c1 = 1.0 - BETA1.powi(t);
                let c2 = 1.0 - BETA2.powi(t);
                let lr = self.lr * c2.sqrt() / c1;
                let (m, v) = (&mut self.first[slot], &mut self.second[slot]);
                for (((p, g), m), v) in param
                    .iter_mut()
                    .zip(grad)
                    .zip(m.iter_mut())
                    .zip(v.iter_mut())
                {
                    *m = BETA1 * *m + (1.0 - BETA1) * g;
                    *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                    *p -= lr * *m / (v.sqrt() + ADAM_EPS);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn training(kind: Optimizer) -> Training {
        Training {
            optimizer: kind,
            learning_rate: 0.1,
            lr_schedule: crate::config::Schedule::Constant,
            momentum: 0.5,
            batch: 1,
            epochs: 1,
            seed: 0,
            shift: 0,
            ..crate::config::Config::builtin().training
        }
    }

    #[test]
    fn each_optimizer_descends_a_quadratic() {
        for kind in [Optimizer::Sgd, Optimizer::Momentum, Optimizer::Adam] {
            let mut o = Optim::new(&training(kind), &[2]);
            let mut p = vec![3.0f32, -2.0];
            for _ in 0..200 {
                o.begin_step();
                let g: Vec<f32> = p.iter().map(|x| 2.0 * x).collect();
                o.apply(0, &mut p, &g);
            }
            assert!(p.iter().all(|x| x.abs() < 0.05), "{kind:?}: {p:?}");
        }
    }

    #[test]
    fn sgd_step_is_exact() {
        let mut o = Optim::new(&training(Optimizer::Sgd), &[1]);
        let mut p = vec![1.0f32];
        o.begin_step();
        o.apply(0, &mut p, &[0.5]);
        assert_eq!(p, vec![1.0 - 0.1 * 0.5]);
    }
}
