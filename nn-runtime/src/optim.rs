//! Optimisers: how a batch's averaged gradient changes the parameters, and
//! the learning-rate schedules and gradient clipping around them.
//!
//! Every optimiser sizes its state (momentum buffers, moment estimates) once,
//! in [`Optimizer::init`]; [`Optimizer::step`] and [`Optimizer::step_into`]
//! allocate nothing. The update rules follow PyTorch's `torch.optim` (same
//! defaults, same placement of `ε` and of weight decay), so hyper-parameters
//! carry over.
//!
//! # Rejected steps
//!
//! The trainer updates through [`Optimizer::step_into`]: the optimiser reads
//! the current parameters and writes the new ones into a second buffer,
//! checking in the same loop that every new value is finite. Only a finite
//! step is kept. The built-in optimisers keep their state (momentum, moment
//! estimates) double-buffered the same way, so a rejected step leaves them
//! exactly as before it: same state, same step count.
//!
//! # Without the heap
//!
//! Without nn-runtime's `alloc` feature (a `no_std` build without an
//! allocator) there are plain SGD ([`Sgd`] with no momentum; weight decay
//! works), [`Schedule`] and [`Clip`]: they keep no per-parameter state.
//! SGD with momentum, `Adam`, `AdamW` and `RmsProp` keep a buffer per
//! parameter and need `alloc`; so does `SettingError` (its text), and
//! with it the `check_settings` / `check` methods.

#[cfg(not(any(feature = "std", test)))]
use crate::activation::Activations as _;
use crate::float::Float;
#[cfg(feature = "alloc")]
use alloc::{boxed::Box, format, string::String, string::ToString, vec, vec::Vec};
use core::fmt;

/// A hyper-parameter outside the range where it makes sense (a NaN or
/// negative learning rate, `β` outside `[0, 1)`, `ε = 0`, ...), found before
/// training starts.
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, PartialEq)]
pub struct SettingError {
    /// The setting, as the API names it: `Adam::eps`, `Trainer::threads`.
    pub setting: &'static str,
    /// The value given, as text.
    pub value: String,
    /// What the value must be.
    pub expected: String,
}

#[cfg(feature = "alloc")]
impl SettingError {
    /// `setting` has `value`, but must be `expected`.
    pub fn new(
        setting: &'static str,
        value: impl fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        SettingError {
            setting,
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

#[cfg(feature = "alloc")]
impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is {}; it must be {}",
            self.setting, self.value, self.expected
        )
    }
}

#[cfg(feature = "alloc")]
impl core::error::Error for SettingError {}

#[cfg(feature = "alloc")]
/// `Ok` if `value` is finite and `>= 0`.
fn non_negative(setting: &'static str, value: f64) -> Result<(), SettingError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(SettingError::new(setting, value, "a finite number >= 0"))
    }
}

#[cfg(feature = "alloc")]
/// `Ok` if `value` is finite and `> 0`.
fn positive(setting: &'static str, value: f64, example: &str) -> Result<(), SettingError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(SettingError::new(
            setting,
            value,
            format!("a finite number > 0 (e.g. {example})"),
        ))
    }
}

#[cfg(feature = "alloc")]
/// `Ok` if `value` is in `[0, 1)` (a decay or momentum factor).
fn decay(setting: &'static str, value: f64) -> Result<(), SettingError> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(SettingError::new(setting, value, "in [0, 1)"))
    }
}

/// Updates a network's flat parameter vector from the gradient of one batch.
///
/// The trainer calls [`check_settings`](Optimizer::check_settings) and
/// [`init`](Optimizer::init) once before training, then
/// [`step_into`](Optimizer::step_into) once per batch, after the whole
/// batch's backward passes. An optimiser with state (momentum, Adam's
/// moments) allocates it in `init`; `step` and `step_into` must not allocate.
pub trait Optimizer<T: Float> {
    /// Prepares for training `n_params` parameters: sizes (and resets) any
    /// per-parameter state. The default does nothing.
    fn init(&mut self, n_params: usize) {
        let _ = n_params;
    }

    /// Applies one update in place. `grads` is the gradient of the mean loss
    /// over the batch (the caller has already divided the summed gradient
    /// by the batch size); `params` and `grads` have the same length.
    /// Nothing is checked: the new values may be infinite or NaN (the
    /// trainer uses [`step_into`](Optimizer::step_into), which checks).
    fn step(&mut self, params: &mut [T], grads: &[T]);

    /// Applies one update from `params` into `out` (same length), leaving
    /// `params` as they are, and returns whether the step is finite: every
    /// value written to `out`, and every new value of the optimiser's state,
    /// is finite. On `false` the caller discards `out`, and the optimiser's
    /// state and step count must be as before the call (the step did not
    /// happen).
    ///
    /// The default copies `params` into `out`, runs [`step`](Optimizer::step)
    /// on `out` and checks `out`: right for stateless optimisers. An
    /// optimiser with state should implement it directly (writing its new
    /// state into a second buffer, as the built-in ones do); with the
    /// default, a rejected step may leave the state advanced.
    #[must_use = "a `false` step must be discarded"]
    fn step_into(&mut self, params: &[T], grads: &[T], out: &mut [T]) -> bool {
        out.copy_from_slice(params);
        self.step(out, grads);
        out.iter().all(|v| v.is_finite())
    }

    /// Checks the hyper-parameters (the trainer calls it before training):
    /// an error names the first setting outside its range. The default
    /// accepts everything.
    ///
    /// # Errors
    /// The first invalid setting, with its value and the valid range.
    #[cfg(feature = "alloc")]
    fn check_settings(&self) -> Result<(), SettingError> {
        Ok(())
    }

    /// The current learning rate, if the optimiser has one (schedules need it).
    fn learning_rate(&self) -> Option<f64> {
        None
    }

