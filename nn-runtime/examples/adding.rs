//! The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015): a
//! sequence of `T` pairs (value in [0, 1], marker); exactly two steps are
//! marked, one in each half of the sequence, and the target, read at the
//! last step, is the sum of the two marked values. Always answering 1.0
//! scores an MSE of 1/6 ≈ 0.167 (the variance of a sum of two uniforms).
//!
//! An Elman net and an LSTM of about the same size, both written in the
//! definition language, are trained on the same data with the same settings
//! (Adam, gradient clipping by global norm). At T = 60 the Elman net stays
//! at the baseline while the LSTM learns the task: the Elman state mixes in
//! every step's value, the LSTM's gates write the marked values into its
//! cell and keep them there. The example also prints the norms of the state
//! adjoints that `backward_traced` records, before and after training: the
//! LSTM's gradient vanishes over the sequence at initialisation and is
//! carried back undiminished once it has learned the task.
//!
//! Run with `cargo run --release --example adding` (from the workspace root).

use nn_runtime::prelude::*;
use nn_runtime::Rng;
use std::error::Error;
use std::time::Instant;

/// Elman RNN, 32 tanh units; the answer is read from the last state.
#[network {
    steps 60;
    input  x[t][2];
    target y[1];
    state  h[32] = zeros;
    param  wh[32, 32] = xavier;
    h[t] = tanh(wh @ h[t-1] + dense(x[t], 32));
    o    = dense(h[last], 1);
    loss = mse(o, y);
}]
pub struct Elman;

/// LSTM, 16 cells (forget-gate bias +1); the answer is read from the last
/// hidden state.
#[network {
    steps 60;
    input  x[t][2];
    target y[1];
    state  h[16] = zeros;
    state  c[16] = zeros;
    param  ui[16, 16] = xavier;
    param  uf[16, 16] = xavier;
    param  uo[16, 16] = xavier;
    param  ug[16, 16] = xavier;
    i[t] = sigmoid(dense(x[t], 16) + ui @ h[t-1]);
    f[t] = sigmoid(dense(x[t], 16) + uf @ h[t-1] + 1);
    g[t] = tanh(dense(x[t], 16) + ug @ h[t-1]);
    c[t] = f[t] * c[t-1] + i[t] * g[t];
    q[t] = sigmoid(dense(x[t], 16) + uo @ h[t-1]);
    h[t] = q[t] * tanh(c[t]);
    o    = dense(h[last], 1);
    loss = mse(o, y);
}]
pub struct Lstm;

/// Sequence length (both nets are compiled for it).
const T: usize = Elman::STEPS;
const TRAIN: usize = 10_000;
const TEST: usize = 1_000;
const EPOCHS: usize = 8;
const BATCH: usize = 32;
const LR: f64 = 3e-3;
const CLIP: f64 = 1.0;
const DATA_SEED: u64 = 7;
const TEST_SEED: u64 = 8;
const INIT_SEED: u64 = 1;

type Sequence = [[f32; 2]; T];

/// `n` sequences: values uniform in [0, 1], one marker uniform in the first
/// half, one in the second; target = the sum of the two marked values.
fn adding_data(n: usize, seed: u64) -> Dataset<Sequence, [f32; 1]> {
    let mut rng = Rng::new(seed);
    let mut inputs = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    for _ in 0..n {
        let mut x = [[0.0f32; 2]; T];
        for step in x.iter_mut() {
            step[0] = rng.next_f64() as f32;
        }
        let a = rng.below(T / 2);
        let b = T / 2 + rng.below(T - T / 2);
        x[a][1] = 1.0;
        x[b][1] = 1.0;
        inputs.push(x);
        targets.push([x[a][0] + x[b][0]]);
    }
    Dataset::new(inputs, targets)
}

