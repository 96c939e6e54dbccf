//! Pareto fronts: the points no other point beats in every objective at once.

/// Whether an objective is to be made large or small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    Max,
    Min,
}

/// `a` dominates `b`: at least as good in every objective and better in one.
fn dominates(a: &[f64], b: &[f64], goals: &[Goal]) -> bool {
    let mut better = false;
    for ((x, y), g) in a.iter().zip(b).zip(goals) {
        let (x, y) = match g {
            Goal::Max => (*x, *y),
            Goal::Min => (-*x, -*y),
        };
        if x < y {
            return false;
        }
        better |= x > y;
    }
    better
}

/// Indices of the rows on the front (no row dominates them), in input order. Rows with a
/// non-finite value are never on it. O(n²): sweeps have hundreds of points, not millions.
pub fn front(rows: &[Vec<f64>], goals: &[Goal]) -> Vec<usize> {
    let finite = |r: &Vec<f64>| r.len() == goals.len() && r.iter().all(|v| v.is_finite());
    (0..rows.len())
        .filter(|&i| finite(&rows[i]))
        .filter(|&i| {
            !rows
                .iter()
                .any(|other| finite(other) && dominates(other, &rows[i], goals))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn two_objectives() {
        // (accuracy ↑, block RAMs ↓)
        let rows = vec![
            vec![0.90, 100.0],
            vec![0.85, 50.0],
            vec![0.80, 60.0], // beaten by the second
            vec![0.95, 200.0],
            vec![0.95, 150.0], // beats the fourth
            vec![f64::NAN, 1.0],
        ];
        assert_eq!(front(&rows, &[Goal::Max, Goal::Min]), vec![0, 1, 4]);
    }

    #[test]
    fn equal_points_are_both_on_the_front() {
        let rows = vec![vec![1.0, 2.0], vec![1.0, 2.0]];
        assert_eq!(front(&rows, &[Goal::Max, Goal::Max]), vec![0, 1]);
    }

    proptest! {
        /// Nothing on the front is dominated, and everything off it is dominated by a point
        /// on it.
        #[test]
        fn front_is_exactly_the_undominated(rows in proptest::collection::vec(
            proptest::collection::vec(0u8..6, 3), 0..40)) {
            let rows: Vec<Vec<f64>> = rows.iter().map(|r| r.iter().map(|&v| v as f64).collect()).collect();
            let goals = [Goal::Max, Goal::Min, Goal::Max];
            let f = front(&rows, &goals);
            for &i in &f {
                prop_assert!(!rows.iter().any(|o| dominates(o, &rows[i], &goals)));
            }
            for i in (0..rows.len()).filter(|i| !f.contains(i)) {
                prop_assert!(f.iter().any(|&j| dominates(&rows[j], &rows[i], &goals)));
            }
        }
    }
}
