//! Elementwise functions: the scalar primitives (one entry each in
//! [`FUNCS`]: value, derivative, the method generated code calls), the
//! language's elementwise built-ins (primitives callable by name, and
//! composite ones in [`BUILTINS`]), and the graph's elementwise operations
//! (`Map`: a scalar expression applied at every index; `AddN`: a sum of
//! adjoint contributions).

use super::{prims, Builtin, Lower, Vjp};
use crate::emit::ex::Ex;
use crate::emit::{Mode, Place};
use crate::ir::*;
use crate::lower::{broadcast_all, Cx, Lowered, Reported, Value};
use crate::opt::simplify::simplify;
use crate::scalar::{build::*, Cmp, Func, S};
use nn_grammar::{Diagnostic, Expr, Span};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// An elementwise primitive: a scalar function of one argument.
pub struct ScalarFn {
    /// Its name in definitions and in the maths docs.
    pub name: &'static str,
    /// Whether a definition may call it by name (some exist only as
    /// derivatives of others: `step`, `sign`, `erf`).
    pub callable: bool,
    /// The method the generated code calls on an `f32`/`f64` (the standard
    /// library's, or `nn_runtime::Activations`').
    pub method: &'static str,
    /// The same function in PyTorch, `{x}` standing for the operand (the
    /// exported module's forward pass).
    pub torch: &'static str,
    /// Its value in f64 (constant folding, the reference interpreter).
    pub value: fn(f64) -> f64,
    /// Its derivative `f'(x)`, given the operand `x` and the call `f(x)`
    /// itself (so it may read the stored output: `sigmoid' = s (1 - s)`).
    pub derivative: fn(S, S) -> S,
}

/// Every elementwise primitive. The position is the [`Func`]'s id (the
/// constants below name the ones other rules refer to).
pub static FUNCS: &[ScalarFn] = &[
    ScalarFn {
        name: "sigmoid",
        torch: "torch.sigmoid({x})",
        callable: true,
        method: "sigmoid",
        value: prims::sigmoid,
        // sigmoid' = s (1 - s)
        derivative: |_, s| mul(s.clone(), sub(c(1.0), s)),
    },
    ScalarFn {
        name: "tanh",
        torch: "torch.tanh({x})",
        callable: true,
        method: "tanh",
        value: f64::tanh,
        // tanh' = 1 - t²
        derivative: |_, t| sub(c(1.0), pow(t, 2.0)),
    },
    ScalarFn {
        name: "relu",
        torch: "torch.relu({x})",
        callable: true,
        method: "relu",
        value: prims::relu,
        // relu' = step(relu(x)) = step(x), 0 at 0: written in terms of the
        // output, so the backward pass reads the stored activation
        derivative: |_, r| call(Func::STEP, r),
    },
    ScalarFn {
        name: "exp",
        torch: "torch.exp({x})",
        callable: true,
        method: "exp",
        value: f64::exp,
        // exp' = exp
        derivative: |_, e| e,
    },
    ScalarFn {
        name: "log",
        torch: "torch.log({x})",
        callable: true,
        method: "ln",
        value: f64::ln,
        // log' = 1 / x
        derivative: |x, _| div(c(1.0), x),
    },
    ScalarFn {
        name: "sqrt",
        torch: "torch.sqrt({x})",
        callable: true,
        method: "sqrt",
        value: f64::sqrt,
        // sqrt' = 1 / (2 sqrt)
        derivative: |_, r| div(c(0.5), r),
    },
    ScalarFn {
        name: "abs",
        torch: "torch.abs({x})",
        callable: true,
        method: "abs",
        value: f64::abs,
        // abs' = sign (0 at 0)
        derivative: |x, _| call(Func::SIGN, x),
    },
    ScalarFn {
        name: "softplus",
        torch: "F.softplus({x})",
        callable: true,
        method: "softplus",
        value: prims::softplus,
        // softplus' = sigmoid
        derivative: |x, _| call(Func::SIGMOID, x),
    },
    ScalarFn {
        name: "erf",
        torch: "torch.erf({x})",
        callable: false,
        // not `erf`: the standard library may gain an inherent `erf`
        method: "error_fn",
        value: prims::erf,
        // erf' = 2/√π e^(-x²)
        derivative: |x, _| {
            mul(
                c(std::f64::consts::FRAC_2_SQRT_PI),
                call(Func::EXP, neg(pow(x, 2.0))),
            )
        },
    },
    ScalarFn {
        name: "step",
        torch: "({x} > 0).to({x}.dtype)",
        callable: false,
        method: "step",
        value: prims::step,
        // piecewise constant
        derivative: |_, _| c(0.0),
    },
    ScalarFn {
        name: "sign",
        torch: "torch.sign({x})",
        callable: false,
        method: "sign0",
        value: prims::sign,
        // piecewise constant
        derivative: |_, _| c(0.0),
    },
    ScalarFn {
        name: "log1p",
        torch: "torch.log1p({x})",
        callable: true,
        method: "ln_1p",
        value: f64::ln_1p,
        // log1p' = 1 / (1 + x)
        derivative: |x, _| div(c(1.0), add(c(1.0), x)),
    },
    ScalarFn {
        name: "expm1",
        torch: "torch.expm1({x})",
        callable: true,
        method: "exp_m1",
        value: f64::exp_m1,
        // expm1' = eˣ = expm1(x) + 1
        derivative: |_, e| add(e, c(1.0)),
    },
    ScalarFn {
        name: "sin",
        torch: "torch.sin({x})",
        callable: true,
        method: "sin",
        value: f64::sin,
        // sin' = cos
        derivative: |x, _| call(Func::COS, x),
    },
    ScalarFn {
        name: "cos",
        torch: "torch.cos({x})",
        callable: true,
        method: "cos",
        value: f64::cos,
        // cos' = -sin
        derivative: |x, _| neg(call(Func::SIN, x)),
    },
];

