//! Hand-written training steps of the benchmark networks, the way a
//! competent engineer would write them without the library: fixed-size
//! arrays, straightforward loops, the chain rule worked out by hand. Batches
//! are matrix-matrix loops over feature-major `[[f32; B]; features]` data.
//!
//! The benchmarks run them side by side with the generated code, and
//! `tests/handwritten.rs` checks their gradients against the generated
//! networks' on the same weights.

// Index loops on purpose: this is the textbook code the benchmarks compare with.
#![allow(clippy::needless_range_loop)]

use nn_runtime::Zeroable;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `xor` by hand: 2 -> 4 sigmoid -> 1 sigmoid, MSE. Fields in the generated
/// network's order (`h.weight`, `h.bias`, `out.weight`, `out.bias`).
#[repr(C)]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct XorHand {
    pub w1: [[f32; 2]; 4],
    pub b1: [f32; 4],
    pub w2: [[f32; 4]; 1],
    pub b2: [f32; 1],
}

impl XorHand {
    /// Parameters from a flat slice in declaration order.
    pub fn from_flat(p: &[f32]) -> Self {
        let mut s = Self::default();
        copy_in(
            &mut [
                s.w1.as_flattened_mut(),
                &mut s.b1,
                s.w2.as_flattened_mut(),
                &mut s.b2,
            ],
            p,
        );
        s
    }

    /// The parameters as one flat vector in declaration order.
    pub fn to_flat(&self) -> Vec<f32> {
        [
            self.w1.as_flattened(),
            &self.b1,
            self.w2.as_flattened(),
            &self.b2,
        ]
        .concat()
    }

    /// Loss of one sample; adds its gradient into `g`.
    pub fn grad(&self, x: &[f32; 2], y: &[f32; 1], g: &mut Self) -> f32 {
        let mut h = [0.0f32; 4];
        for j in 0..4 {
            let mut z = self.b1[j];
            for i in 0..2 {
                z += self.w1[j][i] * x[i];
            }
            h[j] = sigmoid(z);
        }
        let mut z2 = self.b2[0];
        for j in 0..4 {
            z2 += self.w2[0][j] * h[j];
        }
        let out = sigmoid(z2);
        let diff = out - y[0];
        let dz2 = 2.0 * diff * out * (1.0 - out);
        g.b2[0] += dz2;
        for j in 0..4 {
            g.w2[0][j] += dz2 * h[j];
            let dz1 = dz2 * self.w2[0][j] * h[j] * (1.0 - h[j]);
            g.b1[j] += dz1;
            for i in 0..2 {
                g.w1[j][i] += dz1 * x[i];
            }
        }
        diff * diff
    }

    /// `θ -= lr · g`, then `g = 0`.
    pub fn sgd(&mut self, g: &mut Self, lr: f32) {
        sgd(
            &mut [
                self.w1.as_flattened_mut(),
                &mut self.b1,
                self.w2.as_flattened_mut(),
                &mut self.b2,
            ],
            &mut [
                g.w1.as_flattened_mut(),
                &mut g.b1,
                g.w2.as_flattened_mut(),
                &mut g.b2,
            ],
            lr,
        );
    }

    /// One training step on one sample: gradient, then SGD update.
    pub fn step(&mut self, g: &mut Self, x: &[f32; 2], y: &[f32; 1], lr: f32) -> f32 {
        let loss = self.grad(x, y, g);
        self.sgd(g, lr);
        loss
    }
}

/// `I -> H relu -> O`, softmax cross-entropy, by hand (digits: 64-32-10,
/// mnist: 784-128-10). Fields in the generated network's order.
#[repr(C)]
#[derive(Clone, Debug, PartialEq)]
pub struct MlpHand<const I: usize, const H: usize, const O: usize> {
    pub w1: [[f32; I]; H],
    pub b1: [f32; H],
    pub w2: [[f32; H]; O],
    pub b2: [f32; O],
}

// SAFETY: a `#[repr(C)]` struct of `f32` arrays: all zeros is a valid value.
unsafe impl<const I: usize, const H: usize, const O: usize> Zeroable for MlpHand<I, H, O> {}

