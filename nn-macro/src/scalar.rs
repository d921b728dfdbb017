//! Scalar expressions: the bodies of elementwise (`Map`) nodes, their symbolic
//! derivatives, and their simplification.
//!
//! An elementwise node applies one scalar expression at every index of its
//! output; `Arg(k)` is its k-th operand at that index and `Out` its own
//! output there (so a derivative can reuse a stored forward value, as
//! `sigmoid' = s (1 - s)` does).

use std::fmt;

/// A scalar function of one argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Func {
    /// `1 / (1 + e^-x)`; d/dx = s (1 - s)
    Sigmoid,
    /// `tanh x`; d/dx = 1 - t²
    Tanh,
    /// `max(x, 0)`; d/dx = step(x) (0 at 0, the conventional subgradient)
    Relu,
    /// `e^x`; d/dx = e^x
    Exp,
    /// `ln x`; d/dx = 1 / x
    Log,
    /// `√x`; d/dx = 1 / (2 √x)
    Sqrt,
    /// `|x|`; d/dx = sign(x) (0 at 0)
    Abs,
    /// `ln(1 + e^x)`, computed stably; d/dx = sigmoid(x)
    Softplus,
    /// `1` where x > 0, else `0`; d/dx = 0
    Step,
    /// `-1`, `0` or `1`; d/dx = 0
    Sign,
}

impl Func {
    /// The name in the definition language and in the generated code.
    pub fn name(self) -> &'static str {
        match self {
            Func::Sigmoid => "sigmoid",
            Func::Tanh => "tanh",
            Func::Relu => "relu",
            Func::Exp => "exp",
            Func::Log => "log",
            Func::Sqrt => "sqrt",
            Func::Abs => "abs",
            Func::Softplus => "softplus",
            Func::Step => "step",
            Func::Sign => "sign",
        }
    }

    /// Evaluates the function (the reference semantics the generated code must match).
    pub fn eval(self, x: f64) -> f64 {
        match self {
            Func::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Func::Tanh => x.tanh(),
            Func::Relu => x.max(0.0),
            Func::Exp => x.exp(),
            Func::Log => x.ln(),
            Func::Sqrt => x.sqrt(),
            Func::Abs => x.abs(),
            Func::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            Func::Step => f64::from(u8::from(x > 0.0)),
            Func::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
        }
    }
}

/// A scalar expression tree.
#[derive(Clone, Debug, PartialEq)]
pub enum S {
    /// The k-th operand of the elementwise node, at the current index.
    Arg(usize),
    /// The node's own output at the current index (only in derivatives).
    Out,
    /// A constant.
    Const(f64),
    /// `-a`
    Neg(Box<S>),
    /// `a + b`
    Add(Box<S>, Box<S>),
    /// `a - b`
    Sub(Box<S>, Box<S>),
    /// `a * b`
    Mul(Box<S>, Box<S>),
    /// `a / b`
    Div(Box<S>, Box<S>),
    /// `a ^ c` for a constant `c`
    Pow(Box<S>, f64),
    /// `f(a)`
    Call(Func, Box<S>),
}

/// Constructors that keep call sites short.
pub mod build {
    use super::*;
    /// `a + b`
    pub fn add(a: S, b: S) -> S {
        S::Add(Box::new(a), Box::new(b))
    }
    /// `a - b`
    pub fn sub(a: S, b: S) -> S {
        S::Sub(Box::new(a), Box::new(b))
    }
    /// `a * b`
    pub fn mul(a: S, b: S) -> S {
        S::Mul(Box::new(a), Box::new(b))
    }
    /// `a / b`
    pub fn div(a: S, b: S) -> S {
        S::Div(Box::new(a), Box::new(b))
    }
    /// `-a`
    pub fn neg(a: S) -> S {
        S::Neg(Box::new(a))
    }
    /// `a ^ c`
    pub fn pow(a: S, c: f64) -> S {
        S::Pow(Box::new(a), c)
    }
    /// `f(a)`
    pub fn call(f: Func, a: S) -> S {
        S::Call(f, Box::new(a))
    }
    /// A constant.
    pub fn c(v: f64) -> S {
        S::Const(v)
    }
}

use build::*;

