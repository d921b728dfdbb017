//! Simplification: algebraic rewrites and constant folding of scalar bodies
//! (`x * 1`, `x + 0`, `--x`, `2 * 3`), constants folded into their users, and
//! identity maps replaced by their operand.

// `(a, S::Const(z)) if z == 0.0` says "the constant zero" more plainly than a float pattern.
#![allow(clippy::redundant_guards)]

use crate::autodiff::compact;
use crate::ir::*;
use crate::scalar::{build::*, pow_value, S};

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
            (S::Const(x), S::Const(y)) => c(x + y),
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
            (S::Const(x), S::Const(y)) => c(x - y),
            (a, S::Const(z)) if z == 0.0 => a,
            (S::Const(z), b) if z == 0.0 => simplify(&neg(b)),
            // a - -b = a + b
            (a, S::Neg(b)) => add(a, *b),
            (a, b) if a == b => c(0.0),
            (a, b) => sub(a, b),
        },
        S::Mul(a, b) => match (simplify(a), simplify(b)) {
            (S::Const(x), S::Const(y)) => c(x * y),
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
            (S::Const(x), S::Mul(y, a)) | (S::Mul(y, a), S::Const(x)) if y.as_const().is_some() => {
                simplify(&mul(c(x * y.as_const().unwrap_or(1.0)), *a))
            }
            // constants first: 2 * x
            (a, S::Const(x)) => mul(c(x), a),
            (a, b) => mul(a, b),
        },
        S::Div(a, b) => match (simplify(a), simplify(b)) {
            (S::Const(x), S::Const(y)) if y != 0.0 => c(x / y),
            (S::Const(z), _) if z == 0.0 => c(0.0),
            (a, S::Const(o)) if o == 1.0 => a,
            (S::Neg(a), b) => simplify(&neg(div(*a, b))),
            (a, b) => div(a, b),
        },
        S::Pow(a, e) => match (simplify(a), *e) {
            (_, e) if e == 0.0 => c(1.0),
            (a, e) if e == 1.0 => a,
            (S::Const(x), e) => c(pow_value(x, e)),
            // (a^p)^q = a^(pq) for integer exponents
            (S::Pow(a, p), q) if p.fract() == 0.0 && q.fract() == 0.0 => pow(*a, p * q),
            (a, e) => pow(a, e),
        },
        S::Call(f, a) => match simplify(a) {
            S::Const(x) => c(f.eval(x)),
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

/// Simplifies every elementwise node of the graph; a sum of elementwise
/// contributions becomes one elementwise sum, so fusion can merge it.
pub fn simplify_graph(g: &mut Graph) {
    for id in 0..g.nodes.len() {
        if let Op::AddN(parts) = &g.nodes[id].op {
            let all_maps = parts.iter().all(|&p| {
                matches!(g.nodes[p].op, Op::Map { .. }) && g.nodes[p].shape == g.nodes[id].shape
            });
            if all_maps {
                let body = (1..parts.len()).fold(S::Arg(0), |acc, k| add(acc, S::Arg(k)));
                g.nodes[id].op = Op::Map {
                    args: parts.clone(),
                    bcast: vec![Bcast::Full; parts.len()],
                    body,
                };
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
        let body = simplify(&body.substitute(&subst));
        let (args, bcast, body) = compact(args.clone(), bcast.clone(), body);
        let identity = body == S::Arg(0) && bcast.first() == Some(&Bcast::Full);
        let alias = identity.then(|| args[0]);
        g.nodes[id].op = Op::Map { args, bcast, body };
        if let Some(a) = alias {
            g.replace_uses(id, a);
        }
    }
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
            (call(Func::Exp, c(0.0)), "1"),
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
        let f = call(Func::Sigmoid, S::Arg(0));
        assert_eq!(
            simplify(&f.diff(0).reuse_output(&f)).to_string(),
            "(out * (1 - out))"
        );
        let t = call(Func::Tanh, S::Arg(0));
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
