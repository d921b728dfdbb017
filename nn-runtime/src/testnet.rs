//! A hand-written `Network` for the runtime's unit tests: linear regression
//! `out = w · x + b` with loss `(out - y)²`, in `f64`.

use crate::network::{Flat, Network, ParamInfo, Zeroable};
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
