//! Losses: `mse`, `softmax_cross_entropy` (alias `cross_entropy`) against a
//! class index or a distribution, `bce_with_logits` (alias
//! `binary_cross_entropy_with_logits`); the graph's `Pick` (one element of
//! a vector at a class index) and its adjoint `OneHot`.

use super::reduce::mean;
use super::{Builtin, Lower, Vjp};
use crate::emit::ex::Ex;
use crate::emit::{Mode, Place};
use crate::ir::*;
use crate::lower::{short, Cx, Lowered, Reported, Value};
use crate::scalar::{build::*, Func, S};
use nn_grammar::{Diagnostic, Expr, Span};
use quote::quote;

/// The loss built-ins.
pub static BUILTINS: &[Builtin] = &[
    Builtin {
        name: "mse",
        min_args: 2,
        max_args: 2,
        signature: "mse(prediction, target)",
        lower: Lower::Custom(lower_mse),
    },
    Builtin {
        name: "softmax_cross_entropy",
        min_args: 2,
        max_args: 2,
        signature: "softmax_cross_entropy(logits, target)",
        lower: Lower::Custom(lower_softmax_xent),
    },
    Builtin {
        name: "cross_entropy",
        min_args: 2,
        max_args: 2,
        signature: "cross_entropy(logits, target)",
        lower: Lower::Custom(lower_softmax_xent),
    },
    Builtin {
        name: "bce_with_logits",
        min_args: 2,
        max_args: 2,
        signature: "bce_with_logits(logits, target)",
        lower: Lower::Custom(lower_bce),
    },
    Builtin {
        name: "binary_cross_entropy_with_logits",
        min_args: 2,
        max_args: 2,
        signature: "binary_cross_entropy_with_logits(logits, target)",
        lower: Lower::Custom(lower_bce),
    },
];

/// `mse(a, b)` = `mean((a - b)²)`.
fn lower_mse(cx: &mut Cx, name: &str, args: &[Expr], span: Span) -> Lowered {
    let (a, b) = same_shape_pair(cx, name, args, span)?;
    let shape = cx.shape(a);
    let diff = cx.map(
        vec![a, b],
        vec![Bcast::Full; 2],
        pow(sub(S::Arg(0), S::Arg(1)), 2.0),
        shape,
        "sq_err",
        span,
    );
    Ok(Value::Node(mean(cx, diff, span)))
}

/// `bce_with_logits(z, y)` = `mean(softplus(z) - z y)`: the stable form of
/// `-(y ln σ(z) + (1 - y) ln(1 - σ(z)))`.
fn lower_bce(cx: &mut Cx, name: &str, args: &[Expr], span: Span) -> Lowered {
    let (z, y) = same_shape_pair(cx, name, args, span)?;
    cx.bce_logits.push(z);
    let body = sub(call(Func::SOFTPLUS, S::Arg(0)), mul(S::Arg(0), S::Arg(1)));
    let shape = cx.shape(z);
    let elems = cx.map(vec![z, y], vec![Bcast::Full; 2], body, shape, "bce", span);
    Ok(Value::Node(mean(cx, elems, span)))
}

fn same_shape_pair(
    cx: &mut Cx,
    name: &str,
    args: &[Expr],
    span: Span,
) -> Result<(NodeId, NodeId), Reported> {
    let a = cx.tensor(&args[0]);
    let b = cx.tensor(&args[1]);
    let (a, b) = (a?, b?);
    let (sa, sb) = (cx.shape(a), cx.shape(b));
    if sa != sb {
        let msg = format!("`{name}` needs two tensors of one shape, found {sa} and {sb}");
        cx.error(Diagnostic::new(span, msg).with_help(format!(
            "{} is {sa}, {} is {sb}",
            short(&args[0], "the first argument"),
            short(&args[1], "the second argument")
        )));
        return Err(Reported);
    }
    Ok((a, b))
}

