//! The hand-written baselines the benchmarks compare against compute the same
//! gradients as the generated networks, on the same weights and data (per
//! sample and as one matrix-matrix batch), so the benchmark compares equal work:
//! in particular the benchmarks' batched generated step (`forward_batch`,
//! `backward_batch`, `Sgd::step`, gradient cleared) and the hand-written
//! `step_batch` compute the same gradient and the same updated parameters.

use nn_runtime::prelude::*;
use nn_runtime::Zeroable;
use nn_tests::bench_nets::{Batched, Digits, Mnist, Xor};
use nn_tests::handwritten::{feature_major, DigitsHand, MlpBatchWork, MlpHand, MnistHand, XorHand};
use nn_tests::{fill_params, Lcg};

#[track_caller]
fn assert_close(hand: &[f32], generated: &[f32], what: &str) {
    assert_eq!(hand.len(), generated.len());
    let scale = generated.iter().fold(0.0f32, |m, g| m.max(g.abs()));
    assert!(
        scale > 0.0,
        "{what}: the generated gradient is zero, the check proves nothing"
    );
    for (i, (&h, &g)) in hand.iter().zip(generated).enumerate() {
        assert!(
            (h - g).abs() <= 1e-5 * scale + 1e-4 * g.abs(),
            "{what}: gradient [{i}] hand-written {h} vs generated {g} (scale {scale})"
        );
    }
}

#[test]
fn xor_hand_written_gradient_matches_generated() {
    let mut net = Xor::new(1);
    fill_params(&mut net, 2, 0.2, 1.5);
    let hand = XorHand::from_flat(net.params().as_slice());
    assert_eq!(hand.to_flat(), net.params().as_slice());
    let mut g_gen = Xor::new_grads();
    let mut g_hand = XorHand::default();
    let mut tape = Xor::new_tape();
    for (x, y) in [
        ([0.0, 1.0], [1.0]),
        ([1.0, 1.0], [0.0]),
        ([0.3, -0.7], [0.5]),
    ] {
        let lg = net.forward(&x, &y, &mut tape);
        net.backward(&tape, &mut g_gen);
        let lh = hand.grad(&x, &y, &mut g_hand);
        assert!(
            (lg - lh).abs() <= 1e-6 * lg.abs().max(1.0),
            "loss {lg} vs {lh}"
        );
    }
    assert_close(&g_hand.to_flat(), g_gen.as_slice(), "xor");
}

