//! Lowering: syntax tree -> typed tensor graph. Resolves names, checks shapes
//! and arities, and expands sugar (`dense`, `mse`, `mean`, ...) into core ops,
//! so that only core ops carry derivative rules. Errors are collected, not
//! stopped at: every independent mistake in a definition is reported.
//!
//! The statement walk is here; names and messages in `names`, node
//! construction and size checks in `nodes`, expressions and operators in
//! `exprs` (built-in functions lower through the op table, `crate::ops`),
//! constants in `consts`, recurrences in `recurrence`, user functions in
//! `functions`.

mod consts;
mod exprs;
mod functions;
mod names;
mod nodes;
mod recurrence;

pub use consts::lower_init;
pub use exprs::broadcast_all;
pub use names::short;

use crate::ir::*;
use crate::limits::MAX_TOTAL_ELEMENTS;
use crate::symbol;
use nn_grammar::{did_you_mean, Definition, Diagnostic, Expr, Ident, Span, Statement, TargetKind};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// What a name refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// A tensor node.
    Node(NodeId),
    /// A class-index target (only `softmax_cross_entropy` takes it).
    Class(NodeId, usize),
    /// A sequence (per-step input, target or binding): the node computing
    /// its value at step `t`; it must be indexed `x[t]` or `x[last]`.
    Seq(NodeId),
    /// A per-step class-index target.
    SeqClass(NodeId, usize),
    /// The k-th state: `h[t-1]`, `h[t]` or `h[last]`.
    State(usize),
}

/// A state while lowering: its update is found later, at `h[t] = ...`.
pub struct PendingState {
    pub decl: StateDecl,
    pub span: Span,
    pub updated: bool,
    /// Its update had an error, already reported: uses are not reported again.
    pub failed: bool,
}

/// Marker: an error was already reported for this expression.
pub struct Reported;

pub type Lowered = Result<Value, Reported>;

pub struct Cx {
    pub g: Graph,
    pub errors: Vec<Diagnostic>,
    /// Names defined so far, with where.
    pub env: HashMap<String, (Value, Span)>,
    /// Names defined anywhere in the definition (for "used before definition").
    pub all_names: HashMap<String, Span>,
    /// Names whose definition failed: uses are not reported again.
    pub poisoned: HashSet<String>,
    /// The binding being lowered, for naming nodes and parameters.
    pub binding: String,
    /// How many `dense` layers the current binding has created.
    pub dense_in_binding: usize,
    /// Node names handed out, for unique locals.
    pub names: HashMap<String, usize>,
    /// Logits passed to `bce_with_logits` (a single such output is cut at 0 for accuracy).
    pub bce_logits: Vec<NodeId>,
    /// The class axis of a cross-entropy of a matrix of logits against a
    /// vector of class indices (accuracy is then judged per column or row).
    pub class_axis: Option<usize>,
    /// `const` hyperparameters defined so far.
    pub consts: HashMap<String, f64>,
    /// User functions, by name.
    pub fns: HashMap<String, Rc<FnDef>>,
    /// The user functions being inlined, innermost last, each with its
    /// parameters' values (to find recursion and resolve names).
    pub frames: Vec<(String, HashMap<String, Value>)>,
    /// `steps N;` and `truncate k;`, found before the walk.
    pub steps: Option<Steps>,
    /// Lowering a per-step expression (`h[t] = ...`, `sum_steps(...)`).
    pub in_step: bool,
    /// The states, in declaration order.
    pub states: Vec<PendingState>,
    /// How deeply nested the expression being lowered is, counting the
    /// bodies of the user functions it calls.
    pub depth: usize,
    /// A limit (depth, operations) was crossed and reported: the rest of the
    /// definition is not lowered.
    pub over_limit: bool,
    /// The outermost expression being lowered (where a limit crossed inside
    /// a function body is reported: the user's statement).
    pub outer: Span,
    /// Nodes already given a binding's name.
    pub bound: HashSet<NodeId>,
    /// Nodes whose shape crossed [`MAX_ELEMENTS`] (reported once, not again for their users).
    pub too_big: HashSet<NodeId>,
    /// Results of user-function calls, by function and argument values: a
    /// call repeated with the same arguments is lowered once.
    pub calls: HashMap<(String, Vec<Value>), Value>,
    /// User functions that create parameters (call `dense`, directly or
    /// through another function): each call makes new ones, so they are
    /// never looked up in `calls`.
    pub makes_params: HashSet<String>,
}

