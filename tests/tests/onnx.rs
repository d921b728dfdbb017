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
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("onnx");
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
    check_shaped(net, name, batch, seed, None)
}

/// [`check`], the one input's per-sample dimensions given (an image
/// `[c, h, w]` is a flat array in Rust).
fn check_shaped<N>(net: &N, name: &str, batch: usize, seed: u64, dims: Option<&[usize]>) -> f64
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
                shape.extend(dims.map_or(d, <[usize]>::to_vec));
            }
            data.extend(v);
        }
        let t = tract_ndarray::ArrayD::from_shape_vec(shape, data).expect("input shape");
        inputs.push(Tensor::from(t).into());
    }
    let outputs = model.run(inputs).expect("tract runs the model");
    // the samples and `predict`'s outputs beside the model, for other engines
    let mut record = String::from("{\"inputs\": [");
    for k in 0..n_inputs {
        let (mut data, mut shape) = (vec![], vec![batch]);
        for (j, s) in samples.iter().enumerate() {
            let (v, d) = s.parts().swap_remove(k);
            if j == 0 {
                shape.extend(dims.map_or(d, <[usize]>::to_vec));
            }
            data.extend(v);
        }
        let sep = if k > 0 { ", " } else { "" };
        record += &format!("{sep}{{\"shape\": {shape:?}, \"data\": {data:?}}}");
    }
    let predicted: Vec<f32> = samples
        .iter()
        .flat_map(|s| {
            let mut v = vec![];
            net.predict(s).floats(&mut v);
            v
        })
        .collect();
    record += &format!("], \"predict\": {predicted:?}}}");
    std::fs::write(temp(&format!("{name}.json")), record).expect("writes the record");
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

#[network {
    input x[6];
    target y[3];
    h = dense(x, 8);
    n = layer_norm(h);
    out = dense(tanh(n), 3);
    loss = mse(out, y);
}]
pub struct LayerNormed;

#[test]
fn softmax_log_softmax() {
    check(&trained::<Softmax>(3), "softmax", 6, 3);
    check(&trained::<LogSoftmax>(4), "log_softmax", 6, 4);
}

// the softmax family along each axis of a per-sample matrix of logits
#[network {
    input x[3, 4];
    target t: class[5][4];
    param w[5, 3] = xavier;
    param v[5, 5] = xavier;
    z = w @ x;
    p = softmax(z, 0) + log_softmax(v @ z, 1) / 3 + sum(logsumexp(z, 0)) + logsumexp(tanh(z), 1);
    output p;
    loss = softmax_cross_entropy(z, t, 0);
}]
pub struct SoftmaxAxes;

#[test]
fn softmax_family_along_an_axis() {
    check(&trained::<SoftmaxAxes>(5), "softmax_axes", 6, 5);
}

#[test]
fn layer_norm() {
    check(&trained::<LayerNormed>(5), "layer_norm", 6, 5);
}

// vectors tiled along the rows (a per-sample one) and the columns (a shared one)
#[network {
    input x[4];
    target y[3];
    param w[3, 4] = xavier;
    param u[3] = uniform(-1, 1);
    m = tanh(w * tile_rows(x, 3) + tile_cols(u, 4));
    out = sum(m, 1);
    loss = mse(out, y);
}]
pub struct Tiled;

#[test]
fn tiles() {
    check(&trained::<Tiled>(6), "tiles", 6, 6);
}

// Convolutions (`Conv`, with strides, padding, dilation and causal
// padding), poolings (`MaxPool`, `AveragePool`), reshapes (`Reshape`), a
// bias along a signal's rows.
#[network {
    input x[2, 9];
    target y[3];
    h = tanh(conv1d(x, 3, 3, stride = 2, padding = 2, dilation = 2));
    c = conv1d(h, 2, 2, causal);
    m = max_pool1d(c, 3, stride = 1, padding = 1) + avg_pool1d(c, 3, 1, padding = 1);
    g = global_avg_pool(c);
    out = dense(concat(flatten(m), g), 3);
    loss = mse(out, y);
}]
pub struct Signal;

#[network {
    input x[2, 6, 5];
    target label: class[4];
    h = relu(conv2d(x, 4, 3, padding = 1));
    p = max_pool2d(h, 3, 2, padding = 1) + avg_pool2d(h, 3, 2, padding = 1);
    q = conv2d(p, 3, 2, stride = 2, padding = 1);
    logits = dense(flatten(q), 4) + dense(global_avg_pool(reshape(p, 4, 9)), 4);
    loss = softmax_cross_entropy(logits, label);
}]
pub struct Image;