    /// Sets the learning rate used by the next step (schedules call this
    /// before each step). The default ignores it.
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
    #[cfg(feature = "alloc")]
    fn state(&self) -> Vec<(&'static str, &[f64])> {
        Vec::new()
    }

    /// The same buffers as [`state`](Optimizer::state), mutably, in the same
    /// order (checkpoints restore them).
    #[cfg(feature = "alloc")]
    fn state_mut(&mut self) -> Vec<(&'static str, &mut [f64])> {
        Vec::new()
    }

    /// Number of steps taken since `init` (Adam's bias correction uses it);
    /// rejected steps do not count.
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

fn check_out<T>(who: &str, params: &[T], out: &[T]) {
    assert_eq!(
        params.len(),
        out.len(),
        "{who}::step_into: {} parameters but an output of {}",
        params.len(),
        out.len()
    );
}

/// Elements per block of a checked update loop.
const LANES: usize = 16;

/// The loop of a checked update (`step_into`): runs `$body` for every
/// element of equally long slices, bound by name to the element read
/// (`read`) or a `&mut` to the element written (`write`), and evaluates to
/// whether every value `$body` returns is finite. `$body` returns the new
/// parameter (`T`) and a new state value (`f64`, `0.0` if none needs
/// checking).
///
/// The slices are walked in blocks of [`LANES`] (`as_chunks`: each block is
/// an array, so the compiler vectorises the block's loop); finiteness is
/// summed per lane as `x · 0`, which stays 0 while every `x` is finite and
/// becomes NaN after a NaN or an infinity, with no branch and no reduction
/// across lanes in the loop (a `finite &= x.is_finite()` there halves the
/// speed of plain SGD).
macro_rules! checked_loop {
    ($T:ty; read $($r:ident = $rs:expr),+; write $($w:ident = $ws:expr),+; $body:expr) => {{
        $( let $r = $rs.as_chunks::<LANES>(); )+
        $( let $w = $ws.as_chunks_mut::<LANES>(); )+
        let blocks = [$( $r.0.len() ),+][0];
        let rest = [$( $r.1.len() ),+][0];
        let mut acc = [<$T as Float>::ZERO; LANES];
        let mut acc_state = [0.0f64; LANES];
        for c in 0..blocks {
            for k in 0..LANES {
                $( let $r = $r.0[c][k]; )+
                $( let $w = &mut $w.0[c][k]; )+
                let (value, state): ($T, f64) = $body;
                acc[k] += value * <$T as Float>::ZERO;
                acc_state[k] += state * 0.0;
            }
        }
        let mut finite = acc.iter().all(|a| *a == <$T as Float>::ZERO)
            && acc_state.iter().all(|a| *a == 0.0);
        for i in 0..rest {
            $( let $r = $r.1[i]; )+
            $( let $w = &mut $w.1[i]; )+
            let (value, state): ($T, f64) = $body;
            finite &= value.is_finite() && state.is_finite();
        }
        finite
    }};
}

/// A per-parameter state buffer kept twice: [`step_into`](Optimizer::step_into)
/// reads the current one and writes the other, which becomes current only
/// when the step is kept, so a rejected step leaves the state untouched.
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, Default, PartialEq)]
struct Buffers {
    bufs: [Vec<f64>; 2],
    cur: usize,
}

/// Without the heap there is no per-parameter state: only empty buffers.
#[cfg(not(feature = "alloc"))]
#[derive(Clone, Debug, Default, PartialEq)]
struct Buffers {
    bufs: [[f64; 0]; 2],
    cur: usize,
}

impl Buffers {
    /// Both buffers `n` zeros (or empty for `n = 0`); the first is current.
    #[cfg(feature = "alloc")]
    fn reset(&mut self, n: usize) {
        for b in &mut self.bufs {
            b.clear();
            b.resize(n, 0.0);
        }
        self.cur = 0;
    }

    /// Empty buffers for `n = 0`.
    ///
    /// # Panics
    /// For `n > 0`: the state of `n` parameters needs the heap.
    #[cfg(not(feature = "alloc"))]
    fn reset(&mut self, n: usize) {
        assert!(
            n == 0,
            "a per-parameter optimiser state (SGD with momentum) needs nn-runtime's `alloc` feature"
        );
        self.cur = 0;
    }

    fn len(&self) -> usize {
        self.bufs[0].len()
    }

    #[cfg(feature = "alloc")]
    fn current(&self) -> &[f64] {
        &self.bufs[self.cur]
    }

    fn current_mut(&mut self) -> &mut [f64] {
        &mut self.bufs[self.cur]
    }

    /// The current buffer to read and the other to write.
    fn split(&mut self) -> (&[f64], &mut [f64]) {
        let [a, b] = &mut self.bufs;
        if self.cur == 0 {
            (a, b)
        } else {
            (b, a)
        }
    }

