//! Recurrences: `steps` and `truncate`, states and their updates, per-step
//! bindings, step references (`x[t]`, `h[t-1]`, `x[last]`), and
//! `sum_steps`/`mean_steps`.

use super::{Cx, Lowered, PendingState, Reported, Value};
use crate::ir::*;
use crate::scalar::{build::*, S};
use crate::symbol;
use nn_grammar::{Definition, Diagnostic, Expr, Ident, Span, Statement};

impl Cx {
    /// Finds `steps N;` and `truncate k;` before the walk.
    pub fn collect_steps(&mut self, def: &Definition) {
        let mut count: Option<(usize, Span)> = None;
        let mut truncate: Option<(usize, Span)> = None;
        for st in &def.statements {
            match st {
                Statement::Steps(n, sp) => {
                    if count.is_some() {
                        self.error(
                            Diagnostic::new(*sp, "`steps` is given twice")
                                .with_help("keep one `steps N;`"),
                        );
                    } else if *n == 0 {
                        self.error(
                            Diagnostic::new(*sp, "a recurrent definition needs at least 1 step")
                                .with_help("write `steps N;` with N >= 1"),
                        );
                        // go on as if it were 1, so the rest is checked without a cascade
                        count = Some((1, *sp));
                    } else {
                        count = Some((*n, *sp));
                    }
                }
                Statement::Truncate(k, sp) => {
                    if *k == 0 {
                        self.error(
                            Diagnostic::new(*sp, "`truncate 0` would cut every gradient")
                                .with_help("truncate after at least 1 step, or remove `truncate`"),
                        );
                    } else {
                        truncate = Some((*k, *sp));
                    }
                }
                _ => {}
            }
        }
        if let (None, Some((_, sp))) = (count, truncate) {
            self.error(
                Diagnostic::new(sp, "`truncate` needs a recurrent definition")
                    .with_help("add `steps N;`"),
            );
        }
        self.steps = count.map(|(n, _)| Steps {
            count: n,
            truncate: truncate.map(|t| t.0),
        });
        self.g.steps = self.steps;
    }

    /// `[t]` in a declaration: needs `steps`, and the index is called `t`.
    pub fn step_marker_check(&mut self, step: Option<&Ident>) -> bool {
        let Some(index) = step else { return true };
        if index.name != symbol::STEP {
            // `x[two]`: most likely a shape written with a name
            self.error(
                Diagnostic::new(index.span, format!("expected a dimension (a positive integer), found `{}`", index.name))
                    .with_help("shapes are numbers, as in `x[4]`; a per-step value is declared `x[t][4]` in a definition with `steps N;`"),
            );
            return false;
        }
        if self.steps.is_none() {
            self.error(
                Diagnostic::new(
                    index.span,
                    "a per-step declaration needs a recurrent definition",
                )
                .with_help("add `steps N;` (the sequence length)"),
            );
            return false;
        }
        if index.name != symbol::STEP {
            self.error(
                Diagnostic::new(
                    index.span,
                    format!("the step index is `{}`, not `{}`", symbol::STEP, index.name),
                )
                .with_help("write `x[t]`"),
            );
            return false;
        }
        true
    }

