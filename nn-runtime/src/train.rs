//! The training loop: epochs of seeded mini-batches, one optimiser step per
//! batch after the whole batch's backward passes, validation, early
//! stopping, checkpoints, a progress bar, and data-parallel training on
//! several cores.
//!
//! # Determinism across thread counts
//!
//! Each batch is cut into [`chunks`](Trainer::chunks) fixed parts (by
//! position, independent of the number of threads). Each part's gradient is
//! summed sample by sample into its own buffer, and the parts' buffers are
//! added in part order. Which thread computes a part changes nothing, so the
//! same seed gives bitwise the same weights with 1 thread and with N.

use crate::checkpoint;
use crate::data::Dataset;
use crate::float::Float;
use crate::gradcheck::locate_param;
use crate::network::{Flat, Network};
use crate::optim::{Clip, Optimizer, Schedule};
use crate::rng::Rng;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use std::fmt;
use std::io::IsTerminal;
use std::path::PathBuf;
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
///
/// Mini-batches with Adam, a cosine schedule, clipping, two threads,
/// validation and early stopping, epoch by epoch:
///
/// ```
/// # use nn_runtime::prelude::*;
/// # #[network { input x[2]; target y[1]; out = dense(x, 1); loss = mse(out, y); }]
/// # struct Lin;
/// let data = Dataset::new(
///     (0..64).map(|i| [i as f32 / 64.0, 1.0 - i as f32 / 32.0]).collect(),
///     (0..64).map(|i| [2.0 * i as f32 / 64.0]).collect(),
/// );
/// let (train, val) = data.split(0.75, 1);
/// let mut net = Lin::new(1);
/// let mut trainer = Trainer::new(Adam::new(0.05))
///     .epochs(200)
///     .batch_size(8)
///     .schedule(Schedule::cosine(10, 1000))
///     .clip(Clip::Norm(5.0))
///     .threads(2)
///     .early_stopping(EarlyStopping::new(Metric::Loss, 20));
/// for report in trainer.train(&mut net, &train, Some(&val))? {
///     let report = report?;
///     if report.epoch % 50 == 0 {
///         println!("{report}");
///     }
/// }
/// assert!(evaluate(&net, &val).loss < 1e-3);
/// # Ok::<(), TrainError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Trainer<O> {
    optimizer: O,
    epochs: usize,
    batch_size: usize,
    seed: u64,
    verbose: bool,
    progress: bool,
    threads: usize,
    chunks: usize,
    schedule: Schedule,
    clip: Option<Clip>,
    early_stopping: Option<EarlyStopping>,
    checkpoint: Option<PathBuf>,
}

/// What early stopping and checkpointing watch: the validation set's value
/// if there is one, else the training set's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Mean loss; lower is better.
    Loss,
    /// Accuracy; higher is better.
    Accuracy,
}

impl Metric {
    fn of(self, r: &EpochReport) -> f64 {
        match self {
            Metric::Loss => r.val_loss.unwrap_or(r.loss),
            Metric::Accuracy => r.val_accuracy.unwrap_or(r.accuracy),
        }
    }

    /// Whether `new` beats `best` by more than `min_delta`.
    fn improves(self, new: f64, best: f64, min_delta: f64) -> bool {
        match self {
            Metric::Loss => new < best - min_delta,
            Metric::Accuracy => new > best + min_delta,
        }
    }
}

/// Stop when the watched [`Metric`] has not improved for `patience` epochs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EarlyStopping {
    /// What to watch.
    pub metric: Metric,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Smallest change that counts as an improvement.
    pub min_delta: f64,
    /// Whether to put back the parameters of the best epoch when stopping
    /// (or when the epochs run out).
    pub restore_best: bool,
}

impl EarlyStopping {
    /// Watches `metric` with `patience`, any improvement counting, and puts
    /// back the best epoch's parameters at the end.
    pub fn new(metric: Metric, patience: usize) -> Self {
        EarlyStopping {
            metric,
            patience,
            min_delta: 0.0,
            restore_best: true,
        }
    }

