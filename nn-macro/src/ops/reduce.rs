//! Reductions: `sum`, `mean` (of everything, or along an axis of a
//! matrix), `norm`; the graph's `Sum`, `SumCols`, `SumRows`, and, in the
//! batched code, `BatchSum` (a per-sample contribution to a shared value's
//! adjoint summed over the samples).

use super::{Builtin, Lower, Vjp};
use crate::emit::ex::Ex;
use crate::emit::{Mode, Place};
use crate::ir::*;
use crate::lower::{Cx, Lowered, Reported, Value};
use crate::scalar::{build::*, Cmp, S};
use nn_grammar::{Diagnostic, Expr, Span};
use quote::quote;

/// The reduction built-ins.
pub static BUILTINS: &[Builtin] = &[
    Builtin {
        name: "sum",
        min_args: 1,
        max_args: 2,
        signature: "sum(x)` or `sum(matrix, axis)",
        lower: Lower::Custom(lower_reduce),
    },
    Builtin {
        name: "mean",
        min_args: 1,
        max_args: 2,
        signature: "mean(x)` or `mean(matrix, axis)",
        lower: Lower::Custom(lower_reduce),
    },
    // norm(x) = √(Σ x²), scaled so that tiny or huge vectors stay finite;
    // its gradient x / norm(x) is taken as 0 at x = 0, as PyTorch does
    Builtin {
        name: "norm",
        min_args: 1,
        max_args: 1,
        signature: "norm(x)",
        lower: Lower::Custom(lower_norm),
    },
];

fn lower_reduce(cx: &mut Cx, name: &str, args: &[Expr], span: Span) -> Lowered {
    if args.len() == 2 {
        return reduce_axis(cx, name, args, span).map(Value::Node);
    }
    let x = cx.tensor(&args[0])?;
    if name == "sum" {
        return Ok(Value::Node(cx.node(Op::Sum(x), Shape::scalar(), span)));
    }
    Ok(Value::Node(mean(cx, x, span)))
}

fn lower_norm(cx: &mut Cx, _: &str, args: &[Expr], span: Span) -> Lowered {
    let x = cx.tensor(&args[0])?;
    Ok(Value::Node(cx.node(Op::Norm(x), Shape::scalar(), span)))
}

/// `mean(x)` = `sum(x) / len`.
pub fn mean(cx: &mut Cx, x: NodeId, span: Span) -> NodeId {
    let n = cx.shape(x).len() as f64;
    let s = cx.node(Op::Sum(x), Shape::scalar(), span);
    if n == 1.0 {
        return s;
    }
    cx.map(
        vec![s],
        vec![Bcast::Full],
        div(S::Arg(0), c(n)),
        Shape::scalar(),
        "mean",
        span,
    )
}

/// `sum(x, axis)` and `mean(x, axis)` of a matrix: axis 0 sums each
/// column (`[m, n] -> [n]`), axis 1 each row (`[m, n] -> [m]`).
fn reduce_axis(cx: &mut Cx, name: &str, args: &[Expr], span: Span) -> Result<NodeId, Reported> {
    let x = cx.tensor(&args[0])?;
    let shape = cx.shape(x);
    let axis = cx
        .const_of(&args[1])
        .filter(|a| a.fract() == 0.0)
        .map(|a| a as i64);
    let (op, out, count) = match (axis, shape.rank()) {
        (Some(0), 2) => (Op::SumRows(x), Shape(vec![shape.0[1]]), shape.0[0]),
        (Some(1), 2) => (Op::SumCols(x), Shape(vec![shape.0[0]]), shape.0[1]),
        (_, 2) => {
            cx.error(
                Diagnostic::new(
                    args[1].span(),
                    format!("the axis of `{name}` must be 0 or 1"),
                )
                .with_help("axis 0 reduces each column to one value, axis 1 each row"),
            );
            return Err(Reported);
        }
        _ => {
            cx.error(
                Diagnostic::new(
                    args[0].span(),
                    format!("`{name}(x, axis)` needs a matrix, found shape {shape}"),
                )
                .with_help(format!("use `{name}(x)` to reduce a vector to a scalar")),
            );
            return Err(Reported);
        }
    };
    let total = cx.node(op, out, span);
    if name == "sum" || count == 1 {
        return Ok(total);
    }
    Ok(cx.unary(total, div(S::Arg(0), c(count as f64)), "mean", span))
}

