//! Linear algebra: matrix products in their transposed forms, outer
//! products and transposes; the built-ins `transpose`, `dot`, `outer`.
//! Products go through the runtime's kernels (`matvec`, `matmul`, ...),
//! where SIMD and cache blocking live; in the batched code a per-sample
//! vector is a matrix with one column per sample, so `W x` becomes `W X`.

use super::{Builtin, Lower, Vjp};
use crate::emit::ex::Ex;
use crate::emit::{Mode, Place};
use crate::ir::*;
use crate::lower::{Cx, Lowered, Reported, Value};
use crate::scalar::{build::*, S};
use nn_grammar::{Diagnostic, Expr, Span};
use proc_macro2::{Literal, TokenStream};
use quote::quote;

/// The linear-algebra built-ins (`@` is an operator, lowered with them).
pub static BUILTINS: &[Builtin] = &[
    Builtin {
        name: "transpose",
        min_args: 1,
        max_args: 1,
        signature: "transpose(x)",
        lower: Lower::Custom(lower_transpose),
    },
    Builtin {
        name: "dot",
        min_args: 2,
        max_args: 2,
        signature: "dot(a, b)",
        lower: Lower::Custom(lower_dot_outer),
    },
    Builtin {
        name: "outer",
        min_args: 2,
        max_args: 2,
        signature: "outer(a, b)",
        lower: Lower::Custom(lower_dot_outer),
    },
];

fn lower_transpose(cx: &mut Cx, _: &str, args: &[Expr], span: Span) -> Lowered {
    let x = cx.tensor(&args[0])?;
    let shape = cx.shape(x);
    if shape.rank() != 2 {
        cx.error(Diagnostic::new(
            args[0].span(),
            format!("`transpose` needs a matrix, found shape {shape}"),
        ));
        return Err(Reported);
    }
    Ok(Value::Node(cx.node(
        Op::Transpose(x),
        Shape(vec![shape.0[1], shape.0[0]]),
        span,
    )))
}

fn lower_dot_outer(cx: &mut Cx, name: &str, args: &[Expr], span: Span) -> Lowered {
    let a = cx.tensor(&args[0]);
    let b = cx.tensor(&args[1]);
    let (a, b) = (a?, b?);
    let (sa, sb) = (cx.shape(a), cx.shape(b));
    if sa.rank() != 1 || sb.rank() != 1 || (name == "dot" && sa != sb) {
        let need = if name == "dot" {
            "two vectors of one length"
        } else {
            "two vectors"
        };
        cx.error(Diagnostic::new(
            span,
            format!("`{name}` needs {need}, found {sa} and {sb}"),
        ));
        return Err(Reported);
    }
    if name == "outer" {
        return Ok(Value::Node(cx.node(
            Op::Outer(a, b),
            Shape(vec![sa.0[0], sb.0[0]]),
            span,
        )));
    }
    Ok(Value::Node(dot(cx, a, b, span)))
}

/// `Σ a ⊙ b` of two vectors of one length.
pub fn dot(cx: &mut Cx, a: NodeId, b: NodeId, span: Span) -> NodeId {
    let shape = cx.shape(a);
    let prod = cx.map(
        vec![a, b],
        vec![Bcast::Full; 2],
        mul(S::Arg(0), S::Arg(1)),
        shape,
        "mul",
        span,
    );
    cx.node(Op::Sum(prod), Shape::scalar(), span)
}

/// The op and shape of `a @ b`, or `None` when the shapes do not fit
/// (the caller reports; a scalar side or a vector-vector product are its cases).
pub fn product(a: NodeId, b: NodeId, sa: &Shape, sb: &Shape) -> Option<(Op, Shape)> {
    Some(match (sa.rank(), sb.rank()) {
        (2, 1) if sa.0[1] == sb.0[0] => (Op::MatVec(a, b), Shape(vec![sa.0[0]])),
        (2, 2) if sa.0[1] == sb.0[0] => (Op::MatMul(a, b), Shape(vec![sa.0[0], sb.0[1]])),
        (1, 2) if sa.0[0] == sb.0[0] => (Op::VecMat(a, b), Shape(vec![sb.0[1]])),
        _ => return None,
    })
}