impl S {
    /// `∂self/∂Arg(k)`, by the chain rule, unsimplified. Each rule reuses the
    /// forward subexpression it differentiates, so that a later pass can
    /// replace it by the stored forward value.
    pub fn diff(&self, k: usize) -> S {
        match self {
            S::Arg(j) => c(if *j == k { 1.0 } else { 0.0 }),
            S::Out | S::Const(_) => c(0.0),
            // d(-a) = -da
            S::Neg(a) => neg(a.diff(k)),
            // d(a + b) = da + db
            S::Add(a, b) => add(a.diff(k), b.diff(k)),
            // d(a - b) = da - db
            S::Sub(a, b) => sub(a.diff(k), b.diff(k)),
            // d(a b) = da b + a db
            S::Mul(a, b) => add(mul(a.diff(k), (**b).clone()), mul((**a).clone(), b.diff(k))),
            // d(a / b) = da / b - a db / b²
            S::Div(a, b) => sub(
                div(a.diff(k), (**b).clone()),
                div(mul((**a).clone(), b.diff(k)), pow((**b).clone(), 2.0)),
            ),
            // d(a^c) = c a^(c-1) da
            S::Pow(a, e) => mul(mul(c(*e), pow((**a).clone(), e - 1.0)), a.diff(k)),
            S::Call(f, a) => {
                let inner = a.diff(k);
                let fx = self.clone();
                let x = (**a).clone();
                let outer = match f {
                    // sigmoid' = s (1 - s)
                    Func::Sigmoid => mul(fx.clone(), sub(c(1.0), fx)),
                    // tanh' = 1 - t²
                    Func::Tanh => sub(c(1.0), pow(fx, 2.0)),
                    // relu' = step(relu(x)) = step(x) (0 at 0): written in
                    // terms of the output so the backward pass reads the
                    // stored activation, not the pre-activation
                    Func::Relu => call(Func::Step, fx),
                    // exp' = exp
                    Func::Exp => fx,
                    // log' = 1 / x
                    Func::Log => div(c(1.0), x),
                    // sqrt' = 1 / (2 sqrt)
                    Func::Sqrt => div(c(0.5), fx),
                    // abs' = sign (0 at 0)
                    Func::Abs => call(Func::Sign, x),
                    // softplus' = sigmoid
                    Func::Softplus => call(Func::Sigmoid, x),
                    // piecewise constant
                    Func::Step | Func::Sign => c(0.0),
                };
                mul(outer, inner)
            }
        }
    }

    /// Evaluates at the given operands and output (the reference semantics).
    #[cfg(test)]
    pub fn eval(&self, args: &[f64], out: f64) -> f64 {
        match self {
            S::Arg(k) => args[*k],
            S::Out => out,
            S::Const(v) => *v,
            S::Neg(a) => -a.eval(args, out),
            S::Add(a, b) => a.eval(args, out) + b.eval(args, out),
            S::Sub(a, b) => a.eval(args, out) - b.eval(args, out),
            S::Mul(a, b) => a.eval(args, out) * b.eval(args, out),
            S::Div(a, b) => a.eval(args, out) / b.eval(args, out),
            S::Pow(a, e) => pow_value(a.eval(args, out), *e),
            S::Call(f, a) => f.eval(a.eval(args, out)),
        }
    }

    /// Replaces every `Arg(k)` by `subst[k]`.
    pub fn substitute(&self, subst: &[S]) -> S {
        self.map_leaves(&|leaf| match leaf {
            S::Arg(k) => subst[*k].clone(),
            other => other.clone(),
        })
    }

    /// Renumbers operands: `Arg(k)` becomes `Arg(map[k])`.
    pub fn renumber(&self, map: &[usize]) -> S {
        self.map_leaves(&|leaf| match leaf {
            S::Arg(k) => S::Arg(map[*k]),
            other => other.clone(),
        })
    }

    /// Replaces every occurrence of the subtree `whole` by `Out`.
    pub fn reuse_output(&self, whole: &S) -> S {
        if self == whole {
            return S::Out;
        }
        match self {
            S::Neg(a) => neg(a.reuse_output(whole)),
            S::Add(a, b) => add(a.reuse_output(whole), b.reuse_output(whole)),
            S::Sub(a, b) => sub(a.reuse_output(whole), b.reuse_output(whole)),
            S::Mul(a, b) => mul(a.reuse_output(whole), b.reuse_output(whole)),
            S::Div(a, b) => div(a.reuse_output(whole), b.reuse_output(whole)),
            S::Pow(a, e) => pow(a.reuse_output(whole), *e),
            S::Call(f, a) => call(*f, a.reuse_output(whole)),
            leaf => leaf.clone(),
        }
    }

    fn map_leaves(&self, f: &dyn Fn(&S) -> S) -> S {
        match self {
            S::Neg(a) => neg(a.map_leaves(f)),
            S::Add(a, b) => add(a.map_leaves(f), b.map_leaves(f)),
            S::Sub(a, b) => sub(a.map_leaves(f), b.map_leaves(f)),
            S::Mul(a, b) => mul(a.map_leaves(f), b.map_leaves(f)),
            S::Div(a, b) => div(a.map_leaves(f), b.map_leaves(f)),
            S::Pow(a, e) => pow(a.map_leaves(f), *e),
            S::Call(func, a) => call(*func, a.map_leaves(f)),
            leaf => f(leaf),
        }
    }

