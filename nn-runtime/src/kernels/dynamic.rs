//! Matrix products of sizes known only at run time, on row-major slices:
//! what a convolution's batched form multiplies (its weight by its
//! unfolded input, whose column count is the output positions times the
//! batch size, which a const generic cannot spell). `f32` goes through the
//! same SIMD kernels as the const-generic products; other types through
//! plain loops.

use super::{f32_kernels, simd_f32};
use crate::float::Float;

/// `c = a · b`, or `c += a · b` when `acc`, for row-major slices `a: [m, k]`,
/// `b: [k, n]`, `c: [m, n]` whose sizes are known only at run time: a
/// convolution's weight times its unfolded input, `n` the output positions
/// times the batch.
///
/// # Panics
///
/// If a slice's length is not its shape's.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Float>(m: usize, k: usize, n: usize, a: &[T], b: &[T], c: &mut [T], acc: bool) {
    if let Some((isa, a, b, c)) = simd_f32(m * k.max(n), a, b, c) {
        return f32_kernels::matmul(isa, m, k, n, a, b, c, acc);
    }
    assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n);
    for i in 0..m {
        let crow = &mut c[i * n..(i + 1) * n];
        if !acc {
            crow.fill(T::ZERO);
        }
        for p in 0..k {
            let aip = a[i * k + p];
            for (cij, &bpj) in crow.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                *cij += aip * bpj;
            }
        }
    }
}

/// `out += d · bᵀ` for row-major slices `d: [m, n]`, `b: [k, n]`, `out: [m, k]`
/// (sizes known at run time; a convolution's weight gradient).
///
/// # Panics
///
/// If a slice's length is not its shape's.
pub fn gemm_nt_acc<T: Float>(m: usize, k: usize, n: usize, d: &[T], b: &[T], out: &mut [T]) {
    if let Some((isa, d, b, o)) = simd_f32(m * k, d, b, out) {
        return f32_kernels::matmul_nt_acc(isa, m, k, n, d, b, o);
    }
    assert!(d.len() == m * n && b.len() == k * n && out.len() == m * k);
    for i in 0..m {
        for j in 0..k {
            let mut s = T::ZERO;
            for (&x, &y) in d[i * n..(i + 1) * n].iter().zip(&b[j * n..(j + 1) * n]) {
                s += x * y;
            }
            out[i * k + j] += s;
        }
    }
}

/// `out += aᵀ · d` for row-major slices `a: [m, k]`, `d: [m, n]`, `out: [k, n]`
/// (sizes known at run time; a convolution's input gradient, unfolded).
///
/// # Panics
///
/// If a slice's length is not its shape's.
pub fn gemm_tn_acc<T: Float>(m: usize, k: usize, n: usize, a: &[T], d: &[T], out: &mut [T]) {
    if let Some((isa, a, d, o)) = simd_f32(k * m.max(n), a, d, out) {
        return f32_kernels::matmul_tn_acc(isa, m, k, n, a, d, o);
    }
    assert!(a.len() == m * k && d.len() == m * n && out.len() == k * n);
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a · b` of row-major slices, in f64.
    fn naive(m: usize, k: usize, n: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for p in 0..k {
                for j in 0..n {
                    c[i * n + j] += a[i * k + p] * b[p * n + j];
                }
            }
        }
        c
    }

    fn transpose(r: usize, c: usize, a: &[f64]) -> Vec<f64> {
        (0..r * c).map(|e| a[(e % r) * c + e / r]).collect()
    }

    fn values(n: usize, seed: usize) -> Vec<f64> {
        (0..n)
            .map(|i| (((i * 7 + seed * 13) % 23) as f64 - 11.0) / 8.0)
            .collect()
    }

    fn close(got: &[f64], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "{g} vs {w}");
        }
    }

    /// The three products, in f64 and (through SIMD where the CPU has it)
    /// f32, against their definitions, on sizes that are no multiple of a
    /// vector.
    #[test]
    fn products_of_run_time_sizes() {
        for &(m, k, n) in &[(3, 5, 7), (8, 27, 96), (17, 9, 130)] {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let want = naive(m, k, n, &a, &b);
            let mut c = vec![1.0; m * n];
            gemm(m, k, n, &a, &b, &mut c, false);
            close(&c, &want);
            let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
            let mut c32 = vec![1.0f32; m * n];
            gemm(m, k, n, &to32(&a), &to32(&b), &mut c32, true);
            let plus_one: Vec<f64> = want.iter().map(|w| w + 1.0).collect();
            close(
                &c32.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
                &plus_one,
            );
            // d · bᵀ with d: [m, n], b: [k, n]
            let d = values(m * n, 3);
            let mut out = vec![0.0; m * k];
            gemm_nt_acc(m, k, n, &d, &b, &mut out);
            close(&out, &naive(m, n, k, &d, &transpose(k, n, &b)));
            // aᵀ · d with a: [m, k], d: [m, n]
            let mut out = vec![0.0; k * n];
            gemm_tn_acc(m, k, n, &a, &d, &mut out);
            close(&out, &naive(k, m, n, &transpose(m, k, &a), &d));
            let mut out32 = vec![0.0f32; k * n];
            gemm_tn_acc(m, k, n, &to32(&a), &to32(&d), &mut out32);
            close(
                &out32.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
                &naive(k, m, n, &transpose(m, k, &a), &d),
            );
        }
    }
}
