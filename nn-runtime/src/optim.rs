//! Optimisers: how a batch's averaged gradient changes the parameters.

use crate::float::Float;

/// Updates a network's flat parameter vector from the gradient of one batch.
///
/// The trainer calls [`init`](Optimizer::init) once with the parameter count
/// before training, then [`step`](Optimizer::step) once per batch, after the
/// whole batch's backward passes. An optimiser with state (momentum, Adam's
/// moments) allocates it in `init`; `step` must not allocate.
pub trait Optimizer<T: Float> {
    /// Prepares for training `n_params` parameters: sizes (and resets) any
    /// per-parameter state. The default does nothing.
    fn init(&mut self, n_params: usize) {
        let _ = n_params;
    }

    /// Applies one update. `grads` is the gradient of the mean loss over the
    /// batch (the caller has already divided the summed gradient by the batch
    /// size); `params` and `grads` have the same length.
    fn step(&mut self, params: &mut [T], grads: &[T]);
}

/// Plain stochastic gradient descent: `θ ← θ - lr · g`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// Learning rate (step size).
    pub lr: f64,
}

impl Sgd {
    /// SGD with learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        Sgd { lr }
    }
}

impl<T: Float> Optimizer<T> for Sgd {
    fn step(&mut self, params: &mut [T], grads: &[T]) {
        assert_eq!(
            params.len(),
            grads.len(),
            "Sgd::step: {} parameters but {} gradients",
            params.len(),
            grads.len()
        );
        let lr = T::from_f64(self.lr);
        for (p, &g) in params.iter_mut().zip(grads) {
            *p -= lr * g;
        }
    }
}

impl<T: Float, O: Optimizer<T> + ?Sized> Optimizer<T> for &mut O {
    fn init(&mut self, n_params: usize) {
        (**self).init(n_params);
    }
    fn step(&mut self, params: &mut [T], grads: &[T]) {
        (**self).step(params, grads);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_moves_against_the_gradient_by_lr_times_it() {
        // θ = [1, -2, 0.5], g = [0.5, -1, 0], lr = 0.1:
        // θ' = [1 - 0.05, -2 + 0.1, 0.5] = [0.95, -1.9, 0.5]
        let mut p = [1.0f64, -2.0, 0.5];
        let mut sgd = Sgd::new(0.1);
        Optimizer::<f64>::init(&mut sgd, 3);
        sgd.step(&mut p, &[0.5, -1.0, 0.0]);
        let want = [0.95, -1.9, 0.5];
        for (a, b) in p.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{p:?} != {want:?}");
        }
        // f32 too, through a `&mut` (the trainer borrows optimisers this way).
        let mut q = [2.0f32];
        let mut r = &mut sgd;
        Optimizer::<f32>::step(&mut r, &mut q, &[4.0]);
        assert!((q[0] - 1.6).abs() < 1e-6);
    }

    #[test]
    #[should_panic(expected = "2 parameters but 1 gradients")]
    fn sgd_rejects_mismatched_lengths() {
        Sgd::new(0.1).step(&mut [0.0f64, 0.0], &[1.0]);
    }
}
