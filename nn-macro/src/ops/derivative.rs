//! Derivatives inside a definition: `grad(e, x)`, the derivative of a
//! scalar expression with respect to an input or a binding, as a value of
//! `x`'s shape that later expressions (the loss too) may use. It is built by
//! the backward pass's own rules as forward nodes, and the parameters'
//! gradient then differentiates through it (reverse over reverse). Every op
//! of a feed-forward definition has a second derivative; recurrent
//! definitions do not take `grad`.

use super::{Builtin, Lower};
use crate::ir::*;
use crate::lower::{Cx, Lowered, Reported, Value};
use crate::scalar::build::*;
use nn_grammar::{Diagnostic, Expr, Span};

/// The derivative built-ins.
pub static BUILTINS: &[Builtin] = &[Builtin {
    name: "grad",
    min_args: 2,
    max_args: 2,
    signature: "grad(e, x)",
    lower: Lower::Custom(lower_grad),
}];

fn lower_grad(cx: &mut Cx, _: &str, args: &[Expr], span: Span) -> Lowered {
    if cx.steps.is_some() {
        cx.error(
            Diagnostic::new(span, "`grad` is not supported in a recurrent definition")
                .with_help("take derivatives in a feed-forward definition (no `steps`)"),
        );
        return Err(Reported);
    }
    if !cx.g.batch_norms.is_empty() {
        cx.error(
            Diagnostic::new(span, "`grad` after a `batch_norm` is not supported")
                .with_help("a batch norm's training derivative runs over the whole batch; take derivatives in a definition without `batch_norm`"),
        );
        return Err(Reported);
    }
    let e = cx.tensor(&args[0]);
    let x = match &args[1] {
        Expr::Name(name) => cx.lookup(name),
        other => {
            cx.error(
                Diagnostic::new(other.span(), "`grad` differentiates with respect to a name")
                    .with_help("bind the value to a name first (`z = ...;`), or name an input"),
            );
            Err(Reported)
        }
    };
    let (e, x) = (e?, x?);
    let shape = cx.shape(e);
    if !shape.is_scalar() {
        cx.error(
            Diagnostic::new(
                args[0].span(),
                format!("`grad` differentiates a scalar, but this has shape {shape}"),
            )
            .with_help("reduce it first, as in `grad(sum(u), x)`"),
        );
        return Err(Reported);
    }
    let x = match x {
        Value::Node(id) => id,
        _ => {
            cx.error(
                Diagnostic::new(
                    args[1].span(),
                    "`grad` differentiates with respect to a tensor",
                )
                .with_help("name an input or a binding"),
            );
            return Err(Reported);
        }
    };
    let what = match cx.g.nodes[x].op {
        Op::Param(_) => Some((
            "a parameter",
            "the parameters' gradient is what training computes; `grad` takes an input or a binding",
        )),
        Op::Target(_) => Some(("a target", "`grad` takes an input or a binding")),
        _ => None,
    };
    if let Some((kind, help)) = what {
        cx.error(
            Diagnostic::new(args[1].span(), format!("`grad` with respect to {kind}"))
                .with_help(help),
        );
        return Err(Reported);
    }
    let d = match crate::autodiff::derivative(&mut cx.g, e, x) {
        Some(d) => {
            let name = format!("d_{}_d_{}", cx.g.nodes[e].name, cx.g.nodes[x].name);
            cx.g.nodes[d].name = name;
            d
        }
        // `e` does not depend on `x`: zeros of its shape
        None => {
            let s = cx.shape(x);
            cx.map(vec![], vec![], c(0.0), s, "grad", span)
        }
    };
    cx.size_check(d, span);
    Ok(Value::Node(d))
}
