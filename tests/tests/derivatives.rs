//! Derivatives beyond the parameters' gradient, in f64 against central
//! finite differences:
//!
//! - `grad(e, x)` inside a definition: its value against differences of `e`,
//!   and the parameters' gradient of a loss that uses it (a second
//!   derivative of every op family, a third for a derivative taken twice)
//!   against differences of the generated forward pass;
//! - the generated `input_gradient` against differences of the loss in the
//!   input;
//! - the generated `hvp` against differences of the generated gradient along
//!   `v`.
//!
//! Values are chosen away from kinks so that differences are meaningful, and
//! every check requires a derivative that is not trivially zero.

use nn_runtime::prelude::*;
use nn_runtime::Rng;
use nn_tests::check_at_random_points as check;

/// Parameters of size 0.3 to 1.2 with random signs.
fn randomize<N: Network<Scalar = f64>>(net: &mut N, seed: u64) {
    nn_tests::fill_params(net, seed + 10, 0.3, 1.2);
}

/// Central differences of `f` in each coordinate of `x`.
fn differences<const I: usize>(mut f: impl FnMut(&[f64; I]) -> f64, x: &[f64; I]) -> [f64; I] {
    let h = 1e-5;
    let mut d = [0.0; I];
    for i in 0..I {
        let (mut up, mut down) = (*x, *x);
        up[i] += h;
        down[i] -= h;
        d[i] = (f(&up) - f(&down)) / (2.0 * h);
    }
    d
}

/// `|a - b| / max(|a|, |b|, 1e-3)` for every pair is within `tol`, and `a`
/// is not trivially zero.
fn assert_close(what: &str, a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    let norm = a.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!(norm > 1e-3, "{what}: trivially zero ({a:?})");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let rel = (x - y).abs() / x.abs().max(y.abs()).max(1e-3);
        assert!(
            rel <= tol,
            "{what}[{i}]: {x} against {y} (relative error {rel:e})\n{a:?}\n{b:?}"
        );
    }
}

const X4: [f64; 4] = [0.7, -1.3, 0.4, 2.1];
const Y4: [f64; 4] = [0.5, -0.5, 1.0, 0.2];

// ---------------------------------------------------------------------------
// The value of `grad`: the output is `∂e/∂x`, the loss is `e` itself.

#[network { dtype f64; input x[4]; target y[1]; param w[3, 4]; param b[3]; param v[3];
    e = sum(v * tanh(w @ x + b)) + sum(y) * 0.5;
    out = grad(e, x);
    loss = e; }]
pub struct GradValue;

#[test]
fn grad_is_the_derivative_of_its_expression() {
    for seed in 1..=3 {
        let mut net = GradValue::new(seed);
        randomize(&mut net, seed);
        let y = [0.3];
        let mut tape = GradValue::new_tape();
        let numeric = differences(|x| net.loss(x, &y, &mut tape), &X4);
        assert_close("grad(e, x)", &net.predict(&X4), &numeric, 1e-7);
    }
}

// A derivative of a binding (not an input), used in the output and the loss.
#[network { dtype f64; input x[4]; target y[3]; param w[3, 4]; param v[3];
    z = w @ x;
    g = grad(sum(v * sigmoid(z)) + 0.5 * sum(z * z), z);
    out = g + z;
    loss = mse(out, y); }]
pub struct GradOfBinding;

#[test]
fn grad_with_respect_to_a_binding() {
    // ∂/∂z [Σ v σ(z) + ½ Σ z²] = v σ'(z) + z, so out = v σ'(z) + 2z
    let mut net = GradOfBinding::new(1);
    randomize(&mut net, 1);
    let p = net.params().clone();
    let out = net.predict(&X4);
    for (i, out) in out.iter().enumerate() {
        let z: f64 = p.w[i].iter().zip(&X4).map(|(w, x)| w * x).sum();
        let s = 1.0 / (1.0 + (-z).exp());
        let expected = p.v[i] * s * (1.0 - s) + 2.0 * z;
        assert!((out - expected).abs() < 1e-12, "{i}: {out} vs {expected}");
    }
    check::<GradOfBinding>(X4, [0.1, -0.2, 0.3]);
}

