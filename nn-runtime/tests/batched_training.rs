//! The trainer's batched path (blocks of samples through `train_block` and
//! `eval_block`) against its per-sample path (`forward`/`backward` for every
//! sample, `.batched(false)`): the same weights after several epochs up to
//! rounding, batches cut into the blocks the documentation describes, the
//! same errors naming the same samples, bitwise the same weights on 1, 2
//! and 3 threads; and networks without batched passes still train.

use nn_runtime::prelude::*;
use nn_runtime::Rng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A classifier: ReLU hidden layer, softmax cross-entropy on a class index.
#[network {
    dtype f64;
    input  x[6];
    target label: class[4];
    h      = relu(dense(x, 12, he));
    logits = dense(h, 4);
    loss   = softmax_cross_entropy(logits, label);
}]
struct Classifier;

/// A regression with two inputs and a smooth activation.
#[network {
    dtype f64;
    input  x[3];
    input  s;
    target y[2];
    h    = tanh(dense(x, 8)) * s;
    out  = dense(h, 2);
    loss = mse(out, y);
}]
struct Regression;

/// The digits network's shape in `f32`.
#[network {
    input  x[64];
    target label: class[10];
    h      = relu(dense(x, 32, he));
    logits = dense(h, 10);
    loss   = softmax_cross_entropy(logits, label);
}]
struct Digits;

/// A recurrent network (no batched passes).
#[network {
    dtype f64;
    steps 5;
    input  x[t][2];
    target y[1];
    state  h[6] = zeros;
    h[t] = tanh(dense(x[t], 6) + dense(h[t-1], 6));
    out  = dense(h[last], 1);
    loss = mse(out, y);
}]
struct Elman;

/// A network whose per-sample values are matrices (no batched passes).
#[network {
    dtype f64;
    input  x[3, 4];
    target y[2];
    param  w[2, 3] = xavier;
    m    = tanh(w @ x);
    out  = sum(m, 1);
    loss = mse(out, y);
}]
struct MatrixInput;

fn classes(n: usize, seed: u64) -> Dataset<[f64; 6], usize> {
    let mut rng = Rng::new(seed);
    let mut inputs = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.below(4);
        inputs.push(std::array::from_fn(|i| {
            rng.uniform(-1.0, 1.0) + if i % 4 == c { 1.0 } else { 0.0 }
        }));
        targets.push(c);
    }
    Dataset::new(inputs, targets)
}

type RegInput = ([f64; 3], f64);

fn regression(n: usize, seed: u64) -> Dataset<RegInput, [f64; 2]> {
    let mut rng = Rng::new(seed);
    let inputs: Vec<RegInput> = (0..n)
        .map(|_| {
            let x = std::array::from_fn(|_| rng.uniform(-1.0, 1.0));
            (x, rng.uniform(0.5, 1.5))
        })
        .collect();
    let targets = inputs
        .iter()
        .map(|(x, s)| [x[0] - 0.5 * x[1] * s, (x[2] * s).sin()])
        .collect();
    Dataset::new(inputs, targets)
}

fn digits(n: usize, seed: u64) -> Dataset<[f32; 64], usize> {
    let mut rng = Rng::new(seed);
    let mut inputs = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.below(10);
        inputs.push(std::array::from_fn(|i| {
            rng.uniform(0.0, 0.5) as f32 + if i % 10 == c { 0.6 } else { 0.0 }
        }));
        targets.push(c);
    }
    Dataset::new(inputs, targets)
}

/// `|a - b| <= tol · max(|b|, 1)` for every element, with the worst case
/// in the message.
fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len());
    let (mut worst, mut at) = (0.0f64, 0);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let e = (x - y).abs() / y.abs().max(1.0);
        if e > worst || e.is_nan() {
            (worst, at) = (e, i);
        }
    }
    assert!(
        worst <= tol,
        "{what}: element {at}: {} vs {} (relative {worst:e})",
        a[at],
        b[at]
    );
}

