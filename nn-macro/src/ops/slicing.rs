//! Parts of vectors: slices `x[a:b]`, `concat(a, b, ...)`; the graph's
//! `Slice`, its adjoint `Pad` (the slice placed in zeros), and `Concat`.

use super::{Builtin, Lower, Vjp};
use crate::emit::ex::Ex;
use crate::emit::{Mode, Place};
use crate::ir::*;
use crate::lower::{short, Cx, Lowered, Reported, Value};
use nn_grammar::{Diagnostic, Expr, Span};
use proc_macro2::Literal;
use quote::quote;

/// The slicing built-ins (slices themselves are syntax: `x[a:b]`).
pub static BUILTINS: &[Builtin] = &[Builtin {
    name: "concat",
    min_args: 2,
    max_args: 8,
    signature: "concat(a, b, ...)",
    lower: Lower::Custom(lower_concat),
}];

fn lower_concat(cx: &mut Cx, _: &str, args: &[Expr], span: Span) -> Lowered {
    let mut parts = vec![];
    for a in args {
        let id = cx.tensor(a)?;
        let sh = cx.shape(id);
        if sh.rank() != 1 {
            cx.error(Diagnostic::new(
                a.span(),
                format!("`concat` joins vectors, but this has shape {sh}"),
            ));
            return Err(Reported);
        }
        parts.push(id);
    }
    let mut acc = parts[0];
    for &p in &parts[1..] {
        let n = cx.shape(acc).len() + cx.shape(p).len();
        acc = cx.node(Op::Concat(acc, p), Shape(vec![n]), span);
    }
    Ok(Value::Node(acc))
}

/// `x[a:b]` of a vector, `0 <= a < b <= n`.
pub fn lower_slice(
    cx: &mut Cx,
    arg: &Expr,
    start: Option<(usize, Span)>,
    end: Option<(usize, Span)>,
    span: Span,
) -> Result<NodeId, Reported> {
    let x = cx.tensor(arg)?;
    let shape = cx.shape(x);
    if shape.rank() != 1 {
        cx.error(
            Diagnostic::new(
                span,
                format!(
                    "only vectors can be sliced, but {} has shape {shape}",
                    short(arg, "this")
                ),
            )
            .with_help("slice a vector `[n]` as `x[a:b]`"),
        );
        return Err(Reported);
    }
    let n = shape.0[0];
    let a = start.map_or(0, |s| s.0);
    let b = end.map_or(n, |e| e.0);
    if a >= b || b > n {
        let at = match (start, end) {
            (Some(s), Some(e)) => s.1.join(e.1),
            (Some(s), None) => s.1,
            (None, Some(e)) => e.1,
            (None, None) => span,
        };
        cx.error(
            Diagnostic::new(
                at,
                format!("the slice [{a}:{b}] is out of range for a vector of {n}"),
            )
            .with_help(format!("a slice `[a:b]` needs 0 <= a < b <= {n}")),
        );
        return Err(Reported);
    }
    Ok(cx.node(Op::Slice(x, a), Shape(vec![b - a]), span))
}

/// A slice's adjoint is placed back at its offset; a concatenation's
/// adjoint is cut into its parts.
pub fn vjp(v: &mut Vjp, op: &Op) {
    let d = v.d;
    match *op {
        // out = a[start..]: d_a = d placed at start in zeros
        Op::Slice(a, start) if v.needs(a) => v.add(a, Op::Pad(d, start)),
        // out = a placed at start: d_a = d[start..]
        Op::Pad(a, start) if v.needs(a) => v.add(a, Op::Slice(d, start)),
        // out = [a, b]: d_a = d[..n], d_b = d[n..]
        Op::Concat(a, b) => {
            if v.needs(a) {
                v.add(a, Op::Slice(d, 0));
            }
            if v.needs(b) {
                let n = v.shape(a).len();
                v.add(b, Op::Slice(d, n));
            }
        }
        Op::Slice(..) | Op::Pad(..) => {}
        _ => unreachable!("not a slicing op"),
    }
}

/// Loops with offset indices (each sample's column kept in the batched code).
pub fn emit(ex: &mut Ex, op: &Op, dest: &Place, mode: Mode) {
    match *op {
        Op::Slice(a, start) => {
            let s = Literal::usize_unsuffixed(start);
            let v = ex.at(&ex.place(a), a, quote!([i + #s]));
            let lhs = ex.elem_of(dest, ex.id, Bcast::Full);
            let stmt = ex.loops(ex.id, Ex::put(mode, lhs, v));
            ex.out.push(stmt);
        }
        Op::Pad(a, start) => {
            let s = Literal::usize_unsuffixed(start);
            let lhs = ex.at(dest, ex.id, quote!([i + #s]));
            let v = ex.elem(a, Bcast::Full);
            let stmt = ex.loops(a, quote!(#lhs += #v;));
            ex.out.push(stmt);
        }
        Op::Concat(a, b) => {
            let n = Literal::usize_unsuffixed(ex.g().nodes[a].shape.len());
            for (part, idx) in [(a, quote!([i])), (b, quote!([i + #n]))] {
                let lhs = ex.at(dest, ex.id, idx);
                let v = ex.elem(part, Bcast::Full);
                // a shared part of a per-sample result goes into every sample's column
                let shape = ex.g().nodes[part].shape.clone();
                let stmt = ex.loops_over(&shape, ex.batched(ex.id), Ex::put(mode, lhs, v));
                ex.out.push(stmt);
            }
        }
        _ => unreachable!("not a slicing op"),
    }
}

/// In the operands' names.
pub fn math(g: &Graph, id: NodeId, n: &dyn Fn(NodeId) -> String) -> String {
    let len = g.nodes[id].shape.len();
    match g.nodes[id].op {
        Op::Slice(a, start) => format!("{}[{start}:{}]", n(a), start + len),
        Op::Pad(a, start) => format!("{} placed at {start} in zeros of length {len}", n(a)),
        Op::Concat(a, b) => format!("[{}, {}]", n(a), n(b)),
        _ => unreachable!("not a slicing op"),
    }
}

/// Copies at offsets.
#[cfg(test)]
pub fn eval(g: &Graph, id: NodeId, v: &[Vec<f64>]) -> Vec<f64> {
    let len = g.nodes[id].shape.len();
    match g.nodes[id].op {
        Op::Slice(a, start) => v[a][start..start + len].to_vec(),
        Op::Pad(a, start) => {
            let mut out = vec![0.0; len];
            out[start..start + v[a].len()].copy_from_slice(&v[a]);
            out
        }
        Op::Concat(a, b) => v[a].iter().chain(&v[b]).copied().collect(),
        _ => unreachable!("not a slicing op"),
    }
}
