//! Expressions: operands, operators, slices, step references and calls.
//! A chain `a + b + c ...` is lowered in a loop, and every expression's
//! nesting (with the bodies of the functions it calls) and the graph's size
//! are bounded, so no definition recurses the macro into a stack overflow.

use super::names::{short, Side};
use super::{Cx, Lowered, Reported, Value};
use crate::ir::*;
use crate::limits::{MAX_CALL_DEPTH, MAX_OPERATIONS};
use crate::ops::{self, Lower};
use crate::scalar::{build::*, Cmp, S};
use nn_grammar::{did_you_mean, BinaryOp, Diagnostic, Expr, Ident, KeywordArg, Span, UnaryOp};

/// Shape of an elementwise result of several operands and how each
/// broadcasts into it: the result has the shape of the highest-rank operand;
/// the others are equal to it, scalars, or (with a matrix) vectors along its
/// columns.
pub fn broadcast_all(shapes: &[Shape]) -> Option<(Shape, Vec<Bcast>)> {
    let out = shapes.iter().max_by_key(|s| s.rank())?.clone();
    let bcast = shapes
        .iter()
        .map(|s| {
            if *s == out {
                Some(Bcast::Full)
            } else if s.is_scalar() {
                Some(Bcast::Scalar)
            } else if out.rank() == 2 && s.rank() == 1 && s.0[0] == out.0[0] {
                Some(Bcast::Col)
            } else {
                None
            }
        })
        .collect::<Option<Vec<_>>>()?;
    Some((out, bcast))
}

/// Shape of an elementwise result, and how each operand broadcasts into it:
/// equal shapes; a scalar with anything; a vector `[m]` with a matrix `[m, n]`
/// (a bias added to every column).
pub fn broadcast(a: &Shape, b: &Shape) -> Option<(Shape, Bcast, Bcast)> {
    if a == b {
        Some((a.clone(), Bcast::Full, Bcast::Full))
    } else if a.is_scalar() {
        Some((b.clone(), Bcast::Scalar, Bcast::Full))
    } else if b.is_scalar() {
        Some((a.clone(), Bcast::Full, Bcast::Scalar))
    } else if a.rank() == 2 && b.rank() == 1 && a.0[0] == b.0[0] {
        Some((a.clone(), Bcast::Full, Bcast::Col))
    } else if a.rank() == 1 && b.rank() == 2 && b.0[0] == a.0[0] {
        Some((b.clone(), Bcast::Col, Bcast::Full))
    } else {
        None
    }
}

impl Cx {
    /// A class index (node `id`, expression `e`) used where `wanted` is
    /// needed: what a class input or target can be used for instead.
    pub fn class_misuse(&self, e: &Expr, id: NodeId, wanted: &str) -> Diagnostic {
        let n = short(e, "this");
        if matches!(self.g.nodes[id].op, Op::Input(_)) {
            Diagnostic::new(
                e.span(),
                format!("{n} is a class-index input (an integer), not {wanted}"),
            )
            .with_help(format!(
                "embed it to get a learned vector per class: `embedding({}, 32)`",
                n.trim_matches('`')
            ))
        } else {
            Diagnostic::new(
                e.span(),
                format!("{n} is a class-index target, not {wanted}"),
            )
            .with_help("use it as the second argument of `softmax_cross_entropy`")
        }
    }

    pub fn tensor(&mut self, e: &Expr) -> Result<NodeId, Reported> {
        match self.expr(e)? {
            Value::Node(id) => Ok(id),
            Value::Seq(_) | Value::SeqClass(..) | Value::State(_) => {
                self.error(Cx::unindexed(e, "used"));
                Err(Reported)
            }
            Value::Class(id, _) => {
                let d = self.class_misuse(e, id, "a real value");
                self.error(d);
                Err(Reported)
            }
        }
    }

