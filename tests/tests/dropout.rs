//! `dropout(x, p)`: inverted dropout in the training passes, the identity
//! in inference. The backward pass against central finite differences with
//! the mask held fixed (the same seed), the batched passes against the
//! per-sample ones, and masks that do not depend on the thread count.

use nn_runtime::dropout::sample_seed;
use nn_runtime::prelude::*;
use nn_runtime::Rng;

#[network { dtype f64; input x[6]; target y[3];
    h = dropout(tanh(dense(x, 16)), 0.4);
    out = dense(h, 3);
    loss = mse(out, y); }]
pub struct Dropped;

const X: [f64; 6] = [0.7, -1.3, 0.4, 2.1, -0.2, 0.9];
const Y: [f64; 3] = [0.3, -0.8, 0.5];

fn loss_with(net: &Dropped, seed: Option<u64>) -> f64 {
    let mut tape = Dropped::new_tape();
    tape.set_dropout(seed);
    net.forward(&X, &Y, &mut tape)
}

#[test]
fn the_gradient_with_a_fixed_mask_is_the_derivative_of_that_masked_loss() {
    let mut net = Dropped::new(3);
    let seed = Some(sample_seed(42, 0));
    let mut tape = Dropped::new_tape();
    tape.set_dropout(seed);
    net.forward(&X, &Y, &mut tape);
    // some of the 16 units are dropped, the kept ones scaled by 1 / 0.6
    let mask = tape.h_mask;
    let dropped = mask.iter().filter(|&&m| m == 0.0).count();
    assert!((3..=13).contains(&dropped), "{mask:?}");
    assert!(mask
        .iter()
        .all(|&m| m == 0.0 || (m - 1.0 / 0.6).abs() < 1e-15));
    let mut grads = Dropped::new_grads();
    net.backward(&tape, &mut grads);
    let analytic = grads.as_slice().to_vec();
    let eps = 1e-6;
    let (mut worst, mut norm) = (0.0f64, 0.0f64);
    for (k, &exact) in analytic.iter().enumerate() {
        let w = net.params.as_slice()[k];
        net.params.as_mut_slice()[k] = w + eps;
        let up = loss_with(&net, seed);
        net.params.as_mut_slice()[k] = w - eps;
        let down = loss_with(&net, seed);
        net.params.as_mut_slice()[k] = w;
        let numeric = (up - down) / (2.0 * eps);
        worst = worst.max((numeric - exact).abs() / numeric.abs().max(1e-3));
        norm += exact * exact;
    }
    assert!(norm.sqrt() > 1e-3, "the gradient is trivially zero");
    assert!(worst < 1e-6, "relative error {worst}");
    // the dropped units' incoming weights get no gradient
    for (u, &m) in mask.iter().enumerate() {
        let row_zero = grads.h_weight[u].iter().all(|&g| g == 0.0);
        assert_eq!(m == 0.0, row_zero, "unit {u}");
    }
}

#[test]
fn predict_and_a_new_tape_are_inference_and_the_seed_decides_the_mask() {
    let net = Dropped::new(5);
    // a new tape: dropout off, the loss of predict's output
    let out = net.predict(&X);
    let want: f64 = out
        .iter()
        .zip(&Y)
        .map(|(o, y)| (o - y) * (o - y))
        .sum::<f64>()
        / 3.0;
    assert!((loss_with(&net, None) - want).abs() < 1e-15);
    // on: the same seed gives the same loss, another seed another mask
    let a = loss_with(&net, Some(1));
    assert_eq!(a, loss_with(&net, Some(1)));
    assert!((a - want).abs() > 1e-9);
    assert_ne!(a, loss_with(&net, Some(2)));
    // switched off again, the tape is back to inference
    let mut tape = Dropped::new_tape();
    tape.set_dropout(Some(1));
    tape.set_dropout(None);
    assert!((net.forward(&X, &Y, &mut tape) - want).abs() < 1e-15);
    // inverted dropout keeps the mean: over many seeds, E[mask] = 1
    let mut tape = Dropped::new_tape();
    let mut total = 0.0;
    for s in 0..2000 {
        tape.set_dropout(Some(sample_seed(9, s)));
        net.forward(&X, &Y, &mut tape);
        total += tape.h_mask.iter().sum::<f64>();
    }
    let mean = total / (2000.0 * 16.0);
    assert!((mean - 1.0).abs() < 0.02, "{mean}");
}

