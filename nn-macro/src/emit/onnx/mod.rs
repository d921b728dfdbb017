//! ONNX export: the per-sample inference graph (exactly what `predict`
//! computes) translated at compile time into a static description of an
//! ONNX graph (opset 17), which nn-runtime's `onnx` module encodes with the
//! parameters' current values.
//!
//! Every value gets a leading batch dimension `N` where it depends on an
//! input (the per-sample shapes follow it); parameters and constants keep
//! their own shapes and broadcast. Elementwise bodies become one ONNX node
//! per operator (`Add`, `Mul`, `Sigmoid`, `Where`, ...); the few functions
//! whose ONNX operator is specified or computed less accurately than the
//! generated code (`softplus`, `log1p`, `expm1`) are written as small
//! compositions that compute what the generated code does. A recurrent
//! definition is described once per region (before, inside and after the
//! time loop); the runtime unrolls the loop over its fixed step count.
//!
//! An operation with no ONNX form makes the description an `Unsupported`
//! record naming it, which `save_onnx` reports as an error: the macro never
//! fails because of the export, and never writes a wrong graph.

use super::body::live_with_states;
use crate::ir::*;
use crate::scalar::{Cmp, S};
use proc_macro2::{Literal, TokenStream};
use quote::quote;
use std::collections::{HashMap, HashSet};

mod build;
#[cfg(test)]
mod tests;

/// Where a described node runs, relative to the time loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Before,
    Step,
    After,
}

