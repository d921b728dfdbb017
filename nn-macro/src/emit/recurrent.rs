//! The time loop of a recurrent definition (per-sample code): registers
//! for the states, the carried adjoints, the sums over steps and the last
//! values before the loop; the per-step nodes inside it; each state's new
//! value (forward) or carried adjoint (backward, cut where truncation says)
//! at the end of a step.

use super::body::{copy_shape, emit_region, Fx, Which};
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
        let n = &plan.ident[id];
        let ty = plan.ty(id);
        let zero = plan.zero(id);
        match node.op {
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
            Op::Carry(_) => {
                fx.stmts.push(quote!(let mut #n: #ty = #zero;));
                fx.place.insert(id, Place::Local(n.clone()));
            }
            Op::StepSum(_) | Op::Last(_) => {
                let dest = if fx.which == Which::Backward && plan.grad_direct(id) {
                    Place::Grad(plan.param_field(plan.grad_of[id][0]))
                } else if fx.which == Which::Forward && plan.on_tape[id] {
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
    let output_seq = fx.which == Which::Predict && plan.regions[g.output] == Region::Step;
    if output_seq {
        let ty = plan.ty(g.output);
        let zero = plan.zero(g.output);
        fx.stmts
            .push(quote!(let mut output_seq: [#ty; #count] = [#zero; #count];));
    }
    let outer = std::mem::take(&mut fx.stmts);
    // the loop body
    if fx.which == Which::Forward {
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
                    let stmt = copy_shape(&g.nodes[a].shape, &src, &dest, Mode::Accumulate);
                    fx.stmts.push(stmt);
                }
            }
            Op::Last(a) => {
                let dest = fx.place[&id].clone();
                if let Some(src) = fx.place.get(&a).cloned() {
                    let copy = copy_shape(&g.nodes[a].shape, &src, &dest, Mode::Assign);
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
                if let Some(src) = carry_node(plan, k).and_then(|c| fx.place.get(&c).cloned()) {
                    let dest = Place::Grad(plan.param_field(p));
                    let stmt = copy_shape(&st.shape, &src, &dest, Mode::Accumulate);
                    fx.stmts.push(stmt);
                }
            }
        }
    }
}

/// Forward: at the end of a step, each state's register takes its new value.
pub fn update_states(plan: &Plan, fx: &mut Fx) {
    for st in &plan.g.states {
        if !fx.live[st.prev] {
            continue;
        }
        let Some(src) = fx.place.get(&st.update).cloned() else {
            continue;
        };
        let dest = match fx.which {
            Which::Step => Place::State(format_ident!("{}", super::names::sanitize(&st.name))),
            _ => Place::Local(plan.ident[st.prev].clone()),
        };
        let stmt = copy_shape(&st.shape, &src, &dest, Mode::Assign);
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
        let copy = copy_shape(&st.shape, &adj, &dest, Mode::Assign);
        let zero = plan.fill(&st.shape, 0.0);
        let d = dest.value();
        fx.stmts.push(match steps.truncate {
            Some(kk) => {
                let kk = Literal::usize_unsuffixed(kk);
                quote!(if t % #kk == 0 && t > 0 { #d = #zero; } else { #copy })
            }
            None => copy,
        });
        let v = flat_view(adj.borrow(), &st.shape);
        norm_terms.push(quote!((#v).iter().map(|x| x * x).sum::<#t>()));
    }
    if !norm_terms.is_empty() {
        fx.stmts.push(quote!(norms[t] = (#(#norm_terms)+*).sqrt();));
    }
}
