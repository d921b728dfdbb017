//! The op table: every built-in function of the language and every tensor
//! operation of the graph, each declared once, in the file of its family,
//! with all that the stages need of it:
//!
//! - for a built-in function (`Builtin`): its name, arity, signature (for
//!   messages) and lowering (which checks the shapes: the shape rule);
//! - for a graph operation (`ir::Op`): its vector-Jacobian product (`vjp`),
//!   its emission, one description for the per-sample and the batched code
//!   (`emit`), its floating-point cost (`flops`), its maths for the docs
//!   (`math`) and its reference value (`eval`, for the interpreter the
//!   tests run).
//!
//! The stages never match on a function's name: lowering looks the name up
//! here, differentiation, emission and costing dispatch on the op's family
//! below. Adding an elementwise primitive is one entry of
//! [`elementwise::FUNCS`]; adding a composite elementwise function is one
//! [`Builtin`] of [`elementwise::BUILTINS`].

pub mod batchnorm;
pub mod conv;
pub mod derivative;
pub mod dropout;
pub mod elementwise;
pub mod embedding;
pub mod layers;
pub mod linalg;
pub mod loss;
pub mod pool;
pub mod prims;
pub mod recurrent;
pub mod reduce;
pub mod reshape;
pub mod slicing;
pub mod softmax;
pub mod window;

use crate::emit::ex::Ex;
use crate::emit::Mode;
use crate::emit::Place;
use crate::ir::*;
use crate::lower::{Cx, Lowered};
use crate::scalar::S;
use nn_grammar::{Expr, KeywordArg, Span};

/// A function of the definition language.
#[derive(Clone, Copy)]
pub struct Builtin {
    /// Its name.
    pub name: &'static str,
    /// The fewest arguments it takes.
    pub min_args: usize,
    /// The most arguments it takes.
    pub max_args: usize,
    /// How it is called, for messages: `leaky_relu(x)` or `leaky_relu(x, alpha)`.
    pub signature: &'static str,
    /// How it becomes graph operations.
    pub lower: Lower,
}

/// How a built-in function is lowered.
#[derive(Clone, Copy)]
pub enum Lower {
    /// An elementwise primitive of [`elementwise::FUNCS`] applied to one tensor.
    Primitive(crate::scalar::Func),
    /// An elementwise function of one tensor: its scalar body, in terms of
    /// `S::Arg(0)`; differentiated symbolically like any other body.
    Unary(fn() -> S),
    /// Its own lowering: the context, the name as called, the arguments and
    /// the call's span. It checks the arguments' shapes and reports errors.
    Custom(fn(&mut Cx, &str, &[Expr], Span) -> Lowered),
    /// Its own lowering, given keyword arguments too (`stride = 2`), of
    /// the names listed (any other is reported before it is called, as is
    /// one given twice).
    Keywords(
        fn(&mut Cx, &str, &[Expr], &[KeywordArg], Span) -> Lowered,
        &'static [&'static str],
    ),
}

/// Every built-in function, family by family.
fn tables() -> [&'static [Builtin]; 15] {
    [
        elementwise::BUILTINS,
        derivative::BUILTINS,
        slicing::BUILTINS,
        linalg::BUILTINS,
        reduce::BUILTINS,
        softmax::BUILTINS,
        loss::BUILTINS,
        layers::BUILTINS,
        embedding::BUILTINS,
        dropout::BUILTINS,
        batchnorm::BUILTINS,
        recurrent::BUILTINS,
        reshape::BUILTINS,
        conv::BUILTINS,
        pool::BUILTINS,
    ]
}

/// The built-in function called `name`: a callable primitive of
/// [`elementwise::FUNCS`] or an entry of a family's table.
pub fn builtin(name: &str) -> Option<Builtin> {
    elementwise::callable(name).or_else(|| {
        tables()
            .into_iter()
            .flatten()
            .find(|b| b.name == name)
            .copied()
    })
}

/// The names of every built-in function (for "did you mean" and to keep
/// user functions from shadowing them).
pub fn builtin_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = elementwise::callable_names();
    names.extend(tables().into_iter().flatten().map(|b| b.name));
    names
}