/// An attribute of a node.
#[derive(Clone, Debug, PartialEq)]
enum Attr {
    Int(&'static str, i64),
    Ints(&'static str, Vec<i64>),
}

/// One ONNX node: one output.
#[derive(Clone, Debug)]
struct ONode {
    op: &'static str,
    place: Place,
    inputs: Vec<String>,
    output: String,
    attrs: Vec<Attr>,
}

/// A constant initialiser: a scalar of the network's type, or int64s.
#[derive(Clone, Debug)]
enum OConst {
    Float(String, f64),
    Int(String, Vec<i64>),
}

/// A described value: its ONNX name, whether it has the batch dimension,
/// and its per-sample dimensions.
#[derive(Clone, Debug)]
struct V {
    name: String,
    batched: bool,
    dims: Vec<usize>,
}

impl V {
    fn rank(&self) -> usize {
        self.dims.len() + usize::from(self.batched)
    }
}

/// A graph input or the output.
#[derive(Clone, Debug)]
struct Io {
    name: String,
    value: String,
    dims: Vec<usize>,
    per_step: bool,
    /// Class indices (`int64`), not values of the dtype.
    classes: bool,
}

/// The described graph.
#[derive(Debug)]
struct Desc {
    steps: usize,
    inputs: Vec<Io>,
    output: Io,
    params: Vec<usize>,
    consts: Vec<OConst>,
    states: Vec<(String, String, String)>,
    nodes: Vec<ONode>,
}

/// Why a graph has no ONNX form.
#[derive(Debug, PartialEq)]
struct Unsupported {
    op: String,
    binding: String,
    reason: String,
}

/// The `ONNX` constant of the network's `Network` impl: the described
/// inference graph, or why there is none.
pub fn onnx_export(g: &Graph, network: &str) -> TokenStream {
    let o = quote!(::nn_runtime::__private::onnx);
    // in a block of its own, where lints about the constants' spelling
    // (a float that happens to be close to `1/√2`) do not reach the user
    let export = export_tokens(g, network);
    quote!({
        #[allow(clippy::all, unused_imports)]
        const EXPORT: #o::Export = {
            use #o::{Const, Export, Graph, Io, State, Unsupported};
            #export
        };
        EXPORT
    })
}

fn export_tokens(g: &Graph, network: &str) -> TokenStream {
    match describe(g) {
        Ok(d) => {
            let dtype = match g.dtype {
                Dtype::F32 => "f32",
                Dtype::F64 => "f64",
            };
            let steps = Literal::usize_unsuffixed(d.steps);
            let io = |io: &Io| {
                let (name, value, per_step, classes) =
                    (&io.name, &io.value, io.per_step, io.classes);
                let dims = io.dims.iter().map(|&d| Literal::usize_unsuffixed(d));
                quote!(Io { name: #name, value: #value, dims: &[#(#dims),*], per_step: #per_step, classes: #classes })
            };
            let inputs = d.inputs.iter().map(io);
            let output = io(&d.output);
            let params = d.params.iter().map(|&p| Literal::usize_unsuffixed(p));
            let consts = d.consts.iter().map(|c| match c {
                OConst::Float(name, v) => {
                    // (lowering keeps constants finite; never a panic here regardless)
                    let v = match *v {
                        v if v.is_finite() => quote!(#v),
                        v if v.is_nan() => quote!(::core::f64::NAN),
                        v if v > 0.0 => quote!(::core::f64::INFINITY),
                        _ => quote!(::core::f64::NEG_INFINITY),
                    };
                    quote!(Const::Float(#name, #v))
                }
                OConst::Int(name, vs) => {
                    let vs = vs.iter().map(|&v| Literal::i64_unsuffixed(v));
                    quote!(Const::Int(#name, &[#(#vs),*]))
                }
            });
            let states = d.states.iter().map(
                |(prev, init, update)| quote!(State { prev: #prev, init: #init, update: #update }),
            );
            // one line a node (see `nn_runtime::onnx::Graph::nodes`)
            let mut nodes = String::new();
            for n in &d.nodes {
                nodes.push(match n.place {
                    Place::Before => 'B',
                    Place::Step => 'S',
                    Place::After => 'A',
                });
                for w in [n.op, n.output.as_str()]
                    .into_iter()
                    .chain(n.inputs.iter().map(|s| s.as_str()))
                {
                    nodes.push(' ');
                    nodes.push_str(w);
                }
                if !n.attrs.is_empty() {
                    nodes.push_str(" |");
                }
                for a in &n.attrs {
                    let text = match a {
                        Attr::Int(k, v) => format!(" {k}={v}"),
                        Attr::Ints(k, vs) => {
                            let vs: Vec<String> = vs.iter().map(|v| v.to_string()).collect();
                            format!(" {k}=[{}]", vs.join(","))
                        }
                    };
                    nodes.push_str(&text);
                }
                nodes.push('\n');
            }
            quote!(Export::Graph(&Graph {
                network: #network,
                dtype: #dtype,
                steps: #steps,
                inputs: &[#(#inputs),*],
                output: #output,
                params: &[#(#params),*],
                consts: &[#(#consts),*],
                states: &[#(#states),*],
                nodes: #nodes,
            }))
        }
        Err(u) => {
            let (op, binding, reason) = (&u.op, &u.binding, &u.reason);
            quote!(Export::Unsupported(Unsupported {
                network: #network,
                op: #op,
                binding: #binding,
                reason: #reason,
            }))
        }
    }
}

/// ONNX's element type codes.
const FLOAT: i64 = 1;
const DOUBLE: i64 = 11;

struct B<'g> {
    g: &'g Graph,
    place: Place,
    nodes: Vec<ONode>,
    consts: Vec<OConst>,
    float_consts: HashMap<u64, String>,
    int_consts: HashMap<Vec<i64>, String>,
    used: HashSet<String>,
    suffix: HashMap<String, usize>,
    batch_dim: Option<String>,
    first_input: Option<String>,
    elem: i64,
}

type R<T> = Result<T, Unsupported>;

/// A convolution's or a pooling's ONNX attributes over its spatial
/// dimensions (one for a signal, two for an image): the padding after each
/// dimension the least that gives the same output size (ONNX rounds the
/// output size down, as the language does).
fn window_attrs(w: &Window) -> Vec<Attr> {
    let dims: Vec<usize> = if w.two_d { vec![0, 1] } else { vec![1] };
    let pick = |a: [usize; 2]| dims.iter().map(|&k| a[k] as i64).collect::<Vec<i64>>();
    let after: Vec<i64> = dims
        .iter()
        .map(|&k| {
            let span = w.dilation[k] * (w.kernel[k] - 1) + 1;
            let needed = (w.output[k] - 1) * w.stride[k] + span;
            needed.saturating_sub(w.input[k] + w.pad[k]) as i64
        })
        .collect();
    let mut pads = pick(w.pad);
    pads.extend(after);
    vec![
        Attr::Ints("kernel_shape", pick(w.kernel)),
        Attr::Ints("strides", pick(w.stride)),
        Attr::Ints("pads", pads),
        Attr::Ints("dilations", pick(w.dilation)),
    ]
}

fn unsupported(g: &Graph, id: NodeId, reason: &str) -> Unsupported {
    let node = &g.nodes[id];
    let op = match &node.op {
        Op::Target(k) => format!("target `{}`", g.targets[*k].name),
        op => op.name().to_string(),
    };
    Unsupported {
        op,
        binding: node.name.clone(),
        reason: reason.to_string(),
    }
}

/// The inference graph's description, or the first operation with no ONNX form.
fn describe(g: &Graph) -> R<Desc> {
    let live = live_with_states(g, vec![g.output]);
    let regions = g.regions();
    let batched = g.batched();
    let mut b = B {
        g,
        place: Place::Before,
        nodes: vec![],
        consts: vec![],
        float_consts: HashMap::new(),
        int_consts: HashMap::new(),
        used: HashSet::new(),
        suffix: HashMap::new(),
        batch_dim: None,
        first_input: None,
        elem: match g.dtype {
            Dtype::F32 => FLOAT,
            Dtype::F64 => DOUBLE,
        },
    };
    // graph inputs (every input `predict` takes) and parameters keep their names
    let mut inputs = vec![];
    for d in &g.inputs {
        let name = b.fresh(&d.name);
        if b.first_input.is_none() {
            b.first_input = Some(name.clone());
        }
        inputs.push(Io {
            name: name.clone(),
            value: name,
            dims: d.shape.0.clone(),
            per_step: d.per_step,
            classes: d.classes.is_some(),
        });
    }
    let mut params = vec![];
    for (k, p) in g.params.iter().enumerate() {
        if g.nodes
            .iter()
            .enumerate()
            .any(|(id, n)| live[id] && n.op == Op::Param(k))
        {
            params.push(k);
            b.used.insert(p.name.clone());
        }
    }
    // the output keeps its binding's name (unless an input has it)
    let out_name = b.fresh(&g.nodes[g.output].name);
    let mut vals: Vec<Option<V>> = vec![None; g.nodes.len()];
    let mut states = vec![];
    for id in 0..g.nodes.len() {
        if !live[id] {
            continue;
        }
        b.place = match regions[id] {
            Region::Before => Place::Before,
            Region::Step => Place::Step,
            Region::After => Place::After,
        };
        let node = &g.nodes[id];
        // intermediate results `h_t`, `h_t_2`, ...; the node's own result `h`
        let base = format!("{}_t", node.name);
        let start = b.nodes.len();
        let val = |vals: &[Option<V>], a: NodeId| -> R<V> {
            vals.get(a)
                .and_then(|v| v.clone())
                .ok_or_else(|| unsupported(g, id, "an operand has no ONNX value"))
        };
        let out_dims = node.shape.0.clone();
        let v = match &node.op {
            Op::Input(k) => {
                let name = inputs
                    .iter()
                    .find(|io| io.name == g.inputs[*k].name || io.value == g.inputs[*k].name)
                    .map(|io| io.value.clone())
                    .ok_or_else(|| unsupported(g, id, "an input has no ONNX value"))?;
                V {
                    name,
                    batched: true,
                    dims: out_dims,
                }
            }
            Op::Param(k) => V {
                name: g.params[*k].name.clone(),
                batched: false,
                dims: out_dims,
            },
            Op::Map { args, bcast, body } => {
                let mut ops = vec![];
                for (a, bc) in args.iter().zip(bcast) {
                    let v = val(&vals, *a)?;
                    ops.push(b.align(&v, *bc, &out_dims));
                }
                let r = b.body(body, &ops, &base, id)?;
                let r = b.num(r);
                let want = ops.iter().any(|o| o.batched);
                b.expand(&r, want, &out_dims, &base)?
            }
            Op::AddN(args) => {
                let vs: Vec<V> = args.iter().map(|&a| val(&vals, a)).collect::<R<_>>()?;
                match vs.as_slice() {
                    [] => return Err(unsupported(g, id, "an empty sum")),
                    [one] => one.clone(),
                    many => {
                        let name = b.push(
                            "Sum",
                            &base,
                            many.iter().map(|v| v.name.clone()).collect(),
                            vec![],
                        );
                        V {
                            name,
                            batched: many.iter().any(|v| v.batched),
                            dims: out_dims,
                        }
                    }
                }
            }
            Op::MatVec(w, x) => {
                let (w, x) = (val(&vals, *w)?, val(&vals, *x)?);
                b.matvec(&w, &x, &base)
            }
            Op::MatVecT(w, d) => {
                // wᵀ d = dᵀ w
                let (w, d) = (val(&vals, *w)?, val(&vals, *d)?);
                b.vecmat(&d, &w, &base)
            }
            Op::VecMat(x, m) => {
                let (x, m) = (val(&vals, *x)?, val(&vals, *m)?);
                b.vecmat(&x, &m, &base)
            }
            Op::MatMul(x, y) => {
                let (x, y) = (val(&vals, *x)?, val(&vals, *y)?);
                b.matmul(&x, &y, &base, out_dims)
            }
            Op::MatMulNT(x, y) => {
                let (x, y) = (val(&vals, *x)?, val(&vals, *y)?);
                let yt = b.transpose(&y);
                b.matmul(&x, &yt, &base, out_dims)
            }
            Op::MatMulTN(x, y) => {
                let (x, y) = (val(&vals, *x)?, val(&vals, *y)?);
                let xt = b.transpose(&x);
                b.matmul(&xt, &y, &base, out_dims)
            }
            Op::Outer(u, w) => {
                let (u, w) = (val(&vals, *u)?, val(&vals, *w)?);
                let uc = b.unsqueeze(&u, &[u.rank() as i64], vec![u.dims[0], 1]);
                let wr = b.unsqueeze(&w, &[B::axis(&w, 0)], vec![1, w.dims[0]]);
                b.binary("Mul", &uc, &wr, &base)
            }
            Op::Sum(a) => {
                let a = val(&vals, *a)?;
                if a.dims.is_empty() {
                    a
                } else {
                    let axes = B::sample_axes(&a);
                    let name = b.reduce_sum(&a, &axes, false, &base);
                    V {
                        name,
                        batched: a.batched,
                        dims: vec![],
                    }
                }
            }
            Op::SumCols(a) | Op::SumRows(a) => {
                let a = val(&vals, *a)?;
                let k = if matches!(node.op, Op::SumCols(_)) {
                    1
                } else {
                    0
                };
                let name = b.reduce_sum(&a, &[B::axis(&a, k)], false, &base);
                V {
                    name,
                    batched: a.batched,
                    dims: out_dims,
                }
            }
            Op::LogSoftmax(a) => {
                let a = val(&vals, *a)?;
                let name = b.push(
                    "LogSoftmax",
                    &base,
                    vec![a.name.clone()],
                    vec![Attr::Int("axis", -1)],
                );
                V { name, ..a }
            }
            Op::LogSoftmaxGrad(y, d) => {
                // d - exp(y) Σ d
                let (y, d) = (val(&vals, *y)?, val(&vals, *d)?);
                let s = b.reduce_sum(&d, &[-1], true, &base);
                let s = V {
                    name: s,
                    batched: d.batched,
                    dims: vec![1],
                };
                let e = b.unary("Exp", &y, &base);
                let p = b.binary("Mul", &e, &s, &base);
                b.binary("Sub", &d, &p, &base)
            }
            Op::LogSumExp(a) | Op::LogSumExpAxis(a, _) => {
                // m + ln Σ exp(a - m), m = max a (over everything, or along the axis)
                let a = val(&vals, *a)?;
                if a.dims.is_empty() {
                    a
                } else {
                    let (axes, out_dims) = match node.op {
                        Op::LogSumExpAxis(_, k) => (vec![B::axis(&a, k)], node.shape.0.clone()),
                        _ => (B::sample_axes(&a), vec![]),
                    };
                    let m = b.push(
                        "ReduceMax",
                        &base,
                        vec![a.name.clone()],
                        vec![Attr::Ints("axes", axes.clone()), Attr::Int("keepdims", 1)],
                    );
                    let mut kept = a.dims.clone();
                    for &ax in &axes {
                        kept[ax as usize - usize::from(a.batched)] = 1;
                    }
                    let m = V {
                        name: m,
                        batched: a.batched,
                        dims: kept,
                    };
                    let sh = b.binary("Sub", &a, &m, &base);
                    let e = b.unary("Exp", &sh, &base);
                    let s = b.reduce_sum(&e, &axes, false, &base);
                    let s = V {
                        name: s,
                        batched: a.batched,
                        dims: out_dims.clone(),
                    };
                    let l = b.unary("Log", &s, &base);
                    let m = b.squeeze(&m, &axes, out_dims);
                    b.binary("Add", &m, &l, &base)
                }
            }
            Op::Norm(a) => {
                // m √(Σ (a / m)²), m = max |a|; 0 where m is not > 0
                let a = val(&vals, *a)?;
                let axes = B::sample_axes(&a);
                let ab = b.unary("Abs", &a, &base);
                let m = if axes.is_empty() {
                    ab
                } else {
                    let m = b.push(
                        "ReduceMax",
                        &base,
                        vec![ab.name.clone()],
                        vec![Attr::Ints("axes", axes.clone()), Attr::Int("keepdims", 1)],
                    );
                    V {
                        name: m,
                        batched: a.batched,
                        dims: vec![1; a.dims.len()],
                    }
                };
                let q = b.binary("Div", &a, &m, &base);
                let sq = b.binary("Mul", &q, &q, &base);
                let s = if axes.is_empty() {
                    sq
                } else {
                    let s = b.reduce_sum(&sq, &axes, false, &base);
                    V {
                        name: s,
                        batched: a.batched,
                        dims: vec![],
                    }
                };
                let r = b.unary("Sqrt", &s, &base);
                let m = if axes.is_empty() {
                    m
                } else {
                    b.squeeze(&m, &axes, vec![])
                };
                let n = b.binary("Mul", &m, &r, &base);
                let zero = b.scalar(0.0);
                let pos = b.binary("Greater", &m, &zero, &base);
                b.select(&pos, &n, &zero, &base)
            }
            Op::Transpose(a) => {
                let a = val(&vals, *a)?;
                b.transpose(&a)
            }
            Op::Slice(a, start) => {
                let a = val(&vals, *a)?;
                let (s, e) = (*start as i64, (*start + node.shape.len()) as i64);
                let (s, e, ax) = (b.iconst(&[s]), b.iconst(&[e]), b.iconst(&[-1]));
                let name = b.push("Slice", &base, vec![a.name.clone(), s, e, ax], vec![]);
                V {
                    name,
                    batched: a.batched,
                    dims: out_dims,
                }
            }
            Op::Pad(a, start) => {
                let a = val(&vals, *a)?;
                let r = a.rank();
                let after = node.shape.len() as i64
                    - *start as i64
                    - a.dims.iter().product::<usize>() as i64;
                let mut pads = vec![0i64; 2 * r];
                pads[r - 1] = *start as i64;
                pads[2 * r - 1] = after;
                let p = b.iconst(&pads);
                let name = b.push("Pad", &base, vec![a.name.clone(), p], vec![]);
                V {
                    name,
                    batched: a.batched,
                    dims: out_dims,
                }
            }
            Op::Concat(x, y) => {
                let (x, y) = (val(&vals, *x)?, val(&vals, *y)?);
                let batched = x.batched || y.batched;
                let x = b.expand(&x, batched, &x.dims.clone(), &base)?;
                let y = b.expand(&y, batched, &y.dims.clone(), &base)?;
                let name = b.push(
                    "Concat",
                    &base,
                    vec![x.name.clone(), y.name.clone()],
                    vec![Attr::Int("axis", -1)],
                );
                V {
                    name,
                    batched,
                    dims: out_dims,
                }
            }
            Op::StatePrev(k) => {
                let st = g
                    .states
                    .get(*k)
                    .ok_or_else(|| unsupported(g, id, "a state without a declaration"))?;
                let is_batched = batched[st.update];
                let init = match &st.init {
                    StateInit::Constant(c) => b.scalar(*c),
                    StateInit::Param(p) => {
                        if !params.contains(p) {
                            params.push(*p);
                            b.used.insert(g.params[*p].name.clone());
                        }
                        V {
                            name: g.params[*p].name.clone(),
                            batched: false,
                            dims: st.shape.0.clone(),
                        }
                    }
                };
                let saved = std::mem::replace(&mut b.place, Place::Before);
                let init =
                    b.expand(&init, is_batched, &st.shape.0, &format!("{}_init", st.name))?;
                b.place = saved;
                let prev = b.fresh(&format!("{}_prev", st.name));
                states.push((*k, prev.clone(), init.name));
                V {
                    name: prev,
                    batched: is_batched,
                    dims: out_dims,
                }
            }
            Op::StepSum(a) | Op::Last(a) => {
                let a = val(&vals, *a)?;
                let op = if matches!(node.op, Op::StepSum(_)) {
                    "nn.StepSum"
                } else {
                    "nn.Last"
                };
                let name = b.push(op, &base, vec![a.name.clone()], vec![]);
                V { name, ..a }
            }
            Op::Target(_)
            | Op::Pick(..)
            | Op::OneHot(..)
            | Op::PickAxis(..)
            | Op::OneHotAxis(..) => {
                return Err(unsupported(g, id, "inference reads no target"));
            }
            // inference: `(x - running_mean) / √(running_var + ε)`, the
            // buffers initialisers under their names (as the generated code
            // computes it, not ONNX's `BatchNormalization`, whose scale and
            // bias are the elementwise product and sum after it)
            Op::BatchNorm(x, k) => {
                let xv = val(&vals, *x)?;
                let d = &g.batch_norms[*k];
                let [mean, var, _] = crate::ops::batchnorm::buffer_names(&d.name);
                for n in [&mean, &var] {
                    b.used.insert(n.clone());
                }
                let buffer = |name: String| V {
                    name,
                    batched: false,
                    dims: vec![d.channels],
                };
                // a signal's or an image's rows: a channel's statistics along its row
                let (mean, var) = if xv.dims.len() == 2 {
                    let column = vec![d.channels, 1];
                    (
                        b.unsqueeze(&buffer(mean), &[1], column.clone()),
                        b.unsqueeze(&buffer(var), &[1], column),
                    )
                } else {
                    (buffer(mean), buffer(var))
                };
                let centred = b.binary("Sub", &xv, &mean, &base);
                let eps = b.scalar(crate::ops::batchnorm::EPS);
                let shifted = b.binary("Add", &var, &eps, &base);
                let std = b.unary("Sqrt", &shifted, &base);
                b.binary("Div", &centred, &std, &base)
            }
            Op::BatchNormGrad(..) => {
                return Err(unsupported(g, id, "not an operation of inference"));
            }
            Op::Tangent(_)
            | Op::Seed
            | Op::Carry(_)
            | Op::EachStep(_)
            | Op::AtLast(_)
            | Op::BatchSum(_)
            | Op::Scatter(..) => {
                return Err(unsupported(g, id, "not an operation of inference"));
            }
            Op::Reshape(a) => {
                let a = val(&vals, *a)?;
                // `0` keeps the batch dimension (Reshape's default `allowzero = 0`)
                let mut shape: Vec<i64> = if a.batched { vec![0] } else { vec![] };
                shape.extend(out_dims.iter().map(|&d| d as i64));
                let shape = b.iconst(&shape);
                let name = b.push("Reshape", &base, vec![a.name.clone(), shape], vec![]);
                V {
                    name,
                    batched: a.batched,
                    dims: out_dims,
                }
            }
            Op::Conv(x, _, win) | Op::MaxPool(x, win) | Op::AvgPool(x, win) => {
                let x = val(&vals, *x)?;
                if !x.batched {
                    return Err(unsupported(
                        g,
                        id,
                        "a window over a value that depends on no input",
                    ));
                }
                let mut attrs = window_attrs(win);
                let (op, inputs) = match &node.op {
                    Op::Conv(_, w, _) => ("Conv", vec![x.name.clone(), val(&vals, *w)?.name]),
                    Op::MaxPool(..) => ("MaxPool", vec![x.name.clone()]),
                    _ => {
                        attrs.push(Attr::Int("count_include_pad", 1));
                        ("AveragePool", vec![x.name.clone()])
                    }
                };
                if matches!(node.op, Op::MaxPool(..) | Op::AvgPool(..)) {
                    attrs.retain(|a| !matches!(a, Attr::Ints("dilations", _)));
                }
                let name = b.push(op, &base, inputs, attrs);
                V {
                    name,
                    batched: true,
                    dims: out_dims,
                }
            }
            // an embedding: the rows of the weight at the samples' tokens
            Op::Gather(w, t) => {
                let (w, t) = (val(&vals, *w)?, val(&vals, *t)?);
                let name = b.push(
                    "Gather",
                    &base,
                    vec![w.name.clone(), t.name.clone()],
                    vec![Attr::Int("axis", 0)],
                );
                V {
                    name,
                    batched: t.batched,
                    dims: out_dims,
                }
            }
            // inference: dropout is the identity, its mask a 1 (broadcast)
            Op::DropoutMask(..) => b.scalar(1.0),
            Op::ConvInput(..)
            | Op::ConvStep(..)
            | Op::ConvWeight(..)
            | Op::MaxPoolGrad(..)
            | Op::MaxPoolPick(..)
            | Op::AvgPoolGrad(..) => {
                return Err(unsupported(g, id, "not an operation of inference"));
            }
        };
        let mut v = v;
        if b.nodes.len() > start && !b.used.contains(&node.name) {
            if let Some(last) = b.nodes.last_mut() {
                if last.output == v.name {
                    b.used.remove(&v.name);
                    last.output = node.name.clone();
                    v.name = node.name.clone();
                    b.used.insert(v.name.clone());
                }
            }
        }
        vals[id] = Some(v);
    }
    // the states' updates, and a batched output
    let mut state_names = vec![];
    for (k, prev, init) in states {
        let st = &g.states[k];
        let upd = vals[st.update]
            .clone()
            .ok_or_else(|| unsupported(g, st.update, "a state update has no ONNX value"))?;
        if upd.batched != batched[st.update] {
            return Err(unsupported(
                g,
                st.update,
                "a state update changes its batch form",
            ));
        }
        state_names.push((prev, init, upd.name));
    }
    let out_node = &g.nodes[g.output];
    let out = vals[g.output]
        .clone()
        .ok_or_else(|| unsupported(g, g.output, "the output has no ONNX value"))?;
    b.place = match regions[g.output] {
        Region::Before => Place::Before,
        Region::Step => Place::Step,
        Region::After => Place::After,
    };
    let out = b.expand(&out, true, &out_node.shape.0, &out_node.name)?;
    let per_step = regions[g.output] == Region::Step;
    Ok(Desc {
        steps: g.steps.map_or(0, |s| s.count),
        inputs,
        output: Io {
            name: out_name,
            value: out.name,
            dims: out_node.shape.0.clone(),
            per_step,
            classes: false,
        },
        params,
        consts: b.consts,
        states: state_names,
        nodes: b.nodes,
    })
}
