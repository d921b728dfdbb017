//! The syntax tree of a definition, every node carrying its byte span in the source text.

/// A byte range `start..end` in the definition's source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The span `start..end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn join(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// A name as written, with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    /// The name.
    pub name: String,
    /// Where it is.
    pub span: Span,
}

/// A whole definition: its statements in source order.
#[derive(Clone, Debug, PartialEq)]
pub struct Definition {
    /// The statements, in order.
    pub statements: Vec<Statement>,
}

/// One statement of a definition.
#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    /// `dtype f64;`
    Dtype(Ident),
    /// `steps 16;`
    Steps(usize, Span),
    /// `truncate 8;`
    Truncate(usize, Span),
    /// `input x[64];` or `input x[t][8];`
    Input {
        /// Name of the input.
        name: Ident,
        /// `Some(t)` for one value per time step.
        step: Option<Ident>,
        /// Its shape (at one step); `[]` for a class index.
        shape: Shape,
        /// `input tok: class[1000];`: a class index, and what it declares
        /// (a [`TargetKind::Class`]).
        class: Option<TargetKind>,
    },
    /// `target y[1];`, `target label: class[10];` or `target y[t][1];`
    Target {
        /// Name of the target.
        name: Ident,
        /// `Some(t)` for one value per time step.
        step: Option<Ident>,
        /// What it holds.
        kind: TargetKind,
    },
    /// `state h[32] = zeros;`
    State {
        /// Name of the state.
        name: Ident,
        /// Its shape.
        shape: Shape,
        /// Its initial value (`zeros`, `constant(c)` or a parameter's name).
        init: Option<Init>,
    },
    /// `param w[4, 2] = xavier;`
    Param {
        /// Name of the parameter.
        name: Ident,
        /// Its shape.
        shape: Shape,
        /// Its initialiser, if given (zeros otherwise).
        init: Option<Init>,
    },
    /// `output out;`
    Output(Ident),
    /// `const alpha = 0.01;`
    Const {
        /// The constant's name.
        name: Ident,
        /// Its value: a constant expression.
        value: Expr,
    },
    /// `fn swish(z) = z * sigmoid(z);`
    Fn {
        /// The function's name.
        name: Ident,
        /// Its parameters.
        params: Vec<Ident>,
        /// Its body.
        body: Expr,
    },
    /// `h = expression;` or, in a recurrent definition, `h[t] = expression;`
    Binding {
        /// The bound name.
        name: Ident,
        /// `Some(t)` for a value computed at every time step.
        step: Option<Ident>,
        /// The value.
        value: Expr,
    },
}

/// What a target holds.
#[derive(Clone, Debug, PartialEq)]
pub enum TargetKind {
    /// Real values of a shape.
    Tensor(Shape),
    /// A class index in `0..classes`, or a vector of `count` of them.
    Class {
        /// Number of classes.
        classes: usize,
        /// Where the count is written.
        span: Span,
        /// `class[10][8]`: the vector's length, and where it is written.
        count: Option<(usize, Span)>,
    },
}

/// A static shape such as `[4, 2]`, rows first.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// Each dimension with its span.
    pub dims: Vec<(usize, Span)>,
    /// The whole `[...]`.
    pub span: Span,
}

/// An initialiser such as `uniform(-0.1, 0.1)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Init {
    /// Its name.
    pub name: Ident,
    /// Its numeric arguments with their spans.
    pub args: Vec<(f64, Span)>,
    /// The whole initialiser.
    pub span: Span,
}

/// A unary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    /// `-a`
    Neg,
}

/// A binary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
    /// `a @ b`
    MatMul,
    /// `a ^ b`
    Pow,
    /// `a < b`
    Lt,
    /// `a > b`
    Gt,
    /// `a <= b`
    Le,
    /// `a >= b`
    Ge,
    /// `a == b`
    Eq,
    /// `a != b`
    Ne,
}

impl BinaryOp {
    /// How tightly the operator binds (higher binds tighter): comparisons 1,
    /// `+ -` 2, `* / @` 3, `^` 5 (unary minus is 4).
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Lt
            | BinaryOp::Gt
            | BinaryOp::Le
            | BinaryOp::Ge
            | BinaryOp::Eq
            | BinaryOp::Ne => 1,
            BinaryOp::Add | BinaryOp::Sub => 2,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::MatMul => 3,
            BinaryOp::Pow => 5,
        }
    }

    /// Whether `a op b op c` means `(a op b) op c` (all but `^`).
    pub fn left_associative(self) -> bool {
        self != BinaryOp::Pow
    }

    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::MatMul => "@",
            BinaryOp::Pow => "^",
            BinaryOp::Lt => "<",
            BinaryOp::Gt => ">",
            BinaryOp::Le => "<=",
            BinaryOp::Ge => ">=",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
        }
    }
}

/// An expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A numeric literal.
    Number(f64, Span),
    /// A name.
    Name(Ident),
    /// `op arg`
    Unary {
        /// The operator.
        op: UnaryOp,
        /// The operand.
        arg: Box<Expr>,
        /// The whole expression.
        span: Span,
    },
    /// `lhs op rhs`
    Binary {
        /// The operator.
        op: BinaryOp,
        /// Where the operator is written.
        op_span: Span,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
        /// The whole expression.
        span: Span,
    },
    /// `a op b op c ...`: three or more operands joined by left-associative
    /// operators of one precedence level (`+ -`, `* / @` or the comparisons),
    /// applied left to right. Kept flat, so that a sum of many terms does not
    /// nest (`a + b` alone is a [`Expr::Binary`]).
    Chain {
        /// The first operand.
        first: Box<Expr>,
        /// Each further operator, where it is written, and its right operand, in order.
        rest: Vec<(BinaryOp, Span, Expr)>,
        /// The whole expression.
        span: Span,
    },
    /// `arg[start:end]`: a slice of a vector.
    Slice {
        /// The sliced vector.
        arg: Box<Expr>,
        /// First index, if written.
        start: Option<(usize, Span)>,
        /// One past the last index, if written.
        end: Option<(usize, Span)>,
        /// The whole expression.
        span: Span,
    },
    /// `x[t]`, `h[t-1]`, `out[last]`: a value at a time step.
    StepRef {
        /// The sequence.
        arg: Box<Expr>,
        /// The index name (`t` or `last`).
        index: Ident,
        /// The offset: `-1` in `h[t-1]`.
        offset: i64,
        /// The whole expression.
        span: Span,
    },
    /// `func(args..., name = value, ...)`
    Call {
        /// The function's name.
        func: Ident,
        /// The positional arguments.
        args: Vec<Expr>,
        /// The keyword arguments (`stride = 2`), in order, after the positional ones.
        kwargs: Vec<KeywordArg>,
        /// The whole call.
        span: Span,
    },
}

/// `name = value` in a call's arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct KeywordArg {
    /// The argument's name.
    pub name: Ident,
    /// Its value.
    pub value: Expr,
    /// The whole `name = value`.
    pub span: Span,
}

impl Expr {
    /// Where the whole expression is written.
    pub fn span(&self) -> Span {
        match self {
            Expr::Number(_, span) => *span,
            Expr::Name(ident) => ident.span,
            Expr::Unary { span, .. }
            | Expr::Binary { span, .. }
            | Expr::Chain { span, .. }
            | Expr::Slice { span, .. }
            | Expr::StepRef { span, .. }
            | Expr::Call { span, .. } => *span,
        }
    }
}
