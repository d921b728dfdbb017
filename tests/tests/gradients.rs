//! Gradient checks of every function, operator and loss of the definition
//! language: the generated f64 `backward` against central finite differences
//! of the generated `forward` (nn_runtime's `check_gradients`, h = 1e-5,
//! relative tolerance 1e-6 with a floor of 1e-3).
//!
//! Every case is checked at three parameter points (`seed` 1..=3): all
//! parameters, zero-initialised biases included, are overwritten with values
//! of magnitude in [0.2, 1.2) and random sign (or positive, where a function
//! needs a positive argument), which keeps relu/abs away from their kinks.
//! Every check asserts that the analytic gradient is not trivially zero
//! (norm > 1e-3 and every parameter tensor non-zero), except where a zero
//! gradient is the point of the test.

use nn_runtime::prelude::*;
use nn_tests::{assert_gradients, assert_gradients_batch, fill_params, fill_params_positive};

/// Checks `N` at three parameter points with the given input and target;
/// `positive` fills the parameters with positive values only.
#[track_caller]
fn check<N: Network>(x: N::Input, y: N::Target, positive: bool) {
    for seed in 1..=3 {
        let mut net = N::new(seed);
        if positive {
            fill_params_positive(&mut net, seed, 0.2, 1.2);
        } else {
            fill_params(&mut net, seed, 0.2, 1.2);
        }
        assert_gradients(&mut net, &x, &y, 1e-3, &[]);
    }
}

const X3: [f64; 3] = [0.5, -1.2, 0.8];
const XP3: [f64; 3] = [0.5, 1.2, 0.8];
const Y4: [f64; 4] = [0.3, -0.2, 0.9, 0.1];
const Y3: [f64; 3] = [0.4, -0.7, 0.2];

// ---------------------------------------------------------------------------
// Elementwise functions: z = W x (W [4, 3]), L = mse(f(z), y)
// = (1/4) Σ_i (f(z_i) - y_i)^2, so ∂L/∂W_ij = (1/2) (f(z_i) - y_i) f'(z_i) x_j.

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = sigmoid(w @ x);
    loss = mse(out, y); }]
pub struct Sigmoid;

/// sigmoid'(z) = σ(z) (1 - σ(z)).
#[test]
fn sigmoid() {
    check::<Sigmoid>(X3, Y4, false);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = tanh(w @ x);
    loss = mse(out, y); }]
pub struct Tanh;

/// tanh'(z) = 1 - tanh(z)^2.
#[test]
fn tanh() {
    check::<Tanh>(X3, Y4, false);
}

#[network { dtype f64; input x[3]; target y[6]; param w[6, 3];
    out = relu(w @ x);
    loss = mse(out, y); }]
pub struct Relu;

/// relu'(z) = [z > 0]; six rows so some are active at every seed; random
/// values keep every z_i far (≫ h) from the kink at 0.
#[test]
fn relu() {
    check::<Relu>([0.5, 1.2, -0.8], [0.3, -0.2, 0.9, 0.1, 0.5, -0.4], false);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = exp(w @ x);
    loss = mse(out, y); }]
pub struct Exp;

/// exp'(z) = exp(z).
#[test]
fn exp() {
    check::<Exp>(X3, Y4, false);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = log(w @ x);
    loss = mse(out, y); }]
pub struct Log;

/// log'(z) = 1/z; W > 0 and x > 0 keep z = W x ≥ 0.5 > 0.
#[test]
fn log() {
    check::<Log>(XP3, Y4, true);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = log(exp(w @ x) + 1);
    loss = mse(out, y); }]
pub struct LogOfPositive;

/// log(exp(z) + 1) = softplus(z) with z of any sign: d/dz = e^z / (e^z + 1) = σ(z);
/// also exercises exp and `+` with a literal.
#[test]
fn log_of_exp_plus_one() {
    check::<LogOfPositive>(X3, Y4, false);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = sqrt(w @ x);
    loss = mse(out, y); }]
pub struct Sqrt;

/// sqrt'(z) = 1 / (2 sqrt(z)); z = W x ≥ 0.5 (positive W and x).
#[test]
fn sqrt() {
    check::<Sqrt>(XP3, Y4, true);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = sqrt(square(w @ x) + 1);
    loss = mse(out, y); }]
pub struct SqrtOfPositive;

/// sqrt(z^2 + 1), z of any sign: d/dz = z / sqrt(z^2 + 1).
#[test]
fn sqrt_of_square_plus_one() {
    check::<SqrtOfPositive>(X3, Y4, false);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = abs(w @ x);
    loss = mse(out, y); }]
pub struct Abs;

/// abs'(z) = sign(z); random z are far from 0.
#[test]
fn abs() {
    check::<Abs>(X3, Y4, false);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = softplus(w @ x);
    loss = mse(out, y); }]
pub struct Softplus;

/// softplus(z) = log(1 + e^z), softplus'(z) = σ(z).
#[test]
fn softplus() {
    check::<Softplus>(X3, Y4, false);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = square(w @ x);
    loss = mse(out, y); }]
