//! The 8×8 digits data set bundled with smartcore, with a fixed train/test
//! split.
//!
//! The data has no official split, so we make one that is the same on every
//! machine and every run (results stay comparable) and stratified (each class
//! is 20% test, so a small test set still covers every digit fairly).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{DataError, Dataset, Split};

/// One sentence for `--help` describing how the digits split is made.
pub const DIGITS_SPLIT_DOC: &str = "digits: smartcore's 1,797 8x8 images (10 classes), split with a fixed seed (2408) and stratified per class into 1,438 train and 359 test samples (20% of each class held out).";

/// Seed of the one ChaCha8 stream used for the split; changing it changes
/// every reported digits number, so it is fixed.
const SPLIT_SEED: u64 = 2408;
const SIDE: usize = 8;
const CLASSES: usize = 10;
/// Raw pixel values run 0..=16.
const MAX_PIXEL: f32 = 16.0;

/// Loads digits with the fixed stratified split described in
/// [`DIGITS_SPLIT_DOC`].
pub(super) fn load() -> Result<Dataset, DataError> {
    let raw = smartcore::dataset::digits::load_dataset();
    let dim = SIDE * SIDE;
    if raw.num_features != dim || raw.data.len() != raw.num_samples * dim {
        return Err(DataError::Digits(format!(
            "expected {dim} features per sample, got {} features and {} values for {} samples",
            raw.num_features,
            raw.data.len(),
            raw.num_samples
        )));
    }
    let labels = labels_from_targets(&raw.target)?;
    if labels.len() != raw.num_samples {
        return Err(DataError::Digits(format!(
            "{} targets for {} samples",
            labels.len(),
            raw.num_samples
        )));
    }
    let (train_idx, test_idx) = stratified_split(&labels);
    Ok(Dataset {
        name: "digits".to_string(),
        width: SIDE,
        height: SIDE,
        classes: CLASSES,
        train: gather(&raw.data, &labels, &train_idx, dim),
        test: gather(&raw.data, &labels, &test_idx, dim),
    })
}

/// Converts smartcore's f32 targets to class indices, rejecting anything that
/// is not an integer in `0..CLASSES` instead of silently truncating it.
fn labels_from_targets(targets: &[f32]) -> Result<Vec<u32>, DataError> {
    targets
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            if t.fract() == 0.0 && t >= 0.0 && t < CLASSES as f32 {
                Ok(t as u32)
            } else {
                Err(DataError::Digits(format!(
                    "target {t} of sample {i} is not a class 0..{CLASSES}"
                )))
            }
        })
        .collect()
}

/// Number of test samples taken from a class of `count` samples:
/// round(20%), done in integers so it cannot drift with float rounding.
fn test_share(count: usize) -> usize {
    (count * 2 + 5) / 10
}

/// Splits sample indices into (train, test).
///
/// One ChaCha8 stream seeded with [`SPLIT_SEED`] is consumed in a fixed
/// order: shuffle each class's indices (class 0 first) and send the first
/// round(20%) to test, then shuffle the train list, then the test list, so
/// the splits are not sorted by class.
fn stratified_split(labels: &[u32]) -> (Vec<usize>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(SPLIT_SEED);
    let mut train = Vec::new();
    let mut test = Vec::new();
    for class in 0..CLASSES as u32 {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        members.shuffle(&mut rng);
        let n_test = test_share(members.len());
        test.extend_from_slice(&members[..n_test]);
        train.extend_from_slice(&members[n_test..]);
    }
    train.shuffle(&mut rng);
    test.shuffle(&mut rng);
    (train, test)
}

/// Copies the chosen samples into a [`Split`], scaling pixels to `[0, 1]`.
fn gather(data: &[f32], labels: &[u32], idx: &[usize], dim: usize) -> Split {
    let images = idx
        .iter()
        .flat_map(|&i| data[i * dim..(i + 1) * dim].iter())
        .map(|&p| (p / MAX_PIXEL).clamp(0.0, 1.0))
        .collect();
    let split_labels = idx.iter().map(|&i| labels[i]).collect();
    Split::new(images, split_labels, dim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_counts(labels: &[u32]) -> Vec<usize> {
        let mut counts = vec![0; CLASSES];
        for &l in labels {
            counts[l as usize] += 1;
        }
        counts
    }

    #[test]
    fn split_counts_match_the_doc() {
        let ds = load().unwrap();
        assert_eq!(ds.train.len(), 1438);
        assert_eq!(ds.test.len(), 359);
        assert_eq!(ds.train.len() + ds.test.len(), 1797);
        assert!(DIGITS_SPLIT_DOC.contains("1,438 train"));
        assert!(DIGITS_SPLIT_DOC.contains("359 test"));
        assert_eq!((ds.width, ds.height, ds.classes, ds.dim()), (8, 8, 10, 64));
        assert_eq!(ds.train.images.len(), 1438 * 64);
        assert_eq!(ds.test.images.len(), 359 * 64);
    }

    #[test]
    fn split_is_stratified() {
        let ds = load().unwrap();
        let train = class_counts(&ds.train.labels);
        let test = class_counts(&ds.test.labels);
        for c in 0..CLASSES {
            let total = (train[c] + test[c]) as f64;
            assert!(
                (test[c] as f64 - 0.2 * total).abs() <= 1.0,
                "class {c}: {} of {total} in test",
                test[c]
            );
        }
    }

    #[test]
    fn split_is_deterministic_and_shuffled() {
        let a = load().unwrap();
        let b = load().unwrap();
        assert_eq!(a, b);
        // Not sorted by class: the first 50 train labels span several classes.
        let mut seen = a.train.labels[..50].to_vec();
        seen.sort_unstable();
        seen.dedup();
        assert!(seen.len() > 5);
    }

    #[test]
    fn pixels_are_scaled_and_labels_in_range() {
        let ds = load().unwrap();
        for s in [&ds.train, &ds.test] {
            assert!(s.images.iter().all(|&p| (0.0..=1.0).contains(&p)));
            assert!(s.labels.iter().all(|&l| (l as usize) < ds.classes));
        }
        // Raw values reach 16, so the scaled maximum reaches 1.
        assert!(ds.train.images.contains(&1.0));
    }

    #[test]
    fn train_and_test_are_disjoint_and_cover_everything() {
        let labels =
            labels_from_targets(&smartcore::dataset::digits::load_dataset().target).unwrap();
        let (train, test) = stratified_split(&labels);
        let mut all: Vec<usize> = train.iter().chain(test.iter()).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());
    }

    #[test]
    fn bad_targets_are_errors() {
        assert!(labels_from_targets(&[1.5]).is_err());
        assert!(labels_from_targets(&[-1.0]).is_err());
        assert!(labels_from_targets(&[10.0]).is_err());
        assert!(labels_from_targets(&[f32::NAN]).is_err());
        assert_eq!(labels_from_targets(&[0.0, 9.0]).unwrap(), vec![0, 9]);
    }
}
