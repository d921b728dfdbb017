//! ONNX export: each network's exported model, loaded by an independent
//! inference engine (tract), computes what `predict` computes, on random
//! inputs and a batch of several samples at once; a network that cannot be
//! exported says why.

use nn_runtime::onnx::{Export, Unsupported};
use nn_runtime::prelude::*;
use nn_tests::Lcg;
use std::path::PathBuf;
use tract_onnx::prelude::*;

/// The largest error allowed, relative to the largest magnitude of the
/// sample's output (the engine's own `exp`, `sigmoid`, `tanh` and `erf`
/// are approximations of a few f32 ulps).
const TOL: f64 = 1e-5;

/// A value of the network's input or output: nested `f32` arrays.
trait Floats {
    fn floats(&self, out: &mut Vec<f32>);
    fn dims(dims: &mut Vec<usize>);
}

impl Floats for f32 {
    fn floats(&self, out: &mut Vec<f32>) {
        out.push(*self);
    }
    fn dims(_: &mut Vec<usize>) {}
}

impl<T: Floats, const N: usize> Floats for [T; N] {
    fn floats(&self, out: &mut Vec<f32>) {
        for x in self {
            x.floats(out);
        }
    }
    fn dims(dims: &mut Vec<usize>) {
        dims.push(N);
        T::dims(dims);
    }
}

/// A network's input: one array, or a tuple of them (one ONNX input each).
trait Inputs: Sized {
    /// Each input's values, and its dimensions.
    fn parts(&self) -> Vec<(Vec<f32>, Vec<usize>)>;
    /// A random input.
    fn random(rng: &mut Lcg) -> Self;
}

fn part<T: Floats>(x: &T) -> (Vec<f32>, Vec<usize>) {
    let mut v = vec![];
    x.floats(&mut v);
    let mut d = vec![];
    T::dims(&mut d);
    (v, d)
}

trait Random {
    fn random(rng: &mut Lcg) -> Self;
}

impl Random for f32 {
    fn random(rng: &mut Lcg) -> Self {
        rng.uniform(-2.0, 2.0) as f32
    }
}

impl<T: Random, const N: usize> Random for [T; N] {
    fn random(rng: &mut Lcg) -> Self {
        std::array::from_fn(|_| T::random(rng))
    }
}

impl<T: Floats + Random, const N: usize> Inputs for [T; N] {
    fn parts(&self) -> Vec<(Vec<f32>, Vec<usize>)> {
        vec![part(self)]
    }
    fn random(rng: &mut Lcg) -> Self {
        Random::random(rng)
    }
}

impl Inputs for f32 {
    fn parts(&self) -> Vec<(Vec<f32>, Vec<usize>)> {
        vec![part(self)]
    }
    fn random(rng: &mut Lcg) -> Self {
        Random::random(rng)
    }
}

