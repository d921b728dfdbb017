//! Emission: the optimised graph -> Rust tokens. Fixed-size arrays, loops with
//! constant bounds, calls to nn-runtime's const-generic kernels, no heap
//! allocation. Locals are named after the definition (`h`, `d_h`), and each
//! function's doc comment lists the maths it computes, line by line.

use crate::ir::*;
use crate::scalar::{Cmp, Func, S};
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote};
use std::collections::{HashMap, HashSet};

/// Names of the generated items.
pub struct Items {
    /// The user's struct, re-emitted with its attributes and visibility.
    pub item: syn::ItemStruct,
    /// The batched form (tape struct, methods), if the network has one.
    pub batch: Option<(TokenStream, TokenStream)>,
}

/// Rust keywords and names the generated code uses itself.
pub(crate) const RESERVED: &[&str] = &[
    "as",
    "break",
    "const",
    "continue",
    "crate",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "Self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "async",
    "await",
    "dyn",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "macro",
    "override",
    "priv",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "try",
    "gen",
    "i",
    "j",
    "tape",
    "grads",
    "input",
    "target",
    "params",
    "kernels",
    "rng",
    "seed",
    "output",
    "union",
    "t",
    "state",
    "norms",
    "output_seq",
];

/// Emits the network's items for `g`.
pub fn emit_network(g: &Graph, items: &Items) -> TokenStream {
    let cx = Cx::new(g, items);
    cx.all()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Predict,
    Forward,
    Backward,
    /// One step of a recurrent network, with its state passed in and out.
    Step,
}

/// Where a node's value lives inside one generated function.
#[derive(Clone)]
pub(crate) enum Place {
    /// An owned local: `h`.
    Local(Ident),
    /// A reference binding (inputs, targets, parameters): `x`, read as `x[i]`, `*x`.
    Ref(Ident),
    /// A tape field: `tape.h`.
    Tape(Ident),
    /// A gradient field: `grads.w`.
    Grad(Ident),
    /// A reference to a sequence, at the current step: `x[t]`.
    RefStep(Ident),
    /// A per-step tape field, at the current step: `tape.h[t]`.
    TapeStep(Ident),
    /// A field of the recurrent state passed to `step`: `state.h`.
    State(Ident),
}

