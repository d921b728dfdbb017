//! The training loop: epochs of seeded mini-batches, one optimiser step per
//! batch after the whole batch's backward passes, and evaluation.

use crate::data::Dataset;
use crate::float::Float;
use crate::gradcheck::locate_param;
use crate::network::{Flat, Network};
use crate::optim::Optimizer;
use crate::rng::Rng;
use std::fmt;
use std::time::{Duration, Instant};

/// Trains a [`Network`] with an [`Optimizer`].
///
/// ```
/// use nn_runtime::prelude::*;
///
/// #[network {
///     input x[2]; target y[1];
///     h = sigmoid(dense(x, 4)); out = sigmoid(dense(h, 1));
///     loss = mse(out, y);
/// }]
/// struct Xor;
///
/// let data = Dataset::new(
///     vec![[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]],
///     vec![[0.0], [1.0], [1.0], [0.0]],
/// );
/// let mut net = Xor::new(1);
/// let report = Trainer::new(Sgd::new(2.0))
///     .epochs(3000)
///     .batch_size(0) // full batch (the default)
///     .fit(&mut net, &data)?;
/// assert_eq!(report.last().unwrap().accuracy, 1.0);
/// # Ok::<(), TrainError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Trainer<O> {
    optimizer: O,
    epochs: usize,
    batch_size: usize,
    seed: u64,
    verbose: bool,
}

/// One epoch's numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean loss per training sample over the epoch (each sample's loss is
    /// taken before the update of its batch).
    pub loss: f64,
    /// Fraction of training samples `Network::is_correct` accepted, in `[0, 1]`,
    /// with the parameters the sample's batch was computed with.
    pub accuracy: f64,
    /// Mean loss per validation sample after the epoch, if validating.
    pub val_loss: Option<f64>,
    /// Validation accuracy after the epoch, if validating.
    pub val_accuracy: Option<f64>,
    /// Wall time of the epoch, validation included.
    pub duration: Duration,
}

impl fmt::Display for EpochReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "epoch {}: loss {:.6}, accuracy {:.2}%",
            self.epoch,
            self.loss,
            100.0 * self.accuracy
        )?;
        if let Some(l) = self.val_loss {
            write!(f, ", val_loss {l:.6}")?;
        }
        if let Some(a) = self.val_accuracy {
            write!(f, ", val_accuracy {:.2}%", 100.0 * a)?;
        }
        write!(f, " ({:.1?})", self.duration)
    }
}

/// Every epoch's report, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainReport {
    /// One entry per epoch run.
    pub epochs: Vec<EpochReport>,
}

impl TrainReport {
    /// The last epoch's report (`None` if no epoch ran).
    pub fn last(&self) -> Option<&EpochReport> {
        self.epochs.last()
    }
}

/// Why training stopped early.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum TrainError {
    /// A data set has no samples.
    EmptyData {
        /// `"training"` or `"validation"`.
        set: &'static str,
    },
    /// A data set's `inputs` and `targets` differ in length.
    LengthMismatch {
        /// `"training"` or `"validation"`.
        set: &'static str,
        /// Number of inputs.
        inputs: usize,
        /// Number of targets.
        targets: usize,
    },
    /// A sample's loss was NaN or infinite; the parameters are left as they
    /// were before this batch.
    NonFiniteLoss {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based optimiser step since the start of `fit` (the step not taken).
        step: usize,
        /// Index in the training set of the first sample with a non-finite loss.
        sample: usize,
        /// That sample's loss.
        loss: f64,
    },
    /// The batch's gradient had a NaN or infinite element while every loss
    /// was finite; the parameters are left as they were before this batch.
    NonFiniteGradient {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based optimiser step since the start of `fit` (the step not taken).
        step: usize,
        /// Name of the parameter tensor (from `Network::PARAM_INFO`).
        param: &'static str,
        /// Row-major index of the element within its tensor.
        index: usize,
    },
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::EmptyData { set } => write!(f, "the {set} set is empty"),
            TrainError::LengthMismatch {
                set,
                inputs,
                targets,
            } => write!(f, "the {set} set has {inputs} inputs but {targets} targets"),
            TrainError::NonFiniteLoss {
                epoch,
                step,
                sample,
                loss,
            } => write!(
                f,
                "non-finite loss {loss} at epoch {epoch}, step {step} (training sample {sample}); \
                 parameters are as before this batch"
            ),
            TrainError::NonFiniteGradient {
                epoch,
                step,
                param,
                index,
            } => write!(
                f,
                "non-finite gradient of `{param}` (element {index}) at epoch {epoch}, step {step}; \
                 parameters are as before this batch"
            ),
        }
    }
}

