//! Losses: `mse`, `softmax_cross_entropy` (alias `cross_entropy`) against a
//! class index or a distribution, `bce_with_logits` (alias
//! `binary_cross_entropy_with_logits`); the graph's `Pick` (one element of
//! a vector at a class index) and its adjoint `OneHot`, and `PickAxis` /
//! `OneHotAxis`, the same for each column or row of a matrix.

use super::reduce::mean;
use super::{Builtin, Lower, Vjp};
use crate::emit::ex::Ex;
use crate::emit::{Mode, Place};
use crate::ir::*;
use crate::lower::{short, Cx, Lowered, Reported, Value};
use crate::scalar::{build::*, Func, S};
use nn_grammar::{Diagnostic, Expr, Span};
use proc_macro2::Literal;
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
        max_args: 3,
        signature: "softmax_cross_entropy(logits, target)` or `softmax_cross_entropy(logits, targets, axis)",
        lower: Lower::Custom(lower_softmax_xent),
    },
    Builtin {
        name: "cross_entropy",
        min_args: 2,
        max_args: 3,
        signature: "cross_entropy(logits, target)` or `cross_entropy(logits, targets, axis)",
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
    if args.len() == 3 {
        return xent_axis(cx, name, z, t, args, span);
    }
    let sz = cx.shape(z);
    if sz.rank() != 1 {
        let help = if sz.rank() == 2 {
            "for a matrix of logits, say which axis holds the classes: \
             `softmax_cross_entropy(z, t, 0)` for a class per column"
        } else {
            "pass the network's last layer, one logit per class"
        };
        cx.error(
            Diagnostic::new(
                args[0].span(),
                format!("`{name}` needs a vector of logits, found shape {sz}"),
            )
            .with_help(help),
        );
        return Err(Reported);
    }
    let log_p = cx.named_node(Op::LogSoftmax(z), sz.clone(), "log_p", span);
    match t {
        Value::Seq(_) | Value::SeqClass(..) | Value::State(_) => {
            cx.error(Cx::unindexed(&args[1], "used"));
            Err(Reported)
        }
        Value::Class(t, _) if matches!(cx.g.nodes[t].op, Op::Input(_)) => {
            let d = Diagnostic::new(
                args[1].span(),
                format!(
                    "{} is a class-index input, not a target",
                    short(&args[1], "this")
                ),
            )
            .with_help("declare the class to predict as a target: `target label: class[10];`");
            cx.error(d);
            Err(Reported)
        }
        Value::Class(t, _) if !cx.shape(t).is_scalar() => {
            let st = cx.shape(t);
            cx.error(
                Diagnostic::new(
                    args[1].span(),
                    format!("`{name}` of a vector of logits needs one class index, found a vector of them {st}"),
                )
                .with_help("for a class per column of a matrix of logits, pass the axis: `softmax_cross_entropy(z, t, 0)`"),
            );
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

/// `softmax_cross_entropy(z, t, axis)` of a matrix of logits whose axis
/// `axis` holds the classes (0: a class per column, 1: per row): the mean
/// over the columns (rows) of their cross-entropies, against a class index
/// per column (a class-vector target) or a distribution per column (a real
/// matrix of the logits' shape).
fn xent_axis(cx: &mut Cx, name: &str, z: NodeId, t: Value, args: &[Expr], span: Span) -> Lowered {
    let axis = super::softmax::matrix_axis(cx, name, z, &[args[0].clone(), args[2].clone()])?;
    let sz = cx.shape(z);
    let (classes, positions) = if axis == 0 {
        (sz.0[0], sz.0[1])
    } else {
        (sz.0[1], sz.0[0])
    };
    let log_p = super::softmax::log_softmax_axis(cx, z, axis, span);
    let total = match t {
        Value::Seq(_) | Value::SeqClass(..) | Value::State(_) => {
            cx.error(Cx::unindexed(&args[1], "used"));
            return Err(Reported);
        }
        Value::Class(t, _) if matches!(cx.g.nodes[t].op, Op::Input(_)) => {
            let d = Diagnostic::new(
                args[1].span(),
                format!(
                    "{} is a class-index input, not a target",
                    short(&args[1], "this")
                ),
            )
            .with_help("declare the class to predict as a target: `target label: class[10];`");
            cx.error(d);
            return Err(Reported);
        }
        Value::Class(t, n) => {
            let st = cx.shape(t);
            if st != Shape(vec![positions]) {
                let along = if axis == 0 { "column" } else { "row" };
                cx.error(
                    Diagnostic::new(
                        args[1].span(),
                        format!("`{name}` along axis {axis} needs a class index per {along} of the {sz} logits ({positions}), found {}", if st.is_scalar() { "one class index".to_string() } else { format!("a class vector {st}") }),
                    )
                    .with_help(format!("declare the target as `target {}: class[{classes}][{positions}];`", cx.g.nodes[t].name)),
                );
                return Err(Reported);
            }
            if n != classes {
                cx.error(
                    Diagnostic::new(
                        span,
                        format!("`{name}` has {classes} logits along axis {axis} but the target has {n} classes"),
                    )
                    .with_help(format!("make the logits' axis {axis} {n} long, or declare `class[{classes}]`")),
                );
                return Err(Reported);
            }
            cx.class_axis = Some(axis);
            let picked = cx.named_node(Op::PickAxis(log_p, t, axis), st, "log_p_label", span);
            cx.node(Op::Sum(picked), Shape::scalar(), span)
        }
        Value::Node(t) => {
            let st = cx.shape(t);
            if st != sz {
                let msg = format!(
                    "`{name}` needs a target of the logits' shape {sz} or a class index per position, found {st}"
                );
                cx.error(Diagnostic::new(args[1].span(), msg));
                return Err(Reported);
            }
            let prod = cx.map(
                vec![t, log_p],
                vec![Bcast::Full; 2],
                mul(S::Arg(0), S::Arg(1)),
                sz,
                "weighted_log_p",
                span,
            );
            cx.node(Op::Sum(prod), Shape::scalar(), span)
        }
    };
    Ok(Value::Node(cx.map(
        vec![total],
        vec![Bcast::Full],
        div(neg(S::Arg(0)), c(positions as f64)),
        Shape::scalar(),
        "nll",
        span,
    )))
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
        Op::PickAxis(a, t, axis) if v.needs(a) => {
            let d = v.d;
            v.add(a, Op::OneHotAxis(t, d, axis));
        }
        Op::OneHotAxis(t, s, axis) if v.needs(s) => {
            let d = v.d;
            v.add(s, Op::PickAxis(d, t, axis));
        }
        Op::PickAxis(..) | Op::OneHotAxis(..) => {}
        _ => unreachable!("not a loss op"),
    }
}

/// Picking along an axis works on a matrix per sample, which has no
/// batched form; the rest batch.
pub fn batches(op: &Op, b: &dyn Fn(NodeId) -> bool) -> bool {
    match *op {
        Op::PickAxis(x, y, _) | Op::OneHotAxis(x, y, _) => !b(x) && !b(y),
        _ => true,
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
        // one matrix (per-sample matrices have no batched form)
        Op::PickAxis(a, t, axis) => {
            let (ap, tp) = (ex.place(a), ex.place(t));
            let k = Literal::usize_unsuffixed(ex.g().nodes[t].shape.len());
            let tk = tp.index(&quote!([i]));
            let v = if axis == 0 {
                ap.index(&quote!([#tk][i]))
            } else {
                ap.index(&quote!([i][#tk]))
            };
            let body = Ex::put(mode, dest.index(&quote!([i])), v);
            ex.out.push(quote!(for i in 0..#k { #body }));
        }
        Op::OneHotAxis(t, dv, axis) => {
            let (tp, dp) = (ex.place(t), ex.place(dv));
            let k = Literal::usize_unsuffixed(ex.g().nodes[t].shape.len());
            let (tk, dk) = (tp.index(&quote!([i])), dp.index(&quote!([i])));
            let lhs = if axis == 0 {
                dest.index(&quote!([#tk][i]))
            } else {
                dest.index(&quote!([i][#tk]))
            };
            ex.out.push(quote!(for i in 0..#k { #lhs += #dk; }));
        }
        _ => unreachable!("not a loss op"),
    }
}

/// In the operands' names.
pub fn math(op: &Op, n: &dyn Fn(NodeId) -> String) -> String {
    match *op {
        Op::Pick(a, t) => format!("{}[{}]", n(a), n(t)),
        Op::OneHot(t, d) => format!("one_hot({}) · {}", n(t), n(d)),
        Op::PickAxis(a, t, 0) => format!("{0}[{1}[j]][j]", n(a), n(t)),
        Op::PickAxis(a, t, _) => format!("{0}[i][{1}[i]]", n(a), n(t)),
        Op::OneHotAxis(t, d, axis) => format!("one_hot({}, axis {axis}) · {}", n(t), n(d)),
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
        // row-major [m, n]: element (i, j) at i * n + j
        Op::PickAxis(a, t, axis) => {
            let n = g.nodes[a].shape.0[1];
            let at = |k: usize, c: usize| if axis == 0 { c * n + k } else { k * n + c };
            (0..v[t].len())
                .map(|k| v[a][at(k, v[t][k] as usize)])
                .collect()
        }
        Op::OneHotAxis(t, d, axis) => {
            let n = g.nodes[id].shape.0[1];
            let mut out = vec![0.0; g.nodes[id].shape.len()];
            for k in 0..v[t].len() {
                let c = v[t][k] as usize;
                out[if axis == 0 { c * n + k } else { k * n + c }] += v[d][k];
            }
            out
        }
        _ => unreachable!("not a loss op"),
    }
}
