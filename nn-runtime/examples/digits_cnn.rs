//! Handwritten digits (8x8 pixels, UCI; see data/README.md) with a small
//! convolutional network: two 3x3 convolutions with ReLU, each followed by
//! 2x2 max pooling, then a dense layer to the 10 class logits. The same
//! seeded 70/10/20 split, optimiser and early stopping as the `digits`
//! example's multilayer perceptron, for comparison.
//!
//! Run with `cargo run --release --example digits_cnn` (from the workspace
//! root). The best weights go to `target/digits_cnn.safetensors`.

use flate2::read::GzDecoder;
use nn_runtime::prelude::*;
use std::error::Error;
use std::fs::File;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/digits.csv.gz");

/// Image `[1, 8, 8]` -> conv 3x3 (16) -> pool -> conv 3x3 (32) -> pool -> 10 logits.
#[network {
    input  x[1, 8, 8];
    target label: class[10];
    c1     = relu(conv2d(x, 16, 3, padding = 1));
    p1     = max_pool2d(c1, 2);
    c2     = relu(conv2d(p1, 32, 3, padding = 1));
    p2     = max_pool2d(c2, 2);
    logits = dense(flatten(p2), 10);
    loss   = softmax_cross_entropy(logits, label);
}]
pub struct DigitsCnn;

const SPLIT_SEED: u64 = 1;
const INIT_SEED: u64 = 1;
const SHUFFLE_SEED: u64 = 1;
const LR: f64 = 3e-3;
const EPOCHS: usize = 60;
const BATCH: usize = 32;
const PATIENCE: usize = 15;

/// The target directory: three levels above this example's binary
/// (`target/release/examples/digits_cnn`), else the system's temporary directory.
fn output_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_owned()))
        .unwrap_or_else(std::env::temp_dir)
}

fn main() -> Result<(), Box<dyn Error>> {
    let start = Instant::now();
    let file = File::open(DATA).map_err(|e| format!("{DATA}: {e}"))?;
    let table = Csv::new().read(GzDecoder::new(file), DATA)?;
    // 64 pixel counts in 0..=16, row by row (the image `[1, 8, 8]` stored
    // flat), then the digit in column 64.
    let mut data = table.classification::<f32, 64>(64, 10)?;
    data.scale_features(1.0 / 16.0);
    let (train, val, test) = data.split3(0.7, 0.1, SPLIT_SEED);
    println!(
        "digits: {} for training, {} for validation, {} held out",
        train.len(),
        val.len(),
        test.len()
    );
    let mut net = DigitsCnn::new(INIT_SEED);
    println!(
        "DigitsCnn: {} parameters, forward {} / backward {} FLOPs per sample",
        DigitsCnn::PARAMS,
        DigitsCnn::FORWARD_FLOPS,
        DigitsCnn::BACKWARD_FLOPS
    );
    let checkpoint = output_dir().join("digits_cnn.safetensors");
    let report = Trainer::new(Adam::new(LR))
        .epochs(EPOCHS)
        .batch_size(BATCH)
        .seed(SHUFFLE_SEED)
        .threads(0)
        .early_stopping(EarlyStopping::new(Metric::Accuracy, PATIENCE))
        .checkpoint(&checkpoint)
        .verbose(!std::io::stderr().is_terminal())
        .fit_with_validation(&mut net, &train, &val)?;
    let best = report.best_epoch.ok_or("no best epoch")?;
    println!(
        "training: {} epochs, best validation accuracy {:.2}% at epoch {best}",
        report.epochs.len(),
        100.0 * report.epochs[best - 1].val_accuracy.unwrap_or(f64::NAN)
    );
    let test_eval = evaluate(&net, &test)?;
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
