//! Hand-written `Network`s for the runtime's unit tests: linear regression
//! `out = w · x + b` with loss `(out - y)²`, in `f64`; a softmax classifier
//! with a class-index target; and a classifier of sequences with one class
//! target per step. The classifiers check their targets as the generated
//! code will (`check_target`), and index with the label as the generated
//! code does, so an unchecked bad label panics.

use crate::network::{Flat, Network, ParamInfo, TargetError, Zeroable};
use crate::rng::Rng;

/// Parameters: `w[2]`, then `b[1]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinParams {
    pub w: [f64; 2],
    pub b: [f64; 1],
}

// SAFETY: only `f64` arrays; zeros are valid.
unsafe impl Zeroable for LinParams {}
// SAFETY: `#[repr(C)]`, three `f64`s, no padding.
unsafe impl Flat<f64> for LinParams {
    const LEN: usize = 3;
}

/// What backward needs: the input and `d loss / d out`.
#[repr(C)]
pub struct LinTape {
    x: [f64; 2],
    d_out: f64,
}

// SAFETY: only `f64`s.
unsafe impl Zeroable for LinTape {}

/// A deliberate mistake in `backward`, to check that checks catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// Correct.
    None,
    /// `d w` misses the factor 2 of the square.
    HalfWeightGrad,
    /// `d b` is assigned (`=`) instead of accumulated (`+=`).
    Overwrite,
    /// `d b` is NaN.
    NanGrad,
}

/// `out = w · x + b`, `loss = (out - y)²`.
pub struct Linear {
    pub params: Box<LinParams>,
    pub bug: Bug,
}

impl Linear {
    /// A network with the given weights.
    pub fn with(w: [f64; 2], b: f64) -> Self {
        Linear {
            params: Box::new(LinParams { w, b: [b] }),
            bug: Bug::None,
        }
    }
}

impl Network for Linear {
    type Scalar = f64;
    type Input = [f64; 2];
    type Target = [f64; 1];
    type Output = [f64; 1];
    type Params = LinParams;
    type Tape = LinTape;
    type BatchWork = crate::network::NoBatch;

    const PARAMS: usize = 3;
    const TAPE_BYTES: usize = core::mem::size_of::<LinTape>();
    const FORWARD_FLOPS: u64 = 6;
    const BACKWARD_FLOPS: u64 = 6;
    const PARAM_INFO: &'static [ParamInfo] = &[
        ParamInfo {
            name: "w",
            shape: &[2],
            offset: 0,
        },
        ParamInfo {
            name: "b",
            shape: &[1],
            offset: 2,
        },
    ];

    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        Linear::with([rng.normal(0.0, 0.5), rng.normal(0.0, 0.5)], 0.0)
    }
    fn params(&self) -> &LinParams {
        &self.params
    }
    fn params_mut(&mut self) -> &mut LinParams {
        &mut self.params
    }
    fn swap_params(&mut self, other: &mut Box<LinParams>) {
        core::mem::swap(&mut self.params, other);
    }
    fn predict(&self, x: &[f64; 2]) -> [f64; 1] {
        let p = &self.params;
        [p.w[0] * x[0] + p.w[1] * x[1] + p.b[0]]
    }
    fn forward(&self, x: &[f64; 2], y: &[f64; 1], tape: &mut LinTape) -> f64 {
        let out = self.predict(x)[0];
        let diff = out - y[0];
        tape.x = *x;
        // d/d out (out - y)² = 2 (out - y)
        tape.d_out = 2.0 * diff;
        diff * diff
    }
    fn backward(&self, tape: &LinTape, grads: &mut LinParams) {
        let scale = if self.bug == Bug::HalfWeightGrad {
            0.5
        } else {
            1.0
        };
        // d/dw = d_out · x, d/db = d_out
        grads.w[0] += scale * tape.d_out * tape.x[0];
        grads.w[1] += scale * tape.d_out * tape.x[1];
        match self.bug {
            Bug::Overwrite => grads.b[0] = tape.d_out,
            Bug::NanGrad => grads.b[0] += f64::NAN,
            _ => grads.b[0] += tape.d_out,
        }
    }
    fn is_correct(out: &[f64; 1], y: &[f64; 1]) -> bool {
        (out[0] - y[0]).abs() < 0.1
    }
}

