//! The weight-memory sites of `[noise]`: read noise, device variation, update noise, stuck-at
//! bits and bit flips. The training loop applies them through a learner's stored weight
//! matrices ([`WeightsMut`]): [`WeightSites::before_step`] and [`WeightSites::after_step`]
//! around every training step, [`WeightSites::deploy`] around every evaluation. So one
//! definition serves the float and the fixed-point model of every learner.
//!
//! A training step with read noise or variation sees perturbed weights W̃ = W + N; it updates
//! them to W̃ + Δ, and the memory then holds W + Δ (the noise was in the read, not in the
//! cells). Update noise writes Δ·(1 + σ·ξ) instead of Δ. Stuck bits are forced after every
//! write (and on the initial weights); bit flips stay in memory, and the next update starts
//! from the flipped word.
//!
//! Read noise is drawn fresh for each training step and each evaluated batch (aihwkit draws its
//! weight noise once per mini-batch too). The variation map and the stuck-at fault map are
//! drawn once per seed. Bit-level sites act on the word the hardware stores: a fixed-point
//! model's raw word, or a float weight quantised onto the config's `fixed.weight` format (only
//! the words a fault hits change; the others keep their float value).

use super::{Form, Noise, Polarity, WeightNoise};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Geometric, StandardNormal};

/// The layout of a stored weight word (the fixed-point format's bits, fraction and sign).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Word {
    pub bits: u32,
    pub frac: u32,
    pub signed: bool,
}

impl Word {
    pub fn new(bits: u32, frac: u32, signed: bool) -> Word {
        Word {
            bits: bits.clamp(1, 62),
            frac,
            signed,
        }
    }
    fn min(self) -> i64 {
        if self.signed {
            -(1i64 << (self.bits - 1))
        } else {
            0
        }
    }
    fn max(self) -> i64 {
        if self.signed {
            (1i64 << (self.bits - 1)) - 1
        } else {
            (1i64 << self.bits) - 1
        }
    }
    fn saturate(self, x: f64) -> i64 {
        (x.round() as i64).clamp(self.min(), self.max())
    }
    /// A real value onto the word (half up, saturating), as the host loads weights.
    fn encode(self, x: f64) -> i64 {
        (x * (self.frac as f64).exp2() + 0.5)
            .floor()
            .clamp(self.min() as f64, self.max() as f64) as i64
    }
    fn decode(self, raw: i64) -> f64 {
        raw as f64 * (-(self.frac as f64)).exp2()
    }
    fn mask(self) -> u64 {
        (1u64 << self.bits) - 1
    }
    /// The bits in memory of a raw value (two's complement when signed).
    fn to_bits(self, raw: i64) -> u64 {
        raw as u64 & self.mask()
    }
    fn sign_extend(self, bits: u64) -> i64 {
        let b = bits & self.mask();
        if self.signed && b >> (self.bits - 1) & 1 == 1 {
            (b | !self.mask()) as i64
        } else {
            b as i64
        }
    }
}

