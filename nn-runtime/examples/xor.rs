//! XOR with a 2-4-1 sigmoid network, trained by full-batch SGD.
//!
//! Run with `cargo run --example xor` (from the workspace root).

use nn_runtime::prelude::*;

/// A 2-4-1 network that learns XOR.
#[network {
    input  x[2];
    target y[1];
    h    = sigmoid(dense(x, 4));
    out  = sigmoid(dense(h, 1));
    loss = mse(out, y);
}]
pub struct Xor;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = Dataset::new(
        vec![[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]],
        vec![[0.0], [1.0], [1.0], [0.0]],
    );

    let mut net = Xor::new(42);
    println!(
        "Xor: {} parameters, tape {} bytes, forward {} / backward {} FLOPs per sample",
        Xor::PARAMS,
        Xor::TAPE_BYTES,
        Xor::FORWARD_FLOPS,
        Xor::BACKWARD_FLOPS
    );

    // Full batch (the default batch size): one SGD step per epoch, after the
    // backward passes of all four samples have been accumulated.
    let report = Trainer::new(Sgd::new(2.0))
        .epochs(3000)
        .fit(&mut net, &data)?;
    for e in report
        .epochs
        .iter()
        .filter(|e| e.epoch == 1 || e.epoch % 500 == 0)
    {
        println!("epoch {:>4}: loss {:.6}", e.epoch, e.loss);
    }

    let mut correct = 0;
    for (x, y) in data.iter() {
        let out = net.predict(x);
        let ok = (out[0] > 0.5) == (y[0] > 0.5);
        correct += usize::from(ok);
        println!(
            "{} xor {} = {:.4} (target {}){}",
            x[0],
            x[1],
            out[0],
            y[0],
            if ok { "" } else { "  <- wrong" }
        );
    }
    println!(
        "accuracy: {}/{} ({:.0}%)",
        correct,
        data.len(),
        100.0 * correct as f64 / data.len() as f64
    );
    Ok(())
}