/// The matrix calculus of each product: `W x` gives `d_W += d xᵀ` and
/// `d_x += Wᵀ d`, and so on for the transposed forms.
pub fn vjp(v: &mut Vjp, op: &Op) {
    let d = v.d;
    match *op {
        // d_w = d ⊗ x, d_x = wᵀ d
        Op::MatVec(w, x) => {
            if v.needs(w) {
                v.add(w, Op::Outer(d, x));
            }
            if v.needs(x) {
                v.add(x, Op::MatVecT(w, d));
            }
        }
        // out = wᵀ e: d_w = e ⊗ d, d_e = w d
        Op::MatVecT(w, e) => {
            if v.needs(w) {
                v.add(w, Op::Outer(e, d));
            }
            if v.needs(e) {
                v.add(e, Op::MatVec(w, d));
            }
        }
        // out = xᵀ b: d_x = b d, d_b = x ⊗ d
        Op::VecMat(x, b) => {
            if v.needs(x) {
                v.add(x, Op::MatVec(b, d));
            }
            if v.needs(b) {
                v.add(b, Op::Outer(x, d));
            }
        }
        // out = a b: d_a = d bᵀ, d_b = aᵀ d
        Op::MatMul(a, b) => {
            if v.needs(a) {
                v.add(a, Op::MatMulNT(d, b));
            }
            if v.needs(b) {
                v.add(b, Op::MatMulTN(a, d));
            }
        }
        // out = a bᵀ: d_a = d b, d_b = dᵀ a
        Op::MatMulNT(a, b) => {
            if v.needs(a) {
                v.add(a, Op::MatMul(d, b));
            }
            if v.needs(b) {
                v.add(b, Op::MatMulTN(d, a));
            }
        }
        // out = aᵀ b: d_a = b dᵀ, d_b = a d
        Op::MatMulTN(a, b) => {
            if v.needs(a) {
                v.add(a, Op::MatMulNT(b, d));
            }
            if v.needs(b) {
                v.add(b, Op::MatMul(a, d));
            }
        }
        // out = u vᵀ: d_u = d v, d_v = dᵀ u
        Op::Outer(u, w) => {
            if v.needs(u) {
                v.add(u, Op::MatVec(d, w));
            }
            if v.needs(w) {
                v.add(w, Op::MatVecT(d, u));
            }
        }
        // out = aᵀ: d_a = dᵀ
        Op::Transpose(a) => {
            if v.needs(a) {
                v.add(a, Op::Transpose(d));
            }
        }
        _ => unreachable!("not a linear-algebra op"),
    }
}

