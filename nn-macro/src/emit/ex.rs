//! What one node's emission sees: where its operands live, whether each
//! holds one column per sample, how to index them inside the node's loops,
//! and where to write its statements. The ops' emission rules
//! (`crate::ops`) are written against this, once for the per-sample and
//! the batched code.
//!
//! Indexing: a per-sample value of shape `[]`, `[n]` or `[r, c]` is read
//! as `x`, `x[i]`, `x[i][j]` (a higher rank is stored flat, as a vector);
//! a batched value (one column per sample, any per-sample shape stored
//! flat) as `x[j]` or `x[i][j]`, `j` over the samples. In the loops over
//! a batched matrix, `i` is the flat index of row `r` and column `c`,
//! where a shared operand (a matrix, or a vector along the rows or the
//! columns) is read.

use super::plan::Plan;
use super::{loops, Mode, Place};
use crate::ir::*;
use proc_macro2::TokenStream;
use quote::quote;
use std::collections::HashMap;

/// The emission context of node `id`.
pub struct Ex<'a, 'g> {
    /// The graph's plan.
    pub plan: &'a Plan<'g>,
    /// Where each computed value lives so far.
    pub place: &'a HashMap<NodeId, Place>,
    /// The statements written so far.
    pub out: &'a mut Vec<TokenStream>,
    /// The node emitted.
    pub id: NodeId,
    /// Whether this is a training pass (`forward`, `forward_batch`), where
    /// dropout is applied (if the tape switches it on).
    pub training: bool,
}

impl<'a, 'g> Ex<'a, 'g> {
    /// The graph.
    pub fn g(&self) -> &'g Graph {
        self.plan.g
    }

    /// The node emitted.
    pub fn node(&self) -> &'g Node {
        &self.plan.g.nodes[self.id]
    }

    /// The scalar type's tokens.
    pub fn t(&self) -> TokenStream {
        self.plan.t.clone()
    }

    /// The runtime's kernels.
    pub fn kernels() -> TokenStream {
        super::kernels()
    }

    /// Whether node `a` holds one value per sample (a column each).
    pub fn batched(&self, a: NodeId) -> bool {
        self.plan.batched[a]
    }

    /// Whether node `a` is computed inside its only user.
    pub fn absorbed(&self, a: NodeId) -> bool {
        self.plan.absorbed[a]
    }

    /// Where operand `a` lives. Emission walks operands before users, so it
    /// has one; a miss is a bug of ours, which the macro entry reports as an
    /// internal error (never a crashed macro).
    pub fn place(&self, a: NodeId) -> Place {
        match self.place.get(&a) {
            Some(p) => p.clone(),
            None => unreachable!(
                "`{}` is read before it is computed",
                self.plan.g.nodes[a].name
            ),
        }
    }

    /// `lhs = v;` or `lhs += v;`.
    pub fn put(mode: Mode, lhs: TokenStream, v: TokenStream) -> TokenStream {
        match mode {
            Mode::Assign => quote!(#lhs = #v;),
            Mode::Accumulate => quote!(#lhs += #v;),
        }
    }

    /// Loops over node `a`'s elements (and its samples, when batched).
    pub fn loops(&self, a: NodeId, body: TokenStream) -> TokenStream {
        self.loops_over(&self.plan.g.nodes[a].shape, self.batched(a), body)
    }

    /// Loops over a per-sample `shape`, and over the samples when `batched`.
    pub fn loops_over(&self, shape: &Shape, batched: bool, body: TokenStream) -> TokenStream {
        if !batched {
            return loops(shape, body);
        }
        match super::dims(shape).as_slice() {
            [] => quote!(for j in 0..B { #body }),
            [n] => quote!(for i in 0..#n { for j in 0..B { #body } }),
            [rows, cols] => quote!(
                for r in 0..#rows { for c in 0..#cols { let i = r * #cols + c; for j in 0..B { #body } } }
            ),
            _ => unreachable!("a value is stored with at most 2 dimensions"),
        }
    }

    /// Whether the node emitted loops over a batched matrix (`r`, `c`, `i`, `j`).
    fn in_batched_matrix(&self) -> bool {
        self.batched(self.id) && self.node().shape.stored_rank() == 2
    }

    /// Node `a`'s element at the current loop index, stored at `p`, read
    /// into a loop over a value its broadcast `b` fits.
    pub fn elem_of(&self, p: &Place, a: NodeId, b: Bcast) -> TokenStream {
        let rank = self.plan.g.nodes[a].shape.stored_rank();
        if self.in_batched_matrix() && self.batched(a) && rank == 1 {
            match b {
                Bcast::Col => return p.index(&quote!([r][j])),
                Bcast::Row => return p.index(&quote!([c][j])),
                _ => {}
            }
        }
        if self.in_batched_matrix() && !self.batched(a) {
            return match (rank, b) {
                (0, _) | (_, Bcast::Scalar) => p.value(),
                (1, Bcast::Col) => p.index(&quote!([r])),
                (1, Bcast::Row) => p.index(&quote!([c])),
                (1, _) => p.index(&quote!([i])),
                _ => p.index(&quote!([r][c])),
            };
        }
        match (self.batched(a), rank, b) {
            (true, 0, _) | (true, _, Bcast::Scalar) => p.index(&quote!([j])),
            (true, _, _) => p.index(&quote!([i][j])),
            (false, 0, _) | (false, _, Bcast::Scalar) => p.value(),
            (false, _, Bcast::Col) => p.index(&quote!([i])),
            (false, _, Bcast::Row) => p.index(&quote!([j])),
            (false, 1, Bcast::Full) => p.index(&quote!([i])),
            (false, _, Bcast::Full) => p.index(&quote!([i][j])),
        }
    }

    /// Operand `a`'s element at the current loop index.
    pub fn elem(&self, a: NodeId, b: Bcast) -> TokenStream {
        self.elem_of(&self.place(a), a, b)
    }

    /// `p` at a per-sample index expression (`[i + 3]`), in the sample's
    /// column when node `a` is batched.
    pub fn at(&self, p: &Place, a: NodeId, idx: TokenStream) -> TokenStream {
        if self.batched(a) {
            p.index(&quote!(#idx [j]))
        } else {
            p.index(&idx)
        }
    }

    /// The scalar expression of elementwise node `m` at the current index.
    pub fn map_elem(&self, m: NodeId) -> TokenStream {
        let Op::Map { args, bcast, body } = &self.plan.g.nodes[m].op else {
            unreachable!("map_elem of an elementwise node")
        };
        let operands: Vec<TokenStream> = args
            .iter()
            .zip(bcast)
            .map(|(&a, &b)| self.elem(a, b))
            .collect();
        super::scalar::scalar_tokens(body, &operands).0
    }

    /// Emits node `id` (an operand computed nowhere else) into `dest`.
    pub fn emit_into(&mut self, id: NodeId, dest: &Place, mode: Mode) {
        let mut ex = Ex {
            plan: self.plan,
            place: self.place,
            out: &mut *self.out,
            id,
            training: self.training,
        };
        crate::ops::emit(&mut ex, dest, mode);
    }

    /// Copies (or adds) node `a`'s value from `src` to `dest`, in a loop
    /// over node `over`'s shape (the same as `a`'s).
    pub fn copy_into(&mut self, a: NodeId, over: NodeId, src: &Place, dest: &Place, mode: Mode) {
        let (lhs, rhs) = (
            self.elem_of(dest, over, Bcast::Full),
            self.elem_of(src, a, Bcast::Full),
        );
        let stmt = self.loops(over, Self::put(mode, lhs, rhs));
        self.out.push(stmt);
    }
}