impl Func {
    /// `sigmoid`.
    pub const SIGMOID: Func = Func(0);
    /// `tanh`.
    pub const TANH: Func = Func(1);
    /// `exp`.
    pub const EXP: Func = Func(3);
    /// `abs`.
    pub const ABS: Func = Func(6);
    /// `softplus`.
    pub const SOFTPLUS: Func = Func(7);
    /// The error function.
    pub const ERF: Func = Func(8);
    /// `1` where `x > 0`, else `0`.
    pub const STEP: Func = Func(9);
    /// `-1`, `0` or `1`.
    pub const SIGN: Func = Func(10);
    /// `sin`.
    pub const SIN: Func = Func(13);
    /// `cos`.
    pub const COS: Func = Func(14);

    /// The method the generated code calls.
    pub fn method(self) -> &'static str {
        FUNCS[self.0 as usize].method
    }
}

/// A callable primitive as a built-in function.
pub fn callable(name: &str) -> Option<Builtin> {
    let k = FUNCS.iter().position(|f| f.callable && f.name == name)?;
    Some(Builtin {
        name: FUNCS[k].name,
        min_args: 1,
        max_args: 1,
        signature: "",
        lower: Lower::Primitive(Func(k as u8)),
    })
}

/// The names of the callable primitives.
pub fn callable_names() -> Vec<&'static str> {
    FUNCS
        .iter()
        .filter(|f| f.callable)
        .map(|f| f.name)
        .collect()
}

fn x() -> S {
    S::Arg(0)
}

/// `lo` below `lo`, `hi` above `hi` (both inclusive: the derivative there
/// is 0, as PyTorch's `hardtanh` and `hardsigmoid` have it), else `inner`.
fn clip(inner: S, at_lo: f64, lo: f64, at_hi: f64, hi: f64) -> S {
    select(
        cmp(Cmp::Le, x(), c(at_lo)),
        c(lo),
        select(cmp(Cmp::Ge, x(), c(at_hi)), c(hi), inner),
    )
}

