//! Pooling: `max_pool1d(x, k[, stride])`, `max_pool2d`, `avg_pool1d`,
//! `avg_pool2d` (the stride `k` unless given, `padding = p` at most half
//! the window, as PyTorch) of a signal `[c, l]` or an image `[c, h, w]`,
//! each channel on its own; `global_avg_pool(x)`, `[c, ...] -> [c]`, a
//! mean over the positions (sums and a scale, differentiated as theirs).
//!
//! Max pooling's adjoint routes each output's adjoint to its window's
//! first largest input element, found again from the input in the
//! backward pass (nothing more is stored). Average pooling counts padded
//! positions as zeros (PyTorch's `count_include_pad`).

use super::window::{self, int_arg, keyword, out_size, spatial, Axis, Dim, Lin, Nest, Views};
use super::{Builtin, Lower, Vjp};
use crate::emit::ex::Ex;
use crate::emit::{Mode, Place};
use crate::ir::*;
use crate::lower::{Cx, Lowered, Reported, Value};
use crate::scalar::{build::*, S};
use nn_grammar::{Diagnostic, Expr, KeywordArg, Span};
use proc_macro2::Literal;
use quote::quote;

const KEYWORDS: &[&str] = &["stride", "padding"];

macro_rules! pool {
    ($name:literal) => {
        Builtin {
            name: $name,
            min_args: 2,
            max_args: 3,
            signature: concat!(
                $name,
                "(x, kernel)` or `",
                $name,
                "(x, kernel, stride, padding = 0)"
            ),
            lower: Lower::Keywords(lower_pool, KEYWORDS),
        }
    };
}

/// The pooling built-ins.
pub static BUILTINS: &[Builtin] = &[
    pool!("max_pool1d"),
    pool!("max_pool2d"),
    pool!("avg_pool1d"),
    pool!("avg_pool2d"),
    Builtin {
        name: "global_avg_pool",
        min_args: 1,
        max_args: 1,
        signature: "global_avg_pool(x)",
        lower: Lower::Custom(lower_global),
    },
];

fn lower_pool(
    cx: &mut Cx,
    name: &str,
    args: &[Expr],
    kwargs: &[KeywordArg],
    span: Span,
) -> Lowered {
    let two_d = name.ends_with("2d");
    let x = cx.tensor(&args[0])?;
    let (channels, input) = spatial(cx, x, two_d, name, args[0].span())?;
    let kernel = int_arg(cx, &args[1], name, "window size", 1)?;
    let stride = match (args.get(2), keyword(kwargs, "stride")) {
        (Some(_), Some(k)) => {
            cx.error(
                Diagnostic::new(k.span, format!("the stride of `{name}` is given twice"))
                    .with_help("give it once: as the third argument or as `stride = ...`"),
            );
            return Err(Reported);
        }
        (Some(e), None) => int_arg(cx, e, name, "stride", 1)?,
        (None, Some(k)) => int_arg(cx, &k.value, name, "stride", 1)?,
        (None, None) => kernel,
    };
    let padding = match keyword(kwargs, "padding") {
        Some(k) => {
            let p = int_arg(cx, &k.value, name, "padding", 0)?;
            if 2 * p > kernel {
                cx.error(
                    Diagnostic::new(
                        k.span,
                        format!(
                            "the padding of `{name}` is {p}, more than half the window of {kernel}"
                        ),
                    )
                    .with_help(format!(
                        "a window would hold padding alone; use a padding of at most {}",
                        kernel / 2
                    )),
                );
                return Err(Reported);
            }
            p
        }
        None => 0,
    };
    let dim = |input: usize| Dim {
        input,
        kernel,
        stride,
        before: padding,
        after: padding,
        dilation: 1,
    };
    let at = args[1].span();
    let output = if two_d {
        let h = out_size(
            cx,
            &dim(input[0]),
            &format!("{name} output height"),
            false,
            at,
        )?;
        [
            h,
            out_size(
                cx,
                &dim(input[1]),
                &format!("{name} output width"),
                false,
                at,
            )?,
        ]
    } else {
        [
            1,
            out_size(
                cx,
                &dim(input[1]),
                &format!("{name} output length"),
                false,
                at,
            )?,
        ]
    };
    let spread = |v: usize| if two_d { [v, v] } else { [1, v] };
    let win = Window {
        two_d,
        c_in: channels,
        c_out: channels,
        input,
        output,
        kernel: spread(kernel),
        stride: spread(stride),
        pad: if two_d {
            [padding, padding]
        } else {
            [0, padding]
        },
        dilation: [1, 1],
    };
    let shape = if two_d {
        Shape(vec![channels, output[0], output[1]])
    } else {
        Shape(vec![channels, output[1]])
    };
    let op = if name.starts_with("max") {
        Op::MaxPool(x, win)
    } else {
        Op::AvgPool(x, win)
    };
    Ok(Value::Node(cx.node(op, shape, span)))
}