#[test]
fn convolutions_poolings_reshapes() {
    check(&trained::<Signal>(6), "signal", 5, 6);
    check_shaped(&trained::<Image>(7), "image", 4, 7, Some(&[2, 6, 5]));
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

#[network {
    steps 6;
    input x[t][2];
    target y[t][1];
    state h[3] = zeros;
    param wh[3, 3] = xavier;
    h[t] = tanh(wh @ h[t-1] + dense(x[t], 3));
    out[t] = dense(h[t], 1);
    loss = mean_steps(mse(out[t], y[t]));
}]
pub struct Elman;

#[network {
    steps 5;
    input  x[t][3];
    target y[t][2];
    state h[4] = zeros;
    state c[4] = zeros;
    param ui[4, 4] = xavier; param uf[4, 4] = xavier;
    param uo[4, 4] = xavier; param ug[4, 4] = xavier;
    i[t] = sigmoid(dense(x[t], 4) + ui @ h[t-1]);
    f[t] = sigmoid(dense(x[t], 4) + uf @ h[t-1] + 1);
    o[t] = sigmoid(dense(x[t], 4) + uo @ h[t-1]);
    g[t] = tanh(dense(x[t], 4) + ug @ h[t-1]);
    c[t] = f[t] * c[t-1] + i[t] * g[t];
    h[t] = o[t] * tanh(c[t]);
    out[t] = dense(h[t], 2);
    loss = mean_steps(mse(out[t], y[t]));
}]
pub struct Lstm;

#[network {
    steps 7;
    input x[t][2];
    target y[1];
    param h0[5] = uniform(-0.5, 0.5);
    state h[5] = h0;
    param uz[5, 5] = xavier; param ur[5, 5] = xavier; param uh[5, 5] = xavier;
    z[t] = sigmoid(dense(x[t], 5) + uz @ h[t-1]);
    r[t] = sigmoid(dense(x[t], 5) + ur @ h[t-1]);
    n[t] = tanh(dense(x[t], 5) + uh @ (r[t] * h[t-1]));
    h[t] = (1 - z[t]) * n[t] + z[t] * h[t-1];
    out = dense(h[last], 1);
    loss = mse(out, y);
}]
pub struct Gru;

#[network {
    steps 4;
    input x[t][3];
    input ctx[2];
    target y[2];
    state h[4] = constant(0.5);
    h[t] = tanh(dense(concat(x[t], ctx), 4) + h[t-1]);
    pooled = mean_steps(h[t]) + sum_steps(h[t] * h[t]);
    out = dense(pooled, 2);
    loss = mse(out, y);
}]
pub struct Pooled;

#[test]
fn recurrent_networks_unrolled() {
    check(&trained::<Elman>(16), "elman", 5, 16);
    check(&trained::<Lstm>(17), "lstm", 5, 17);
    check(&trained::<Gru>(18), "gru", 5, 18);
    check(&trained::<Pooled>(19), "pooled", 5, 19);
}

/// A model file holds every parameter under its name in the definition,
/// with its current value: a change of weights changes the file.
#[test]
fn the_file_holds_the_current_weights_under_their_names() {
    let mut net = trained::<Xor>(20);
    let bytes = net.to_onnx().expect("exports");
    for name in ["h.weight", "h.bias", "out.weight", "out.bias"] {
        assert!(
            bytes.windows(name.len()).any(|w| w == name.as_bytes()),
            "{name} in the model"
        );
    }
    let w = net.params.h_weight[1][0];
    assert!(bytes.windows(4).any(|b| b == w.to_le_bytes()));
    net.params.h_weight[1][0] = 123.25;
    let changed = net.to_onnx().expect("exports");
    assert_ne!(bytes, changed);
    assert!(changed.windows(4).any(|b| b == 123.25f32.to_le_bytes()));
    // and tract sees the new weight
    check(&net, "xor_changed", 3, 20);
}

