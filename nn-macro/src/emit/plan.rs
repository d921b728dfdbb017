//! What every generated function of one graph shares: identifiers,
//! liveness, uses and users, which values the tape stores, which values are
//! computed inside their only user, and, for the batched graph, which
//! values hold one column per sample.

use super::names::assign_idents;
use super::{dims, Place};
use crate::ir::*;
use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;

/// The facts about one graph (the per-sample one, or the batched one) that
/// its functions' emission reads; computed once, in linear time.
pub struct Plan<'g> {
    /// The graph.
    pub g: &'g Graph,
    /// `f32` or `f64`.
    pub t: TokenStream,
    /// The batched graph: per-sample values have a column per sample.
    pub batch: bool,
    /// Unique Rust identifier of every node.
    pub ident: Vec<Ident>,
    /// Nodes some root depends on.
    pub live: Vec<bool>,
    /// How many live nodes use each node (repeats counted), plus one per root.
    pub uses: Vec<usize>,
    /// Each node's live users, in graph order.
    pub users: Vec<Vec<NodeId>>,
    /// Nodes holding one value per sample (all `false` for the per-sample graph).
    pub batched: Vec<bool>,
    /// Each node's place relative to its pass's time loop.
    pub regions: Vec<Region>,
    /// Forward values (and inputs, targets) the backward pass reads.
    pub on_tape: Vec<bool>,
    /// The same, in graph order (the tape struct's fields).
    pub tape: Vec<NodeId>,
    /// The parameters whose gradient each node is.
    pub grad_of: Vec<Vec<usize>>,
    /// Each parameter's node.
    pub param_node: Vec<NodeId>,
    /// The parameter struct's name.
    pub params_ty: Ident,
    /// Nodes computed inside their only user, never stored: a part of a
    /// sum of adjoints, an elementwise value under a reduction, a
    /// per-sample product under a batch sum, a per-step value under a sum
    /// over the steps.
    pub absorbed: Vec<bool>,
}

impl<'g> Plan<'g> {
    /// The plan of `g`, whose parameters are the struct `params_ty`.
    pub fn new(g: &'g Graph, params_ty: Ident) -> Self {
        let n = g.nodes.len();
        let live = g.live_from(&g.roots());
        let uses = g.use_counts(&live);
        let mut users = vec![vec![]; n];
        for (u, node) in g.nodes.iter().enumerate() {
            if live[u] {
                for a in node.op.args() {
                    if users[a].last() != Some(&u) {
                        users[a].push(u);
                    }
                }
            }
        }
        // the parameters' results: their gradients, or in the graph of `hvp`
        // their parts of the Hessian-vector product
        let results = if g.hvp.is_empty() { &g.grads } else { &g.hvp };
        let mut grad_of = vec![vec![]; n];
        for (k, gr) in results.iter().enumerate() {
            if let Some(gr) = gr {
                grad_of[*gr].push(k);
            }
        }
        let mut param_node = vec![usize::MAX; g.params.len()];
        for (id, node) in g.nodes.iter().enumerate() {
            if let Op::Param(k) = node.op {
                param_node[k] = id;
            }
        }
        // the output is kept too (the trainer counts accuracy from the tape
        // instead of predicting again), and in the batched tape the loss
        // (each sample's own)
        let on_tape: Vec<bool> = (0..n)
            .map(|id| {
                let node = &g.nodes[id];
                live[id]
                    && node.pass == Pass::Forward
                    && !matches!(node.op, Op::Param(_))
                    && (!grad_of[id].is_empty()
                        || users[id].iter().any(|&u| g.nodes[u].pass == Pass::Backward)
                        || id == g.output
                        || (g.batch && id == g.loss)
                        // the batched loop keeps each step's previous state
                        // in the tape (no register of its own)
                        || (g.batch && matches!(node.op, Op::StatePrev(_))))
            })
            .collect();
        let tape = (0..n).filter(|&id| on_tape[id]).collect();
        let batched = if g.batch { g.batched() } else { vec![false; n] };
        let mut plan = Plan {
            g,
            t: match g.dtype {
                Dtype::F32 => quote!(f32),
                Dtype::F64 => quote!(f64),
            },
            batch: g.batch,
            ident: assign_idents(g, &live),
            live,
            uses,
            users,
            batched,
            regions: g.regions(),
            on_tape,
            tape,
            grad_of,
            param_node,
            params_ty,
            absorbed: vec![],
        };
        plan.absorbed = (0..n).map(|id| plan.computes_in_user(id)).collect();
        plan
    }