/// One kernel call per product. With a per-sample operand (one column per
/// sample) a matrix-vector product is a matrix-matrix product: `matvec`
/// becomes `matmul`, `matvec_t_acc` becomes `matmul_tn_acc`.
pub fn emit(ex: &mut Ex, op: &Op, dest: &Place, mode: Mode) {
    let k = Ex::kernels();
    let d = dest.borrow_mut();
    let (a, b) = match (op.product(), op) {
        (Some(factors), _) => factors,
        (None, &Op::Transpose(a)) => {
            let v = ex.place(a).index(&quote!([j][i]));
            let lhs = dest.index(&quote!([i][j]));
            let stmt = ex.loops(ex.id, Ex::put(mode, lhs, v));
            ex.out.push(stmt);
            return;
        }
        _ => unreachable!("not a linear-algebra op"),
    };
    if let Some(stmt) = small_product(ex, op, dest, mode) {
        ex.out.push(stmt);
        return;
    }
    let (pa, pb) = (ex.place(a).borrow(), ex.place(b).borrow());
    let acc = mode == Mode::Accumulate;
    let call = match op {
        Op::MatVec(_, x) if ex.batched(*x) && acc => quote!(#k::matmul_acc(#pa, #pb, #d)),
        Op::MatVec(_, x) if ex.batched(*x) => quote!(#k::matmul(#pa, #pb, #d)),
        Op::MatVec(..) if acc => quote!(#k::matvec_acc(#pa, #pb, #d)),
        Op::MatVec(..) => quote!(#k::matvec(#pa, #pb, #d)),
        Op::MatVecT(_, e) if ex.batched(*e) => quote!(#k::matmul_tn_acc(#pa, #pb, #d)),
        Op::MatVecT(..) => quote!(#k::matvec_t_acc(#pa, #pb, #d)),
        // xᵀ b = bᵀ x
        Op::VecMat(x, _) if ex.batched(*x) => quote!(#k::matmul_tn_acc(#pb, #pa, #d)),
        Op::VecMat(..) => quote!(#k::matvec_t_acc(#pb, #pa, #d)),
        Op::MatMul(..) if acc => quote!(#k::matmul_acc(#pa, #pb, #d)),
        Op::MatMul(..) => quote!(#k::matmul(#pa, #pb, #d)),
        Op::MatMulNT(..) => quote!(#k::matmul_nt_acc(#pa, #pb, #d)),
        Op::MatMulTN(..) => quote!(#k::matmul_tn_acc(#pa, #pb, #d)),
        Op::Outer(..) => quote!(#k::outer_acc(#pa, #pb, #d)),
        _ => unreachable!("matched above"),
    };
    ex.out.push(quote!(#call;));
}

/// Products of per-sample matrices with fewer elements than this are loops
/// of their own: a kernel call and its dispatch cost more than they save
/// there (a 2-4-1 network's layers).
const MIN_KERNEL_ELEMENTS: usize = 64;

/// A small per-sample matrix-vector product or outer product as plain
/// loops, or `None` for a kernel call.
fn small_product(ex: &Ex, op: &Op, dest: &Place, mode: Mode) -> Option<TokenStream> {
    let shape = |a: NodeId| &ex.g().nodes[a].shape;
    let small = |m: NodeId| !ex.batched(m) && shape(m).len() < MIN_KERNEL_ELEMENTS;
    let lit = |n: usize| Literal::usize_unsuffixed(n);
    let el = |a: NodeId, idx: TokenStream| ex.place(a).index(&idx);
    let put = |lhs: TokenStream, v: TokenStream| Ex::put(mode, lhs, v);
    Some(match *op {
        // out[i] = Σ_j w[i][j] x[j]
        Op::MatVec(w, x) if small(w) && !ex.batched(x) => {
            let (m, k) = (lit(shape(w).0[0]), lit(shape(w).0[1]));
            let (wij, xj) = (el(w, quote!([i][j])), el(x, quote!([j])));
            let set = put(dest.index(&quote!([i])), quote!(acc));
            quote!(for i in 0..#m { let mut acc = 0.0; for j in 0..#k { acc += #wij * #xj; } #set })
        }
        // out[j] += Σ_i w[i][j] d[i]
        Op::MatVecT(w, d) if small(w) && !ex.batched(d) => {
            let (m, k) = (lit(shape(w).0[0]), lit(shape(w).0[1]));
            let (wij, di) = (el(w, quote!([i][j])), el(d, quote!([i])));
            let set = put(dest.index(&quote!([j])), quote!(acc));
            quote!(for j in 0..#k { let mut acc = 0.0; for i in 0..#m { acc += #wij * #di; } #set })
        }
        // out[j] += Σ_i x[i] b[i][j]
        Op::VecMat(x, b) if small(b) && !ex.batched(x) => {
            let (k, n) = (lit(shape(b).0[0]), lit(shape(b).0[1]));
            let (xi, bij) = (el(x, quote!([i])), el(b, quote!([i][j])));
            let set = put(dest.index(&quote!([j])), quote!(acc));
            quote!(for j in 0..#n { let mut acc = 0.0; for i in 0..#k { acc += #xi * #bij; } #set })
        }
        // out[i][j] += u[i] v[j]
        Op::Outer(u, v)
            if !ex.batched(u)
                && !ex.batched(v)
                && shape(u).len() * shape(v).len() < MIN_KERNEL_ELEMENTS =>
        {
            let (m, n) = (lit(shape(u).len()), lit(shape(v).len()));
            let (ui, vj) = (el(u, quote!([i])), el(v, quote!([j])));
            let set = put(dest.index(&quote!([i][j])), quote!(#ui * #vj));
            quote!(for i in 0..#m { for j in 0..#n { #set } })
        }
        _ => return None,
    })
}

/// Whether an assign-mode emission writes the whole destination.
pub fn overwrites(op: &Op) -> bool {
    matches!(op, Op::MatVec(..) | Op::MatMul(..) | Op::Transpose(_))
}

/// The batched forms: a shared matrix times per-sample vectors. A
/// per-sample outer product exists only summed over the batch (a weight
/// gradient: one `dZ Xᵀ` product, emitted by the batch sum).
pub fn batches(op: &Op, b: &dyn Fn(NodeId) -> bool) -> bool {
    match *op {
        Op::MatVec(w, _) | Op::MatVecT(w, _) => !b(w),
        Op::VecMat(_, m) => !b(m),
        Op::MatMul(x, y) | Op::MatMulNT(x, y) | Op::MatMulTN(x, y) => !b(x) && !b(y),
        Op::Outer(u, v) => b(u) == b(v),
        Op::Transpose(a) => !b(a),
        _ => true,
    }
}

/// Two flops (a multiply and an add) per multiply-accumulate.
pub fn flops(g: &Graph, id: NodeId) -> u64 {
    let node = &g.nodes[id];
    let count = |a: NodeId| g.nodes[a].shape.len() as u64;
    let dim = |a: NodeId, k: usize| g.nodes[a].shape.0[k] as u64;
    let n = match node.op {
        Op::MatVec(w, _) | Op::MatVecT(w, _) => count(w),
        Op::VecMat(_, b) => count(b),
        Op::MatMul(a, b) => count(a).saturating_mul(dim(b, 1)),
        Op::MatMulNT(d, b) => count(d).saturating_mul(dim(b, 0)),
        Op::MatMulTN(a, d) => count(a).saturating_mul(dim(d, 1)),
        Op::Outer(..) => node.shape.len() as u64,
        _ => 0,
    };
    n.saturating_mul(2)
}

/// The product in the operands' names.
pub fn math(op: &Op, n: &dyn Fn(NodeId) -> String) -> String {
    match *op {
        Op::MatVec(a, b) | Op::MatMul(a, b) => format!("{} · {}", n(a), n(b)),
        Op::VecMat(a, b) | Op::MatVecT(a, b) | Op::MatMulTN(a, b) => {
            format!("{}ᵀ · {}", n(a), n(b))
        }
        Op::MatMulNT(a, b) => format!("{} · {}ᵀ", n(a), n(b)),
        Op::Outer(a, b) => format!("{} ⊗ {}", n(a), n(b)),
        Op::Transpose(a) => format!("{}ᵀ", n(a)),
        _ => unreachable!("not a linear-algebra op"),
    }
}

/// Row-major products.
#[cfg(test)]
pub fn eval(g: &Graph, id: NodeId, v: &[Vec<f64>]) -> Vec<f64> {
    let node = &g.nodes[id];
    let len = node.shape.len();
    let dim = |a: NodeId, k: usize| g.nodes[a].shape.0[k];
    match node.op {
        Op::MatVec(w, x) => matmul(&v[w], &v[x], len, g.nodes[x].shape.len(), 1),
        Op::MatVecT(w, d) => {
            let (m, k) = (dim(w, 0), dim(w, 1));
            matmul(&transpose(&v[w], m, k), &v[d], k, m, 1)
        }
        Op::VecMat(x, b) => matmul(&v[x], &v[b], 1, dim(b, 0), dim(b, 1)),
        Op::MatMul(a, b) => matmul(&v[a], &v[b], dim(a, 0), dim(a, 1), dim(b, 1)),
        Op::MatMulNT(d, b) => {
            let (m, n, k) = (dim(d, 0), dim(d, 1), dim(b, 0));
            matmul(&v[d], &transpose(&v[b], k, n), m, n, k)
        }
        Op::MatMulTN(a, d) => {
            let (m, k, n) = (dim(a, 0), dim(a, 1), dim(d, 1));
            matmul(&transpose(&v[a], m, k), &v[d], k, m, n)
        }
        Op::Outer(u, w) => {
            let n = v[w].len();
            (0..len).map(|e| v[u][e / n] * v[w][e % n]).collect()
        }
        Op::Transpose(a) => transpose(&v[a], dim(a, 0), dim(a, 1)),
        _ => unreachable!("not a linear-algebra op"),
    }
}

#[cfg(test)]
fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for p in 0..k {
            for j in 0..n {
                c[i * n + j] += a[i * k + p] * b[p * n + j];
            }
        }
    }
    c
}

#[cfg(test)]
fn transpose(a: &[f64], m: usize, n: usize) -> Vec<f64> {
    (0..m * n).map(|e| a[(e % m) * n + e / m]).collect()
}