#[test]
fn the_batched_passes_draw_each_samples_own_mask() {
    let mut rng = Rng::new(4);
    let mut net = Dropped::new(7);
    for v in net.params.as_mut_slice() {
        *v += rng.uniform(-0.3, 0.3);
    }
    let inputs: [[f64; 6]; 5] =
        std::array::from_fn(|_| std::array::from_fn(|_| rng.uniform(-1.0, 1.0)));
    let targets: [[f64; 3]; 5] =
        std::array::from_fn(|_| std::array::from_fn(|_| rng.uniform(-1.0, 1.0)));
    let step = 77;
    let mut tape = Dropped::new_tape();
    let mut grads = Dropped::new_grads();
    let mut loss = 0.0;
    for j in 0..5 {
        tape.set_dropout(Some(sample_seed(step, j)));
        loss += net.forward(&inputs[j], &targets[j], &mut tape);
        net.backward(&tape, &mut grads);
    }
    let mut btape = Dropped::new_batch_tape::<5>();
    btape.set_dropout(Some(step));
    let mut bgrads = Dropped::new_grads();
    let bloss = net.forward_batch(&inputs, &targets, &mut btape);
    net.backward_batch(&mut btape, &mut bgrads);
    assert!(
        (bloss - loss).abs() <= 1e-12 * loss.abs().max(1.0),
        "{bloss} vs {loss}"
    );
    for (k, (a, b)) in bgrads.as_slice().iter().zip(grads.as_slice()).enumerate() {
        assert!(
            (a - b).abs() <= 1e-10 * b.abs().max(1.0),
            "gradient {k}: {a} vs {b}"
        );
    }
    // with dropout off, the batch is inference too
    btape.set_dropout(None);
    let off = net.forward_batch(&inputs, &targets, &mut btape);
    let want: f64 = (0..5)
        .map(|j| {
            let mut t = Dropped::new_tape();
            net.forward(&inputs[j], &targets[j], &mut t)
        })
        .sum();
    assert!((off - want).abs() <= 1e-12 * want.abs().max(1.0));
}

#[test]
fn training_draws_the_same_masks_with_any_number_of_threads() {
    let mut rng = Rng::new(8);
    let (mut inputs, mut targets) = (vec![], vec![]);
    for _ in 0..100 {
        let x: [f64; 6] = std::array::from_fn(|_| rng.uniform(-1.0, 1.0));
        inputs.push(x);
        targets.push([x[0] * x[1], x[2].sin(), x[3] - x[4]]);
    }
    let data = Dataset::new(inputs, targets);
    let train = |threads| {
        let mut net = Dropped::new(1);
        Trainer::new(Adam::new(0.01))
            .epochs(3)
            .batch_size(50)
            .seed(5)
            .threads(threads)
            .fit(&mut net, &data)
            .unwrap();
        net.params.as_slice().to_vec()
    };
    let one = train(1);
    assert_eq!(one, train(2));
    // and dropout did act: without it training ends elsewhere
    #[network { dtype f64; input x[6]; target y[3];
        h = tanh(dense(x, 16));
        out = dense(h, 3);
        loss = mse(out, y); }]
    pub struct Undropped;
    let mut plain = Undropped::new(1);
    assert_eq!(plain.params.as_slice(), Dropped::new(1).params.as_slice());
    Trainer::new(Adam::new(0.01))
        .epochs(3)
        .batch_size(50)
        .seed(5)
        .fit(&mut plain, &data)
        .unwrap();
    assert_ne!(plain.params.as_slice(), &one[..]);
}
