//! Optimisers: how a batch's averaged gradient changes the parameters, and
//! the learning-rate schedules and gradient clipping around them.
//!
//! Every optimiser sizes its state (momentum buffers, moment estimates) once,
//! in [`Optimizer::init`]; [`Optimizer::step`] allocates nothing. The update
//! rules follow PyTorch's `torch.optim` (same defaults, same placement of
//! `ε` and of weight decay), so hyper-parameters carry over.

use crate::float::Float;
use std::fmt;

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

    /// The current learning rate, if the optimiser has one (schedules need it).
    fn learning_rate(&self) -> Option<f64> {
        None
    }

    /// Sets the learning rate used by the next [`step`](Optimizer::step)
    /// (schedules call this before each step). The default ignores it.
    fn set_learning_rate(&mut self, lr: f64) {
        let _ = lr;
    }

    /// A short name for checkpoints and reports, e.g. `"Adam"`.
    fn name(&self) -> &'static str {
        "optimizer"
    }

    /// Per-parameter state buffers by name (`"m"`, `"v"`, `"momentum"`), each
    /// as long as the parameter vector; checkpoints save them (converted to
    /// the network's scalar type). The optimisers here keep their state in
    /// `f64` whatever `T` is. Empty for stateless optimisers.
    fn state(&self) -> Vec<(&'static str, &[f64])> {
        Vec::new()
    }

    /// The same buffers as [`state`](Optimizer::state), mutably, in the same
    /// order (checkpoints restore them).
    fn state_mut(&mut self) -> Vec<(&'static str, &mut [f64])> {
        Vec::new()
    }

    /// Number of steps taken since `init` (Adam's bias correction uses it).
    fn steps(&self) -> u64 {
        0
    }

    /// Sets the step count (when restoring a checkpoint).
    fn set_steps(&mut self, steps: u64) {
        let _ = steps;
    }
}

fn check_lengths<T>(who: &str, params: &[T], grads: &[T], state: usize) {
    assert_eq!(
        params.len(),
        grads.len(),
        "{who}::step: {} parameters but {} gradients",
        params.len(),
        grads.len()
    );
    assert_eq!(
        params.len(),
        state,
        "{who}::step: {} parameters but state for {state} (call `init` first)",
        params.len()
    );
}

/// Stochastic gradient descent, optionally with momentum (heavy ball or
/// Nesterov) and L2 weight decay, as `torch.optim.SGD` (no dampening):
///
/// ```text
/// g ← g + wd·θ
/// b ← μ·b + g                    (b starts at 0, so b₁ = g)
/// θ ← θ - lr·b                   (momentum)
/// θ ← θ - lr·(g + μ·b)           (Nesterov)
/// θ ← θ - lr·g                   (μ = 0)
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Sgd {
    /// Learning rate (step size).
    pub lr: f64,
    /// Momentum factor `μ` (0: plain SGD).
    pub momentum: f64,
    /// Nesterov momentum instead of heavy ball.
    pub nesterov: bool,
    /// L2 penalty `wd` added to the gradient as `wd·θ`.
    pub weight_decay: f64,
    buf: Vec<f64>,
    t: u64,
}

impl Sgd {
    /// SGD with learning rate `lr`, no momentum, no weight decay.
    pub fn new(lr: f64) -> Self {
        Sgd {
            lr,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            buf: Vec::new(),
            t: 0,
        }
    }

    /// With momentum factor `momentum` (e.g. 0.9).
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// With Nesterov momentum (needs a non-zero momentum to matter).
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// With L2 weight decay `wd` (added to the gradient).
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }
}

// The state is kept in `f64` whatever `T` is, so one optimiser value serves
// `f32` and `f64` networks.
impl<T: Float> Optimizer<T> for Sgd {
    fn init(&mut self, n_params: usize) {
        self.buf.clear();
        if self.momentum != 0.0 {
            self.buf.resize(n_params, 0.0);
        }
        self.t = 0;
    }

