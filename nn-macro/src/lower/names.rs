//! Names: definitions, lookups, duplicates and the "did you mean" help;
//! short descriptions of operands for messages.

use super::{Cx, Lowered, Reported, Value};
use crate::ir::*;
use crate::ops;
use crate::scalar::S;
use nn_grammar::{did_you_mean, Diagnostic, Expr, Ident, Span};

impl Cx {
    pub fn error(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }

    /// Checks a new name is not taken; reports a duplicate.
    pub fn define_check(&mut self, name: &Ident) -> bool {
        if self.env.contains_key(&name.name)
            || self.consts.contains_key(&name.name)
            || self.poisoned.contains(&name.name)
        {
            self.error(
                Diagnostic::new(name.span, format!("`{}` is defined twice", name.name))
                    .with_help("give each input, target, parameter and binding its own name"),
            );
            // which definition later uses mean is unclear: they are not checked
            self.env.remove(&name.name);
            self.poisoned.insert(name.name.clone());
            return false;
        }
        true
    }

    pub fn fresh_name(&mut self, base: &str) -> String {
        let n = self.names.entry(base.to_string()).or_insert(0);
        *n += 1;
        if *n == 1 {
            base.to_string()
        } else {
            format!("{base}_{n}")
        }
    }

    /// Gives the binding's own name to the node that computes it, so the
    /// generated code reads like the definition (`h`, not `h_map`).
    pub fn name_binding(&mut self, id: NodeId, name: &str) -> NodeId {
        let node = &self.g.nodes[id];
        let is_leaf = matches!(node.op, Op::Input(_) | Op::Target(_) | Op::Param(_));
        let already_bound = self.bound.contains(&id);
        if is_leaf || already_bound {
            // `h = x;` aliases: an identity map keeps the name visible.
            let shape = node.shape.clone();
            let span = node.span;
            let id2 = self.g.push(
                Op::Map {
                    args: vec![id],
                    bcast: vec![Bcast::Full],
                    body: S::Arg(0),
                },
                shape,
                String::new(),
                Pass::Forward,
                span,
            );
            self.g.nodes[id2].name = self.fresh_name(name);
            self.bound.insert(id2);
            return id2;
        }
        let unique = self.fresh_name(name);
        self.g.nodes[id].name = unique;
        self.bound.insert(id);
        id
    }

    pub fn lookup(&mut self, name: &Ident) -> Lowered {
        if let Some(&v) = self.consts.get(&name.name) {
            return Ok(Value::Node(self.constant(v, name.span)));
        }
        if let Some((func, params)) = self.frames.last() {
            if let Some(v) = params.get(&name.name) {
                return Ok(*v);
            }
            // a function sees its parameters and the constants, nothing else
            let func = func.clone();
            let mut d = Diagnostic::new(
                name.span,
                format!("`{}` is not a parameter of `{func}`", name.name),
            );
            let known: Vec<&str> = params.keys().map(String::as_str).collect();
            d = match did_you_mean(&name.name, known) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!(
                    "a function sees only its parameters and `const`s: pass `{}` as an argument",
                    name.name
                )),
            };
            self.error(d);
            return Err(Reported);
        }
        if let Some((v, _)) = self.env.get(&name.name) {
            return Ok(*v);
        }
        if self.poisoned.contains(&name.name) {
            return Err(Reported);
        }
        let d = if self.all_names.contains_key(&name.name) {
            Diagnostic::new(
                name.span,
                format!("`{}` is used before it is defined", name.name),
            )
            .with_help(format!(
                "move the definition of `{}` above this statement",
                name.name
            ))
        } else {
            let d = Diagnostic::new(name.span, format!("unknown name `{}`", name.name));
            let known: Vec<&str> = self.env.keys().map(String::as_str).collect();
            match did_you_mean(&name.name, known) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None if ops::builtin(&name.name).is_some() => {
                    d.with_help(format!("`{}` is a function: call it as `{}(...)`", name.name, name.name))
                }
                None => d.with_help("declare it first with `input`, `target`, `param`, or bind it with `name = ...;`"),
            }
        };
        self.error(d);
        Err(Reported)
    }

    /// The error for a sequence or state used without a step index.
    pub fn unindexed(e: &Expr, what: &str) -> Diagnostic {
        let n = short(e, "this");
        Diagnostic::new(e.span(), format!("{n} has one value per time step and cannot be {what} without a step index"))
            .with_help("index it: `x[t]` inside a step (`h[t] = ...`, `sum_steps(...)`), `h[t-1]` for a state's previous value, `x[last]` after the loop")
    }
}

/// One side of a binary operation, for messages: the expression written
/// there, or (inside a chain `a + b + c`) the part already combined.
#[derive(Clone, Copy)]
pub struct Side<'e> {
    /// The expression written there, if any.
    pub expr: Option<&'e Expr>,
    /// Where it is.
    pub span: Span,
}

impl<'e> Side<'e> {
    pub fn of(e: &'e Expr) -> Self {
        Side {
            expr: Some(e),
            span: e.span(),
        }
    }

    pub fn part(span: Span) -> Self {
        Side { expr: None, span }
    }

    pub fn short(&self, fallback: &str) -> String {
        match self.expr {
            Some(e) => short(e, fallback),
            None => fallback.to_string(),
        }
    }
}

/// A short description of an operand for messages: its name in backticks,
/// or `fallback` ("the left side") for a compound expression.
pub fn short(e: &Expr, fallback: &str) -> String {
    match e {
        Expr::Name(id) => format!("`{}`", id.name),
        Expr::Number(v, _) => format!("`{v}`"),
        Expr::Call { func, .. } => format!("`{}(...)`", func.name),
        _ => fallback.to_string(),
    }
}