/// The family an op belongs to: the one place that names every op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// Inputs, targets, parameters: values from outside.
    Leaf,
    Elementwise,
    Linalg,
    Reduce,
    Softmax,
    Loss,
    Slicing,
    Embedding,
    Dropout,
    BatchNorm,
    Recurrent,
    Reshape,
    Conv,
    Pool,
}

fn family(op: &Op) -> Family {
    match op {
        Op::Input(_) | Op::Target(_) | Op::Param(_) | Op::Tangent(_) | Op::Seed => Family::Leaf,
        Op::Map { .. } | Op::AddN(_) => Family::Elementwise,
        Op::MatVec(..)
        | Op::MatVecT(..)
        | Op::VecMat(..)
        | Op::MatMul(..)
        | Op::MatMulNT(..)
        | Op::MatMulTN(..)
        | Op::Outer(..)
        | Op::Transpose(_) => Family::Linalg,
        Op::Sum(_) | Op::SumCols(_) | Op::SumRows(_) | Op::BatchSum(_) | Op::Norm(_) => {
            Family::Reduce
        }
        Op::LogSoftmax(_) | Op::LogSoftmaxGrad(..) | Op::LogSumExp(_) | Op::LogSumExpAxis(..) => {
            Family::Softmax
        }
        Op::Pick(..) | Op::OneHot(..) | Op::PickAxis(..) | Op::OneHotAxis(..) => Family::Loss,
        Op::Slice(..) | Op::Pad(..) | Op::Concat(..) => Family::Slicing,
        Op::Gather(..) | Op::Scatter(..) => Family::Embedding,
        Op::DropoutMask(..) => Family::Dropout,
        Op::BatchNorm(..) | Op::BatchNormGrad(..) => Family::BatchNorm,
        Op::StatePrev(_)
        | Op::StepSum(_)
        | Op::Last(_)
        | Op::Carry(_)
        | Op::EachStep(_)
        | Op::AtLast(_) => Family::Recurrent,
        Op::Reshape(_) => Family::Reshape,
        Op::Conv(..) | Op::ConvStep(..) | Op::ConvInput(..) | Op::ConvWeight(..) => Family::Conv,
        Op::MaxPool(..)
        | Op::MaxPoolGrad(..)
        | Op::MaxPoolPick(..)
        | Op::AvgPool(..)
        | Op::AvgPoolGrad(..) => Family::Pool,
    }
}

/// What the backward pass of one node is given, and where its
/// contributions to its operands' adjoints go.
pub struct Vjp<'a> {
    /// The graph, growing by the backward nodes.
    pub g: &'a mut Graph,
    /// The node differentiated.
    pub id: NodeId,
    /// Its adjoint (∂loss/∂node).
    pub d: NodeId,
    needs: &'a [bool],
    regions: &'a [Region],
    /// The pass the new nodes belong to: the backward pass, or (a `grad`
    /// inside a definition) the forward pass.
    pub pass: Pass,
    /// How adjoints are named: `d_` (`d_h` is `∂loss/∂h`), or inside
    /// `grad(e, x)` `d_e_d_` (`d_e_d_h` is `∂e/∂h`).
    pub prefix: String,
    /// `(operand, contribution)` pairs, as they are added.
    pub out: Vec<(NodeId, NodeId)>,
}

impl<'a> Vjp<'a> {
    /// A context for node `id` with adjoint `d`.
    pub fn new(
        g: &'a mut Graph,
        id: NodeId,
        d: NodeId,
        needs: &'a [bool],
        regions: &'a [Region],
    ) -> Self {
        Vjp {
            g,
            id,
            d,
            needs,
            regions,
            pass: Pass::Backward,
            prefix: "d_".into(),
            out: vec![],
        }
    }

    /// Whether operand `a` needs an adjoint (it depends on a parameter).
    pub fn needs(&self, a: NodeId) -> bool {
        self.needs[a]
    }

    /// Where `a` sits relative to the time loop.
    pub fn region(&self, a: NodeId) -> Region {
        self.regions[a]
    }

    /// The shape of node `a`.
    pub fn shape(&self, a: NodeId) -> Shape {
        self.g.nodes[a].shape.clone()
    }