/// Trains a fresh network of type `N` (seed 3) on both paths with the
/// same settings; returns (batched, per-sample) weights and reports.
fn both_paths<N, O>(
    make: impl Fn() -> Trainer<O>,
    train: &Dataset<N::Input, N::Target>,
    val: &Dataset<N::Input, N::Target>,
) -> [(Vec<N::Scalar>, TrainReport); 2]
where
    N: Network,
    O: Optimizer<N::Scalar> + Send,
{
    [true, false].map(|batched| {
        let mut net = N::new(3);
        let report = make()
            .batched(batched)
            .quiet()
            .fit_with_validation(&mut net, train, val)
            .unwrap();
        (net.params().as_slice().to_vec(), report)
    })
}

fn assert_same_training(
    [(wb, rb), (ws, rs)]: &[(Vec<f64>, TrainReport); 2],
    start: &[f64],
    what: &str,
) {
    // The weights moved, and both paths moved them to the same place.
    let moved: f64 = ws.iter().zip(start).map(|(a, b)| (a - b).abs()).sum();
    assert!(moved > 0.1, "{what}: the weights hardly moved ({moved})");
    assert_close(wb, ws, 1e-10, what);
    assert_eq!(rb.epochs.len(), rs.epochs.len());
    for (b, s) in rb.epochs.iter().zip(&rs.epochs) {
        assert_close(&[b.loss], &[s.loss], 1e-12, what);
        assert_close(&[b.val_loss.unwrap()], &[s.val_loss.unwrap()], 1e-12, what);
        assert_eq!(b.accuracy, s.accuracy, "{what}");
        assert_eq!(b.val_accuracy, s.val_accuracy, "{what}");
    }
}

#[test]
fn batched_training_gives_the_per_sample_weights() {
    assert_eq!(Classifier::BATCH_WIDTHS, &[32, 4]);
    // 300 samples in batches of 41: 7 batches of 41 (a block of 32, two of
    // 4, one single sample) and one of 13 (three blocks of 4, one single).
    let (train, val) = classes(375, 1).split(0.8, 2);
    assert_eq!((train.len(), val.len()), (300, 75));
    let start = Classifier::new(3).params().as_slice().to_vec();
    for batch in [41, 32, 7, 0] {
        let sgd = both_paths::<Classifier, _>(
            || {
                Trainer::new(Sgd::new(0.1).momentum(0.5))
                    .epochs(6)
                    .batch_size(batch)
                    .seed(5)
            },
            &train,
            &val,
        );
        assert_same_training(&sgd, &start, &format!("SGD, batch {batch}"));
        let adam = both_paths::<Classifier, _>(
            || {
                Trainer::new(Adam::new(0.01))
                    .epochs(4)
                    .batch_size(batch)
                    .seed(6)
                    .threads(2)
            },
            &train,
            &val,
        );
        assert_same_training(&adam, &start, &format!("Adam, batch {batch}"));
    }
    // The classifier learned.
    let mut net = Classifier::new(3);
    let report = Trainer::new(Adam::new(0.01))
        .epochs(20)
        .batch_size(41)
        .quiet()
        .fit_with_validation(&mut net, &train, &val)
        .unwrap();
    assert!(
        report.last().unwrap().val_accuracy.unwrap() > 0.75,
        "{report:?}"
    );

    // Two inputs (a tuple), a vector target, mse.
    let (train, val) = regression(250, 3).split(0.8, 4);
    let start = Regression::new(3).params().as_slice().to_vec();
    for batch in [41, 64, 5] {
        let runs = both_paths::<Regression, _>(
            || {
                Trainer::new(Sgd::new(0.2))
                    .epochs(8)
                    .batch_size(batch)
                    .seed(7)
                    .clip(Clip::Norm(5.0))
            },
            &train,
            &val,
        );
        assert_same_training(&runs, &start, &format!("regression, batch {batch}"));
    }
}

