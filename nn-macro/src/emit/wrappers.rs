//! The wrappers next to the user's struct: its inherent methods and
//! constants, `Display` (the model summary) and the `Network` impl, each a
//! thin call of the passes in the network's module.

use super::body::{has_sgd_step, live_with_states, Which};
use super::docs::{doc, intro};
use super::items::BATCH_WIDTHS;
use super::items::{has_step, input_ty_of, step_input_ty, Extra, Names};
use super::plan::Plan;
use crate::ir::*;
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

/// The names bound in the wrappers (method parameters, locals). The
/// wrappers' block declares each first as a function of its own, so that a
/// constant or unit struct of the same name in the user's module cannot
/// make a parameter a pattern (`const input: usize = 4;`).
const WRAPPER_BINDINGS: &[&str] = &[
    "input", "target", "tape", "grads", "norms", "seed", "params", "state", "inputs", "targets",
    "output", "other", "s", "v", "j", "idx", "work", "losses", "correct", "out",
];

/// The passes as methods of the parameter struct (there with or without
/// the heap), each a call into the module, its docs the pass's maths:
/// `predict`, `forward`, `backward` and what the network adds. The user's
/// struct reaches them through `Deref` (`net.predict(x)` is
/// `net.params.predict(x)`), so each is generated once.
fn pass_methods(plan: &Plan, batch: Option<&Plan>, extra: &Extra, n: &Names) -> TokenStream {
    let g = plan.g;
    let t = &plan.t;
    let (m, params_ty, tape_ty) = (&n.module, &n.params, &n.tape);
    let params = quote!(self);
    let input_ty = input_ty_of(plan, &g.inputs);
    let target_ty = input_ty_of(plan, &g.targets);
    let output_ty = plan.tape_ty(g.output);
    let (predict_doc, forward_doc, backward_doc) = (
        doc(plan, Which::Predict),
        doc(plan, Which::Forward),
        doc(plan, Which::Backward),
    );
    let backward_methods = match g.steps {
        Some(steps) => {
            let count = Literal::usize_unsuffixed(steps.count);
            quote!(
                #[doc = #backward_doc]
                #[inline]
                pub fn backward(&self, tape: &#tape_ty, grads: &mut #params_ty) {
                    let mut norms = [0.0; #count];
                    #m::backward_traced(#params, tape, grads, &mut norms);
                }

                /// [`backward`](Self::backward), also recording in `norms[t]` the norm of
                /// the state adjoint carried from step `t` to step `t - 1`: watch it shrink or
                /// grow to see vanishing or exploding gradients.
                pub fn backward_traced(&self, tape: &#tape_ty, grads: &mut #params_ty, norms: &mut [#t; #count]) {
                    #m::backward_traced(#params, tape, grads, norms);
                }
            )
        }
        None => {
            let sgd_step = has_sgd_step(plan).then(|| {
                let sgd_doc = doc(plan, Which::SgdStep);
                quote!(
                    #[doc = #sgd_doc]
                    #[inline]
                    pub fn sgd_step(&mut self, tape: &#tape_ty, lr: #t) {
                        #m::sgd_step(self, tape, lr);
                    }
                )
            });
            quote!(
                #[doc = #backward_doc]
                #[inline]
                pub fn backward(&self, tape: &#tape_ty, grads: &mut #params_ty) {
                    #m::backward(#params, tape, grads);
                }

                #sgd_step
            )
        }
    };
    let step_methods = if has_step(plan) {
        let state_ty = &n.state;
        let step_input_ty = step_input_ty(plan);
        let out_ty = plan.ty(g.output);
        let step_doc = doc(plan, Which::Step);
        quote!(
            /// The state before the first step, as declared.
            pub fn initial_state(&self) -> #state_ty {
                #m::initial_state(#params)
            }

            #[doc = #step_doc]
            pub fn step(&self, state: &mut #state_ty, input: &#step_input_ty) -> #out_ty {
                #m::step(#params, state, input)
            }
        )
    } else {
        quote!()
    };
    let stream_methods = extra
        .stream
        .as_ref()
        .map(|s| super::stream::methods(s, n))
        .unwrap_or_default();
    let mut second_order = quote!();
    if let Some(ig) = &extra.input_grad {
        let d = intro(ig, Which::InputGrad);
        second_order.extend(quote!(
            #[doc = #d]
            pub fn input_gradient(&self, input: &#input_ty, target: &#target_ty) -> #input_ty {
                #m::input_gradient(#params, input, target)
            }
        ));
    }
    if let Some(h) = &extra.hvp {
        let d = intro(h, Which::Hvp);
        second_order.extend(quote!(
            #[doc = #d]
            pub fn hvp(&self, input: &#input_ty, target: &#target_ty, v: &#params_ty, out: &mut #params_ty) {
                #m::hvp(#params, input, target, v, out)
            }
        ));
    }
    let batch_methods = batch
        .map(|b| {
            let bt = &n.batch_tape;
            let input_ty = input_ty_of(b, &g.inputs);
            let target_ty = input_ty_of(b, &g.targets);
            let (fdoc, bdoc) = (doc(b, Which::Forward), doc(b, Which::Backward));
            let update = (!g.batch_norms.is_empty()).then(|| {
                quote!(
                    /// Moves every batch norm's running statistics towards the batch
                    /// statistics the last `forward_batch` on `tape` stored, if it was a
                    /// training pass not used yet (momentum 0.1, the unbiased variance,
                    /// as PyTorch); whether it did. Once per batch: a second call, or a
                    /// call after an inference-mode pass, changes nothing.
                    pub fn update_running_stats<const B: usize>(&mut self, tape: &mut #bt<{ B }>) -> bool {
                        #m::update_running_stats(self, tape)
                    }
                )
            });
            quote!(
                #update

                #[doc = #fdoc]
                pub fn forward_batch<const B: usize>(&self, inputs: &[#input_ty; B], targets: &[#target_ty; B], tape: &mut #bt<{ B }>) -> #t {
                    #m::forward_batch(#params, &inputs[..], &targets[..], |j| j, tape)
                }

                #[doc = #bdoc]
                pub fn backward_batch<const B: usize>(&self, tape: &mut #bt<{ B }>, grads: &mut #params_ty) {
                    #m::backward_batch(#params, tape, grads)
                }
            )
        })
        .unwrap_or_default();
    quote! {
        #[doc = #predict_doc]
        #[inline]
        pub fn predict(&self, input: &#input_ty) -> #output_ty {
            #m::predict(#params, input)
        }

        #[doc = #forward_doc]
        #[inline]
        pub fn forward(&self, input: &#input_ty, target: &#target_ty, tape: &mut #tape_ty) -> #t {
            #m::forward(#params, input, target, tape)
        }

        #backward_methods

        #step_methods

        #stream_methods

        #second_order

        #batch_methods
    }
}

/// The methods next to the user's struct and its `Network` impl, each a
/// call into the module; the struct's are only there with nn-runtime's
/// `alloc` feature (the struct boxes its parameters), the parameter
/// struct's (`NetParams::new(seed)`, `params.forward(...)`) always.
pub(super) fn wrappers(plan: &Plan, batch: Option<&Plan>, extra: &Extra, n: &Names) -> TokenStream {
    let g = plan.g;
    let t = &plan.t;
    let (name, m, params_ty, tape_ty) = (&n.name, &n.module, &n.params, &n.tape);
    let n_params = Literal::usize_unsuffixed(g.params.iter().map(|p| p.shape.len()).sum());
    let input_ty = input_ty_of(plan, &g.inputs);
    let target_ty = input_ty_of(plan, &g.targets);
    let output_ty = plan.tape_ty(g.output);
    let (fwd_flops, bwd_flops) = flops(plan);
    let onnx = extra.onnx.then(|| {
        let desc = super::onnx::onnx_export(g, &name.to_string());
        quote!(const ONNX: ::nn_runtime::__private::onnx::Export = #desc;)
    });
    let pytorch = extra.pytorch.then(|| {
        quote!(
            /// This network as a PyTorch `nn.Module` (Python source): the
            /// same parameter names and layouts as its checkpoints, `forward`
            /// over a batch of inputs and `losses` per sample. Write it to a
            /// `.py` file to train the definition with PyTorch; its state
            /// dict loads back with `load_checkpoint`.
            pub const PYTORCH_MODULE: &'static str = #m::pytorch_module();
        )
    });
    let (fwd_flops, bwd_flops) = (
        Literal::u64_unsuffixed(fwd_flops),
        Literal::u64_unsuffixed(bwd_flops),
    );
    let param_info = {
        let mut offset = 0usize;
        let infos = g.params.iter().map(|p| {
            let pname = &p.name;
            let dims = p.shape.0.iter().map(|&d| Literal::usize_unsuffixed(d));
            let o = Literal::usize_unsuffixed(offset);
            offset += p.shape.len();
            quote!(::nn_runtime::__private::ParamInfo { name: #pname, shape: &[#(#dims),*], offset: #o })
        });
        quote!(&[#(#infos),*])
    };
    let params_passes = pass_methods(plan, batch, extra, n);
    // what only the user's struct has: the sequence length, and batch tapes on the heap
    let steps_const = g.steps.map(|steps| {
        let count = Literal::usize_unsuffixed(steps.count);
        quote!(
            /// Number of time steps of a training sequence.
            pub const STEPS: usize = #count;
        )
    });
    let new_batch_tape = batch.map(|_| {
        let bt = &n.batch_tape;
        quote!(
            /// A zeroed tape (and workspace) for mini-batches of `B` samples, on the heap.
            pub fn new_batch_tape<const B: usize>() -> ::nn_runtime::__private::Box<#bt<{ B }>> {
                <#bt<{ B }> as ::nn_runtime::__private::Zeroable>::zeroed_box()
            }
        )
    });
    let buffer_info = {
        let mut offset = 0usize;
        let infos = g.batch_norms.iter().flat_map(|d| {
            let names = crate::ops::batchnorm::buffer_names(&d.name);
            let shapes = [vec![d.channels], vec![d.channels], vec![]];
            names.into_iter().zip(shapes).map(|(name, shape)| {
                let o = Literal::usize_unsuffixed(offset);
                offset += shape.iter().product::<usize>();
                let dims = shape.iter().map(|&c| Literal::usize_unsuffixed(c));
                quote!(::nn_runtime::__private::ParamInfo { name: #name, shape: &[#(#dims),*], offset: #o })
            }).collect::<Vec<_>>()
        });
        let infos: Vec<TokenStream> = infos.collect();
        (!infos.is_empty()).then(|| quote!(&[#(#infos),*]))
    };
    let (buffer_info_struct, buffer_info_trait) = match &buffer_info {
        Some(info) => (
            quote!(
                /// Every buffer tensor (running statistics: saved, loaded, not
                /// trained by the optimiser) with its name, shape and offset in
                /// the buffers after the parameters.
                pub const BUFFER_INFO: &'static [::nn_runtime::__private::ParamInfo] = #info;
            ),
            quote!(const BUFFER_INFO: &'static [::nn_runtime::__private::ParamInfo] = #name::BUFFER_INFO;),
        ),
        None => (quote!(), quote!()),
    };
    let check_target = check_classes(plan, false);
    let check_input = check_classes(plan, true);
    // the buffers are not the optimiser's: the new parameters keep them
    let keep_buffers = (!g.batch_norms.is_empty()).then(|| {
        quote!(::nn_runtime::__private::Flat::buffers_mut(&mut **other)
            .copy_from_slice(::nn_runtime::__private::Flat::buffers(&*self.params));)
    });
    let set_dropout = if super::items::has_dropout(g) {
        quote!(fn set_dropout(tape: &mut #tape_ty, seed: ::core::option::Option<u64>) {
            tape.set_dropout(seed);
        })
    } else {
        quote!()
    };
    let non_finite_input = non_finite_input(plan);
    let tape_output = if plan.on_tape[g.output] {
        let o = &plan.ident[g.output];
        quote!(
            fn tape_output(tape: &#tape_ty) -> ::core::option::Option<#output_ty> {
                ::core::option::Option::Some(tape.#o)
            }
        )
    } else {
        quote!()
    };
    let sgd_step = has_sgd_step(plan).then(|| {
        quote!(
            #[inline]
            fn sgd_step(&mut self, tape: &#tape_ty, lr: #t) -> bool {
                #m::sgd_step(&mut self.params, tape, lr);
                true
            }
        )
    });
    let batch_trait = match batch {
        Some(b) => {
            let (work, input_ty, target_ty) = (
                &n.batch_work,
                input_ty_of(b, &g.inputs),
                input_ty_of(b, &g.targets),
            );
            let widths = BATCH_WIDTHS.iter().map(|w| Literal::usize_unsuffixed(*w));
            let arms = |train: bool| {
                BATCH_WIDTHS.iter().map(move |w| {
                    let f = format_ident!("w{}", w);
                    let lit = Literal::usize_unsuffixed(*w);
                    let grads = if train {
                        quote!(::core::option::Option::Some(grads))
                    } else {
                        quote!(::core::option::Option::None)
                    };
                    quote!(#lit => #m::block::<#lit>(&self.params, inputs, targets, idx, &mut work.#f, #grads, losses, correct),)
                })
            };
            let (train_arms, eval_arms) = (arms(true), arms(false));
            let batch_norm_items = (!g.batch_norms.is_empty()).then(|| {
                let arms = BATCH_WIDTHS.iter().map(|w| {
                    let f = format_ident!("w{}", w);
                    let lit = Literal::usize_unsuffixed(*w);
                    quote!(#lit => { #m::update_running_stats::<#lit>(&mut self.params, &mut work.#f); })
                });
                quote!(
                    const BATCH_NORM: bool = true;
                    fn update_block_stats(&mut self, work: &mut #work, width: usize) {
                        match width {
                            #(#arms)*
                            other => ::nn_runtime::__private::no_batched_pass::<Self>(other),
                        }
                    }
                )
            });
            let set_dropout_batch = if super::items::has_dropout(g) {
                quote!(fn set_dropout_batch(work: &mut #work, seed: ::core::option::Option<u64>) {
                    work.set_dropout(seed);
                })
            } else {
                quote!()
            };
            quote!(
                type BatchWork = #work;
                const BATCH_WIDTHS: &'static [usize] = &[#(#widths),*];
                fn train_block(&self, inputs: &[#input_ty], targets: &[#target_ty], idx: &[usize], work: &mut #work, grads: &mut #params_ty, losses: &mut [#t], correct: &mut [bool]) {
                    match idx.len() {
                        #(#train_arms)*
                        other => ::nn_runtime::__private::no_batched_pass::<Self>(other),
                    }
                }
                fn eval_block(&self, inputs: &[#input_ty], targets: &[#target_ty], idx: &[usize], work: &mut #work, losses: &mut [#t], correct: &mut [bool]) {
                    match idx.len() {
                        #(#eval_arms)*
                        other => ::nn_runtime::__private::no_batched_pass::<Self>(other),
                    }
                }
                #set_dropout_batch
                #batch_norm_items
            )
        }
        None => quote!(
            type BatchWork = ::nn_runtime::__private::NoBatch;
        ),
    };
    let dummies = WRAPPER_BINDINGS.iter().map(|b| {
        let b = format_ident!("{}", b);
        quote!(#[allow(dead_code)] fn #b() {})
    });
    quote! {
        const _: () = {
            use ::core::primitive::{bool, f32, f64, str, u64, usize};
            // Every name the methods below bind is first declared here, so
            // that an item of the same name in the user's module cannot
            // capture it.
            #(#dummies)*

            #[allow(unused_mut, unused_variables, dead_code, clippy::all)]
            impl #params_ty {
                /// Parameters initialised as declared, from `seed`, returned by
                /// value: no heap (the stack, or a `static` through [`init`](Self::init)).
                pub fn new(seed: u64) -> Self {
                    let mut params = <Self as ::nn_runtime::__private::Zeroable>::ZEROED;
                    #m::init(&mut params, seed);
                    params
                }

                /// Fills these parameters as declared, from `seed`, in place.
                pub fn init(&mut self, seed: u64) {
                    #m::init(self, seed);
                }

                #params_passes
            }

            ::nn_runtime::__private::if_alloc! {
            #[allow(unused_mut, unused_variables, dead_code, clippy::all)]
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
                #buffer_info_struct
                /// The forward (solid) and backward (dashed) graph in Graphviz DOT:
                /// `dot -Tsvg` renders it.
                pub const GRAPH_DOT: &'static str = #m::graph_dot();
                #pytorch

                /// A network with every parameter initialised as declared, from `seed`.
                pub fn new(seed: u64) -> Self {
                    let mut params = <#params_ty as ::nn_runtime::__private::Zeroable>::zeroed_box();
                    #m::init(&mut params, seed);
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

                #steps_const
                #new_batch_tape
            }

            /// The passes are the parameters' methods: `net.predict(x)` is
            /// `net.params.predict(x)`.
            impl ::core::ops::Deref for #name {
                type Target = #params_ty;
                #[inline]
                fn deref(&self) -> &#params_ty {
                    &self.params
                }
            }

            /// `net.sgd_step(&tape, lr)` updates `net.params` in place.
            impl ::core::ops::DerefMut for #name {
                #[inline]
                fn deref_mut(&mut self) -> &mut #params_ty {
                    &mut self.params
                }
            }

            /// The model summary: each parameter's name, shape and size, the
            /// totals, the FLOPs and tape bytes of one sample.
            impl ::core::fmt::Display for #name {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    ::core::fmt::Display::fmt(&::nn_runtime::__private::Summary::of::<Self>(), f)
                }
            }

            impl ::nn_runtime::__private::Network for #name {
                type Scalar = #t;
                type Input = #input_ty;
                type Target = #target_ty;
                type Output = #output_ty;
                type Params = #params_ty;
                type Tape = #tape_ty;
                #batch_trait
                const PARAMS: usize = #name::PARAMS;
                const TAPE_BYTES: usize = #name::TAPE_BYTES;
                const FORWARD_FLOPS: u64 = #name::FORWARD_FLOPS;
                const BACKWARD_FLOPS: u64 = #name::BACKWARD_FLOPS;
                const PARAM_INFO: &'static [::nn_runtime::__private::ParamInfo] = #name::PARAM_INFO;
                #buffer_info_trait
                #onnx
                fn new(seed: u64) -> Self {
                    #name::new(seed)
                }
                fn params(&self) -> &#params_ty {
                    &self.params
                }
                fn params_mut(&mut self) -> &mut #params_ty {
                    &mut self.params
                }
                #[inline]
                fn predict(&self, input: &#input_ty) -> #output_ty {
                    #m::predict(&self.params, input)
                }
                #[inline]
                fn forward(&self, input: &#input_ty, target: &#target_ty, tape: &mut #tape_ty) -> #t {
                    #m::forward(&self.params, input, target, tape)
                }
                #[inline]
                fn backward(&self, tape: &#tape_ty, grads: &mut #params_ty) {
                    #params_ty::backward(&self.params, tape, grads)
                }
                fn is_correct(output: &#output_ty, target: &#target_ty) -> bool {
                    #m::is_correct(output, target)
                }
                fn check_target(target: &#target_ty) -> ::core::result::Result<(), ::nn_runtime::__private::TargetError> {
                    #check_target
                }
                #set_dropout
                fn check_input(input: &#input_ty) -> ::core::result::Result<(), ::nn_runtime::__private::TargetError> {
                    #check_input
                }
                fn non_finite_input(input: &#input_ty) -> ::core::option::Option<(&'static str, usize)> {
                    #non_finite_input
                }
                fn swap_params(&mut self, other: &mut ::nn_runtime::__private::Box<#params_ty>) {
                    #keep_buffers
                    ::core::mem::swap(&mut self.params, other);
                }
                #tape_output
                #sgd_step
            }
            }
        };
    }
}

/// `Network::non_finite_input`: each input as one flat slice, searched for
/// its first NaN or infinite element.
fn non_finite_input(plan: &Plan) -> TokenStream {
    let g = plan.g;
    let checks = g.inputs.iter().enumerate().filter(|(_, d)| d.classes.is_none()).map(|(k, d)| {
        let name = &d.name;
        let field = if g.inputs.len() == 1 {
            quote!((*input))
        } else {
            let i = syn::Index::from(k);
            quote!(input.#i)
        };
        let slice = match d.shape.stored_rank() + usize::from(d.per_step) {
            0 => quote!(::core::slice::from_ref(&#field)),
            1 => quote!(#field[..]),
            2 => quote!(#field.as_flattened()),
            _ => quote!(#field.as_flattened().as_flattened()),
        };
        quote!(
            // `__nn_` names: a user's unit struct `i` would capture a pattern `i`
            if let ::core::option::Option::Some(__nn_at) = #slice.iter().position(|__nn_v| !__nn_v.is_finite()) {
                return ::core::option::Option::Some((#name, __nn_at));
            }
        )
    });
    quote!(#(#checks)* ::core::option::Option::None)
}

/// `Network::check_target` (or `check_input`, for the class-index inputs):
/// every class index below its class count (at every step of a per-step
/// declaration, at every position of a vector), the first one that is not named.
fn check_classes(plan: &Plan, inputs: bool) -> TokenStream {
    let g = plan.g;
    let (decls, arg) = if inputs {
        (&g.inputs, quote!(input))
    } else {
        (&g.targets, quote!(target))
    };
    let checks = decls.iter().enumerate().filter_map(|(k, d)| {
        let n = Literal::usize_unsuffixed(d.classes?);
        let name = &d.name;
        let field = if decls.len() == 1 {
            quote!((*#arg))
        } else {
            let i = syn::Index::from(k);
            quote!(#arg.#i)
        };
        let error = |value: TokenStream, step: TokenStream, position: TokenStream| {
            quote!(::core::result::Result::Err(::nn_runtime::__private::TargetError {
                target: #name,
                step: #step,
                position: #position,
                value: #value,
                classes: #n,
            }))
        };
        let none = quote!(::core::option::Option::None);
        Some(if d.per_step || d.shape.rank() == 1 {
            let (step, position) = if d.per_step {
                (quote!(::core::option::Option::Some(s)), none.clone())
            } else {
                (none.clone(), quote!(::core::option::Option::Some(s)))
            };
            let e = error(quote!(v), step, position);
            quote!(
                for (s, &v) in #field.iter().enumerate() {
                    if v >= #n {
                        return #e;
                    }
                }
            )
        } else {
            let e = error(field.clone(), none.clone(), none);
            quote!(
                if #field >= #n {
                    return #e;
                }
            )
        })
    });
    quote!(#(#checks)* ::core::result::Result::Ok(()))
}

/// `(forward, backward)` floating-point operation counts, saturating.
fn flops(plan: &Plan) -> (u64, u64) {
    let g = plan.g;
    let mut fwd = 0u64;
    let mut bwd = 0u64;
    let fwd_live = live_with_states(g, vec![g.loss]);
    let steps = g.steps.map_or(1, |s| s.count) as u64;
    for (id, node) in g.nodes.iter().enumerate() {
        let f = crate::ops::flops(g, id);
        // a per-step node runs once per step
        let f = if plan.regions[id] == Region::Step {
            f.saturating_mul(steps)
        } else {
            f
        };
        match node.pass {
            Pass::Forward if fwd_live[id] => fwd = fwd.saturating_add(f),
            Pass::Backward if plan.live[id] => bwd = bwd.saturating_add(f),
            _ => {}
        }
    }
    for gr in g.grads.iter().flatten() {
        bwd = bwd.saturating_add(g.nodes[*gr].shape.len() as u64);
    }
    (fwd, bwd)
}
