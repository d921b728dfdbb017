//! The `Network` trait: what every `#[network]` struct implements, and what the
//! runtime (training loop, optimisers, gradient check) drives.

use crate::float::Float;
#[cfg(feature = "alloc")]
use alloc::boxed::Box;
use core::fmt;

/// A target (or a class-index input) that does not fit the network's
/// declaration: a class index at or above the class count of a `target
/// label: class[n]` or an `input tok: class[n]` (indexing with it would read
/// outside the network's arrays).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetError {
    /// The target's name in the definition (`label`).
    pub target: &'static str,
    /// For a per-step target (`label[t]`), the step `t` (0-based, the index
    /// into the target's array); `None` for a target of the whole sample.
    pub step: Option<usize>,
    /// For a vector of class indices (`target labels: class[n][k]`), the
    /// position of the one found in it; `None` for a single class index.
    pub position: Option<usize>,
    /// The class index found.
    pub value: usize,
    /// The number of classes declared.
    pub classes: usize,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "class label {} of `{}`", self.value, self.target)?;
        if let Some(position) = self.position {
            write!(f, " at position {position}")?;
        }
        if let Some(step) = self.step {
            write!(f, " at step {step}")?;
        }
        write!(f, " is not below its {} classes", self.classes)
    }
}

impl core::error::Error for TargetError {}

/// One parameter tensor of a network, as named in its definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamInfo {
    /// Name as in the definition: `w1`, or `h.weight` / `h.bias` for `dense` layers.
    pub name: &'static str,
    /// Shape, `[]` for a scalar, `[n]` for a vector, `[out, in]` for a matrix.
    pub shape: &'static [usize],
    /// Offset of the tensor's first element in the flat parameter view.
    pub offset: usize,
}

impl ParamInfo {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// `true` for a tensor with no elements (never produced by `#[network]`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index range of this tensor in the flat parameter view.
    pub fn range(&self) -> core::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// A plain-old-data buffer whose every bit pattern of zeros is a valid value,
/// so it can be allocated directly on the heap, zeroed, without passing
/// through the stack (a 784-128-10 network's parameters are 400 KB), or
/// be the initial value of a `static` without any code running.
///
/// # Safety
/// The all-zero bit pattern must be a valid value of `Self`: true of
/// (nested) arrays of `f32`, `f64` and integers, and of `#[repr(C)]` structs
/// of them, which is all `#[network]` generates.
pub unsafe trait Zeroable: Sized {
    /// The all-zero value, as a constant: the initialiser of a `static`
    /// (zeroed memory, `.bss`) or of a local, with no heap.
    // SAFETY: zeros are a valid `Self` (the trait's contract).
    const ZEROED: Self = unsafe { core::mem::zeroed() };

    /// A new zeroed value on the heap.
    #[cfg(feature = "alloc")]
    fn zeroed_box() -> Box<Self> {
        let layout = core::alloc::Layout::new::<Self>();
        if layout.size() == 0 {
            // SAFETY: zero-sized types need no allocation; a dangling, aligned
            // pointer is a valid Box for them.
            return unsafe { Box::from_raw(core::ptr::NonNull::<Self>::dangling().as_ptr()) };
        }
        // SAFETY: the layout is non-zero sized; zeros are a valid `Self`
        // (the trait's contract); the pointer comes from the global
        // allocator with `Self`'s layout, as `Box` requires.
        unsafe {
            let ptr = alloc::alloc::alloc_zeroed(layout) as *mut Self;
            if ptr.is_null() {
                alloc::alloc::handle_alloc_error(layout);
            }
            Box::from_raw(ptr)
        }
    }
}

/// A `#[repr(C)]` struct made only of `T` arrays, viewed as one flat `[T]`:
/// the parameter and gradient buffers of a network.
///
/// The first `LEN` elements are the parameters, which optimisers update and
/// gradients have; after them come `BUFFERS` elements of state that is
/// saved with the parameters but trained by no optimiser (the running
/// statistics of `batch_norm`; none in most networks). [`as_slice`]
/// (`Flat::as_slice`) views the parameters only; [`buffers`](Flat::buffers)
/// the rest.
///
/// # Safety
/// `Self` must be `#[repr(C)]` (or an array) with only `T` (or arrays of `T`)
/// fields, so it has no padding, and
/// `size_of::<Self>() == (LEN + BUFFERS) * size_of::<T>()`.
pub unsafe trait Flat<T: Float>: Zeroable {
    /// Number of parameter `T`s in the buffer.
    const LEN: usize;
    /// Number of buffer `T`s after the parameters.
    const BUFFERS: usize = 0;

