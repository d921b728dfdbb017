//! Next-step prediction of a noisy periodic signal with a GRU written in the
//! definition language.
//!
//! The signal is `s(t) = sin(ωt + φ) + 0.5 sin(2ωt + 2φ)` with a period of
//! 16 steps and a random phase `φ` per sequence; the net sees
//! `s(t) + noise` (Gaussian, σ = 0.1) at step `t` and predicts the clean
//! `s(t + 1)`, with a loss at every step. Its mean squared error is compared
//! with the naive forecast "the next value is the last one seen". Training
//! uses sequences of 32 steps; the stateful `step` API then runs the trained
//! net on a 512-step sequence, one step at a time, and finally lets it run
//! free on its own predictions.
//!
//! Run with `cargo run --release --example sine` (from the workspace root).

use nn_runtime::prelude::*;
use nn_runtime::Rng;
use std::error::Error;
use std::f64::consts::PI;
use std::time::Instant;

/// GRU with 16 units and a linear read-out at every step.
#[network {
    steps 32;
    input  x[t][1];
    target y[t][1];
    state  h[16] = zeros;
    param  uz[16, 16] = xavier;
    param  ur[16, 16] = xavier;
    param  un[16, 16] = xavier;
    z[t] = sigmoid(dense(x[t], 16) + uz @ h[t-1]);
    r[t] = sigmoid(dense(x[t], 16) + ur @ h[t-1]);
    n[t] = tanh(dense(x[t], 16) + un @ (r[t] * h[t-1]));
    h[t] = (1 - z[t]) * n[t] + z[t] * h[t-1];
    out[t] = dense(h[t], 1);
    loss = mean_steps(mse(out[t], y[t]));
}]
pub struct Sine;

/// Training sequence length.
const T: usize = Sine::STEPS;
const PERIOD: f64 = 16.0;
const NOISE: f64 = 0.1;
const TRAIN: usize = 4_000;
const TEST: usize = 1_000;
const EPOCHS: usize = 20;
const BATCH: usize = 32;
const LR: f64 = 5e-3;
const CLIP: f64 = 1.0;
/// The long sequence `step` runs on, and how long it then runs free.
const LONG: usize = 512;
const FREE: usize = 32;

type Seq = [[f32; 1]; T];

/// The clean signal at step `t` of a sequence with phase `phase`.
fn signal(t: usize, phase: f64) -> f64 {
    let w = 2.0 * PI / PERIOD;
    (w * t as f64 + phase).sin() + 0.5 * (2.0 * (w * t as f64 + phase)).sin()
}

/// A sequence of `len` steps: noisy observations and clean next values.
fn sequence(rng: &mut Rng, len: usize, inputs: &mut [[f32; 1]], targets: &mut [[f32; 1]]) {
    let phase = rng.uniform(0.0, 2.0 * PI);
    for t in 0..len {
        inputs[t] = [(signal(t, phase) + rng.normal(0.0, NOISE)) as f32];
        targets[t] = [signal(t + 1, phase) as f32];
    }
}

fn dataset(n: usize, seed: u64) -> Dataset<Seq, Seq> {
    let mut rng = Rng::new(seed);
    let mut inputs = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    for _ in 0..n {
        let (mut x, mut y) = ([[0.0; 1]; T], [[0.0; 1]; T]);
        sequence(&mut rng, T, &mut x, &mut y);
        inputs.push(x);
        targets.push(y);
    }
    Dataset::new(inputs, targets)
}

/// Mean squared difference of two equally long series; with the inputs as
/// `predicted`, the MSE of repeating the last value.
fn mse(predicted: &[[f32; 1]], targets: &[[f32; 1]]) -> f64 {
    let sum: f64 = predicted
        .iter()
        .zip(targets)
        .map(|(p, y)| f64::from(p[0] - y[0]).powi(2))
        .sum();
    sum / predicted.len() as f64
}

fn baseline(data: &Dataset<Seq, Seq>) -> f64 {
    let sum: f64 = data.iter().map(|(x, y)| mse(x, y)).sum();
    sum / data.len() as f64
}

fn main() -> Result<(), Box<dyn Error>> {
    let start = Instant::now();
    let train = dataset(TRAIN, 1);
    let test = dataset(TEST, 2);
    println!(
        "noisy periodic signal (period {PERIOD}, noise σ = {NOISE}): {TRAIN} training and \
         {TEST} test sequences of {T} steps; Sine (GRU, 16 units): {} parameters",
        Sine::PARAMS
    );

    let mut net = Sine::new(1);
    let mut trainer = Trainer::new(Adam::new(LR))
        .epochs(EPOCHS)
        .batch_size(BATCH)
        .schedule(Schedule::cosine(0, EPOCHS * TRAIN.div_ceil(BATCH)))
        .clip(Clip::Norm(CLIP))
        .seed(1)
        .threads(2)
        .progress(false);
    for report in trainer.train(&mut net, &train, None)? {
        let report = report?;
        if report.epoch == 1 || report.epoch % 5 == 0 {
            println!(
                "  epoch {:>2}: train MSE {:.5} ({:.1?})",
                report.epoch,
                report.loss,
                start.elapsed()
            );
        }
    }
    let trained = start.elapsed();
    let (train_mse, test_mse) = (evaluate(&net, &train)?.loss, evaluate(&net, &test)?.loss);
    println!(
        "next-step MSE: train {train_mse:.5}, test {test_mse:.5}; repeating the last value: \
         train {:.5}, test {:.5} (training took {trained:.1?})",
        baseline(&train),
        baseline(&test)
    );

    // Step by step, past the training length: one long sequence, allocated
    // up front, then one `step` per observation.
    let mut rng = Rng::new(3);
    let (mut xs, mut ys) = (
        vec![[0.0f32; 1]; LONG + FREE],
        vec![[0.0f32; 1]; LONG + FREE],
    );
    sequence(&mut rng, LONG + FREE, &mut xs, &mut ys);
    let mut preds = vec![[0.0f32; 1]; LONG + FREE];
    let mut state = net.initial_state();
    for (x, p) in xs[..LONG].iter().zip(&mut preds) {
        *p = net.step(&mut state, x);
    }
    let (first, beyond) = (
        mse(&preds[..T], &ys[..T]),
        mse(&preds[T..LONG], &ys[T..LONG]),
    );
    println!(
        "step by step on a {LONG}-step sequence: MSE {first:.5} on steps 0..{T}, \
         {beyond:.5} on steps {T}..{LONG}; repeating the last value: {:.5}",
        mse(&xs[T..LONG], &ys[T..LONG])
    );
    // Then free-running: each prediction is the next input.
    for t in LONG..LONG + FREE {
        let x = preds[t - 1];
        preds[t] = net.step(&mut state, &x);
    }
    // preds[t] predicts s(t + 1) = ys[t]; the free run starts from preds[LONG - 1].
    let free = mse(&preds[LONG..], &ys[LONG..]);
    println!(
        "running free on its own predictions for {FREE} more steps (two periods): MSE {free:.5}"
    );
    println!("total {:.1?}", start.elapsed());
    Ok(())
}