/// The elementwise built-ins that are not a single primitive.
pub static BUILTINS: &[Builtin] = &[
    Builtin {
        name: "square",
        min_args: 1,
        max_args: 1,
        signature: "square(x)",
        lower: Lower::Unary(|| pow(x(), 2.0)),
    },
    Builtin {
        name: "pow",
        min_args: 2,
        max_args: 2,
        signature: "pow(x, c)",
        lower: Lower::Custom(lower_pow),
    },
    Builtin {
        name: "leaky_relu",
        min_args: 1,
        max_args: 2,
        signature: "leaky_relu(x)` or `leaky_relu(x, alpha)",
        lower: Lower::Custom(lower_sloped),
    },
    Builtin {
        name: "elu",
        min_args: 1,
        max_args: 2,
        signature: "elu(x)` or `elu(x, alpha)",
        lower: Lower::Custom(lower_sloped),
    },
    // x Φ(x) with the tanh approximation of Φ
    Builtin {
        name: "gelu",
        min_args: 1,
        max_args: 1,
        signature: "gelu(x)",
        lower: Lower::Unary(|| {
            mul(
                mul(c(0.5), x()),
                add(
                    c(1.0),
                    call(
                        Func::TANH,
                        mul(
                            c((2.0 / std::f64::consts::PI).sqrt()),
                            add(x(), mul(c(0.044715), pow(x(), 3.0))),
                        ),
                    ),
                ),
            )
        }),
    },
    // x Φ(x) = x (1 + erf(x / √2)) / 2
    Builtin {
        name: "gelu_exact",
        min_args: 1,
        max_args: 1,
        signature: "gelu_exact(x)",
        lower: Lower::Unary(|| {
            mul(
                mul(c(0.5), x()),
                add(
                    c(1.0),
                    call(Func::ERF, mul(c(std::f64::consts::FRAC_1_SQRT_2), x())),
                ),
            )
        }),
    },
    // silu = swish = x sigmoid(x)
    Builtin {
        name: "silu",
        min_args: 1,
        max_args: 1,
        signature: "silu(x)",
        lower: Lower::Unary(|| mul(x(), call(Func::SIGMOID, x()))),
    },
    Builtin {
        name: "swish",
        min_args: 1,
        max_args: 1,
        signature: "swish(x)",
        lower: Lower::Unary(|| mul(x(), call(Func::SIGMOID, x()))),
    },
    Builtin {
        name: "softsign",
        min_args: 1,
        max_args: 1,
        signature: "softsign(x)",
        lower: Lower::Unary(|| div(x(), add(c(1.0), call(Func::ABS, x())))),
    },
    // -1 at or below -1, 1 at or above 1, else x
    Builtin {
        name: "hardtanh",
        min_args: 1,
        max_args: 1,
        signature: "hardtanh(x)",
        lower: Lower::Unary(|| clip(x(), -1.0, -1.0, 1.0, 1.0)),
    },
    // PyTorch's hardsigmoid: 0 at or below -3, 1 at or above 3, else x / 6 + 1/2
    Builtin {
        name: "hard_sigmoid",
        min_args: 1,
        max_args: 1,
        signature: "hard_sigmoid(x)",
        lower: Lower::Unary(|| clip(add(div(x(), c(6.0)), c(0.5)), -3.0, 0.0, 3.0, 1.0)),
    },
    // x tanh(softplus(x))
    Builtin {
        name: "mish",
        min_args: 1,
        max_args: 1,
        signature: "mish(x)",
        lower: Lower::Unary(|| mul(x(), call(Func::TANH, call(Func::SOFTPLUS, x())))),
    },
    Builtin {
        name: "min",
        min_args: 2,
        max_args: 2,
        signature: "min(a, b)",
        lower: Lower::Custom(lower_select),
    },
    Builtin {
        name: "max",
        min_args: 2,
        max_args: 2,
        signature: "max(a, b)",
        lower: Lower::Custom(lower_select),
    },
    Builtin {
        name: "clamp",
        min_args: 3,
        max_args: 3,
        signature: "clamp(x, lo, hi)",
        lower: Lower::Custom(lower_select),
    },
    Builtin {
        name: "where",
        min_args: 3,
        max_args: 3,
        signature: "where(condition, a, b)",
        lower: Lower::Custom(lower_select),
    },
];

/// `pow(x, c)`: a constant exponent.
fn lower_pow(cx: &mut Cx, _: &str, args: &[Expr], span: Span) -> Lowered {
    let x = cx.tensor(&args[0])?;
    let Some(e) = cx.const_of(&args[1]) else {
        cx.error(
            Diagnostic::new(args[1].span(), "the exponent of `pow` must be a number")
                .with_help("write a constant such as `pow(x, 3)`"),
        );
        return Err(Reported);
    };
    Ok(Value::Node(cx.unary(x, pow(S::Arg(0), e), "pow", span)))
}