/// Each element of the operand gets the adjoint of the sum it went into.
pub fn vjp(v: &mut Vjp, op: &Op) {
    let d = v.d;
    let spread = |bcast| Op::Map {
        args: vec![d],
        bcast: vec![bcast],
        body: S::Arg(0),
    };
    match *op {
        // out = Σ a: d_a = d everywhere
        Op::Sum(a) if v.needs(a) => v.add(a, spread(Bcast::Scalar)),
        // out[i] = Σ_j a[i][j]: d_a[i][j] = d[i]
        Op::SumCols(a) if v.needs(a) => v.add(a, spread(Bcast::Col)),
        // out[j] = Σ_i a[i][j]: d_a[i][j] = d[j]
        Op::SumRows(a) if v.needs(a) => v.add(a, spread(Bcast::Row)),
        // out = ‖a‖: d_a = d a / out, and 0 where out = 0 (the subgradient
        // PyTorch takes there)
        Op::Norm(a) if v.needs(a) => {
            let (d, id) = (v.d, v.id);
            v.add(
                a,
                Op::Map {
                    args: vec![d, a, id],
                    bcast: vec![Bcast::Scalar, Bcast::Full, Bcast::Scalar],
                    body: select(
                        cmp(Cmp::Gt, S::Arg(2), c(0.0)),
                        div(mul(S::Arg(0), S::Arg(1)), S::Arg(2)),
                        c(0.0),
                    ),
                },
            );
        }
        Op::Sum(_) | Op::SumCols(_) | Op::SumRows(_) | Op::Norm(_) => {}
        _ => unreachable!("backward-only ops are never differentiated (no second derivatives)"),
    }
}