    /// Lowers an expression. Its nesting (counting the bodies of the user
    /// functions it calls) and the graph's size are bounded: beyond
    /// [`MAX_CALL_DEPTH`] levels or [`MAX_OPERATIONS`] operations the
    /// definition is an error at the tokens, not a stack overflow or a graph
    /// too large to compile.
    pub fn expr(&mut self, e: &Expr) -> Lowered {
        if self.over_limit {
            return Err(Reported);
        }
        if self.depth == 0 {
            self.outer = e.span();
        }
        // inside a function body, say which function, and point at the
        // user's statement that called it
        let (at, inside) = match self.frames.last() {
            Some((f, _)) => (self.outer, format!(" (inlining `{f}`)")),
            None => (e.span(), String::new()),
        };
        if self.g.nodes.len() > MAX_OPERATIONS {
            self.over_limit = true;
            self.error(
                Diagnostic::new(at, format!("the definition grows beyond {MAX_OPERATIONS} operations here{inside}"))
                    .with_help("user functions are inlined at every call: a function that calls another twice, nested, doubles the work at each level"),
            );
            return Err(Reported);
        }
        if self.depth >= MAX_CALL_DEPTH {
            self.over_limit = true;
            self.error(
                Diagnostic::new(at, format!("this expression nests more than {MAX_CALL_DEPTH} levels deep, counting the bodies of the functions it calls{inside}"))
                    .with_help("bind intermediate results to names (`a = f(x); b = f(a);`)"),
            );
            return Err(Reported);
        }
        self.depth += 1;
        let result = self.expr_inner(e);
        self.depth -= 1;
        result
    }

    pub fn expr_inner(&mut self, e: &Expr) -> Lowered {
        match e {
            Expr::Number(v, span) => Ok(Value::Node(self.constant(*v, *span))),
            Expr::Name(name) => self.lookup(name),
            Expr::Unary {
                op: UnaryOp::Neg,
                arg,
                span,
            } => {
                let x = self.tensor(arg)?;
                Ok(Value::Node(self.unary(x, neg(S::Arg(0)), "neg", *span)))
            }
            Expr::Binary {
                op,
                op_span: _,
                lhs,
                rhs,
                span,
            } => {
                // lower both sides before failing, so both sides' errors show
                let a = self.tensor(lhs);
                let b = self.tensor(rhs);
                let (a, b) = (a?, b?);
                self.binary(*op, a, b, *span, Side::of(lhs), Side::of(rhs))
                    .map(Value::Node)
            }
            Expr::Chain { first, rest, .. } => {
                // left to right, in a loop: a long sum does not recurse
                let mut acc = self.tensor(first);
                let mut left = first.span();
                for (op, _, rhs) in rest {
                    let b = self.tensor(rhs);
                    let whole = left.join(rhs.span());
                    let lhs_side = if left == first.span() {
                        Side::of(first)
                    } else {
                        Side::part(left)
                    };
                    acc = match (acc, b) {
                        (Ok(a), Ok(b)) => self.binary(*op, a, b, whole, lhs_side, Side::of(rhs)),
                        _ => Err(Reported),
                    };
                    left = whole;
                }
                acc.map(Value::Node)
            }
            Expr::Call {
                func,
                args,
                kwargs,
                span,
            } => self.call(func, args, kwargs, *span),
            Expr::Slice {
                arg,
                start,
                end,
                span,
            } => ops::slicing::lower_slice(self, arg, *start, *end, *span).map(Value::Node),
            Expr::StepRef {
                arg,
                index,
                offset,
                span,
            } => self.step_ref(arg, index, *offset, *span),
        }
    }

