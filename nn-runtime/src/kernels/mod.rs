//! Const-generic kernels the generated code calls for matrix-shaped work, and
//! vectorised elementwise functions.
//!
//! Matrices are row-major `[[T; COLS]; ROWS]`; a vector `[T; N]` is a column.
//! Each kernel's doc line gives the maths it computes; `_acc` kernels add into
//! their output (gradients accumulate with `+=`), the others overwrite it.
//!
//! - Products: [`matvec`], [`matvec_acc`], [`matvec_t_acc`], [`outer_acc`],
//!   [`matmul`], [`matmul_acc`], [`matmul_nt_acc`], [`matmul_tn_acc`] (plus
//!   the portable [`vecmat`] and [`dot`]).
//! - Batch layout: [`transpose`] (samples as rows into the feature-major
//!   layout `[[T; B]; n]` of the batched passes, one sample per column).
//! - Softmax: [`log_softmax`] and [`log_softmax_grad_acc`] per sample,
//!   [`log_softmax_cols`] and [`log_softmax_cols_grad_acc`] per column of a
//!   feature-major batch.
//! - Elementwise functions on slices: [`exp_map`], [`log_map`],
//!   [`tanh_map`], [`sigmoid_map`] and their `_in_place` forms, with the
//!   documented `f32` error bounds [`MAX_ULPS_EXP`] etc. (module `math`).
//!   They pay off from a few dozen elements; one call over a whole matrix
//!   (`as_flattened`) is faster than one per row, because the independent
//!   vectors of a long slice hide each other's latency.
//!
//! # Speed without build flags
//!
//! For `f32` on x86-64 the matrix kernels pick, at run time, an
//! implementation for the best instruction set the CPU has ([`Isa`]):
//! AVX-512F, AVX2 + FMA, or the portable loops of [`portable`]. The CPU is
//! asked once; the answer is cached in an atomic, so a kernel call pays one
//! relaxed load and a predictable branch. A plain `cargo build --release`
//! therefore uses FMA and 256/512-bit registers without
//! `-C target-cpu=native`. Shapes too small for a call to pay off (fewer
//! than [`SIMD_MIN_ELEMS`] matrix elements) stay on the inlined portable
//! loops. `f64` uses the portable loops everywhere; other targets use them
//! for `f32` too (on aarch64 NEON is baseline, so they are vectorised).
//! Without the `std` feature the CPU cannot be asked: an x86-64 build then
//! uses the SIMD kernels only when its target features enable them at
//! compile time (`-C target-feature=+avx2,+fma`), else the portable loops.
//!
//! The SIMD kernels compute the same sums in a different order and with
//! fused multiply-adds, so results can differ from the portable loops in the
//! last bits (the tests bound the difference); each path is deterministic.

use crate::float::Float;
use core::any::TypeId;

mod dynamic;
mod math;
pub mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;

pub use dynamic::{gemm, gemm_nt_acc, gemm_tn_acc};
pub use math::{Func, MAX_ULPS_EXP, MAX_ULPS_LOG, MAX_ULPS_SIGMOID, MAX_ULPS_TANH};
pub use portable::{argmax, dot, log_softmax, log_softmax_grad_acc, logsumexp, vecmat};

/// Matrices with fewer elements than this use the inlined portable loops even
/// when a SIMD path exists: for them the call costs more than it saves.
pub const SIMD_MIN_ELEMS: usize = 256;

/// An implementation of the `f32` kernels, by instruction set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// The portable loops of [`portable`] (whatever the compiler makes of them
    /// for the build's target features).
    Portable,
    /// x86-64 AVX2 with FMA: 8 lanes of `f32`.
    Avx2Fma,
    /// x86-64 AVX-512F (with AVX2 and FMA): 16 lanes of `f32`.
    Avx512,
}

impl Isa {
    /// Every implementation, fastest last.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2Fma, Isa::Avx512];

