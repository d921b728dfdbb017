//! Weights trained in PyTorch, loaded into the same network written in the
//! definition language: for each row of the README's import table, a state
//! dict PyTorch saved (`fixtures/pytorch/<case>.safetensors`, written by
//! `fixtures/pytorch/make.py`, names as PyTorch gives them) loads through
//! `checkpoint::load_renamed`, and `predict` gives PyTorch's outputs for the
//! inputs saved beside it.

use nn_runtime::checkpoint::load_renamed;
use nn_runtime::prelude::*;
use safetensors::{Dtype, SafeTensors};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pytorch")
        .join(name)
}

/// The `x` and `y` tensors of `<case>_io.safetensors`, flat.
fn io(case: &str) -> (Vec<f32>, Vec<f32>) {
    let bytes = std::fs::read(fixture(&format!("{case}_io.safetensors"))).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let flat = |name: &str| -> Vec<f32> {
        let t = file.tensor(name).unwrap();
        assert_eq!(t.dtype(), Dtype::F32);
        t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    (flat("x"), flat("y"))
}

/// `predict` against PyTorch, element by element.
fn assert_close(ours: &[f32], theirs: &[f32], what: &str) {
    for (a, b) in ours.iter().zip(theirs) {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "{what}: ours {ours:?}, PyTorch {theirs:?}"
        );
    }
}

/// `nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))`.
#[network {
    input x[4]; target y[3];
    h = tanh(dense(x, 8));
    out = dense(h, 3);
    loss = mse(out, y);
}]
pub struct Linear;

#[test]
fn nn_linear() {
    let mut net = Linear::new(0);
    load_renamed(&mut net, fixture("linear.safetensors"), |k| {
        Some(k.replacen("0.", "h.", 1).replacen("2.", "out.", 1))
    })
    .unwrap();
    let (x, y) = io("linear");
    for (x, y) in x.chunks_exact(4).zip(y.chunks_exact(3)) {
        assert_close(&net.predict(x.try_into().unwrap()), y, "nn.Linear");
    }
}

/// `nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Tanh(), nn.Linear(6, 3))`.
#[network {
    input x[4]; target y[3];
    h = dense(x, 6);
    n = layer_norm(h);
    out = dense(tanh(n), 3);
    loss = mse(out, y);
}]
pub struct LayerNormed;

#[test]
fn nn_layer_norm() {
    let mut net = LayerNormed::new(0);
    load_renamed(&mut net, fixture("layer_norm.safetensors"), |k| {
        Some(
            k.replacen("0.", "h.", 1)
                .replacen("1.", "n.", 1)
                .replacen("3.", "out.", 1),
        )
    })
    .unwrap();
    let (x, y) = io("layer_norm");
    for (x, y) in x.chunks_exact(4).zip(y.chunks_exact(3)) {
        assert_close(&net.predict(x.try_into().unwrap()), y, "nn.LayerNorm");
    }
}

/// `nn.Embedding(10, 4)`, tanh, `nn.Linear(4, 3)`: the state dict's names
/// are the network's (`e.weight`, `out.weight`, `out.bias`).
#[network {
    input tok: class[10]; target y[3];
    e = embedding(tok, 4);
    out = dense(tanh(e), 3);
    loss = mse(out, y);
}]
pub struct Embedded;

#[test]
fn nn_embedding() {
    let mut net = Embedded::new(0);
    load_renamed(&mut net, fixture("embedding.safetensors"), |k| {
        Some(k.to_owned())
    })
    .unwrap();
    let (tokens, y) = io("embedding");
    assert_eq!(tokens.len(), 10);
    for (&tok, y) in tokens.iter().zip(y.chunks_exact(3)) {
        assert_close(&net.predict(&(tok as usize)), y, "nn.Embedding");
    }
}

/// The state dict's names: `rnn.weight_ih_l0` -> `weight_ih_l0`, `head.` -> `out.`.
fn recurrent_names(k: &str) -> Option<String> {
    Some(
        k.strip_prefix("rnn.")
            .map_or_else(|| k.replacen("head.", "out.", 1), str::to_owned),
    )
}

