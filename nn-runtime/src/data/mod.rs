//! Data sets: samples in memory, seeded splits, feature scaling and (with
//! the `csv` feature) tables read from CSV files.
//!
//! Positions in error messages are 1-based (line 17, field 65) as in an
//! editor; column indices passed to the API are 0-based, as in Rust.

use crate::float::Float;
use crate::rng::Rng;
use alloc::{vec, vec::Vec};

#[cfg(feature = "csv")]
mod table;
#[cfg(feature = "csv")]
pub use table::{read_csv, read_csv_path, Csv, DataError, Location, Table};

/// Samples for training or evaluation: `inputs[i]` goes with `targets[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset<I, T> {
    /// One input per sample.
    pub inputs: Vec<I>,
    /// One target per sample, in the same order.
    pub targets: Vec<T>,
}

impl<I, T> Dataset<I, T> {
    /// A data set from inputs and their targets.
    ///
    /// # Panics
    /// If the two vectors have different lengths.
    pub fn new(inputs: Vec<I>, targets: Vec<T>) -> Self {
        assert_eq!(
            inputs.len(),
            targets.len(),
            "Dataset::new: {} inputs but {} targets",
            inputs.len(),
            targets.len()
        );
        Dataset { inputs, targets }
    }

    /// A data set copied from slices (handy for literals such as XOR's four samples).
    ///
    /// # Panics
    /// If the two slices have different lengths.
    pub fn from_slices(inputs: &[I], targets: &[T]) -> Self
    where
        I: Clone,
        T: Clone,
    {
        Self::new(inputs.to_vec(), targets.to_vec())
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    /// `true` when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Sample `i`: its input and target.
    pub fn get(&self, i: usize) -> Option<(&I, &T)> {
        Some((self.inputs.get(i)?, self.targets.get(i)?))
    }

    /// All samples in order, as `(input, target)` pairs.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&I, &T)> + '_ {
        self.inputs.iter().zip(self.targets.iter())
    }

    /// The samples at `indices`, in that order (repeats allowed).
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> Self
    where
        I: Clone,
        T: Clone,
    {
        Dataset {
            inputs: indices.iter().map(|&i| self.inputs[i].clone()).collect(),
            targets: indices.iter().map(|&i| self.targets[i].clone()).collect(),
        }
    }

    /// Shuffles the samples with `seed`, then splits them: the first part
    /// holds `round(fraction · len)` samples (`0.8` for an 80/20 train /
    /// validation split), the second the rest. The same seed gives the same
    /// split.
    ///
    /// # Panics
    /// If `fraction` is not within `[0, 1]`.
    pub fn split(&self, fraction: f64, seed: u64) -> (Self, Self)
    where
        I: Clone,
        T: Clone,
    {
        assert!(
            (0.0..=1.0).contains(&fraction),
            "Dataset::split: fraction {fraction} is not within [0, 1]"
        );
        let mut order: Vec<usize> = (0..self.len()).collect();
        Rng::new(seed).shuffle(&mut order);
        let first = (libm::round(fraction * self.len() as f64) as usize).min(self.len());
        (self.subset(&order[..first]), self.subset(&order[first..]))
    }
}

