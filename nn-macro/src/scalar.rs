//! Scalar expressions: the bodies of elementwise (`Map`) nodes, their symbolic
//! derivatives, and their simplification.
//!
//! An elementwise node applies one scalar expression at every index of its
//! output; `Arg(k)` is its k-th operand at that index and `Out` its own
//! output there (so a derivative can reuse a stored forward value, as
//! `sigmoid' = s (1 - s)` does).

use crate::ops::elementwise::FUNCS;
use std::fmt;

/// A scalar function of one argument: an entry of the primitives table
/// [`FUNCS`](crate::ops::elementwise::FUNCS), which holds its name, value,
/// derivative and the method the generated code calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Func(pub u8);

impl Func {
    /// The name in the definition language and in the maths docs.
    pub fn name(self) -> &'static str {
        FUNCS[self.0 as usize].name
    }

    /// Evaluates the function (the reference semantics the generated code must match).
    pub fn eval(self, x: f64) -> f64 {
        (FUNCS[self.0 as usize].value)(x)
    }
}

/// A comparison, giving 1 where it holds and 0 elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cmp {
    /// `<`
    Lt,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Cmp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Gt => ">",
            Cmp::Le => "<=",
            Cmp::Ge => ">=",
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
        }
    }

    /// Whether `a op b` holds.
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Lt => a < b,
            Cmp::Gt => a > b,
            Cmp::Le => a <= b,
            Cmp::Ge => a >= b,
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
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
    /// `1` where `a op b` holds, else `0`; its derivative is 0
    Cmp(Cmp, Box<S>, Box<S>),
    /// `a` where `cond` is non-zero, else `b`; d = select(cond, da, db)
    Select(Box<S>, Box<S>, Box<S>),
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
    /// `1` where `a op b`, else `0`.
    pub fn cmp(op: Cmp, a: S, b: S) -> S {
        S::Cmp(op, Box::new(a), Box::new(b))
    }
    /// `a` where `cond`, else `b`.
    pub fn select(cond: S, a: S, b: S) -> S {
        S::Select(Box::new(cond), Box::new(a), Box::new(b))
    }
}

use build::*;

/// Structural hashing (constants by their bits), so that common
/// subexpression elimination can key nodes by their ops.
impl std::hash::Hash for S {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            S::Arg(k) => k.hash(state),
            S::Const(c) | S::Pow(_, c) => c.to_bits().hash(state),
            S::Call(f, _) => f.hash(state),
            S::Cmp(op, _, _) => op.hash(state),
            _ => {}
        }
        for child in self.children() {
            child.hash(state);
        }
    }
}

/// Equality is structural; a NaN constant is unequal to itself, which only
/// means two nodes holding one are not shared.
impl Eq for S {}

impl S {
    /// The same node with each child replaced by `f(child)`.
    pub fn map_children(&self, f: &mut dyn FnMut(&S) -> S) -> S {
        match self {
            S::Arg(_) | S::Out | S::Const(_) => self.clone(),
            S::Neg(a) => neg(f(a)),
            S::Add(a, b) => add(f(a), f(b)),
            S::Sub(a, b) => sub(f(a), f(b)),
            S::Mul(a, b) => mul(f(a), f(b)),
            S::Div(a, b) => div(f(a), f(b)),
            S::Pow(a, e) => pow(f(a), *e),
            S::Call(func, a) => call(*func, f(a)),
            S::Cmp(op, a, b) => cmp(*op, f(a), f(b)),
            S::Select(c0, a, b) => select(f(c0), f(a), f(b)),
        }
    }

    /// The children, in order (at most three; no allocation).
    pub fn children(&self) -> impl Iterator<Item = &S> {
        let kids: [Option<&S>; 3] = match self {
            S::Arg(_) | S::Out | S::Const(_) => [None, None, None],
            S::Neg(a) | S::Pow(a, _) | S::Call(_, a) => [Some(a), None, None],
            S::Add(a, b) | S::Sub(a, b) | S::Mul(a, b) | S::Div(a, b) | S::Cmp(_, a, b) => {
                [Some(a), Some(b), None]
            }
            S::Select(c0, a, b) => [Some(c0), Some(a), Some(b)],
        };
        kids.into_iter().flatten()
    }

    /// `∂self/∂Arg(k)`, by the chain rule, unsimplified. Each rule reuses the
    /// forward subexpression it differentiates, so that a later pass can
    /// replace it by the stored forward value.
    pub fn diff(&self, k: usize) -> S {
        match self {
            S::Arg(j) => c(if *j == k { 1.0 } else { 0.0 }),
            // comparisons are piecewise constant
            S::Out | S::Const(_) | S::Cmp(..) => c(0.0),
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
            // d select(p, a, b) = select(p, da, db): the branch taken
            S::Select(p, a, b) => select((**p).clone(), a.diff(k), b.diff(k)),
            // d f(a) = f'(a) da, f' from the primitives table, written in
            // terms of the operand and of the call itself (so that a later
            // pass can read the stored output: sigmoid' = s (1 - s))
            S::Call(f, a) => {
                let outer = (FUNCS[f.0 as usize].derivative)((**a).clone(), self.clone());
                mul(outer, a.diff(k))
            }
        }
    }

