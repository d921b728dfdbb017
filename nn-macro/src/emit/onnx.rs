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
                let (name, value, per_step) = (&io.name, &io.value, io.per_step);
                let dims = io.dims.iter().map(|&d| Literal::usize_unsuffixed(d));
                quote!(Io { name: #name, value: #value, dims: &[#(#dims),*], per_step: #per_step })
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

impl B<'_> {
    /// A new value name: `base`, or `base_2`, `base_3`, ... if taken.
    fn fresh(&mut self, base: &str) -> String {
        let base: String = base
            .chars()
            .map(|c| if c == '@' { '_' } else { c })
            .collect();
        let mut name = base.clone();
        // the next suffix to try for this base: linear in the number of
        // names, however many share a base
        let k = self.suffix.entry(base.clone()).or_insert(2);
        while self.used.contains(&name) {
            name = format!("{base}_{k}");
            *k += 1;
        }
        self.used.insert(name.clone());
        name
    }

    fn push(
        &mut self,
        op: &'static str,
        base: &str,
        inputs: Vec<String>,
        attrs: Vec<Attr>,
    ) -> String {
        let output = self.fresh(base);
        self.nodes.push(ONode {
            op,
            place: self.place,
            inputs,
            output: output.clone(),
            attrs,
        });
        output
    }

    /// A node in the region before the loop (for values every step shares).
    fn push_before(
        &mut self,
        op: &'static str,
        base: &str,
        inputs: Vec<String>,
        attrs: Vec<Attr>,
    ) -> String {
        let saved = std::mem::replace(&mut self.place, Place::Before);
        let out = self.push(op, base, inputs, attrs);
        self.place = saved;
        out
    }

    fn fconst(&mut self, v: f64) -> String {
        let key = v.to_bits();
        if let Some(n) = self.float_consts.get(&key) {
            return n.clone();
        }
        let name = self.fresh(&format!("const_{}", self.float_consts.len()));
        self.consts.push(OConst::Float(name.clone(), v));
        self.float_consts.insert(key, name.clone());
        name
    }

    fn iconst(&mut self, vs: &[i64]) -> String {
        if let Some(n) = self.int_consts.get(vs) {
            return n.clone();
        }
        let name = self.fresh(&format!("ints_{}", self.int_consts.len()));
        self.consts.push(OConst::Int(name.clone(), vs.to_vec()));
        self.int_consts.insert(vs.to_vec(), name.clone());
        name
    }

    /// The batch size as a one-element int64 tensor (from the first input's shape).
    fn batch_dim(&mut self) -> R<String> {
        if let Some(n) = &self.batch_dim {
            return Ok(n.clone());
        }
        let Some(x) = self.first_input.clone() else {
            return Err(Unsupported {
                op: "output".into(),
                binding: self.g.nodes[self.g.output].name.clone(),
                reason: "the network has no input to take the batch size from".into(),
            });
        };
        let shape = self.push_before("Shape", "input_shape", vec![x], vec![]);
        let (zero, one) = (self.iconst(&[0]), self.iconst(&[1]));
        let n = self.push_before("Slice", "batch_size", vec![shape, zero, one], vec![]);
        self.batch_dim = Some(n.clone());
        Ok(n)
    }

    /// `v` broadcast to `[N] + dims` (`batched`) or `dims`.
    fn expand(&mut self, v: &V, batched: bool, dims: &[usize], base: &str) -> R<V> {
        if v.batched == batched && v.dims == dims {
            return Ok(v.clone());
        }
        let d: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        let shape = if batched {
            let n = self.batch_dim()?;
            let rest = self.iconst(&d);
            self.push_before(
                "Concat",
                "expand_shape",
                vec![n, rest],
                vec![Attr::Int("axis", 0)],
            )
        } else {
            self.iconst(&d)
        };
        let name = self.push("Expand", base, vec![v.name.clone(), shape], vec![]);
        Ok(V {
            name,
            batched,
            dims: dims.to_vec(),
        })
    }

    fn unsqueeze(&mut self, v: &V, axes: &[i64], dims: Vec<usize>) -> V {
        if axes.is_empty() {
            return v.clone();
        }
        let a = self.iconst(axes);
        let name = self.push("Unsqueeze", &v.name, vec![v.name.clone(), a], vec![]);
        V {
            name,
            batched: v.batched,
            dims,
        }
    }

    fn squeeze(&mut self, v: &V, axes: &[i64], dims: Vec<usize>) -> V {
        let a = self.iconst(axes);
        let name = self.push("Squeeze", &v.name, vec![v.name.clone(), a], vec![]);
        V {
            name,
            batched: v.batched,
            dims,
        }
    }

    /// The ONNX axis of per-sample axis `k` of `v`.
    fn axis(v: &V, k: usize) -> i64 {
        (k + usize::from(v.batched)) as i64
    }

    /// The per-sample axes of `v`, as ONNX axes.
    fn sample_axes(v: &V) -> Vec<i64> {
        (0..v.dims.len()).map(|k| Self::axis(v, k)).collect()
    }

    /// Swaps the last two axes.
    fn transpose(&mut self, v: &V) -> V {
        let r = v.rank();
        let mut perm: Vec<i64> = (0..r as i64).collect();
        perm.swap(r - 2, r - 1);
        let name = self.push(
            "Transpose",
            &format!("{}_t", v.name),
            vec![v.name.clone()],
            vec![Attr::Ints("perm", perm)],
        );
        let mut dims = v.dims.clone();
        let n = dims.len();
        dims.swap(n - 2, n - 1);
        V {
            name,
            batched: v.batched,
            dims,
        }
    }

    fn reduce_sum(&mut self, v: &V, axes: &[i64], keep: bool, base: &str) -> String {
        let a = self.iconst(axes);
        self.push(
            "ReduceSum",
            base,
            vec![v.name.clone(), a],
            vec![Attr::Int("keepdims", i64::from(keep))],
        )
    }

    /// A binary elementwise node; the result's shape is the broadcast of both.
    fn binary(&mut self, op: &'static str, a: &V, b: &V, base: &str) -> V {
        let name = self.push(op, base, vec![a.name.clone(), b.name.clone()], vec![]);
        V {
            name,
            batched: a.batched || b.batched,
            dims: broadcast(&a.dims, &b.dims),
        }
    }

    fn unary(&mut self, op: &'static str, a: &V, base: &str) -> V {
        let name = self.push(op, base, vec![a.name.clone()], vec![]);
        V {
            name,
            batched: a.batched,
            dims: a.dims.clone(),
        }
    }

    fn scalar(&mut self, v: f64) -> V {
        V {
            name: self.fconst(v),
            batched: false,
            dims: vec![],
        }
    }

    /// The product `a @ b` of two matrices (or stacks of them).
    fn matmul(&mut self, a: &V, b: &V, base: &str, dims: Vec<usize>) -> V {
        let name = self.push("MatMul", base, vec![a.name.clone(), b.name.clone()], vec![]);
        V {
            name,
            batched: a.batched || b.batched,
            dims,
        }
    }

    /// `w · x` for `w: [m, k]`, `x: [k]` (either of them batched).
    fn matvec(&mut self, w: &V, x: &V, base: &str) -> V {
        let m = w.dims[0];
        if !w.batched && x.batched {
            // [N, k] · wᵀ: what `nn.Linear` exports as
            let name = self.push(
                "Gemm",
                base,
                vec![x.name.clone(), w.name.clone()],
                vec![Attr::Int("transB", 1)],
            );
            return V {
                name,
                batched: true,
                dims: vec![m],
            };
        }
        // [.., m, k] @ [.., k, 1] -> [.., m, 1] -> [.., m]
        let xc = self.unsqueeze(x, &[x.rank() as i64], vec![x.dims[0], 1]);
        let p = self.matmul(w, &xc, base, vec![m, 1]);
        let r = p.rank() as i64;
        self.squeeze(&p, &[r - 1], vec![m])
    }

    /// `xᵀ · b` for `x: [k]`, `b: [k, n]`.
    fn vecmat(&mut self, x: &V, b: &V, base: &str) -> V {
        let n = b.dims[1];
        if x.batched && !b.batched {
            return self.matmul(x, b, base, vec![n]);
        }
        // [.., 1, k] @ [.., k, n] -> [.., 1, n] -> [.., n]
        let xr = self.unsqueeze(x, &[Self::axis(x, 0)], vec![1, x.dims[0]]);
        let p = self.matmul(&xr, b, base, vec![1, n]);
        let r = p.rank() as i64;
        self.squeeze(&p, &[r - 2], vec![n])
    }

    /// An operand of an elementwise node, given the same rank as the output
    /// (`bcast` tells which axes it runs along), so that ONNX's broadcasting
    /// (aligned at the last axis) pairs the right elements.
    fn align(&mut self, v: &V, bcast: Bcast, out: &[usize]) -> V {
        let r = out.len();
        match bcast {
            Bcast::Full => v.clone(),
            Bcast::Scalar if v.batched => {
                let axes: Vec<i64> = (1..=r as i64).collect();
                self.unsqueeze(v, &axes, vec![1; r])
            }
            Bcast::Scalar => v.clone(),
            // a vector [m] along the columns of [m, n]: [m, 1]
            Bcast::Col => {
                let ax = v.rank() as i64;
                self.unsqueeze(v, &[ax], vec![v.dims[0], 1])
            }
            // a vector [n] along the rows of [m, n]: [1, n]
            Bcast::Row if v.batched => self.unsqueeze(v, &[1], vec![1, v.dims[0]]),
            Bcast::Row => v.clone(),
        }
    }
}

/// The broadcast of two per-sample shapes (aligned at the last axis).
fn broadcast(a: &[usize], b: &[usize]) -> Vec<usize> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|k| {
            let da = (k + a.len()).checked_sub(r).map_or(1, |i| a[i]);
            let db = (k + b.len()).checked_sub(r).map_or(1, |i| b[i]);
            da.max(db)
        })
        .collect()
}