impl<I, T> Dataset<I, T> {
    /// Shuffles the samples in place with `seed` (inputs and targets stay
    /// paired); the same seed gives the same order.
    pub fn shuffle(&mut self, seed: u64) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        Rng::new(seed).shuffle(&mut order);
        // Apply the permutation by cycles, swapping in place.
        let mut done = vec![false; order.len()];
        for start in 0..order.len() {
            let mut i = start;
            while !done[i] {
                done[i] = true;
                let j = order[i];
                if !done[j] {
                    self.inputs.swap(i, j);
                    self.targets.swap(i, j);
                }
                i = j;
            }
        }
    }

    /// Shuffles with `seed`, then splits into training, validation and test
    /// sets: the first `round(train · len)` samples, the next
    /// `round(validation · len)`, and the rest.
    ///
    /// ```
    /// # use nn_runtime::Dataset;
    /// let d = Dataset::new((0..10).collect(), (0..10).collect::<Vec<u8>>());
    /// let (train, val, test) = d.split3(0.6, 0.2, 1);
    /// assert_eq!((train.len(), val.len(), test.len()), (6, 2, 2));
    /// ```
    ///
    /// # Panics
    /// If a fraction is negative or they add up to more than 1.
    pub fn split3(&self, train: f64, validation: f64, seed: u64) -> (Self, Self, Self)
    where
        I: Clone,
        T: Clone,
    {
        assert!(
            train >= 0.0 && validation >= 0.0 && train + validation <= 1.0 + 1e-12,
            "Dataset::split3: fractions {train} and {validation} must be non-negative and add up to at most 1"
        );
        let mut order: Vec<usize> = (0..self.len()).collect();
        Rng::new(seed).shuffle(&mut order);
        let n = self.len();
        let a = (libm::round(train * n as f64) as usize).min(n);
        let b = (a + libm::round(validation * n as f64) as usize).min(n);
        (
            self.subset(&order[..a]),
            self.subset(&order[a..b]),
            self.subset(&order[b..]),
        )
    }

    /// Consecutive mini-batches of `size` samples (the last may be smaller),
    /// as `(inputs, targets)` slices; shuffle first for random batches.
    ///
    /// # Panics
    /// If `size` is 0.
    pub fn batches(&self, size: usize) -> impl ExactSizeIterator<Item = (&[I], &[T])> + '_ {
        assert!(size > 0, "Dataset::batches: batch size 0");
        self.inputs.chunks(size).zip(self.targets.chunks(size))
    }
}

impl<I: Clone, F: Float, const C: usize> Dataset<I, [F; C]> {
    /// One-hot (or probability) targets back to class indices: the index of
    /// each target's largest element (the first on ties).
    pub fn class_indices(&self) -> Dataset<I, usize> {
        let targets = self.targets.iter().map(|t| argmax(t)).collect();
        Dataset::new(self.inputs.clone(), targets)
    }
}

pub use crate::kernels::argmax;

impl<F: Float, const N: usize, T> Dataset<[F; N], T> {
    /// Multiplies every feature of every input by `factor` (e.g. `1.0 / 16.0`
    /// for pixel counts in `0..=16`).
    pub fn scale_features(&mut self, factor: F) {
        for x in self.inputs.iter_mut().flatten() {
            *x *= factor;
        }
    }
}

/// A per-feature affine rescaling `x' = (x - offset) · scale`, fitted on
/// one data set (the training set) and applied to others and to new inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaler<const N: usize> {
    /// Subtracted from each feature.
    pub offset: [f64; N],
    /// Then multiplied into each feature.
    pub scale: [f64; N],
}

impl<const N: usize> Scaler<N> {
    /// Maps each feature's range in `data` to `[0, 1]`; a constant feature
    /// maps to `0`.
    pub fn min_max<F: Float, T>(data: &Dataset<[F; N], T>) -> Self {
        let mut lo = [f64::INFINITY; N];
        let mut hi = [f64::NEG_INFINITY; N];
        for x in &data.inputs {
            for ((l, h), v) in lo.iter_mut().zip(&mut hi).zip(x) {
                *l = l.min(v.to_f64());
                *h = h.max(v.to_f64());
            }
        }
        let mut s = Scaler {
            offset: [0.0; N],
            scale: [1.0; N],
        };
        for i in 0..N {
            if lo[i].is_finite() {
                s.offset[i] = lo[i];
            }
            if hi[i] > lo[i] {
                s.scale[i] = 1.0 / (hi[i] - lo[i]);
            }
        }
        s
    }

    /// Gives each feature mean 0 and standard deviation 1 over `data`; a
    /// constant feature is only centred.
    pub fn standardize<F: Float, T>(data: &Dataset<[F; N], T>) -> Self {
        let n = data.len().max(1) as f64;
        let mut mean = [0.0; N];
        for x in &data.inputs {
            for (m, v) in mean.iter_mut().zip(x) {
                *m += v.to_f64() / n;
            }
        }
        let mut var = [0.0; N];
        for x in &data.inputs {
            for ((s, m), v) in var.iter_mut().zip(&mean).zip(x) {
                let d = v.to_f64() - m;
                *s += d * d / n;
            }
        }
        let mut scale = [1.0; N];
        for (s, v) in scale.iter_mut().zip(var) {
            if v > 0.0 {
                *s = 1.0 / v.sqrt();
            }
        }
        Scaler {
            offset: mean,
            scale,
        }
    }