    /// Evaluates at the given operands and output (the reference semantics).
    pub fn eval(&self, args: &[f64], out: f64) -> f64 {
        let e = |s: &S| s.eval(args, out);
        match self {
            S::Arg(k) => args[*k],
            S::Out => out,
            S::Const(v) => *v,
            S::Neg(a) => -e(a),
            S::Add(a, b) => e(a) + e(b),
            S::Sub(a, b) => e(a) - e(b),
            S::Mul(a, b) => e(a) * e(b),
            S::Div(a, b) => e(a) / e(b),
            S::Pow(a, p) => pow_value(e(a), *p),
            S::Call(f, a) => f.eval(e(a)),
            S::Cmp(op, a, b) => f64::from(u8::from(op.holds(e(a), e(b)))),
            S::Select(p, a, b) => {
                if e(p) != 0.0 {
                    e(a)
                } else {
                    e(b)
                }
            }
        }
    }

    /// Replaces every `Arg(k)` by `subst[k]`.
    pub fn substitute(&self, subst: &[S]) -> S {
        match self {
            S::Arg(k) => subst[*k].clone(),
            other => other.map_children(&mut |ch| ch.substitute(subst)),
        }
    }

    /// Renumbers operands: `Arg(k)` becomes `Arg(map[k])`.
    pub fn renumber(&self, map: &[usize]) -> S {
        match self {
            S::Arg(k) => S::Arg(map[*k]),
            other => other.map_children(&mut |ch| ch.renumber(map)),
        }
    }

    /// Replaces `Out` by `Arg(k)`.
    pub fn out_to_arg(&self, k: usize) -> S {
        match self {
            S::Out => S::Arg(k),
            other => other.map_children(&mut |ch| ch.out_to_arg(k)),
        }
    }

    /// Replaces every occurrence of the subtree `whole` by `Out`.
    pub fn reuse_output(&self, whole: &S) -> S {
        if self == whole {
            return S::Out;
        }
        self.map_children(&mut |ch| ch.reuse_output(whole))
    }

    /// Marks in `used` every operand the expression reads.
    pub fn mark_args(&self, used: &mut [bool]) {
        match self {
            S::Arg(k) => used[*k] = true,
            other => other.children().for_each(|ch| ch.mark_args(used)),
        }
    }

    /// How many times the expression reads `Arg(k)`.
    pub fn count_arg(&self, k: usize) -> usize {
        usize::from(*self == S::Arg(k)) + self.children().map(|ch| ch.count_arg(k)).sum::<usize>()
    }

    /// Whether the expression can be infinite or NaN for finite operands: it
    /// divides by a non-constant, or raises to a negative or fractional power.
    pub fn may_be_non_finite(&self) -> bool {
        match self {
            S::Div(_, b) if b.as_const().is_none() => true,
            S::Pow(_, e) if *e < 0.0 || e.fract() != 0.0 => true,
            other => other.children().any(|ch| ch.may_be_non_finite()),
        }
    }

    /// Number of nodes of the expression tree.
    pub fn size(&self) -> usize {
        1 + self.children().map(|ch| ch.size()).sum::<usize>()
    }

    /// Floating-point operations to evaluate once (a function call or a comparison counts one).
    pub fn flops(&self) -> u64 {
        let own = match self {
            S::Arg(_) | S::Out | S::Const(_) | S::Select(..) => 0,
            _ => 1,
        };
        own + self.children().map(|ch| ch.flops()).sum::<u64>()
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
            S::Cmp(op, a, b) => write!(f, "({a} {} {b})", op.symbol()),
            S::Select(p, a, b) => write!(f, "select({p}, {a}, {b})"),
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
            call(Func::TANH, mul(x(), call(Func::SIGMOID, y()))),
            div(call(Func::EXP, x()), add(c(1.0), pow(y(), 2.0))),
            // a branch: the derivative of the branch taken
            select(cmp(Cmp::Gt, x(), y()), mul(x(), x()), mul(c(3.0), y())),
        ];
        // every primitive of the table, through a product (the chain rule)
        for k in 0..crate::ops::elementwise::FUNCS.len() {
            let f = Func(k as u8);
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
    fn erf_is_libm_s() {
        for (x, want) in [
            (0.5, 0.520_499_877_813_046_5),
            (-1.5, -0.966_105_146_475_310_7),
        ] {
            assert!((Func::ERF.eval(x) - want).abs() < 1e-15);
        }
    }

    #[test]
    fn subgradients_at_kinks_are_conventional() {
        assert_eq!(call(Func(2), S::Arg(0)).diff(0).eval(&[0.0], 0.0), 0.0);
        assert_eq!(call(Func::ABS, S::Arg(0)).diff(0).eval(&[0.0], 0.0), 0.0);
    }
}
