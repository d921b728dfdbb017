//! The graph's operations: the `Op` enum (each variant's shape rule in its
//! doc) and its operand lists, read and rewritten through one list of the
//! variants.

use super::{Bcast, NodeId, Window};
use crate::scalar::S;

/// An operation. Shape rules in each variant's doc; `d` is an adjoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// The k-th declared input.
    Input(usize),
    /// The k-th declared target (a tensor, or a class index for `Pick`/`OneHot`).
    Target(usize),
    /// The k-th parameter.
    Param(usize),
    /// The k-th parameter's part of the vector `v` of a Hessian-vector
    /// product (`hvp`'s argument, shaped like the parameters).
    Tangent(usize),
    /// The backward pass's seed `∂loss/∂loss`, a scalar the caller gives:
    /// `1` for the gradient, `-lr` for a plain SGD step fused into the
    /// backward pass (every adjoint is linear in it).
    Seed,
    /// Elementwise: `out[i] = body(args[0][i], ...)`, operands broadcast as in `bcast`.
    /// Shape: the node's shape; each operand full, scalar, or a column vector.
    Map {
        /// The operands.
        args: Vec<NodeId>,
        /// How each operand is indexed.
        bcast: Vec<Bcast>,
        /// The scalar expression applied at each index.
        body: S,
    },
    /// `w · x`: `[m, k] · [k] -> [m]`.
    MatVec(NodeId, NodeId),
    /// `wᵀ · d`: `[m, k], [m] -> [k]`.
    MatVecT(NodeId, NodeId),
    /// `xᵀ · b`: `[k], [k, n] -> [n]`.
    VecMat(NodeId, NodeId),
    /// `a · b`: `[m, k] · [k, n] -> [m, n]`.
    MatMul(NodeId, NodeId),
    /// `d · bᵀ`: `[m, n], [k, n] -> [m, k]`.
    MatMulNT(NodeId, NodeId),
    /// `aᵀ · d`: `[m, k], [m, n] -> [k, n]`.
    MatMulTN(NodeId, NodeId),
    /// `u vᵀ`: `[m], [n] -> [m, n]`.
    Outer(NodeId, NodeId),
    /// `Σ a`: any shape -> `[]`.
    Sum(NodeId),
    /// Row sums, `out[i] = Σ_j a[i][j]`: `[m, n] -> [m]`.
    SumCols(NodeId),
    /// `z - logsumexp(z)`, computed stably: `[n] -> [n]`.
    LogSoftmax(NodeId),
    /// `a[t]` for a class-index target `t`: `[n], class -> []`.
    Pick(NodeId, NodeId),
    /// `d` at index `t`, zero elsewhere (the adjoint of `Pick`): `class, [] -> [n]`.
    OneHot(NodeId, NodeId),
    /// `d - exp(y) Σ d` for `y = log_softmax(z)` (the adjoint of `LogSoftmax`): `[n], [n] -> [n]`.
    LogSoftmaxGrad(NodeId, NodeId),
    /// Sum of same-shaped tensors (an adjoint with several contributions).
    AddN(Vec<NodeId>),
    /// `aᵀ`: `[m, n] -> [n, m]`.
    Transpose(NodeId),
    /// `a[start..start + len]` of a vector, `len` the node's size: `[n] -> [len]`.
    Slice(NodeId, usize),
    /// `a` placed at `start` in zeros of the node's size (the adjoint of `Slice`): `[k] -> [n]`.
    Pad(NodeId, usize),
    /// `a` then `b`: `[n], [m] -> [n + m]`.
    Concat(NodeId, NodeId),
    /// Column sums, `out[j] = Σ_i a[i][j]`: `[m, n] -> [n]`.
    SumRows(NodeId),
    /// `ln Σ exp(a)`, computed stably: any shape -> `[]`.
    LogSumExp(NodeId),
    /// `ln Σ exp(a)` along an axis of a matrix, each column (axis 0:
    /// `[m, n] -> [n]`) or row (axis 1: `[m, n] -> [m]`) shifted by its own
    /// maximum.
    LogSumExpAxis(NodeId, usize),
    /// One element of each column (axis 0: `out[j] = a[t[j]][j]`, `t` a
    /// class vector `[n]`) or row (axis 1: `out[i] = a[i][t[i]]`, `t: [m]`)
    /// of a matrix `a`, at class indices.
    PickAxis(NodeId, NodeId, usize),
    /// `d` placed at the class indices `t` along the axis, zero elsewhere
    /// (the adjoint of `PickAxis`): `class [n], [n] -> [m, n]` (axis 0).
    OneHotAxis(NodeId, NodeId, usize),
    /// Row `t` of a matrix, `t` a class index: `[n, k], class -> [k]`.
    Gather(NodeId, NodeId),
    /// `d` placed in row `t` of zeros (the adjoint of `Gather`): `class, [k] -> [n, k]`.
    Scatter(NodeId, NodeId),
    /// The mask of the k-th `dropout` of the definition, with drop
    /// probability `p` (its bits): `1 / (1 - p)` or 0 per element in a
    /// training pass, 1 elsewhere; a per-sample value with no operands.
    DropoutMask(usize, u64),
    /// The k-th `batch_norm` of the definition without its affine part,
    /// `(x - μ) / √(σ² + ε)` per channel of a vector `[c]`: in a batched
    /// training pass `μ` and `σ²` are the batch's mean and biased variance
    /// of each channel, elsewhere the running statistics: `[c] -> [c]`.
    BatchNorm(NodeId, usize),
    /// The adjoint of `BatchNorm(x, k)` reaching `x`, given the adjoint `d`
    /// of its result: `(d - mean_B(d) - x̂ mean_B(d x̂)) / √(σ² + ε)` over the
    /// batch in a batched training pass, `d / √(running σ² + ε)` elsewhere:
    /// `[c], [c] -> [c]`.
    BatchNormGrad(NodeId, NodeId, usize),
    /// `√(Σ a²)`, computed scaled by `max |a|` so that it neither overflows
    /// nor underflows where the result is representable: any shape -> `[]`.
    Norm(NodeId),
    /// The k-th state's value at the previous step (its initial value at the first).
    StatePrev(usize),
    /// `Σ_t a[t]` of a per-step value, after the loop.
    StepSum(NodeId),
    /// `a[T - 1]`, the last step's value, after the loop.
    Last(NodeId),
    /// Backward: the adjoint of the k-th state's new value that flows back from
    /// the next step (zero at the last step, and where truncation cuts).
    Carry(usize),
    /// Backward: a value computed before the loop, the same at every step.
    EachStep(NodeId),
    /// Backward: a value computed before the loop at the last step, zero elsewhere.
    AtLast(NodeId),
    /// Batched code: the sum over the samples of a mini-batch of a per-sample
    /// value (the gradient of a shared parameter): same shape.
    BatchSum(NodeId),
    /// The same elements, row-major, in the node's shape (same count).
    Reshape(NodeId),
    /// Cross-correlation (PyTorch's convolution) of an input `[c_in, (h,) w]`
    /// with a weight `[c_out, c_in, (kh,) kw]`: `[c_out, (oh,) ow]`.
    Conv(NodeId, NodeId, Window),
    /// A causal, stride-1 `Conv` of a signal at one position (the graph of
    /// `stream_step`): the current column `x` `[c_in]` and the weight give
    /// the output column `[c_out]`; the earlier columns the taps read come
    /// from the convolution's ring buffer in the stream state.
    ConvStep(NodeId, NodeId, Window),
    /// The adjoint of `Conv` with respect to its input (a transposed
    /// convolution of `d` by the weight): `d, weight -> [c_in, (h,) w]`.
    ConvInput(NodeId, NodeId, Window),
    /// The adjoint of `Conv` with respect to its weight (the correlation of
    /// the input with `d`): `x, d -> [c_out, c_in, (kh,) kw]`.
    ConvWeight(NodeId, NodeId, Window),
    /// The largest element of each window (per channel): `[c, (h,) w] -> [c, (oh,) ow]`.
    MaxPool(NodeId, Window),
    /// The adjoint of `MaxPool`: `d` routed to each window's first largest
    /// input element, recomputed from the input: `x, d -> x`'s shape.
    MaxPoolGrad(NodeId, NodeId, Window),
    /// `e` read at each window's first largest element of `x` (the adjoint
    /// of `MaxPoolGrad` with respect to `d`): `x, e -> [c, (oh,) ow]`.
    MaxPoolPick(NodeId, NodeId, Window),
    /// The mean of each window (padding counted as zeros): `[c, (h,) w] -> [c, (oh,) ow]`.
    AvgPool(NodeId, Window),
    /// The adjoint of `AvgPool`: each window's `d / window size` spread
    /// over it: `d -> [c, (h,) w]`.
    AvgPoolGrad(NodeId, Window),
}

