//! Streaming inference for causal convolutional networks: `stream_step`,
//! one position of the input signals in, the output's column at that
//! position out, for a feed-forward definition whose output at position
//! `t` depends only on the inputs at positions `<= t`.
//!
//! The step has a graph of its own, built from the per-sample one: each
//! value computed from the inputs (a signal `[c, L]` in `predict`) becomes
//! its column `[c]` at the current position, each causal convolution a
//! `ConvStep` reading its earlier columns from a ring buffer of the stream
//! state; values of the parameters alone stay as they are. The supported
//! set, every other op making the definition not streamable (no stream
//! API, see [`stream_graph`]):
//!
//! - the inputs the output reads, signals `[c, L]` of one length `L`;
//! - elementwise functions and operators of signals `[m, L]`, with
//!   scalars and per-channel vectors `[m]` of the parameters alone;
//! - sums of signals;
//! - `flatten` (or `reshape`) of a single channel `[1, L]` to `[L]`, and
//!   back;
//! - `conv1d(x, n, k, dilation = δ, causal)` of a signal (stride 1; a
//!   kernel of 1 without padding is causal too), weights of the parameters;
//! - `W @ x` (and `dense`) of a signal `[k, L]` by a matrix `W` `[m, k]`
//!   of the parameters alone: a matrix-vector product per position.

use super::body::{function, Which};
use super::docs::doc;
use super::items::Names;
use super::plan::Plan;
use crate::ir::*;
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

/// The graph of `stream_step` from the per-sample graph `g`, with each of
/// its nodes' ids in `g`; `None` when the definition is not streamable.
pub fn stream_graph(g: &Graph) -> Option<(Graph, Vec<NodeId>)> {
    if g.steps.is_some() {
        return None;
    }
    let live = g.live_from(&[g.output]);
    // the signals' common length
    let mut length = None;
    for (id, node) in g.nodes.iter().enumerate() {
        if let (true, Op::Input(k)) = (live[id], &node.op) {
            match (g.inputs[*k].shape.0.as_slice(), length) {
                (&[_, l], None) => length = Some(l),
                (&[_, l], Some(len)) if l == len => {}
                _ => return None,
            }
        }
    }
    let length = length?;
    let mut s = Graph {
        dtype: g.dtype,
        inputs: vec![],
        targets: vec![],
        params: g.params.clone(),
        nodes: vec![],
        loss: 0,
        output: 0,
        metric: g.metric,
        grads: vec![None; g.params.len()],
        steps: None,
        states: vec![],
        state_adjoints: vec![],
        batch: false,
        input_grads: vec![],
        hvp: vec![],
        batch_norms: g.batch_norms.clone(),
        positions: vec![],
    };
    let mut new = vec![usize::MAX; g.nodes.len()];
    let mut streamed = vec![false; g.nodes.len()];
    let mut origin = vec![];
    for (id, node) in g.nodes.iter().enumerate() {
        // every parameter, so that the parameter struct's fields are named alike
        let param = matches!(node.op, Op::Param(_));
        if !live[id] && !param {
            continue;
        }
        let is_streamed =
            matches!(node.op, Op::Input(_)) || node.op.args().iter().any(|&a| streamed[a]);
        let (op, shape) = if is_streamed {
            column(g, id, &streamed, length, &new, &mut s)?
        } else {
            let mut op = node.op.clone();
            op.map_args(|a| new[a]);
            (op, node.shape.clone())
        };
        streamed[id] = is_streamed;
        new[id] = s.push(op, shape, node.name.clone(), Pass::Forward, node.span);
        s.positions.push(if is_streamed { length } else { 1 });
        origin.push(id);
    }
    if !streamed[g.output] {
        return None;
    }
    s.output = new[g.output];
    s.loss = s.output;
    Some((s, origin))
}

