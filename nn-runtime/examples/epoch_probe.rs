//! Probe (not committed): whole Trainer epochs of plain SGD, timed.
use nn_runtime::prelude::*;
use nn_runtime::Rng;
use std::time::Instant;

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

fn time<N: Network<Scalar = f32>>(
    net: &mut N,
    d: &Dataset<N::Input, N::Target>,
    batch: usize,
    threads: usize,
    epochs: usize,
) -> f64
where
    N::Input: Clone + Send + Sync,
    N::Target: Clone + Send + Sync,
{
    let mut best = f64::INFINITY;
    for _ in 0..7 {
        let t = Instant::now();
        Trainer::new(Sgd::new(0.01))
            .batch_size(batch)
            .epochs(epochs)
            .threads(threads)
            .quiet()
            .fit(net, d)
            .unwrap();
        best = best.min(t.elapsed().as_secs_f64() / epochs as f64);
    }
    best
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(1);
    let dd = data::<64>(1438);
    let dm = data::<784>(4096);
    let mut d = Digits::new(1);
    let mut m = Mnist::new(1);
    let td = time(&mut d, &dd, 32, threads, 20);
    let tm = time(&mut m, &dm, 64, threads, 3);
    println!(
        "threads={threads} digits epoch {:.1} us, mnist epoch {:.2} ms",
        td * 1e6,
        tm * 1e3
    );
}
