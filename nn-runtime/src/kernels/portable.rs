//! Portable kernels: plain loops over fixed-size arrays, for any [`Float`].
//!
//! These are the reference definitions (the tests compare every SIMD path
//! against them), the `f64` kernels, the `f32` kernels on targets without a
//! SIMD path (on aarch64 the compiler vectorises them with NEON, which is
//! baseline there), and the `f32` kernels for shapes too small for a SIMD
//! call to pay off.
//!
//! Matrices are row-major `[[T; COLS]; ROWS]`; a vector `[T; N]` is a column.
//! Each kernel's doc line gives the maths it computes; `_acc` kernels add into
//! their output (gradients accumulate with `+=`), the others overwrite it.

use crate::float::Float;

/// `out = w · x` for `w: [M, K]`, `x: [K]`.
#[inline]
pub fn matvec<T: Float, const M: usize, const K: usize>(
    w: &[[T; K]; M],
    x: &[T; K],
    out: &mut [T; M],
) {
    for (o, row) in out.iter_mut().zip(w) {
        *o = dot(row, x);
    }
}

/// `out += w · x` for `w: [M, K]`, `x: [K]`.
#[inline]
pub fn matvec_acc<T: Float, const M: usize, const K: usize>(
    w: &[[T; K]; M],
    x: &[T; K],
    out: &mut [T; M],
) {
    for (o, row) in out.iter_mut().zip(w) {
        *o += dot(row, x);
    }
}

/// `out += wᵀ · d` for `w: [M, K]`, `d: [M]` (the adjoint of `x` in `w · x`).
#[inline]
pub fn matvec_t_acc<T: Float, const M: usize, const K: usize>(
    w: &[[T; K]; M],
    d: &[T; M],
    out: &mut [T; K],
) {
    for (row, &di) in w.iter().zip(d) {
        for (o, &wij) in out.iter_mut().zip(row) {
            *o += wij * di;
        }
    }
}

/// `out = xᵀ · b` for `x: [K]`, `b: [K, N]` (a row vector times a matrix).
#[inline]
pub fn vecmat<T: Float, const K: usize, const N: usize>(
    x: &[T; K],
    b: &[[T; N]; K],
    out: &mut [T; N],
) {
    out.fill(T::ZERO);
    for (&xk, row) in x.iter().zip(b) {
        for (o, &bkj) in out.iter_mut().zip(row) {
            *o += xk * bkj;
        }
    }
}

/// `out += u ⊗ v` (`out[i][j] += u[i] v[j]`) for `u: [M]`, `v: [N]`: the
/// adjoint of `w` in `w · x` is `d ⊗ x`.
#[inline]
pub fn outer_acc<T: Float, const M: usize, const N: usize>(
    u: &[T; M],
    v: &[T; N],
    out: &mut [[T; N]; M],
) {
    for (row, &ui) in out.iter_mut().zip(u) {
        for (o, &vj) in row.iter_mut().zip(v) {
            *o += ui * vj;
        }
    }
}

/// `c = a · b` for `a: [M, K]`, `b: [K, N]`.
#[inline]
pub fn matmul<T: Float, const M: usize, const K: usize, const N: usize>(
    a: &[[T; K]; M],
    b: &[[T; N]; K],
    c: &mut [[T; N]; M],
) {
    for (crow, arow) in c.iter_mut().zip(a) {
        crow.fill(T::ZERO);
        for (&aik, brow) in arow.iter().zip(b) {
            for (cij, &bkj) in crow.iter_mut().zip(brow) {
                *cij += aik * bkj;
            }
        }
    }
}

/// `out += d · bᵀ` for `d: [M, N]`, `b: [K, N]` (the adjoint of `a` in `a · b`).
#[inline]
pub fn matmul_nt_acc<T: Float, const M: usize, const K: usize, const N: usize>(
    d: &[[T; N]; M],
    b: &[[T; N]; K],
    out: &mut [[T; K]; M],
) {
    for (orow, drow) in out.iter_mut().zip(d) {
        for (o, brow) in orow.iter_mut().zip(b) {
            *o += dot(drow, brow);
        }
    }
}

