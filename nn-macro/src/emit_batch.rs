//! Batched emission: `forward_batch` and `backward_batch` for a mini-batch of
//! `B` samples, `B` a const generic the caller chooses. Every per-sample
//! vector becomes a matrix with one column per sample (`[[T; B]; n]`), so a
//! layer is one matrix-matrix product (`Z = W X`), a weight gradient is one
//! product summed over the batch (`dW += dZ Xᵀ`), not `B` outer products.
//!
//! The batched graph is the per-sample definition differentiated with
//! `Graph::batch` set: a per-sample contribution to a shared value's adjoint
//! (a parameter's) is summed over the batch (`BatchSum`). Networks using ops
//! that have no batched form here (per-sample matrices, recurrences) get no
//! batched methods; the per-sample ones always exist.

use crate::emit::{assign_idents, dims, flat_view, loops, plan_tape, scalar_tokens, Mode, Place};
use crate::ir::*;
use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};
use std::collections::HashMap;

/// The generated batched items, if the network has a batched form:
/// (the tape struct, the methods of the network's impl block).
pub fn emit_batch(
    g: &Graph,
    name: &Ident,
    vis: &syn::Visibility,
    params_ty: &Ident,
) -> Option<(TokenStream, TokenStream)> {
    let cx = Bx::new(g, name, params_ty)?;
    cx.items(vis)
}

struct Bx<'g> {
    g: &'g Graph,
    t: TokenStream,
    ident: Vec<Ident>,
    batched: Vec<bool>,
    live: Vec<bool>,
    uses: Vec<usize>,
    tape: Vec<NodeId>,
    params_ty: Ident,
    tape_ty: Ident,
}

impl<'g> Bx<'g> {
    fn new(g: &'g Graph, name: &Ident, params_ty: &Ident) -> Option<Self> {
        if g.steps.is_some() {
            return None;
        }
        let live = g.live_from(&g.roots());
        let uses = g.use_counts(&live);
        let batched = g.batched();
        let ident = assign_idents(g, &live);
        let tape = plan_tape(g, &live);
        let bx = Bx {
            g,
            t: match g.dtype {
                Dtype::F32 => quote!(f32),
                Dtype::F64 => quote!(f64),
            },
            ident,
            batched,
            live,
            uses,
            tape,
            params_ty: params_ty.clone(),
            tape_ty: format_ident!("{}BatchTape", name),
        };
        bx.supported().then_some(bx)
    }

    /// Whether every live node has a batched form.
    fn supported(&self) -> bool {
        let g = self.g;
        let decls_ok = g
            .inputs
            .iter()
            .chain(&g.targets)
            .all(|d| d.shape.rank() <= 1 && !d.per_step);
        decls_ok
            && g.nodes.iter().enumerate().all(|(id, node)| {
                if !self.live[id] {
                    return true;
                }
                let b = |a: NodeId| self.batched[a];
                if self.batched[id] && node.shape.rank() > 1 {
                    // a per-sample matrix would need a third dimension; only
                    // a weight gradient's outer product, summed, is allowed
                    return matches!(node.op, Op::Outer(..)) && self.absorbed_by_batch_sum(id);
                }
                match &node.op {
                    Op::Map { args, bcast, .. } => {
                        !self.batched[id]
                            || args
                                .iter()
                                .zip(bcast)
                                .all(|(&a, &bc)| !matches!(bc, Bcast::Col | Bcast::Row) || !b(a))
                    }
                    Op::MatVec(w, _) | Op::MatVecT(w, _) => !b(*w),
                    Op::VecMat(_, m) => !b(*m),
                    Op::MatMul(x, y) | Op::MatMulNT(x, y) | Op::MatMulTN(x, y) => !b(*x) && !b(*y),
                    Op::Outer(u, v) => {
                        (!b(*u) && !b(*v)) || (b(*u) && b(*v) && self.absorbed_by_batch_sum(id))
                    }
                    Op::Transpose(a) | Op::SumCols(a) | Op::SumRows(a) => !b(*a),
                    Op::LogSoftmaxGrad(y, d) => b(*y) == b(*d),
                    Op::StatePrev(_)
                    | Op::StepSum(_)
                    | Op::Last(_)
                    | Op::Carry(_)
                    | Op::EachStep(_)
                    | Op::AtLast(_) => false,
                    _ => true,
                }
            })
    }

