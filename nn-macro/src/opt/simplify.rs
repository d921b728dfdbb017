//! Simplification: algebraic rewrites and constant folding of scalar bodies
//! (`x * 1`, `x + 0`, `--x`, `2 * 3`), constants folded into their users, and
//! identity maps replaced by their operand.

// `(a, S::Const(z)) if z == 0.0` says "the constant zero" more plainly than a float pattern.
#![allow(clippy::redundant_guards)]

use crate::ir::*;
use crate::ops::elementwise::compact;
use crate::scalar::{build::*, pow_value, S};

/// A folded constant, or `None` when folding would produce a value the
/// generated code cannot hold as a literal (non-finite, or beyond `f32`'s
/// range): the operation is then kept as written and computed at run time.
fn folded(v: f64) -> Option<S> {
    (v.is_finite() && v.abs() <= crate::limits::F32_MAX).then_some(S::Const(v))
}

/// Simplifies a scalar expression bottom-up.
pub fn simplify(s: &S) -> S {
    match s {
        S::Arg(_) | S::Out | S::Const(_) => s.clone(),
        S::Neg(a) => match simplify(a) {
            S::Const(v) => c(-v),
            // --a = a
            S::Neg(a) => *a,
            // -(a - b) = b - a
            S::Sub(a, b) => S::Sub(b, a),
            a => neg(a),
        },
        S::Add(a, b) => match (simplify(a), simplify(b)) {
            (S::Const(x), S::Const(y)) if folded(x + y).is_some() => c(x + y),
            (S::Const(z), a) | (a, S::Const(z)) if z == 0.0 => a,
            // a + -b = a - b
            (a, S::Neg(b)) => sub(a, *b),
            (S::Neg(a), b) => sub(b, *a),
            // select(p, a, b) + select(p, c, d) = select(p, a + c, b + d)
            (S::Select(p, a, b), S::Select(q, c0, d)) if p == q => {
                simplify(&select(*p, add(*a, *c0), add(*b, *d)))
            }
            (a, b) => add(a, b),
        },
        S::Sub(a, b) => match (simplify(a), simplify(b)) {
            (S::Const(x), S::Const(y)) if folded(x - y).is_some() => c(x - y),
            (a, S::Const(z)) if z == 0.0 => a,
            (S::Const(z), b) if z == 0.0 => simplify(&neg(b)),
            // a - -b = a + b
            (a, S::Neg(b)) => add(a, *b),
            (a, b) if a == b => c(0.0),
            (a, b) => sub(a, b),
        },
        S::Mul(a, b) => match (simplify(a), simplify(b)) {
            (S::Const(x), S::Const(y)) if folded(x * y).is_some() => c(x * y),
            (S::Const(z), _) | (_, S::Const(z)) if z == 0.0 => c(0.0),
            (S::Const(o), a) | (a, S::Const(o)) if o == 1.0 => a,
            (S::Const(m), a) | (a, S::Const(m)) if m == -1.0 => simplify(&neg(a)),
            // a derivative through `where`: select(p, a, b) c = select(p, a c, b c),
            // so that its branches simplify (select(p, 1, 0) x = select(p, x, 0))
            (S::Select(p, a, b), k) | (k, S::Select(p, a, b))
                if is_simple(&k) || is_branch_free(&a, &b) =>
            {
                simplify(&select(*p, mul(*a, k.clone()), mul(*b, k)))
            }
            // -a * b = -(a b)
            (S::Neg(a), b) => simplify(&neg(mul(*a, b))),
            (a, S::Neg(b)) => simplify(&neg(mul(a, *b))),
            // c1 (c2 a) = (c1 c2) a
            (S::Const(x), S::Mul(y, a)) | (S::Mul(y, a), S::Const(x))
                if y.as_const().and_then(|y| folded(x * y)).is_some() =>
            {
                simplify(&mul(c(x * y.as_const().unwrap_or(1.0)), *a))
            }
            // constants first: 2 * x
            (a, S::Const(x)) => mul(c(x), a),
            (a, b) => mul(a, b),
        },
        S::Div(a, b) => match (simplify(a), simplify(b)) {
            (S::Const(x), S::Const(y)) if folded(x / y).is_some() => c(x / y),
            // 0 / b = 0 for a variable b (a constant b is folded above, or,
            // for 0 / 0, kept: its NaN is not ours to hide)
            (S::Const(z), b) if z == 0.0 && b.as_const().is_none() => c(0.0),
            (a, S::Const(o)) if o == 1.0 => a,
            (S::Neg(a), b) => simplify(&neg(div(*a, b))),
            (a, b) => div(a, b),
        },
        S::Pow(a, e) => match (simplify(a), *e) {
            (_, e) if e == 0.0 => c(1.0),
            (a, e) if e == 1.0 => a,
            (S::Const(x), e) if folded(pow_value(x, e)).is_some() => c(pow_value(x, e)),
            // (a^p)^q = a^(pq) for integer exponents
            (S::Pow(a, p), q) if p.fract() == 0.0 && q.fract() == 0.0 => pow(*a, p * q),
            (a, e) => pow(a, e),
        },
        S::Call(f, a) => match simplify(a) {
            S::Const(x) if folded(f.eval(x)).is_some() => c(f.eval(x)),
            a => call(*f, a),
        },
        S::Cmp(op, a, b) => match (simplify(a), simplify(b)) {
            (S::Const(x), S::Const(y)) => c(f64::from(u8::from(op.holds(x, y)))),
            (a, b) => cmp(*op, a, b),
        },
        S::Select(p, a, b) => match (simplify(p), simplify(a), simplify(b)) {
            (S::Const(v), a, b) => {
                if v != 0.0 {
                    a
                } else {
                    b
                }
            }
            // both branches alike: no choice to make
            (_, a, b) if a == b => a,
            // select(p, a, 0) * ... stays; select(p, 1, 0) is the comparison itself
            (p @ S::Cmp(..), S::Const(one), S::Const(zero)) if one == 1.0 && zero == 0.0 => p,
            (p, a, b) => select(p, a, b),
        },
    }
}