pub struct Square;

/// square'(z) = 2 z.
#[test]
fn square() {
    check::<Square>(X3, Y4, false);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = pow(w @ x, 3);
    loss = mse(out, y); }]
pub struct PowInt;

/// pow(z, 3)' = 3 z^2, z of any sign (an integer exponent of a negative base).
#[test]
fn pow_integer_exponent() {
    check::<PowInt>(X3, Y4, false);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = pow(w @ x, 2);
    loss = mse(out, y); }]
pub struct PowTwo;

/// pow(z, 2)' = 2 z, z of any sign.
#[test]
fn pow_two() {
    check::<PowTwo>(X3, Y4, false);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = pow(w @ x, 1.5);
    loss = mse(out, y); }]
pub struct PowFrac;

/// pow(z, 1.5)' = 1.5 z^0.5, z = W x > 0.
#[test]
fn pow_fractional_exponent() {
    check::<PowFrac>(XP3, Y4, true);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = pow(square(w @ x) + 1, 0.5);
    loss = mse(out, y); }]
pub struct PowHalf;

/// pow(z^2 + 1, 0.5) = sqrt(z^2 + 1): d/dz = z / sqrt(z^2 + 1).
#[test]
fn pow_one_half() {
    check::<PowHalf>(X3, Y4, false);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = (w @ x) ^ 3;
    loss = mse(out, y); }]
pub struct CaretInt;

/// z ^ 3: d/dz = 3 z^2, z of any sign.
#[test]
fn caret_integer_exponent() {
    check::<CaretInt>(X3, Y4, false);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = (w @ x) ^ 2.5;
    loss = mse(out, y); }]
pub struct CaretFrac;

/// z ^ 2.5: d/dz = 2.5 z^1.5, z > 0.
#[test]
fn caret_fractional_exponent() {
    check::<CaretFrac>(XP3, Y4, true);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = w @ x ^ 2;
    loss = mse(out, y); }]
pub struct CaretBindsTighterThanMatmul;

/// `w @ x ^ 2` = W (x ⊙ x) (the power binds tighter): linear in W,
/// ∂L/∂W_ij = (1/2) ((W x²)_i - y_i) x_j².
#[test]
fn caret_binds_tighter_than_matmul() {
    check::<CaretBindsTighterThanMatmul>(X3, Y4, false);
}

// ---------------------------------------------------------------------------
// Reductions.

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = tanh(w @ x);
    loss = sum(y * out); }]
pub struct SumVec;

/// L = Σ_i y_i tanh(z_i): ∂L/∂z_i = y_i (1 - tanh²(z_i)).
#[test]
fn sum_of_vector() {
    check::<SumVec>(X3, Y4, false);
}

#[network { dtype f64; input x[2, 3]; target y[1]; param m[2, 3];
    out = x * tanh(m);
    loss = sum(out); }]
pub struct SumMat;

/// L = Σ_ij x_ij tanh(m_ij): ∂L/∂m_ij = x_ij (1 - tanh²(m_ij)).
#[test]
fn sum_of_matrix() {
    check::<SumMat>([[0.5, -1.2, 0.8], [1.1, 0.3, -0.6]], [0.0], false);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = tanh(w @ x);
    loss = mean(y * out); }]
pub struct MeanVec;

/// L = (1/4) Σ_i y_i tanh(z_i).
#[test]
fn mean_of_vector() {
    check::<MeanVec>(X3, Y4, false);
}

#[network { dtype f64; input x[2, 3]; target y[1]; param m[2, 3];
    out = x * tanh(m);
    loss = mean(out); }]
pub struct MeanMat;

/// L = (1/6) Σ_ij x_ij tanh(m_ij).
#[test]
fn mean_of_matrix() {
    check::<MeanMat>([[0.5, -1.2, 0.8], [1.1, 0.3, -0.6]], [0.0], false);
}

// ---------------------------------------------------------------------------
// dense.

#[network { dtype f64; input x[3]; target y[2];
    h = dense(x, 2);
    loss = mse(tanh(h), y); }]
pub struct DenseVec;

/// h = W x + b (W [2, 3], b [2]); L = mse(tanh(h), y):
/// ∂L/∂b_i = (tanh(h_i) - y_i)(1 - tanh²(h_i)), ∂L/∂W_ij = ∂L/∂b_i x_j.
#[test]
fn dense_vector_input() {
    check::<DenseVec>(X3, [0.3, -0.5], false);
    assert_eq!(DenseVec::PARAM_INFO[0].name, "h.weight");
    assert_eq!(DenseVec::PARAM_INFO[0].shape, &[2, 3]);
    assert_eq!(DenseVec::PARAM_INFO[1].name, "h.bias");
    assert_eq!(DenseVec::PARAM_INFO[1].shape, &[2]);
}

#[network { dtype f64; input x[3]; target y[2];
    h = dense(tanh(dense(x, 4, he)), 2);
    loss = mse(h, y); }]
