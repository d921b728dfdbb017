//! Lowering: syntax tree -> typed tensor graph. Resolves names, checks shapes
//! and arities, and expands sugar (`dense`, `mse`, `mean`, ...) into core ops,
//! so that only core ops carry derivative rules. Errors are collected, not
//! stopped at: every independent mistake in a definition is reported.

use crate::ir::*;
use crate::scalar::{build::*, Cmp, Func, S};
use crate::symbol;
use nn_grammar::{
    did_you_mean, BinaryOp, Definition, Diagnostic, Expr, Ident, Span, Statement, TargetKind,
    UnaryOp,
};
use std::collections::HashMap;

/// What a name refers to.
#[derive(Clone, Copy, Debug)]
enum Value {
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
struct PendingState {
    decl: StateDecl,
    span: Span,
    updated: bool,
    /// Its update had an error, already reported: uses are not reported again.
    failed: bool,
}

/// Marker: an error was already reported for this expression.
struct Reported;

type Lowered = Result<Value, Reported>;

struct Cx {
    g: Graph,
    errors: Vec<Diagnostic>,
    /// Names defined so far, with where.
    env: HashMap<String, (Value, Span)>,
    /// Names defined anywhere in the definition (for "used before definition").
    all_names: HashMap<String, Span>,
    /// Names whose definition failed: uses are not reported again.
    poisoned: Vec<String>,
    /// The binding being lowered, for naming nodes and parameters.
    binding: String,
    /// How many `dense` layers the current binding has created.
    dense_in_binding: usize,
    /// Node names handed out, for unique locals.
    names: HashMap<String, usize>,
    /// Logits passed to `bce_with_logits` (a single such output is cut at 0 for accuracy).
    bce_logits: Vec<NodeId>,
    /// `const` hyperparameters defined so far.
    consts: HashMap<String, f64>,
    /// User functions, by name.
    fns: HashMap<String, FnDef>,
    /// The user functions being inlined, innermost last, each with its
    /// parameters' values (to find recursion and resolve names).
    frames: Vec<(String, HashMap<String, Value>)>,
    /// `steps N;` and `truncate k;`, found before the walk.
    steps: Option<Steps>,
    /// Lowering a per-step expression (`h[t] = ...`, `sum_steps(...)`).
    in_step: bool,
    /// The states, in declaration order.
    states: Vec<PendingState>,
}

/// A user function `fn name(params) = body;`.
#[derive(Clone)]
struct FnDef {
    params: Vec<Ident>,
    body: Expr,
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
        },
        errors: vec![],
        env: HashMap::new(),
        all_names: HashMap::new(),
        poisoned: vec![],
        binding: String::new(),
        dense_in_binding: 0,
        names: HashMap::new(),
        bce_logits: vec![],
        consts: HashMap::new(),
        fns: HashMap::new(),
        frames: vec![],
        steps: None,
        in_step: false,
        states: vec![],
    };
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
                        cx.poisoned.push(name.name.clone());
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
            Statement::Input { name, step, shape } => {
                if !cx.rank_check(name, shape, "an input") || !cx.step_marker_check(step.as_ref()) {
                    cx.poisoned.push(name.name.clone());
                    continue;
                }
                let shape = Shape(shape.dims.iter().map(|d| d.0).collect());
                if cx.define_check(name) {
                    let k = cx.g.inputs.len();
                    cx.g.inputs.push(TensorDecl {
                        name: name.name.clone(),
                        shape: shape.clone(),
                        classes: None,
                        per_step: step.is_some(),
                    });
                    let id = cx.g.push(
                        Op::Input(k),
                        shape,
                        name.name.clone(),
                        Pass::Forward,
                        Some(name.span),
                    );
                    let value = if step.is_some() {
                        Value::Seq(id)
                    } else {
                        Value::Node(id)
                    };
                    cx.env.insert(name.name.clone(), (value, name.span));
                }
            }
            Statement::Target { name, step, kind } => {
                if let TargetKind::Tensor(s) = kind {
                    if !cx.rank_check(name, s, "a target") {
                        continue;
                    }
                }
                if !cx.step_marker_check(step.as_ref()) {
                    cx.poisoned.push(name.name.clone());
                    continue;
                }
                if !cx.define_check(name) {
                    continue;
                }
                let k = cx.g.targets.len();
                let (shape, classes) = match kind {
                    TargetKind::Tensor(s) => (Shape(s.dims.iter().map(|d| d.0).collect()), None),
                    TargetKind::Class { classes, .. } => (Shape::scalar(), Some(*classes)),
                };
                cx.g.targets.push(TensorDecl {
                    name: name.name.clone(),
                    shape: shape.clone(),
                    classes,
                    per_step: step.is_some(),
                });
                let id = cx.g.push(
                    Op::Target(k),
                    shape,
                    name.name.clone(),
                    Pass::Forward,
                    Some(name.span),
                );
                let value = match (classes, step.is_some()) {
                    (Some(n), false) => Value::Class(id, n),
                    (Some(n), true) => Value::SeqClass(id, n),
                    (None, false) => Value::Node(id),
                    (None, true) => Value::Seq(id),
                };
                cx.env.insert(name.name.clone(), (value, name.span));
            }
            Statement::Param { name, shape, init } => {
                if !cx.rank_check(name, shape, "a parameter") {
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
                                cx.poisoned.push(name.name.clone());
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
                        cx.poisoned.push(name.name.clone());
                    }
                    Ok(Value::Class(..)) => {
                        cx.error(
                            Diagnostic::new(
                                value.span(),
                                "a class-index target cannot be bound to a name",
                            )
                            .with_help(
                                "use it directly in `softmax_cross_entropy(logits, target)`",
                            ),
                        );
                        cx.poisoned.push(name.name.clone());
                    }
                    Err(Reported) => cx.poisoned.push(name.name.clone()),
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
        if !cx.poisoned.iter().any(|n| n == symbol::LOSS) {
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
    cx.g.loss = loss;
    cx.g.output = output;
    cx.g.metric = metric_for(&cx.g, &cx.bce_logits);
    Ok(cx.g)
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
fn metric_for(g: &Graph, bce_logits: &[NodeId]) -> Metric {
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

fn lower_init(init: &nn_grammar::Init) -> Result<InitKind, Diagnostic> {
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
    fn error(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }

    /// Checks a declared shape is a vector or a matrix; reports a higher rank.
    fn rank_check(&mut self, name: &Ident, shape: &nn_grammar::Shape, what: &str) -> bool {
        if shape.dims.len() <= 2 {
            return true;
        }
        // uses of the name are not reported again
        self.poisoned.push(name.name.clone());
        self.error(
            Diagnostic::new(
                shape.span,
                format!(
                    "{what} has at most 2 dimensions, found {}",
                    shape.dims.len()
                ),
            )
            .with_help("use a vector `[n]` or a matrix `[rows, cols]`"),
        );
        false
    }

    /// Checks a new name is not taken; reports a duplicate.
    fn define_check(&mut self, name: &Ident) -> bool {
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
            self.poisoned.push(name.name.clone());
            return false;
        }
        true
    }

    fn fresh_name(&mut self, base: &str) -> String {
        let n = self.names.entry(base.to_string()).or_insert(0);
        *n += 1;
        if *n == 1 {
            base.to_string()
        } else {
            format!("{base}_{n}")
        }
    }

    fn node(&mut self, op: Op, shape: Shape, span: Span) -> NodeId {
        let base = format!("{}_{}", self.binding, op.name());
        let name = self.fresh_name(&base);
        self.g.push(op, shape, name, Pass::Forward, Some(span))
    }

    fn map(
        &mut self,
        args: Vec<NodeId>,
        bcast: Vec<Bcast>,
        body: S,
        shape: Shape,
        what: &str,
        span: Span,
    ) -> NodeId {
        let base = format!("{}_{what}", self.binding);
        let name = self.fresh_name(&base);
        self.g.push(
            Op::Map { args, bcast, body },
            shape,
            name,
            Pass::Forward,
            Some(span),
        )
    }

    fn unary(&mut self, x: NodeId, body: S, what: &str, span: Span) -> NodeId {
        let shape = self.g.nodes[x].shape.clone();
        self.map(vec![x], vec![Bcast::Full], body, shape, what, span)
    }

    fn constant(&mut self, v: f64, span: Span) -> NodeId {
        self.map(vec![], vec![], c(v), Shape::scalar(), "const", span)
    }

    /// Gives the binding's own name to the node that computes it, so the
    /// generated code reads like the definition (`h`, not `h_map`).
    fn name_binding(&mut self, id: NodeId, name: &str) -> NodeId {
        let node = &self.g.nodes[id];
        let is_leaf = matches!(node.op, Op::Input(_) | Op::Target(_) | Op::Param(_));
        let already_bound = self
            .env
            .values()
            .any(|(v, _)| matches!(v, Value::Node(n) if *n == id));
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
            return id2;
        }
        let unique = self.fresh_name(name);
        self.g.nodes[id].name = unique;
        id
    }

    fn add_param(
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
        self.g
            .push(Op::Param(k), shape, field, Pass::Forward, Some(span))
    }

    fn lookup(&mut self, name: &Ident) -> Lowered {
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
                None if symbol::FUNCTIONS.iter().any(|f| f.0 == name.name) => {
                    d.with_help(format!("`{}` is a function: call it as `{}(...)`", name.name, name.name))
                }
                None => d.with_help("declare it first with `input`, `target`, `param`, or bind it with `name = ...;`"),
            }
        };
        self.error(d);
        Err(Reported)
    }

    fn tensor(&mut self, e: &Expr) -> Result<NodeId, Reported> {
        match self.expr(e)? {
            Value::Node(id) => Ok(id),
            Value::Seq(_) | Value::SeqClass(..) | Value::State(_) => {
                self.error(Cx::unindexed(e, "used"));
                Err(Reported)
            }
            Value::Class(..) => {
                self.error(
                    Diagnostic::new(
                        e.span(),
                        format!("{} is a class-index target, not a tensor", short(e, "this")),
                    )
                    .with_help("use it as the second argument of `softmax_cross_entropy`"),
                );
                Err(Reported)
            }
        }
    }

    fn expr(&mut self, e: &Expr) -> Lowered {
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
                self.binary(*op, a, b, *span, lhs, rhs).map(Value::Node)
            }
            Expr::Call { func, args, span } => self.call(func, args, *span),
            Expr::Slice {
                arg,
                start,
                end,
                span,
            } => self.slice(arg, *start, *end, *span).map(Value::Node),
            Expr::StepRef {
                arg,
                index,
                offset,
                span,
            } => self.step_ref(arg, index, *offset, *span),
        }
    }

    /// The error for a sequence or state used without a step index.
    fn unindexed(e: &Expr, what: &str) -> Diagnostic {
        let n = short(e, "this");
        Diagnostic::new(e.span(), format!("{n} has one value per time step and cannot be {what} without a step index"))
            .with_help("index it: `x[t]` inside a step (`h[t] = ...`, `sum_steps(...)`), `h[t-1]` for a state's previous value, `x[last]` after the loop")
    }

    /// Finds `steps N;` and `truncate k;` before the walk.
    fn collect_steps(&mut self, def: &Definition) {
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
    fn step_marker_check(&mut self, step: Option<&Ident>) -> bool {
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
    fn declare_state(
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
        if !self.rank_check(name, shape, "a state") || !self.define_check(name) {
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
            self.poisoned.push(name.name.clone());
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
                                self.poisoned.push(name.name.clone());
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
            self.poisoned.push(name.name.clone());
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
    fn step_binding(&mut self, name: &Ident, index: &Ident, value: &Expr) -> Option<NodeId> {
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
                None => self.poisoned.push(name.name.clone()),
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
    fn over_steps(&mut self, name: &str, e: &Expr, span: Span) -> Result<NodeId, Reported> {
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
    fn finish_states(&mut self) {
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
    fn step_ref(&mut self, arg: &Expr, index: &Ident, offset: i64, span: Span) -> Lowered {
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

    fn not_a_sequence(&mut self, name: &Ident, _v: Value, span: Span) -> Lowered {
        self.error(
            Diagnostic::new(span, format!("`{}` is not a sequence and cannot be indexed by a step", name.name))
                .with_help("only per-step inputs and targets (`input x[t][n];`), per-step bindings (`y[t] = ...`) and states are indexed by `t`"),
        );
        Err(Reported)
    }

    /// `x[a:b]` of a vector.
    fn slice(
        &mut self,
        arg: &Expr,
        start: Option<(usize, Span)>,
        end: Option<(usize, Span)>,
        span: Span,
    ) -> Result<NodeId, Reported> {
        let x = self.tensor(arg)?;
        let shape = self.g.nodes[x].shape.clone();
        if shape.rank() != 1 {
            self.error(
                Diagnostic::new(
                    span,
                    format!(
                        "only vectors can be sliced, but {} has shape {shape}",
                        short(arg, "this")
                    ),
                )
                .with_help("slice a vector `[n]` as `x[a:b]`"),
            );
            return Err(Reported);
        }
        let n = shape.0[0];
        let a = start.map_or(0, |s| s.0);
        let b = end.map_or(n, |e| e.0);
        if a >= b || b > n {
            let at = match (start, end) {
                (Some(s), Some(e)) => s.1.join(e.1),
                (Some(s), None) => s.1,
                (None, Some(e)) => e.1,
                (None, None) => span,
            };
            self.error(
                Diagnostic::new(
                    at,
                    format!("the slice [{a}:{b}] is out of range for a vector of {n}"),
                )
                .with_help(format!("a slice `[a:b]` needs 0 <= a < b <= {n}")),
            );
            return Err(Reported);
        }
        Ok(self.node(Op::Slice(x, a), Shape(vec![b - a]), span))
    }

    /// Records every `fn` before lowering, so calls may precede definitions;
    /// a function may not shadow a built-in or be defined twice.
    fn collect_functions(&mut self, def: &Definition) {
        for st in &def.statements {
            let Statement::Fn { name, params, body } = st else {
                continue;
            };
            if symbol::FUNCTIONS.iter().any(|f| f.0 == name.name) {
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
                FnDef {
                    params: params.clone(),
                    body: body.clone(),
                },
            );
        }
    }

    /// Inlines a call of a user function: its body is lowered with the
    /// parameters bound to the arguments, so it is differentiated
    /// symbolically like any built-in.
    fn call_user(&mut self, func: &Ident, args: &[Expr], span: Span) -> Lowered {
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
        self.frames.push((func.name.clone(), bound));
        let result = self.expr(&f.body);
        self.frames.pop();
        result
    }

    /// The value of a constant expression: numbers, `const`s, `+ - * / ^`.
    fn const_eval(&self, e: &Expr) -> Result<f64, Diagnostic> {
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
                match op {
                    BinaryOp::Add => a + b,
                    BinaryOp::Sub => a - b,
                    BinaryOp::Mul => a * b,
                    BinaryOp::Div => a / b,
                    BinaryOp::Pow => crate::scalar::pow_value(a, b),
                    _ => {
                        return Err(Diagnostic::new(
                            *span,
                            format!("`{}` is not allowed in a constant", op.symbol()),
                        )
                        .with_help("use `+`, `-`, `*`, `/` and `^` on numbers and `const`s"))
                    }
                }
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
    fn const_of(&self, e: &Expr) -> Option<f64> {
        self.const_eval(e).ok()
    }

    #[allow(clippy::too_many_arguments)]
    fn binary(
        &mut self,
        op: BinaryOp,
        a: NodeId,
        b: NodeId,
        span: Span,
        lhs: &Expr,
        rhs: &Expr,
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
                let (opk, shape) = match (sa.rank(), sb.rank()) {
                    (2, 1) if sa.0[1] == sb.0[0] => (Op::MatVec(a, b), Shape(vec![sa.0[0]])),
                    (2, 2) if sa.0[1] == sb.0[0] => {
                        (Op::MatMul(a, b), Shape(vec![sa.0[0], sb.0[1]]))
                    }
                    (1, 2) if sa.0[0] == sb.0[0] => (Op::VecMat(a, b), Shape(vec![sb.0[1]])),
                    (1, 1) if sa.0[0] == sb.0[0] => {
                        let prod = self.map(
                            vec![a, b],
                            vec![Bcast::Full, Bcast::Full],
                            mul(S::Arg(0), S::Arg(1)),
                            sa.clone(),
                            "mul",
                            span,
                        );
                        return Ok(self.node(Op::Sum(prod), Shape::scalar(), span));
                    }
                    (0, _) | (_, 0) => {
                        let scalar = if sa.rank() == 0 { lhs } else { rhs };
                        self.error(
                            Diagnostic::new(
                                scalar.span(),
                                format!(
                                    "`@` needs a vector or matrix on each side, but {} is a scalar",
                                    short(scalar, "this side")
                                ),
                            )
                            .with_help("use `*` to scale by a scalar"),
                        );
                        return Err(Reported);
                    }
                    _ => {
                        let inner_a = sa.0.last().copied().unwrap_or(1);
                        let inner_b = sb.0[0];
                        let detail = format!(
                            "inner sizes {inner_a} and {inner_b} differ: {} is {sa}, {} is {sb}",
                            short(lhs, "the left side"),
                            short(rhs, "the right side")
                        );
                        self.error(shape_error(detail));
                        return Err(Reported);
                    }
                };
                return Ok(self.node(opk, shape, span));
            }
            BinaryOp::Pow => {
                let Some(e) = self.const_of(rhs) else {
                    self.error(
                        Diagnostic::new(rhs.span(), "the exponent of `^` must be a number")
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
                short(lhs, "the left side"),
                short(rhs, "the right side")
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

    fn call(&mut self, func: &Ident, args: &[Expr], span: Span) -> Lowered {
        let name = func.name.as_str();
        if self.fns.contains_key(name) {
            return self.call_user(func, args, span);
        }
        let Some(&(_, min, max)) = symbol::FUNCTIONS.iter().find(|f| f.0 == name) else {
            // still check the arguments, for their own errors
            for a in args {
                let _ = self.expr(a);
            }
            let d = Diagnostic::new(func.span, format!("unknown function `{name}`"));
            let known = symbol::FUNCTIONS
                .iter()
                .map(|f| f.0)
                .chain(self.fns.keys().map(String::as_str));
            let d = match did_you_mean(name, known) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help("the README's language reference lists every function"),
            };
            self.error(d);
            return Err(Reported);
        };
        if args.len() < min || args.len() > max {
            let takes = if min == max {
                format!("{min}")
            } else {
                format!("{min} or {max}")
            };
            let plural = if max == 1 { "argument" } else { "arguments" };
            // too many: point at the extra arguments; too few: at the call
            let at = match (args.get(max), args.last()) {
                (Some(first), Some(last)) => first.span().join(last.span()),
                _ => span,
            };
            self.error(
                Diagnostic::new(
                    at,
                    format!("`{name}` takes {takes} {plural}, found {}", args.len()),
                )
                .with_help(format!("write `{}`", signature(name))),
            );
            return Err(Reported);
        }
        if let Some(f) = unary_func(name) {
            let x = self.tensor(&args[0])?;
            return Ok(Value::Node(self.unary(x, f, name, span)));
        }
        match name {
            "pow" => {
                let x = self.tensor(&args[0])?;
                let Some(e) = self.const_of(&args[1]) else {
                    self.error(
                        Diagnostic::new(args[1].span(), "the exponent of `pow` must be a number")
                            .with_help("write a constant such as `pow(x, 3)`"),
                    );
                    return Err(Reported);
                };
                Ok(Value::Node(self.unary(x, pow(S::Arg(0), e), "pow", span)))
            }
            "sum" | "mean" if args.len() == 2 => {
                self.reduce_axis(name, args, span).map(Value::Node)
            }
            "sum_steps" | "mean_steps" => self.over_steps(name, &args[0], span).map(Value::Node),
            "sum" => {
                let x = self.tensor(&args[0])?;
                Ok(Value::Node(self.node(Op::Sum(x), Shape::scalar(), span)))
            }
            "mean" => {
                let x = self.tensor(&args[0])?;
                Ok(Value::Node(self.mean(x, span)))
            }
            "leaky_relu" | "elu" => {
                let x = self.tensor(&args[0])?;
                let default = if name == "elu" { 1.0 } else { 0.01 };
                let alpha = match args.get(1) {
                    None => default,
                    Some(a) => match self.const_of(a) {
                        Some(v) => v,
                        None => {
                            self.error(
                                Diagnostic::new(
                                    a.span(),
                                    format!("the slope of `{name}` must be a constant"),
                                )
                                .with_help(format!(
                                    "write a number or a `const`, as in `{name}(x, {default})`"
                                )),
                            );
                            return Err(Reported);
                        }
                    },
                };
                let x0 = S::Arg(0);
                let negative = if name == "elu" {
                    mul(c(alpha), sub(call(Func::Exp, x0.clone()), c(1.0)))
                } else {
                    mul(c(alpha), x0.clone())
                };
                let body = select(cmp(Cmp::Gt, x0.clone(), c(0.0)), x0, negative);
                Ok(Value::Node(self.unary(x, body, name, span)))
            }
            "gelu" | "gelu_exact" | "silu" | "swish" | "softsign" => {
                let x = self.tensor(&args[0])?;
                let x0 = || S::Arg(0);
                let body = match name {
                    // x Φ(x) with the tanh approximation of Φ
                    "gelu" => mul(
                        mul(c(0.5), x0()),
                        add(
                            c(1.0),
                            call(
                                Func::Tanh,
                                mul(
                                    c((2.0 / std::f64::consts::PI).sqrt()),
                                    add(x0(), mul(c(0.044715), pow(x0(), 3.0))),
                                ),
                            ),
                        ),
                    ),
                    // x Φ(x) = x (1 + erf(x / √2)) / 2
                    "gelu_exact" => mul(
                        mul(c(0.5), x0()),
                        add(
                            c(1.0),
                            call(Func::Erf, mul(c(std::f64::consts::FRAC_1_SQRT_2), x0())),
                        ),
                    ),
                    "softsign" => div(x0(), add(c(1.0), call(Func::Abs, x0()))),
                    // silu = swish = x sigmoid(x)
                    _ => mul(x0(), call(Func::Sigmoid, x0())),
                };
                Ok(Value::Node(self.unary(x, body, name, span)))
            }
            "min" | "max" | "clamp" | "where" => {
                let mut ids = vec![];
                let mut failed = false;
                for a in args {
                    match self.tensor(a) {
                        Ok(id) => ids.push(id),
                        Err(Reported) => failed = true,
                    }
                }
                if failed {
                    return Err(Reported);
                }
                let shapes: Vec<Shape> = ids
                    .iter()
                    .map(|&id| self.g.nodes[id].shape.clone())
                    .collect();
                let Some((shape, bcast)) = broadcast_all(&shapes) else {
                    let listed: Vec<String> = shapes.iter().map(|s| s.to_string()).collect();
                    self.error(
                        Diagnostic::new(span, format!("the shapes {} do not match for `{name}`", listed.join(", ")))
                            .with_help("elementwise functions need equal shapes, scalars, or a matrix [m, n] with vectors [m]"),
                    );
                    return Err(Reported);
                };
                let (a0, a1, a2) = (S::Arg(0), S::Arg(1), S::Arg(2));
                let body = match name {
                    // at a tie the second operand is chosen (and gets the gradient)
                    "min" => select(cmp(Cmp::Lt, a0.clone(), a1.clone()), a0, a1),
                    "max" => select(cmp(Cmp::Gt, a0.clone(), a1.clone()), a0, a1),
                    // below lo: lo; above hi: hi; else x
                    "clamp" => select(
                        cmp(Cmp::Lt, a0.clone(), a1.clone()),
                        a1,
                        select(cmp(Cmp::Gt, a0.clone(), a2.clone()), a2, a0),
                    ),
                    // where(c, a, b): a where c is non-zero
                    _ => select(a0, a1, a2),
                };
                Ok(Value::Node(self.map(ids, bcast, body, shape, name, span)))
            }
            "softmax" | "log_softmax" | "logsumexp" | "transpose" | "norm" => {
                let x = self.tensor(&args[0])?;
                let shape = self.g.nodes[x].shape.clone();
                match name {
                    "softmax" | "log_softmax" => {
                        if shape.rank() != 1 {
                            self.error(Diagnostic::new(
                                args[0].span(),
                                format!("`{name}` needs a vector, found shape {shape}"),
                            ));
                            return Err(Reported);
                        }
                        let ls = self.node(Op::LogSoftmax(x), shape.clone(), span);
                        if name == "log_softmax" {
                            return Ok(Value::Node(ls));
                        }
                        // softmax = exp(log_softmax), stable for large inputs
                        Ok(Value::Node(self.unary(
                            ls,
                            call(Func::Exp, S::Arg(0)),
                            "softmax",
                            span,
                        )))
                    }
                    "logsumexp" => Ok(Value::Node(self.node(
                        Op::LogSumExp(x),
                        Shape::scalar(),
                        span,
                    ))),
                    "transpose" => {
                        if shape.rank() != 2 {
                            self.error(Diagnostic::new(
                                args[0].span(),
                                format!("`transpose` needs a matrix, found shape {shape}"),
                            ));
                            return Err(Reported);
                        }
                        Ok(Value::Node(self.node(
                            Op::Transpose(x),
                            Shape(vec![shape.0[1], shape.0[0]]),
                            span,
                        )))
                    }
                    // norm(x) = sqrt(Σ x²); its gradient x / norm(x) is undefined at 0
                    _ => {
                        let sq = self.unary(x, pow(S::Arg(0), 2.0), "sq", span);
                        let total = self.node(Op::Sum(sq), Shape::scalar(), span);
                        Ok(Value::Node(self.unary(
                            total,
                            call(Func::Sqrt, S::Arg(0)),
                            "norm",
                            span,
                        )))
                    }
                }
            }
            "dot" | "outer" => {
                let a = self.tensor(&args[0]);
                let b = self.tensor(&args[1]);
                let (a, b) = (a?, b?);
                let (sa, sb) = (self.g.nodes[a].shape.clone(), self.g.nodes[b].shape.clone());
                if sa.rank() != 1 || sb.rank() != 1 || (name == "dot" && sa != sb) {
                    let need = if name == "dot" {
                        "two vectors of one length"
                    } else {
                        "two vectors"
                    };
                    self.error(Diagnostic::new(
                        span,
                        format!("`{name}` needs {need}, found {sa} and {sb}"),
                    ));
                    return Err(Reported);
                }
                if name == "outer" {
                    return Ok(Value::Node(self.node(
                        Op::Outer(a, b),
                        Shape(vec![sa.0[0], sb.0[0]]),
                        span,
                    )));
                }
                let prod = self.map(
                    vec![a, b],
                    vec![Bcast::Full; 2],
                    mul(S::Arg(0), S::Arg(1)),
                    sa,
                    "mul",
                    span,
                );
                Ok(Value::Node(self.node(Op::Sum(prod), Shape::scalar(), span)))
            }
            "concat" => {
                let mut parts = vec![];
                for a in args {
                    let id = self.tensor(a)?;
                    if self.g.nodes[id].shape.rank() != 1 {
                        let sh = self.g.nodes[id].shape.clone();
                        self.error(Diagnostic::new(
                            a.span(),
                            format!("`concat` joins vectors, but this has shape {sh}"),
                        ));
                        return Err(Reported);
                    }
                    parts.push(id);
                }
                let mut acc = parts[0];
                for &p in &parts[1..] {
                    let n = self.g.nodes[acc].shape.len() + self.g.nodes[p].shape.len();
                    acc = self.node(Op::Concat(acc, p), Shape(vec![n]), span);
                }
                Ok(Value::Node(acc))
            }
            "dense" => self.dense(args, span).map(Value::Node),
            "mse" => {
                let (a, b) = self.same_shape_pair(name, args, span)?;
                let diff = self.map(
                    vec![a, b],
                    vec![Bcast::Full; 2],
                    pow(sub(S::Arg(0), S::Arg(1)), 2.0),
                    self.g.nodes[a].shape.clone(),
                    "sq_err",
                    span,
                );
                Ok(Value::Node(self.mean(diff, span)))
            }
            "bce_with_logits" | "binary_cross_entropy_with_logits" => {
                // mean(softplus(z) - z y): the stable form of -(y ln σ(z) + (1 - y) ln(1 - σ(z)))
                let (z, y) = self.same_shape_pair(name, args, span)?;
                self.bce_logits.push(z);
                let body = sub(call(Func::Softplus, S::Arg(0)), mul(S::Arg(0), S::Arg(1)));
                let elems = self.map(
                    vec![z, y],
                    vec![Bcast::Full; 2],
                    body,
                    self.g.nodes[z].shape.clone(),
                    "softplus",
                    span,
                );
                Ok(Value::Node(self.mean(elems, span)))
            }
            "softmax_cross_entropy" | "cross_entropy" => {
                self.softmax_xent(name, args, span).map(Value::Node)
            }
            _ => unreachable!("every function in symbol::FUNCTIONS is lowered"),
        }
    }

    /// `sum(x, axis)` and `mean(x, axis)` of a matrix: axis 0 sums each
    /// column (`[m, n] -> [n]`), axis 1 each row (`[m, n] -> [m]`).
    fn reduce_axis(&mut self, name: &str, args: &[Expr], span: Span) -> Result<NodeId, Reported> {
        let x = self.tensor(&args[0])?;
        let shape = self.g.nodes[x].shape.clone();
        let axis = self
            .const_of(&args[1])
            .filter(|a| a.fract() == 0.0)
            .map(|a| a as i64);
        let (op, out, count) = match (axis, shape.rank()) {
            (Some(0), 2) => (Op::SumRows(x), Shape(vec![shape.0[1]]), shape.0[0]),
            (Some(1), 2) => (Op::SumCols(x), Shape(vec![shape.0[0]]), shape.0[1]),
            (_, 2) => {
                self.error(
                    Diagnostic::new(
                        args[1].span(),
                        format!("the axis of `{name}` must be 0 or 1"),
                    )
                    .with_help("axis 0 reduces each column to one value, axis 1 each row"),
                );
                return Err(Reported);
            }
            _ => {
                self.error(
                    Diagnostic::new(
                        args[0].span(),
                        format!("`{name}(x, axis)` needs a matrix, found shape {shape}"),
                    )
                    .with_help(format!("use `{name}(x)` to reduce a vector to a scalar")),
                );
                return Err(Reported);
            }
        };
        let total = self.node(op, out.clone(), span);
        if name == "sum" || count == 1 {
            return Ok(total);
        }
        Ok(self.unary(total, div(S::Arg(0), c(count as f64)), "mean", span))
    }

    fn mean(&mut self, x: NodeId, span: Span) -> NodeId {
        let n = self.g.nodes[x].shape.len() as f64;
        let s = self.node(Op::Sum(x), Shape::scalar(), span);
        if n == 1.0 {
            return s;
        }
        self.map(
            vec![s],
            vec![Bcast::Full],
            div(S::Arg(0), c(n)),
            Shape::scalar(),
            "mean",
            span,
        )
    }

    fn same_shape_pair(
        &mut self,
        name: &str,
        args: &[Expr],
        span: Span,
    ) -> Result<(NodeId, NodeId), Reported> {
        let a = self.tensor(&args[0]);
        let b = self.tensor(&args[1]);
        let (a, b) = (a?, b?);
        let (sa, sb) = (&self.g.nodes[a].shape, &self.g.nodes[b].shape);
        if sa != sb {
            let msg = format!("`{name}` needs two tensors of one shape, found {sa} and {sb}");
            self.error(Diagnostic::new(span, msg).with_help(format!(
                "{} is {sa}, {} is {sb}",
                short(&args[0], "the first argument"),
                short(&args[1], "the second argument")
            )));
            return Err(Reported);
        }
        Ok((a, b))
    }

    /// `softmax_cross_entropy(z, t)` = `-log_softmax(z)[t]` for a class index
    /// `t`, or `-Σ t ⊙ log_softmax(z)` for a target distribution `t`;
    /// log-softmax is computed with log-sum-exp, so large logits do not overflow.
    fn softmax_xent(&mut self, name: &str, args: &[Expr], span: Span) -> Result<NodeId, Reported> {
        let z = self.tensor(&args[0]);
        let t = self.expr(&args[1]);
        let (z, t) = (z?, t?);
        let sz = self.g.nodes[z].shape.clone();
        if sz.rank() != 1 {
            self.error(
                Diagnostic::new(
                    args[0].span(),
                    format!("`{name}` needs a vector of logits, found shape {sz}"),
                )
                .with_help("pass the network's last layer, one logit per class"),
            );
            return Err(Reported);
        }
        let logp = self.node(Op::LogSoftmax(z), sz.clone(), span);
        match t {
            Value::Seq(_) | Value::SeqClass(..) | Value::State(_) => {
                self.error(Cx::unindexed(&args[1], "used"));
                Err(Reported)
            }
            Value::Class(t, n) => {
                if n != sz.0[0] {
                    self.error(
                        Diagnostic::new(
                            span,
                            format!(
                                "`{name}` has {} logits but the target has {n} classes",
                                sz.0[0]
                            ),
                        )
                        .with_help(format!("make the last layer's size {n}")),
                    );
                    return Err(Reported);
                }
                let picked = self.node(Op::Pick(logp, t), Shape::scalar(), span);
                Ok(self.map(
                    vec![picked],
                    vec![Bcast::Full],
                    neg(S::Arg(0)),
                    Shape::scalar(),
                    "nll",
                    span,
                ))
            }
            Value::Node(t) => {
                let st = &self.g.nodes[t].shape;
                if *st != sz {
                    let msg = format!("`{name}` needs a target of the logits' shape {sz} or a class index, found {st}");
                    self.error(Diagnostic::new(args[1].span(), msg));
                    return Err(Reported);
                }
                let prod = self.map(
                    vec![t, logp],
                    vec![Bcast::Full; 2],
                    neg(mul(S::Arg(0), S::Arg(1))),
                    sz,
                    "nll",
                    span,
                );
                Ok(self.node(Op::Sum(prod), Shape::scalar(), span))
            }
        }
    }

    /// `dense(x, n[, init])` = `weight @ x + bias`, with `weight: [n, k]`
    /// (initialised by `init`, Glorot uniform by default) and `bias: [n]`
    /// (zeros), named `<binding>.weight` and `<binding>.bias`.
    fn dense(&mut self, args: &[Expr], span: Span) -> Result<NodeId, Reported> {
        let x = self.tensor(&args[0])?;
        let n = match &args[1] {
            Expr::Number(v, _) if *v >= 1.0 && v.fract() == 0.0 && *v < 1e9 => *v as usize,
            other => {
                self.error(
                    Diagnostic::new(
                        other.span(),
                        "the size of a `dense` layer must be a positive integer",
                    )
                    .with_help("write the number of units, as in `dense(x, 32)`"),
                );
                return Err(Reported);
            }
        };
        let init = match args.get(2) {
            None => InitKind::XavierUniform,
            Some(Expr::Name(id)) => {
                let as_init = nn_grammar::Init {
                    name: id.clone(),
                    args: vec![],
                    span: id.span,
                };
                match lower_init(&as_init) {
                    Ok(i) => i,
                    Err(d) => {
                        self.error(d);
                        return Err(Reported);
                    }
                }
            }
            Some(other) => {
                self.error(
                    Diagnostic::new(
                        other.span(),
                        "the third argument of `dense` is the weight initialiser",
                    )
                    .with_help("write `he`, `xavier` or another initialiser name"),
                );
                return Err(Reported);
            }
        };
        let sx = self.g.nodes[x].shape.clone();
        if sx.rank() == 0 {
            self.error(Diagnostic::new(
                args[0].span(),
                "`dense` needs a vector input, found a scalar",
            ));
            return Err(Reported);
        }
        let k = sx.0[0];
        self.dense_in_binding += 1;
        let prefix = if self.dense_in_binding == 1 {
            self.binding.clone()
        } else {
            format!("{}.{}", self.binding, self.dense_in_binding)
        };
        let mut ids = vec![];
        for (part, shape, init) in [
            ("weight", Shape(vec![n, k]), init),
            ("bias", Shape(vec![n]), InitKind::Zeros),
        ] {
            let display = format!("{prefix}.{part}");
            let field = display.replace('.', "_");
            if self.env.contains_key(&field) || self.g.params.iter().any(|p| p.field == field) {
                if self.poisoned.contains(&self.binding) {
                    // a binding defined twice: already reported
                    return Err(Reported);
                }
                self.error(Diagnostic::new(span, format!("the parameter `{display}` of this `dense` layer clashes with the name `{field}`")).with_help("rename the binding or the other name"));
                return Err(Reported);
            }
            ids.push(self.add_param(&display, field, shape, init, span));
        }
        let (w, b) = (ids[0], ids[1]);
        let (op, shape) = if sx.rank() == 1 {
            (Op::MatVec(w, x), Shape(vec![n]))
        } else {
            (Op::MatMul(w, x), Shape(vec![n, sx.0[1]]))
        };
        let wx = self.node(op, shape.clone(), span);
        let bcast = if shape.rank() == 1 {
            Bcast::Full
        } else {
            Bcast::Col
        };
        Ok(self.map(
            vec![wx, b],
            vec![Bcast::Full, bcast],
            add(S::Arg(0), S::Arg(1)),
            shape,
            "dense",
            span,
        ))
    }
}

/// How a function is called, for arity errors.
fn signature(name: &str) -> String {
    match name {
        "pow" => "pow(x, c)".into(),
        "dense" => "dense(x, units)` or `dense(x, units, init)".into(),
        "mse" => "mse(prediction, target)".into(),
        "sum" | "mean" => format!("{name}(x)` or `{name}(matrix, axis)"),
        "leaky_relu" | "elu" => format!("{name}(x)` or `{name}(x, alpha)"),
        "min" | "max" | "dot" | "outer" => format!("{name}(a, b)"),
        "clamp" => "clamp(x, lo, hi)".into(),
        "where" => "where(condition, a, b)".into(),
        "concat" => "concat(a, b, ...)".into(),
        "softmax_cross_entropy" | "cross_entropy" => format!("{name}(logits, target)"),
        "bce_with_logits" | "binary_cross_entropy_with_logits" => format!("{name}(logits, target)"),
        _ => format!("{name}(x)"),
    }
}

/// The scalar body of a built-in elementwise function of one argument.
fn unary_func(name: &str) -> Option<S> {
    let f = match name {
        "sigmoid" => Func::Sigmoid,
        "tanh" => Func::Tanh,
        "relu" => Func::Relu,
        "exp" => Func::Exp,
        "log" => Func::Log,
        "sqrt" => Func::Sqrt,
        "abs" => Func::Abs,
        "softplus" => Func::Softplus,
        "square" => return Some(pow(S::Arg(0), 2.0)),
        _ => return None,
    };
    Some(call(f, S::Arg(0)))
}

/// A short description of an operand for messages: its name in backticks,
/// or `fallback` ("the left side") for a compound expression.
fn short(e: &Expr, fallback: &str) -> String {
    match e {
        Expr::Name(id) => format!("`{}`", id.name),
        Expr::Number(v, _) => format!("`{v}`"),
        Expr::Call { func, .. } => format!("`{}(...)`", func.name),
        _ => fallback.to_string(),
    }
}