    /// Whether node `id` is computed inside its only user (see `absorbed`).
    fn computes_in_user(&self, id: NodeId) -> bool {
        let g = self.g;
        let node = &g.nodes[id];
        if !self.live[id]
            || self.uses[id] != 1
            || matches!(node.op, Op::Input(_) | Op::Target(_) | Op::Param(_))
        {
            return false;
        }
        let [u] = self.users[id][..] else {
            return false;
        };
        let user = &g.nodes[u];
        if user.pass != node.pass {
            return false;
        }
        let is_map = matches!(node.op, Op::Map { .. });
        match &user.op {
            // a shared part of a per-sample sum is added into every column,
            // which only an elementwise expression can be computed into
            Op::AddN(parts) => {
                parts.contains(&id)
                    && self.regions[u] == self.regions[id]
                    && (self.batched[u] == self.batched[id] || is_map)
            }
            // a batched matrix's loops are not a sum's
            Op::Sum(_) | Op::SumCols(_) | Op::SumRows(_) => {
                is_map && !(self.batched[id] && node.shape.rank() > 1)
            }
            // a shared operand (the same for every sample) is B times itself: computed once
            Op::BatchSum(_) => {
                self.batched[id]
                    && (matches!(
                        node.op,
                        Op::Outer(..) | Op::ConvWeight(..) | Op::Scatter(..)
                    ) || (is_map && node.shape.rank() <= 1))
            }
            Op::StepSum(_) => {
                self.regions[id] == Region::Step
                    && g.steps.is_some()
                    && !matches!(node.op, Op::EachStep(_) | Op::Carry(_) | Op::StatePrev(_))
            }
            _ => false,
        }
    }

    /// The field of parameter `k` (in the parameter struct and in gradients).
    pub fn param_field(&self, k: usize) -> Ident {
        self.ident[self.param_node[k]].clone()
    }

    /// A backward node that is one parameter's gradient and read by nothing
    /// else: computed straight into the gradient buffer.
    pub fn grad_direct(&self, id: NodeId) -> bool {
        let node = &self.g.nodes[id];
        (node.pass == Pass::Backward || !self.g.hvp.is_empty())
            && self.grad_of[id].len() == 1
            && self.uses[id] == 1
            && !self.batched[id]
    }

    /// Whether the batched graph can be emitted: every live node has a
    /// batched form (inputs and targets at each step of a sequence at most
    /// vectors; per-sample matrices and images only where the ops reading
    /// them have a batched form of them, and the output at most a vector).
    pub fn supported(&self) -> bool {
        let g = self.g;
        let decls_ok = g
            .inputs
            .iter()
            .chain(&g.targets)
            .all(|d| d.shape.rank() <= 1 || !d.per_step)
            && (g.steps.is_none()
                || g.nodes
                    .iter()
                    .all(|n| n.shape.rank() <= 1 || !matches!(n.op, Op::Input(_))));
        decls_ok
            && g.nodes[g.output].shape.rank() <= 1
            && (0..g.nodes.len()).all(|id| {
                if !self.live[id] {
                    return true;
                }
                let node = &g.nodes[id];
                if self.batched[id] && node.shape.rank() > 1 {
                    // a weight gradient's per-sample product exists only
                    // summed over the batch (as do an embedding's rows added
                    // in at the samples' tokens)
                    if matches!(node.op, Op::Outer(..) | Op::ConvWeight(..)) {
                        return self.absorbed[id]
                            && node.op.args().iter().all(|&a| self.batched[a]);
                    }
                    if matches!(node.op, Op::Scatter(..)) {
                        return self.absorbed[id];
                    }
                }
                let matrix_operand = node
                    .op
                    .args()
                    .iter()
                    .any(|&a| self.batched[a] && g.nodes[a].shape.rank() > 1);
                if matrix_operand && !reads_batched_matrices(&node.op) {
                    return false;
                }
                crate::ops::batches(&node.op, &|a| self.batched[a])
            })
    }

    /// Nodes of the batched graph kept in the batch tape though no other
    /// pass reads them: every intermediate a function materialises (the
    /// batch tape is the passes' workspace, so nothing large is on the stack).
    pub fn scratch(&self) -> Vec<NodeId> {
        (0..self.g.nodes.len())
            .filter(|&id| self.materialises(id) && !self.on_tape[id])
            .collect()
    }

    /// A convolution of the batched graph over per-sample values, computed
    /// as one matrix product: the batch tape's field for its unfolded
    /// input (or unfolded input adjoint), `[c_in · kernel area, output
    /// positions]` with a column per sample, and that field's length in
    /// rows of `B`.
    pub fn cols(&self, id: NodeId) -> Option<(Ident, usize)> {
        let node = &self.g.nodes[id];
        let (a, w) = match node.op {
            Op::Conv(a, _, w) | Op::ConvInput(a, _, w) | Op::ConvWeight(a, _, w) => (a, w),
            _ => return None,
        };
        if !self.batch || !self.live[id] || !self.batched[a] {
            return None;
        }
        let rows = w.c_in * w.kernel[0] * w.kernel[1];
        let field = quote::format_ident!("{}_cols", self.ident[id]);
        Some((field, rows * w.output[0] * w.output[1]))
    }

