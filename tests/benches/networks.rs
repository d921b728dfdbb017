//! The performance issue's networks, generated vs hand-written, side by side.
//!
//! Each group (`xor`, `digits_b1`, `digits_b32`, `mnist_b1`, `mnist_b64`) holds:
//! - `generated/step`: forward + backward for every sample of the batch
//!   (per-sample API in a loop, gradients accumulated), then one SGD update
//!   through `nn_runtime::Sgd` and clearing the gradient buffer;
//! - `generated/forward`, `generated/backward`, `generated/predict`: each
//!   alone, for the whole batch;
//! - `handwritten/step`: `nn_tests::handwritten`, batches as matrix-matrix loops.
//!
//! Throughput is in elements = FLOPs of the step (`FORWARD_FLOPS +
//! BACKWARD_FLOPS` per sample, plus `2 · PARAMS` for the update), so
//! criterion's `thrpt` line reads as FLOP/s. Plain `cargo bench -p nn-tests`
//! uses the kernels' runtime CPU dispatch; `NN_BENCH_QUICK=1` shortens runs.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use nn_runtime::prelude::*;
use nn_runtime::Zeroable;
use nn_tests::bench_nets::{Digits, Mnist, Xor};
use nn_tests::handwritten::{feature_major, MlpBatchWork, MlpHand, XorHand};
use nn_tests::Lcg;
use std::hint::black_box;
use std::time::Duration;

/// FLOPs of one step of batch `b`, as the generated consts count them.
fn step_flops<N: Network>(b: u64) -> u64 {
    b * (N::FORWARD_FLOPS + N::BACKWARD_FLOPS) + 2 * N::PARAMS as u64
}

fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    if std::env::var_os("NN_BENCH_QUICK").is_some() {
        g.warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(600))
            .sample_size(20);
    } else {
        g.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(40);
    }
}

/// The generated variants of one network at batch `inputs.len()`.
fn generated<N: Network<Scalar = f32>>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    inputs: &[N::Input],
    targets: &[N::Target],
) {
    let b = inputs.len() as u64;
    let lr = 0.01 / b as f64;
    let mut net = N::new(1);
    let mut tape = N::new_tape();
    let mut grads = N::new_grads();
    let mut sgd = Sgd::new(lr);
    Optimizer::<f32>::init(&mut sgd, N::PARAMS);
    g.throughput(Throughput::Elements(step_flops::<N>(b)));
    g.bench_function("generated/step", |bench| {
        bench.iter(|| {
            let mut loss = 0.0;
            for (x, y) in inputs.iter().zip(targets) {
                loss += net.forward(black_box(x), y, &mut tape);
                net.backward(&tape, &mut grads);
            }
            sgd.step(net.params_mut().as_mut_slice(), grads.as_slice());
            grads.as_mut_slice().fill(0.0);
            black_box(loss)
        })
    });
    g.throughput(Throughput::Elements(b * N::FORWARD_FLOPS));
    g.bench_function("generated/forward", |bench| {
        bench.iter(|| {
            let mut loss = 0.0;
            for (x, y) in inputs.iter().zip(targets) {
                loss += net.forward(black_box(x), y, &mut tape);
            }
            black_box(loss)
        })
    });
    // One tape per sample, filled once: backward alone reads them.
    let tapes: Vec<_> = inputs
        .iter()
        .zip(targets)
        .map(|(x, y)| {
            let mut t = N::new_tape();
            net.forward(x, y, &mut t);
            t
        })
        .collect();
    g.throughput(Throughput::Elements(b * N::BACKWARD_FLOPS));
    g.bench_function("generated/backward", |bench| {
        bench.iter(|| {
            for t in &tapes {
                net.backward(black_box(t), &mut grads);
            }
        })
    });
    grads.as_mut_slice().fill(0.0);
    g.throughput(Throughput::Elements(b * N::FORWARD_FLOPS));
    g.bench_function("generated/predict", |bench| {
        bench.iter(|| {
            for x in inputs {
                black_box(net.predict(black_box(x)));
            }
        })
    });
}

