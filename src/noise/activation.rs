//! Activation (output) noise: z + σ·ξ·max|z| on a layer's pre-activations, drawn inside each
//! learner's forward pass from the [`Perturber`] the training loop hands it (one for the
//! training steps, a freshly seeded one for each evaluation, none where the regime says
//! clean). The scale is the layer's largest |z| over the batch, as aihwkit scales its output
//! noise to the output range.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::sync::Mutex;

/// A seeded source of activation noise at one level. The stream sits behind a mutex so that a
/// learner's `&self` forward pass (inference) can draw from it and the learner stays `Sync`;
/// draws are made in row-major order outside any parallel section, so a run is reproducible.
#[derive(Debug)]
pub struct Perturber {
    level: f64,
    rng: Mutex<ChaCha8Rng>,
}

impl Perturber {
    pub fn new(level: f64, seed: u64) -> Perturber {
        Perturber {
            level,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    fn draws(&self, n: usize, scale: f64, mut f: impl FnMut(usize, f64)) {
        if scale == 0.0 || self.level == 0.0 {
            return;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let s = self.level * scale;
        for i in 0..n {
            let xi: f64 = StandardNormal.sample(&mut *rng);
            f(i, s * xi);
        }
    }

    /// Float pre-activations.
    pub fn apply_f32(&self, z: &mut [f32]) {
        let scale = z.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        self.draws(z.len(), f64::from(scale), |i, n| z[i] += n as f32);
    }

    /// Fixed-point accumulators (raw integers): the noise is rounded to the nearest step.
    pub fn apply_i64(&self, z: &mut [i64]) {
        let scale = z.iter().fold(0u64, |m, v| m.max(v.unsigned_abs()));
        self.draws(z.len(), scale as f64, |i, n| {
            z[i] = z[i].saturating_add(n.round() as i64)
        });
    }
}

/// Apply `p`, if there is one, to float pre-activations.
pub fn perturb_f32(p: &Option<Perturber>, z: &mut [f32]) {
    if let Some(p) = p {
        p.apply_f32(z);
    }
}

/// Apply `p`, if there is one, to fixed-point accumulators.
pub fn perturb_i64(p: &Option<Perturber>, z: &mut [i64]) {
    if let Some(p) = p {
        p.apply_i64(z);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_relative_to_the_largest_pre_activation_and_seeded() {
        let p = Perturber::new(0.1, 5);
        let mut z = vec![0.0f32; 100_000];
        z[0] = 2.0;
        p.apply_f32(&mut z);
        let rest = &z[1..];
        let sd =
            (rest.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / rest.len() as f64).sqrt();
        assert!((sd - 0.2).abs() < 0.004, "sd {sd}");
        // The same seed draws the same noise; the stream moves on between calls.
        let (a, b) = (Perturber::new(0.1, 5), Perturber::new(0.1, 5));
        let mut x = vec![1i64 << 20, -(1 << 19), 7];
        let mut y = x.clone();
        a.apply_i64(&mut x);
        b.apply_i64(&mut y);
        assert_eq!(x, y);
        let before = x.clone();
        a.apply_i64(&mut x);
        assert_ne!(x, before);
        // All zero: no scale, nothing drawn.
        let mut zero = vec![0i64; 10];
        a.apply_i64(&mut zero);
        assert!(zero.iter().all(|&v| v == 0));
    }
}