    /// Whether the expression reads `Arg(k)`.
    pub fn uses_arg(&self, k: usize) -> bool {
        self.any_leaf(&|leaf| *leaf == S::Arg(k))
    }

    fn any_leaf(&self, p: &dyn Fn(&S) -> bool) -> bool {
        match self {
            S::Neg(a) | S::Pow(a, _) | S::Call(_, a) => a.any_leaf(p),
            S::Add(a, b) | S::Sub(a, b) | S::Mul(a, b) | S::Div(a, b) => {
                a.any_leaf(p) || b.any_leaf(p)
            }
            leaf => p(leaf),
        }
    }

    /// Floating-point operations to evaluate once (a function call counts one).
    pub fn flops(&self) -> u64 {
        match self {
            S::Arg(_) | S::Out | S::Const(_) => 0,
            S::Neg(a) | S::Pow(a, _) | S::Call(_, a) => 1 + a.flops(),
            S::Add(a, b) | S::Sub(a, b) | S::Mul(a, b) | S::Div(a, b) => 1 + a.flops() + b.flops(),
        }
    }

    /// The constant value, if the expression is one.
    pub fn as_const(&self) -> Option<f64> {
        match self {
            S::Const(v) => Some(*v),
            _ => None,
        }
    }
}

/// `x ^ e` as the generated code computes it: `powi` for integer exponents.
pub fn pow_value(x: f64, e: f64) -> f64 {
    if e.fract() == 0.0 && e.abs() <= i32::MAX as f64 {
        x.powi(e as i32)
    } else {
        x.powf(e)
    }
}

/// A compact, fully parenthesised text form, for tests and debugging.
impl fmt::Display for S {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S::Arg(k) => write!(f, "${k}"),
            S::Out => write!(f, "out"),
            S::Const(v) => write!(f, "{v}"),
            S::Neg(a) => write!(f, "(-{a})"),
            S::Add(a, b) => write!(f, "({a} + {b})"),
            S::Sub(a, b) => write!(f, "({a} - {b})"),
            S::Mul(a, b) => write!(f, "({a} * {b})"),
            S::Div(a, b) => write!(f, "({a} / {b})"),
            S::Pow(a, e) => write!(f, "({a} ^ {e})"),
            S::Call(func, a) => write!(f, "{}({a})", func.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every derivative rule against a central finite difference, at points
    /// away from kinks, for each operand of each operator and function.
    #[test]
    fn derivatives_match_finite_differences() {
        let x = || S::Arg(0);
        let y = || S::Arg(1);
        let mut cases = vec![
            neg(x()),
            add(x(), y()),
            sub(x(), y()),
            mul(x(), y()),
            div(x(), y()),
            pow(x(), 3.0),
            pow(x(), 0.5),
            pow(x(), -2.0),
            // nested: the chain rule through two functions
            call(Func::Tanh, mul(x(), call(Func::Sigmoid, y()))),
            div(call(Func::Exp, x()), add(c(1.0), pow(y(), 2.0))),
        ];
        for f in [
            Func::Sigmoid,
            Func::Tanh,
            Func::Relu,
            Func::Exp,
            Func::Log,
            Func::Sqrt,
            Func::Abs,
            Func::Softplus,
        ] {
            cases.push(call(f, mul(x(), y())));
        }
        let points = [[0.7, 1.3], [1.9, 0.4], [-0.8, -1.1], [2.5, -0.6]];
        for e in &cases {
            for p in points {
                if e.eval(&p, 0.0).is_nan() {
                    continue; // log or sqrt of a negative: outside the domain
                }
                for k in 0..2 {
                    let h = 1e-6;
                    let (mut lo, mut hi) = (p, p);
                    lo[k] -= h;
                    hi[k] += h;
                    let numeric = (e.eval(&hi, 0.0) - e.eval(&lo, 0.0)) / (2.0 * h);
                    let out = e.eval(&p, 0.0);
                    let d = e.diff(k);
                    // the same derivative with the output reused, as the backward pass computes it
                    let reused = d.reuse_output(e);
                    for analytic in [d.eval(&p, out), reused.eval(&p, out)] {
                        let err = (analytic - numeric).abs() / numeric.abs().max(1.0);
                        assert!(
                            err < 1e-6,
                            "d/d${k} {e} at {p:?}: analytic {analytic}, numeric {numeric}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn subgradients_at_kinks_are_conventional() {
        assert_eq!(call(Func::Relu, S::Arg(0)).diff(0).eval(&[0.0], 0.0), 0.0);
        assert_eq!(call(Func::Abs, S::Arg(0)).diff(0).eval(&[0.0], 0.0), 0.0);
    }
}