/// `leaky_relu(x[, α])` = x where x > 0, else α x (α = 0.01 by default);
/// `elu(x[, α])` = x where x > 0, else α (eˣ - 1) (α = 1 by default).
fn lower_sloped(cx: &mut Cx, name: &str, args: &[Expr], span: Span) -> Lowered {
    let x0 = cx.tensor(&args[0])?;
    let default = if name == "elu" { 1.0 } else { 0.01 };
    let alpha = match args.get(1) {
        None => default,
        Some(a) => match cx.const_of(a) {
            Some(v) => v,
            None => {
                cx.error(
                    Diagnostic::new(
                        a.span(),
                        format!("the slope of `{name}` must be a constant"),
                    )
                    .with_help(format!(
                        "write a number or a `const`, as in `{name}(x, {default})`"
                    )),
                );
                return Err(Reported);
            }
        },
    };
    let negative = if name == "elu" {
        mul(c(alpha), sub(call(Func::EXP, x()), c(1.0)))
    } else {
        mul(c(alpha), x())
    };
    let body = select(cmp(Cmp::Gt, x(), c(0.0)), x(), negative);
    Ok(Value::Node(cx.unary(x0, body, name, span)))
}

/// `min`, `max`, `clamp`, `where`: broadcasting selections. At a selection
/// the gradient goes to the operand chosen (at a tie, the second).
fn lower_select(cx: &mut Cx, name: &str, args: &[Expr], span: Span) -> Lowered {
    let mut ids = vec![];
    let mut failed = false;
    for a in args {
        match cx.tensor(a) {
            Ok(id) => ids.push(id),
            Err(Reported) => failed = true,
        }
    }
    if failed {
        return Err(Reported);
    }
    let shapes: Vec<Shape> = ids.iter().map(|&id| cx.shape(id)).collect();
    let Some((shape, bcast)) = broadcast_all(&shapes) else {
        let listed: Vec<String> = shapes.iter().map(|s| s.to_string()).collect();
        cx.error(
            Diagnostic::new(
                span,
                format!("the shapes {} do not match for `{name}`", listed.join(", ")),
            )
            .with_help(
                "elementwise functions need equal shapes, scalars, or a matrix [m, n] with vectors [m]",
            ),
        );
        return Err(Reported);
    };
    let (a0, a1, a2) = (S::Arg(0), S::Arg(1), S::Arg(2));
    let body = match name {
        // at a tie the second operand is chosen (and gets the gradient)
        "min" => select(cmp(Cmp::Lt, a0.clone(), a1.clone()), a0, a1),
        "max" => select(cmp(Cmp::Gt, a0.clone(), a1.clone()), a0, a1),
        // below lo: lo; above hi: hi; else x
        "clamp" => select(
            cmp(Cmp::Lt, a0.clone(), a1.clone()),
            a1,
            select(cmp(Cmp::Gt, a0.clone(), a2.clone()), a2, a0),
        ),
        // where(c, a, b): a where c is non-zero
        _ => select(a0, a1, a2),
    };
    Ok(Value::Node(cx.map(ids, bcast, body, shape, name, span)))
}

/// `Map`: for each operand, `d_a = d ⊙ ∂body/∂a` (reusing the stored
/// output where the derivative mentions the whole body), summed over the
/// broadcast for a broadcast operand. `AddN`: each part gets `d`.
pub fn vjp(v: &mut Vjp, op: &Op) {
    match op {
        Op::Map { args, bcast, body } => {
            let n = args.len();
            for (k, (&a, &b)) in args.iter().zip(bcast).enumerate() {
                if !v.needs(a) {
                    continue;
                }
                let deriv = simplify(&body.diff(k).reuse_output(body));
                let renum: Vec<usize> = (1..=n).collect();
                let deriv = deriv.renumber(&renum).out_to_arg(n + 1);
                let mut contrib = simplify(&mul(S::Arg(0), deriv.clone()));
                // where the derivative can be infinite or NaN (a division,
                // a negative or fractional power: `sqrt` or `log` outside
                // their domain, say), an adjoint of exactly 0 (a branch of
                // `where` not taken) contributes exactly 0, never 0 · inf
                if deriv.may_be_non_finite() {
                    contrib = select(cmp(Cmp::Ne, S::Arg(0), c(0.0)), contrib, c(0.0));
                }
                let mut margs = vec![v.d];
                margs.extend(args.iter().copied());
                margs.push(v.id);
                let mut mb = vec![Bcast::Full];
                mb.extend(bcast.iter().copied());
                mb.push(Bcast::Full);
                let (margs, mb, contrib) = compact(margs, mb, contrib);
                let map = Op::Map {
                    args: margs,
                    bcast: mb,
                    body: contrib,
                };
                match b {
                    Bcast::Full => v.add(a, map),
                    // a broadcast operand's adjoint sums over the broadcast
                    Bcast::Scalar | Bcast::Col | Bcast::Row => {
                        let name = v.adjoint_name(a, "_full");
                        let full = v.push(map, v.shape(v.id), name);
                        let reduce = match b {
                            Bcast::Scalar => Op::Sum(full),
                            Bcast::Col => Op::SumCols(full),
                            _ => Op::SumRows(full),
                        };
                        v.add(a, reduce);
                    }
                }
            }
        }
        // out = Σ parts: each part gets d
        Op::AddN(args) => {
            for &a in args {
                if v.needs(a) {
                    v.pass_through(a);
                }
            }
        }
        _ => unreachable!("not an elementwise op"),
    }
}