#[test]
fn non_finite_weights_and_unwritable_paths_are_errors() {
    let mut net = trained::<Xor>(21);
    net.params.out_bias[0] = f32::NAN;
    let e = net.to_onnx().expect_err("NaN");
    assert!(
        matches!(
            e,
            OnnxError::NonFinite {
                param: "out.bias",
                index: 0,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("`out.bias`"), "{e}");

    let net = trained::<Xor>(21);
    let path = temp("no-such-dir").join("xor.onnx");
    let e = net.save_onnx(&path).expect_err("no directory");
    assert!(matches!(e, OnnxError::Io { .. }), "{e}");
    assert!(e.to_string().contains("no-such-dir"), "{e}");
    assert!(std::error::Error::source(&e).is_some());

    // a failed save keeps the previous file
    let path = temp("kept.onnx");
    net.save_onnx(&path).expect("saves");
    let before = std::fs::read(&path).expect("reads");
    let mut broken = trained::<Xor>(22);
    broken.params.h_bias[2] = f32::INFINITY;
    broken.save_onnx(&path).expect_err("inf");
    assert_eq!(std::fs::read(&path).expect("reads"), before);
}

/// A definition whose output reads no input has no batch size to take: the
/// export says so (naming the operation) instead of writing a model.
#[network {
    param w[2] = uniform(-1, 1);
    target y[2];
    out = w * 2;
    loss = mse(out, y);
}]
pub struct NoInput;

#[test]
fn a_graph_onnx_cannot_express_is_a_clear_error() {
    let e = NoInput::new(1)
        .save_onnx(temp("no_input.onnx"))
        .expect_err("unsupported");
    assert!(matches!(e, OnnxError::Unsupported { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "`NoInput` cannot be exported to ONNX: `output` (computing `out`): the network has no input to take the batch size from"
    );
    assert!(!temp("no_input.onnx").exists());
    assert!(matches!(
        NoInput::ONNX,
        Export::Unsupported(Unsupported {
            network: "NoInput",
            ..
        })
    ));
}

/// An embedding: its token an `int64` input, its rows gathered (`Gather`).
#[network {
    input tok: class[10];
    input x[3];
    target y[2];
    e = embedding(tok, 4);
    out = dense(tanh(dense(x, 4) + e), 2);
    loss = mse(out, y);
}]
pub struct Embedded;

/// The tokens `[batch, *shape]` (an `int64` input) and the values `[batch,
/// *shape]` of each sample through the exported model in tract, against
/// `predict` (`out` its output, flat).
fn check_tokens<N>(
    net: &N,
    name: &str,
    samples: &[N::Input],
    tokens: (Vec<usize>, Vec<i64>),
    x: (Vec<usize>, Vec<f32>),
    out: impl Fn(&N::Input) -> Vec<f32>,
) where
    N: Network<Scalar = f32>,
{
    let path = temp(&format!("{name}.onnx"));
    net.save_onnx(&path).expect("exports");
    // decluttered, not optimised: tract's code generation fails on a table
    // gathered at several steps (it repacks the constant it gathers from)
    let model = tract_onnx::onnx()
        .model_for_path(&path)
        .expect("tract reads the model")
        .into_typed()
        .expect("tract types the model")
        .into_decluttered()
        .expect("tract declutters the model")
        .into_runnable()
        .expect("tract plans the model");
    let tok = tract_ndarray::ArrayD::from_shape_vec(tokens.0, tokens.1).expect("shape");
    let mut inputs: TVec<TValue> = tvec!(Tensor::from(tok).into());
    if !x.1.is_empty() {
        let x = tract_ndarray::ArrayD::from_shape_vec(x.0, x.1).expect("shape");
        inputs.push(Tensor::from(x).into());
    }
    let outputs = model.run(inputs).expect("tract runs the model");
    let got: Vec<f32> = outputs[0]
        .to_array_view::<f32>()
        .expect("f32 output")
        .iter()
        .copied()
        .collect();
    let per = got.len() / samples.len();
    for (j, s) in samples.iter().enumerate() {
        let want = out(s);
        assert_eq!(want.len(), per);
        for (a, b) in got[per * j..per * (j + 1)].iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{name}, sample {j}: tract {a}, predict {b}"
            );
        }
    }
}

#[test]
fn an_embedding_gathers_the_tokens_rows() {
    let net = trained::<Embedded>(25);
    let mut rng = Lcg::new(25);
    let samples: Vec<(usize, [f32; 3])> = (0..10)
        .map(|k| ((k * 7) % 10, <[f32; 3] as Random>::random(&mut rng)))
        .collect();
    let tok = samples.iter().map(|s| s.0 as i64).collect();
    let x = samples.iter().flat_map(|s| s.1).collect();
    check_tokens(
        &net,
        "embedded",
        &samples,
        (vec![10], tok),
        (vec![10, 3], x),
        |s| net.predict(s).to_vec(),
    );
}

