//! Scalar expressions (the bodies of elementwise nodes) as Rust tokens and
//! as maths for the docs.

use crate::scalar::{Cmp, S};
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::quote;

/// Precedence of a scalar expression in Rust: higher binds tighter.
pub fn prec(s: &S) -> u8 {
    match s {
        S::Add(..) | S::Sub(..) => 1,
        S::Mul(..) | S::Div(..) => 2,
        S::Neg(_) => 3,
        S::Const(v) if *v < 0.0 => 3,
        _ => 4,
    }
}

/// Rust tokens for a scalar expression, with operands already rendered.
/// Returns the tokens and their precedence.
pub fn scalar_tokens(s: &S, args: &[TokenStream]) -> (TokenStream, u8) {
    let wrap = |e: &S, min: u8| {
        let (t, p) = scalar_tokens(e, args);
        if p < min {
            quote!((#t))
        } else {
            t
        }
    };
    let t = match s {
        S::Arg(k) => args[*k].clone(),
        S::Out => unreachable!("`Out` is replaced by an operand before emission"),
        S::Const(v) => {
            let lit = Literal::f64_unsuffixed(v.abs());
            if *v < 0.0 {
                quote!(-#lit)
            } else {
                quote!(#lit)
            }
        }
        S::Neg(a) => {
            let a = wrap(a, 3);
            quote!(-#a)
        }
        S::Add(a, b) => {
            let (a, b) = (wrap(a, 1), wrap(b, 2));
            quote!(#a + #b)
        }
        S::Sub(a, b) => {
            let (a, b) = (wrap(a, 1), wrap(b, 2));
            quote!(#a - #b)
        }
        S::Mul(a, b) => {
            let (a, b) = (wrap(a, 2), wrap(b, 3));
            quote!(#a * #b)
        }
        S::Div(a, b) => {
            let (a, b) = (wrap(a, 2), wrap(b, 3));
            quote!(#a / #b)
        }
        S::Pow(a, e) => {
            let a = wrap(a, 4);
            if e.fract() == 0.0 && e.abs() <= i32::MAX as f64 {
                let e = Literal::i32_unsuffixed(*e as i32);
                quote!(#a.powi(#e))
            } else {
                let e = Literal::f64_unsuffixed(*e);
                quote!(#a.powf(#e))
            }
        }
        S::Call(f, a) => {
            let a = wrap(a, 4);
            let m = Ident::new(f.method(), Span::call_site());
            quote!(#a.#m())
        }
        S::Cmp(op, a, b) => {
            let c = cmp_tokens(*op, a, b, args);
            quote!((if #c { 1.0 } else { 0.0 }))
        }
        S::Select(p, a, b) => {
            let cond = match &**p {
                S::Cmp(op, x, y) => cmp_tokens(*op, x, y, args),
                other => {
                    let v = wrap(other, 1);
                    quote!(#v != 0.0)
                }
            };
            let (a, b) = (scalar_tokens(a, args).0, scalar_tokens(b, args).0);
            quote!((if #cond { #a } else { #b }))
        }
    };
    (t, prec(s))
}

/// `a < b` and the other comparisons, as a Rust condition.
pub fn cmp_tokens(op: Cmp, a: &S, b: &S, args: &[TokenStream]) -> TokenStream {
    let (a, b) = (scalar_tokens(a, args), scalar_tokens(b, args));
    let (a, b) = (paren_below(a, 1), paren_below(b, 1));
    match op {
        Cmp::Lt => quote!(#a < #b),
        Cmp::Gt => quote!(#a > #b),
        Cmp::Le => quote!(#a <= #b),
        Cmp::Ge => quote!(#a >= #b),
        Cmp::Eq => quote!(#a == #b),
        Cmp::Ne => quote!(#a != #b),
    }
}

pub fn paren_below((t, p): (TokenStream, u8), min: u8) -> TokenStream {
    if p < min {
        quote!((#t))
    } else {
        t
    }
}

/// The maths of a scalar expression, for doc comments.
pub fn scalar_math(s: &S, args: &[String]) -> (String, u8) {
    let wrap = |e: &S, min: u8| {
        let (t, p) = scalar_math(e, args);
        if p < min {
            format!("({t})")
        } else {
            t
        }
    };
    let t = match s {
        S::Arg(k) => args[*k].clone(),
        S::Out => "out".to_string(),
        S::Const(v) => format!("{v}"),
        S::Neg(a) => format!("-{}", wrap(a, 3)),
        S::Add(a, b) => format!("{} + {}", wrap(a, 1), wrap(b, 2)),
        S::Sub(a, b) => format!("{} - {}", wrap(a, 1), wrap(b, 2)),
        S::Mul(a, b) => format!("{} ⊙ {}", wrap(a, 2), wrap(b, 3)),
        S::Div(a, b) => format!("{} / {}", wrap(a, 2), wrap(b, 3)),
        S::Pow(a, e) => format!("{}^{e}", wrap(a, 4)),
        S::Call(f, a) => format!("{}({})", f.name(), scalar_math(a, args).0),
        S::Cmp(op, a, b) => format!(
            "[{} {} {}]",
            scalar_math(a, args).0,
            op.symbol(),
            scalar_math(b, args).0
        ),
        S::Select(p, a, b) => format!(
            "({} ? {} : {})",
            scalar_math(p, args).0,
            scalar_math(a, args).0,
            scalar_math(b, args).0
        ),
    };
    (t, prec(s))
}