pub struct DenseTwiceInBinding;

/// h = W2 tanh(W1 x + b1) + b2 (the second dense of a binding gets `h.2.*`).
#[test]
fn dense_twice_in_one_binding() {
    check::<DenseTwiceInBinding>(X3, [0.3, -0.5], false);
    assert_eq!(DenseTwiceInBinding::PARAMS, 4 * 3 + 4 + 2 * 4 + 2);
}

#[network { dtype f64; input x[3, 5]; target y[2, 5];
    h = dense(x, 2);
    loss = mse(tanh(h), y); }]
pub struct DenseMat;

/// x [3, 5] (columns are samples), h = W x + b [2, 5] with b added to every
/// column: ∂L/∂b_i = Σ_k ∂L/∂h_ik (the bias gradient sums over columns),
/// ∂L/∂W_ij = Σ_k ∂L/∂h_ik x_jk, L = (1/10) Σ (tanh(h) - y)².
#[test]
fn dense_matrix_input() {
    let x = [
        [0.5, -1.2, 0.8, 0.1, -0.3],
        [1.1, 0.3, -0.6, 0.9, 0.2],
        [-0.4, 0.7, 0.5, -1.0, 0.6],
    ];
    let y = [[0.3, -0.5, 0.1, 0.0, 0.7], [-0.2, 0.4, 0.6, -0.8, 0.2]];
    check::<DenseMat>(x, y, false);
}

// ---------------------------------------------------------------------------
// Elementwise operators, vector (+) vector, both sides parameters (a, b [3]).

#[network { dtype f64; input x[3]; target y[3]; param a[3]; param b[3];
    out = tanh(a + b) + x;
    loss = mse(out, y); }]
pub struct Add;

/// L = mse(tanh(a + b) + x, y): ∂L/∂a = ∂L/∂b = (2/3) r ⊙ (1 - tanh²(a + b)), r the residual.
#[test]
fn add() {
    check::<Add>(X3, Y3, false);
}

#[network { dtype f64; input x[3]; target y[3]; param a[3]; param b[3];
    out = tanh(a - b) - x;
    loss = mse(out, y); }]
pub struct Sub;

/// L = mse(tanh(a - b) - x, y): ∂L/∂b = -∂L/∂a.
#[test]
fn sub() {
    check::<Sub>(X3, Y3, false);
}

#[network { dtype f64; input x[3]; target y[3]; param a[3]; param b[3];
    out = a * b * x;
    loss = mse(out, y); }]
pub struct Mul;

/// L = mse(a ⊙ b ⊙ x, y): ∂L/∂a = (2/3) r ⊙ b ⊙ x, ∂L/∂b = (2/3) r ⊙ a ⊙ x.
#[test]
fn mul() {
    check::<Mul>(X3, Y3, false);
}

#[network { dtype f64; input x[3]; target y[3]; param a[3]; param b[3];
    out = a / b / x + x / a;
    loss = mse(out, y); }]
pub struct Div;

/// L = mse(a / b / x + x / a, y) (`/` left-associative):
/// ∂/∂a = 1/(b x) - x/a², ∂/∂b = -a/(b² x); a, b, x far from 0.
#[test]
fn div() {
    check::<Div>(X3, Y3, false);
}

// Scalar broadcasting: c = sum(s) with s [1] is a scalar (a parameter
// declared `[1]` is a vector of one element; `sum` makes it a scalar).

#[network { dtype f64; input x[3]; target y[3]; param s[1]; param a[3];
    c = sum(s);
    loss = mse(c * a + a * c * x, y); }]
pub struct ScalarMul;

/// L = mse(c a + c a ⊙ x, y): ∂L/∂c = Σ_i ∂L/∂out_i (a_i + a_i x_i), ∂L/∂a = c (1 + x) ⊙ ∂L/∂out.
#[test]
fn scalar_times_vector() {
    check::<ScalarMul>(X3, Y3, false);
}

#[network { dtype f64; input x[3]; target y[3]; param s[1]; param a[3];
    c = sum(s);
    loss = mse(tanh(c + a) + tanh(a + c) * x, y); }]
pub struct ScalarAdd;

/// c + a and a + c: ∂L/∂c = Σ_i of the broadcast's gradient.
#[test]
fn scalar_plus_vector() {
    check::<ScalarAdd>(X3, Y3, false);
}

#[network { dtype f64; input x[3]; target y[3]; param s[1]; param a[3];
    c = sum(s);
    loss = mse(tanh(c - a) + tanh(a - c) * x, y); }]
pub struct ScalarSub;

/// c - a and a - c.
#[test]
fn scalar_minus_vector() {
    check::<ScalarSub>(X3, Y3, false);
}

#[network { dtype f64; input x[3]; target y[3]; param s[1]; param a[3];
    c = sum(s);
    loss = mse(c / a + a / c * x, y); }]
pub struct ScalarDiv;

