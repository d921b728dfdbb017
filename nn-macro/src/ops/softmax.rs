//! The softmax family, computed stably through log-sum-exp: `softmax`,
//! `log_softmax`, `logsumexp`, of a vector or along an axis of a matrix;
//! the graph's `LogSoftmax`, its adjoint `LogSoftmaxGrad`, `LogSumExp` and
//! `LogSumExpAxis`. Per sample they call the runtime's kernels; in the
//! batched code the columns kernels reduce each sample's column. Along an
//! axis, `log_softmax(X, axis)` is `X - logsumexp(X, axis)` broadcast back
//! over that axis: an elementwise node over the one reduction, so its
//! derivatives (first and second) are those of the nodes it is made of.

use super::{Builtin, Lower, Vjp};
use crate::emit::ex::Ex;
use crate::emit::{Mode, Place};
use crate::ir::*;
use crate::lower::{Cx, Lowered, Reported, Value};
use crate::scalar::{build::*, Func, S};
use nn_grammar::{Diagnostic, Expr, Span};
use proc_macro2::Literal;
use quote::quote;

/// The softmax built-ins.
pub static BUILTINS: &[Builtin] = &[
    Builtin {
        name: "softmax",
        min_args: 1,
        max_args: 2,
        signature: "softmax(x)` or `softmax(matrix, axis)",
        lower: Lower::Custom(lower_softmax),
    },
    Builtin {
        name: "log_softmax",
        min_args: 1,
        max_args: 2,
        signature: "log_softmax(x)` or `log_softmax(matrix, axis)",
        lower: Lower::Custom(lower_softmax),
    },
    Builtin {
        name: "logsumexp",
        min_args: 1,
        max_args: 2,
        signature: "logsumexp(x)` or `logsumexp(matrix, axis)",
        lower: Lower::Custom(lower_logsumexp),
    },
];

/// The axis argument of a function of a matrix along an axis (`x` its
/// first argument): the constant 0 (each column) or 1 (each row).
pub fn matrix_axis(cx: &mut Cx, name: &str, x: NodeId, args: &[Expr]) -> Result<usize, Reported> {
    let shape = cx.shape(x);
    if shape.rank() != 2 {
        cx.error(
            Diagnostic::new(
                args[0].span(),
                format!("`{name}(x, axis)` needs a matrix, found shape {shape}"),
            )
            .with_help(format!("for a vector, leave the axis out: `{name}(x)`")),
        );
        return Err(Reported);
    }
    match cx.const_of(&args[1]) {
        Some(0.0) => Ok(0),
        Some(1.0) => Ok(1),
        _ => {
            cx.error(
                Diagnostic::new(
                    args[1].span(),
                    format!("the axis of `{name}` must be the constant 0 or 1"),
                )
                .with_help("axis 0 works on each column of the matrix, axis 1 on each row"),
            );
            Err(Reported)
        }
    }
}

/// `logsumexp(x, axis)` of matrix `x`, and how it broadcasts back over `x`.
pub fn logsumexp_axis(cx: &mut Cx, x: NodeId, axis: usize, span: Span) -> (NodeId, Bcast) {
    let shape = cx.shape(x);
    let (out, bcast) = if axis == 0 {
        (Shape(vec![shape.0[1]]), Bcast::Row)
    } else {
        (Shape(vec![shape.0[0]]), Bcast::Col)
    };
    (cx.node(Op::LogSumExpAxis(x, axis), out, span), bcast)
}

/// `log_softmax(x, axis)` = `x - logsumexp(x, axis)`, stable.
pub fn log_softmax_axis(cx: &mut Cx, x: NodeId, axis: usize, span: Span) -> NodeId {
    let (lse, bcast) = logsumexp_axis(cx, x, axis, span);
    let shape = cx.shape(x);
    cx.map(
        vec![x, lse],
        vec![Bcast::Full, bcast],
        sub(S::Arg(0), S::Arg(1)),
        shape,
        "log_softmax",
        span,
    )
}

