//! Building nodes: every value the walk creates goes through here, where
//! operations on constants are folded (and a constant the dtype cannot
//! hold is reported at its tokens) and sizes are checked against the limits.

use super::Cx;
use crate::ir::*;
use crate::limits::{F32_MAX, MAX_ELEMENTS};
use crate::scalar::{build::*, S};
use nn_grammar::{Diagnostic, Ident, Span};

impl Cx {
    /// The shape of node `id`.
    pub fn shape(&self, id: NodeId) -> Shape {
        self.g.nodes[id].shape.clone()
    }

    /// A node named `<binding>_<what>` (a readable name in the generated code).
    pub fn named_node(&mut self, op: Op, shape: Shape, what: &str, span: Span) -> NodeId {
        self.node_called(op, shape, &format!("{}_{what}", self.binding), span)
    }

    /// A node named `base` (made unique).
    pub fn node_called(&mut self, op: Op, shape: Shape, base: &str, span: Span) -> NodeId {
        let name = self.fresh_name(base);
        let id = self.g.push(op, shape, name, Pass::Forward, Some(span));
        self.size_check(id, span);
        id
    }

    /// Checks a declared shape has at most 3 dimensions (`[c, h, w]`; a
    /// per-step value or a state at most 2) and at most [`MAX_ELEMENTS`]
    /// elements (all steps of a per-step value counted); reports a higher
    /// rank or a larger size.
    pub fn rank_check(
        &mut self,
        name: &Ident,
        shape: &nn_grammar::Shape,
        what: &str,
        per_step: bool,
    ) -> bool {
        let steps = if per_step {
            self.steps.map_or(1, |s| s.count)
        } else {
            1
        };
        let max_rank = if per_step { 2 } else { 3 };
        let count = shape
            .dims
            .iter()
            .fold(steps as u128, |n, &(d, _)| n.saturating_mul(d as u128));
        if shape.dims.len() <= max_rank && count > MAX_ELEMENTS as u128 {
            self.poisoned.insert(name.name.clone());
            let per_step = if steps > 1 {
                format!(" over its {steps} steps")
            } else {
                String::new()
            };
            self.error(
                Diagnostic::new(
                    shape.span,
                    format!(
                        "`{}` would have {count} elements{per_step}, more than the limit of {MAX_ELEMENTS}",
                        name.name
                    ),
                )
                .with_help("the README's \"Limits\" section lists the largest sizes"),
            );
            return false;
        }
        if shape.dims.len() <= max_rank {
            return true;
        }
        // uses of the name are not reported again
        self.poisoned.insert(name.name.clone());
        let (found, help) = if per_step && what != "a state" {
            (
                format!("{what} of one step"),
                "use a vector `[n]` or a matrix `[rows, cols]` per step",
            )
        } else {
            (
                what.to_string(),
                "use a vector `[n]`, a matrix `[rows, cols]` or an image `[channels, height, width]`",
            )
        };
        self.error(
            Diagnostic::new(
                shape.span,
                format!(
                    "{found} has at most {max_rank} dimensions, found {}",
                    shape.dims.len()
                ),
            )
            .with_help(help),
        );
        false
    }

    pub fn node(&mut self, op: Op, shape: Shape, span: Span) -> NodeId {
        let base = format!("{}_{}", self.binding, op.name());
        let name = self.fresh_name(&base);
        let id = self.g.push(op, shape, name, Pass::Forward, Some(span));
        self.size_check(id, span);
        id
    }

    /// Reports a computed value with more than [`MAX_ELEMENTS`] elements
    /// (all its steps counted), once: a value computed from one already
    /// reported is not reported again.
    pub fn size_check(&mut self, id: NodeId, span: Span) {
        let node = &self.g.nodes[id];
        if node.op.args().iter().any(|a| self.too_big.contains(a)) {
            self.too_big.insert(id);
            return;
        }
        let steps = if self.in_step {
            self.steps.map_or(1, |s| s.count)
        } else {
            1
        };
        let count = node
            .shape
            .0
            .iter()
            .fold(steps as u128, |n, &d| n * d as u128);
        if count > MAX_ELEMENTS as u128 {
            let shape = node.shape.clone();
            self.too_big.insert(id);
            let per_step = if steps > 1 {
                format!(" over {steps} steps")
            } else {
                String::new()
            };
            self.error(
                Diagnostic::new(
                    span,
                    format!("this value of shape {shape} has {count} elements{per_step}, more than the limit of {MAX_ELEMENTS}"),
                )
                .with_help("the README's \"Limits\" section lists the largest sizes"),
            );
        }
    }

