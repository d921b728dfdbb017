//! Lowering: syntax tree -> typed tensor graph. Resolves names, checks shapes
//! and arities, and expands sugar (`dense`, `mse`, `mean`, ...) into core ops,
//! so that only core ops carry derivative rules. Errors are collected, not
//! stopped at: every independent mistake in a definition is reported.

use crate::ir::*;
use crate::scalar::{build::*, Func, S};
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
        },
        errors: vec![],
        env: HashMap::new(),
        all_names: HashMap::new(),
        poisoned: vec![],
        binding: String::new(),
        dense_in_binding: 0,
        names: HashMap::new(),
        bce_logits: vec![],
    };
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
            Statement::Input { name, shape } => {
                if !cx.rank_check(name, shape, "an input") {
                    continue;
                }
                let shape = Shape(shape.dims.iter().map(|d| d.0).collect());
                if cx.define_check(name) {
                    let k = cx.g.inputs.len();
                    cx.g.inputs.push(TensorDecl {
                        name: name.name.clone(),
                        shape: shape.clone(),
                        classes: None,
                    });
                    let id = cx.g.push(
                        Op::Input(k),
                        shape,
                        name.name.clone(),
                        Pass::Forward,
                        Some(name.span),
                    );
                    cx.env
                        .insert(name.name.clone(), (Value::Node(id), name.span));
                }
            }
            Statement::Target { name, kind } => {
                if let TargetKind::Tensor(s) = kind {
                    if !cx.rank_check(name, s, "a target") {
                        continue;
                    }
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
                });
                let id = cx.g.push(
                    Op::Target(k),
                    shape,
                    name.name.clone(),
                    Pass::Forward,
                    Some(name.span),
                );
                let value = match classes {
                    Some(n) => Value::Class(id, n),
                    None => Value::Node(id),
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
            Statement::Binding { name, value } => {
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

    let output = match output {
        Some(name) => match cx.lookup(name) {
            Ok(Value::Node(id)) => Some(id),
            Ok(Value::Class(..)) => {
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
        | Statement::Binding { name, .. } => Some(name),
        Statement::Dtype(_) | Statement::Output(_) => None,
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
        if self.env.contains_key(&name.name) || self.poisoned.contains(&name.name) {
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
        }
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
                let Some(e) = const_value(rhs) else {
                    self.error(
                        Diagnostic::new(rhs.span(), "the exponent of `^` must be a number")
                            .with_help("write a constant exponent such as `x ^ 2` or `x ^ 0.5`; use `exp(y * log(x))` for a variable one"),
                    );
                    return Err(Reported);
                };
                return Ok(self.unary(a, pow(S::Arg(0), e), "pow", span));
            }
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
            _ => "div",
        };
        Ok(self.map(vec![a, b], vec![ba, bb], body, shape, what, span))
    }

    fn call(&mut self, func: &Ident, args: &[Expr], span: Span) -> Lowered {
        let name = func.name.as_str();
        let Some(&(_, min, max)) = symbol::FUNCTIONS.iter().find(|f| f.0 == name) else {
            // still check the arguments, for their own errors
            for a in args {
                let _ = self.expr(a);
            }
            let d = Diagnostic::new(func.span, format!("unknown function `{name}`"));
            let d = match did_you_mean(name, symbol::FUNCTIONS.iter().map(|f| f.0)) {
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
                let Some(e) = const_value(&args[1]) else {
                    self.error(
                        Diagnostic::new(args[1].span(), "the exponent of `pow` must be a number")
                            .with_help("write a constant such as `pow(x, 3)`"),
                    );
                    return Err(Reported);
                };
                Ok(Value::Node(self.unary(x, pow(S::Arg(0), e), "pow", span)))
            }
            "sum" => {
                let x = self.tensor(&args[0])?;
                Ok(Value::Node(self.node(Op::Sum(x), Shape::scalar(), span)))
            }
            "mean" => {
                let x = self.tensor(&args[0])?;
                Ok(Value::Node(self.mean(x, span)))
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

/// The value of a constant expression (`2`, `-0.5`, `(3)`).
fn const_value(e: &Expr) -> Option<f64> {
    match e {
        Expr::Number(v, _) => Some(*v),
        Expr::Unary {
            op: UnaryOp::Neg,
            arg,
            ..
        } => const_value(arg).map(|v| -v),
        _ => None,
    }
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
