//! The benchmark recurrent network, generated vs hand-written, side
//! by side: an Elman net (input 8, 32 tanh units, a linear output per step),
//! 16 steps, MSE summed over the steps, full backpropagation through time,
//! f32, one sequence per step.
//!
//! The group `rnn` holds:
//! - `generated/step`: `forward` + `backward` + SGD update (`nn_runtime::Sgd`)
//!   and clearing the gradient buffer;
//! - `generated/forward`, `generated/backward` (on a tape filled once),
//!   `generated/predict`: each alone;
//! - `handwritten/step`: `nn_tests::handwritten_rnn`, the same step by hand
//!   (fixed-size arrays, straightforward loops), gradient-checked against the
//!   generated network in `tests/handwritten_rnn.rs`.
//!
//! Throughput is in elements = FLOPs (`FORWARD_FLOPS + BACKWARD_FLOPS +
//! 2 · PARAMS` for a step), so criterion's `thrpt` line reads as FLOP/s.
//! `taskset -c 0 cargo bench -p nn-tests --bench rnn`; `NN_BENCH_QUICK=1`
//! shortens the runs.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use nn_runtime::prelude::*;
use nn_tests::handwritten_rnn::{Rnn, RnnHand, RnnWork, I, T};
use nn_tests::Lcg;
use std::hint::black_box;
use std::time::Duration;

/// FLOPs of one training step, as the generated consts count them.
const STEP_FLOPS: u64 = Rnn::FORWARD_FLOPS + Rnn::BACKWARD_FLOPS + 2 * Rnn::PARAMS as u64;

/// Learning rate of the SGD update (small: the weights barely move over a run).
const LR: f32 = 1e-4;

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

/// One sequence: inputs and targets uniform in [-1, 1].
fn sequence() -> ([[f32; I]; T], [[f32; 1]; T]) {
    let mut rng = Lcg::new(7);
    let x = core::array::from_fn(|_| core::array::from_fn(|_| rng.uniform(-1.0, 1.0) as f32));
    let y = core::array::from_fn(|_| [rng.uniform(-1.0, 1.0) as f32]);
    (x, y)
}

fn rnn(c: &mut Criterion) {
    println!(
        "rnn: kernels {} | FLOPs forward {}, backward {}, params {}, step {}",
        nn_runtime::kernels::isa().name(),
        Rnn::FORWARD_FLOPS,
        Rnn::BACKWARD_FLOPS,
        Rnn::PARAMS,
        STEP_FLOPS
    );
    let (x, y) = sequence();
    let mut g = c.benchmark_group("rnn");
    configure(&mut g);

    let mut net = Rnn::new(1);
    let mut tape = Rnn::new_tape();
    let mut grads = Rnn::new_grads();
    let mut sgd = Sgd::new(LR as f64);
    Optimizer::<f32>::init(&mut sgd, Rnn::PARAMS);
    g.throughput(Throughput::Elements(STEP_FLOPS));
    g.bench_function("generated/step", |b| {
        b.iter(|| {
            let loss = net.forward(black_box(&x), black_box(&y), &mut tape);
            net.backward(&tape, &mut grads);
            sgd.step(net.params_mut().as_mut_slice(), grads.as_slice());
            grads.as_mut_slice().fill(0.0);
            black_box(loss)
        })
    });

    g.throughput(Throughput::Elements(Rnn::FORWARD_FLOPS));
    g.bench_function("generated/forward", |b| {
        b.iter(|| black_box(net.forward(black_box(&x), black_box(&y), &mut tape)))
    });

    net.forward(&x, &y, &mut tape);
    g.throughput(Throughput::Elements(Rnn::BACKWARD_FLOPS));
    g.bench_function("generated/backward", |b| {
        b.iter(|| net.backward(black_box(&tape), &mut grads))
    });
    grads.as_mut_slice().fill(0.0);

    g.throughput(Throughput::Elements(Rnn::FORWARD_FLOPS));
    g.bench_function("generated/predict", |b| {
        b.iter(|| black_box(net.predict(black_box(&x))))
    });

    // The same initial weights, copied by name.
    let init = Rnn::new(1);
    let mut hand = RnnHand::<f32>::zeroed();
    for p in Rnn::PARAM_INFO {
        hand.field_mut(p.name)
            .copy_from_slice(&init.params().as_slice()[p.range()]);
    }
    let mut hg = RnnHand::<f32>::zeroed();
    let mut work = RnnWork::<f32>::default();
    g.throughput(Throughput::Elements(STEP_FLOPS));
    g.bench_function("handwritten/step", |b| {
        b.iter(|| black_box(hand.step(&mut hg, &mut work, black_box(&x), black_box(&y), LR)))
    });

    // 32 sequences: one at a time through forward/backward, against one
    // batched pass (each step's values a matrix with a column per sequence).
    // Both add the 32 sequences' summed gradient; the update is left out.
    let inputs: Vec<_> = (0..32).map(|_| x).collect();
    let targets: Vec<_> = (0..32).map(|_| y).collect();
    let idx: Vec<usize> = (0..32).collect();
    let mut bwork = Rnn::new_batch_work();
    let (mut losses, mut correct) = (vec![0.0f32; 32], vec![false; 32]);
    g.throughput(Throughput::Elements(
        32 * (Rnn::FORWARD_FLOPS + Rnn::BACKWARD_FLOPS),
    ));
    g.bench_function("generated/32_sequences_one_by_one", |b| {
        b.iter(|| {
            for (xi, yi) in inputs.iter().zip(&targets) {
                net.forward(black_box(xi), black_box(yi), &mut tape);
                net.backward(&tape, &mut grads);
            }
        })
    });
    g.bench_function("generated/32_sequences_batched", |b| {
        b.iter(|| {
            net.train_block(
                black_box(&inputs),
                black_box(&targets),
                &idx,
                &mut bwork,
                &mut grads,
                &mut losses,
                &mut correct,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, rnn);
criterion_main!(benches);
