//! Convolutions: `conv1d(x, out_channels, kernel, stride = s, padding = p,
//! dilation = d)` (or `causal`) of a signal `[c_in, l]` and `conv2d(x,
//! out_channels, kernel, ...)` of an image `[c_in, h, w]`, PyTorch's
//! cross-correlation with its parameter layouts (`<binding>.weight`
//! `[out, in, k]` or `[out, in, k, k]`, `<binding>.bias` `[out]`), and
//! the graph's `Conv` with its two adjoints: `ConvInput` (a transposed
//! convolution) and `ConvWeight` (the input correlated with the output's
//! adjoint). The three are bilinear, so each one's adjoints are the other
//! two. The bias is added by an elementwise node; its gradient is a sum.

use super::window::{self, int_arg, keyword, out_size, row_major, spatial, Axis, Dim, Nest, Views};
use super::{Builtin, Lower, Vjp};
use crate::emit::ex::Ex;
use crate::emit::{Mode, Place};
use crate::ir::*;
use crate::lower::{Cx, Lowered, Reported, Value};
use crate::scalar::{build::*, S};
use nn_grammar::{Diagnostic, Expr, KeywordArg, Span};
use proc_macro2::TokenStream;
use quote::quote;

/// The keyword arguments of both convolutions.
const KEYWORDS: &[&str] = &["stride", "padding", "dilation"];

/// The convolution built-ins.
pub static BUILTINS: &[Builtin] = &[
    Builtin {
        name: "conv1d",
        min_args: 3,
        max_args: 4,
        signature: "conv1d(x, out_channels, kernel, stride = 1, padding = 0, dilation = 1)` or `conv1d(x, out_channels, kernel, causal)",
        lower: Lower::Keywords(lower_conv, KEYWORDS),
    },
    Builtin {
        name: "conv2d",
        min_args: 3,
        max_args: 3,
        signature: "conv2d(x, out_channels, kernel, stride = 1, padding = 0, dilation = 1)",
        lower: Lower::Keywords(lower_conv, KEYWORDS),
    },
];

/// The settings of one convolution call, checked.
struct Settings {
    c_out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    causal: bool,
}

fn settings(
    cx: &mut Cx,
    name: &str,
    args: &[Expr],
    kwargs: &[KeywordArg],
) -> Result<Settings, Reported> {
    let c_out = int_arg(cx, &args[1], name, "number of output channels", 1);
    let kernel = int_arg(cx, &args[2], name, "kernel size", 1);
    let get =
        |cx: &mut Cx, kw: &str, what: &str, min: usize, default: usize| match keyword(kwargs, kw) {
            Some(k) => int_arg(cx, &k.value, name, what, min),
            None => Ok(default),
        };
    let stride = get(cx, "stride", "stride", 1, 1);
    let padding = get(cx, "padding", "padding", 0, 0);
    let dilation = get(cx, "dilation", "dilation", 1, 1);
    let causal = match args.get(3) {
        None => false,
        Some(Expr::Name(id)) if id.name == "causal" => {
            if let Some(p) = keyword(kwargs, "padding") {
                cx.error(
                    Diagnostic::new(
                        p.span,
                        "a `causal` convolution pads the signal itself: dilation·(kernel-1) zeros on the left",
                    )
                    .with_help("remove `padding = ...`, or `causal` for a symmetric padding"),
                );
                return Err(Reported);
            }
            true
        }
        Some(other) => {
            cx.error(
                Diagnostic::new(
                    other.span(),
                    "the fourth argument of `conv1d` can only be `causal`",
                )
                .with_help("give the stride, padding and dilation by name: `conv1d(x, 16, 3, stride = 2, padding = 1)`"),
            );
            return Err(Reported);
        }
    };
    Ok(Settings {
        c_out: c_out?,
        kernel: kernel?,
        stride: stride?,
        padding: padding?,
        dilation: dilation?,
        causal,
    })
}

