//! Whole training epochs of plain mini-batch SGD, side by side: the
//! `Trainer` on the per-sample path (`.batched(false)`), the `Trainer` on
//! the batched path (1 and 2 threads), and a hand-written loop over
//! `forward_batch`/`backward_batch` and `Sgd::step` (the fastest a user can
//! drive the generated batched passes: contiguous batches, no shuffling, no
//! checks, the update in place).
//!
//! Two settings: the digits network (64-32 ReLU-10, softmax cross-entropy)
//! on 1,438 samples in batches of 32 (44 blocks of 32, and a last batch of
//! 30 = 7 blocks of 4 and 2 single samples), and an MNIST-size network
//! (784-128 ReLU-10) on 4,096 samples in batches of 64; random data of the
//! right shapes.
//!
//! `cargo bench -p nn-runtime --bench epochs`. Pin the one-thread variants
//! to one core (`taskset -c 1 ... -- threads=1`) and run the two-thread one
//! on both (`... -- threads=2`); see the README's "Training epochs".

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nn_runtime::prelude::*;
use nn_runtime::Rng;
use std::hint::black_box;

#[network {
    input  x[64];
    target label: class[10];
    h      = relu(dense(x, 32, he));
    logits = dense(h, 10);
    loss   = softmax_cross_entropy(logits, label);
}]
struct Digits;

#[network {
    input  x[784];
    target label: class[10];
    h      = relu(dense(x, 128, he));
    logits = dense(h, 10);
    loss   = softmax_cross_entropy(logits, label);
}]
struct Mnist;

const LR: f64 = 0.01;

fn data<const N: usize>(n: usize) -> Dataset<[f32; N], usize> {
    let mut rng = Rng::new(1);
    let inputs = (0..n)
        .map(|_| std::array::from_fn(|_| rng.uniform(0.0, 1.0) as f32))
        .collect();
    let targets = (0..n).map(|_| rng.below(10)).collect();
    Dataset::new(inputs, targets)
}

/// The mean gradient of `len` samples, then `Sgd::step` in place.
fn sgd_step<N: Network<Scalar = f32>>(
    net: &mut N,
    grads: &mut N::Params,
    len: usize,
    sgd: &mut Sgd,
) {
    let scale = 1.0 / len as f32;
    for v in grads.as_mut_slice() {
        *v *= scale;
    }
    Optimizer::<f32>::step(sgd, net.params_mut().as_mut_slice(), grads.as_slice());
}

/// One epoch of the hand-written loop: for each whole batch of `B`
/// consecutive samples, `forward_batch`, `backward_batch`, the mean
/// gradient and `Sgd::step` in place; the rest (fewer than `B` samples)
/// through `forward`/`backward` and one more step. Returns the summed loss.
macro_rules! hand_epoch {
    ($net:expr, $data:expr, $b:literal, $btape:expr, $tape:expr, $grads:expr, $sgd:expr) => {{
        let (net, data, btape, tape, grads, sgd) = ($net, $data, $btape, $tape, $grads, $sgd);
        let n = data.len();
        let mut loss = 0.0f32;
        let whole = n / $b * $b;
        for start in (0..whole).step_by($b) {
            grads.fill_zero();
            let x: &[_; $b] = data.inputs[start..start + $b].try_into().unwrap();
            let y: &[_; $b] = data.targets[start..start + $b].try_into().unwrap();
            loss += net.forward_batch::<$b>(x, y, btape);
            net.backward_batch::<$b>(btape, grads);
            sgd_step(net, grads, $b, sgd);
        }
        if whole < n {
            grads.fill_zero();
            for i in whole..n {
                loss += net.forward(&data.inputs[i], &data.targets[i], tape);
                net.backward(tape, grads);
            }
            sgd_step(net, grads, n - whole, sgd);
        }
        loss
    }};
}

/// The four variants of one setting, in one criterion group.
macro_rules! bench_setting {
    ($c:expr, $net:ty, $inputs:literal, $name:expr, $samples:expr, $batch:literal) => {{
        let c: &mut Criterion = $c;
        let data = data::<$inputs>($samples);
        let mut group = c.benchmark_group(format!("epoch/{}", $name));
        group.throughput(Throughput::Elements($samples as u64));
        group.sample_size(20);
        for (variant, batched, threads) in [
            ("trainer-per-sample", false, 1),
            ("trainer-batched", true, 1),
            ("trainer-batched", true, 2),
        ] {
            let mut net = <$net>::new(1);
            let mut trainer = Trainer::new(Sgd::new(LR))
                .epochs(usize::MAX)
                .batch_size($batch)
                .batched(batched)
                .threads(threads)
                .quiet();
            let mut epochs = trainer.train(&mut net, &data, None).unwrap();
            group.bench_function(
                BenchmarkId::new(variant, format!("threads={threads}")),
                |b| b.iter(|| black_box(epochs.next().unwrap().unwrap())),
            );
        }
        let mut net = <$net>::new(1);
        let mut btape = <$net>::new_batch_tape::<$batch>();
        let mut tape = <$net>::new_tape();
        let mut grads = <$net>::new_grads();
        let mut sgd = Sgd::new(LR);
        Optimizer::<f32>::init(&mut sgd, <$net>::PARAMS);
        group.bench_function(BenchmarkId::new("hand-written-loop", "threads=1"), |b| {
            b.iter(|| {
                black_box(hand_epoch!(
                    &mut net, &data, $batch, &mut btape, &mut tape, &mut grads, &mut sgd
                ))
            })
        });
        group.finish();
    }};
}

fn benches(c: &mut Criterion) {
    bench_setting!(c, Digits, 64, "digits-64-32-10-b32", 1438, 32);
    bench_setting!(c, Mnist, 784, "mnist-784-128-10-b64", 4096, 64);
}

criterion_group!(epochs, benches);
criterion_main!(epochs);
