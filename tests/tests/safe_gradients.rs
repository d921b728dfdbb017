//! Gradients are never NaN where the value is finite and a derivative
//! exists in the limit: a branch `where` does not select passes no
//! derivative (not `0 · inf = NaN`), `norm` at zero has a zero gradient,
//! and `norm` of tiny or huge f32 vectors stays finite where the result is
//! representable. Each case is also checked against finite differences
//! where the function is smooth, so "finite" never hides "wrong".

use nn_runtime::prelude::*;

fn gradient<N: Network>(net: &N, x: &N::Input, y: &N::Target) -> (N::Scalar, Vec<N::Scalar>) {
    let mut tape = N::new_tape();
    let mut grads = N::new_grads();
    let loss = net.forward(x, y, &mut tape);
    net.backward(&tape, &mut grads);
    (loss, grads.as_slice().to_vec())
}

// sqrt and log of a negative number, 1/0: all in branches `where` does not
// take, at some elements; in the branch it takes at the others.
#[network { dtype f64; input x[4]; target y[4]; param w[4];
    z = w * x;
    out = where(z > 0, sqrt(z), 0) + where(z > 0, log(z), -z) + where(z != 0, 1 / z, 0);
    loss = mse(out, y); }]
pub struct DoubleWhere;

#[test]
fn the_branch_not_taken_passes_no_derivative() {
    let mut net = DoubleWhere::new(1);
    net.params_mut().w = [1.0, -1.0, 0.5, 1.0];
    // z = [2, -3, 0, -0.5]: sqrt, log and 1/z are NaN, -inf or inf where not taken
    let x = [2.0, 3.0, 0.0, 0.5];
    let y = [0.1, 0.2, 0.3, 0.4];
    let (loss, g) = gradient(&net, &x, &y);
    assert!(loss.is_finite());
    assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
    // z = 0: every branch taken is constant in w (the `-z` of the log's
    // other branch is `w x` with x = 0), so the gradient is exactly 0
    assert_eq!(g[2], 0.0);
    // away from the kinks the gradient is the derivative
    let opts = GradCheckOptions {
        h: 1e-6,
        ..GradCheckOptions::default()
    };
    let report = check_gradients(&mut net, &x, &y, opts).unwrap();
    assert!(report.analytic_norm > 1e-3);
    report.assert_within(1e-6);
}

// The same inside `grad`: the parameters' gradient of a derivative that
// has a branch not taken.
#[network { dtype f64; input x[4]; target y[4]; param w[4];
    z = w * x;
    d = grad(sum(where(z > 0, sqrt(z), 0) + where(z > 0, log(z), 0)), x);
    output d;
    loss = mse(d, y); }]
pub struct DoubleWhereInGrad;

#[test]
fn the_branch_not_taken_passes_no_second_derivative() {
    let mut net = DoubleWhereInGrad::new(1);
    net.params_mut().w = [1.0, -1.0, 0.5, 1.0];
    let x = [2.0, 3.0, 0.0, 0.5];
    let y = [0.1, 0.2, 0.3, 0.4];
    let d = net.predict(&x);
    assert!(d.iter().all(|v| v.is_finite()), "{d:?}");
    assert_eq!(d[1], 0.0);
    let (_, g) = gradient(&net, &x, &y);
    assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
    let report = check_gradients(&mut net, &x, &y, GradCheckOptions::default()).unwrap();
    assert!(report.analytic_norm > 1e-3);
    report.assert_within(1e-6);
}

#[network { input x[4]; target y[1]; param v[4]; param s[1];
    out = s * norm(v * x);
    loss = mse(out, y); }]
pub struct Norm32;

#[test]
fn norm_at_zero_has_a_zero_gradient() {
    let mut net = Norm32::new(1);
    net.params_mut().v = [0.0; 4];
    net.params_mut().s = [1.5];
    let (loss, g) = gradient(&net, &[1.0, 2.0, 3.0, 4.0], &[1.0]);
    assert_eq!(loss, 1.0);
    // ∂/∂v is 0 (the limit PyTorch takes), ∂/∂s is 2 (0 - 1) ‖v x‖ = 0
    assert_eq!(g, vec![0.0; 5]);
}

#[test]
fn norm_of_tiny_and_huge_f32_vectors_is_finite() {
    let mut net = Norm32::new(1);
    for scale in [1e-30f32, 1e-20, 1e20, 1e30] {
        // ‖[a, a, a, a]‖ = 2a, whose square under- or overflows in f32
        net.params_mut().v = [scale; 4];
        net.params_mut().s = [1.0 / scale];
        let out = net.predict(&[1.0; 4]);
        assert!((out[0] - 2.0).abs() < 1e-6, "scale {scale}: {out:?}");
        let (loss, g) = gradient(&net, &[1.0; 4], &[1.0]);
        assert!((loss - 1.0).abs() < 1e-5, "scale {scale}: loss {loss}");
        // ∂loss/∂v_i = 2 (out - y) s v_i / ‖v‖ = 2 · (1/a) · 1/2
        for gi in &g[..4] {
            let expected = 1.0 / scale;
            assert!(
                gi.is_finite() && (gi / expected - 1.0).abs() < 1e-5,
                "scale {scale}: {g:?}"
            );
        }
    }
}
