//! The fused SGD step (`sgd_step`: the backward pass seeded with `-lr`,
//! adding straight into the parameters) against its definition: `backward`
//! into zeroed gradients, then `θ -= lr · g`. In f64 the two agree to
//! rounding; the networks are chosen so that the backward pass reads
//! parameters whose own gradient is computed before that read (a dense
//! layer's weight, used again for the adjoint of its input), reads a
//! parameter inside a gradient (`w ⊙ w`), shares a parameter between two
//! uses, and holds a derivative inside the loss.

use nn_runtime::prelude::*;

#[network { dtype f64; input x[6]; target label: class[4];
    h = tanh(dense(x, 5)); n = layer_norm(h); out = dense(n, 4);
    loss = softmax_cross_entropy(out, label); }]
struct Classifier;

#[network { dtype f64; input x[4]; target y[4]; param w[4] = xavier; param v[4, 4] = xavier;
    a = v @ x; b = v @ (w * w * a + x);
    loss = mse(sigmoid(b) * w, y); }]
struct Shared;

#[network { dtype f64; input x[1]; target f[1];
    u = tanh(dense(x, 6)); out = dense(u, 1);
    du = grad(sum(out), x);
    loss = mse(out, f) + 0.1 * sum(du * du); }]
struct WithDerivative;

#[network { dtype f64; steps 3; input x[t][2]; target y[t][1];
    state h[3] = zeros; param wh[3, 3];
    h[t] = tanh(wh @ h[t-1] + dense(x[t], 3)); out[t] = dense(h[t], 1);
    loss = sum_steps(mse(out[t], y[t])); }]
struct Recurrent;

const LR: f64 = 0.05;

/// `sgd_step` against `backward` then `θ -= lr · g`, from the same start.
fn agrees<N: Network<Scalar = f64>>(input: &N::Input, target: &N::Target) {
    let mut fused = N::new(3);
    let mut reference = N::new(3);
    let mut tape = N::new_tape();
    let mut grads = N::new_grads();
    reference.forward(input, target, &mut tape);
    reference.backward(&tape, &mut grads);
    let g = grads.as_slice().to_vec();
    assert!(
        g.iter().filter(|v| v.abs() > 1e-6).count() > g.len() / 2,
        "the gradient is mostly zero: the check would prove little"
    );
    for (p, g) in reference.params_mut().as_mut_slice().iter_mut().zip(&g) {
        *p -= LR * g;
    }
    fused.forward(input, target, &mut tape);
    assert!(
        fused.sgd_step(&tape, LR),
        "a feed-forward network has a fused step"
    );
    for (a, b) in fused
        .params()
        .as_slice()
        .iter()
        .zip(reference.params().as_slice())
    {
        assert!(
            (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
            "fused {a} against {b}"
        );
    }
}

#[test]
fn a_classifier_with_layer_norm_steps_as_backward_then_sgd() {
    agrees::<Classifier>(&[0.3, -1.2, 0.8, 0.05, 2.0, -0.4], &2);
}

#[test]
fn parameters_read_inside_gradients_and_shared_step_as_backward_then_sgd() {
    agrees::<Shared>(&[0.5, -0.7, 1.1, 0.2], &[0.1, 0.9, -0.3, 0.4]);
}

#[test]
fn a_loss_holding_a_derivative_steps_as_backward_then_sgd() {
    agrees::<WithDerivative>(&[0.4], &[0.7]);
}

#[test]
fn steps_of_the_parameter_struct_and_the_network_agree() {
    let x = [0.3, -1.2, 0.8, 0.05, 2.0, -0.4];
    let mut net = Classifier::new(5);
    let mut params = ClassifierParams::new(5);
    let mut tape = Classifier::new_tape();
    net.forward(&x, &1, &mut tape);
    net.sgd_step(&tape, 0.1);
    params.forward(&x, &1, &mut tape);
    params.sgd_step(&tape, 0.1);
    assert_eq!(net.params().as_slice(), params.as_slice());
}

#[test]
fn recurrent_networks_have_no_fused_step_and_change_nothing() {
    let mut net = Recurrent::new(1);
    let before = net.params().as_slice().to_vec();
    let mut tape = Recurrent::new_tape();
    net.forward(&[[0.1, 0.2]; 3], &[[0.3]; 3], &mut tape);
    assert!(!Network::sgd_step(&mut net, &tape, 0.1));
    assert_eq!(net.params().as_slice(), &before[..]);
}

#[test]
fn repeated_fused_steps_learn_xor_in_f32() {
    #[network { input x[2]; target y[1];
        h = sigmoid(dense(x, 4)); out = sigmoid(dense(h, 1)); loss = mse(out, y); }]
    struct Xor;
    let data = [
        ([0.0f32, 0.0], [0.0f32]),
        ([0.0, 1.0], [1.0]),
        ([1.0, 0.0], [1.0]),
        ([1.0, 1.0], [0.0]),
    ];
    let mut net = Xor::new(42);
    let mut tape = Xor::new_tape();
    for _ in 0..4000 {
        for (x, y) in &data {
            net.forward(x, y, &mut tape);
            net.sgd_step(&tape, 2.0);
        }
    }
    for (x, y) in &data {
        let out = net.predict(x)[0];
        assert!((out - y[0]).abs() < 0.2, "xor {x:?} -> {out}");
    }
}