/// A loop over the operand adding into the destination; an elementwise
/// operand used nowhere else is evaluated inside that loop, never stored.
/// A batch sum of per-sample outer products is one `U Vᵀ` product.
pub fn emit(ex: &mut Ex, op: &Op, dest: &Place, mode: Mode) {
    if let Op::Norm(a) = *op {
        return emit_norm(ex, a, dest, mode);
    }
    let _ = mode; // reductions add: their destination is zeroed first
    let a = match *op {
        Op::Sum(a) | Op::SumCols(a) | Op::SumRows(a) | Op::BatchSum(a) => a,
        _ => unreachable!("not a reduction"),
    };
    let value = |ex: &Ex| {
        if ex.absorbed(a) {
            ex.map_elem(a)
        } else {
            ex.elem(a, Bcast::Full)
        }
    };
    let lhs = match op {
        Op::Sum(_) if ex.batched(ex.id) => dest.index(&quote!([j])),
        Op::Sum(_) => dest.value(),
        // a batched matrix's loops: row `r`, column `c`, sample `j`
        Op::SumCols(_) if ex.batched(ex.id) => dest.index(&quote!([r][j])),
        Op::SumRows(_) if ex.batched(ex.id) => dest.index(&quote!([c][j])),
        Op::SumCols(_) => dest.index(&quote!([i])),
        Op::SumRows(_) => dest.index(&quote!([j])),
        Op::BatchSum(_) => {
            let k = Ex::kernels();
            match ex.g().nodes[a].op {
                // Σ_samples u vᵀ = U Vᵀ: one matrix product
                Op::Outer(u, w) if ex.absorbed(a) && ex.batched(u) && ex.batched(w) => {
                    let (u, w, d) = (
                        ex.place(u).borrow(),
                        ex.place(w).borrow(),
                        dest.borrow_mut(),
                    );
                    ex.out.push(quote!(#k::matmul_nt_acc(#u, #w, #d);));
                    return;
                }
                // a convolution's weight gradient, summed over the samples
                // as it is computed
                ref op @ Op::ConvWeight(..) if ex.absorbed(a) => {
                    let mut inner = Ex {
                        plan: ex.plan,
                        place: ex.place,
                        out: &mut *ex.out,
                        id: a,
                        training: ex.training,
                    };
                    super::conv::emit_into(&mut inner, op, dest, Mode::Accumulate, false);
                    return;
                }
                // each sample's row added in at its own class index
                Op::Scatter(..) if ex.absorbed(a) => {
                    ex.emit_into(a, dest, Mode::Accumulate);
                    return;
                }
                // a per-sample matrix into a shared one
                _ if ex.g().nodes[a].shape.stored_rank() == 2 => dest.index(&quote!([r][c])),
                _ if !ex.batched(a) => {
                    // the same value for every sample: B times it
                    let t = ex.t();
                    let (l, r) = (
                        ex.elem_of(dest, ex.id, Bcast::Full),
                        ex.elem(a, Bcast::Full),
                    );
                    let stmt = ex.loops(ex.id, quote!(#l += B as #t * #r;));
                    ex.out.push(stmt);
                    return;
                }
                _ => ex.elem_of(dest, ex.id, Bcast::Full),
            }
        }
        _ => unreachable!("matched above"),
    };
    let v = value(ex);
    let stmt = ex.loops(a, quote!(#lhs += #v;));
    ex.out.push(stmt);
}

/// `‖a‖` as `m √(Σ (a / m)²)`, `m = max |a|` (0 for a zero vector): no
/// overflow or underflow where the norm itself is representable.
fn emit_norm(ex: &mut Ex, a: NodeId, dest: &Place, mode: Mode) {
    let shape = ex.g().nodes[a].shape.clone();
    let batched = ex.batched(a);
    let at = |ex: &Ex| ex.elem(a, Bcast::Full);
    let v = at(ex);
    // `__nn_` names: a binding called `m` or `s` must not be shadowed
    let max_loop = ex.loops_over(&shape, false, quote!(__nn_m = __nn_m.max(#v.abs());));
    let sum_loop = ex.loops_over(
        &shape,
        false,
        quote!(__nn_s += (#v / __nn_m) * (#v / __nn_m);),
    );
    let t = &ex.plan.t;
    let value = quote!({
        let mut __nn_m: #t = 0.0;
        #max_loop
        if __nn_m > 0.0 {
            let mut __nn_s: #t = 0.0;
            #sum_loop
            __nn_m * __nn_s.sqrt()
        } else {
            0.0
        }
    });
    let stmt = if batched {
        let lhs = dest.index(&quote!([j]));
        let body = Ex::put(mode, lhs, value);
        quote!(for j in 0..B { #body })
    } else {
        Ex::put(mode, dest.value(), value)
    };
    ex.out.push(stmt);
}

/// One add per element summed.
pub fn flops(g: &Graph, id: NodeId) -> u64 {
    match g.nodes[id].op {
        Op::Sum(a) | Op::SumCols(a) | Op::SumRows(a) => g.nodes[a].shape.len() as u64,
        Op::BatchSum(_) => g.nodes[id].shape.len() as u64,
        // a max, a divide, a multiply-add per element
        Op::Norm(a) => 4 * g.nodes[a].shape.len() as u64,
        _ => 0,
    }
}

/// The sum in the operand's name (a batch sum of outer products as the
/// matrix product it is emitted as).
pub fn math(g: &Graph, op: &Op, n: &dyn Fn(NodeId) -> String) -> String {
    match *op {
        Op::BatchSum(a) => match g.nodes[a].op {
            Op::Outer(u, v) => format!("Σ_samples {0} ⊗ {1} = {0} · {1}ᵀ", n(u), n(v)),
            _ => format!("Σ_samples {}", n(a)),
        },
        Op::Sum(a) => format!("Σ {}", n(a)),
        Op::SumCols(a) => format!("Σ_j {}[i][j]", n(a)),
        Op::SumRows(a) => format!("Σ_i {}[i][j]", n(a)),
        Op::Norm(a) => format!("‖{}‖", n(a)),
        _ => unreachable!("not a reduction"),
    }
}

/// Row-major sums.
#[cfg(test)]
pub fn eval(g: &Graph, id: NodeId, v: &[Vec<f64>]) -> Vec<f64> {
    let len = g.nodes[id].shape.len();
    let cols = |a: NodeId| {
        let s = &g.nodes[a].shape;
        if s.rank() == 2 {
            s.0[1]
        } else {
            1
        }
    };
    match g.nodes[id].op {
        Op::Sum(a) => vec![v[a].iter().sum()],
        Op::Norm(a) => vec![v[a].iter().map(|x| x * x).sum::<f64>().sqrt()],
        Op::SumCols(a) => {
            let c = cols(a);
            (0..len)
                .map(|i| v[a][i * c..(i + 1) * c].iter().sum())
                .collect()
        }
        Op::SumRows(a) => {
            let c = cols(a);
            (0..len)
                .map(|j| v[a].iter().skip(j).step_by(c).sum())
                .collect()
        }
        _ => unreachable!("the interpreter runs per-sample graphs"),
    }
}
