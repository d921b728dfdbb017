//! The training loop: epochs of seeded mini-batches, one optimiser step per
//! batch after the whole batch's backward passes, validation, early
//! stopping, checkpoints, a progress bar, and data-parallel training on
//! several cores.
//!
//! # Batched blocks and the per-sample path
//!
//! For a network with batched passes ([`Network::BATCH_WIDTHS`] not empty:
//! every generated network whose per-sample values are vectors, recurrent
//! ones included), each batch, in its shuffled order, is cut into blocks:
//! as many blocks of the largest compiled width as fit, then of the next
//! width in what is left, and so on; the samples left over (fewer than the
//! smallest width) are single samples. A block runs as one batched pass
//! ([`Network::train_block`]: one matrix product per layer), a single
//! sample through `forward` and `backward`. With widths 32 and 4, a batch
//! of 41 is a block of 32, two of 4 and one single sample. Validation and
//! [`evaluate`] cut their set the same way and run
//! [`Network::eval_block`]. Networks without batched passes (those with
//! matrix-valued inputs or intermediates), and every network under
//! [`Trainer::batched`]`(false)`, run every sample through `forward` and
//! `backward`: the per-sample path, the reference the batched one is tested
//! against (the same gradients up to rounding: the batched products sum in
//! another order).
//!
//! # Determinism across thread counts
//!
//! The blocks of a batch (single samples on the per-sample path) are dealt,
//! in order, to at most [`chunks`](Trainer::chunks) parts: consecutive runs
//! of blocks, as even in number as possible. How a batch is cut and dealt
//! depends only on its length, the compiled widths and the `chunks`
//! setting, never on the number of threads. Each part's gradient is summed
//! block by block into its own buffer, and the parts' buffers are added in
//! part order. Which thread computes a part changes nothing, so the same
//! seed gives bitwise the same weights with 1 thread and with N. A batch of
//! a single block (a batch of 32 with widths 32 and 4) is one part, so it
//! runs on one thread: threads only help batches of several blocks.
//!
//! # Bad settings, bad data, non-finite numbers
//!
//! Everything that can be checked before training is checked by
//! [`Trainer::train`] (and so by `fit`), before any work: every setting of
//! the trainer and the optimiser ([`TrainError::InvalidSetting`] names the
//! setting and its value), the data sets (empty, uneven) and every target
//! against the network ([`Network::check_target`]: a class index at or above
//! the class count is [`TrainError::InvalidTarget`], naming the set and the
//! sample). During training, a non-finite loss, gradient or update stops
//! training with an error naming the epoch and the step; the network then
//! holds the last finite parameters (those before the failing step), and no
//! checkpoint is written with anything non-finite in it. A non-finite
//! validation loss is an error too, naming the validation sample.

use crate::checkpoint;
use crate::data::Dataset;
use crate::dropout::sample_seed;
use crate::float::Float;
use crate::gradcheck::locate_param;
use crate::log::MetricsLog;
use crate::network::{Flat, Network, TargetError};
use crate::optim::{Clip, Optimizer, Schedule, SettingError};
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
/// assert!(evaluate(&net, &val)?.loss < 1e-3);
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
    batched: bool,
    schedule: Schedule,
    clip: Option<Clip>,
    early_stopping: Option<EarlyStopping>,
    checkpoint: Option<PathBuf>,
    log_to: Option<PathBuf>,
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
///
/// Valid settings: `patience` at least 1, `min_delta` finite and `>= 0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EarlyStopping {
    /// What to watch.
    pub metric: Metric,
    /// Epochs without improvement before stopping (at least 1).
    pub patience: usize,
    /// Smallest change that counts as an improvement (finite, `>= 0`).
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

    /// Checks `patience` and `min_delta` (the trainer calls it before training).
    ///
    /// # Errors
    /// A patience of 0, or a `min_delta` that is negative or not finite.
    pub fn check(&self) -> Result<(), SettingError> {
        if self.patience == 0 {
            return Err(SettingError::new(
                "EarlyStopping::patience",
                0,
                "at least 1 (epochs without improvement before stopping)",
            ));
        }
        if !(self.min_delta.is_finite() && self.min_delta >= 0.0) {
            return Err(SettingError::new(
                "EarlyStopping::min_delta",
                self.min_delta,
                "a finite number >= 0",
            ));
        }
        Ok(())
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

/// Why training (or an evaluation) could not start or stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A setting of the trainer or the optimiser is outside its valid range;
    /// found before training starts.
    #[error("invalid setting: {0}")]
    InvalidSetting(#[source] SettingError),
    /// A data set has no samples.
    #[error("the {set} set is empty")]
    EmptyData {
        /// `"training"`, `"validation"` or `"evaluation"`.
        set: &'static str,
    },
    /// A data set's `inputs` and `targets` differ in length.
    #[error("the {set} set has {inputs} inputs but {targets} targets")]
    LengthMismatch {
        /// `"training"`, `"validation"` or `"evaluation"`.
        set: &'static str,
        /// Number of inputs.
        inputs: usize,
        /// Number of targets.
        targets: usize,
    },
    /// A sample's target does not fit the network (a class index at or above
    /// the class count); found before training starts.
    #[error(
        "{set} sample {sample}: {error}; class indices must be in 0..{} \
         (fix the data, or declare more classes)",
        error.classes
    )]
    InvalidTarget {
        /// `"training"`, `"validation"` or `"evaluation"`.
        set: &'static str,
        /// 0-based index of the sample in that set.
        sample: usize,
        /// What is wrong with the target.
        #[source]
        error: TargetError,
    },
    /// A sample's class-index input (a token for `embedding`) is at or
    /// above its class count; found before training starts.
    #[error(
        "{set} sample {sample}: {error}; class indices must be in 0..{} \
         (fix the data, or declare more classes)",
        error.classes
    )]
    InvalidInput {
        /// `"training"`, `"validation"` or `"evaluation"`.
        set: &'static str,
        /// 0-based index of the sample in that set.
        sample: usize,
        /// Which input and index are wrong.
        #[source]
        error: TargetError,
    },
    /// A sample's input has a NaN or infinite element; found before
    /// training starts.
    #[error(
        "{set} sample {sample}: input `{input}` element {index} is not a finite number; \
         fix or drop the sample (an activation such as relu would hide it)"
    )]
    NonFiniteInput {
        /// `"training"`, `"validation"` or `"evaluation"`.
        set: &'static str,
        /// 0-based index of the sample in that set.
        sample: usize,
        /// The input's name in the definition.
        input: &'static str,
        /// Row-major index of the element within the input.
        index: usize,
    },
    /// A sample's loss was NaN or infinite; the parameters are left as they
    /// were before this batch (and no checkpoint is written).
    #[error(
        "non-finite loss {loss} at epoch {epoch}, step {step} (training sample {sample}); \
         parameters are as before this batch; check that sample's input and target, \
         or lower the learning rate"
    )]
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
    #[error(
        "non-finite gradient of `{param}` (element {index}) at epoch {epoch}, step {step}; \
         parameters are as before this batch"
    )]
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
    /// The optimiser's step would have made a parameter NaN or infinite (a
    /// learning rate far too large, an overflow). The step was not taken:
    /// the parameters are those before it, and so is the state of the
    /// built-in optimisers (no checkpoint is written).
    #[error(
        "the update at epoch {epoch}, step {step} would set `{param}` (element {index}) \
         to {value}; the step was not taken and the parameters are as before it; \
         lower the learning rate or clip the gradient"
    )]
    NonFiniteUpdate {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based optimiser step since the start of `fit` (the step not taken).
        step: usize,
        /// Name of the parameter tensor (from `Network::PARAM_INFO`).
        param: &'static str,
        /// Row-major index of the element within its tensor.
        index: usize,
        /// The value the step computed for it.
        value: f64,
    },
    /// The optimiser's step left every parameter finite but would have made
    /// its own state non-finite (a moment estimate overflowing). The step
    /// was not taken, as for [`NonFiniteUpdate`](TrainError::NonFiniteUpdate).
    #[error(
        "the update at epoch {epoch}, step {step} would make the state of {optimizer} \
         non-finite; the step was not taken and the parameters are as before it; \
         clip the gradient"
    )]
    NonFiniteOptimizerState {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based optimiser step since the start of `fit` (the step not taken).
        step: usize,
        /// The optimiser's name.
        optimizer: &'static str,
    },
    /// A validation sample's loss was NaN or infinite (after the epoch's
    /// training, whose parameters the network keeps; no checkpoint is
    /// written for the epoch).
    #[error(
        "non-finite validation loss {loss} after epoch {epoch} (validation sample \
         {sample}); check that sample's input and target"
    )]
    NonFiniteValidation {
        /// 1-based epoch.
        epoch: usize,
        /// 0-based index of the first such sample in the validation set.
        sample: usize,
        /// That sample's loss.
        loss: f64,
    },
    /// Saving the checkpoint failed (the previous checkpoint file is intact).
    #[error("saving the checkpoint after epoch {epoch} failed: {error}")]
    Checkpoint {
        /// 1-based epoch.
        epoch: usize,
        /// The error, naming the file.
        #[source]
        error: checkpoint::CheckpointError,
    },
    /// The metrics file of [`Trainer::log_to`] could not be created or
    /// written (the epochs before were logged; the parameters are those of
    /// the last epoch logged, or of the start for a file not created).
    #[error("{}: writing the metrics log failed: {error}", path.display())]
    Log {
        /// The metrics file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        error: std::io::Error,
    },
    /// The thread pool could not be started.
    #[error("could not start the training threads: {message}")]
    Threads {
        /// What rayon said.
        message: String,
    },
}