/// One stored weight matrix of a learner, row-major.
pub enum WeightsMut<'a> {
    /// Float weights; `Word` is the fixed-point format the hardware would store them in, which
    /// the bit-level sites act on.
    Float(&'a mut [f32], Word),
    /// Raw fixed-point words.
    Fixed(&'a mut [i32], Word),
}

/// A copy of one matrix.
#[derive(Clone, Debug, PartialEq)]
enum Saved {
    Float(Vec<f32>),
    Fixed(Vec<i32>),
}

impl WeightsMut<'_> {
    pub fn len(&self) -> usize {
        match self {
            WeightsMut::Float(w, _) => w.len(),
            WeightsMut::Fixed(w, _) => w.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn word(&self) -> Word {
        match self {
            WeightsMut::Float(_, f) | WeightsMut::Fixed(_, f) => *f,
        }
    }
    fn raw(&self, i: usize) -> i64 {
        match self {
            WeightsMut::Float(w, f) => f.encode(f64::from(w[i])),
            WeightsMut::Fixed(w, _) => i64::from(w[i]),
        }
    }
    fn set_raw(&mut self, i: usize, raw: i64) {
        match self {
            WeightsMut::Float(w, f) => w[i] = f.decode(raw) as f32,
            WeightsMut::Fixed(w, _) => w[i] = raw as i32,
        }
    }
    /// Change the stored bits of word `i` by `f`; the word is written only if they changed
    /// (so a float weight no fault hits keeps its exact value).
    fn edit_bits(&mut self, i: usize, f: impl FnOnce(u64) -> u64) {
        let word = self.word();
        let old = word.to_bits(self.raw(i));
        let new = f(old) & word.mask();
        if new != old {
            self.set_raw(i, word.sign_extend(new));
        }
    }
    fn save(&self) -> Saved {
        match self {
            WeightsMut::Float(w, _) => Saved::Float(w.to_vec()),
            WeightsMut::Fixed(w, _) => Saved::Fixed(w.to_vec()),
        }
    }
    fn restore(&mut self, s: &Saved) {
        match (self, s) {
            (WeightsMut::Float(w, _), Saved::Float(s)) => w.copy_from_slice(s),
            (WeightsMut::Fixed(w, _), Saved::Fixed(s)) => w.copy_from_slice(s),
            _ => unreachable!("a learner's weight matrices keep their kind"),
        }
    }
}

/// Indices of the hits of independent Bernoulli(p) trials over `0..n`, in order, found by
/// geometric skips (a bit-error rate of 10⁻⁶ over millions of bits costs a few draws).
fn for_each_hit(n: u64, p: f64, rng: &mut impl Rng, mut f: impl FnMut(u64)) {
    // Below MIN_RATE, 1 - p rounds to 1 and the geometric sampler would never return
    // (validation refuses such levels; this keeps any other caller safe).
    if p < super::MIN_RATE || n == 0 {
        return;
    }
    let gap = Geometric::new(p.min(1.0)).expect("0 < p <= 1");
    let mut i = gap.sample(rng);
    while i < n {
        f(i);
        i = i.saturating_add(1).saturating_add(gap.sample(rng));
    }
}

/// Bits of one word forced to a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fault {
    index: usize,
    mask: u64,
    value: u64,
}

/// The draws fixed for a run: the variation ξ of every weight and the stuck-at fault map.
struct Maps {
    lens: Vec<usize>,
    variation: Vec<Vec<f32>>,
    stuck: Vec<Vec<Fault>>,
}

impl Maps {
    fn new(noise: &Noise, seed: u64, ws: &[WeightsMut]) -> Maps {
        let mut vrng = ChaCha8Rng::seed_from_u64(seed ^ super::VARIATION_STREAM);
        let mut srng = ChaCha8Rng::seed_from_u64(seed ^ super::STUCK_AT_STREAM);
        let variation = ws
            .iter()
            .map(|w| match noise.variation.is_off() {
                true => Vec::new(),
                false => (0..w.len())
                    .map(|_| StandardNormal.sample(&mut vrng))
                    .collect(),
            })
            .collect();
        let stuck = ws
            .iter()
            .map(|w| {
                let mut faults: Vec<Fault> = Vec::new();
                if noise.stuck_at.is_off() {
                    return faults;
                }
                let bits = u64::from(w.word().bits);
                let n = w.len() as u64 * bits;
                let mut hits = Vec::new();
                for_each_hit(n, noise.stuck_at.level, &mut srng, |i| hits.push(i));
                for i in hits {
                    let (index, bit) = ((i / bits) as usize, i % bits);
                    let one = match noise.stuck_at.polarity {
                        Polarity::Zero => false,
                        Polarity::One => true,
                        Polarity::Mixed => srng.gen_bool(0.5),
                    };
                    match faults.last_mut() {
                        Some(f) if f.index == index => {}
                        _ => faults.push(Fault {
                            index,
                            mask: 0,
                            value: 0,
                        }),
                    }
                    let f = faults.last_mut().expect("pushed");
                    f.mask |= 1 << bit;
                    f.value |= u64::from(one) << bit;
                }
                faults
            })
            .collect();
        Maps {
            lens: ws.iter().map(WeightsMut::len).collect(),
            variation,
            stuck,
        }
    }

    fn apply_stuck(&self, ws: &mut [WeightsMut]) {
        for (w, faults) in ws.iter_mut().zip(&self.stuck) {
            for f in faults {
                w.edit_bits(f.index, |b| (b & !f.mask) | f.value);
            }
        }
    }

    fn apply_variation(&self, ws: &mut [WeightsMut], v: &WeightNoise) {
        for (w, xi) in ws.iter_mut().zip(&self.variation) {
            let mut xi = xi.iter().map(|&x| f64::from(x));
            perturb(w, v, || xi.next().expect("one ξ per weight"));
        }
    }
}

/// A stored weight's number type: the loops below are written once for both and compiled
/// for each (a match per element would dominate a step at batch 8).
trait Elem: Copy {
    fn value(self) -> f64;
    /// `x` stored in this type (a raw word: rounded to nearest and saturated to `word`).
    fn store(x: f64, word: Word) -> Self;
}
impl Elem for f32 {
    fn value(self) -> f64 {
        f64::from(self)
    }
    fn store(x: f64, _: Word) -> f32 {
        x as f32
    }
}
impl Elem for i32 {
    fn value(self) -> f64 {
        f64::from(self)
    }
    fn store(x: f64, word: Word) -> i32 {
        word.saturate(x) as i32
    }
}

fn perturb_slice<T: Elem>(
    w: &mut [T],
    word: Word,
    noise: &WeightNoise,
    mut xi: impl FnMut() -> f64,
) {
    let sigma = noise.level;
    match noise.form {
        Form::Additive => {
            let scale = sigma * w.iter().fold(0.0f64, |m, v| m.max(v.value().abs()));
            for v in w.iter_mut() {
                *v = T::store(v.value() + scale * xi(), word);
            }
        }
        Form::Multiplicative => {
            for v in w.iter_mut() {
                *v = T::store(v.value() * (1.0 + sigma * xi()), word);
            }
        }
    }
}

/// w + σ·ξ·max|W| or w·(1 + σ·ξ) for every weight, ξ from `xi`.
fn perturb(w: &mut WeightsMut, noise: &WeightNoise, xi: impl FnMut() -> f64) {
    match w {
        WeightsMut::Float(v, word) => perturb_slice(v, *word, noise, xi),
        WeightsMut::Fixed(v, word) => perturb_slice(v, *word, noise, xi),
    }
}

/// The memory after a step: clean + Δ (Δ = what the step did to the weights it read),
/// Δ·(1 + σ·ξ) with update noise.
fn write_step<T: Elem>(
    w: &mut [T],
    read: &[T],
    clean: &[T],
    word: Word,
    sigma: f64,
    rng: &mut ChaCha8Rng,
) {
    for ((v, &r), &c) in w.iter_mut().zip(read).zip(clean) {
        let mut delta = v.value() - r.value();
        if sigma != 0.0 && delta != 0.0 {
            let xi: f64 = StandardNormal.sample(rng);
            delta *= 1.0 + sigma * xi;
        }
        *v = T::store(c.value() + delta, word);
    }
}

fn read_noise(ws: &mut [WeightsMut], noise: &WeightNoise, rng: &mut ChaCha8Rng) {
    for w in ws.iter_mut() {
        perturb(w, noise, || StandardNormal.sample(rng));
    }
}

fn flip_bits(ws: &mut [WeightsMut], ber: f64, rng: &mut ChaCha8Rng) {
    for w in ws.iter_mut() {
        let bits = u64::from(w.word().bits);
        let mut hits = Vec::new();
        for_each_hit(w.len() as u64 * bits, ber, rng, |i| hits.push(i));
        for i in hits {
            w.edit_bits((i / bits) as usize, |b| b ^ (1 << (i % bits)));
        }
    }
}

/// The weight-memory sites of one run.
pub struct WeightSites {
    noise: Noise,
    seed: u64,
    train_rng: ChaCha8Rng,
    maps: Option<Maps>,
    /// The clean weights before the step, and the perturbed ones the step read (when they
    /// differ), kept from `before_step` to `after_step`.
    step: Option<(Vec<Saved>, Option<Vec<Saved>>)>,
    /// See [`WeightSites::keep_written`].
    written: Option<Vec<Saved>>,
    started: bool,
}

/// The weights of one evaluation: the clean ones (restored by [`Deployment::finish`]) and the
/// deployed ones (with the persistent sites), re-read with fresh read noise per batch.
pub struct Deployment {
    clean: Vec<Saved>,
    deployed: Vec<Saved>,
    read: Option<WeightNoise>,
    rng: ChaCha8Rng,
}

impl WeightSites {
    /// The weight sites of `noise` for a run seeded `seed`; `None` when every one is off.
    pub fn new(noise: &Noise, seed: u64) -> Option<WeightSites> {
        noise.weights_on().then(|| WeightSites {
            noise: noise.clone(),
            seed,
            train_rng: ChaCha8Rng::seed_from_u64(seed ^ super::WEIGHT_TRAIN_STREAM),
            maps: None,
            step: None,
            written: None,
            started: false,
        })
    }

    fn maps(&mut self, ws: &[WeightsMut]) -> &Maps {
        let lens: Vec<usize> = ws.iter().map(WeightsMut::len).collect();
        if self.maps.as_ref().is_none_or(|m| m.lens != lens) {
            self.maps = Some(Maps::new(&self.noise, self.seed, ws));
        }
        self.maps.as_ref().expect("just built")
    }

    fn read_in(&self, training: bool) -> Option<&WeightNoise> {
        let r = &self.noise.weight_read;
        let on = if training {
            r.regime.in_training()
        } else {
            r.regime.at_inference()
        };
        (!r.is_off() && on).then_some(r)
    }
    fn variation_in(&self, training: bool) -> Option<&WeightNoise> {
        let v = &self.noise.variation;
        let on = if training {
            v.regime.in_training()
        } else {
            v.regime.at_inference()
        };
        (!v.is_off() && on).then_some(v)
    }
    fn stuck_in(&self, training: bool) -> bool {
        let s = &self.noise.stuck_at;
        !s.is_off()
            && if training {
                s.regime.in_training()
            } else {
                s.regime.at_inference()
            }
    }
    fn flips_in(&self, training: bool) -> Option<f64> {
        let b = &self.noise.bit_flip;
        let on = if training {
            b.regime.in_training()
        } else {
            b.regime.at_inference()
        };
        (!b.is_off() && on).then_some(b.level)
    }

    /// Before a training step: the stuck bits on the initial weights (first step), then the
    /// weights the step reads (variation, fresh read noise).
    pub fn before_step(&mut self, ws: &mut [WeightsMut]) {
        self.maps(ws);
        if !self.started {
            self.started = true;
            if self.stuck_in(true) {
                self.keep_written(ws);
                self.maps.as_ref().expect("built").apply_stuck(ws);
            }
        }
        let (read, variation) = (
            self.read_in(true).cloned(),
            self.variation_in(true).cloned(),
        );
        let perturbs = read.is_some() || variation.is_some();
        if !perturbs && self.noise.update.is_off() {
            return;
        }
        let clean: Vec<Saved> = ws.iter().map(WeightsMut::save).collect();
        if let Some(v) = &variation {
            self.maps.as_ref().expect("built").apply_variation(ws, v);
        }
        if let Some(r) = &read {
            read_noise(ws, r, &mut self.train_rng);
        }
        let perturbed = perturbs.then(|| ws.iter().map(WeightsMut::save).collect());
        self.step = Some((clean, perturbed));
    }

    /// After a training step: the memory holds the clean weights plus the (noisy) step, then
    /// the stuck bits and this step's bit flips.
    pub fn after_step(&mut self, ws: &mut [WeightsMut]) {
        if let Some((clean, perturbed)) = self.step.take() {
            let sigma = self.noise.update.level;
            for (l, w) in ws.iter_mut().enumerate() {
                let read = perturbed.as_ref().map_or(&clean[l], |p| &p[l]);
                let rng = &mut self.train_rng;
                match (w, read, &clean[l]) {
                    (WeightsMut::Float(v, word), Saved::Float(r), Saved::Float(c)) => {
                        write_step(v, r, c, *word, sigma, rng)
                    }
                    (WeightsMut::Fixed(v, word), Saved::Fixed(r), Saved::Fixed(c)) => {
                        write_step(v, r, c, *word, sigma, rng)
                    }
                    _ => unreachable!("a learner's weight matrices keep their kind"),
                }
            }
        }
        if let Some(ber) = self.flips_in(true) {
            flip_bits(ws, ber, &mut self.train_rng);
        }
        // Stuck bits last: a flip cannot unstick them.
        if self.stuck_in(true) {
            self.keep_written(ws);
            self.maps(ws).apply_stuck(ws);
        }
    }

    /// In the `train` regime of stuck-at faults, the words as written (before the faults
    /// force them): what a healthy memory would hold, which the evaluation reads.
    fn keep_written(&mut self, ws: &[WeightsMut]) {
        if !self.stuck_in(false) {
            self.written = Some(ws.iter().map(WeightsMut::save).collect());
        }
    }

    /// Whether any site acts at inference.
    pub fn at_inference(&self) -> bool {
        self.read_in(false).is_some()
            || self.variation_in(false).is_some()
            || self.stuck_in(false)
            || self.flips_in(false).is_some()
            || self.written.is_some()
    }

    /// The weights an evaluation sees: the words as written where stuck bits acted in
    /// training only, then variation, bit flips and stuck bits (the same draws at every
    /// evaluation), then per batch fresh read noise ([`Deployment::before_batch`]).
    /// `None` when no site acts at inference. [`Deployment::finish`] restores the weights.
    pub fn deploy(&mut self, ws: &mut [WeightsMut]) -> Option<Deployment> {
        if !self.at_inference() {
            return None;
        }
        self.maps(ws);
        let clean = ws.iter().map(WeightsMut::save).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ super::WEIGHT_EVAL_STREAM);
        if let Some(written) = &self.written {
            for (w, s) in ws.iter_mut().zip(written) {
                w.restore(s);
            }
        }
        let maps = self.maps.as_ref().expect("built");
        if let Some(v) = self.variation_in(false) {
            maps.apply_variation(ws, v);
        }
        if let Some(ber) = self.flips_in(false) {
            flip_bits(ws, ber, &mut rng);
        }
        if self.stuck_in(false) {
            maps.apply_stuck(ws);
        }
        Some(Deployment {
            clean,
            deployed: ws.iter().map(WeightsMut::save).collect(),
            read: self.read_in(false).cloned(),
            rng,
        })
    }
}