/// Runs `$body` with `$a` bound to each operand of `$op`, in order: by
/// reference for `&Op`, by mutable reference for `&mut Op` (the match binds
/// as the scrutinee allows), so reading and rewriting operands share one
/// list of the variants.
macro_rules! each_operand {
    ($op:expr, $a:ident => $body:expr) => {
        match $op {
            Op::Input(_)
            | Op::Target(_)
            | Op::Param(_)
            | Op::Tangent(_)
            | Op::Seed
            | Op::StatePrev(_)
            | Op::DropoutMask(..)
            | Op::Carry(_) => {}
            Op::Map { args, .. } | Op::AddN(args) => {
                for $a in args {
                    $body;
                }
            }
            Op::Sum($a)
            | Op::SumCols($a)
            | Op::SumRows($a)
            | Op::LogSoftmax($a)
            | Op::LogSumExp($a)
            | Op::Norm($a)
            | Op::Transpose($a)
            | Op::Slice($a, _)
            | Op::LogSumExpAxis($a, _)
            | Op::StepSum($a)
            | Op::Last($a)
            | Op::EachStep($a)
            | Op::AtLast($a)
            | Op::BatchSum($a)
            | Op::Reshape($a)
            | Op::MaxPool($a, _)
            | Op::AvgPool($a, _)
            | Op::AvgPoolGrad($a, _)
            | Op::BatchNorm($a, _)
            | Op::Pad($a, _) => $body,
            Op::MatVec(x, y)
            | Op::MatVecT(x, y)
            | Op::VecMat(x, y)
            | Op::MatMul(x, y)
            | Op::MatMulNT(x, y)
            | Op::MatMulTN(x, y)
            | Op::Outer(x, y)
            | Op::Pick(x, y)
            | Op::OneHot(x, y)
            | Op::Concat(x, y)
            | Op::Conv(x, y, _)
            | Op::ConvStep(x, y, _)
            | Op::ConvInput(x, y, _)
            | Op::ConvWeight(x, y, _)
            | Op::MaxPoolGrad(x, y, _)
            | Op::MaxPoolPick(x, y, _)
            | Op::PickAxis(x, y, _)
            | Op::Gather(x, y)
            | Op::Scatter(x, y)
            | Op::OneHotAxis(x, y, _)
            | Op::BatchNormGrad(x, y, _)
            | Op::LogSoftmaxGrad(x, y) => {
                for $a in [x, y] {
                    $body;
                }
            }
        }
    };
}

