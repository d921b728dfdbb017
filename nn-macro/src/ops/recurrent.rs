//! Recurrence: `sum_steps`, `mean_steps`; the graph's per-step machinery:
//! `StatePrev` (a state's value at the previous step), `StepSum` and `Last`
//! (after the loop), and in the backward pass `Carry` (the state adjoint
//! from the next step), `EachStep` and `AtLast`. The loop itself is emitted
//! by `emit::recurrent`; what is here is each op's own rule.

use super::{Builtin, Lower, Vjp};
use crate::emit::ex::Ex;
use crate::emit::{Mode, Place};
use crate::ir::*;
use crate::lower::{Cx, Lowered, Value};
use crate::scalar::{build::*, S};
use nn_grammar::{Expr, Span};
use proc_macro2::Literal;
use quote::quote;

/// The recurrence built-ins.
pub static BUILTINS: &[Builtin] = &[
    Builtin {
        name: "sum_steps",
        min_args: 1,
        max_args: 1,
        signature: "sum_steps(x)",
        lower: Lower::Custom(lower_over_steps),
    },
    Builtin {
        name: "mean_steps",
        min_args: 1,
        max_args: 1,
        signature: "mean_steps(x)",
        lower: Lower::Custom(lower_over_steps),
    },
];

fn lower_over_steps(cx: &mut Cx, name: &str, args: &[Expr], span: Span) -> Lowered {
    cx.over_steps(name, &args[0], span).map(Value::Node)
}

/// `out = Σ_t a[t]`: `d_a[t] = d` at every step (`T d` for a value outside
/// the loop); `out = a[T-1]`: `d_a[t] = d` at the last step, zero before.
pub fn vjp(v: &mut Vjp, op: &Op) {
    let d = v.d;
    match *op {
        Op::StepSum(a) if v.needs(a) => {
            if v.region(a) == Region::Step {
                v.add(a, Op::EachStep(d));
            } else {
                let steps = v.g.steps.map_or(1, |s| s.count) as f64;
                v.add(
                    a,
                    Op::Map {
                        args: vec![d],
                        bcast: vec![Bcast::Full],
                        body: mul(c(steps), S::Arg(0)),
                    },
                );
            }
        }
        Op::Last(a) if v.needs(a) => {
            if v.region(a) == Region::Step {
                v.add(a, Op::AtLast(d));
            } else {
                v.pass_through(a);
            }
        }
        // the previous value of a state: its adjoint is carried, not passed on here
        Op::StatePrev(_) | Op::StepSum(_) | Op::Last(_) => {}
        _ => unreachable!("backward-only ops are never differentiated (no second derivatives)"),
    }
}

/// Only `AtLast` is computed in a step's body (the others are registers set
/// up around the loop): the adjoint of a last value, at the last step only.
pub fn emit(ex: &mut Ex, op: &Op, dest: &Place, mode: Mode) {
    match *op {
        Op::AtLast(dv) => {
            let last = Literal::usize_unsuffixed(ex.g().steps.map_or(1, |s| s.count) - 1);
            let mut body = vec![];
            std::mem::swap(ex.out, &mut body);
            let src = ex.place(dv);
            ex.copy_into(ex.id, ex.id, &src, dest, mode);
            std::mem::swap(ex.out, &mut body);
            ex.out.push(quote!(if t == #last { #(#body)* }));
        }
        _ => unreachable!(
            "leaves, registers and step sums are set up around the loop, not computed here"
        ),
    }
}

/// A sum over the steps adds once per element and step.
pub fn flops(g: &Graph, id: NodeId) -> u64 {
    match g.nodes[id].op {
        Op::StepSum(_) => g.nodes[id].shape.len() as u64,
        _ => 0,
    }
}

/// In the definition's names.
pub fn math(g: &Graph, op: &Op, n: &dyn Fn(NodeId) -> String) -> String {
    match *op {
        Op::StatePrev(k) => format!("{}[t-1]", g.states[k].name),
        Op::StepSum(a) => format!("Σ_t {}[t]", n(a)),
        Op::Last(a) => format!("{}[T-1]", n(a)),
        Op::Carry(k) => format!("∂loss/∂{}[t] from step t+1", g.states[k].name),
        Op::EachStep(a) => format!("{} (at every step)", n(a)),
        Op::AtLast(a) => format!("{} at t = T-1, else 0", n(a)),
        _ => unreachable!("not a recurrence op"),
    }
}
