//! Each network's `PYTORCH_MODULE` (the definition as a PyTorch `nn.Module`)
//! computes what the generated code computes. The modules are committed
//! (`fixtures/pytorch/export_<case>.py`, checked equal to the constants
//! here: run with `NN_REGENERATE=1` to rewrite them after a change), and
//! `fixtures/pytorch/make_export.py`, with PyTorch installed, ran them on
//! seeded weights and inputs and saved the outputs, each sample's loss and
//! the gradient of the mean loss by autograd (`export_<case>.safetensors`).
//! This test loads those weights (the same names) and compares `predict`,
//! the losses and the generated backward pass with PyTorch's, in f64.

use nn_runtime::checkpoint::load_renamed;
use nn_runtime::prelude::*;
use safetensors::{Dtype, SafeTensors};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pytorch")
        .join(name)
}

/// The committed module must be the constant (or is rewritten).
fn check_module(case: &str, source: &str) {
    let path = fixture(&format!("export_{case}.py"));
    if std::env::var_os("NN_REGENERATE").is_some() {
        std::fs::write(&path, source).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == source,
        "{} is not the network's PYTORCH_MODULE: regenerate it with NN_REGENERATE=1 \
         and rerun fixtures/pytorch/make_export.py",
        path.display()
    );
}

/// The tensors PyTorch saved for a case.
struct Expected {
    bytes: Vec<u8>,
}

impl Expected {
    fn load(case: &str) -> Self {
        Expected {
            bytes: std::fs::read(fixture(&format!("export_{case}.safetensors"))).unwrap(),
        }
    }

    fn f64s(&self, name: &str) -> Vec<f64> {
        let file = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = file.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        match t.dtype() {
            Dtype::F64 => t
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            Dtype::I64 => t
                .data()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            other => panic!("{name}: {other:?}"),
        }
    }
}

fn close(ours: f64, theirs: f64, what: &str) {
    assert!(
        (ours - theirs).abs() <= 1e-9 * (1.0 + theirs.abs()),
        "{what}: ours {ours}, PyTorch {theirs}"
    );
}

/// Loads the weights, then compares every sample's output and loss and the
/// mean loss's gradient.
fn compare<N: Network<Scalar = f64>>(
    case: &str,
    samples: Vec<(N::Input, N::Target)>,
    flat_output: impl Fn(&N::Output) -> Vec<f64>,
) {
    let expected = Expected::load(case);
    let mut net = N::new(0);
    load_renamed(
        &mut net,
        fixture(&format!("export_{case}.safetensors")),
        |k| k.strip_prefix("param.").map(str::to_owned),
    )
    .unwrap();
    let outputs = expected.f64s("output");
    let losses = expected.f64s("losses");
    let per_output = outputs.len() / samples.len();
    let mut tape = N::new_tape();
    let mut grads = N::new_grads();
    for (i, (x, y)) in samples.iter().enumerate() {
        let out = flat_output(&net.predict(x));
        for (a, b) in out.iter().zip(&outputs[i * per_output..]) {
            close(*a, *b, &format!("{case} output of sample {i}"));
        }
        close(
            net.forward(x, y, &mut tape),
            losses[i],
            &format!("{case} loss of sample {i}"),
        );
        net.backward(&tape, &mut grads);
    }
    for info in N::PARAM_INFO {
        let theirs = expected.f64s(&format!("grad.{}", info.name));
        for (j, (a, b)) in grads.as_slice()[info.range()]
            .iter()
            .zip(&theirs)
            .enumerate()
        {
            close(
                a / samples.len() as f64,
                *b,
                &format!("{case} gradient of {}[{j}]", info.name),
            );
        }
    }
}

/// Inputs `[batch, *shape]` of the case, cut into arrays.
fn rows<const N: usize>(e: &Expected, name: &str) -> Vec<[f64; N]> {
    e.f64s(name)
        .chunks_exact(N)
        .map(|c| c.try_into().unwrap())
        .collect()
}

/// A classifier: softmax cross-entropy on a class target, gelu and softplus.
#[network {
    dtype f64;
    input x[5]; target label: class[3];
    h = gelu(dense(x, 6)) + softplus(dense(x, 6));
    out = dense(h, 3);
    loss = softmax_cross_entropy(out, label);
}]
pub struct Classifier;

#[test]
fn classifier() {
    check_module("classifier", Classifier::PYTORCH_MODULE);
    let e = Expected::load("classifier");
    let labels = e.f64s("target.label");
    let samples = rows::<5>(&e, "input.x")
        .into_iter()
        .zip(labels.iter().map(|&l| l as usize))
        .collect();
    compare::<Classifier>("classifier", samples, |o| o.to_vec());
}