/// The op and shape of streamed node `id`'s column at one position, or
/// `None` where `id` does not keep position `t` depending on positions
/// `<= t` only (or is not among the supported ops).
fn column(
    g: &Graph,
    id: NodeId,
    streamed: &[bool],
    length: usize,
    new: &[NodeId],
    s: &mut Graph,
) -> Option<(Op, Shape)> {
    let node = &g.nodes[id];
    // a signal `[m, L]`, or a single channel's flattened to `[L]`
    let rows = match *node.shape.0.as_slice() {
        [m, l] if l == length => m,
        [l] if l == length => 1,
        _ => return None,
    };
    let col = Shape(vec![rows]);
    let one_channel = |a: NodeId| g.nodes[a].shape.len() == length;
    let op = match &node.op {
        Op::Input(k) => {
            let mut d = g.inputs[*k].clone();
            d.shape = col.clone();
            s.inputs.push(d);
            Op::Input(s.inputs.len() - 1)
        }
        Op::Map { args, bcast, body } => {
            let mut b2 = vec![];
            for (&a, &b) in args.iter().zip(bcast) {
                b2.push(match (streamed[a], b) {
                    (true, Bcast::Full) => Bcast::Full,
                    (false, Bcast::Scalar) => Bcast::Scalar,
                    // a per-channel vector: the column's own shape
                    (false, Bcast::Col) => Bcast::Full,
                    _ => return None,
                });
            }
            Op::Map {
                args: args.iter().map(|&a| new[a]).collect(),
                bcast: b2,
                body: body.clone(),
            }
        }
        Op::AddN(parts) if parts.iter().all(|&p| streamed[p]) => {
            Op::AddN(parts.iter().map(|&p| new[p]).collect())
        }
        Op::Conv(x, w, win)
            if streamed[*x]
                && !streamed[*w]
                && !win.two_d
                && win.stride[1] == 1
                && win.pad[1] == win.dilation[1] * (win.kernel[1] - 1)
                && win.input[1] == length
                && win.output[1] == length =>
        {
            Op::ConvStep(new[*x], new[*w], *win)
        }
        Op::MatMul(w, x) if !streamed[*w] && streamed[*x] => Op::MatVec(new[*w], new[*x]),
        // `flatten` of a single channel, and back: the same column
        Op::Reshape(a) if one_channel(*a) && one_channel(id) => Op::Reshape(new[*a]),
        _ => return None,
    };
    Some((op, col))
}

/// The plan of the stream graph: each node computed where and as in
/// `predict` (`sample` the per-sample plan, `origin` each node's id
/// there), so that the step's arithmetic is `predict`'s.
pub fn stream_plan<'g>(s: &'g Graph, origin: &[NodeId], sample: &Plan) -> Plan<'g> {
    let mut plan = Plan::new(s, sample.params_ty.clone());
    for (id, &o) in origin.iter().enumerate() {
        plan.absorbed[id] = plan.absorbed[id] && sample.absorbed[o];
    }
    plan
}

/// Each convolution's ring buffer: its node, input channels and length
/// `dilation·(kernel-1)` (none for a kernel of 1).
fn rings(plan: &Plan) -> Vec<(NodeId, usize, usize)> {
    let g = plan.g;
    (0..g.nodes.len())
        .filter(|&id| plan.live[id])
        .filter_map(|id| match g.nodes[id].op {
            Op::ConvStep(_, _, w) if w.kernel[1] > 1 => {
                Some((id, w.c_in, w.dilation[1] * (w.kernel[1] - 1)))
            }
            _ => None,
        })
        .collect()
}

/// The stream step's input type: one column of each input it reads.
pub fn step_input_ty(plan: &Plan) -> TokenStream {
    super::items::tuple(
        plan.g
            .inputs
            .iter()
            .map(|d| plan.shape_ty(&d.shape))
            .collect(),
    )
}

/// The module's items: the stream state and `stream_step`.
pub(super) fn items(plan: &Plan, n: &Names) -> TokenStream {
    let g = plan.g;
    let t = &plan.t;
    let (name, params_ty, state_ty) = (&n.name, &n.params, &n.stream);
    let rings = rings(plan);
    let fields = rings.iter().map(|&(id, c, d)| {
        let f = &plan.ident[id];
        let at = format_ident!("{}_at", f);
        let (c, d) = (Literal::usize_unsuffixed(c), Literal::usize_unsuffixed(d));
        quote!(#f: [[#t; #c]; #d], #at: usize,)
    });
    let zeros = rings.iter().map(|&(id, c, d)| {
        let f = &plan.ident[id];
        let at = format_ident!("{}_at", f);
        let (c, d) = (Literal::usize_unsuffixed(c), Literal::usize_unsuffixed(d));
        quote!(#f: [[0.0; #c]; #d], #at: 0,)
    });
    let input_ty = step_input_ty(plan);
    let out_ty = plan.ty(g.output);
    let body = function(plan, Which::Stream);
    let doc = format!(
        "The state of `{name}::stream_step` between positions: for each causal convolution, \
         a ring buffer of the last `dilation·(kernel-1)` columns of its input (zeros before the \
         first position: the causal padding). {} bytes, no heap.",
        rings.iter().map(|&(_, c, d)| c * d).sum::<usize>()
            * if g.dtype == Dtype::F32 { 4 } else { 8 }
            + rings.len() * 8
    );
    quote!(
        #[doc = #doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug, ::core::cmp::PartialEq)]
        pub struct #state_ty {
            #(#fields)*
        }

        impl #state_ty {
            /// The state before the first position: every buffer zeros.
            pub const fn new() -> Self {
                Self { #(#zeros)* }
            }

            /// Back to the state before the first position, in place (a new
            /// signal starts).
            pub fn reset(&mut self) {
                *self = Self::new();
            }
        }

        impl ::core::default::Default for #state_ty {
            fn default() -> Self {
                Self::new()
            }
        }

        pub fn stream_step(params: &#params_ty, state: &mut #state_ty, input: &#input_ty) -> #out_ty {
            #body
        }
    )
}