    /// The parameters, in declaration order (the buffers left out).
    fn as_slice(&self) -> &[T] {
        assert_eq!(
            core::mem::size_of::<Self>(),
            (Self::LEN + Self::BUFFERS) * core::mem::size_of::<T>()
        );
        // SAFETY: by the trait's contract `Self` is exactly `LEN + BUFFERS` contiguous `T`s.
        unsafe { core::slice::from_raw_parts(self as *const Self as *const T, Self::LEN) }
    }

    /// The parameters, in declaration order, mutably.
    fn as_mut_slice(&mut self) -> &mut [T] {
        assert_eq!(
            core::mem::size_of::<Self>(),
            (Self::LEN + Self::BUFFERS) * core::mem::size_of::<T>()
        );
        // SAFETY: as in `as_slice`, and `&mut self` is unique.
        unsafe { core::slice::from_raw_parts_mut(self as *mut Self as *mut T, Self::LEN) }
    }

    /// The buffers after the parameters, in declaration order.
    fn buffers(&self) -> &[T] {
        assert_eq!(
            core::mem::size_of::<Self>(),
            (Self::LEN + Self::BUFFERS) * core::mem::size_of::<T>()
        );
        // SAFETY: as in `as_slice`; the buffers are the `BUFFERS` `T`s after the first `LEN`.
        unsafe {
            core::slice::from_raw_parts(
                (self as *const Self as *const T).add(Self::LEN),
                Self::BUFFERS,
            )
        }
    }

    /// The buffers, mutably.
    fn buffers_mut(&mut self) -> &mut [T] {
        assert_eq!(
            core::mem::size_of::<Self>(),
            (Self::LEN + Self::BUFFERS) * core::mem::size_of::<T>()
        );
        // SAFETY: as in `buffers`, and `&mut self` is unique.
        unsafe {
            core::slice::from_raw_parts_mut(
                (self as *mut Self as *mut T).add(Self::LEN),
                Self::BUFFERS,
            )
        }
    }

    /// Sets every element to zero (clears a gradient buffer between batches).
    fn fill_zero(&mut self) {
        self.as_mut_slice().fill(T::ZERO);
    }
}

/// The batched workspace of a network without batched passes: nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoBatch;

// SAFETY: a zero-sized type: every (empty) bit pattern is valid.
unsafe impl Zeroable for NoBatch {}

/// The panic of a batched call with a width the network is not compiled for.
#[cold]
pub fn no_batched_pass<N: Network>(width: usize) -> ! {
    panic!(
        "no batched pass of {width} samples (the network's batched widths: {:?})",
        N::BATCH_WIDTHS
    )
}

/// A network generated by `#[network]`: its parameters, its tape, and the
/// forward and backward passes of backpropagation.
///
/// The contract of backpropagation: `forward` runs once per sample and
/// stores in the tape what `backward` needs; `backward` runs once, last layer
/// first, and *adds* the sample's gradient into a gradient buffer, so that a
/// batch is the sum of its samples' backward passes; the optimiser updates the
/// parameters only after the whole batch.
pub trait Network: Sized + Send + Sync {
    /// The scalar type (`f32` unless the definition says `dtype f64`).
    type Scalar: Float;
    /// One sample's input: `[T; n]`, `[[T; c]; r]`, or a tuple of them for several inputs.
    type Input: Send + Sync;
    /// One sample's target: `[T; n]`, `usize` for a class index, or a tuple.
    type Target: Send + Sync;
    /// What `predict` returns: the definition's output tensor.
    type Output: Copy;
    /// All parameters; gradient buffers share this layout.
    type Params: Flat<Self::Scalar> + Send + Sync;
    /// What `forward` stores for `backward`, sized at compile time.
    type Tape: Zeroable + Send;
    /// The batched passes' workspace: one batch tape for each width of
    /// [`BATCH_WIDTHS`](Network::BATCH_WIDTHS), or [`NoBatch`] for a network
    /// without batched passes.
    type BatchWork: Zeroable + Send;