impl Place {
    pub(crate) fn borrow(&self) -> TokenStream {
        match self {
            Place::Local(n) => quote!(&#n),
            Place::Ref(n) => quote!(#n),
            Place::Tape(n) => quote!(&tape.#n),
            Place::Grad(n) => quote!(&grads.#n),
            Place::RefStep(n) => quote!(&#n[t]),
            Place::TapeStep(n) => quote!(&tape.#n[t]),
            Place::State(n) => quote!(&state.#n),
        }
    }
    pub(crate) fn borrow_mut(&self) -> TokenStream {
        match self {
            Place::Local(n) => quote!(&mut #n),
            Place::Ref(n) => quote!(#n),
            Place::Tape(n) => quote!(&mut tape.#n),
            Place::Grad(n) => quote!(&mut grads.#n),
            Place::RefStep(n) => quote!(&mut #n[t]),
            Place::TapeStep(n) => quote!(&mut tape.#n[t]),
            Place::State(n) => quote!(&mut state.#n),
        }
    }
    /// The place itself (an lvalue or a scalar value).
    pub(crate) fn value(&self) -> TokenStream {
        match self {
            Place::Local(n) => quote!(#n),
            Place::Ref(n) => quote!((*#n)),
            Place::Tape(n) => quote!(tape.#n),
            Place::Grad(n) => quote!(grads.#n),
            Place::RefStep(n) => quote!(#n[t]),
            Place::TapeStep(n) => quote!(tape.#n[t]),
            Place::State(n) => quote!(state.#n),
        }
    }
    pub(crate) fn index(&self, idx: &TokenStream) -> TokenStream {
        let v = match self {
            Place::Ref(n) => quote!(#n),
            other => other.value(),
        };
        quote!(#v #idx)
    }
}

/// Whether a destination already holds zeros (a fresh local) or must be added to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Assign,
    Accumulate,
}

/// The state of one generated function while it is emitted.
struct Fx {
    which: Which,
    pass: Pass,
    /// Nodes this function computes or reads.
    live: Vec<bool>,
    place: HashMap<NodeId, Place>,
    stmts: Vec<TokenStream>,
}

struct Cx<'g> {
    g: &'g Graph,
    items: &'g Items,
    t: TokenStream,
    /// Unique Rust identifier of every node.
    ident: Vec<Ident>,
    live: Vec<bool>,
    uses: Vec<usize>,
    /// Forward values (and inputs, targets) the backward pass reads.
    tape: Vec<NodeId>,
    /// Each node's place relative to its pass's time loop.
    regions: Vec<Region>,
    params_ty: Ident,
    tape_ty: Ident,
    state_ty: Ident,
}

impl<'g> Cx<'g> {
    fn new(g: &'g Graph, items: &'g Items) -> Self {
        let live = g.live_from(&g.roots());
        let uses = g.use_counts(&live);
        let ident = assign_idents(g, &live);
        let tape = plan_tape(g, &live);
        let name = &items.item.ident;
        Cx {
            g,
            items,
            t: match g.dtype {
                Dtype::F32 => quote!(f32),
                Dtype::F64 => quote!(f64),
            },
            ident,
            live,
            uses,
            tape,
            regions: g.regions(),
            params_ty: format_ident!("{}Params", name),
            tape_ty: format_ident!("{}Tape", name),
            state_ty: format_ident!("{}State", name),
        }
    }

    fn ty(&self, shape: &Shape) -> TokenStream {
        let t = &self.t;
        match dims(shape).as_slice() {
            [] => quote!(#t),
            [n] => quote!([#t; #n]),
            [r, c] => quote!([[#t; #c]; #r]),
            _ => unreachable!("lowering rejects rank > 2"),
        }
    }

    fn node_ty(&self, id: NodeId) -> TokenStream {
        match self.g.nodes[id].op {
            Op::Target(k) if self.g.targets[k].classes.is_some() => quote!(usize),
            _ => self.ty(&self.g.nodes[id].shape),
        }
    }

    fn zero(&self, shape: &Shape) -> TokenStream {
        match dims(shape).as_slice() {
            [] => quote!(0.0),
            [n] => quote!([0.0; #n]),
            [r, c] => quote!([[0.0; #c]; #r]),
            _ => unreachable!("lowering rejects rank > 2"),
        }
    }

    /// The type of one input or target: a sequence `[x; T]` when per-step.
    fn decl_ty(&self, d: &TensorDecl) -> TokenStream {
        let one = match d.classes {
            Some(_) => quote!(usize),
            None => self.ty(&d.shape),
        };
        match (d.per_step, self.g.steps) {
            (true, Some(steps)) => {
                let n = Literal::usize_unsuffixed(steps.count);
                quote!([#one; #n])
            }
            _ => one,
        }
    }

    /// A node's type in the tape: `[x; T]` for a per-step value.
    fn tape_ty(&self, id: NodeId) -> TokenStream {
        let one = self.node_ty(id);
        match (self.regions[id], self.g.steps) {
            (Region::Step, Some(steps)) => {
                let n = Literal::usize_unsuffixed(steps.count);
                quote!([#one; #n])
            }
            _ => one,
        }
    }

    fn input_ty(&self, decls: &[TensorDecl]) -> TokenStream {
        let tys: Vec<TokenStream> = decls.iter().map(|d| self.decl_ty(d)).collect();
        match tys.as_slice() {
            [one] => one.clone(),
            many => quote!((#(#many,)*)),
        }
    }

    fn all(&self) -> TokenStream {
        let item = &self.items.item;
        let attrs = &item.attrs;
        let vis = &item.vis;
        let name = &item.ident;
        let t = &self.t;
        let params_ty = &self.params_ty;
        let tape_ty = &self.tape_ty;
        let g = self.g;

        // the parameter struct
        let fields = g.params.iter().enumerate().map(|(k, p)| {
            let f = self.param_field(k);
            let ty = self.ty(&p.shape);
            let doc = format!(
                "`{}`: {}, initialised {}",
                p.name,
                p.shape,
                describe_init(&p.init)
            );
            quote!(#[doc = #doc] pub #f: #ty,)
        });
        let n_params = Literal::usize_unsuffixed(g.params.iter().map(|p| p.shape.len()).sum());
        let params_doc = format!(
            "Parameters of [`{name}`], in declaration order; also the layout of its gradients."
        );
        // the tape struct
        let tape_fields = self.tape.iter().map(|&id| {
            let f = &self.ident[id];
            let ty = self.tape_ty(id);
            let doc = format!("`{}`: {}", self.math_name(id), self.g.nodes[id].shape);
            quote!(#[doc = #doc] pub #f: #ty,)
        });
        let tape_doc = format!("What [`{name}::forward`] stores for [`{name}::backward`]: only the values the backward pass reads.");

        let input_ty = self.input_ty(&g.inputs);
        let target_ty = self.input_ty(&g.targets);
        let output_ty = self.tape_ty(g.output);
        let (state_struct, recurrent) = self.recurrent_items();
        let (batch_tape, batch_methods) = self.items.batch.clone().unwrap_or_default();
        let (backward_sig, backward_body) = match g.steps {
            Some(steps) => {
                let n = Literal::usize_unsuffixed(steps.count);
                (
                    quote!(
                        /// Like [`backward`](Self::backward), and records in `norms[t]`
                        /// the norm of the state adjoint carried from step `t` to
                        /// step `t - 1`: watch it shrink or grow to see vanishing
                        /// or exploding gradients.
                        pub fn backward_traced(&self, tape: &#tape_ty, grads: &mut #params_ty, norms: &mut [#t; #n])
                    ),
                    quote!(
                        let mut norms = [0.0; #n];
                        self.backward_traced(tape, grads, &mut norms);
                    ),
                )
            }
            None => (quote!(), quote!()),
        };

        let param_info = {
            let mut offset = 0usize;
            let infos = g.params.iter().map(|p| {
                let pname = &p.name;
                let dims = dims(&p.shape);
                let o = Literal::usize_unsuffixed(offset);
                offset += p.shape.len();
                quote!(::nn_runtime::__private::ParamInfo { name: #pname, shape: &[#(#dims),*], offset: #o })
            });
            quote!(&[#(#infos),*])
        };
        let init_stmts = g.params.iter().enumerate().map(|(k, p)| {
            let f = self.param_field(k);
            let (fan_in, fan_out) = match dims(&p.shape).as_slice() {
                [] => (Literal::usize_unsuffixed(1), Literal::usize_unsuffixed(1)),
                [n] => (n.clone(), n.clone()),
                [o, i] => (i.clone(), o.clone()),
                _ => unreachable!("lowering rejects rank > 2"),
            };
            let init = init_tokens(&p.init);
            let slice = match p.shape.rank() {
                0 => quote!(::core::slice::from_mut(&mut params.#f)),
                1 => quote!(&mut params.#f[..]),
                _ => quote!(params.#f.as_flattened_mut()),
            };
            quote!(#init.fill(#slice, #fan_in, #fan_out, &mut rng);)
        });

        let dot = g.to_dot(&name.to_string());
        let predict = self.function(Which::Predict);
        let forward = self.function(Which::Forward);
        let backward = self.function(Which::Backward);
        let (fwd_flops, bwd_flops) = self.flops();
        let (fwd_flops, bwd_flops) = (
            Literal::u64_unsuffixed(fwd_flops),
            Literal::u64_unsuffixed(bwd_flops),
        );
        let is_correct = self.is_correct();
        let predict_doc = self.doc(Which::Predict);
        let forward_doc = self.doc(Which::Forward);
        let backward_doc = self.doc(Which::Backward);
        let dtype_name = t.to_string();
        let struct_doc = format!(
            "Generated by `#[network]`: {} parameters ({dtype_name}), forward and backward passes specialised at compile time.",
            n_params
        );

        let backward_fns = if g.steps.is_some() {
            quote!(
                #[doc = #backward_doc]
                pub fn backward(&self, tape: &#tape_ty, grads: &mut #params_ty) {
                    #backward_body
                }

                #[doc = #backward_doc]
                #backward_sig {
                    #backward
                }
            )
        } else {
            quote!(
                #[doc = #backward_doc]
                pub fn backward(&self, tape: &#tape_ty, grads: &mut #params_ty) {
                    #backward
                }
            )
        };
        quote! {
            #(#attrs)*
            #[doc = ""]
            #[doc = #struct_doc]
            #vis struct #name {
                /// The parameters, on the heap (a large network's would overflow a debug build's stack).
                pub params: ::nn_runtime::__private::Box<#params_ty>,
            }

            #[doc = #params_doc]
            #[repr(C)]
            #[derive(Clone, Debug, PartialEq)]
            #vis struct #params_ty {
                #(#fields)*
            }

            // SAFETY: a `#[repr(C)]` struct of float arrays: zeros are valid and there is no padding.
            unsafe impl ::nn_runtime::__private::Zeroable for #params_ty {}
            // SAFETY: as above; `LEN` counts every float of every field (checked below).
            unsafe impl ::nn_runtime::__private::Flat<#t> for #params_ty {
                const LEN: usize = #n_params;
            }
            const _: () = assert!(::core::mem::size_of::<#params_ty>() == #n_params * ::core::mem::size_of::<#t>());

            #state_struct

            #batch_tape

            #[doc = #tape_doc]
            #[repr(C)]
            #[derive(Clone, Debug)]
            #vis struct #tape_ty {
                #(#tape_fields)*
            }

            // SAFETY: a `#[repr(C)]` struct of float arrays and class indices: zeros are valid.
            unsafe impl ::nn_runtime::__private::Zeroable for #tape_ty {}

            #[allow(unused_mut, unused_variables, clippy::all)]
            impl #name {
                /// Number of scalar parameters.
                pub const PARAMS: usize = #n_params;
                /// Size of one tape in bytes.
                pub const TAPE_BYTES: usize = ::core::mem::size_of::<#tape_ty>();
                /// Floating-point operations of one forward pass.
                pub const FORWARD_FLOPS: u64 = #fwd_flops;
                /// Floating-point operations of one backward pass.
                pub const BACKWARD_FLOPS: u64 = #bwd_flops;
                /// Every parameter tensor with its name, shape and flat offset.
                pub const PARAM_INFO: &'static [::nn_runtime::__private::ParamInfo] = #param_info;
                /// The forward (solid) and backward (dashed) graph in Graphviz DOT:
                /// `dot -Tsvg` renders it.
                pub const GRAPH_DOT: &'static str = #dot;

                /// A network with every parameter initialised as declared, from `seed`.
                pub fn new(seed: u64) -> Self {
                    use ::nn_runtime::__private::Zeroable as _;
                    let mut rng = ::nn_runtime::__private::Rng::new(seed);
                    let mut params = #params_ty::zeroed_box();
                    #(#init_stmts)*
                    Self { params }
                }

                /// A network with the given parameters.
                pub fn from_params(params: ::nn_runtime::__private::Box<#params_ty>) -> Self {
                    Self { params }
                }

                /// A zeroed tape on the heap.
                pub fn new_tape() -> ::nn_runtime::__private::Box<#tape_ty> {
                    <#tape_ty as ::nn_runtime::__private::Zeroable>::zeroed_box()
                }

                /// A zeroed gradient buffer on the heap.
                pub fn new_grads() -> ::nn_runtime::__private::Box<#params_ty> {
                    <#params_ty as ::nn_runtime::__private::Zeroable>::zeroed_box()
                }

                #[doc = #predict_doc]
                pub fn predict(&self, input: &#input_ty) -> #output_ty {
                    #predict
                }

                #[doc = #forward_doc]
                pub fn forward(&self, input: &#input_ty, target: &#target_ty, tape: &mut #tape_ty) -> #t {
                    #forward
                }

                #backward_fns

                #recurrent

                #batch_methods
            }

            impl ::nn_runtime::__private::Network for #name {
                type Scalar = #t;
                type Input = #input_ty;
                type Target = #target_ty;
                type Output = #output_ty;
                type Params = #params_ty;
                type Tape = #tape_ty;
                const PARAMS: usize = #name::PARAMS;
                const TAPE_BYTES: usize = #name::TAPE_BYTES;
                const FORWARD_FLOPS: u64 = #name::FORWARD_FLOPS;
                const BACKWARD_FLOPS: u64 = #name::BACKWARD_FLOPS;
                const PARAM_INFO: &'static [::nn_runtime::__private::ParamInfo] = #name::PARAM_INFO;
                fn new(seed: u64) -> Self {
                    #name::new(seed)
                }
                fn params(&self) -> &#params_ty {
                    &self.params
                }
                fn params_mut(&mut self) -> &mut #params_ty {
                    &mut self.params
                }
                fn predict(&self, input: &#input_ty) -> #output_ty {
                    #name::predict(self, input)
                }
                fn forward(&self, input: &#input_ty, target: &#target_ty, tape: &mut #tape_ty) -> #t {
                    #name::forward(self, input, target, tape)
                }
                fn backward(&self, tape: &#tape_ty, grads: &mut #params_ty) {
                    #name::backward(self, tape, grads)
                }
                #[allow(clippy::all)]
                fn is_correct(output: &#output_ty, target: &#target_ty) -> bool {
                    #is_correct
                }
            }
        }
    }

    /// The body of `predict`, `forward` or `backward`.
    fn function(&self, which: Which) -> TokenStream {
        let g = self.g;
        let pass = if which == Which::Backward {
            Pass::Backward
        } else {
            Pass::Forward
        };
        let mut roots: Vec<NodeId> = match which {
            Which::Predict | Which::Step => vec![g.output],
            Which::Forward => vec![g.loss],
            Which::Backward => g.grads.iter().flatten().copied().collect(),
        };
        if which == Which::Backward {
            // carried state adjoints flow into learned initial states and the norms
            roots.extend(g.state_adjoints.iter().flatten());
        }
        let live = self.live_with_states(roots);
        let mut fx = Fx {
            which,
            pass,
            live,
            place: HashMap::new(),
            stmts: vec![],
        };
        self.bind_leaves(&mut fx);
        self.emit_region(&mut fx, Region::Before);
        match (g.steps, which) {
            (Some(_), Which::Step) => {
                self.emit_region(&mut fx, Region::Step);
                self.update_states(&mut fx);
            }
            (Some(steps), _) => self.emit_loop(&mut fx, steps),
            (None, _) => {}
        }
        self.emit_region(&mut fx, Region::After);
        self.finish(&mut fx);
        let stmts = fx.stmts;
        quote!(#(#stmts)*)
    }

    /// Nodes live for `roots`, following states: a live previous value makes
    /// its update live too (the next step reads it).
    fn live_with_states(&self, mut roots: Vec<NodeId>) -> Vec<bool> {
        loop {
            let live = self.g.live_from(&roots);
            let more: Vec<NodeId> = self
                .g
                .states
                .iter()
                .filter(|st| live[st.prev] && !live[st.update])
                .map(|st| st.update)
                .collect();
            if more.is_empty() {
                return live;
            }
            roots.extend(more);
        }
    }

    /// Binds inputs, targets and parameters, and places tape values.
    fn bind_leaves(&self, fx: &mut Fx) {
        let g = self.g;
        let which = fx.which;
        if which == Which::Backward {
            for &id in &self.tape {
                if self.live[id] {
                    let p = if self.regions[id] == Region::Step {
                        Place::TapeStep(self.ident[id].clone())
                    } else {
                        Place::Tape(self.ident[id].clone())
                    };
                    fx.place.insert(id, p);
                }
            }
        } else {
            let stmt = self.bind_decls(quote!(input), &g.inputs, Op::Input, fx);
            fx.stmts.push(stmt);
            if which == Which::Forward {
                let stmt = self.bind_decls(quote!(target), &g.targets, Op::Target, fx);
                fx.stmts.push(stmt);
                // inputs and targets the backward pass reads are copied to the tape
                for &id in &self.tape {
                    if matches!(g.nodes[id].op, Op::Input(_) | Op::Target(_)) {
                        let n = &self.ident[id];
                        fx.stmts.push(quote!(tape.#n = *#n;));
                    }
                }
            }
        }
        let live = &fx.live;
        let pass = fx.pass;
        let state_init = |id: NodeId| {
            g.states
                .iter()
                .any(|st| matches!(st.init, StateInit::Param(p) if g.nodes[id].op == Op::Param(p)))
        };
        let read_here = |id: NodeId| {
            g.nodes
                .iter()
                .enumerate()
                .any(|(u, user)| live[u] && user.pass == pass && user.op.args().contains(&id))
                || (matches!(which, Which::Predict | Which::Step) && g.output == id)
                || (which == Which::Backward && g.grads.contains(&Some(id)))
                || (matches!(which, Which::Predict | Which::Forward)
                    && g.steps.is_some()
                    && state_init(id))
        };
        let used_params: Vec<Ident> = (0..g.nodes.len())
            .filter(|&id| matches!(g.nodes[id].op, Op::Param(_)) && read_here(id))
            .map(|id| {
                fx.place.insert(id, Place::Ref(self.ident[id].clone()));
                self.ident[id].clone()
            })
            .collect();
        if !used_params.is_empty() {
            let pty = &self.params_ty;
            fx.stmts.insert(
                0,
                quote!(let #pty { #(#used_params,)* .. } = &*self.params;),
            );
        }
        fx.stmts.insert(
            0,
            quote!(
                use ::nn_runtime::__private::Activations as _;
            ),
        );
    }

    /// The parameters whose gradient is node `id`.
    fn grad_of(&self, id: NodeId) -> Vec<usize> {
        self.g
            .grads
            .iter()
            .enumerate()
            .filter(|(_, gr)| **gr == Some(id))
            .map(|(k, _)| k)
            .collect()
    }

    /// Computes the live nodes of this pass in one region, in order.
    fn emit_region(&self, fx: &mut Fx, region: Region) {
        let g = self.g;
        let looped = g.steps.is_some() && fx.which != Which::Step;
        for id in 0..g.nodes.len() {
            let node = &g.nodes[id];
            if !fx.live[id] || node.pass != fx.pass || self.regions[id] != region {
                continue;
            }
            match node.op {
                Op::Input(_) | Op::Target(_) | Op::Param(_) => continue,
                // registers and accumulators set up around the loop
                Op::StatePrev(_) | Op::Carry(_) | Op::StepSum(_) | Op::Last(_) if looped => {
                    continue
                }
                Op::StatePrev(k) => {
                    // `step`: the previous value is the caller's state
                    fx.place.insert(
                        id,
                        Place::State(format_ident!("{}", sanitize(&g.states[k].name))),
                    );
                    continue;
                }
                Op::EachStep(d) => {
                    // the same value at every step: read it where it is
                    if let Some(p) = fx.place.get(&d).cloned() {
                        fx.place.insert(id, p);
                    }
                    continue;
                }
                _ => {}
            }
            if self.deferred(id, fx.pass) || self.inlined(id) {
                continue;
            }
            let grads = if fx.which == Which::Backward {
                self.grad_of(id)
            } else {
                vec![]
            };
            if grads.len() == 1 && self.uses[id] == 1 {
                // only the gradient reads it: compute straight into the gradient buffer
                let dest = Place::Grad(self.param_field(grads[0]));
                self.emit_into(id, &dest, Mode::Accumulate, &fx.place, &mut fx.stmts);
                continue;
            }
            let dest = self.dest_for(fx, id);
            if let Place::Local(n) = &dest {
                let ty = self.node_ty(id);
                if let (true, Op::Map { .. }) = (node.shape.is_scalar(), &node.op) {
                    let e = self.map_elem(id, &quote!(), &fx.place);
                    fx.stmts.push(quote!(let #n: #ty = #e;));
                    fx.place.insert(id, dest);
                    continue;
                }
                let zero = self.zero(&node.shape);
                fx.stmts.push(quote!(let mut #n: #ty = #zero;));
            } else if !overwrites(&node.op) {
                // a reused tape holds the last sample's values: clear
                // before accumulating into it
                let v = dest.value();
                let zero = self.zero(&node.shape);
                fx.stmts.push(quote!(#v = #zero;));
            }
            self.emit_into(id, &dest, Mode::Assign, &fx.place, &mut fx.stmts);
            fx.place.insert(id, dest);
        }
    }

    /// Where a computed node goes: the tape (forward, if backward reads it) or a local.
    fn dest_for(&self, fx: &Fx, id: NodeId) -> Place {
        if fx.which == Which::Forward && self.tape.contains(&id) {
            if self.regions[id] == Region::Step {
                Place::TapeStep(self.ident[id].clone())
            } else {
                Place::Tape(self.ident[id].clone())
            }
        } else {
            Place::Local(self.ident[id].clone())
        }
    }

    /// The time loop: registers for states, carried adjoints, sums over
    /// steps and last values before it; the per-step nodes inside it.
    fn emit_loop(&self, fx: &mut Fx, steps: Steps) {
        let g = self.g;
        let count = Literal::usize_unsuffixed(steps.count);
        let last = Literal::usize_unsuffixed(steps.count - 1);
        let forward = fx.pass == Pass::Forward;
        // registers declared before the loop
        for (id, node) in g.nodes.iter().enumerate() {
            if !fx.live[id] || node.pass != fx.pass {
                continue;
            }
            let n = &self.ident[id];
            let ty = self.node_ty(id);
            let zero = self.zero(&node.shape);
            match node.op {
                Op::StatePrev(k) if forward => {
                    let init = match &g.states[k].init {
                        StateInit::Constant(c) => self.fill(&node.shape, *c),
                        StateInit::Param(p) => {
                            let pn = self.param_field(*p);
                            quote!(*#pn)
                        }
                    };
                    fx.stmts.push(quote!(let mut #n: #ty = #init;));
                    fx.place.insert(id, Place::Local(n.clone()));
                }
                Op::Carry(_) => {
                    fx.stmts.push(quote!(let mut #n: #ty = #zero;));
                    fx.place.insert(id, Place::Local(n.clone()));
                }
                Op::StepSum(_) | Op::Last(_) => {
                    let grads = if fx.which == Which::Backward {
                        self.grad_of(id)
                    } else {
                        vec![]
                    };
                    let dest = if grads.len() == 1 && self.uses[id] == 1 {
                        Place::Grad(self.param_field(grads[0]))
                    } else if forward && fx.which == Which::Forward && self.tape.contains(&id) {
                        fx.stmts.push(quote!(tape.#n = #zero;));
                        Place::Tape(n.clone())
                    } else {
                        fx.stmts.push(quote!(let mut #n: #ty = #zero;));
                        Place::Local(n.clone())
                    };
                    fx.place.insert(id, dest);
                }
                _ => {}
            }
        }
        let output_seq = fx.which == Which::Predict && self.regions[g.output] == Region::Step;
        if output_seq {
            let ty = self.node_ty(g.output);
            let zero = self.zero(&g.nodes[g.output].shape);
            fx.stmts
                .push(quote!(let mut output_seq: [#ty; #count] = [#zero; #count];));
        }
        let outer = std::mem::take(&mut fx.stmts);
        // the loop body
        if fx.which == Which::Forward {
            // previous state values the backward pass reads
            for st in &g.states {
                if fx.live[st.prev] && self.tape.contains(&st.prev) {
                    let n = &self.ident[st.prev];
                    fx.stmts.push(quote!(tape.#n[t] = #n;));
                }
            }
        }
        self.emit_region(fx, Region::Step);
        for (id, node) in g.nodes.iter().enumerate() {
            if !fx.live[id] || node.pass != fx.pass {
                continue;
            }
            match node.op {
                Op::StepSum(a) => {
                    let dest = fx.place[&id].clone();
                    if !fx.place.contains_key(&a) && self.deferred_into(a, id) {
                        self.emit_into(a, &dest, Mode::Accumulate, &fx.place, &mut fx.stmts);
                    } else if let Some(src) = fx.place.get(&a).cloned() {
                        self.copy_into(
                            &g.nodes[a].shape,
                            &src,
                            &dest,
                            Mode::Accumulate,
                            &mut fx.stmts,
                        );
                    }
                }
                Op::Last(a) => {
                    let dest = fx.place[&id].clone();
                    if let Some(src) = fx.place.get(&a).cloned() {
                        let mut copy = vec![];
                        self.copy_into(&g.nodes[a].shape, &src, &dest, Mode::Assign, &mut copy);
                        fx.stmts.push(quote!(if t == #last { #(#copy)* }));
                    }
                }
                _ => {}
            }
        }
        if output_seq {
            let v = fx.place[&g.output].value();
            fx.stmts.push(quote!(output_seq[t] = #v;));
        }
        if forward {
            self.update_states(fx);
        } else {
            self.carry_adjoints(fx, steps);
        }
        let body = std::mem::replace(&mut fx.stmts, outer);
        let range = if forward {
            quote!(0..#count)
        } else {
            quote!((0..#count).rev())
        };
        fx.stmts.push(quote!(for t in #range { #(#body)* }));
        if !forward {
            // the adjoint left after step 0 belongs to the initial state
            for (k, st) in g.states.iter().enumerate() {
                if let StateInit::Param(p) = st.init {
                    if let Some(src) = self.carry_node(k).and_then(|c| fx.place.get(&c).cloned()) {
                        let dest = Place::Grad(self.param_field(p));
                        self.copy_into(&st.shape, &src, &dest, Mode::Accumulate, &mut fx.stmts);
                    }
                }
            }
        }
    }

    /// Forward: at the end of a step, each state's register takes its new value.
    fn update_states(&self, fx: &mut Fx) {
        for st in &self.g.states {
            if !fx.live[st.prev] {
                continue;
            }
            let Some(src) = fx.place.get(&st.update).cloned() else {
                continue;
            };
            let dest = match fx.which {
                Which::Step => Place::State(format_ident!("{}", sanitize(&st.name))),
                _ => Place::Local(self.ident[st.prev].clone()),
            };
            self.copy_into(&st.shape, &src, &dest, Mode::Assign, &mut fx.stmts);
        }
    }

    /// The `Carry` node of state `k`, if the backward pass has one.
    fn carry_node(&self, k: usize) -> Option<NodeId> {
        self.g
            .nodes
            .iter()
            .position(|n| n.op == Op::Carry(k))
            .filter(|&id| self.live[id])
    }

    /// Backward: at the end of step `t`, the adjoint of each state's previous
    /// value is carried to step `t - 1` (cut every `truncate` steps), and
    /// its norm recorded.
    fn carry_adjoints(&self, fx: &mut Fx, steps: Steps) {
        let g = self.g;
        let t = &self.t;
        let mut norm_terms = vec![];
        for (k, st) in g.states.iter().enumerate() {
            let Some(carry) = self.carry_node(k) else {
                continue;
            };
            let Some(dest) = fx.place.get(&carry).cloned() else {
                continue;
            };
            let Some(adj) = g.state_adjoints[k].and_then(|a| fx.place.get(&a).cloned()) else {
                continue;
            };
            let mut copy = vec![];
            self.copy_into(&st.shape, &adj, &dest, Mode::Assign, &mut copy);
            let zero = self.zero(&st.shape);
            let d = dest.value();
            fx.stmts.push(match steps.truncate {
                Some(kk) => {
                    let kk = Literal::usize_unsuffixed(kk);
                    quote!(if t % #kk == 0 && t > 0 { #d = #zero; } else { #(#copy)* })
                }
                None => quote!(#(#copy)*),
            });
            let v = flat_view(adj.borrow(), &st.shape);
            norm_terms.push(quote!((#v).iter().map(|x| x * x).sum::<#t>()));
        }
        if !norm_terms.is_empty() {
            fx.stmts.push(quote!(norms[t] = (#(#norm_terms)+*).sqrt();));
        }
    }

    /// The statements after the last region: gradients of stored values, and the result.
    fn finish(&self, fx: &mut Fx) {
        let g = self.g;
        match fx.which {
            Which::Backward => {
                // gradients that are stored values (several users, or forward values)
                for (k, gr) in g.grads.iter().enumerate() {
                    let Some(gr) = *gr else { continue };
                    let computed_into_grad = g.nodes[gr].pass == Pass::Backward
                        && self.grad_of(gr).len() == 1
                        && self.uses[gr] == 1;
                    if computed_into_grad {
                        continue;
                    }
                    let dest = Place::Grad(self.param_field(k));
                    let src = fx
                        .place
                        .get(&gr)
                        .cloned()
                        .unwrap_or_else(|| Place::Ref(self.ident[gr].clone()));
                    self.copy_into(
                        &g.nodes[gr].shape,
                        &src,
                        &dest,
                        Mode::Accumulate,
                        &mut fx.stmts,
                    );
                }
            }
            Which::Predict if g.steps.is_some() && self.regions[g.output] == Region::Step => {
                fx.stmts.push(quote!(output_seq));
            }
            Which::Predict | Which::Step => {
                let v = fx
                    .place
                    .get(&g.output)
                    .cloned()
                    .expect("the output is computed")
                    .value();
                fx.stmts.push(quote!(#v));
            }
            Which::Forward => {
                let v = fx
                    .place
                    .get(&g.loss)
                    .cloned()
                    .expect("the loss is computed")
                    .value();
                fx.stmts.push(quote!(#v));
            }
        }
    }

    /// A tensor of `shape` filled with `c`.
    fn fill(&self, shape: &Shape, c: f64) -> TokenStream {
        let v = Literal::f64_unsuffixed(c);
        match dims(shape).as_slice() {
            [] => quote!(#v),
            [n] => quote!([#v; #n]),
            [r, cc] => quote!([[#v; #cc]; #r]),
            _ => unreachable!("lowering rejects rank > 2"),
        }
    }

    fn bind_decls(
        &self,
        src: TokenStream,
        decls: &[TensorDecl],
        op: impl Fn(usize) -> Op,
        fx: &mut Fx,
    ) -> TokenStream {
        // `step` takes the per-step inputs of one step only
        let ids: Vec<(Option<NodeId>, &TensorDecl)> = (0..decls.len())
            .map(|k| (self.g.nodes.iter().position(|n| n.op == op(k)), &decls[k]))
            .filter(|(_, d)| fx.which != Which::Step || d.per_step)
            .collect();
        let mut names = vec![];
        for (id, decl) in &ids {
            let Some(id) = id else { continue };
            let p = if decl.per_step && fx.which != Which::Step {
                Place::RefStep(self.ident[*id].clone())
            } else {
                Place::Ref(self.ident[*id].clone())
            };
            fx.place.insert(*id, p);
        }
        for (id, _) in &ids {
            names.push(match id {
                Some(id)
                    if fx.live[*id] || (fx.which == Which::Forward && self.tape.contains(id)) =>
                {
                    let n = &self.ident[*id];
                    quote!(#n)
                }
                _ => quote!(_),
            });
        }
        match names.as_slice() {
            [] => quote!(),
            [one] => quote!(let #one = #src;),
            many => quote!(let (#(#many,)*) = #src;),
        }
    }

    /// A node computed straight into its only user's destination (a
    /// contribution to a sum of adjoints, or to a sum over steps).
    fn deferred(&self, id: NodeId, pass: Pass) -> bool {
        self.uses[id] == 1
            && self.g.nodes.iter().enumerate().any(|(u, user)| {
                self.live[u]
                    && user.pass == pass
                    && (matches!(&user.op, Op::AddN(parts) if parts.contains(&id) && self.regions[u] == self.regions[id])
                        || (matches!(user.op, Op::StepSum(a) if a == id) && self.deferred_into(id, u)))
            })
    }

    /// Whether `id` is computed straight into the sum over steps `sum`.
    fn deferred_into(&self, id: NodeId, sum: NodeId) -> bool {
        self.uses[id] == 1
            && self.regions[id] == Region::Step
            && self.g.steps.is_some()
            && self.g.nodes[id].pass == self.g.nodes[sum].pass
            && !matches!(
                self.g.nodes[id].op,
                Op::EachStep(_)
                    | Op::Carry(_)
                    | Op::StatePrev(_)
                    | Op::Input(_)
                    | Op::Target(_)
                    | Op::Param(_)
            )
    }

    /// An elementwise node whose only user is a reduction: its expression is
    /// evaluated inside the reduction's loop, never stored.
    fn inlined(&self, id: NodeId) -> bool {
        let node = &self.g.nodes[id];
        matches!(node.op, Op::Map { .. })
            && self.uses[id] == 1
            && !self.tape.contains(&id)
            && !self.g.roots().contains(&id)
            && self.g.nodes.iter().enumerate().any(|(u, user)| {
                self.live[u]
                    && user.pass == node.pass
                    && matches!(user.op, Op::Sum(a) | Op::SumCols(a) | Op::SumRows(a) if a == id)
            })
    }

    /// Computes node `id` into `dest`.
    fn emit_into(
        &self,
        id: NodeId,
        dest: &Place,
        mode: Mode,
        place: &HashMap<NodeId, Place>,
        out: &mut Vec<TokenStream>,
    ) {
        let g = self.g;
        let node = &g.nodes[id];
        let p = |a: NodeId| self.place_of(place, a);
        let k = quote!(::nn_runtime::__private::kernels);
        let d = dest.borrow_mut();
        match &node.op {
            Op::Map { .. } => {
                let idx = loop_index(&node.shape);
                let e = self.map_elem(id, &idx, place);
                let lhs = if node.shape.is_scalar() {
                    dest.value()
                } else {
                    dest.index(&idx)
                };
                let body = match mode {
                    Mode::Assign => quote!(#lhs = #e;),
                    Mode::Accumulate => quote!(#lhs += #e;),
                };
                out.push(loops(&node.shape, body));
            }
            Op::MatVec(w, x) => {
                let (w, x) = (p(*w).borrow(), p(*x).borrow());
                out.push(match mode {
                    Mode::Assign => quote!(#k::matvec(#w, #x, #d);),
                    Mode::Accumulate => quote!(#k::matvec_acc(#w, #x, #d);),
                });
            }
            Op::MatVecT(w, e) => {
                let (w, e) = (p(*w).borrow(), p(*e).borrow());
                out.push(quote!(#k::matvec_t_acc(#w, #e, #d);));
            }
            Op::VecMat(x, b) => {
                // xᵀ b = bᵀ x
                let (x, b) = (p(*x).borrow(), p(*b).borrow());
                out.push(quote!(#k::matvec_t_acc(#b, #x, #d);));
            }
            Op::MatMul(a, b) => {
                let (a, b) = (p(*a).borrow(), p(*b).borrow());
                out.push(match mode {
                    Mode::Assign => quote!(#k::matmul(#a, #b, #d);),
                    Mode::Accumulate => quote!(#k::matmul_acc(#a, #b, #d);),
                });
            }
            Op::MatMulNT(a, b) => {
                let (a, b) = (p(*a).borrow(), p(*b).borrow());
                out.push(quote!(#k::matmul_nt_acc(#a, #b, #d);));
            }
            Op::MatMulTN(a, b) => {
                let (a, b) = (p(*a).borrow(), p(*b).borrow());
                out.push(quote!(#k::matmul_tn_acc(#a, #b, #d);));
            }
            Op::Outer(u, v) => {
                let (u, v) = (p(*u).borrow(), p(*v).borrow());
                out.push(quote!(#k::outer_acc(#u, #v, #d);));
            }
            Op::Sum(a) | Op::SumCols(a) | Op::SumRows(a) => {
                let shape = &g.nodes[*a].shape;
                let idx = loop_index(shape);
                let e = if self.inlined(*a) {
                    self.map_elem(*a, &idx, place)
                } else {
                    p(*a).index(&idx)
                };
                let lhs = match node.op {
                    Op::Sum(_) => dest.value(),
                    Op::SumCols(_) => dest.index(&quote!([i])),
                    _ => dest.index(&quote!([j])),
                };
                out.push(loops(shape, quote!(#lhs += #e;)));
            }
            Op::Transpose(a) => {
                let v = p(*a).index(&quote!([j][i]));
                let lhs = dest.index(&quote!([i][j]));
                out.push(loops(&node.shape, assign(mode, lhs, v)));
            }
            Op::Slice(a, start) => {
                let v = p(*a).index(&quote!([i + #start]));
                out.push(loops(
                    &node.shape,
                    assign(mode, dest.index(&quote!([i])), v),
                ));
            }
            Op::Pad(a, start) => {
                let v = p(*a).index(&quote!([i]));
                let lhs = dest.index(&quote!([i + #start]));
                out.push(loops(&g.nodes[*a].shape, quote!(#lhs += #v;)));
            }
            Op::Concat(a, b) => {
                let n = g.nodes[*a].shape.len();
                let (va, vb) = (p(*a).index(&quote!([i])), p(*b).index(&quote!([i])));
                out.push(loops(
                    &g.nodes[*a].shape,
                    assign(mode, dest.index(&quote!([i])), va),
                ));
                out.push(loops(
                    &g.nodes[*b].shape,
                    assign(mode, dest.index(&quote!([i + #n])), vb),
                ));
            }
            Op::LogSumExp(a) => {
                let flat = flat_view(p(*a).borrow(), &g.nodes[*a].shape);
                out.push(assign(mode, dest.value(), quote!(#k::logsumexp(#flat))));
            }
            Op::LogSoftmax(z) => {
                let z = p(*z).borrow();
                out.push(quote!(#k::log_softmax(#z, #d);));
            }
            Op::LogSoftmaxGrad(y, dy) => {
                let (y, dy) = (p(*y).borrow(), p(*dy).borrow());
                out.push(quote!(#k::log_softmax_grad_acc(#y, #dy, #d);));
            }
            Op::Pick(a, t) => {
                let (a, t) = (p(*a), p(*t).value());
                let v = a.index(&quote!([#t]));
                let lhs = dest.value();
                out.push(match mode {
                    Mode::Assign => quote!(#lhs = #v;),
                    Mode::Accumulate => quote!(#lhs += #v;),
                });
            }
            Op::OneHot(t, dv) => {
                let (t, dv) = (p(*t).value(), p(*dv).value());
                let lhs = dest.index(&quote!([#t]));
                out.push(quote!(#lhs += #dv;));
            }
            Op::AddN(parts) => {
                for (n, &part) in parts.iter().enumerate() {
                    let m = if n == 0 { mode } else { Mode::Accumulate };
                    if let Some(src) = place.get(&part) {
                        self.copy_into(&g.nodes[part].shape, src, dest, m, out);
                    } else {
                        self.emit_into(part, dest, m, place, out);
                    }
                }
            }
            Op::AtLast(dv) => {
                // the adjoint of a last value: at the last step only
                let last = Literal::usize_unsuffixed(g.steps.map_or(1, |s| s.count) - 1);
                let mut copy = vec![];
                self.copy_into(&node.shape, &p(*dv), dest, mode, &mut copy);
                out.push(quote!(if t == #last { #(#copy)* }));
            }
            Op::Input(_)
            | Op::Target(_)
            | Op::Param(_)
            | Op::StatePrev(_)
            | Op::Carry(_)
            | Op::EachStep(_)
            | Op::StepSum(_)
            | Op::BatchSum(_)
            | Op::Last(_) => {
                unreachable!(
                    "leaves, registers and step sums are set up around the loop, not computed here"
                )
            }
        }
    }

    fn copy_into(
        &self,
        shape: &Shape,
        src: &Place,
        dest: &Place,
        mode: Mode,
        out: &mut Vec<TokenStream>,
    ) {
        let idx = loop_index(shape);
        let (lhs, rhs) = if shape.is_scalar() {
            (dest.value(), src.value())
        } else {
            (dest.index(&idx), src.index(&idx))
        };
        let body = match mode {
            Mode::Assign => quote!(#lhs = #rhs;),
            Mode::Accumulate => quote!(#lhs += #rhs;),
        };
        out.push(loops(shape, body));
    }

    /// Where operand `a` lives. Emission walks operands before users, so it
    /// has one; a miss is a bug of ours, which the macro entry reports as an
    /// internal error (never a crashed macro).
    fn place_of(&self, place: &HashMap<NodeId, Place>, a: NodeId) -> Place {
        match place.get(&a) {
            Some(p) => p.clone(),
            None => unreachable!("`{}` is read before it is computed", self.g.nodes[a].name),
        }
    }

    /// The scalar expression of elementwise node `id` at index `idx`.
    fn map_elem(
        &self,
        id: NodeId,
        idx: &TokenStream,
        place: &HashMap<NodeId, Place>,
    ) -> TokenStream {
        let Op::Map { args, bcast, body } = &self.g.nodes[id].op else {
            unreachable!("map_elem on a map")
        };
        let operands: Vec<TokenStream> = args
            .iter()
            .zip(bcast)
            .map(|(&a, &b)| {
                let pl = self.place_of(place, a);
                if self.g.nodes[a].shape.is_scalar() {
                    return pl.value();
                }
                match b {
                    Bcast::Full => pl.index(idx),
                    Bcast::Col => pl.index(&quote!([i])),
                    Bcast::Row => pl.index(&quote!([j])),
                    Bcast::Scalar => pl.value(),
                }
            })
            .collect();
        scalar_tokens(body, &operands).0
    }

    /// `(forward, backward)` floating-point operation counts.
    fn flops(&self) -> (u64, u64) {
        let g = self.g;
        let mut fwd = 0u64;
        let mut bwd = 0u64;
        let fwd_live = self.live_with_states(vec![g.loss]);
        let steps = g.steps.map_or(1, |s| s.count) as u64;
        for (id, node) in g.nodes.iter().enumerate() {
            let count = |a: NodeId| g.nodes[a].shape.len() as u64;
            let len = node.shape.len() as u64;
            let f = match &node.op {
                Op::Input(_)
                | Op::Target(_)
                | Op::Param(_)
                | Op::Pick(..)
                | Op::OneHot(..)
                | Op::StatePrev(_)
                | Op::Carry(_)
                | Op::EachStep(_)
                | Op::AtLast(_)
                | Op::Last(_) => 0,
                Op::StepSum(_) | Op::BatchSum(_) => len,
                Op::Map { body, .. } => len * body.flops(),
                Op::MatVec(w, _) | Op::MatVecT(w, _) => 2 * count(*w),
                Op::VecMat(_, b) => 2 * count(*b),
                Op::MatMul(a, b) => 2 * count(*a) * g.nodes[*b].shape.0[1] as u64,
                Op::MatMulNT(dd, b) => 2 * count(*dd) * g.nodes[*b].shape.0[0] as u64,
                Op::MatMulTN(a, dd) => 2 * count(*a) * g.nodes[*dd].shape.0[1] as u64,
                Op::Outer(..) => 2 * len,
                Op::Sum(a) | Op::SumCols(a) | Op::SumRows(a) => count(*a),
                Op::LogSoftmax(_) | Op::LogSoftmaxGrad(..) => 4 * len,
                Op::LogSumExp(a) => 3 * count(*a),
                Op::Transpose(_) | Op::Slice(..) | Op::Pad(..) | Op::Concat(..) => 0,
                Op::AddN(parts) => len * parts.len().saturating_sub(1) as u64,
            };
            // a per-step node runs once per step
            let f = if self.regions[id] == Region::Step {
                f * steps
            } else {
                f
            };
            match node.pass {
                Pass::Forward if fwd_live[id] => fwd += f,
                Pass::Backward if self.live[id] => bwd += f,
                _ => {}
            }
        }
        for gr in g.grads.iter().flatten() {
            bwd += g.nodes[*gr].shape.len() as u64;
        }
        (fwd, bwd)
    }

    fn is_correct(&self) -> TokenStream {
        let g = self.g;
        let k = quote!(::nn_runtime::__private::kernels);
        let target_expr = |k_target: usize| -> TokenStream {
            if g.targets.len() == 1 {
                quote!(target)
            } else {
                let i = syn::Index::from(k_target);
                quote!((&target.#i))
            }
        };
        let flat = |e: TokenStream, shape: &Shape| -> TokenStream {
            match shape.rank() {
                0 => quote!(::core::slice::from_ref(#e)),
                1 => quote!(&#e[..]),
                _ => quote!(#e.as_flattened()),
            }
        };
        let out_shape = &g.nodes[g.output].shape;
        // a sequence of outputs is judged by its last step
        let seq = g
            .steps
            .filter(|_| self.regions[g.output] == Region::Step)
            .map(|s| Literal::usize_unsuffixed(s.count - 1));
        let out_flat = match &seq {
            Some(last) => flat(quote!(output[#last]), out_shape),
            None => flat(quote!(output), out_shape),
        };
        let target_expr = |k_target: usize| -> TokenStream {
            let e = target_expr(k_target);
            match (&seq, g.targets[k_target].per_step) {
                (Some(last), true) => quote!((&#e[#last])),
                (None, true) => {
                    let last = Literal::usize_unsuffixed(g.steps.map_or(1, |s| s.count) - 1);
                    quote!((&#e[#last]))
                }
                _ => e,
            }
        };
        match g.metric {
            Metric::ArgmaxClass => {
                let kt = g
                    .targets
                    .iter()
                    .position(|t| t.classes.is_some())
                    .unwrap_or(0);
                let t = target_expr(kt);
                quote!(#k::argmax(#out_flat) == *#t)
            }
            Metric::ArgmaxVector => {
                let Some(kt) = g
                    .targets
                    .iter()
                    .position(|t| t.shape.len() == out_shape.len())
                else {
                    return quote!(false);
                };
                let t = target_expr(kt);
                let t_flat = flat(t, &g.targets[kt].shape);
                quote!(#k::argmax(#out_flat) == #k::argmax(#t_flat))
            }
            Metric::Threshold(at) => {
                let Some(kt) = g.targets.iter().position(|t| t.shape.len() == 1) else {
                    return quote!(false);
                };
                let t = target_expr(kt);
                let t_flat = flat(t, &g.targets[kt].shape);
                let cut = match at {
                    ThresholdAt::Half => quote!(0.5),
                    ThresholdAt::Zero => quote!(0.0),
                };
                quote!(((#out_flat)[0] > #cut) == ((#t_flat)[0] > 0.5))
            }
        }
    }

    /// For a recurrent definition: the state struct (outside the impl), and
    /// `STEPS`, `initial_state` and `step` (inside it). `step` exists when
    /// the output is computed at every step from per-step inputs only.
    fn recurrent_items(&self) -> (TokenStream, TokenStream) {
        let g = self.g;
        let Some(steps) = g.steps else {
            return (quote!(), quote!());
        };
        let n = Literal::usize_unsuffixed(steps.count);
        let consts = quote!(
            /// Number of time steps of a training sequence.
            pub const STEPS: usize = #n;
        );
        let live = self.live_with_states(vec![g.output]);
        let static_input =
            g.nodes.iter().enumerate().any(|(id, node)| {
                live[id] && matches!(node.op, Op::Input(k) if !g.inputs[k].per_step)
            });
        if self.regions[g.output] != Region::Step || static_input || g.states.is_empty() {
            return (quote!(), consts);
        }
        let name = &self.items.item.ident;
        let vis = &self.items.item.vis;
        let state_ty = &self.state_ty;
        let fields = g.states.iter().map(|st| {
            let f = format_ident!("{}", sanitize(&st.name));
            let ty = self.ty(&st.shape);
            let doc = format!("`{}`: {}", st.name, st.shape);
            quote!(#[doc = #doc] pub #f: #ty,)
        });
        let inits = g.states.iter().map(|st| {
            let f = format_ident!("{}", sanitize(&st.name));
            let v = match &st.init {
                StateInit::Constant(c) => self.fill(&st.shape, *c),
                StateInit::Param(p) => {
                    let pf = self.param_field(*p);
                    quote!(self.params.#pf)
                }
            };
            quote!(#f: #v,)
        });
        let step_inputs: Vec<TokenStream> = g
            .inputs
            .iter()
            .filter(|d| d.per_step)
            .map(|d| match d.classes {
                Some(_) => quote!(usize),
                None => self.ty(&d.shape),
            })
            .collect();
        let step_input_ty = match step_inputs.as_slice() {
            [one] => one.clone(),
            many => quote!((#(#many,)*)),
        };
        let out_ty = self.node_ty(g.output);
        let body = self.function(Which::Step);
        let doc = self.doc(Which::Step);
        let state_doc = format!("The recurrent state of [`{name}`] between calls of [`{name}::step`]: stateful inference on sequences of any length.");
        (
            quote!(
                #[doc = #state_doc]
                #[derive(Clone, Debug, PartialEq)]
                #vis struct #state_ty {
                    #(#fields)*
                }
            ),
            quote!(
                #consts

                /// The state before the first step, as declared.
                pub fn initial_state(&self) -> #state_ty {
                    #state_ty { #(#inits)* }
                }

                #[doc = #doc]
                pub fn step(&self, state: &mut #state_ty, input: &#step_input_ty) -> #out_ty {
                    #body
                }
            ),
        )
    }

    /// The field of parameter `k` in the parameter struct.
    fn param_field(&self, k: usize) -> Ident {
        let id = self
            .g
            .nodes
            .iter()
            .position(|n| n.op == Op::Param(k))
            .expect("every parameter has a node");
        self.ident[id].clone()
    }

    /// A node's name as the user reads it in docs (parameters as `h.weight`).
    fn math_name(&self, id: NodeId) -> String {
        match self.g.nodes[id].op {
            Op::Param(k) => self.g.params[k].name.clone(),
            _ => self.ident[id].to_string(),
        }
    }

    /// The doc comment of a generated function: one line of maths per computed value.
    fn doc(&self, which: Which) -> String {
        let g = self.g;
        let (intro, pass, roots): (&str, Pass, Vec<NodeId>) = match which {
            Which::Predict => ("Inference: the output for one input; stores nothing.", Pass::Forward, vec![g.output]),
            Which::Forward => (
                "Forward pass for one sample: returns the loss and stores in `tape` what `backward` reads.",
                Pass::Forward,
                vec![g.loss],
            ),
            Which::Backward => (
                if g.steps.is_some() {
                    "Backward pass through time for the sequence last passed to `forward`: steps `t = T-1 .. 0`, each layer last first, carrying each state's adjoint back one step; adds `∂loss/∂θ`, summed over the steps, into `grads` (`+=`, so a batch accumulates)."
                } else {
                    "Backward pass (reverse-mode chain rule, last layer first) for the sample last passed to `forward`: adds `∂loss/∂θ` into `grads` (`+=`, so a batch accumulates)."
                },
                Pass::Backward,
                g.grads.iter().flatten().chain(g.state_adjoints.iter().flatten()).copied().collect(),
            ),
            Which::Step => (
                "One time step for inference: reads `state` (the states' values at the previous step), returns this step's output and leaves the new values in `state`.",
                Pass::Forward,
                vec![g.output],
            ),
        };
        let live = self.live_with_states(roots);
        let mut lines = vec![intro.to_string(), String::new(), "```text".to_string()];
        for (id, node) in g.nodes.iter().enumerate() {
            if !live[id]
                || node.pass != pass
                || matches!(node.op, Op::Input(_) | Op::Target(_) | Op::Param(_))
            {
                continue;
            }
            lines.push(format!("{} = {}", self.ident[id], self.math(id)));
        }
        if which == Which::Backward {
            for (p, gr) in g.params.iter().zip(&g.grads) {
                match gr {
                    Some(gr) => lines.push(format!("∂loss/∂{} += {}", p.name, self.ident[*gr])),
                    None => lines.push(format!(
                        "∂loss/∂{} += 0 (the loss does not depend on it)",
                        p.name
                    )),
                }
            }
        }
        lines.push("```".to_string());
        lines.join("\n")
    }

    /// The maths a node computes, in the definition's names.
    fn math(&self, id: NodeId) -> String {
        let n = |a: &NodeId| self.math_name(*a);
        match &self.g.nodes[id].op {
            Op::Map { args, body, .. } => {
                let names: Vec<String> = args.iter().map(n).collect();
                scalar_math(body, &names).0
            }
            Op::MatVec(a, b) | Op::MatMul(a, b) => format!("{} · {}", n(a), n(b)),
            Op::VecMat(a, b) => format!("{}ᵀ · {}", n(a), n(b)),
            Op::MatVecT(a, b) | Op::MatMulTN(a, b) => format!("{}ᵀ · {}", n(a), n(b)),
            Op::MatMulNT(a, b) => format!("{} · {}ᵀ", n(a), n(b)),
            Op::Outer(a, b) => format!("{} ⊗ {}", n(a), n(b)),
            Op::Sum(a) => format!("Σ {}", n(a)),
            Op::SumCols(a) => format!("Σ_j {}[i][j]", n(a)),
            Op::LogSoftmax(a) => format!("{0} - logsumexp({0})", n(a)),
            Op::Pick(a, t) => format!("{}[{}]", n(a), n(t)),
            Op::OneHot(t, d) => format!("one_hot({}) · {}", n(t), n(d)),
            Op::LogSoftmaxGrad(y, d) => format!("{1} - exp({0}) · Σ {1}", n(y), n(d)),
            Op::AddN(parts) => parts.iter().map(n).collect::<Vec<_>>().join(" + "),
            Op::Transpose(a) => format!("{}ᵀ", n(a)),
            Op::Slice(a, start) => {
                let len = self.g.nodes[id].shape.len();
                format!("{}[{start}:{}]", n(a), start + len)
            }
            Op::Pad(a, start) => {
                let total = self.g.nodes[id].shape.len();
                format!("{} placed at {start} in zeros of length {total}", n(a))
            }
            Op::Concat(a, b) => format!("[{}, {}]", n(a), n(b)),
            Op::SumRows(a) => format!("Σ_i {}[i][j]", n(a)),
            Op::LogSumExp(a) => format!("logsumexp({})", n(a)),
            Op::StatePrev(k) => format!("{}[t-1]", self.g.states[*k].name),
            Op::StepSum(a) => format!("Σ_t {}[t]", n(a)),
            Op::Last(a) => format!("{}[T-1]", n(a)),
            Op::Carry(k) => format!("∂loss/∂{}[t] from step t+1", self.g.states[*k].name),
            Op::EachStep(a) => format!("{} (at every step)", n(a)),
            Op::AtLast(a) => format!("{} at t = T-1, else 0", n(a)),
            Op::BatchSum(a) => format!("Σ_samples {}", n(a)),
            Op::Input(_) | Op::Target(_) | Op::Param(_) => n(&id),
        }
    }
}

/// A unique Rust identifier for every node: parameters keep their field
/// names (they come first), the others their definition's names; only live
/// nodes claim names, so dead ones do not push suffixes onto them.
pub(crate) fn assign_idents(g: &Graph, live: &[bool]) -> Vec<Ident> {
    let mut taken: HashSet<String> = RESERVED.iter().map(|s| s.to_string()).collect();
    let mut ident = vec![format_ident!("unused"); g.nodes.len()];
    let mut order: Vec<NodeId> = (0..g.nodes.len())
        .filter(|&id| {
            live[id] || matches!(g.nodes[id].op, Op::Param(_) | Op::Input(_) | Op::Target(_))
        })
        .collect();
    order.sort_by_key(|&id| !matches!(g.nodes[id].op, Op::Param(_)));
    for id in order {
        let base = match g.nodes[id].op {
            Op::Param(k) => g.params[k].field.clone(),
            _ => g.nodes[id].name.clone(),
        };
        let mut name = sanitize(&base);
        let mut n = 1;
        while taken.contains(&name) {
            n += 1;
            name = format!("{}_{n}", sanitize(&base));
        }
        taken.insert(name.clone());
        ident[id] = format_ident!("{}", name);
    }
    ident
}

/// The forward values (and inputs, targets) the backward pass reads, or
/// that are gradients themselves: what the tape stores.
pub(crate) fn plan_tape(g: &Graph, live: &[bool]) -> Vec<NodeId> {
    (0..g.nodes.len())
        .filter(|&id| {
            let node = &g.nodes[id];
            live[id]
                && node.pass == Pass::Forward
                && !matches!(node.op, Op::Param(_))
                && (g.grads.contains(&Some(id))
                    || g.nodes.iter().enumerate().any(|(u, user)| {
                        live[u] && user.pass == Pass::Backward && user.op.args().contains(&id)
                    }))
        })
        .collect()
}

/// Whether emitting `op` in assign mode writes every element of its
/// destination (others add into it and need it zeroed first).
pub(crate) fn overwrites(op: &Op) -> bool {
    matches!(
        op,
        Op::Map { .. }
            | Op::MatVec(..)
            | Op::MatMul(..)
            | Op::LogSoftmax(_)
            | Op::LogSumExp(_)
            | Op::Pick(..)
            | Op::Transpose(_)
            | Op::Slice(..)
            | Op::Concat(..)
    )
}

/// `lhs = v;` or `lhs += v;`.
pub(crate) fn assign(mode: Mode, lhs: TokenStream, v: TokenStream) -> TokenStream {
    match mode {
        Mode::Assign => quote!(#lhs = #v;),
        Mode::Accumulate => quote!(#lhs += #v;),
    }
}

/// A tensor reference viewed as a flat slice.
pub(crate) fn flat_view(borrowed: TokenStream, shape: &Shape) -> TokenStream {
    match shape.rank() {
        0 => quote!(::core::slice::from_ref(#borrowed)),
        1 => quote!(&(#borrowed)[..]),
        _ => quote!((#borrowed).as_flattened()),
    }
}

/// A shape's dimensions as unsuffixed literals (`[f32; 4]`, not `[f32; 4usize]`).
pub(crate) fn dims(shape: &Shape) -> Vec<Literal> {
    shape
        .0
        .iter()
        .map(|&d| Literal::usize_unsuffixed(d))
        .collect()
}

/// `[i]` or `[i][j]` for a shape's loop variables.
pub(crate) fn loop_index(shape: &Shape) -> TokenStream {
    match shape.rank() {
        0 => quote!(),
        1 => quote!([i]),
        _ => quote!([i][j]),
    }
}

/// Wraps `body` in loops over `shape`.
pub(crate) fn loops(shape: &Shape, body: TokenStream) -> TokenStream {
    match dims(shape).as_slice() {
        [] => body,
        [n] => quote!(for i in 0..#n { #body }),
        [r, c] => quote!(for i in 0..#r { for j in 0..#c { #body } }),
        _ => unreachable!("lowering rejects rank > 2"),
    }
}

/// Precedence of a scalar expression in Rust: higher binds tighter.
pub(crate) fn prec(s: &S) -> u8 {
    match s {
        S::Add(..) | S::Sub(..) => 1,
        S::Mul(..) | S::Div(..) => 2,
        S::Neg(_) => 3,
        S::Const(v) if *v < 0.0 => 3,
        _ => 4,
    }
}

/// Rust tokens for a scalar expression, with operands already rendered.
/// Returns the tokens and their precedence.
pub(crate) fn scalar_tokens(s: &S, args: &[TokenStream]) -> (TokenStream, u8) {
    let wrap = |e: &S, min: u8| {
        let (t, p) = scalar_tokens(e, args);
        if p < min {
            quote!((#t))
        } else {
            t
        }
    };
    let t = match s {
        S::Arg(k) => args[*k].clone(),
        S::Out => unreachable!("`Out` is replaced by an operand before emission"),
        S::Const(v) => {
            let lit = Literal::f64_unsuffixed(v.abs());
            if *v < 0.0 {
                quote!(-#lit)
            } else {
                quote!(#lit)
            }
        }
        S::Neg(a) => {
            let a = wrap(a, 3);
            quote!(-#a)
        }
        S::Add(a, b) => {
            let (a, b) = (wrap(a, 1), wrap(b, 2));
            quote!(#a + #b)
        }
        S::Sub(a, b) => {
            let (a, b) = (wrap(a, 1), wrap(b, 2));
            quote!(#a - #b)
        }
        S::Mul(a, b) => {
            let (a, b) = (wrap(a, 2), wrap(b, 3));
            quote!(#a * #b)
        }
        S::Div(a, b) => {
            let (a, b) = (wrap(a, 2), wrap(b, 3));
            quote!(#a / #b)
        }
        S::Pow(a, e) => {
            let a = wrap(a, 4);
            if e.fract() == 0.0 && e.abs() <= i32::MAX as f64 {
                let e = Literal::i32_unsuffixed(*e as i32);
                quote!(#a.powi(#e))
            } else {
                let e = Literal::f64_unsuffixed(*e);
                quote!(#a.powf(#e))
            }
        }
        S::Call(f, a) => {
            let a = wrap(a, 4);
            let m = Ident::new(
                match f {
                    Func::Log => "ln",
                    Func::Sign => "sign0",
                    // not `erf`: the standard library may gain an inherent `erf`
                    Func::Erf => "error_fn",
                    other => other.name(),
                },
                Span::call_site(),
            );
            quote!(#a.#m())
        }
        S::Cmp(op, a, b) => {
            let c = cmp_tokens(*op, a, b, args);
            quote!((if #c { 1.0 } else { 0.0 }))
        }
        S::Select(p, a, b) => {
            let cond = match &**p {
                S::Cmp(op, x, y) => cmp_tokens(*op, x, y, args),
                other => {
                    let v = wrap(other, 1);
                    quote!(#v != 0.0)
                }
            };
            let (a, b) = (scalar_tokens(a, args).0, scalar_tokens(b, args).0);
            quote!((if #cond { #a } else { #b }))
        }
    };
    (t, prec(s))
}

/// `a < b` and the other comparisons, as a Rust condition.
pub(crate) fn cmp_tokens(op: Cmp, a: &S, b: &S, args: &[TokenStream]) -> TokenStream {
    let (a, b) = (scalar_tokens(a, args), scalar_tokens(b, args));
    let (a, b) = (paren_below(a, 1), paren_below(b, 1));
    match op {
        Cmp::Lt => quote!(#a < #b),
        Cmp::Gt => quote!(#a > #b),
        Cmp::Le => quote!(#a <= #b),
        Cmp::Ge => quote!(#a >= #b),
        Cmp::Eq => quote!(#a == #b),
        Cmp::Ne => quote!(#a != #b),
    }
}

pub(crate) fn paren_below((t, p): (TokenStream, u8), min: u8) -> TokenStream {
    if p < min {
        quote!((#t))
    } else {
        t
    }
}

/// The maths of a scalar expression, for doc comments.
pub(crate) fn scalar_math(s: &S, args: &[String]) -> (String, u8) {
    let wrap = |e: &S, min: u8| {
        let (t, p) = scalar_math(e, args);
        if p < min {
            format!("({t})")
        } else {
            t
        }
    };
    let t = match s {
        S::Arg(k) => args[*k].clone(),
        S::Out => "out".to_string(),
        S::Const(v) => format!("{v}"),
        S::Neg(a) => format!("-{}", wrap(a, 3)),
        S::Add(a, b) => format!("{} + {}", wrap(a, 1), wrap(b, 2)),
        S::Sub(a, b) => format!("{} - {}", wrap(a, 1), wrap(b, 2)),
        S::Mul(a, b) => format!("{} ⊙ {}", wrap(a, 2), wrap(b, 3)),
        S::Div(a, b) => format!("{} / {}", wrap(a, 2), wrap(b, 3)),
        S::Pow(a, e) => format!("{}^{e}", wrap(a, 4)),
        S::Call(f, a) => format!("{}({})", f.name(), scalar_math(a, args).0),
        S::Cmp(op, a, b) => format!(
            "[{} {} {}]",
            scalar_math(a, args).0,
            op.symbol(),
            scalar_math(b, args).0
        ),
        S::Select(p, a, b) => format!(
            "({} ? {} : {})",
            scalar_math(p, args).0,
            scalar_math(a, args).0,
            scalar_math(b, args).0
        ),
    };
    (t, prec(s))
}

pub(crate) fn init_tokens(init: &InitKind) -> TokenStream {
    let i = quote!(::nn_runtime::__private::Init);
    match init {
        InitKind::Zeros => quote!(#i::Zeros),
        InitKind::Constant(c) => quote!(#i::Constant(#c)),
        InitKind::Uniform(a, b) => quote!(#i::Uniform(#a, #b)),
        InitKind::Normal(a, b) => quote!(#i::Normal(#a, #b)),
        InitKind::XavierUniform => quote!(#i::XavierUniform),
        InitKind::XavierNormal => quote!(#i::XavierNormal),
        InitKind::HeNormal => quote!(#i::HeNormal),
        InitKind::HeUniform => quote!(#i::HeUniform),
    }
}

pub(crate) fn describe_init(init: &InitKind) -> String {
    match init {
        InitKind::Zeros => "to zeros".into(),
        InitKind::Constant(c) => format!("to {c}"),
        InitKind::Uniform(a, b) => format!("uniform in [{a}, {b})"),
        InitKind::Normal(m, s) => format!("normal(mean {m}, std {s})"),
        InitKind::XavierUniform => "Glorot/Xavier uniform".into(),
        InitKind::XavierNormal => "Glorot/Xavier normal".into(),
        InitKind::HeNormal => "He/Kaiming normal".into(),
        InitKind::HeUniform => "He/Kaiming uniform".into(),
    }
}

/// A valid, non-reserved Rust identifier for a definition name.
pub(crate) fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if RESERVED.contains(&s.as_str()) {
        format!("{s}_")
    } else {
        s
    }
}