/// c / a: ∂/∂c = 1/a, ∂/∂a = -c/a²; a / c: ∂/∂a = 1/c, ∂/∂c = -a/c².
#[test]
fn scalar_divided_by_vector() {
    check::<ScalarDiv>(X3, Y3, false);
}

#[network { dtype f64; input x[3]; target y[3]; param s; param a[3];
    out = s * a + a * s * x + a / s - s + (s - a) / (s * s + 1);
    loss = mse(out, y); }]
pub struct ScalarParam;

/// A scalar parameter (`param s;`, no shape) broadcast on both sides of
/// every operator: ∂out_i/∂s = a_i + a_i x_i - a_i/s² - 1 + 1/(s²+1) - 2s(s - a_i)/(s²+1)².
#[test]
fn scalar_parameter_broadcast() {
    check::<ScalarParam>(X3, Y3, false);
    let net = ScalarParam::new(0);
    let _: f64 = net.params.s;
    assert_eq!(ScalarParam::PARAM_INFO[0].shape, &[] as &[usize]);
}

#[network { dtype f64; input x[2, 3]; target y[1]; param s[1]; param m[2, 3];
    c = sum(s);
    loss = mean(x * tanh(c * m + m / c - c)); }]
pub struct ScalarMatrix;

/// A scalar with a matrix: c m + m / c - c, reduced with weights x.
#[test]
fn scalar_with_matrix() {
    check::<ScalarMatrix>([[0.5, -1.2, 0.8], [1.1, 0.3, -0.6]], [0.0], false);
}

#[network { dtype f64; input x[3]; target y[3]; param a[3];
    out = 2 * a + a * 0.5 - 1 + (3 - a) + a / 4 + 1.5 / a + 1e-1 * x;
    loss = mse(out, y); }]
pub struct Literals;

/// Literal constants on both sides of every operator:
/// ∂out/∂a = 2 + 0.5 - 1 + 1/4 - 1.5/a² (elementwise).
#[test]
fn literal_constants() {
    check::<Literals>(X3, Y3, false);
}

#[network { dtype f64; input x[3]; target y[3]; param u[3]; param a[3];
    c = u @ u;
    loss = mse(c * a - x / c, y); }]
pub struct ScalarFromDot;

/// A computed scalar c = u·u broadcast: ∂c/∂u = 2u.
#[test]
fn scalar_from_dot_product_broadcast() {
    check::<ScalarFromDot>(X3, Y3, false);
}

// Bias vector b [2] with matrix m [2, 3]: b added (etc.) to every column.

const XM: [[f64; 3]; 2] = [[0.5, -1.2, 0.8], [1.1, 0.3, -0.6]];
const YM: [[f64; 3]; 2] = [[0.2, 0.4, -0.3], [-0.1, 0.6, 0.5]];

#[network { dtype f64; input x[2, 3]; target y[2, 3]; param m[2, 3]; param b[2];
    out = tanh(m + b) * x + tanh(b + m);
    loss = mse(out, y); }]
pub struct ColAdd;

/// (m + b)_ij = m_ij + b_i: ∂L/∂b_i = Σ_j ∂L/∂(m + b)_ij; both operand orders.
#[test]
fn bias_vector_plus_matrix() {
    check::<ColAdd>(XM, YM, false);
}

#[network { dtype f64; input x[2, 3]; target y[2, 3]; param m[2, 3]; param b[2];
    out = tanh(m - b) * x + tanh(b - m);
    loss = mse(out, y); }]
pub struct ColSub;

/// (m - b)_ij = m_ij - b_i and (b - m)_ij = b_i - m_ij.
#[test]
fn bias_vector_minus_matrix() {
    check::<ColSub>(XM, YM, false);
}

#[network { dtype f64; input x[2, 3]; target y[2, 3]; param m[2, 3]; param b[2];
    out = m * b * x + b * m;
    loss = mse(out, y); }]
pub struct ColMul;

/// (m b)_ij = m_ij b_i: ∂/∂b_i = Σ_j m_ij ∂L/∂out_ij (x_ij + 1).
#[test]
fn bias_vector_times_matrix() {
    check::<ColMul>(XM, YM, false);
}

#[network { dtype f64; input x[2, 3]; target y[2, 3]; param m[2, 3]; param b[2];
    out = m / b + x / b + b / m;
    loss = mse(out, y); }]
pub struct ColDiv;

/// (m / b)_ij = m_ij / b_i, (x / b)_ij, (b / m)_ij = b_i / m_ij; m, b far from 0.
#[test]
fn bias_vector_divided_with_matrix() {
    check::<ColDiv>(XM, YM, false);
}

#[network { dtype f64; input x[3, 4]; target y[2, 4]; param w[2, 3]; param b[2];
    out = tanh(w @ x + b);
    loss = mse(out, y); }]
pub struct ColBiasAfterMatmul;