    /// Number of scalar parameters.
    const PARAMS: usize;
    /// Size of one tape in bytes.
    const TAPE_BYTES: usize;
    /// Floating-point operations of one forward pass (multiply and add count one each).
    const FORWARD_FLOPS: u64;
    /// Floating-point operations of one backward pass.
    const BACKWARD_FLOPS: u64;
    /// Every parameter tensor with its name, shape and flat offset, in order.
    const PARAM_INFO: &'static [ParamInfo];
    /// The numbers of samples the batched passes are compiled for, largest
    /// first; empty for a network without batched passes (a recurrent one,
    /// or one whose per-sample values are matrices).
    const BATCH_WIDTHS: &'static [usize] = &[];
    /// The inference graph for ONNX export, as `#[network]` describes it
    /// (see [`onnx`](crate::onnx)); a hand-written impl has none.
    #[doc(hidden)]
    const ONNX: crate::onnx::Export = crate::onnx::Export::Missing;

    /// A network with parameters initialised as declared, from `seed`.
    fn new(seed: u64) -> Self;
    /// The parameters.
    fn params(&self) -> &Self::Params;
    /// The parameters, mutably.
    fn params_mut(&mut self) -> &mut Self::Params;
    /// Inference: the output for one input; stores nothing.
    fn predict(&self, input: &Self::Input) -> Self::Output;
    /// Forward pass for one sample: returns the loss and fills `tape`.
    fn forward(
        &self,
        input: &Self::Input,
        target: &Self::Target,
        tape: &mut Self::Tape,
    ) -> Self::Scalar;
    /// Backward pass for the sample last passed to `forward` with this tape:
    /// adds `∂loss/∂θ` into `grads`.
    fn backward(&self, tape: &Self::Tape, grads: &mut Self::Params);
    /// Whether `output` counts as correct for `target` (accuracy): argmax
    /// against a class index or a one-hot vector; a single output is
    /// thresholded at one half against a 0/1 target.
    fn is_correct(output: &Self::Output, target: &Self::Target) -> bool;

    /// The first element of `input` that is NaN or infinite, as the input's
    /// name and the element's row-major index within it (with the step for
    /// a sequence: `step * len + i`); `None` when every element is finite.
    /// The trainer checks every input with it before training: an activation
    /// such as `relu` would otherwise turn a NaN into a finite number.
    fn non_finite_input(input: &Self::Input) -> Option<(&'static str, usize)> {
        let _ = input;
        None
    }

    /// Switches the dropout of `forward` with this tape on or off (networks
    /// without `dropout` ignore it). `Some(seed)`: the training mode, every
    /// `dropout(x, p)` zeroes each element with probability `p` and scales
    /// the rest by `1 / (1 - p)`, the mask drawn from `seed` (the sample's
    /// seed: the same seed, the same mask; the trainer passes
    /// [`dropout::sample_seed`](crate::dropout::sample_seed)`(step_seed, i)`
    /// for sample `i`). `None`: dropout is the identity (inference), the
    /// mode of a new tape. `predict` never applies dropout.
    fn set_dropout(tape: &mut Self::Tape, seed: Option<u64>) {
        let _ = (tape, seed);
    }

    /// [`set_dropout`](Network::set_dropout) for the batched passes'
    /// workspace: with `Some(step_seed)` the sample at index `i` of the data
    /// gets the mask `forward` would draw from `sample_seed(step_seed, i)`.
    fn set_dropout_batch(work: &mut Self::BatchWork, seed: Option<u64>) {
        let _ = (work, seed);
    }

    /// Every buffer tensor (the running statistics of `batch_norm`: saved
    /// and loaded with the parameters, trained by no optimiser), its offset
    /// in [`Flat::buffers`]. A `num_batches_tracked` counter is stored as a
    /// float in the network and as an `I64` scalar in checkpoints, as
    /// PyTorch's.
    const BUFFER_INFO: &'static [ParamInfo] = &[];

