//! Handwritten digits (8x8 pixels, UCI; see data/README.md) with a 64-32-10
//! network: ReLU hidden layer, softmax cross-entropy, mini-batch Adam on a
//! seeded 70/10/20 train/validation/test split, with early stopping on the
//! validation accuracy, a progress bar, the best weights checkpointed, and
//! the loss and accuracy curves drawn as an SVG picture.
//!
//! Run with `cargo run --release --example digits` (from the workspace root);
//! an optional argument names another gzipped CSV file of the same layout.
//! The checkpoint and the picture go to the target directory
//! (`target/digits.safetensors`, `target/digits_loss.svg`).

use flate2::read::GzDecoder;
use nn_runtime::prelude::*;
use std::error::Error;
use std::fs::File;
use std::io::IsTerminal;
use std::path::PathBuf;
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
const LR: f64 = 3e-3;
const EPOCHS: usize = 60;
const BATCH: usize = 32;
const PATIENCE: usize = 10;

/// The target directory: three levels above this example's binary
/// (`target/release/examples/digits`), else the system's temporary directory.
fn output_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_owned()))
        .unwrap_or_else(std::env::temp_dir)
}

fn main() -> Result<(), Box<dyn Error>> {
    let start = Instant::now();
    let path = std::env::args().nth(1).unwrap_or_else(|| DATA.to_owned());
    let file = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    let table = Csv::new().read(GzDecoder::new(file), &path)?;
    // 64 pixel counts in 0..=16, then the digit in column 64.
    let mut data = table.classification::<f32, 64>(64, 10)?;
    data.scale_features(1.0 / 16.0);
    let (train, val, test) = data.split3(0.7, 0.1, SPLIT_SEED);
    println!(
        "digits: {} samples: {} for training, {} for validation, {} held out",
        data.len(),
        train.len(),
        val.len(),
        test.len()
    );

    let mut net = Digits::new(INIT_SEED);
    println!(
        "Digits: {} parameters, forward {} / backward {} FLOPs per sample",
        Digits::PARAMS,
        Digits::FORWARD_FLOPS,
        Digits::BACKWARD_FLOPS
    );
    let out = output_dir();
    let checkpoint = out.join("digits.safetensors");
    let picture = out.join("digits_loss.svg");
    // A progress bar on a terminal; one line per epoch otherwise (logs).
    let report = Trainer::new(Adam::new(LR))
        .epochs(EPOCHS)
        .batch_size(BATCH)
        .seed(SHUFFLE_SEED)
        .threads(0)
        .early_stopping(EarlyStopping::new(Metric::Accuracy, PATIENCE))
        .checkpoint(&checkpoint)
        .verbose(!std::io::stderr().is_terminal())
        .fit_with_validation(&mut net, &train, &val)?;

    let last = report.last().ok_or("no epoch ran")?;
    println!(
        "training: {} epochs, last: loss {:.4}, accuracy {:.2}%",
        report.epochs.len(),
        last.loss,
        100.0 * last.accuracy
    );
    if let Some(e) = report.stopped_early {
        println!("stopped early after epoch {e}");
    }
    let best = report.best_epoch.ok_or("no best epoch")?;
    let best_val = report.epochs[best - 1].val_accuracy.unwrap_or(f64::NAN);
    println!(
        "best validation accuracy {:.2}% at epoch {best}; checkpoint {}",
        100.0 * best_val,
        checkpoint.display()
    );

    // The checkpoint holds the best weights, as does `net` (restored).
    let mut reloaded = Digits::new(0);
    reloaded.load_checkpoint(&checkpoint)?;
    assert_eq!(reloaded.params().as_slice(), net.params().as_slice());

    let test_eval = evaluate(&reloaded, &test)?;
    println!(
        "held-out: loss {:.4}, accuracy {:.2}% ({} of {})",
        test_eval.loss,
        100.0 * test_eval.accuracy,
        (test_eval.accuracy * test.len() as f64).round(),
        test.len()
    );
    println!(
        "confusion matrix (rows: actual digit, columns: predicted):\n{}",
        ConfusionMatrix::of(&reloaded, &test, 10)
    );
    report.plot_svg(&picture)?;
    println!("loss curve: {}", picture.display());
    println!("total time {:.2?}", start.elapsed());
    Ok(())
}