/// The hand-written batched layer tanh(W X + b), X [3, 4] columns = samples.
#[test]
fn bias_vector_plus_matmul_matrix() {
    let x = [
        [0.5, -1.2, 0.8, 0.1],
        [1.1, 0.3, -0.6, 0.9],
        [-0.4, 0.7, 0.5, -1.0],
    ];
    check::<ColBiasAfterMatmul>(x, [[0.3, -0.5, 0.1, 0.0], [-0.2, 0.4, 0.6, -0.8]], false);
}

#[network { dtype f64; input x[3]; target y[3]; param a[3]; param b[3];
    out = -a + -(b * x) - -a * b;
    loss = mse(out, y); }]
pub struct Neg;

/// Unary minus: out = -a - b x + a b: ∂out/∂a = -1 + b, ∂out/∂b = -x + a.
#[test]
fn unary_minus() {
    check::<Neg>(X3, Y3, false);
}

#[network { dtype f64; input x[3]; target y[3]; param a[3];
    out = -a ^ 2 * x;
    loss = mse(out, y); }]
pub struct NegPow;

/// `-a ^ 2` = -(a²) (power binds tighter than unary minus): ∂out/∂a = -2 a x.
#[test]
fn unary_minus_of_power() {
    check::<NegPow>(X3, Y3, false);
}

// ---------------------------------------------------------------------------
// Matrix products, both operands parameters and a parameter with an input.

#[network { dtype f64; input x[4]; target y[3]; param w[3, 4]; param v[4];
    out = tanh(w @ v) + w @ x;
    loss = mse(out, y); }]
pub struct MatVec;

/// [3, 4] @ [4]: ∂/∂W = g vᵀ (+ g' xᵀ), ∂/∂v = Wᵀ g.
#[test]
fn matmul_matrix_vector() {
    check::<MatVec>([0.5, -1.2, 0.8, 0.3], Y3, false);
}

#[network { dtype f64; input x[3, 4]; target y[2, 4]; param a[2, 3]; param b[3, 4];
    out = tanh(a @ b) + a @ x;
    loss = mse(out, y); }]
pub struct MatMat;

/// [2, 3] @ [3, 4]: ∂/∂A = G Bᵀ, ∂/∂B = Aᵀ G.
#[test]
fn matmul_matrix_matrix() {
    let x = [
        [0.5, -1.2, 0.8, 0.1],
        [1.1, 0.3, -0.6, 0.9],
        [-0.4, 0.7, 0.5, -1.0],
    ];
    check::<MatMat>(x, [[0.3, -0.5, 0.1, 0.0], [-0.2, 0.4, 0.6, -0.8]], false);
}

#[network { dtype f64; input x[3]; target y[4]; param u[3]; param b[3, 4];
    out = tanh(u @ b) + x @ b;
    loss = mse(out, y); }]
pub struct VecMat;

/// [3] @ [3, 4] -> [4]: (uB)_j = Σ_i u_i B_ij; ∂/∂u = B g, ∂/∂B = u gᵀ.
#[test]
fn matmul_vector_matrix() {
    check::<VecMat>(X3, Y4, false);
}

#[network { dtype f64; input x[3]; target y[4]; param u[3]; param b[3, 4];
    out = (u + x) @ b;
    loss = mse(out, y); }]
pub struct VecMatPlain;

/// The plain vector-matrix product as the output: out = (u + x)B, L = mse(out, y):
/// ∂L/∂u = B (∂L/∂out), ∂L/∂B = (u + x) (∂L/∂out)ᵀ, ∂L/∂out = (out - y)/2.
#[test]
fn matmul_vector_matrix_as_output() {
    check::<VecMatPlain>(X3, Y4, false);
}

#[network { dtype f64; input x[3]; target y[1]; param u[3]; param v[3];
    out = (u @ v) * (x @ v) + tanh(u @ x);
    loss = out + sum(y); }]
pub struct VecVec;

/// [3] @ [3] -> scalar: L = (u·v)(x·v) + tanh(u·x):
/// ∂L/∂u = (x·v) v + (1 - tanh²(u·x)) x, ∂L/∂v = (x·v) u + (u·v) x.
#[test]
fn matmul_vector_vector_dot() {
    check::<VecVec>(X3, [0.5], false);
}

// ---------------------------------------------------------------------------
// Losses.

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = w @ x;
    loss = mse(out, y); }]
pub struct MseVec;

/// mse(a, y) = (1/n) Σ (a - y)²: ∂/∂a = (2/n)(a - y).
#[test]
fn mse_vector() {
    check::<MseVec>(X3, Y4, false);
}

#[network { dtype f64; input x[3, 4]; target y[2, 4]; param w[2, 3];
    out = w @ x;
    loss = mse(out, y); }]
pub struct MseMat;

/// mse of matrices: n = 8 elements.
#[test]
fn mse_matrix() {
    let x = [
        [0.5, -1.2, 0.8, 0.1],
        [1.1, 0.3, -0.6, 0.9],
        [-0.4, 0.7, 0.5, -1.0],
    ];
    check::<MseMat>(x, [[0.3, -0.5, 0.1, 0.0], [-0.2, 0.4, 0.6, -0.8]], false);
}