/// `n` samples of `y = 3 x0 - 2 x1 + 0.5` with `x` spread over `[-1, 1]²`.
pub fn linear_data(n: usize, seed: u64) -> crate::data::Dataset<[f64; 2], [f64; 1]> {
    let mut rng = Rng::new(seed);
    let mut inputs = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    for _ in 0..n {
        let x = [rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0)];
        inputs.push(x);
        targets.push([3.0 * x[0] - 2.0 * x[1] + 0.5]);
    }
    crate::data::Dataset::new(inputs, targets)
}

/// Parameters of [`Softmax3`]: `w[3, 2]`, then `b[3]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftParams {
    pub w: [[f64; 2]; 3],
    pub b: [f64; 3],
}

// SAFETY: only `f64` arrays; zeros are valid.
unsafe impl Zeroable for SoftParams {}
// SAFETY: `#[repr(C)]`, nine `f64`s, no padding.
unsafe impl Flat<f64> for SoftParams {
    const LEN: usize = 9;
}

/// What backward needs: the input, the softmax and the label.
#[repr(C)]
pub struct SoftTape {
    x: [f64; 2],
    p: [f64; 3],
    label: usize,
}

// SAFETY: `f64`s and a `usize`; zeros are valid.
unsafe impl Zeroable for SoftTape {}

/// `logits = w x + b`, `loss = -log softmax(logits)[label]`, 3 classes; the
/// target is declared `label: class[3]`.
pub struct Softmax3 {
    pub params: Box<SoftParams>,
}

const SOFT_INFO: &[ParamInfo] = &[
    ParamInfo {
        name: "w",
        shape: &[3, 2],
        offset: 0,
    },
    ParamInfo {
        name: "b",
        shape: &[3],
        offset: 6,
    },
];

fn softmax3(p: &SoftParams, x: &[f64; 2]) -> [f64; 3] {
    let z: [f64; 3] = core::array::from_fn(|k| p.w[k][0] * x[0] + p.w[k][1] * x[1] + p.b[k]);
    let m = z[0].max(z[1]).max(z[2]);
    let e = z.map(|v| (v - m).exp());
    let s: f64 = e.iter().sum();
    e.map(|v| v / s)
}

impl Network for Softmax3 {
    type Scalar = f64;
    type Input = [f64; 2];
    type Target = usize;
    type Output = [f64; 3];
    type Params = SoftParams;
    type Tape = SoftTape;
    type BatchWork = crate::network::NoBatch;

    const PARAMS: usize = 9;
    const TAPE_BYTES: usize = core::mem::size_of::<SoftTape>();
    const FORWARD_FLOPS: u64 = 30;
    const BACKWARD_FLOPS: u64 = 20;
    const PARAM_INFO: &'static [ParamInfo] = SOFT_INFO;

    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut params = SoftParams::zeroed_box();
        for v in params.w.as_flattened_mut() {
            *v = rng.normal(0.0, 0.5);
        }
        Softmax3 { params }
    }
    fn params(&self) -> &SoftParams {
        &self.params
    }
    fn params_mut(&mut self) -> &mut SoftParams {
        &mut self.params
    }
    fn swap_params(&mut self, other: &mut Box<SoftParams>) {
        core::mem::swap(&mut self.params, other);
    }
    fn check_target(label: &usize) -> Result<(), TargetError> {
        if *label < 3 {
            Ok(())
        } else {
            Err(TargetError {
                target: "label",
                step: None,
                position: None,
                value: *label,
                classes: 3,
            })
        }
    }
    fn predict(&self, x: &[f64; 2]) -> [f64; 3] {
        softmax3(&self.params, x)
    }
    fn forward(&self, x: &[f64; 2], label: &usize, tape: &mut SoftTape) -> f64 {
        let p = softmax3(&self.params, x);
        tape.x = *x;
        tape.p = p;
        tape.label = *label;
        // Indexes with the label, as the generated code does.
        -p[*label].ln()
    }
    fn backward(&self, tape: &SoftTape, grads: &mut SoftParams) {
        // d loss / d logits = p - one_hot(label)
        let mut d = tape.p;
        d[tape.label] -= 1.0;
        for ((w, b), d) in grads.w.iter_mut().zip(&mut grads.b).zip(d) {
            w[0] += d * tape.x[0];
            w[1] += d * tape.x[1];
            *b += d;
        }
    }
    fn is_correct(out: &[f64; 3], label: &usize) -> bool {
        crate::data::argmax(out) == *label
    }
}