fn random_inputs<const I: usize>(n: usize, seed: u64) -> (Vec<[f32; I]>, Vec<usize>) {
    let mut rng = Lcg::new(seed);
    let xs = (0..n)
        .map(|_| core::array::from_fn(|_| rng.uniform(0.0, 1.0) as f32))
        .collect();
    let ys = (0..n).map(|_| (rng.next_u64() % 10) as usize).collect();
    (xs, ys)
}

fn xor(c: &mut Criterion) {
    let mut g = c.benchmark_group("xor");
    configure(&mut g);
    let (x, y) = ([[1.0f32, 0.0]], [[1.0f32]]);
    generated::<Xor>(&mut g, &x, &y);
    let mut hand = XorHand::from_flat(Xor::new(1).params().as_slice());
    let mut hg = XorHand::default();
    g.throughput(Throughput::Elements(step_flops::<Xor>(1)));
    g.bench_function("handwritten/step", |b| {
        b.iter(|| black_box(hand.step(&mut hg, black_box(&x[0]), &y[0], 0.01)))
    });
    g.finish();
}

/// One MLP group at batch `B` (per-sample hand-written step for `B == 1`).
fn mlp<N, const I: usize, const H: usize, const O: usize, const B: usize>(
    c: &mut Criterion,
    name: &str,
) where
    N: Network<Scalar = f32, Input = [f32; I], Target = usize>,
{
    let mut g = c.benchmark_group(name);
    configure(&mut g);
    let (xs, ys) = random_inputs::<I>(B, 7);
    generated::<N>(&mut g, &xs, &ys);
    let mut hand = MlpHand::<I, H, O>::from_flat(N::new(1).params().as_slice());
    let mut hg = MlpHand::<I, H, O>::zeroed();
    let lr = 0.01 / B as f32;
    g.throughput(Throughput::Elements(step_flops::<N>(B as u64)));
    if B == 1 {
        g.bench_function("handwritten/step", |b| {
            b.iter(|| black_box(hand.step(&mut hg, black_box(&xs[0]), ys[0], lr)))
        });
    } else {
        let xb = feature_major::<I, B>(&xs);
        let labels: [usize; B] = ys.clone().try_into().expect("B labels");
        let mut work = MlpBatchWork::<H, O, B>::zeroed_box();
        g.bench_function("handwritten/step", |b| {
            b.iter(|| black_box(hand.step_batch(&mut hg, &mut work, black_box(&xb), &labels, lr)))
        });
    }
    g.finish();
}

fn digits_b1(c: &mut Criterion) {
    mlp::<Digits, 64, 32, 10, 1>(c, "digits_b1");
}
fn digits_b32(c: &mut Criterion) {
    mlp::<Digits, 64, 32, 10, 32>(c, "digits_b32");
}
fn mnist_b1(c: &mut Criterion) {
    mlp::<Mnist, 784, 128, 10, 1>(c, "mnist_b1");
}
fn mnist_b64(c: &mut Criterion) {
    mlp::<Mnist, 784, 128, 10, 64>(c, "mnist_b64");
}

/// Prints the FLOP counts and the kernel implementation in use, for the report.
fn facts(_: &mut Criterion) {
    println!(
        "kernels: {} | FLOPs per sample (forward, backward, params): xor {} {} {}, digits {} {} {}, mnist {} {} {}",
        nn_runtime::kernels::isa().name(),
        Xor::FORWARD_FLOPS,
        Xor::BACKWARD_FLOPS,
        Xor::PARAMS,
        Digits::FORWARD_FLOPS,
        Digits::BACKWARD_FLOPS,
        Digits::PARAMS,
        Mnist::FORWARD_FLOPS,
        Mnist::BACKWARD_FLOPS,
        Mnist::PARAMS
    );
}

criterion_group!(benches, facts, xor, digits_b1, digits_b32, mnist_b1, mnist_b64);
criterion_main!(benches);