/// The inputs `[batch, T, 3]` as per-step arrays, with the outputs.
fn sequences(case: &str) -> Vec<([[f32; 3]; 6], Vec<f32>)> {
    let (x, y) = io(case);
    x.chunks_exact(18)
        .zip(y.chunks_exact(2))
        .map(|(seq, y)| {
            let mut s = [[0.0; 3]; 6];
            for (step, v) in s.iter_mut().zip(seq.chunks_exact(3)) {
                step.copy_from_slice(v);
            }
            (s, y.to_vec())
        })
        .collect()
}

/// `nn.RNN(3, 5, batch_first=True)` (tanh) and a linear head on the last step.
#[network {
    steps 6;
    input x[t][3]; target y[2];
    param weight_ih_l0[5, 3]; param weight_hh_l0[5, 5];
    param bias_ih_l0[5]; param bias_hh_l0[5];
    state h[5] = zeros;
    h[t] = tanh(weight_ih_l0 @ x[t] + bias_ih_l0 + weight_hh_l0 @ h[t-1] + bias_hh_l0);
    out = dense(h[last], 2);
    loss = mse(out, y);
}]
pub struct Elman;

#[test]
fn nn_rnn() {
    let mut net = Elman::new(0);
    load_renamed(&mut net, fixture("rnn.safetensors"), recurrent_names).unwrap();
    for (x, y) in sequences("rnn") {
        assert_close(&net.predict(&x), &y, "nn.RNN");
    }
}

/// `nn.GRU(3, 5, batch_first=True)`: the gates stacked r, z, n; the
/// candidate's recurrent term `W_hn h + b_hn` is scaled by `r` with its bias.
#[network {
    steps 6;
    input x[t][3]; target y[2];
    param weight_ih_l0[15, 3]; param weight_hh_l0[15, 5];
    param bias_ih_l0[15]; param bias_hh_l0[15];
    state h[5] = zeros;
    gi[t] = weight_ih_l0 @ x[t] + bias_ih_l0;
    gh[t] = weight_hh_l0 @ h[t-1] + bias_hh_l0;
    r[t] = sigmoid(gi[t][0:5] + gh[t][0:5]);
    z[t] = sigmoid(gi[t][5:10] + gh[t][5:10]);
    n[t] = tanh(gi[t][10:15] + r[t] * gh[t][10:15]);
    h[t] = (1 - z[t]) * n[t] + z[t] * h[t-1];
    out = dense(h[last], 2);
    loss = mse(out, y);
}]
pub struct Gru;

#[test]
fn nn_gru() {
    let mut net = Gru::new(0);
    load_renamed(&mut net, fixture("gru.safetensors"), recurrent_names).unwrap();
    for (x, y) in sequences("gru") {
        assert_close(&net.predict(&x), &y, "nn.GRU");
    }
}

/// `nn.LSTM(3, 4, batch_first=True)`: the gates stacked i, f, g, o.
#[network {
    steps 6;
    input x[t][3]; target y[2];
    param weight_ih_l0[16, 3]; param weight_hh_l0[16, 4];
    param bias_ih_l0[16]; param bias_hh_l0[16];
    state h[4] = zeros;
    state c[4] = zeros;
    g4[t] = weight_ih_l0 @ x[t] + bias_ih_l0 + weight_hh_l0 @ h[t-1] + bias_hh_l0;
    i[t] = sigmoid(g4[t][0:4]);
    f[t] = sigmoid(g4[t][4:8]);
    g[t] = tanh(g4[t][8:12]);
    o[t] = sigmoid(g4[t][12:16]);
    c[t] = f[t] * c[t-1] + i[t] * g[t];
    h[t] = o[t] * tanh(c[t]);
    out = dense(h[last], 2);
    loss = mse(out, y);
}]
pub struct Lstm;

#[test]
fn nn_lstm() {
    let mut net = Lstm::new(0);
    load_renamed(&mut net, fixture("lstm.safetensors"), recurrent_names).unwrap();
    for (x, y) in sequences("lstm") {
        assert_close(&net.predict(&x), &y, "nn.LSTM");
    }
}