#[network { dtype f64; input x[3]; target c: class[4]; param w[4, 3]; param b[4];
    out = w @ x + b;
    loss = softmax_cross_entropy(out, c); }]
pub struct XentClass;

/// L = -log softmax(z)_c = logsumexp(z) - z_c: ∂L/∂z = softmax(z) - onehot(c).
#[test]
fn softmax_cross_entropy_class_target() {
    for c in 0..4 {
        check::<XentClass>(X3, c, false);
    }
}

#[network { dtype f64; input x[3]; target t[4]; param w[4, 3]; param b[4];
    out = w @ x + b;
    loss = softmax_cross_entropy(out, t); }]
pub struct XentDist;

/// L = -Σ_i t_i log softmax(z)_i: ∂L/∂z = softmax(z) Σt - t (= softmax - t for Σt = 1).
#[test]
fn softmax_cross_entropy_distribution_target() {
    check::<XentDist>(X3, [0.1, 0.2, 0.3, 0.4], false);
    check::<XentDist>(X3, [0.0, 1.0, 0.0, 0.0], false);
}

#[network { dtype f64; input x[3]; target c: class[4]; param w[4, 3];
    out = tanh(w @ x) * 3;
    loss = cross_entropy(out, c); }]
pub struct XentAlias;

/// `cross_entropy` is an alias of softmax_cross_entropy.
#[test]
fn cross_entropy_alias() {
    check::<XentAlias>(X3, 2, false);
}

#[network { dtype f64; input x[4]; target c: class[4]; param b[4];
    out = b + x;
    loss = softmax_cross_entropy(out, c); }]
pub struct XentHuge;

/// Logits z = [1000, -1000, 0, 500] (b = 0): the log-sum-exp form gives
/// L = logsumexp(z) - z_c ≈ 1000 - z_c exactly in f64 (the other terms are
/// below e^-500) and ∂L/∂z = softmax(z) - onehot(c) ≈ e_0 - e_c, all finite.
#[test]
fn softmax_cross_entropy_is_stable_for_huge_logits() {
    let net = XentHuge::new(0);
    let x = [1000.0, -1000.0, 0.0, 500.0];
    let mut tape = XentHuge::new_tape();
    for (c, expected) in [(0usize, 0.0), (1, 2000.0), (2, 1000.0), (3, 500.0)] {
        let loss = net.forward(&x, &c, &mut tape);
        assert!(
            (loss - expected).abs() < 1e-9,
            "class {c}: loss {loss}, expected {expected}"
        );
        let mut g = XentHuge::new_grads();
        net.backward(&tape, &mut g);
        let mut want = [1.0, 0.0, 0.0, 0.0];
        want[c] -= 1.0;
        for (k, (&got, &w)) in g.as_slice().iter().zip(&want).enumerate() {
            assert!(
                (got - w).abs() < 1e-9,
                "class {c}: grad[{k}] = {got}, expected {w}"
            );
        }
    }
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = w @ x;
    loss = bce_with_logits(out, y); }]
pub struct Bce;

/// L = (1/n) Σ softplus(z) - z y: ∂L/∂z = (σ(z) - y) / n; targets 0, 1 and soft.
#[test]
fn bce_with_logits() {
    check::<Bce>(X3, [0.0, 1.0, 0.3, 1.0], false);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    out = w @ x;
    loss = binary_cross_entropy_with_logits(out, y); }]
pub struct BceAlias;

/// The long alias.
#[test]
fn binary_cross_entropy_with_logits_alias() {
    check::<BceAlias>(X3, [1.0, 0.0, 0.7, 0.0], false);
}

#[network { dtype f64; input x[4]; target y[4]; param b[4];
    out = b + x;
    loss = bce_with_logits(out, y); }]
pub struct BceHuge;

/// Logits ±1000 with b = 0: softplus(1000) - 1000 = 0, softplus(-1000) = 0,
/// softplus(1000) = 1000, softplus(-1000) + 1000 = 1000;
/// L = (0 + 0 + 1000 + 1000) / 4 = 500; ∂L/∂z = (σ(z) - y)/4 = [0, 0, 1/4, -1/4].
#[test]
fn bce_with_logits_is_stable_for_huge_logits() {
    let net = BceHuge::new(0);
    let mut tape = BceHuge::new_tape();
    let loss = net.forward(
        &[1000.0, -1000.0, 1000.0, -1000.0],
        &[1.0, 0.0, 0.0, 1.0],
        &mut tape,
    );
    assert!((loss - 500.0).abs() < 1e-9, "loss {loss}");
    let mut g = BceHuge::new_grads();
    net.backward(&tape, &mut g);
    let want = [0.0, 0.0, 0.25, -0.25];
    for (k, (&got, &w)) in g.as_slice().iter().zip(&want).enumerate() {
        assert!((got - w).abs() < 1e-12, "grad[{k}] = {got}, expected {w}");
    }
}

