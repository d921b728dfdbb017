//! `batch_norm(x)`: batch normalisation of a per-sample vector `[c]`, as
//! PyTorch's `BatchNorm1d(c)` (momentum 0.1, ε = 1e-5). Lowered as
//! `x̂ ⊙ weight + bias`: the graph's `BatchNorm(x, k)` computes `x̂` and the
//! elementwise product and sum carry the learned `<binding>.weight` (ones)
//! and `<binding>.bias` (zeros), so their gradients are the elementwise
//! ones.
//!
//! Two modes:
//!
//! - training, the batched passes (`forward_batch`, `backward_batch`) with
//!   the batch tape's batch-norm mode on (a new tape's): `x̂` from the
//!   batch's mean and biased variance of each channel; `forward_batch`
//!   stores the mean and the unbiased variance on the tape, from which
//!   `update_running_stats` moves the running statistics once per batch;
//!   the adjoint reaching `x` goes through the batch mean and variance
//!   (`BatchNormGrad`: every sample's gradient depends on the whole batch);
//! - inference, everywhere else (`predict`, the per-sample `forward` and
//!   `backward`, `input_gradient`, `hvp`, and the batched passes with the
//!   mode off): `x̂ = (x - running_mean) / √(running_var + ε)`, an affine
//!   map whose adjoint is `d / √(running_var + ε)`.
//!
//! The running statistics are buffers (`ir::BatchNormDecl`): fields of the
//! parameter struct after the parameters, outside its flat view, so no
//! optimiser and no gradient touches them.

use super::layers::layer_params;
use super::{Builtin, Lower, Vjp};
use crate::emit::ex::Ex;
use crate::emit::{Mode, Place};
use crate::ir::*;
use crate::lower::{Cx, Lowered, Reported, Value};
use crate::scalar::{build::*, S};
use nn_grammar::{Diagnostic, Expr, Span};
use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};

/// The batch-norm built-in.
pub static BUILTINS: &[Builtin] = &[Builtin {
    name: "batch_norm",
    min_args: 1,
    max_args: 1,
    signature: "batch_norm(x)",
    lower: Lower::Custom(lower_batch_norm),
}];

/// `ε` of `batch_norm`, PyTorch's default.
pub const EPS: f64 = 1e-5;
/// How far one batch moves the running statistics, PyTorch's default.
pub const MOMENTUM: f64 = 0.1;

fn lower_batch_norm(cx: &mut Cx, _: &str, args: &[Expr], span: Span) -> Lowered {
    let x = cx.tensor(&args[0])?;
    if cx.g.steps.is_some() {
        cx.error(
            Diagnostic::new(
                span,
                "`batch_norm` is not supported in a recurrent definition",
            )
            .with_help(
                "use it in a feed-forward definition (without `steps`), or `layer_norm` in a step",
            ),
        );
        return Err(Reported);
    }
    let shape = cx.shape(x);
    if shape.rank() == 0 {
        cx.error(
            Diagnostic::new(
                args[0].span(),
                format!("`batch_norm` normalises channels: a vector `[c]`, a signal `[c, l]` or an image `[c, h, w]`, found shape {shape}"),
            )
            .with_help("normalise a layer's output, as in `batch_norm(dense(x, 32))`"),
        );
        return Err(Reported);
    }
    let c = shape.0[0];
    // a signal or an image: each channel's row of positions, `[c, positions]`
    let rows = match shape.rank() {
        1 | 2 => x,
        _ => cx.named_node(
            Op::Reshape(x),
            Shape(vec![c, shape.len() / c]),
            "rows",
            span,
        ),
    };
    let row_shape = cx.shape(rows);
    let [w, b] = layer_params(
        cx,
        "batch_norm",
        [
            ("weight", Shape(vec![c]), InitKind::Constant(1.0)),
            ("bias", Shape(vec![c]), InitKind::Zeros),
        ],
        span,
    )?;
    // the prefix `layer_params` gave the weight: `h` of `h.weight`
    let weight = &cx.g.params[cx.g.params.len() - 2].name;
    let name = weight[..weight.len() - ".weight".len()].to_string();
    let clash = buffer_names(&name)
        .iter()
        .map(|n| n.replace('.', "_"))
        .find(|f| cx.env.contains_key(f) || cx.g.params.iter().any(|p| &p.field == f));
    if let Some(field) = clash {
        cx.error(
            Diagnostic::new(
                span,
                format!(
                    "the running statistics of this `batch_norm` clash with the name `{field}`"
                ),
            )
            .with_help("rename the binding or the other name"),
        );
        return Err(Reported);
    }
    let k = cx.g.batch_norms.len();
    cx.g.batch_norms.push(BatchNormDecl { name, channels: c });
    let xhat = cx.named_node(Op::BatchNorm(rows, k), row_shape.clone(), "xhat", span);
    let along = if shape.rank() == 1 {
        Bcast::Full
    } else {
        Bcast::Col
    };
    let y = cx.map(
        vec![xhat, w, b],
        vec![Bcast::Full, along, along],
        add(mul(S::Arg(0), S::Arg(1)), S::Arg(2)),
        row_shape,
        "batch_norm",
        span,
    );
    Ok(Value::Node(if shape.rank() == 3 {
        cx.named_node(Op::Reshape(y), shape, "batch_norm", span)
    } else {
        y
    }))
}