    fn step(&mut self, params: &mut [T], grads: &[T]) {
        assert_eq!(
            params.len(),
            grads.len(),
            "Sgd::step: {} parameters but {} gradients",
            params.len(),
            grads.len()
        );
        self.t += 1;
        let (lr, wd, mu) = (self.lr, self.weight_decay, self.momentum);
        if mu == 0.0 && wd == 0.0 {
            // Plain SGD in `T`, exactly `θ -= lr·g` as written by hand.
            let lr = T::from_f64(lr);
            for (p, &g) in params.iter_mut().zip(grads) {
                *p -= lr * g;
            }
            return;
        }
        if mu == 0.0 {
            for (p, &g) in params.iter_mut().zip(grads) {
                let pv = p.to_f64();
                let g = g.to_f64() + wd * pv;
                *p = T::from_f64(pv - lr * g);
            }
            return;
        }
        check_lengths("Sgd", params, grads, self.buf.len());
        for ((p, &g), b) in params.iter_mut().zip(grads).zip(&mut self.buf) {
            let pv = p.to_f64();
            let g = g.to_f64() + wd * pv;
            *b = mu * *b + g;
            let d = if self.nesterov { g + mu * *b } else { *b };
            *p = T::from_f64(pv - lr * d);
        }
    }

    fn learning_rate(&self) -> Option<f64> {
        Some(self.lr)
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn name(&self) -> &'static str {
        "Sgd"
    }
    fn steps(&self) -> u64 {
        self.t
    }
    fn set_steps(&mut self, steps: u64) {
        self.t = steps;
    }
}

/// Adam (Kingma & Ba), as `torch.optim.Adam`, with optional L2 weight decay
/// added to the gradient; [`AdamW`] decouples it instead:
///
/// ```text
/// g ← g + wd·θ
/// m ← β₁·m + (1-β₁)·g
/// v ← β₂·v + (1-β₂)·g²
/// θ ← θ - lr · (m / (1-β₁ᵗ)) / (√(v / (1-β₂ᵗ)) + ε)
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Adam {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay of the first moment (default 0.9).
    pub beta1: f64,
    /// Decay of the second moment (default 0.999).
    pub beta2: f64,
    /// Added to the root of the second moment (default 1e-8).
    pub eps: f64,
    /// L2 penalty added to the gradient (default 0).
    pub weight_decay: f64,
    decoupled: bool,
    m: Vec<f64>,
    v: Vec<f64>,
    t: u64,
}

impl Adam {
    /// Adam with learning rate `lr` and PyTorch's defaults otherwise.
    pub fn new(lr: f64) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            m: Vec::new(),
            v: Vec::new(),
            t: 0,
        }
    }

    /// With moment decays `beta1`, `beta2`.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }

    /// With `eps`.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// With weight decay `wd` (L2, coupled; see [`AdamW`] for decoupled).
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }

    fn update<T: Float>(&mut self, params: &mut [T], grads: &[T]) {
        check_lengths(self.label(), params, grads, self.m.len());
        self.t += 1;
        let t = self.t.min(i32::MAX as u64) as i32;
        let c1 = 1.0 - self.beta1.powi(t);
        let c2 = 1.0 - self.beta2.powi(t);
        let (lr, b1, b2, eps, wd) = (self.lr, self.beta1, self.beta2, self.eps, self.weight_decay);
        for (((p, &g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            let mut pv = p.to_f64();
            let mut g = g.to_f64();
            if self.decoupled {
                pv -= lr * wd * pv;
            } else {
                g += wd * pv;
            }
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            pv -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
            *p = T::from_f64(pv);
        }
    }

    fn label(&self) -> &'static str {
        if self.decoupled {
            "AdamW"
        } else {
            "Adam"
        }
    }
}

macro_rules! adam_like_impl {
    ($ty:ty, $($inner:tt)*) => {
        impl<T: Float> Optimizer<T> for $ty {
            fn init(&mut self, n_params: usize) {
                let a = &mut (*self)$($inner)*;
                a.m.clear();
                a.m.resize(n_params, 0.0);
                a.v.clear();
                a.v.resize(n_params, 0.0);
                a.t = 0;
            }
            fn step(&mut self, params: &mut [T], grads: &[T]) {
                (*self)$($inner)*.update(params, grads);
            }
            fn learning_rate(&self) -> Option<f64> {
                Some((*self)$($inner)*.lr)
            }
            fn set_learning_rate(&mut self, lr: f64) {
                (*self)$($inner)*.lr = lr;
            }
            fn name(&self) -> &'static str {
                (*self)$($inner)*.label()
            }
            fn state(&self) -> Vec<(&'static str, &[f64])> {
                let a = &(*self)$($inner)*;
                vec![("m", &a.m[..]), ("v", &a.v[..])]
            }
            fn state_mut(&mut self) -> Vec<(&'static str, &mut [f64])> {
                let a = &mut (*self)$($inner)*;
                vec![("m", &mut a.m[..]), ("v", &mut a.v[..])]
            }
            fn steps(&self) -> u64 {
                (*self)$($inner)*.t
            }
            fn set_steps(&mut self, steps: u64) {
                (*self)$($inner)*.t = steps;
            }
        }
    };
}