// ---------------------------------------------------------------------------
// Second derivatives through `grad`, family by family.

// A gradient penalty: ‖∂out/∂x‖ pushed towards 1.
#[network { dtype f64; input x[4]; target y[2]; param w[3, 4]; param b[3]; param u[2, 3];
    h = tanh(w @ x + b);
    out = u @ h;
    penalty = square(norm(grad(sum(out), x)) - 1);
    loss = mse(out, y) + 0.1 * penalty; }]
pub struct GradientPenalty;

#[test]
fn gradient_penalty() {
    check::<GradientPenalty>(X4, [0.2, -0.4]);
}

// A residual of u'' + u = 0 at one point: a derivative of a derivative, so
// the parameters' gradient takes third derivatives of tanh.
#[network { dtype f64; input x[1]; target y[1]; param w[8]; param b[8]; param v[8];
    u = sum(v * tanh(w * sum(x) + b));
    du = grad(u, x);
    d2u = grad(sum(du), x);
    loss = square(sum(d2u) + u) + mse(du, y); }]
pub struct SecondDerivative;

#[test]
fn derivative_of_a_derivative() {
    check::<SecondDerivative>([0.35], [0.5]);
}

#[network { dtype f64; input x[4]; target y[4]; param w[4];
    z = w * x;
    e = sum(sigmoid(z) + tanh(z) + exp(z / 4) + softplus(z) + gelu(z) + gelu_exact(z) + silu(z) + mish(z));
    loss = mse(grad(e, x), y); }]
pub struct SmoothActivations;

#[test]
fn smooth_activations() {
    check::<SmoothActivations>(X4, Y4);
}

#[network { dtype f64; input x[4]; target y[4]; param w[4];
    z = w * x;
    p = square(z) + 1;
    e = sum(log(p) + sqrt(p) + log1p(p) + expm1(z / 4) + sin(z) + cos(z) + softsign(z) + pow(p, 1.5) + 1 / p);
    loss = mse(grad(e, x), y); }]
pub struct SmoothFunctions;

#[test]
fn smooth_functions() {
    check::<SmoothFunctions>(X4, Y4);
}

// Piecewise functions, evaluated away from their kinks: second derivatives
// are those of the piece taken.
#[network { dtype f64; input x[4]; target y[4]; param w[4]; param c[4];
    z = w * x;
    e = sum(relu(z) * z + abs(z) * z + leaky_relu(z, 0.1) * z + elu(z) * c + hardtanh(z / 4) * z
        + hard_sigmoid(z / 8) * z + where(z > c, z * z, c * z) + min(z, c) * z + max(z, c) * c
        + clamp(z, -0.5, 0.5) * z);
    loss = mse(grad(e, x), y); }]
pub struct PiecewiseFunctions;

#[test]
fn piecewise_functions() {
    check::<PiecewiseFunctions>(X4, Y4);
}

#[network { dtype f64; input x[4]; target y[4]; target label: class[3]; param w[3, 4]; param c[3];
    z = w @ x;
    e = sum(softmax(z) * c) + logsumexp(z) + sum(log_softmax(z) * c) + cross_entropy(z, label);
    out = z;
    loss = mse(grad(e, x), y); }]
pub struct SoftmaxFamily;

#[test]
fn softmax_family_and_cross_entropy() {
    check::<SoftmaxFamily>(X4, (Y4, 2));
}

#[network { dtype f64; input x[4]; target y[4]; param w[3, 4]; param u[2, 3]; param t[2];
    z = w @ x;
    e = mse(u @ z, t) + bce_with_logits(u @ tanh(z), sigmoid(t));
    loss = mse(grad(e, x), y); }]
pub struct Losses;

#[test]
fn losses() {
    check::<Losses>(X4, Y4);
}