    /// Makes the written buffer current.
    fn flip(&mut self) {
        self.cur = 1 - self.cur;
    }
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
///
/// Valid settings: `lr` finite and `>= 0`, `momentum` in `[0, 1)`,
/// `weight_decay` finite and `>= 0`.
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
    buf: Buffers,
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
            buf: Buffers::default(),
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

/// One element of SGD with momentum or weight decay, in `f64`: the new
/// parameter and the new momentum buffer.
#[inline(always)]
fn sgd_elem(pv: f64, g: f64, b: f64, lr: f64, wd: f64, mu: f64, nesterov: bool) -> (f64, f64) {
    let g = g + wd * pv;
    let b = mu * b + g;
    let d = if nesterov { g + mu * b } else { b };
    (pv - lr * d, b)
}

// The state is kept in `f64` whatever `T` is, so one optimiser value serves
// `f32` and `f64` networks.
impl<T: Float> Optimizer<T> for Sgd {
    fn init(&mut self, n_params: usize) {
        self.buf
            .reset(if self.momentum != 0.0 { n_params } else { 0 });
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
        let (lr, wd, mu, nesterov) = (self.lr, self.weight_decay, self.momentum, self.nesterov);
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
                let (v, _) = sgd_elem(p.to_f64(), g.to_f64(), 0.0, lr, wd, 0.0, false);
                *p = T::from_f64(v);
            }
            return;
        }
        check_lengths("Sgd", params, grads, self.buf.len());
        for ((p, &g), b) in params.iter_mut().zip(grads).zip(self.buf.current_mut()) {
            let (v, nb) = sgd_elem(p.to_f64(), g.to_f64(), *b, lr, wd, mu, nesterov);
            *b = nb;
            *p = T::from_f64(v);
        }
    }

    fn step_into(&mut self, params: &[T], grads: &[T], out: &mut [T]) -> bool {
        check_out("Sgd", params, out);
        assert_eq!(
            params.len(),
            grads.len(),
            "Sgd::step_into: {} parameters but {} gradients",
            params.len(),
            grads.len()
        );
        let (lr, wd, mu, nesterov) = (self.lr, self.weight_decay, self.momentum, self.nesterov);
        let finite;
        if mu == 0.0 && wd == 0.0 {
            // As `step`: `θ - lr·g` in `T`, bit for bit.
            let lr = T::from_f64(lr);
            finite = checked_loop!(T; read p = params, g = grads; write o = out; {
                let v = p - lr * g;
                *o = v;
                (v, 0.0)
            });
        } else if mu == 0.0 {
            finite = checked_loop!(T; read p = params, g = grads; write o = out; {
                let (v, _) = sgd_elem(p.to_f64(), g.to_f64(), 0.0, lr, wd, 0.0, false);
                let v = T::from_f64(v);
                *o = v;
                (v, 0.0)
            });
        } else {
            check_lengths("Sgd", params, grads, self.buf.len());
            let (old, new) = self.buf.split();
            // A non-finite momentum makes the parameter non-finite too
            // (`lr` is finite and >= 0, and `lr·∞` is ∞ or NaN), so the
            // parameter's check covers it.
            finite = checked_loop!(T; read p = params, g = grads, b = old; write o = out, nb = new; {
                let (v, b) = sgd_elem(p.to_f64(), g.to_f64(), b, lr, wd, mu, nesterov);
                let v = T::from_f64(v);
                *nb = b;
                *o = v;
                (v, 0.0)
            });
            if finite {
                self.buf.flip();
            }
        }
        if finite {
            self.t += 1;
        }
        finite
    }

    #[cfg(feature = "alloc")]
    fn check_settings(&self) -> Result<(), SettingError> {
        non_negative("Sgd::lr", self.lr)?;
        decay("Sgd::momentum", self.momentum)?;
        non_negative("Sgd::weight_decay", self.weight_decay)
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

#[cfg(feature = "alloc")]
/// Adam (Kingma & Ba), as `torch.optim.Adam`, with optional L2 weight decay
/// added to the gradient; [`AdamW`] decouples it instead:
///
/// ```text
/// g ← g + wd·θ
/// m ← β₁·m + (1-β₁)·g
/// v ← β₂·v + (1-β₂)·g²
/// θ ← θ - lr · (m / (1-β₁ᵗ)) / (√(v / (1-β₂ᵗ)) + ε)
/// ```
///
/// Valid settings: `lr` finite and `>= 0`, `beta1` and `beta2` in `[0, 1)`,
/// `eps` finite and `> 0` (with `ε = 0` a zero gradient gives `0 / 0`),
/// `weight_decay` finite and `>= 0`.
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
    m: Buffers,
    v: Buffers,
    t: u64,
}

#[cfg(feature = "alloc")]
/// The per-step constants of an Adam update.
#[derive(Clone, Copy)]
struct AdamStep {
    lr: f64,
    b1: f64,
    b2: f64,
    eps: f64,
    wd: f64,
    c1: f64,
    c2: f64,
    decoupled: bool,
}

#[cfg(feature = "alloc")]
impl AdamStep {
    /// One element: the new parameter and moments, in `f64`.
    #[inline(always)]
    fn elem(&self, pv: f64, g: f64, m: f64, v: f64) -> (f64, f64, f64) {
        let (mut pv, mut g) = (pv, g);
        if self.decoupled {
            pv -= self.lr * self.wd * pv;
        } else {
            g += self.wd * pv;
        }
        let m = self.b1 * m + (1.0 - self.b1) * g;
        let v = self.b2 * v + (1.0 - self.b2) * g * g;
        pv -= self.lr * (m / self.c1) / (Float::sqrt(v / self.c2) + self.eps);
        (pv, m, v)
    }
}

