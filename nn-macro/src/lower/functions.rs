//! User functions: collected before the walk (a call may precede the
//! definition), inlined at each call, a call repeated with the same
//! arguments lowered once.

use super::{Cx, FnDef, Lowered, Reported};
use crate::ops;
use nn_grammar::{Definition, Diagnostic, Expr, Ident, Span, Statement};
use std::collections::HashMap;
use std::rc::Rc;

impl Cx {
    /// Records every `fn` before lowering, so calls may precede definitions;
    /// a function may not shadow a built-in or be defined twice.
    pub fn collect_functions(&mut self, def: &Definition) {
        for st in &def.statements {
            let Statement::Fn { name, params, body } = st else {
                continue;
            };
            if ops::builtin(&name.name).is_some() {
                self.error(
                    Diagnostic::new(name.span, format!("`{}` is a built-in function", name.name))
                        .with_help("give your function another name"),
                );
                continue;
            }
            if self.fns.contains_key(&name.name) {
                self.error(
                    Diagnostic::new(
                        name.span,
                        format!("the function `{}` is defined twice", name.name),
                    )
                    .with_help("give each function its own name"),
                );
                continue;
            }
            for (k, p) in params.iter().enumerate() {
                if params[..k].iter().any(|q| q.name == p.name) {
                    self.error(Diagnostic::new(
                        p.span,
                        format!("the parameter `{}` is declared twice", p.name),
                    ));
                }
            }
            self.fns.insert(
                name.name.clone(),
                Rc::new(FnDef {
                    params: params.clone(),
                    body: body.clone(),
                }),
            );
        }
        // which functions create parameters, directly or through others
        loop {
            let more: Vec<String> = self
                .fns
                .iter()
                .filter(|(name, f)| {
                    !self.makes_params.contains(*name)
                        && calls_any(&f.body, &|callee| {
                            callee == "dense" || self.makes_params.contains(callee)
                        })
                })
                .map(|(name, _)| name.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            self.makes_params.extend(more);
        }
    }

    /// Inlines a call of a user function: its body is lowered with the
    /// parameters bound to the arguments, so it is differentiated
    /// symbolically like any built-in.
    pub fn call_user(&mut self, func: &Ident, args: &[Expr], span: Span) -> Lowered {
        let f = self.fns[&func.name].clone();
        if let Some(pos) = self.frames.iter().position(|(n, _)| *n == func.name) {
            let chain: Vec<&str> = self.frames[pos..].iter().map(|(n, _)| n.as_str()).collect();
            self.error(
                Diagnostic::new(func.span, format!("the function `{}` calls itself ({} -> {})", func.name, chain.join(" -> "), func.name))
                    .with_help("recursion cannot be unrolled at compile time; write the function without calling itself"),
            );
            return Err(Reported);
        }
        if args.len() != f.params.len() {
            let plural = if f.params.len() == 1 {
                "argument"
            } else {
                "arguments"
            };
            let names: Vec<&str> = f.params.iter().map(|p| p.name.as_str()).collect();
            self.error(
                Diagnostic::new(
                    span,
                    format!(
                        "`{}` takes {} {plural}, found {}",
                        func.name,
                        f.params.len(),
                        args.len()
                    ),
                )
                .with_help(format!("write `{}({})`", func.name, names.join(", "))),
            );
            return Err(Reported);
        }
        let mut bound = HashMap::new();
        let mut failed = false;
        for (p, a) in f.params.iter().zip(args) {
            match self.expr(a) {
                Ok(v) => {
                    bound.insert(p.name.clone(), v);
                }
                Err(Reported) => failed = true,
            }
        }
        if failed {
            return Err(Reported);
        }
        // the same function of the same values is the same value: lowered
        // once (unless it creates parameters, which each call does anew)
        let memo = !self.makes_params.contains(&func.name);
        let key = (
            func.name.clone(),
            f.params.iter().map(|p| bound[&p.name]).collect::<Vec<_>>(),
        );
        if let Some(v) = self.calls.get(&key).filter(|_| memo) {
            return Ok(*v);
        }
        self.frames.push((func.name.clone(), bound));
        let result = self.expr(&f.body);
        self.frames.pop();
        if let (Ok(v), true) = (&result, memo) {
            self.calls.insert(key, *v);
        }
        result
    }
}

/// Whether `e` calls a function for which `pred` holds (the syntax tree's
/// depth is bounded by the parser, so this recursion is too).
fn calls_any(e: &Expr, pred: &dyn Fn(&str) -> bool) -> bool {
    match e {
        Expr::Number(..) | Expr::Name(_) => false,
        Expr::Call {
            func, args, kwargs, ..
        } => {
            pred(&func.name)
                || args.iter().any(|a| calls_any(a, pred))
                || kwargs.iter().any(|k| calls_any(&k.value, pred))
        }
        Expr::Unary { arg, .. } | Expr::Slice { arg, .. } | Expr::StepRef { arg, .. } => {
            calls_any(arg, pred)
        }
        Expr::Binary { lhs, rhs, .. } => calls_any(lhs, pred) || calls_any(rhs, pred),
        Expr::Chain { first, rest, .. } => {
            calls_any(first, pred) || rest.iter().any(|(_, _, r)| calls_any(r, pred))
        }
    }
}