impl Deployment {
    /// Before each evaluated batch: the deployed weights with fresh read noise.
    pub fn before_batch(&mut self, ws: &mut [WeightsMut]) {
        if let Some(r) = &self.read {
            for (w, s) in ws.iter_mut().zip(&self.deployed) {
                w.restore(s);
            }
            read_noise(ws, r, &mut self.rng);
        }
    }

    /// The clean weights back.
    pub fn finish(self, ws: &mut [WeightsMut]) {
        for (w, s) in ws.iter_mut().zip(&self.clean) {
            w.restore(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::{BitFlip, Regime, StuckAt, UpdateNoise};

    const W16: Word = Word {
        bits: 16,
        frac: 12,
        signed: true,
    };

    fn fixed_weights(n: usize) -> Vec<i32> {
        (0..n).map(|i| (i as i32 * 37 % 2001) - 1000).collect()
    }

    fn with<R>(w: &mut Vec<i32>, f: impl FnOnce(&mut [WeightsMut]) -> R) -> R {
        let mut ws = [WeightsMut::Fixed(w.as_mut_slice(), W16)];
        f(&mut ws)
    }

    fn noise(f: impl FnOnce(&mut Noise)) -> Noise {
        let mut n = Noise::default();
        f(&mut n);
        n
    }

    #[test]
    fn words_round_trip_through_their_bits() {
        for raw in [-32768i64, -1, 0, 1, 4095, 32767] {
            assert_eq!(W16.sign_extend(W16.to_bits(raw)), raw);
        }
        assert_eq!(W16.to_bits(-1), 0xffff);
        let u = Word::new(8, 0, false);
        assert_eq!(u.sign_extend(0xff), 255);
        assert_eq!(W16.encode(W16.decode(-1234)), -1234);
        assert_eq!(W16.encode(100.0), 32767);
    }

    #[test]
    fn every_site_off_means_no_sites() {
        assert!(WeightSites::new(&Noise::default(), 1).is_none());
    }

    #[test]
    fn read_noise_is_seen_by_the_step_and_not_kept_in_memory() {
        let n = noise(|n| {
            n.weight_read = WeightNoise {
                level: 0.1,
                form: Form::Additive,
                regime: Regime::Train,
            }
        });
        let mut sites = WeightSites::new(&n, 7).unwrap();
        let clean = fixed_weights(5000);
        let mut w = clean.clone();
        let seen = with(&mut w, |ws| {
            sites.before_step(ws);
            ws[0].save()
        });
        let Saved::Fixed(seen) = seen else { panic!() };
        let sd = (seen
            .iter()
            .zip(&clean)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>()
            / 5000.0)
            .sqrt();
        // σ = 0.1 of max |W| = 1000.
        assert!((sd - 100.0).abs() < 5.0, "sd {sd}");
        // The step adds 3 to every word: memory holds clean + 3 exactly.
        w.iter_mut().for_each(|v| *v += 3);
        with(&mut w, |ws| sites.after_step(ws));
        assert!(w.iter().zip(&clean).all(|(a, b)| *a == b + 3));
        // Not at inference in the train regime.
        assert!(with(&mut w, |ws| sites.deploy(ws)).is_none());
    }

    #[test]
    fn update_noise_scales_each_step_around_its_size() {
        let n = noise(|n| n.update = UpdateNoise { level: 0.3 });
        let mut sites = WeightSites::new(&n, 3).unwrap();
        let mut w = vec![0i32; 20_000];
        with(&mut w, |ws| sites.before_step(ws));
        w.iter_mut().for_each(|v| *v += 1000);
        with(&mut w, |ws| sites.after_step(ws));
        let m = w.iter().map(|&v| f64::from(v)).sum::<f64>() / 20_000.0;
        let sd = (w.iter().map(|&v| (f64::from(v) - m).powi(2)).sum::<f64>() / 20_000.0).sqrt();
        assert!(
            (m - 1000.0).abs() < 5.0 && (sd - 300.0).abs() < 10.0,
            "{m} {sd}"
        );
        // A weight the step left alone stays put, and draws nothing.
        with(&mut w, |ws| sites.before_step(ws));
        let before = w.clone();
        let stream = sites.train_rng.clone().gen::<u64>();
        with(&mut w, |ws| sites.after_step(ws));
        assert_eq!(w, before);
        assert_eq!(
            sites.train_rng.gen::<u64>(),
            stream,
            "no draw for an unchanged weight"
        );
    }

    #[test]
    fn stuck_bits_hold_their_value_after_every_write_and_the_map_is_per_seed() {
        let n = noise(|n| {
            n.stuck_at = StuckAt {
                level: 0.05,
                polarity: Polarity::One,
                regime: Regime::Both,
            }
        });
        let faults = |seed| {
            let mut sites = WeightSites::new(&n, seed).unwrap();
            let mut w = vec![0i32; 4000];
            with(&mut w, |ws| {
                sites.before_step(ws);
                sites.after_step(ws)
            });
            w
        };
        let w = faults(1);
        let ones: u32 = w.iter().map(|&v| (v as u32 & 0xffff).count_ones()).sum();
        let rate = f64::from(ones) / (4000.0 * 16.0);
        assert!((rate - 0.05).abs() < 0.005, "rate {rate}");
        assert_eq!(w, faults(1));
        assert_ne!(w, faults(2));
        // Writing zeros again: the stuck ones come back.
        let mut sites = WeightSites::new(&n, 1).unwrap();
        let mut v = vec![0i32; 4000];
        with(&mut v, |ws| sites.before_step(ws));
        assert_eq!(v, w, "the initial weights are hit");
        v.iter_mut().for_each(|x| *x = 0);
        with(&mut v, |ws| sites.after_step(ws));
        assert_eq!(v, w);
    }

    #[test]
    fn stuck_bits_in_training_only_are_not_read_by_the_evaluation_and_survive_flips() {
        let stuck = |regime| {
            noise(|n| {
                n.stuck_at = StuckAt {
                    level: 0.05,
                    polarity: Polarity::One,
                    regime,
                };
                n.bit_flip = BitFlip {
                    level: 0.05,
                    regime: Regime::Train,
                };
            })
        };
        let run = |regime| {
            let mut sites = WeightSites::new(&stuck(regime), 4).unwrap();
            let mut w = vec![0i32; 3000];
            let deployed = with(&mut w, |ws| {
                sites.before_step(ws);
                sites.after_step(ws);
                let d = sites.deploy(ws).unwrap();
                let s = ws[0].save();
                d.finish(ws);
                s
            });
            (w, deployed)
        };
        let (memory, train_eval) = run(Regime::Train);
        let (memory_both, both_eval) = run(Regime::Both);
        // The memory is the same chip either way; a flip cannot clear a stuck-at-1 bit.
        assert_eq!(memory, memory_both);
        let Saved::Fixed(both_eval) = both_eval else {
            panic!()
        };
        assert_eq!(
            both_eval, memory,
            "both: the evaluation reads the faulty memory"
        );
        let Saved::Fixed(train_eval) = train_eval else {
            panic!()
        };
        assert_ne!(train_eval, memory, "train: the words as written");
        let mut sites = WeightSites::new(&stuck(Regime::Both), 4).unwrap();
        let mut w = vec![0i32; 3000];
        with(&mut w, |ws| sites.before_step(ws));
        let stuck_ones = w.clone();
        with(&mut w, |ws| sites.after_step(ws));
        for (a, s) in w.iter().zip(&stuck_ones) {
            assert_eq!(a & s, *s, "every stuck-at-1 bit is still 1 after the flips");
        }
    }

    #[test]
    fn float_weights_change_only_where_a_fault_hits() {
        let n = noise(|n| {
            n.stuck_at = StuckAt {
                level: 0.002,
                polarity: Polarity::Mixed,
                regime: Regime::Inference,
            }
        });
        let mut sites = WeightSites::new(&n, 5).unwrap();
        let clean: Vec<f32> = (0..3000).map(|i| (i as f32 * 0.37).sin() * 0.8).collect();
        let mut w = clean.clone();
        let mut ws = [WeightsMut::Float(&mut w, W16)];
        sites.before_step(&mut ws);
        sites.after_step(&mut ws);
        let dep = sites.deploy(&mut ws).expect("inference regime");
        let WeightsMut::Float(deployed, _) = &ws[0] else {
            panic!()
        };
        let changed = deployed.iter().zip(&clean).filter(|(a, b)| a != b).count();
        // About 3000 · 16 · 0.002 ≈ 96 faults, half of which already match the stored bit.
        assert!((20..100).contains(&changed), "{changed} words changed");
        for (a, b) in deployed.iter().zip(&clean) {
            if a != b {
                // A changed word is the quantised weight with some bits forced.
                assert_eq!(f64::from(*a), W16.decode(W16.encode(f64::from(*a))));
            }
        }
        dep.finish(&mut ws);
        let WeightsMut::Float(back, _) = &ws[0] else {
            panic!()
        };
        assert_eq!(*back, clean.as_slice());
    }

    #[test]
    fn bit_flips_hit_the_given_rate_and_evaluations_see_the_same_flips() {
        let n = noise(|n| {
            n.bit_flip = BitFlip {
                level: 1e-3,
                regime: Regime::Inference,
            }
        });
        let mut sites = WeightSites::new(&n, 9).unwrap();
        let clean = fixed_weights(50_000);
        let mut w = clean.clone();
        let deployed = |sites: &mut WeightSites, w: &mut Vec<i32>| {
            with(w, |ws| {
                let d = sites.deploy(ws).unwrap();
                let s = ws[0].save();
                d.finish(ws);
                s
            })
        };
        let Saved::Fixed(a) = deployed(&mut sites, &mut w) else {
            panic!()
        };
        assert_eq!(w, clean, "finish restores");
        let flipped: u32 = a
            .iter()
            .zip(&clean)
            .map(|(x, y)| ((x ^ y) as u32 & 0xffff).count_ones())
            .sum();
        let ber = f64::from(flipped) / (50_000.0 * 16.0);
        assert!((ber - 1e-3).abs() < 1.5e-4, "ber {ber}");
        let Saved::Fixed(b) = deployed(&mut sites, &mut w) else {
            panic!()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn variation_is_one_draw_per_weight_and_read_noise_fresh_per_batch() {
        let n = noise(|n| {
            n.variation = WeightNoise {
                level: 0.05,
                form: Form::Multiplicative,
                regime: Regime::Inference,
            };
            n.weight_read = WeightNoise {
                level: 0.02,
                form: Form::Additive,
                regime: Regime::Inference,
            };
        });
        let mut sites = WeightSites::new(&n, 2).unwrap();
        let clean = fixed_weights(2000);
        let mut w = clean.clone();
        let (b1, b2, v) = with(&mut w, |ws| {
            let mut d = sites.deploy(ws).unwrap();
            let v = ws[0].save();
            d.before_batch(ws);
            let b1 = ws[0].save();
            d.before_batch(ws);
            let b2 = ws[0].save();
            d.finish(ws);
            (b1, b2, v)
        });
        assert_ne!(b1, b2, "fresh read noise per batch");
        assert_ne!(v, Saved::Fixed(clean.clone()));
        let v2 = with(&mut w, |ws| {
            let d = sites.deploy(ws).unwrap();
            let v = ws[0].save();
            d.finish(ws);
            v
        });
        assert_eq!(v, v2, "the variation map is fixed");
        assert_eq!(w, clean);
    }

    #[test]
    fn rare_hits_are_found_by_skipping() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut n = 0u64;
        for_each_hit(100_000_000, 1e-6, &mut rng, |_| n += 1);
        assert!((60..=140).contains(&n), "{n} hits");
        let mut all = 0;
        for_each_hit(10, 1.0, &mut rng, |_| all += 1);
        assert_eq!(all, 10);
    }
}