    /// Whether a function computing `id` stores it somewhere of its own
    /// (a local, a tape field), as opposed to computing it inside its user,
    /// into a gradient, or as a shared scalar `let`.
    pub fn materialises(&self, id: NodeId) -> bool {
        let node = &self.g.nodes[id];
        self.live[id]
            && !matches!(
                node.op,
                Op::Input(_)
                    | Op::Target(_)
                    | Op::Param(_)
                    | Op::StatePrev(_)
                    | Op::Carry(_)
                    | Op::EachStep(_)
            )
            && !self.absorbed[id]
            && !self.grad_direct(id)
            && !self.scalar_let(id)
    }

    /// A shared scalar computed by an elementwise expression: one `let`.
    pub fn scalar_let(&self, id: NodeId) -> bool {
        let node = &self.g.nodes[id];
        node.shape.is_scalar()
            && !self.batched[id]
            && !self.on_tape[id]
            && matches!(node.op, Op::Map { .. })
    }

    /// The Rust type of one value of `shape`.
    pub fn shape_ty(&self, shape: &Shape) -> TokenStream {
        let t = &self.t;
        match dims(shape).as_slice() {
            [] => quote!(#t),
            [n] => quote!([#t; #n]),
            [r, c] => quote!([[#t; #c]; #r]),
            _ => unreachable!("a value is stored with at most 2 dimensions"),
        }
    }

    /// A node's type: `usize` for a class index, a column per sample when batched.
    pub fn ty(&self, id: NodeId) -> TokenStream {
        let t = &self.t;
        let elem = if self.is_class(id) {
            quote!(usize)
        } else {
            quote!(#t)
        };
        self.array_of(id, elem)
    }

    /// A node's zero value (or a class index's 0).
    pub fn zero(&self, id: NodeId) -> TokenStream {
        let z = if self.is_class(id) {
            quote!(0)
        } else {
            quote!(0.0)
        };
        self.array_of(id, z)
    }

    /// Whether the node is a class-index target (`usize`, not a scalar).
    fn is_class(&self, id: NodeId) -> bool {
        match self.g.nodes[id].op {
            Op::Target(k) => self.g.targets[k].classes.is_some(),
            Op::Input(k) => self.g.inputs[k].classes.is_some(),
            _ => false,
        }
    }

    /// `elem` (a type or a value) nested in arrays of the node's shape, with
    /// the batch as the innermost dimension of a batched node.
    fn array_of(&self, id: NodeId, elem: TokenStream) -> TokenStream {
        match (self.batched[id], dims(&self.g.nodes[id].shape).as_slice()) {
            (true, []) => quote!([#elem; B]),
            (true, _) => {
                let n = Literal::usize_unsuffixed(self.g.nodes[id].shape.len());
                quote!([[#elem; B]; #n])
            }
            (false, []) => elem,
            (false, [n]) => quote!([#elem; #n]),
            (false, [r, c]) => quote!([[#elem; #c]; #r]),
            _ => unreachable!("a batched value is a vector or a scalar per sample"),
        }
    }

    /// A node's type in the per-sample tape: `[x; T]` for a per-step value.
    pub fn tape_ty(&self, id: NodeId) -> TokenStream {
        let one = self.ty(id);
        match (self.regions[id], self.g.steps) {
            (Region::Step, Some(steps)) => {
                let n = Literal::usize_unsuffixed(steps.count);
                quote!([#one; #n])
            }
            _ => one,
        }
    }

    /// Where a stored value lives: a tape field, per step inside the loop.
    pub fn tape_place(&self, id: NodeId) -> Place {
        if self.regions[id] == Region::Step && self.g.steps.is_some() {
            Place::TapeStep(self.ident[id].clone())
        } else {
            Place::Tape(self.ident[id].clone())
        }
    }

    /// A tensor of `shape` filled with `c`.
    pub fn fill(&self, shape: &Shape, c: f64) -> TokenStream {
        let v = Literal::f64_unsuffixed(c);
        match dims(shape).as_slice() {
            [] => quote!(#v),
            [n] => quote!([#v; #n]),
            [r, cc] => quote!([[#v; #cc]; #r]),
            _ => unreachable!("a value is stored with at most 2 dimensions"),
        }
    }
}

/// Whether the batched form of `op` reads per-sample matrices and images
/// (stored flat, a column per sample).
fn reads_batched_matrices(op: &Op) -> bool {
    matches!(
        op,
        Op::Map { .. }
            | Op::AddN(_)
            | Op::Sum(_)
            | Op::SumCols(_)
            | Op::SumRows(_)
            | Op::BatchSum(_)
            | Op::Reshape(_)
            | Op::Conv(..)
            | Op::ConvInput(..)
            | Op::ConvWeight(..)
            | Op::MaxPool(..)
            | Op::MaxPoolGrad(..)
            | Op::MaxPoolPick(..)
            | Op::AvgPool(..)
            | Op::AvgPoolGrad(..)
            | Op::BatchNorm(..)
            | Op::BatchNormGrad(..)
    )
}