impl From<SettingError> for TrainError {
    fn from(e: SettingError) -> Self {
        TrainError::InvalidSetting(e)
    }
}

/// Mean loss and accuracy of a network on a data set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean loss per sample (NaN or infinite if a sample's loss is).
    pub loss: f64,
    /// Fraction of samples `Network::is_correct` accepts.
    pub accuracy: f64,
}

/// Mean loss and accuracy (by `is_correct` on the output) of `net` on
/// `data`: through the batched passes ([`Network::eval_block`], the set cut
/// into blocks as in training; see the [module docs](self)) if the network
/// has them, else sample by sample through `forward`. Allocates one tape
/// (and, for a network with batched passes, one batched workspace and its
/// scratch), on one thread.
///
/// # Errors
/// An empty or uneven data set, or a target the network does not accept
/// ([`Network::check_target`]), naming the sample; all checked before any
/// pass.
pub fn evaluate<N: Network>(
    net: &N,
    data: &Dataset<N::Input, N::Target>,
) -> Result<Evaluation, TrainError> {
    check_data(data, "evaluation")?;
    check_samples::<N>(data, "evaluation")?;
    let blocks = Blocks::new(N::BATCH_WIDTHS, data.len());
    let mut part = Part::<N> {
        scratch: Scratch::new(N::BATCH_WIDTHS),
        stats: ChunkStats::default(),
    };
    eval_part(net, data, blocks, 0..blocks.count(), &mut part);
    let n = data.len() as f64;
    Ok(Evaluation {
        loss: part.stats.loss / n,
        accuracy: part.stats.correct as f64 / n,
    })
}

/// How a batch of `len` samples is cut into blocks: for each width of
/// `widths` in turn, as many whole blocks of that width as fit in what is
/// left, then one block per remaining sample. With no widths (the
/// per-sample path) every sample is a block of its own.
#[derive(Clone, Copy, Debug)]
struct Blocks {
    widths: &'static [usize],
    len: usize,
}

impl Blocks {
    fn new(widths: &'static [usize], len: usize) -> Self {
        Blocks { widths, len }
    }

    /// The number of blocks.
    fn count(&self) -> usize {
        let (mut rest, mut blocks) = (self.len, 0);
        for &w in self.widths.iter().filter(|w| **w > 0) {
            blocks += rest / w;
            rest %= w;
        }
        blocks + rest
    }

    /// The `b`-th block: its positions in the batch, and whether it is a
    /// batched block (else a single sample for `forward` and `backward`).
    fn get(&self, mut b: usize) -> (core::ops::Range<usize>, bool) {
        let (mut rest, mut start) = (self.len, 0);
        for &w in self.widths.iter().filter(|w| **w > 0) {
            let n = rest / w;
            if b < n {
                let s = start + b * w;
                return (s..s + w, true);
            }
            b -= n;
            start += n * w;
            rest -= n * w;
        }
        (start + b..start + b + 1, false)
    }
}

/// One part's workspace: a tape for single samples and, on the batched
/// path, the batched passes' workspace, a loss and a correctness slot per
/// sample of the widest block, and the indices `0, 1, ...` of the widest
/// block (a block of consecutive samples is passed as a slice of its own).
struct Scratch<N: Network> {
    tape: Box<N::Tape>,
    work: Option<Box<N::BatchWork>>,
    losses: Vec<N::Scalar>,
    correct: Vec<bool>,
    iota: Vec<usize>,
}

impl<N: Network> Scratch<N> {
    /// For blocks of `widths` (none: the per-sample path, which allocates
    /// only the tape).
    fn new(widths: &[usize]) -> Self {
        let widest = widths.iter().copied().max().unwrap_or(0);
        Scratch {
            tape: N::new_tape(),
            work: (widest > 0).then(N::new_batch_work),
            losses: vec![N::Scalar::ZERO; widest],
            correct: vec![false; widest],
            iota: (0..widest).collect(),
        }
    }
}

/// The blocks `range` of `blocks` over the batch `order` (indices into
/// `data`): forward and backward passes, the gradients added into `grads`,
/// the losses and correct counts into the part's sums; allocates nothing.
#[allow(clippy::too_many_arguments)]
fn train_part<N: Network>(
    net: &N,
    data: &Dataset<N::Input, N::Target>,
    order: &[usize],
    blocks: Blocks,
    range: core::ops::Range<usize>,
    part: &mut Part<N>,
    grads: &mut N::Params,
    step_seed: u64,
) {
    let Part { scratch: s, stats } = part;
    for b in range {
        let (positions, batched) = blocks.get(b);
        let idx = &order[positions];
        if batched {
            let w = idx.len();
            let work = s
                .work
                .as_deref_mut()
                .expect("a workspace on the batched path");
            N::set_dropout_batch(work, Some(step_seed));
            let (losses, correct) = (&mut s.losses[..w], &mut s.correct[..w]);
            net.train_block(
                &data.inputs,
                &data.targets,
                idx,
                work,
                grads,
                losses,
                correct,
            );
            for ((&i, &loss), &ok) in idx.iter().zip(&*losses).zip(&*correct) {
                stats.record(i, loss, ok);
            }
        } else {
            for &i in idx {
                let (x, y) = (&data.inputs[i], &data.targets[i]);
                N::set_dropout(&mut s.tape, Some(sample_seed(step_seed, i)));
                let loss = net.forward(x, y, &mut s.tape);
                stats.record(i, loss, correct_after_forward(net, x, y, &s.tape));
                net.backward(&s.tape, grads);
            }
        }
    }
}

