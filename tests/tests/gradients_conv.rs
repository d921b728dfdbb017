//! The generated backward pass (f64) of convolutions, poolings and
//! reshapes against central finite differences, with strides, padding,
//! dilation and causal padding, and rank-3 inputs. Inputs are distinct
//! values, so that no pooling window has a tie or a kink near the point.

use nn_runtime::prelude::*;
use nn_tests::check_at_random_points as check;

/// A signal `[2, 9]` of distinct values.
fn signal() -> [[f64; 9]; 2] {
    core::array::from_fn(|c| {
        core::array::from_fn(|i| ((c * 9 + i) as f64 * 0.37).sin() + 0.05 * i as f64)
    })
}

/// An image `[2, 6, 5]` of distinct values, stored flat.
fn image() -> [f64; 60] {
    core::array::from_fn(|i| (i as f64 * 0.53).cos() + 0.01 * i as f64)
}

// conv1d with every setting, a bias, an activation, flattened into a dense layer
#[network { dtype f64; input x[2, 9]; target y[2];
    h = conv1d(x, 3, 3, stride = 2, padding = 2, dilation = 2);
    out = dense(flatten(tanh(h)), 2);
    loss = mse(out, y); }]
pub struct Conv1dNet;

#[test]
fn conv1d_stride_padding_dilation() {
    check::<Conv1dNet>(signal(), [0.3, -0.5]);
    let names: Vec<_> = Conv1dNet::PARAM_INFO.iter().map(|p| p.name).collect();
    assert_eq!(names, ["h.weight", "h.bias", "out.weight", "out.bias"]);
    assert_eq!(Conv1dNet::PARAM_INFO[0].shape, &[3, 2, 3]);
    // the PyTorch module convolves with PyTorch's own function
    assert!(Conv1dNet::PYTORCH_MODULE.contains("F.conv1d("));
}

// a causal convolution keeps the length; two of them stacked
#[network { dtype f64; input x[2, 9]; target y[1];
    h = tanh(conv1d(x, 4, 3, causal));
    g = conv1d(h, 2, 2, dilation = 2, causal);
    out = dense(flatten(g), 1);
    loss = mse(out, y); }]
pub struct CausalNet;

#[test]
fn conv1d_causal() {
    check::<CausalNet>(signal(), [0.4]);
}

// conv2d with padding and a stride, then a max pool and a dense layer
#[network { dtype f64; input x[2, 6, 5]; target y[3];
    h = tanh(conv2d(x, 3, 3, padding = 1));
    p = max_pool2d(h, 2);
    out = dense(flatten(p), 3);
    loss = mse(out, y); }]
pub struct Conv2dNet;

#[test]
fn conv2d_and_max_pool2d() {
    check::<Conv2dNet>(image(), [0.1, -0.2, 0.3]);
    assert_eq!(Conv2dNet::PARAM_INFO[0].shape, &[3, 2, 3, 3]);
}

// a strided conv2d, an average pool with padding, a global average pool
#[network { dtype f64; input x[2, 6, 5]; target y[4];
    h = sigmoid(conv2d(x, 4, 2, stride = 2, dilation = 1));
    a = avg_pool2d(h, 2, 1, padding = 1);
    out = global_avg_pool(a) * 3;
    loss = mse(out, y); }]
pub struct PooledImage;

#[test]
fn conv2d_stride_avg_pool2d_global_avg_pool() {
    check::<PooledImage>(image(), [0.1, -0.2, 0.3, 0.2]);
}

// pools over a signal, overlapping windows, and reshapes
#[network { dtype f64; input x[2, 9]; target y[2];
    m = max_pool1d(x * 2, 3, stride = 2);
    a = avg_pool1d(tanh(conv1d(x, 2, 2)), 2);
    r = reshape(m, 8) * flatten(a);
    g = global_avg_pool(reshape(r, 2, 2, 2));
    out = dense(concat(g, flatten(m)), 2);
    loss = mse(out, y); }]
pub struct PooledSignal;

#[test]
fn pools_and_reshapes_of_a_signal() {
    check::<PooledSignal>(signal(), [0.2, -0.7]);
}

// a rank-3 input in elementwise operations, sums, norms and log-sum-exp
#[network { dtype f64; input x[2, 6, 5]; target y[1]; param s[2, 6, 5] = uniform(-1, 1);
    h = tanh(x * s + 0.5);
    out = dense(flatten(h), 1) + sum(h * h) + norm(h) + logsumexp(x * s) + mean(max(h, 0.1 * h));
    loss = mse(out, y); }]
pub struct Rank3Elementwise;

#[test]
fn rank3_values_elementwise() {
    check::<Rank3Elementwise>(image(), [0.2]);
}
