//! Token sequences: a class-index input per time step (`input tok[t]:
//! class[n];`) embedded at every step. The generated backward pass against
//! central finite differences (f64), and the batched passes the Trainer
//! runs against the per-sequence ones.

use nn_runtime::prelude::*;
use nn_runtime::Rng;
use nn_tests::check_at_random_points as check;

#[network { dtype f64; steps 6;
    input tok[t]: class[7];
    target y[t]: class[3];
    state h[5] = zeros;
    e[t] = embedding(tok[t], 5);
    h[t] = tanh(dense(h[t-1], 5) + e[t]);
    out[t] = dense(h[t], 3);
    loss = mean_steps(softmax_cross_entropy(out[t], y[t])); }]
pub struct TokenRnn;

fn sample(rng: &mut Rng) -> ([usize; 6], [usize; 6]) {
    (
        std::array::from_fn(|_| rng.below(7)),
        std::array::from_fn(|_| rng.below(3)),
    )
}

#[test]
fn embedded_tokens_differentiate_through_time() {
    let mut rng = Rng::new(5);
    for _ in 0..3 {
        let (x, y) = sample(&mut rng);
        check::<TokenRnn>(x, y);
    }
    let names = TokenRnn::PARAM_INFO
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>();
    assert_eq!(
        names,
        ["e.weight", "h.weight", "h.bias", "out.weight", "out.bias"]
    );
    // a token out of range names its step
    let mut bad = [0; 6];
    bad[4] = 7;
    assert_eq!(
        TokenRnn::check_input(&bad).unwrap_err().to_string(),
        "class label 7 of `tok` at step 4 is not below its 7 classes"
    );
    // stateful inference takes one token per step
    let net = TokenRnn::new(2);
    let toks = [1, 6, 0, 3, 3, 2];
    let seq = net.predict(&toks);
    let mut state = net.initial_state();
    for t in 0..6 {
        assert_eq!(net.step(&mut state, &toks[t]), seq[t]);
    }
}

#[test]
fn batched_token_passes_equal_per_sequence_passes() {
    let mut rng = Rng::new(9);
    let data: Vec<_> = (0..40).map(|_| sample(&mut rng)).collect();
    let (inputs, targets): (Vec<_>, Vec<_>) = data.into_iter().unzip();
    let mut net = TokenRnn::new(4);
    for v in net.params.as_mut_slice() {
        *v += rng.uniform(-0.3, 0.3);
    }
    let mut work = TokenRnn::new_batch_work();
    let mut tape = TokenRnn::new_tape();
    for &w in TokenRnn::BATCH_WIDTHS {
        let idx: Vec<usize> = (0..w).map(|j| (7 * j + 3) % inputs.len()).collect();
        let (mut losses, mut correct) = (vec![0.0; w], vec![false; w]);
        let mut grads = TokenRnn::new_grads();
        net.train_block(
            &inputs,
            &targets,
            &idx,
            &mut work,
            &mut grads,
            &mut losses,
            &mut correct,
        );
        let mut want = TokenRnn::new_grads();
        for (j, &i) in idx.iter().enumerate() {
            let loss = net.forward(&inputs[i], &targets[i], &mut tape);
            net.backward(&tape, &mut want);
            assert!((losses[j] - loss).abs() <= 1e-12 * loss.abs().max(1.0));
        }
        let norm: f64 = want.as_slice().iter().map(|g| g * g).sum::<f64>().sqrt();
        assert!(norm > 1e-6);
        for (k, (a, b)) in grads.as_slice().iter().zip(want.as_slice()).enumerate() {
            assert!(
                (a - b).abs() <= 1e-10 * b.abs().max(1.0),
                "width {w}, gradient {k}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn the_trainer_reports_a_token_out_of_range_before_training() {
    let mut rng = Rng::new(3);
    let (mut inputs, mut targets) = (vec![], vec![]);
    for _ in 0..8 {
        let (x, y) = sample(&mut rng);
        inputs.push(x);
        targets.push(y);
    }
    inputs[5][2] = 9;
    let data = Dataset::new(inputs, targets);
    let mut net = TokenRnn::new(1);
    let before = net.params.clone();
    let err = Trainer::new(Sgd::new(0.1))
        .fit(&mut net, &data)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "training sample 5: class label 9 of `tok` at step 2 is not below its 7 classes; \
         class indices must be in 0..7 (fix the data, or declare more classes)"
    );
    assert!(matches!(err, TrainError::InvalidInput { sample: 5, .. }));
    assert_eq!(*net.params, *before);
}

#[test]
fn the_gradient_check_reports_a_token_out_of_range() {
    let mut net = TokenRnn::new(1);
    let opts = nn_tests::f64_options();
    let err =
        nn_runtime::check_gradients(&mut net, &[0, 1, 2, 3, 8, 0], &[0; 6], opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "gradient check sample 0: class label 8 of `tok` at step 4 is not below its 7 classes; \
         class indices must be in 0..7"
    );
}