    /// `state h[32] = zeros;`
    pub fn declare_state(
        &mut self,
        name: &Ident,
        shape: &nn_grammar::Shape,
        init: Option<&nn_grammar::Init>,
    ) {
        if self.steps.is_none() {
            self.error(
                Diagnostic::new(name.span, "a `state` needs a recurrent definition")
                    .with_help("add `steps N;` (the sequence length)"),
            );
            return;
        }
        if !self.rank_check(name, shape, "a state", true) || !self.define_check(name) {
            return;
        }
        let shape = Shape(shape.dims.iter().map(|d| d.0).collect());
        let Some(init) = init else {
            self.error(
                Diagnostic::new(
                    name.span,
                    format!("the state `{}` has no initial value", name.name),
                )
                .with_help(format!(
                    "write `state {}{} = zeros;`, `= constant(c)` or `= <param>` for a learned one",
                    name.name,
                    if shape.is_scalar() {
                        String::new()
                    } else {
                        shape.to_string()
                    }
                )),
            );
            self.poisoned.insert(name.name.clone());
            return;
        };
        let start = match (init.name.name.as_str(), init.args.as_slice()) {
            ("zeros", []) => Some(StateInit::Constant(0.0)),
            ("constant", [(c, _)]) => Some(StateInit::Constant(*c)),
            (p, []) => {
                match self.env.get(p) {
                    Some((Value::Node(id), _)) => {
                        match self.g.nodes[*id].op {
                            Op::Param(k) if self.g.params[k].shape == shape => {
                                Some(StateInit::Param(k))
                            }
                            Op::Param(k) => {
                                let ps = self.g.params[k].shape.clone();
                                self.error(Diagnostic::new(init.span, format!("the state `{}` is {shape} but its initial value `{p}` is {ps}", name.name)));
                                self.poisoned.insert(name.name.clone());
                                return;
                            }
                            _ => None,
                        }
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        let Some(start) = start else {
            self.error(
                Diagnostic::new(
                    init.span,
                    "a state starts from `zeros`, `constant(c)` or a parameter of its shape",
                )
                .with_help("declare a parameter (`param h0[32];`) for a learned initial state"),
            );
            self.poisoned.insert(name.name.clone());
            return;
        };
        let k = self.states.len();
        let prev = self.g.push(
            Op::StatePrev(k),
            shape.clone(),
            format!("{}_prev", name.name),
            Pass::Forward,
            Some(name.span),
        );
        self.states.push(PendingState {
            decl: StateDecl {
                name: name.name.clone(),
                shape,
                init: start,
                prev,
                update: prev,
            },
            span: name.span,
            updated: false,
            failed: false,
        });
        self.env
            .insert(name.name.clone(), (Value::State(k), name.span));
    }

    /// `name[t] = expression;`: a value at every step, or a state's update.
    pub fn step_binding(&mut self, name: &Ident, index: &Ident, value: &Expr) -> Option<NodeId> {
        if !self.step_marker_check(Some(index)) {
            return None;
        }
        self.binding = name.name.clone();
        self.dense_in_binding = 0;
        if self.poisoned.contains(&name.name) {
            // its declaration had an error, already reported
            return None;
        }
        let state = match self.env.get(&name.name) {
            Some((Value::State(k), _)) => Some(*k),
            _ => None,
        };
        let defined = state.is_some() || self.define_check(name);
        self.in_step = true;
        let lowered = self.tensor(value);
        self.in_step = false;
        let Ok(id) = lowered else {
            match state {
                Some(k) => self.states[k].failed = true,
                None => {
                    self.poisoned.insert(name.name.clone());
                }
            }
            return None;
        };
        let id = self.name_binding(id, &name.name);
        match state {
            Some(k) => {
                let (want, got) = (
                    self.states[k].decl.shape.clone(),
                    self.g.nodes[id].shape.clone(),
                );
                if self.states[k].updated {
                    self.error(
                        Diagnostic::new(
                            name.span,
                            format!("the state `{}` is updated twice", name.name),
                        )
                        .with_help("a state has one `h[t] = ...` per definition"),
                    );
                } else if want != got {
                    self.states[k].failed = true;
                    self.error(
                        Diagnostic::new(
                            value.span(),
                            format!(
                                "the state `{}` is declared {want} but this update has shape {got}",
                                name.name
                            ),
                        )
                        .with_help("the value at each step must have the state's declared shape"),
                    );
                } else {
                    self.states[k].decl.update = id;
                    self.states[k].updated = true;
                }
            }
            None if defined => {
                self.env
                    .insert(name.name.clone(), (Value::Seq(id), name.span));
            }
            None => {}
        }
        Some(id)
    }

    /// `sum_steps(e)` and `mean_steps(e)`: `e` is evaluated at every step
    /// (it may read `x[t]`) and summed, or averaged, over the steps.
    pub fn over_steps(&mut self, name: &str, e: &Expr, span: Span) -> Result<NodeId, Reported> {
        let Some(steps) = self.steps else {
            self.error(
                Diagnostic::new(span, format!("`{name}` needs a recurrent definition"))
                    .with_help("add `steps N;` (the sequence length)"),
            );
            return Err(Reported);
        };
        if self.in_step {
            self.error(Diagnostic::new(span, format!("`{name}` cannot be used inside a step")).with_help("it reduces over all steps: use it in a binding after the loop, such as `loss = ...`"));
            return Err(Reported);
        }
        self.in_step = true;
        let x = self.tensor(e);
        self.in_step = false;
        let x = x?;
        let shape = self.g.nodes[x].shape.clone();
        let total = self.node(Op::StepSum(x), shape, span);
        if name == "sum_steps" || steps.count == 1 {
            return Ok(total);
        }
        Ok(self.unary(
            total,
            div(S::Arg(0), c(steps.count as f64)),
            "mean_steps",
            span,
        ))
    }

    /// Moves the states into the graph; a state never updated is an error.
    pub fn finish_states(&mut self) {
        for st in std::mem::take(&mut self.states) {
            if !st.updated && !st.failed {
                self.error(
                    Diagnostic::new(
                        st.span,
                        format!("the state `{}` is never updated", st.decl.name),
                    )
                    .with_help(format!(
                        "compute its value at each step: `{}[t] = ...;`",
                        st.decl.name
                    )),
                );
            }
            self.g.states.push(st.decl);
        }
    }

    /// `x[t]`, `h[t-1]`, `out[last]`.
    pub fn step_ref(&mut self, arg: &Expr, index: &Ident, offset: i64, span: Span) -> Lowered {
        let Expr::Name(name) = arg else {
            self.error(
                Diagnostic::new(
                    span,
                    "only a named sequence or state can be indexed by a step",
                )
                .with_help("bind the expression to a name first"),
            );
            return Err(Reported);
        };
        if self.steps.is_none() {
            self.error(
                Diagnostic::new(
                    span,
                    format!(
                        "`{}[{}]` needs a recurrent definition",
                        name.name, index.name
                    ),
                )
                .with_help("add `steps N;` (the sequence length)"),
            );
            return Err(Reported);
        }
        let value = self.lookup(name)?;
        let step_of = |cx: &Cx, v: Value| -> Option<NodeId> {
            match v {
                Value::Seq(id) | Value::SeqClass(id, _) => Some(id),
                Value::State(k) if cx.states[k].updated => Some(cx.states[k].decl.update),
                _ => None,
            }
        };
        if index.name == symbol::LAST {
            if self.in_step {
                self.error(Diagnostic::new(
                    span,
                    format!(
                        "`{}[last]` is the value after the loop; inside a step use `{}[t]`",
                        name.name, name.name
                    ),
                ));
                return Err(Reported);
            }
            if offset != 0 {
                self.error(Diagnostic::new(
                    span,
                    "only `[last]` is supported after the loop, without an offset",
                ));
                return Err(Reported);
            }
            let Some(id) = step_of(self, value) else {
                if let Value::State(k) = value {
                    if self.states[k].failed {
                        // its update had an error, already reported
                        return Err(Reported);
                    }
                }
                return self.not_a_sequence(name, value, span);
            };
            let shape = self.g.nodes[id].shape.clone();
            let last = self.node(Op::Last(id), shape, span);
            return match value {
                Value::SeqClass(_, n) => Ok(Value::Class(last, n)),
                _ => Ok(Value::Node(last)),
            };
        }
        if index.name != symbol::STEP {
            self.error(Diagnostic::new(index.span, format!("unknown step index `{}`", index.name)).with_help("index a sequence by `t` (this step), `t-1` (a state's previous value) or `last`"));
            return Err(Reported);
        }
        if !self.in_step {
            self.error(
                Diagnostic::new(span, format!("`{}[t]` is only defined inside a step", name.name))
                    .with_help("use it in a per-step binding `y[t] = ...` or inside `sum_steps(...)` / `mean_steps(...)`; after the loop, use `[last]`"),
            );
            return Err(Reported);
        }
        match (offset, value) {
            (o, _) if o > 0 => {
                self.error(
                    Diagnostic::new(span, format!("`{}[t+{o}]` reads a future step", name.name))
                        .with_help("a step can read only this step (`x[t]`) and a state's previous value (`h[t-1]`)"),
                );
                Err(Reported)
            }
            (-1, Value::State(k)) => Ok(Value::Node(self.states[k].decl.prev)),
            (-1, _) => {
                self.error(
                    Diagnostic::new(span, format!("only a state can be read at `t-1`, and `{}` is not one", name.name))
                        .with_help(format!("declare a state (`state {0}_prev[...] = zeros;`) and update it with `{0}_prev[t] = ...`", name.name)),
                );
                Err(Reported)
            }
            (0, Value::State(k)) if !self.states[k].updated && self.states[k].failed => {
                Err(Reported)
            }
            (0, Value::State(k)) if !self.states[k].updated => {
                self.error(
                    Diagnostic::new(span, format!("`{}[t]` is used before the state's update `{}[t] = ...`", name.name, name.name))
                        .with_help(format!("use `{}[t-1]` for the previous step's value, or move this below the update", name.name)),
                );
                Err(Reported)
            }
            (0, Value::SeqClass(id, n)) => Ok(Value::Class(id, n)),
            (0, v) => match step_of(self, v) {
                Some(id) => Ok(Value::Node(id)),
                None => self.not_a_sequence(name, v, span),
            },
            (o, _) => {
                self.error(
                    Diagnostic::new(
                        span,
                        format!("`{}[t{o}]` reaches back more than one step", name.name),
                    )
                    .with_help("keep older values in a state of their own"),
                );
                Err(Reported)
            }
        }
    }

    pub fn not_a_sequence(&mut self, name: &Ident, _v: Value, span: Span) -> Lowered {
        self.error(
            Diagnostic::new(span, format!("`{}` is not a sequence and cannot be indexed by a step", name.name))
                .with_help("only per-step inputs and targets (`input x[t][n];`), per-step bindings (`y[t] = ...`) and states are indexed by `t`"),
        );
        Err(Reported)
    }
}
