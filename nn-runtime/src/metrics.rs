//! Metrics of a trained network on a data set: accuracy, confusion matrix,
//! mean squared error.

use crate::data::{argmax, Dataset};
use crate::float::Float;
use crate::network::Network;
use alloc::{string::ToString, vec, vec::Vec};
use core::fmt;

/// Fraction of samples `Network::is_correct` accepts, in `[0, 1]` (NaN for
/// an empty set).
pub fn accuracy<N: Network>(net: &N, data: &Dataset<N::Input, N::Target>) -> f64 {
    let correct = data
        .iter()
        .filter(|(x, y)| N::is_correct(&net.predict(x), y))
        .count();
    correct as f64 / data.len() as f64
}

/// Mean over samples and output elements of `(output - target)²`, for
/// networks whose output and target are vectors of the same length (NaN for
/// an empty set).
///
/// # Panics
/// If an output and its target differ in length.
pub fn mean_squared_error<N>(net: &N, data: &Dataset<N::Input, N::Target>) -> f64
where
    N: Network,
    N::Output: AsRef<[N::Scalar]>,
    N::Target: AsRef<[N::Scalar]>,
{
    let mut sum = 0.0;
    let mut count = 0usize;
    for (x, y) in data.iter() {
        let out = net.predict(x);
        sum += squared_error(out.as_ref(), y.as_ref());
        count += y.as_ref().len();
    }
    sum / count as f64
}

/// `Σ (a - b)²` in `f64`.
///
/// # Panics
/// If the slices differ in length.
pub fn squared_error<F: Float>(a: &[F], b: &[F]) -> f64 {
    assert_eq!(a.len(), b.len(), "squared_error: lengths differ");
    a.iter()
        .zip(b)
        .map(|(&a, &b)| {
            let d = a.to_f64() - b.to_f64();
            d * d
        })
        .sum()
}

/// Counts of (actual class, predicted class) pairs: row = actual, column =
/// predicted, as scikit-learn's `confusion_matrix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfusionMatrix {
    classes: usize,
    counts: Vec<usize>,
}

impl ConfusionMatrix {
    /// An empty matrix for `classes` classes.
    pub fn new(classes: usize) -> Self {
        ConfusionMatrix {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// The matrix of a classifier (class-index target, vector output whose
    /// argmax is the predicted class) on `data`.
    ///
    /// # Panics
    /// If a target or prediction is not below `classes`.
    pub fn of<N>(net: &N, data: &Dataset<N::Input, usize>, classes: usize) -> Self
    where
        N: Network<Target = usize>,
        N::Output: AsRef<[N::Scalar]>,
    {
        let mut m = ConfusionMatrix::new(classes);
        for (x, &y) in data.iter() {
            m.add(y, argmax(net.predict(x).as_ref()));
        }
        m
    }

    /// Counts one sample.
    ///
    /// # Panics
    /// If a class is not below the number of classes.
    pub fn add(&mut self, actual: usize, predicted: usize) {
        assert!(
            actual < self.classes && predicted < self.classes,
            "ConfusionMatrix::add({actual}, {predicted}) with {} classes",
            self.classes
        );
        self.counts[actual * self.classes + predicted] += 1;
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// How many samples of class `actual` were predicted as `predicted`.
    pub fn count(&self, actual: usize, predicted: usize) -> usize {
        self.counts[actual * self.classes + predicted]
    }

    /// Samples counted.
    pub fn total(&self) -> usize {
        self.counts.iter().sum()
    }

    /// Fraction on the diagonal (NaN when empty).
    pub fn accuracy(&self) -> f64 {
        let diag: usize = (0..self.classes).map(|c| self.count(c, c)).sum();
        diag as f64 / self.total() as f64
    }

    /// Of the samples predicted as `class`, the fraction that are (NaN if none).
    pub fn precision(&self, class: usize) -> f64 {
        let predicted: usize = (0..self.classes).map(|a| self.count(a, class)).sum();
        self.count(class, class) as f64 / predicted as f64
    }

    /// Of the samples of `class`, the fraction predicted as it (NaN if none).
    pub fn recall(&self, class: usize) -> f64 {
        let actual: usize = (0..self.classes).map(|p| self.count(class, p)).sum();
        self.count(class, class) as f64 / actual as f64
    }
}

impl fmt::Display for ConfusionMatrix {
    /// A table: one row per actual class, one column per predicted class.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self
            .counts
            .iter()
            .max()
            .map_or(1, |m| m.to_string().len())
            .max(self.classes.to_string().len());
        let lw = w.max(3);
        write!(f, "{:>lw$} |", "a\\p")?;
        for c in 0..self.classes {
            write!(f, " {c:>w$}")?;
        }
        writeln!(f)?;
        for a in 0..self.classes {
            write!(f, "{a:>lw$} |")?;
            for p in 0..self.classes {
                write!(f, " {:>w$}", self.count(a, p))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testnet::Linear;

    #[test]
    fn confusion_matrix_counts_and_rates() {
        let mut m = ConfusionMatrix::new(3);
        for (a, p) in [(0, 0), (0, 0), (0, 1), (1, 1), (2, 1), (2, 2)] {
            m.add(a, p);
        }
        assert_eq!(m.total(), 6);
        assert_eq!((m.count(0, 0), m.count(0, 1), m.count(2, 1)), (2, 1, 1));
        // diagonal 2 + 1 + 1 of 6
        assert!((m.accuracy() - 4.0 / 6.0).abs() < 1e-15);
        // predicted 1: (0,1), (1,1), (2,1): one of three correct
        assert!((m.precision(1) - 1.0 / 3.0).abs() < 1e-15);
        // actual 0: 2 of 3 predicted 0
        assert!((m.recall(0) - 2.0 / 3.0).abs() < 1e-15);
        assert_eq!(
            m.to_string(),
            "a\\p | 0 1 2\n  0 | 2 1 0\n  1 | 0 1 0\n  2 | 0 1 1\n"
        );
    }

    #[test]
    fn mse_and_accuracy_of_a_network() {
        // out = x0 + 2 x1 + 1
        let net = Linear::with([1.0, 2.0], 1.0);
        let data = Dataset::new(vec![[0.0, 0.0], [1.0, 1.0]], vec![[1.0], [3.0]]);
        // errors 0 and 4 - 3 = 1: mean of squares 0.5
        assert_eq!(mean_squared_error(&net, &data), 0.5);
        // Linear accepts |out - y| < 0.1: one of two
        assert_eq!(accuracy(&net, &data), 0.5);
    }
}
