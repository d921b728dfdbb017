//! The `f32` kernels alone, at the benchmark networks' shapes, through every
//! implementation this CPU supports (`portable`, `avx2+fma`, `avx512f`), so
//! the dispatch's gain is measured, not assumed. Throughput is FLOPs (`2mkn`
//! for a product), so criterion's `thrpt` reads as FLOP/s.
//!
//! `transcendental` times the vectorised `exp`, `ln`, `tanh` and `sigmoid`
//! slice kernels on each path against a scalar `libm` loop.
//!
//! `composed_step` times a whole batched training step of mnist (b64) and
//! digits (b32) written as the batched generated code is: the batch
//! transposed into the feature-major layout `[[f32; B]; n]`, the
//! const-generic matrix-matrix kernels, elementwise loops between them, one
//! SGD update; `loops` does the transposition and the log-softmax (and its
//! gradient) with element loops and scalar `exp`/`ln` as the generated code
//! does today, `kernels` with `transpose`, `log_softmax_cols` and
//! `log_softmax_cols_grad_acc`.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use nn_runtime::kernels::{self, f32_kernels as fk, Func, Isa};
use nn_runtime::Zeroable;
use nn_tests::bench_nets::{Digits, Mnist};
use nn_tests::Lcg;
use std::hint::black_box;
use std::time::Duration;

fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    if std::env::var_os("NN_BENCH_QUICK").is_some() {
        g.warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(500))
            .sample_size(20);
    } else {
        g.warm_up_time(Duration::from_millis(400))
            .measurement_time(Duration::from_millis(1500))
            .sample_size(30);
    }
}

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Lcg::new(seed);
    (0..n).map(|_| r.uniform(-1.0, 1.0) as f32).collect()
}

fn isas() -> impl Iterator<Item = Isa> {
    Isa::ALL.into_iter().filter(|i| i.is_available())
}

fn products(c: &mut Criterion) {
    // (name, m, k, n): the batched layers' forward, weight-gradient and
    // input-gradient products.
    let shapes = [
        ("mnist_b64_l1", 128, 784, 64),
        ("mnist_b64_l2", 10, 128, 64),
        ("digits_b32_l1", 32, 64, 32),
    ];
    for (name, m, k, n) in shapes {
        let mut g = c.benchmark_group(format!("kernels/{name}"));
        configure(&mut g);
        g.throughput(Throughput::Elements(2 * (m * k * n) as u64));
        let (a, b, d, bt) = (
            data(m * k, 1),
            data(k * n, 2),
            data(m * n, 3),
            data(k * n, 4),
        );
        let (mut c_mn, mut c_mk, mut c_kn) = (vec![0.0; m * n], vec![0.0; m * k], vec![0.0; k * n]);
        for isa in isas() {
            g.bench_function(format!("matmul/{}", isa.name()), |bench| {
                bench.iter(|| fk::matmul(isa, m, k, n, black_box(&a), &b, &mut c_mn, false))
            });
            g.bench_function(format!("matmul_nt_acc/{}", isa.name()), |bench| {
                bench.iter(|| fk::matmul_nt_acc(isa, m, k, n, black_box(&d), &bt, &mut c_mk))
            });
            g.bench_function(format!("matmul_tn_acc/{}", isa.name()), |bench| {
                bench.iter(|| fk::matmul_tn_acc(isa, m, k, n, black_box(&a), &d, &mut c_kn))
            });
        }
        g.finish();
    }
    let vec_shapes = [
        ("mnist_l1", 128, 784),
        ("mnist_l2", 10, 128),
        ("digits_l1", 32, 64),
        ("digits_l2", 10, 32),
    ];
    for (name, m, k) in vec_shapes {
        let mut g = c.benchmark_group(format!("kernels/{name}"));
        configure(&mut g);
        g.throughput(Throughput::Elements(2 * (m * k) as u64));
        let (w, x, u) = (data(m * k, 5), data(k, 6), data(m, 7));
        let (mut om, mut ok, mut omk) = (vec![0.0; m], vec![0.0; k], vec![0.0; m * k]);
        for isa in isas() {
            g.bench_function(format!("matvec/{}", isa.name()), |bench| {
                bench.iter(|| fk::matvec(isa, black_box(&w), &x, &mut om, false))
            });
            g.bench_function(format!("matvec_t_acc/{}", isa.name()), |bench| {
                bench.iter(|| fk::matvec_t_acc(isa, black_box(&w), &u, &mut ok))
            });
            g.bench_function(format!("outer_acc/{}", isa.name()), |bench| {
                bench.iter(|| fk::outer_acc(isa, black_box(&u), &x, &mut omk))
            });
        }
        g.finish();
    }
}