// ---------------------------------------------------------------------------
// Fan-out: one value used several times; its gradients must add up.

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    h = tanh(w @ x);
    loss = mse(h * h + h, y); }]
pub struct FanOutBinding;

/// h = tanh(Wx) used three times: ∂(h² + h)/∂h = 2h + 1.
#[test]
fn fan_out_of_a_binding() {
    check::<FanOutBinding>(X3, Y4, false);
}

#[network { dtype f64; input x[3]; target y[4]; param w[4, 3];
    h = w @ x;
    loss = mse(sigmoid(h) + tanh(h) * h, y); }]
pub struct FanOutFunctions;

/// h used by three different operations: ∂/∂h = σ' + tanh' h + tanh.
#[test]
fn fan_out_into_different_functions() {
    check::<FanOutFunctions>(X3, Y4, false);
}

#[network { dtype f64; input x[3]; target y[3]; param w[3, 3];
    out = w @ tanh(w @ x);
    loss = mse(out, y) + sum(w * w) / 10; }]
pub struct FanOutParam;

/// W used in both layers and in the penalty: ∂L/∂W sums the three
/// contributions (outer layer, inner layer through tanh, 2W/10). Checked on a
/// batch of two samples (backward adds both).
#[test]
fn fan_out_of_a_parameter() {
    let xs = [X3, [0.9, 0.2, -0.7]];
    let ys = [Y3, [0.1, 0.5, -0.3]];
    for seed in 1..=3 {
        let mut net = FanOutParam::new(seed);
        fill_params(&mut net, seed, 0.2, 1.2);
        assert_gradients_batch(&mut net, &xs, &ys, 1e-3, &[]);
    }
}

// ---------------------------------------------------------------------------
// Several inputs and targets: tuples in declaration order.

#[network { dtype f64;
    input x1[3]; input x2[2];
    target y1[2]; target c: class[3];
    param w1[2, 3]; param w2[3, 2];
    a = tanh(w1 @ x1);
    b = w2 @ (x2 * a);
    loss = mse(a, y1) + softmax_cross_entropy(b, c); }]
pub struct TwoInputsTwoTargets;

/// L = mse(tanh(W1 x1), y1) + xent(W2 (x2 ⊙ a), c): W1 gets both terms' gradients.
#[test]
fn several_inputs_and_targets() {
    let x: <TwoInputsTwoTargets as Network>::Input = (X3, [0.7, -1.1]);
    for c in 0..3 {
        let y: <TwoInputsTwoTargets as Network>::Target = ([0.3, -0.4], c);
        check::<TwoInputsTwoTargets>(x, y, false);
    }
}

// ---------------------------------------------------------------------------
// A parameter that does not affect the loss gets exactly zero gradient
// (one used by nothing at all is a compile error: tests/ui/decl/unused_param.rs).

#[network { dtype f64; input x[3]; target y[2];
    param w[2, 3]; param v[2];
    out = tanh(w @ x) + v;
    output out;
    loss = mse(w @ x, y); }]
pub struct UnusedParams;

/// L = mse(W x, y) depends on W only: v feeds only the output.
/// ∂L/∂v = 0 exactly (and backward must not write non-zeros there).
#[test]
fn params_not_affecting_the_loss_get_zero_gradient() {
    for seed in 1..=3 {
        let mut net = UnusedParams::new(seed);
        fill_params(&mut net, seed, 0.2, 1.2);
        assert_gradients(&mut net, &X3, &[0.3, -0.5], 1e-3, &["v"]);
        let mut tape = UnusedParams::new_tape();
        let mut g = UnusedParams::new_grads();
        net.forward(&X3, &[0.3, -0.5], &mut tape);
        net.backward(&tape, &mut g);
        assert_eq!(g.v, [0.0; 2]);
        assert!(g.w.iter().flatten().any(|&x| x != 0.0));
    }
}

// ---------------------------------------------------------------------------
// Forward values of precedence (a gradient check cannot see a wrong parse:
// forward and backward would agree on it).

#[network { dtype f64; input x[2]; target y[2]; param p[2];
    out = -x ^ 2 + 2 * x ^ 3 - x / 2 / 4 - x - 1 - 1 + p;
    loss = mse(out, y); }]
pub struct Precedence;

/// -x^2 + 2 x^3 - x/8 - x - 2 (p = 0): `^` above unary minus above `* /`,
/// then `+ -`, all left-associative.
#[test]
fn precedence_in_forward_values() {
    let net = Precedence::new(0);
    let f = |x: f64| -(x * x) + 2.0 * x * x * x - x / 8.0 - x - 2.0;
    let out = net.predict(&[3.0, -2.0]);
    assert!((out[0] - f(3.0)).abs() < 1e-12, "{out:?}");
    assert!((out[1] - f(-2.0)).abs() < 1e-12, "{out:?}");
}

// ---------------------------------------------------------------------------
// f32 against f64: one definition compiled twice.

