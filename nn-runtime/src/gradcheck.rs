//! Finite-difference gradient checking: `backward`'s gradient against
//! central differences `(L(θ + h) - L(θ - h)) / 2h`, parameter by parameter.

use crate::data::Dataset;
use crate::float::Float;
use crate::network::{Flat, Network, ParamInfo, TargetError};
use crate::optim::SettingError;
use std::fmt;

/// How to check: the step, the floor under relative errors, and the tolerance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradCheckOptions {
    /// Finite-difference step `h`.
    pub h: f64,
    /// Relative errors are `|a - n| / max(|a|, |n|, floor)`, so gradients
    /// much smaller than `floor` are compared absolutely (finite differences
    /// cannot resolve them relatively).
    pub floor: f64,
    /// Largest relative error [`GradCheckReport::is_ok`] accepts.
    pub tolerance: f64,
}

impl Default for GradCheckOptions {
    /// For `f64` networks: `h = 1e-6`, `floor = 1e-3`, `tolerance = 1e-6`.
    fn default() -> Self {
        GradCheckOptions {
            h: 1e-6,
            floor: 1e-3,
            tolerance: 1e-6,
        }
    }
}

impl GradCheckOptions {
    /// For `f32` networks, whose rounding error is much larger: `h = 1e-2`,
    /// `floor = 1e-2`, `tolerance = 1e-2`.
    pub fn f32() -> Self {
        GradCheckOptions {
            h: 1e-2,
            floor: 1e-2,
            tolerance: 1e-2,
        }
    }

    /// The defaults for scalar type `T`: [`f32`](GradCheckOptions::f32) or
    /// [`default`](GradCheckOptions::default) (`f64`).
    pub fn for_scalar<T: Float>() -> Self {
        if T::NAME == "f32" {
            Self::f32()
        } else {
            Self::default()
        }
    }

    /// Checks the options (the gradient checks call it first).
    ///
    /// # Errors
    /// An `h` or `floor` that is not a finite number above 0 (`floor = 0`
    /// would divide zero by zero where both gradients are 0), or a NaN or
    /// negative `tolerance`.
    pub fn check(&self) -> Result<(), SettingError> {
        if !(self.h.is_finite() && self.h > 0.0) {
            return Err(SettingError::new(
                "GradCheckOptions::h",
                self.h,
                "a finite number > 0 (e.g. 1e-6 for f64, 1e-2 for f32)",
            ));
        }
        if !(self.floor.is_finite() && self.floor > 0.0) {
            return Err(SettingError::new(
                "GradCheckOptions::floor",
                self.floor,
                "a finite number > 0 (e.g. 1e-3)",
            ));
        }
        if self.tolerance.is_nan() || self.tolerance < 0.0 {
            return Err(SettingError::new(
                "GradCheckOptions::tolerance",
                self.tolerance,
                "a number >= 0",
            ));
        }
        Ok(())
    }
}

/// Why a gradient check could not run; nothing was computed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GradCheckError {
    /// The options are out of range.
    #[error("gradient check: {0}")]
    InvalidOption(#[source] SettingError),
    /// `inputs` and `targets` differ in length.
    #[error("gradient check: {inputs} inputs but {targets} targets; give one target per input")]
    LengthMismatch {
        /// Number of inputs.
        inputs: usize,
        /// Number of targets.
        targets: usize,
    },
    /// A sample's target does not fit the network ([`Network::check_target`]).
    #[error(
        "gradient check sample {sample}: {error}; class indices must be in 0..{}",
        error.classes
    )]
    InvalidTarget {
        /// 0-based index of the sample.
        sample: usize,
        /// What is wrong with the target.
        #[source]
        error: TargetError,
    },
    /// A sample's class-index input (a token) does not fit the network
    /// ([`Network::check_input`]).
    #[error(
        "gradient check sample {sample}: {error}; class indices must be in 0..{}",
        error.classes
    )]
    InvalidInput {
        /// 0-based index of the sample.
        sample: usize,
        /// Which input and index are wrong.
        #[source]
        error: TargetError,
    },
}