/// The transcendental slice kernels against a scalar `libm` loop (std's
/// `f32::exp`, `ln`, `tanh` and `1 / (1 + exp(-x))`), on 1024 inputs spread
/// over the range where each function is not saturated; throughput is
/// elements per second.
fn transcendental(c: &mut Criterion) {
    const N: usize = 1024;
    for func in Func::ALL {
        let mut g = c.benchmark_group(format!("transcendental/{}", func.name()));
        configure(&mut g);
        g.throughput(Throughput::Elements(N as u64));
        let (lo, hi) = match func {
            Func::Exp => (-80.0, 80.0),
            Func::Log => (1e-6, 1e3),
            Func::Tanh => (-5.0, 5.0),
            Func::Sigmoid => (-20.0, 20.0),
        };
        let mut r = Lcg::new(11);
        let x: Vec<f32> = (0..N).map(|_| r.uniform(lo, hi) as f32).collect();
        let mut out = vec![0.0f32; N];
        // One loop per function (no function pointer), so each is compiled
        // with its call inlined where the compiler can.
        macro_rules! scalar_loop {
            ($f:expr) => {
                g.bench_function("libm_scalar_loop", |bench| {
                    bench.iter(|| {
                        for (o, &v) in out.iter_mut().zip(black_box(&x)) {
                            *o = $f(v);
                        }
                    })
                })
            };
        }
        match func {
            Func::Exp => scalar_loop!(f32::exp),
            Func::Log => scalar_loop!(f32::ln),
            Func::Tanh => scalar_loop!(f32::tanh),
            Func::Sigmoid => scalar_loop!(|v: f32| 1.0 / (1.0 + (-v).exp())),
        };
        for isa in isas() {
            g.bench_function(isa.name(), |bench| {
                bench.iter(|| fk::map(isa, func, black_box(&x), &mut out))
            });
        }
        g.finish();
    }
}

/// An `I -> H relu -> O` softmax-cross-entropy step on a batch of `B`, as
/// the batched generated code runs it through the kernels.
#[repr(C)]
struct Step<const I: usize, const H: usize, const O: usize, const B: usize> {
    w1: [[f32; I]; H],
    b1: [f32; H],
    w2: [[f32; H]; O],
    b2: [f32; O],
    gw1: [[f32; I]; H],
    gb1: [f32; H],
    gw2: [[f32; H]; O],
    gb2: [f32; O],
    /// The batch as the caller passes it: one sample per row.
    inputs: [[f32; I]; B],
    /// The batch feature-major, one sample per column (the tape's layout).
    x: [[f32; B]; I],
    h: [[f32; B]; H],
    z: [[f32; B]; O],
    ls: [[f32; B]; O],
    dz: [[f32; B]; O],
    dh: [[f32; B]; H],
    labels: [usize; B],
}

// SAFETY: a `#[repr(C)]` struct of `f32` and `usize` arrays: zeros are valid.
unsafe impl<const I: usize, const H: usize, const O: usize, const B: usize> Zeroable
    for Step<I, H, O, B>
{
}

/// How the step does the work between the matrix products.
#[derive(Clone, Copy, PartialEq)]
enum Glue {
    /// As the generated code does it today: the batch transposed by an
    /// element loop, the log-softmax and its gradient column by column with
    /// scalar `exp`/`ln`.
    Loops,
    /// Through the kernels: `transpose`, `log_softmax_cols` and
    /// `log_softmax_cols_grad_acc` (vectorised `exp`/`ln`).
    Kernels,
}

impl<const I: usize, const H: usize, const O: usize, const B: usize> Step<I, H, O, B> {
    fn new() -> Box<Self> {
        let mut s = Self::zeroed_box();
        let mut r = Lcg::new(3);
        for v in
            s.w1.as_flattened_mut()
                .iter_mut()
                .chain(s.w2.as_flattened_mut())
        {
            *v = r.uniform(-0.1, 0.1) as f32;
        }
        for v in s.inputs.as_flattened_mut() {
            *v = r.uniform(0.0, 1.0) as f32;
        }
        for (b, l) in s.labels.iter_mut().enumerate() {
            *l = b % O;
        }
        s
    }