/// The names of a batch norm's buffers, as PyTorch's state dict has them.
pub fn buffer_names(name: &str) -> [String; 3] {
    [
        format!("{name}.running_mean"),
        format!("{name}.running_var"),
        format!("{name}.num_batches_tracked"),
    ]
}

/// The fields of batch norm `d`'s buffers in the parameter struct:
/// running mean, running variance, batch count.
pub fn buffer_fields(d: &BatchNormDecl) -> [Ident; 3] {
    buffer_names(&d.name)
        .map(|n| format_ident!("{}", crate::emit::names::sanitize(&n.replace('.', "_"))))
}

/// The fields of the batch statistics a batch tape keeps of batch norm
/// `k`: the mean and the unbiased variance of each channel.
pub fn tape_fields(k: usize) -> [Ident; 2] {
    [
        format_ident!("__nn_bn{}_mean", k),
        format_ident!("__nn_bn{}_var", k),
    ]
}

/// `x̂` to `x`: `d ⊙ ∂x̂/∂x`, through the batch statistics in training.
pub fn vjp(v: &mut Vjp, op: &Op) {
    let d = v.d;
    match *op {
        Op::BatchNorm(x, k) => {
            if v.needs(x) {
                v.add(x, Op::BatchNormGrad(d, x, k));
            }
        }
        // differentiated again only per sample (`hvp`), where it is linear in
        // its adjoint and independent of `x` (the running statistics)
        Op::BatchNormGrad(a, x, k) => {
            if v.needs(a) {
                v.add(a, Op::BatchNormGrad(d, x, k));
            }
        }
        _ => unreachable!("not a batch-norm op"),
    }
}

