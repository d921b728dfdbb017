//! Vectorised `f32` transcendental functions (`exp`, `ln`, `tanh`, `sigmoid`),
//! written once over a [`Lanes`] vector type and instantiated for AVX-512
//! (16 lanes), AVX2 + FMA (8 lanes) and plain scalar `f32` (the portable
//! path, which the compiler vectorises for the build's baseline).
//!
//! # Algorithms
//! - `exp(x)`: `x` clamped to `[-104, 89]` (beyond those `e^x` rounds to `0`
//!   or overflows to `inf` anyway; NaN passes through), `n = round(x / ln 2)`
//!   by the `1.5·2²³` rounding trick, `r = x - n ln 2` in two steps
//!   (Cody-Waite, exact), `e^r` by a degree-7 polynomial on
//!   `|r| ≤ ln 2 / 2` (the Cephes `expf` coefficients), then `e^r · 2^n`
//!   applied as two power-of-two factors so that results in the subnormal
//!   range are rounded once and `n = 128` does not overflow early.
//! - `ln(x)`: subnormal `x` scaled by `2²³` first; `x = m · 2^e` with
//!   `m ∈ [√½, √2)`, `ln(1 + f)` for `f = m - 1` by the Cephes `logf`
//!   polynomial, plus `e ln 2` in two parts. `ln(0) = -inf`, `ln(inf) = inf`,
//!   `ln(x < 0) = NaN`, `ln(NaN) = NaN`.
//! - `tanh(x)`: for `|x| < 0.625` the odd polynomial `x + x³ P(x²)` (Cephes
//!   `tanhf`), else `sign(x) (1 - e) / (1 + e)` with `e = e^(-2|x|)`, which
//!   is exactly `±1` once `e` is below half an ulp of 1 and never overflows.
//! - `sigmoid(x)`: `e = e^(-|x|)`, then `1 / (1 + e)` for `x ≥ 0` and
//!   `e / (1 + e)` for `x < 0`: no overflow, `sigmoid(-inf) = 0` and
//!   `sigmoid(inf) = 1` exactly, and full relative accuracy down to the
//!   subnormal results near `x = -103`.
//!
//! The lane operations are `#[inline(always)]` in optimised builds only: in
//! a debug build, inlining all of them into one function gives it a stack
//! frame of about a quarter of a megabyte (every temporary vector keeps a
//! slot of its own), more than a small thread has.
//!
//! The accuracy bounds (in ulps of the exact result rounded to `f32`, measured
//! against `f64` references) are in the `MAX_ULPS_*` constants, which the
//! tests assert; see the README's kernel section for the full sweep.

#[cfg(not(any(feature = "std", test)))]
use crate::activation::Activations as _;
// The bounds below are the largest errors measured over every `f32` input
// (4.3 billion per function and path; `transcendental_exhaustive` in the
// tests), rounded up at the second decimal. They hold for the AVX-512, the
// AVX2 + FMA and the portable path alike (the portable path computes without
// FMA; its maxima are at most these).

/// Largest error of [`super::exp_map`] for `f32`, in ulps of the exact
/// result, over every input whose result is finite (measured maximum 1.010).
pub const MAX_ULPS_EXP: f64 = 1.02;
/// Largest error of [`super::log_map`] for `f32`, in ulps, over every
/// positive input, subnormals included (measured maximum 0.829).
pub const MAX_ULPS_LOG: f64 = 0.83;
/// Largest error of [`super::tanh_map`] for `f32`, in ulps, over every
/// finite input (measured maximum 1.509).
pub const MAX_ULPS_TANH: f64 = 1.51;
/// Largest error of [`super::sigmoid_map`] for `f32`, in ulps, over every
/// finite input, subnormal results included (measured maximum 2.402).
pub const MAX_ULPS_SIGMOID: f64 = 2.41;