impl std::error::Error for TrainError {}

/// Mean loss and accuracy of a network on a data set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean loss per sample (NaN for an empty set).
    pub loss: f64,
    /// Fraction of samples `Network::is_correct` accepts (NaN for an empty set).
    pub accuracy: f64,
}

/// Mean loss (by `forward`, with one tape) and accuracy (by `is_correct` on
/// the output) of `net` on `data`.
pub fn evaluate<N: Network>(net: &N, data: &Dataset<N::Input, N::Target>) -> Evaluation {
    let mut tape = N::new_tape();
    evaluate_with(net, data, &mut tape)
}

/// `evaluate` with a caller's tape: allocates nothing.
fn evaluate_with<N: Network>(
    net: &N,
    data: &Dataset<N::Input, N::Target>,
    tape: &mut N::Tape,
) -> Evaluation {
    let mut loss = 0.0;
    let mut correct = 0usize;
    for (x, y) in data.iter() {
        loss += net.forward(x, y, tape).to_f64();
        correct += usize::from(correct_after_forward(net, x, y, tape));
    }
    let n = data.len() as f64;
    Evaluation {
        loss: loss / n,
        accuracy: correct as f64 / n,
    }
}

/// Whether the sample just passed through `forward` is classified correctly:
/// from the tape's output if it holds one, else by `predict`.
fn correct_after_forward<N: Network>(net: &N, x: &N::Input, y: &N::Target, tape: &N::Tape) -> bool {
    match N::tape_output(tape) {
        Some(out) => N::is_correct(&out, y),
        None => N::is_correct(&net.predict(x), y),
    }
}

fn check_data<I, T>(data: &Dataset<I, T>, set: &'static str) -> Result<(), TrainError> {
    if data.inputs.len() != data.targets.len() {
        return Err(TrainError::LengthMismatch {
            set,
            inputs: data.inputs.len(),
            targets: data.targets.len(),
        });
    }
    if data.is_empty() {
        return Err(TrainError::EmptyData { set });
    }
    Ok(())
}

impl<O> Trainer<O> {
    /// A trainer with `optimizer`: 1 epoch, full batch, seed 0, quiet.
    pub fn new(optimizer: O) -> Self {
        Trainer {
            optimizer,
            epochs: 1,
            batch_size: 0,
            seed: 0,
            verbose: false,
        }
    }