#[network { dtype f64; input x[4]; target y[4]; param a[3, 2]; param b[2, 4]; param u[3]; param v[4];
    m = transpose(a @ b);
    h = concat(u, tanh(transpose(m) @ x));
    s = h[1:4] * h[2:5] + outer(u, v) @ x;
    e = sum(s * s) + dot(s, u) + norm(v * x) + sum(mean(outer(u, x) * outer(u, x), 1)) + sum(sum(m * m, 1) * x);
    loss = mse(grad(e, x), y); }]
pub struct StructuralOps;

#[test]
fn transpose_concat_slices_outer_dot_norm_reductions() {
    check::<StructuralOps>(X4, Y4);
}

// ---------------------------------------------------------------------------
// The generated `input_gradient`.

#[network { dtype f64; input x[4]; target label: class[3]; param w[5, 4]; param b[5]; param u[3, 5];
    h = tanh(w @ x + b);
    out = u @ h;
    loss = cross_entropy(out, label); }]
pub struct Classifier;

#[network { dtype f64; input x[4]; input s[2]; target y[2]; param w[2, 4]; param v[2];
    out = sigmoid(w @ x) * s + v;
    loss = mse(out, y); }]
pub struct TwoInputs;

#[test]
fn input_gradient_is_the_derivative_of_the_loss_in_the_input() {
    for seed in 1..=3 {
        let mut net = Classifier::new(seed);
        randomize(&mut net, seed);
        let mut tape = Classifier::new_tape();
        let numeric = differences(|x| net.loss(x, &1, &mut tape), &X4);
        assert_close("classifier", &net.input_gradient(&X4, &1), &numeric, 1e-7);

        let mut net = GradientPenalty::new(seed);
        randomize(&mut net, seed);
        let mut tape = GradientPenalty::new_tape();
        let y = [0.2, -0.4];
        let numeric = differences(|x| net.loss(x, &y, &mut tape), &X4);
        assert_close(
            "gradient penalty",
            &net.input_gradient(&X4, &y),
            &numeric,
            1e-6,
        );

        let mut net = TwoInputs::new(seed);
        randomize(&mut net, seed);
        let mut tape = TwoInputs::new_tape();
        let (s, y) = ([0.5, -1.5], [0.1, 0.3]);
        let (dx, ds) = net.input_gradient(&(X4, s), &y);
        let numeric = differences(|x| net.loss(&(*x, s), &y, &mut tape), &X4);
        assert_close("two inputs, x", &dx, &numeric, 1e-7);
        let numeric = differences(|s| net.loss(&(X4, *s), &y, &mut tape), &s);
        assert_close("two inputs, s", &ds, &numeric, 1e-7);

        // an image input `[2, 4, 3]` (flat), through a convolution's input
        // adjoint and a pooling's
        let mut net = ImageInput::new(seed);
        randomize(&mut net, seed);
        let mut tape = ImageInput::new_tape();
        let x: [f64; 24] = core::array::from_fn(|i| (i as f64 * 0.71).sin() + 0.02 * i as f64);
        let y = [0.3, -0.2];
        let numeric = differences(|x| net.loss(x, &y, &mut tape), &x);
        assert_close("image input", &net.input_gradient(&x, &y), &numeric, 1e-6);
    }
}

#[network { dtype f64; input x[2, 4, 3]; target y[2];
    h = tanh(conv2d(x, 3, 2, padding = 1));
    out = dense(flatten(max_pool2d(h, 2, 1) + avg_pool2d(h, 2, 1)), 2);
    loss = mse(out, y); }]
pub struct ImageInput;

// ---------------------------------------------------------------------------
// The generated `hvp`.

