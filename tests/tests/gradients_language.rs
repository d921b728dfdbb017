//! The generated backward pass (f64) against central finite differences for
//! the rest of the language: user functions (three, one of them a custom
//! loss), constants, comparisons and `where`, `min`/`max`/`clamp`, the
//! activations beyond the basic ones, softmax family, transpose, slices,
//! `concat`, `outer`, `dot`, `norm`, axis reductions. The same ops are
//! checked on the graph by nn-macro's reference interpreter; this checks the
//! emitted Rust. Values are chosen away from kinks (`where`, `relu`-like
//! points) so finite differences are meaningful.

use nn_runtime::prelude::*;
use nn_tests::check_at_random_points as check;

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

// The elementwise functions added as single table entries: log1p(u) = ln(1 + u)
// (∂ = 1 / (1 + u)), expm1(u) = eᵘ - 1 (∂ = eᵘ), mish(u) = u tanh(softplus(u))
// (∂ = tanh(sp) + u sech²(sp) σ(u)), hardtanh(u) = clamp(u, -1, 1) (∂ = 1 inside,
// 0 outside), hard_sigmoid(u) = clamp(u / 6 + 1/2, 0, 1) (∂ = 1/6 inside).
#[network { dtype f64; input x[4]; target y[3]; param w[3, 4];
    z = w @ x / 4;
    out = log1p(z * z) + expm1(z) + mish(z) + hardtanh(2 * z) + hard_sigmoid(9 * z);
    loss = mse(out, y); }]
pub struct TableActivations;

#[test]
fn log1p_expm1_mish_hardtanh_hard_sigmoid() {
    check::<TableActivations>(X4, [0.3, -2.5, 1.0]);
}

#[network { dtype f64; input x[2]; target y[4];
    out = concat(log1p(x) - x, expm1(x) - x); loss = mse(out, y); }]
pub struct NearZero;

#[network { dtype f64; input x[5]; target y[5]; param s = constant(1);
    out = hardtanh(s * x) + 10 * hard_sigmoid(s * x) + 100 * mish(s * x); loss = sum(out * y); }]
pub struct Hard5;

/// Values against closed forms, and the derivative at the saturation
/// points is 0 (PyTorch's convention for `hardtanh` and `hardsigmoid`).
#[test]
fn table_activations_take_their_closed_form_values() {
    let xs = [-3.0, -1.0, 0.25, 1.0, 3.0];
    let net = Hard5::new(0);
    let out = net.predict(&xs);
    for (x, o) in xs.iter().zip(out) {
        let mish = x * (1.0f64 + x.exp()).ln().tanh();
        let want = x.clamp(-1.0, 1.0) + 10.0 * (x / 6.0 + 0.5).clamp(0.0, 1.0) + 100.0 * mish;
        assert!((o - want).abs() < 1e-12, "at {x}: {o} vs {want}");
    }
    // ∂loss/∂s = Σ y_i x_i (hardtanh'(x_i) + 10 hard_sigmoid'(x_i) + 100 mish'(x_i));
    // with y = e_k, only x_k's term: at ±1 and ±3 the hard functions add 0
    for (k, x) in xs.iter().enumerate() {
        let mut y = [0.0; 5];
        y[k] = 1.0;
        let mut tape = Hard5::new_tape();
        let mut g = Hard5::new_grads();
        net.forward(&xs, &y, &mut tape);
        net.backward(&tape, &mut g);
        let (sp, s) = ((1.0f64 + x.exp()).ln(), 1.0 / (1.0 + (-x).exp()));
        let dmish = sp.tanh() + x * (1.0 - sp.tanh().powi(2)) * s;
        let inside = |lo: f64, hi: f64| if *x > lo && *x < hi { 1.0 } else { 0.0 };
        let want = x * (inside(-1.0, 1.0) + 10.0 * inside(-3.0, 3.0) / 6.0 + 100.0 * dmish);
        assert!((g.s - want).abs() < 1e-9, "at {x}: {} vs {want}", g.s);
    }
    // log1p and expm1 keep their digits near 0, where ln(1 + x) and eˣ - 1
    // lose them: log1p(x) - x ≈ -x²/2 and expm1(x) - x ≈ x²/2 to 1e-6 relative
    let tiny = [1e-10, -3e-9];
    let out = NearZero::new(0).predict(&tiny);
    for (k, x) in tiny.iter().enumerate() {
        let half = x * x / 2.0;
        assert!(
            (out[k] + half).abs() < 1e-6 * half,
            "log1p at {x}: {}",
            out[k]
        );
        assert!(
            (out[k + 2] - half).abs() < 1e-6 * half,
            "expm1 at {x}: {}",
            out[k + 2]
        );
    }
}

// layer_norm: centring, scaling by 1/√(var + ε), a learned scale and shift.
#[network { dtype f64; input x[4]; target y[3];
    h = dense(x, 5);
    n = layer_norm(h);
    out = dense(tanh(n), 3);
    loss = mse(out, y); }]
pub struct LayerNormed;

#[test]
fn layer_norm() {
    check::<LayerNormed>(X4, [0.3, -0.8, 0.5]);
    // PyTorch's names (its values: nn-runtime/tests/pytorch_import.rs)
    let names = LayerNormed::PARAM_INFO
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>();
    assert_eq!(
        names,
        [
            "h.weight",
            "h.bias",
            "n.weight",
            "n.bias",
            "out.weight",
            "out.bias"
        ]
    );
}

// The softmax family along an axis of a matrix: a distribution over each
// column (axis 0) or row (axis 1), and the cross-entropy of a matrix of
// logits against a class index per column or per row.
#[network { dtype f64; input x[3, 4]; target y[4]; param w[3, 3];
    z = w @ x;
    out = sum(softmax(z, 0) * x + log_softmax(z, 1) / 4, 0) + logsumexp(z, 0) / 10;
    loss = mse(out, y) + sum(logsumexp(z * x, 1)) / 7; }]