    /// Rescales one input in place.
    pub fn transform<F: Float>(&self, x: &mut [F; N]) {
        for ((v, o), s) in x.iter_mut().zip(&self.offset).zip(&self.scale) {
            *v = F::from_f64((v.to_f64() - o) * s);
        }
    }

    /// Rescales every input of `data` in place.
    pub fn apply<F: Float, T>(&self, data: &mut Dataset<[F; N], T>) {
        for x in &mut data.inputs {
            self.transform(x);
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_split3_and_batches() {
        let d = Dataset::new(
            (0..10).collect::<Vec<u32>>(),
            (0..10).map(|i| i * 10).collect(),
        );
        let mut s = d.clone();
        s.shuffle(3);
        let mut s2 = d.clone();
        s2.shuffle(3);
        assert_eq!(s, s2);
        assert_ne!(s, d);
        for (x, y) in s.iter() {
            assert_eq!(*y, x * 10);
        }
        let mut sorted = s.inputs.clone();
        sorted.sort();
        assert_eq!(sorted, d.inputs);

        let (a, b, c) = d.split3(0.7, 0.2, 5);
        assert_eq!((a.len(), b.len(), c.len()), (7, 2, 1));
        let mut all: Vec<u32> = a
            .inputs
            .iter()
            .chain(&b.inputs)
            .chain(&c.inputs)
            .copied()
            .collect();
        all.sort();
        assert_eq!(all, d.inputs);
        assert_eq!(d.split3(0.7, 0.2, 5), (a, b, c));

        let sizes: Vec<usize> = d
            .batches(4)
            .map(|(x, y)| {
                assert_eq!(x.len(), y.len());
                x.len()
            })
            .collect();
        assert_eq!(sizes, [4, 4, 2]);
        assert_eq!(d.batches(4).nth(1).unwrap().0, [4, 5, 6, 7]);
    }

    #[test]
    fn split_is_seeded_and_a_partition() {
        let d = Dataset::new(
            (0..10).collect::<Vec<u32>>(),
            (0..10).map(|i| i * 10).collect(),
        );
        let (a, b) = d.split(0.8, 7);
        let (a2, b2) = d.split(0.8, 7);
        assert_eq!((&a, &b), (&a2, &b2));
        assert_eq!((a.len(), b.len()), (8, 2));
        let (a3, _) = d.split(0.8, 8);
        assert_ne!(a, a3);
        // Pairs stay together; every sample lands in exactly one part.
        let mut all: Vec<u32> = a.inputs.iter().chain(&b.inputs).copied().collect();
        for (x, y) in a.iter().chain(b.iter()) {
            assert_eq!(*y, x * 10);
        }
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(d.split(1.0, 1).1.len(), 0);
        assert_eq!(d.split(0.0, 1).0.len(), 0);
    }

    #[test]
    fn dataset_basics() {
        let d = Dataset::from_slices(&[[0.0f32, 1.0], [2.0, 3.0]], &[1usize, 0]);
        assert_eq!(d.len(), 2);
        assert!(!d.is_empty());
        assert_eq!(d.get(1), Some((&[2.0, 3.0], &0)));
        assert_eq!(d.get(2), None);
        let mut d = d;
        d.scale_features(0.5);
        assert_eq!(d.inputs, [[0.0, 0.5], [1.0, 1.5]]);
    }

    #[test]
    #[should_panic(expected = "2 inputs but 1 targets")]
    fn new_rejects_unequal_lengths() {
        Dataset::new(vec![1, 2], vec![3]);
    }

    #[test]
    fn scalers_fit_on_one_set_and_apply_to_another() {
        let mut d = Dataset::new(vec![[0.0f64, 5.0], [10.0, 5.0], [5.0, 5.0]], vec![0, 1, 2]);
        let mm = Scaler::min_max(&d);
        let mut x = [20.0, 7.0];
        mm.transform(&mut x);
        assert_eq!(x, [2.0, 2.0]);
        let st = Scaler::standardize(&d);
        st.apply(&mut d);
        let mean: f64 = d.inputs.iter().map(|x| x[0]).sum::<f64>() / 3.0;
        let var: f64 = d.inputs.iter().map(|x| x[0] * x[0]).sum::<f64>() / 3.0;
        assert!(mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12);
        assert!(d.inputs.iter().all(|x| x[1] == 0.0));
    }
}