    /// Whether this CPU can run this implementation.
    #[inline]
    pub fn is_available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(all(target_arch = "x86_64", feature = "std"))]
            Isa::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(all(target_arch = "x86_64", feature = "std"))]
            Isa::Avx512 => {
                Isa::Avx2Fma.is_available() && std::arch::is_x86_feature_detected!("avx512f")
            }
            // Without std the CPU cannot be asked: what the build's target
            // features promise (`-C target-feature=+avx2,+fma`,
            // `-C target-cpu=...`), else the portable loops.
            #[cfg(all(target_arch = "x86_64", not(feature = "std")))]
            Isa::Avx2Fma => cfg!(all(target_feature = "avx2", target_feature = "fma")),
            #[cfg(all(target_arch = "x86_64", not(feature = "std")))]
            Isa::Avx512 => Isa::Avx2Fma.is_available() && cfg!(target_feature = "avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2Fma | Isa::Avx512 => false,
        }
    }

    /// A short name for reports: `"portable"`, `"avx2+fma"`, `"avx512f"`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2Fma => "avx2+fma",
            Isa::Avx512 => "avx512f",
        }
    }

    fn code(self) -> u8 {
        match self {
            Isa::Portable => 1,
            Isa::Avx2Fma => 2,
            Isa::Avx512 => 3,
        }
    }
}

/// 0: not detected yet; otherwise [`Isa::code`].
static ISA: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

/// The implementation the `f32` kernels use: the best one this CPU supports,
/// detected on the first call and cached (or the one set by [`force_isa`]).
#[inline]
pub fn isa() -> Isa {
    use core::sync::atomic::Ordering::Relaxed;
    match ISA.load(Relaxed) {
        1 => Isa::Portable,
        2 => Isa::Avx2Fma,
        3 => Isa::Avx512,
        _ => {
            let best = detect();
            ISA.store(best.code(), Relaxed);
            best
        }
    }
}

#[cold]
fn detect() -> Isa {
    *Isa::ALL
        .iter()
        .rev()
        .find(|isa| isa.is_available())
        .unwrap_or(&Isa::Portable)
}

/// Makes every later kernel call (on every thread) use `isa`, or the detected
/// best one again for `None`; for benchmarks that compare implementations.
///
/// # Panics
/// If this CPU cannot run `isa` (running it would be undefined behaviour).
#[doc(hidden)]
pub fn force_isa(isa: Option<Isa>) {
    let isa = isa.unwrap_or_else(detect);
    assert!(
        isa.is_available(),
        "this CPU cannot run the {} kernels",
        isa.name()
    );
    ISA.store(isa.code(), core::sync::atomic::Ordering::Relaxed);
}

/// `s` as `f32`s when `T` is `f32`.
#[inline(always)]
fn f32s<T: Float>(s: &[T]) -> Option<&[f32]> {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: `T` is `f32` (same `TypeId`), so this is the same slice
        // with its own type spelled out.
        Some(unsafe { &*(s as *const [T] as *const [f32]) })
    } else {
        None
    }
}

/// `s` as `f32`s when `T` is `f32`.
#[inline(always)]
fn f32s_mut<T: Float>(s: &mut [T]) -> Option<&mut [f32]> {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: as in `f32s`; the exclusive borrow moves into the result.
        Some(unsafe { &mut *(s as *mut [T] as *mut [f32]) })
    } else {
        None
    }
}

/// The SIMD implementation and the `f32` views of two inputs and an output,
/// when `T` is `f32` and a kernel call of `elems` elements is worth SIMD.
#[inline(always)]
#[allow(clippy::type_complexity)]
fn simd_f32<'a, T: Float>(
    elems: usize,
    a: &'a [T],
    b: &'a [T],
    out: &'a mut [T],
) -> Option<(Isa, &'a [f32], &'a [f32], &'a mut [f32])> {
    Some((simd_for(elems)?, f32s(a)?, f32s(b)?, f32s_mut(out)?))
}

/// The SIMD implementation to use for an `f32` matrix with `elems` elements,
/// if any.
#[inline(always)]
fn simd_for(elems: usize) -> Option<Isa> {
    if elems < SIMD_MIN_ELEMS {
        return None;
    }
    match isa() {
        Isa::Portable => None,
        simd => Some(simd),
    }
}