adam_like_impl!(Adam,);

/// AdamW (Loshchilov & Hutter), as `torch.optim.AdamW`: Adam with weight
/// decay decoupled from the gradient, applied first as `θ ← θ - lr·wd·θ`
/// (default `wd` 0.01).
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW(Adam);

impl AdamW {
    /// AdamW with learning rate `lr`, decoupled weight decay `weight_decay`,
    /// and Adam's defaults otherwise.
    pub fn new(lr: f64, weight_decay: f64) -> Self {
        let mut a = Adam::new(lr).weight_decay(weight_decay);
        a.decoupled = true;
        AdamW(a)
    }

    /// With moment decays `beta1`, `beta2`.
    pub fn betas(self, beta1: f64, beta2: f64) -> Self {
        AdamW(Adam {
            decoupled: true,
            ..self.0.betas(beta1, beta2)
        })
    }

    /// With `eps`.
    pub fn eps(self, eps: f64) -> Self {
        AdamW(self.0.eps(eps))
    }

    /// The Adam settings underneath (learning rate, betas, eps, weight decay).
    pub fn settings(&self) -> &Adam {
        &self.0
    }
}

adam_like_impl!(AdamW, .0);

/// RMSProp (Hinton), as `torch.optim.RMSprop` (not centred):
///
/// ```text
/// g ← g + wd·θ
/// v ← α·v + (1-α)·g²
/// b ← μ·b + g / (√v + ε);  θ ← θ - lr·b     (momentum μ > 0)
/// θ ← θ - lr · g / (√v + ε)                 (μ = 0)
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RmsProp {
    /// Learning rate (PyTorch's default is 1e-2).
    pub lr: f64,
    /// Smoothing constant of the squared-gradient average (default 0.99).
    pub alpha: f64,
    /// Added to the root (default 1e-8).
    pub eps: f64,
    /// Momentum factor (default 0).
    pub momentum: f64,
    /// L2 penalty added to the gradient (default 0).
    pub weight_decay: f64,
    v: Vec<f64>,
    buf: Vec<f64>,
    t: u64,
}

impl RmsProp {
    /// RMSProp with learning rate `lr` and PyTorch's defaults otherwise.
    pub fn new(lr: f64) -> Self {
        RmsProp {
            lr,
            alpha: 0.99,
            eps: 1e-8,
            momentum: 0.0,
            weight_decay: 0.0,
            v: Vec::new(),
            buf: Vec::new(),
            t: 0,
        }
    }

    /// With smoothing constant `alpha`.
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// With `eps`.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// With momentum factor `momentum`.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// With L2 weight decay `wd`.
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }
}

impl<T: Float> Optimizer<T> for RmsProp {
    fn init(&mut self, n_params: usize) {
        self.v.clear();
        self.v.resize(n_params, 0.0);
        self.buf.clear();
        self.buf.resize(n_params, 0.0);
        self.t = 0;
    }

    fn step(&mut self, params: &mut [T], grads: &[T]) {
        check_lengths("RmsProp", params, grads, self.v.len());
        self.t += 1;
        let (lr, a, eps, mu, wd) = (
            self.lr,
            self.alpha,
            self.eps,
            self.momentum,
            self.weight_decay,
        );
        for (((p, &g), v), b) in params
            .iter_mut()
            .zip(grads)
            .zip(&mut self.v)
            .zip(&mut self.buf)
        {
            let pv = p.to_f64();
            let g = g.to_f64() + wd * pv;
            *v = a * *v + (1.0 - a) * g * g;
            let d = g / (v.sqrt() + eps);
            let d = if mu > 0.0 {
                *b = mu * *b + d;
                *b
            } else {
                d
            };
            *p = T::from_f64(pv - lr * d);
        }
    }

