//! The `rnn` benchmark network by hand: an Elman net (input 8, 32 tanh
//! units, a linear output per step, 16 steps, MSE summed over the steps),
//! trained by full backpropagation through time, written the way a competent
//! engineer would without the library: fixed-size arrays, straightforward
//! loops, the forward pass storing `h` at every step, the backward pass
//! walking `t = 15 .. 0` carrying the state's adjoint, then a plain SGD update.
//!
//! Generic over the float type only so that it can be checked in `f64`
//! (`tests/handwritten_rnn.rs`, against the generated network's gradients
//! and against finite differences); the benchmark uses `f32`.
//!
//! [`Rnn`] and [`Rnn64`] are the generated counterparts (the same definition
//! in `f32` and `f64`), shared by the benchmark (`benches/rnn.rs`) and the
//! test so that both use exactly the network that is checked.

// Index loops on purpose: this is the textbook code the benchmarks compare with.
#![allow(clippy::needless_range_loop)]

use nn_runtime::{network, Float};

/// Time steps of a sequence.
pub const T: usize = 16;
/// Inputs per step.
pub const I: usize = 8;
/// Hidden (state) units.
pub const H: usize = 32;

/// `rnn`, generated: the recurrent benchmark network.
#[network {
    steps 16;
    input  x[t][8];
    target y[t][1];
    state  h[32] = zeros;
    param  wh[32, 32] = xavier;
    h[t]   = tanh(wh @ h[t-1] + dense(x[t], 32));
    out[t] = dense(h[t], 1);
    loss   = sum_steps(mse(out[t], y[t]));
}]
pub struct Rnn;

/// [`Rnn`] in `f64`, for the gradient comparison.
#[network {
    dtype f64;
    steps 16;
    input  x[t][8];
    target y[t][1];
    state  h[32] = zeros;
    param  wh[32, 32] = xavier;
    h[t]   = tanh(wh @ h[t-1] + dense(x[t], 32));
    out[t] = dense(h[t], 1);
    loss   = sum_steps(mse(out[t], y[t]));
}]
pub struct Rnn64;

/// What the hand-written code needs beyond [`Float`]: `tanh` (the standard
/// library's, as the generated code uses).
pub trait Real: Float {
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
}

impl Real for f64 {
    #[inline(always)]
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
}

/// The Elman net's parameters (or their gradients), in the generated
/// network's order: `wh`, `h.weight`, `h.bias`, `out.weight`, `out.bias`.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnHand<F> {
    /// `wh`: the recurrent weights, `[H, H]`.
    pub wh: [[F; H]; H],
    /// `h.weight`: the input weights, `[H, I]`.
    pub wx: [[F; I]; H],
    /// `h.bias`: `[H]`.
    pub bh: [F; H],
    /// `out.weight`: `[1, H]`.
    pub wo: [[F; H]; 1],
    /// `out.bias`: `[1]`.
    pub bo: [F; 1],
}

/// [`RnnHand`] in `f32`, as benchmarked.
pub type RnnHand32 = RnnHand<f32>;

/// What the forward pass keeps for the backward pass, allocated once by the
/// caller: `h[0]` is the initial state (zeros), `h[t + 1]` the state after
/// step `t`; `dout[t]` is `∂loss/∂out[t] = 2 (out[t] - y[t])`.
#[derive(Clone, Debug)]
pub struct RnnWork<F> {
    /// The hidden state before the first step and after each step.
    pub h: [[F; H]; T + 1],
    /// The loss's derivative with respect to each step's output.
    pub dout: [F; T],
}

impl<F: Real> Default for RnnWork<F> {
    fn default() -> Self {
        Self {
            h: [[F::ZERO; H]; T + 1],
            dout: [F::ZERO; T],
        }
    }
}

impl<F: Real> RnnHand<F> {
    /// All-zero parameters (or gradients).
    pub fn zeroed() -> Self {
        Self {
            wh: [[F::ZERO; H]; H],
            wx: [[F::ZERO; I]; H],
            bh: [F::ZERO; H],
            wo: [[F::ZERO; H]; 1],
            bo: [F::ZERO; 1],
        }
    }

    /// The tensor the generated network calls `name` (`wh`, `h.weight`,
    /// `h.bias`, `out.weight`, `out.bias`), flattened row-major.
    pub fn field(&self, name: &str) -> &[F] {
        match name {
            "wh" => self.wh.as_flattened(),
            "h.weight" => self.wx.as_flattened(),
            "h.bias" => &self.bh,
            "out.weight" => self.wo.as_flattened(),
            "out.bias" => &self.bo,
            _ => panic!("no parameter `{name}`"),
        }
    }

