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
/// sizes, plus shapes crossing the blocking boundaries (KC = 256 deep,
/// packed blocks of 128 columns by 64 deep) and the batched MNIST shapes.
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