impl<A: Floats + Random, B: Floats + Random> Inputs for (A, B) {
    fn parts(&self) -> Vec<(Vec<f32>, Vec<usize>)> {
        vec![part(&self.0), part(&self.1)]
    }
    fn random(rng: &mut Lcg) -> Self {
        (A::random(rng), B::random(rng))
    }
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nn-onnx-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

/// Exports `net`, runs the model in tract on `batch` random inputs at once
/// and compares each sample's output with `predict`; returns the largest
/// relative error seen.
fn check<N>(net: &N, name: &str, batch: usize, seed: u64) -> f64
where
    N: Network<Scalar = f32>,
    N::Input: Inputs,
    N::Output: Floats,
{
    let path = temp(&format!("{name}.onnx"));
    net.save_onnx(&path).expect("exports");
    let model = tract_onnx::onnx()
        .model_for_path(&path)
        .expect("tract reads the model")
        .into_optimized()
        .expect("tract optimises the model")
        .into_runnable()
        .expect("tract plans the model");
    let mut rng = Lcg::new(seed);
    let samples: Vec<N::Input> = (0..batch).map(|_| N::Input::random(&mut rng)).collect();
    let n_inputs = samples[0].parts().len();
    let mut inputs = TVec::new();
    for k in 0..n_inputs {
        let mut data = vec![];
        let mut shape = vec![batch];
        for (j, s) in samples.iter().enumerate() {
            let (v, d) = s.parts().swap_remove(k);
            if j == 0 {
                shape.extend(d);
            }
            data.extend(v);
        }
        let t = tract_ndarray::ArrayD::from_shape_vec(shape, data).expect("input shape");
        inputs.push(Tensor::from(t).into());
    }
    let outputs = model.run(inputs).expect("tract runs the model");
    let got = outputs[0]
        .to_array_view::<f32>()
        .expect("f32 output")
        .iter()
        .copied()
        .collect::<Vec<f32>>();
    let per = got.len() / batch;
    let mut worst: f64 = 0.0;
    for (j, s) in samples.iter().enumerate() {
        let want = {
            let mut v = vec![];
            net.predict(s).floats(&mut v);
            v
        };
        assert_eq!(want.len(), per, "{name}: output size");
        let scale = want.iter().fold(0f64, |m, &x| m.max(f64::from(x).abs()));
        for (i, (&a, &b)) in got[j * per..(j + 1) * per].iter().zip(&want).enumerate() {
            let err = f64::from(a - b).abs() / scale.max(f64::MIN_POSITIVE);
            assert!(
                err <= TOL,
                "{name}: sample {j}, output {i}: tract {a}, predict {b} (relative error {err:.2e})"
            );
            worst = worst.max(err);
        }
    }
    eprintln!("{name}: largest relative error {worst:.2e} over {batch} samples");
    worst
}

/// A network trained for a few steps (so its weights are not the initial ones).
fn trained<N: Network<Scalar = f32>>(seed: u64) -> N {
    let mut net = N::new(seed);
    // perturb every weight a little, deterministically
    let mut rng = Lcg::new(seed ^ 0xabc);
    for w in net.params_mut().as_mut_slice() {
        *w += rng.uniform(-0.1, 0.1) as f32;
    }
    net
}

#[network(file = "nets/xor.nn")]
pub struct Xor;

#[network {
    input x[64];
    target label: class[10];
    h = relu(dense(x, 32, he));
    logits = dense(h, 10);
    loss = softmax_cross_entropy(logits, label);
}]
pub struct Digits;

#[test]
fn xor_and_digits() {
    check(&trained::<Xor>(1), "xor", 7, 1);
    check(&trained::<Digits>(2), "digits", 5, 2);
}

#[network {
    input x[6];
    target label: class[5];
    z = dense(tanh(dense(x, 8)), 5);
    p = softmax(z);
    output p;
    loss = softmax_cross_entropy(z, label);
}]
pub struct Softmax;

#[network {
    input x[6];
    target label: class[5];
    z = dense(gelu(dense(x, 8)), 5);
    lp = log_softmax(z);
    output lp;
    loss = softmax_cross_entropy(z, label);
}]
pub struct LogSoftmax;

#[test]
fn softmax_log_softmax() {
    check(&trained::<Softmax>(3), "softmax", 6, 3);
    check(&trained::<LogSoftmax>(4), "log_softmax", 6, 4);
}

#[network {
    input x[5];
    target y[48];
    h = dense(x, 6);
    out = concat(tanh(h), relu(h), gelu(h), gelu_exact(h), silu(h), elu(h), leaky_relu(h, 0.1), swish(h));
    loss = mse(out, y);
}]
pub struct Activations1;

#[network {
    input x[5];
    target y[48];
    h = dense(x, 6);
    out = concat(softsign(h), mish(h), hardtanh(h), hard_sigmoid(h * 3), sin(h), cos(h), abs(h), square(h));
    loss = mse(out, y);
}]
pub struct Activations2;