    fn learning_rate(&self) -> Option<f64> {
        Some(self.lr)
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn name(&self) -> &'static str {
        "RmsProp"
    }
    fn state(&self) -> Vec<(&'static str, &[f64])> {
        vec![("v", &self.v[..]), ("momentum", &self.buf[..])]
    }
    fn state_mut(&mut self) -> Vec<(&'static str, &mut [f64])> {
        vec![("v", &mut self.v[..]), ("momentum", &mut self.buf[..])]
    }
    fn steps(&self) -> u64 {
        self.t
    }
    fn set_steps(&mut self, steps: u64) {
        self.t = steps;
    }
}

impl<T: Float, O: Optimizer<T> + ?Sized> Optimizer<T> for &mut O {
    fn init(&mut self, n_params: usize) {
        (**self).init(n_params);
    }
    fn step(&mut self, params: &mut [T], grads: &[T]) {
        (**self).step(params, grads);
    }
    fn learning_rate(&self) -> Option<f64> {
        (**self).learning_rate()
    }
    fn set_learning_rate(&mut self, lr: f64) {
        (**self).set_learning_rate(lr);
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn state(&self) -> Vec<(&'static str, &[f64])> {
        (**self).state()
    }
    fn state_mut(&mut self) -> Vec<(&'static str, &mut [f64])> {
        (**self).state_mut()
    }
    fn steps(&self) -> u64 {
        (**self).steps()
    }
    fn set_steps(&mut self, steps: u64) {
        (**self).set_steps(steps);
    }
}

/// A learning-rate schedule: the factor the base learning rate is multiplied
/// by before optimiser step `t` (0-based, counted over the whole fit).
///
/// The trainer applies it when given with [`Trainer::schedule`](crate::Trainer::schedule);
/// by hand: `opt.set_learning_rate(base * schedule.factor(t))`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// Factor 1 throughout.
    Constant,
    /// `gamma^⌊t / every⌋`: multiplied by `gamma` every `every` steps.
    Step {
        /// Steps between decays (at least 1).
        every: usize,
        /// Multiplier per decay.
        gamma: f64,
    },
    /// `gamma^t`.
    Exponential {
        /// Multiplier per step.
        gamma: f64,
    },
    /// Linear warm-up from `1/warmup` to 1 over the first `warmup` steps,
    /// then a half cosine from 1 down to `min_factor` at step `total`, and
    /// `min_factor` after it.
    Cosine {
        /// Warm-up steps (0 for none).
        warmup: usize,
        /// Step at which the cosine reaches `min_factor` (warm-up included).
        total: usize,
        /// Final factor (0 decays to nothing).
        min_factor: f64,
    },
}

impl Schedule {
    /// `Schedule::Cosine` with warm-up, decaying to zero.
    pub fn cosine(warmup: usize, total: usize) -> Self {
        Schedule::Cosine {
            warmup,
            total,
            min_factor: 0.0,
        }
    }

    /// The factor for step `t` (0-based).
    pub fn factor(&self, t: usize) -> f64 {
        match *self {
            Schedule::Constant => 1.0,
            Schedule::Step { every, gamma } => gamma.powi((t / every.max(1)) as i32),
            Schedule::Exponential { gamma } => gamma.powf(t as f64),
            Schedule::Cosine {
                warmup,
                total,
                min_factor,
            } => {
                if t < warmup {
                    (t + 1) as f64 / warmup as f64
                } else if t >= total {
                    min_factor
                } else {
                    let span = (total - warmup).max(1) as f64;
                    let progress = (t - warmup) as f64 / span;
                    min_factor
                        + (1.0 - min_factor)
                            * 0.5
                            * (1.0 + (core::f64::consts::PI * progress).cos())
                }
            }
        }
    }
}

/// Gradient clipping, applied to the batch's mean gradient before the step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Clip {
    /// Each element clamped into `[-c, c]`.
    Value(f64),
    /// The whole gradient scaled by `c / ‖g‖₂` when its global L2 norm
    /// `‖g‖₂` exceeds `c` (as `torch.nn.utils.clip_grad_norm_`).
    Norm(f64),
}