    /// Whether the network has a `batch_norm`: its training passes are the
    /// batched ones only, which normalise with each block's statistics
    /// (the trainer runs each batch as one block; see `Trainer`).
    const BATCH_NORM: bool = false;

    /// Moves the running statistics of every `batch_norm` towards the
    /// statistics of the last training block of `width` samples that ran
    /// in `work` ([`train_block`](Network::train_block)), and counts the
    /// batch: once per batch (a second call for the same block changes
    /// nothing). A network without `batch_norm` has none.
    fn update_block_stats(&mut self, work: &mut Self::BatchWork, width: usize) {
        let _ = (work, width);
    }

    /// Checks one input against the network's declaration: a class-index
    /// input (`input tok: class[n];`, a token for `embedding`) must be below
    /// its class count ([`TargetError`] names the input, and the step of a
    /// sequence). The trainer checks every input with it before training;
    /// `forward` and `predict` index the embedding's weight with the token
    /// as given, so an index out of range there panics (as a class target's
    /// does in `forward`).
    fn check_input(input: &Self::Input) -> Result<(), TargetError> {
        let _ = input;
        Ok(())
    }

    /// Checks one target against the network's declaration (a class index must be below its class count).
    fn check_target(target: &Self::Target) -> Result<(), TargetError> {
        let _ = target;
        Ok(())
    }

    /// Exchanges the network's parameters with `other` (the trainer's second
    /// parameter buffer, into which the optimiser wrote the next values).
    /// The default swaps the contents, element by element, through no
    /// temporary copy (a `core::mem::swap` of the whole struct needs a
    /// stack slot its size in debug builds: 400 KB for an MNIST-sized
    /// network); a network that keeps its parameters in a `Box` overrides
    /// it to swap the boxes, which costs nothing.
    #[cfg(feature = "alloc")]
    fn swap_params(&mut self, other: &mut Box<Self::Params>) {
        // the buffers are not the optimiser's: the new parameters keep them
        other.buffers_mut().copy_from_slice(self.params().buffers());
        self.params_mut()
            .as_mut_slice()
            .swap_with_slice(other.as_mut_slice());
    }

    /// A zeroed tape on the heap.
    #[cfg(feature = "alloc")]
    fn new_tape() -> Box<Self::Tape> {
        Self::Tape::zeroed_box()
    }
    /// A zeroed workspace for the batched passes, on the heap.
    #[cfg(feature = "alloc")]
    fn new_batch_work() -> Box<Self::BatchWork> {
        Self::BatchWork::zeroed_box()
    }
    /// The forward and backward passes of the samples `idx` of `inputs` and
    /// `targets` as one batched pass (one matrix product per layer): adds
    /// the sum of their gradients into `grads` (exactly what `forward` and
    /// `backward` for each would add), and writes each sample's loss into
    /// `losses[j]` and whether its output counts as correct into
    /// `correct[j]`. `idx.len()` is one of [`BATCH_WIDTHS`](Network::BATCH_WIDTHS).
    ///
    /// # Panics
    /// If `idx.len()` is not a compiled width (the default has none), or
    /// `losses` or `correct` is shorter than `idx`.
    #[allow(clippy::too_many_arguments)]
    fn train_block(
        &self,
        inputs: &[Self::Input],
        targets: &[Self::Target],
        idx: &[usize],
        work: &mut Self::BatchWork,
        grads: &mut Self::Params,
        losses: &mut [Self::Scalar],
        correct: &mut [bool],
    ) {
        let _ = (inputs, targets, work, grads, losses, correct);
        no_batched_pass::<Self>(idx.len())
    }
    /// The forward pass alone of the samples `idx` as one batched pass
    /// (evaluation): each sample's loss into `losses[j]`, whether its output
    /// counts as correct into `correct[j]`.
    ///
    /// # Panics
    /// As [`train_block`](Network::train_block).
    fn eval_block(
        &self,
        inputs: &[Self::Input],
        targets: &[Self::Target],
        idx: &[usize],
        work: &mut Self::BatchWork,
        losses: &mut [Self::Scalar],
        correct: &mut [bool],
    ) {
        let _ = (inputs, targets, work, losses, correct);
        no_batched_pass::<Self>(idx.len())
    }
    /// A zeroed gradient buffer on the heap.
    #[cfg(feature = "alloc")]
    fn new_grads() -> Box<Self::Params> {
        Self::Params::zeroed_box()
    }
    /// The output of the sample last passed to `forward` with this tape, if
    /// the tape holds it. The trainer then counts training accuracy from it
    /// instead of calling `predict` again; the default returns `None`.
    fn tape_output(tape: &Self::Tape) -> Option<Self::Output> {
        let _ = tape;
        None
    }