/// How many calls of each pass a network received.
#[derive(Default)]
struct Calls {
    train_blocks: [AtomicUsize; 2],
    eval_blocks: [AtomicUsize; 2],
    forward: AtomicUsize,
    backward: AtomicUsize,
    predict: AtomicUsize,
}

impl Calls {
    fn take(&self) -> [usize; 7] {
        let t = |a: &AtomicUsize| a.swap(0, Ordering::SeqCst);
        [
            t(&self.train_blocks[0]),
            t(&self.train_blocks[1]),
            t(&self.eval_blocks[0]),
            t(&self.eval_blocks[1]),
            t(&self.forward),
            t(&self.backward),
            t(&self.predict),
        ]
    }
}

/// The classifier, counting the passes it runs.
struct Counted {
    inner: Classifier,
    calls: Arc<Calls>,
}

fn slot(width: usize) -> usize {
    match width {
        32 => 0,
        4 => 1,
        w => panic!("a block of {w}"),
    }
}

impl Network for Counted {
    type Scalar = f64;
    type Input = [f64; 6];
    type Target = usize;
    type Output = [f64; 4];
    type Params = <Classifier as Network>::Params;
    type Tape = <Classifier as Network>::Tape;
    type BatchWork = <Classifier as Network>::BatchWork;
    const PARAMS: usize = Classifier::PARAMS;
    const TAPE_BYTES: usize = Classifier::TAPE_BYTES;
    const FORWARD_FLOPS: u64 = Classifier::FORWARD_FLOPS;
    const BACKWARD_FLOPS: u64 = Classifier::BACKWARD_FLOPS;
    const PARAM_INFO: &'static [ParamInfo] = Classifier::PARAM_INFO;
    const BATCH_WIDTHS: &'static [usize] = <Classifier as Network>::BATCH_WIDTHS;

    fn new(seed: u64) -> Self {
        Counted {
            inner: Classifier::new(seed),
            calls: Arc::default(),
        }
    }
    fn params(&self) -> &Self::Params {
        Network::params(&self.inner)
    }
    fn params_mut(&mut self) -> &mut Self::Params {
        Network::params_mut(&mut self.inner)
    }
    fn predict(&self, x: &[f64; 6]) -> [f64; 4] {
        self.calls.predict.fetch_add(1, Ordering::SeqCst);
        Network::predict(&self.inner, x)
    }
    fn forward(&self, x: &[f64; 6], y: &usize, tape: &mut Self::Tape) -> f64 {
        self.calls.forward.fetch_add(1, Ordering::SeqCst);
        Network::forward(&self.inner, x, y, tape)
    }
    fn backward(&self, tape: &Self::Tape, grads: &mut Self::Params) {
        self.calls.backward.fetch_add(1, Ordering::SeqCst);
        Network::backward(&self.inner, tape, grads)
    }
    fn is_correct(out: &[f64; 4], y: &usize) -> bool {
        <Classifier as Network>::is_correct(out, y)
    }
    fn check_target(y: &usize) -> Result<(), TargetError> {
        <Classifier as Network>::check_target(y)
    }
    fn tape_output(tape: &Self::Tape) -> Option<[f64; 4]> {
        <Classifier as Network>::tape_output(tape)
    }
    fn train_block(
        &self,
        inputs: &[[f64; 6]],
        targets: &[usize],
        idx: &[usize],
        work: &mut Self::BatchWork,
        grads: &mut Self::Params,
        losses: &mut [f64],
        correct: &mut [bool],
    ) {
        self.calls.train_blocks[slot(idx.len())].fetch_add(1, Ordering::SeqCst);
        self.inner
            .train_block(inputs, targets, idx, work, grads, losses, correct)
    }
    fn eval_block(
        &self,
        inputs: &[[f64; 6]],
        targets: &[usize],
        idx: &[usize],
        work: &mut Self::BatchWork,
        losses: &mut [f64],
        correct: &mut [bool],
    ) {
        self.calls.eval_blocks[slot(idx.len())].fetch_add(1, Ordering::SeqCst);
        self.inner
            .eval_block(inputs, targets, idx, work, losses, correct)
    }
}

