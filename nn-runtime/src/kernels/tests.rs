//! Every kernel against a naive `f64` reference, on odd sizes, through every
//! implementation this CPU supports (each forced explicitly), and through the
//! const-generic entry points the generated code calls.

use super::f32_kernels as fk;
use super::*;

#[test]
fn kernels_agree_with_the_definitions() {
    let w = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
    let x = [1.0, -1.0, 2.0];
    let mut y = [0.0; 2];
    matvec(&w, &x, &mut y);
    assert_eq!(y, [5.0, 11.0]);
    matvec_acc(&w, &x, &mut y);
    assert_eq!(y, [10.0, 22.0]);
    let mut dx = [1.0; 3];
    matvec_t_acc(&w, &[1.0, 2.0], &mut dx);
    assert_eq!(dx, [10.0, 13.0, 16.0]);
    let mut dw = [[0.0; 3]; 2];
    outer_acc(&[1.0, 2.0], &x, &mut dw);
    assert_eq!(dw, [[1.0, -1.0, 2.0], [2.0, -2.0, 4.0]]);
    let mut r = [0.0; 3];
    vecmat(&[1.0, 2.0], &w, &mut r);
    assert_eq!(r, [9.0, 12.0, 15.0]);
    let b = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
    let mut c = [[0.0; 2]; 2];
    matmul(&w, &b, &mut c);
    assert_eq!(c, [[4.0, 5.0], [10.0, 11.0]]);
    let mut da = [[0.0; 3]; 2];
    matmul_nt_acc(&c, &b, &mut da);
    assert_eq!(da, [[4.0, 5.0, 9.0], [10.0, 11.0, 21.0]]);
    let mut db = [[0.0; 2]; 3];
    matmul_tn_acc(&w, &c, &mut db);
    assert_eq!(db, [[44.0, 49.0], [58.0, 65.0], [72.0, 81.0]]);
    let mut c2 = c;
    matmul_acc(&w, &b, &mut c2);
    assert_eq!(c2, [[8.0, 10.0], [20.0, 22.0]]);
    let mut ls = [0.0; 3];
    log_softmax(&[1000.0, 1000.0, 1000.0 + 3f64.ln()], &mut ls);
    let p: Vec<f64> = ls.iter().map(|v| v.exp()).collect();
    assert!(
        (p[0] - 0.2).abs() < 1e-12 && (p[2] - 0.6).abs() < 1e-12,
        "{p:?}"
    );
    let mut dz = [0.0; 3];
    log_softmax_grad_acc(&ls, &[0.0, -1.0, 0.0], &mut dz);
    assert!(
        (dz[0] - 0.2).abs() < 1e-12 && (dz[1] + 0.8).abs() < 1e-12 && (dz[2] - 0.6).abs() < 1e-12
    );
    assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
    assert_eq!(argmax(&[f32::NAN, -1.0, f32::NAN, 2.0]), 3);
    assert_eq!(argmax::<f64>(&[]), 0);
    let u: [f64; 7] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
    assert_eq!(dot(&u, &u), 140.0);
}

/// Tiny deterministic generator for test data in `[-1, 1)`.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

const SIZES: [usize; 8] = [1, 2, 3, 7, 17, 33, 65, 130];

fn isas() -> Vec<Isa> {
    let v: Vec<Isa> = Isa::ALL.into_iter().filter(|i| i.is_available()).collect();
    println!("testing {:?}", v);
    v
}

/// `got` equals the `f64` sum `exact` to within the rounding of `terms` terms
/// whose magnitudes sum to `abs` (f32 ε is 1.2e-7; the bound is generous).
#[track_caller]
fn close(got: f32, exact: f64, abs: f64, terms: usize, what: &str) {
    let tol = 2.0 * (terms as f64 + 2.0) * 1.2e-7 * abs + 1e-30;
    assert!(
        (got as f64 - exact).abs() <= tol,
        "{what}: got {got}, exact {exact}, |diff| {:e} > {tol:e}",
        (got as f64 - exact).abs()
    );
}