/// `out = w · x` for `w: [M, K]`, `x: [K]`.
#[inline]
pub fn matvec<T: Float, const M: usize, const K: usize>(
    w: &[[T; K]; M],
    x: &[T; K],
    out: &mut [T; M],
) {
    if let Some((isa, w, x, o)) = simd_f32(M * K, w.as_flattened(), x, out) {
        return f32_kernels::matvec(isa, w, x, o, false);
    }
    portable::matvec(w, x, out)
}

/// `out += w · x` for `w: [M, K]`, `x: [K]`.
#[inline]
pub fn matvec_acc<T: Float, const M: usize, const K: usize>(
    w: &[[T; K]; M],
    x: &[T; K],
    out: &mut [T; M],
) {
    if let Some((isa, w, x, o)) = simd_f32(M * K, w.as_flattened(), x, out) {
        return f32_kernels::matvec(isa, w, x, o, true);
    }
    portable::matvec_acc(w, x, out)
}

/// `out += wᵀ · d` for `w: [M, K]`, `d: [M]` (the adjoint of `x` in `w · x`).
#[inline]
pub fn matvec_t_acc<T: Float, const M: usize, const K: usize>(
    w: &[[T; K]; M],
    d: &[T; M],
    out: &mut [T; K],
) {
    if let Some((isa, w, d, o)) = simd_f32(M * K, w.as_flattened(), d, out) {
        return f32_kernels::matvec_t_acc(isa, w, d, o);
    }
    portable::matvec_t_acc(w, d, out)
}

/// `out += u ⊗ v` (`out[i][j] += u[i] v[j]`) for `u: [M]`, `v: [N]`: the
/// adjoint of `w` in `w · x` is `d ⊗ x`.
#[inline]
pub fn outer_acc<T: Float, const M: usize, const N: usize>(
    u: &[T; M],
    v: &[T; N],
    out: &mut [[T; N]; M],
) {
    if let Some((isa, u, v, o)) = simd_f32(M * N, u, v, out.as_flattened_mut()) {
        return f32_kernels::outer_acc(isa, u, v, o);
    }
    portable::outer_acc(u, v, out)
}

/// `c = a · b` for `a: [M, K]`, `b: [K, N]`.
#[inline]
pub fn matmul<T: Float, const M: usize, const K: usize, const N: usize>(
    a: &[[T; K]; M],
    b: &[[T; N]; K],
    c: &mut [[T; N]; M],
) {
    if let Some((isa, a, b, c)) = simd_f32(
        M * K.max(N),
        a.as_flattened(),
        b.as_flattened(),
        c.as_flattened_mut(),
    ) {
        return f32_kernels::matmul(isa, M, K, N, a, b, c, false);
    }
    portable::matmul(a, b, c)
}

/// `c += a · b` for `a: [M, K]`, `b: [K, N]`.
#[inline]
pub fn matmul_acc<T: Float, const M: usize, const K: usize, const N: usize>(
    a: &[[T; K]; M],
    b: &[[T; N]; K],
    c: &mut [[T; N]; M],
) {
    if let Some((isa, a, b, c)) = simd_f32(
        M * K.max(N),
        a.as_flattened(),
        b.as_flattened(),
        c.as_flattened_mut(),
    ) {
        return f32_kernels::matmul(isa, M, K, N, a, b, c, true);
    }
    portable::matmul_acc(a, b, c)
}

/// `out += d · bᵀ` for `d: [M, N]`, `b: [K, N]` (the adjoint of `a` in `a · b`).
#[inline]
pub fn matmul_nt_acc<T: Float, const M: usize, const K: usize, const N: usize>(
    d: &[[T; N]; M],
    b: &[[T; N]; K],
    out: &mut [[T; K]; M],
) {
    if let Some((isa, d, b, o)) = simd_f32(
        M * K,
        d.as_flattened(),
        b.as_flattened(),
        out.as_flattened_mut(),
    ) {
        return f32_kernels::matmul_nt_acc(isa, M, K, N, d, b, o);
    }
    portable::matmul_nt_acc(d, b, out)
}