/// `softmax_cross_entropy(z, t)` = `-log_softmax(z)[t]` for a class index
/// `t`, or `-Σ t ⊙ log_softmax(z)` for a target distribution `t`;
/// log-softmax is computed with log-sum-exp, so large logits do not overflow.
fn lower_softmax_xent(cx: &mut Cx, name: &str, args: &[Expr], span: Span) -> Lowered {
    let z = cx.tensor(&args[0]);
    let t = cx.expr(&args[1]);
    let (z, t) = (z?, t?);
    let sz = cx.shape(z);
    if sz.rank() != 1 {
        cx.error(
            Diagnostic::new(
                args[0].span(),
                format!("`{name}` needs a vector of logits, found shape {sz}"),
            )
            .with_help("pass the network's last layer, one logit per class"),
        );
        return Err(Reported);
    }
    let log_p = cx.named_node(Op::LogSoftmax(z), sz.clone(), "log_p", span);
    match t {
        Value::Seq(_) | Value::SeqClass(..) | Value::State(_) => {
            cx.error(Cx::unindexed(&args[1], "used"));
            Err(Reported)
        }
        Value::Class(t, n) => {
            if n != sz.0[0] {
                cx.error(
                    Diagnostic::new(
                        span,
                        format!(
                            "`{name}` has {} logits but the target has {n} classes",
                            sz.0[0]
                        ),
                    )
                    .with_help(format!("make the last layer's size {n}")),
                );
                return Err(Reported);
            }
            let picked = cx.named_node(Op::Pick(log_p, t), Shape::scalar(), "log_p_label", span);
            Ok(Value::Node(cx.map(
                vec![picked],
                vec![Bcast::Full],
                neg(S::Arg(0)),
                Shape::scalar(),
                "nll",
                span,
            )))
        }
        Value::Node(t) => {
            let st = cx.shape(t);
            if st != sz {
                let msg = format!(
                    "`{name}` needs a target of the logits' shape {sz} or a class index, found {st}"
                );
                cx.error(Diagnostic::new(args[1].span(), msg));
                return Err(Reported);
            }
            let prod = cx.map(
                vec![t, log_p],
                vec![Bcast::Full; 2],
                neg(mul(S::Arg(0), S::Arg(1))),
                sz,
                "nll",
                span,
            );
            Ok(Value::Node(cx.node(Op::Sum(prod), Shape::scalar(), span)))
        }
    }
}

/// `out = a[t]`: `d_a` is `d` at `t`, zero elsewhere.
pub fn vjp(v: &mut Vjp, op: &Op) {
    match *op {
        Op::Pick(a, t) if v.needs(a) => {
            let d = v.d;
            v.add(a, Op::OneHot(t, d));
        }
        Op::Pick(..) => {}
        // out = s at t, zeros elsewhere (a `grad` differentiated again):
        // d_s = d[t]
        Op::OneHot(t, s) if v.needs(s) => {
            let d = v.d;
            v.add(s, Op::Pick(d, t));
        }
        Op::OneHot(..) => {}
        _ => unreachable!("not a loss op"),
    }
}

/// An element read or added at the class index (the sample's own, in the
/// batched code).
pub fn emit(ex: &mut Ex, op: &Op, dest: &Place, mode: Mode) {
    match *op {
        // the sample's own class (the logits may be shared by all samples)
        Op::Pick(a, t) if ex.batched(t) => {
            let (ap, tp) = (ex.place(a), ex.place(t));
            let tj = tp.index(&quote!([j]));
            let v = if ex.batched(a) {
                ap.index(&quote!([#tj][j]))
            } else {
                ap.index(&quote!([#tj]))
            };
            let body = Ex::put(mode, dest.index(&quote!([j])), v);
            ex.out.push(quote!(for j in 0..B { #body }));
        }
        Op::Pick(a, t) => {
            let tv = ex.place(t).value();
            let v = ex.place(a).index(&quote!([#tv]));
            ex.out.push(Ex::put(mode, dest.value(), v));
        }
        Op::OneHot(t, dv) if ex.batched(t) => {
            let (tp, dp) = (ex.place(t), ex.place(dv));
            let dj = if ex.batched(dv) {
                dp.index(&quote!([j]))
            } else {
                dp.value()
            };
            let tj = tp.index(&quote!([j]));
            let lhs = dest.index(&quote!([#tj][j]));
            ex.out.push(quote!(for j in 0..B { #lhs += #dj; }));
        }
        Op::OneHot(t, dv) => {
            let (tv, dv) = (ex.place(t).value(), ex.place(dv).value());
            let lhs = dest.index(&quote!([#tv]));
            ex.out.push(quote!(#lhs += #dv;));
        }
        _ => unreachable!("not a loss op"),
    }
}

/// In the operands' names.
pub fn math(op: &Op, n: &dyn Fn(NodeId) -> String) -> String {
    match *op {
        Op::Pick(a, t) => format!("{}[{}]", n(a), n(t)),
        Op::OneHot(t, d) => format!("one_hot({}) · {}", n(t), n(d)),
        _ => unreachable!("not a loss op"),
    }
}

/// The element at the class index; a one-hot vector.
#[cfg(test)]
pub fn eval(g: &Graph, id: NodeId, v: &[Vec<f64>]) -> Vec<f64> {
    match g.nodes[id].op {
        Op::Pick(a, t) => vec![v[a][v[t][0] as usize]],
        Op::OneHot(t, d) => {
            let mut out = vec![0.0; g.nodes[id].shape.len()];
            out[v[t][0] as usize] = v[d][0];
            out
        }
        _ => unreachable!("not a loss op"),
    }
}