    /// Number of passes over the training set.
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }

    /// Samples per optimiser step; `0` (the default) or anything not smaller
    /// than the training set means full batch. The last batch of an epoch
    /// may be smaller.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Seed of the per-epoch shuffles (mini-batch training only; a full
    /// batch is taken in order).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Whether to print one line per epoch to standard output.
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    /// The optimiser.
    pub fn optimizer(&self) -> &O {
        &self.optimizer
    }

    /// The optimiser, mutably (e.g. to change its learning rate between fits).
    pub fn optimizer_mut(&mut self) -> &mut O {
        &mut self.optimizer
    }

    /// Trains `net` on `train`.
    ///
    /// Each epoch shuffles the sample order (seeded), then for each batch
    /// zeroes the gradient buffer, runs `forward` and `backward` for every
    /// sample (gradients accumulate), divides the sum by the batch size and
    /// calls the optimiser once. The tape, the gradient buffer and the index
    /// order are allocated once per call; the per-batch loop allocates
    /// nothing. The optimiser's `init` is called at the start.
    ///
    /// # Errors
    /// An empty or inconsistent data set, or a non-finite loss or gradient
    /// (training stops before that batch's update).
    pub fn fit<N>(
        &mut self,
        net: &mut N,
        train: &Dataset<N::Input, N::Target>,
    ) -> Result<TrainReport, TrainError>
    where
        N: Network,
        O: Optimizer<N::Scalar>,
    {
        self.run(net, train, None)
    }

    /// [`fit`](Trainer::fit), and after each epoch the loss and accuracy on
    /// `validation` (which is never trained on).
    ///
    /// # Errors
    /// As `fit`, and an empty or inconsistent validation set.
    pub fn fit_with_validation<N>(
        &mut self,
        net: &mut N,
        train: &Dataset<N::Input, N::Target>,
        validation: &Dataset<N::Input, N::Target>,
    ) -> Result<TrainReport, TrainError>
    where
        N: Network,
        O: Optimizer<N::Scalar>,
    {
        check_data(validation, "validation")?;
        self.run(net, train, Some(validation))
    }

    fn run<N>(
        &mut self,
        net: &mut N,
        train: &Dataset<N::Input, N::Target>,
        validation: Option<&Dataset<N::Input, N::Target>>,
    ) -> Result<TrainReport, TrainError>
    where
        N: Network,
        O: Optimizer<N::Scalar>,
    {
        check_data(train, "training")?;
        let n = train.len();
        let batch = match self.batch_size {
            0 => n,
            b => b.min(n),
        };
        let mut tape = N::new_tape();
        let mut grads = N::new_grads();
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = Rng::new(self.seed);
        let mut report = TrainReport {
            epochs: Vec::with_capacity(self.epochs),
        };
        self.optimizer.init(<N::Params as Flat<N::Scalar>>::LEN);
        let mut step = 0;

        for epoch in 1..=self.epochs {
            let start = Instant::now();
            if batch < n {
                rng.shuffle(&mut order);
            }
            let mut loss_sum = 0.0;
            let mut correct = 0usize;
            for indices in order.chunks(batch) {
                step += 1;
                grads.fill_zero();
                let mut batch_loss = 0.0;
                let mut bad_sample = None;
                {
                    let net: &N = net;
                    for &i in indices {
                        let (x, y) = (&train.inputs[i], &train.targets[i]);
                        let loss = net.forward(x, y, &mut tape);
                        if !loss.is_finite() && bad_sample.is_none() {
                            bad_sample = Some((i, loss.to_f64()));
                        }
                        batch_loss += loss.to_f64();
                        correct += usize::from(correct_after_forward(net, x, y, &tape));
                        net.backward(&tape, &mut grads);
                    }
                }
                if let Some((sample, loss)) = bad_sample {
                    return Err(TrainError::NonFiniteLoss {
                        epoch,
                        step,
                        sample,
                        loss,
                    });
                }
                let scale = N::Scalar::from_f64(1.0 / indices.len() as f64);
                let g = grads.as_mut_slice();
                for v in g.iter_mut() {
                    *v *= scale;
                }
                if let Some(k) = g.iter().position(|v| !v.is_finite()) {
                    let (param, index) = locate_param(N::PARAM_INFO, k);
                    return Err(TrainError::NonFiniteGradient {
                        epoch,
                        step,
                        param,
                        index,
                    });
                }
                self.optimizer
                    .step(net.params_mut().as_mut_slice(), grads.as_slice());
                loss_sum += batch_loss;
            }
            let val = validation.map(|v| evaluate_with(&*net, v, &mut tape));
            let epoch_report = EpochReport {
                epoch,
                loss: loss_sum / n as f64,
                accuracy: correct as f64 / n as f64,
                val_loss: val.map(|e| e.loss),
                val_accuracy: val.map(|e| e.accuracy),
                duration: start.elapsed(),
            };
            if self.verbose {
                println!("{epoch_report}");
            }
            report.epochs.push(epoch_report);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::Sgd;
    use crate::testnet::{linear_data, Bug, LinParams, Linear};

    /// Records every step: how many, and the gradients it was given.
    #[derive(Default)]
    struct Recorder {
        inits: Vec<usize>,
        steps: usize,
        grads: Vec<Vec<f64>>,
    }

    impl Optimizer<f64> for Recorder {
        fn init(&mut self, n_params: usize) {
            self.inits.push(n_params);
        }
        fn step(&mut self, _params: &mut [f64], grads: &[f64]) {
            self.steps += 1;
            self.grads.push(grads.to_vec());
        }
    }

    #[test]
    fn full_batch_training_converges_on_a_linear_problem() {
        let data = linear_data(64, 1);
        let mut net = Linear::with([0.0, 0.0], 0.0);
        let report = Trainer::new(Sgd::new(0.2))
            .epochs(300)
            .fit(&mut net, &data)
            .unwrap();
        assert_eq!(report.epochs.len(), 300);
        let last = report.last().unwrap();
        assert!(last.loss < 1e-8, "{last}");
        assert_eq!(last.accuracy, 1.0);
        assert!(report.epochs[0].loss > 1.0);
        let p = &net.params;
        assert!((p.w[0] - 3.0).abs() < 1e-4 && (p.w[1] + 2.0).abs() < 1e-4);
        assert!((p.b[0] - 0.5).abs() < 1e-4);
        let e = evaluate(&net, &data);
        assert!(e.loss < 1e-8 && e.accuracy == 1.0);
    }

    #[test]
    fn one_full_batch_step_is_gradient_descent_on_the_mean_loss() {
        // Two samples, w = 0, b = 0: out = 0, loss_i = y_i², d/dθ loss_i = -2 y_i (x_i, 1).
        // x = (1, 0), y = 1 and x = (0, 2), y = 3:
        // mean gradient = ((-2·1·1 + 0) / 2, (0 - 2·3·2) / 2, (-2 - 6) / 2) = (-1, -6, -4).
        let data = Dataset::new(vec![[1.0, 0.0], [0.0, 2.0]], vec![[1.0], [3.0]]);
        let mut net = Linear::with([0.0, 0.0], 0.0);
        let mut rec = Recorder::default();
        let report = Trainer::new(&mut rec).fit(&mut net, &data).unwrap();
        assert_eq!(rec.grads, [vec![-1.0, -6.0, -4.0]]);
        assert_eq!(rec.inits, [3]);
        // mean loss = (1 + 9) / 2
        assert_eq!(report.epochs[0].loss, 5.0);
        let mut net = Linear::with([0.0, 0.0], 0.0);
        Trainer::new(Sgd::new(0.1)).fit(&mut net, &data).unwrap();
        // θ' = θ - 0.1 g = (0.1, 0.6, 0.4)
        let LinParams { w, b } = *net.params;
        let got = [w[0], w[1], b[0]];
        for (a, e) in got.iter().zip([0.1, 0.6, 0.4]) {
            assert!((a - e).abs() < 1e-15, "{got:?}");
        }
    }

    #[test]
    fn mini_batches_step_once_per_batch_with_the_batch_mean() {
        let data = linear_data(10, 2);
        let mut net = Linear::new(3);
        let mut rec = Recorder::default();
        let mut trainer = Trainer::new(&mut rec).epochs(2).batch_size(3).seed(9);
        trainer.fit(&mut net, &data).unwrap();
        // ceil(10 / 3) = 4 batches per epoch, the last one of 1 sample.
        assert_eq!(rec.steps, 8);
        // The Recorder never changes the weights, so each step's gradient is
        // the mean over some 3 (or 1) samples; the 4 batches of an epoch add
        // up to the full-batch gradient times the batch sizes.
        let mut full = Recorder::default();
        Trainer::new(&mut full).fit(&mut net, &data).unwrap();
        for epoch in rec.grads.chunks(4) {
            for k in 0..3 {
                let sum: f64 = epoch[..3].iter().map(|g| 3.0 * g[k]).sum::<f64>() + epoch[3][k];
                assert!((sum / 10.0 - full.grads[0][k]).abs() < 1e-12);
            }
        }
        // The two epochs were shuffled differently.
        assert_ne!(rec.grads[..4], rec.grads[4..]);
        // batch_size larger than the data is full batch.
        let mut big = Recorder::default();
        Trainer::new(&mut big)
            .batch_size(100)
            .fit(&mut net, &data)
            .unwrap();
        assert_eq!(big.steps, 1);
    }

    #[test]
    fn same_seed_same_training() {
        let data = linear_data(20, 4);
        let run = |seed| {
            let mut net = Linear::new(5);
            let r = Trainer::new(Sgd::new(0.05))
                .epochs(3)
                .batch_size(4)
                .seed(seed)
                .fit(&mut net, &data)
                .unwrap();
            (*net.params, r.last().unwrap().loss)
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn validation_is_reported_per_epoch() {
        let (train, val) = linear_data(50, 6).split(0.8, 6);
        let mut net = Linear::new(1);
        let report = Trainer::new(Sgd::new(0.1))
            .epochs(200)
            .batch_size(8)
            .fit_with_validation(&mut net, &train, &val)
            .unwrap();
        let last = report.last().unwrap();
        assert!(last.val_loss.unwrap() < 1e-6, "{last}");
        assert_eq!(last.val_accuracy, Some(1.0));
        assert_eq!(last.epoch, 200);
        let line = last.to_string();
        assert!(line.starts_with("epoch 200: loss "), "{line}");
        assert!(line.contains(", val_accuracy 100.00%"), "{line}");
        assert_eq!(
            Trainer::new(Sgd::new(0.1))
                .fit_with_validation(&mut net, &train, &Dataset::new(vec![], vec![]))
                .unwrap_err(),
            TrainError::EmptyData { set: "validation" }
        );
    }

    #[test]
    fn non_finite_loss_stops_before_the_update() {
        let mut data = linear_data(6, 7);
        data.targets[4] = [f64::NAN];
        let mut net = Linear::with([1.0, 1.0], 1.0);
        let before = *net.params;
        let err = Trainer::new(Sgd::new(0.1))
            .epochs(5)
            .fit(&mut net, &data)
            .unwrap_err();
        assert!(
            matches!(
                err,
                TrainError::NonFiniteLoss {
                    epoch: 1,
                    step: 1,
                    sample: 4,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(*net.params, before);
        assert!(err
            .to_string()
            .starts_with("non-finite loss NaN at epoch 1, step 1"));

        // Mini-batches: the batches before the bad one were applied, the bad
        // one was not. Replaying the steps that happened reproduces the weights.
        let mut net = Linear::with([1.0, 1.0], 1.0);
        let err = Trainer::new(Sgd::new(0.1))
            .batch_size(2)
            .seed(1)
            .fit(&mut net, &data)
            .unwrap_err();
        let TrainError::NonFiniteLoss { step, .. } = err else {
            panic!("{err:?}")
        };
        assert!(
            step > 1,
            "the bad batch should not be the first (step {step})"
        );
        let mut order: Vec<usize> = (0..6).collect();
        Rng::new(1).shuffle(&mut order);
        let mut replay = Linear::with([1.0, 1.0], 1.0);
        for b in order.chunks(2).take(step - 1) {
            let part = data.subset(b);
            Trainer::new(Sgd::new(0.1)).fit(&mut replay, &part).unwrap();
        }
        assert_eq!(*net.params, *replay.params);
    }

    #[test]
    fn non_finite_gradient_names_the_parameter() {
        let data = linear_data(4, 8);
        let mut net = Linear::with([1.0, 1.0], 1.0);
        net.bug = Bug::NanGrad;
        let err = Trainer::new(Sgd::new(0.1))
            .fit(&mut net, &data)
            .unwrap_err();
        assert_eq!(
            err,
            TrainError::NonFiniteGradient {
                epoch: 1,
                step: 1,
                param: "b",
                index: 0
            }
        );
        assert_eq!(net.params.b, [1.0]);
        assert!(err.to_string().contains("`b` (element 0)"));
    }

    #[test]
    fn bad_data_is_an_error_and_zero_epochs_do_nothing() {
        let mut net = Linear::new(1);
        let empty: Dataset<[f64; 2], [f64; 1]> = Dataset::new(vec![], vec![]);
        let mut t = Trainer::new(Sgd::new(0.1));
        assert_eq!(
            t.fit(&mut net, &empty).unwrap_err().to_string(),
            "the training set is empty"
        );
        let uneven = Dataset {
            inputs: vec![[0.0, 0.0]],
            targets: vec![],
        };
        assert_eq!(
            t.fit(&mut net, &uneven).unwrap_err().to_string(),
            "the training set has 1 inputs but 0 targets"
        );
        let before = *net.params;
        let r = t.epochs(0).fit(&mut net, &linear_data(3, 1)).unwrap();
        assert!(r.last().is_none());
        assert_eq!(*net.params, before);
    }
}
