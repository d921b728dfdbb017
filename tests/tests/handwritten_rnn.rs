//! The hand-written Elman RNN the `rnn` benchmark compares against computes
//! the generated network's gradients (same weights, same sequences; f64 to
//! 1e-10 relative, f32 to float rounding), its backward pass matches central
//! finite differences, and its SGD step is `θ -= lr·g` with `g` cleared.

use nn_runtime::prelude::*;
use nn_tests::handwritten_rnn::{Rnn, Rnn64, RnnHand, RnnWork, H, I, T};
use nn_tests::{f64_options, fill_params, Lcg};

/// One sequence: inputs and targets uniform in [-1, 1].
fn sequence(seed: u64) -> ([[f64; I]; T], [[f64; 1]; T]) {
    let mut rng = Lcg::new(seed);
    let x = core::array::from_fn(|_| core::array::from_fn(|_| rng.uniform(-1.0, 1.0)));
    let y = core::array::from_fn(|_| [rng.uniform(-1.0, 1.0)]);
    (x, y)
}

/// The hand-written net with the generated one's parameters, copied tensor by
/// tensor through `PARAM_INFO` (names and shapes checked).
fn hand_from<N: Network>(net: &N) -> RnnHand<f64> {
    let mut hand = RnnHand::<f64>::zeroed();
    let expected: [(&str, &[usize]); 5] = [
        ("wh", &[H, H]),
        ("h.weight", &[H, I]),
        ("h.bias", &[H]),
        ("out.weight", &[1, H]),
        ("out.bias", &[1]),
    ];
    let names: Vec<&str> = N::PARAM_INFO.iter().map(|p| p.name).collect();
    assert_eq!(names, expected.map(|(n, _)| n));
    for (p, (_, shape)) in N::PARAM_INFO.iter().zip(expected) {
        assert_eq!(p.shape, shape, "`{}`", p.name);
        let src = &net.params().as_slice()[p.range()];
        for (d, s) in hand.field_mut(p.name).iter_mut().zip(src) {
            *d = s.to_f64();
        }
    }
    assert_eq!(hand.to_flat().len(), N::PARAMS);
    hand
}

/// The generated network's weights: Xavier from `new`, then every parameter
/// (biases too) overwritten with magnitudes in [0.02, 0.3), so tanh works in
/// its non-linear range without saturating.
fn generated64(seed: u64) -> Rnn64 {
    let mut net = Rnn64::new(seed);
    fill_params(&mut net, seed + 10, 0.02, 0.3);
    net
}

#[test]
fn hand_written_rnn_gradients_equal_generated_in_f64() {
    for seed in 1..=3 {
        let net = generated64(seed);
        let hand = hand_from(&net);
        assert_eq!(hand.to_flat(), net.params().as_slice());
        let mut tape = Rnn64::new_tape();
        let mut g_gen = Rnn64::new_grads();
        let mut g_hand = RnnHand::<f64>::zeroed();
        let mut work = RnnWork::<f64>::default();
        // Two sequences: both sides accumulate (`+=`) into their gradients.
        for s in 0..2 {
            let (x, y) = sequence(100 * seed + s);
            let lg = net.forward(&x, &y, &mut tape);
            net.backward(&tape, &mut g_gen);
            let lh = hand.grad(&x, &y, &mut work, &mut g_hand);
            assert!(
                (lg - lh).abs() <= 1e-12 * lg.abs(),
                "seed {seed}: loss generated {lg} vs hand-written {lh}"
            );
            // the stored states are the generated tape's
            for t in 0..T {
                for j in 0..H {
                    let (a, b) = (work.h[t + 1][j], tape.h[t][j]);
                    assert!(
                        (a - b).abs() <= 1e-13,
                        "seed {seed}: h[{t}][{j}] {a} vs {b}"
                    );
                }
            }
            // and `predict` gives the same outputs
            let out = net.predict(&x);
            for t in 0..T {
                let o = y[t][0] + work.dout[t] / 2.0;
                assert!((out[t][0] - o).abs() <= 1e-12, "out[{t}]");
            }
        }
        let generated = g_gen.as_slice();
        let mut worst = 0.0f64;
        for p in Rnn64::PARAM_INFO {
            let g = &generated[p.range()];
            let h = g_hand.field(p.name);
            let scale = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(
                scale > 1e-3,
                "`{}`: gradient {scale:e} proves nothing",
                p.name
            );
            assert!(g.iter().all(|v| *v != 0.0), "`{}` has zero entries", p.name);
            for (k, (&a, &b)) in h.iter().zip(g).enumerate() {
                let rel = (a - b).abs() / a.abs().max(b.abs()).max(1e-6 * scale);
                worst = worst.max(rel);
                assert!(
                    rel <= 1e-10,
                    "seed {seed}: `{}`[{k}] hand-written {a:e} vs generated {b:e}, rel {rel:e}",
                    p.name
                );
            }
        }
        println!("seed {seed}: worst relative difference {worst:e}");
    }
}

