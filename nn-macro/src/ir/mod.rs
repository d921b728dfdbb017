//! The typed tensor graph: a flat list of nodes, operands before their users,
//! each with a static shape. Forward and backward passes live in one graph;
//! reverse mode is a reverse walk over it.

pub use crate::ops::window::Window;
use nn_grammar::Span;
use std::fmt;

mod op;
pub use op::Op;

/// Index of a node in [`Graph::nodes`].
pub type NodeId = usize;

/// A static shape: `[]` scalar, `[n]` vector, `[rows, cols]` matrix,
/// `[c, h, w]` and up (an image; a convolution's weight `[out, in, kh, kw]`).
/// Values of rank 3 and up are stored flat, row-major (see [`Shape::stored`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    /// The scalar shape `[]`.
    pub fn scalar() -> Self {
        Shape(vec![])
    }
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// Number of elements (saturating: lowering rejects shapes above
    /// [`MAX_ELEMENTS`](crate::limits::MAX_ELEMENTS), so later stages never
    /// see one that overflows).
    pub fn len(&self) -> usize {
        self.0.iter().fold(1usize, |n, &d| n.saturating_mul(d))
    }
    /// Whether this is `[]`.
    pub fn is_scalar(&self) -> bool {
        self.0.is_empty()
    }
    /// The shape a value is stored as in generated code: a scalar, a
    /// vector or a matrix as it is; a higher rank flat, `[len]` row-major.
    pub fn stored(&self) -> Shape {
        if self.rank() <= 2 {
            self.clone()
        } else {
            Shape(vec![self.len()])
        }
    }
    /// The rank of [`Shape::stored`]: at most 2.
    pub fn stored_rank(&self) -> usize {
        if self.rank() > 2 {
            1
        } else {
            self.rank()
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.0.iter().map(|d| d.to_string()).collect();
        write!(f, "[{}]", dims.join(", "))
    }
}

/// How an elementwise node reads one operand at output index `(i, j)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bcast {
    /// Same shape as the output: `a[i][j]`.
    Full,
    /// A scalar used at every index: `a`.
    Scalar,
    /// A vector `[m]` used along the columns of an `[m, n]` output (a bias): `a[i]`.
    Col,
    /// A vector `[n]` used along the rows of an `[m, n]` output: `a[j]`.
    Row,
}

/// The scalar type of a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// `f32` (default).
    F32,
    /// `f64`.
    F64,
}

/// Where a node is computed relative to its pass's time loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Region {
    /// Before the loop (or everything, without `steps`).
    Before,
    /// Inside the loop: once per time step.
    Step,
    /// After the loop.
    After,
}

/// Which pass a node belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Computed by `forward` (and `predict`).
    Forward,
    /// Computed by `backward`.
    Backward,
}

/// One node of the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The operation.
    pub op: Op,
    /// The output shape.
    pub shape: Shape,
    /// Name in generated code (after the definition: `h`, `d_h`, `h_matvec`).
    pub name: String,
    /// Which pass computes it.
    pub pass: Pass,
    /// The definition text it came from, if any.
    pub span: Option<Span>,
}

/// An input or target tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorDecl {
    /// Name as declared.
    pub name: String,
    /// Shape (for a class target, `[]`; for a vector of class indices, `[k]`).
    pub shape: Shape,
    /// `Some(n)` for a class-index target in `0..n` (or a vector of them).
    pub classes: Option<usize>,
    /// One value per time step (a sequence), of `shape` each.
    pub per_step: bool,
}

/// The time steps of a recurrent definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Steps {
    /// Sequence length `T`.
    pub count: usize,
    /// `truncate k`: the state adjoint is cut every `k` steps.
    pub truncate: Option<usize>,
}

/// The initial value of a state.
#[derive(Clone, Debug, PartialEq)]
pub enum StateInit {
    /// A constant (zeros when 0).
    Constant(f64),
    /// A learned parameter of the state's shape.
    Param(usize),
}