/// `out += aᵀ · d` for `a: [M, K]`, `d: [M, N]` (the adjoint of `b` in `a · b`).
#[inline]
pub fn matmul_tn_acc<T: Float, const M: usize, const K: usize, const N: usize>(
    a: &[[T; K]; M],
    d: &[[T; N]; M],
    out: &mut [[T; N]; K],
) {
    if let Some((isa, a, d, o)) = simd_f32(
        K * M.max(N),
        a.as_flattened(),
        d.as_flattened(),
        out.as_flattened_mut(),
    ) {
        return f32_kernels::matmul_tn_acc(isa, M, K, N, a, d, o);
    }
    portable::matmul_tn_acc(a, d, out)
}

/// `out[i] = func(x[i])`: `f32` through the SIMD path of [`isa`], other types
/// through `f64` `libm`.
#[inline]
fn map_slice<T: Float>(func: Func, x: &[T], out: &mut [T]) {
    assert_eq!(
        x.len(),
        out.len(),
        "{}_map: input and output lengths differ",
        func.name()
    );
    if let (Some(x), Some(o)) = (f32s(x), f32s_mut(out)) {
        return f32_kernels::map(isa(), func, x, o);
    }
    for (o, &v) in out.iter_mut().zip(x) {
        *o = T::from_f64(func.f64(v.to_f64()));
    }
}

/// `x[i] = func(x[i])`, as [`map_slice`].
#[inline]
fn map_slice_in_place<T: Float>(func: Func, x: &mut [T]) {
    if let Some(x) = f32s_mut(x) {
        return f32_kernels::map_in_place(isa(), func, x);
    }
    for v in x {
        *v = T::from_f64(func.f64(v.to_f64()));
    }
}

/// `out[i] = e^x[i]`.
///
/// `f32`: vectorised (AVX-512, AVX2 + FMA or portable code, as [`isa`]), at
/// most [`MAX_ULPS_EXP`] ulps from the correctly rounded result; `e^x` is
/// `+0` below about `-103.97` (`0` for `-inf`), `inf` above about `88.72`,
/// NaN for NaN. `f64`: `libm`, one element at a time.
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn exp_map<T: Float>(x: &[T], out: &mut [T]) {
    map_slice(Func::Exp, x, out)
}

/// `x[i] = e^x[i]`, as [`exp_map`].
pub fn exp_in_place<T: Float>(x: &mut [T]) {
    map_slice_in_place(Func::Exp, x)
}

/// `out[i] = ln x[i]`.
///
/// `f32`: vectorised (as [`exp_map`]), at most [`MAX_ULPS_LOG`] ulps from the
/// correctly rounded result for every positive input (subnormals included);
/// `ln 0 = -inf`, `ln inf = inf`, NaN for negative inputs and NaN. `f64`:
/// `libm`.
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn log_map<T: Float>(x: &[T], out: &mut [T]) {
    map_slice(Func::Log, x, out)
}

/// `x[i] = ln x[i]`, as [`log_map`].
pub fn log_in_place<T: Float>(x: &mut [T]) {
    map_slice_in_place(Func::Log, x)
}

/// `out[i] = tanh x[i]`.
///
/// `f32`: vectorised (as [`exp_map`]), at most [`MAX_ULPS_TANH`] ulps from
/// the correctly rounded result; exactly `±1` for `|x| ≥ 9.01`, `tanh(±0) =
/// ±0`, NaN for NaN. `f64`: `libm`.
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn tanh_map<T: Float>(x: &[T], out: &mut [T]) {
    map_slice(Func::Tanh, x, out)
}

/// `x[i] = tanh x[i]`, as [`tanh_map`].
pub fn tanh_in_place<T: Float>(x: &mut [T]) {
    map_slice_in_place(Func::Tanh, x)
}