/// The running statistics' `1 / √(var + ε)` of channel `i`, and its mean.
fn running(ex: &Ex, k: usize) -> (TokenStream, TokenStream) {
    let [mean, var, _] = buffer_fields(&ex.g().batch_norms[k]);
    let eps = Literal::f64_unsuffixed(EPS);
    (
        quote!(params.#mean[i]),
        quote!((1.0 / (params.#var[i] + #eps).sqrt())),
    )
}

/// Per channel: in a batched training pass, the batch's statistics (the
/// forward pass also stores them for `update_running_stats`); else the
/// running statistics.
pub fn emit(ex: &mut Ex, op: &Op, dest: &Place, mode: Mode) {
    let id = ex.id;
    let (x, k, d) = match *op {
        Op::BatchNorm(x, k) => (x, k, None),
        Op::BatchNormGrad(d, x, k) => (x, k, Some(d)),
        _ => unreachable!("not a batch-norm op"),
    };
    let (r_mean, r_inv_std) = running(ex, k);
    let lhs = ex.elem_of(dest, id, Bcast::Full);
    let xe = ex.elem(x, Bcast::Full);
    if !ex.batched(id) {
        let v = match d {
            None => quote!((#xe - #r_mean) * #r_inv_std),
            Some(d) => {
                let de = ex.elem(d, Bcast::Full);
                quote!(#de * #r_inv_std)
            }
        };
        let stmt = ex.loops(id, Ex::put(mode, lhs, v));
        ex.out.push(stmt);
        return;
    }
    let t = ex.t();
    let shape = &ex.node().shape;
    let c = Literal::usize_unsuffixed(shape.0[0]);
    // a signal's or an image's channel: its positions `q` in every sample
    // `j` (a batched `[c, positions]` value is stored a row per element)
    let positions = if shape.rank() == 2 { shape.0[1] } else { 1 };
    let (xe, lhs, d_at) = if positions == 1 {
        (xe, lhs, d.map(|d| ex.elem(d, Bcast::Full)))
    } else {
        let p = Literal::usize_unsuffixed(positions);
        let idx = quote!([i * #p + q][j]);
        (
            ex.place(x).index(&idx),
            dest.index(&idx),
            d.map(|d| ex.place(d).index(&idx)),
        )
    };
    let each = |body: TokenStream| {
        if positions == 1 {
            quote!(for j in 0..B { #body })
        } else {
            let p = Literal::usize_unsuffixed(positions);
            quote!(for q in 0..#p { for j in 0..B { #body } })
        }
    };
    // the values each channel's statistics are over
    let n = {
        let p = Literal::usize_unsuffixed(positions);
        quote!(((B * #p) as #t))
    };
    let eps = Literal::f64_unsuffixed(EPS);
    let (sum_x, sum_sq) = (
        each(quote!(m += #xe;)),
        each(quote!(let e = #xe - m; ss += e * e;)),
    );
    let stats = quote!(
        let mut m: #t = 0.0;
        #sum_x
        m /= #n;
        let mut ss: #t = 0.0;
        #sum_sq
    );
    let body = match d_at {
        None => {
            let [tm, tv] = tape_fields(k);
            let put = each(Ex::put(mode, lhs.clone(), quote!((#xe - m) * s)));
            quote!(
                let (m, s) = if tape.__nn_bn_running {
                    tape.__nn_bn_fresh = false;
                    (#r_mean, #r_inv_std)
                } else {
                    #stats
                    tape.__nn_bn_fresh = true;
                    tape.#tm[i] = m;
                    tape.#tv[i] = ss / (#n - 1.0);
                    (m, 1.0 / (ss / #n + #eps).sqrt())
                };
                #put
            )
        }
        Some(de) => {
            let running = each(Ex::put(mode, lhs.clone(), quote!(#de * s)));
            let put = each(Ex::put(
                mode,
                lhs,
                quote!(s * (#de - sd - (#xe - m) * s * sdx)),
            ));
            let sums = each(quote!(
                sd += #de;
                sdx += #de * (#xe - m) * s;
            ));
            quote!(
                if tape.__nn_bn_running {
                    let s = #r_inv_std;
                    #running
                } else {
                    #stats
                    let s = 1.0 / (ss / #n + #eps).sqrt();
                    let (mut sd, mut sdx): (#t, #t) = (0.0, 0.0);
                    #sums
                    sd /= #n;
                    sdx /= #n;
                    #put
                }
            )
        }
    };
    ex.out.push(quote!(
        const { ::core::assert!(B > 1, "a batch norm's batch statistics need at least 2 samples") };
        for i in 0..#c {
            #body
        }
    ));
}

/// About four operations per element forward (mean, variance, normalise),
/// eight backward.
pub fn flops(g: &Graph, id: NodeId) -> u64 {
    let n = g.nodes[id].shape.len() as u64;
    match g.nodes[id].op {
        Op::BatchNorm(..) => 4 * n,
        _ => 8 * n,
    }
}

/// The normalisation, in words.
pub fn math(op: &Op, n: &dyn Fn(NodeId) -> String) -> String {
    match *op {
        Op::BatchNorm(x, _) => format!(
            "({0} - μ) / √(σ² + ε): batch statistics of {0} in training, running ones in inference",
            n(x)
        ),
        Op::BatchNormGrad(d, x, _) => format!(
            "∂ batch_norm({}) adjoint of {}: through the batch mean and variance in training",
            n(x),
            n(d)
        ),
        _ => unreachable!("not a batch-norm op"),
    }
}

/// The interpreter runs inference with the initial running statistics
/// (mean 0, variance 1).
#[cfg(test)]
pub fn eval(g: &Graph, id: NodeId, v: &[Vec<f64>]) -> Vec<f64> {
    let s = 1.0 / (1.0 + EPS).sqrt();
    match g.nodes[id].op {
        Op::BatchNorm(x, _) => v[x].iter().map(|a| a * s).collect(),
        Op::BatchNormGrad(d, _, _) => v[d].iter().map(|a| a * s).collect(),
        _ => unreachable!("not a batch-norm op"),
    }
}
