//! `embedding(tok, dim)`: a learned vector per class of a class-index input
//! (PyTorch's `nn.Embedding`), its parameter `<binding>.weight` `[classes,
//! dim]` named like a `dense` layer's and initialised N(0, 1); the graph's
//! `Gather` (the row of a matrix at a class index) and its adjoint
//! `Scatter` (a vector added into that row only).

use super::layers::layer_params;
use super::{Builtin, Lower, Vjp};
use crate::emit::ex::Ex;
use crate::emit::{Mode, Place};
use crate::ir::*;
use crate::limits::MAX_ELEMENTS;
use crate::lower::{short, Cx, Lowered, Reported, Value};
use nn_grammar::{Diagnostic, Expr, Span};
use proc_macro2::Literal;
use quote::quote;

/// The embedding built-in.
pub static BUILTINS: &[Builtin] = &[Builtin {
    name: "embedding",
    min_args: 2,
    max_args: 2,
    signature: "embedding(tok, dim)",
    lower: Lower::Custom(lower_embedding),
}];

fn lower_embedding(cx: &mut Cx, _: &str, args: &[Expr], span: Span) -> Lowered {
    let tok = cx.expr(&args[0]);
    let (tok, classes) = match tok? {
        Value::Class(id, n) if matches!(cx.g.nodes[id].op, Op::Input(_)) => (id, n),
        Value::Class(..) => {
            cx.error(
                Diagnostic::new(
                    args[0].span(),
                    format!(
                        "{} is a class-index target; `embedding` embeds a class-index input",
                        short(&args[0], "this")
                    ),
                )
                .with_help("declare the classes to embed as an input: `input tok: class[1000];`"),
            );
            return Err(Reported);
        }
        Value::Seq(_) | Value::SeqClass(..) | Value::State(_) => {
            cx.error(Cx::unindexed(&args[0], "embedded"));
            return Err(Reported);
        }
        Value::Node(id) => {
            let shape = cx.shape(id);
            cx.error(
                Diagnostic::new(
                    args[0].span(),
                    format!(
                        "`embedding` needs a class-index input, but {} is a real value of shape {shape}",
                        short(&args[0], "this")
                    ),
                )
                .with_help("declare the token as a class index: `input tok: class[1000];` (one per step: `input tok[t]: class[1000];`)"),
            );
            return Err(Reported);
        }
    };
    let dim = match &args[1] {
        Expr::Number(v, _) if *v >= 1.0 && v.fract() == 0.0 && *v <= MAX_ELEMENTS as f64 => {
            *v as usize
        }
        other => {
            cx.error(
                Diagnostic::new(
                    other.span(),
                    "the size of an `embedding` must be a positive integer",
                )
                .with_help("write the length of each class's vector, as in `embedding(tok, 32)`"),
            );
            return Err(Reported);
        }
    };
    if classes.saturating_mul(dim) > MAX_ELEMENTS {
        cx.error(
            Diagnostic::new(
                span,
                format!("this embedding's weight [{classes}, {dim}] has more than {MAX_ELEMENTS} elements"),
            )
            .with_help("the README's \"Limits\" section lists the largest sizes"),
        );
        return Err(Reported);
    }
    let [w] = layer_params(
        cx,
        "embedding",
        [(
            "weight",
            Shape(vec![classes, dim]),
            InitKind::Normal(0.0, 1.0),
        )],
        span,
    )?;
    Ok(Value::Node(cx.named_node(
        Op::Gather(w, tok),
        Shape(vec![dim]),
        "embedding",
        span,
    )))
}

/// `out = w[t]` (a row): `d_w` is `d` in row `t`, zero elsewhere; and the
/// other way round for `Scatter` (differentiated again inside a `grad`).
pub fn vjp(v: &mut Vjp, op: &Op) {
    let d = v.d;
    match *op {
        Op::Gather(w, t) if v.needs(w) => v.add(w, Op::Scatter(t, d)),
        Op::Scatter(t, s) if v.needs(s) => v.add(s, Op::Gather(d, t)),
        Op::Gather(..) | Op::Scatter(..) => {}
        _ => unreachable!("not an embedding op"),
    }
}

/// A row copied out, or added in, at the (sample's) class index.
pub fn emit(ex: &mut Ex, op: &Op, dest: &Place, mode: Mode) {
    let dim = Literal::usize_unsuffixed(match *op {
        Op::Gather(..) => ex.node().shape.len(),
        _ => ex.node().shape.0[1],
    });
    match *op {
        // the weight is shared by the samples, the index the sample's own
        Op::Gather(w, t) if ex.batched(t) => {
            let (wp, tp) = (ex.place(w), ex.place(t));
            let tj = tp.index(&quote!([j]));
            let row = wp.index(&quote!([#tj][i]));
            let body = Ex::put(mode, dest.index(&quote!([i][j])), row);
            ex.out
                .push(quote!(for j in 0..B { for i in 0..#dim { #body } }));
        }
        Op::Gather(w, t) => {
            let tv = ex.place(t).value();
            let row = ex.place(w).index(&quote!([#tv][i]));
            let body = Ex::put(mode, dest.index(&quote!([i])), row);
            ex.out.push(quote!(for i in 0..#dim { #body }));
        }
        // one sample's adjoint, or (absorbed into a batch sum) each sample's
        Op::Scatter(t, dv) if ex.batched(t) => {
            let (tp, dp) = (ex.place(t), ex.place(dv));
            let (tj, dij) = (tp.index(&quote!([j])), dp.index(&quote!([i][j])));
            let lhs = dest.index(&quote!([#tj][i]));
            ex.out
                .push(quote!(for j in 0..B { for i in 0..#dim { #lhs += #dij; } }));
        }
        Op::Scatter(t, dv) => {
            let (tv, dp) = (ex.place(t).value(), ex.place(dv));
            let di = dp.index(&quote!([i]));
            let lhs = dest.index(&quote!([#tv][i]));
            ex.out.push(quote!(for i in 0..#dim { #lhs += #di; }));
        }
        _ => unreachable!("not an embedding op"),
    }
}

/// A gather batches over the samples' indices (the weight shared); a
/// scatter of per-sample adjoints only summed into a shared gradient.
pub fn batches(op: &Op, b: &dyn Fn(NodeId) -> bool) -> bool {
    match *op {
        Op::Gather(w, _) => !b(w),
        _ => true,
    }
}

/// In the operands' names.
pub fn math(op: &Op, n: &dyn Fn(NodeId) -> String) -> String {
    match *op {
        Op::Gather(w, t) => format!("{}[{}]", n(w), n(t)),
        Op::Scatter(t, d) => format!("{} in row {}", n(d), n(t)),
        _ => unreachable!("not an embedding op"),
    }
}

/// The row at the class index; a matrix with one non-zero row.
#[cfg(test)]
pub fn eval(g: &Graph, id: NodeId, v: &[Vec<f64>]) -> Vec<f64> {
    match g.nodes[id].op {
        Op::Gather(w, t) => {
            let dim = g.nodes[id].shape.len();
            let r = v[t][0] as usize;
            v[w][r * dim..(r + 1) * dim].to_vec()
        }
        Op::Scatter(t, d) => {
            let dim = g.nodes[id].shape.0[1];
            let mut out = vec![0.0; g.nodes[id].shape.len()];
            let r = v[t][0] as usize;
            out[r * dim..(r + 1) * dim].copy_from_slice(&v[d]);
            out
        }
        _ => unreachable!("not an embedding op"),
    }
}