#[test]
fn batches_are_cut_into_the_widest_blocks_then_single_samples() {
    // 2 × 41 + 13 training samples, 47 validation samples.
    let data = classes(95 + 47, 8);
    let train = data.subset(&(0..95).collect::<Vec<_>>());
    let val = data.subset(&(95..142).collect::<Vec<_>>());
    let mut net = Counted::new(1);
    let calls = Arc::clone(&net.calls);
    let mut trainer = Trainer::new(Sgd::new(0.05))
        .epochs(3)
        .batch_size(41)
        .threads(2)
        .quiet();
    trainer.fit_with_validation(&mut net, &train, &val).unwrap();
    // Per epoch: 41 = 32 + 4 + 4 + 1 twice, 13 = 4 + 4 + 4 + 1; the
    // validation set 47 = 32 + 4 + 4 + 4 + 3 × 1. Accuracy comes from the
    // blocks and the tape: no `predict`.
    let per_epoch = [2, 2 * 2 + 3, 1, 3, 2 + 1 + 3, 2 + 1, 0];
    assert_eq!(calls.take(), per_epoch.map(|n| 3 * n));
    // `evaluate` cuts the set likewise.
    let e = evaluate(&net, &val).unwrap();
    assert_eq!(calls.take(), [0, 0, 1, 3, 3, 0, 0]);
    // and gives what the per-sample passes give, up to rounding
    let mut tape = Classifier::new_tape();
    let (mut loss, mut correct) = (0.0, 0);
    for (x, y) in val.iter() {
        loss += Network::forward(&net.inner, x, y, &mut tape);
        correct += usize::from(Classifier::is_correct(&net.inner.predict(x), y));
    }
    assert_close(&[e.loss], &[loss / 47.0], 1e-12, "evaluate");
    assert_eq!(e.accuracy, correct as f64 / 47.0);

    // The per-sample path runs no block.
    let mut net = Counted::new(1);
    let calls = Arc::clone(&net.calls);
    let mut trainer = Trainer::new(Sgd::new(0.05))
        .epochs(2)
        .batch_size(41)
        .batched(false)
        .quiet();
    trainer.fit_with_validation(&mut net, &train, &val).unwrap();
    assert_eq!(calls.take(), [0, 0, 0, 0, 2 * (95 + 47), 2 * 95, 0]);
}

#[test]
fn batched_training_is_bitwise_the_same_on_1_2_and_3_threads() {
    let (train, val) = digits(700, 1).split(0.8, 2);
    for (batch, chunks) in [(41, 8), (100, 8), (64, 3), (0, 8), (33, 2)] {
        let run = |threads: usize| {
            let mut net = Digits::new(3);
            let report = Trainer::new(Adam::new(0.01))
                .epochs(3)
                .batch_size(batch)
                .chunks(chunks)
                .seed(4)
                .threads(threads)
                .quiet()
                .fit_with_validation(&mut net, &train, &val)
                .unwrap();
            let bits: Vec<u32> = net
                .params()
                .as_slice()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            let curves: Vec<_> = report
                .epochs
                .iter()
                .map(|e| {
                    (
                        e.loss.to_bits(),
                        e.val_loss.unwrap().to_bits(),
                        e.accuracy.to_bits(),
                    )
                })
                .collect();
            (bits, curves)
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(
                run(threads) == one,
                "batch {batch}, chunks {chunks}: {threads} threads differ from 1"
            );
        }
    }
}

