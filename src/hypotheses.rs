//! Which hypotheses (candidate labels) a DF step evaluates, and which are negatives.
//!
//! Shared by the float and fixed-point models so both draw the same negatives from the same
//! random stream: row `i * k + j` of a batch is sample `i` under hypothesis `hyps[i * k + j]`,
//! and slot 0 always holds the true label.

use crate::config::{Algorithm, Negatives};
use rand::seq::index::sample;
use rand::Rng;
use std::cmp::Ordering;

/// Slot 0 the label, then every other class in increasing order.
pub fn all_hyps(labels: &[u32], classes: usize) -> Vec<u32> {
    let mut hyps = Vec::with_capacity(labels.len() * classes);
    for &y in labels {
        hyps.push(y);
        hyps.extend((0..classes as u32).filter(|&k| k != y));
    }
    hyps
}

/// Every class in order for each of `rows` samples (inference).
pub fn every_class(rows: usize, classes: usize) -> Vec<u32> {
    (0..rows).flat_map(|_| 0..classes as u32).collect()
}

/// Hypotheses per sample and the list for a training batch: all classes for negatives
/// all/hard (hard ones are picked later from the scores), else the label and n random wrong
/// labels drawn without replacement.
pub fn training_hyps(
    alg: &Algorithm,
    classes: usize,
    rng: &mut impl Rng,
    labels: &[u32],
) -> (usize, Vec<u32>) {
    match alg.negatives {
        Negatives::All | Negatives::Hard => (classes, all_hyps(labels, classes)),
        Negatives::Random => {
            let n = alg.negatives_count;
            let mut hyps = Vec::with_capacity(labels.len() * (n + 1));
            for &y in labels {
                hyps.push(y);
                // Draw from the C−1 wrong labels by index, skipping over y.
                for idx in sample(rng, classes - 1, n).into_iter() {
                    let idx = idx as u32;
                    hyps.push(if idx >= y { idx + 1 } else { idx });
                }
            }
            (n + 1, hyps)
        }
    }
}

/// Which slots of one sample's layer scores `gt` are negatives this step. `cmp` orders two
/// scores; with hard negatives the `negatives_count` highest wrong-label scores are taken,
/// ties to the lower slot.
pub fn active_slots<T>(alg: &Algorithm, gt: &[T], cmp: impl Fn(&T, &T) -> Ordering) -> Vec<bool> {
    let mut active = vec![true; gt.len()];
    active[0] = false;
    if alg.negatives == Negatives::Hard {
        let mut order: Vec<usize> = (1..gt.len()).collect();
        order.sort_by(|&a, &b| cmp(&gt[b], &gt[a]).then(a.cmp(&b)));
        active.iter_mut().for_each(|a| *a = false);
        for &j in order.iter().take(alg.negatives_count) {
            active[j] = true;
        }
    }
    active
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use rand::SeedableRng;

    #[test]
    fn random_negatives_are_distinct_wrong_labels() {
        let mut alg = Config::builtin().algorithm;
        alg.negatives = Negatives::Random;
        alg.negatives_count = 4;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let labels = [0u32, 9, 4, 4];
        let (k, hyps) = training_hyps(&alg, 10, &mut rng, &labels);
        assert_eq!(k, 5);
        for (i, &y) in labels.iter().enumerate() {
            let row = &hyps[i * k..(i + 1) * k];
            assert_eq!(row[0], y);
            let mut neg = row[1..].to_vec();
            neg.sort();
            neg.dedup();
            assert_eq!(neg.len(), 4);
            assert!(neg.iter().all(|&n| n != y && n < 10));
        }
    }

    #[test]
    fn hard_negatives_take_the_highest_scores_ties_to_lower_slots() {
        let mut alg = Config::builtin().algorithm;
        alg.negatives = Negatives::Hard;
        alg.negatives_count = 2;
        let gt = [5, 1, 7, 3, 7];
        assert_eq!(
            active_slots(&alg, &gt, |a: &i32, b| a.cmp(b)),
            vec![false, false, true, false, true]
        );
        let gt = [5, 2, 2, 2, 1];
        assert_eq!(
            active_slots(&alg, &gt, |a: &i32, b| a.cmp(b)),
            vec![false, true, true, false, false]
        );
        alg.negatives = Negatives::All;
        assert_eq!(
            active_slots(&alg, &gt, |a: &i32, b| a.cmp(b)),
            vec![false, true, true, true, true]
        );
    }
}