/// `out += aᵀ · d` for `a: [M, K]`, `d: [M, N]` (the adjoint of `b` in `a · b`).
#[inline]
pub fn matmul_tn_acc<T: Float, const M: usize, const K: usize, const N: usize>(
    a: &[[T; K]; M],
    d: &[[T; N]; M],
    out: &mut [[T; N]; K],
) {
    for (arow, drow) in a.iter().zip(d) {
        for (orow, &aik) in out.iter_mut().zip(arow) {
            for (o, &dij) in orow.iter_mut().zip(drow) {
                *o += aik * dij;
            }
        }
    }
}

/// `dst[j][i] = src[i][j]` for `src: [R, C]`, in 8 × 8 blocks so that both
/// sides are read and written a cache line at a time.
#[inline]
pub fn transpose<T: Float, const R: usize, const C: usize>(
    src: &[[T; C]; R],
    dst: &mut [[T; R]; C],
) {
    const BLK: usize = 8;
    for i0 in (0..R).step_by(BLK) {
        for j0 in (0..C).step_by(BLK) {
            for i in i0..(i0 + BLK).min(R) {
                for j in j0..(j0 + BLK).min(C) {
                    dst[j][i] = src[i][j];
                }
            }
        }
    }
}

/// `Σ u[i] v[i]`, with four partial sums so the compiler can vectorise it.
#[inline]
pub fn dot<T: Float, const N: usize>(u: &[T; N], v: &[T; N]) -> T {
    let mut acc = [T::ZERO; 4];
    let mut uc = u.chunks_exact(4);
    let mut vc = v.chunks_exact(4);
    for (a, b) in (&mut uc).zip(&mut vc) {
        acc[0] += a[0] * b[0];
        acc[1] += a[1] * b[1];
        acc[2] += a[2] * b[2];
        acc[3] += a[3] * b[3];
    }
    let mut tail = T::ZERO;
    for (&a, &b) in uc.remainder().iter().zip(vc.remainder()) {
        tail += a * b;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `c += a · b` for `a: [M, K]`, `b: [K, N]`.
#[inline]
pub fn matmul_acc<T: Float, const M: usize, const K: usize, const N: usize>(
    a: &[[T; K]; M],
    b: &[[T; N]; K],
    c: &mut [[T; N]; M],
) {
    for (crow, arow) in c.iter_mut().zip(a) {
        for (&aik, brow) in arow.iter().zip(b) {
            for (cij, &bkj) in crow.iter_mut().zip(brow) {
                *cij += aik * bkj;
            }
        }
    }
}

/// `out = z - logsumexp(z)`, shifted by `max(z)` so that large logits do not
/// overflow: `logsumexp(z) = m + ln Σ exp(z_i - m)`.
#[inline]
pub fn log_softmax<T: Float, const N: usize>(z: &[T; N], out: &mut [T; N]) {
    let m = z.iter().fold(z[0], |m, &v| m.max(v));
    let mut s = T::ZERO;
    for &v in z {
        s += (v - m).exp();
    }
    let lse = m + s.ln();
    for (o, &v) in out.iter_mut().zip(z) {
        *o = v - lse;
    }
}

/// `out += d - exp(y) Σ d` for `y = log_softmax(z)`: the adjoint of `z`
/// (`exp(y)` is `softmax(z)`, read back from the stored forward value).
#[inline]
pub fn log_softmax_grad_acc<T: Float, const N: usize>(y: &[T; N], d: &[T; N], out: &mut [T; N]) {
    let total: T = d.iter().copied().sum();
    for ((o, &yi), &di) in out.iter_mut().zip(y).zip(d) {
        *o += di - yi.exp() * total;
    }
}

/// `ln Σ exp(x)`, shifted by `max(x)` so large values do not overflow.
pub fn logsumexp<T: Float>(xs: &[T]) -> T {
    let m = xs.iter().fold(xs[0], |m, &v| m.max(v));
    let mut s = T::ZERO;
    for &v in xs {
        s += (v - m).exp();
    }
    m + s.ln()
}

/// The index of the largest element (the first on ties; a NaN never wins
/// over a number); 0 for an empty slice.
pub fn argmax<T: Float>(xs: &[T]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] || xs[best].to_f64().is_nan() {
            best = i;
        }
    }
    best
}
