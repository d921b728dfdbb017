//! Data-parallel training speed-up: one epoch of mini-batch SGD on 1 and on 2
//! threads, for the digits network (64-32 ReLU-10) and an MNIST-size one
//! (784-128 ReLU-10), on synthetic data of the right shapes.
//!
//! `cargo bench -p nn-runtime --bench parallel`; the ratio of the two
//! times of a network is its speed-up.

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

fn data<const N: usize>(n: usize) -> Dataset<[f32; N], usize> {
    let mut rng = Rng::new(1);
    let inputs = (0..n)
        .map(|_| std::array::from_fn(|_| rng.uniform(0.0, 1.0) as f32))
        .collect();
    let targets = (0..n).map(|_| rng.below(10)).collect();
    Dataset::new(inputs, targets)
}

/// One epoch per iteration, on a trainer that keeps its buffers and threads.
fn bench_net<N, const I: usize>(c: &mut Criterion, name: &str, samples: usize)
where
    N: Network<Input = [f32; I], Target = usize, Scalar = f32>,
{
    let data = data::<I>(samples);
    let mut group = c.benchmark_group(format!("epoch/{name}"));
    group.throughput(Throughput::Elements(samples as u64));
    group.sample_size(20);
    for threads in [1, 2] {
        let mut net = N::new(1);
        let mut trainer = Trainer::new(Sgd::new(0.01))
            .epochs(usize::MAX)
            .batch_size(64)
            .threads(threads)
            .quiet();
        let mut epochs = trainer.train(&mut net, &data, None).unwrap();
        group.bench_function(BenchmarkId::new("threads", threads), |b| {
            b.iter(|| black_box(epochs.next().unwrap().unwrap()))
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_net::<Digits, 64>(c, "digits-64-32-10", 1437);
    bench_net::<Mnist, 784>(c, "mnist-784-128-10", 2048);
}

criterion_group!(parallel, benches);
criterion_main!(parallel);