/// Trains `net`, printing the test MSE every few epochs; returns the final
/// test MSE.
fn train<N>(
    name: &str,
    net: &mut N,
    train: &Dataset<N::Input, N::Target>,
    test: &Dataset<N::Input, N::Target>,
) -> Result<f64, Box<dyn Error>>
where
    N: Network,
{
    let start = Instant::now();
    let mut trainer = Trainer::new(Adam::new(LR))
        .epochs(EPOCHS)
        .batch_size(BATCH)
        .clip(Clip::Norm(CLIP))
        .seed(1)
        .threads(2)
        .progress(false);
    for report in trainer.train(net, train, None)? {
        let report = report?;
        if report.epoch == 1 || report.epoch % 2 == 0 {
            println!(
                "  {name} epoch {:>2}: train MSE {:.4} ({:.1?})",
                report.epoch,
                report.loss,
                start.elapsed()
            );
        }
    }
    let mse = evaluate(net, test)?.loss;
    println!("  {name}: test MSE {mse:.4} after {:.1?}", start.elapsed());
    Ok(mse)
}

/// The mean over `data` of the L2 norm of the state adjoint carried from
/// step `t` back to `t - 1` (what `backward_traced` records), after one
/// forward and backward pass per sequence; the tape and buffers are
/// allocated once.
fn adjoint_norms<N: Network>(
    net: &N,
    data: &Dataset<N::Input, N::Target>,
    traced: impl Fn(&N, &N::Tape, &mut N::Params, &mut [f32; T]),
) -> [f64; T] {
    let mut tape = N::new_tape();
    let mut grads = N::new_grads();
    let mut norms = [0.0f32; T];
    let mut mean = [0.0f64; T];
    for (x, y) in data.iter() {
        net.forward(x, y, &mut tape);
        traced(net, &tape, &mut grads, &mut norms);
        for (m, n) in mean.iter_mut().zip(norms) {
            *m += f64::from(n) / data.len() as f64;
        }
    }
    mean
}

/// `t=59: 2.4e0, t=30: 3.3e-1, t=0: 4.0e-1`.
fn show(norms: &[f64; T]) -> String {
    [T - 1, T / 2, 0]
        .iter()
        .map(|&t| format!("t={t}: {:.1e}", norms[t]))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> Result<(), Box<dyn Error>> {
    let start = Instant::now();
    let train_set = adding_data(TRAIN, DATA_SEED);
    let test_set = adding_data(TEST, TEST_SEED);
    let baseline = test_set
        .targets
        .iter()
        .map(|y| f64::from(y[0] - 1.0).powi(2))
        .sum::<f64>()
        / TEST as f64;
    println!(
        "adding problem, T = {T}: {TRAIN} training and {TEST} test sequences; \
         always answering 1.0 scores MSE {baseline:.4}"
    );
    println!(
        "Elman: {} parameters; LSTM: {} parameters",
        Elman::PARAMS,
        Lstm::PARAMS
    );

    // The norm of the gradient of the last step's loss with respect to the
    // state, carried back from step t (what `backward_traced` records),
    // before and after training, on 100 test sequences.
    let probe = test_set.subset(&(0..100).collect::<Vec<_>>());

    let mut elman = Elman::new(INIT_SEED);
    let trace = |n: &Elman, tape: &_, g: &mut _, norms: &mut _| n.backward_traced(tape, g, norms);
    let elman_before = adjoint_norms(&elman, &probe, trace);
    let elman_mse = train("Elman", &mut elman, &train_set, &test_set)?;
    let elman_after = adjoint_norms(&elman, &probe, trace);

    let mut lstm = Lstm::new(INIT_SEED);
    let trace = |n: &Lstm, tape: &_, g: &mut _, norms: &mut _| n.backward_traced(tape, g, norms);
    let lstm_before = adjoint_norms(&lstm, &probe, trace);
    let lstm_mse = train("LSTM", &mut lstm, &train_set, &test_set)?;
    let lstm_after = adjoint_norms(&lstm, &probe, trace);

    println!("mean norm of the state adjoint carried back from step t:");
    println!("  Elman before training {}", show(&elman_before));
    println!("        after training  {}", show(&elman_after));
    println!("  LSTM  before training {}", show(&lstm_before));
    println!("        after training  {}", show(&lstm_after));
    println!("test MSE: Elman {elman_mse:.4}, LSTM {lstm_mse:.4}, baseline {baseline:.4}");
    println!("total {:.1?}", start.elapsed());
    Ok(())
}