/// A leaf or a constant multiple of one: cheap to copy into both branches.
fn is_simple(s: &S) -> bool {
    match s {
        S::Arg(_) | S::Out | S::Const(_) => true,
        S::Mul(a, b) => a.as_const().is_some() && is_simple(b),
        _ => false,
    }
}

/// Both branches constant: multiplying into them removes the select's cost
/// from the product.
fn is_branch_free(a: &S, b: &S) -> bool {
    a.as_const().is_some() && b.as_const().is_some()
}

/// A sum of adjoint contributions becomes one elementwise sum (which fusion
/// can then merge) when it has at most this many distinct parts.
const MAX_SUM_AS_MAP: usize = 16;

/// Simplifies every elementwise node of the graph, in one pass in graph
/// order: constant operands are folded into their users, an identity map is
/// replaced by its operand (through `alias`, so each replacement costs
/// nothing more), and a sum of elementwise contributions (or of one value
/// several times) becomes one elementwise sum. Returns whether anything changed.
pub fn simplify_graph(g: &mut Graph) -> bool {
    let mut alias: Vec<NodeId> = (0..g.nodes.len()).collect();
    // dead nodes (left behind by earlier rewrites) are never emitted: not
    // worth simplifying again on every round
    let live = g.live_from(&g.roots());
    let mut changed = false;
    for id in 0..g.nodes.len() {
        if !live[id] {
            continue;
        }
        // operands come before their users: their aliases are final
        if g.nodes[id].op.args().iter().any(|&a| alias[a] != a) {
            g.nodes[id].op.map_args(|a| alias[a]);
            changed = true;
        }
        if let Op::AddN(parts) = &g.nodes[id].op {
            let mut distinct: Vec<(NodeId, usize)> = vec![];
            for &p in parts {
                match distinct.iter_mut().find(|(q, _)| *q == p) {
                    Some((_, n)) => *n += 1,
                    None => distinct.push((p, 1)),
                }
                if distinct.len() > MAX_SUM_AS_MAP {
                    break;
                }
            }
            let all_maps = parts.iter().all(|&p| {
                matches!(g.nodes[p].op, Op::Map { .. }) && g.nodes[p].shape == g.nodes[id].shape
            });
            let repeats = distinct.len() < parts.len();
            if distinct.len() <= MAX_SUM_AS_MAP && (all_maps || repeats) {
                let term = |k: usize, n: usize| {
                    if n == 1 {
                        S::Arg(k)
                    } else {
                        mul(c(n as f64), S::Arg(k))
                    }
                };
                let body = (1..distinct.len()).fold(term(0, distinct[0].1), |acc, k| {
                    add(acc, term(k, distinct[k].1))
                });
                g.nodes[id].op = Op::Map {
                    args: distinct.iter().map(|d| d.0).collect(),
                    bcast: vec![Bcast::Full; distinct.len()],
                    body,
                };
                changed = true;
            }
        }
        // zeros through linear operations are zeros (a comparison's
        // derivative, summed, multiplied, sliced...)
        if zero_result(g, id) {
            g.nodes[id].op = Op::Map {
                args: vec![],
                bcast: vec![],
                body: c(0.0),
            };
            changed = true;
        }
        if let Op::AddN(parts) = &g.nodes[id].op {
            let kept: Vec<NodeId> = parts.iter().copied().filter(|&p| !is_zero(g, p)).collect();
            if kept.len() < parts.len() && !kept.is_empty() {
                g.nodes[id].op = Op::AddN(kept);
                changed = true;
            }
        }
        let Op::Map { args, bcast, body } = &g.nodes[id].op else {
            continue;
        };
        // fold constant operands into the body
        let subst: Vec<S> = args
            .iter()
            .enumerate()
            .map(|(k, &a)| match &g.nodes[a].op {
                Op::Map { args, body, .. } if args.is_empty() => body.clone(),
                _ => S::Arg(k),
            })
            .collect();
        let folds = subst.iter().any(|s| !matches!(s, S::Arg(_)));
        let body = simplify(&if folds {
            body.substitute(&subst)
        } else {
            body.clone()
        });
        let (args, bcast, body) = compact(args.clone(), bcast.clone(), body);
        let identity = body == S::Arg(0) && bcast.first() == Some(&Bcast::Full);
        // (the users' operands are rewritten as they come: that is the change)
        if identity {
            alias[id] = args[0];
        }
        let op = Op::Map { args, bcast, body };
        if op != g.nodes[id].op {
            g.nodes[id].op = op;
            changed = true;
        }
    }
    changed | remap_roots(g, &alias)
}