/// `conv1d` and `conv2d`: the convolution, plus the bias on every position
/// of its channel.
fn lower_conv(
    cx: &mut Cx,
    name: &str,
    args: &[Expr],
    kwargs: &[KeywordArg],
    span: Span,
) -> Lowered {
    let two_d = name == "conv2d";
    let x = cx.tensor(&args[0])?;
    if cx.too_big.contains(&x) {
        // reported where it was computed; its parameters would be too
        return Err(Reported);
    }
    let (c_in, input) = spatial(cx, x, two_d, name, args[0].span())?;
    let s = settings(cx, name, args, kwargs)?;
    let before = if s.causal {
        s.dilation * (s.kernel - 1)
    } else {
        s.padding
    };
    let after = if s.causal { 0 } else { s.padding };
    let dim = |input: usize| Dim {
        input,
        kernel: s.kernel,
        stride: s.stride,
        before,
        after,
        dilation: s.dilation,
    };
    let at = args[2].span();
    let output = if two_d {
        let h = out_size(cx, &dim(input[0]), "conv2d output height", false, at)?;
        [
            h,
            out_size(cx, &dim(input[1]), "conv2d output width", false, at)?,
        ]
    } else {
        [
            1,
            out_size(cx, &dim(input[1]), "conv1d output length", s.causal, at)?,
        ]
    };
    let spread = |v: usize| if two_d { [v, v] } else { [1, v] };
    let win = Window {
        two_d,
        c_in,
        c_out: s.c_out,
        input,
        output,
        kernel: spread(s.kernel),
        stride: spread(s.stride),
        pad: if two_d { [before, before] } else { [0, before] },
        dilation: spread(s.dilation),
    };
    // PyTorch's default: uniform in ±1/√fan_in, fan_in = c_in · kernel area
    // (in f64: a shape too large is reported with the parameter, not overflowed here)
    let fan_in = c_in as f64 * win.kernel[0] as f64 * win.kernel[1] as f64;
    let bound = 1.0 / fan_in.sqrt();
    let mut wshape = vec![s.c_out, c_in];
    wshape.extend(if two_d {
        vec![s.kernel, s.kernel]
    } else {
        vec![s.kernel]
    });
    let [w, b] = super::layers::layer_params(
        cx,
        name,
        [
            ("weight", Shape(wshape), InitKind::Uniform(-bound, bound)),
            (
                "bias",
                Shape(vec![s.c_out]),
                InitKind::Uniform(-bound, bound),
            ),
        ],
        span,
    )?;
    let area = output[0].saturating_mul(output[1]);
    let out_shape = if two_d {
        Shape(vec![s.c_out, output[0], output[1]])
    } else {
        Shape(vec![s.c_out, output[1]])
    };
    let conv = cx.named_node(Op::Conv(x, w, win), out_shape.clone(), "conv", span);
    // the bias along each channel's row of a `[c_out, positions]` matrix
    let rows = if two_d {
        cx.named_node(Op::Reshape(conv), Shape(vec![s.c_out, area]), "rows", span)
    } else {
        conv
    };
    let biased = cx.map(
        vec![rows, b],
        vec![Bcast::Full, Bcast::Col],
        add(S::Arg(0), S::Arg(1)),
        Shape(vec![s.c_out, area]),
        name,
        span,
    );
    Ok(Value::Node(if two_d {
        cx.named_node(Op::Reshape(biased), out_shape, name, span)
    } else {
        biased
    }))
}

/// The three are bilinear: `⟨Conv(x, w), d⟩ = ⟨x, ConvInput(d, w)⟩ =
/// ⟨w, ConvWeight(x, d)⟩`, so each one's adjoints are the other two.
pub fn vjp(v: &mut Vjp, op: &Op) {
    let e = v.d;
    match *op {
        Op::Conv(x, w, win) => {
            if v.needs(x) {
                v.add(x, Op::ConvInput(e, w, win));
            }
            if v.needs(w) {
                v.add(w, Op::ConvWeight(x, e, win));
            }
        }
        // out = Jᵀd: ⟨out, e⟩ = ⟨d, Conv(e, w)⟩
        Op::ConvInput(d, w, win) => {
            if v.needs(d) {
                v.add(d, Op::Conv(e, w, win));
            }
            if v.needs(w) {
                v.add(w, Op::ConvWeight(e, d, win));
            }
        }
        // ⟨ConvWeight(x, d), e⟩ = ⟨d, Conv(x, e)⟩
        Op::ConvWeight(x, d, win) => {
            if v.needs(x) {
                v.add(x, Op::ConvInput(d, e, win));
            }
            if v.needs(d) {
                v.add(d, Op::Conv(x, e, win));
            }
        }
        // the graph of `stream_step` is inference only: never differentiated
        Op::ConvStep(..) => {}
        _ => unreachable!("not a convolution op"),
    }
}

