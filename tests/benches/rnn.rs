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
//! The groups `gru` and `lstm` hold the same 32-sequence comparison for a
//! GRU and an LSTM of the same size (input 8, 32 units, a linear output per
//! step, T = 16).
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
    thirty_two_sequences::<Rnn>(&mut g);
    g.finish();
}

#[network {
    steps 16; input x[t][8]; target y[t][1];
    state h[32] = zeros;
    param ur[32, 32] = xavier; param uz[32, 32] = xavier; param un[32, 32] = xavier;
    r[t] = sigmoid(dense(x[t], 32) + ur @ h[t-1]);
    z[t] = sigmoid(dense(x[t], 32) + uz @ h[t-1]);
    n[t] = tanh(dense(x[t], 32) + r[t] * (un @ h[t-1]));
    h[t] = (1 - z[t]) * n[t] + z[t] * h[t-1];
    out[t] = dense(h[t], 1);
    loss = sum_steps(mse(out[t], y[t]));
}]
struct Gru;

#[network {
    steps 16; input x[t][8]; target y[t][1];
    state h[32] = zeros; state c[32] = zeros;
    param ui[32, 32] = xavier; param uf[32, 32] = xavier;
    param ug[32, 32] = xavier; param uo[32, 32] = xavier;
    i[t] = sigmoid(dense(x[t], 32) + ui @ h[t-1]);
    f[t] = sigmoid(dense(x[t], 32) + uf @ h[t-1] + 1);
    g[t] = tanh(dense(x[t], 32) + ug @ h[t-1]);
    c[t] = f[t] * c[t-1] + i[t] * g[t];
    o[t] = sigmoid(dense(x[t], 32) + uo @ h[t-1]);
    h[t] = o[t] * tanh(c[t]);
    out[t] = dense(h[t], 1);
    loss = sum_steps(mse(out[t], y[t]));
}]
struct Lstm;

/// 32 sequences of network `N` one at a time through `forward`/`backward`,
/// against one batched pass (`train_block`). Both add the 32 sequences'
/// summed gradient; the update is left out.
fn thirty_two_sequences<N>(g: &mut BenchmarkGroup<'_, WallTime>)
where
    N: Network<Scalar = f32, Input = [[f32; I]; T], Target = [[f32; 1]; T]>,
{
    let (x, y) = sequence();
    let net = N::new(1);
    let mut tape = N::new_tape();
    let mut grads = N::new_grads();
    let inputs: Vec<_> = (0..32).map(|_| x).collect();
    let targets: Vec<_> = (0..32).map(|_| y).collect();
    let idx: Vec<usize> = (0..32).collect();
    let mut bwork = N::new_batch_work();
    let (mut losses, mut correct) = (vec![0.0f32; 32], vec![false; 32]);
    g.throughput(Throughput::Elements(
        32 * (N::FORWARD_FLOPS + N::BACKWARD_FLOPS),
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
}

/// A group of its own for [`thirty_two_sequences`] of network `N`.
fn one_by_one_vs_batched<N>(c: &mut Criterion, name: &str)
where
    N: Network<Scalar = f32, Input = [[f32; I]; T], Target = [[f32; 1]; T]>,
{
    let mut g = c.benchmark_group(name);
    configure(&mut g);
    thirty_two_sequences::<N>(&mut g);
    g.finish();
}

fn gru(c: &mut Criterion) {
    one_by_one_vs_batched::<Gru>(c, "gru");
}

fn lstm(c: &mut Criterion) {
    one_by_one_vs_batched::<Lstm>(c, "lstm");
}

criterion_group!(benches, rnn, gru, lstm);
criterion_main!(benches);