#[cfg(feature = "alloc")]
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
            m: Buffers::default(),
            v: Buffers::default(),
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

    /// The constants of step `t` (1-based).
    fn constants(&self, t: u64) -> AdamStep {
        let t = t.min(i32::MAX as u64) as i32;
        AdamStep {
            lr: self.lr,
            b1: self.beta1,
            b2: self.beta2,
            eps: self.eps,
            wd: self.weight_decay,
            c1: 1.0 - self.beta1.powi(t),
            c2: 1.0 - self.beta2.powi(t),
            decoupled: self.decoupled,
        }
    }

    fn update<T: Float>(&mut self, params: &mut [T], grads: &[T]) {
        check_lengths(self.label(), params, grads, self.m.len());
        self.t += 1;
        let k = self.constants(self.t);
        for (((p, &g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(self.m.current_mut())
            .zip(self.v.current_mut())
        {
            let (pv, nm, nv) = k.elem(p.to_f64(), g.to_f64(), *m, *v);
            (*m, *v) = (nm, nv);
            *p = T::from_f64(pv);
        }
    }

    fn update_into<T: Float>(&mut self, params: &[T], grads: &[T], out: &mut [T]) -> bool {
        check_lengths(self.label(), params, grads, self.m.len());
        check_out(self.label(), params, out);
        let k = self.constants(self.t + 1);
        let (m_old, m_new) = self.m.split();
        let (v_old, v_new) = self.v.split();
        // A non-finite `m` makes the parameter non-finite; a non-finite `v`
        // makes the step 0, so `v` is checked itself.
        let finite = checked_loop!(T;
            read p = params, g = grads, m = m_old, v = v_old;
            write o = out, nm = m_new, nv = v_new;
            {
                let (pv, m, v) = k.elem(p.to_f64(), g.to_f64(), m, v);
                let pv = T::from_f64(pv);
                (*nm, *nv) = (m, v);
                *o = pv;
                (pv, v + m * 0.0)
            }
        );
        if finite {
            self.m.flip();
            self.v.flip();
            self.t += 1;
        }
        finite
    }

    fn check(&self) -> Result<(), SettingError> {
        let w = self.decoupled;
        let name = |adam: &'static str, adamw: &'static str| if w { adamw } else { adam };
        non_negative(name("Adam::lr", "AdamW::lr"), self.lr)?;
        decay(name("Adam::beta1", "AdamW::beta1"), self.beta1)?;
        decay(name("Adam::beta2", "AdamW::beta2"), self.beta2)?;
        positive(name("Adam::eps", "AdamW::eps"), self.eps, "1e-8")?;
        non_negative(
            name("Adam::weight_decay", "AdamW::weight_decay"),
            self.weight_decay,
        )
    }

    fn label(&self) -> &'static str {
        if self.decoupled {
            "AdamW"
        } else {
            "Adam"
        }
    }
}

#[cfg(feature = "alloc")]
macro_rules! adam_like_impl {
    ($ty:ty, $($inner:tt)*) => {
        impl<T: Float> Optimizer<T> for $ty {
            fn init(&mut self, n_params: usize) {
                let a = &mut (*self)$($inner)*;
                a.m.reset(n_params);
                a.v.reset(n_params);
                a.t = 0;
            }
            fn step(&mut self, params: &mut [T], grads: &[T]) {
                (*self)$($inner)*.update(params, grads);
            }
            fn step_into(&mut self, params: &[T], grads: &[T], out: &mut [T]) -> bool {
                (*self)$($inner)*.update_into(params, grads, out)
            }
            fn check_settings(&self) -> Result<(), SettingError> {
                (*self)$($inner)*.check()
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
                vec![("m", a.m.current()), ("v", a.v.current())]
            }
            fn state_mut(&mut self) -> Vec<(&'static str, &mut [f64])> {
                let a = &mut (*self)$($inner)*;
                vec![("m", a.m.current_mut()), ("v", a.v.current_mut())]
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

#[cfg(feature = "alloc")]
adam_like_impl!(Adam,);

#[cfg(feature = "alloc")]
/// AdamW (Loshchilov & Hutter), as `torch.optim.AdamW`: Adam with weight
/// decay decoupled from the gradient, applied first as `θ ← θ - lr·wd·θ`
/// (default `wd` 0.01). Valid settings as [`Adam`]'s.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW(Adam);

#[cfg(feature = "alloc")]
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

#[cfg(feature = "alloc")]
adam_like_impl!(AdamW, .0);

#[cfg(feature = "alloc")]
/// RMSProp (Hinton), as `torch.optim.RMSprop` (not centred):
///
/// ```text
/// g ← g + wd·θ
/// v ← α·v + (1-α)·g²
/// b ← μ·b + g / (√v + ε);  θ ← θ - lr·b     (momentum μ > 0)
/// θ ← θ - lr · g / (√v + ε)                 (μ = 0)
/// ```
///
/// Valid settings: `lr` finite and `>= 0`, `alpha` and `momentum` in
/// `[0, 1)`, `eps` finite and `> 0`, `weight_decay` finite and `>= 0`.
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
    v: Buffers,
    buf: Buffers,
    t: u64,
}

#[cfg(feature = "alloc")]
impl RmsProp {
    /// RMSProp with learning rate `lr` and PyTorch's defaults otherwise.
    pub fn new(lr: f64) -> Self {
        RmsProp {
            lr,
            alpha: 0.99,
            eps: 1e-8,
            momentum: 0.0,
            weight_decay: 0.0,
            v: Buffers::default(),
            buf: Buffers::default(),
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

    /// One element: the new parameter, squared-gradient average and
    /// momentum buffer, in `f64`.
    #[inline(always)]
    fn elem(&self, pv: f64, g: f64, v: f64, b: f64) -> (f64, f64, f64) {
        let g = g + self.weight_decay * pv;
        let v = self.alpha * v + (1.0 - self.alpha) * g * g;
        let d = g / (Float::sqrt(v) + self.eps);
        let (d, b) = if self.momentum > 0.0 {
            let b = self.momentum * b + d;
            (b, b)
        } else {
            (d, b)
        };
        (pv - self.lr * d, v, b)
    }
}

#[cfg(feature = "alloc")]
impl<T: Float> Optimizer<T> for RmsProp {
    fn init(&mut self, n_params: usize) {
        self.v.reset(n_params);
        self.buf.reset(n_params);
        self.t = 0;
    }

    fn step(&mut self, params: &mut [T], grads: &[T]) {
        check_lengths("RmsProp", params, grads, self.v.len());
        self.t += 1;
        // Out of `self` while `self.elem` reads the settings (moving a
        // `Vec` allocates nothing).
        let mut v_buf = core::mem::take(&mut self.v);
        let mut b_buf = core::mem::take(&mut self.buf);
        for (((p, &g), v), b) in params
            .iter_mut()
            .zip(grads)
            .zip(v_buf.current_mut())
            .zip(b_buf.current_mut())
        {
            let (pv, nv, nb) = self.elem(p.to_f64(), g.to_f64(), *v, *b);
            (*v, *b) = (nv, nb);
            *p = T::from_f64(pv);
        }
        self.v = v_buf;
        self.buf = b_buf;
    }

    fn step_into(&mut self, params: &[T], grads: &[T], out: &mut [T]) -> bool {
        check_lengths("RmsProp", params, grads, self.v.len());
        check_out("RmsProp", params, out);
        let mut v_buf = core::mem::take(&mut self.v);
        let mut b_buf = core::mem::take(&mut self.buf);
        let (v_old, v_new) = v_buf.split();
        let (b_old, b_new) = b_buf.split();
        // As Adam's: the average `v` is checked itself, the momentum `b`
        // through the parameter (and here too, to be sure).
        let finite = checked_loop!(T;
            read p = params, g = grads, v = v_old, b = b_old;
            write o = out, nv = v_new, nb = b_new;
            {
                let (pv, v, b) = self.elem(p.to_f64(), g.to_f64(), v, b);
                let pv = T::from_f64(pv);
                (*nv, *nb) = (v, b);
                *o = pv;
                (pv, v + b * 0.0)
            }
        );
        if finite {
            v_buf.flip();
            b_buf.flip();
            self.t += 1;
        }
        self.v = v_buf;
        self.buf = b_buf;
        finite
    }

    fn check_settings(&self) -> Result<(), SettingError> {
        non_negative("RmsProp::lr", self.lr)?;
        decay("RmsProp::alpha", self.alpha)?;
        positive("RmsProp::eps", self.eps, "1e-8")?;
        decay("RmsProp::momentum", self.momentum)?;
        non_negative("RmsProp::weight_decay", self.weight_decay)
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
        vec![("v", self.v.current()), ("momentum", self.buf.current())]
    }
    fn state_mut(&mut self) -> Vec<(&'static str, &mut [f64])> {
        vec![
            ("v", self.v.current_mut()),
            ("momentum", self.buf.current_mut()),
        ]
    }
    fn steps(&self) -> u64 {
        self.t
    }
    fn set_steps(&mut self, steps: u64) {
        self.t = steps;
    }
}

/// Forwards every method to the optimiser behind a pointer: the trainer
/// can borrow an optimiser (`Trainer::new(&mut adam)`) or take one chosen at
/// run time (`Box<dyn Optimizer<f32> + Send>`).
macro_rules! forward_impl {
    ($($ptr:tt)*) => {
        impl<T: Float, O: Optimizer<T> + ?Sized> Optimizer<T> for $($ptr)* {
            fn init(&mut self, n_params: usize) {
                (**self).init(n_params);
            }
            fn step(&mut self, params: &mut [T], grads: &[T]) {
                (**self).step(params, grads);
            }
            fn step_into(&mut self, params: &[T], grads: &[T], out: &mut [T]) -> bool {
                (**self).step_into(params, grads, out)
            }
            #[cfg(feature = "alloc")]
            fn check_settings(&self) -> Result<(), SettingError> {
                (**self).check_settings()
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
            #[cfg(feature = "alloc")]
            fn state(&self) -> Vec<(&'static str, &[f64])> {
                (**self).state()
            }
            #[cfg(feature = "alloc")]
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
    };
}

forward_impl!(&mut O);
#[cfg(feature = "alloc")]
forward_impl!(Box<O>);

/// A learning-rate schedule: the factor the base learning rate is multiplied
/// by before optimiser step `t` (0-based, counted over the whole fit).
///
/// The trainer applies it when given with [`Trainer::schedule`](crate::Trainer::schedule);
/// by hand: `opt.set_learning_rate(base * schedule.factor(t))`. Every valid
/// schedule (see [`check`](Schedule::check)) has factors in `[0, 1]`, so it
/// never raises the learning rate above the optimiser's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// Factor 1 throughout.
    Constant,
    /// `gamma^⌊t / every⌋`: multiplied by `gamma` every `every` steps.
    Step {
        /// Steps between decays (at least 1).
        every: usize,
        /// Multiplier per decay, in `(0, 1]`.
        gamma: f64,
    },
    /// `gamma^t`.
    Exponential {
        /// Multiplier per step, in `(0, 1]`.
        gamma: f64,
    },
    /// Linear warm-up from `1/warmup` to 1 over the first `warmup` steps,
    /// then a half cosine from 1 down to `min_factor` at step `total`, and
    /// `min_factor` after it.
    Cosine {
        /// Warm-up steps (0 for none; at most `total`).
        warmup: usize,
        /// Step at which the cosine reaches `min_factor` (warm-up included;
        /// at least 1).
        total: usize,
        /// Final factor, in `[0, 1]` (0 decays to nothing).
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

    /// Checks the parameters (the trainer calls it before training).
    ///
    /// # Errors
    /// A zero `every` or `total`, a warm-up longer than `total`, a `gamma`
    /// outside `(0, 1]`, or a `min_factor` outside `[0, 1]`.
    #[cfg(feature = "alloc")]
    pub fn check(&self) -> Result<(), SettingError> {
        let gamma = |setting, gamma: f64| {
            if gamma > 0.0 && gamma <= 1.0 {
                Ok(())
            } else {
                Err(SettingError::new(
                    setting,
                    gamma,
                    "in (0, 1] (a decay per step; 1 keeps the learning rate)",
                ))
            }
        };
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::Step { every, gamma: g } => {
                if every == 0 {
                    return Err(SettingError::new(
                        "Schedule::Step::every",
                        every,
                        "at least 1 (steps between decays)",
                    ));
                }
                gamma("Schedule::Step::gamma", g)
            }
            Schedule::Exponential { gamma: g } => gamma("Schedule::Exponential::gamma", g),
            Schedule::Cosine {
                warmup,
                total,
                min_factor,
            } => {
                if total == 0 {
                    return Err(SettingError::new(
                        "Schedule::Cosine::total",
                        total,
                        "at least 1 (the step at which the cosine ends)",
                    ));
                }
                if warmup > total {
                    return Err(SettingError::new(
                        "Schedule::Cosine::warmup",
                        warmup,
                        format!("at most `total` ({total})"),
                    ));
                }
                if !(0.0..=1.0).contains(&min_factor) {
                    return Err(SettingError::new(
                        "Schedule::Cosine::min_factor",
                        min_factor,
                        "in [0, 1]",
                    ));
                }
                Ok(())
            }
        }
    }

    /// The factor for step `t` (0-based).
    pub fn factor(&self, t: usize) -> f64 {
        match *self {
            Schedule::Constant => 1.0,
            Schedule::Step { every, gamma } => {
                let decays = i32::try_from(t / every.max(1)).unwrap_or(i32::MAX);
                gamma.powi(decays)
            }
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
    /// Each element clamped into `[-c, c]` (`c` finite and `> 0`).
    Value(f64),
    /// The whole gradient scaled by `c / ‖g‖₂` when its global L2 norm
    /// `‖g‖₂` exceeds `c` (as `torch.nn.utils.clip_grad_norm_`; `c` finite
    /// and `> 0`).
    Norm(f64),
}

impl Clip {
    /// Checks the limit (the trainer calls it before training).
    ///
    /// # Errors
    /// A limit that is not a finite number above 0.
    #[cfg(feature = "alloc")]
    pub fn check(&self) -> Result<(), SettingError> {
        match *self {
            Clip::Value(c) => positive("Clip::Value", c, "1.0"),
            Clip::Norm(c) => positive("Clip::Norm", c, "1.0"),
        }
    }

    /// Clips `grads` in place; returns the global L2 norm before clipping.
    /// Allocates nothing.
    pub fn apply<T: Float>(&self, grads: &mut [T]) -> f64 {
        let norm = Float::sqrt(
            grads
                .iter()
                .map(|g| {
                    let g = g.to_f64();
                    g * g
                })
                .sum::<f64>(),
        );
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

/// Without the heap: plain SGD works, a momentum buffer is refused.
#[cfg(all(test, not(feature = "alloc")))]
mod no_alloc_tests {
    use super::*;

    #[test]
    fn plain_sgd_and_weight_decay_step_without_state() {
        let mut opt = Sgd::new(0.5);
        Optimizer::<f32>::init(&mut opt, 2);
        let mut p = [1.0f32, -2.0];
        opt.step(&mut p, &[2.0, 4.0]);
        assert_eq!(p, [0.0, -4.0]);
        let mut opt = Sgd::new(0.5).weight_decay(1.0);
        Optimizer::<f64>::init(&mut opt, 1);
        let mut out = [0.0f64];
        assert!(opt.step_into(&[2.0], &[1.0], &mut out));
        assert_eq!(out, [2.0 - 0.5 * (1.0 + 2.0)]);
        assert_eq!(Optimizer::<f64>::steps(&opt), 1);
    }

    #[test]
    #[should_panic(expected = "needs nn-runtime's `alloc` feature")]
    fn momentum_needs_the_heap() {
        let mut opt = Sgd::new(0.1).momentum(0.9);
        Optimizer::<f32>::init(&mut opt, 3);
    }
}

#[cfg(all(test, feature = "alloc"))]
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

    /// Every built-in optimiser in a configuration that uses its state.
    fn all_optimisers() -> Vec<(&'static str, Box<dyn Optimizer<f64>>)> {
        vec![
            ("sgd", Box::new(Sgd::new(0.1))),
            ("sgd+wd", Box::new(Sgd::new(0.1).weight_decay(0.01))),
            ("momentum", Box::new(Sgd::new(0.1).momentum(0.9))),
            (
                "nesterov",
                Box::new(Sgd::new(0.1).momentum(0.9).nesterov(true).weight_decay(0.1)),
            ),
            ("adam", Box::new(Adam::new(0.1).weight_decay(0.01))),
            ("adamw", Box::new(AdamW::new(0.1, 0.01))),
            ("rmsprop", Box::new(RmsProp::new(0.01))),
            (
                "rmsprop+momentum",
                Box::new(RmsProp::new(0.01).momentum(0.5).weight_decay(0.1)),
            ),
        ]
    }

    /// More than two blocks of `LANES`, and a remainder.
    const N: usize = 2 * LANES + 5;

    fn grads(k: usize) -> Vec<f64> {
        (0..N).map(|i| ((i + 3 * k) as f64 * 0.7).sin()).collect()
    }

    fn start() -> Vec<f64> {
        (0..N).map(|i| (i as f64 * 0.37).cos()).collect()
    }

    #[test]
    fn step_into_is_step_bit_for_bit_and_leaves_the_input_alone() {
        for ((name, mut a), (_, mut b)) in all_optimisers().into_iter().zip(all_optimisers()) {
            let mut p = start();
            let mut q = p.clone();
            let mut out = vec![0.0; N];
            a.init(N);
            b.init(N);
            for k in 0..5 {
                a.step(&mut p, &grads(k));
                let before = q.clone();
                assert!(b.step_into(&q, &grads(k), &mut out), "{name}");
                assert_eq!(q, before, "{name}: step_into changed its input");
                q.copy_from_slice(&out);
                assert_eq!(p, q, "{name}, step {k}");
                assert_eq!(a.steps(), b.steps(), "{name}");
                assert_eq!(a.state(), b.state(), "{name}");
            }
        }
        // In f32 as well (SGD's plain path computes in `T`).
        let mut a = Sgd::new(0.3);
        let mut b = Sgd::new(0.3);
        let mut p: Vec<f32> = start().iter().map(|v| *v as f32).collect();
        let g: Vec<f32> = grads(1).iter().map(|v| *v as f32).collect();
        let q = p.clone();
        let mut out = vec![0.0f32; N];
        Optimizer::<f32>::step(&mut a, &mut p, &g);
        assert!(b.step_into(&q, &g, &mut out));
        assert_eq!(p, out);
        // f32 overflow of an f64 update, in a block and in the remainder.
        let mut big = Sgd::new(1e38);
        for i in [7, N - 3] {
            let mut g = vec![0.0f32; N];
            g[i] = -10.0;
            assert!(!big.step_into(&q, &g, &mut out));
            assert_eq!(out[i], f32::INFINITY);
        }
    }

    #[test]
    fn a_rejected_step_changes_no_state() {
        for (name, mut opt) in all_optimisers() {
            let mut p = start();
            let mut out = vec![0.0; N];
            opt.init(N);
            for k in 0..3 {
                assert!(opt.step_into(&p, &grads(k), &mut out), "{name}");
                p.copy_from_slice(&out);
            }
            let state: Vec<Vec<f64>> = opt.state().iter().map(|(_, s)| s.to_vec()).collect();
            let steps = opt.steps();
            // An infinite step, and a NaN in the gradient: both rejected.
            opt.set_learning_rate(f64::INFINITY);
            assert!(!opt.step_into(&p, &grads(3), &mut out), "{name}");
            assert!(out.iter().any(|v| !v.is_finite()), "{name}: {out:?}");
            opt.set_learning_rate(0.05);
            // One NaN in a block, one in the remainder, one infinity each.
            for (i, bad_value) in [
                (2, f64::NAN),
                (N - 2, f64::NAN),
                (LANES + 3, f64::INFINITY),
                (N - 1, f64::NEG_INFINITY),
            ] {
                let mut bad = grads(3);
                bad[i] = bad_value;
                assert!(!opt.step_into(&p, &bad, &mut out), "{name}: {i}");
                assert!(!out[i].is_finite(), "{name}: {i}: {out:?}");
            }
            let after: Vec<Vec<f64>> = opt.state().iter().map(|(_, s)| s.to_vec()).collect();
            assert_eq!(after, state, "{name}: state changed by a rejected step");
            assert_eq!(opt.steps(), steps, "{name}");
            // The next good step is the one it would have been without the
            // rejected ones, bit for bit.
            assert!(opt.step_into(&p, &grads(4), &mut out), "{name}");
            let mut twin = all_optimisers()
                .into_iter()
                .find(|(n, _)| n == &name)
                .unwrap()
                .1;
            let mut tp = start();
            twin.init(N);
            for k in 0..3 {
                twin.step(&mut tp, &grads(k));
            }
            twin.set_learning_rate(0.05);
            twin.step(&mut tp, &grads(4));
            assert_eq!(out, tp, "{name}");
            assert_eq!(opt.state(), twin.state(), "{name}");
        }
    }

    #[test]
    fn non_finite_state_rejects_the_step_even_with_finite_parameters() {
        // f64, g = 1e200: v = (1 - β₂) g² overflows to infinity, and the
        // update m̂ / (√v̂ + ε) is 0, so the parameter alone looks fine.
        // In a block and in the remainder.
        for i in [5, N - 1] {
            let mut g = vec![0.5; N];
            g[i] = 1e200;
            let p = vec![1.0; N];
            let mut out = vec![0.0; N];
            let mut adam = Adam::new(0.1);
            Optimizer::<f64>::init(&mut adam, N);
            assert!(!adam.step_into(&p, &g, &mut out), "{i}");
            assert!(out.iter().all(|v| v.is_finite()), "{i}");
            assert_eq!(Optimizer::<f64>::steps(&adam), 0);
            assert!(Optimizer::<f64>::state(&adam)[1]
                .1
                .iter()
                .all(|v| *v == 0.0));
            // RMSProp's squared-gradient average likewise.
            let mut rms = RmsProp::new(0.1);
            Optimizer::<f64>::init(&mut rms, N);
            assert!(!rms.step_into(&p, &g, &mut out), "{i}");
            assert!(out.iter().all(|v| v.is_finite()), "{i}");
            assert_eq!(Optimizer::<f64>::steps(&rms), 0);
            assert!(Optimizer::<f64>::state(&rms)[0].1.iter().all(|v| *v == 0.0));
        }
    }

    #[test]
    fn adam_without_eps_would_write_nan_and_is_caught() {
        // ε = 0 and a zero gradient: 0 / (√0 + 0) = NaN. `check_settings`
        // refuses ε = 0 before training; `step_into` catches it anyway.
        let mut adam = Adam::new(0.1).eps(0.0);
        assert_eq!(
            Optimizer::<f32>::check_settings(&adam).unwrap_err().setting,
            "Adam::eps"
        );
        Optimizer::<f32>::init(&mut adam, 2);
        let mut out = [0.0f32; 2];
        assert!(!adam.step_into(&[1.0f32, 2.0], &[0.0, 0.0], &mut out));
        assert!(out[0].is_nan());
        // The in-place `step` checks nothing (it is the unchecked primitive).
        let mut p = [1.0f32, 2.0];
        adam.step(&mut p, &[0.0, 0.0]);
        assert!(p[0].is_nan());
    }

    #[test]
    fn every_out_of_range_hyper_parameter_is_named() {
        let check = |o: &dyn Optimizer<f64>| o.check_settings().map_err(|e| e.setting);
        for (_, o) in all_optimisers() {
            assert_eq!(check(&*o), Ok(()));
        }
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        let bad: Vec<(Box<dyn Optimizer<f64>>, &str)> = vec![
            (Box::new(Sgd::new(nan)), "Sgd::lr"),
            (Box::new(Sgd::new(inf)), "Sgd::lr"),
            (Box::new(Sgd::new(-0.1)), "Sgd::lr"),
            (Box::new(Sgd::new(0.1).momentum(1.0)), "Sgd::momentum"),
            (Box::new(Sgd::new(0.1).momentum(-0.5)), "Sgd::momentum"),
            (Box::new(Sgd::new(0.1).momentum(nan)), "Sgd::momentum"),
            (
                Box::new(Sgd::new(0.1).weight_decay(-1e-4)),
                "Sgd::weight_decay",
            ),
            (
                Box::new(Sgd::new(0.1).weight_decay(nan)),
                "Sgd::weight_decay",
            ),
            (Box::new(Adam::new(nan)), "Adam::lr"),
            (Box::new(Adam::new(0.1).betas(1.0, 0.999)), "Adam::beta1"),
            (Box::new(Adam::new(0.1).betas(0.9, -0.1)), "Adam::beta2"),
            (Box::new(Adam::new(0.1).betas(0.9, nan)), "Adam::beta2"),
            (Box::new(Adam::new(0.1).eps(0.0)), "Adam::eps"),
            (Box::new(Adam::new(0.1).eps(-1e-8)), "Adam::eps"),
            (Box::new(Adam::new(0.1).eps(inf)), "Adam::eps"),
            (
                Box::new(Adam::new(0.1).weight_decay(-1.0)),
                "Adam::weight_decay",
            ),
            (Box::new(AdamW::new(-1.0, 0.01)), "AdamW::lr"),
            (Box::new(AdamW::new(0.1, nan)), "AdamW::weight_decay"),
            (
                Box::new(AdamW::new(0.1, 0.01).betas(0.9, 1.5)),
                "AdamW::beta2",
            ),
            (Box::new(AdamW::new(0.1, 0.01).eps(0.0)), "AdamW::eps"),
            (Box::new(RmsProp::new(inf)), "RmsProp::lr"),
            (Box::new(RmsProp::new(0.1).alpha(1.0)), "RmsProp::alpha"),
            (Box::new(RmsProp::new(0.1).eps(0.0)), "RmsProp::eps"),
            (
                Box::new(RmsProp::new(0.1).momentum(1.0)),
                "RmsProp::momentum",
            ),
            (
                Box::new(RmsProp::new(0.1).weight_decay(-0.5)),
                "RmsProp::weight_decay",
            ),
        ];
        for (o, setting) in bad {
            assert_eq!(check(&*o), Err(setting), "{o:?}", o = o.name());
        }
        // Through `&mut`, as the trainer borrows optimisers.
        let mut sgd = Sgd::new(nan);
        let r = &mut sgd;
        let e = Optimizer::<f32>::check_settings(&r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`Sgd::lr` is NaN; it must be a finite number >= 0"
        );
        assert_eq!(
            Optimizer::<f32>::check_settings(&Adam::new(1e-3).eps(0.0))
                .unwrap_err()
                .to_string(),
            "`Adam::eps` is 0; it must be a finite number > 0 (e.g. 1e-8)"
        );
    }

    #[test]
    fn schedules_and_clipping_check_their_parameters() {
        let good = [
            Schedule::Constant,
            Schedule::Step {
                every: 1,
                gamma: 0.5,
            },
            Schedule::Exponential { gamma: 1.0 },
            Schedule::cosine(0, 1),
            Schedule::cosine(5, 5),
        ];
        for s in good {
            assert_eq!(s.check(), Ok(()), "{s:?}");
        }
        let bad = [
            (
                Schedule::Step {
                    every: 0,
                    gamma: 0.5,
                },
                "Schedule::Step::every",
            ),
            (
                Schedule::Step {
                    every: 3,
                    gamma: f64::NAN,
                },
                "Schedule::Step::gamma",
            ),
            (
                Schedule::Step {
                    every: 3,
                    gamma: 0.0,
                },
                "Schedule::Step::gamma",
            ),
            (
                Schedule::Exponential { gamma: 1.5 },
                "Schedule::Exponential::gamma",
            ),
            (
                Schedule::Exponential { gamma: -0.5 },
                "Schedule::Exponential::gamma",
            ),
            (Schedule::cosine(0, 0), "Schedule::Cosine::total"),
            (Schedule::cosine(10, 5), "Schedule::Cosine::warmup"),
            (
                Schedule::Cosine {
                    warmup: 0,
                    total: 10,
                    min_factor: f64::NAN,
                },
                "Schedule::Cosine::min_factor",
            ),
            (
                Schedule::Cosine {
                    warmup: 0,
                    total: 10,
                    min_factor: -0.1,
                },
                "Schedule::Cosine::min_factor",
            ),
        ];
        for (s, setting) in bad {
            assert_eq!(s.check().map_err(|e| e.setting), Err(setting), "{s:?}");
        }
        assert_eq!(
            Schedule::cosine(10, 5).check().unwrap_err().to_string(),
            "`Schedule::Cosine::warmup` is 10; it must be at most `total` (5)"
        );
        // Far steps never wrap the exponent around (a huge factor).
        let s = Schedule::Step {
            every: 1,
            gamma: 0.5,
        };
        for t in [1usize << 31, (1 << 32) + 3, usize::MAX] {
            let f = s.factor(t);
            assert!((0.0..=1.0).contains(&f), "{t}: {f}");
        }
        for c in [
            Clip::Value(0.0),
            Clip::Value(-1.0),
            Clip::Norm(f64::NAN),
            Clip::Norm(f64::INFINITY),
        ] {
            assert!(c.check().is_err(), "{c:?}");
        }
        assert_eq!(Clip::Norm(1.0).check(), Ok(()));
        assert_eq!(
            Clip::Norm(-2.0).check().unwrap_err().to_string(),
            "`Clip::Norm` is -2; it must be a finite number > 0 (e.g. 1.0)"
        );
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