/// Whether node `id` is a constant zero (elementwise, no operands).
fn is_zero(g: &Graph, id: NodeId) -> bool {
    matches!(&g.nodes[id].op, Op::Map { args, body, .. } if args.is_empty() && body.as_const() == Some(0.0))
}

/// Whether a linear operation's result is zero because an operand it is
/// linear in is: a product with a zero factor, a sum or part of zeros.
fn zero_result(g: &Graph, id: NodeId) -> bool {
    let z = |a: NodeId| is_zero(g, a);
    if let Some((a, b)) = g.nodes[id].op.product() {
        return z(a) || z(b);
    }
    match g.nodes[id].op {
        Op::Sum(a)
        | Op::SumCols(a)
        | Op::SumRows(a)
        | Op::BatchSum(a)
        | Op::Transpose(a)
        | Op::Slice(a, _)
        | Op::Pad(a, _)
        | Op::StepSum(a)
        | Op::OneHot(_, a)
        | Op::LogSoftmaxGrad(_, a) => z(a),
        Op::Concat(a, b) => z(a) && z(b),
        Op::AddN(ref parts) => parts.iter().all(|&p| z(p)),
        _ => false,
    }
}

/// Rewrites the roots through `alias`; whether any changed.
pub fn remap_roots(g: &mut Graph, alias: &[NodeId]) -> bool {
    let before = g.roots();
    g.map_roots(|a| alias[a]);
    g.roots() != before
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::Func;

    /// One rewrite a line: input, expected.
    #[test]
    fn rewrites() {
        let x = || S::Arg(0);
        let cases: Vec<(S, &str)> = vec![
            (mul(x(), c(1.0)), "$0"),
            (mul(c(1.0), x()), "$0"),
            (add(x(), c(0.0)), "$0"),
            (add(c(0.0), x()), "$0"),
            (sub(x(), c(0.0)), "$0"),
            (sub(c(0.0), x()), "(-$0)"),
            (mul(x(), c(0.0)), "0"),
            (neg(neg(x())), "$0"),
            (add(c(2.0), c(3.0)), "5"),
            (mul(c(2.0), mul(c(3.0), x())), "(6 * $0)"),
            (mul(x(), c(2.0)), "(2 * $0)"),
            (mul(c(-1.0), x()), "(-$0)"),
            (pow(x(), 1.0), "$0"),
            (pow(x(), 0.0), "1"),
            (pow(pow(x(), 2.0), 3.0), "($0 ^ 6)"),
            (sub(x(), x()), "0"),
            (add(x(), neg(S::Arg(1))), "($0 - $1)"),
            (sub(x(), neg(S::Arg(1))), "($0 + $1)"),
            (call(Func::EXP, c(0.0)), "1"),
            (div(x(), c(1.0)), "$0"),
            (
                mul(select(S::Arg(1), c(1.0), c(0.0)), x()),
                "select($1, $0, 0)",
            ),
            (
                add(
                    mul(
                        c(0.5),
                        mul(select(S::Arg(1), c(1.0), c(0.0)), mul(c(2.0), x())),
                    ),
                    mul(select(S::Arg(1), c(0.0), c(1.0)), S::Arg(2)),
                ),
                "select($1, $0, $2)",
            ),
            (mul(neg(x()), S::Arg(1)), "(-($0 * $1))"),
        ];
        for (input, want) in cases {
            assert_eq!(simplify(&input).to_string(), want, "simplify {input}");
        }
    }

    #[test]
    fn simplified_derivatives_reuse_the_output() {
        // d/dx sigmoid(x) -> out * (1 - out)
        let f = call(Func::SIGMOID, S::Arg(0));
        assert_eq!(
            simplify(&f.diff(0).reuse_output(&f)).to_string(),
            "(out * (1 - out))"
        );
        let t = call(Func::TANH, S::Arg(0));
        assert_eq!(
            simplify(&t.diff(0).reuse_output(&t)).to_string(),
            "(1 - (out ^ 2))"
        );
        // d/dx (x - y)^2 = 2 (x - y)
        let sq = pow(sub(S::Arg(0), S::Arg(1)), 2.0);
        assert_eq!(simplify(&sq.diff(0)).to_string(), "(2 * ($0 - $1))");
        assert_eq!(simplify(&sq.diff(1)).to_string(), "(-(2 * ($0 - $1)))");
    }
}