/// A value carried from one time step to the next.
#[derive(Clone, Debug, PartialEq)]
pub struct StateDecl {
    /// Name as declared.
    pub name: String,
    /// Shape.
    pub shape: Shape,
    /// Value before the first step.
    pub init: StateInit,
    /// The `StatePrev` node: the state's value at `t - 1`.
    pub prev: NodeId,
    /// The node computing the state's value at `t` (its `h[t] = ...` binding).
    pub update: NodeId,
}

/// How a parameter is initialised (mirrors `nn_runtime::Init`).
#[derive(Clone, Debug, PartialEq)]
pub enum InitKind {
    /// All zeros.
    Zeros,
    /// A constant.
    Constant(f64),
    /// Uniform in `[lo, hi)`.
    Uniform(f64, f64),
    /// Normal with mean and standard deviation.
    Normal(f64, f64),
    /// Glorot/Xavier uniform.
    XavierUniform,
    /// Glorot/Xavier normal.
    XavierNormal,
    /// He/Kaiming normal.
    HeNormal,
    /// He/Kaiming uniform.
    HeUniform,
}

/// A trained parameter tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamDecl {
    /// Name as the user sees it (`w1`, `h.weight`).
    pub name: String,
    /// Field name in the generated struct (`w1`, `h_weight`).
    pub field: String,
    /// Shape, `[out, in]` for a matrix.
    pub shape: Shape,
    /// Initialiser.
    pub init: InitKind,
}

/// What counts as a correct prediction, for accuracy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// argmax of the output against a class-index target.
    ArgmaxClass,
    /// A matrix output against a vector of class indices: the argmax of
    /// every column (axis 0) or row (axis 1) equals its class.
    ArgmaxClassAxis(usize),
    /// argmax of the output against the argmax of a (one-hot) target vector.
    ArgmaxVector,
    /// A single output thresholded at `threshold` against a 0/1 target.
    Threshold(ThresholdAt),
}

/// Where a single output is cut for accuracy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdAt {
    /// At 0.5 (a probability).
    Half,
    /// At 0 (a logit).
    Zero,
}

/// A whole network: declarations, the node list and its roots.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    /// Scalar type.
    pub dtype: Dtype,
    /// Inputs in declaration order.
    pub inputs: Vec<TensorDecl>,
    /// Targets in declaration order.
    pub targets: Vec<TensorDecl>,
    /// Parameters in declaration order (the flat layout's order).
    pub params: Vec<ParamDecl>,
    /// The nodes, operands before users.
    pub nodes: Vec<Node>,
    /// The scalar loss.
    pub loss: NodeId,
    /// What `predict` returns.
    pub output: NodeId,
    /// Accuracy rule.
    pub metric: Metric,
    /// After differentiation: each parameter's gradient node (`None`: the loss
    /// does not depend on it, its gradient is zero).
    pub grads: Vec<Option<NodeId>>,
    /// `Some` for a recurrent definition.
    pub steps: Option<Steps>,
    /// The states of a recurrent definition.
    pub states: Vec<StateDecl>,
    /// After differentiation: the adjoint of each state's previous value
    /// (what is carried back to the step before).
    pub state_adjoints: Vec<Option<NodeId>>,
    /// Differentiated for a mini-batch: a per-sample contribution to a
    /// shared value's adjoint is summed over the batch (`BatchSum`).
    pub batch: bool,
    /// The graph of `input_gradient`: each input's `∂loss/∂input` (`None`
    /// where the loss does not depend on it); empty in the others.
    pub input_grads: Vec<Option<NodeId>>,
    /// The graph of `hvp`: the Hessian-vector product of each parameter
    /// (`H v`'s part of the parameter's shape); empty in the others.
    pub hvp: Vec<Option<NodeId>>,
    /// Each `batch_norm` of the definition, in order: its running
    /// statistics (buffers, kept after the parameters, trained by no
    /// optimiser).
    pub batch_norms: Vec<BatchNormDecl>,
    /// The graph of `stream_step`: for each node, how many positions of
    /// the whole signal it stands for in `predict` (its signal's length
    /// for a column, 1 for a value of the parameters alone), so that the
    /// step computes each value as `predict` does; empty in the others.
    pub positions: Vec<usize>,
}