fn lower_softmax(cx: &mut Cx, name: &str, args: &[Expr], span: Span) -> Lowered {
    let x = cx.tensor(&args[0])?;
    let shape = cx.shape(x);
    if args.len() == 2 {
        let axis = matrix_axis(cx, name, x, args)?;
        let ls = log_softmax_axis(cx, x, axis, span);
        if name == "log_softmax" {
            return Ok(Value::Node(ls));
        }
        let body = call(Func::EXP, S::Arg(0));
        return Ok(Value::Node(cx.unary(ls, body, "softmax", span)));
    }
    if shape.rank() != 1 {
        cx.error(Diagnostic::new(
            args[0].span(),
            format!("`{name}` needs a vector, found shape {shape}"),
        ));
        return Err(Reported);
    }
    let ls = cx.node(Op::LogSoftmax(x), shape, span);
    if name == "log_softmax" {
        return Ok(Value::Node(ls));
    }
    // softmax = exp(log_softmax), stable for large inputs
    Ok(Value::Node(cx.unary(
        ls,
        call(Func::EXP, S::Arg(0)),
        "softmax",
        span,
    )))
}

fn lower_logsumexp(cx: &mut Cx, name: &str, args: &[Expr], span: Span) -> Lowered {
    let x = cx.tensor(&args[0])?;
    if args.len() == 2 {
        let axis = matrix_axis(cx, name, x, args)?;
        return Ok(Value::Node(logsumexp_axis(cx, x, axis, span).0));
    }
    Ok(Value::Node(cx.node(
        Op::LogSumExp(x),
        Shape::scalar(),
        span,
    )))
}

/// `y = log_softmax(z)`: `d_z = d - softmax(z) Σ d = d - exp(y) Σ d`; when
/// `d` is one-hot (`s` at `t`: the cross-entropy of a class target), that
/// is `s (onehot(t) - softmax(z))`, emitted as such (no one-hot array, no
/// sum). `out = logsumexp(a)`: `d_a = d softmax(a) = d exp(a - out)`.
pub fn vjp(v: &mut Vjp, op: &Op) {
    let (id, d) = (v.id, v.d);
    match *op {
        Op::LogSoftmax(z) if v.needs(z) => {
            if let Op::OneHot(t, s) = v.g.nodes[d].op {
                let name = v.adjoint_name(z, "_softmax");
                let spread = v.push(
                    Op::Map {
                        args: vec![s, id],
                        bcast: vec![Bcast::Scalar, Bcast::Full],
                        body: neg(mul(S::Arg(0), call(Func::EXP, S::Arg(1)))),
                    },
                    v.shape(z),
                    name,
                );
                let name = v.adjoint_name(z, "_label");
                let label = v.push(Op::OneHot(t, s), v.shape(z), name);
                v.add(z, Op::AddN(vec![spread, label]));
            } else {
                v.add(z, Op::LogSoftmaxGrad(id, d));
            }
        }
        Op::LogSumExp(a) if v.needs(a) => {
            let body = mul(S::Arg(0), call(Func::EXP, sub(S::Arg(1), S::Arg(2))));
            v.add(
                a,
                Op::Map {
                    args: vec![d, a, id],
                    bcast: vec![Bcast::Scalar, Bcast::Full, Bcast::Scalar],
                    body,
                },
            );
        }
        // out[j] = logsumexp_i a[i][j] (axis 0): d_a[i][j] = d[j] exp(a[i][j] - out[j])
        Op::LogSumExpAxis(a, axis) if v.needs(a) => {
            let b = if axis == 0 { Bcast::Row } else { Bcast::Col };
            let body = mul(S::Arg(0), call(Func::EXP, sub(S::Arg(1), S::Arg(2))));
            v.add(
                a,
                Op::Map {
                    args: vec![d, a, id],
                    bcast: vec![b, Bcast::Full, b],
                    body,
                },
            );
        }
        Op::LogSoftmax(_) | Op::LogSumExp(_) | Op::LogSumExpAxis(..) => {}
        // out = e - exp(y) Σ e (the adjoint of log-softmax, differentiated
        // again inside a `grad`): with d the adjoint of out,
        // d_e = d - Σ d ⊙ exp(y) and d_y = -d ⊙ exp(y) Σ e
        Op::LogSoftmaxGrad(y, e) => {
            let shape = v.shape(y);
            let weighted = v.push(
                Op::Map {
                    args: vec![d, y],
                    bcast: vec![Bcast::Full; 2],
                    body: mul(S::Arg(0), call(Func::EXP, S::Arg(1))),
                },
                shape.clone(),
                v.adjoint_name(y, "_weighted"),
            );
            if v.needs(e) {
                let total = v.push(
                    Op::Sum(weighted),
                    Shape::scalar(),
                    v.adjoint_name(y, "_total"),
                );
                v.add(
                    e,
                    Op::Map {
                        args: vec![d, total],
                        bcast: vec![Bcast::Full, Bcast::Scalar],
                        body: sub(S::Arg(0), S::Arg(1)),
                    },
                );
            }
            if v.needs(y) {
                let sum_e = v.push(
                    Op::Sum(e),
                    Shape::scalar(),
                    format!("{}_sum", v.g.nodes[e].name),
                );
                v.add(
                    y,
                    Op::Map {
                        args: vec![weighted, sum_e],
                        bcast: vec![Bcast::Full, Bcast::Scalar],
                        body: neg(mul(S::Arg(0), S::Arg(1))),
                    },
                );
            }
        }
        _ => unreachable!("not a softmax op"),
    }
}