/// What the batched step keeps between its passes, feature-major
/// (`[feature][sample]`), allocated once by the caller.
#[repr(C)]
pub struct MlpBatchWork<const H: usize, const O: usize, const B: usize> {
    /// Hidden activations `relu(W1 X + b1)`.
    pub h: [[f32; B]; H],
    /// Logits `W2 H + b2`, then their adjoint `softmax - onehot`.
    pub z2: [[f32; B]; O],
    /// Adjoint of the hidden activations, then of their pre-activations.
    pub dh: [[f32; B]; H],
}

// SAFETY: a `#[repr(C)]` struct of `f32` arrays: all zeros is a valid value.
unsafe impl<const H: usize, const O: usize, const B: usize> Zeroable for MlpBatchWork<H, O, B> {}

impl<const I: usize, const H: usize, const O: usize> MlpHand<I, H, O> {
    /// All-zero parameters (or gradients), on the heap.
    pub fn zeroed() -> Box<Self> {
        Self::zeroed_box()
    }

    /// Parameters from a flat slice in declaration order.
    pub fn from_flat(p: &[f32]) -> Box<Self> {
        let mut s = Self::zeroed();
        copy_in(
            &mut [
                s.w1.as_flattened_mut(),
                &mut s.b1,
                s.w2.as_flattened_mut(),
                &mut s.b2,
            ],
            p,
        );
        s
    }

    /// The parameters as one flat vector in declaration order.
    pub fn to_flat(&self) -> Vec<f32> {
        [
            self.w1.as_flattened(),
            &self.b1,
            self.w2.as_flattened(),
            &self.b2,
        ]
        .concat()
    }

    /// Loss of one sample; adds its gradient into `g`.
    pub fn grad(&self, x: &[f32; I], label: usize, g: &mut Self) -> f32 {
        let mut h = [0.0f32; H];
        for j in 0..H {
            let mut z = self.b1[j];
            for i in 0..I {
                z += self.w1[j][i] * x[i];
            }
            h[j] = z.max(0.0);
        }
        let mut z2 = [0.0f32; O];
        for k in 0..O {
            let mut z = self.b2[k];
            for j in 0..H {
                z += self.w2[k][j] * h[j];
            }
            z2[k] = z;
        }
        let m = z2.iter().fold(f32::NEG_INFINITY, |m, &z| m.max(z));
        let mut s = 0.0;
        for k in 0..O {
            s += (z2[k] - m).exp();
        }
        let lse = m + s.ln();
        let mut dh = [0.0f32; H];
        for k in 0..O {
            let dz = (z2[k] - lse).exp() - if k == label { 1.0 } else { 0.0 };
            g.b2[k] += dz;
            for j in 0..H {
                g.w2[k][j] += dz * h[j];
                dh[j] += self.w2[k][j] * dz;
            }
        }
        for j in 0..H {
            let dz = if h[j] > 0.0 { dh[j] } else { 0.0 };
            g.b1[j] += dz;
            for i in 0..I {
                g.w1[j][i] += dz * x[i];
            }
        }
        lse - z2[label]
    }