/// `out[i] = 1 / (1 + e^-x[i])`, computed as `1 / (1 + e^-|x|)` for `x ≥ 0`
/// and `e^x / (1 + e^x)` for `x < 0`, so nothing overflows.
///
/// `f32`: vectorised (as [`exp_map`]), at most [`MAX_ULPS_SIGMOID`] ulps from
/// the correctly rounded result; saturates to exactly `0` (for `x` below about
/// `-103.97`, and `-inf`) and exactly `1` (for `x` above about `16.6`, and
/// `inf`), never NaN for a non-NaN input. `f64`: the same formula with
/// `libm`'s `exp`.
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn sigmoid_map<T: Float>(x: &[T], out: &mut [T]) {
    map_slice(Func::Sigmoid, x, out)
}

/// `x[i] = 1 / (1 + e^-x[i])`, as [`sigmoid_map`].
pub fn sigmoid_in_place<T: Float>(x: &mut [T]) {
    map_slice_in_place(Func::Sigmoid, x)
}

/// `dst[j][i] = src[i][j]` for `src: [R, C]`: for instance a batch of `B`
/// samples `[[T; N]; B]` into the feature-major layout `[[T; B]; N]` of the
/// batched passes (one sample per column).
///
/// `f32` at least `SIMD_MIN_ELEMS` elements: 8 × 8 tiles through AVX
/// registers (on CPUs with AVX2); otherwise a loop over 8 × 8 blocks.
#[inline]
pub fn transpose<T: Float, const R: usize, const C: usize>(
    src: &[[T; C]; R],
    dst: &mut [[T; R]; C],
) {
    if let (Some(_), Some(s), Some(d)) = (
        simd_for(R * C),
        f32s(src.as_flattened()),
        f32s_mut(dst.as_flattened_mut()),
    ) {
        return f32_kernels::transpose(isa(), R, C, s, d);
    }
    portable::transpose(src, dst)
}

/// The batched passes' input layout from samples picked by index:
/// `out[i][j] = field(&samples[at(j)])[i]` for every `j < B` (one sample per
/// column). Eight samples at a time, so that each sample is read along its
/// length and each row of `out` written eight elements at a time, instead
/// of one strided write per element.
///
/// # Panics
/// If `at(j)` is out of range for `samples`.
#[inline]
pub fn gather_cols<S, T: Copy, const N: usize, const B: usize>(
    samples: &[S],
    field: impl Fn(&S) -> &[T; N],
    at: impl Fn(usize) -> usize,
    out: &mut [[T; B]; N],
) {
    const W: usize = 8;
    let mut j0 = 0;
    while j0 < B {
        let w = W.min(B - j0);
        let first = field(&samples[at(j0)]);
        let mut rows: [&[T; N]; W] = [first; W];
        for (k, row) in rows.iter_mut().enumerate().take(w).skip(1) {
            *row = field(&samples[at(j0 + k)]);
        }
        for (i, out_row) in out.iter_mut().enumerate() {
            for (o, row) in out_row[j0..j0 + w].iter_mut().zip(&rows) {
                *o = row[i];
            }
        }
        j0 += W;
    }
}

/// Column-wise [`log_softmax`] of a batch stored one sample per column:
/// `out[i][j] = z[i][j] - ln Σ_r exp(z[r][j])`, shifted by each column's
/// maximum so that nothing overflows. The exponentials go through one
/// [`exp_in_place`] call over the whole of `out` and the logarithms through
/// one [`log_in_place`] call, so `f32` uses the vectorised functions with
/// enough independent work to hide their latency; two `[T; B]` stack arrays
/// are the only scratch space.
pub fn log_softmax_cols<T: Float, const N: usize, const B: usize>(
    z: &[[T; B]; N],
    out: &mut [[T; B]; N],
) {
    if N == 0 {
        return;
    }
    // Column maxima; `>` keeps a NaN out of the maximum, and the NaN then
    // reaches every output of its column through the sum.
    let mut m = z[0];
    for row in &z[1..] {
        for (mj, &v) in m.iter_mut().zip(row) {
            if v > *mj {
                *mj = v;
            }
        }
    }
    for (orow, zrow) in out.iter_mut().zip(z) {
        for ((o, &v), &mj) in orow.iter_mut().zip(zrow).zip(&m) {
            *o = v - mj;
        }
    }
    exp_in_place(out.as_flattened_mut());
    let mut s = [T::ZERO; B];
    for orow in out.iter() {
        for (sj, &e) in s.iter_mut().zip(orow) {
            *sj += e;
        }
    }
    log_in_place(&mut s);
    for (orow, zrow) in out.iter_mut().zip(z) {
        for (((o, &v), &mj), &lj) in orow.iter_mut().zip(zrow).zip(&m).zip(&s) {
            *o = (v - mj) - lj;
        }
    }
}