    /// The name of a part of `a`'s adjoint: `d_a` and `suffix`.
    pub fn adjoint_name(&self, a: NodeId, suffix: &str) -> String {
        format!("{}{}{suffix}", self.prefix, self.g.nodes[a].name)
    }

    /// Adds a backward node of `shape` and returns it (an intermediate).
    pub fn push(&mut self, op: Op, shape: Shape, name: String) -> NodeId {
        self.g.push(op, shape, name, self.pass, None)
    }

    /// Adds `op`, shaped like operand `a`, as a contribution to `a`'s adjoint.
    pub fn add(&mut self, a: NodeId, op: Op) {
        let name = self.adjoint_name(a, "");
        let p = self.push(op, self.shape(a), name);
        self.out.push((a, p));
    }

    /// Adds `d` itself (`d_a += d`) as `a`'s contribution, through an
    /// identity map (a pass removes it; the sum of adjoints stays explicit).
    pub fn pass_through(&mut self, a: NodeId) {
        let d = self.d;
        self.add(
            a,
            Op::Map {
                args: vec![d],
                bcast: vec![Bcast::Full],
                body: S::Arg(0),
            },
        );
    }
}

/// The contributions of one node to its operands' adjoints.
pub fn vjp(v: &mut Vjp, op: &Op) {
    match family(op) {
        Family::Leaf => {}
        Family::Elementwise => elementwise::vjp(v, op),
        Family::Linalg => linalg::vjp(v, op),
        Family::Reduce => reduce::vjp(v, op),
        Family::Softmax => softmax::vjp(v, op),
        Family::Loss => loss::vjp(v, op),
        Family::Slicing => slicing::vjp(v, op),
        Family::Embedding => embedding::vjp(v, op),
        // no operands: the product with the mask carries the adjoint
        Family::Dropout => {}
        Family::BatchNorm => batchnorm::vjp(v, op),
        Family::Recurrent => recurrent::vjp(v, op),
        Family::Reshape => reshape::vjp(v, op),
        Family::Conv => conv::vjp(v, op),
        Family::Pool => pool::vjp(v, op),
    }
}

/// Emits node `ex.id` into `dest`: one description for the per-sample and
/// the batched code (`ex` knows which operands hold one column per sample).
pub fn emit(ex: &mut Ex, dest: &Place, mode: Mode) {
    let op = ex.node().op.clone();
    match family(&op) {
        Family::Leaf => unreachable!("inputs, targets and parameters are bound, not computed"),
        Family::Elementwise => elementwise::emit(ex, &op, dest, mode),
        Family::Linalg => linalg::emit(ex, &op, dest, mode),
        Family::Reduce => reduce::emit(ex, &op, dest, mode),
        Family::Softmax => softmax::emit(ex, &op, dest, mode),
        Family::Loss => loss::emit(ex, &op, dest, mode),
        Family::Slicing => slicing::emit(ex, &op, dest, mode),
        Family::Embedding => embedding::emit(ex, &op, dest, mode),
        Family::Dropout => dropout::emit(ex, &op, dest, mode),
        Family::BatchNorm => batchnorm::emit(ex, &op, dest, mode),
        Family::Recurrent => recurrent::emit(ex, &op, dest, mode),
        Family::Reshape => reshape::emit(ex, &op, dest, mode),
        Family::Conv => conv::emit(ex, &op, dest, mode),
        Family::Pool => pool::emit(ex, &op, dest, mode),
    }
}

/// Whether the op, emitted in assign mode, writes every element of its
/// destination (the others add into it, which must be zeroed first).
pub fn overwrites(op: &Op) -> bool {
    match family(op) {
        Family::Leaf | Family::Recurrent => false,
        Family::Elementwise => matches!(op, Op::Map { .. }),
        Family::Linalg => linalg::overwrites(op),
        Family::Reduce => matches!(op, Op::Norm(_)),
        Family::Softmax => !matches!(op, Op::LogSoftmaxGrad(..)),
        Family::Loss => matches!(op, Op::Pick(..) | Op::PickAxis(..)),
        Family::Slicing => !matches!(op, Op::Pad(..)),
        Family::Reshape => true,
        Family::Conv => conv::overwrites(op),
        Family::Pool => pool::overwrites(op),
        Family::Embedding => matches!(op, Op::Gather(..)),
        Family::Dropout | Family::BatchNorm => true,
    }
}

