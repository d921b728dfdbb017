//! Scalar activation functions as methods on `f32` and `f64`, so generated
//! code reads `(z[i] + b[i]).sigmoid()`.

/// The elementwise functions of the definition language that `f32`/`f64`
/// lack as inherent methods.
pub trait Activations: Copy {
    /// `1 / (1 + e^-x)`.
    fn sigmoid(self) -> Self;
    /// `max(x, 0)`.
    fn relu(self) -> Self;
    /// `ln(1 + e^x)`, computed as `max(x, 0) + ln(1 + e^-|x|)` so it neither overflows nor loses precision.
    fn softplus(self) -> Self;
    /// `1` where `x > 0`, else `0`: the derivative of `relu` (0 at 0).
    fn step(self) -> Self;
    /// `-1`, `0` or `1`: the derivative of `abs` (0 at 0).
    fn sign0(self) -> Self;
    /// The error function `erf(x) = 2/√π ∫₀ˣ e^(-t²) dt` (for `gelu_exact`).
    fn error_fn(self) -> Self;
}

macro_rules! impl_activations {
    ($t:ty, $erf:path) => {
        impl Activations for $t {
            #[inline(always)]
            fn sigmoid(self) -> Self {
                1.0 / (1.0 + (-self).exp())
            }
            #[inline(always)]
            fn relu(self) -> Self {
                self.max(0.0)
            }
            #[inline(always)]
            fn softplus(self) -> Self {
                self.max(0.0) + (-self.abs()).exp().ln_1p()
            }
            #[inline(always)]
            fn step(self) -> Self {
                if self > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            #[inline(always)]
            fn error_fn(self) -> Self {
                $erf(self)
            }
            #[inline(always)]
            fn sign0(self) -> Self {
                if self > 0.0 {
                    1.0
                } else if self < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
        }
    };
}

impl_activations!(f32, libm::erff);
impl_activations!(f64, libm::erf);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_at_known_points() {
        assert_eq!(0.0f64.sigmoid(), 0.5);
        assert_eq!((-2.0f32).relu(), 0.0);
        assert!((1000.0f64.softplus() - 1000.0).abs() < 1e-12);
        assert!(((-1000.0f64).softplus()).abs() < 1e-300);
        assert!((0.0f64.softplus() - 2f64.ln()).abs() < 1e-15);
        assert_eq!(0.0f32.step(), 0.0);
        assert_eq!(0.0f64.sign0(), 0.0);
        assert_eq!((-3.0f64).sign0(), -1.0);
        assert!((1.0f64.error_fn() - 0.842_700_792_949_714_9).abs() < 1e-15);
        assert!((1.0f32.error_fn() - 0.842_700_8).abs() < 1e-6);
    }
}