    pub fn binary(
        &mut self,
        op: BinaryOp,
        a: NodeId,
        b: NodeId,
        span: Span,
        lhs: Side,
        rhs: Side,
    ) -> Result<NodeId, Reported> {
        let sa = self.g.nodes[a].shape.clone();
        let sb = self.g.nodes[b].shape.clone();
        let shape_error = |detail: String| {
            Diagnostic::new(
                span,
                format!("shapes {sa} and {sb} do not match for `{}`", op.symbol()),
            )
            .with_help(detail)
        };
        let body = match op {
            BinaryOp::MatMul => {
                if let Some((opk, shape)) = ops::linalg::product(a, b, &sa, &sb) {
                    // named after its operands (`wh_h_prev`), when they are short names
                    let (na, nb) = (&self.g.nodes[a].name, &self.g.nodes[b].name);
                    let base = if na.len() + nb.len() <= 24 {
                        format!("{na}_{nb}")
                    } else {
                        format!("{}_prod", self.binding)
                    };
                    return Ok(self.node_called(opk, shape, &base, span));
                }
                match (sa.rank(), sb.rank()) {
                    (1, 1) if sa == sb => return Ok(ops::linalg::dot(self, a, b, span)),
                    (0, _) | (_, 0) => {
                        let scalar = if sa.rank() == 0 { lhs } else { rhs };
                        self.error(
                            Diagnostic::new(
                                scalar.span,
                                format!(
                                    "`@` needs a vector or matrix on each side, but {} is a scalar",
                                    scalar.short("this side")
                                ),
                            )
                            .with_help("use `*` to scale by a scalar"),
                        );
                    }
                    (ra, rb) if ra > 2 || rb > 2 => {
                        let (side, shape) = if ra > 2 { (lhs, &sa) } else { (rhs, &sb) };
                        self.error(shape_error(format!(
                            "`@` multiplies vectors and matrices, but {} is {shape}; `flatten` or `reshape` it first",
                            side.short("this side")
                        )));
                    }
                    _ => {
                        let inner_a = sa.0.last().copied().unwrap_or(1);
                        let inner_b = sb.0[0];
                        let detail = format!(
                            "inner sizes {inner_a} and {inner_b} differ: {} is {sa}, {} is {sb}",
                            lhs.short("the left side"),
                            rhs.short("the right side")
                        );
                        self.error(shape_error(detail));
                    }
                }
                return Err(Reported);
            }
            BinaryOp::Pow => {
                let Some(e) = self.const_of_node(b) else {
                    self.error(
                        Diagnostic::new(rhs.span, "the exponent of `^` must be a number")
                            .with_help("write a constant exponent such as `x ^ 2` or `x ^ 0.5`; use `exp(y * log(x))` for a variable one"),
                    );
                    return Err(Reported);
                };
                return Ok(self.unary(a, pow(S::Arg(0), e), "pow", span));
            }
            BinaryOp::Lt => cmp(Cmp::Lt, S::Arg(0), S::Arg(1)),
            BinaryOp::Gt => cmp(Cmp::Gt, S::Arg(0), S::Arg(1)),
            BinaryOp::Le => cmp(Cmp::Le, S::Arg(0), S::Arg(1)),
            BinaryOp::Ge => cmp(Cmp::Ge, S::Arg(0), S::Arg(1)),
            BinaryOp::Eq => cmp(Cmp::Eq, S::Arg(0), S::Arg(1)),
            BinaryOp::Ne => cmp(Cmp::Ne, S::Arg(0), S::Arg(1)),
            BinaryOp::Add => add(S::Arg(0), S::Arg(1)),
            BinaryOp::Sub => sub(S::Arg(0), S::Arg(1)),
            BinaryOp::Mul => mul(S::Arg(0), S::Arg(1)),
            BinaryOp::Div => div(S::Arg(0), S::Arg(1)),
        };
        let Some((shape, ba, bb)) = broadcast(&sa, &sb) else {
            let detail = format!(
                "{} is {sa}, {} is {sb}; elementwise operators need equal shapes, a scalar on one side, or a matrix [m, n] with a vector [m]",
                lhs.short("the left side"),
                rhs.short("the right side")
            );
            self.error(shape_error(detail));
            return Err(Reported);
        };
        let what = match op {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            _ => "cmp",
        };
        Ok(self.map(vec![a, b], vec![ba, bb], body, shape, what, span))
    }