/// The gradient reaches back through time: with only the last step's loss
/// and a zero input at the last step, the input weights' gradient can only
/// come from earlier steps, through the carried state adjoint; the generated
/// network agrees. (Cutting the adjoint in the hand-written backward makes
/// this and the comparisons above fail.)
#[test]
fn bptt_carries_the_adjoint_through_all_steps() {
    let net = generated64(4);
    let hand = hand_from(&net);
    let (mut x, mut y) = sequence(7);
    x[T - 1] = [0.0; I];
    let mut work = RnnWork::<f64>::default();
    let mut g = RnnHand::<f64>::zeroed();
    hand.forward(&x, &y, &mut work);
    // Only the last step's loss: out[t] = y[t] for every earlier step.
    for (yt, d) in y.iter_mut().zip(&work.dout).take(T - 1) {
        yt[0] += d / 2.0;
    }
    let loss = hand.grad(&x, &y, &mut work, &mut g);
    assert!(work.dout[..T - 1].iter().all(|d| d.abs() < 1e-12));
    assert!(loss > 1e-4, "loss {loss}");
    assert!(g.wx.iter().flatten().all(|v| v.abs() > 1e-12), "{:?}", g.wx);
    let mut tape = Rnn64::new_tape();
    let mut g_gen = Rnn64::new_grads();
    net.forward(&x, &y, &mut tape);
    net.backward(&tape, &mut g_gen);
    let generated = &g_gen.as_slice()[Rnn64::PARAM_INFO[1].range()];
    for (a, b) in g.field("h.weight").iter().zip(generated) {
        assert!((a - b).abs() <= 1e-10 * a.abs(), "{a} vs {b}");
    }
}

#[test]
fn hand_written_rnn_backward_matches_finite_differences() {
    let opts = f64_options();
    for seed in 1..=2 {
        let net = generated64(seed);
        let mut hand = hand_from(&net);
        let (x, y) = sequence(200 + seed);
        let mut work = RnnWork::<f64>::default();
        let mut g = RnnHand::<f64>::zeroed();
        hand.grad(&x, &y, &mut work, &mut g);
        let mut rng = Lcg::new(seed);
        let mut checked = 0;
        for name in ["wh", "h.weight", "h.bias", "out.weight", "out.bias"] {
            let n = g.field(name).len();
            // four entries of each tensor (all of `out.bias`), at random
            for _ in 0..4.min(n) {
                let k = (rng.next_u64() % n as u64) as usize;
                let orig = hand.field(name)[k];
                hand.field_mut(name)[k] = orig + opts.h;
                let lp = hand.forward(&x, &y, &mut work);
                hand.field_mut(name)[k] = orig - opts.h;
                let lm = hand.forward(&x, &y, &mut work);
                hand.field_mut(name)[k] = orig;
                let numeric = (lp - lm) / (2.0 * opts.h);
                let a = g.field(name)[k];
                let rel = (a - numeric).abs() / a.abs().max(numeric.abs()).max(opts.floor);
                assert!(
                    rel <= opts.tolerance,
                    "seed {seed}: `{name}`[{k}] analytic {a:e}, numeric {numeric:e}, rel {rel:e}"
                );
                assert!(
                    a.abs() > 1e-6,
                    "`{name}`[{k}]: gradient {a:e} too small to test"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 17);
    }
}

/// The `f32` versions the benchmark runs agree too (to float rounding).
#[test]
fn hand_written_rnn_matches_generated_in_f32() {
    let mut net = Rnn::new(1);
    fill_params(&mut net, 11, 0.02, 0.3);
    let mut hand = RnnHand::<f32>::zeroed();
    for p in Rnn::PARAM_INFO {
        hand.field_mut(p.name)
            .copy_from_slice(&net.params().as_slice()[p.range()]);
    }
    assert_eq!(hand.to_flat(), net.params().as_slice());
    let (x64, y64) = sequence(9);
    let x: [[f32; I]; T] = x64.map(|r| r.map(|v| v as f32));
    let y: [[f32; 1]; T] = y64.map(|r| r.map(|v| v as f32));
    let mut tape = Rnn::new_tape();
    let mut g_gen = Rnn::new_grads();
    let lg = net.forward(&x, &y, &mut tape);
    net.backward(&tape, &mut g_gen);
    let mut work = RnnWork::<f32>::default();
    let mut g_hand = RnnHand::<f32>::zeroed();
    let lh = hand.grad(&x, &y, &mut work, &mut g_hand);
    assert!((lg - lh).abs() <= 1e-5 * lg.abs(), "loss {lg} vs {lh}");
    let g = g_gen.as_slice();
    let scale = g.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (k, (a, b)) in g_hand.to_flat().iter().zip(g).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * scale + 1e-4 * b.abs(),
            "[{k}] hand-written {a} vs generated {b}"
        );
    }
}

#[test]
fn hand_written_rnn_sgd_step_moves_against_the_gradient() {
    let net = generated64(5);
    let mut hand = hand_from(&net);
    let before = hand.clone();
    let (x, y) = sequence(3);
    let mut work = RnnWork::<f64>::default();
    let mut g = RnnHand::<f64>::zeroed();
    let mut g_expected = RnnHand::<f64>::zeroed();
    hand.grad(&x, &y, &mut work, &mut g_expected);
    let loss = hand.step(&mut g, &mut work, &x, &y, 0.01);
    assert!(loss > 0.0);
    assert_eq!(g, RnnHand::<f64>::zeroed(), "sgd clears the gradient");
    for ((a, b), d) in before
        .to_flat()
        .iter()
        .zip(hand.to_flat())
        .zip(g_expected.to_flat())
    {
        assert_eq!(b, a - 0.01 * d);
    }
    // a small step lowers the loss
    assert!(hand.forward(&x, &y, &mut work) < loss);
}