    /// Summed loss of a batch (`x[feature][sample]`); adds the summed
    /// gradient into `g`. Matrix-matrix loops: `H = relu(W1 X + b1)`,
    /// `Z = W2 H + b2`, `dZ = softmax(Z) - onehot`, `dW2 += dZ Hᵀ`,
    /// `dH = W2ᵀ dZ ⊙ (H > 0)`, `dW1 += dH Xᵀ`.
    pub fn grad_batch<const B: usize>(
        &self,
        x: &[[f32; B]; I],
        labels: &[usize; B],
        w: &mut MlpBatchWork<H, O, B>,
        g: &mut Self,
    ) -> f32 {
        for j in 0..H {
            let row = &mut w.h[j];
            *row = [self.b1[j]; B];
            for i in 0..I {
                let wji = self.w1[j][i];
                for b in 0..B {
                    row[b] += wji * x[i][b];
                }
            }
            for v in row.iter_mut() {
                *v = v.max(0.0);
            }
        }
        for k in 0..O {
            let row = &mut w.z2[k];
            *row = [self.b2[k]; B];
            for j in 0..H {
                let wkj = self.w2[k][j];
                for b in 0..B {
                    row[b] += wkj * w.h[j][b];
                }
            }
        }
        let mut loss = 0.0;
        for b in 0..B {
            let mut m = f32::NEG_INFINITY;
            for k in 0..O {
                m = m.max(w.z2[k][b]);
            }
            let mut s = 0.0;
            for k in 0..O {
                s += (w.z2[k][b] - m).exp();
            }
            let lse = m + s.ln();
            loss += lse - w.z2[labels[b]][b];
            for k in 0..O {
                w.z2[k][b] = (w.z2[k][b] - lse).exp() - if k == labels[b] { 1.0 } else { 0.0 };
            }
        }
        for row in w.dh.iter_mut() {
            *row = [0.0; B];
        }
        for k in 0..O {
            let dz = &w.z2[k];
            g.b2[k] += dz.iter().sum::<f32>();
            for j in 0..H {
                let mut s = 0.0;
                for b in 0..B {
                    s += dz[b] * w.h[j][b];
                }
                g.w2[k][j] += s;
                let wkj = self.w2[k][j];
                for b in 0..B {
                    w.dh[j][b] += wkj * dz[b];
                }
            }
        }
        for j in 0..H {
            for b in 0..B {
                if w.h[j][b] <= 0.0 {
                    w.dh[j][b] = 0.0;
                }
            }
            let dz = &w.dh[j];
            g.b1[j] += dz.iter().sum::<f32>();
            for i in 0..I {
                let mut s = 0.0;
                for b in 0..B {
                    s += dz[b] * x[i][b];
                }
                g.w1[j][i] += s;
            }
        }
        loss
    }

    /// `θ -= lr · g`, then `g = 0`.
    pub fn sgd(&mut self, g: &mut Self, lr: f32) {
        sgd(
            &mut [
                self.w1.as_flattened_mut(),
                &mut self.b1,
                self.w2.as_flattened_mut(),
                &mut self.b2,
            ],
            &mut [
                g.w1.as_flattened_mut(),
                &mut g.b1,
                g.w2.as_flattened_mut(),
                &mut g.b2,
            ],
            lr,
        );
    }

    /// One training step on one sample.
    pub fn step(&mut self, g: &mut Self, x: &[f32; I], label: usize, lr: f32) -> f32 {
        let loss = self.grad(x, label, g);
        self.sgd(g, lr);
        loss
    }

    /// One training step on a batch: summed gradient, one SGD update.
    pub fn step_batch<const B: usize>(
        &mut self,
        g: &mut Self,
        w: &mut MlpBatchWork<H, O, B>,
        x: &[[f32; B]; I],
        labels: &[usize; B],
        lr: f32,
    ) -> f32 {
        let loss = self.grad_batch(x, labels, w, g);
        self.sgd(g, lr);
        loss
    }
}

fn copy_in(fields: &mut [&mut [f32]], mut p: &[f32]) {
    for f in fields.iter_mut() {
        let (head, rest) = p.split_at(f.len());
        f.copy_from_slice(head);
        p = rest;
    }
    assert!(p.is_empty(), "{} values left over", p.len());
}

fn sgd(params: &mut [&mut [f32]], grads: &mut [&mut [f32]], lr: f32) {
    for (p, g) in params.iter_mut().zip(grads.iter_mut()) {
        for (pi, gi) in p.iter_mut().zip(g.iter_mut()) {
            *pi -= lr * *gi;
            *gi = 0.0;
        }
    }
}

/// `digits` by hand.
pub type DigitsHand = MlpHand<64, 32, 10>;
/// `mnist` by hand.
pub type MnistHand = MlpHand<784, 128, 10>;

/// A batch in feature-major layout (`[feature][sample]`) from per-sample rows.
pub fn feature_major<const I: usize, const B: usize>(rows: &[[f32; I]]) -> Box<[[f32; B]; I]> {
    assert_eq!(rows.len(), B);
    let mut out = vec![[0.0f32; B]; I].into_boxed_slice();
    for (b, row) in rows.iter().enumerate() {
        for (i, &v) in row.iter().enumerate() {
            out[i][b] = v;
        }
    }
    out.try_into().expect("I rows")
}