/// One kernel call per sample, or per batch (the columns kernels, each
/// column shifted by its own maximum so large logits do not overflow); a
/// loop over the columns where an operand is shared by the samples.
pub fn emit(ex: &mut Ex, op: &Op, dest: &Place, mode: Mode) {
    let k = Ex::kernels();
    let n = Literal::usize_unsuffixed(ex.node().shape.len());
    match *op {
        Op::LogSoftmax(z) if ex.batched(z) => {
            // every column at once: the exponentials and logarithms of the
            // whole batch through the vectorised kernels
            let (z, d) = (ex.place(z).borrow(), dest.borrow_mut());
            ex.out.push(quote!(#k::log_softmax_cols(#z, #d);));
        }
        Op::LogSoftmax(z) => {
            let (z, d) = (ex.place(z).borrow(), dest.borrow_mut());
            ex.out.push(quote!(#k::log_softmax(#z, #d);));
        }
        Op::LogSoftmaxGrad(y, dd) if ex.batched(y) && ex.batched(dd) => {
            let (y, dd, d) = (
                ex.place(y).borrow(),
                ex.place(dd).borrow(),
                dest.borrow_mut(),
            );
            ex.out
                .push(quote!(#k::log_softmax_cols_grad_acc(#y, #dd, #d);));
        }
        Op::LogSoftmaxGrad(y, dd) if ex.batched(ex.id) => {
            // either operand may be shared by the samples (a parameter)
            let (yp, dp) = (ex.place(y), ex.place(dd));
            let (yi, di, oi) = (
                ex.at(&yp, y, quote!([i])),
                ex.at(&dp, dd, quote!([i])),
                dest.index(&quote!([i][j])),
            );
            ex.out.push(quote!(
                for j in 0..B {
                    let mut __nn_total = 0.0;
                    for i in 0..#n { __nn_total += #di; }
                    for i in 0..#n { #oi += #di - #yi.exp() * __nn_total; }
                }
            ));
        }
        Op::LogSoftmaxGrad(y, dd) => {
            let (y, dd, d) = (
                ex.place(y).borrow(),
                ex.place(dd).borrow(),
                dest.borrow_mut(),
            );
            ex.out.push(quote!(#k::log_softmax_grad_acc(#y, #dd, #d);));
        }
        Op::LogSumExp(a) if ex.batched(a) => {
            let ap = ex.place(a);
            let n = Literal::usize_unsuffixed(ex.g().nodes[a].shape.len());
            let (a0, ai) = (ap.index(&quote!([0][j])), ap.index(&quote!([i][j])));
            let lhs = dest.index(&quote!([j]));
            // `__nn_` names: a binding called `m` or `s` must not be shadowed
            let v = quote!({
                let mut __nn_m = #a0;
                for i in 1..#n { __nn_m = __nn_m.max(#ai); }
                let mut __nn_s = 0.0;
                for i in 0..#n { __nn_s += (#ai - __nn_m).exp(); }
                __nn_m + __nn_s.ln()
            });
            let body = Ex::put(mode, lhs, v);
            ex.out.push(quote!(for j in 0..B { #body }));
        }
        Op::LogSumExpAxis(a, axis) => {
            // the operand is one matrix (per-sample matrices have no batched form)
            let ap = ex.place(a);
            let s = &ex.g().nodes[a].shape;
            let (outer, inner) = if axis == 0 {
                (s.0[1], s.0[0])
            } else {
                (s.0[0], s.0[1])
            };
            let (outer, inner) = (
                Literal::usize_unsuffixed(outer),
                Literal::usize_unsuffixed(inner),
            );
            // `i` and `j` are reserved, `__nn_` names cannot be a binding's
            let (a0, ai) = if axis == 0 {
                (ap.index(&quote!([0][j])), ap.index(&quote!([i][j])))
            } else {
                (ap.index(&quote!([j][0])), ap.index(&quote!([j][i])))
            };
            let lhs = dest.index(&quote!([j]));
            let v = quote!({
                let mut __nn_m = #a0;
                for i in 1..#inner { __nn_m = __nn_m.max(#ai); }
                let mut __nn_s = 0.0;
                for i in 0..#inner { __nn_s += (#ai - __nn_m).exp(); }
                __nn_m + __nn_s.ln()
            });
            let body = Ex::put(mode, lhs, v);
            ex.out.push(quote!(for j in 0..#outer { #body }));
        }
        Op::LogSumExp(a) => {
            let flat = crate::emit::flat_view(ex.place(a).borrow(), &ex.g().nodes[a].shape);
            let stmt = Ex::put(mode, dest.value(), quote!(#k::logsumexp(#flat)));
            ex.out.push(stmt);
        }
        _ => unreachable!("not a softmax op"),
    }
}

/// Along an axis the operand is a per-sample matrix, which has no batched
/// form; the rest batch.
pub fn batches(op: &Op, b: &dyn Fn(NodeId) -> bool) -> bool {
    match *op {
        Op::LogSumExpAxis(a, _) => !b(a),
        _ => true,
    }
}

/// About four operations per element (max, subtract, exp, add).
pub fn flops(g: &Graph, id: NodeId) -> u64 {
    let node = &g.nodes[id];
    match node.op {
        Op::LogSoftmax(_) | Op::LogSoftmaxGrad(..) => 4 * node.shape.len() as u64,
        Op::LogSumExp(a) | Op::LogSumExpAxis(a, _) => 3 * g.nodes[a].shape.len() as u64,
        _ => 0,
    }
}

/// In the operands' names.
pub fn math(op: &Op, n: &dyn Fn(NodeId) -> String) -> String {
    match *op {
        Op::LogSoftmax(a) => format!("{0} - logsumexp({0})", n(a)),
        Op::LogSoftmaxGrad(y, d) => format!("{1} - exp({0}) · Σ {1}", n(y), n(d)),
        Op::LogSumExp(a) => format!("logsumexp({})", n(a)),
        Op::LogSumExpAxis(a, axis) => format!("logsumexp({}, {axis})", n(a)),
        _ => unreachable!("not a softmax op"),
    }
}

/// Stable log-sum-exp in f64.
#[cfg(test)]
pub fn eval(g: &Graph, id: NodeId, v: &[Vec<f64>]) -> Vec<f64> {
    let lse = |x: &[f64]| {
        let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        m + x.iter().map(|a| (a - m).exp()).sum::<f64>().ln()
    };
    match g.nodes[id].op {
        Op::LogSoftmax(z) => {
            let l = lse(&v[z]);
            v[z].iter().map(|x| x - l).collect()
        }
        Op::LogSumExp(a) => vec![lse(&v[a])],
        Op::LogSumExpAxis(a, axis) => {
            let s = &g.nodes[a].shape.0;
            let (m, n) = (s[0], s[1]);
            if axis == 0 {
                (0..n)
                    .map(|j| lse(&(0..m).map(|i| v[a][i * n + j]).collect::<Vec<_>>()))
                    .collect()
            } else {
                (0..m).map(|i| lse(&v[a][i * n..(i + 1) * n])).collect()
            }
        }
        Op::LogSoftmaxGrad(y, d) => {
            let total: f64 = v[d].iter().sum();
            v[d].iter()
                .zip(&v[y])
                .map(|(di, yi)| di - yi.exp() * total)
                .collect()
        }
        _ => unreachable!("not a softmax op"),
    }
}