impl Clip {
    /// Clips `grads` in place; returns the global L2 norm before clipping.
    /// Allocates nothing.
    pub fn apply<T: Float>(&self, grads: &mut [T]) -> f64 {
        let norm = grads
            .iter()
            .map(|g| {
                let g = g.to_f64();
                g * g
            })
            .sum::<f64>()
            .sqrt();
        match *self {
            Clip::Value(c) => {
                let (lo, hi) = (T::from_f64(-c), T::from_f64(c));
                for g in grads.iter_mut() {
                    *g = g.max(lo).min(hi);
                }
            }
            Clip::Norm(c) => {
                if norm > c {
                    let s = T::from_f64(c / norm);
                    for g in grads.iter_mut() {
                        *g *= s;
                    }
                }
            }
        }
        norm
    }
}

impl fmt::Display for Clip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Clip::Value(c) => write!(f, "clip each gradient element to ±{c}"),
            Clip::Norm(c) => write!(f, "clip the gradient's global norm to {c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < tol, "{got:?} != {want:?}");
        }
    }

    /// Runs `opt` from `p0` for one step per gradient in `gs`, returning θ after each step.
    fn run<O: Optimizer<f64>>(mut opt: O, p0: &[f64], gs: &[&[f64]]) -> Vec<Vec<f64>> {
        let mut p = p0.to_vec();
        opt.init(p.len());
        gs.iter()
            .map(|g| {
                opt.step(&mut p, g);
                p.clone()
            })
            .collect()
    }

    #[test]
    fn sgd_moves_against_the_gradient_by_lr_times_it() {
        // θ = [1, -2, 0.5], g = [0.5, -1, 0], lr = 0.1:
        // θ' = [1 - 0.05, -2 + 0.1, 0.5] = [0.95, -1.9, 0.5]
        let mut p = [1.0f64, -2.0, 0.5];
        let mut sgd = Sgd::new(0.1);
        Optimizer::<f64>::init(&mut sgd, 3);
        sgd.step(&mut p, &[0.5, -1.0, 0.0]);
        close(&p, &[0.95, -1.9, 0.5], 1e-15);
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

    #[test]
    fn sgd_momentum_by_hand() {
        // lr = 0.1, μ = 0.9, θ₀ = 1, g = 1, 2, 3 (constant gradients given).
        // b₁ = 1,          θ₁ = 1 - 0.1·1 = 0.9
        // b₂ = 0.9 + 2 = 2.9,  θ₂ = 0.9 - 0.29 = 0.61
        // b₃ = 2.61 + 3 = 5.61, θ₃ = 0.61 - 0.561 = 0.049
        let got = run(
            Sgd::new(0.1).momentum(0.9),
            &[1.0],
            &[&[1.0], &[2.0], &[3.0]],
        );
        close(&got.concat(), &[0.9, 0.61, 0.049], 1e-12);
    }

    #[test]
    fn sgd_nesterov_by_hand() {
        // lr = 0.1, μ = 0.9, θ₀ = 1, g = 1, 2:
        // b₁ = 1,   d₁ = g + μ b₁ = 1.9,  θ₁ = 1 - 0.19 = 0.81
        // b₂ = 2.9, d₂ = 2 + 2.61 = 4.61, θ₂ = 0.81 - 0.461 = 0.349
        let got = run(
            Sgd::new(0.1).momentum(0.9).nesterov(true),
            &[1.0],
            &[&[1.0], &[2.0]],
        );
        close(&got.concat(), &[0.81, 0.349], 1e-12);
    }

    #[test]
    fn sgd_weight_decay_by_hand() {
        // lr = 0.1, wd = 0.5, θ₀ = 2, g = 1: g' = 1 + 0.5·2 = 2, θ₁ = 2 - 0.2 = 1.8
        // g' = 1 + 0.9 = 1.9, θ₂ = 1.8 - 0.19 = 1.61
        let got = run(Sgd::new(0.1).weight_decay(0.5), &[2.0], &[&[1.0], &[1.0]]);
        close(&got.concat(), &[1.8, 1.61], 1e-12);
    }

    #[test]
    fn adam_by_hand() {
        // lr = 0.1, β₁ = 0.9, β₂ = 0.999, ε = 1e-8, θ₀ = 1.
        // Step 1, g = 2: m = 0.2, v = 0.004; m̂ = 0.2/0.1 = 2, v̂ = 0.004/0.001 = 4,
        //   θ₁ = 1 - 0.1 · 2/(2 + 1e-8) = 0.9 + 5e-10 (≈ 0.9000000005)
        // Step 2, g = -1: m = 0.18 - 0.1 = 0.08, v = 0.003996 + 0.001 = 0.004996;
        //   m̂ = 0.08/0.19 = 0.42105263157894735, v̂ = 0.004996/0.001999 = 2.4992496248124063,
        //   √v̂ = 1.58090152...; θ₂ = θ₁ - 0.1 · 0.421052632/1.580901520 = θ₁ - 0.0266337038
        //   = 0.8733662967
        let got = run(Adam::new(0.1), &[1.0], &[&[2.0], &[-1.0]]);
        let th1 = 1.0 - 0.1 * 2.0 / (2.0 + 1e-8);
        close(&got[0], &[th1], 1e-15);
        close(&got[0], &[0.9000000005], 1e-12);
        let m_hat: f64 = 0.08 / 0.19;
        let v_hat: f64 = 0.004996 / 0.001999;
        close(&got[1], &[th1 - 0.1 * m_hat / (v_hat.sqrt() + 1e-8)], 1e-12);
        close(&got[1], &[0.8733662967], 1e-10);
    }

    #[test]
    fn adam_weight_decay_is_coupled_and_adamw_decoupled() {
        // Adam, lr = 0.1, wd = 0.5, θ₀ = 2, g = 0: g' = 0 + 0.5·2 = 1;
        //   m̂ = 1, v̂ = 1, θ₁ = 2 - 0.1 · 1/(1 + 1e-8) ≈ 1.9
        let got = run(Adam::new(0.1).weight_decay(0.5), &[2.0], &[&[0.0]]);
        close(&got[0], &[2.0 - 0.1 / (1.0 + 1e-8)], 1e-15);
        // AdamW, lr = 0.1, wd = 0.5, θ₀ = 2, g = 4:
        //   decay first: θ = 2 - 0.1·0.5·2 = 1.9; m̂ = 4, v̂ = 16,
        //   θ₁ = 1.9 - 0.1 · 4/(4 + 1e-8) ≈ 1.8
        // Step 2, g = 4 again: θ = 1.8 - 0.1·0.5·1.8 = 1.71; m̂ = 4, v̂ = 16 (constant g),
        //   θ₂ ≈ 1.71 - 0.1 = 1.61
        let got = run(AdamW::new(0.1, 0.5), &[2.0], &[&[4.0], &[4.0]]);
        close(&got.concat(), &[1.8, 1.61], 1e-8);
        let step = 0.1 * 4.0 / (4.0 + 1e-8);
        close(&got[0], &[1.9 - step], 1e-15);
        close(&got[1], &[(1.9 - step) * 0.95 - step], 1e-15);
    }

    #[test]
    fn rmsprop_by_hand() {
        // lr = 0.01, α = 0.99, ε = 1e-8, θ₀ = 1.
        // Step 1, g = 1: v = 0.01, θ₁ = 1 - 0.01 · 1/(0.1 + 1e-8) = 0.90000001
        // Step 2, g = 1: v = 0.0099 + 0.01 = 0.0199, √v = 0.14106735979665885,
        //   θ₂ = θ₁ - 0.01/0.141067360 = 0.90000001 - 0.0708881155 = 0.8291118945
        let got = run(RmsProp::new(0.01), &[1.0], &[&[1.0], &[1.0]]);
        let th1 = 1.0 - 0.01 / (0.1 + 1e-8);
        close(&got[0], &[th1], 1e-15);
        close(&got[1], &[th1 - 0.01 / (0.0199f64.sqrt() + 1e-8)], 1e-15);
        close(&got[1], &[0.8291118945], 1e-10);
        // With momentum 0.5 and weight decay 1, θ₀ = 1, g = 0:
        // g' = 1, v = 0.01, d = 1/0.1 = 10, b = 10, θ₁ = 1 - 0.1 = 0.9
        // g' = 0.9, v = 0.0099 + 0.0081 = 0.018, d = 0.9/√0.018 = 6.708203932,
        //   b = 5 + 6.708203932 = 11.708203932, θ₂ = 0.9 - 0.11708203932 = 0.78291796068
        let got = run(
            RmsProp::new(0.01).momentum(0.5).weight_decay(1.0),
            &[1.0],
            &[&[0.0], &[0.0]],
        );
        close(&got.concat(), &[0.9, 0.78291796068], 1e-7);
    }

    #[test]
    fn optimisers_work_in_f32_and_expose_their_state() {
        let mut adam = Adam::new(0.1);
        let mut p = [1.0f32];
        Optimizer::<f32>::init(&mut adam, 1);
        adam.step(&mut p, &[2.0]);
        assert!((p[0] - 0.9).abs() < 1e-6);
        assert_eq!(Optimizer::<f32>::steps(&adam), 1);
        // f64 state is visible to f64 networks.
        let st = Optimizer::<f64>::state(&adam);
        let names: Vec<_> = st.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["m", "v"]);
        assert!((st[0].1[0] - 0.2).abs() < 1e-15);
        assert_eq!(Optimizer::<f64>::name(&AdamW::new(0.1, 0.0)), "AdamW");
        let mut w = AdamW::new(0.1, 0.0).betas(0.8, 0.9).eps(1e-6);
        assert_eq!((w.settings().beta1, w.settings().eps), (0.8, 1e-6));
        Optimizer::<f64>::set_learning_rate(&mut w, 0.5);
        assert_eq!(Optimizer::<f64>::learning_rate(&w), Some(0.5));
    }

    #[test]
    fn schedules_by_hand() {
        let s = Schedule::Step {
            every: 2,
            gamma: 0.5,
        };
        // γ^⌊t/2⌋: 1, 1, 0.5, 0.5, 0.25
        let f: Vec<f64> = (0..5).map(|t| s.factor(t)).collect();
        assert_eq!(f, [1.0, 1.0, 0.5, 0.5, 0.25]);
        // 0.9^t
        let e = Schedule::Exponential { gamma: 0.9 };
        close(
            &(0..3).map(|t| e.factor(t)).collect::<Vec<_>>(),
            &[1.0, 0.9, 0.81],
            1e-15,
        );
        // Warm-up 2, total 6, min 0: t = 0, 1 → 1/2, 2/2;
        // then ½(1 + cos(π (t-2)/4)) for t = 2..5: 1, 0.8535533905932737, 0.5, 0.14644660940672627;
        // t ≥ 6 → 0.
        let c = Schedule::cosine(2, 6);
        close(
            &(0..8).map(|t| c.factor(t)).collect::<Vec<_>>(),
            &[
                0.5,
                1.0,
                1.0,
                0.8535533905932737,
                0.5,
                0.14644660940672627,
                0.0,
                0.0,
            ],
            1e-15,
        );
        // A floor: min + (1 - min)·½(1 + cos(π/2)) = 0.1 + 0.9·0.5 = 0.55 halfway.
        let c = Schedule::Cosine {
            warmup: 0,
            total: 4,
            min_factor: 0.1,
        };
        close(&[c.factor(2), c.factor(9)], &[0.55, 0.1], 1e-15);
        assert_eq!(Schedule::Constant.factor(100), 1.0);
    }

    #[test]
    fn clipping_by_value_and_by_norm() {
        let mut g = [3.0f64, -4.0, 0.5];
        // ‖g‖ = √(9 + 16 + 0.25) = 5.024937810560445
        let n = Clip::Value(1.0).apply(&mut g);
        assert!((n - 25.25f64.sqrt()).abs() < 1e-15);
        assert_eq!(g, [1.0, -1.0, 0.5]);
        let mut g = [3.0f64, -4.0];
        // ‖g‖ = 5 > 2.5: scaled by 0.5
        assert_eq!(Clip::Norm(2.5).apply(&mut g), 5.0);
        assert_eq!(g, [1.5, -2.0]);
        // Under the limit: unchanged.
        let mut g = [0.3f32, 0.4];
        Clip::Norm(1.0).apply(&mut g);
        assert_eq!(g, [0.3, 0.4]);
        assert_eq!(
            Clip::Norm(1.0).to_string(),
            "clip the gradient's global norm to 1"
        );
    }
}
