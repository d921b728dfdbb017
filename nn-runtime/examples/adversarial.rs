//! Adversarial examples on the digits network with the generated
//! `input_gradient` (the fast gradient sign method): each held-out image
//! `x` (pixels in `[0, 1]`) is moved to `clamp(x + ε sign(∂loss/∂x), 0, 1)`,
//! the direction in which the loss grows fastest, and the accuracy is
//! measured against `ε`. The same amount of random sign noise is the
//! baseline: it barely matters, while the gradient's direction does.
//!
//! Run with `cargo run --release --example adversarial` (from the workspace
//! root).

use flate2::read::GzDecoder;
use nn_runtime::prelude::*;
use nn_runtime::Rng;
use std::error::Error;
use std::fs::File;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/digits.csv.gz");

/// The 64-32-10 classifier of the digits example.
#[network {
    input  x[64];
    target label: class[10];
    h      = relu(dense(x, 32, he));
    logits = dense(h, 10);
    loss   = softmax_cross_entropy(logits, label);
}]
pub struct Digits;

const EPSILONS: [f32; 7] = [0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3];

/// Accuracy on `data` after moving each input by `ε` times `direction(x, y)`.
fn accuracy_after(
    net: &Digits,
    data: &Dataset<[f32; 64], usize>,
    eps: f32,
    mut direction: impl FnMut(&[f32; 64], &usize) -> [f32; 64],
) -> f64 {
    let mut correct = 0;
    for (x, y) in data.inputs.iter().zip(&data.targets) {
        let d = direction(x, y);
        let moved: [f32; 64] = core::array::from_fn(|i| (x[i] + eps * d[i]).clamp(0.0, 1.0));
        if Digits::is_correct(&net.predict(&moved), y) {
            correct += 1;
        }
    }
    correct as f64 / data.len() as f64
}

fn main() -> Result<(), Box<dyn Error>> {
    let file = File::open(DATA).map_err(|e| format!("{DATA}: {e}"))?;
    let table = Csv::new().read(GzDecoder::new(file), DATA)?;
    let mut data = table.classification::<f32, 64>(64, 10)?;
    data.scale_features(1.0 / 16.0);
    let (train, test) = data.split(0.8, 1);
    let mut net = Digits::new(1);
    Trainer::new(Adam::new(3e-3))
        .epochs(30)
        .batch_size(32)
        .fit(&mut net, &train)?;

    println!(
        "digits, 64-32-10, {} held-out images; pixels in [0, 1]",
        test.len()
    );
    println!("| ε | accuracy, x + ε sign(∂loss/∂x) | accuracy, x + ε · random signs |");
    println!("| --- | --- | --- |");
    let mut rng = Rng::new(7);
    for eps in EPSILONS {
        let attacked = accuracy_after(&net, &test, eps, |x, y| {
            net.input_gradient(x, y).map(|g| {
                if g > 0.0 {
                    1.0
                } else if g < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            })
        });
        let noisy = accuracy_after(&net, &test, eps, |_, _| {
            core::array::from_fn(|_| if rng.next_f64() < 0.5 { -1.0 } else { 1.0 })
        });
        println!(
            "| {eps:.2} | {:.1}% | {:.1}% |",
            100.0 * attacked,
            100.0 * noisy
        );
    }
    Ok(())
}
