//! Scalar activation functions as methods on `f32` and `f64`, so generated
//! code reads `(z[i] + b[i]).sigmoid()`.
//!
//! The trait also carries, under their std names, the float methods the
//! generated code calls (`exp`, `ln`, `sqrt`, `tanh`, `powi`, ...): with
//! std, a method call `x.exp()` finds the inherent method first, so these
//! are never reached; without std (`#![no_std]`, where `f32` has no `exp`)
//! the same call finds them, and they compute through `libm`.

/// The elementwise functions of the definition language that `f32`/`f64`
/// lack as inherent methods, and (for `no_std`) the float methods of std
/// that core lacks.
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
    /// `e^x`, as std's `exp` (`libm` without std).
    fn exp(self) -> Self;
    /// Natural logarithm, as std's `ln`.
    fn ln(self) -> Self;
    /// Square root, as std's `sqrt`.
    fn sqrt(self) -> Self;
    /// Hyperbolic tangent, as std's `tanh`.
    fn tanh(self) -> Self;
    /// Sine, as std's `sin`.
    fn sin(self) -> Self;
    /// Cosine, as std's `cos`.
    fn cos(self) -> Self;
    /// `ln(1 + x)`, as std's `ln_1p`.
    fn ln_1p(self) -> Self;
    /// `e^x - 1`, as std's `exp_m1`.
    fn exp_m1(self) -> Self;
    /// `x^n`, as std's `powi` (repeated squaring, as the compiler's runtime does it).
    fn powi(self, n: i32) -> Self;
    /// `x^e`, as std's `powf`.
    fn powf(self, e: Self) -> Self;
}

/// std's float methods, or `libm`'s functions without std.
macro_rules! std_math {
    ($t:ty; $($name:ident = $libm:ident),*) => {
        $(
            #[inline(always)]
            fn $name(self) -> Self {
                #[cfg(feature = "std")]
                return <$t>::$name(self);
                #[cfg(not(feature = "std"))]
                return libm::$libm(self);
            }
        )*
        #[inline(always)]
        fn powi(self, n: i32) -> Self {
            #[cfg(feature = "std")]
            return <$t>::powi(self, n);
            #[cfg(not(feature = "std"))]
            return {
                // `__powisf2` / `__powidf2` of compiler-rt, which std's
                // `powi` lowers to where it is not folded.
                let mut a = self;
                let mut b = n.unsigned_abs();
                let mut r: $t = 1.0;
                loop {
                    if b & 1 != 0 {
                        r *= a;
                    }
                    b /= 2;
                    if b == 0 {
                        break;
                    }
                    a *= a;
                }
                if n < 0 {
                    1.0 / r
                } else {
                    r
                }
            };
        }
    };
}

macro_rules! impl_activations {
    ($t:ty, $erf:path, $pow:path; $($name:ident = $libm:ident),*) => {
        impl Activations for $t {
            std_math!($t; $($name = $libm),*);
            #[inline(always)]
            fn powf(self, e: Self) -> Self {
                #[cfg(feature = "std")]
                return <$t>::powf(self, e);
                #[cfg(not(feature = "std"))]
                return $pow(self, e);
            }
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

impl_activations!(f32, libm::erff, libm::powf;
    exp = expf, ln = logf, sqrt = sqrtf, tanh = tanhf, sin = sinf, cos = cosf,
    ln_1p = log1pf, exp_m1 = expm1f);
impl_activations!(f64, libm::erf, libm::pow;
    exp = exp, ln = log, sqrt = sqrt, tanh = tanh, sin = sin, cos = cos,
    ln_1p = log1p, exp_m1 = expm1);

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
