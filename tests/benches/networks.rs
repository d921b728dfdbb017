//! The benchmark networks, generated vs hand-written, side by side.
//!
//! Each group (`xor`, `digits_b1`, `digits_b32`, `mnist_b1`, `mnist_b64`) holds:
//! - `generated/step`: one training step = forward + backward for the whole
//!   batch, then one SGD update through `nn_runtime::Sgd` and clearing the
//!   gradient buffer. In the batched groups (`digits_b32`, `mnist_b64`) the
//!   forward and backward are the generated batched API (`forward_batch` /
//!   `backward_batch`: matrix-matrix work, weight gradients as one `dZ Xᵀ`
//!   product); in the batch-1 groups they are the per-sample API;
//! - batched groups only: `generated/step_per_sample_loop`, the same step
//!   through the per-sample API in a loop over the batch (gradients
//!   accumulated), so the batched API's gain shows; `generated/forward_batch`
//!   and `generated/backward_batch` alone; `generated/forward_per_sample_loop`
//!   and `generated/backward_per_sample_loop` (B per-sample calls);
//! - batch-1 groups: `generated/step_fused`, the same step with the update
//!   fused into the backward pass (`forward` then `sgd_step`: no gradient
//!   buffer to clear, fill and read back); `generated/forward`,
//!   `generated/backward` alone;
//! - `generated/predict`: inference, one call per sample of the batch;
//! - `generated/update`: the step's update alone (`Sgd::step` on the flat
//!   views, then zeroing the gradient): at mnist size it streams the 400 KB
//!   parameter and gradient vectors through the cache, which is most of the
//!   gap between `step` and `forward + backward` at batch 1;
//! - `handwritten/step`: `nn_tests::handwritten`, batches as matrix-matrix
//!   loops, SGD update and gradient clearing fused in one pass.
//!
//! Throughput is in elements = FLOPs of the step (`FORWARD_FLOPS +
//! BACKWARD_FLOPS` per sample, plus `2 · PARAMS` for the update), so
//! criterion's `thrpt` line reads as FLOP/s. Plain `cargo bench -p nn-tests`
//! uses the kernels' runtime CPU dispatch; `NN_BENCH_QUICK=1` shortens runs.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use nn_runtime::prelude::*;
use nn_runtime::Zeroable;
use nn_tests::bench_nets::{Batched, Digits, Mnist, Xor};
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

/// An SGD optimiser for a step over a batch of `b` (learning rate 0.01 / b).
fn sgd<N: Network>(b: u64) -> Sgd {
    let mut sgd = Sgd::new(0.01 / b as f64);
    Optimizer::<N::Scalar>::init(&mut sgd, N::PARAMS);
    sgd
}

/// The update that ends every generated step: `Sgd::step` on the flat
/// parameter and gradient views, then the gradient cleared for the next batch.
#[inline(always)]
fn update<N: Network<Scalar = f32>>(sgd: &mut Sgd, net: &mut N, grads: &mut N::Params) {
    sgd.step(net.params_mut().as_mut_slice(), grads.as_slice());
    grads.as_mut_slice().fill(0.0);
}