/// The blocks `range` of `blocks` over `data` in order: forward passes
/// only, the losses and correct counts into the part's sums; allocates
/// nothing.
fn eval_part<N: Network>(
    net: &N,
    data: &Dataset<N::Input, N::Target>,
    blocks: Blocks,
    range: core::ops::Range<usize>,
    part: &mut Part<N>,
) {
    let Part { scratch: s, stats } = part;
    for b in range {
        let (positions, batched) = blocks.get(b);
        if batched {
            let w = positions.len();
            let work = s
                .work
                .as_deref_mut()
                .expect("a workspace on the batched path");
            let (losses, correct) = (&mut s.losses[..w], &mut s.correct[..w]);
            N::set_dropout_batch(work, None);
            // The block's samples are consecutive: pass them as a slice of
            // their own, indexed 0..w.
            net.eval_block(
                &data.inputs[positions.clone()],
                &data.targets[positions.clone()],
                &s.iota[..w],
                work,
                losses,
                correct,
            );
            for ((i, &loss), &ok) in positions.zip(&*losses).zip(&*correct) {
                stats.record(i, loss, ok);
            }
        } else {
            N::set_dropout(&mut s.tape, None);
            for i in positions {
                let (x, y) = (&data.inputs[i], &data.targets[i]);
                let loss = net.forward(x, y, &mut s.tape);
                stats.record(i, loss, correct_after_forward(net, x, y, &s.tape));
            }
        }
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

/// A network with `batch_norm` trains through the batched passes only, one
/// block per batch, so that each batch's statistics are the whole batch's:
/// the batch size (`batch`, after a full batch or a size above the data's
/// is resolved) must be a compiled width.
fn check_batch_norm<N: Network>(
    batched: bool,
    batch_size: usize,
    batch: usize,
) -> Result<(), TrainError> {
    if !batched || N::BATCH_WIDTHS.is_empty() {
        return Err(TrainError::InvalidSetting(SettingError::new(
            "Trainer::batched",
            false,
            "true: a network with `batch_norm` trains through its batched passes \
             (the per-sample ones normalise with the running statistics)",
        )));
    }
    if !N::BATCH_WIDTHS.contains(&batch) {
        return Err(TrainError::InvalidSetting(SettingError::new(
            "Trainer::batch_size",
            batch_size,
            format!(
                "one of the compiled batch widths {:?} for a network with `batch_norm` \
                 (each batch is one batched pass, its statistics the whole batch's), \
                 at most the number of training samples",
                N::BATCH_WIDTHS
            ),
        )));
    }
    Ok(())
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

/// Every input of `data` finite ([`Network::non_finite_input`]) and its
/// class indices in range ([`Network::check_input`]), and every target
/// through [`Network::check_target`].
fn check_samples<N: Network>(
    data: &Dataset<N::Input, N::Target>,
    set: &'static str,
) -> Result<(), TrainError> {
    for (sample, input) in data.inputs.iter().enumerate() {
        if let Some((input, index)) = N::non_finite_input(input) {
            return Err(TrainError::NonFiniteInput {
                set,
                sample,
                input,
                index,
            });
        }
        N::check_input(input).map_err(|error| TrainError::InvalidInput { set, sample, error })?;
    }
    for (sample, target) in data.targets.iter().enumerate() {
        N::check_target(target).map_err(|error| TrainError::InvalidTarget {
            set,
            sample,
            error,
        })?;
    }
    Ok(())
}

/// Most parts a batch may be cut into ([`Trainer::chunks`]).
pub const MAX_CHUNKS: usize = 256;

/// Most worker threads per core ([`Trainer::threads`]).
pub const MAX_THREADS_PER_CORE: usize = 4;

/// The most threads [`Trainer::threads`] accepts on this machine:
/// [`MAX_THREADS_PER_CORE`] times the cores `std::thread::available_parallelism`
/// reports (1 if it cannot tell).
pub fn max_threads() -> usize {
    cores() * MAX_THREADS_PER_CORE
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The report's vector is presized for `min(epochs, PRESIZED_EPOCHS)`
/// epochs (so training up to this many allocates the same whatever the
/// count); longer runs grow it as they go, so a huge epoch count never sizes
/// an allocation.
const PRESIZED_EPOCHS: usize = 1024;

/// The progress bar's length in steps, if it fits (`epochs(usize::MAX)`,
/// "until early stopping", has none).
fn bar_length(epochs: usize, batches_per_epoch: usize) -> Option<u64> {
    epochs
        .checked_mul(batches_per_epoch)
        .and_then(|n| u64::try_from(n).ok())
}

impl<O> Trainer<O> {
    /// A trainer with `optimizer`: 1 epoch, full batch, seed 0, one thread,
    /// at most 8 gradient chunks per batch, the batched passes where the
    /// network has them, no schedule, no clipping, a progress bar on
    /// interactive terminals, no per-epoch lines.
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
            batched: true,
            schedule: Schedule::Constant,
            clip: None,
            early_stopping: None,
            checkpoint: None,
            log_to: None,
        }
    }

    /// Number of passes over the training set (default 1). Nothing is sized
    /// by it: `usize::MAX` means "until early stopping" (or, without early
    /// stopping, until the caller stops iterating [`train`](Trainer::train)).
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

    /// Writes every epoch's numbers to the file at `path` as training runs,
    /// one record per epoch, flushed as it is written: JSON lines when the
    /// name ends in `.jsonl`, `.ndjson` or `.json`, else CSV with the header
    /// `epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,seconds`
    /// (a value there is none of is an empty field, or `null` in JSON). The
    /// file is created, or emptied, when training starts; a file that cannot
    /// be created or written stops training with [`TrainError::Log`].
    pub fn log_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_to = Some(path.into());
        self
    }

    /// No progress bar and no per-epoch lines.
    pub fn quiet(self) -> Self {
        self.progress(false).verbose(false)
    }

    /// Worker threads for data-parallel training: `1` (the default) trains
    /// on the calling thread; `0` uses every core. At most [`max_threads`]
    /// ([`MAX_THREADS_PER_CORE`] per core; more only contend for the cores),
    /// else training does not start ([`TrainError::InvalidSetting`]).
    /// Results do not depend on this (see the [module docs](self)).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// The most parts each batch's gradient is computed in (default 8, from
    /// 1 to [`MAX_CHUNKS`]): the unit of parallel work, and what the
    /// floating-point result depends on (with the seed). A batch's blocks
    /// (its samples, on the per-sample path) are dealt to `min(chunks,
    /// blocks)` parts; see the [module docs](self). Each part has its own
    /// tape, gradient buffer and batched workspace (no more parts than a
    /// batch or the validation set can use are allocated).
    pub fn chunks(mut self, chunks: usize) -> Self {
        self.chunks = chunks;
        self
    }

    /// Whether to run blocks of samples through the network's batched
    /// passes ([`Network::train_block`], [`Network::eval_block`]) when it
    /// has them (the default, `true`), or every sample through `forward`
    /// and `backward` (`false`: the per-sample path, the reference). Both
    /// give the same gradients up to rounding. Networks without batched
    /// passes always take the per-sample path.
    pub fn batched(mut self, batched: bool) -> Self {
        self.batched = batched;
        self
    }

    /// A learning-rate schedule over optimiser steps, multiplying the
    /// optimiser's learning rate at the start of `fit` (checked by
    /// [`Schedule::check`] before training).
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Clips each batch's mean gradient before the step (the limit is
    /// checked by [`Clip::check`] before training).
    pub fn clip(mut self, clip: Clip) -> Self {
        self.clip = Some(clip);
        self
    }

    /// Stops when the watched metric stops improving (checked by
    /// [`EarlyStopping::check`] before training).
    pub fn early_stopping(mut self, early_stopping: EarlyStopping) -> Self {
        self.early_stopping = Some(early_stopping);
        self
    }

    /// Saves a safetensors checkpoint (parameters and optimiser state) to
    /// `path` after each epoch; with early stopping, only after epochs that
    /// improved the watched metric, so the file holds the best parameters.
    /// Saves are atomic, and an epoch that fails (non-finite loss, gradient,
    /// update or validation loss) writes nothing, so the file always holds
    /// good, finite weights. The path must name a file in an existing
    /// directory (checked before training).
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
    /// zeroes the gradient buffers, runs the forward and backward passes of
    /// every sample (blocks of samples through the batched passes where the
    /// network has them, see [`batched`](Trainer::batched); gradients
    /// accumulate), divides the sum by the batch size, clips it, and calls
    /// the optimiser once ([`step_into`](Optimizer::step_into) a second
    /// parameter buffer, kept only if every new value is finite). Tapes,
    /// batched workspaces, gradient buffers, the second parameter buffer,
    /// the index order and the thread pool are allocated once per call; the
    /// per-batch loop allocates nothing. The optimiser's `init` is called at
    /// the start.
    ///
    /// # Errors
    /// Before training: an invalid setting, an empty or inconsistent data
    /// set, a target the network does not accept. During training: a
    /// non-finite loss, gradient, update or validation loss (training stops;
    /// the parameters are the last finite ones), or a failed checkpoint.
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
    /// Everything checked before training (see [`fit`](Trainer::fit)), or
    /// no thread pool.
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
        self.check_settings()?;
        self.optimizer.check_settings()?;
        check_data(train, "training")?;
        check_samples::<N>(train, "training")?;
        if let Some(v) = validation {
            check_data(v, "validation")?;
            check_samples::<N>(v, "validation")?;
        }
        let n = train.len();
        let batch = match self.batch_size {
            0 => n,
            b => b.min(n),
        };
        if N::BATCH_NORM {
            check_batch_norm::<N>(self.batched, self.batch_size, batch)?;
        }
        let threads = match self.threads {
            0 => cores(),
            t => t,
        };
        let pool = match threads {
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
        let widths = if self.batched { N::BATCH_WIDTHS } else { &[] };
        // No more parts than a batch (a full one, the last one) or the
        // validation set can use.
        let k = [batch, n % batch, validation.map_or(0, Dataset::len)]
            .into_iter()
            .map(|len| Blocks::new(widths, len).count())
            .max()
            .unwrap_or(1)
            .clamp(1, self.chunks);
        self.optimizer.init(<N::Params as Flat<N::Scalar>>::LEN);
        let base_lr = self.optimizer.learning_rate();
        let batches_per_epoch = n.div_ceil(batch);
        let bar = (self.progress && std::io::stderr().is_terminal()).then(|| {
            let length = bar_length(self.epochs, batches_per_epoch);
            let bar = ProgressBar::with_draw_target(length, ProgressDrawTarget::stderr());
            let template = match length {
                Some(_) => "[{bar:30}] {pos}/{len} steps, {elapsed} (eta {eta}) {msg}",
                None => "{pos} steps, {elapsed} {msg}",
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        let best_params = match self.early_stopping {
            Some(e) if e.restore_best => Some(N::new_grads()),
            _ => None,
        };
        let log = match &self.log_to {
            Some(path) => Some(MetricsLog::create(path).map_err(|error| TrainError::Log {
                path: path.clone(),
                error,
            })?),
            None => None,
        };
        Ok(Training {
            log,
            net,
            train,
            validation,
            parts: (0..k)
                .map(|_| Part {
                    scratch: Scratch::new(widths),
                    stats: ChunkStats::default(),
                })
                .collect(),
            grads: (0..k).map(|_| N::new_grads()).collect(),
            widths,
            spare: N::new_grads(),
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

    /// The trainer's own settings, before anything is allocated.
    fn check_settings(&self) -> Result<(), SettingError> {
        if !(1..=MAX_CHUNKS).contains(&self.chunks) {
            return Err(SettingError::new(
                "Trainer::chunks",
                self.chunks,
                format!("from 1 to {MAX_CHUNKS}"),
            ));
        }
        if self.threads > max_threads() {
            return Err(SettingError::new(
                "Trainer::threads",
                self.threads,
                format!(
                    "at most {} ({MAX_THREADS_PER_CORE} per core on this machine's {} cores; \
                     0 uses every core)",
                    max_threads(),
                    cores()
                ),
            ));
        }
        if let Some(clip) = &self.clip {
            clip.check()?;
        }
        self.schedule.check()?;
        if let Some(es) = &self.early_stopping {
            es.check()?;
        }
        if let Some(path) = &self.checkpoint {
            let shown = path.display();
            if path.file_name().is_none() || path.is_dir() {
                return Err(SettingError::new(
                    "Trainer::checkpoint",
                    format!("`{shown}`"),
                    "a path naming a file, e.g. `best.safetensors`",
                ));
            }
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => std::path::Path::new("."),
            };
            if !dir.is_dir() {
                return Err(SettingError::new(
                    "Trainer::checkpoint",
                    format!("`{shown}`"),
                    format!(
                        "a file in an existing directory (create `{}` first)",
                        dir.display()
                    ),
                ));
            }
        }
        Ok(())
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

impl ChunkStats {
    /// Adds sample `i`'s loss and correctness.
    fn record<T: Float>(&mut self, i: usize, loss: T, correct: bool) {
        if !loss.is_finite() && self.bad.is_none() {
            self.bad = Some((i, loss.to_f64()));
        }
        self.loss += loss.to_f64();
        self.correct += usize::from(correct);
    }
}

/// One part of a batch: its workspace and its sums (its gradient buffer is
/// kept beside it, for the reduction), so that parts run on any thread.
struct Part<N: Network> {
    scratch: Scratch<N>,
    stats: ChunkStats,
}

/// A training run in progress: an iterator of [`EpochReport`]s, from
/// [`Trainer::train`].
pub struct Training<'a, N: Network, O> {
    trainer: &'a mut Trainer<O>,
    net: &'a mut N,
    train: &'a Dataset<N::Input, N::Target>,
    validation: Option<&'a Dataset<N::Input, N::Target>>,
    parts: Vec<Part<N>>,
    /// Each part's gradient buffer.
    grads: Vec<Box<N::Params>>,
    /// The batched widths in use: the network's, or none on the per-sample path.
    widths: &'static [usize],
    /// The second parameter buffer: the optimiser writes the next
    /// parameters here, swapped in when they are all finite.
    spare: Box<N::Params>,
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
    log: Option<MetricsLog>,
}

/// Runs `work(k, part, grads)` for each of `parts` (of a batch, or of the
/// validation set) with its gradient buffer, on the current pool's threads
/// if `parallel`.
fn for_each_part<N: Network, F>(
    parallel: bool,
    parts: &mut [Part<N>],
    grads: &mut [Box<N::Params>],
    work: F,
) where
    F: Fn(usize, &mut Part<N>, &mut N::Params) + Send + Sync,
{
    if parallel && parts.len() > 1 {
        parts
            .par_iter_mut()
            .zip(grads.par_iter_mut())
            .enumerate()
            .for_each(|(k, (p, g))| work(k, p, g));
    } else {
        for (k, (p, g)) in parts.iter_mut().zip(grads.iter_mut()).enumerate() {
            work(k, p, g);
        }
    }
}

/// `grads[0] = (grads[0] + grads[1] + grads[2] + ...) · scale`, element by
/// element, the parts always added in part order (so the result does not
/// depend on how the work is spread over threads), in blocks that are
/// summed and scaled while in cache; returns whether every element of the
/// result is finite. Every element is scaled, whatever is found.
fn reduce_and_scale<T: Float, P: Flat<T> + Sync>(
    parallel: bool,
    grads: &mut [Box<P>],
    scale: T,
) -> bool {
    let (first, rest) = grads.split_first_mut().expect("at least one part");
    let rest = &*rest;
    let block = |offset: usize, out: &mut [T]| sum_and_scale(out, rest, offset, scale);
    let total = first.as_mut_slice();
    if parallel && total.len() >= 2 * REDUCE_BLOCK {
        total
            .par_chunks_mut(REDUCE_BLOCK)
            .enumerate()
            .map(|(b, out)| block(b * REDUCE_BLOCK, out))
            .reduce(|| true, |a, b| a && b)
    } else {
        total
            .chunks_mut(REDUCE_BLOCK)
            .enumerate()
            .fold(true, |finite, (b, out)| {
                block(b * REDUCE_BLOCK, out) & finite
            })
    }
}

/// `out += g[offset..]` for each buffer `g` of `rest`, in order, then
/// `out *= scale`; whether every element of `out` is then finite. Compiled
/// for AVX-512 and AVX2 besides the baseline and picked at run time (the
/// loops are elementwise, so every path gives bitwise the same result).
fn sum_and_scale<T: Float, P: Flat<T>>(
    out: &mut [T],
    rest: &[Box<P>],
    offset: usize,
    scale: T,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { sum_and_scale_avx512(out, rest, offset, scale) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { sum_and_scale_avx2(out, rest, offset, scale) };
        }
    }
    sum_and_scale_body(out, rest, offset, scale)
}

/// [`sum_and_scale`] compiled for AVX-512.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sum_and_scale_avx512<T: Float, P: Flat<T>>(
    out: &mut [T],
    rest: &[Box<P>],
    offset: usize,
    scale: T,
) -> bool {
    sum_and_scale_body(out, rest, offset, scale)
}

/// [`sum_and_scale`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_and_scale_avx2<T: Float, P: Flat<T>>(
    out: &mut [T],
    rest: &[Box<P>],
    offset: usize,
    scale: T,
) -> bool {
    sum_and_scale_body(out, rest, offset, scale)
}

/// The loops of [`sum_and_scale`], inlined into each compiled version.
#[inline(always)]
fn sum_and_scale_body<T: Float, P: Flat<T>>(
    out: &mut [T],
    rest: &[Box<P>],
    offset: usize,
    scale: T,
) -> bool {
    for g in rest {
        let src = &g.as_slice()[offset..offset + out.len()];
        for (o, &s) in out.iter_mut().zip(src) {
            *o += s;
        }
    }
    scale_all_finite(out, scale)
}

/// Multiplies every element of `g` by `scale` and returns whether all are
/// finite afterwards: the scaling loop, then (on data still in cache) a sum
/// of `x · 0` over 64 lanes (0 while finite, NaN after a NaN or infinity),
/// which keeps both loops vectorised (a `finite &= x.is_finite()` does not).
#[inline(always)]
fn scale_all_finite<T: Float>(g: &mut [T], scale: T) -> bool {
    const LANES: usize = 64;
    for v in g.iter_mut() {
        *v *= scale;
    }
    let (blocks, rest) = g.as_chunks::<LANES>();
    let mut acc = [T::ZERO; LANES];
    for block in blocks {
        for (a, &v) in acc.iter_mut().zip(block) {
            *a += v * T::ZERO;
        }
    }
    acc.iter().all(|a| *a == T::ZERO) && rest.iter().all(|v| v.is_finite())
}

/// Parameters added and scaled per reduction task.
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
            epochs: Vec::with_capacity(self.trainer.epochs.min(PRESIZED_EPOCHS)),
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
            let params = self.net.params_mut();
            params.as_mut_slice().copy_from_slice(best.as_slice());
            // the running statistics that went with the best weights
            params.buffers_mut().copy_from_slice(best.buffers());
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
        let k = self.parts.len();
        let mut loss_sum = 0.0;
        let mut correct = 0usize;
        let mut lr = self.base_lr;
        let mut trained = 0usize;
        for b in 0..n.div_ceil(self.batch) {
            let indices = &self.order[b * self.batch..((b + 1) * self.batch).min(n)];
            let len = indices.len();
            // batch norm: only whole batches (each one block, its statistics
            // the batch's); the rest of the shuffled set waits for an epoch
            // in which it falls into a whole batch
            if N::BATCH_NORM && len != self.batch {
                continue;
            }
            self.step += 1;
            trained += len;
            // The batch's blocks, dealt to `parts` parts: a function of the
            // batch length and the settings only (never of the threads).
            let blocks = Blocks::new(self.widths, len);
            // dropout masks: a function of the seed, the step and the sample
            let step_seed = sample_seed(self.trainer.seed, self.step);
            let count = blocks.count();
            let parts = k.min(count);
            let net: &N = self.net;
            let train = self.train;
            for_each_part(
                self.parallel,
                &mut self.parts[..parts],
                &mut self.grads[..parts],
                |c, p, grads| {
                    p.stats = ChunkStats::default();
                    grads.fill_zero();
                    let range = part(count, parts, c);
                    train_part(net, train, indices, blocks, range, p, grads, step_seed);
                },
            );
            let used = &self.parts[..parts];
            if let Some((sample, loss)) = used.iter().find_map(|p| p.stats.bad) {
                return Err(TrainError::NonFiniteLoss {
                    epoch,
                    step: self.step,
                    sample,
                    loss,
                });
            }
            let scale = N::Scalar::from_f64(1.0 / len as f64);
            let finite = reduce_and_scale(self.parallel, &mut self.grads[..parts], scale);
            let g = self.grads[0].as_mut_slice();
            if !finite {
                let i = g.iter().position(|v| !v.is_finite()).unwrap_or(0);
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
            // The new parameters go to the second buffer; they replace the
            // network's only if every one (and the optimiser's new state) is
            // finite, so a failed step leaves the last finite parameters.
            let finite = self.trainer.optimizer.step_into(
                self.net.params().as_slice(),
                self.grads[0].as_slice(),
                self.spare.as_mut_slice(),
            );
            if !finite {
                let new = self.spare.as_slice();
                return Err(match new.iter().position(|v| !v.is_finite()) {
                    Some(i) => {
                        let (param, index) = locate_param(N::PARAM_INFO, i);
                        TrainError::NonFiniteUpdate {
                            epoch,
                            step: self.step,
                            param,
                            index,
                            value: new[i].to_f64(),
                        }
                    }
                    None => TrainError::NonFiniteOptimizerState {
                        epoch,
                        step: self.step,
                        optimizer: self.trainer.optimizer.name(),
                    },
                });
            }
            self.net.swap_params(&mut self.spare);
            if N::BATCH_NORM {
                // the batch was one block, run by the first part
                if let Some(work) = self.parts[0].scratch.work.as_deref_mut() {
                    self.net.update_block_stats(work, len);
                }
            }
            for p in &self.parts[..parts] {
                loss_sum += p.stats.loss;
                correct += p.stats.correct;
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
                let blocks = Blocks::new(self.widths, len);
                let count = blocks.count();
                let parts = k.min(count);
                for_each_part(
                    self.parallel,
                    &mut self.parts[..parts],
                    &mut self.grads[..parts],
                    |c, p, _| {
                        p.stats = ChunkStats::default();
                        let range = part(count, parts, c);
                        eval_part(net, v, blocks, range, p);
                    },
                );
                let used = &self.parts[..parts];
                if let Some((sample, loss)) = used.iter().find_map(|p| p.stats.bad) {
                    return Err(TrainError::NonFiniteValidation {
                        epoch,
                        sample,
                        loss,
                    });
                }
                let loss: f64 = used.iter().map(|p| p.stats.loss).sum();
                let correct: usize = used.iter().map(|p| p.stats.correct).sum();
                (Some(loss / len as f64), Some(correct as f64 / len as f64))
            }
        };
        let mut report = EpochReport {
            epoch,
            loss: loss_sum / trained.max(1) as f64,
            accuracy: correct as f64 / trained.max(1) as f64,
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
                    best.buffers_mut()
                        .copy_from_slice(self.net.params().buffers());
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
            checkpoint::save_with_optimizer(&*self.net, &self.trainer.optimizer, path)
                .map_err(|error| TrainError::Checkpoint { epoch, error })?;
        }
        if let Some(bar) = &self.bar {
            bar.set_message(progress_message(&report));
        }
        report.duration = start.elapsed();
        if let Some(log) = &mut self.log {
            log.write(&report).map_err(|error| TrainError::Log {
                path: log.path().to_owned(),
                error,
            })?;
        }
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
    use crate::network::Zeroable;
    use crate::optim::{Adam, RmsProp, Sgd};
    use crate::testnet::{class_data, linear_data, Bug, LinParams, Linear, SeqSoftmax3, Softmax3};

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
        let e = evaluate(&net, &data).unwrap();
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
        assert!(matches!(
            Trainer::new(Sgd::new(0.1))
                .fit_with_validation(&mut net, &train, &Dataset::new(vec![], vec![]))
                .unwrap_err(),
            TrainError::EmptyData { set: "validation" }
        ));
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
        assert!(
            matches!(
                err,
                TrainError::NonFiniteGradient {
                    epoch: 1,
                    step: 1,
                    param: "b",
                    index: 0
                }
            ),
            "{err:?}"
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

    /// Wraps an optimiser, keeping the output of the last step it accepted.
    struct Keeps<O> {
        inner: O,
        kept: Option<Vec<f64>>,
    }

    impl<O: Optimizer<f64>> Optimizer<f64> for Keeps<O> {
        fn init(&mut self, n: usize) {
            self.inner.init(n);
        }
        fn step(&mut self, params: &mut [f64], grads: &[f64]) {
            self.inner.step(params, grads);
        }
        fn step_into(&mut self, params: &[f64], grads: &[f64], out: &mut [f64]) -> bool {
            let finite = self.inner.step_into(params, grads, out);
            if finite {
                self.kept = Some(out.to_vec());
            }
            finite
        }
        fn check_settings(&self) -> Result<(), SettingError> {
            self.inner.check_settings()
        }
        fn learning_rate(&self) -> Option<f64> {
            self.inner.learning_rate()
        }
        fn set_learning_rate(&mut self, lr: f64) {
            self.inner.set_learning_rate(lr);
        }
        fn name(&self) -> &'static str {
            self.inner.name()
        }
        fn state(&self) -> Vec<(&'static str, &[f64])> {
            self.inner.state()
        }
        fn steps(&self) -> u64 {
            self.inner.steps()
        }
    }

    fn flat(net: &Linear) -> Vec<f64> {
        net.params.as_slice().to_vec()
    }

    #[test]
    fn a_failed_step_leaves_the_last_finite_parameters() {
        let data = linear_data(16, 11);
        let optimisers: Vec<(&str, Box<dyn Optimizer<f64> + Send>)> = vec![
            ("sgd 1e300", Box::new(Sgd::new(1e300))),
            ("sgd max", Box::new(Sgd::new(f64::MAX))),
            ("sgd 1e154", Box::new(Sgd::new(1e154))),
            ("momentum 1e200", Box::new(Sgd::new(1e200).momentum(0.9))),
            ("adam max", Box::new(Adam::new(f64::MAX))),
            ("adam 1e300", Box::new(Adam::new(1e300))),
            ("rmsprop 1e300", Box::new(RmsProp::new(1e300).momentum(0.5))),
        ];
        let (mut updates, mut mid_run) = (0, 0);
        for (name, opt) in optimisers {
            let mut net = Linear::with([0.5, -0.5], 0.25);
            let start = flat(&net);
            let mut keeps = Keeps {
                inner: opt,
                kept: None,
            };
            let err = Trainer::new(&mut keeps)
                .epochs(20)
                .batch_size(4)
                .fit(&mut net, &data)
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    TrainError::NonFiniteUpdate { .. }
                        | TrainError::NonFiniteLoss { .. }
                        | TrainError::NonFiniteGradient { .. }
                ),
                "{name}: {err}"
            );
            updates += usize::from(matches!(err, TrainError::NonFiniteUpdate { .. }));
            mid_run += usize::from(keeps.kept.is_some());
            // Exactly the output of the last step kept (or the start).
            let last = keeps.kept.clone().unwrap_or(start);
            assert_eq!(flat(&net), last, "{name}: {err}");
            assert!(flat(&net).iter().all(|v| v.is_finite()), "{name}");
        }
        // Both kinds happened: an update refused, and failures after good steps.
        assert!(updates > 0 && mid_run > 0, "{updates} {mid_run}");

        // A step straight to infinity: named, not taken, optimiser untouched.
        let mut net = Linear::with([0.5, -0.5], 0.25);
        let before = *net.params;
        let mut trainer = Trainer::new(Adam::new(f64::MAX));
        let err = trainer.fit(&mut net, &data).unwrap_err();
        let TrainError::NonFiniteUpdate {
            epoch: 1,
            step: 1,
            param: "w",
            index: 0,
            value,
        } = err
        else {
            panic!("{err:?}")
        };
        assert!(value.is_infinite());
        assert!(
            err.to_string().starts_with(&format!(
                "the update at epoch 1, step 1 would set `w` (element 0) to {value}; \
                 the step was not taken and the parameters are as before it"
            )),
            "{err}"
        );
        assert_eq!(*net.params, before);
        let opt = trainer.optimizer();
        assert_eq!(Optimizer::<f64>::steps(opt), 0);
        for (_, s) in Optimizer::<f64>::state(opt) {
            assert!(s.iter().all(|v| *v == 0.0), "state moved: {s:?}");
        }
    }

    #[test]
    fn invalid_settings_are_errors_before_any_work() {
        let data = linear_data(8, 1);
        let dir = std::env::temp_dir().join(format!("nn-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        type Dyn = Box<dyn Optimizer<f64> + Send>;
        let cases: Vec<(Trainer<Dyn>, &str)> = {
            let t = |o: Dyn| Trainer::new(o);
            let sgd = || -> Dyn { Box::new(Sgd::new(0.1)) };
            vec![
                (t(Box::new(Sgd::new(f64::NAN))), "Sgd::lr"),
                (t(Box::new(Sgd::new(-1.0))), "Sgd::lr"),
                (t(Box::new(Adam::new(0.1).eps(0.0))), "Adam::eps"),
                (t(Box::new(Adam::new(0.1).betas(0.9, 1.0))), "Adam::beta2"),
                (t(sgd()).chunks(0), "Trainer::chunks"),
                (t(sgd()).chunks(MAX_CHUNKS + 1), "Trainer::chunks"),
                (t(sgd()).chunks(usize::MAX), "Trainer::chunks"),
                (t(sgd()).threads(max_threads() + 1), "Trainer::threads"),
                (t(sgd()).threads(usize::MAX), "Trainer::threads"),
                (t(sgd()).clip(Clip::Value(-1.0)), "Clip::Value"),
                (t(sgd()).clip(Clip::Norm(f64::NAN)), "Clip::Norm"),
                (
                    t(sgd()).schedule(Schedule::Step {
                        every: 0,
                        gamma: 0.5,
                    }),
                    "Schedule::Step::every",
                ),
                (
                    t(sgd()).schedule(Schedule::cosine(0, 0)),
                    "Schedule::Cosine::total",
                ),
                (
                    t(sgd()).early_stopping(EarlyStopping::new(Metric::Loss, 0)),
                    "EarlyStopping::patience",
                ),
                (
                    t(sgd()).early_stopping(EarlyStopping::new(Metric::Loss, 3).min_delta(-1.0)),
                    "EarlyStopping::min_delta",
                ),
                (t(sgd()).checkpoint(""), "Trainer::checkpoint"),
                (t(sgd()).checkpoint(&dir), "Trainer::checkpoint"),
                (
                    t(sgd()).checkpoint(dir.join("no/such/dir/x.safetensors")),
                    "Trainer::checkpoint",
                ),
            ]
        };
        for (mut trainer, setting) in cases {
            let mut net = Linear::with([1.0, 2.0], 3.0);
            let err = trainer.fit(&mut net, &data).unwrap_err();
            match &err {
                TrainError::InvalidSetting(e) => assert_eq!(e.setting, setting, "{err}"),
                other => panic!("{setting}: {other:?}"),
            }
            assert!(err.to_string().starts_with("invalid setting: `"), "{err}");
            assert_eq!(
                *net.params,
                LinParams {
                    w: [1.0, 2.0],
                    b: [3.0]
                }
            );
        }
        // The optimiser is not even initialised.
        let mut rec = Recorder::default();
        let mut net = Linear::with([1.0, 2.0], 3.0);
        let err = Trainer::new(&mut rec)
            .chunks(0)
            .fit(&mut net, &data)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid setting: `Trainer::chunks` is 0; it must be from 1 to 256"
        );
        assert!(rec.inits.is_empty());
        let msg = Trainer::new(Sgd::new(0.1))
            .threads(1_000_000)
            .fit(&mut net, &data)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with(&format!(
                "invalid setting: `Trainer::threads` is 1000000; it must be at most {}",
                max_threads()
            )),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_limits_themselves_are_accepted() {
        let data = linear_data(12, 2);
        let run = |threads: usize, chunks: usize| {
            let mut net = Linear::with([0.0, 0.0], 0.0);
            Trainer::new(Sgd::new(0.1))
                .epochs(3)
                .batch_size(4)
                .threads(threads)
                .chunks(chunks)
                .quiet()
                .fit(&mut net, &data)
                .unwrap();
            *net.params
        };
        // As many threads as allowed, as many chunks as allowed (only as
        // many parts as a batch has samples are allocated): same weights.
        assert_eq!(run(max_threads(), MAX_CHUNKS), run(1, MAX_CHUNKS));
        assert_eq!(run(1, MAX_CHUNKS), run(1, 4));
        // A batch size beyond the data is full batch.
        let mut net = Linear::with([0.0, 0.0], 0.0);
        let mut rec = Recorder::default();
        Trainer::new(&mut rec)
            .batch_size(usize::MAX)
            .fit(&mut net, &data)
            .unwrap();
        assert_eq!(rec.steps, 1);
    }

    #[test]
    fn nothing_is_sized_by_the_epoch_count() {
        let data = linear_data(8, 3);
        // "Until early stopping": with nothing to learn it stops after
        // patience + 1 epochs; no capacity overflow, no 96 GB report.
        for epochs in [usize::MAX, 1_000_000_000] {
            let mut net = Linear::with([0.0, 0.0], 0.0);
            let report = Trainer::new(Sgd::new(0.0))
                .epochs(epochs)
                .early_stopping(EarlyStopping::new(Metric::Loss, 2))
                .fit(&mut net, &data)
                .unwrap();
            assert_eq!(report.epochs.len(), 3);
            assert_eq!(report.stopped_early, Some(3));
        }
        // The iterator without early stopping runs as long as it is asked.
        let mut net = Linear::with([0.0, 0.0], 0.0);
        let mut trainer = Trainer::new(Sgd::new(0.1)).epochs(usize::MAX);
        let epochs: Vec<_> = trainer
            .train(&mut net, &data, None)
            .unwrap()
            .take(5)
            .map(|r| r.unwrap().epoch)
            .collect();
        assert_eq!(epochs, [1, 2, 3, 4, 5]);
        // The progress bar's length: none when it would overflow.
        assert_eq!(bar_length(usize::MAX, 3), None);
        assert_eq!(bar_length(usize::MAX, 1), u64::try_from(usize::MAX).ok());
        assert_eq!(bar_length(1_000_000_000, 40), Some(40_000_000_000));
        assert_eq!(bar_length(usize::MAX / 2, 3), None);
    }

    #[test]
    fn a_non_finite_validation_loss_is_an_error_naming_the_sample() {
        let train = linear_data(16, 4);
        let mut val = linear_data(6, 5);
        val.targets[3] = [f64::NAN];
        let mut net = Linear::with([0.0, 0.0], 0.0);
        let err = Trainer::new(Sgd::new(0.1))
            .epochs(10)
            .early_stopping(EarlyStopping::new(Metric::Loss, 2))
            .fit_with_validation(&mut net, &train, &val)
            .unwrap_err();
        let TrainError::NonFiniteValidation {
            epoch: 1,
            sample: 3,
            loss,
        } = err
        else {
            panic!("{err:?}")
        };
        assert!(loss.is_nan());
        assert_eq!(
            err.to_string(),
            "non-finite validation loss NaN after epoch 1 (validation sample 3); \
             check that sample's input and target"
        );
        // With several parts, the first bad sample in set order.
        val.targets[1] = [f64::INFINITY];
        let err = Trainer::new(Sgd::new(0.1))
            .chunks(3)
            .threads(2)
            .fit_with_validation(&mut net, &train, &val)
            .unwrap_err();
        assert!(
            matches!(err, TrainError::NonFiniteValidation { sample: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn class_labels_are_checked_where_data_meets_the_network() {
        let (train, val) = class_data(60, 1).split(0.75, 2);
        // The test network indexes with the label, as generated code does:
        // unchecked, a bad label panics.
        let net = Softmax3::new(1);
        let bad =
            std::panic::catch_unwind(|| net.forward(&[0.0, 0.0], &3, &mut Softmax3::new_tape()));
        assert!(bad.is_err());

        let mut bad_train = train.clone();
        bad_train.targets[4] = 7;
        let mut net = Softmax3::new(1);
        let before = *net.params;
        let err = Trainer::new(Sgd::new(0.5))
            .fit(&mut net, &bad_train)
            .unwrap_err();
        assert!(
            matches!(
                &err,
                TrainError::InvalidTarget {
                    set: "training",
                    sample: 4,
                    error,
                } if *error == TargetError {
                    target: "label",
                    step: None,
                    position: None,
                    value: 7,
                    classes: 3
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "training sample 4: class label 7 of `label` is not below its 3 classes; \
             class indices must be in 0..3 (fix the data, or declare more classes)"
        );
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(*net.params, before);

        let mut bad_val = val.clone();
        bad_val.targets[2] = 3;
        let err = Trainer::new(Sgd::new(0.5))
            .fit_with_validation(&mut net, &train, &bad_val)
            .unwrap_err();
        assert!(
            matches!(
                err,
                TrainError::InvalidTarget {
                    set: "validation",
                    sample: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(*net.params, before);
        let err = evaluate(&net, &bad_val).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "evaluation sample 2: class label 3 of `label` is not below its 3 classes"
            ),
            "{err}"
        );

        // Good labels: the classifier learns.
        let report = Trainer::new(Adam::new(0.1))
            .epochs(100)
            .batch_size(8)
            .quiet()
            .fit_with_validation(&mut net, &train, &val)
            .unwrap();
        assert!(report.last().unwrap().accuracy > 0.9, "{report:?}");
        assert!(evaluate(&net, &val).unwrap().accuracy > 0.8);

        // Per-step targets name the step.
        let seq = Dataset::new(
            vec![[[0.1, 0.2], [0.3, -0.4], [-0.5, 0.6]]; 3],
            vec![[0, 1, 2], [2, 1, 0], [0, 1, 5]],
        );
        let mut net = SeqSoftmax3::new(2);
        let err = Trainer::new(Sgd::new(0.1)).fit(&mut net, &seq).unwrap_err();
        assert_eq!(
            err.to_string(),
            "training sample 2: class label 5 of `label` at step 2 is not below its 3 classes; \
             class indices must be in 0..3 (fix the data, or declare more classes)"
        );
        // Without the bad sample it trains (through the default `swap_params`).
        let good = seq.subset(&[0, 1]);
        let before = *net.inner.params;
        Trainer::new(Sgd::new(0.1))
            .epochs(2)
            .fit(&mut net, &good)
            .unwrap();
        assert_ne!(*net.inner.params, before);
    }

    #[test]
    fn evaluating_bad_sets_is_an_error() {
        let net = Linear::new(1);
        let empty: Dataset<[f64; 2], [f64; 1]> = Dataset::new(vec![], vec![]);
        assert!(matches!(
            evaluate(&net, &empty).unwrap_err(),
            TrainError::EmptyData { set: "evaluation" }
        ));
        let uneven = Dataset {
            inputs: vec![[0.0, 0.0]; 3],
            targets: vec![[0.0]; 2],
        };
        assert_eq!(
            evaluate(&net, &uneven).unwrap_err().to_string(),
            "the evaluation set has 3 inputs but 2 targets"
        );
    }

    #[test]
    fn batches_are_cut_widest_blocks_first_then_single_samples() {
        let cut = |widths: &'static [usize], len: usize| {
            let blocks = Blocks::new(widths, len);
            let all: Vec<_> = (0..blocks.count()).map(|b| blocks.get(b)).collect();
            // The blocks cover the batch in order.
            let mut next = 0;
            for (r, _) in &all {
                assert_eq!(r.start, next, "{widths:?} {len}");
                next = r.end;
            }
            assert_eq!(next, len);
            all.iter()
                .map(|(r, batched)| (r.len(), *batched))
                .collect::<Vec<_>>()
        };
        let (b32, b4, one) = ((32, true), (4, true), (1, false));
        assert_eq!(cut(&[32, 4], 41), [b32, b4, b4, one]);
        assert_eq!(cut(&[32, 4], 64), [b32, b32]);
        assert_eq!(cut(&[32, 4], 30), [b4, b4, b4, b4, b4, b4, b4, one, one]);
        assert_eq!(cut(&[32, 4], 3), [one, one, one]);
        assert_eq!(cut(&[32, 4], 0), []);
        assert_eq!(cut(&[8], 17), [(8, true), (8, true), one]);
        // The per-sample path: every sample a block of its own.
        assert_eq!(cut(&[], 3), [one, one, one]);
        // A width of 0 would be a bug; it is skipped, not divided by.
        assert_eq!(cut(&[0, 4], 5), [b4, one]);
        // Dealt to parts: consecutive runs of blocks; on the per-sample
        // path exactly the positional parts of the batch.
        for len in [1, 5, 8, 41, 100] {
            let blocks = Blocks::new(&[], len);
            let parts = 8.min(blocks.count());
            for c in 0..parts {
                let r = part(blocks.count(), parts, c);
                let first = blocks.get(r.start).0.start;
                let last = blocks.get(r.end - 1).0.end;
                assert_eq!(first..last, part(len, parts, c));
            }
        }
    }

    /// A gradient buffer of 10,000 `f64`s (three reduction blocks).
    #[repr(C)]
    struct Big([f64; 10_000]);
    // SAFETY: only `f64`s.
    unsafe impl Zeroable for Big {}
    // SAFETY: `#[repr(C)]`, 10,000 `f64`s.
    unsafe impl Flat<f64> for Big {
        const LEN: usize = 10_000;
    }

    #[test]
    fn reducing_and_scaling_is_the_sum_in_part_order_times_the_scale() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let mut rng = Rng::new(3);
        let bad = [(0, f64::NAN), (9_999, f64::INFINITY), (5_000, 1e308)];
        for parts in 1..=3 {
            for poison in [None, Some(0), Some(1), Some(2)] {
                let mut grads: Vec<Box<Big>> = (0..parts).map(|_| Big::zeroed_box()).collect();
                for g in &mut grads {
                    for v in g.as_mut_slice() {
                        *v = rng.uniform(-1.0, 1.0);
                    }
                }
                if let Some(p) = poison {
                    let (i, v) = bad[p];
                    grads[parts - 1].0[i] = v;
                }
                let want: Vec<f64> = (0..10_000)
                    .map(|i| {
                        let mut s = grads[0].0[i];
                        for g in &grads[1..] {
                            s += g.0[i];
                        }
                        s * 4.0
                    })
                    .collect();
                let finite = want.iter().all(|v| v.is_finite());
                assert_eq!(finite, poison.is_none());
                for parallel in [false, true] {
                    let mut g: Vec<Box<Big>> = grads
                        .iter()
                        .map(|b| {
                            let mut c = Big::zeroed_box();
                            c.0 = b.0;
                            c
                        })
                        .collect();
                    // The baseline loop (what CPUs without AVX run) agrees.
                    let mut base = g[0].0;
                    let base_finite = sum_and_scale_body(&mut base, &g[1..], 0, 4.0);
                    let got = pool.install(|| reduce_and_scale(parallel, &mut g, 4.0));
                    assert_eq!(got, finite, "{parts} {poison:?} {parallel}");
                    assert_eq!(base_finite, finite);
                    assert!(base
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()));
                    let same = g[0]
                        .0
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{parts} {poison:?} {parallel}");
                }
            }
        }
    }

    #[test]
    fn scaling_checks_every_element() {
        for n in [0, 5, 16, 37, 100] {
            let mut g: Vec<f64> = (0..n).map(|i| i as f64).collect();
            assert!(scale_all_finite(&mut g, 0.5));
            assert_eq!(g, (0..n).map(|i| i as f64 * 0.5).collect::<Vec<_>>());
            for i in 0..n {
                for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                    let mut g = vec![1.0; n];
                    g[i] = bad;
                    assert!(!scale_all_finite(&mut g, 0.5), "{n} {i} {bad}");
                }
                // Overflow by the scaling itself.
                let mut g = vec![1.0f32; n];
                g[i] = f32::MAX;
                assert!(!scale_all_finite(&mut g, 4.0), "{n} {i}");
            }
        }
    }

    #[test]
    fn log_to_writes_one_record_per_epoch_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("nn-log-to-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data = linear_data(20, 4);
        let (train, val) = data.split(0.75, 1);
        let path = dir.join("run.csv");
        let mut net = Linear::with([0.0, 0.0], 0.0);
        let report = Trainer::new(Sgd::new(0.1))
            .epochs(3)
            .batch_size(5)
            .log_to(&path)
            .quiet()
            .fit_with_validation(&mut net, &train, &val)
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("epoch,loss,accuracy,val_loss"));
        for (line, epoch) in lines[1..].iter().zip(&report.epochs) {
            let fields: Vec<f64> = line.split(',').map(|f| f.parse().unwrap()).collect();
            assert_eq!(fields[0], epoch.epoch as f64);
            assert_eq!(fields[1], epoch.loss);
            assert_eq!(Some(fields[3]), epoch.val_loss);
        }
        let missing = dir.join("no/such/dir/run.jsonl");
        let err = Trainer::new(Sgd::new(0.1))
            .log_to(&missing)
            .quiet()
            .fit(&mut net, &train)
            .unwrap_err();
        assert!(matches!(err, TrainError::Log { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("{}: ", missing.display())),
            "{err}"
        );
        assert!(std::error::Error::source(&err)
            .unwrap()
            .is::<std::io::Error>());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
