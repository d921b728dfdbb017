//! One generated function's body: the live nodes of its pass, region by
//! region (before, inside and after the time loop), each written to its
//! place (a local, a tape field, the gradient buffer), then the result.
//! The same walk writes the per-sample functions (`predict`, `forward`,
//! `backward`, `step`) and the batched ones (`forward_batch`,
//! `backward_batch`, whose intermediates live in the batch tape).

use super::ex::Ex;
use super::plan::Plan;
use super::{loop_index, loops, recurrent, Mode, Place};
use crate::ir::*;
use proc_macro2::TokenStream;
use quote::quote;
use std::collections::HashMap;

/// Which function is emitted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Which {
    /// Inference: the output.
    Predict,
    /// The forward pass: the loss, and the tape.
    Forward,
    /// The backward pass: gradients into `grads`.
    Backward,
    /// Plain SGD fused into the backward pass (feed-forward networks): the
    /// backward pass seeded with `-lr`, each gradient added straight into
    /// the parameters, after the last read of any parameter.
    SgdStep,
    /// One time step of a recurrent network, with its state passed in and out.
    Step,
    /// One position of a causal convolutional network's signals, with the
    /// convolutions' ring buffers passed in and out (its own graph).
    Stream,
    /// `∂loss/∂input` of each input (its own graph).
    InputGrad,
    /// The Hessian-vector product (its own graph, whose forward and backward
    /// nodes it computes alike).
    Hvp,
}

/// The state of one function while it is emitted.
pub struct Fx {
    /// Which function.
    pub which: Which,
    /// The pass its nodes belong to.
    pub pass: Pass,
    /// The nodes it computes or reads.
    pub live: Vec<bool>,
    /// Where each value lives.
    pub place: HashMap<NodeId, Place>,
    /// The statements so far.
    pub stmts: Vec<TokenStream>,
    /// `SgdStep`: the gradients computed straight into the parameters,
    /// emitted after every read of the parameters.
    pub deferred: Vec<NodeId>,
}

impl Fx {
    /// Whether node `id` is computed straight into its parameter's gradient
    /// (or, in `SgdStep`, into the parameter). In `SgdStep` a node that
    /// reads a parameter itself is computed first and added at the end,
    /// so that no parameter is read after one is written.
    pub fn direct(&self, plan: &Plan, id: NodeId) -> bool {
        plan.grad_direct(id) && (self.which != Which::SgdStep || !reads_param(plan, id))
    }
}

/// Whether node `id` reads a parameter, itself or through an operand
/// computed inside it.
fn reads_param(plan: &Plan, id: NodeId) -> bool {
    plan.g.nodes[id].op.args().iter().any(|&a| {
        matches!(plan.g.nodes[a].op, Op::Param(_)) || (plan.absorbed[a] && reads_param(plan, a))
    })
}

/// Whether the network has a fused SGD step: feed-forward, without a
/// `batch_norm` (whose training passes are the batched ones), and no
/// parameter's gradient is another parameter's value (the update of one
/// would change the other's gradient).
pub fn has_sgd_step(plan: &Plan) -> bool {
    let g = plan.g;
    g.steps.is_none()
        && g.batch_norms.is_empty()
        && !plan.batch
        && g.grads
            .iter()
            .flatten()
            .all(|&gr| !matches!(g.nodes[gr].op, Op::Param(_)))
}