/// `n` samples whose class is the quadrant-ish region of `x`: 0 left, 1
/// upper right, 2 lower right.
pub fn class_data(n: usize, seed: u64) -> crate::data::Dataset<[f64; 2], usize> {
    let mut rng = Rng::new(seed);
    let inputs: Vec<[f64; 2]> = (0..n)
        .map(|_| [rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0)])
        .collect();
    let targets = inputs
        .iter()
        .map(|x| match (x[0] < 0.0, x[1] > 0.0) {
            (true, _) => 0,
            (false, true) => 1,
            (false, false) => 2,
        })
        .collect();
    crate::data::Dataset::new(inputs, targets)
}

/// A classifier of 3-step sequences with one class target per step
/// (`target label[t]: class[3]`): [`Softmax3`]'s weights applied at every
/// step, the losses summed.
pub struct SeqSoftmax3 {
    pub inner: Softmax3,
}

/// One [`SoftTape`] per step.
#[repr(C)]
pub struct SeqTape {
    steps: [SoftTape; 3],
}

// SAFETY: made of `SoftTape`s, for which zeros are valid.
unsafe impl Zeroable for SeqTape {}

impl Network for SeqSoftmax3 {
    type Scalar = f64;
    type Input = [[f64; 2]; 3];
    type Target = [usize; 3];
    type Output = [[f64; 3]; 3];
    type Params = SoftParams;
    type Tape = SeqTape;
    type BatchWork = crate::network::NoBatch;

    const PARAMS: usize = 9;
    const TAPE_BYTES: usize = core::mem::size_of::<SeqTape>();
    const FORWARD_FLOPS: u64 = 90;
    const BACKWARD_FLOPS: u64 = 60;
    const PARAM_INFO: &'static [ParamInfo] = SOFT_INFO;

    fn new(seed: u64) -> Self {
        SeqSoftmax3 {
            inner: Softmax3::new(seed),
        }
    }
    fn params(&self) -> &SoftParams {
        &self.inner.params
    }
    fn params_mut(&mut self) -> &mut SoftParams {
        &mut self.inner.params
    }
    // `swap_params`: the default (swapping the contents) on purpose, to test it.
    fn check_target(labels: &[usize; 3]) -> Result<(), TargetError> {
        for (t, &label) in labels.iter().enumerate() {
            if label >= 3 {
                return Err(TargetError {
                    target: "label",
                    step: Some(t),
                    position: None,
                    value: label,
                    classes: 3,
                });
            }
        }
        Ok(())
    }
    fn predict(&self, xs: &[[f64; 2]; 3]) -> [[f64; 3]; 3] {
        xs.map(|x| self.inner.predict(&x))
    }
    fn forward(&self, xs: &[[f64; 2]; 3], labels: &[usize; 3], tape: &mut SeqTape) -> f64 {
        let mut loss = 0.0;
        for t in 0..3 {
            loss += self.inner.forward(&xs[t], &labels[t], &mut tape.steps[t]);
        }
        loss
    }
    fn backward(&self, tape: &SeqTape, grads: &mut SoftParams) {
        for step in &tape.steps {
            self.inner.backward(step, grads);
        }
    }
    fn is_correct(out: &[[f64; 3]; 3], labels: &[usize; 3]) -> bool {
        out.iter()
            .zip(labels)
            .all(|(o, l)| Softmax3::is_correct(o, l))
    }
}
