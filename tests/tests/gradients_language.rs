//! The generated backward pass (f64) against central finite differences for
//! the rest of the language: user functions (three, one of them a custom
//! loss), constants, comparisons and `where`, `min`/`max`/`clamp`, the
//! activations beyond the basic ones, softmax family, transpose, slices,
//! `concat`, `outer`, `dot`, `norm`, axis reductions. The same ops are
//! checked on the graph by nn-macro's reference interpreter; this checks the
//! emitted Rust. Values are chosen away from kinks (`where`, `relu`-like
//! points) so finite differences are meaningful.

use nn_runtime::prelude::*;
use nn_runtime::Rng;

/// Random parameters of size 0.3 to 1.2 with random signs, then a gradient
/// check at three points; the gradient must not be trivially zero.
fn check<N: Network<Scalar = f64>>(input: N::Input, target: N::Target) {
    for seed in 1..=3 {
        let mut net = N::new(seed);
        let mut rng = Rng::new(seed + 10);
        for v in net.params_mut().as_mut_slice() {
            let m = rng.uniform(0.3, 1.2);
            *v = if rng.next_f64() < 0.5 { -m } else { m };
        }
        let opts = GradCheckOptions {
            h: 1e-5,
            ..GradCheckOptions::default()
        };
        let report = check_gradients(&mut net, &input, &target, opts).unwrap();
        assert!(
            report.analytic_norm > 1e-3,
            "seed {seed}: gradient is trivially zero"
        );
        report.assert_within(1e-6);
    }
}

const X4: [f64; 4] = [0.7, -1.3, 0.4, 2.1];

// f(z) = z σ(z) (a gated unit), g(a, b) = Huber loss with δ = 1 (a custom
// loss), h(u) = f(u) - tanh(u) / 2 (a function calling a function).
#[network { dtype f64; const delta = 1; input x[4]; target y[3]; param w[3, 4];
    fn gated(z) = z * sigmoid(z);
    fn huber(a, b) = where(abs(a - b) < delta, 0.5 * square(a - b), delta * (abs(a - b) - 0.5 * delta));
    fn twice(u) = gated(u) - tanh(u) / 2;
    out = twice(w @ x);
    loss = sum(huber(out, y)); }]
pub struct UserFunctions;

#[test]
fn user_functions_and_a_custom_loss() {
    check::<UserFunctions>(X4, [0.3, -2.5, 1.0]);
}

// where/comparisons: the branch taken gets the gradient; min/max/clamp likewise.
#[network { dtype f64; input x[4]; target y[4]; param w[4]; param v[4];
    a = w * x;
    out = where(a > v, a * v, a - v) + min(a, v) + max(w, x) + clamp(a, -0.5, 0.5) + (a <= v) * w;
    loss = mse(out, y); }]
pub struct Selections;

#[test]
fn selections_follow_the_branch_taken() {
    check::<Selections>(X4, [0.1, 0.2, -0.3, 0.4]);
}

#[network { dtype f64; input x[4]; target y[4]; param w[4];
    z = w * x;
    out = leaky_relu(z, 0.1) + elu(z) + gelu(z) + gelu_exact(z) + silu(z) + swish(w) + softsign(z) + softplus(z);
    loss = mse(out, y); }]
pub struct Activations;

#[test]
fn activations() {
    check::<Activations>(X4, [0.5, -0.5, 1.0, 0.0]);
}

#[network { dtype f64; input x[4]; target y[4]; param w[4, 4];
    z = w @ x;
    out = softmax(z) + log_softmax(z) / 4;
    loss = mse(out, y) + logsumexp(z) / 10; }]
pub struct SoftmaxFamily;

#[test]
fn softmax_log_softmax_logsumexp() {
    check::<SoftmaxFamily>(X4, [0.1, 0.2, 0.3, 0.4]);
}

#[network { dtype f64; input x[4]; target y[3]; param a[3, 2]; param b[2, 4]; param u[3]; param v[4];
    m = transpose(a @ b);
    p = outer(u, v);
    out = transpose(m) @ x + p @ x / 4;
    loss = mse(out, y) + dot(u, u) / 10 + norm(v); }]
pub struct MatrixOps;

#[test]
fn transpose_outer_dot_norm() {
    check::<MatrixOps>(X4, [0.2, -0.1, 0.3]);
}

#[network { dtype f64; input x[4]; target y[3]; param u[3]; param v[2];
    h = concat(u, v, x);
    out = h[1:4] * h[5:8] + h[:3];
    loss = mse(out, y); }]
pub struct SlicesConcat;

#[test]
fn slices_and_concat() {
    check::<SlicesConcat>(X4, [0.2, -0.1, 0.3]);
}

#[network { dtype f64; input x[3]; target y[4]; param m[3, 4];
    s0 = sum(m * m, 0);
    s1 = mean(m, 1);
    out = s0 + sum(s1 * x);
    loss = mse(out, y); }]
pub struct AxisReductions;

#[test]
fn sums_and_means_along_an_axis() {
    check::<AxisReductions>([0.5, -1.0, 2.0], [0.1, 0.2, 0.3, 0.4]);
}
