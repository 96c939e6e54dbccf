//! Input noise: Gaussian, shot (Poisson) or salt-and-pepper noise on the pixels in [0, 1],
//! added on the host before the pixels are quantised, so the float and fixed-point models, the
//! simulated RTL and the board all see the same noisy pixels. During training each batch gets
//! fresh draws (a stream of its own, so the shuffle order does not change); at inference the
//! evaluated sets get the same draws at every evaluation (seeded from the training seed), so
//! accuracies of different learners and epochs compare like with like.

use super::Regime;
use rand::Rng;
use rand_distr::{Distribution, Normal, Poisson};
use serde::{Deserialize, Serialize};

/// The kind of input noise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputKind {
    /// x + N(0, level²), clipped to [0, 1]: sensor read noise.
    #[default]
    Gaussian,
    /// Poisson(x / level²) · level², clipped to [0, 1]: photon noise whose standard deviation
    /// is level · √x (level at a full-scale pixel).
    Shot,
    /// Each pixel, with probability `level`, set to 0 or 1 (even odds): dead and hot pixels.
    SaltPepper,
}

/// `[noise.input]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputNoise {
    pub kind: InputKind,
    /// σ in pixel units (gaussian), σ at a full-scale pixel (shot), or the fraction of pixels
    /// hit (salt-pepper); 0 = off.
    pub level: f64,
    pub regime: Regime,
}

impl Default for InputNoise {
    fn default() -> Self {
        InputNoise {
            kind: InputKind::Gaussian,
            level: 0.0,
            regime: Regime::Both,
        }
    }
}

impl InputNoise {
    pub fn is_on(&self) -> bool {
        self.level > 0.0
    }

    /// The smallest non-zero and the largest level that mean something for `kind`
    /// (validation's bounds).
    pub fn level_range(kind: InputKind) -> (f64, f64) {
        match kind {
            // Up to σ of a whole pixel range; beyond it the image is gone either way.
            InputKind::Gaussian => (0.0, 1.0),
            // A pixel's photon count is x / level²: below 10⁻³ it passes 10⁶ and the noise
            // (σ < 10⁻³ of a pixel) is far below the 8-bit input's step; far smaller levels
            // would overflow the count.
            InputKind::Shot => (1e-3, 1.0),
            InputKind::SaltPepper => (0.0, 1.0),
        }
    }

    /// Add this noise to pixels in [0, 1], in place (nothing when off).
    pub fn apply(&self, pixels: &mut [f32], rng: &mut impl Rng) {
        if !self.is_on() {
            return;
        }
        let level = self.level;
        match self.kind {
            InputKind::Gaussian => {
                let n = Normal::new(0.0f64, level).expect("validated: 0 < level <= 1");
                for v in pixels.iter_mut() {
                    *v = (f64::from(*v) + n.sample(rng)).clamp(0.0, 1.0) as f32;
                }
            }
            InputKind::Shot => {
                let unit = level * level;
                for v in pixels.iter_mut() {
                    let mean = f64::from(*v).max(0.0) / unit;
                    // Poisson needs a positive mean; a black pixel has no photons to vary.
                    if mean > 0.0 {
                        let count: f64 = Poisson::new(mean).expect("finite mean > 0").sample(rng);
                        *v = (count * unit).clamp(0.0, 1.0) as f32;
                    }
                }
            }
            InputKind::SaltPepper => {
                for v in pixels.iter_mut() {
                    if rng.gen_bool(level) {
                        *v = if rng.gen_bool(0.5) { 1.0 } else { 0.0 };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn noisy(kind: InputKind, level: f64, value: f32, n: usize, seed: u64) -> Vec<f32> {
        let noise = InputNoise {
            kind,
            level,
            regime: Regime::Both,
        };
        let mut x = vec![value; n];
        noise.apply(&mut x, &mut ChaCha8Rng::seed_from_u64(seed));
        x
    }

    fn mean_var(x: &[f32]) -> (f64, f64) {
        let n = x.len() as f64;
        let m = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let v = x.iter().map(|&v| (f64::from(v) - m).powi(2)).sum::<f64>() / n;
        (m, v)
    }

    #[test]
    fn level_zero_changes_nothing_and_draws_nothing() {
        let noise = InputNoise::default();
        assert!(!noise.is_on() && crate::noise::Noise::default().is_off());
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut x = vec![0.25f32; 100];
        noise.apply(&mut x, &mut rng);
        assert!(x.iter().all(|&v| v == 0.25));
        // The stream is where it started: nothing was drawn.
        assert_eq!(rng.gen::<u64>(), ChaCha8Rng::seed_from_u64(3).gen::<u64>());
    }

    #[test]
    fn gaussian_has_the_level_as_its_standard_deviation() {
        // At 0.5 a σ of 0.05 is clipped with probability ~1e-23.
        let x = noisy(InputKind::Gaussian, 0.05, 0.5, 200_000, 1);
        let (m, v) = mean_var(&x);
        assert!((m - 0.5).abs() < 0.001, "mean {m}");
        assert!((v.sqrt() - 0.05).abs() < 0.001, "sd {}", v.sqrt());
        // Clipped into the pixel range.
        let x = noisy(InputKind::Gaussian, 0.5, 0.9, 10_000, 2);
        assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(x.contains(&1.0));
    }

    #[test]
    fn shot_noise_grows_with_the_square_root_of_the_pixel() {
        // σ = level · √x: 0.1 · √0.25 = 0.05; the mean stays x.
        let x = noisy(InputKind::Shot, 0.1, 0.25, 200_000, 4);
        let (m, v) = mean_var(&x);
        assert!((m - 0.25).abs() < 0.002, "mean {m}");
        assert!((v.sqrt() - 0.05).abs() < 0.002, "sd {}", v.sqrt());
        // A black pixel stays black.
        assert!(noisy(InputKind::Shot, 0.3, 0.0, 1000, 5)
            .iter()
            .all(|&v| v == 0.0));
    }

    #[test]
    fn salt_and_pepper_hits_the_given_fraction_with_even_odds() {
        let x = noisy(InputKind::SaltPepper, 0.1, 0.5, 100_000, 6);
        let salt = x.iter().filter(|&&v| v == 1.0).count() as f64 / 1e5;
        let pepper = x.iter().filter(|&&v| v == 0.0).count() as f64 / 1e5;
        assert!((salt - 0.05).abs() < 0.004 && (pepper - 0.05).abs() < 0.004);
        assert_eq!(
            x.iter().filter(|&&v| v == 0.5).count() as f64 / 1e5 + salt + pepper,
            1.0
        );
    }

    #[test]
    fn a_seed_reproduces_the_draws() {
        for kind in [InputKind::Gaussian, InputKind::Shot, InputKind::SaltPepper] {
            assert_eq!(noisy(kind, 0.2, 0.4, 500, 9), noisy(kind, 0.2, 0.4, 500, 9));
            assert_ne!(
                noisy(kind, 0.2, 0.4, 500, 9),
                noisy(kind, 0.2, 0.4, 500, 10)
            );
        }
    }
}