/// The parameter struct's methods: `stream_state` and `stream_step`.
pub(super) fn methods(plan: &Plan, n: &Names) -> TokenStream {
    let (m, state_ty) = (&n.module, &n.stream);
    let input_ty = step_input_ty(plan);
    let out_ty = plan.ty(plan.g.output);
    let step_doc = doc(plan, Which::Stream);
    let state_doc = format!(
        "The state of [`stream_step`](Self::stream_step) before the first position (the same as `{state_ty}::new()`)."
    );
    quote!(
        #[doc = #state_doc]
        pub fn stream_state(&self) -> #state_ty {
            #m::#state_ty::new()
        }

        #[doc = #step_doc]
        #[inline]
        pub fn stream_step(&self, state: &mut #state_ty, input: &#input_ty) -> #out_ty {
            #m::stream_step(self, state, input)
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expand::compile_text;

    fn streams(def: &str) -> bool {
        let g = compile_text(def, None).expect("compiles");
        stream_graph(&g).is_some()
    }

    const HEAD: &str = "input x[2, 16]; target y[3, 16]; param p[4] = constant(1); param m[4, 16];";

    /// The supported set, and each way out of it.
    #[test]
    fn which_definitions_stream() {
        for (body, ok) in [
            // causal convolutions of any dilation, elementwise, sums, 1x1
            ("h = tanh(conv1d(x, 4, 2, causal)); g = h + sigmoid(conv1d(h, 4, 3, dilation = 4, causal)); out = conv1d(g, 3, 1);", true),
            ("h = conv1d(x, 4, 2, causal) * p + 2; out = dense(relu(h), 3);", true),
            ("h = conv1d(x, 4, 2, causal); out = conv1d(h - exp(p), 3, 1) / 3;", true),
            // a kernel of 1 without padding is causal
            ("out = conv1d(x, 3, 1);", true),
            // padded on both sides, strided, a parameter per position, a mean over positions
            ("out = conv1d(x, 3, 3, padding = 1);", false),
            ("h = conv1d(x, 6, 2, stride = 2, causal); out = reshape(h, 3, 16);", false),
            ("h = conv1d(x, 4, 2, causal); out = conv1d(h * m, 3, 1);", false),
            ("h = conv1d(x, 3, 2, causal); out = h - mean(h);", false),
        ] {
            let def = format!("{HEAD} {body} loss = mse(out, y) + 0 * mean(m) + 0 * sum(p);");
            let g = compile_text(&def, None).unwrap_or_else(|e| panic!("{body}: {e:?}"));
            assert_eq!(stream_graph(&g).is_some(), ok, "{body}");
        }
    }

    #[test]
    fn recurrent_and_vector_definitions_do_not_stream() {
        assert!(!streams(
            "input x[4]; target y[4]; out = tanh(x); loss = mse(out, y);"
        ));
        assert!(!streams(
            "steps 4; input x[t][2]; target y[t][1]; state h[1] = zeros; h[t] = tanh(dense(x[t], 1) + h[t-1]); out[t] = h[t]; loss = mean_steps(mse(out[t], y[t]));"
        ));
        // a mono signal flattened streams; two signals of different lengths do not
        assert!(streams(
            "input x[1, 32]; target y[32]; out = flatten(conv1d(tanh(conv1d(x, 4, 2, causal)), 1, 1)); loss = mse(out, y);"
        ));
        assert!(!streams(
            "input x[1, 32]; input z[1, 16]; target y[1, 16]; out = conv1d(z, 1, 1) + sum(x); loss = mse(out, y);"
        ));
        // an output of the parameters alone
        assert!(!streams(
            "input x[1, 8]; target y[1, 8]; param q[1, 8]; out = tanh(q); loss = mse(out, y) + mean(x);"
        ));
    }
}