/// `[c, positions...] -> [c]`: each channel's sum over its positions,
/// divided by their count.
fn lower_global(cx: &mut Cx, name: &str, args: &[Expr], span: Span) -> Lowered {
    let x = cx.tensor(&args[0])?;
    let shape = cx.shape(x);
    if shape.rank() < 2 {
        cx.error(
            Diagnostic::new(
                args[0].span(),
                format!("`{name}` needs channels and positions, `[c, l]` or `[c, h, w]`, found shape {shape}"),
            )
            .with_help("pool a convolution's output, as in `global_avg_pool(conv1d(x, 8, 3))`"),
        );
        return Err(Reported);
    }
    let channels = shape.0[0];
    let area = shape.len() / channels;
    let rows = if shape.rank() == 2 {
        x
    } else {
        cx.named_node(Op::Reshape(x), Shape(vec![channels, area]), "rows", span)
    };
    let sums = cx.node(Op::SumCols(rows), Shape(vec![channels]), span);
    if area == 1 {
        return Ok(Value::Node(sums));
    }
    Ok(Value::Node(cx.unary(
        sums,
        div(S::Arg(0), c(area as f64)),
        "mean",
        span,
    )))
}

/// Max pooling's adjoints route through the window's argmax (zero with
/// respect to the input, piecewise constant there); average pooling and
/// its adjoint are each other's transposes.
pub fn vjp(v: &mut Vjp, op: &Op) {
    let e = v.d;
    match *op {
        Op::MaxPool(x, w) if v.needs(x) => v.add(x, Op::MaxPoolGrad(x, e, w)),
        Op::MaxPoolGrad(x, d, w) if v.needs(d) => v.add(d, Op::MaxPoolPick(x, e, w)),
        Op::MaxPoolPick(x, d, w) if v.needs(d) => v.add(d, Op::MaxPoolGrad(x, e, w)),
        Op::AvgPool(x, w) if v.needs(x) => v.add(x, Op::AvgPoolGrad(e, w)),
        Op::AvgPoolGrad(d, w) if v.needs(d) => v.add(d, Op::AvgPool(e, w)),
        Op::MaxPool(..)
        | Op::MaxPoolGrad(..)
        | Op::MaxPoolPick(..)
        | Op::AvgPool(..)
        | Op::AvgPoolGrad(..) => {}
        _ => unreachable!("not a pooling op"),
    }
}

fn window_of(op: &Op) -> Window {
    match *op {
        Op::MaxPool(_, w)
        | Op::MaxPoolGrad(.., w)
        | Op::MaxPoolPick(.., w)
        | Op::AvgPool(_, w)
        | Op::AvgPoolGrad(_, w) => w,
        _ => unreachable!("not a pooling op"),
    }
}