#[test]
fn a_non_finite_loss_in_a_block_names_the_same_sample_on_both_paths() {
    let mut data = regression(120, 9);
    // Samples 17 and 70 have a NaN and an infinite target.
    data.targets[17][1] = f64::NAN;
    data.targets[70][0] = f64::INFINITY;
    let mut errors = Vec::new();
    for (batched, threads) in [(true, 1), (true, 2), (false, 1), (false, 3)] {
        let mut net = Regression::new(1);
        let before = net.params().as_slice().to_vec();
        let err = Trainer::new(Sgd::new(0.1))
            .batch_size(41)
            .seed(2)
            .batched(batched)
            .threads(threads)
            .quiet()
            .fit(&mut net, &data)
            .unwrap_err();
        let TrainError::NonFiniteLoss {
            epoch: 1,
            step,
            sample,
            ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert!(sample == 17 || sample == 70, "{err}");
        // The failing batch was not applied: replaying the batches before
        // it on the per-sample path gives the same weights up to rounding.
        let mut order: Vec<usize> = (0..data.len()).collect();
        Rng::new(2).shuffle(&mut order);
        let mut replay = Regression::new(1);
        assert_eq!(replay.params().as_slice(), &before[..]);
        for b in order.chunks(41).take(step - 1) {
            Trainer::new(Sgd::new(0.1))
                .batched(false)
                .quiet()
                .fit(&mut replay, &data.subset(b))
                .unwrap();
        }
        assert_close(
            net.params().as_slice(),
            replay.params().as_slice(),
            1e-12,
            "replay",
        );
        errors.push((step, sample));
    }
    // The first bad sample in batch order, whichever path and thread count.
    assert!(errors.windows(2).all(|w| w[0] == w[1]), "{errors:?}");
}

#[test]
fn recurrent_networks_train_batched_too() {
    assert_eq!(Elman::BATCH_WIDTHS, &[32, 4]);
    let mut rng = Rng::new(4);
    let seqs: Vec<[[f64; 2]; 5]> = (0..150)
        .map(|_| std::array::from_fn(|_| std::array::from_fn(|_| rng.uniform(-1.0, 1.0))))
        .collect();
    let sums: Vec<[f64; 1]> = seqs
        .iter()
        .map(|s| [s.iter().map(|x| x[0] * 0.5 - x[1] * 0.25).sum()])
        .collect();
    let (train, val) = Dataset::new(seqs, sums).split(0.8, 1);
    let start = Elman::new(3).params().as_slice().to_vec();
    let runs = both_paths::<Elman, _>(
        || {
            Trainer::new(Adam::new(0.01))
                .epochs(10)
                .batch_size(41)
                .seed(3)
        },
        &train,
        &val,
    );
    assert_same_training(&runs, &start, "Elman, batch 41");
    let report = &runs[0].1;
    assert!(
        report.last().unwrap().loss < 0.5 * report.epochs[0].loss,
        "{report:?}"
    );
}

#[test]
fn networks_without_batched_passes_train_sample_by_sample() {
    assert!(MatrixInput::BATCH_WIDTHS.is_empty());
    let mut rng = Rng::new(5);
    let inputs: Vec<[[f64; 4]; 3]> = (0..50)
        .map(|_| std::array::from_fn(|_| std::array::from_fn(|_| rng.uniform(-1.0, 1.0))))
        .collect();
    let targets: Vec<[f64; 2]> = inputs
        .iter()
        .map(|x| [x[0][0] - x[1][1], 0.5 * x[2][3]])
        .collect();
    let (train, val) = Dataset::new(inputs, targets).split(0.8, 2);
    let run = |batched: bool, threads: usize| {
        let mut net = MatrixInput::new(1);
        let report = Trainer::new(Adam::new(0.05))
            .epochs(40)
            .batch_size(9)
            .batched(batched)
            .threads(threads)
            .quiet()
            .fit_with_validation(&mut net, &train, &val)
            .unwrap();
        (net.params().as_slice().to_vec(), report)
    };
    let (weights, report) = run(true, 1);
    let (first, last) = (&report.epochs[0], report.last().unwrap());
    assert!(
        last.val_loss.unwrap() < 0.8 * first.val_loss.unwrap(),
        "{report:?}"
    );
    // `batched` changes nothing for it, nor do the threads.
    assert_eq!(run(false, 1).0, weights);
    assert_eq!(run(true, 2).0, weights);
}