/// Elements of the stack buffer [`log_softmax_cols_grad_acc`] exponentiates
/// at a time (4 KiB of `f32`).
const GRAD_CHUNK: usize = 1024;

/// `out[i][j] += d[i][j] - exp(y[i][j]) Σ_r d[r][j]` for `y =
/// log_softmax_cols(z)`: the adjoint of `z`, per column, as
/// [`log_softmax_grad_acc`] is per sample (`exp(y)` is the softmax, read
/// back from the stored forward value). The exponentials go through
/// [`exp_in_place`] on up to 1024 values of `y` at a time (whole rows when a
/// row fits), copied to a 1024-element stack buffer.
pub fn log_softmax_cols_grad_acc<T: Float, const N: usize, const B: usize>(
    y: &[[T; B]; N],
    d: &[[T; B]; N],
    out: &mut [[T; B]; N],
) {
    if B == 0 {
        return;
    }
    let mut total = [T::ZERO; B];
    for row in d {
        for (t, &v) in total.iter_mut().zip(row) {
            *t += v;
        }
    }
    let mut e = [T::ZERO; GRAD_CHUNK];
    if B <= GRAD_CHUNK {
        // Whole rows, as many as fit in the buffer.
        let rows = (GRAD_CHUNK / B.max(1)).max(1);
        for ((ys, ds), os) in y.chunks(rows).zip(d.chunks(rows)).zip(out.chunks_mut(rows)) {
            let e = &mut e[..ys.len() * B];
            e.copy_from_slice(ys.as_flattened());
            exp_in_place(e);
            for ((orow, drow), erow) in os.iter_mut().zip(ds).zip(e.chunks_exact(B)) {
                for (((o, &dj), &ej), &tj) in orow.iter_mut().zip(drow).zip(erow).zip(&total) {
                    *o += dj - ej * tj;
                }
            }
        }
    } else {
        // Rows longer than the buffer: a piece of a row at a time.
        for ((yrow, drow), orow) in y.iter().zip(d).zip(out.iter_mut()) {
            for start in (0..B).step_by(GRAD_CHUNK) {
                let end = (start + GRAD_CHUNK).min(B);
                let e = &mut e[..end - start];
                e.copy_from_slice(&yrow[start..end]);
                exp_in_place(e);
                for (((o, &dj), &ej), &tj) in orow[start..end]
                    .iter_mut()
                    .zip(&drow[start..end])
                    .zip(e.iter())
                    .zip(&total[start..end])
                {
                    *o += dj - ej * tj;
                }
            }
        }
    }
}

/// The `f32` kernels on flat row-major slices, for an explicit [`Isa`].
///
/// The const-generic kernels above call these; they are public (hidden) so
/// that tests and benchmarks can run every implementation the CPU supports.
/// Each checks the slice lengths against the dimensions (so the SIMD code can
/// index without bounds checks) and panics if `isa` cannot run on this CPU.
#[doc(hidden)]
pub mod f32_kernels {
    use super::{Func, Isa};

    #[cold]
    #[inline(never)]
    fn unavailable(isa: Isa) -> ! {
        panic!("this CPU cannot run the {} kernels", isa.name())
    }

    /// Runs `$simd` (an `unsafe` call into `x86`) when `$isa` is a SIMD
    /// implementation and `$portable` otherwise.
    macro_rules! dispatch {
        ($isa:expr, $portable:expr, |$x86_isa:ident| $simd:expr) => {
            match $isa {
                Isa::Portable => $portable,
                #[cfg(target_arch = "x86_64")]
                isa => {
                    if !isa.is_available() {
                        unavailable(isa)
                    }
                    let $x86_isa = isa;
                    // SAFETY: the caller checked the slice lengths against the
                    // dimensions, and `is_available` confirmed that this CPU
                    // supports the implementation's target features.
                    unsafe { $simd }
                }
                #[cfg(not(target_arch = "x86_64"))]
                isa => unavailable(isa),
            }
        };
    }

