//! Reshaping: `flatten(x)` (any shape -> `[n]`) and `reshape(x, d0, d1,
//! ...)` (the same elements, row-major, in another shape of as many), the
//! graph's `Reshape`: a copy of the elements in order, whose adjoint is
//! the reshape back. And tiling, a vector broadcast along either axis of a
//! matrix, written out: `tile_rows(v, m)` (`v` `[n]` as each of `m` rows)
//! and `tile_cols(u, n)` (`u` `[m]` as each of `n` columns), elementwise
//! nodes whose adjoint is the sum over the copies.

use super::window::int_arg_named;
use super::{Builtin, Lower, Vjp};
use crate::emit::ex::Ex;
use crate::emit::{Mode, Place};
use crate::ir::*;
use crate::lower::{Cx, Lowered, Reported, Value};
use nn_grammar::{Diagnostic, Expr, Span};
use quote::quote;

/// The reshaping built-ins.
pub static BUILTINS: &[Builtin] = &[
    Builtin {
        name: "flatten",
        min_args: 1,
        max_args: 1,
        signature: "flatten(x)",
        lower: Lower::Custom(lower_flatten),
    },
    Builtin {
        name: "reshape",
        min_args: 2,
        max_args: 4,
        signature: "reshape(x, d0)`, `reshape(x, d0, d1)` or `reshape(x, d0, d1, d2)",
        lower: Lower::Custom(lower_reshape),
    },
    Builtin {
        name: "tile_rows",
        min_args: 2,
        max_args: 2,
        signature: "tile_rows(v, m)",
        lower: Lower::Custom(lower_tile),
    },
    Builtin {
        name: "tile_cols",
        min_args: 2,
        max_args: 2,
        signature: "tile_cols(u, n)",
        lower: Lower::Custom(lower_tile),
    },
];

/// `tile_rows(v, m)`: `[n] -> [m, n]`, every row `v`; `tile_cols(u, n)`:
/// `[m] -> [m, n]`, every column `u`. A map broadcasting its one operand
/// along the rows or the columns: fused into its user, it is that
/// broadcast, and its derivative sums the copies (column or row sums).
fn lower_tile(cx: &mut Cx, name: &str, args: &[Expr], span: Span) -> Lowered {
    let v = cx.tensor(&args[0]);
    let (what, example) = if name == "tile_rows" {
        ("row count", "tile_rows(bias, 8)")
    } else {
        ("column count", "tile_cols(bias, 8)")
    };
    let count = int_arg_named(cx, &args[1], name, what, 1, example);
    let (v, count) = (v?, count?);
    let shape = cx.shape(v);
    if shape.rank() != 1 {
        cx.error(
            Diagnostic::new(
                args[0].span(),
                format!("`{name}` repeats a vector, found shape {shape}"),
            )
            .with_help(format!("flatten it first: `{name}(flatten(x), {count})`")),
        );
        return Err(Reported);
    }
    let len = shape.0[0];
    let (out, bcast) = if name == "tile_rows" {
        (Shape(vec![count, len]), Bcast::Row)
    } else {
        (Shape(vec![len, count]), Bcast::Col)
    };
    Ok(Value::Node(cx.map(
        vec![v],
        vec![bcast],
        crate::scalar::S::Arg(0),
        out,
        name,
        span,
    )))
}

fn lower_flatten(cx: &mut Cx, _: &str, args: &[Expr], span: Span) -> Lowered {
    let x = cx.tensor(&args[0])?;
    let shape = cx.shape(x);
    if shape.rank() == 1 {
        return Ok(Value::Node(x));
    }
    Ok(Value::Node(cx.node(
        Op::Reshape(x),
        Shape(vec![shape.len()]),
        span,
    )))
}

fn lower_reshape(cx: &mut Cx, _: &str, args: &[Expr], span: Span) -> Lowered {
    let x = cx.tensor(&args[0]);
    let mut dims = vec![];
    let mut ok = true;
    for a in &args[1..] {
        match int_arg_named(cx, a, "reshape", "dimension", 1, "reshape(x, 1, 8, 8)") {
            Ok(d) => dims.push(d),
            Err(_) => ok = false,
        }
    }
    let x = x?;
    if !ok {
        return Err(Reported);
    }
    let from = cx.shape(x);
    let to = Shape(dims);
    if from.len() != to.len() {
        let at = args[1].span().join(args[args.len() - 1].span());
        let product: Vec<String> = to.0.iter().map(|d| d.to_string()).collect();
        cx.error(
            Diagnostic::new(
                at,
                format!(
                    "`reshape` to {to} needs {} = {} elements, but the value of shape {from} has {}",
                    product.join("·"),
                    to.len(),
                    from.len()
                ),
            )
            .with_help("the new dimensions must multiply to the same count (row-major order is kept)"),
        );
        return Err(Reported);
    }
    if from == to {
        return Ok(Value::Node(x));
    }
    Ok(Value::Node(cx.node(Op::Reshape(x), to, span)))
}

/// `d` reshaped back to the operand's shape.
pub fn vjp(v: &mut Vjp, op: &Op) {
    match *op {
        Op::Reshape(a) if v.needs(a) => {
            let d = v.d;
            v.add(a, Op::Reshape(d));
        }
        Op::Reshape(_) => {}
        _ => unreachable!("not a reshape"),
    }
}

/// A copy of the elements in order, through flat views (in the batched
/// code each sample's column moves with its element).
pub fn emit(ex: &mut Ex, op: &Op, dest: &Place, mode: Mode) {
    let Op::Reshape(a) = *op else {
        unreachable!("not a reshape")
    };
    let mut views = super::window::Views::new();
    let src = views.read(ex, a, "src");
    let out = views.write(ex, dest, ex.id, ex.batched(ex.id), "out");
    let n = proc_macro2::Literal::usize_unsuffixed(ex.node().shape.len());
    let e = super::window::Lin::var("e");
    let (lhs, rhs) = (out.at(&e), src.at(&e));
    let put = Ex::put(mode, lhs, rhs);
    ex.out.push(views.finish(quote!(for e in 0..#n { #put })));
}

/// The row-major elements, unchanged.
pub fn math(op: &Op, n: &dyn Fn(NodeId) -> String) -> String {
    match *op {
        Op::Reshape(a) => format!("{} reshaped", n(a)),
        _ => unreachable!("not a reshape"),
    }
}

/// The same elements.
#[cfg(test)]
pub fn eval(g: &Graph, id: NodeId, v: &[Vec<f64>]) -> Vec<f64> {
    match g.nodes[id].op {
        Op::Reshape(a) => v[a].clone(),
        _ => unreachable!("not a reshape"),
    }
}
