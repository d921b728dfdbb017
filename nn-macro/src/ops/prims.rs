//! The values of the elementwise primitives, in `f64`: what constant folding
//! and the reference interpreter compute. The generated code calls the
//! runtime's methods of the same names (`nn_runtime::Activations`, or the
//! standard library's); `tests/tests/primitives.rs` includes this file and
//! checks the two agree on a dense grid with edge values. The file depends
//! on nothing but `libm`, so that test can include it as it is.

/// `1 / (1 + e^-x)`.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `max(x, 0)`.
pub fn relu(x: f64) -> f64 {
    x.max(0.0)
}

/// `ln(1 + e^x)`, as `max(x, 0) + ln(1 + e^-|x|)`: no overflow for large `x`,
/// no loss of precision for very negative `x`.
pub fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// `1` where `x > 0`, else `0` (so `relu'(0) = 0`).
pub fn step(x: f64) -> f64 {
    f64::from(u8::from(x > 0.0))
}

/// `-1`, `0` or `1` (so `abs'(0) = 0`).
pub fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The error function, `2/√π ∫₀ˣ e^(-t²) dt` (libm's, as the runtime's).
pub fn erf(x: f64) -> f64 {
    libm::erf(x)
}