    /// `out[i] = func(x[i])` (see [`super::exp_map`] and its siblings).
    ///
    /// # Panics
    /// If the lengths differ, or `isa` cannot run on this CPU.
    pub fn map(isa: Isa, func: Func, x: &[f32], out: &mut [f32]) {
        let n = x.len();
        assert_eq!(
            n,
            out.len(),
            "{}_map: input and output lengths differ",
            func.name()
        );
        dispatch!(
            isa,
            // SAFETY: both slices hold `n` values and do not overlap.
            unsafe { super::math::map_portable(func, x.as_ptr(), out.as_mut_ptr(), n) },
            |i| super::x86::map(i, func, x.as_ptr(), out.as_mut_ptr(), n)
        )
    }

    /// `x[i] = func(x[i])`.
    ///
    /// # Panics
    /// If `isa` cannot run on this CPU.
    pub fn map_in_place(isa: Isa, func: Func, x: &mut [f32]) {
        let (n, p) = (x.len(), x.as_mut_ptr());
        dispatch!(
            isa,
            // SAFETY: `p` is valid for `n` values; reading and writing the
            // same element through it is what the in-place loop does.
            unsafe { super::math::map_portable(func, p, p, n) },
            |i| super::x86::map(i, func, p, p, n)
        )
    }

    /// `dst = srcᵀ` for `src: [rows, cols]`, `dst: [cols, rows]`.
    ///
    /// # Panics
    /// If the lengths do not match the shape, or `isa` cannot run on this CPU.
    pub fn transpose(isa: Isa, rows: usize, cols: usize, src: &[f32], dst: &mut [f32]) {
        assert!(
            src.len() == rows * cols && dst.len() == rows * cols,
            "transpose: slices are not [{rows}, {cols}] and [{cols}, {rows}]"
        );
        dispatch!(
            isa,
            for (r, row) in src.chunks_exact(cols.max(1)).enumerate() {
                for (q, &v) in row.iter().enumerate() {
                    dst[q * rows + r] = v;
                }
            },
            |i| super::x86::transpose(i, src.as_ptr(), rows, cols, dst.as_mut_ptr())
        )
    }

    /// `out (+)= w · x`, `w` is `[out.len(), x.len()]`.
    pub fn matvec(isa: Isa, w: &[f32], x: &[f32], out: &mut [f32], acc: bool) {
        let (m, k) = (out.len(), x.len());
        assert_eq!(w.len(), m * k, "matvec: w is not [{m}, {k}]");
        dispatch!(
            isa,
            portable_matvec(w, x, out, acc),
            |i| super::x86::matvec(i, w.as_ptr(), x.as_ptr(), out.as_mut_ptr(), m, k, acc)
        )
    }

    fn portable_matvec(w: &[f32], x: &[f32], out: &mut [f32], acc: bool) {
        let k = x.len();
        for (i, o) in out.iter_mut().enumerate() {
            let row = &w[i * k..(i + 1) * k];
            let s: f32 = row.iter().zip(x).map(|(a, b)| a * b).sum();
            *o = if acc { *o + s } else { s };
        }
    }

    /// `out += wᵀ · d`, `w` is `[d.len(), out.len()]`.
    pub fn matvec_t_acc(isa: Isa, w: &[f32], d: &[f32], out: &mut [f32]) {
        let (m, k) = (d.len(), out.len());
        assert_eq!(w.len(), m * k, "matvec_t_acc: w is not [{m}, {k}]");
        dispatch!(
            isa,
            for (row, &di) in w.chunks_exact(k.max(1)).zip(d) {
                for (o, &wij) in out.iter_mut().zip(row) {
                    *o += wij * di;
                }
            },
            |i| super::x86::matvec_t_acc(i, w.as_ptr(), d.as_ptr(), out.as_mut_ptr(), m, k)
        )
    }