/// A scalar expression's value: a number, or the truth of a comparison
/// (ONNX booleans, turned into numbers where used as one).
enum Sv {
    Num(V),
    Bool(V),
}

impl B<'_> {
    fn num(&mut self, s: Sv) -> V {
        match s {
            Sv::Num(v) => v,
            Sv::Bool(b) => {
                let elem = self.elem;
                let name = self.push(
                    "Cast",
                    &format!("{}_num", b.name),
                    vec![b.name.clone()],
                    vec![Attr::Int("to", elem)],
                );
                V { name, ..b }
            }
        }
    }

    fn cond(&mut self, s: Sv, base: &str) -> V {
        match s {
            Sv::Bool(b) => b,
            Sv::Num(v) => {
                let zero = self.scalar(0.0);
                let eq = self.binary("Equal", &v, &zero, base);
                self.unary("Not", &eq, base)
            }
        }
    }

    /// One elementwise body over its aligned operands.
    fn body(&mut self, s: &S, args: &[V], base: &str, id: NodeId) -> R<Sv> {
        let go = |b: &mut Self, s: &S| -> R<V> {
            let v = b.body(s, args, base, id)?;
            Ok(b.num(v))
        };
        Ok(match s {
            S::Arg(k) => match args.get(*k) {
                Some(v) => Sv::Num(v.clone()),
                None => {
                    return Err(unsupported(
                        self.g,
                        id,
                        "an elementwise body reads a missing operand",
                    ))
                }
            },
            S::Out => {
                return Err(unsupported(
                    self.g,
                    id,
                    "an elementwise body reads its own output",
                ))
            }
            S::Const(c) => Sv::Num(self.scalar(*c)),
            S::Neg(a) => {
                let a = go(self, a)?;
                Sv::Num(self.unary("Neg", &a, base))
            }
            // a long left-nested chain `((a + b) + c) + ...`: one `Sum`
            S::Add(..) if matches!(s, S::Add(a, _) if matches!(**a, S::Add(..))) => {
                let mut terms = vec![];
                let mut at = s;
                while let S::Add(a, b) = at {
                    terms.push(&**b);
                    at = a;
                }
                terms.push(at);
                terms.reverse();
                let mut vs = vec![];
                for t in terms {
                    vs.push(go(self, t)?);
                }
                let name = self.push(
                    "Sum",
                    base,
                    vs.iter().map(|v| v.name.clone()).collect(),
                    vec![],
                );
                let dims = vs.iter().fold(vec![], |d, v| broadcast(&d, &v.dims));
                Sv::Num(V {
                    name,
                    batched: vs.iter().any(|v| v.batched),
                    dims,
                })
            }
            S::Add(a, b) | S::Sub(a, b) | S::Mul(a, b) | S::Div(a, b) => {
                let op = match s {
                    S::Add(..) => "Add",
                    S::Sub(..) => "Sub",
                    S::Mul(..) => "Mul",
                    _ => "Div",
                };
                let (a, b) = (go(self, a)?, go(self, b)?);
                Sv::Num(self.binary(op, &a, &b, base))
            }
            S::Pow(a, e) => {
                let a = go(self, a)?;
                Sv::Num(self.pow(&a, *e, base))
            }
            S::Call(f, a) => {
                let a = go(self, a)?;
                Sv::Num(self.call(f.name(), &a, base, id)?)
            }
            S::Cmp(op, a, b) => {
                let (a, b) = (go(self, a)?, go(self, b)?);
                Sv::Bool(self.compare(*op, &a, &b, base))
            }
            S::Select(p, a, b) => {
                let p = self.body(p, args, base, id)?;
                let p = self.cond(p, base);
                let (a, b) = (go(self, a)?, go(self, b)?);
                Sv::Num(self.select(&p, &a, &b, base))
            }
        })
    }

    fn select(&mut self, p: &V, a: &V, b: &V, base: &str) -> V {
        let name = self.push(
            "Where",
            base,
            vec![p.name.clone(), a.name.clone(), b.name.clone()],
            vec![],
        );
        V {
            name,
            batched: p.batched || a.batched || b.batched,
            dims: broadcast(&broadcast(&p.dims, &a.dims), &b.dims),
        }
    }

    fn compare(&mut self, op: Cmp, a: &V, b: &V, base: &str) -> V {
        match op {
            Cmp::Lt => self.binary("Less", a, b, base),
            Cmp::Gt => self.binary("Greater", a, b, base),
            Cmp::Le => self.binary("LessOrEqual", a, b, base),
            Cmp::Ge => self.binary("GreaterOrEqual", a, b, base),
            Cmp::Eq => self.binary("Equal", a, b, base),
            Cmp::Ne => {
                let eq = self.binary("Equal", a, b, base);
                self.unary("Not", &eq, base)
            }
        }
    }

    /// `a ^ e` as the generated code computes it: repeated products for an
    /// integer exponent (`powi`), `Pow` otherwise.
    fn pow(&mut self, a: &V, e: f64, base: &str) -> V {
        if e.fract() == 0.0 && e.abs() <= 64.0 {
            let n = e.abs() as u32;
            if n == 0 {
                // 1 in a's shape, for every x (NaN included), as `powi(0)`
                let one = self.scalar(1.0);
                let t = self.binary("Equal", a, a, base);
                return self.select(&t, &one, &one, base);
            }
            // binary powering, as `powi`
            let mut result: Option<V> = None;
            let mut sq = a.clone();
            let mut k = n;
            loop {
                if k & 1 == 1 {
                    result = Some(match result {
                        None => sq.clone(),
                        Some(r) => self.binary("Mul", &r, &sq, base),
                    });
                }
                k >>= 1;
                if k == 0 {
                    break;
                }
                sq = self.binary("Mul", &sq, &sq, base);
            }
            let r = result.unwrap_or_else(|| a.clone());
            if e < 0.0 {
                let one = self.scalar(1.0);
                return self.binary("Div", &one, &r, base);
            }
            return r;
        }
        let c = self.scalar(e);
        self.binary("Pow", a, &c, base)
    }

    /// A primitive function of the elementwise table.
    fn call(&mut self, f: &str, a: &V, base: &str, id: NodeId) -> R<V> {
        let direct = match f {
            "sigmoid" => Some("Sigmoid"),
            "tanh" => Some("Tanh"),
            "relu" => Some("Relu"),
            "exp" => Some("Exp"),
            "log" => Some("Log"),
            "sqrt" => Some("Sqrt"),
            "abs" => Some("Abs"),
            "erf" => Some("Erf"),
            "sign" => Some("Sign"),
            "sin" => Some("Sin"),
            "cos" => Some("Cos"),
            _ => None,
        };
        if let Some(op) = direct {
            return Ok(self.unary(op, a, base));
        }
        Ok(match f {
            // 1 where x > 0, else 0
            "step" => {
                let zero = self.scalar(0.0);
                let gt = self.binary("Greater", a, &zero, base);
                self.num(Sv::Bool(gt))
            }
            // max(x, 0) + log1p(e^-|x|): ONNX's `Softplus` is ln(eˣ + 1),
            // which overflows for large x and loses small results
            "softplus" => {
                let ab = self.unary("Abs", a, base);
                let neg = self.unary("Neg", &ab, base);
                let e = self.unary("Exp", &neg, base);
                let l = self.log1p_small(&e, base);
                let r = self.unary("Relu", a, base);
                self.binary("Add", &r, &l, base)
            }
            "log1p" => {
                // ln(1 + x), accurate near 0: x ln(u) / (u - 1) for u = 1 + x
                // (x itself where u rounds to 1); plain ln(u) above 1
                let small = self.log1p_small(a, base);
                let one = self.scalar(1.0);
                let u = self.binary("Add", &one, a, base);
                let ln = self.unary("Log", &u, base);
                let big = self.binary("Greater", a, &one, base);
                self.select(&big, &ln, &small, base)
            }
            "expm1" => {
                // eˣ - 1, accurate near 0: (u - 1) x / ln(u) for u = eˣ (x
                // itself where u rounds to 1); plain u - 1 beyond |x| > 1
                let one = self.scalar(1.0);
                let u = self.unary("Exp", a, base);
                let um1 = self.binary("Sub", &u, &one, base);
                let ln = self.unary("Log", &u, base);
                let num = self.binary("Mul", &um1, a, base);
                let q = self.binary("Div", &num, &ln, base);
                let is_one = self.binary("Equal", &u, &one, base);
                let small = self.select(&is_one, a, &q, base);
                let ab = self.unary("Abs", a, base);
                let big = self.binary("Greater", &ab, &one, base);
                self.select(&big, &um1, &small, base)
            }
            other => {
                return Err(unsupported(
                    self.g,
                    id,
                    &format!("the elementwise function `{other}` has no ONNX form"),
                ))
            }
        })
    }

    /// ln(1 + y) for y >= -1 where 1 + y may round: y ln(u) / (u - 1),
    /// `u = 1 + y`, and y itself where u rounds to 1.
    fn log1p_small(&mut self, y: &V, base: &str) -> V {
        let one = self.scalar(1.0);
        let u = self.binary("Add", &one, y, base);
        let d = self.binary("Sub", &u, &one, base);
        let ln = self.unary("Log", &u, base);
        let num = self.binary("Mul", &ln, y, base);
        let q = self.binary("Div", &num, &d, base);
        let zero = self.scalar(0.0);
        let exact = self.binary("Equal", &d, &zero, base);
        self.select(&exact, y, &q, base)
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
        if d.classes.is_some() {
            return Err(Unsupported {
                op: format!("input `{}`", d.name),
                binding: d.name.clone(),
                reason: "class-index inputs have no ONNX form here".into(),
            });
        }
        let name = b.fresh(&d.name);
        if b.first_input.is_none() {
            b.first_input = Some(name.clone());
        }
        inputs.push(Io {
            name: name.clone(),
            value: name,
            dims: d.shape.0.clone(),
            per_step: d.per_step,
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
            Op::LogSumExp(a) => {
                // m + ln Σ exp(a - m), m = max a
                let a = val(&vals, *a)?;
                if a.dims.is_empty() {
                    a
                } else {
                    let axes = B::sample_axes(&a);
                    let m = b.push(
                        "ReduceMax",
                        &base,
                        vec![a.name.clone()],
                        vec![Attr::Ints("axes", axes.clone()), Attr::Int("keepdims", 1)],
                    );
                    let m = V {
                        name: m,
                        batched: a.batched,
                        dims: vec![1; a.dims.len()],
                    };
                    let sh = b.binary("Sub", &a, &m, &base);
                    let e = b.unary("Exp", &sh, &base);
                    let s = b.reduce_sum(&e, &axes, false, &base);
                    let s = V {
                        name: s,
                        batched: a.batched,
                        dims: vec![],
                    };
                    let l = b.unary("Log", &s, &base);
                    let m = b.squeeze(&m, &axes, vec![]);
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
            Op::Target(_) | Op::Pick(..) | Op::OneHot(..) => {
                return Err(unsupported(g, id, "inference reads no target"));
            }
            Op::Tangent(_) | Op::Carry(_) | Op::EachStep(_) | Op::AtLast(_) | Op::BatchSum(_) => {
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
        },
        params,
        consts: b.consts,
        states: state_names,
        nodes: b.nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expand::compile;

    fn desc(text: &str) -> R<Desc> {
        let c = compile(text, None).expect("compiles");
        describe(&c.sample)
    }

    fn ops(d: &Desc) -> Vec<&'static str> {
        d.nodes.iter().map(|n| n.op).collect()
    }

    #[test]
    fn a_dense_layer_is_one_gemm() {
        let d = desc("input x[2]; target y[1]; h = sigmoid(dense(x, 4)); out = sigmoid(dense(h, 1)); loss = mse(out, y);")
            .expect("exports");
        assert_eq!(d.params, vec![0, 1, 2, 3]);
        assert_eq!(d.inputs[0].name, "x");
        assert_eq!(d.output.name, "out");
        let ops = ops(&d);
        assert_eq!(ops.iter().filter(|o| **o == "Gemm").count(), 2, "{ops:?}");
        assert_eq!(
            ops.iter().filter(|o| **o == "Sigmoid").count(),
            2,
            "{ops:?}"
        );
        // every node's inputs are defined before it
        let mut defined: HashSet<String> = d.inputs.iter().map(|i| i.name.clone()).collect();
        defined.extend(["h.weight", "h.bias", "out.weight", "out.bias"].map(String::from));
        for c in &d.consts {
            match c {
                OConst::Float(n, _) | OConst::Int(n, _) => defined.insert(n.clone()),
            };
        }
        for n in &d.nodes {
            for i in &n.inputs {
                assert!(defined.contains(i), "{i} used before defined");
            }
            assert!(
                defined.insert(n.output.clone()),
                "{} defined twice",
                n.output
            );
        }
    }

    #[test]
    fn an_operation_without_an_onnx_form_is_named() {
        let text = "input x[2]; target y[2]; h = dense(x, 2); out = tanh(h); loss = mse(out, y);";
        let mut g = compile(text, None).expect("compiles").sample;
        // an output computed from a target (which inference never reads)
        let t = g
            .nodes
            .iter()
            .position(|n| n.op == Op::Target(0))
            .expect("target");
        let out = g.output;
        g.nodes[out].op = Op::Map {
            args: vec![t],
            bcast: vec![Bcast::Full],
            body: S::Arg(0),
        };
        let e = describe(&g).expect_err("unsupported");
        assert_eq!(e.op, "target `y`");
        assert_eq!(e.reason, "inference reads no target");
        // an operation of the backward pass only
        let mut g = compile(text, None).expect("compiles").sample;
        g.nodes[out].op = Op::BatchSum(t);
        let e = describe(&g).expect_err("unsupported");
        assert_eq!((e.op.as_str(), e.binding.as_str()), ("target `y`", "y"));
        let mut g = compile(text, None).expect("compiles").sample;
        g.nodes[out].op = Op::Tangent(0);
        let e = describe(&g).expect_err("unsupported");
        assert_eq!(e.op, "tangent");
        assert_eq!(e.reason, "not an operation of inference");
        // and the expansion carries the error, not a graph
        let tokens = onnx_export(&g, "Net").to_string();
        assert!(tokens.contains("Export :: Unsupported"), "{tokens}");
        assert!(tokens.contains("\"tangent\""), "{tokens}");
    }

    #[test]
    fn recurrent_definitions_describe_one_step() {
        let d = desc("steps 5; input x[t][2]; target y[t][1]; state h[3] = zeros; param wh[3, 3] = xavier; \
            h[t] = tanh(wh @ h[t-1] + dense(x[t], 3)); out[t] = dense(h[t], 1); loss = mean_steps(mse(out[t], y[t]));")
            .expect("exports");
        assert_eq!(d.steps, 5);
        assert_eq!(d.states.len(), 1);
        assert!(d.output.per_step && d.inputs[0].per_step);
        assert!(d
            .nodes
            .iter()
            .any(|n| n.place == Place::Step && n.op == "Tanh"));
    }
}