/// The per-sample generated variants of one network at batch `inputs.len()`;
/// `suffix` labels them (`""` at batch 1, `"_per_sample_loop"` in the
/// batched groups).
fn per_sample<N: Network<Scalar = f32>>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    inputs: &[N::Input],
    targets: &[N::Target],
    suffix: &str,
) {
    let b = inputs.len() as u64;
    let mut net = N::new(1);
    let mut tape = N::new_tape();
    let mut grads = N::new_grads();
    let mut sgd = sgd::<N>(b);
    g.throughput(Throughput::Elements(step_flops::<N>(b)));
    g.bench_function(format!("generated/step{suffix}"), |bench| {
        bench.iter(|| {
            let mut loss = 0.0;
            for (x, y) in inputs.iter().zip(targets) {
                loss += net.forward(black_box(x), y, &mut tape);
                net.backward(&tape, &mut grads);
            }
            update(&mut sgd, &mut net, &mut grads);
            black_box(loss)
        })
    });
    if b == 1 {
        let lr = 0.01;
        let (x, y) = (&inputs[0], &targets[0]);
        g.bench_function("generated/step_fused", |bench| {
            bench.iter(|| {
                let loss = net.forward(black_box(x), y, &mut tape);
                assert!(net.sgd_step(&tape, lr), "a feed-forward network");
                black_box(loss)
            })
        });
    }
    g.throughput(Throughput::Elements(b * N::FORWARD_FLOPS));
    g.bench_function(format!("generated/forward{suffix}"), |bench| {
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
    g.bench_function(format!("generated/backward{suffix}"), |bench| {
        bench.iter(|| {
            for t in &tapes {
                net.backward(black_box(t), &mut grads);
            }
        })
    });
}

/// The batched generated variants at batch `B`: the step through
/// `forward_batch` / `backward_batch`, and each pass alone.
fn batched<N, const B: usize>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    inputs: &[N::Input; B],
    targets: &[N::Target; B],
) where
    N: Network<Scalar = f32> + Batched<B>,
{
    let b = B as u64;
    let mut net = N::new(1);
    let mut tape = <N as Batched<B>>::new_batch_tape();
    let mut grads = N::new_grads();
    let mut sgd = sgd::<N>(b);
    g.throughput(Throughput::Elements(step_flops::<N>(b)));
    g.bench_function("generated/step", |bench| {
        bench.iter(|| {
            let loss = net.forward_batch(black_box(inputs), targets, &mut tape);
            net.backward_batch(&mut tape, &mut grads);
            update(&mut sgd, &mut net, &mut grads);
            black_box(loss)
        })
    });
    g.throughput(Throughput::Elements(b * N::FORWARD_FLOPS));
    g.bench_function("generated/forward_batch", |bench| {
        bench.iter(|| black_box(net.forward_batch(black_box(inputs), targets, &mut tape)))
    });
    net.forward_batch(inputs, targets, &mut tape);
    g.throughput(Throughput::Elements(b * N::BACKWARD_FLOPS));
    g.bench_function("generated/backward_batch", |bench| {
        bench.iter(|| net.backward_batch(black_box(&mut *tape), &mut grads))
    });
}

/// Inference alone (one `predict` per sample) and the update alone.
fn predict_and_update<N: Network<Scalar = f32>>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    inputs: &[N::Input],
) {
    let b = inputs.len() as u64;
    let mut net = N::new(1);
    g.throughput(Throughput::Elements(b * N::FORWARD_FLOPS));
    g.bench_function("generated/predict", |bench| {
        bench.iter(|| {
            for x in inputs {
                black_box(net.predict(black_box(x)));
            }
        })
    });
    // The gradient is zero here: the update's cost does not depend on the
    // values (plain SGD: one multiply-subtract per parameter, then a store of 0).
    let mut grads = N::new_grads();
    let mut sgd = sgd::<N>(b);
    g.throughput(Throughput::Elements(2 * N::PARAMS as u64));
    g.bench_function("generated/update", |bench| {
        bench.iter(|| {
            update(&mut sgd, &mut net, black_box(&mut grads));
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
    per_sample::<Xor>(&mut g, &x, &y, "");
    predict_and_update::<Xor>(&mut g, &x);
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
    N: Network<Scalar = f32, Input = [f32; I], Target = usize> + Batched<B>,
{
    let mut g = c.benchmark_group(name);
    configure(&mut g);
    let (xs, ys) = random_inputs::<I>(B, 7);
    let labels: [usize; B] = ys.clone().try_into().expect("B labels");
    if B == 1 {
        per_sample::<N>(&mut g, &xs, &ys, "");
    } else {
        let xa: Box<[[f32; I]; B]> = xs.clone().into_boxed_slice().try_into().expect("B inputs");
        batched::<N, B>(&mut g, &xa, &labels);
        per_sample::<N>(&mut g, &xs, &ys, "_per_sample_loop");
    }
    predict_and_update::<N>(&mut g, &xs);
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
