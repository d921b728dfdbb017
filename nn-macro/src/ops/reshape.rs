//! Reshaping: `flatten(x)` (any shape -> `[n]`) and `reshape(x, d0, d1,
//! ...)` (the same elements, row-major, in another shape of as many), the
//! graph's `Reshape`: a copy of the elements in order, whose adjoint is
//! the reshape back.

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
];

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