/// An op's operands: at most two held inline, or the list of an n-ary op.
#[derive(Clone, Copy, Debug)]
pub enum Args<'a> {
    /// The first `.1` of the array.
    Fixed([NodeId; 2], usize),
    /// A `map` or `add_n`'s operands.
    Many(&'a [NodeId]),
}

impl Args<'_> {
    /// The operands as a slice.
    pub fn as_slice(&self) -> &[NodeId] {
        match self {
            Args::Fixed(a, n) => &a[..*n],
            Args::Many(s) => s,
        }
    }

    /// The operands, by reference.
    pub fn iter(&self) -> std::slice::Iter<'_, NodeId> {
        self.as_slice().iter()
    }
}

impl<'a> IntoIterator for Args<'a> {
    type Item = NodeId;
    type IntoIter = ArgsIter<'a>;
    fn into_iter(self) -> ArgsIter<'a> {
        ArgsIter {
            args: self,
            next: 0,
        }
    }
}

/// The operands by value, from [`Op::args`].
pub struct ArgsIter<'a> {
    args: Args<'a>,
    next: usize,
}

impl Iterator for ArgsIter<'_> {
    type Item = NodeId;
    fn next(&mut self) -> Option<NodeId> {
        let a = self.args.as_slice().get(self.next).copied();
        self.next += 1;
        a
    }
}

