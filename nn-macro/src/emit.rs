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
}

/// Rust keywords and names the generated code uses itself.
const RESERVED: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen", "i", "j", "tape",
    "grads", "input", "target", "params", "kernels", "rng", "seed", "output", "union",
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
}

/// Where a node's value lives inside one generated function.
#[derive(Clone)]
enum Place {
    /// An owned local: `h`.
    Local(Ident),
    /// A reference binding (inputs, targets, parameters): `x`, read as `x[i]`, `*x`.
    Ref(Ident),
    /// A tape field: `tape.h`.
    Tape(Ident),
    /// A gradient field: `grads.w`.
    Grad(Ident),
}

impl Place {
    fn borrow(&self) -> TokenStream {
        match self {
            Place::Local(n) => quote!(&#n),
            Place::Ref(n) => quote!(#n),
            Place::Tape(n) => quote!(&tape.#n),
            Place::Grad(n) => quote!(&grads.#n),
        }
    }
    fn borrow_mut(&self) -> TokenStream {
        match self {
            Place::Local(n) => quote!(&mut #n),
            Place::Ref(n) => quote!(#n),
            Place::Tape(n) => quote!(&mut tape.#n),
            Place::Grad(n) => quote!(&mut grads.#n),
        }
    }
    /// The place itself (an lvalue or a scalar value).
    fn value(&self) -> TokenStream {
        match self {
            Place::Local(n) => quote!(#n),
            Place::Ref(n) => quote!((*#n)),
            Place::Tape(n) => quote!(tape.#n),
            Place::Grad(n) => quote!(grads.#n),
        }
    }
    fn index(&self, idx: &TokenStream) -> TokenStream {
        let v = match self {
            Place::Ref(n) => quote!(#n),
            other => other.value(),
        };
        quote!(#v #idx)
    }
}

/// Whether a destination already holds zeros (a fresh local) or must be added to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Assign,
    Accumulate,
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
    params_ty: Ident,
    tape_ty: Ident,
}

impl<'g> Cx<'g> {
    fn new(g: &'g Graph, items: &'g Items) -> Self {
        let live = g.live_from(&g.roots());
        let uses = g.use_counts(&live);
        let mut taken: HashSet<String> = RESERVED.iter().map(|s| s.to_string()).collect();
        // parameter fields keep their names; they come first
        let mut ident = vec![format_ident!("unused"); g.nodes.len()];
        let mut order: Vec<NodeId> = (0..g.nodes.len()).collect();
        order.sort_by_key(|&id| !matches!(g.nodes[id].op, Op::Param(_)));
        // only live nodes claim names, so dead ones do not push suffixes on them
        order.retain(|&id| {
            live[id] || matches!(g.nodes[id].op, Op::Param(_) | Op::Input(_) | Op::Target(_))
        });
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
        let mut tape = vec![];
        for (id, node) in g.nodes.iter().enumerate() {
            if !live[id] || node.pass != Pass::Forward || matches!(node.op, Op::Param(_)) {
                continue;
            }
            let read_by_backward = g.nodes.iter().enumerate().any(|(u, user)| {
                live[u] && user.pass == Pass::Backward && user.op.args().contains(&id)
            });
            let is_grad = g.grads.iter().flatten().any(|&gr| gr == id);
            if read_by_backward || is_grad {
                tape.push(id);
            }
        }
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
            params_ty: format_ident!("{}Params", name),
            tape_ty: format_ident!("{}Tape", name),
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

    fn input_ty(&self, decls: &[TensorDecl]) -> TokenStream {
        let tys: Vec<TokenStream> = decls
            .iter()
            .map(|d| match d.classes {
                Some(_) => quote!(usize),
                None => self.ty(&d.shape),
            })
            .collect();
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
            let ty = self.node_ty(id);
            let doc = format!("`{}`: {}", self.math_name(id), self.g.nodes[id].shape);
            quote!(#[doc = #doc] pub #f: #ty,)
        });
        let tape_doc = format!("What [`{name}::forward`] stores for [`{name}::backward`]: only the values the backward pass reads.");

        let input_ty = self.input_ty(&g.inputs);
        let target_ty = self.input_ty(&g.targets);
        let output_ty = self.ty(&g.nodes[g.output].shape);

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

                #[doc = #backward_doc]
                pub fn backward(&self, tape: &#tape_ty, grads: &mut #params_ty) {
                    #backward
                }
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
        let roots: Vec<NodeId> = match which {
            Which::Predict => vec![g.output],
            Which::Forward => vec![g.loss],
            Which::Backward => g.grads.iter().flatten().copied().collect(),
        };
        let live = g.live_from(&roots);
        let mut place: HashMap<NodeId, Place> = HashMap::new();
        let mut stmts = vec![];
        // bindings: inputs and targets, parameters
        let in_tape = |id: NodeId| self.tape.contains(&id);
        if which == Which::Backward {
            for &id in &self.tape {
                if live[id] {
                    place.insert(id, Place::Tape(self.ident[id].clone()));
                }
            }
        } else {
            stmts.push(self.bind_decls(quote!(input), &g.inputs, Op::Input, &live, &mut place));
            if which == Which::Forward {
                stmts.push(self.bind_decls(
                    quote!(target),
                    &g.targets,
                    Op::Target,
                    &live,
                    &mut place,
                ));
                // inputs and targets the backward pass reads are copied to the tape
                for &id in &self.tape {
                    if matches!(g.nodes[id].op, Op::Input(_) | Op::Target(_)) {
                        let n = &self.ident[id];
                        stmts.push(quote!(tape.#n = *#n;));
                    }
                }
            }
        }
        let read_here = |id: NodeId| {
            g.nodes
                .iter()
                .enumerate()
                .any(|(u, user)| live[u] && user.pass == pass && user.op.args().contains(&id))
                || (which == Which::Predict && g.output == id)
                || (which == Which::Backward && g.grads.contains(&Some(id)))
        };
        let used_params: Vec<Ident> = (0..g.nodes.len())
            .filter(|&id| live[id] && matches!(g.nodes[id].op, Op::Param(_)) && read_here(id))
            .map(|id| {
                place.insert(id, Place::Ref(self.ident[id].clone()));
                self.ident[id].clone()
            })
            .collect();
        if !used_params.is_empty() {
            let pty = &self.params_ty;
            stmts.insert(
                0,
                quote!(let #pty { #(#used_params,)* .. } = &*self.params;),
            );
        }
        stmts.insert(
            0,
            quote!(
                use ::nn_runtime::__private::Activations as _;
            ),
        );

        let grad_of = |id: NodeId| -> Vec<usize> {
            g.grads
                .iter()
                .enumerate()
                .filter(|(_, gr)| **gr == Some(id))
                .map(|(k, _)| k)
                .collect()
        };
        for id in 0..g.nodes.len() {
            let node = &g.nodes[id];
            if !live[id]
                || node.pass != pass
                || matches!(node.op, Op::Input(_) | Op::Target(_) | Op::Param(_))
            {
                continue;
            }
            if self.deferred(id, pass) || self.inlined(id) {
                continue;
            }
            let grads = if which == Which::Backward {
                grad_of(id)
            } else {
                vec![]
            };
            if grads.len() == 1 && self.uses[id] == 1 {
                // only the gradient reads it: compute straight into the gradient buffer
                let dest = Place::Grad(self.param_field(grads[0]));
                self.emit_into(id, &dest, Mode::Accumulate, &place, &mut stmts);
                continue;
            }
            let dest = if which == Which::Forward && in_tape(id) {
                Place::Tape(self.ident[id].clone())
            } else {
                Place::Local(self.ident[id].clone())
            };
            if let Place::Local(n) = &dest {
                let ty = self.node_ty(id);
                if let (true, Op::Map { .. }) = (node.shape.is_scalar(), &node.op) {
                    let e = self.map_elem(id, &quote!(), &place);
                    stmts.push(quote!(let #n: #ty = #e;));
                    place.insert(id, dest);
                    continue;
                }
                let zero = self.zero(&node.shape);
                stmts.push(quote!(let mut #n: #ty = #zero;));
            }
            if let Place::Tape(_) = &dest {
                if !overwrites(&node.op) {
                    // a reused tape holds the last sample's values: clear
                    // before accumulating into it
                    let v = dest.value();
                    let zero = self.zero(&node.shape);
                    stmts.push(quote!(#v = #zero;));
                }
            }
            self.emit_into(id, &dest, Mode::Assign, &place, &mut stmts);
            place.insert(id, dest);
        }
        // gradients that are stored values (several users, or forward values)
        if which == Which::Backward {
            for (k, gr) in g.grads.iter().enumerate() {
                let Some(gr) = *gr else { continue };
                let computed_into_grad = g.nodes[gr].pass == Pass::Backward
                    && grad_of(gr).len() == 1
                    && self.uses[gr] == 1;
                if computed_into_grad {
                    continue;
                }
                let dest = Place::Grad(self.param_field(k));
                let src = place
                    .get(&gr)
                    .cloned()
                    .unwrap_or_else(|| Place::Ref(self.ident[gr].clone()));
                self.copy_into(
                    &g.nodes[gr].shape,
                    &src,
                    &dest,
                    Mode::Accumulate,
                    &mut stmts,
                );
            }
        }
        match which {
            Which::Predict => {
                let out = place
                    .get(&g.output)
                    .cloned()
                    .expect("the output is computed");
                let v = out.value();
                stmts.push(quote!(#v));
            }
            Which::Forward => {
                let v = place
                    .get(&g.loss)
                    .cloned()
                    .expect("the loss is computed")
                    .value();
                stmts.push(quote!(#v));
            }
            Which::Backward => {}
        }
        quote!(#(#stmts)*)
    }

    fn bind_decls(
        &self,
        src: TokenStream,
        decls: &[TensorDecl],
        op: impl Fn(usize) -> Op,
        live: &[bool],
        place: &mut HashMap<NodeId, Place>,
    ) -> TokenStream {
        let ids: Vec<Option<NodeId>> = (0..decls.len())
            .map(|k| self.g.nodes.iter().position(|n| n.op == op(k)))
            .collect();
        let mut names = vec![];
        for id in ids.iter().flatten() {
            place.insert(*id, Place::Ref(self.ident[*id].clone()));
        }
        for id in &ids {
            names.push(match id {
                Some(id) if live[*id] || self.tape.contains(id) => {
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
    /// contribution to a sum of adjoints).
    fn deferred(&self, id: NodeId, pass: Pass) -> bool {
        self.uses[id] == 1
            && self.g.nodes.iter().enumerate().any(|(u, user)| {
                self.live[u]
                    && user.pass == pass
                    && matches!(&user.op, Op::AddN(parts) if parts.contains(&id))
            })
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
        let p = |a: NodeId| {
            place.get(&a).cloned().unwrap_or_else(|| {
                panic!("internal: `{}` used before it is computed", g.nodes[a].name)
            })
        };
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
            Op::Input(_) | Op::Target(_) | Op::Param(_) => {
                unreachable!("leaves are bound, not computed")
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
                let pl = place.get(&a).cloned().unwrap_or_else(|| {
                    panic!(
                        "internal: `{}` used before it is computed",
                        self.g.nodes[a].name
                    )
                });
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
        let fwd_live = g.live_from(&[g.loss]);
        for (id, node) in g.nodes.iter().enumerate() {
            let count = |a: NodeId| g.nodes[a].shape.len() as u64;
            let len = node.shape.len() as u64;
            let f = match &node.op {
                Op::Input(_) | Op::Target(_) | Op::Param(_) | Op::Pick(..) | Op::OneHot(..) => 0,
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
        let out_flat = flat(quote!(output), out_shape);
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
                "Backward pass (reverse-mode chain rule, last layer first) for the sample last passed to `forward`: adds `∂loss/∂θ` into `grads` (`+=`, so a batch accumulates).",
                Pass::Backward,
                g.grads.iter().flatten().copied().collect(),
            ),
        };
        let live = g.live_from(&roots);
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
            Op::Input(_) | Op::Target(_) | Op::Param(_) => n(&id),
        }
    }
}

/// Whether emitting `op` in assign mode writes every element of its
/// destination (others add into it and need it zeroed first).
fn overwrites(op: &Op) -> bool {
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
fn assign(mode: Mode, lhs: TokenStream, v: TokenStream) -> TokenStream {
    match mode {
        Mode::Assign => quote!(#lhs = #v;),
        Mode::Accumulate => quote!(#lhs += #v;),
    }
}

/// A tensor reference viewed as a flat slice.
fn flat_view(borrowed: TokenStream, shape: &Shape) -> TokenStream {
    match shape.rank() {
        0 => quote!(::core::slice::from_ref(#borrowed)),
        1 => quote!(&(#borrowed)[..]),
        _ => quote!((#borrowed).as_flattened()),
    }
}

/// A shape's dimensions as unsuffixed literals (`[f32; 4]`, not `[f32; 4usize]`).
fn dims(shape: &Shape) -> Vec<Literal> {
    shape
        .0
        .iter()
        .map(|&d| Literal::usize_unsuffixed(d))
        .collect()
}

/// `[i]` or `[i][j]` for a shape's loop variables.
fn loop_index(shape: &Shape) -> TokenStream {
    match shape.rank() {
        0 => quote!(),
        1 => quote!([i]),
        _ => quote!([i][j]),
    }
}

/// Wraps `body` in loops over `shape`.
fn loops(shape: &Shape, body: TokenStream) -> TokenStream {
    match dims(shape).as_slice() {
        [] => body,
        [n] => quote!(for i in 0..#n { #body }),
        [r, c] => quote!(for i in 0..#r { for j in 0..#c { #body } }),
        _ => unreachable!("lowering rejects rank > 2"),
    }
}

/// Precedence of a scalar expression in Rust: higher binds tighter.
fn prec(s: &S) -> u8 {
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
fn scalar_tokens(s: &S, args: &[TokenStream]) -> (TokenStream, u8) {
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
fn cmp_tokens(op: Cmp, a: &S, b: &S, args: &[TokenStream]) -> TokenStream {
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

fn paren_below((t, p): (TokenStream, u8), min: u8) -> TokenStream {
    if p < min {
        quote!((#t))
    } else {
        t
    }
}

/// The maths of a scalar expression, for doc comments.
fn scalar_math(s: &S, args: &[String]) -> (String, u8) {
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

fn init_tokens(init: &InitKind) -> TokenStream {
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

fn describe_init(init: &InitKind) -> String {
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
fn sanitize(name: &str) -> String {
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