    /// A node used once, by a `BatchSum`: computed straight into its sum.
    fn absorbed_by_batch_sum(&self, id: NodeId) -> bool {
        self.uses[id] == 1
            && self
                .g
                .nodes
                .iter()
                .enumerate()
                .any(|(u, n)| self.live[u] && n.op == Op::BatchSum(id))
    }

    /// A node computed straight into its only user: a part of an `AddN`, an
    /// elementwise value under a reduction, a product under a batch sum.
    fn absorbed(&self, id: NodeId) -> bool {
        if self.uses[id] != 1 || self.tape.contains(&id) || self.g.roots().contains(&id) {
            return false;
        }
        let node = &self.g.nodes[id];
        self.g.nodes.iter().enumerate().any(|(u, user)| {
            self.live[u]
                && user.pass == node.pass
                && match &user.op {
                    Op::AddN(parts) => parts.contains(&id),
                    Op::Sum(a) => {
                        *a == id
                            && matches!(node.op, Op::Map { .. })
                            && self.batched[u] == self.batched[id]
                    }
                    Op::BatchSum(a) => {
                        *a == id && matches!(node.op, Op::Map { .. } | Op::Outer(..))
                    }
                    _ => false,
                }
        })
    }

    /// A node's type: one column per sample when batched.
    fn ty(&self, id: NodeId) -> TokenStream {
        let t = &self.t;
        let class =
            matches!(self.g.nodes[id].op, Op::Target(k) if self.g.targets[k].classes.is_some());
        let elem = if class { quote!(usize) } else { quote!(#t) };
        let d = dims(&self.g.nodes[id].shape);
        match (self.batched[id], d.as_slice()) {
            (true, []) => quote!([#elem; B]),
            (true, [n]) => quote!([[#elem; B]; #n]),
            (_, []) => quote!(#elem),
            (_, [n]) => quote!([#elem; #n]),
            (_, [r, c]) => quote!([[#elem; #c]; #r]),
            _ => unreachable!("lowering rejects rank > 2"),
        }
    }

    fn zero(&self, id: NodeId) -> TokenStream {
        let class =
            matches!(self.g.nodes[id].op, Op::Target(k) if self.g.targets[k].classes.is_some());
        let z = if class { quote!(0) } else { quote!(0.0) };
        let d = dims(&self.g.nodes[id].shape);
        match (self.batched[id], d.as_slice()) {
            (true, []) => quote!([#z; B]),
            (true, [n]) => quote!([[#z; B]; #n]),
            (_, []) => z,
            (_, [n]) => quote!([#z; #n]),
            (_, [r, c]) => quote!([[#z; #c]; #r]),
            _ => unreachable!("lowering rejects rank > 2"),
        }
    }

    /// Loops over a node's elements: `i` over the per-sample vector, `j` over the batch.
    fn node_loops(&self, id: NodeId, body: TokenStream) -> TokenStream {
        self.loops_for(&self.g.nodes[id].shape, self.batched[id], body)
    }

    fn loops_for(&self, shape: &Shape, batched: bool, body: TokenStream) -> TokenStream {
        if !batched {
            return loops(shape, body);
        }
        match dims(shape).as_slice() {
            [] => quote!(for j in 0..B { #body }),
            [n] => quote!(for i in 0..#n { for j in 0..B { #body } }),
            _ => unreachable!("a batched value is a vector or a scalar per sample"),
        }
    }

    /// The element of `id` at the current loop index: `[i][j]` / `[j]` for a
    /// batched value (`i` over the vector, `j` over the samples), `[i]` or the
    /// value itself for a shared one.
    fn at(&self, place: &Place, id: NodeId, bcast: Bcast) -> TokenStream {
        let node = &self.g.nodes[id];
        if self.batched[id] {
            match (node.shape.rank(), bcast) {
                (0, _) => place.index(&quote!([j])),
                _ => place.index(&quote!([i][j])),
            }
        } else {
            match (node.shape.rank(), bcast) {
                (0, _) | (_, Bcast::Scalar) => place.value(),
                (1, _) => place.index(&quote!([i])),
                _ => place.index(&quote!([i][j])),
            }
        }
    }

    fn map_elem(&self, id: NodeId, place: &HashMap<NodeId, Place>) -> TokenStream {
        let Op::Map { args, bcast, body } = &self.g.nodes[id].op else {
            unreachable!("map_elem on a map")
        };
        let ops: Vec<TokenStream> = args
            .iter()
            .zip(bcast)
            .map(|(&a, &b)| {
                let p = &place[&a];
                if !self.batched[id] {
                    // a shared value: per-sample indexing
                    return match (self.g.nodes[a].shape.rank(), b) {
                        (0, _) | (_, Bcast::Scalar) => p.value(),
                        (_, Bcast::Col) => p.index(&quote!([i])),
                        (_, Bcast::Row) => p.index(&quote!([j])),
                        (1, _) => p.index(&quote!([i])),
                        _ => p.index(&quote!([i][j])),
                    };
                }
                self.at(p, a, b)
            })
            .collect();
        scalar_tokens(body, &ops).0
    }

    fn items(&self, vis: &syn::Visibility) -> Option<(TokenStream, TokenStream)> {
        let g = self.g;
        let t = &self.t;
        let tape_ty = &self.tape_ty;
        let params_ty = &self.params_ty;
        let fields = self.tape.iter().map(|&id| {
            let f = &self.ident[id];
            let ty = self.ty(id);
            quote!(pub #f: #ty,)
        });
        let input_ty = tuple(g.inputs.iter().map(|d| self.decl_ty(d)).collect());
        let target_ty = tuple(g.targets.iter().map(|d| self.decl_ty(d)).collect());
        let forward = self.function(Pass::Forward)?;
        let backward = self.function(Pass::Backward)?;
        let tape_doc = "What `forward_batch` stores for `backward_batch`: each per-sample value with one column per sample.";
        Some((
            quote!(
                #[doc = #tape_doc]
                #[repr(C)]
                #vis struct #tape_ty<const B: usize> {
                    #(#fields)*
                }

                // SAFETY: a `#[repr(C)]` struct of float arrays and class indices: zeros are valid.
                unsafe impl<const B: usize> ::nn_runtime::__private::Zeroable for #tape_ty<B> {}
            ),
            quote!(
                /// A zeroed tape for mini-batches of `B` samples, on the heap.
                pub fn new_batch_tape<const B: usize>() -> ::nn_runtime::__private::Box<#tape_ty<B>> {
                    <#tape_ty<B> as ::nn_runtime::__private::Zeroable>::zeroed_box()
                }

                /// Forward pass for a mini-batch of `B` samples as matrix-matrix
                /// work: returns the sum of the samples' losses and stores in
                /// `tape` what `backward_batch` reads.
                pub fn forward_batch<const B: usize>(&self, inputs: &[#input_ty; B], targets: &[#target_ty; B], tape: &mut #tape_ty<B>) -> #t {
                    #forward
                }

                /// Backward pass for the mini-batch last passed to
                /// `forward_batch`: adds the sum over the samples of
                /// `∂loss/∂θ` into `grads` (weight gradients as one `dZ Xᵀ`
                /// product each), exactly what `B` calls of `backward` add.
                pub fn backward_batch<const B: usize>(&self, tape: &#tape_ty<B>, grads: &mut #params_ty) {
                    #backward
                }
            ),
        ))
    }

    fn decl_ty(&self, d: &TensorDecl) -> TokenStream {
        let t = &self.t;
        match (d.classes, dims(&d.shape).as_slice()) {
            (Some(_), _) => quote!(usize),
            (None, []) => quote!(#t),
            (None, [n]) => quote!([#t; #n]),
            (None, [r, c]) => quote!([[#t; #c]; #r]),
            _ => unreachable!("lowering rejects rank > 2"),
        }
    }

    fn function(&self, pass: Pass) -> Option<TokenStream> {
        let g = self.g;
        let roots: Vec<NodeId> = if pass == Pass::Forward {
            vec![g.loss]
        } else {
            g.grads.iter().flatten().copied().collect()
        };
        let live = g.live_from(&roots);
        let mut place: HashMap<NodeId, Place> = HashMap::new();
        let mut out = vec![quote!(
            use ::nn_runtime::__private::Activations as _;
        )];
        // parameters read here
        let used: Vec<Ident> = (0..g.nodes.len())
            .filter(|&id| {
                matches!(g.nodes[id].op, Op::Param(_))
                    && (g
                        .nodes
                        .iter()
                        .enumerate()
                        .any(|(u, n)| live[u] && n.pass == pass && n.op.args().contains(&id))
                        || (pass == Pass::Backward && g.grads.contains(&Some(id))))
            })
            .map(|id| {
                place.insert(id, Place::Ref(self.ident[id].clone()));
                self.ident[id].clone()
            })
            .collect();
        if !used.is_empty() {
            let pty = &self.params_ty;
            out.push(quote!(let #pty { #(#used,)* .. } = &*self.params;));
        }
        if pass == Pass::Forward {
            // samples in, one column each
            for (src, decls, is_input) in [
                (quote!(inputs), &g.inputs, true),
                (quote!(targets), &g.targets, false),
            ] {
                for (k, d) in decls.iter().enumerate() {
                    let op = if is_input {
                        Op::Input(k)
                    } else {
                        Op::Target(k)
                    };
                    let Some(id) = g.nodes.iter().position(|n| n.op == op) else {
                        continue;
                    };
                    if !live[id] && !self.tape.contains(&id) {
                        continue;
                    }
                    let n = &self.ident[id];
                    let dest = if self.tape.contains(&id) {
                        Place::Tape(n.clone())
                    } else {
                        Place::Local(n.clone())
                    };
                    if let Place::Local(_) = dest {
                        let (ty, zero) = (self.ty(id), self.zero(id));
                        out.push(quote!(let mut #n: #ty = #zero;));
                    }
                    let sample = if decls.len() == 1 {
                        quote!(#src[j])
                    } else {
                        let i = syn::Index::from(k);
                        quote!(#src[j].#i)
                    };
                    let v = dest.value();
                    out.push(match d.shape.rank() {
                        0 => quote!(for j in 0..B { #v[j] = #sample; }),
                        _ => {
                            let n = Literal::usize_unsuffixed(d.shape.len());
                            quote!(for j in 0..B { for i in 0..#n { #v[i][j] = #sample[i]; } })
                        }
                    });
                    place.insert(id, dest);
                }
            }
        } else {
            for &id in &self.tape {
                place.insert(id, Place::Tape(self.ident[id].clone()));
            }
        }
        for id in 0..g.nodes.len() {
            let node = &g.nodes[id];
            if !live[id]
                || node.pass != pass
                || matches!(node.op, Op::Input(_) | Op::Target(_) | Op::Param(_))
                || self.absorbed(id)
            {
                continue;
            }
            let grads: Vec<usize> = g
                .grads
                .iter()
                .enumerate()
                .filter(|(_, gr)| **gr == Some(id))
                .map(|(k, _)| k)
                .collect();
            if pass == Pass::Backward && grads.len() == 1 && self.uses[id] == 1 && !self.batched[id]
            {
                let dest = Place::Grad(self.param_field(grads[0]));
                self.emit_into(id, &dest, Mode::Accumulate, &place, &mut out)?;
                continue;
            }
            let n = &self.ident[id];
            if !self.batched[id]
                && node.shape.is_scalar()
                && matches!(node.op, Op::Map { .. })
                && !self.tape.contains(&id)
            {
                // a shared scalar: one `let`
                let (ty, e) = (self.ty(id), self.map_elem(id, &place));
                out.push(quote!(let #n: #ty = #e;));
                place.insert(id, Place::Local(n.clone()));
                continue;
            }
            let dest = if pass == Pass::Forward && self.tape.contains(&id) {
                if !crate::emit::overwrites(&node.op) {
                    // a reused tape holds the last batch's values
                    let v = quote!(tape.#n);
                    let zero = self.zero(id);
                    out.push(quote!(#v = #zero;));
                }
                Place::Tape(n.clone())
            } else {
                let (ty, zero) = (self.ty(id), self.zero(id));
                out.push(quote!(let mut #n: #ty = #zero;));
                Place::Local(n.clone())
            };
            self.emit_into(id, &dest, Mode::Assign, &place, &mut out)?;
            place.insert(id, dest);
        }
        if pass == Pass::Backward {
            for (k, gr) in g.grads.iter().enumerate() {
                let Some(gr) = *gr else { continue };
                if g.nodes[gr].pass == Pass::Backward && self.uses[gr] == 1 && !self.batched[gr] {
                    continue;
                }
                if self.batched[gr] {
                    return None;
                }
                let src = place.get(&gr)?.clone();
                let dest = Place::Grad(self.param_field(k));
                let shape = &g.nodes[gr].shape;
                let (l, r) = (
                    dest.index(&crate::emit::loop_index(shape)),
                    src.index(&crate::emit::loop_index(shape)),
                );
                let body = if shape.is_scalar() {
                    let (l, r) = (dest.value(), src.value());
                    quote!(#l += #r;)
                } else {
                    quote!(#l += #r;)
                };
                out.push(loops(shape, body));
            }
        } else {
            let loss = place.get(&g.loss)?.clone();
            let v = loss.value();
            let t = &self.t;
            out.push(if self.batched[g.loss] {
                quote!(let mut total: #t = 0.0; for j in 0..B { total += #v[j]; } total)
            } else {
                quote!(B as #t * #v)
            });
        }
        Some(quote!(#(#out)*))
    }

    fn param_field(&self, k: usize) -> Ident {
        let id = self
            .g
            .nodes
            .iter()
            .position(|n| n.op == Op::Param(k))
            .expect("every parameter has a node");
        self.ident[id].clone()
    }

    /// Computes `id` into `dest`; `None` for an op with no batched form.
    fn emit_into(
        &self,
        id: NodeId,
        dest: &Place,
        mode: Mode,
        place: &HashMap<NodeId, Place>,
        out: &mut Vec<TokenStream>,
    ) -> Option<()> {
        let g = self.g;
        let node = &g.nodes[id];
        let k = quote!(::nn_runtime::__private::kernels);
        let d = dest.borrow_mut();
        let bt = |a: NodeId| self.batched[a];
        let put = |lhs: TokenStream, v: TokenStream| match mode {
            Mode::Assign => quote!(#lhs = #v;),
            Mode::Accumulate => quote!(#lhs += #v;),
        };
        let p = |a: NodeId| place.get(&a).cloned();
        match &node.op {
            Op::Map { .. } => {
                let e = self.map_elem(id, place);
                let lhs = self.at(dest, id, Bcast::Full);
                out.push(self.node_loops(id, put(lhs, e)));
            }
            Op::MatVec(w, x) => {
                let (w, x) = (p(*w)?.borrow(), p(*x)?.borrow());
                out.push(match (self.batched[id], mode) {
                    (true, Mode::Assign) => quote!(#k::matmul(#w, #x, #d);),
                    (true, Mode::Accumulate) => quote!(#k::matmul_acc(#w, #x, #d);),
                    (false, Mode::Assign) => quote!(#k::matvec(#w, #x, #d);),
                    (false, Mode::Accumulate) => quote!(#k::matvec_acc(#w, #x, #d);),
                });
            }
            Op::MatVecT(w, e) => {
                let batched = bt(*e);
                let (w, e) = (p(*w)?.borrow(), p(*e)?.borrow());
                out.push(if batched {
                    quote!(#k::matmul_tn_acc(#w, #e, #d);)
                } else {
                    quote!(#k::matvec_t_acc(#w, #e, #d);)
                });
            }
            Op::VecMat(x, m) => {
                let batched = bt(*x);
                let (x, m) = (p(*x)?.borrow(), p(*m)?.borrow());
                out.push(if batched {
                    quote!(#k::matmul_tn_acc(#m, #x, #d);)
                } else {
                    quote!(#k::matvec_t_acc(#m, #x, #d);)
                });
            }
            Op::MatMul(a, b) if !bt(*a) && !bt(*b) => {
                let (a, b) = (p(*a)?.borrow(), p(*b)?.borrow());
                out.push(match mode {
                    Mode::Assign => quote!(#k::matmul(#a, #b, #d);),
                    Mode::Accumulate => quote!(#k::matmul_acc(#a, #b, #d);),
                });
            }
            Op::MatMulNT(a, b) if !bt(*a) && !bt(*b) => {
                let (a, b) = (p(*a)?.borrow(), p(*b)?.borrow());
                out.push(quote!(#k::matmul_nt_acc(#a, #b, #d);));
            }
            Op::MatMulTN(a, b) if !bt(*a) && !bt(*b) => {
                let (a, b) = (p(*a)?.borrow(), p(*b)?.borrow());
                out.push(quote!(#k::matmul_tn_acc(#a, #b, #d);));
            }
            Op::Outer(u, v) if !bt(*u) && !bt(*v) => {
                let (u, v) = (p(*u)?.borrow(), p(*v)?.borrow());
                out.push(quote!(#k::outer_acc(#u, #v, #d);));
            }
            Op::Sum(a) => {
                let v = if self.absorbed(*a) {
                    self.map_elem(*a, place)
                } else {
                    self.at(&p(*a)?, *a, Bcast::Full)
                };
                let lhs = if self.batched[id] {
                    dest.index(&quote!([j]))
                } else {
                    dest.value()
                };
                out.push(self.node_loops(*a, quote!(#lhs += #v;)));
            }
            Op::BatchSum(a) => {
                let an = &g.nodes[*a];
                match &an.op {
                    // Σ_samples u vᵀ = U Vᵀ: one matrix product
                    Op::Outer(u, v) if self.absorbed(*a) && bt(*u) && bt(*v) => {
                        let (u, v) = (p(*u)?.borrow(), p(*v)?.borrow());
                        out.push(quote!(#k::matmul_nt_acc(#u, #v, #d);));
                    }
                    _ if !bt(*a) => {
                        // the same value for every sample: B times it
                        let t = &self.t;
                        let src = p(*a)?;
                        let (l, r) = (
                            self.at(dest, id, Bcast::Full),
                            self.at(&src, *a, Bcast::Full),
                        );
                        out.push(loops(&node.shape, quote!(#l += B as #t * #r;)));
                    }
                    _ => {
                        let v = if self.absorbed(*a) {
                            self.map_elem(*a, place)
                        } else {
                            self.at(&p(*a)?, *a, Bcast::Full)
                        };
                        let lhs = match node.shape.rank() {
                            0 => dest.value(),
                            1 => dest.index(&quote!([i])),
                            _ => return None,
                        };
                        out.push(self.node_loops(*a, quote!(#lhs += #v;)));
                    }
                }
            }
            Op::LogSoftmax(z) if bt(*z) => {
                let zp = p(*z)?;
                let n = Literal::usize_unsuffixed(node.shape.len());
                let (z0, zi) = (zp.index(&quote!([0][j])), zp.index(&quote!([i][j])));
                let oi = dest.index(&quote!([i][j]));
                // per sample: z - logsumexp(z), shifted by max(z) so large logits do not overflow
                out.push(quote!(
                    for j in 0..B {
                        let mut m = #z0;
                        for i in 1..#n { m = m.max(#zi); }
                        let mut s = 0.0;
                        for i in 0..#n { s += (#zi - m).exp(); }
                        let lse = m + s.ln();
                        for i in 0..#n { #oi = #zi - lse; }
                    }
                ));
            }
            Op::LogSoftmax(z) => {
                let z = p(*z)?.borrow();
                out.push(quote!(#k::log_softmax(#z, #d);));
            }
            Op::LogSoftmaxGrad(y, dd) if bt(*y) => {
                let (yp, dp) = (p(*y)?, p(*dd)?);
                let n = Literal::usize_unsuffixed(node.shape.len());
                let (yi, di, oi) = (
                    yp.index(&quote!([i][j])),
                    dp.index(&quote!([i][j])),
                    dest.index(&quote!([i][j])),
                );
                out.push(quote!(
                    for j in 0..B {
                        let mut total = 0.0;
                        for i in 0..#n { total += #di; }
                        for i in 0..#n { #oi += #di - #yi.exp() * total; }
                    }
                ));
            }
            Op::LogSoftmaxGrad(y, dd) => {
                let (y, dd) = (p(*y)?.borrow(), p(*dd)?.borrow());
                out.push(quote!(#k::log_softmax_grad_acc(#y, #dd, #d);));
            }
            Op::Pick(a, t) if bt(*a) => {
                let (ap, tp) = (p(*a)?, p(*t)?);
                let tj = if bt(*t) {
                    tp.index(&quote!([j]))
                } else {
                    tp.value()
                };
                let v = ap.index(&quote!([#tj][j]));
                let lhs = dest.index(&quote!([j]));
                out.push(quote!(for j in 0..B { #lhs = #v; }));
            }
            Op::OneHot(t, dv) if bt(*t) => {
                let (tp, dp) = (p(*t)?, p(*dv)?);
                let dj = if bt(*dv) {
                    dp.index(&quote!([j]))
                } else {
                    dp.value()
                };
                let tj = tp.index(&quote!([j]));
                let lhs = dest.index(&quote!([#tj][j]));
                out.push(quote!(for j in 0..B { #lhs += #dj; }));
            }
            Op::AddN(parts) => {
                for (n, &part) in parts.iter().enumerate() {
                    let m = if n == 0 { mode } else { Mode::Accumulate };
                    match p(part) {
                        Some(src) => {
                            let (l, r) = (
                                self.at(dest, id, Bcast::Full),
                                self.at(&src, part, Bcast::Full),
                            );
                            let body = match m {
                                Mode::Assign => quote!(#l = #r;),
                                Mode::Accumulate => quote!(#l += #r;),
                            };
                            out.push(self.node_loops(id, body));
                        }
                        None if self.batched[part] == self.batched[id] => {
                            self.emit_into(part, dest, m, place, out)?
                        }
                        None => {
                            // a shared value added to every sample's
                            let Op::Map { .. } = g.nodes[part].op else {
                                return None;
                            };
                            let e = self.map_elem(part, place);
                            let l = self.at(dest, id, Bcast::Full);
                            let body = match m {
                                Mode::Assign => quote!(#l = #e;),
                                Mode::Accumulate => quote!(#l += #e;),
                            };
                            out.push(self.node_loops(id, body));
                        }
                    }
                }
            }
            Op::LogSumExp(a) if bt(*a) => {
                let ap = p(*a)?;
                let n = Literal::usize_unsuffixed(g.nodes[*a].shape.len());
                let (a0, ai) = (ap.index(&quote!([0][j])), ap.index(&quote!([i][j])));
                let lhs = dest.index(&quote!([j]));
                let v = quote!({
                    let mut m = #a0;
                    for i in 1..#n { m = m.max(#ai); }
                    let mut s = 0.0;
                    for i in 0..#n { s += (#ai - m).exp(); }
                    m + s.ln()
                });
                let body = put(lhs, v);
                out.push(quote!(for j in 0..B { #body }));
            }
            Op::LogSumExp(a) => {
                let flat = flat_view(p(*a)?.borrow(), &g.nodes[*a].shape);
                out.push(put(dest.value(), quote!(#k::logsumexp(#flat))));
            }
            Op::Pick(a, t) => {
                let (ap, tp) = (p(*a)?, p(*t)?);
                let tv = tp.value();
                out.push(put(dest.value(), ap.index(&quote!([#tv]))));
            }
            Op::OneHot(t, dv) => {
                let (tv, dv) = (p(*t)?.value(), p(*dv)?.value());
                let lhs = dest.index(&quote!([#tv]));
                out.push(quote!(#lhs += #dv;));
            }
            Op::Slice(a, start) => {
                let ap = p(*a)?;
                let s = Literal::usize_unsuffixed(*start);
                let v = if bt(*a) {
                    ap.index(&quote!([i + #s][j]))
                } else {
                    ap.index(&quote!([i + #s]))
                };
                let lhs = self.at(dest, id, Bcast::Full);
                out.push(self.node_loops(id, put(lhs, v)));
            }
            Op::Pad(a, start) => {
                let ap = p(*a)?;
                let s = Literal::usize_unsuffixed(*start);
                let lhs = if self.batched[id] {
                    dest.index(&quote!([i + #s][j]))
                } else {
                    dest.index(&quote!([i + #s]))
                };
                let v = self.at(&ap, *a, Bcast::Full);
                out.push(self.node_loops(*a, quote!(#lhs += #v;)));
            }
            Op::Concat(a, b) => {
                let n = Literal::usize_unsuffixed(g.nodes[*a].shape.len());
                for (part, off) in [(*a, None), (*b, Some(n))] {
                    let src = p(part)?;
                    let idx = match (self.batched[id], &off) {
                        (true, None) => quote!([i][j]),
                        (true, Some(n)) => quote!([i + #n][j]),
                        (false, None) => quote!([i]),
                        (false, Some(n)) => quote!([i + #n]),
                    };
                    let lhs = dest.index(&idx);
                    let v = self.at(&src, part, Bcast::Full);
                    out.push(self.loops_for(&g.nodes[part].shape, self.batched[id], put(lhs, v)));
                }
            }
            Op::Transpose(a) if !bt(*a) => {
                let v = p(*a)?.index(&quote!([j][i]));
                let lhs = dest.index(&quote!([i][j]));
                out.push(loops(&node.shape, put(lhs, v)));
            }
            Op::SumCols(a) | Op::SumRows(a) if !bt(*a) => {
                let v = p(*a)?.index(&quote!([i][j]));
                let lhs = if matches!(node.op, Op::SumCols(_)) {
                    dest.index(&quote!([i]))
                } else {
                    dest.index(&quote!([j]))
                };
                out.push(loops(&g.nodes[*a].shape, quote!(#lhs += #v;)));
            }
            _ => return None,
        }
        Some(())
    }
}

fn tuple(tys: Vec<TokenStream>) -> TokenStream {
    match tys.as_slice() {
        [one] => one.clone(),
        many => quote!((#(#many,)*)),
    }
}
