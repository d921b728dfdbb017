//! What derivatives inside a definition cost, per sample, against the plain
//! loss of the same network:
//!
//! - `pinn`: the 1-32-32-1 tanh network of the physics-informed example,
//!   forward + backward of the plain regression loss `mse(u, f)` against
//!   the residual loss `mse(u'', f)` (`grad` twice: the forward pass holds a
//!   first and a second derivative, the backward pass differentiates both);
//! - `penalty`: a 64-32-10 classifier with and without a gradient penalty
//!   `(‖∂loss/∂x‖ - 1)²` in its loss;
//! - `digits`: the 64-32-10 network's backward pass against its generated
//!   `input_gradient` and `hvp`.
//!
//! f64 for the physics-informed networks (as in the example), f32 for the
//! classifiers.

use criterion::{criterion_group, criterion_main, Criterion};
use nn_runtime::prelude::*;
use nn_tests::bench_nets::Digits;
use nn_tests::Lcg;
use std::hint::black_box;
use std::time::Duration;

#[network {
    dtype f64; input x[1]; target f[1];
    h1 = tanh(dense(x, 32));
    h2 = tanh(dense(h1, 32));
    u = x * (1 - x) * dense(h2, 1);
    loss = mse(u, f);
}]
pub struct Plain;

#[network {
    dtype f64; input x[1]; target f[1];
    h1 = tanh(dense(x, 32));
    h2 = tanh(dense(h1, 32));
    u = x * (1 - x) * dense(h2, 1);
    du = grad(sum(u), x);
    d2u = grad(sum(du), x);
    output u;
    loss = mse(d2u, f);
}]
pub struct Residual;

#[network {
    input x[64]; target c: class[10];
    h = tanh(dense(x, 32));
    out = dense(h, 10);
    loss = cross_entropy(out, c);
}]
pub struct Classifier;

#[network {
    input x[64]; target c: class[10];
    h = tanh(dense(x, 32));
    out = dense(h, 10);
    penalty = square(norm(grad(cross_entropy(out, c), x)) - 1);
    output out;
    loss = cross_entropy(out, c) + 0.1 * penalty;
}]
pub struct Penalised;

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    if std::env::var_os("NN_BENCH_QUICK").is_some() {
        g.warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(600));
    } else {
        g.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
    }
    g
}

fn train_step<N: Network>(
    net: &N,
    x: &N::Input,
    y: &N::Target,
    tape: &mut N::Tape,
    grads: &mut N::Params,
) -> N::Scalar {
    let l = net.forward(black_box(x), black_box(y), tape);
    net.backward(tape, grads);
    l
}

fn bench_step<N: Network>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    x: N::Input,
    y: N::Target,
) {
    let net = N::new(1);
    let mut tape = N::new_tape();
    let mut grads = N::new_grads();
    g.bench_function(name, |b| {
        b.iter(|| black_box(train_step(&net, &x, &y, &mut tape, &mut grads)))
    });
}

fn derivatives(c: &mut Criterion) {
    let mut g = group(c, "derivatives/pinn");
    bench_step::<Plain>(&mut g, "plain_loss/forward_backward", [0.3], [-2.5]);
    bench_step::<Residual>(&mut g, "residual_loss/forward_backward", [0.3], [-2.5]);
    g.finish();

    let mut r = Lcg::new(3);
    let x: [f32; 64] = core::array::from_fn(|_| r.uniform(0.0, 1.0) as f32);
    let mut g = group(c, "derivatives/penalty");
    bench_step::<Classifier>(&mut g, "plain_loss/forward_backward", x, 3);
    bench_step::<Penalised>(&mut g, "gradient_penalty/forward_backward", x, 3);
    g.finish();

    let mut g = group(c, "derivatives/digits");
    bench_step::<Digits>(&mut g, "forward_backward", x, 3);
    let net = Digits::new(1);
    g.bench_function("input_gradient", |b| {
        b.iter(|| black_box(net.input_gradient(black_box(&x), &3)))
    });
    let v = Digits::new(2);
    let mut out = Digits::new_grads();
    g.bench_function("hvp", |b| {
        b.iter(|| net.hvp(black_box(&x), &3, v.params(), &mut out))
    });
    g.finish();
}

criterion_group!(benches, derivatives);
criterion_main!(benches);