/// Matrix values: a per-sample matrix input, a product with a parameter, row
/// means, slices, concat, softmax and a where.
#[network {
    dtype f64;
    input x[3, 5]; target y[2];
    param w[4, 3] = xavier; param b[4];
    h = tanh(w @ x + b);
    pooled = mean(h, 1);
    feat = concat(pooled[0:2], softmax(pooled));
    out = dense(feat, 2);
    loss = sum(where(abs(out - y) < 1, 0.5 * square(out - y), abs(out - y) - 0.5));
}]
pub struct Pooled;

#[test]
fn matrix_ops() {
    check_module("pooled", Pooled::PYTORCH_MODULE);
    let e = Expected::load("pooled");
    let xs: Vec<[[f64; 5]; 3]> = e
        .f64s("input.x")
        .chunks_exact(15)
        .map(|c| std::array::from_fn(|i| c[i * 5..i * 5 + 5].try_into().unwrap()))
        .collect();
    let samples = xs.into_iter().zip(rows::<2>(&e, "target.y")).collect();
    compare::<Pooled>("pooled", samples, |o| o.to_vec());
}

/// A recurrent network: a GRU-like cell over 5 steps, a learned initial
/// state, a loss on every step's output.
#[network {
    dtype f64;
    steps 5;
    input x[t][3]; target y[t][2];
    param h0[4] = uniform(-0.5, 0.5);
    state h[4] = h0;
    z[t] = sigmoid(dense(x[t], 4) + dense(h[t-1], 4));
    c[t] = tanh(dense(x[t], 4));
    h[t] = (1 - z[t]) * c[t] + z[t] * h[t-1];
    out[t] = dense(h[t], 2);
    loss = mean_steps(mse(out[t], y[t]));
}]
pub struct Recurrent;

#[test]
fn recurrent() {
    check_module("recurrent", Recurrent::PYTORCH_MODULE);
    let e = Expected::load("recurrent");
    let steps = |name: &str, n: usize| -> Vec<Vec<f64>> {
        e.f64s(name)
            .chunks_exact(5 * n)
            .map(<[f64]>::to_vec)
            .collect()
    };
    let samples = steps("input.x", 3)
        .into_iter()
        .zip(steps("target.y", 2))
        .map(|(x, y)| {
            let x: [[f64; 3]; 5] = std::array::from_fn(|t| x[t * 3..t * 3 + 3].try_into().unwrap());
            let y: [[f64; 2]; 5] = std::array::from_fn(|t| y[t * 2..t * 2 + 2].try_into().unwrap());
            (x, y)
        })
        .collect();
    compare::<Recurrent>("recurrent", samples, |o| {
        o.iter().flatten().copied().collect()
    });
}

/// A derivative inside the definition: the loss holds `u''(x)`.
#[network {
    dtype f64;
    input x[1]; target f[1];
    h = tanh(dense(x, 8));
    u = x * (1 - x) * dense(h, 1);
    du = grad(sum(u), x);
    d2u = grad(sum(du), x);
    output u;
    loss = mse(d2u, f);
}]
pub struct Poisson;

#[test]
fn derivatives_inside_the_loss() {
    check_module("poisson", Poisson::PYTORCH_MODULE);
    let e = Expected::load("poisson");
    let samples = rows::<1>(&e, "input.x")
        .into_iter()
        .zip(rows::<1>(&e, "target.f"))
        .collect();
    compare::<Poisson>("poisson", samples, |o| o.to_vec());
}

/// Convolutions and pooling: a causal dilated `conv1d`, a strided one, an
/// average pooling, then (on an image) a padded `conv2d`, a max pooling and
/// a global average, joined through `flatten`.
#[network {
    dtype f64;
    input s[2, 12]; input img[1, 6, 6]; target y[3];
    a = tanh(conv1d(s, 3, 3, dilation = 2, causal));
    b = avg_pool1d(relu(conv1d(a, 4, 3, stride = 2, padding = 1)), 2);
    c = max_pool2d(sigmoid(conv2d(img, 2, 3, padding = 1)), 2);
    g = global_avg_pool(c);
    out = dense(concat(flatten(b), g), 3);
    loss = mse(out, y);
}]
pub struct Convolutional;

#[test]
fn convolutions_and_pooling() {
    check_module("convolutional", Convolutional::PYTORCH_MODULE);
    let e = Expected::load("convolutional");
    let signals: Vec<[[f64; 12]; 2]> = e
        .f64s("input.s")
        .chunks_exact(24)
        .map(|c| std::array::from_fn(|i| c[i * 12..i * 12 + 12].try_into().unwrap()))
        .collect();
    let images = rows::<36>(&e, "input.img");
    let samples = signals
        .into_iter()
        .zip(images)
        .zip(rows::<3>(&e, "target.y"))
        .collect();
    compare::<Convolutional>("convolutional", samples, |o| o.to_vec());
}
