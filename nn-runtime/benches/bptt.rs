//! Cost of one BPTT training step as the sequence grows: an Elman net
//! (input 8, 32 tanh units, a linear output per step, MSE summed over the
//! steps) at T = 8, 16, 32 and 64; each iteration is one forward pass, one
//! backward pass through time and one SGD update, on one sequence. The
//! generated code does the same work at every step, so the time should grow
//! linearly in T (criterion's throughput line gives the time per step).
//!
//! `cargo bench -p nn-runtime --bench bptt` (on one core:
//! `taskset -c 0 cargo bench -p nn-runtime --bench bptt`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nn_runtime::prelude::*;
use nn_runtime::Rng;
use std::hint::black_box;

// The same definition at each length (`steps` is fixed at compile time).
#[network {
    steps 8;
    input  x[t][8];
    target y[t][1];
    state  h[32] = zeros;
    param  wh[32, 32] = xavier;
    h[t]   = tanh(wh @ h[t-1] + dense(x[t], 32));
    out[t] = dense(h[t], 1);
    loss   = sum_steps(mse(out[t], y[t]));
}]
struct Elman8;

#[network {
    steps 16;
    input  x[t][8];
    target y[t][1];
    state  h[32] = zeros;
    param  wh[32, 32] = xavier;
    h[t]   = tanh(wh @ h[t-1] + dense(x[t], 32));
    out[t] = dense(h[t], 1);
    loss   = sum_steps(mse(out[t], y[t]));
}]
struct Elman16;

#[network {
    steps 32;
    input  x[t][8];
    target y[t][1];
    state  h[32] = zeros;
    param  wh[32, 32] = xavier;
    h[t]   = tanh(wh @ h[t-1] + dense(x[t], 32));
    out[t] = dense(h[t], 1);
    loss   = sum_steps(mse(out[t], y[t]));
}]
struct Elman32;

#[network {
    steps 64;
    input  x[t][8];
    target y[t][1];
    state  h[32] = zeros;
    param  wh[32, 32] = xavier;
    h[t]   = tanh(wh @ h[t-1] + dense(x[t], 32));
    out[t] = dense(h[t], 1);
    loss   = sum_steps(mse(out[t], y[t]));
}]
struct Elman64;

/// One sequence of `T` steps: inputs in [-1, 1], targets in [-1, 1].
fn sequence<const T: usize>() -> ([[f32; 8]; T], [[f32; 1]; T]) {
    let mut rng = Rng::new(1);
    let x = std::array::from_fn(|_| std::array::from_fn(|_| rng.uniform(-1.0, 1.0) as f32));
    let y = std::array::from_fn(|_| [rng.uniform(-1.0, 1.0) as f32]);
    (x, y)
}

/// forward + backward + SGD update, with the tape, gradient and optimiser
/// state allocated outside the measured loop.
fn bench_t<N, const T: usize>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
) where
    N: Network<Input = [[f32; 8]; T], Target = [[f32; 1]; T], Scalar = f32>,
{
    let (x, y) = sequence::<T>();
    let mut net = N::new(1);
    let mut tape = N::new_tape();
    let mut grads = N::new_grads();
    let mut sgd = Sgd::new(1e-3);
    Optimizer::<f32>::init(&mut sgd, N::PARAMS);
    group.throughput(Throughput::Elements(T as u64));
    group.bench_function(BenchmarkId::new("T", T), |b| {
        b.iter(|| {
            grads.fill_zero();
            let loss = net.forward(black_box(&x), black_box(&y), &mut tape);
            net.backward(&tape, &mut grads);
            Optimizer::<f32>::step(&mut sgd, net.params_mut().as_mut_slice(), grads.as_slice());
            black_box(loss)
        })
    });
}

fn bptt(c: &mut Criterion) {
    let mut group = c.benchmark_group("bptt_step/elman_8_32_1");
    bench_t::<Elman8, 8>(&mut group);
    bench_t::<Elman16, 16>(&mut group);
    bench_t::<Elman32, 32>(&mut group);
    bench_t::<Elman64, 64>(&mut group);
    group.finish();
}

criterion_group!(benches, bptt);
criterion_main!(benches);