#[test]
fn renaming_reports_under_the_network_names() {
    // Without the renaming every tensor is missing or unexpected.
    let mut net = Gru::new(0);
    let err = net.load_checkpoint(fixture("gru.safetensors")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("missing tensor `weight_ih_l0`"), "{text}");
    assert!(
        text.contains("unexpected tensor `rnn.weight_ih_l0`"),
        "{text}"
    );
    // Skipping a tensor leaves it missing; two names mapped to one is an error.
    let err = load_renamed(&mut net, fixture("gru.safetensors"), |k| {
        (!k.ends_with("bias_hh_l0"))
            .then(|| recurrent_names(k))
            .flatten()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("missing tensor `bias_hh_l0`"),
        "{err}"
    );
    let err = load_renamed(&mut net, fixture("gru.safetensors"), |k| {
        Some(if k.contains("bias") {
            "bias_ih_l0".to_owned()
        } else {
            recurrent_names(k)?
        })
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("unexpected tensor `bias_ih_l0`"),
        "{err}"
    );
    // Nothing changed by the failed loads.
    assert_eq!(net.params().as_slice(), Gru::new(0).params().as_slice());
}

/// `nn.Sequential(nn.Conv1d(2, 4, 3, stride=2, padding=2, dilation=2),
/// nn.Tanh(), nn.Flatten(), nn.Linear(20, 3))` on signals `[2, 9]`.
#[network {
    input x[2, 9]; target y[3];
    c = tanh(conv1d(x, 4, 3, stride = 2, padding = 2, dilation = 2));
    out = dense(flatten(c), 3);
    loss = mse(out, y);
}]
pub struct Conv1d;

#[test]
fn nn_conv1d() {
    let mut net = Conv1d::new(0);
    load_renamed(&mut net, fixture("conv1d.safetensors"), |k| {
        Some(k.replacen("0.", "c.", 1).replacen("3.", "out.", 1))
    })
    .unwrap();
    let (x, y) = io("conv1d");
    for (x, y) in x.chunks_exact(18).zip(y.chunks_exact(3)) {
        let mut signal = [[0.0; 9]; 2];
        for (row, v) in signal.iter_mut().zip(x.chunks_exact(9)) {
            row.copy_from_slice(v);
        }
        assert_close(&net.predict(&signal), y, "nn.Conv1d");
    }
}

/// `nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
/// nn.Flatten(), nn.Linear(27, 2))` on images `[2, 6, 6]` (flat, row-major).
#[network {
    input x[2, 6, 6]; target y[2];
    c = relu(conv2d(x, 3, 3, padding = 1));
    p = max_pool2d(c, 2);
    out = dense(flatten(p), 2);
    loss = mse(out, y);
}]
pub struct Conv2d;

#[test]
fn nn_conv2d() {
    let mut net = Conv2d::new(0);
    load_renamed(&mut net, fixture("conv2d.safetensors"), |k| {
        Some(k.replacen("0.", "c.", 1).replacen("4.", "out.", 1))
    })
    .unwrap();
    let (x, y) = io("conv2d");
    for (x, y) in x.chunks_exact(72).zip(y.chunks_exact(2)) {
        assert_close(&net.predict(x.try_into().unwrap()), y, "nn.Conv2d");
    }
}

/// `nn.Linear(4, 6)` as `h`, `nn.BatchNorm1d(6)` as `n`, tanh,
/// `nn.Linear(6, 3)` as `out`: the state dict's names are the network's,
/// the running statistics and the batch count (an `I64`) among them.
#[network {
    input x[4]; target y[3];
    h = dense(x, 6);
    n = batch_norm(h);
    out = dense(tanh(n), 3);
    loss = mse(out, y);
}]
pub struct BatchNormed;

