//! Bracket depth: a token sequence over six symbols, `(`, `)` and four
//! letters, in which every `)` closes an earlier `(` and the brackets nest
//! at most four deep; at every step the model names the current depth (0 to
//! 4), a class. Reading one token at a time, it must count: a letter keeps
//! the depth, `(` adds one, `)` takes one away.
//!
//! Two Elman networks written in the definition language read the same
//! token sequences: one embeds each token (`input tok[t]: class[6]`,
//! `embedding(tok[t], 8)`), the other reads the same tokens as one-hot
//! vectors through a `dense` layer (what a network without class-index
//! inputs has to do). Both are trained by the `Trainer` with the same
//! settings; the example prints the per-step test accuracy of each, against
//! the baseline of always answering the most frequent depth.
//!
//! Run with `cargo run --release --example tokens` (from the workspace root).

use nn_runtime::prelude::*;
use nn_runtime::Rng;
use std::error::Error;
use std::time::Instant;

/// Embedded tokens, 32 tanh units, a depth (5 classes) at every step.
#[network {
    steps 24;
    input  tok[t]: class[6];
    target depth[t]: class[5];
    state  h[32] = zeros;
    e[t]   = embedding(tok[t], 8);
    h[t]   = tanh(dense(h[t-1], 32) + dense(e[t], 32));
    out[t] = dense(h[t], 5);
    loss   = mean_steps(softmax_cross_entropy(out[t], depth[t]));
}]
pub struct Embedded;

/// The same network on one-hot tokens.
#[network {
    steps 24;
    input  x[t][6];
    target depth[t]: class[5];
    state  h[32] = zeros;
    h[t]   = tanh(dense(h[t-1], 32) + dense(x[t], 32));
    out[t] = dense(h[t], 5);
    loss   = mean_steps(softmax_cross_entropy(out[t], depth[t]));
}]
pub struct OneHot;

const T: usize = Embedded::STEPS;
const TRAIN: usize = 4_000;
const TEST: usize = 1_000;
const EPOCHS: usize = 12;
const MAX_DEPTH: usize = 4;

type Tokens = [usize; T];
type Depths = [usize; T];

/// `n` sequences: at each step `(` (if below the deepest nesting) with
/// probability 0.3, `)` (if inside brackets) with probability 0.3, else one
/// of the letters 2 to 5; the targets are the depths after each token.
fn brackets(n: usize, seed: u64) -> Dataset<Tokens, Depths> {
    let mut rng = Rng::new(seed);
    let (mut inputs, mut targets) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let (mut tok, mut depth) = ([0; T], [0; T]);
        let mut d = 0;
        for t in 0..T {
            let u = rng.next_f64();
            tok[t] = if u < 0.3 && d < MAX_DEPTH {
                d += 1;
                0
            } else if u < 0.6 && d > 0 {
                d -= 1;
                1
            } else {
                2 + rng.below(4)
            };
            depth[t] = d;
        }
        inputs.push(tok);
        targets.push(depth);
    }
    Dataset::new(inputs, targets)
}

fn one_hot(data: &Dataset<Tokens, Depths>) -> Dataset<[[f32; 6]; T], Depths> {
    let inputs = data
        .inputs
        .iter()
        .map(|tok| {
            let mut x = [[0.0; 6]; T];
            for (step, &k) in x.iter_mut().zip(tok) {
                step[k] = 1.0;
            }
            x
        })
        .collect();
    Dataset::new(inputs, data.targets.clone())
}

/// The fraction of all steps of `data` whose depth `predict` names.
fn step_accuracy<N: Network>(net: &N, data: &Dataset<N::Input, Depths>) -> f64
where
    N::Output: AsRef<[[f32; 5]]>,
{
    let mut right = 0;
    for (x, depth) in data.iter() {
        let out = net.predict(x);
        for (o, &d) in out.as_ref().iter().zip(depth) {
            let best = (0..5).max_by(|&a, &b| o[a].total_cmp(&o[b])).unwrap_or(0);
            right += usize::from(best == d);
        }
    }
    right as f64 / (data.len() * T) as f64
}

fn train<N>(
    name: &str,
    net: &mut N,
    train: &Dataset<N::Input, Depths>,
    test: &Dataset<N::Input, Depths>,
) -> Result<f64, Box<dyn Error>>
where
    N: Network<Target = Depths>,
    N::Output: AsRef<[[f32; 5]]>,
{
    let start = Instant::now();
    let mut trainer = Trainer::new(Adam::new(3e-3))
        .epochs(EPOCHS)
        .batch_size(32)
        .clip(Clip::Norm(1.0))
        .seed(1)
        .threads(2)
        .progress(false);
    for report in trainer.train(net, train, Some(test))? {
        let report = report?;
        if report.epoch % 3 == 0 {
            println!(
                "  {name} epoch {:>2}: train loss {:.4}, test loss {:.4}, last-step test accuracy {:.1}% ({:.1?})",
                report.epoch,
                report.loss,
                report.val_loss.unwrap_or(f64::NAN),
                100.0 * report.val_accuracy.unwrap_or(f64::NAN),
                start.elapsed()
            );
        }
    }
    let acc = step_accuracy(net, test);
    println!(
        "  {name}: test step accuracy {:.2}% after {:.1?}",
        100.0 * acc,
        start.elapsed()
    );
    Ok(acc)
}

fn main() -> Result<(), Box<dyn Error>> {
    let train_set = brackets(TRAIN, 7);
    let test_set = brackets(TEST, 8);
    let mut counts = [0usize; 5];
    for depth in &test_set.targets {
        for &d in depth {
            counts[d] += 1;
        }
    }
    let baseline = *counts.iter().max().unwrap_or(&0) as f64 / (TEST * T) as f64;
    println!(
        "bracket depth, T = {T}: {TRAIN} training and {TEST} test sequences; \
         always answering the most frequent depth is right at {:.1}% of the steps",
        100.0 * baseline
    );
    println!(
        "embedded tokens: {} parameters; one-hot tokens: {} parameters",
        Embedded::PARAMS,
        OneHot::PARAMS
    );
    let mut embedded = Embedded::new(1);
    let emb = train("embedding", &mut embedded, &train_set, &test_set)?;
    let (train_hot, test_hot) = (one_hot(&train_set), one_hot(&test_set));
    let mut hot = OneHot::new(1);
    let oh = train("one-hot  ", &mut hot, &train_hot, &test_hot)?;
    println!(
        "test step accuracy: embedding {:.2}%, one-hot {:.2}%, baseline {:.1}%",
        100.0 * emb,
        100.0 * oh,
        100.0 * baseline
    );
    Ok(())
}
