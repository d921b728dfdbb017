//! Layers: `dense(x, n[, init])`, a matrix product plus a bias, with its
//! parameters named after the binding it appears in (`h.weight`, `h.bias`,
//! as PyTorch names a `Linear`'s).

use super::{Builtin, Lower};
use crate::ir::*;
use crate::limits::MAX_ELEMENTS;
use crate::lower::{lower_init, Cx, Lowered, Reported, Value};
use crate::scalar::{build::*, S};
use nn_grammar::{Diagnostic, Expr, Span};

/// The layer built-ins.
pub static BUILTINS: &[Builtin] = &[Builtin {
    name: "dense",
    min_args: 2,
    max_args: 3,
    signature: "dense(x, units)` or `dense(x, units, init)",
    lower: Lower::Custom(lower_dense),
}];

fn lower_dense(cx: &mut Cx, _: &str, args: &[Expr], span: Span) -> Lowered {
    dense(cx, args, span).map(Value::Node)
}

/// `dense(x, n[, init])` = `weight @ x + bias`, with `weight: [n, k]`
/// (initialised by `init`, Glorot uniform by default) and `bias: [n]`
/// (zeros), named `<binding>.weight` and `<binding>.bias`.
fn dense(cx: &mut Cx, args: &[Expr], span: Span) -> Result<NodeId, Reported> {
    let x = cx.tensor(&args[0])?;
    let n = match &args[1] {
        Expr::Number(v, sp) if *v >= 1.0 && v.fract() == 0.0 && *v > MAX_ELEMENTS as f64 => {
            cx.error(
                Diagnostic::new(
                    *sp,
                    format!("a `dense` layer has at most {MAX_ELEMENTS} units"),
                )
                .with_help("the README's \"Limits\" section lists the largest sizes"),
            );
            return Err(Reported);
        }
        Expr::Number(v, _) if *v >= 1.0 && v.fract() == 0.0 => *v as usize,
        other => {
            cx.error(
                Diagnostic::new(
                    other.span(),
                    "the size of a `dense` layer must be a positive integer",
                )
                .with_help("write the number of units, as in `dense(x, 32)`"),
            );
            return Err(Reported);
        }
    };
    let init = match args.get(2) {
        None => InitKind::XavierUniform,
        // an initialiser's name, or one with numeric arguments: `normal(0, 0.1)`
        Some(e @ (Expr::Name(_) | Expr::Call { .. })) => {
            let (name, init_args) = match e {
                Expr::Call { func, args, .. } => (func.clone(), args.as_slice()),
                Expr::Name(id) => (id.clone(), &[][..]),
                _ => unreachable!("matched above"),
            };
            let mut values = vec![];
            for a in init_args {
                match cx.const_eval(a) {
                    Ok(v) => values.push((v, a.span())),
                    Err(_) => {
                        cx.error(
                            Diagnostic::new(a.span(), "an initialiser's arguments are numbers")
                                .with_help("write numbers or `const`s, as in `normal(0, 0.1)`"),
                        );
                        return Err(Reported);
                    }
                }
            }
            let as_init = nn_grammar::Init {
                name,
                args: values,
                span: e.span(),
            };
            match lower_init(&as_init) {
                Ok(i) => i,
                Err(d) => {
                    cx.error(d);
                    return Err(Reported);
                }
            }
        }
        Some(other) => {
            cx.error(
                Diagnostic::new(
                    other.span(),
                    "the third argument of `dense` is the weight initialiser",
                )
                .with_help("write `he`, `xavier`, `normal(0, 0.1)` or another initialiser"),
            );
            return Err(Reported);
        }
    };
    let sx = cx.shape(x);
    if sx.rank() == 0 {
        cx.error(Diagnostic::new(
            args[0].span(),
            "`dense` needs a vector input, found a scalar",
        ));
        return Err(Reported);
    }
    let k = sx.0[0];
    cx.dense_in_binding += 1;
    let prefix = if cx.dense_in_binding == 1 {
        cx.binding.clone()
    } else {
        format!("{}.{}", cx.binding, cx.dense_in_binding)
    };
    let mut ids = vec![];
    for (part, shape, init) in [
        ("weight", Shape(vec![n, k]), init),
        ("bias", Shape(vec![n]), InitKind::Zeros),
    ] {
        let display = format!("{prefix}.{part}");
        let field = display.replace('.', "_");
        if cx.env.contains_key(&field) || cx.g.params.iter().any(|p| p.field == field) {
            if cx.poisoned.contains(&cx.binding) {
                // a binding defined twice: already reported
                return Err(Reported);
            }
            cx.error(Diagnostic::new(span, format!("the parameter `{display}` of this `dense` layer clashes with the name `{field}`")).with_help("rename the binding or the other name"));
            return Err(Reported);
        }
        ids.push(cx.add_param(&display, field, shape, init, span));
    }
    let (w, b) = (ids[0], ids[1]);
    let (op, shape) = if sx.rank() == 1 {
        (Op::MatVec(w, x), Shape(vec![n]))
    } else {
        (Op::MatMul(w, x), Shape(vec![n, sx.0[1]]))
    };
    let wx = cx.named_node(op, shape.clone(), "wx", span);
    let bcast = if shape.rank() == 1 {
        Bcast::Full
    } else {
        Bcast::Col
    };
    Ok(cx.map(
        vec![wx, b],
        vec![Bcast::Full, bcast],
        add(S::Arg(0), S::Arg(1)),
        shape,
        "dense",
        span,
    ))
}
