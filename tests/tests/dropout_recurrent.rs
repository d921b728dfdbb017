//! Dropout in a recurrent definition: one mask per sequence, drawn before
//! the time loop and applied at every step (the same units dropped at each
//! step of a sequence), the identity in `predict` and `step`.

use nn_runtime::dropout::sample_seed;
use nn_runtime::prelude::*;
use nn_runtime::Rng;

#[network { dtype f64; steps 5;
    input x[t][3]; target y[t][2];
    state h[6] = zeros;
    h[t] = tanh(dense(h[t-1], 6) + dense(dropout(x[t], 0.3), 6));
    out[t] = dense(dropout(h[t], 0.5), 2);
    loss = mean_steps(mse(out[t], y[t])); }]
pub struct DroppedRnn;

type X = [[f64; 3]; 5];
type Y = [[f64; 2]; 5];

fn sample(rng: &mut Rng) -> (X, Y) {
    (
        std::array::from_fn(|_| std::array::from_fn(|_| rng.uniform(-1.0, 1.0))),
        std::array::from_fn(|_| std::array::from_fn(|_| rng.uniform(-1.0, 1.0))),
    )
}

fn loss_with(net: &DroppedRnn, x: &X, y: &Y, seed: Option<u64>) -> f64 {
    let mut tape = DroppedRnn::new_tape();
    tape.set_dropout(seed);
    net.forward(x, y, &mut tape)
}

#[test]
fn the_gradient_with_a_fixed_mask_is_the_derivative_of_that_masked_loss() {
    let mut rng = Rng::new(3);
    let (x, y) = sample(&mut rng);
    let mut net = DroppedRnn::new(2);
    let seed = Some(sample_seed(11, 0));
    let mut tape = DroppedRnn::new_tape();
    tape.set_dropout(seed);
    let on = net.forward(&x, &y, &mut tape);
    assert!(
        (on - loss_with(&net, &x, &y, None)).abs() > 1e-9,
        "the mask changed nothing"
    );
    let mut grads = DroppedRnn::new_grads();
    net.backward(&tape, &mut grads);
    let analytic = grads.as_slice().to_vec();
    let eps = 1e-6;
    let (mut worst, mut norm) = (0.0f64, 0.0f64);
    for (k, &exact) in analytic.iter().enumerate() {
        let w = net.params.as_slice()[k];
        net.params.as_mut_slice()[k] = w + eps;
        let up = loss_with(&net, &x, &y, seed);
        net.params.as_mut_slice()[k] = w - eps;
        let down = loss_with(&net, &x, &y, seed);
        net.params.as_mut_slice()[k] = w;
        let numeric = (up - down) / (2.0 * eps);
        worst = worst.max((numeric - exact).abs() / numeric.abs().max(1e-3));
        norm += exact * exact;
    }
    assert!(norm.sqrt() > 1e-3, "the gradient is trivially zero");
    assert!(worst < 1e-6, "relative error {worst}");
    // predict and step are inference
    let seq = net.predict(&x);
    let mut state = net.initial_state();
    for t in 0..5 {
        assert_eq!(net.step(&mut state, &x[t]), seq[t]);
    }
    let want: f64 = (0..5)
        .map(|t| (0..2).map(|i| (seq[t][i] - y[t][i]).powi(2)).sum::<f64>() / 2.0)
        .sum::<f64>()
        / 5.0;
    assert!((loss_with(&net, &x, &y, None) - want).abs() < 1e-12);
}

#[test]
fn batched_sequences_draw_each_sequences_own_mask() {
    let mut rng = Rng::new(9);
    let data: Vec<(X, Y)> = (0..40).map(|_| sample(&mut rng)).collect();
    let (inputs, targets): (Vec<_>, Vec<_>) = data.into_iter().unzip();
    let net = DroppedRnn::new(4);
    let mut work = DroppedRnn::new_batch_work();
    let step_seed = 123;
    DroppedRnn::set_dropout_batch(&mut work, Some(step_seed));
    let mut tape = DroppedRnn::new_tape();
    for &w in DroppedRnn::BATCH_WIDTHS {
        let idx: Vec<usize> = (0..w).map(|j| (7 * j + 3) % inputs.len()).collect();
        let (mut losses, mut correct) = (vec![0.0; w], vec![false; w]);
        let mut grads = DroppedRnn::new_grads();
        net.train_block(
            &inputs,
            &targets,
            &idx,
            &mut work,
            &mut grads,
            &mut losses,
            &mut correct,
        );
        let mut want = DroppedRnn::new_grads();
        for (j, &i) in idx.iter().enumerate() {
            tape.set_dropout(Some(sample_seed(step_seed, i)));
            let loss = net.forward(&inputs[i], &targets[i], &mut tape);
            net.backward(&tape, &mut want);
            assert!(
                (losses[j] - loss).abs() <= 1e-12 * loss.abs().max(1.0),
                "sequence {j}"
            );
        }
        for (k, (a, b)) in grads.as_slice().iter().zip(want.as_slice()).enumerate() {
            assert!(
                (a - b).abs() <= 1e-10 * b.abs().max(1.0),
                "width {w}, gradient {k}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn training_draws_the_same_masks_with_any_number_of_threads() {
    let mut rng = Rng::new(8);
    let data: Vec<(X, Y)> = (0..90).map(|_| sample(&mut rng)).collect();
    let (inputs, targets): (Vec<_>, Vec<_>) = data.into_iter().unzip();
    let data = Dataset::new(inputs, targets);
    let train = |threads| {
        let mut net = DroppedRnn::new(1);
        Trainer::new(Adam::new(0.01))
            .epochs(2)
            .batch_size(45)
            .seed(5)
            .threads(threads)
            .fit(&mut net, &data)
            .unwrap();
        net.params.as_slice().to_vec()
    };
    assert_eq!(train(1), train(2));
}