pub struct SoftmaxAxes;

#[test]
fn softmax_log_softmax_logsumexp_along_an_axis() {
    let x = [
        [0.7, -1.3, 0.4, 2.1],
        [0.2, 0.5, -0.9, 1.1],
        [-0.4, 1.6, 0.3, -0.8],
    ];
    check::<SoftmaxAxes>(x, [0.3, -0.8, 0.5, 0.1]);
}

#[network { dtype f64; input x[3, 4]; target t: class[5][4]; param w[5, 3] = normal(0, 1);
    z = w @ x;
    loss = softmax_cross_entropy(z, t, 0); }]
pub struct CrossEntropyPerColumn;

#[network { dtype f64; input x[3, 4]; target t: class[5][4]; param w[5, 3] = normal(0, 1);
    z = transpose(w @ x);
    loss = cross_entropy(z, t, 1); }]
pub struct CrossEntropyPerRow;

#[test]
fn cross_entropy_of_a_class_per_column_or_row() {
    let x = [
        [0.7, -1.3, 0.4, 2.1],
        [0.2, 0.5, -0.9, 1.1],
        [-0.4, 1.6, 0.3, -0.8],
    ];
    check::<CrossEntropyPerColumn>(x, [4, 0, 2, 1]);
    check::<CrossEntropyPerRow>(x, [4, 0, 2, 1]);
    // the same loss either way: the mean of the columns' cross-entropies,
    // each what the vector form gives
    let (a, mut b) = (CrossEntropyPerColumn::new(3), CrossEntropyPerRow::new(3));
    b.params.w = a.params.w;
    let la = a.forward(&x, &[4, 0, 2, 1], &mut CrossEntropyPerColumn::new_tape());
    let lb = b.forward(&x, &[4, 0, 2, 1], &mut CrossEntropyPerRow::new_tape());
    assert!((la - lb).abs() < 1e-12, "{la} vs {lb}");
    let z = a.params.predict(&x);
    let mut expected = 0.0;
    for (j, &c) in [4usize, 0, 2, 1].iter().enumerate() {
        let col: Vec<f64> = (0..5).map(|i| z[i][j]).collect();
        let m = col.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + col.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        expected += (lse - col[c]) / 4.0;
    }
    assert!((la - expected).abs() < 1e-12, "{la} vs {expected}");
    // a class index out of range is a target error naming its position
    let e = CrossEntropyPerColumn::check_target(&[4, 0, 5, 1]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "class label 5 of `t` at position 2 is not below its 5 classes"
    );
    // accuracy: every column's argmax must be its class
    let best: Vec<usize> = (0..4)
        .map(|j| (0..5).max_by(|&p, &q| z[p][j].total_cmp(&z[q][j])).unwrap())
        .collect();
    let best: [usize; 4] = best.try_into().unwrap();
    assert!(
        CrossEntropyPerColumn::is_correct(&z, &best),
        "{z:?} {best:?}"
    );
    let mut wrong = best;
    wrong[3] = (wrong[3] + 1) % 5;
    assert!(!CrossEntropyPerColumn::is_correct(&z, &wrong));
}

// embedding: the token's row of `e.weight`, the only row with a gradient
#[network { dtype f64; input tok: class[6]; input x[3]; target y[2];
    e = embedding(tok, 3);
    out = dense(tanh(e) * x + e, 2);
    loss = mse(out, y); }]
pub struct Embedded;

#[test]
fn embedding() {
    let x = [0.7, -1.3, 0.4];
    check::<Embedded>((4, x), [0.3, -0.8]);
    let names = Embedded::PARAM_INFO
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>();
    assert_eq!(names, ["e.weight", "out.weight", "out.bias"]);
    assert_eq!(Embedded::PARAM_INFO[0].shape, &[6, 3]);
    // the forward pass reads row `tok`; the gradient is zero outside it
    let net = Embedded::new(5);
    let mut tape = Embedded::new_tape();
    let mut grads = Embedded::new_grads();
    net.forward(&(4, x), &[0.3, -0.8], &mut tape);
    net.backward(&tape, &mut grads);
    for (r, row) in grads.e_weight.iter().enumerate() {
        assert_eq!(r == 4, row.iter().any(|&g| g != 0.0), "row {r}: {row:?}");
    }
    // N(0, 1) initial rows, as PyTorch's `nn.Embedding`
    let big = Embedded::new(1);
    let w = big.params.e_weight.as_flattened();
    let mean = w.iter().sum::<f64>() / w.len() as f64;
    assert!(mean.abs() < 1.0 && w.iter().any(|v| v.abs() > 0.5), "{w:?}");
    // a token out of range is an input error naming it
    assert_eq!(
        Embedded::check_input(&(6, x)).unwrap_err().to_string(),
        "class label 6 of `tok` is not below its 6 classes"
    );
    assert!(Embedded::check_input(&(5, x)).is_ok());
}

// A vector tiled along either axis of a matrix: `tile_rows(v, m)` repeats
// `v` as every row, `tile_cols(u, n)` as every column; each copy's adjoint
// adds into the vector (column or row sums).
#[network { dtype f64; input x[4]; target y[3]; param w[3, 4] = xavier;
    param v[4] = uniform(-1, 1); param u[3] = uniform(-1, 1);
    m = tanh(w * tile_rows(v * x, 3) + tile_cols(u, 4));
    out = sum(m * tile_cols(u * u, 4), 1);
    loss = mse(out, y); }]
pub struct Tiled;

#[test]
fn vectors_tiled_along_rows_and_columns() {
    check::<Tiled>(X4, [0.2, -0.4, 0.6]);
}