/// Drops the operands a body does not read (and merges repeated ones),
/// renumbering the body to match.
pub fn compact(args: Vec<NodeId>, bcast: Vec<Bcast>, body: S) -> (Vec<NodeId>, Vec<Bcast>, S) {
    let mut used = vec![false; args.len()];
    body.mark_args(&mut used);
    let mut new_args = vec![];
    let mut new_bcast = vec![];
    let mut map = vec![usize::MAX; args.len()];
    for (k, (&a, &b)) in args.iter().zip(&bcast).enumerate() {
        if !used[k] {
            continue;
        }
        if let Some(j) = new_args
            .iter()
            .zip(&new_bcast)
            .position(|(&x, &y)| x == a && y == b)
        {
            map[k] = j;
        } else {
            map[k] = new_args.len();
            new_args.push(a);
            new_bcast.push(b);
        }
    }
    let identity =
        map.iter().enumerate().all(|(k, &m)| m == k || !used[k]) && new_args.len() == args.len();
    let body = if identity { body } else { body.renumber(&map) };
    (new_args, new_bcast, body)
}

/// `Map`: one loop assigning the body at every index. `AddN`: each part
/// copied, added, or (computed nowhere else) emitted straight into `dest`.
pub fn emit(ex: &mut Ex, op: &Op, dest: &Place, mode: Mode) {
    match op {
        Op::Map { args, bcast, body } => {
            if mode == Mode::Assign && emit_vectorised(ex, args, bcast, body, dest) {
                return;
            }
            let e = ex.map_elem(ex.id);
            let lhs = ex.elem_of(dest, ex.id, Bcast::Full);
            let body = Ex::put(mode, lhs, e);
            let stmt = ex.loops(ex.id, body);
            ex.out.push(stmt);
        }
        Op::AddN(parts) => {
            // a part that is itself a sum computed nowhere else adds its own
            // parts in turn, from a work list: sums may nest deeply
            let mut todo: Vec<NodeId> = parts.iter().rev().copied().collect();
            let mut first = true;
            while let Some(part) = todo.pop() {
                let m = if first { mode } else { Mode::Accumulate };
                match ex.place.get(&part).cloned() {
                    Some(src) => ex.copy_into(part, ex.id, &src, dest, m),
                    None if ex.batched(part) == ex.batched(ex.id) => {
                        if let Op::AddN(inner) = &ex.g().nodes[part].op {
                            todo.extend(inner.iter().rev());
                            continue;
                        }
                        ex.emit_into(part, dest, m)
                    }
                    None => {
                        // a shared value added to every sample's
                        let e = ex.map_elem(part);
                        let lhs = ex.elem_of(dest, ex.id, Bcast::Full);
                        let stmt = ex.loops(ex.id, Ex::put(m, lhs, e));
                        ex.out.push(stmt);
                    }
                }
                first = false;
            }
        }
        _ => unreachable!("not an elementwise op"),
    }
}

/// The shortest per-sample vector whose activation is one kernel call.
const MIN_VECTORISED: usize = 16;

