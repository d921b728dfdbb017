//! `#[network]` on a microcontroller: this library is `#![no_std]`, does
//! not use `alloc` and declares no global allocator, and depends on
//! nn-runtime without default features (no `std`, no `alloc`). It defines
//! XOR and the 64-32-10 digits network and trains them with parameters,
//! gradients and tapes the caller owns (on the stack here; a `static`
//! works the same way) and plain SGD.
//!
//! `cargo build -p nn-no-std` builds it without std (features unify only
//! among the packages of one build; in `cargo test --workspace` the other
//! members turn nn-runtime's `std` on). To prove that nothing links std
//! or needs a heap, build the final artifact:
//!
//! ```sh
//! cargo rustc -p nn-no-std --release --features panic-handler --crate-type staticlib -- -C panic=abort
//! ```
//!
//! which fails if std is linked (a second panic handler) or anything
//! allocates (no global allocator).
#![no_std]
#![warn(missing_docs)]

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

/// The 64-32-10 network of the digits example (8x8 images, 10 classes).
#[network {
    input  x[64];
    target label: class[10];
    h      = relu(dense(x, 32, he));
    logits = dense(h, 10);
    loss   = softmax_cross_entropy(logits, label);
}]
pub struct Digits;

/// The four XOR inputs.
pub const XOR_INPUTS: [[f32; 2]; 4] = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
/// Their targets.
pub const XOR_TARGETS: [[f32; 1]; 4] = [[0.0], [1.0], [1.0], [0.0]];

/// One full-batch training step of XOR: the four samples' forward and
/// backward passes (the gradient summed into `grads`), the mean gradient,
/// one SGD update. Returns the mean loss before the update.
#[inline(never)]
pub fn xor_step(
    params: &mut XorParams,
    grads: &mut XorParams,
    tape: &mut XorTape,
    opt: &mut Sgd,
) -> f32 {
    grads.fill_zero();
    let mut loss = 0.0;
    for (x, y) in XOR_INPUTS.iter().zip(&XOR_TARGETS) {
        loss += params.forward(x, y, tape);
        params.backward(tape, grads);
    }
    let n = XOR_INPUTS.len() as f32;
    for g in grads.as_mut_slice() {
        *g /= n;
    }
    opt.step(params.as_mut_slice(), grads.as_slice());
    loss / n
}

/// How many of the four XOR samples `params` gets right (output above one
/// half for a target of 1, below for 0).
pub fn xor_correct(params: &XorParams) -> usize {
    XOR_INPUTS
        .iter()
        .zip(&XOR_TARGETS)
        .filter(|(x, y)| (params.predict(x)[0] > 0.5) == (y[0] > 0.5))
        .count()
}

/// Trains XOR from `seed` for `epochs` full-batch SGD steps (learning rate
/// 2), everything on the stack: returns the parameters and the number of
/// samples then right.
pub fn train_xor(seed: u64, epochs: usize) -> (XorParams, usize) {
    let mut params = XorParams::new(seed);
    let mut grads = XorParams::ZEROED;
    let mut tape = XorTape::ZEROED;
    let mut opt = Sgd::new(2.0);
    Optimizer::<f32>::init(&mut opt, XorParams::LEN);
    for _ in 0..epochs {
        xor_step(&mut params, &mut grads, &mut tape, &mut opt);
    }
    let correct = xor_correct(&params);
    (params, correct)
}

/// One mini-batch training step of the digits network: the samples'
/// forward and backward passes, the mean gradient, one SGD update.
/// Returns the mean loss before the update.
///
/// # Panics
/// If `inputs` and `labels` differ in length or are empty, or a label is not
/// below 10.
#[inline(never)]
pub fn digits_step(
    params: &mut DigitsParams,
    grads: &mut DigitsParams,
    tape: &mut DigitsTape,
    opt: &mut Sgd,
    inputs: &[[f32; 64]],
    labels: &[usize],
) -> f32 {
    assert!(inputs.len() == labels.len() && !inputs.is_empty());
    grads.fill_zero();
    let mut loss = 0.0;
    for (x, label) in inputs.iter().zip(labels) {
        assert!(*label < 10, "label {label} is not a digit");
        loss += params.forward(x, label, tape);
        params.backward(tape, grads);
    }
    let n = inputs.len() as f32;
    for g in grads.as_mut_slice() {
        *g /= n;
    }
    opt.step(params.as_mut_slice(), grads.as_slice());
    loss / n
}

/// [`xor_step`] with plain SGD at learning rate `lr`, for C (and for
/// measuring the code size of a training step in a static library).
#[no_mangle]
pub extern "C" fn nn_xor_train_step(
    params: &mut XorParams,
    grads: &mut XorParams,
    tape: &mut XorTape,
    lr: f32,
) -> f32 {
    xor_step(params, grads, tape, &mut Sgd::new(lr as f64))
}

/// [`digits_step`] with plain SGD at learning rate `lr` on the `n` samples
/// at `inputs` and `labels`, for C.
///
/// # Safety
/// `inputs` and `labels` must point to `n` valid values each; `n > 0`.
#[no_mangle]
pub unsafe extern "C" fn nn_digits_train_step(
    params: &mut DigitsParams,
    grads: &mut DigitsParams,
    tape: &mut DigitsTape,
    lr: f32,
    inputs: *const [f32; 64],
    labels: *const usize,
    n: usize,
) -> f32 {
    // SAFETY: the caller's contract.
    let (inputs, labels) = unsafe {
        (
            core::slice::from_raw_parts(inputs, n),
            core::slice::from_raw_parts(labels, n),
        )
    };
    digits_step(
        params,
        grads,
        tape,
        &mut Sgd::new(lr as f64),
        inputs,
        labels,
    )
}

/// The panic handler of a `#![no_std]` final artifact (see the crate's docs).
#[cfg(feature = "panic-handler")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
