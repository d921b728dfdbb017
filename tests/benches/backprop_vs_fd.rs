//! Backpropagation's claim in numbers: all gradients by one forward and
//! one backward pass, against finite differences (two forward passes per
//! parameter, central differences), as the parameter count grows.
//!
//! `backprop` is forward + backward of one sample. `fd/<n> params` perturbs
//! the first `n` parameters (all of them for the small nets, a prefix of
//! 2048 for the larger ones: the cost per parameter does not depend on which
//! one) and runs two forward passes for each; the report scales that to
//! all parameters.

use criterion::{criterion_group, criterion_main, Criterion};
use nn_runtime::prelude::*;
use nn_tests::bench_nets::{Digits, Mid, Mnist, Xor};
use nn_tests::Lcg;
use std::hint::black_box;
use std::time::Duration;

fn compare<N: Network<Scalar = f32>>(c: &mut Criterion, name: &str, x: N::Input, y: N::Target) {
    let mut g = c.benchmark_group(format!("backprop_vs_fd/{name}"));
    if std::env::var_os("NN_BENCH_QUICK").is_some() {
        g.warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(600));
    } else {
        g.warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
    }
    g.sample_size(10);
    let mut net = N::new(1);
    let mut tape = N::new_tape();
    let mut grads = N::new_grads();
    g.bench_function("backprop", |b| {
        b.iter(|| {
            grads.as_mut_slice().fill(0.0);
            let l = net.forward(black_box(&x), &y, &mut tape);
            net.backward(&tape, &mut grads);
            black_box(l)
        })
    });
    let n = N::PARAMS.min(2048);
    let mut numeric = vec![0.0f32; n];
    let h = 1e-3f32;
    g.bench_function(format!("fd/{n} of {} params", N::PARAMS), |b| {
        b.iter(|| {
            for (k, d) in numeric.iter_mut().enumerate() {
                let orig = net.params().as_slice()[k];
                net.params_mut().as_mut_slice()[k] = orig + h;
                let lp = net.forward(black_box(&x), &y, &mut tape);
                net.params_mut().as_mut_slice()[k] = orig - h;
                let lm = net.forward(black_box(&x), &y, &mut tape);
                net.params_mut().as_mut_slice()[k] = orig;
                *d = (lp - lm) / (2.0 * h);
            }
            black_box(&numeric);
        })
    });
    g.finish();
}

fn input<const I: usize>() -> [f32; I] {
    let mut r = Lcg::new(5);
    core::array::from_fn(|_| r.uniform(0.0, 1.0) as f32)
}

fn all(c: &mut Criterion) {
    compare::<Xor>(c, "xor", [1.0, 0.0], [1.0]);
    compare::<Digits>(c, "digits", input(), 3);
    compare::<Mid>(c, "mid_256_64_10", input(), 3);
    compare::<Mnist>(c, "mnist", input(), 3);
}

criterion_group!(benches, all);
criterion_main!(benches);