#[test]
fn nn_batch_norm_1d() {
    let mut net = BatchNormed::new(0);
    load_renamed(&mut net, fixture("batch_norm.safetensors"), |k| {
        Some(k.to_owned())
    })
    .unwrap();
    assert_eq!(net.params.n_num_batches_tracked, 3.0);
    // inference: PyTorch's eval-mode outputs, from the running statistics
    let (x, y) = io("batch_norm");
    assert_eq!(x.len(), 20);
    for (x, y) in x.chunks_exact(4).zip(y.chunks_exact(3)) {
        let x: [f32; 4] = x.try_into().unwrap();
        assert_close(&net.predict(&x), y, "nn.BatchNorm1d, eval mode");
    }
    // training: a batch of 4 through the batched pass gives PyTorch's
    // train-mode outputs (its loss against them is 0), and the running
    // statistics move as PyTorch's did
    let bytes = std::fs::read(fixture("batch_norm_train.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let flat = |name: &str| -> Vec<f32> {
        file.tensor(name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let (xt, yt) = (flat("x"), flat("y"));
    let xs: [[f32; 4]; 4] = core::array::from_fn(|j| xt[4 * j..4 * j + 4].try_into().unwrap());
    let ys: [[f32; 3]; 4] = core::array::from_fn(|j| yt[3 * j..3 * j + 3].try_into().unwrap());
    let mut tape = BatchNormed::new_batch_tape::<4>();
    let loss = net.forward_batch(&xs, &ys, &mut tape);
    assert!(
        loss < 1e-10,
        "train-mode outputs differ from PyTorch's: loss {loss}"
    );
    // the same batch normalised with the running statistics is far from them
    let mut eval = BatchNormed::new_batch_tape::<4>();
    eval.set_batch_statistics(false);
    assert!(net.forward_batch(&xs, &ys, &mut eval) > 1e-3);
    assert!(net.update_running_stats(&mut tape));
    assert_close(
        &net.params.n_running_mean,
        &flat("running_mean"),
        "running mean",
    );
    assert_close(
        &net.params.n_running_var,
        &flat("running_var"),
        "running variance",
    );
    assert_eq!(net.params.n_num_batches_tracked, 4.0);
}

/// `nn.Conv2d(1, 3, 3, padding=1)` as `c`, `nn.BatchNorm2d(3)` as `n`, tanh,
/// flattened, `nn.Linear(48, 2)` as `out`: each channel's statistics over
/// the batch and the image's positions.
#[network {
    input x[1, 4, 4]; target y[2];
    c = conv2d(x, 3, 3, padding = 1);
    n = batch_norm(c);
    out = dense(flatten(tanh(n)), 2);
    loss = mse(out, y);
}]
pub struct BatchNormed2d;

#[test]
fn nn_batch_norm_2d() {
    let mut net = BatchNormed2d::new(0);
    load_renamed(&mut net, fixture("batch_norm2d.safetensors"), |k| {
        Some(k.to_owned())
    })
    .unwrap();
    assert_eq!(net.params.n_num_batches_tracked, 3.0);
    // inference: PyTorch's eval-mode outputs, from the running statistics
    let (x, y) = io("batch_norm2d");
    for (x, y) in x.chunks_exact(16).zip(y.chunks_exact(2)) {
        let x: [f32; 16] = x.try_into().unwrap();
        assert_close(&net.predict(&x), y, "nn.BatchNorm2d, eval mode");
    }
    // training: a batch of 4 through the batched pass gives PyTorch's
    // train-mode outputs, and the running statistics move as PyTorch's did
    let bytes = std::fs::read(fixture("batch_norm2d_train.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let flat = |name: &str| -> Vec<f32> {
        file.tensor(name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let (xt, yt) = (flat("x"), flat("y"));
    let xs: [[f32; 16]; 4] = core::array::from_fn(|j| xt[16 * j..16 * j + 16].try_into().unwrap());
    let ys: [[f32; 2]; 4] = core::array::from_fn(|j| yt[2 * j..2 * j + 2].try_into().unwrap());
    let mut tape = BatchNormed2d::new_batch_tape::<4>();
    let loss = net.forward_batch(&xs, &ys, &mut tape);
    assert!(
        loss < 1e-10,
        "train-mode outputs differ from PyTorch's: loss {loss}"
    );
    assert!(net.update_running_stats(&mut tape));
    assert_close(
        &net.params.n_running_mean,
        &flat("running_mean"),
        "running mean",
    );
    assert_close(
        &net.params.n_running_var,
        &flat("running_var"),
        "running variance",
    );
}