macro_rules! twins {
    ($f32:ident, $f64:ident, { $($def:tt)* }) => {
        #[network { $($def)* }]
        pub struct $f32;
        #[network { dtype f64; $($def)* }]
        pub struct $f64;
    };
}

twins!(Mlp32, Mlp64, {
    input x[4];
    target c: class[3];
    h = tanh(dense(x, 5));
    g = relu(dense(h, 4));
    z = dense(g, 3) + sum(g * g) / 8;
    loss = softmax_cross_entropy(z, c);
});

/// The f32 network with the f64 network's parameters (rounded) computes the
/// same loss (within f32 rounding, 1e-5 relative) and the same gradient
/// (within 1e-4 relative to max(|g|, 1e-2)); the f64 gradient itself passes
/// the finite-difference check.
#[test]
fn f32_network_matches_its_f64_twin() {
    assert_eq!(Mlp32::PARAM_INFO, Mlp64::PARAM_INFO);
    assert_eq!(Mlp32::PARAMS, Mlp64::PARAMS);
    let xs: [[f64; 4]; 3] = [
        [0.5, -1.2, 0.8, 0.3],
        [1.1, 0.3, -0.6, -0.9],
        [-0.4, 0.7, 0.5, 1.0],
    ];
    for seed in 1..=3 {
        let mut n64 = Mlp64::new(seed);
        fill_params(&mut n64, seed, 0.2, 1.2);
        // Round the f64 parameters to f32 first, so both nets hold the same values.
        for p in n64.params_mut().as_mut_slice() {
            *p = *p as f32 as f64;
        }
        let mut n32 = Mlp32::new(seed + 100);
        for (d, s) in n32
            .params_mut()
            .as_mut_slice()
            .iter_mut()
            .zip(n64.params().as_slice())
        {
            *d = *s as f32;
        }
        let (mut t32, mut t64) = (Mlp32::new_tape(), Mlp64::new_tape());
        for (i, x64) in xs.iter().enumerate() {
            let x32 = x64.map(|v| v as f32);
            let c = i % 3;
            assert_gradients(&mut n64, x64, &c, 1e-3, &[]);
            let l64 = n64.forward(x64, &c, &mut t64);
            let l32 = n32.forward(&x32, &c, &mut t32);
            assert!(
                (l32 as f64 - l64).abs() <= 1e-5 * l64.abs().max(1.0),
                "seed {seed} sample {i}: f32 loss {l32}, f64 loss {l64}"
            );
            let (mut g32, mut g64) = (Mlp32::new_grads(), Mlp64::new_grads());
            n64.backward(&t64, &mut g64);
            n32.backward(&t32, &mut g32);
            let norm: f64 = g64.as_slice().iter().map(|g| g * g).sum::<f64>().sqrt();
            assert!(norm > 1e-3, "seed {seed} sample {i}: |g| = {norm}");
            for (k, (&a, &b)) in g32.as_slice().iter().zip(g64.as_slice()).enumerate() {
                let (name, _) = Mlp64::PARAM_INFO
                    .iter()
                    .find(|p| p.range().contains(&k))
                    .map(|p| (p.name, p.offset))
                    .unwrap();
                let err = (a as f64 - b).abs() / b.abs().max(1e-2);
                assert!(
                    err <= 1e-4,
                    "seed {seed} sample {i}: gradient {k} ({name}): f32 {a}, f64 {b}, rel error {err:e}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Minimal cases of a forward pass that must not depend on what a previous
// forward left in a reused tape (the trainer and check_gradients reuse one).

#[network { dtype f64; input x[2]; target y[2]; param b[2, 2];
    out = x @ b;
    loss = mse(out, y); }]
pub struct TapeVecMat;

#[network { dtype f64; input x[2]; target y[2]; param s[2];
    c = sum(s);
    out = c * s * x;
    loss = mse(out, y); }]
pub struct TapeSum;

/// x = [1, 1], B = [[1, 2], [3, 4]]: xB = [4, 6], L = (16 + 36) / 2 = 26 on
/// every call. s = [1, 2], x = [1, 1]: c = 3, out = [3, 6], L = (9 + 36) / 2 = 22.5.
#[test]
fn forward_is_repeatable_on_a_reused_tape() {
    let mut n = TapeVecMat::new(0);
    n.params.b = [[1.0, 2.0], [3.0, 4.0]];
    let mut t = TapeVecMat::new_tape();
    let vm: Vec<f64> = (0..3)
        .map(|_| n.forward(&[1.0, 1.0], &[0.0, 0.0], &mut t))
        .collect();
    let mut n = TapeSum::new(0);
    n.params.s = [1.0, 2.0];
    let mut t = TapeSum::new_tape();
    let sum: Vec<f64> = (0..3)
        .map(|_| n.forward(&[1.0, 1.0], &[0.0, 0.0], &mut t))
        .collect();
    assert!(
        vm == [26.0; 3] && sum == [22.5; 3],
        "vector @ matrix: {vm:?} (expected 26 each time); sum: {sum:?} (expected 22.5 each time)"
    );
}