/// A token per step, embedded at each step of a recurrent network.
#[network {
    steps 5;
    input tok[t]: class[7];
    target y[t][2];
    state h[6] = zeros;
    e[t] = embedding(tok[t], 6);
    h[t] = tanh(dense(h[t-1], 6) + e[t]);
    out[t] = dense(h[t], 2);
    loss = mean_steps(mse(out[t], y[t]));
}]
pub struct TokenRnn;

#[test]
fn tokens_per_step_are_embedded_at_each_step() {
    let net = trained::<TokenRnn>(26);
    let samples: Vec<[usize; 5]> = (0..4)
        .map(|j| std::array::from_fn(|t| (3 * j + 5 * t + 1) % 7))
        .collect();
    let tok = samples.iter().flatten().map(|&k| k as i64).collect();
    check_tokens(
        &net,
        "token_rnn",
        &samples,
        (vec![4, 5], tok),
        (vec![], vec![]),
        |s| net.predict(s).iter().flatten().copied().collect(),
    );
}

/// Dropout is the identity in inference, and so in the exported model.
#[network {
    input x[6];
    target y[3];
    h = dropout(tanh(dense(x, 8)), 0.3);
    out = dense(dropout(h, 0.5) * 2, 3);
    loss = mse(out, y);
}]
pub struct Dropped;

#[test]
fn dropout_exports_as_the_identity() {
    check(&trained::<Dropped>(24), "dropout", 5, 24);
}

/// A batch norm exports in inference mode: its running statistics are
/// initialisers under PyTorch's names.
#[network {
    input x[5];
    target y[2];
    a = dense(x, 6);
    h = batch_norm(a);
    out = dense(tanh(h), 2);
    loss = mse(out, y);
}]
pub struct BatchNormed;

#[test]
fn batch_norm_exports_with_its_running_statistics() {
    let mut net = trained::<BatchNormed>(25);
    // statistics far from the initial ones, so that using them matters
    net.params.h_running_mean = [0.3, -0.5, 0.1, 0.8, -0.2, 0.05];
    net.params.h_running_var = [0.4, 2.5, 1.2, 0.7, 3.0, 0.9];
    net.params.h_num_batches_tracked = 12.0;
    check(&net, "batch_norm", 6, 25);
    let bytes = net.to_onnx().unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("h.running_mean") && text.contains("h.running_var"));
    assert!(!text.contains("num_batches_tracked"));
}

/// Batch norms over a signal's and an image's channels: each channel's
/// running statistics along its row of positions.
#[network {
    input s[2, 6];
    target y[2];
    c = conv1d(s, 3, 3, padding = 1);
    n = batch_norm(c);
    out = dense(flatten(tanh(n)), 2);
    loss = mse(out, y);
}]
pub struct SignalNormed;

#[network {
    input img[1, 4, 4];
    target y[2];
    g = conv2d(img, 2, 3, padding = 1);
    m = batch_norm(g);
    out = dense(flatten(tanh(m)), 2);
    loss = mse(out, y);
}]
pub struct ImageNormed;

#[test]
fn batch_norms_over_channels_export() {
    let mut net = trained::<SignalNormed>(26);
    net.params.n_running_mean = [0.3, -0.5, 0.1];
    net.params.n_running_var = [0.4, 2.5, 1.2];
    check(&net, "batch_norm_signal", 6, 26);
    let mut net = trained::<ImageNormed>(27);
    net.params.m_running_mean = [-0.2, 0.6];
    net.params.m_running_var = [0.7, 1.9];
    check_shaped(&net, "batch_norm_image", 6, 27, Some(&[1, 4, 4]));
}

/// An output that does not depend on the input is repeated for every sample.
#[network {
    input x[3];
    param w[2] = uniform(-1, 1);
    target y[2];
    out = tanh(w * 2);
    loss = mse(out, y) + mean(x) * 0.001;
}]
pub struct ConstantOutput;

#[test]
fn an_output_without_the_input_is_broadcast_over_the_batch() {
    check(&trained::<ConstantOutput>(23), "constant_output", 4, 23);
}

#[network {
    input x[3];
    target y[4];
    h = dense(x, 4);
    out = h + 2 * h + sin(h) + cos(h) * h + 3 + h / 7 - h * h + abs(h);
    loss = mse(out, y);
}]
pub struct LongSum;

#[test]
fn long_sums_are_one_node() {
    check(&trained::<LongSum>(24), "long_sum", 5, 24);
    let Export::Graph(g) = LongSum::ONNX else {
        panic!("exports")
    };
    let nodes = g.nodes().expect("parses");
    assert!(
        nodes.iter().any(|n| n.op == "Sum" && n.inputs.len() >= 5),
        "{nodes:?}"
    );
}