    /// With `min_delta`.
    pub fn min_delta(mut self, min_delta: f64) -> Self {
        self.min_delta = min_delta;
        self
    }

    /// With or without restoring the best parameters.
    pub fn restore_best(mut self, restore: bool) -> Self {
        self.restore_best = restore;
        self
    }
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
    /// The learning rate of the epoch's last step, if the optimiser has one.
    pub learning_rate: Option<f64>,
    /// Whether the watched metric improved this epoch (always `true`
    /// without early stopping).
    pub improved: bool,
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
    /// The epoch whose watched metric was best (with early stopping).
    pub best_epoch: Option<usize>,
    /// The epoch after which early stopping ended training, if it did.
    pub stopped_early: Option<usize>,
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
    /// were before this batch (and no checkpoint is written).
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
    /// was finite; the parameters are left as they were before this batch
    /// (and no checkpoint is written).
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
    /// Saving the checkpoint failed (the previous checkpoint file is intact).
    Checkpoint {
        /// 1-based epoch.
        epoch: usize,
        /// The error, naming the file.
        message: String,
    },
    /// The thread pool could not be started.
    Threads {
        /// What rayon said.
        message: String,
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
            TrainError::Checkpoint { epoch, message } => {
                write!(
                    f,
                    "saving the checkpoint after epoch {epoch} failed: {message}"
                )
            }
            TrainError::Threads { message } => {
                write!(f, "could not start the training threads: {message}")
            }
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
    let (loss, correct) = eval_part(net, data, 0..data.len(), &mut tape);
    let n = data.len() as f64;
    Evaluation {
        loss: loss / n,
        accuracy: correct as f64 / n,
    }
}

/// Summed loss and correct count over `range` of `data`; allocates nothing.
fn eval_part<N: Network>(
    net: &N,
    data: &Dataset<N::Input, N::Target>,
    range: core::ops::Range<usize>,
    tape: &mut N::Tape,
) -> (f64, usize) {
    let mut loss = 0.0;
    let mut correct = 0usize;
    for i in range {
        let (x, y) = (&data.inputs[i], &data.targets[i]);
        loss += net.forward(x, y, tape).to_f64();
        correct += usize::from(correct_after_forward(net, x, y, tape));
    }
    (loss, correct)
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
    /// A trainer with `optimizer`: 1 epoch, full batch, seed 0, one thread,
    /// 8 gradient chunks per batch, no schedule, no clipping, a progress bar
    /// on interactive terminals, no per-epoch lines.
    pub fn new(optimizer: O) -> Self {
        Trainer {
            optimizer,
            epochs: 1,
            batch_size: 0,
            seed: 0,
            verbose: false,
            progress: true,
            threads: 1,
            chunks: 8,
            schedule: Schedule::Constant,
            clip: None,
            early_stopping: None,
            checkpoint: None,
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

    /// Whether to show a progress bar (steps, loss, accuracy) on standard
    /// error. It is only ever drawn when standard error is a terminal, so
    /// logs and CI output stay clean; `false` hides it there too.
    pub fn progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// No progress bar and no per-epoch lines.
    pub fn quiet(self) -> Self {
        self.progress(false).verbose(false)
    }

    /// Worker threads for data-parallel training: `1` (the default) trains
    /// on the calling thread; `0` uses every core. Results do not depend on
    /// this (see the [module docs](self)).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Parts each batch's gradient is computed in (default 8, at least 1):
    /// the unit of parallel work, and what the floating-point result depends
    /// on (with the seed). Each part has its own tape and gradient buffer.
    pub fn chunks(mut self, chunks: usize) -> Self {
        self.chunks = chunks.max(1);
        self
    }

    /// A learning-rate schedule over optimiser steps, multiplying the
    /// optimiser's learning rate at the start of `fit`.
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Clips each batch's mean gradient before the step.
    pub fn clip(mut self, clip: Clip) -> Self {
        self.clip = Some(clip);
        self
    }

    /// Stops when the watched metric stops improving.
    pub fn early_stopping(mut self, early_stopping: EarlyStopping) -> Self {
        self.early_stopping = Some(early_stopping);
        self
    }

    /// Saves a safetensors checkpoint (parameters and optimiser state) to
    /// `path` after each epoch; with early stopping, only after epochs that
    /// improved the watched metric, so the file holds the best parameters.
    /// Saves are atomic, and an epoch that fails (non-finite loss or
    /// gradient) writes nothing, so the file always holds good weights.
    pub fn checkpoint(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoint = Some(path.into());
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
    /// zeroes the gradient buffers, runs `forward` and `backward` for every
    /// sample (gradients accumulate), divides the sum by the batch size,
    /// clips it, and calls the optimiser once. Tapes, gradient buffers, the
    /// index order and the thread pool are allocated once per call; the
    /// per-batch loop allocates nothing. The optimiser's `init` is called
    /// at the start.
    ///
    /// # Errors
    /// An empty or inconsistent data set, a non-finite loss or gradient
    /// (training stops before that batch's update), or a failed checkpoint.
    pub fn fit<N>(
        &mut self,
        net: &mut N,
        train: &Dataset<N::Input, N::Target>,
    ) -> Result<TrainReport, TrainError>
    where
        N: Network,
        O: Optimizer<N::Scalar> + Send,
    {
        self.train(net, train, None)?.run()
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
        O: Optimizer<N::Scalar> + Send,
    {
        self.train(net, train, Some(validation))?.run()
    }

    /// Training as an iterator of epoch reports: each `next` runs one epoch
    /// (and validation, early stopping and checkpointing as configured), so
    /// the caller can log, plot or stop between epochs. Ends after the last
    /// epoch, after early stopping, or after an error.
    ///
    /// # Errors
    /// An empty or inconsistent data set, or no thread pool.
    pub fn train<'a, N>(
        &'a mut self,
        net: &'a mut N,
        train: &'a Dataset<N::Input, N::Target>,
        validation: Option<&'a Dataset<N::Input, N::Target>>,
    ) -> Result<Training<'a, N, O>, TrainError>
    where
        N: Network,
        O: Optimizer<N::Scalar> + Send,
    {
        check_data(train, "training")?;
        if let Some(v) = validation {
            check_data(v, "validation")?;
        }
        let n = train.len();
        let batch = match self.batch_size {
            0 => n,
            b => b.min(n),
        };
        let pool = match self.threads {
            1 => None,
            t => {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .thread_name(|i| format!("nn-train-{i}"))
                    .build()
                    .map_err(|e| TrainError::Threads {
                        message: e.to_string(),
                    })?;
                // every worker runs once now, so that starting the threads
                // (which allocates) happens here, not in the first epochs
                pool.broadcast(|_| ());
                Some(pool)
            }
        };
        let k = self.chunks.max(1);
        self.optimizer.init(<N::Params as Flat<N::Scalar>>::LEN);
        let base_lr = self.optimizer.learning_rate();
        let batches_per_epoch = n.div_ceil(batch);
        let bar = (self.progress && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(
                Some((self.epochs * batches_per_epoch) as u64),
                ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = ProgressStyle::with_template(
                "[{bar:30}] {pos}/{len} steps, {elapsed} (eta {eta}) {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        let best_params = match self.early_stopping {
            Some(e) if e.restore_best => Some(N::new_grads()),
            _ => None,
        };
        Ok(Training {
            net,
            train,
            validation,
            tapes: (0..k).map(|_| N::new_tape()).collect(),
            grads: (0..k).map(|_| N::new_grads()).collect(),
            stats: vec![ChunkStats::default(); k],
            order: (0..n).collect(),
            rng: Rng::new(self.seed),
            parallel: pool.is_some(),
            pool,
            batch,
            epoch: 0,
            step: 0,
            base_lr,
            best: None,
            best_epoch: None,
            since_best: 0,
            best_params,
            stopped_early: None,
            done: false,
            bar,
            trainer: self,
        })
    }
}

/// Per-part sums of one batch (or one part of the validation set).
#[derive(Clone, Copy, Debug, Default)]
struct ChunkStats {
    loss: f64,
    correct: usize,
    /// The part's first sample with a non-finite loss, and that loss.
    bad: Option<(usize, f64)>,
}

/// A training run in progress: an iterator of [`EpochReport`]s, from
/// [`Trainer::train`].
pub struct Training<'a, N: Network, O> {
    trainer: &'a mut Trainer<O>,
    net: &'a mut N,
    train: &'a Dataset<N::Input, N::Target>,
    validation: Option<&'a Dataset<N::Input, N::Target>>,
    tapes: Vec<Box<N::Tape>>,
    grads: Vec<Box<N::Params>>,
    stats: Vec<ChunkStats>,
    order: Vec<usize>,
    rng: Rng,
    pool: Option<rayon::ThreadPool>,
    parallel: bool,
    batch: usize,
    epoch: usize,
    step: usize,
    base_lr: Option<f64>,
    best: Option<f64>,
    best_epoch: Option<usize>,
    since_best: usize,
    best_params: Option<Box<N::Params>>,
    stopped_early: Option<usize>,
    done: bool,
    bar: Option<ProgressBar>,
}

/// Runs the parts of a batch (or of the validation set): `work(k, tape,
/// grads, stats)` for each part `k`, on the current pool's threads if `parallel`.
fn for_each_part<N: Network, F>(
    parallel: bool,
    tapes: &mut [Box<N::Tape>],
    grads: &mut [Box<N::Params>],
    stats: &mut [ChunkStats],
    work: F,
) where
    F: Fn(usize, &mut N::Tape, &mut N::Params, &mut ChunkStats) + Send + Sync,
{
    if parallel {
        tapes
            .par_iter_mut()
            .zip(grads.par_iter_mut())
            .zip(stats.par_iter_mut())
            .enumerate()
            .for_each(|(k, ((t, g), s))| work(k, t, g, s));
    } else {
        let items = tapes.iter_mut().zip(grads.iter_mut()).zip(stats.iter_mut());
        for (k, ((t, g), s)) in items.enumerate() {
            work(k, t, g, s);
        }
    }
}

/// `grads[0] += grads[1]; grads[0] += grads[2]; ...` for the first `parts`
/// buffers, element by element and always in part order, so the sum does not
/// depend on how the work is spread over threads.
fn reduce<T: Float, P: Flat<T> + Sync>(parallel: bool, grads: &mut [Box<P>], parts: usize) {
    if parts < 2 {
        return;
    }
    let (first, rest) = grads.split_first_mut().expect("at least one part");
    let rest = &rest[..parts - 1];
    let add = |offset: usize, out: &mut [T]| {
        for g in rest {
            let src = &g.as_slice()[offset..offset + out.len()];
            for (o, &s) in out.iter_mut().zip(src) {
                *o += s;
            }
        }
    };
    let total = first.as_mut_slice();
    if parallel && total.len() >= 2 * REDUCE_BLOCK {
        total
            .par_chunks_mut(REDUCE_BLOCK)
            .enumerate()
            .for_each(|(b, out)| add(b * REDUCE_BLOCK, out));
    } else {
        add(0, total);
    }
}

/// Parameters added per parallel reduction task.
const REDUCE_BLOCK: usize = 4096;

/// The `k`-th of `parts` consecutive parts of `0..len`.
fn part(len: usize, parts: usize, k: usize) -> core::ops::Range<usize> {
    k * len / parts..(k + 1) * len / parts
}

impl<'a, N, O> Training<'a, N, O>
where
    N: Network,
    O: Optimizer<N::Scalar> + Send,
{
    /// The epoch with the best watched metric so far (with early stopping).
    pub fn best_epoch(&self) -> Option<usize> {
        self.best_epoch
    }

    /// The epoch after which early stopping ended training, if it did.
    pub fn stopped_early(&self) -> Option<usize> {
        self.stopped_early
    }

    /// Runs every remaining epoch, collecting the reports.
    ///
    /// # Errors
    /// The first epoch's error.
    pub fn run(mut self) -> Result<TrainReport, TrainError> {
        let mut report = TrainReport {
            epochs: Vec::with_capacity(self.trainer.epochs),
            best_epoch: None,
            stopped_early: None,
        };
        let result = match self.pool.take() {
            // One `install` for the whole run: inside the pool, each epoch's
            // parallel loops use the workers' own queues and allocate nothing.
            Some(pool) => {
                let r = pool.install(|| self.collect_epochs(&mut report));
                self.pool = Some(pool);
                r
            }
            None => self.collect_epochs(&mut report),
        };
        result?;
        report.best_epoch = self.best_epoch;
        report.stopped_early = self.stopped_early;
        Ok(report)
    }

    fn collect_epochs(&mut self, report: &mut TrainReport) -> Result<(), TrainError> {
        while let Some(r) = self.next_epoch() {
            let r = r?;
            if self.trainer.verbose {
                match &self.bar {
                    Some(bar) => bar.println(r.to_string()),
                    None => println!("{r}"),
                }
            }
            report.epochs.push(r);
        }
        Ok(())
    }

    /// One epoch, or `None` when training is over.
    fn next_epoch(&mut self) -> Option<Result<EpochReport, TrainError>> {
        if self.done || self.epoch >= self.trainer.epochs {
            self.finish();
            return None;
        }
        let r = self.epoch_inner();
        if r.is_err() {
            // The weights stay the last good ones: no restoring after an error.
            self.done = true;
            self.best_params = None;
            if let Some(bar) = &self.bar {
                bar.abandon();
            }
        }
        Some(r)
    }

    fn finish(&mut self) {
        self.done = true;
        if let (Some(best), Some(_)) = (self.best_params.take(), self.best_epoch) {
            self.net
                .params_mut()
                .as_mut_slice()
                .copy_from_slice(best.as_slice());
        }
        if let Some(bar) = self.bar.take() {
            // Stopped early: leave the bar where training stopped.
            if self.stopped_early.is_some() {
                bar.abandon();
            } else {
                bar.finish();
            }
        }
    }

    fn epoch_inner(&mut self) -> Result<EpochReport, TrainError> {
        let start = Instant::now();
        self.epoch += 1;
        let epoch = self.epoch;
        let n = self.train.len();
        if self.batch < n {
            self.rng.shuffle(&mut self.order);
        }
        let k = self.tapes.len();
        let mut loss_sum = 0.0;
        let mut correct = 0usize;
        let mut lr = self.base_lr;
        for b in 0..n.div_ceil(self.batch) {
            self.step += 1;
            let indices = &self.order[b * self.batch..((b + 1) * self.batch).min(n)];
            let len = indices.len();
            let parts = k.min(len);
            let net: &N = self.net;
            let train = self.train;
            for_each_part::<N, _>(
                self.parallel,
                &mut self.tapes,
                &mut self.grads,
                &mut self.stats,
                |c, tape, grads, stats| {
                    *stats = ChunkStats::default();
                    grads.fill_zero();
                    if c >= parts {
                        return;
                    }
                    for &i in &indices[part(len, parts, c)] {
                        let (x, y) = (&train.inputs[i], &train.targets[i]);
                        let loss = net.forward(x, y, tape);
                        if !loss.is_finite() && stats.bad.is_none() {
                            stats.bad = Some((i, loss.to_f64()));
                        }
                        stats.loss += loss.to_f64();
                        stats.correct += usize::from(correct_after_forward(net, x, y, tape));
                        net.backward(tape, grads);
                    }
                },
            );
            if let Some((sample, loss)) = self.stats.iter().find_map(|s| s.bad) {
                return Err(TrainError::NonFiniteLoss {
                    epoch,
                    step: self.step,
                    sample,
                    loss,
                });
            }
            reduce(self.parallel, &mut self.grads, parts);
            let scale = N::Scalar::from_f64(1.0 / len as f64);
            let g = self.grads[0].as_mut_slice();
            for v in g.iter_mut() {
                *v *= scale;
            }
            if let Some(i) = g.iter().position(|v| !v.is_finite()) {
                let (param, index) = locate_param(N::PARAM_INFO, i);
                return Err(TrainError::NonFiniteGradient {
                    epoch,
                    step: self.step,
                    param,
                    index,
                });
            }
            if let Some(clip) = self.trainer.clip {
                clip.apply(g);
            }
            if let (Some(base), false) = (self.base_lr, self.trainer.schedule == Schedule::Constant)
            {
                let now = base * self.trainer.schedule.factor(self.step - 1);
                self.trainer.optimizer.set_learning_rate(now);
                lr = Some(now);
            }
            self.trainer.optimizer.step(
                self.net.params_mut().as_mut_slice(),
                self.grads[0].as_slice(),
            );
            for s in &self.stats {
                loss_sum += s.loss;
                correct += s.correct;
            }
            if let Some(bar) = &self.bar {
                bar.inc(1);
            }
        }
        let (val_loss, val_accuracy) = match self.validation {
            None => (None, None),
            Some(v) => {
                let net: &N = self.net;
                let len = v.len();
                let parts = k.min(len);
                for_each_part::<N, _>(
                    self.parallel,
                    &mut self.tapes,
                    &mut self.grads,
                    &mut self.stats,
                    |c, tape, _, stats| {
                        *stats = ChunkStats::default();
                        if c < parts {
                            (stats.loss, stats.correct) =
                                eval_part(net, v, part(len, parts, c), tape);
                        }
                    },
                );
                let loss: f64 = self.stats.iter().map(|s| s.loss).sum();
                let correct: usize = self.stats.iter().map(|s| s.correct).sum();
                (Some(loss / len as f64), Some(correct as f64 / len as f64))
            }
        };
        let mut report = EpochReport {
            epoch,
            loss: loss_sum / n as f64,
            accuracy: correct as f64 / n as f64,
            val_loss,
            val_accuracy,
            learning_rate: lr,
            improved: true,
            duration: Duration::ZERO,
        };
        if let Some(es) = self.trainer.early_stopping {
            let value = es.metric.of(&report);
            report.improved = match self.best {
                None => !value.is_nan(),
                Some(best) => es.metric.improves(value, best, es.min_delta),
            };
            if report.improved {
                self.best = Some(value);
                self.best_epoch = Some(epoch);
                self.since_best = 0;
                if let Some(best) = &mut self.best_params {
                    best.as_mut_slice()
                        .copy_from_slice(self.net.params().as_slice());
                }
            } else {
                self.since_best += 1;
                if self.since_best >= es.patience {
                    self.stopped_early = Some(epoch);
                    self.done = true;
                }
            }
        }
        if let (Some(path), true) = (&self.trainer.checkpoint, report.improved) {
            checkpoint::save_with_optimizer(&*self.net, &self.trainer.optimizer, path).map_err(
                |e| TrainError::Checkpoint {
                    epoch,
                    message: e.to_string(),
                },
            )?;
        }
        if let Some(bar) = &self.bar {
            bar.set_message(progress_message(&report));
        }
        report.duration = start.elapsed();
        Ok(report)
    }
}

fn progress_message(r: &EpochReport) -> String {
    let mut m = format!(
        "epoch {}: loss {:.4}, acc {:.1}%",
        r.epoch,
        r.loss,
        100.0 * r.accuracy
    );
    if let (Some(l), Some(a)) = (r.val_loss, r.val_accuracy) {
        m += &format!(", val_loss {l:.4}, val_acc {:.1}%", 100.0 * a);
    }
    m
}

impl<N, O> Iterator for Training<'_, N, O>
where
    N: Network,
    O: Optimizer<N::Scalar> + Send,
{
    type Item = Result<EpochReport, TrainError>;

    /// Runs the next epoch (on the thread pool, if training on several threads).
    fn next(&mut self) -> Option<Self::Item> {
        match self.pool.take() {
            Some(pool) => {
                let r = pool.install(|| self.next_epoch());
                self.pool = Some(pool);
                r
            }
            None => self.next_epoch(),
        }
    }
}

impl<N: Network, O> Drop for Training<'_, N, O> {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
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