#[test]
fn matvec_every_isa() {
    let mut g = Gen(1);
    for isa in isas() {
        for &m in &SIZES {
            for &k in &SIZES {
                let (w, x, init) = (g.vec(m * k), g.vec(k), g.vec(m));
                for acc in [false, true] {
                    let mut out = if acc { init.clone() } else { vec![f32::NAN; m] };
                    fk::matvec(isa, &w, &x, &mut out, acc);
                    for i in 0..m {
                        let base = if acc { init[i] as f64 } else { 0.0 };
                        let (mut e, mut a) = (base, base.abs());
                        for j in 0..k {
                            e += w[i * k + j] as f64 * x[j] as f64;
                            a += (w[i * k + j] * x[j]).abs() as f64;
                        }
                        close(
                            out[i],
                            e,
                            a,
                            k,
                            &format!("{isa:?} matvec {m}x{k} acc={acc} [{i}]"),
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn matvec_t_acc_every_isa() {
    let mut g = Gen(2);
    for isa in isas() {
        for &m in &SIZES {
            for &k in &SIZES {
                let (w, d, init) = (g.vec(m * k), g.vec(m), g.vec(k));
                let mut out = init.clone();
                fk::matvec_t_acc(isa, &w, &d, &mut out);
                for j in 0..k {
                    let (mut e, mut a) = (init[j] as f64, init[j].abs() as f64);
                    for i in 0..m {
                        e += w[i * k + j] as f64 * d[i] as f64;
                        a += (w[i * k + j] * d[i]).abs() as f64;
                    }
                    close(
                        out[j],
                        e,
                        a,
                        m,
                        &format!("{isa:?} matvec_t_acc {m}x{k} [{j}]"),
                    );
                }
            }
        }
    }
}

#[test]
fn outer_acc_every_isa() {
    let mut g = Gen(3);
    for isa in isas() {
        for &m in &SIZES {
            for &n in &SIZES {
                let (u, v, init) = (g.vec(m), g.vec(n), g.vec(m * n));
                let mut out = init.clone();
                fk::outer_acc(isa, &u, &v, &mut out);
                for i in 0..m {
                    for j in 0..n {
                        let e = init[i * n + j] as f64 + u[i] as f64 * v[j] as f64;
                        let a = init[i * n + j].abs() as f64 + (u[i] * v[j]).abs() as f64;
                        close(
                            out[i * n + j],
                            e,
                            a,
                            1,
                            &format!("{isa:?} outer_acc {m}x{n}"),
                        );
                    }
                }
            }
        }
    }
}

/// Shapes for the matrix-matrix kernels: every combination of a few odd
/// sizes, plus shapes crossing the blocking boundaries (passes of at most
/// KC = 256 deep, packed blocks of 128 columns by 64 deep, row blocks) and
/// the batched MNIST shapes.
fn gemm_shapes() -> Vec<(usize, usize, usize)> {
    let small = [1, 3, 7, 17, 33, 65];
    let mut v = Vec::new();
    for &m in &small {
        for &k in &small {
            for &n in &small {
                v.push((m, k, n));
            }
        }
    }
    v.extend([
        // Row counts whose leftover rows take each branch of the row
        // blocking (merged into a taller block, a block of their own, split
        // with the last full block) on both vector widths.
        (13, 20, 40),
        (14, 9, 50),
        (23, 40, 33),
        (130, 300, 70),
        (9, 513, 31),
        (128, 784, 64),
        (10, 128, 64),
        (32, 64, 32),
        (300, 129, 65),
    ]);
    v
}

/// `(exact, Σ|terms|)` of `init + Σ_p a(i, p) b(p, j)`.
fn exact_dot(init: f64, terms: impl Iterator<Item = (f32, f32)>) -> (f64, f64) {
    let (mut e, mut a) = (init, init.abs());
    for (x, y) in terms {
        e += x as f64 * y as f64;
        a += (x * y).abs() as f64;
    }
    (e, a)
}

#[test]
fn matmul_every_isa() {
    let mut g = Gen(4);
    for isa in isas() {
        for (m, k, n) in gemm_shapes() {
            let (a, b, init) = (g.vec(m * k), g.vec(k * n), g.vec(m * n));
            for acc in [false, true] {
                let mut c = if acc {
                    init.clone()
                } else {
                    vec![f32::NAN; m * n]
                };
                fk::matmul(isa, m, k, n, &a, &b, &mut c, acc);
                for i in 0..m {
                    for j in 0..n {
                        let base = if acc { init[i * n + j] as f64 } else { 0.0 };
                        let (e, s) = exact_dot(base, (0..k).map(|p| (a[i * k + p], b[p * n + j])));
                        close(
                            c[i * n + j],
                            e,
                            s,
                            k,
                            &format!("{isa:?} matmul {m}x{k}x{n} acc={acc} [{i}][{j}]"),
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn matmul_nt_acc_every_isa() {
    let mut g = Gen(5);
    for isa in isas() {
        for (m, k, n) in gemm_shapes() {
            let (d, b, init) = (g.vec(m * n), g.vec(k * n), g.vec(m * k));
            let mut out = init.clone();
            fk::matmul_nt_acc(isa, m, k, n, &d, &b, &mut out);
            for i in 0..m {
                for j in 0..k {
                    let (e, s) = exact_dot(
                        init[i * k + j] as f64,
                        (0..n).map(|p| (d[i * n + p], b[j * n + p])),
                    );
                    close(
                        out[i * k + j],
                        e,
                        s,
                        n,
                        &format!("{isa:?} matmul_nt_acc {m}x{k}x{n} [{i}][{j}]"),
                    );
                }
            }
        }
    }
}

#[test]
fn matmul_tn_acc_every_isa() {
    let mut g = Gen(6);
    for isa in isas() {
        for (m, k, n) in gemm_shapes() {
            let (a, d, init) = (g.vec(m * k), g.vec(m * n), g.vec(k * n));
            let mut out = init.clone();
            fk::matmul_tn_acc(isa, m, k, n, &a, &d, &mut out);
            for j in 0..k {
                for q in 0..n {
                    let (e, s) = exact_dot(
                        init[j * n + q] as f64,
                        (0..m).map(|i| (a[i * k + j], d[i * n + q])),
                    );
                    close(
                        out[j * n + q],
                        e,
                        s,
                        m,
                        &format!("{isa:?} matmul_tn_acc {m}x{k}x{n} [{j}][{q}]"),
                    );
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "matmul: shapes")]
fn mismatched_lengths_panic_before_any_simd_code() {
    fk::matmul(isa(), 2, 3, 4, &[0.0; 6], &[0.0; 11], &mut [0.0; 8], false);
}

#[test]
fn forcing_an_unavailable_isa_is_refused() {
    for i in Isa::ALL {
        if !i.is_available() {
            assert!(
                std::panic::catch_unwind(|| fk::matvec(i, &[1.0], &[1.0], &mut [0.0], false))
                    .is_err()
            );
        }
    }
    assert!(Isa::Portable.is_available());
    assert!(isa().is_available());
}

/// The const-generic entry points (what generated code calls) agree with the
/// portable loops for f32 (SIMD path above `SIMD_MIN_ELEMS`) and are the
/// portable loops for f64.
#[test]
fn const_generic_entry_points_dispatch_correctly() {
    fn check<const M: usize, const K: usize, const N: usize>(g: &mut Gen) {
        let a: [[f32; K]; M] = core::array::from_fn(|_| core::array::from_fn(|_| g.next()));
        let b: [[f32; N]; K] = core::array::from_fn(|_| core::array::from_fn(|_| g.next()));
        let x: [f32; K] = core::array::from_fn(|_| g.next());
        let dm: [f32; M] = core::array::from_fn(|_| g.next());
        let dmn: [[f32; N]; M] = core::array::from_fn(|_| core::array::from_fn(|_| g.next()));
        let near = |p: &[f32], q: &[f32], what: &str| {
            for (i, (&u, &v)) in p.iter().zip(q).enumerate() {
                assert!(
                    (u - v).abs() <= 1e-4 * (1.0 + v.abs()),
                    "{what} {M}x{K}x{N} [{i}]: {u} vs {v}"
                );
            }
        };
        let (mut o1, mut o2) = ([0.5f32; M], [0.5f32; M]);
        matvec(&a, &x, &mut o1);
        portable::matvec(&a, &x, &mut o2);
        near(&o1, &o2, "matvec");
        matvec_acc(&a, &x, &mut o1);
        portable::matvec_acc(&a, &x, &mut o2);
        near(&o1, &o2, "matvec_acc");
        let (mut t1, mut t2) = ([0.25f32; K], [0.25f32; K]);
        matvec_t_acc(&a, &dm, &mut t1);
        portable::matvec_t_acc(&a, &dm, &mut t2);
        near(&t1, &t2, "matvec_t_acc");
        let (mut w1, mut w2) = (a, a);
        outer_acc(&dm, &x, &mut w1);
        portable::outer_acc(&dm, &x, &mut w2);
        near(w1.as_flattened(), w2.as_flattened(), "outer_acc");
        let (mut c1, mut c2) = ([[f32::NAN; N]; M], [[0.0f32; N]; M]);
        matmul(&a, &b, &mut c1);
        portable::matmul(&a, &b, &mut c2);
        near(c1.as_flattened(), c2.as_flattened(), "matmul");
        matmul_acc(&a, &b, &mut c1);
        portable::matmul_acc(&a, &b, &mut c2);
        near(c1.as_flattened(), c2.as_flattened(), "matmul_acc");
        let (mut n1, mut n2) = (a, a);
        matmul_nt_acc(&dmn, &b, &mut n1);
        portable::matmul_nt_acc(&dmn, &b, &mut n2);
        near(n1.as_flattened(), n2.as_flattened(), "matmul_nt_acc");
        let (mut p1, mut p2) = (b, b);
        matmul_tn_acc(&a, &dmn, &mut p1);
        portable::matmul_tn_acc(&a, &dmn, &mut p2);
        near(p1.as_flattened(), p2.as_flattened(), "matmul_tn_acc");
    }
    let mut g = Gen(7);
    check::<3, 5, 2>(&mut g);
    check::<17, 33, 7>(&mut g);
    check::<33, 65, 17>(&mut g);
    check::<32, 64, 32>(&mut g);
    check::<10, 128, 64>(&mut g);
    // f64 goes through the portable loops: bit-identical.
    let a = [[0.1f64; 40]; 20];
    let x = [0.3f64; 40];
    let (mut o1, mut o2) = ([0.0; 20], [0.0; 20]);
    matvec(&a, &x, &mut o1);
    portable::matvec(&a, &x, &mut o2);
    assert_eq!(o1, o2);
}

// ---------------------------------------------------------------------------
// Transcendental slice kernels.

/// Error of `got` in ulps of `f32` at the exact value `exact` (an `f64`
/// reference): `|got - exact| / ulp(exact)`, with `ulp` the spacing of `f32`
/// in `exact`'s binade (`2^-149` for subnormals). A correctly rounded result is
/// within 0.5. Results that must be infinite (the exact value beyond
/// `f32::MAX` rounds to infinity) or NaN count as 0 when they are, infinity
/// when not.
pub(super) fn ulp_error(got: f32, exact: f64) -> f64 {
    if exact.is_nan() {
        return if got.is_nan() { 0.0 } else { f64::INFINITY };
    }
    if got as f64 == exact {
        return 0.0;
    }
    // Past MAX + half an ulp the correctly rounded result is infinite.
    let overflow = f32::MAX as f64 * (1.0 + f32::EPSILON as f64 / 2.0);
    if exact.abs() >= overflow {
        let ok = got.is_infinite() && (got > 0.0) == (exact > 0.0);
        return if ok { 0.0 } else { f64::INFINITY };
    }
    let e = if exact == 0.0 {
        -149
    } else {
        (exact.abs().log2().floor() as i32).max(-126) - 23
    };
    ((got as f64) - exact).abs() / 2f64.powi(e)
}

/// Sweeps every `stride`-th `f32` bit pattern (both signs, all binades,
/// subnormals included; infinities and NaN left to the edge-case test)
/// through `func` on `isa`; returns the largest ulp error and where.
pub(super) fn sweep_ulps(isa: Isa, func: Func, stride: u64) -> (f64, f32) {
    let mut worst = (0.0, 0.0);
    let (mut xs, mut out) = (Vec::with_capacity(1 << 16), vec![0.0f32; 1 << 16]);
    let mut bits = 0u64;
    while bits < 1 << 32 {
        xs.clear();
        while xs.len() < 1 << 16 && bits < 1 << 32 {
            let x = f32::from_bits(bits as u32);
            // ln of a negative number is NaN by definition: the edge-case
            // test checks that; the sweep measures the accuracy where the
            // result is a number.
            if x.is_finite() && !(func == Func::Log && x < 0.0) {
                xs.push(x);
            }
            bits += stride;
        }
        fk::map(isa, func, &xs, &mut out[..xs.len()]);
        for (&x, &y) in xs.iter().zip(&out) {
            let e = ulp_error(y, func.f64(x as f64));
            if e > worst.0 || e.is_nan() {
                worst = (e, x);
            }
        }
    }
    worst
}

/// Every path, every function, a strided sweep over all `f32` values
/// (about a million inputs each): the error stays within the documented
/// bound. The full sweep (stride 1) is `transcendental_exhaustive`.
#[test]
fn transcendental_accuracy_sweep() {
    for isa in isas() {
        for func in Func::ALL {
            let (e, x) = sweep_ulps(isa, func, 4099);
            println!("{} {}: max {e:.3} ulp at {x:e}", isa.name(), func.name());
            assert!(
                e <= func.max_ulps(),
                "{} {}: {e} ulp at x = {x:e} (f32 {:e}, exact {:e}) > documented {}",
                isa.name(),
                func.name(),
                {
                    let mut o = [0.0];
                    fk::map(isa, func, &[x], &mut o);
                    o[0]
                },
                func.f64(x as f64),
                func.max_ulps()
            );
        }
    }
}

/// Every `f32` (4.3 billion inputs per function and path; about 13 minutes
/// in release on the README's machine): `cargo test --release -p nn-runtime
/// -- --ignored transcendental_exhaustive --nocapture`.
#[test]
#[ignore = "minutes; run in release to re-measure the documented bounds"]
fn transcendental_exhaustive() {
    for isa in isas() {
        for func in Func::ALL {
            let (e, x) = sweep_ulps(isa, func, 1);
            println!("{} {}: max {e:.4} ulp at {x:e}", isa.name(), func.name());
            assert!(e <= func.max_ulps());
        }
    }
}

/// The edge values, on every path, at every position in a vector (the
/// vector body and the tail go through different code).
#[test]
fn transcendental_edge_values() {
    let tiny = f32::from_bits(1); // the smallest subnormal
    let inf = f32::INFINITY;
    let cases: &[(Func, f32, f32)] = &[
        (Func::Exp, 0.0, 1.0),
        (Func::Exp, -0.0, 1.0),
        (Func::Exp, tiny, 1.0),
        (Func::Exp, -tiny, 1.0),
        (Func::Exp, -inf, 0.0),
        (Func::Exp, inf, inf),
        (Func::Exp, 89.0, inf),
        (Func::Exp, 1000.0, inf),
        (Func::Exp, f32::MAX, inf),
        (Func::Exp, -104.0, 0.0),
        (Func::Exp, -1000.0, 0.0),
        (Func::Exp, f32::MIN, 0.0),
        (Func::Log, 1.0, 0.0),
        (Func::Log, 0.0, -inf),
        (Func::Log, -0.0, -inf),
        (Func::Log, inf, inf),
        (Func::Log, -1.0, f32::NAN),
        (Func::Log, -tiny, f32::NAN),
        (Func::Log, -inf, f32::NAN),
        (Func::Log, tiny, (-149.0 * core::f64::consts::LN_2) as f32),
        (Func::Tanh, 0.0, 0.0),
        (Func::Tanh, tiny, tiny),
        (Func::Tanh, -tiny, -tiny),
        (Func::Tanh, 9.1, 1.0),
        (Func::Tanh, -9.1, -1.0),
        (Func::Tanh, 100.0, 1.0),
        (Func::Tanh, f32::MAX, 1.0),
        (Func::Tanh, f32::MIN, -1.0),
        (Func::Tanh, inf, 1.0),
        (Func::Tanh, -inf, -1.0),
        (Func::Sigmoid, 0.0, 0.5),
        (Func::Sigmoid, -0.0, 0.5),
        (Func::Sigmoid, tiny, 0.5),
        (Func::Sigmoid, 17.0, 1.0),
        (Func::Sigmoid, 1000.0, 1.0),
        (Func::Sigmoid, f32::MAX, 1.0),
        (Func::Sigmoid, inf, 1.0),
        (Func::Sigmoid, -104.0, 0.0),
        (Func::Sigmoid, -1000.0, 0.0),
        (Func::Sigmoid, f32::MIN, 0.0),
        (Func::Sigmoid, -inf, 0.0),
    ];
    let same = |a: f32, b: f32| (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits();
    for isa in isas() {
        for &(func, x, want) in cases {
            for len in [1, 5, 16, 37] {
                for pos in [0, len / 2, len - 1] {
                    let mut xs = vec![0.5f32; len];
                    xs[pos] = x;
                    let mut out = vec![0.0f32; len];
                    fk::map(isa, func, &xs, &mut out);
                    assert!(
                        same(out[pos], want),
                        "{} {}({x:e}) = {:e}, want {want:e} (len {len}, at {pos})",
                        isa.name(),
                        func.name(),
                        out[pos]
                    );
                    fk::map_in_place(isa, func, &mut xs);
                    assert!(same(xs[pos], want), "{} in place", func.name());
                }
            }
        }
        // NaN in, NaN out, for every function; and no NaN out of a non-NaN
        // input for exp, tanh and sigmoid (the sweep checks the values).
        for func in Func::ALL {
            let mut out = [0.0f32; 3];
            fk::map(isa, func, &[f32::NAN, -f32::NAN, 1.0], &mut out);
            assert!(out[0].is_nan() && out[1].is_nan() && !out[2].is_nan());
        }
        // Subnormal results of exp and sigmoid near the bottom of the range.
        let xs: Vec<f32> = (0..200).map(|i| -87.0 - i as f32 * 0.085).collect();
        for func in [Func::Exp, Func::Sigmoid] {
            let mut out = vec![0.0f32; xs.len()];
            fk::map(isa, func, &xs, &mut out);
            for (&x, &y) in xs.iter().zip(&out) {
                let e = ulp_error(y, func.f64(x as f64));
                assert!(
                    e <= func.max_ulps(),
                    "{} {}({x}) = {y:e}: {e} ulp",
                    isa.name(),
                    func.name()
                );
            }
        }
    }
}

/// The generic entry points: `f32` goes through the detected path and agrees
/// with it bit for bit, `f64` through `libm` (to within its own rounding),
/// in place and not, and a length mismatch panics.
#[test]
fn map_entry_points() {
    let xs: Vec<f32> = (0..45).map(|i| (i as f32 - 20.0) * 0.37).collect();
    let pos: Vec<f32> = xs.iter().map(|x| x.abs() + 0.01).collect();
    type MapFn<T> = fn(&[T], &mut [T]);
    type InPlaceFn<T> = fn(&mut [T]);
    let f32_fns: [(Func, MapFn<f32>, InPlaceFn<f32>); 4] = [
        (Func::Exp, exp_map, exp_in_place),
        (Func::Log, log_map, log_in_place),
        (Func::Tanh, tanh_map, tanh_in_place),
        (Func::Sigmoid, sigmoid_map, sigmoid_in_place),
    ];
    for (func, map, in_place) in f32_fns {
        let input = if func == Func::Log { &pos } else { &xs };
        let mut a = vec![0.0f32; input.len()];
        map(input, &mut a);
        let mut b = vec![0.0f32; input.len()];
        fk::map(isa(), func, input, &mut b);
        assert_eq!(a, b, "{}", func.name());
        let mut c = input.clone();
        in_place(&mut c);
        assert_eq!(a, c, "{} in place", func.name());
    }
    let f64_fns: [(Func, MapFn<f64>, InPlaceFn<f64>); 4] = [
        (Func::Exp, exp_map, exp_in_place),
        (Func::Log, log_map, log_in_place),
        (Func::Tanh, tanh_map, tanh_in_place),
        (Func::Sigmoid, sigmoid_map, sigmoid_in_place),
    ];
    for (func, map, in_place) in f64_fns {
        let input: Vec<f64> = if func == Func::Log { &pos } else { &xs }
            .iter()
            .map(|&v| v as f64)
            .collect();
        let mut a = vec![0.0f64; input.len()];
        map(&input, &mut a);
        let mut c = input.clone();
        in_place(&mut c);
        assert_eq!(a, c);
        for (&x, &y) in input.iter().zip(&a) {
            let naive = match func {
                Func::Exp => x.exp(),
                Func::Log => x.ln(),
                Func::Tanh => x.tanh(),
                Func::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            };
            assert!(
                (y - naive).abs() <= 4.0 * f64::EPSILON * naive.abs(),
                "{} {x}",
                func.name()
            );
        }
    }
    let mut sat = [0.0f64; 2];
    sigmoid_map(&[-800.0, 800.0], &mut sat);
    assert_eq!(sat, [0.0, 1.0]);
    assert!(std::panic::catch_unwind(|| exp_map(&[1.0f32; 3], &mut [0.0f32; 2])).is_err());
}

#[test]
fn transpose_every_isa() {
    let mut g = Gen(8);
    for isa in isas() {
        for &r in &SIZES {
            for &c in &[1, 7, 8, 9, 16, 31, 64, 130] {
                let src = g.vec(r * c);
                let mut dst = vec![f32::NAN; r * c];
                fk::transpose(isa, r, c, &src, &mut dst);
                for i in 0..r {
                    for j in 0..c {
                        assert_eq!(dst[j * r + i], src[i * c + j], "{isa:?} {r}x{c} [{i}][{j}]");
                    }
                }
            }
        }
    }
    // The const-generic entry point: f32 (SIMD above SIMD_MIN_ELEMS) and f64.
    fn check<T: Float, const R: usize, const C: usize>(f: impl Fn(usize) -> T) {
        let src: [[T; C]; R] = core::array::from_fn(|i| core::array::from_fn(|j| f(i * C + j)));
        let mut dst = [[T::ZERO; R]; C];
        transpose(&src, &mut dst);
        for i in 0..R {
            for j in 0..C {
                assert_eq!(dst[j][i].to_f64(), src[i][j].to_f64());
            }
        }
    }
    check::<f32, 64, 33>(|k| k as f32);
    check::<f32, 3, 5>(|k| k as f32);
    check::<f32, 32, 784>(|k| k as f32 * 0.5);
    check::<f64, 17, 9>(|k| k as f64);
}

/// The batched (column-wise) log-softmax and its gradient agree with the
/// per-sample kernels applied to each column (f64 to 1e-12; f32 to a few
/// ulps, as the vectorised exp and log round differently from libm), and
/// large logits do not overflow.
#[test]
fn log_softmax_cols_matches_per_column() {
    const N: usize = 10;
    const B: usize = 37;
    let mut g = Gen(9);
    let mut z64 = [[0.0f64; B]; N];
    let mut d64 = [[0.0f64; B]; N];
    for i in 0..N {
        for j in 0..B {
            // Values representable in f32, so both types see the same inputs.
            z64[i][j] = (g.next() * 30.0 + if j % 5 == 0 { 1000.0 } else { 0.0 }) as f64;
            d64[i][j] = g.next() as f64;
        }
    }
    let col = |m: &[[f64; B]; N], j: usize| -> [f64; N] { core::array::from_fn(|i| m[i][j]) };
    let mut y64 = [[0.0f64; B]; N];
    log_softmax_cols(&z64, &mut y64);
    let mut gz64 = [[0.5f64; B]; N];
    log_softmax_cols_grad_acc(&y64, &d64, &mut gz64);
    let z32: [[f32; B]; N] = core::array::from_fn(|i| core::array::from_fn(|j| z64[i][j] as f32));
    let d32: [[f32; B]; N] = core::array::from_fn(|i| core::array::from_fn(|j| d64[i][j] as f32));
    let mut y32 = [[0.0f32; B]; N];
    log_softmax_cols(&z32, &mut y32);
    let mut gz32 = [[0.5f32; B]; N];
    log_softmax_cols_grad_acc(&y32, &d32, &mut gz32);
    for j in 0..B {
        let (zc, dc) = (col(&z64, j), col(&d64, j));
        let mut want = [0.0; N];
        log_softmax(&zc, &mut want);
        let mut gwant = [0.5; N];
        log_softmax_grad_acc(&want, &dc, &mut gwant);
        for i in 0..N {
            assert!(
                (y64[i][j] - want[i]).abs() <= 1e-12 * (1.0 + want[i].abs()),
                "f64 y [{i}][{j}]"
            );
            assert!(
                (gz64[i][j] - gwant[i]).abs() <= 1e-12,
                "f64 grad [{i}][{j}]"
            );
            let tol = 1e-5 * (1.0 + want[i].abs());
            assert!(
                (y32[i][j] as f64 - want[i]).abs() <= tol,
                "f32 y [{i}][{j}]: {} vs {}",
                y32[i][j],
                want[i]
            );
            assert!(
                (gz32[i][j] as f64 - gwant[i]).abs() <= 1e-5,
                "f32 grad [{i}][{j}]"
            );
        }
    }
}

/// Rows longer than the gradient's exponential buffer (1024) take the
/// piecewise path; it agrees with the per-sample kernel too.
#[test]
fn log_softmax_cols_grad_long_rows() {
    const N: usize = 3;
    const B: usize = 1500;
    let mut g = Gen(10);
    let z: [[f64; B]; N] =
        core::array::from_fn(|_| core::array::from_fn(|_| g.next() as f64 * 5.0));
    let d: [[f64; B]; N] = core::array::from_fn(|_| core::array::from_fn(|_| g.next() as f64));
    let mut y = [[0.0; B]; N];
    log_softmax_cols(&z, &mut y);
    let mut gz = [[0.25; B]; N];
    log_softmax_cols_grad_acc(&y, &d, &mut gz);
    for j in 0..B {
        let zc: [f64; N] = core::array::from_fn(|i| z[i][j]);
        let dc: [f64; N] = core::array::from_fn(|i| d[i][j]);
        let mut want = [0.0; N];
        log_softmax(&zc, &mut want);
        let mut gwant = [0.25; N];
        log_softmax_grad_acc(&want, &dc, &mut gwant);
        for i in 0..N {
            assert!((y[i][j] - want[i]).abs() <= 1e-12 && (gz[i][j] - gwant[i]).abs() <= 1e-12);
        }
    }
}
