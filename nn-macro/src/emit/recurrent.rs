//! The time loop of a recurrent definition (per-sample code): registers
//! for the states, the carried adjoints, the sums over steps and the last
//! values before the loop; the per-step nodes inside it; each state's new
//! value (forward) or carried adjoint (backward, cut where truncation says)
//! at the end of a step.

use super::body::{clear, copy_node, copy_shape, emit_region, Fx, Which};
use super::plan::Plan;
use super::{flat_view, Mode, Place};
use crate::ir::*;
use proc_macro2::Literal;
use quote::{format_ident, quote};

/// The loop over the steps, forward (`0..T`) or backward (`(0..T).rev()`).
pub fn emit_loop(plan: &Plan, fx: &mut Fx, steps: Steps) {
    let g = plan.g;
    let count = Literal::usize_unsuffixed(steps.count);
    let last = Literal::usize_unsuffixed(steps.count - 1);
    let forward = fx.pass == Pass::Forward;
    // registers declared before the loop
    for (id, node) in g.nodes.iter().enumerate() {
        if !fx.live[id] || node.pass != fx.pass {
            continue;
        }
        if !matches!(
            node.op,
            Op::StatePrev(_) | Op::Carry(_) | Op::StepSum(_) | Op::Last(_)
        ) {
            continue;
        }
        let n = &plan.ident[id];
        let ty = plan.ty(id);
        let zero = plan.zero(id);
        match node.op {
            // the batched loop keeps each step's previous value in the tape:
            // slot 0 gets the initial value, slot t + 1 the update of step t
            Op::StatePrev(k) if forward && plan.batch => {
                let slot = quote!(tape.#n[0]);
                let rank = node.shape.stored_rank() + usize::from(plan.batched[id]);
                fx.stmts.push(match &g.states[k].init {
                    StateInit::Constant(c) => {
                        let v = Literal::f64_unsuffixed(*c);
                        match rank {
                            0 => quote!(#slot = #v;),
                            1 => quote!(#slot.fill(#v);),
                            _ => quote!(#slot.as_flattened_mut().fill(#v);),
                        }
                    }
                    StateInit::Param(p) => {
                        let pn = plan.param_field(*p);
                        let len = Literal::usize_unsuffixed(node.shape.len());
                        match (node.shape.rank(), plan.batched[id]) {
                            (0, true) => quote!(#slot = [*#pn; B];),
                            (_, true) => quote!(for i in 0..#len { #slot[i] = [#pn[i]; B]; }),
                            _ => quote!(#slot = *#pn;),
                        }
                    }
                });
                fx.place.insert(id, Place::TapeStep(n.clone()));
            }
            Op::StatePrev(k) if forward => {
                let init = match &g.states[k].init {
                    StateInit::Constant(c) => plan.fill(&node.shape, *c),
                    StateInit::Param(p) => {
                        let pn = plan.param_field(*p);
                        quote!(*#pn)
                    }
                };
                fx.stmts.push(quote!(let mut #n: #ty = #init;));
                fx.place.insert(id, Place::Local(n.clone()));
            }
            Op::Carry(_) | Op::StepSum(_) | Op::Last(_) => {
                let sum = matches!(node.op, Op::StepSum(_) | Op::Last(_));
                let dest = if sum && fx.which == Which::Backward && plan.grad_direct(id) {
                    Place::Grad(plan.param_field(plan.grad_of[id][0]))
                } else if plan.batch || (sum && fx.which == Which::Forward && plan.on_tape[id]) {
                    // a tape field (in the batched passes, their workspace)
                    let p = Place::Tape(n.clone());
                    fx.stmts.push(clear(plan, &p, id));
                    p
                } else {
                    fx.stmts.push(quote!(let mut #n: #ty = #zero;));
                    Place::Local(n.clone())
                };
                fx.place.insert(id, dest);
            }
            _ => {}
        }
    }
    let output_seq = fx.which == Which::Predict && plan.regions[g.output] == Region::Step;
    if output_seq {
        let ty = plan.ty(g.output);
        let zero = plan.zero(g.output);
        fx.stmts
            .push(quote!(let mut output_seq: [#ty; #count] = [#zero; #count];));
    }
    let outer = std::mem::take(&mut fx.stmts);
    // the loop body
    if fx.which == Which::Forward && !plan.batch {
        // previous state values the backward pass reads
        for st in &g.states {
            if fx.live[st.prev] && plan.on_tape[st.prev] {
                let n = &plan.ident[st.prev];
                fx.stmts.push(quote!(tape.#n[t] = #n;));
            }
        }
    }
    emit_region(plan, fx, Region::Step);
    for (id, node) in g.nodes.iter().enumerate() {
        if !fx.live[id] || node.pass != fx.pass {
            continue;
        }
        match node.op {
            Op::StepSum(a) => {
                let dest = fx.place[&id].clone();
                if !fx.place.contains_key(&a) && plan.absorbed[a] {
                    super::body::emit_node(plan, fx, a, &dest, Mode::Accumulate);
                } else if let Some(src) = fx.place.get(&a).cloned() {
                    let stmt = copy_node(plan, a, &src, &dest, Mode::Accumulate);
                    fx.stmts.push(stmt);
                }
            }
            Op::Last(a) => {
                let dest = fx.place[&id].clone();
                if let Some(src) = fx.place.get(&a).cloned() {
                    let copy = copy_node(plan, a, &src, &dest, Mode::Assign);
                    fx.stmts.push(quote!(if t == #last { #copy }));
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
        update_states(plan, fx);
    } else {
        carry_adjoints(plan, fx, steps);
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
                let Some(c) = carry_node(plan, k) else {
                    continue;
                };
                if let Some(src) = fx.place.get(&c).cloned() {
                    let pn = plan.param_field(p);
                    let stmt = if plan.batched[c] {
                        // summed over the samples
                        let len = Literal::usize_unsuffixed(st.shape.len());
                        let v = src.index(&quote!([i][j]));
                        quote!(for i in 0..#len { for j in 0..B { grads.#pn[i] += #v; } })
                    } else {
                        copy_shape(&st.shape, &src, &Place::Grad(pn), Mode::Accumulate)
                    };
                    fx.stmts.push(stmt);
                }
            }
        }
    }
}

/// Forward: at the end of a step, each state's register takes its new value
/// (in the batched loop, the tape's slot of the next step).
pub fn update_states(plan: &Plan, fx: &mut Fx) {
    let last = plan.g.steps.map_or(0, |s| s.count - 1);
    let last = Literal::usize_unsuffixed(last);
    // a state whose new value is another state's previous one (`m[t] =
    // k[t-1]`) reads it before any state is overwritten (the batched
    // passes write step t + 1's slots, which nothing of step t reads)
    let mut before = std::collections::HashMap::new();
    for (k, st) in plan.g.states.iter().enumerate() {
        let other_prev = matches!(plan.g.nodes[st.update].op, Op::StatePrev(j) if j != k);
        if fx.live[st.prev] && other_prev && !plan.batch {
            if let Some(src) = fx.place.get(&st.update) {
                let tmp = format_ident!("{}_before", plan.ident[st.update]);
                let v = src.value();
                fx.stmts.push(quote!(let #tmp = #v;));
                before.insert(k, Place::Local(tmp));
            }
        }
    }
    for (k, st) in plan.g.states.iter().enumerate() {
        if !fx.live[st.prev] {
            continue;
        }
        let Some(src) = before
            .remove(&k)
            .or_else(|| fx.place.get(&st.update).cloned())
        else {
            continue;
        };
        let stmt = match fx.which {
            Which::Step => {
                let dest = Place::State(format_ident!("{}", super::names::sanitize(&st.name)));
                copy_shape(&st.shape, &src, &dest, Mode::Assign)
            }
            _ if plan.batch => {
                let dest = Place::TapeNext(plan.ident[st.prev].clone());
                let copy = copy_node(plan, st.update, &src, &dest, Mode::Assign);
                quote!(if t < #last { #copy })
            }
            _ => {
                let dest = Place::Local(plan.ident[st.prev].clone());
                copy_shape(&st.shape, &src, &dest, Mode::Assign)
            }
        };
        fx.stmts.push(stmt);
    }
}

/// The `Carry` node of state `k`, if the backward pass has one.
fn carry_node(plan: &Plan, k: usize) -> Option<NodeId> {
    plan.g
        .nodes
        .iter()
        .position(|n| n.op == Op::Carry(k))
        .filter(|&id| plan.live[id])
}

/// Backward: at the end of step `t`, the adjoint of each state's previous
/// value is carried to step `t - 1` (cut every `truncate` steps), and
/// its norm recorded.
fn carry_adjoints(plan: &Plan, fx: &mut Fx, steps: Steps) {
    let g = plan.g;
    let t = &plan.t;
    let mut norm_terms = vec![];
    for (k, st) in g.states.iter().enumerate() {
        let Some(carry) = carry_node(plan, k) else {
            continue;
        };
        let Some(dest) = fx.place.get(&carry).cloned() else {
            continue;
        };
        let Some(adj) = g.state_adjoints[k].and_then(|a| fx.place.get(&a).cloned()) else {
            continue;
        };
        let carry_node_id = carry;
        let copy = copy_node(plan, carry_node_id, &adj, &dest, Mode::Assign);
        let zero = clear(plan, &dest, carry_node_id);
        fx.stmts.push(match steps.truncate {
            Some(kk) => {
                let kk = Literal::usize_unsuffixed(kk);
                quote!(if t % #kk == 0 && t > 0 { #zero } else { #copy })
            }
            None => copy,
        });
        // the batched passes record no norms (the trainer does not read them)
        if !plan.batch {
            let v = flat_view(adj.borrow(), &st.shape);
            norm_terms.push(quote!((#v).iter().map(|x| x * x).sum::<#t>()));
        }
    }
    if !norm_terms.is_empty() {
        fx.stmts.push(quote!(norms[t] = (#(#norm_terms)+*).sqrt();));
    }
}