fn mlp_check<N, const I: usize, const H: usize, const O: usize, const B: usize>(
    mut net: N,
    what: &str,
) where
    N: Network<Scalar = f32, Input = [f32; I], Target = usize> + Batched<B>,
{
    fill_params(&mut net, 5, 0.01, 0.2);
    let hand = MlpHand::<I, H, O>::from_flat(net.params().as_slice());
    assert_eq!(hand.to_flat(), net.params().as_slice());
    let mut rng = Lcg::new(9);
    let xs: Vec<[f32; I]> = (0..B)
        .map(|_| core::array::from_fn(|_| rng.uniform(0.0, 1.0) as f32))
        .collect();
    let labels: [usize; B] = core::array::from_fn(|b| (b * 7 + 3) % O);
    let mut g_gen = N::new_grads();
    let mut tape = N::new_tape();
    let mut loss_gen = 0.0;
    for (x, y) in xs.iter().zip(&labels) {
        loss_gen += net.forward(x, y, &mut tape);
        net.backward(&tape, &mut g_gen);
    }
    // Per sample.
    let mut g_hand = MlpHand::<I, H, O>::zeroed();
    let mut loss_hand = 0.0;
    for (x, &y) in xs.iter().zip(&labels) {
        loss_hand += hand.grad(x, y, &mut g_hand);
    }
    assert!(
        (loss_gen - loss_hand).abs() <= 1e-4 * loss_gen.abs(),
        "{what}: loss {loss_gen} vs {loss_hand}"
    );
    assert_close(
        &g_hand.to_flat(),
        g_gen.as_slice(),
        &format!("{what} per sample"),
    );
    // Batched, feature-major.
    let xb = feature_major::<I, B>(&xs);
    let mut work = MlpBatchWork::<H, O, B>::zeroed_box();
    let mut g_batch = MlpHand::<I, H, O>::zeroed();
    let loss_batch = hand.grad_batch(&xb, &labels, &mut work, &mut g_batch);
    assert!(
        (loss_gen - loss_batch).abs() <= 1e-4 * loss_gen.abs(),
        "{what}: loss {loss_gen} vs batch {loss_batch}"
    );
    assert_close(
        &g_batch.to_flat(),
        g_gen.as_slice(),
        &format!("{what} batch of {B}"),
    );
    // The generated batched API against the hand-written batch.
    let xa: Box<[[f32; I]; B]> = xs.clone().into_boxed_slice().try_into().expect("B inputs");
    let mut btape = <N as Batched<B>>::new_batch_tape();
    let mut g_gen_batch = N::new_grads();
    let loss_gen_batch = net.forward_batch(&xa, &labels, &mut btape);
    net.backward_batch(&mut btape, &mut g_gen_batch);
    assert!(
        (loss_gen_batch - loss_batch).abs() <= 1e-4 * loss_batch.abs(),
        "{what}: loss generated batched {loss_gen_batch} vs hand-written batched {loss_batch}"
    );
    assert_close(
        &g_batch.to_flat(),
        g_gen_batch.as_slice(),
        &format!("{what} generated forward_batch/backward_batch vs hand-written batch"),
    );
    // One whole training step each, as the benchmarks run them: the same
    // parameters afterwards, and both gradient buffers cleared.
    let lr = 0.5 / B as f32;
    let mut hand_step = MlpHand::<I, H, O>::from_flat(net.params().as_slice());
    let mut hg = MlpHand::<I, H, O>::zeroed();
    let mut hwork = MlpBatchWork::<H, O, B>::zeroed_box();
    let before = net.params().as_slice().to_vec();
    hand_step.step_batch(&mut hg, &mut hwork, &xb, &labels, lr);
    let mut sgd = Sgd::new(f64::from(lr));
    Optimizer::<f32>::init(&mut sgd, N::PARAMS);
    let mut g_step = N::new_grads();
    net.forward_batch(&xa, &labels, &mut btape);
    net.backward_batch(&mut btape, &mut g_step);
    sgd.step(net.params_mut().as_mut_slice(), g_step.as_slice());
    g_step.as_mut_slice().fill(0.0);
    assert!(hg.to_flat().iter().all(|&g| g == 0.0));
    let moved =
        |after: &[f32]| -> Vec<f32> { before.iter().zip(after).map(|(b, a)| b - a).collect() };
    assert_close(
        &moved(&hand_step.to_flat()),
        &moved(net.params().as_slice()),
        &format!("{what} parameter change of one batched step"),
    );
    // Some hidden units are inactive for some samples: relu' is exercised both ways.
    assert!(
        work.h.iter().flatten().any(|&h| h == 0.0) && work.h.iter().flatten().any(|&h| h > 0.0)
    );
}

#[test]
fn digits_hand_written_gradients_match_generated() {
    mlp_check::<_, 64, 32, 10, 1>(Digits::new(3), "digits b1");
    mlp_check::<_, 64, 32, 10, 32>(Digits::new(3), "digits b32");
    let _: Box<DigitsHand> = DigitsHand::zeroed();
}

#[test]
fn mnist_hand_written_gradients_match_generated() {
    mlp_check::<_, 784, 128, 10, 1>(Mnist::new(4), "mnist b1");
    mlp_check::<_, 784, 128, 10, 64>(Mnist::new(4), "mnist b64");
    let _: Box<MnistHand> = MnistHand::zeroed();
}

#[test]
fn hand_written_sgd_step_moves_against_the_gradient() {
    let mut hand = XorHand::from_flat(Xor::new(1).params().as_slice());
    let before = hand.clone();
    let mut g = XorHand::default();
    hand.grad(&[1.0, 0.0], &[1.0], &mut g);
    let grad = g.to_flat();
    hand.sgd(&mut g, 0.5);
    assert_eq!(g, XorHand::default(), "sgd clears the gradient");
    for ((a, b), d) in before.to_flat().iter().zip(hand.to_flat()).zip(grad) {
        assert!((a - 0.5 * d - b).abs() < 1e-7);
    }
}
