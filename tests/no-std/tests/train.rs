//! The no-std library's training, run on the host (with std: this test
//! crate links it; the library itself does not).

use nn_no_std::{digits_step, train_xor, xor_correct, DigitsParams, DigitsTape};
use nn_runtime::argmax;
use nn_runtime::prelude::*;

#[test]
fn xor_trains_to_all_four_samples_right_on_the_stack() {
    let (params, correct) = train_xor(42, 3000);
    assert_eq!(correct, 4, "{params:?}");
    assert_eq!(xor_correct(&params), 4);
}

#[test]
fn xor_is_not_learned_without_training() {
    // The check above is not vacuous: the initial parameters do not solve it.
    let (_, correct) = train_xor(42, 0);
    assert!(correct < 4, "{correct}");
}

#[test]
fn the_digits_step_lowers_the_loss_on_a_small_batch() {
    // Ten "images", one per class: a bright 8-pixel stripe at row `c % 8`,
    // and for `c >= 8` one more pixel in the last row.
    let mut inputs = [[0.0f32; 64]; 10];
    let labels: [usize; 10] = core::array::from_fn(|c| c);
    for (c, x) in inputs.iter_mut().enumerate() {
        for j in 0..8 {
            x[(c % 8) * 8 + j] = 1.0;
        }
        if c >= 8 {
            x[63 - (c - 8)] = 1.0;
        }
    }
    let mut params = DigitsParams::new(1);
    let mut grads = DigitsParams::ZEROED;
    let mut tape = DigitsTape::ZEROED;
    let mut opt = Sgd::new(0.5);
    Optimizer::<f32>::init(&mut opt, DigitsParams::LEN);
    let first = digits_step(
        &mut params,
        &mut grads,
        &mut tape,
        &mut opt,
        &inputs,
        &labels,
    );
    let mut last = first;
    for _ in 0..200 {
        last = digits_step(
            &mut params,
            &mut grads,
            &mut tape,
            &mut opt,
            &inputs,
            &labels,
        );
    }
    assert!(first.is_finite() && last.is_finite());
    assert!(last < 0.1 * first, "loss {first} -> {last}");
    let right = inputs
        .iter()
        .zip(&labels)
        .filter(|(x, &l)| argmax(&params.predict(x)) == l)
        .count();
    assert_eq!(right, 10);
}