/// `H v` against central differences of the generated gradient along `v`.
fn check_hvp<N: Network<Scalar = f64>>(
    input: N::Input,
    target: N::Target,
    hvp: impl Fn(&N, &N::Params, &mut N::Params),
) {
    for seed in 1..=3 {
        let mut net = N::new(seed);
        randomize(&mut net, seed);
        let mut v = N::new_grads();
        let mut rng = Rng::new(seed + 100);
        for x in v.as_mut_slice() {
            *x = rng.uniform(-1.0, 1.0);
        }
        let mut exact = N::new_grads();
        hvp(&net, &v, &mut exact);
        // hvp adds into its buffer
        hvp(&net, &v, &mut exact);
        let exact: Vec<f64> = exact.as_slice().iter().map(|x| x / 2.0).collect();

        let h = 1e-5;
        let base = net.params().as_slice().to_vec();
        let mut tape = N::new_tape();
        let mut gradient_at = |sign: f64| {
            for ((p, b), d) in net
                .params_mut()
                .as_mut_slice()
                .iter_mut()
                .zip(&base)
                .zip(v.as_slice())
            {
                *p = b + sign * h * d;
            }
            let mut g = N::new_grads();
            net.forward(&input, &target, &mut tape);
            net.backward(&tape, &mut g);
            g.as_slice().to_vec()
        };
        let (up, down) = (gradient_at(1.0), gradient_at(-1.0));
        let numeric: Vec<f64> = up
            .iter()
            .zip(&down)
            .map(|(u, d)| (u - d) / (2.0 * h))
            .collect();
        assert_close("hvp", &exact, &numeric, 1e-6);
    }
}

#[test]
fn hvp_is_the_derivative_of_the_gradient_along_v() {
    check_hvp::<Classifier>(X4, 2, |n, v, out| n.hvp(&X4, &2, v, out));
    let y = [0.2, -0.4];
    check_hvp::<GradientPenalty>(X4, y, |n, v, out| n.hvp(&X4, &y, v, out));
    check_hvp::<StructuralOps>(X4, Y4, |n, v, out| n.hvp(&X4, &Y4, v, out));
    check_hvp::<SoftmaxFamily>(X4, (Y4, 1), |n, v, out| n.hvp(&X4, &(Y4, 1), v, out));
    // the adjoints of convolutions and poolings differentiated again
    let x: [[f64; 6]; 2] = [
        [0.7, -1.3, 0.4, 2.1, -0.2, 0.9],
        [0.3, 1.1, -0.8, 0.5, 1.7, -0.6],
    ];
    check_hvp::<Convolutional>(x, Y4, |n, v, out| n.hvp(&x, &Y4, v, out));
}

// Convolutions (an input and a weight adjoint each), max and average
// pooling, a reshape: the second derivatives run through their adjoints'
// own adjoints.
#[network { dtype f64; input x[2, 6]; target y[4];
    h = tanh(conv1d(x, 3, 2, padding = 1));
    g = conv1d(h, 2, 3, dilation = 2, causal);
    p = max_pool1d(g, 2) + avg_pool1d(g * g, 2);
    out = dense(flatten(p), 4) + dense(global_avg_pool(reshape(h, 3, 7)), 4);
    loss = mse(out, y); }]
pub struct Convolutional;

// An embedding, dropout (the identity here: `hvp` and a new tape are
// inference) and the softmax family along an axis, in `hvp`.
#[network { dtype f64; input tok: class[5]; input x[4]; target t: class[3][4];
    param w[3, 3] = normal(0, 1);
    e = embedding(tok, 3);
    z = w @ outer(tanh(dropout(e, 0.3)), x);
    loss = softmax_cross_entropy(z, t, 0) + sum(logsumexp(z * z, 1)) / 5; }]
pub struct TokensAndAxes;

#[test]
fn hvp_through_an_embedding_and_softmax_along_an_axis() {
    let (input, target) = ((3, X4), [2, 0, 1, 2]);
    check_hvp::<TokensAndAxes>(input, target, |n, v, out| n.hvp(&input, &target, v, out));
}

// The softmax family along an axis inside `grad`, differentiated again.
#[network { dtype f64; input x[4]; target y[4]; param u[3]; param c[3, 4];
    m = outer(u, x);
    e = sum(softmax(m, 0) * c) + sum(logsumexp(m, 1)) + sum(log_softmax(m * c, 1) * c);
    out = m;
    loss = mse(grad(e, x), y); }]
pub struct SoftmaxAxesInGrad;

#[test]
fn softmax_along_an_axis_inside_grad() {
    check::<SoftmaxAxesInGrad>(X4, Y4);
}