    /// A call: a user function (inlined), or a built-in of the op table.
    pub fn call(
        &mut self,
        func: &Ident,
        args: &[Expr],
        kwargs: &[KeywordArg],
        span: Span,
    ) -> Lowered {
        let name = func.name.as_str();
        if !self.keywords_check(name, kwargs) {
            return Err(Reported);
        }
        if self.fns.contains_key(name) {
            return self.call_user(func, args, span);
        }
        let Some(b) = ops::builtin(name) else {
            // still check the arguments, for their own errors
            for a in args {
                let _ = self.expr(a);
            }
            let d = Diagnostic::new(func.span, format!("unknown function `{name}`"));
            let mut known = ops::builtin_names();
            known.extend(self.fns.keys().map(String::as_str));
            let d = match did_you_mean(name, known) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help("the README's language reference lists every function"),
            };
            self.error(d);
            return Err(Reported);
        };
        let (min, max) = (b.min_args, b.max_args);
        if args.len() < min || args.len() > max {
            let takes = if min == max {
                format!("{min}")
            } else if max == min + 1 {
                format!("{min} or {max}")
            } else {
                format!("from {min} to {max}")
            };
            let plural = if max == 1 { "argument" } else { "arguments" };
            // too many: point at the extra arguments; too few: at the call
            let at = match (args.get(max), args.last()) {
                (Some(first), Some(last)) => first.span().join(last.span()),
                _ => span,
            };
            let signature = if b.signature.is_empty() {
                format!("{name}(x)")
            } else {
                b.signature.to_string()
            };
            self.error(
                Diagnostic::new(
                    at,
                    format!("`{name}` takes {takes} {plural}, found {}", args.len()),
                )
                .with_help(format!("write `{signature}`")),
            );
            return Err(Reported);
        }
        match b.lower {
            Lower::Primitive(f) => {
                let x = self.tensor(&args[0])?;
                Ok(Value::Node(self.unary(x, call(f, S::Arg(0)), name, span)))
            }
            Lower::Unary(body) => {
                let x = self.tensor(&args[0])?;
                Ok(Value::Node(self.unary(x, body(), name, span)))
            }
            Lower::Custom(lower) => lower(self, name, args, span),
            Lower::Keywords(lower, _) => lower(self, name, args, kwargs, span),
        }
    }

    /// Checks a call's keyword arguments: each one the function takes (a
    /// user function or a built-in without keywords takes none), none
    /// given twice. Reports and returns `false` otherwise.
    fn keywords_check(&mut self, name: &str, kwargs: &[KeywordArg]) -> bool {
        let Some(first) = kwargs.first() else {
            return true;
        };
        let known: &[&str] = match ops::builtin(name).map(|b| b.lower) {
            Some(Lower::Keywords(_, known)) => known,
            _ if self.fns.contains_key(name) || ops::builtin(name).is_some() => {
                self.error(
                    Diagnostic::new(first.span, format!("`{name}` takes no keyword arguments"))
                        .with_help(format!(
                            "pass the value as a positional argument, without `{} =`",
                            first.name.name
                        )),
                );
                return false;
            }
            // an unknown function: reported by the caller
            _ => return true,
        };
        let mut ok = true;
        for (k, kw) in kwargs.iter().enumerate() {
            let kname = kw.name.name.as_str();
            if !known.contains(&kname) {
                let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
                let d = Diagnostic::new(
                    kw.name.span,
                    format!("`{name}` has no keyword argument `{kname}`"),
                );
                let d = match did_you_mean(kname, known.iter().copied()) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(format!("its keyword arguments are {}", list.join(", "))),
                };
                self.error(d);
                ok = false;
            } else if kwargs[..k].iter().any(|p| p.name.name == kname) {
                self.error(
                    Diagnostic::new(
                        kw.span,
                        format!("the keyword argument `{kname}` of `{name}` is given twice"),
                    )
                    .with_help("keep one of them"),
                );
                ok = false;
            }
        }
        ok
    }
}