/// A user function `fn name(params) = body;`.
#[derive(Clone)]
pub struct FnDef {
    pub params: Vec<Ident>,
    pub body: Expr,
}

/// Lowers a parsed definition to a graph. `dtype` from the attribute
/// (`#[network(file = ..., dtype = f64)]`) overrides the definition's.
/// Errors come in source order; those about the whole definition last.
pub fn lower_definition(def: &Definition, dtype: Option<Dtype>) -> Result<Graph, Vec<Diagnostic>> {
    lower_unsorted(def, dtype).map_err(|mut errors| {
        errors.sort_by_key(|d| match d.span {
            Span { start: 0, end: 0 } => usize::MAX,
            s => s.start,
        });
        errors
    })
}

fn lower_unsorted(def: &Definition, dtype: Option<Dtype>) -> Result<Graph, Vec<Diagnostic>> {
    let mut cx = Cx {
        g: Graph {
            dtype: dtype.unwrap_or(Dtype::F32),
            inputs: vec![],
            targets: vec![],
            params: vec![],
            nodes: vec![],
            loss: 0,
            output: 0,
            metric: Metric::ArgmaxVector,
            grads: vec![],
            steps: None,
            states: vec![],
            state_adjoints: vec![],
            batch: false,
            input_grads: vec![],
            hvp: vec![],
            batch_norms: vec![],
            positions: vec![],
        },
        errors: vec![],
        env: HashMap::new(),
        all_names: HashMap::new(),
        poisoned: HashSet::new(),
        binding: String::new(),
        dense_in_binding: 0,
        names: HashMap::new(),
        bce_logits: vec![],
        class_axis: None,
        consts: HashMap::new(),
        fns: HashMap::new(),
        frames: vec![],
        steps: None,
        in_step: false,
        states: vec![],
        depth: 0,
        over_limit: false,
        outer: Span::default(),
        bound: HashSet::new(),
        too_big: HashSet::new(),
        calls: HashMap::new(),
        makes_params: HashSet::new(),
    };
    // the dtype decides which constants are representable: known before the walk
    if dtype.is_none() {
        for st in &def.statements {
            if let Statement::Dtype(name) = st {
                if name.name == "f64" {
                    cx.g.dtype = Dtype::F64;
                }
            }
        }
    }
    cx.collect_functions(def);
    cx.collect_steps(def);
    for st in &def.statements {
        if let Some(name) = declared_name(st) {
            cx.all_names.entry(name.name.clone()).or_insert(name.span);
        }
    }
    let mut output: Option<&Ident> = None;
    let mut loss: Option<(NodeId, Span)> = None;
    let mut last_binding: Option<NodeId> = None;
    // the last scalar binding: likely the loss under another name
    let mut last_scalar: Option<&Ident> = None;
    let mut dtype_seen = false;
    for st in &def.statements {
        match st {
            // collected before the walk: functions may be called before their definition
            Statement::Fn { .. } | Statement::Steps(..) | Statement::Truncate(..) => {}
            Statement::State { name, shape, init } => cx.declare_state(name, shape, init.as_ref()),
            Statement::Const { name, value } => {
                let defined = cx.define_check(name);
                match cx.const_eval(value) {
                    Ok(v) if defined => {
                        cx.consts.insert(name.name.clone(), v);
                    }
                    Ok(_) => {}
                    Err(d) => {
                        cx.error(d);
                        cx.poisoned.insert(name.name.clone());
                    }
                }
            }
            Statement::Dtype(name) => {
                if dtype_seen {
                    cx.error(
                        Diagnostic::new(name.span, "`dtype` is given twice")
                            .with_help("keep one `dtype` statement"),
                    );
                }
                dtype_seen = true;
                let d = match name.name.as_str() {
                    "f32" => Dtype::F32,
                    "f64" => Dtype::F64,
                    other => {
                        let d = Diagnostic::new(name.span, format!("unknown dtype `{other}`"));
                        let d = match did_you_mean(other, symbol::DTYPES.iter().copied()) {
                            Some(s) => d.with_help(format!(
                                "did you mean `{s}`? (`dtype f32;` or `dtype f64;`)"
                            )),
                            None => d.with_help("use `dtype f32;` or `dtype f64;`"),
                        };
                        cx.error(d);
                        continue;
                    }
                };
                if dtype.is_none() {
                    cx.g.dtype = d;
                }
            }
            Statement::Input {
                name,
                step,
                shape,
                class,
            } => {
                if !cx.rank_check(name, shape, "an input", step.is_some())
                    || !cx.step_marker_check(step.as_ref())
                {
                    cx.poisoned.insert(name.name.clone());
                    continue;
                }
                let classes = match class {
                    Some(TargetKind::Class {
                        count: Some((_, at)),
                        ..
                    }) => {
                        cx.error(
                            Diagnostic::new(*at, "a class input holds one class index")
                                .with_help(format!(
                                    "declare `input {0}: class[n];`, or one per time step `input {0}[t]: class[n];`",
                                    name.name
                                )),
                        );
                        cx.poisoned.insert(name.name.clone());
                        continue;
                    }
                    Some(TargetKind::Class { classes, .. }) => Some(*classes),
                    _ => None,
                };
                if cx.define_check(name) {
                    let shape = Shape(shape.dims.iter().map(|d| d.0).collect());
                    cx.declare_data(name, step.is_some(), shape, classes, true);
                }
            }
            Statement::Target { name, step, kind } => {
                if let TargetKind::Tensor(s) = kind {
                    if !cx.rank_check(name, s, "a target", step.is_some()) {
                        continue;
                    }
                }
                if !cx.step_marker_check(step.as_ref()) {
                    cx.poisoned.insert(name.name.clone());
                    continue;
                }
                if !cx.define_check(name) {
                    continue;
                }
                let (shape, classes) = match kind {
                    TargetKind::Tensor(s) => (Shape(s.dims.iter().map(|d| d.0).collect()), None),
                    TargetKind::Class {
                        count: Some((_, at)),
                        ..
                    } if step.is_some() => {
                        cx.error(
                            Diagnostic::new(*at, "a per-step class target holds one class index per step")
                                .with_help(format!("declare `target {}[t]: class[n];`, or a vector of class indices for the whole sample without `[t]`", name.name)),
                        );
                        cx.poisoned.insert(name.name.clone());
                        continue;
                    }
                    TargetKind::Class { classes, count, .. } => {
                        (Shape(count.iter().map(|c| c.0).collect()), Some(*classes))
                    }
                };
                cx.declare_data(name, step.is_some(), shape, classes, false);
            }
            Statement::Param { name, shape, init } => {
                if !cx.rank_check(name, shape, "a parameter", false) {
                    continue;
                }
                let shape = Shape(shape.dims.iter().map(|d| d.0).collect());
                let init = match init {
                    None => InitKind::Zeros,
                    Some(init) => match lower_init(init) {
                        Ok(i) => i,
                        Err(d) => {
                            cx.error(d);
                            InitKind::Zeros
                        }
                    },
                };
                if cx.define_check(name) {
                    let id = cx.add_param(&name.name, name.name.clone(), shape, init, name.span);
                    cx.env
                        .insert(name.name.clone(), (Value::Node(id), name.span));
                }
            }
            Statement::Output(name) => {
                if output.is_some() {
                    cx.error(
                        Diagnostic::new(name.span, "`output` is given twice")
                            .with_help("keep one `output` statement"),
                    );
                }
                output = Some(name);
            }
            Statement::Binding {
                name,
                step: Some(index),
                value,
            } => {
                if let Some(id) = cx.step_binding(name, index, value) {
                    if name.name != symbol::LOSS {
                        last_binding = Some(id);
                    }
                }
            }
            Statement::Binding {
                name,
                step: None,
                value,
            } => {
                cx.binding = name.name.clone();
                cx.dense_in_binding = 0;
                let defined = cx.define_check(name);
                match cx.expr(value) {
                    Ok(Value::Node(id)) => {
                        let id = cx.name_binding(id, &name.name);
                        if defined {
                            cx.env
                                .insert(name.name.clone(), (Value::Node(id), name.span));
                        }
                        if name.name == symbol::LOSS {
                            if cx.g.nodes[id].shape.is_scalar() {
                                loss = Some((id, value.span()));
                            } else {
                                let shape = cx.g.nodes[id].shape.clone();
                                cx.error(
                                    Diagnostic::new(value.span(), format!("the loss must be a scalar, but this has shape {shape}"))
                                        .with_help("reduce it with `sum(...)` or `mean(...)`, or use a loss function such as `mse`"),
                                );
                                cx.poisoned.insert(name.name.clone());
                            }
                        } else {
                            last_binding = Some(id);
                            if cx.g.nodes[id].shape.is_scalar() {
                                last_scalar = Some(name);
                            }
                        }
                    }
                    Ok(Value::Seq(_) | Value::SeqClass(..) | Value::State(_)) => {
                        cx.error(Cx::unindexed(value, "bound to a name"));
                        cx.poisoned.insert(name.name.clone());
                    }
                    Ok(Value::Class(id, _)) => {
                        let d = cx.class_misuse(value, id, "a value to bind to a name");
                        cx.error(d);
                        cx.poisoned.insert(name.name.clone());
                    }
                    Err(Reported) => {
                        cx.poisoned.insert(name.name.clone());
                    }
                }
            }
        }
    }

    cx.finish_states();
    let output = match output {
        Some(name) => match cx.lookup(name) {
            Ok(Value::Node(id) | Value::Seq(id)) => Some(id),
            Ok(Value::State(s)) => Some(cx.g.states[s].update),
            Ok(Value::Class(..) | Value::SeqClass(..)) => {
                cx.error(Diagnostic::new(
                    name.span,
                    "the output cannot be a class-index target",
                ));
                None
            }
            Err(Reported) => None,
        },
        None => last_binding,
    };
    let whole = Span::new(0, 0);
    let Some((loss, loss_span)) = loss else {
        if !cx.poisoned.contains(symbol::LOSS) {
            cx.error(match last_scalar {
                Some(name) => {
                    Diagnostic::new(name.span, "the definition has no loss").with_help(format!(
                        "the loss is the binding named `loss`: rename `{}` to `loss`",
                        name.name
                    ))
                }
                None => Diagnostic::new(whole, "the definition has no loss")
                    .with_help("add a scalar binding named `loss`, such as `loss = mse(out, y);`"),
            });
        }
        return Err(cx.errors);
    };
    let Some(output) = output else {
        if cx.errors.is_empty() {
            cx.error(
                Diagnostic::new(loss_span, "the definition has no output: no binding comes before the loss").with_help(
                    "bind the network's output to a name before `loss`, such as `out = dense(x, 1);`, or add `output name;`",
                ),
            );
        }
        return Err(cx.errors);
    };
    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    // `predict` has inputs only: an output computed from a target cannot be predicted
    let live = cx.g.live_from(&[output]);
    if let Some(t) =
        (0..cx.g.nodes.len()).find(|&id| live[id] && matches!(cx.g.nodes[id].op, Op::Target(_)))
    {
        let at = cx.g.nodes[output].span.unwrap_or(whole);
        let (out_name, t_name) = (cx.g.nodes[output].name.clone(), cx.g.nodes[t].name.clone());
        cx.error(
            Diagnostic::new(at, format!("the output `{out_name}` depends on the target `{t_name}`, but `predict` has no target"))
                .with_help("compute the output from inputs and parameters only; use the target in `loss`"),
        );
        return Err(cx.errors);
    }
    // unused declarations are mistakes: a parameter nothing reads is never
    // trained, an input nothing reads is data passed for nothing
    let mut roots = vec![loss, output];
    roots.extend(cx.g.states.iter().map(|s| s.update));
    let mut used = cx.g.live_from(&roots);
    for st in &cx.g.states {
        if let StateInit::Param(k) = st.init {
            if let Some(id) = cx.g.nodes.iter().position(|n| n.op == Op::Param(k)) {
                used[id] = true;
            }
        }
    }
    for (id, node) in cx.g.nodes.iter().enumerate() {
        let what = match node.op {
            Op::Param(k) if !cx.g.params[k].name.contains('.') => "parameter",
            Op::Input(_) => "input",
            // a target the loss ignores is unusual but harmless (a loss of
            // parameters only, say): not reported
            _ => continue,
        };
        if !used[id] {
            let at = node.span.unwrap_or(whole);
            cx.errors.push(
                Diagnostic::new(at, format!("the {what} `{}` is never used", node.name)).with_help(
                    format!(
                        "use it in the loss or the output, or remove it: {}",
                        if what == "parameter" {
                            "an unused parameter would never be trained"
                        } else {
                            "its data would be passed for nothing"
                        }
                    ),
                ),
            );
        }
    }
    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    // the generated structs hold these values: their total is bounded too
    let regions = cx.g.regions();
    let steps = cx.g.steps.map_or(1, |s| s.count) as u128;
    let mut total = 0u128;
    for (id, node) in cx.g.nodes.iter().enumerate() {
        let per = if regions[id] == Region::Step {
            steps
        } else {
            1
        };
        total += node.shape.len() as u128 * per;
        if total > MAX_TOTAL_ELEMENTS as u128 {
            let at = node.span.unwrap_or(whole);
            cx.error(
                Diagnostic::new(at, format!("the definition's values add up to more than {MAX_TOTAL_ELEMENTS} elements here"))
                    .with_help("the README's \"Limits\" section lists the largest sizes"),
            );
            return Err(cx.errors);
        }
    }
    cx.g.loss = loss;
    cx.g.output = output;
    cx.g.metric = metric_for(&cx.g, &cx.bce_logits, cx.class_axis);
    Ok(cx.g)
}