    // The `Loops` variant indexes as the generated code does.
    #[allow(clippy::needless_range_loop)]
    fn step(&mut self, lr: f32, glue: Glue) -> f32 {
        match glue {
            Glue::Loops => {
                for j in 0..B {
                    for i in 0..I {
                        self.x[i][j] = self.inputs[j][i];
                    }
                }
            }
            Glue::Kernels => kernels::transpose(&self.inputs, &mut self.x),
        }
        kernels::matmul(&self.w1, &self.x, &mut self.h);
        for (row, &bias) in self.h.iter_mut().zip(&self.b1) {
            for v in row.iter_mut() {
                *v = (*v + bias).max(0.0);
            }
        }
        kernels::matmul(&self.w2, &self.h, &mut self.z);
        for (row, &bias) in self.z.iter_mut().zip(&self.b2) {
            for v in row.iter_mut() {
                *v += bias;
            }
        }
        match glue {
            Glue::Loops => {
                for j in 0..B {
                    let mut m = self.z[0][j];
                    for i in 1..O {
                        m = m.max(self.z[i][j]);
                    }
                    let mut s = 0.0;
                    for i in 0..O {
                        s += (self.z[i][j] - m).exp();
                    }
                    let lse = m + s.ln();
                    for i in 0..O {
                        self.ls[i][j] = self.z[i][j] - lse;
                    }
                }
            }
            Glue::Kernels => kernels::log_softmax_cols(&self.z, &mut self.ls),
        }
        let mut loss = 0.0;
        let mut d_ls = [[0.0f32; B]; O];
        for (j, &l) in self.labels.iter().enumerate() {
            loss -= self.ls[l][j];
            d_ls[l][j] = -1.0;
        }
        for row in self.dz.iter_mut() {
            *row = [0.0; B];
        }
        match glue {
            Glue::Loops => {
                for j in 0..B {
                    let mut total = 0.0;
                    for row in &d_ls {
                        total += row[j];
                    }
                    for i in 0..O {
                        self.dz[i][j] += d_ls[i][j] - self.ls[i][j].exp() * total;
                    }
                }
            }
            Glue::Kernels => kernels::log_softmax_cols_grad_acc(&self.ls, &d_ls, &mut self.dz),
        }
        for (g, row) in self.gb2.iter_mut().zip(&self.dz) {
            *g += row.iter().sum::<f32>();
        }
        for row in self.dh.iter_mut() {
            *row = [0.0; B];
        }
        kernels::matmul_tn_acc(&self.w2, &self.dz, &mut self.dh);
        kernels::matmul_nt_acc(&self.dz, &self.h, &mut self.gw2);
        for (drow, hrow) in self.dh.iter_mut().zip(&self.h) {
            for (d, &h) in drow.iter_mut().zip(hrow) {
                if h <= 0.0 {
                    *d = 0.0;
                }
            }
        }
        for (g, row) in self.gb1.iter_mut().zip(&self.dh) {
            *g += row.iter().sum::<f32>();
        }
        kernels::matmul_nt_acc(&self.dh, &self.x, &mut self.gw1);
        let params = [
            self.w1.as_flattened_mut(),
            &mut self.b1,
            self.w2.as_flattened_mut(),
            &mut self.b2,
        ];
        let grads = [
            self.gw1.as_flattened_mut(),
            &mut self.gb1,
            self.gw2.as_flattened_mut(),
            &mut self.gb2,
        ];
        for (p, g) in params.into_iter().zip(grads) {
            for (pi, gi) in p.iter_mut().zip(g.iter_mut()) {
                *pi -= lr * *gi;
                *gi = 0.0;
            }
        }
        loss
    }
}

fn composed<const I: usize, const H: usize, const O: usize, const B: usize>(
    c: &mut Criterion,
    name: &str,
    flops: u64,
) {
    let mut g = c.benchmark_group(format!("composed_step/{name}"));
    configure(&mut g);
    g.throughput(Throughput::Elements(flops));
    let mut s = Step::<I, H, O, B>::new();
    for isa in isas() {
        kernels::force_isa(Some(isa));
        for (glue, name) in [(Glue::Loops, "loops"), (Glue::Kernels, "kernels")] {
            g.bench_function(format!("{}/{name}", isa.name()), |bench| {
                bench.iter(|| black_box(s.step(black_box(1e-3), glue)))
            });
        }
    }
    kernels::force_isa(None);
    g.finish();
}

fn composed_steps(c: &mut Criterion) {
    // FLOPs as the generated networks count them (same shapes).
    let flops = |fwd: u64, bwd: u64, params: usize, b: u64| b * (fwd + bwd) + 2 * params as u64;
    composed::<784, 128, 10, 64>(
        c,
        "mnist_b64",
        flops(
            Mnist::FORWARD_FLOPS,
            Mnist::BACKWARD_FLOPS,
            Mnist::PARAMS,
            64,
        ),
    );
    composed::<64, 32, 10, 32>(
        c,
        "digits_b32",
        flops(
            Digits::FORWARD_FLOPS,
            Digits::BACKWARD_FLOPS,
            Digits::PARAMS,
            32,
        ),
    );
}

criterion_group!(benches, products, transcendental, composed_steps);
criterion_main!(benches);