/// The operations the functions need, on `LANES` `f32` lanes, with `i32`
/// lanes `I` (the same bits) and comparison masks `M`.
///
/// Every method of the x86 implementations requires the CPU features of that
/// implementation and is only called from functions compiled with them; the
/// scalar `f32` implementation is safe to call anywhere.
pub(super) trait Lanes: Copy {
    const LANES: usize;
    type I: Copy;
    type M: Copy;
    unsafe fn splat(x: f32) -> Self;
    /// Unaligned load of `LANES` values.
    unsafe fn load(p: *const f32) -> Self;
    /// Unaligned store of `LANES` values.
    unsafe fn store(self, p: *mut f32);
    unsafe fn add(a: Self, b: Self) -> Self;
    unsafe fn sub(a: Self, b: Self) -> Self;
    unsafe fn mul(a: Self, b: Self) -> Self;
    unsafe fn div(a: Self, b: Self) -> Self;
    /// `a · b + c` (fused where the instruction set has FMA).
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self;
    /// `if a > b { a } else { b }` per lane: `b` when either is NaN.
    unsafe fn max(a: Self, b: Self) -> Self;
    /// `if a < b { a } else { b }` per lane: `b` when either is NaN.
    unsafe fn min(a: Self, b: Self) -> Self;
    /// `a < b` (false for NaN).
    unsafe fn lt(a: Self, b: Self) -> Self::M;
    /// `a >= b` (false for NaN).
    unsafe fn ge(a: Self, b: Self) -> Self::M;
    /// `a == b` (false for NaN).
    unsafe fn eq(a: Self, b: Self) -> Self::M;
    /// `if m { a } else { b }` per lane.
    unsafe fn select(m: Self::M, a: Self, b: Self) -> Self;
    unsafe fn isplat(x: i32) -> Self::I;
    unsafe fn iadd(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn isub(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn iand(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn ior(a: Self::I, b: Self::I) -> Self::I;
    /// Shift left by 23 (into the exponent field).
    unsafe fn shl23(a: Self::I) -> Self::I;
    /// Logical shift right by 23 (the exponent field down).
    unsafe fn shr23(a: Self::I) -> Self::I;
    /// Arithmetic shift right by 1 (halving, rounding down).
    unsafe fn sra1(a: Self::I) -> Self::I;
    unsafe fn to_bits(self) -> Self::I;
    unsafe fn from_bits(i: Self::I) -> Self;
    /// `i32` to `f32` (exact for the small integers used here).
    unsafe fn i2f(i: Self::I) -> Self;
}

/// The portable path: one lane, plain (unfused) arithmetic. A loop over it
/// has no branches, so the compiler vectorises it.
impl Lanes for f32 {
    const LANES: usize = 1;
    type I = i32;
    type M = bool;
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn splat(x: f32) -> Self {
        x
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn load(p: *const f32) -> Self {
        *p
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn store(self, p: *mut f32) {
        *p = self
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn add(a: Self, b: Self) -> Self {
        a + b
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn sub(a: Self, b: Self) -> Self {
        a - b
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn mul(a: Self, b: Self) -> Self {
        a * b
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn div(a: Self, b: Self) -> Self {
        a / b
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
        a * b + c
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn max(a: Self, b: Self) -> Self {
        if a > b {
            a
        } else {
            b
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn min(a: Self, b: Self) -> Self {
        if a < b {
            a
        } else {
            b
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn lt(a: Self, b: Self) -> bool {
        a < b
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn ge(a: Self, b: Self) -> bool {
        a >= b
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn eq(a: Self, b: Self) -> bool {
        a == b
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn select(m: bool, a: Self, b: Self) -> Self {
        if m {
            a
        } else {
            b
        }
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn isplat(x: i32) -> i32 {
        x
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn iadd(a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn isub(a: i32, b: i32) -> i32 {
        a.wrapping_sub(b)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn iand(a: i32, b: i32) -> i32 {
        a & b
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn ior(a: i32, b: i32) -> i32 {
        a | b
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn shl23(a: i32) -> i32 {
        ((a as u32) << 23) as i32
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn shr23(a: i32) -> i32 {
        ((a as u32) >> 23) as i32
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn sra1(a: i32) -> i32 {
        a >> 1
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn to_bits(self) -> i32 {
        f32::to_bits(self) as i32
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn from_bits(i: i32) -> Self {
        f32::from_bits(i as u32)
    }
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn i2f(i: i32) -> Self {
        i as f32
    }
}

/// `1.5 · 2²³`: adding it rounds a value of magnitude below `2²²` to an
/// integer, which then sits in the low mantissa bits.
const MAGIC: f32 = 12_582_912.0;
const MAGIC_BITS: i32 = 0x4B40_0000;
const LOG2E: f32 = core::f32::consts::LOG2_E;
/// `ln 2 = LN2_HI + LN2_LO`; `LN2_HI` has 9 significant bits, so `n · LN2_HI`
/// is exact for `|n| < 2^15`.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this `e^x` rounds to `+0` (`e^-104 < 2^-150`); above `EXP_HI` it
/// overflows (`ln(f32::MAX) ≈ 88.72`).
const EXP_LO: f32 = -104.0;
const EXP_HI: f32 = 89.0;
/// `e^r ≈ 1 + r + r² P(r)` on `|r| ≤ ln 2 / 2` (Cephes `expf`).
const EXP_P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];
/// `ln(1 + f) ≈ f - f²/2 + f³ P(f)` on `√½ - 1 ≤ f < √2 - 1` (Cephes `logf`).
const LOG_P: [f32; 9] = [
    7.037_683_6e-2,
    -1.151_461e-1,
    1.167_699_9e-1,
    -1.242_014_1e-1,
    1.424_932_3e-1,
    -1.666_805_8e-1,
    2.000_071_4e-1,
    -2.499_999_4e-1,
    3.333_333e-1,
];
const SQRT_HALF: f32 = core::f32::consts::FRAC_1_SQRT_2;
/// `tanh x ≈ x + x³ P(x²)` for `|x| < 0.625` (Cephes `tanhf`).
const TANH_P: [f32; 5] = [
    -5.704_988_7e-3,
    2.063_909e-2,
    -5.373_971_6e-2,
    1.333_144_2e-1,
    -3.333_328e-1,
];
const TANH_SMALL: f32 = 0.625;
const SIGN: i32 = i32::MIN;

#[cfg_attr(not(debug_assertions), inline(always))]
unsafe fn poly<V: Lanes>(x: V, c: &[f32]) -> V {
    let mut p = V::splat(c[0]);
    for &ci in &c[1..] {
        p = V::mul_add(p, x, V::splat(ci));
    }
    p
}

/// `e^x` per lane.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(super) unsafe fn exp<V: Lanes>(x: V) -> V {
    // `max(lo, x)` and `min(hi, ·)` return `x` when it is NaN.
    let x = V::min(V::splat(EXP_HI), V::max(V::splat(EXP_LO), x));
    let t = V::mul_add(x, V::splat(LOG2E), V::splat(MAGIC));
    let n = V::sub(t, V::splat(MAGIC));
    let ni = V::isub(t.to_bits(), V::isplat(MAGIC_BITS));
    let r = V::mul_add(n, V::splat(-LN2_HI), x);
    let r = V::mul_add(n, V::splat(-LN2_LO), r);
    let p = poly(r, &EXP_P);
    let y = V::add(V::mul_add(p, V::mul(r, r), r), V::splat(1.0));
    // 2^n as 2^n1 · 2^n2 with n1, n2 in [-75, 64]: both normal.
    let n1 = V::sra1(ni);
    let n2 = V::isub(ni, n1);
    let s1 = V::from_bits(V::shl23(V::iadd(n1, V::isplat(127))));
    let s2 = V::from_bits(V::shl23(V::iadd(n2, V::isplat(127))));
    V::mul(V::mul(y, s1), s2)
}

/// `ln x` per lane.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(super) unsafe fn log<V: Lanes>(x: V) -> V {
    let one = V::splat(1.0);
    let tiny = V::lt(x, V::splat(f32::MIN_POSITIVE));
    let xs = V::select(tiny, V::mul(x, V::splat(8_388_608.0)), x);
    let bits = xs.to_bits();
    // m in [0.5, 1), xs = m · 2^e.
    let m = V::from_bits(V::ior(
        V::iand(bits, V::isplat(0x007F_FFFF)),
        V::isplat(0x3F00_0000),
    ));
    let e = V::i2f(V::isub(
        V::iand(V::shr23(bits), V::isplat(0xFF)),
        V::isplat(126),
    ));
    let e = V::add(e, V::select(tiny, V::splat(-23.0), V::splat(0.0)));
    let below = V::lt(m, V::splat(SQRT_HALF));
    let f = V::sub(V::select(below, V::add(m, m), m), one);
    let e = V::select(below, V::sub(e, one), e);
    let z = V::mul(f, f);
    let y = V::mul(V::mul(poly(f, &LOG_P), f), z);
    let y = V::mul_add(e, V::splat(LN2_LO), y);
    let y = V::mul_add(z, V::splat(-0.5), y);
    let r = V::mul_add(e, V::splat(LN2_HI), V::add(f, y));
    let r = V::select(V::eq(x, V::splat(f32::INFINITY)), x, r);
    let r = V::select(V::eq(x, V::splat(0.0)), V::splat(f32::NEG_INFINITY), r);
    V::select(V::ge(x, V::splat(0.0)), r, V::splat(f32::NAN))
}

/// `tanh x` per lane.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(super) unsafe fn tanh<V: Lanes>(x: V) -> V {
    let one = V::splat(1.0);
    let sign = V::iand(x.to_bits(), V::isplat(SIGN));
    let a = V::from_bits(V::iand(x.to_bits(), V::isplat(!SIGN)));
    let z = V::mul(x, x);
    let small = V::mul_add(V::mul(poly(z, &TANH_P), z), x, x);
    let e = exp(V::mul(a, V::splat(-2.0)));
    let t = V::div(V::sub(one, e), V::add(one, e));
    let large = V::from_bits(V::ior(t.to_bits(), sign));
    V::select(V::lt(a, V::splat(TANH_SMALL)), small, large)
}

/// `1 / (1 + e^-x)` per lane.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(super) unsafe fn sigmoid<V: Lanes>(x: V) -> V {
    let one = V::splat(1.0);
    let e = exp(V::from_bits(V::ior(x.to_bits(), V::isplat(SIGN))));
    let num = V::select(V::ge(x, V::splat(0.0)), one, e);
    V::div(num, V::add(one, e))
}

/// One of the functions above, as a type, so that [`map`] is instantiated
/// (and inlined) per function inside each `#[target_feature]` entry point.
pub(super) trait Op {
    unsafe fn apply<V: Lanes>(x: V) -> V;
}

macro_rules! ops {
    ($($op:ident = $f:ident),*) => {$(
        pub(super) struct $op;
        impl Op for $op {
            #[cfg_attr(not(debug_assertions), inline(always))]
            unsafe fn apply<V: Lanes>(x: V) -> V {
                $f(x)
            }
        }
    )*};
}
ops!(ExpOp = exp, LogOp = log, TanhOp = tanh, SigmoidOp = sigmoid);

/// `out[i] = O(x[i])` for `i < n`, whole vectors first (two at a time), then
/// the rest through a stack buffer of one vector.
///
/// # Safety
/// `x` is valid for reading and `out` for writing `n` values; they may be the
/// same pointer (in place), otherwise they do not overlap. The CPU supports
/// `V`'s instructions.
#[cfg_attr(not(debug_assertions), inline(always))]
pub(super) unsafe fn map<V: Lanes, O: Op>(x: *const f32, out: *mut f32, n: usize) {
    let l = V::LANES;
    let mut i = 0;
    while i + 2 * l <= n {
        let (a, b) = (V::load(x.add(i)), V::load(x.add(i + l)));
        O::apply(a).store(out.add(i));
        O::apply(b).store(out.add(i + l));
        i += 2 * l;
    }
    while i + l <= n {
        O::apply(V::load(x.add(i))).store(out.add(i));
        i += l;
    }
    if i < n {
        let mut buf = [0.0f32; 16];
        debug_assert!(l <= buf.len());
        let rest = n - i;
        core::ptr::copy_nonoverlapping(x.add(i), buf.as_mut_ptr(), rest);
        O::apply(V::load(buf.as_ptr())).store(buf.as_mut_ptr());
        core::ptr::copy_nonoverlapping(buf.as_ptr(), out.add(i), rest);
    }
}

/// Which function a slice kernel applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    /// `e^x`.
    Exp,
    /// `ln x`.
    Log,
    /// `tanh x`.
    Tanh,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
}

impl Func {
    /// Every function.
    pub const ALL: [Func; 4] = [Func::Exp, Func::Log, Func::Tanh, Func::Sigmoid];

    /// A short name for reports: `"exp"`, `"log"`, `"tanh"`, `"sigmoid"`.
    pub fn name(self) -> &'static str {
        match self {
            Func::Exp => "exp",
            Func::Log => "log",
            Func::Tanh => "tanh",
            Func::Sigmoid => "sigmoid",
        }
    }

    /// The documented bound of the `f32` kernels' error, in ulps.
    pub fn max_ulps(self) -> f64 {
        match self {
            Func::Exp => MAX_ULPS_EXP,
            Func::Log => MAX_ULPS_LOG,
            Func::Tanh => MAX_ULPS_TANH,
            Func::Sigmoid => MAX_ULPS_SIGMOID,
        }
    }

    /// The function in `f64` (`libm`; `sigmoid` in its overflow-free form),
    /// the reference the `f32` kernels are measured against.
    pub fn f64(self, x: f64) -> f64 {
        match self {
            Func::Exp => x.exp(),
            Func::Log => x.ln(),
            Func::Tanh => x.tanh(),
            Func::Sigmoid => sigmoid_f64(x),
        }
    }
}

/// Runs `$body` with `$op` bound to the [`Op`] type of `$func`.
macro_rules! with_op {
    ($func:expr, |$op:ident| $body:expr) => {
        match $func {
            $crate::kernels::math::Func::Exp => {
                type $op = $crate::kernels::math::ExpOp;
                $body
            }
            $crate::kernels::math::Func::Log => {
                type $op = $crate::kernels::math::LogOp;
                $body
            }
            $crate::kernels::math::Func::Tanh => {
                type $op = $crate::kernels::math::TanhOp;
                $body
            }
            $crate::kernels::math::Func::Sigmoid => {
                type $op = $crate::kernels::math::SigmoidOp;
                $body
            }
        }
    };
}
pub(super) use with_op;

/// The portable path: `out[i] = func(x[i])` with the scalar instantiation.
///
/// # Safety
/// As [`map`] (every CPU runs the scalar code).
pub(super) unsafe fn map_portable(func: Func, x: *const f32, out: *mut f32, n: usize) {
    #[cfg_attr(not(debug_assertions), inline(always))]
    unsafe fn each<O: Op>(x: *const f32, out: *mut f32, n: usize) {
        // A plain counted loop without branches: the compiler vectorises it.
        for i in 0..n {
            *out.add(i) = O::apply(*x.add(i));
        }
    }
    with_op!(func, |O| each::<O>(x, out, n))
}

/// `sigmoid` for `f64` in the same overflow-free form (`libm`'s `exp`).
#[inline]
pub(super) fn sigmoid_f64(x: f64) -> f64 {
    let e = (-x.abs()).exp();
    let num = if x >= 0.0 { 1.0 } else { e };
    num / (1.0 + e)
}