    /// The value of a constant node (a number, or operations on numbers
    /// folded while lowering).
    pub fn const_value(&self, id: NodeId) -> Option<f64> {
        match &self.g.nodes[id].op {
            Op::Map { args, body, .. } if args.is_empty() => body.as_const(),
            _ => None,
        }
    }

    /// Checks a constant the generated code will hold: finite, and
    /// representable in the network's dtype. `what` describes it.
    pub fn const_check(&mut self, v: f64, span: Span, what: &str) -> bool {
        let dtype = match self.g.dtype {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        };
        let problem = if v.is_nan() {
            Some(format!("{what} is not a number (NaN)"))
        } else if v.is_infinite() {
            Some(format!("{what} is infinite ({v})"))
        } else if self.g.dtype == Dtype::F32 && v.abs() > F32_MAX {
            Some(format!(
                "{what} `{v:e}` is beyond the range of f32 (the largest f32 is {:e})",
                f32::MAX
            ))
        } else if self.g.dtype == Dtype::F32 && v != 0.0 && (v as f32) == 0.0 {
            Some(format!(
                "{what} `{v:e}` is 0 in f32 (the smallest f32 is {:e})",
                f32::from_bits(1)
            ))
        } else {
            None
        };
        let Some(message) = problem else {
            return true;
        };
        let help = if v.is_finite() {
            "write `dtype f64;` for a network in double precision, or change the constant"
                .to_string()
        } else {
            format!(
                "the generated code would compute with a non-finite {dtype}; change the constants"
            )
        };
        self.error(Diagnostic::new(span, message).with_help(help));
        false
    }

    pub fn map(
        &mut self,
        args: Vec<NodeId>,
        bcast: Vec<Bcast>,
        body: S,
        shape: Shape,
        what: &str,
        span: Span,
    ) -> NodeId {
        // operations on constants are folded here, where a result that is
        // not a number of the dtype can still be reported at its tokens
        let values: Option<Vec<f64>> = args.iter().map(|&a| self.const_value(a)).collect();
        let body = match values {
            Some(values) if !args.is_empty() => {
                let v = body.eval(&values, 0.0);
                if !self.const_check(v, span, "this constant expression") {
                    // reported; a harmless value keeps lowering going
                    return self.constant_node(0.0, span);
                }
                return self.constant_node(v, span);
            }
            _ => body,
        };
        let base = format!("{}_{what}", self.binding);
        let name = self.fresh_name(&base);
        let id = self.g.push(
            Op::Map { args, bcast, body },
            shape,
            name,
            Pass::Forward,
            Some(span),
        );
        self.size_check(id, span);
        id
    }

    pub fn unary(&mut self, x: NodeId, body: S, what: &str, span: Span) -> NodeId {
        let shape = self.g.nodes[x].shape.clone();
        self.map(vec![x], vec![Bcast::Full], body, shape, what, span)
    }

    /// A number written in the definition.
    pub fn constant(&mut self, v: f64, span: Span) -> NodeId {
        self.const_check(v, span, "the number");
        self.constant_node(v, span)
    }

    pub fn constant_node(&mut self, v: f64, span: Span) -> NodeId {
        let name = self.fresh_name(&format!("{}_const", self.binding));
        let body = Op::Map {
            args: vec![],
            bcast: vec![],
            body: c(v),
        };
        self.g
            .push(body, Shape::scalar(), name, Pass::Forward, Some(span))
    }

    pub fn add_param(
        &mut self,
        display: &str,
        field: String,
        shape: Shape,
        init: InitKind,
        span: Span,
    ) -> NodeId {
        let k = self.g.params.len();
        self.g.params.push(ParamDecl {
            name: display.to_string(),
            field: field.clone(),
            shape: shape.clone(),
            init,
        });
        let id = self
            .g
            .push(Op::Param(k), shape, field, Pass::Forward, Some(span));
        let was = self.in_step;
        self.in_step = false;
        self.size_check(id, span);
        self.in_step = was;
        id
    }
}