/// The running statistics of one `batch_norm`: `<name>.running_mean` `[c]`
/// (zeros), `<name>.running_var` `[c]` (ones) and
/// `<name>.num_batches_tracked` (a count), as PyTorch's `BatchNorm1d`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormDecl {
    /// The layer's name (`h`, or `h.2` for a binding's second layer).
    pub name: String,
    /// The channels `c`.
    pub channels: usize,
}

impl Graph {
    /// Adds a node and returns its id.
    pub fn push(
        &mut self,
        op: Op,
        shape: Shape,
        name: String,
        pass: Pass,
        span: Option<Span>,
    ) -> NodeId {
        self.nodes.push(Node {
            op,
            shape,
            name,
            pass,
            span,
        });
        self.nodes.len() - 1
    }

    /// The roots: loss, output, parameter gradients, state updates and adjoints.
    pub fn roots(&self) -> Vec<NodeId> {
        let mut roots = vec![self.loss, self.output];
        roots.extend(self.grads.iter().flatten());
        roots.extend(self.states.iter().map(|s| s.update));
        roots.extend(self.state_adjoints.iter().flatten());
        roots.extend(self.input_grads.iter().flatten());
        roots.extend(self.hvp.iter().flatten());
        roots
    }

    /// Which nodes hold one value per sample of a mini-batch: those computed
    /// from inputs or targets, and a state whose update is (parameters and
    /// what depends on them alone are shared; a `BatchSum` is shared).
    pub fn batched(&self) -> Vec<bool> {
        let mut b = vec![false; self.nodes.len()];
        // a state is per-sample when its update is: to a fixed point, since
        // the update comes after the previous value it reads
        loop {
            let mut changed = false;
            for (id, node) in self.nodes.iter().enumerate() {
                let v = match &node.op {
                    // batch statistics make a batch norm's result per-sample
                    Op::Input(_) | Op::Target(_) | Op::DropoutMask(..) | Op::BatchNorm(..) => true,
                    Op::BatchSum(_) => false,
                    Op::StatePrev(k) | Op::Carry(k) => b[self.states[*k].update],
                    op => op.args().iter().any(|&a| b[a]),
                };
                if v && !b[id] {
                    b[id] = true;
                    changed = true;
                }
            }
            if !changed {
                return b;
            }
        }
    }

    /// Each node's place relative to its pass's time loop: per-step inputs,
    /// targets and states are inside it, `StepSum`/`Last` after it (forward);
    /// in the backward pass, adjoints of after-loop values come first, the
    /// per-step adjoints inside, `StepSum` of them after.
    pub fn regions(&self) -> Vec<Region> {
        let mut r = vec![Region::Before; self.nodes.len()];
        for (id, node) in self.nodes.iter().enumerate() {
            r[id] = match &node.op {
                Op::Input(k) if self.inputs[*k].per_step => Region::Step,
                Op::Target(k) if self.targets[*k].per_step => Region::Step,
                Op::StatePrev(_) | Op::Carry(_) | Op::EachStep(_) | Op::AtLast(_) => Region::Step,
                Op::StepSum(_) | Op::Last(_) => Region::After,
                op => {
                    let args = op.args();
                    if args.iter().any(|&a| r[a] == Region::Step) {
                        Region::Step
                    } else if args
                        .iter()
                        .any(|&a| r[a] == Region::After && self.nodes[a].pass == node.pass)
                    {
                        Region::After
                    } else {
                        Region::Before
                    }
                }
            };
        }
        r
    }

    /// Rewrites every root (loss, output, gradients, state updates and
    /// adjoints) through `f`.
    pub fn map_roots(&mut self, f: impl Fn(NodeId) -> NodeId) {
        self.loss = f(self.loss);
        self.output = f(self.output);
        for g in self.grads.iter_mut().flatten() {
            *g = f(*g);
        }
        for s in &mut self.states {
            s.update = f(s.update);
            s.prev = f(s.prev);
        }
        for a in self.state_adjoints.iter_mut().flatten() {
            *a = f(*a);
        }
        for a in self.input_grads.iter_mut().flatten() {
            *a = f(*a);
        }
        for a in self.hvp.iter_mut().flatten() {
            *a = f(*a);
        }
    }