/// The element with the largest relative error.
#[derive(Clone, Debug, PartialEq)]
pub struct WorstParam {
    /// Name of its tensor (from `Network::PARAM_INFO`).
    pub name: &'static str,
    /// Shape of its tensor.
    pub shape: &'static [usize],
    /// Row-major index within its tensor.
    pub index: usize,
    /// `backward`'s value.
    pub analytic: f64,
    /// The central difference.
    pub numeric: f64,
}

impl fmt::Display for WorstParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`[", self.name)?;
        // Row-major index -> one index per dimension.
        let mut rest = self.index;
        let mut strides: Vec<usize> = self.shape.to_vec();
        let mut acc = 1;
        for s in strides.iter_mut().rev() {
            let dim = *s;
            *s = acc;
            acc *= dim;
        }
        if strides.is_empty() {
            strides.push(1);
        }
        for (i, stride) in strides.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{}", rest / stride)?;
            rest %= stride;
        }
        write!(
            f,
            "] (analytic {:e}, numeric {:e})",
            self.analytic, self.numeric
        )
    }
}

/// The errors within one parameter tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamCheck {
    /// Tensor name.
    pub name: &'static str,
    /// Largest `|analytic - numeric|`.
    pub max_abs_error: f64,
    /// Largest relative error.
    pub max_rel_error: f64,
    /// Euclidean norm of the tensor's analytic gradient.
    pub analytic_norm: f64,
}

/// The outcome of a gradient check. Errors are `f64::INFINITY` where a
/// value was NaN or infinite.
#[derive(Clone, Debug, PartialEq)]
pub struct GradCheckReport {
    /// Number of parameters compared.
    pub checked: usize,
    /// Largest `|analytic - numeric|`.
    pub max_abs_error: f64,
    /// Largest `|a - n| / max(|a|, |n|, floor)`.
    pub max_rel_error: f64,
    /// Where the largest relative error is (`None` for a network without parameters).
    pub worst: Option<WorstParam>,
    /// Euclidean norm of the whole analytic gradient: a check of a gradient
    /// that is zero everywhere proves little.
    pub analytic_norm: f64,
    /// Euclidean norm of the whole numeric gradient.
    pub numeric_norm: f64,
    /// Per tensor, in `PARAM_INFO` order.
    pub params: Vec<ParamCheck>,
    /// The tolerance from the options, used by [`is_ok`](Self::is_ok).
    pub tolerance: f64,
}

impl GradCheckReport {
    /// Whether the largest relative error is within the options' tolerance.
    pub fn is_ok(&self) -> bool {
        self.is_within(self.tolerance)
    }

    /// Whether the largest relative error is within `tolerance`.
    pub fn is_within(&self, tolerance: f64) -> bool {
        self.max_rel_error <= tolerance
    }

    /// Panics with the report unless [`is_ok`](Self::is_ok).
    #[track_caller]
    pub fn assert_ok(&self) {
        self.assert_within(self.tolerance);
    }

    /// Panics with the report unless the largest relative error is within `tolerance`.
    #[track_caller]
    pub fn assert_within(&self, tolerance: f64) {
        assert!(
            self.is_within(tolerance),
            "gradient check failed: max relative error {:e} exceeds tolerance {tolerance:e}\n{self}",
            self.max_rel_error
        );
    }
}

impl fmt::Display for GradCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gradient check of {} parameters: max abs error {:e}, max rel error {:e}",
            self.checked, self.max_abs_error, self.max_rel_error
        )?;
        if let Some(w) = &self.worst {
            write!(f, " at {w}")?;
        }
        write!(
            f,
            "; |analytic| = {:e}, |numeric| = {:e}",
            self.analytic_norm, self.numeric_norm
        )?;
        for p in &self.params {
            write!(
                f,
                "\n  {}: max abs error {:e}, max rel error {:e}, |analytic| = {:e}",
                p.name, p.max_abs_error, p.max_rel_error, p.analytic_norm
            )?;
        }
        Ok(())
    }
}

/// The tensor holding flat parameter `k`, and `k`'s index within it
/// (`("?", k)` if `infos` does not cover `k`).
pub(crate) fn locate_param(infos: &[ParamInfo], k: usize) -> (&'static str, usize) {
    match infos.iter().find(|p| p.range().contains(&k)) {
        Some(p) => (p.name, k - p.offset),
        None => ("?", k),
    }
}

/// Checks `net`'s gradient for one sample: `backward` after `forward`
/// against central differences of `forward`'s loss, for every parameter.
/// Each parameter is restored after it is perturbed, so `net` is unchanged.
///
/// The analytic gradient is accumulated into a buffer that is not zero, so
/// a `backward` that assigns instead of adding fails the check.
///
/// # Errors
/// Invalid options, or a target the network does not accept
/// ([`Network::check_target`]); checked before any pass runs.
pub fn check_gradients<N: Network>(
    net: &mut N,
    input: &N::Input,
    target: &N::Target,
    opts: GradCheckOptions,
) -> Result<GradCheckReport, GradCheckError> {
    check_gradients_batch(
        net,
        core::slice::from_ref(input),
        core::slice::from_ref(target),
        opts,
    )
}

/// [`check_gradients`] for the summed loss of several samples: `backward`
/// runs once per sample into the same buffer, as in training.
///
/// # Errors
/// As [`check_gradients`], and `inputs` and `targets` of different lengths.
pub fn check_gradients_batch<N: Network>(
    net: &mut N,
    inputs: &[N::Input],
    targets: &[N::Target],
    opts: GradCheckOptions,
) -> Result<GradCheckReport, GradCheckError> {
    opts.check().map_err(GradCheckError::InvalidOption)?;
    if inputs.len() != targets.len() {
        return Err(GradCheckError::LengthMismatch {
            inputs: inputs.len(),
            targets: targets.len(),
        });
    }
    for (sample, target) in targets.iter().enumerate() {
        N::check_target(target).map_err(|error| GradCheckError::InvalidTarget { sample, error })?;
    }
    for (sample, input) in inputs.iter().enumerate() {
        N::check_input(input).map_err(|error| GradCheckError::InvalidInput { sample, error })?;
    }
    let mut tape = N::new_tape();
    let total_loss = |net: &N, tape: &mut N::Tape| -> f64 {
        inputs
            .iter()
            .zip(targets)
            .map(|(x, y)| net.forward(x, y, tape).to_f64())
            .sum()
    };

    // Analytic: accumulate onto a known non-zero value, then take it off.
    const SENTINEL: f64 = 1.0;
    let mut grads = N::new_grads();
    grads.as_mut_slice().fill(N::Scalar::from_f64(SENTINEL));
    for (x, y) in inputs.iter().zip(targets) {
        net.forward(x, y, &mut tape);
        net.backward(&tape, &mut grads);
    }
    let analytic: Vec<f64> = grads
        .as_slice()
        .iter()
        .map(|g| g.to_f64() - SENTINEL)
        .collect();

    // Numeric: central differences, restoring each parameter.
    let n = analytic.len();
    let mut numeric = vec![0.0; n];
    let h = N::Scalar::from_f64(opts.h);
    for (k, num) in numeric.iter_mut().enumerate() {
        let orig = net.params().as_slice()[k];
        let plus = orig + h;
        let minus = orig - h;
        net.params_mut().as_mut_slice()[k] = plus;
        let l_plus = total_loss(net, &mut tape);
        net.params_mut().as_mut_slice()[k] = minus;
        let l_minus = total_loss(net, &mut tape);
        net.params_mut().as_mut_slice()[k] = orig;
        // The step actually taken, after rounding to the scalar type.
        *num = (l_plus - l_minus) / (plus.to_f64() - minus.to_f64());
    }

    let error = |a: f64, n: f64| -> (f64, f64) {
        let abs = (a - n).abs();
        let rel = abs / a.abs().max(n.abs()).max(opts.floor);
        let finite = |e: f64| if e.is_nan() { f64::INFINITY } else { e };
        (finite(abs), finite(rel))
    };
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();

    let mut report = GradCheckReport {
        checked: n,
        max_abs_error: 0.0,
        max_rel_error: 0.0,
        worst: None,
        analytic_norm: norm(&analytic),
        numeric_norm: norm(&numeric),
        params: Vec::new(),
        tolerance: opts.tolerance,
    };
    let mut worst_k = None;
    for k in 0..n {
        let (abs, rel) = error(analytic[k], numeric[k]);
        report.max_abs_error = report.max_abs_error.max(abs);
        if worst_k.is_none() || rel > report.max_rel_error {
            report.max_rel_error = rel;
            worst_k = Some(k);
        }
    }
    if let Some(k) = worst_k {
        let (name, index) = locate_param(N::PARAM_INFO, k);
        let shape = N::PARAM_INFO
            .iter()
            .find(|p| p.name == name)
            .map_or(&[][..], |p| p.shape);
        report.worst = Some(WorstParam {
            name,
            shape,
            index,
            analytic: analytic[k],
            numeric: numeric[k],
        });
    }
    for p in N::PARAM_INFO {
        let range = p.range();
        let (mut max_abs, mut max_rel) = (0.0f64, 0.0f64);
        for k in range.clone() {
            let (abs, rel) = error(analytic[k], numeric[k]);
            max_abs = max_abs.max(abs);
            max_rel = max_rel.max(rel);
        }
        report.params.push(ParamCheck {
            name: p.name,
            max_abs_error: max_abs,
            max_rel_error: max_rel,
            analytic_norm: norm(&analytic[range]),
        });
    }
    Ok(report)
}

/// [`check_gradients_batch`] over a whole data set.
///
/// # Errors
/// As [`check_gradients_batch`].
pub fn check_gradients_dataset<N: Network>(
    net: &mut N,
    data: &Dataset<N::Input, N::Target>,
    opts: GradCheckOptions,
) -> Result<GradCheckReport, GradCheckError> {
    check_gradients_batch(net, &data.inputs, &data.targets, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testnet::{class_data, linear_data, Bug, Linear, SeqSoftmax3, Softmax3};

    fn check(bug: Bug) -> GradCheckReport {
        let mut net = Linear::with([0.7, -1.3], 0.2);
        net.bug = bug;
        let before = *net.params;
        let r =
            check_gradients(&mut net, &[0.5, 2.0], &[1.5], GradCheckOptions::default()).unwrap();
        assert_eq!(*net.params, before, "parameters restored");
        r
    }

    #[test]
    fn correct_backward_passes() {
        let r = check(Bug::None);
        r.assert_ok();
        assert_eq!(r.checked, 3);
        assert!(r.analytic_norm > 1.0, "{r}");
        assert!(r.max_rel_error < 1e-8, "{r}");
        assert_eq!(r.params.len(), 2);
        // Summed over a batch, too.
        let data = linear_data(5, 3);
        let mut net = Linear::with([0.7, -1.3], 0.2);
        check_gradients_dataset(&mut net, &data, GradCheckOptions::default())
            .unwrap()
            .assert_ok();
    }

    #[test]
    fn wrong_backward_fails_and_names_the_parameter() {
        let r = check(Bug::HalfWeightGrad);
        assert!(!r.is_ok());
        let w = r.worst.as_ref().unwrap();
        assert_eq!(w.name, "w");
        // out = 0.35 - 2.6 + 0.2 = -2.05, d_out = 2 (-2.05 - 1.5) = -7.1;
        // d/dw1 = -7.1 · 2 = -14.2, halved by the bug.
        assert_eq!(w.index, 1);
        assert!((w.numeric + 14.2).abs() < 1e-6, "{w}");
        assert!((w.analytic + 7.1).abs() < 1e-12, "{w}");
        assert!((r.max_rel_error - 0.5).abs() < 1e-6);
        assert!(r.params[1].max_rel_error < 1e-8, "b is right: {r}");
        let msg = std::panic::catch_unwind(|| r.assert_ok())
            .unwrap_err()
            .downcast::<String>()
            .unwrap();
        assert!(msg.contains("gradient check failed"), "{msg}");
        assert!(msg.contains("at `w`[1] (analytic -7.1e0"), "{msg}");
    }

    #[test]
    fn overwriting_instead_of_accumulating_fails() {
        let r = check(Bug::Overwrite);
        assert!(!r.is_ok());
        assert_eq!(r.worst.unwrap().name, "b");
    }

    #[test]
    fn nan_gradients_fail() {
        let r = check(Bug::NanGrad);
        assert_eq!(r.max_rel_error, f64::INFINITY);
        assert!(!r.is_within(1e9));
    }

    #[test]
    fn worst_param_prints_matrix_positions() {
        let w = WorstParam {
            name: "h.weight",
            shape: &[3, 4],
            index: 6,
            analytic: 1.0,
            numeric: 2.0,
        };
        assert_eq!(
            w.to_string(),
            "`h.weight`[1, 2] (analytic 1e0, numeric 2e0)"
        );
        let s = WorstParam {
            shape: &[],
            index: 0,
            ..w
        };
        assert!(s.to_string().starts_with("`h.weight`[0]"));
    }

    #[test]
    fn options_per_scalar_type() {
        assert_eq!(
            GradCheckOptions::for_scalar::<f64>(),
            GradCheckOptions::default()
        );
        assert_eq!(
            GradCheckOptions::for_scalar::<f32>(),
            GradCheckOptions::f32()
        );
    }

    #[test]
    fn bad_targets_lengths_and_options_are_errors_not_panics() {
        // The class network's gradient is right ...
        let data = class_data(6, 4);
        let mut net = Softmax3::new(3);
        check_gradients_dataset(&mut net, &data, GradCheckOptions::default())
            .unwrap()
            .assert_ok();
        // ... and a label beyond its classes is named before any pass runs
        // (`forward` would index out of bounds).
        let before = *net.params;
        let err =
            check_gradients(&mut net, &[0.1, 0.2], &3, GradCheckOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gradient check sample 0: class label 3 of `label` is not below its 3 classes; \
             class indices must be in 0..3"
        );
        let mut bad = data.clone();
        bad.targets[5] = 10;
        let err = check_gradients_dataset(&mut net, &bad, GradCheckOptions::default()).unwrap_err();
        assert!(
            matches!(
                err,
                GradCheckError::InvalidTarget {
                    sample: 5,
                    error: TargetError { value: 10, .. }
                }
            ),
            "{err:?}"
        );
        assert_eq!(*net.params, before);
        let mut seq = SeqSoftmax3::new(1);
        let err = check_gradients(
            &mut seq,
            &[[0.0; 2]; 3],
            &[0, 9, 1],
            GradCheckOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("`label` at step 1"), "{err}");

        let err = check_gradients_batch(
            &mut net,
            &data.inputs,
            &data.targets[..2],
            GradCheckOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "gradient check: 6 inputs but 2 targets; give one target per input"
        );
        for (opts, setting) in [
            (
                GradCheckOptions {
                    h: 0.0,
                    ..GradCheckOptions::default()
                },
                "GradCheckOptions::h",
            ),
            (
                GradCheckOptions {
                    h: f64::NAN,
                    ..GradCheckOptions::default()
                },
                "GradCheckOptions::h",
            ),
            (
                GradCheckOptions {
                    floor: 0.0,
                    ..GradCheckOptions::default()
                },
                "GradCheckOptions::floor",
            ),
            (
                GradCheckOptions {
                    tolerance: f64::NAN,
                    ..GradCheckOptions::default()
                },
                "GradCheckOptions::tolerance",
            ),
        ] {
            let err = check_gradients(&mut net, &[0.1, 0.2], &1, opts).unwrap_err();
            match err {
                GradCheckError::InvalidOption(e) => assert_eq!(e.setting, setting),
                other => panic!("{other:?}"),
            }
        }
    }
}
