//! Handwritten digits (8x8 pixels, UCI; see data/README.md) with a 64-32-10
//! network: ReLU hidden layer, softmax cross-entropy, mini-batch SGD on a
//! seeded 80/20 train/test split.
//!
//! Run with `cargo run --release --example digits` (from the workspace root);
//! an optional argument names another gzipped CSV file of the same layout.

use flate2::read::GzDecoder;
use nn_runtime::prelude::*;
use std::error::Error;
use std::fs::File;
use std::time::Instant;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/digits.csv.gz");

/// 64-32-10 classifier: 64 pixels in, 10 class logits out.
#[network {
    input  x[64];
    target label: class[10];
    h      = relu(dense(x, 32, he));
    logits = dense(h, 10);
    loss   = softmax_cross_entropy(logits, label);
}]
pub struct Digits;

const SPLIT_SEED: u64 = 1;
const INIT_SEED: u64 = 1;
const SHUFFLE_SEED: u64 = 1;
const LR: f64 = 0.1;
const EPOCHS: usize = 60;
const BATCH: usize = 16;

fn main() -> Result<(), Box<dyn Error>> {
    let start = Instant::now();
    let path = std::env::args().nth(1).unwrap_or_else(|| DATA.to_owned());
    let file = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    let table = read_csv(GzDecoder::new(file), &path)?;
    // 64 pixel counts in 0..=16, then the digit in column 64.
    let mut data = table.classification::<f32, 64>(64, 10)?;
    data.scale_features(1.0 / 16.0);
    let (train, test) = data.split(0.8, SPLIT_SEED);
    println!(
        "digits: {} samples, {} for training, {} held out",
        data.len(),
        train.len(),
        test.len()
    );

    let mut net = Digits::new(INIT_SEED);
    println!(
        "Digits: {} parameters, forward {} / backward {} FLOPs per sample",
        Digits::PARAMS,
        Digits::FORWARD_FLOPS,
        Digits::BACKWARD_FLOPS
    );
    let report = Trainer::new(Sgd::new(LR))
        .epochs(EPOCHS)
        .batch_size(BATCH)
        .seed(SHUFFLE_SEED)
        .verbose(true)
        .fit_with_validation(&mut net, &train, &test)?;

    let test_eval = evaluate(&net, &test);
    let last = report.last().ok_or("no epoch ran")?;
    println!(
        "training: loss {:.4}, accuracy {:.2}%",
        last.loss,
        100.0 * last.accuracy
    );
    println!(
        "held-out: loss {:.4}, accuracy {:.2}% ({} of {})",
        test_eval.loss,
        100.0 * test_eval.accuracy,
        (test_eval.accuracy * test.len() as f64).round(),
        test.len()
    );
    println!("total time {:.2?}", start.elapsed());
    Ok(())
}
