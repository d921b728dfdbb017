//! Parameter initialisers, as named in a definition's `param` declarations.

use crate::float::Float;
use crate::rng::Rng;

/// How a parameter tensor is filled by `new(seed)`.
///
/// `fan_in` and `fan_out` come from the parameter's shape `[out, in]`
/// (a vector `[n]` has `fan_in = fan_out = n`, a scalar 1 and 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// Every element the same value.
    Constant(f64),
    /// Uniform in `[lo, hi)`.
    Uniform(f64, f64),
    /// Normal with mean and standard deviation.
    Normal(f64, f64),
    /// Glorot/Xavier uniform: `U(-a, a)`, `a = sqrt(6 / (fan_in + fan_out))`.
    XavierUniform,
    /// Glorot/Xavier normal: `N(0, sqrt(2 / (fan_in + fan_out)))`.
    XavierNormal,
    /// He/Kaiming normal (for ReLU): `N(0, sqrt(2 / fan_in))`.
    HeNormal,
    /// He/Kaiming uniform: `U(-a, a)`, `a = sqrt(6 / fan_in)`.
    HeUniform,
}

impl Init {
    /// Fills `values` (one parameter tensor, row-major) from `rng`.
    pub fn fill<T: Float>(self, values: &mut [T], fan_in: usize, fan_out: usize, rng: &mut Rng) {
        let fan_in = fan_in.max(1) as f64;
        let fan_out = fan_out.max(1) as f64;
        for v in values.iter_mut() {
            let x = match self {
                Init::Zeros => 0.0,
                Init::Constant(c) => c,
                Init::Uniform(lo, hi) => rng.uniform(lo, hi),
                Init::Normal(mean, std) => rng.normal(mean, std),
                Init::XavierUniform => {
                    let a = (6.0 / (fan_in + fan_out)).sqrt();
                    rng.uniform(-a, a)
                }
                Init::XavierNormal => rng.normal(0.0, (2.0 / (fan_in + fan_out)).sqrt()),
                Init::HeNormal => rng.normal(0.0, (2.0 / fan_in).sqrt()),
                Init::HeUniform => {
                    let a = (6.0 / fan_in).sqrt();
                    rng.uniform(-a, a)
                }
            };
            *v = T::from_f64(x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xavier_stays_in_its_bound_and_he_has_its_spread() {
        let mut rng = Rng::new(5);
        let mut w = vec![0.0f64; 20_000];
        Init::XavierUniform.fill(&mut w, 30, 10, &mut rng);
        let a = (6.0f64 / 40.0).sqrt();
        assert!(w.iter().all(|x| x.abs() <= a));
        assert!(w.iter().any(|x| x.abs() > 0.9 * a));
        Init::HeNormal.fill(&mut w, 50, 10, &mut rng);
        let var = w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64;
        assert!((var - 2.0 / 50.0).abs() < 0.004, "var {var}");
        Init::Constant(0.25).fill(&mut w, 1, 1, &mut rng);
        assert!(w.iter().all(|&x| x == 0.25));
    }
}
