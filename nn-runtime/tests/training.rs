//! The training loop on generated networks: 1-vs-N-thread determinism,
//! early stopping with restoring and checkpointing the best epoch,
//! schedules and clipping as the optimiser sees them, and the epoch iterator.

use nn_runtime::prelude::*;
use nn_runtime::Rng;

/// The digits network's shape: 64-32 ReLU-10 with softmax cross-entropy.
#[network {
    input  x[64];
    target label: class[10];
    h      = relu(dense(x, 32, he));
    logits = dense(h, 10);
    loss   = softmax_cross_entropy(logits, label);
}]
struct Digits;

#[network { input x[2]; target y[1]; out = dense(x, 1); loss = mse(out, y); }]
struct Line;

/// `n` random "images" whose class is decided by which block of pixels is brightest.
fn blobs(n: usize, seed: u64) -> Dataset<[f32; 64], usize> {
    let mut rng = Rng::new(seed);
    let mut inputs = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    for _ in 0..n {
        let class = rng.below(10);
        let mut x = [0.0f32; 64];
        for (i, v) in x.iter_mut().enumerate() {
            *v = rng.uniform(0.0, 0.5) as f32 + if i % 10 == class { 0.6 } else { 0.0 };
        }
        inputs.push(x);
        targets.push(class);
    }
    Dataset::new(inputs, targets)
}

fn line_data(n: usize, seed: u64) -> Dataset<[f32; 2], [f32; 1]> {
    let mut rng = Rng::new(seed);
    let inputs: Vec<[f32; 2]> = (0..n)
        .map(|_| [rng.uniform(-1.0, 1.0) as f32, rng.uniform(-1.0, 1.0) as f32])
        .collect();
    let targets = inputs.iter().map(|x| [3.0 * x[0] - x[1] + 0.5]).collect();
    Dataset::new(inputs, targets)
}

#[test]
fn one_and_many_threads_give_bitwise_the_same_weights() {
    let (train, val) = blobs(600, 1).split(0.8, 2);
    // Batches of one block of 32; of 32 + 4 + 4 + 1 (and a last one of
    // 29 = 7 × 4 + 1); the same on the per-sample path.
    for (batch, batched) in [(32, true), (41, true), (41, false)] {
        one_and_many_threads(&train, &val, batch, batched);
    }
}

fn one_and_many_threads(
    train: &Dataset<[f32; 64], usize>,
    val: &Dataset<[f32; 64], usize>,
    batch: usize,
    batched: bool,
) {
    let run = |threads: usize| {
        let mut net = Digits::new(3);
        let report = Trainer::new(Adam::new(0.01))
            .epochs(4)
            .batch_size(batch)
            .batched(batched)
            .seed(4)
            .threads(threads)
            .quiet()
            .fit_with_validation(&mut net, train, val)
            .unwrap();
        let losses: Vec<(u64, u64)> = report
            .epochs
            .iter()
            .map(|e| (e.loss.to_bits(), e.val_loss.unwrap().to_bits()))
            .collect();
        let bits: Vec<u32> = net
            .params()
            .as_slice()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        (bits, losses, report.last().unwrap().val_accuracy)
    };
    let one = run(1);
    assert!(one.2.unwrap() > 0.9, "the network learns: {:?}", one.2);
    for threads in [2, 3, 0] {
        assert!(
            run(threads) == one,
            "batch {batch}, batched {batched}: {threads} threads differ from 1"
        );
    }
    // The chunking, not the thread count, is what the result depends on.
    let mut net = Digits::new(3);
    Trainer::new(Adam::new(0.01))
        .epochs(4)
        .batch_size(batch)
        .batched(batched)
        .seed(4)
        .chunks(3)
        .quiet()
        .fit(&mut net, train)
        .unwrap();
    let mut net2 = Digits::new(3);
    Trainer::new(Adam::new(0.01))
        .epochs(4)
        .batch_size(batch)
        .batched(batched)
        .seed(4)
        .chunks(3)
        .threads(2)
        .quiet()
        .fit(&mut net2, train)
        .unwrap();
    assert_eq!(net.params().as_slice(), net2.params().as_slice());
}