    /// Plain SGD for the sample last passed to `forward` with this tape,
    /// fused into its backward pass: the parameters move by
    /// `-lr · ∂loss/∂θ` as each gradient block is produced, with no
    /// gradient buffer (the same step as `backward` into zeroed gradients
    /// followed by `Sgd::new(lr)`'s update, up to rounding). Returns
    /// whether it did: feed-forward networks generate it; the default, for
    /// the others (recurrent networks, whose gradients sum over the steps),
    /// changes nothing and returns `false`.
    ///
    /// The update is in place: unlike the `Trainer`'s checked updates, a
    /// non-finite gradient reaches the parameters.
    fn sgd_step(&mut self, tape: &Self::Tape, lr: Self::Scalar) -> bool {
        let _ = (tape, lr);
        false
    }
    #[cfg(feature = "checkpoint")]
    /// Saves the parameters to a safetensors file at `path`, atomically
    /// (see [`checkpoint`](crate::checkpoint)).
    ///
    /// # Errors
    /// If the file cannot be written; a previous file at `path` is then intact.
    fn save_checkpoint(
        &self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<(), crate::checkpoint::CheckpointError> {
        crate::checkpoint::save(self, path)
    }
    #[cfg(feature = "checkpoint")]
    /// Loads the parameters from a safetensors file at `path`, checking every
    /// tensor's name, shape and dtype first (see [`checkpoint`](crate::checkpoint)).
    ///
    /// # Errors
    /// If the file cannot be read or does not match; the parameters are then unchanged.
    fn load_checkpoint(
        &mut self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<(), crate::checkpoint::CheckpointError> {
        crate::checkpoint::load(self, path)
    }
    #[cfg(feature = "onnx")]
    /// The network's inference graph (what `predict` computes) with its
    /// current parameters as an ONNX model (opset 17): protobuf bytes
    /// (see [`onnx`](crate::onnx)).
    ///
    /// # Errors
    /// If the graph has an operation ONNX cannot express (naming it), or a
    /// parameter is NaN or infinite.
    fn to_onnx(&self) -> Result<Vec<u8>, crate::onnx::OnnxError> {
        crate::onnx::to_bytes(self)
    }
    #[cfg(feature = "onnx")]
    /// Saves [`to_onnx`](Network::to_onnx)'s model to `path`, atomically
    /// (a temporary file renamed over it).
    ///
    /// # Errors
    /// As [`to_onnx`](Network::to_onnx), and if the file cannot be written
    /// (naming it); a previous file at `path` is then intact.
    fn save_onnx(&self, path: impl AsRef<std::path::Path>) -> Result<(), crate::onnx::OnnxError> {
        crate::onnx::save(self, path)
    }
    /// The loss for one sample, using `tape` as scratch.
    fn loss(
        &self,
        input: &Self::Input,
        target: &Self::Target,
        tape: &mut Self::Tape,
    ) -> Self::Scalar {
        self.forward(input, target, tape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_errors_name_the_target_the_step_and_the_classes() {
        let e = TargetError {
            target: "label",
            step: None,
            position: None,
            value: 12,
            classes: 10,
        };
        assert_eq!(
            e.to_string(),
            "class label 12 of `label` is not below its 10 classes"
        );
        let e = TargetError { step: Some(4), ..e };
        assert_eq!(
            e.to_string(),
            "class label 12 of `label` at step 4 is not below its 10 classes"
        );
        let e = TargetError {
            step: None,
            position: Some(3),
            ..e
        };
        assert_eq!(
            e.to_string(),
            "class label 12 of `label` at position 3 is not below its 10 classes"
        );
        let _: &dyn core::error::Error = &e;
    }
}