impl Cx {
    /// An input or a target: its declaration, its node, its name.
    fn declare_data(
        &mut self,
        name: &Ident,
        per_step: bool,
        shape: Shape,
        classes: Option<usize>,
        input: bool,
    ) {
        let decl = TensorDecl {
            name: name.name.clone(),
            shape: shape.clone(),
            classes,
            per_step,
        };
        let op = if input {
            self.g.inputs.push(decl);
            Op::Input(self.g.inputs.len() - 1)
        } else {
            self.g.targets.push(decl);
            Op::Target(self.g.targets.len() - 1)
        };
        let id = self
            .g
            .push(op, shape, name.name.clone(), Pass::Forward, Some(name.span));
        let value = match (classes, per_step) {
            (Some(n), false) => Value::Class(id, n),
            (Some(n), true) => Value::SeqClass(id, n),
            (None, false) => Value::Node(id),
            (None, true) => Value::Seq(id),
        };
        self.env.insert(name.name.clone(), (value, name.span));
    }
}

fn declared_name(st: &Statement) -> Option<&Ident> {
    match st {
        Statement::Input { name, .. }
        | Statement::Target { name, .. }
        | Statement::Param { name, .. }
        | Statement::Binding { name, .. }
        | Statement::State { name, .. }
        | Statement::Const { name, .. } => Some(name),
        Statement::Dtype(_)
        | Statement::Output(_)
        | Statement::Fn { .. }
        | Statement::Steps(..)
        | Statement::Truncate(..) => None,
    }
}

/// Accuracy: argmax against a class target; a single output is thresholded
/// (at 0 when it is the logit of `bce_with_logits`, else at one half).
fn metric_for(g: &Graph, bce_logits: &[NodeId], class_axis: Option<usize>) -> Metric {
    if let Some(axis) = class_axis {
        return Metric::ArgmaxClassAxis(axis);
    }
    if g.targets.iter().any(|t| t.classes.is_some()) {
        return Metric::ArgmaxClass;
    }
    if g.nodes[g.output].shape.len() == 1 {
        Metric::Threshold(if bce_logits.contains(&g.output) {
            ThresholdAt::Zero
        } else {
            ThresholdAt::Half
        })
    } else {
        Metric::ArgmaxVector
    }
}
