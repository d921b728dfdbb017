//! The elementwise primitives have one forward value: the macro folds
//! constants and its reference interpreter computes with the f64 functions
//! of `nn-macro/src/ops/prims.rs` (included here as it is), while the
//! generated code calls the runtime's methods (`nn_runtime::Activations`).
//! Both are checked equal over a dense grid with edge values: bitwise in
//! f64, and the f32 methods within a few ulps of the f64 value.

#[path = "../../nn-macro/src/ops/prims.rs"]
mod prims;

use nn_runtime::Activations;

/// A dense grid over [-40, 40] (steps of 1/64), the edge values around 0,
/// the largest finite magnitudes, the infinities and NaN.
fn grid() -> Vec<f64> {
    let mut xs: Vec<f64> = (-2560..=2560).map(|k| k as f64 / 64.0).collect();
    xs.extend([
        0.0,
        -0.0,
        f64::MIN_POSITIVE,
        -f64::MIN_POSITIVE,
        1e-300,
        -1e-300,
        1e-8,
        -1e-8,
        700.0,
        -700.0,
        710.0,
        -745.0,
        f64::MAX,
        f64::MIN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ]);
    xs
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Within `ulps` units in the last place of f32 (both NaN, or equal
/// infinities, count as equal).
fn close_f32(got: f32, want: f64, ulps: u32) -> bool {
    let want = want as f32;
    if got.is_nan() || want.is_nan() {
        return got.is_nan() && want.is_nan();
    }
    if got == want {
        return true;
    }
    let (a, b) = (got.to_bits() as i64, want.to_bits() as i64);
    got.signum() == want.signum() && (a - b).unsigned_abs() <= ulps as u64
}

#[test]
fn the_macro_and_the_runtime_compute_the_same_primitives() {
    type F = fn(f64) -> f64;
    type Case = (&'static str, F, F, fn(f32) -> f32, u32);
    let pairs: [Case; 6] = [
        (
            "sigmoid",
            prims::sigmoid,
            |x| x.sigmoid(),
            |x| x.sigmoid(),
            2,
        ),
        ("relu", prims::relu, |x| x.relu(), |x| x.relu(), 0),
        (
            "softplus",
            prims::softplus,
            |x| x.softplus(),
            |x| x.softplus(),
            2,
        ),
        ("step", prims::step, |x| x.step(), |x| x.step(), 0),
        ("sign", prims::sign, |x| x.sign0(), |x| x.sign0(), 0),
        ("erf", prims::erf, |x| x.error_fn(), |x| x.error_fn(), 2),
    ];
    for (name, reference, runtime64, runtime32, ulps) in pairs {
        for x in grid() {
            let (want, got) = (reference(x), runtime64(x));
            assert!(
                same(want, got),
                "{name}({x:e}): macro {want:e}, runtime {got:e}"
            );
            // f32 within a few ulps where the f32 argument is the same number
            let x32 = x as f32;
            if x32 as f64 == x {
                let got32 = runtime32(x32);
                assert!(
                    close_f32(got32, want, ulps),
                    "{name}({x:e}) in f32: {got32:e}, f64 value {want:e}"
                );
            }
        }
    }
}