#[network {
    dtype f64;
    input x[4];
    target label: class[3];
    h = tanh(dense(x, 5));
    r = relu(dense(h, 5));
    logits = dense(r, 3);
    p = log_softmax(logits);
    output p;
    loss = softmax_cross_entropy(logits, label);
}]
pub struct Double;

/// An `f64` network is a `DOUBLE` model: tract runs it (for the operators it
/// implements in double precision) to within the rounding of f64.
#[test]
fn f64_networks_are_double_models() {
    let mut net = Double::new(25);
    let mut rng = Lcg::new(25);
    for w in net.params_mut().as_mut_slice() {
        *w += rng.uniform(-0.1, 0.1);
    }
    let path = temp("double.onnx");
    net.save_onnx(&path).expect("exports");
    let model = tract_onnx::onnx()
        .model_for_path(&path)
        .expect("reads")
        .into_optimized()
        .expect("optimises")
        .into_runnable()
        .expect("plans");
    let xs: Vec<[f64; 4]> = (0..4)
        .map(|_| std::array::from_fn(|_| rng.uniform(-2.0, 2.0)))
        .collect();
    let flat: Vec<f64> = xs.iter().flatten().copied().collect();
    let t = tract_ndarray::ArrayD::from_shape_vec(vec![4, 4], flat).expect("shape");
    let out = model.run(tvec!(Tensor::from(t).into())).expect("runs");
    let got: Vec<f64> = out[0]
        .to_array_view::<f64>()
        .expect("f64")
        .iter()
        .copied()
        .collect();
    let mut worst: f64 = 0.0;
    for (j, x) in xs.iter().enumerate() {
        let want = net.predict(x);
        let scale = want.iter().fold(0f64, |m, x| m.max(x.abs()));
        for i in 0..3 {
            let err = (got[3 * j + i] - want[i]).abs() / scale;
            assert!(
                err < 1e-12,
                "sample {j}: {} against {}",
                got[3 * j + i],
                want[i]
            );
            worst = worst.max(err);
        }
    }
    eprintln!("double: largest relative error {worst:.2e}");
}

/// A state whose update reads nothing of the step (one value for every
/// sample) and one that copies another state.
#[network {
    steps 4;
    input x[t][2];
    target y[t][2];
    param w[2] = uniform(-1, 1);
    state k[2] = zeros;
    state m[2] = constant(0.25);
    k[t] = w * 2;
    m[t] = k[t-1];
    out[t] = dense(x[t], 2) + m[t-1];
    loss = mean_steps(mse(out[t], y[t]));
}]
pub struct SharedState;

#[test]
fn states_shared_by_the_batch_and_chained() {
    let net = trained::<SharedState>(26);
    // m[t] = k[t-1]: m is 0.25, then k's initial 0, then 2 w
    let out = net.predict(&[[0.0; 2]; 4]);
    let (w, b) = (net.params.w, net.params.out_bias);
    let want = [0.25, 0.0, 2.0 * w[0], 2.0 * w[0]].map(|m| b[0] + m);
    for t in 0..4 {
        assert!(
            (out[t][0] - want[t]).abs() < 1e-6,
            "step {t}: {out:?} against {want:?}"
        );
    }
    check(&net, "shared_state", 3, 26);
}

/// Derivatives through slices, concatenation, matrix products and norms:
/// the adjoint operations (`Pad`, products with a transposed operand).
#[network {
    input x[2, 3];
    input v[4];
    target f[10];
    param w[4, 2] = xavier;
    y = tanh(w @ x);
    a = dense(v, 5);
    ga = grad(sum(concat(a[0:2], a[3:5]) * a[1:5]) + norm(a) + sum(log_softmax(a) * a), v);
    gx = grad(sum(y @ transpose(x)) + sum(sum(y, 1) * v), x);
    out = concat(ga, sum(gx, 1), sum(gx, 0) * 0.5, ga[0:1]);
    loss = mse(out, f);
}]
pub struct AdjointOps;

#[test]
fn adjoint_operations_inside_the_definition() {
    let net = trained::<AdjointOps>(27);
    let Export::Graph(g) = AdjointOps::ONNX else {
        panic!("exports")
    };
    let ops: Vec<&str> = g.nodes().expect("parses").iter().map(|n| n.op).collect();
    for op in ["Pad", "Transpose", "MatMul", "LogSoftmax"] {
        assert!(ops.contains(&op), "{op} in {ops:?}");
    }
    check(&net, "adjoint_ops", 4, 27);
}
