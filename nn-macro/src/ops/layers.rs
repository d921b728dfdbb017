//! Layers: `dense(x, n[, init])`, a matrix product plus a bias, and
//! `layer_norm(x)`, each with its parameters named after the binding it
//! appears in (`h.weight`, `h.bias`, as PyTorch names a `Linear`'s or a
//! `LayerNorm`'s; a second layer in the binding gets `h.2.weight`, ...).

use super::{Builtin, Lower};
use crate::ir::*;
use crate::limits::MAX_ELEMENTS;
use crate::lower::{lower_init, Cx, Lowered, Reported, Value};
use crate::scalar::{build::*, S};
use nn_grammar::{Diagnostic, Expr, Span};

/// The layer built-ins.
pub static BUILTINS: &[Builtin] = &[
    Builtin {
        name: "dense",
        min_args: 2,
        max_args: 3,
        signature: "dense(x, units)` or `dense(x, units, init)",
        lower: Lower::Custom(lower_dense),
    },
    Builtin {
        name: "layer_norm",
        min_args: 1,
        max_args: 1,
        signature: "layer_norm(x)",
        lower: Lower::Custom(lower_layer_norm),
    },
];

/// `ε` of `layer_norm`, PyTorch's default.
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// `layer_norm(x)` of a vector `[n]`: `(x - mean(x)) / √(var(x) + ε) ⊙
/// weight + bias`, the variance the biased one (over `n`), as PyTorch's
/// `LayerNorm(n)`; `weight` starts at ones, `bias` at zeros. Built from
/// sums and elementwise nodes, so its derivative is theirs.
fn lower_layer_norm(cx: &mut Cx, _: &str, args: &[Expr], span: Span) -> Lowered {
    let x = cx.tensor(&args[0])?;
    let shape = cx.shape(x);
    if shape.rank() != 1 || shape.0[0] < 2 {
        cx.error(
            Diagnostic::new(
                args[0].span(),
                format!(
                    "`layer_norm` normalises a vector of at least 2 elements, found shape {shape}"
                ),
            )
            .with_help("normalise a layer's output, as in `layer_norm(dense(x, 32))`"),
        );
        return Err(Reported);
    }
    let n = shape.0[0];
    let [w, b] = layer_params(
        cx,
        "layer_norm",
        [
            ("weight", Shape(vec![n]), InitKind::Constant(1.0)),
            ("bias", Shape(vec![n]), InitKind::Zeros),
        ],
        span,
    )?;
    let scalar = Shape::scalar();
    let total = cx.node(Op::Sum(x), scalar.clone(), span);
    let centred = cx.map(
        vec![x, total],
        vec![Bcast::Full, Bcast::Scalar],
        sub(S::Arg(0), div(S::Arg(1), c(n as f64))),
        shape.clone(),
        "centred",
        span,
    );
    let squares = cx.unary(centred, pow(S::Arg(0), 2.0), "sq", span);
    let sum_sq = cx.node(Op::Sum(squares), scalar.clone(), span);
    // 1 / √(Σ (x - μ)² / n + ε)
    let inv_std = cx.map(
        vec![sum_sq],
        vec![Bcast::Full],
        pow(add(div(S::Arg(0), c(n as f64)), c(LAYER_NORM_EPS)), -0.5),
        scalar,
        "inv_std",
        span,
    );
    Ok(Value::Node(cx.map(
        vec![centred, inv_std, w, b],
        vec![Bcast::Full, Bcast::Scalar, Bcast::Full, Bcast::Full],
        add(mul(mul(S::Arg(0), S::Arg(1)), S::Arg(2)), S::Arg(3)),
        shape,
        "layer_norm",
        span,
    )))
}

/// A layer's parameters `<prefix>.<part>`, the prefix the binding's name
/// (`h`), or `h.2`, `h.3`, ... for the binding's second and later layers.
pub(super) fn layer_params<const N: usize>(
    cx: &mut Cx,
    layer: &str,
    parts: [(&str, Shape, InitKind); N],
    span: Span,
) -> Result<[NodeId; N], Reported> {
    cx.dense_in_binding += 1;
    let prefix = if cx.dense_in_binding == 1 {
        cx.binding.clone()
    } else {
        format!("{}.{}", cx.binding, cx.dense_in_binding)
    };
    let mut ids = [0; N];
    for (slot, (part, shape, init)) in ids.iter_mut().zip(parts) {
        let display = format!("{prefix}.{part}");
        let field = display.replace('.', "_");
        if cx.env.contains_key(&field) || cx.g.params.iter().any(|p| p.field == field) {
            if cx.poisoned.contains(&cx.binding) {
                // a binding defined twice: already reported
                return Err(Reported);
            }
            cx.error(Diagnostic::new(span, format!("the parameter `{display}` of this `{layer}` layer clashes with the name `{field}`")).with_help("rename the binding or the other name"));
            return Err(Reported);
        }
        *slot = cx.add_param(&display, field, shape, init, span);
    }
    Ok(ids)
}

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
    let [w, b] = layer_params(
        cx,
        "dense",
        [
            ("weight", Shape(vec![n, k]), init),
            ("bias", Shape(vec![n]), InitKind::Zeros),
        ],
        span,
    )?;
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