#[test]
fn early_stopping_restores_and_checkpoints_the_best_epoch() {
    let (train, val) = line_data(64, 5).split(0.75, 6);
    // Far too large a step: the loss soon diverges.
    let dir = std::env::temp_dir().join(format!("nn-es-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("best.safetensors");
    let mut net = Line::new(1);
    let report = Trainer::new(Sgd::new(1.6))
        .epochs(50)
        .batch_size(4)
        .early_stopping(EarlyStopping::new(Metric::Loss, 3))
        .checkpoint(&path)
        .quiet()
        .fit_with_validation(&mut net, &train, &val)
        .unwrap();
    let best = report.best_epoch.unwrap();
    let stopped = report.stopped_early.expect("stopped early");
    assert_eq!(stopped, best + 3, "{report:#?}");
    assert_eq!(report.epochs.len(), stopped);
    let best_loss = report.epochs[best - 1].val_loss.unwrap();
    assert!(report.epochs[stopped - 1].val_loss.unwrap() > best_loss);
    // The net holds the best epoch's weights again, and so does the file.
    assert_eq!(evaluate(&net, &val).unwrap().loss, best_loss);
    let mut from_file = Line::new(9);
    from_file.load_checkpoint(&path).unwrap();
    assert_eq!(from_file.params().as_slice(), net.params().as_slice());
    std::fs::remove_dir_all(&dir).unwrap();

    // Accuracy is maximised: with nothing to learn (lr 0) it never improves
    // after the first epoch.
    let mut net = Line::new(1);
    let report = Trainer::new(Sgd::new(0.0))
        .epochs(20)
        .early_stopping(EarlyStopping::new(Metric::Accuracy, 2))
        .quiet()
        .fit_with_validation(&mut net, &train, &val)
        .unwrap();
    assert_eq!(
        (report.best_epoch, report.stopped_early),
        (Some(1), Some(3))
    );
}

/// Records the learning rate and gradient of every step.
#[derive(Default)]
struct Spy {
    lr: f64,
    lrs: Vec<f64>,
    norms: Vec<f64>,
    max_abs: Vec<f64>,
}

impl Optimizer<f32> for Spy {
    fn step(&mut self, _params: &mut [f32], grads: &[f32]) {
        self.lrs.push(self.lr);
        let sq: f64 = grads.iter().map(|g| (*g as f64).powi(2)).sum();
        self.norms.push(sq.sqrt());
        self.max_abs
            .push(grads.iter().fold(0.0, |m, g| m.max(g.abs() as f64)));
    }
    fn learning_rate(&self) -> Option<f64> {
        Some(self.lr)
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
}

#[test]
fn schedules_and_clipping_reach_the_optimizer() {
    let data = line_data(12, 7);
    let mut net = Line::new(1);
    // 3 batches per epoch, 2 epochs: 6 steps; lr 1 halved every 2 steps.
    let mut t = Trainer::new(Spy {
        lr: 1.0,
        ..Spy::default()
    })
    .epochs(2)
    .batch_size(4)
    .schedule(Schedule::Step {
        every: 2,
        gamma: 0.5,
    })
    .clip(Clip::Norm(0.25))
    .quiet();
    let report = t.fit(&mut net, &data).unwrap();
    assert_eq!(t.optimizer().lrs, [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]);
    assert_eq!(report.epochs[1].learning_rate, Some(0.25));
    assert!(t.optimizer().norms.iter().all(|n| *n <= 0.25 + 1e-6));
    // Weights far from the answer: the raw gradients are larger than that.
    let mut spy = Spy::default();
    Trainer::new(&mut spy).quiet().fit(&mut net, &data).unwrap();
    assert!(spy.norms[0] > 0.25);
    let mut spy = Spy::default();
    Trainer::new(&mut spy)
        .clip(Clip::Value(0.1))
        .quiet()
        .fit(&mut net, &data)
        .unwrap();
    assert!(spy.max_abs[0] <= 0.1 + 1e-7);

    // Warm-up then cosine, over 6 steps.
    let mut t = Trainer::new(Spy {
        lr: 2.0,
        ..Spy::default()
    })
    .epochs(2)
    .batch_size(4)
    .schedule(Schedule::cosine(2, 6))
    .quiet();
    t.fit(&mut net, &data).unwrap();
    let want = [1.0, 2.0, 2.0, 1.7071067811865475, 1.0, 0.2928932188134524];
    for (a, b) in t.optimizer().lrs.iter().zip(want) {
        assert!((a - b).abs() < 1e-12, "{:?}", t.optimizer().lrs);
    }
}

#[test]
fn the_epoch_iterator_matches_fit_and_can_stop_anywhere() {
    let data = line_data(40, 8);
    let mut a = Line::new(2);
    let fitted = Trainer::new(Adam::new(0.05))
        .epochs(5)
        .batch_size(8)
        .threads(2)
        .quiet()
        .fit(&mut a, &data)
        .unwrap();
    let mut b = Line::new(2);
    let mut trainer = Trainer::new(Adam::new(0.05))
        .epochs(5)
        .batch_size(8)
        .threads(2)
        .quiet();
    let mut seen = Vec::new();
    for r in trainer.train(&mut b, &data, None).unwrap() {
        let r = r.unwrap();
        seen.push((r.epoch, r.loss));
    }
    let want: Vec<_> = fitted.epochs.iter().map(|e| (e.epoch, e.loss)).collect();
    assert_eq!(seen, want);
    assert_eq!(a.params().as_slice(), b.params().as_slice());

    // Stopping after two epochs leaves the weights of two epochs.
    let mut c = Line::new(2);
    let mut trainer = Trainer::new(Adam::new(0.05))
        .epochs(5)
        .batch_size(8)
        .quiet();
    let mut it = trainer.train(&mut c, &data, None).unwrap();
    it.next().unwrap().unwrap();
    it.next().unwrap().unwrap();
    drop(it);
    let mut d = Line::new(2);
    Trainer::new(Adam::new(0.05))
        .epochs(2)
        .batch_size(8)
        .quiet()
        .fit(&mut d, &data)
        .unwrap();
    assert_eq!(c.params().as_slice(), d.params().as_slice());
}