    /// [`field`](Self::field), mutably.
    pub fn field_mut(&mut self, name: &str) -> &mut [F] {
        match name {
            "wh" => self.wh.as_flattened_mut(),
            "h.weight" => self.wx.as_flattened_mut(),
            "h.bias" => &mut self.bh,
            "out.weight" => self.wo.as_flattened_mut(),
            "out.bias" => &mut self.bo,
            _ => panic!("no parameter `{name}`"),
        }
    }

    /// The parameter tensors, mutably, in declaration order.
    fn fields_mut(&mut self) -> [&mut [F]; 5] {
        [
            self.wh.as_flattened_mut(),
            self.wx.as_flattened_mut(),
            &mut self.bh,
            self.wo.as_flattened_mut(),
            &mut self.bo,
        ]
    }

    /// The parameters as one flat vector in declaration order.
    pub fn to_flat(&self) -> Vec<F> {
        [
            self.wh.as_flattened(),
            self.wx.as_flattened(),
            &self.bh,
            self.wo.as_flattened(),
            &self.bo,
        ]
        .concat()
    }

    /// Forward pass over the sequence: returns the summed loss
    /// `Σ_t (out[t] - y[t])²` and fills `w` for [`backward`](Self::backward).
    pub fn forward(&self, x: &[[F; I]; T], y: &[[F; 1]; T], w: &mut RnnWork<F>) -> F {
        let two = F::ONE + F::ONE;
        let mut loss = F::ZERO;
        w.h[0] = [F::ZERO; H];
        for t in 0..T {
            let (before, after) = w.h.split_at_mut(t + 1);
            let (prev, h) = (&before[t], &mut after[0]);
            for j in 0..H {
                let mut z = self.bh[j];
                for i in 0..I {
                    z += self.wx[j][i] * x[t][i];
                }
                for k in 0..H {
                    z += self.wh[j][k] * prev[k];
                }
                h[j] = z.tanh();
            }
            let mut out = self.bo[0];
            for j in 0..H {
                out += self.wo[0][j] * h[j];
            }
            let diff = out - y[t][0];
            loss += diff * diff;
            w.dout[t] = two * diff;
        }
        loss
    }

    /// Backward pass through time for the sequence last passed to
    /// [`forward`](Self::forward) with `w`: adds `∂loss/∂θ` into `g`.
    pub fn backward(&self, x: &[[F; I]; T], w: &RnnWork<F>, g: &mut Self) {
        // ∂loss/∂h[t] flowing back from step t + 1 (zero after the last step).
        let mut dh_next = [F::ZERO; H];
        for t in (0..T).rev() {
            let h = &w.h[t + 1];
            let prev = &w.h[t];
            let dout = w.dout[t];
            g.bo[0] += dout;
            // dz = (dh_next + woᵀ dout) ⊙ (1 - h²): the adjoint of the pre-activation.
            let mut dz = [F::ZERO; H];
            for j in 0..H {
                g.wo[0][j] += dout * h[j];
                let dh = dh_next[j] + self.wo[0][j] * dout;
                dz[j] = dh * (F::ONE - h[j] * h[j]);
            }
            for j in 0..H {
                let d = dz[j];
                g.bh[j] += d;
                for i in 0..I {
                    g.wx[j][i] += d * x[t][i];
                }
                for k in 0..H {
                    g.wh[j][k] += d * prev[k];
                }
            }
            // dh_next = whᵀ dz
            dh_next = [F::ZERO; H];
            for j in 0..H {
                let d = dz[j];
                for k in 0..H {
                    dh_next[k] += self.wh[j][k] * d;
                }
            }
        }
    }

    /// Loss of one sequence; adds its gradient into `g`.
    pub fn grad(&self, x: &[[F; I]; T], y: &[[F; 1]; T], w: &mut RnnWork<F>, g: &mut Self) -> F {
        let loss = self.forward(x, y, w);
        self.backward(x, w, g);
        loss
    }

    /// `θ -= lr · g`, then `g = 0`.
    pub fn sgd(&mut self, g: &mut Self, lr: F) {
        for (p, d) in self.fields_mut().into_iter().zip(g.fields_mut()) {
            for (pi, gi) in p.iter_mut().zip(d.iter_mut()) {
                *pi -= lr * *gi;
                *gi = F::ZERO;
            }
        }
    }

    /// One training step on one sequence: forward, backward through time,
    /// SGD update.
    pub fn step(
        &mut self,
        g: &mut Self,
        w: &mut RnnWork<F>,
        x: &[[F; I]; T],
        y: &[[F; 1]; T],
        lr: F,
    ) -> F {
        let loss = self.grad(x, y, w, g);
        self.sgd(g, lr);
        loss
    }
}