/// The body of one function of `plan`'s graph.
pub fn function(plan: &Plan, which: Which) -> TokenStream {
    let g = plan.g;
    let pass = if matches!(which, Which::Backward | Which::SgdStep) {
        Pass::Backward
    } else {
        Pass::Forward
    };
    let mut roots: Vec<NodeId> = match which {
        Which::Predict | Which::Step | Which::Stream => vec![g.output],
        // the loss, and every value the backward pass reads
        Which::Forward => std::iter::once(g.loss)
            .chain(plan.tape.iter().copied())
            .collect(),
        Which::Backward | Which::SgdStep => g.grads.iter().flatten().copied().collect(),
        Which::InputGrad => g.input_grads.iter().flatten().copied().collect(),
        Which::Hvp => g.hvp.iter().flatten().copied().collect(),
    };
    if which == Which::Backward {
        // carried state adjoints flow into learned initial states and the norms
        roots.extend(g.state_adjoints.iter().flatten());
    }
    let mut fx = Fx {
        which,
        pass,
        live: live_with_states(g, roots),
        place: HashMap::new(),
        stmts: vec![],
        deferred: vec![],
    };
    bind_leaves(plan, &mut fx);
    emit_region(plan, &mut fx, Region::Before);
    match (g.steps, which) {
        (Some(_), Which::Step) => {
            emit_region(plan, &mut fx, Region::Step);
            recurrent::update_states(plan, &mut fx);
        }
        (Some(steps), _) => recurrent::emit_loop(plan, &mut fx, steps),
        (None, _) => {}
    }
    emit_region(plan, &mut fx, Region::After);
    finish(plan, &mut fx);
    let stmts = fx.stmts;
    quote!(#(#stmts)*)
}

/// Nodes live for `roots`, following states: a live previous value makes
/// its update live too (the next step reads it).
pub fn live_with_states(g: &Graph, mut roots: Vec<NodeId>) -> Vec<bool> {
    loop {
        let live = g.live_from(&roots);
        let more: Vec<NodeId> = g
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
fn bind_leaves(plan: &Plan, fx: &mut Fx) {
    let g = plan.g;
    let which = fx.which;
    if matches!(which, Which::Backward | Which::SgdStep) {
        for &id in &plan.tape {
            if plan.live[id] {
                fx.place.insert(id, plan.tape_place(id));
            }
        }
    } else if plan.batch {
        load_samples(plan, fx);
    } else {
        let stmt = bind_decls(plan, quote!(input), &g.inputs, Op::Input, fx);
        fx.stmts.push(stmt);
        if matches!(which, Which::InputGrad | Which::Hvp) {
            let stmt = bind_decls(plan, quote!(target), &g.targets, Op::Target, fx);
            fx.stmts.push(stmt);
        }
        if which == Which::Forward {
            let stmt = bind_decls(plan, quote!(target), &g.targets, Op::Target, fx);
            fx.stmts.push(stmt);
            // inputs and targets the backward pass reads are copied to the tape
            for &id in &plan.tape {
                if matches!(g.nodes[id].op, Op::Input(_) | Op::Target(_)) {
                    let n = &plan.ident[id];
                    fx.stmts.push(quote!(tape.#n = *#n;));
                }
            }
        }
    }
    let pass = fx.pass;
    let state_init = |id: NodeId| {
        g.states
            .iter()
            .any(|st| matches!(st.init, StateInit::Param(p) if g.nodes[id].op == Op::Param(p)))
    };
    let all_passes = which == Which::Hvp;
    let read_here = |id: NodeId| {
        plan.users[id]
            .iter()
            .any(|&u| fx.live[u] && (all_passes || g.nodes[u].pass == pass))
            || (matches!(which, Which::Predict | Which::Step | Which::Stream) && g.output == id)
            || (matches!(which, Which::Backward | Which::SgdStep) && !plan.grad_of[id].is_empty())
            || (matches!(which, Which::Predict | Which::Forward)
                && g.steps.is_some()
                && state_init(id))
    };
    let used: Vec<proc_macro2::Ident> = plan
        .param_node
        .iter()
        .filter(|&&id| read_here(id))
        .map(|&id| {
            fx.place.insert(id, Place::Ref(plan.ident[id].clone()));
            plan.ident[id].clone()
        })
        .collect();
    let mut prelude = vec![quote!(
        use ::nn_runtime::__private::Activations as _;
    )];
    if which == Which::Hvp {
        // `v`'s parts, bound before the parameters (one may be named `v`)
        for (id, node) in g.nodes.iter().enumerate() {
            if let (Op::Tangent(k), true) = (&node.op, fx.live[id]) {
                let (n, f) = (&plan.ident[id], plan.param_field(*k));
                prelude.push(quote!(let #n = &v.#f;));
                fx.place.insert(id, Place::Ref(n.clone()));
            }
        }
    }
    if which == Which::SgdStep {
        // the parameters are the gradient buffer: each field borrowed alone,
        // so that one is written after the last read of the others
        prelude.push(quote!(let grads = params;));
        if !used.is_empty() {
            let pty = &plan.params_ty;
            prelude.push(quote!(let #pty { #(ref #used,)* .. } = *grads;));
        }
    } else if !used.is_empty() {
        let pty = &plan.params_ty;
        prelude.push(quote!(let #pty { #(#used,)* .. } = params;));
    }
    // the seed of the backward pass: `∂loss/∂loss`
    if let Some(seed) = (0..g.nodes.len()).find(|&id| g.nodes[id].op == Op::Seed && fx.live[id]) {
        let (n, t) = (&plan.ident[seed], &plan.t);
        prelude.push(match which {
            Which::SgdStep => quote!(let #n: #t = -lr;),
            _ => quote!(let #n: #t = 1.0;),
        });
        fx.place.insert(seed, Place::Local(n.clone()));
    }
    fx.stmts.splice(0..0, prelude);
}

/// Per-sample code: `let x = input;` (or a tuple of several), each
/// declaration bound to its node.
fn bind_decls(
    plan: &Plan,
    src: TokenStream,
    decls: &[TensorDecl],
    op: impl Fn(usize) -> Op,
    fx: &mut Fx,
) -> TokenStream {
    let g = plan.g;
    // `step` takes the per-step inputs of one step only
    let ids: Vec<(Option<NodeId>, &TensorDecl)> = (0..decls.len())
        .map(|k| (g.nodes.iter().position(|n| n.op == op(k)), &decls[k]))
        .filter(|(_, d)| fx.which != Which::Step || d.per_step)
        .collect();
    for (id, decl) in &ids {
        let Some(id) = id else { continue };
        let p = if decl.per_step && fx.which != Which::Step {
            Place::RefStep(plan.ident[*id].clone())
        } else {
            Place::Ref(plan.ident[*id].clone())
        };
        fx.place.insert(*id, p);
    }
    let names: Vec<TokenStream> = ids
        .iter()
        .map(|(id, _)| match id {
            Some(id) if fx.live[*id] || (fx.which == Which::Forward && plan.on_tape[*id]) => {
                let n = &plan.ident[*id];
                quote!(#n)
            }
            _ => quote!(_),
        })
        .collect();
    match names.as_slice() {
        [] => quote!(),
        [one] => quote!(let #one = #src;),
        many => quote!(let (#(#many,)*) = #src;),
    }
}

/// Batched code: each sample's input and target into its column of the
/// batch tape (sample `j` of the batch is `inputs[at(j)]`).
fn load_samples(plan: &Plan, fx: &mut Fx) {
    let g = plan.g;
    for (src, decls, is_input) in [
        (quote!(inputs), &g.inputs, true),
        (quote!(targets), &g.targets, false),
    ] {
        if !is_input && fx.which == Which::Predict {
            continue;
        }
        for (k, d) in decls.iter().enumerate() {
            let op = if is_input {
                Op::Input(k)
            } else {
                Op::Target(k)
            };
            let Some(id) = g.nodes.iter().position(|n| n.op == op) else {
                continue;
            };
            if !plan.live[id] {
                continue;
            }
            let n = &plan.ident[id];
            let (sample, field) = if decls.len() == 1 {
                (quote!(#src[at(j)]), quote!(|s| s))
            } else {
                let i = syn::Index::from(k);
                (quote!(#src[at(j)].#i), quote!(|s| &s.#i))
            };
            let len = proc_macro2::Literal::usize_unsuffixed(d.shape.len());
            fx.stmts.push(match (d.per_step, d.shape.stored_rank(), g.steps) {
                (true, 0, Some(steps)) => {
                    let count = proc_macro2::Literal::usize_unsuffixed(steps.count);
                    quote!(for j in 0..B { for t in 0..#count { tape.#n[t][j] = #sample[t]; } })
                }
                (true, _, Some(steps)) => {
                    let count = proc_macro2::Literal::usize_unsuffixed(steps.count);
                    quote!(for j in 0..B { for t in 0..#count { for i in 0..#len { tape.#n[t][i][j] = #sample[t][i]; } } })
                }
                (_, 0, _) => quote!(for j in 0..B { tape.#n[j] = #sample; }),
                (_, 1, _) => {
                    let k = super::kernels();
                    quote!(#k::gather_cols(#src, #field, &at, &mut tape.#n);)
                }
                _ => quote!(for j in 0..B { for i in 0..#len { tape.#n[i][j] = #sample.as_flattened()[i]; } }),
            });
            fx.place.insert(id, plan.tape_place(id));
        }
    }
}

/// Computes the live nodes of this function's pass in one region, in order.
pub fn emit_region(plan: &Plan, fx: &mut Fx, region: Region) {
    let g = plan.g;
    let looped = g.steps.is_some() && fx.which != Which::Step;
    let all_passes = fx.which == Which::Hvp;
    for id in 0..g.nodes.len() {
        let node = &g.nodes[id];
        if !fx.live[id] || (node.pass != fx.pass && !all_passes) || plan.regions[id] != region {
            continue;
        }
        match node.op {
            Op::Input(_) | Op::Target(_) | Op::Param(_) | Op::Tangent(_) | Op::Seed => continue,
            // registers and accumulators set up around the loop
            Op::StatePrev(_) | Op::Carry(_) | Op::StepSum(_) | Op::Last(_) if looped => continue,
            Op::StatePrev(k) => {
                // `step`: the previous value is the caller's state
                let f = quote::format_ident!("{}", super::names::sanitize(&g.states[k].name));
                fx.place.insert(id, Place::State(f));
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
        if plan.absorbed[id] {
            continue;
        }
        if fx.which == Which::SgdStep && fx.direct(plan, id) {
            // into the parameter itself, after every read of the parameters
            fx.deferred.push(id);
            continue;
        }
        if matches!(fx.which, Which::Backward | Which::Hvp) && plan.grad_direct(id) {
            // only the gradient reads it: compute straight into the gradient buffer
            let dest = Place::Grad(plan.param_field(plan.grad_of[id][0]));
            emit_node(plan, fx, id, &dest, Mode::Accumulate);
            continue;
        }
        let dest = dest_for(plan, fx, id);
        if let Place::Local(n) = &dest {
            let ty = plan.ty(id);
            if node.shape.is_scalar() && !plan.batched[id] && matches!(node.op, Op::Map { .. }) {
                let e = Ex {
                    plan,
                    place: &fx.place,
                    out: &mut vec![],
                    id,
                    training: false,
                }
                .map_elem(id);
                fx.stmts.push(quote!(let #n: #ty = #e;));
                fx.place.insert(id, dest);
                continue;
            }
            let zero = plan.zero(id);
            fx.stmts.push(quote!(let mut #n: #ty = #zero;));
        } else if !crate::ops::overwrites(&node.op) {
            // a reused tape holds the last sample's values: clear before
            // accumulating into it
            fx.stmts.push(clear(plan, &dest, id));
        }
        emit_node(plan, fx, id, &dest, Mode::Assign);
        fx.place.insert(id, dest);
    }
}

/// Emits node `id` into `dest` through its op's rule.
pub fn emit_node(plan: &Plan, fx: &mut Fx, id: NodeId, dest: &Place, mode: Mode) {
    let mut ex = Ex {
        plan,
        place: &fx.place,
        out: &mut fx.stmts,
        id,
        training: fx.which == Which::Forward,
    };
    crate::ops::emit(&mut ex, dest, mode);
}

/// Where a computed node goes: the tape (forward, if backward reads it),
/// the batch tape (every intermediate of the batched passes), or a local.
fn dest_for(plan: &Plan, fx: &Fx, id: NodeId) -> Place {
    let scalar_let = plan.g.nodes[id].shape.is_scalar()
        && !plan.batched[id]
        && matches!(plan.g.nodes[id].op, Op::Map { .. });
    if (plan.batch || fx.which == Which::Forward) && plan.on_tape[id] {
        plan.tape_place(id)
    } else if plan.batch && !scalar_let {
        // the batched passes' workspace: one slot, reused at every step
        Place::Tape(plan.ident[id].clone())
    } else {
        Place::Local(plan.ident[id].clone())
    }
}

/// Sets a stored value to zeros in place (no temporary array on the stack).
pub fn clear(plan: &Plan, dest: &Place, id: NodeId) -> TokenStream {
    let v = dest.value();
    let rank = plan.g.nodes[id].shape.stored_rank() + usize::from(plan.batched[id]);
    match rank {
        0 => quote!(#v = 0.0;),
        1 => quote!(#v.fill(0.0);),
        _ => quote!(#v.as_flattened_mut().fill(0.0);),
    }
}

/// Copies (or adds) node `a`'s value between two places, one column per
/// sample when it is batched.
pub fn copy_node(plan: &Plan, a: NodeId, src: &Place, dest: &Place, mode: Mode) -> TokenStream {
    let mut out = vec![];
    let empty = HashMap::new();
    let mut ex = Ex {
        plan,
        place: &empty,
        out: &mut out,
        id: a,
        training: false,
    };
    ex.copy_into(a, a, src, dest, mode);
    quote!(#(#out)*)
}

/// Copies (or adds) a value of `shape` between two places of per-sample code.
pub fn copy_shape(shape: &Shape, src: &Place, dest: &Place, mode: Mode) -> TokenStream {
    let idx = loop_index(shape);
    let (lhs, rhs) = if shape.is_scalar() {
        (dest.value(), src.value())
    } else {
        (dest.index(&idx), src.index(&idx))
    };
    loops(shape, Ex::put(mode, lhs, rhs))
}

/// Adds each parameter's result that is not computed straight into the
/// gradient buffer (`grads.w += d_w`).
fn add_param_results(plan: &Plan, fx: &mut Fx, results: &[Option<NodeId>]) {
    for (k, gr) in results.iter().enumerate() {
        let Some(gr) = *gr else { continue };
        if fx.direct(plan, gr) {
            continue;
        }
        let dest = Place::Grad(plan.param_field(k));
        let src = fx
            .place
            .get(&gr)
            .cloned()
            .unwrap_or_else(|| Place::Ref(plan.ident[gr].clone()));
        let stmt = copy_shape(&plan.g.nodes[gr].shape, &src, &dest, Mode::Accumulate);
        fx.stmts.push(stmt);
    }
}

/// The statements after the last region: gradients of stored values, and the result.
fn finish(plan: &Plan, fx: &mut Fx) {
    let g = plan.g;
    match fx.which {
        // gradients (or parts of `H v`) that are stored values (several
        // users, or forward values)
        Which::Backward => add_param_results(plan, fx, &g.grads),
        Which::SgdStep => {
            for id in std::mem::take(&mut fx.deferred) {
                let dest = Place::Grad(plan.param_field(plan.grad_of[id][0]));
                emit_node(plan, fx, id, &dest, Mode::Accumulate);
            }
            add_param_results(plan, fx, &g.grads);
        }
        Which::Hvp => add_param_results(plan, fx, &g.hvp),
        Which::Predict if g.steps.is_some() && plan.regions[g.output] == Region::Step => {
            fx.stmts.push(quote!(output_seq));
        }
        Which::Predict | Which::Step | Which::Stream => {
            let v = fx.place[&g.output].value();
            fx.stmts.push(quote!(#v));
        }
        Which::Forward if plan.batch => {
            let v = fx.place[&g.loss].value();
            let t = &plan.t;
            fx.stmts.push(if plan.batched[g.loss] {
                quote!(let mut total: #t = 0.0; for j in 0..B { total += #v[j]; } total)
            } else {
                quote!(B as #t * #v)
            });
        }
        Which::Forward => {
            let v = fx.place[&g.loss].value();
            fx.stmts.push(quote!(#v));
        }
        Which::InputGrad => {
            // each input's gradient, zeros where the loss does not depend on it
            let values: Vec<TokenStream> = g
                .inputs
                .iter()
                .zip(&g.input_grads)
                .map(|(d, gr)| match gr.and_then(|gr| fx.place.get(&gr)) {
                    Some(p) => p.value(),
                    // a class index has no gradient: its place holds 0
                    None if d.classes.is_some() => quote!(0),
                    None => plan.fill(&d.shape, 0.0),
                })
                .collect();
            fx.stmts.push(match values.as_slice() {
                [one] => quote!(#one),
                many => quote!((#(#many,)*)),
            });
        }
    }
}