/// Loops over the output positions and the kernel taps, per sample (in
/// the batched code, once per sample's column).
pub fn emit(ex: &mut Ex, op: &Op, dest: &Place, mode: Mode) {
    let out_batched = ex.batched(ex.id);
    emit_into(ex, op, dest, mode, out_batched);
}

/// The same, the destination per-sample or (a weight gradient summed over
/// the batch) shared.
pub fn emit_into(ex: &mut Ex, op: &Op, dest: &Place, mode: Mode, out_batched: bool) {
    let t = ex.t();
    if let Op::ConvStep(x, w, win) = *op {
        emit_step(ex, x, w, &win, dest, mode);
        return;
    }
    let win = match *op {
        Op::Conv(.., w) | Op::ConvInput(.., w) | Op::ConvWeight(.., w) => w,
        _ => unreachable!("not a convolution op"),
    };
    let nest = Nest::new(&win);
    let (o, c) = (Axis::new("o", win.c_out), Axis::new("c", win.c_in));
    let mut views = Views::new();
    let a = match *op {
        Op::Conv(a, ..) | Op::ConvInput(a, ..) | Op::ConvWeight(a, ..) => a,
        _ => unreachable!("matched above"),
    };
    if ex.batched(a) {
        // the batched code: one matrix product
        let stmt = batched(ex, op, dest, mode, &nest, &c);
        ex.out.push(quote!({ #stmt }));
        return;
    }
    let stmt = match *op {
        Op::Conv(x, w, _) => {
            let (xv, wv) = (views.read(ex, x, "xv"), views.read(ex, w, "wv"));
            let out = views.write(ex, dest, ex.id, out_batched, "out");
            let (xe, we) = (
                xv.at(&nest.in_at(c.lin())),
                wv.at(&nest.kernel_at(o.lin(), c.lin())),
            );
            let taps = c.wrap(nest.taps(quote!(acc += #we * #xe;)));
            let put = Ex::put(mode, out.at(&nest.out_at(o.lin())), quote!(acc));
            o.wrap(nest.outputs(quote!(let mut acc: #t = 0.0; #taps #put)))
        }
        Op::ConvInput(d, w, _) => {
            let (dv, wv) = (views.read(ex, d, "dv"), views.read(ex, w, "wv"));
            let out = views.write(ex, dest, ex.id, out_batched, "out");
            let (oe, we) = (
                out.at(&nest.in_at(c.lin())),
                wv.at(&nest.kernel_at(o.lin(), c.lin())),
            );
            let de = dv.at(&nest.out_at(o.lin()));
            let taps = c.wrap(nest.taps(quote!(#oe += #we * g;)));
            o.wrap(nest.outputs(quote!(let g = #de; #taps)))
        }
        Op::ConvWeight(x, d, _) => {
            let (xv, dv) = (views.read(ex, x, "xv"), views.read(ex, d, "dv"));
            let out = views.write(ex, dest, ex.id, out_batched, "out");
            let (xe, oe) = (
                xv.at(&nest.in_at(c.lin())),
                out.at(&nest.kernel_at(o.lin(), c.lin())),
            );
            let de = dv.at(&nest.out_at(o.lin()));
            let taps = c.wrap(nest.taps(quote!(#oe += #xe * g;)));
            o.wrap(nest.outputs(quote!(let g = #de; #taps)))
        }
        _ => unreachable!("matched above"),
    };
    ex.out.push(views.finish(stmt));
}

/// `ConvStep`: the output column at the current position. Tap `u` of a
/// kernel of `k` reads the column `δ(k-1-u)` positions back: the current
/// column `x` for the last tap, the others from the ring buffer
/// `state.<conv>` of the last `D = δ(k-1)` columns (zeros before the first
/// call: the causal padding), whose oldest is at `state.<conv>_at`. Each
/// output sums over the channels and, inside, the taps, as `Conv` does in
/// `predict` (a zero of the padding adds nothing), so the step equals
/// `predict` bit for bit. Then `x` replaces the oldest column.
fn emit_step(ex: &mut Ex, x: NodeId, w: NodeId, win: &Window, dest: &Place, mode: Mode) {
    let t = ex.t();
    let lit = proc_macro2::Literal::usize_unsuffixed;
    let (c_in, c_out, k) = (win.c_in, win.c_out, win.kernel[1]);
    let span = win.dilation[1] * (k - 1);
    let px = ex.place(x).borrow();
    let wv = crate::emit::flat_view(ex.place(w).borrow(), &ex.g().nodes[w].shape);
    let out = dest.borrow_mut();
    let (ci, co, kk) = (lit(c_in), lit(c_out), lit(k));
    let ring = ex.plan.ident[ex.id].clone();
    let head = quote::format_ident!("{}_at", ring);
    let put = Ex::put(mode, quote!(out[o]), quote!(acc));
    let (fill, advance) = if span == 0 {
        (quote!(), quote!())
    } else {
        let (d, dil, last) = (lit(span), lit(win.dilation[1]), lit(k - 1));
        (
            quote!(
                let at = state.#head;
                for u in 0..#last {
                    let s = at + u * #dil;
                    cols[u] = &state.#ring[if s >= #d { s - #d } else { s }];
                }
            ),
            quote!(
                let at = state.#head;
                state.#ring[at] = *xc;
                state.#head = if at + 1 == #d { 0 } else { at + 1 };
            ),
        )
    };
    ex.out.push(quote!({
        let xc: &[#t; #ci] = #px;
        {
            let wv = #wv;
            let out = &mut (#out)[..];
            let mut cols: [&[#t; #ci]; #kk] = [xc; #kk];
            #fill
            for o in 0..#co {
                let mut acc: #t = 0.0;
                for c in 0..#ci {
                    for u in 0..#kk {
                        acc += wv[(o * #ci + c) * #kk + u] * cols[u][c];
                    }
                }
                #put
            }
        }
        #advance
    }));
}

/// The batched code (the first operand per-sample, the weight shared):
/// one matrix product through the runtime's GEMM kernels, on the operand
/// unfolded into the batch tape (`Plan::cols`): row `(c, ky, kx)`, column
/// `(oy, ox)` times the batch, each element the input position that tap
/// reads there (zero in the padding). The forward pass is `weight ·
/// unfolded x`; the weight gradient `d · unfolded xᵀ` (summed over the
/// samples by the product itself); the input gradient `weightᵀ · d`,
/// folded back onto the input positions.
fn batched(ex: &Ex, op: &Op, dest: &Place, mode: Mode, nest: &Nest, c: &Axis) -> TokenStream {
    let k = Ex::kernels();
    let Some((cols, _)) = ex.plan.cols(ex.id) else {
        unreachable!("a batched convolution has its unfolded operand")
    };
    let win = match *op {
        Op::Conv(.., w) | Op::ConvInput(.., w) | Op::ConvWeight(.., w) => w,
        _ => unreachable!("not a convolution op"),
    };
    let lit = proc_macro2::Literal::usize_unsuffixed;
    let (c_out, rows) = (
        lit(win.c_out),
        lit(win.c_in * win.kernel[0] * win.kernel[1]),
    );
    let positions = lit(win.output[0] * win.output[1]);
    let unfolded = row_major(vec![
        (c.lin(), win.c_in),
        (nest.ky.lin(), win.kernel[0]),
        (nest.kx.lin(), win.kernel[1]),
        (nest.oy.lin(), win.output[0]),
        (nest.ox.lin(), win.output[1]),
    ])
    .tokens();
    let input = nest.in_at(c.lin()).tokens();
    let zero = quote!(for r in cols.iter_mut() {
        *r = [0.0; B];
    });
    // x unfolded into `cols`
    let unfold = |x: NodeId| {
        let px = ex.place(x).borrow();
        let clear = if win.pad != [0, 0] {
            zero.clone()
        } else {
            quote!()
        };
        let fill = c.wrap(nest.outputs(nest.taps(quote!(cols[#unfolded] = xv[#input];))));
        quote!(let xv = &(#px)[..]; let cols = &mut tape.#cols[..]; #clear #fill)
    };
    let flat = |a: NodeId| {
        let p = ex.place(a).borrow();
        quote!((#p).as_flattened())
    };
    let shared = |a: NodeId| {
        let p = ex.place(a).borrow();
        quote!(&(#p)[..])
    };
    match *op {
        Op::Conv(x, w, _) => {
            let (unfold, w) = (unfold(x), shared(w));
            let out = dest.borrow_mut();
            let acc = mode == Mode::Accumulate;
            quote!(
                #unfold
                #k::gemm(#c_out, #rows, #positions * B, #w, tape.#cols.as_flattened(), (#out).as_flattened_mut(), #acc);
            )
        }
        Op::ConvWeight(x, d, _) => {
            let (unfold, d) = (unfold(x), flat(d));
            let out = dest.borrow_mut();
            quote!(
                #unfold
                #k::gemm_nt_acc(#c_out, #rows, #positions * B, #d, tape.#cols.as_flattened(), &mut (#out)[..]);
            )
        }
        Op::ConvInput(d, w, _) => {
            let (d, w) = (flat(d), shared(w));
            let out = dest.borrow_mut();
            let fold = c.wrap(nest.outputs(
                nest.taps(quote!(for j in 0..B { out[#input][j] += cols[#unfolded][j]; })),
            ));
            quote!(
                let cols = &mut tape.#cols[..];
                #zero
                #k::gemm_tn_acc(#c_out, #rows, #positions * B, #w, #d, cols.as_flattened_mut());
                let out = &mut (#out)[..];
                #fold
            )
        }
        _ => unreachable!("not a convolution op"),
    }
}

/// The forward convolution writes each output once; the adjoints add.
pub fn overwrites(op: &Op) -> bool {
    matches!(op, Op::Conv(..) | Op::ConvStep(..))
}

/// The weight is shared in the batched code; a weight gradient exists
/// per sample only summed over the batch (see `Plan::supported`).
pub fn batches(op: &Op, b: &dyn Fn(NodeId) -> bool) -> bool {
    match *op {
        Op::Conv(_, w, _) | Op::ConvInput(_, w, _) => !b(w),
        Op::ConvStep(..) => false,
        _ => true,
    }
}

/// A multiply and an add per output position, tap and channel pair.
pub fn flops(g: &Graph, id: NodeId) -> u64 {
    match g.nodes[id].op {
        Op::Conv(.., w) | Op::ConvInput(.., w) | Op::ConvWeight(.., w) | Op::ConvStep(.., w) => {
            let out = match g.nodes[id].op {
                Op::ConvStep(..) => 1,
                _ => window::areas(&w).1,
            };
            let taps = (w.kernel[0] * w.kernel[1]) as u64;
            2 * (w.c_out as u64)
                .saturating_mul(w.c_in as u64)
                .saturating_mul(out as u64)
                .saturating_mul(taps)
        }
        _ => 0,
    }
}

/// In the operands' names.
pub fn math(op: &Op, n: &dyn Fn(NodeId) -> String) -> String {
    match *op {
        Op::Conv(x, w, win) => format!("{} ⋆ {} ({})", n(w), n(x), window::describe(&win)),
        Op::ConvStep(x, w, win) => format!(
            "{} ⋆ {} at this position, causal ({}; the earlier columns from the state)",
            n(w),
            n(x),
            window::describe(&win)
        ),
        Op::ConvInput(d, w, win) => format!(
            "transposed convolution of {} by {} ({})",
            n(d),
            n(w),
            window::describe(&win)
        ),
        Op::ConvWeight(x, d, win) => format!(
            "correlation of {} with {} ({})",
            n(x),
            n(d),
            window::describe(&win)
        ),
        _ => unreachable!("not a convolution op"),
    }
}

/// Sums over the taps inside the input.
#[cfg(test)]
pub fn eval(g: &Graph, id: NodeId, v: &[Vec<f64>]) -> Vec<f64> {
    let node = &g.nodes[id];
    let mut out = vec![0.0; node.shape.len()];
    let (win, a, b) = match node.op {
        Op::Conv(a, b, w) | Op::ConvInput(a, b, w) | Op::ConvWeight(a, b, w) => (w, a, b),
        _ => unreachable!("the interpreter runs whole-signal graphs"),
    };
    let (in_area, out_area) = window::areas(&win);
    let k_area = win.kernel[0] * win.kernel[1];
    for (po, pk, pi) in window::taps(&win) {
        for o in 0..win.c_out {
            for c in 0..win.c_in {
                let (oi, ki, ii) = (
                    o * out_area + po,
                    (o * win.c_in + c) * k_area + pk,
                    c * in_area + pi,
                );
                match node.op {
                    Op::Conv(..) => out[oi] += v[b][ki] * v[a][ii],
                    Op::ConvInput(..) => out[ii] += v[b][ki] * v[a][oi],
                    _ => out[ki] += v[a][ii] * v[b][oi],
                }
            }
        }
    }
    out
}