/// Loops over each channel's output positions and window taps.
pub fn emit(ex: &mut Ex, op: &Op, dest: &Place, mode: Mode) {
    let t = ex.t();
    let win = window_of(op);
    let nest = Nest::new(&win);
    let c = Axis::new("c", win.c_in);
    let area = Literal::f64_unsuffixed((win.kernel[0] * win.kernel[1]) as f64);
    let mut views = Views::new();
    // the first largest element of the window: its value and flat index
    let argmax = |xv: &window::View| {
        let idx = nest.in_at(c.lin()).tokens();
        let v = xv.at(&Lin::var("e"));
        let taps = nest.taps(quote!(let e = #idx; let v = #v; if v > best { best = v; at = e; }));
        quote!(let mut best = #t::NEG_INFINITY; let mut at = 0usize; #taps)
    };
    let out_batched = ex.batched(ex.id);
    let stmt = match *op {
        Op::MaxPool(x, _) => {
            let xv = views.read(ex, x, "xv");
            let out = views.write(ex, dest, ex.id, out_batched, "out");
            let v = xv.at(&nest.in_at(c.lin()));
            let taps = nest.taps(quote!(let v = #v; if v > best { best = v; }));
            let put = Ex::put(mode, out.at(&nest.out_at(c.lin())), quote!(best));
            c.wrap(nest.outputs(quote!(let mut best = #t::NEG_INFINITY; #taps #put)))
        }
        Op::MaxPoolGrad(x, d, _) => {
            let (xv, dv) = (views.read(ex, x, "xv"), views.read(ex, d, "dv"));
            let out = views.write(ex, dest, ex.id, out_batched, "out");
            let find = argmax(&xv);
            let (lhs, g) = (out.at(&Lin::var("at")), dv.at(&nest.out_at(c.lin())));
            c.wrap(nest.outputs(quote!(#find #lhs += #g;)))
        }
        Op::MaxPoolPick(x, e, _) => {
            let (xv, ev) = (views.read(ex, x, "xv"), views.read(ex, e, "ev"));
            let out = views.write(ex, dest, ex.id, out_batched, "out");
            let find = argmax(&xv);
            let put = Ex::put(mode, out.at(&nest.out_at(c.lin())), ev.at(&Lin::var("at")));
            c.wrap(nest.outputs(quote!(#find #put)))
        }
        Op::AvgPool(x, _) => {
            let xv = views.read(ex, x, "xv");
            let out = views.write(ex, dest, ex.id, out_batched, "out");
            let v = xv.at(&nest.in_at(c.lin()));
            let taps = nest.taps(quote!(acc += #v;));
            let put = Ex::put(mode, out.at(&nest.out_at(c.lin())), quote!(acc / #area));
            c.wrap(nest.outputs(quote!(let mut acc: #t = 0.0; #taps #put)))
        }
        Op::AvgPoolGrad(d, _) => {
            let dv = views.read(ex, d, "dv");
            let out = views.write(ex, dest, ex.id, out_batched, "out");
            let (g, lhs) = (dv.at(&nest.out_at(c.lin())), out.at(&nest.in_at(c.lin())));
            let taps = nest.taps(quote!(#lhs += g;));
            c.wrap(nest.outputs(quote!(let g = #g / #area; #taps)))
        }
        _ => unreachable!("not a pooling op"),
    };
    ex.out.push(views.finish(stmt));
}

/// The forward poolings and the pick write each output once; the adjoints add.
pub fn overwrites(op: &Op) -> bool {
    matches!(op, Op::MaxPool(..) | Op::MaxPoolPick(..) | Op::AvgPool(..))
}

/// A comparison or an add per tap.
pub fn flops(g: &Graph, id: NodeId) -> u64 {
    let w = window_of(&g.nodes[id].op);
    let (_, out) = window::areas(&w);
    (w.c_in as u64)
        .saturating_mul(out as u64)
        .saturating_mul((w.kernel[0] * w.kernel[1]) as u64)
}

/// In the operands' names.
pub fn math(op: &Op, n: &dyn Fn(NodeId) -> String) -> String {
    let w = window_of(op);
    let how = window::describe(&w);
    match *op {
        Op::MaxPool(x, _) => format!("max of each window of {} ({how})", n(x)),
        Op::MaxPoolGrad(x, d, _) => {
            format!(
                "{} routed to each window's first largest element of {} ({how})",
                n(d),
                n(x)
            )
        }
        Op::MaxPoolPick(x, e, _) => {
            format!(
                "{} at each window's first largest element of {} ({how})",
                n(e),
                n(x)
            )
        }
        Op::AvgPool(x, _) => format!("mean of each window of {} ({how})", n(x)),
        Op::AvgPoolGrad(d, _) => format!("{} spread evenly over each window ({how})", n(d)),
        _ => unreachable!("not a pooling op"),
    }
}

/// Window by window, channel by channel.
#[cfg(test)]
pub fn eval(g: &Graph, id: NodeId, v: &[Vec<f64>]) -> Vec<f64> {
    let node = &g.nodes[id];
    let w = window_of(&node.op);
    let (in_area, out_area) = window::areas(&w);
    let k_area = (w.kernel[0] * w.kernel[1]) as f64;
    let taps = window::taps(&w);
    let mut out = vec![0.0; node.shape.len()];
    // each output position's first largest input position
    let argmax = |x: &[f64], c: usize, po: usize| {
        let mut best: Option<(f64, usize)> = None;
        for &(_, _, pi) in taps.iter().filter(|t| t.0 == po) {
            let e = c * in_area + pi;
            if best.is_none_or(|(b, _)| x[e] > b) {
                best = Some((x[e], e));
            }
        }
        best.map_or(0, |b| b.1)
    };
    for c in 0..w.c_in {
        for po in 0..out_area {
            let oi = c * out_area + po;
            match node.op {
                Op::MaxPool(x, _) => out[oi] = v[x][argmax(&v[x], c, po)],
                Op::MaxPoolGrad(x, d, _) => out[argmax(&v[x], c, po)] += v[d][oi],
                Op::MaxPoolPick(x, e, _) => out[oi] = v[e][argmax(&v[x], c, po)],
                Op::AvgPool(x, _) => {
                    for &(_, _, pi) in taps.iter().filter(|t| t.0 == po) {
                        out[oi] += v[x][c * in_area + pi] / k_area;
                    }
                }
                Op::AvgPoolGrad(d, _) => {
                    for &(_, _, pi) in taps.iter().filter(|t| t.0 == po) {
                        out[c * in_area + pi] += v[d][oi] / k_area;
                    }
                }
                _ => unreachable!("not a pooling op"),
            }
        }
    }
    out
}