/// Whether the op has a batched form when its operands are per-sample
/// (`batched(a)`) or shared as given.
pub fn batches(op: &Op, batched: &dyn Fn(NodeId) -> bool) -> bool {
    match family(op) {
        Family::Leaf | Family::Recurrent => true,
        // a vector along a per-sample matrix's rows or columns is read in
        // the matrix's loops; row and column sums loop over it per sample
        Family::Elementwise | Family::Reduce => true,
        Family::Linalg => linalg::batches(op, batched),
        Family::Softmax => softmax::batches(op, batched),
        Family::Loss => loss::batches(op, batched),
        Family::Slicing => true,
        Family::Reshape | Family::Pool => true,
        Family::Conv => conv::batches(op, batched),
        Family::Embedding => embedding::batches(op, batched),
        Family::Dropout | Family::BatchNorm => true,
    }
}

/// Floating-point operations of node `id` (a multiply and an add count one
/// each; saturating, since shapes may be large).
pub fn flops(g: &Graph, id: NodeId) -> u64 {
    let op = &g.nodes[id].op;
    match family(op) {
        Family::Leaf | Family::Slicing | Family::Loss | Family::Reshape | Family::Embedding => 0,
        Family::Elementwise => elementwise::flops(g, id),
        Family::Linalg => linalg::flops(g, id),
        Family::Reduce => reduce::flops(g, id),
        Family::Softmax => softmax::flops(g, id),
        Family::Recurrent => recurrent::flops(g, id),
        Family::Conv => conv::flops(g, id),
        Family::Pool => pool::flops(g, id),
        Family::Dropout => dropout::flops(g, id),
        Family::BatchNorm => batchnorm::flops(g, id),
    }
}

/// The maths node `id` computes, in the definition's names (`n(a)`), for
/// the generated docs.
pub fn math(g: &Graph, id: NodeId, n: &dyn Fn(NodeId) -> String) -> String {
    let op = &g.nodes[id].op;
    match family(op) {
        Family::Leaf => n(id),
        Family::Elementwise => elementwise::math(g, id, n),
        Family::Linalg => linalg::math(op, n),
        Family::Reduce => reduce::math(g, op, n),
        Family::Softmax => softmax::math(op, n),
        Family::Loss => loss::math(op, n),
        Family::Slicing => slicing::math(g, id, n),
        Family::Embedding => embedding::math(op, n),
        Family::Dropout => dropout::math(op),
        Family::BatchNorm => batchnorm::math(op, n),
        Family::Recurrent => recurrent::math(g, op, n),
        Family::Reshape => reshape::math(op, n),
        Family::Conv => conv::math(op, n),
        Family::Pool => pool::math(op, n),
    }
}

/// The reference value of node `id` from its operands' values `v` (each
/// row-major, in f64): what the test interpreter computes.
#[cfg(test)]
pub fn eval(g: &Graph, id: NodeId, v: &[Vec<f64>]) -> Vec<f64> {
    let op = &g.nodes[id].op;
    match family(op) {
        Family::Leaf => unreachable!("leaves are given"),
        Family::Elementwise => elementwise::eval(g, id, v),
        Family::Linalg => linalg::eval(g, id, v),
        Family::Reduce => reduce::eval(g, id, v),
        Family::Softmax => softmax::eval(g, id, v),
        Family::Loss => loss::eval(g, id, v),
        Family::Slicing => slicing::eval(g, id, v),
        Family::Embedding => embedding::eval(g, id, v),
        Family::Dropout => dropout::eval(g, id, v),
        Family::BatchNorm => batchnorm::eval(g, id, v),
        Family::Recurrent => {
            unreachable!("the interpreter runs feed-forward graphs; recurrent ones are checked on generated code")
        }
        Family::Reshape => reshape::eval(g, id, v),
        Family::Conv => conv::eval(g, id, v),
        Family::Pool => pool::eval(g, id, v),
    }
}