    /// `out += u ⊗ v`, `out` is `[u.len(), v.len()]`.
    pub fn outer_acc(isa: Isa, u: &[f32], v: &[f32], out: &mut [f32]) {
        let (m, n) = (u.len(), v.len());
        assert_eq!(out.len(), m * n, "outer_acc: out is not [{m}, {n}]");
        dispatch!(
            isa,
            for (row, &ui) in out.chunks_exact_mut(n.max(1)).zip(u) {
                for (o, &vj) in row.iter_mut().zip(v) {
                    *o += ui * vj;
                }
            },
            |i| super::x86::outer_acc(i, u.as_ptr(), v.as_ptr(), out.as_mut_ptr(), m, n)
        )
    }

    /// `c (+)= a · b` for `a: [m, k]`, `b: [k, n]`, `c: [m, n]`.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        isa: Isa,
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        acc: bool,
    ) {
        assert!(
            a.len() == m * k && b.len() == k * n && c.len() == m * n,
            "matmul: shapes are not [{m}, {k}] · [{k}, {n}] -> [{m}, {n}]"
        );
        dispatch!(
            isa,
            for i in 0..m {
                let crow = &mut c[i * n..(i + 1) * n];
                if !acc {
                    crow.fill(0.0);
                }
                for p in 0..k {
                    let aip = a[i * k + p];
                    for (cij, &bpj) in crow.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                        *cij += aip * bpj;
                    }
                }
            },
            |i| super::x86::gemm(
                i,
                m,
                n,
                k,
                super::x86::Operand {
                    ptr: a.as_ptr(),
                    row: k,
                    col: 1
                },
                b.as_ptr(),
                n,
                c.as_mut_ptr(),
                n,
                acc
            )
        )
    }

    /// `out += d · bᵀ` for `d: [m, n]`, `b: [k, n]`, `out: [m, k]`.
    pub fn matmul_nt_acc(
        isa: Isa,
        m: usize,
        k: usize,
        n: usize,
        d: &[f32],
        b: &[f32],
        out: &mut [f32],
    ) {
        assert!(
            d.len() == m * n && b.len() == k * n && out.len() == m * k,
            "matmul_nt_acc: shapes are not [{m}, {n}] · [{k}, {n}]ᵀ -> [{m}, {k}]"
        );
        dispatch!(
            isa,
            for i in 0..m {
                for j in 0..k {
                    let s: f32 = d[i * n..(i + 1) * n]
                        .iter()
                        .zip(&b[j * n..(j + 1) * n])
                        .map(|(x, y)| x * y)
                        .sum();
                    out[i * k + j] += s;
                }
            },
            |i| super::x86::gemm_nt_acc(i, m, k, n, d.as_ptr(), b.as_ptr(), out.as_mut_ptr())
        )
    }

    /// `out += aᵀ · d` for `a: [m, k]`, `d: [m, n]`, `out: [k, n]`.
    pub fn matmul_tn_acc(
        isa: Isa,
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        d: &[f32],
        out: &mut [f32],
    ) {
        assert!(
            a.len() == m * k && d.len() == m * n && out.len() == k * n,
            "matmul_tn_acc: shapes are not [{m}, {k}]ᵀ · [{m}, {n}] -> [{k}, {n}]"
        );
        dispatch!(
            isa,
            for i in 0..m {
                for j in 0..k {
                    let aij = a[i * k + j];
                    for (o, &dv) in out[j * n..(j + 1) * n]
                        .iter_mut()
                        .zip(&d[i * n..(i + 1) * n])
                    {
                        *o += aij * dv;
                    }
                }
            },
            // outᵀ view: out[j][:] += Σ_i a[i][j] d[i][:], so the left operand
            // is aᵀ: row j of it is column j of `a` (row step 1, column step k).
            |i| super::x86::gemm(
                i,
                k,
                n,
                m,
                super::x86::Operand {
                    ptr: a.as_ptr(),
                    row: 1,
                    col: k
                },
                d.as_ptr(),
                n,
                out.as_mut_ptr(),
                n,
                true
            )
        )
    }
}