/// `f(inner)` set into a whole array, where the runtime has a vectorised
/// slice kernel for `f` (`exp`, `ln`, `tanh`, `sigmoid`): the inner
/// expression's loop, then one kernel call over the array in place, instead
/// of one scalar call per element. Returns whether it emitted the node.
fn emit_vectorised(ex: &mut Ex, args: &[NodeId], bcast: &[Bcast], body: &S, dest: &Place) -> bool {
    let S::Call(f, inner) = body else {
        return false;
    };
    let kernel = match f.method() {
        "exp" => format_ident!("exp_in_place"),
        "ln" => format_ident!("log_in_place"),
        "tanh" => format_ident!("tanh_in_place"),
        "sigmoid" => format_ident!("sigmoid_in_place"),
        _ => return false,
    };
    let node = ex.node();
    let rank = node.shape.stored_rank() + usize::from(ex.batched(ex.id));
    // one sample's short vector: the call and its dispatch cost more than
    // the scalar loop saves (xor's step with four hidden units: 76 ns with
    // the call, 57 ns without)
    // (a column of `stream_step` decides as its whole signal in `predict`)
    let positions = ex.g().positions.get(ex.id).copied().unwrap_or(1);
    if node.shape.len().saturating_mul(positions) < MIN_VECTORISED && !ex.batched(ex.id) {
        return false;
    }
    let place = match dest {
        Place::Local(_)
        | Place::Tape(_)
        | Place::TapeStep(_)
        | Place::TapeNext(_)
        | Place::State(_)
        | Place::Grad(_) => dest.value(),
        Place::Ref(_) | Place::RefStep(_) => return false,
    };
    let flat = match rank {
        1 => quote!(&mut #place[..]),
        2 => quote!(#place.as_flattened_mut()),
        _ => return false,
    };
    let operands: Vec<TokenStream> = args
        .iter()
        .zip(bcast)
        .map(|(&a, &b)| ex.elem(a, b))
        .collect();
    let e = crate::emit::scalar::scalar_tokens(inner, &operands).0;
    let lhs = ex.elem_of(dest, ex.id, Bcast::Full);
    let stmt = ex.loops(ex.id, Ex::put(Mode::Assign, lhs, e));
    let k = Ex::kernels();
    ex.out.push(stmt);
    ex.out.push(quote!(#k::#kernel(#flat);));
    true
}

/// `Map`: the body's operations at every element; `AddN`: one add per extra part.
pub fn flops(g: &Graph, id: NodeId) -> u64 {
    let node = &g.nodes[id];
    let len = node.shape.len() as u64;
    match &node.op {
        Op::Map { body, .. } => len.saturating_mul(body.flops()),
        Op::AddN(parts) => len.saturating_mul(parts.len().saturating_sub(1) as u64),
        _ => 0,
    }
}

/// The body in the operands' names, or the sum of the parts.
pub fn math(g: &Graph, id: NodeId, n: &dyn Fn(NodeId) -> String) -> String {
    match &g.nodes[id].op {
        Op::Map { args, body, .. } => {
            let names: Vec<String> = args.iter().map(|&a| n(a)).collect();
            crate::emit::scalar::scalar_math(body, &names).0
        }
        Op::AddN(parts) => parts.iter().map(|&p| n(p)).collect::<Vec<_>>().join(" + "),
        _ => unreachable!("not an elementwise op"),
    }
}

/// The body at every index, operands broadcast; the sum of the parts.
#[cfg(test)]
pub fn eval(g: &Graph, id: NodeId, v: &[Vec<f64>]) -> Vec<f64> {
    let node = &g.nodes[id];
    let len = node.shape.len();
    match &node.op {
        Op::Map { args, bcast, body } => {
            let cols = if node.shape.rank() == 2 {
                node.shape.0[1]
            } else {
                1
            };
            (0..len)
                .map(|e| {
                    let (i, j) = (e / cols, e % cols);
                    let ops: Vec<f64> = args
                        .iter()
                        .zip(bcast)
                        .map(|(&a, b)| match b {
                            Bcast::Full => v[a][e],
                            Bcast::Scalar => v[a][0],
                            Bcast::Col => v[a][i],
                            Bcast::Row => v[a][j],
                        })
                        .collect();
                    body.eval(&ops, f64::NAN)
                })
                .collect()
        }
        Op::AddN(parts) => (0..len)
            .map(|e| parts.iter().map(|&p| v[p][e]).sum())
            .collect(),
        _ => unreachable!("not an elementwise op"),
    }
}
