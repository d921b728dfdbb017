//! `dropout(x, p)`: inverted dropout. In training passes (`forward`,
//! `forward_batch`, after the tape's dropout is switched on) each element
//! is kept with probability `1 - p` and scaled by `1 / (1 - p)`, else
//! zeroed; everywhere else (`predict`, `step`, `input_gradient`, `hvp`, and
//! `forward` with dropout off) it is the identity. Lowered as `x ⊙ mask`:
//! the graph's `DropoutMask` draws the mask (a per-sample value with no
//! operands, stored on the tape for the backward pass), so the adjoint is
//! `d ⊙ mask`, the elementwise product's.
//!
//! The mask has no operands, so in a recurrent definition it is drawn once
//! per sequence, before the time loop, and applied at every step.
//!
//! Each element's draw is a hash of the sample's seed, the dropout's index
//! in the definition and the element's index (`nn_runtime::dropout`): no
//! random stream is shared, so a sample's mask is the same whichever
//! thread or batch block computes it.

use super::{Builtin, Lower};
use crate::emit::ex::Ex;
use crate::emit::{Mode, Place};
use crate::ir::*;
use crate::lower::{Cx, Lowered, Reported, Value};
use crate::scalar::{build::*, S};
use nn_grammar::{Diagnostic, Expr, Span};
use proc_macro2::Literal;
use quote::quote;

/// The dropout built-in.
pub static BUILTINS: &[Builtin] = &[Builtin {
    name: "dropout",
    min_args: 2,
    max_args: 2,
    signature: "dropout(x, p)",
    lower: Lower::Custom(lower_dropout),
}];

fn lower_dropout(cx: &mut Cx, _: &str, args: &[Expr], span: Span) -> Lowered {
    let x = cx.tensor(&args[0]);
    let p = match cx.const_of(&args[1]) {
        Some(p) if (0.0..1.0).contains(&p) => p,
        Some(p) => {
            cx.error(
                Diagnostic::new(
                    args[1].span(),
                    format!("the dropout probability must be in [0, 1), found {p}"),
                )
                .with_help("`p` is the probability of zeroing an element: `dropout(h, 0.1)` drops one in ten"),
            );
            return Err(Reported);
        }
        None => {
            cx.error(
                Diagnostic::new(args[1].span(), "the dropout probability must be a constant")
                    .with_help("write a number or a `const`, as in `dropout(h, 0.1)`"),
            );
            return Err(Reported);
        }
    };
    let x = x?;
    if p == 0.0 {
        return Ok(Value::Node(x));
    }
    let k =
        cx.g.nodes
            .iter()
            .filter(|n| matches!(n.op, Op::DropoutMask(..)))
            .count();
    let shape = cx.shape(x);
    let mask = cx.named_node(Op::DropoutMask(k, p.to_bits()), shape.clone(), "mask", span);
    Ok(Value::Node(cx.map(
        vec![x, mask],
        vec![Bcast::Full; 2],
        mul(S::Arg(0), S::Arg(1)),
        shape,
        "dropout",
        span,
    )))
}

/// The mask: `1 / (1 - p)` where the element is kept, 0 where dropped (in
/// a training pass with the tape's dropout on), else 1.
pub fn emit(ex: &mut Ex, op: &Op, dest: &Place, mode: Mode) {
    let Op::DropoutMask(k, bits) = *op else {
        unreachable!("not a dropout op")
    };
    let id = ex.id;
    let shape = ex.node().shape.clone();
    let lhs = ex.elem_of(dest, id, Bcast::Full);
    if !ex.training {
        let stmt = ex.loops(id, Ex::put(mode, lhs, quote!(1.0)));
        ex.out.push(stmt);
        return;
    }
    let (t, p) = (ex.t(), f64::from_bits(bits));
    let layer = Literal::usize_unsuffixed(k);
    let d = quote!(::nn_runtime::__private::dropout);
    // the element's index within the sample
    let at = match (ex.batched(id), shape.rank()) {
        (_, 0) => quote!(0),
        (true, _) | (false, 1) => quote!(i),
        (false, _) => {
            let cols = Literal::usize_unsuffixed(shape.0[1]);
            quote!(i * #cols + j)
        }
    };
    let seed = if ex.batched(id) {
        quote!(#d::sample_seed(tape.__nn_dropout_seed, at(j)))
    } else {
        quote!(tape.__nn_dropout_seed)
    };
    let v = quote!(#d::scale::<#t>(tape.__nn_dropout_on, #seed, #layer, #at, #p));
    let stmt = ex.loops(id, Ex::put(mode, lhs, v));
    ex.out.push(stmt);
}

/// A hash and a compare per element.
pub fn flops(g: &Graph, id: NodeId) -> u64 {
    g.nodes[id].shape.len() as u64
}

/// The mask, in words.
pub fn math(op: &Op) -> String {
    match *op {
        Op::DropoutMask(k, bits) => format!(
            "dropout mask {k}: 1/(1 - {0}) with probability 1 - {0}, else 0 (training); 1 (inference)",
            f64::from_bits(bits)
        ),
        _ => unreachable!("not a dropout op"),
    }
}

/// The interpreter runs inference: the mask is ones.
#[cfg(test)]
pub fn eval(g: &Graph, id: NodeId, _: &[Vec<f64>]) -> Vec<f64> {
    vec![1.0; g.nodes[id].shape.len()]
}