#[network {
    input x[5];
    target y[48];
    h = dense(x, 6);
    out = concat(softplus(h), sqrt(softplus(h)), log(sigmoid(h)), exp(h), log1p(abs(h)), expm1(h), pow(h, 3), pow(softplus(h) + 0.5, 0.7));
    loss = mse(out, y);
}]
pub struct Activations3;

#[network {
    input x[5];
    target y[12];
    h = dense(x, 6);
    out = concat(log1p(h * 0.0001), expm1(h * 0.0001));
    loss = mse(out, y);
}]
pub struct NearZero;

#[network {
    input x[5];
    target y[6];
    h = dense(x, 6);
    out = softplus(h - 30);
    loss = mse(out, y);
}]
pub struct SoftplusTail;

#[network {
    input x[4];
    input s;
    target y[35];
    h = dense(x, 5);
    g = dense(x, 5);
    out = concat(min(h, g), max(h, g), clamp(h, -0.5, 0.5), where(h > g, h, g * 2),
                 (h < g) + (h >= 0.1) - (g <= 0) + (h == h) + 2 * (h != g),
                 h / (1 + g * g), s * h - s);
    loss = mse(out, y);
}]
pub struct Selections;

#[test]
fn elementwise_functions() {
    check(&trained::<Activations1>(5), "activations1", 6, 5);
    check(&trained::<Activations2>(6), "activations2", 6, 6);
    check(&trained::<Activations3>(7), "activations3", 6, 7);
    check(&trained::<Selections>(8), "selections", 6, 8);
}

/// `log1p`, `expm1` near 0 and `softplus` far below 0 keep their small
/// results (ONNX's `Softplus` and a plain `ln(1 + x)` would not).
#[test]
fn small_results_keep_their_precision() {
    check(&trained::<NearZero>(9), "near_zero", 6, 9);
    check(&trained::<SoftplusTail>(10), "softplus_tail", 6, 10);
}

#[network {
    input x[3, 5];
    target y[19];
    param w[4, 3] = xavier;
    param b[4];
    param m[5, 2] = xavier;
    h = tanh(w @ x + b);
    pooled = mean(h, 1);
    colsum = sum(h, 0);
    v = transpose(h) @ pooled;
    u = pooled @ h;
    hm = sum(h @ m, 0);
    sq = sum(h @ transpose(h), 1);
    o = sum(outer(pooled, colsum) * h);
    out = concat(v, u, hm * norm(h), sq - logsumexp(h) + dot(pooled, colsum[0:4]) + o + mean(x), pooled[1:4] * sum(x));
    loss = mse(out, y);
}]
pub struct Matrices;

#[network {
    input t;
    target y[2];
    param w[4] = uniform(-1, 1);
    param c[4] = uniform(-1, 1);
    h = tanh(t * w + c);
    out = dense(h, 2);
    loss = mse(out, y);
}]
pub struct ScalarInput;

#[network {
    input x[4];
    target y;
    out = sum(sigmoid(dense(x, 3)));
    loss = (out - y) ^ 2;
}]
pub struct ScalarOutput;

#[test]
fn matrices_reductions_scalars() {
    check(&trained::<Matrices>(11), "matrices", 5, 11);
    check(&trained::<ScalarInput>(12), "scalar_input", 5, 12);
    check(&trained::<ScalarOutput>(13), "scalar_output", 5, 13);
}

#[network {
    input x[3];
    target f[3];
    h = tanh(dense(x, 8));
    u = dense(h, 1);
    du = grad(sum(u), x);
    output du;
    loss = mse(du, f);
}]
pub struct InputGradient;

#[network {
    input x[3];
    target f[3];
    z = dense(x, 4);
    g = grad(logsumexp(z) + norm(x) + sum(log_softmax(z) * z) + sum(softmax(z) * z), x);
    output g;
    loss = mse(g, f);
}]
pub struct SecondOrder;

#[test]
fn derivatives_inside_the_definition() {
    check(&trained::<InputGradient>(14), "input_gradient", 5, 14);
    check(&trained::<SecondOrder>(15), "second_order", 5, 15);
}