impl Op {
    /// The operands, in order (without allocating: the graph passes ask
    /// for them once per node, many times over).
    pub fn args(&self) -> Args<'_> {
        if let Op::Map { args, .. } | Op::AddN(args) = self {
            return Args::Many(args);
        }
        let (mut fixed, mut n) = ([0; 2], 0);
        each_operand!(self, a => {
            fixed[n] = *a;
            n += 1;
        });
        Args::Fixed(fixed, n)
    }

    /// Rewrites every operand through `f`.
    pub fn map_args(&mut self, f: impl Fn(NodeId) -> NodeId) {
        each_operand!(self, a => *a = f(*a));
    }

    /// The two factors of a product (`matvec`, `matvec_t`, `vecmat`, the
    /// three `matmul`s, `outer`), linear in each.
    pub fn product(&self) -> Option<(NodeId, NodeId)> {
        match *self {
            Op::MatVec(a, b)
            | Op::MatVecT(a, b)
            | Op::VecMat(a, b)
            | Op::MatMul(a, b)
            | Op::MatMulNT(a, b)
            | Op::MatMulTN(a, b)
            | Op::Outer(a, b) => Some((a, b)),
            _ => None,
        }
    }

    /// A short lowercase name, used in s-expressions and generated local names.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input(_) => "input",
            Op::Target(_) => "target",
            Op::Param(_) => "param",
            Op::Tangent(_) => "tangent",
            Op::Seed => "seed",
            Op::Map { .. } => "map",
            Op::MatVec(..) => "matvec",
            Op::MatVecT(..) => "matvec_t",
            Op::VecMat(..) => "vecmat",
            Op::MatMul(..) => "matmul",
            Op::MatMulNT(..) => "matmul_nt",
            Op::MatMulTN(..) => "matmul_tn",
            Op::Outer(..) => "outer",
            Op::Sum(_) => "sum",
            Op::SumCols(_) => "sum_cols",
            Op::LogSoftmax(_) => "log_softmax",
            Op::Pick(..) => "pick",
            Op::OneHot(..) => "one_hot",
            Op::LogSoftmaxGrad(..) => "log_softmax_grad",
            Op::AddN(_) => "add_n",
            Op::Transpose(_) => "transpose",
            Op::Slice(..) => "slice",
            Op::Pad(..) => "pad",
            Op::Concat(..) => "concat",
            Op::SumRows(_) => "sum_rows",
            Op::LogSumExp(_) => "logsumexp",
            Op::LogSumExpAxis(..) => "logsumexp_axis",
            Op::PickAxis(..) => "pick_axis",
            Op::OneHotAxis(..) => "one_hot_axis",
            Op::Gather(..) => "gather",
            Op::Scatter(..) => "scatter",
            Op::DropoutMask(..) => "dropout_mask",
            Op::BatchNorm(..) => "batch_norm",
            Op::BatchNormGrad(..) => "batch_norm_grad",
            Op::Norm(_) => "norm",
            Op::StatePrev(_) => "prev",
            Op::StepSum(_) => "step_sum",
            Op::Last(_) => "last",
            Op::Carry(_) => "carry",
            Op::EachStep(_) => "each_step",
            Op::AtLast(_) => "at_last",
            Op::BatchSum(_) => "batch_sum",
            Op::Reshape(_) => "reshape",
            Op::Conv(..) => "conv",
            Op::ConvStep(..) => "conv_step",
            Op::ConvInput(..) => "conv_input",
            Op::ConvWeight(..) => "conv_weight",
            Op::MaxPool(..) => "max_pool",
            Op::MaxPoolGrad(..) => "max_pool_grad",
            Op::MaxPoolPick(..) => "max_pool_pick",
            Op::AvgPool(..) => "avg_pool",
            Op::AvgPoolGrad(..) => "avg_pool_grad",
        }
    }
}