    /// Which nodes the given roots depend on (themselves included).
    pub fn live_from(&self, roots: &[NodeId]) -> Vec<bool> {
        let mut live = vec![false; self.nodes.len()];
        for &r in roots {
            live[r] = true;
        }
        for id in (0..self.nodes.len()).rev() {
            if live[id] {
                for a in self.nodes[id].op.args() {
                    live[a] = true;
                }
            }
        }
        live
    }

    /// For each node, how many live nodes use it (counting repeats), plus one
    /// for each root it is.
    pub fn use_counts(&self, live: &[bool]) -> Vec<usize> {
        let mut uses = vec![0; self.nodes.len()];
        for (id, node) in self.nodes.iter().enumerate() {
            if live[id] {
                for a in node.op.args() {
                    uses[a] += 1;
                }
            }
        }
        for r in self.roots() {
            uses[r] += 1;
        }
        uses
    }
}

impl Graph {
    /// The live graph in Graphviz DOT: forward nodes solid, backward nodes
    /// dashed, edges from operands to users, gradients into their parameters.
    pub fn to_dot(&self, title: &str) -> String {
        let live = self.live_from(&self.roots());
        let mut out = format!(
            "digraph {title} {{\n  rankdir=BT;\n  node [shape=box, fontname=\"monospace\"];\n"
        );
        for (id, node) in self.nodes.iter().enumerate() {
            if !live[id] {
                continue;
            }
            let what = match &node.op {
                Op::Map { body, .. } => format!("map {body}"),
                Op::Param(k) => format!("param {}", self.params[*k].name),
                op => op.name().to_string(),
            };
            let style = if node.pass == Pass::Backward {
                ", style=dashed"
            } else {
                ""
            };
            let label = format!("{} {}\\n{}", node.name, node.shape, what).replace('"', "'");
            out.push_str(&format!("  n{id} [label=\"{label}\"{style}];\n"));
            for a in node.op.args() {
                out.push_str(&format!("  n{a} -> n{id};\n"));
            }
        }
        for (k, g) in self.grads.iter().enumerate() {
            if let Some(g) = g {
                let p = self.nodes.iter().position(|n| n.op == Op::Param(k));
                if let Some(p) = p {
                    out.push_str(&format!("  n{g} -> n{p} [style=dotted, label=\"grad\"];\n"));
                }
            }
        }
        out.push_str("}\n");
        out
    }
}

/// The graph as s-expressions, one live node a line: `%3 h [4] = (map $0 + $1 : %1 %2)`.
impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let live = self.live_from(&self.roots());
        for (id, node) in self.nodes.iter().enumerate() {
            if !live[id] {
                continue;
            }
            let pass = if node.pass == Pass::Backward {
                "  "
            } else {
                ""
            };
            let args: Vec<String> = node.op.args().iter().map(|a| format!("%{a}")).collect();
            let detail = match &node.op {
                Op::Input(k) => format!("input {}", self.inputs[*k].name),
                Op::Target(k) => format!("target {}", self.targets[*k].name),
                Op::Param(k) => format!("param {}", self.params[*k].name),
                Op::Map { body, .. } => format!("map {body} : {}", args.join(" ")),
                Op::Slice(_, start) | Op::Pad(_, start) => {
                    format!("{} {} @{start}", node.op.name(), args.join(" "))
                }
                op => format!("{} {}", op.name(), args.join(" ")),
            };
            writeln!(f, "{pass}%{id} {} {} = ({detail})", node.name, node.shape)?;
        }
        writeln!(f, "loss %{} output %{}", self.loss, self.output)?;
        for (p, g) in self.params.iter().zip(&self.grads) {
            match g {
                Some(g) => writeln!(f, "grad {} = %{g}", p.name)?,
                None => writeln!(f, "grad {} = 0", p.name)?,
            }
        }
        Ok(())
    }
}
