//! Constants: constant expressions (`const`, exponents, slopes, axes,
//! initialiser arguments), evaluated in f64; initialisers.

use super::Cx;
use crate::ir::*;
use crate::symbol;
use nn_grammar::{did_you_mean, BinaryOp, Diagnostic, Expr, Span};

impl Cx {
    /// The value of a constant expression: numbers, `const`s, `+ - * / ^`.
    pub fn const_eval(&self, e: &Expr) -> Result<f64, Diagnostic> {
        let v = match e {
            Expr::Number(v, _) => *v,
            Expr::Name(n) => match self.consts.get(&n.name) {
                Some(v) => *v,
                None => {
                    return Err(
                        Diagnostic::new(n.span, format!("`{}` is not a constant", n.name))
                            .with_help("a `const` is computed from numbers and other `const`s"),
                    )
                }
            },
            Expr::Unary { arg, .. } => -self.const_eval(arg)?,
            Expr::Binary {
                op, lhs, rhs, span, ..
            } => {
                let (a, b) = (self.const_eval(lhs)?, self.const_eval(rhs)?);
                const_op(*op, a, b, *span)?
            }
            Expr::Chain { first, rest, .. } => {
                let mut acc = self.const_eval(first)?;
                for (op, op_span, rhs) in rest {
                    acc = const_op(*op, acc, self.const_eval(rhs)?, *op_span)?;
                }
                acc
            }
            other => {
                return Err(Diagnostic::new(
                    other.span(),
                    "a constant must be computed from numbers and other `const`s",
                )
                .with_help("write a number, such as `const alpha = 0.01;`"))
            }
        };
        if !v.is_finite() {
            return Err(Diagnostic::new(
                e.span(),
                format!("this constant is not finite ({v})"),
            ));
        }
        Ok(v)
    }

    /// A constant expression where one is required (an exponent, a slope).
    pub fn const_of(&self, e: &Expr) -> Option<f64> {
        self.const_eval(e).ok()
    }

    /// The value of a lowered operand that is a constant.
    pub fn const_of_node(&self, id: NodeId) -> Option<f64> {
        self.const_value(id)
    }
}

/// `a op b` on constants: the arithmetic operators only.
fn const_op(op: BinaryOp, a: f64, b: f64, span: Span) -> Result<f64, Diagnostic> {
    Ok(match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Pow => crate::scalar::pow_value(a, b),
        _ => {
            return Err(Diagnostic::new(
                span,
                format!("`{}` is not allowed in a constant", op.symbol()),
            )
            .with_help("use `+`, `-`, `*`, `/` and `^` on numbers and `const`s"))
        }
    })
}

/// An initialiser as declared (`xavier`, `uniform(-0.1, 0.1)`).
pub fn lower_init(init: &nn_grammar::Init) -> Result<InitKind, Diagnostic> {
    let name = init.name.name.as_str();
    let Some(&(_, arity)) = symbol::INITS.iter().find(|(n, _)| *n == name) else {
        let mut d = Diagnostic::new(init.name.span, format!("unknown initialiser `{name}`"));
        d = match did_you_mean(name, symbol::INITS.iter().map(|(n, _)| *n)) {
            Some(s) => d.with_help(format!("did you mean `{s}`?")),
            None => d.with_help("use one of `zeros`, `constant(c)`, `uniform(lo, hi)`, `normal(mean, std)`, `xavier`, `he`"),
        };
        return Err(d);
    };
    if init.args.len() != arity {
        let form = match arity {
            0 => format!("`{name}` takes no arguments"),
            1 => format!("`{name}` takes 1 argument"),
            n => format!("`{name}` takes {n} arguments"),
        };
        let example = match name {
            "constant" => "`constant(c)`".to_string(),
            "uniform" => "`uniform(lo, hi)`".to_string(),
            "normal" => "`normal(mean, std)`".to_string(),
            _ => format!("`{name}` with no parentheses"),
        };
        return Err(
            Diagnostic::new(init.span, format!("{form}, found {}", init.args.len()))
                .with_help(format!("write {example}")),
        );
    }
    let a: Vec<f64> = init.args.iter().map(|a| a.0).collect();
    Ok(match name {
        "zeros" => InitKind::Zeros,
        "constant" => InitKind::Constant(a[0]),
        "uniform" => {
            if a[0] >= a[1] {
                return Err(Diagnostic::new(
                    init.span,
                    format!(
                        "`uniform({}, {})` needs its low bound below its high bound",
                        a[0], a[1]
                    ),
                ));
            }
            InitKind::Uniform(a[0], a[1])
        }
        "normal" => {
            if a[1] < 0.0 {
                return Err(Diagnostic::new(
                    init.args[1].1,
                    "the standard deviation of `normal` cannot be negative",
                ));
            }
            InitKind::Normal(a[0], a[1])
        }
        "xavier" | "glorot" | "xavier_uniform" | "glorot_uniform" => InitKind::XavierUniform,
        "xavier_normal" | "glorot_normal" => InitKind::XavierNormal,
        "he" | "kaiming" | "he_normal" | "kaiming_normal" => InitKind::HeNormal,
        _ => InitKind::HeUniform,
    })
}
