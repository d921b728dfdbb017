//! Parsing: definition text -> syntax tree, with pest errors turned into diagnostics.

use crate::ast::*;
use crate::error::Diagnostic;
use crate::limits::{MAX_DEPTH, MAX_NESTING};
use pest::iterators::Pair;
use pest::Parser;

use crate::generated::{NetworkParser, Rule};

/// Parses a whole definition.
pub fn parse_definition(source: &str) -> Result<Definition, Diagnostic> {
    prescan(source)?;
    let mut pairs =
        NetworkParser::parse(Rule::definition, source).map_err(|e| syntax_error(source, e))?;
    let Some(definition) = pairs.next() else {
        return Ok(Definition { statements: vec![] });
    };
    let statements = definition
        .into_inner()
        .filter(|p| p.as_rule() != Rule::EOI)
        .map(statement)
        .collect::<Result<_, _>>()?;
    Ok(Definition { statements })
}

/// Checks what the grammar would report badly or only after recursing too
/// deep: a `/* comment` that is never closed, and brackets nested more than
/// [`MAX_NESTING`] levels.
fn prescan(source: &str) -> Result<(), Diagnostic> {
    let bytes = source.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = source[i..].find('\n').map_or(bytes.len(), |n| i + n);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => match source[i + 2..].find("*/") {
                Some(n) => i += 2 + n + 2,
                None => {
                    return Err(Diagnostic::new(
                        Span::new(i, i + 2),
                        "this `/*` comment is never closed",
                    )
                    .with_help("close it with `*/`"))
                }
            },
            b'(' | b'[' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(Diagnostic::new(
                        Span::new(i, i + 1),
                        format!("brackets nest more than {MAX_NESTING} levels deep here"),
                    )
                    .with_help(
                        "bind parts of the expression to names (`a = ...;`) and use the names",
                    ));
                }
                i += 1;
            }
            b')' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn span(pair: &Pair<Rule>) -> Span {
    let s = pair.as_span();
    Span::new(s.start(), s.end())
}

fn ident(pair: Pair<Rule>) -> Ident {
    Ident {
        name: pair.as_str().to_string(),
        span: span(&pair),
    }
}

fn statement(pair: Pair<Rule>) -> Result<Statement, Diagnostic> {
    let rule = pair.as_rule();
    let mut parts: Vec<Pair<Rule>> = pair
        .into_inner()
        .filter(|p| !is_keyword(p.as_rule()))
        .collect();
    // the optional parts, taken out by rule; what stays is positional
    let mut take = |r: Rule| {
        parts
            .iter()
            .position(|p| p.as_rule() == r)
            .map(|i| parts.remove(i))
    };
    let step = take(Rule::step_marker).map(step_marker);
    let shape_pair = take(Rule::shape);
    let class = take(Rule::class_shape);
    let init_pair = take(Rule::init);
    let mut rest = parts.into_iter();
    let mut next = || rest.next().expect("the grammar guarantees this part");
    Ok(match rule {
        Rule::dtype_decl => Statement::Dtype(ident(next())),
        Rule::steps_decl | Rule::truncate_decl => {
            let d = next();
            let sp = span(&d);
            let n: usize = d
                .as_str()
                .parse()
                .map_err(|_| Diagnostic::new(sp, "this count is too large"))?;
            if rule == Rule::steps_decl {
                Statement::Steps(n, sp)
            } else {
                Statement::Truncate(n, sp)
            }
        }
        Rule::input_decl => {
            let name = ident(next());
            let shape = optional_shape(shape_pair, &name)?;
            let class = class.map(class_kind).transpose()?;
            Statement::Input {
                name,
                step,
                shape,
                class,
            }
        }
        Rule::target_decl => {
            let name = ident(next());
            let kind = match class {
                Some(kind) => class_kind(kind)?,
                None => TargetKind::Tensor(optional_shape(shape_pair, &name)?),
            };
            Statement::Target { name, step, kind }
        }
        Rule::param_decl => {
            let name = ident(next());
            let shape = optional_shape(shape_pair, &name)?;
            let init = init_pair.map(init).transpose()?;
            Statement::Param { name, shape, init }
        }
        Rule::state_decl => {
            let name = ident(next());
            let shape = optional_shape(shape_pair, &name)?;
            let init = init_pair.map(init).transpose()?;
            Statement::State { name, shape, init }
        }
        Rule::output_decl => Statement::Output(ident(next())),
        Rule::const_decl => Statement::Const {
            name: ident(next()),
            value: expr(next())?.0,
        },
        Rule::fn_decl => {
            let name = ident(next());
            let mut rest: Vec<Pair<Rule>> = rest.collect();
            let body = expr(rest.pop().expect("grammar: a function has a body"))?.0;
            let params = rest.into_iter().map(ident).collect();
            Statement::Fn { name, params, body }
        }
        Rule::binding => Statement::Binding {
            name: ident(next()),
            step,
            value: expr(next())?.0,
        },
        other => unreachable!("not a statement: {other:?}"),
    })
}

/// `: class[10]` or `: class[10][8]`.
fn class_kind(kind: Pair<Rule>) -> Result<TargetKind, Diagnostic> {
    let mut inner = kind.into_inner();
    let dim = inner
        .clone()
        .find(|p| p.as_rule() == Rule::dim)
        .expect("grammar");
    let (classes, span) = dimension(dim)?;
    let count = match inner.find(|p| p.as_rule() == Rule::class_count) {
        Some(c) => {
            let dim = c
                .into_inner()
                .find(|p| p.as_rule() == Rule::dim)
                .expect("grammar");
            Some(dimension(dim)?)
        }
        None => None,
    };
    Ok(TargetKind::Class {
        classes,
        span,
        count,
    })
}

/// `[t]` in a declaration or on the left of a binding: the index's name.
fn step_marker(pair: Pair<Rule>) -> Ident {
    ident(
        pair.into_inner()
            .find(|p| p.as_rule() == Rule::ident)
            .expect("grammar: a step marker names its index"),
    )
}

/// Keywords and punctuation: needed by the grammar, not by the syntax tree.
fn is_keyword(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::kw_input
            | Rule::kw_target
            | Rule::kw_param
            | Rule::kw_output
            | Rule::kw_dtype
            | Rule::kw_class
            | Rule::kw_const
            | Rule::kw_fn
            | Rule::kw_state
            | Rule::kw_steps
            | Rule::kw_truncate
            | Rule::semi
            | Rule::lbracket
            | Rule::rbracket
            | Rule::comma
            | Rule::lparen
            | Rule::rparen
            | Rule::colon
            | Rule::equals
    )
}

fn dimension(pair: Pair<Rule>) -> Result<(usize, Span), Diagnostic> {
    let sp = span(&pair);
    let n: usize = pair
        .as_str()
        .parse()
        .map_err(|_| Diagnostic::new(sp, format!("dimension `{}` is too large", pair.as_str())))?;
    if n == 0 {
        return Err(Diagnostic::new(sp, "a dimension must be at least 1")
            .with_help("remove the tensor or give it a size"));
    }
    Ok((n, sp))
}

/// A declared shape, or the scalar shape `[]` when none is written.
fn optional_shape(pair: Option<Pair<Rule>>, name: &Ident) -> Result<Shape, Diagnostic> {
    match pair {
        Some(p) => shape(p),
        None => Ok(Shape {
            dims: vec![],
            span: name.span,
        }),
    }
}

fn shape(pair: Pair<Rule>) -> Result<Shape, Diagnostic> {
    let sp = span(&pair);
    let dims = pair
        .into_inner()
        .filter(|p| p.as_rule() == Rule::dim)
        .map(dimension)
        .collect::<Result<_, _>>()?;
    Ok(Shape { dims, span: sp })
}

fn init(pair: Pair<Rule>) -> Result<Init, Diagnostic> {
    let sp = span(&pair);
    let mut inner = pair.into_inner().filter(|p| !is_keyword(p.as_rule()));
    let name = ident(inner.next().expect("grammar"));
    let args = inner
        .map(|p| {
            let text: String = p.as_str().chars().filter(|c| !c.is_whitespace()).collect();
            number_value(&text, span(&p)).map(|v| (v, span(&p)))
        })
        .collect::<Result<_, _>>()?;
    Ok(Init {
        name,
        args,
        span: sp,
    })
}

fn number_value(text: &str, sp: Span) -> Result<f64, Diagnostic> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(Diagnostic::new(
            sp,
            format!("number `{text}` is out of range"),
        )),
    }
}

/// An operator waiting on the stack of [`expr`]'s shunting-yard builder.
enum Pending {
    /// Unary minus, written at this span.
    Neg(Span),
    /// A binary operator, written at this span.
    Infix(BinaryOp, Span),
}

impl Pending {
    fn precedence(&self) -> u8 {
        match self {
            Pending::Neg(_) => 4,
            Pending::Infix(op, _) => op.precedence(),
        }
    }
}

/// An operand on the builder's stack: the expression, its depth, and
/// whether an operator of this expression built it (only those extend into
/// a chain: `(a + b) + c` keeps its parentheses' grouping).
struct Operand {
    expr: Expr,
    depth: usize,
    built: bool,
}

/// Builds an expression from the grammar's flat sequence `prefix* primary
/// postfix* (infix prefix* primary postfix*)*` with an explicit operator
/// stack (shunting-yard), so that a long sequence never recurses. Runs of
/// left-associative operators of one precedence level become one flat
/// [`Expr::Chain`]. Returns the expression and its depth; a tree deeper than
/// [`MAX_DEPTH`] is an error at the tokens.
fn expr(pair: Pair<Rule>) -> Result<(Expr, usize), Diagnostic> {
    let mut operands: Vec<Operand> = vec![];
    let mut ops: Vec<Pending> = vec![];
    for part in pair.into_inner() {
        match part.as_rule() {
            Rule::neg => ops.push(Pending::Neg(span(&part))),
            Rule::slice | Rule::step_ref | Rule::neg_index => {
                let arg = operands
                    .pop()
                    .expect("grammar: a postfix follows an operand");
                let (e, depth) = postfix(arg.expr, arg.depth, part)?;
                operands.push(checked(e, depth, false)?);
            }
            Rule::number | Rule::ident | Rule::group | Rule::call => {
                let (e, depth) = primary(part)?;
                operands.push(checked(e, depth, false)?);
            }
            _ => {
                let op = binary_op(part.as_rule());
                let sp = span(&part);
                while let Some(top) = ops.last() {
                    let tighter = top.precedence() > op.precedence()
                        || (top.precedence() == op.precedence() && op.left_associative());
                    if !tighter {
                        break;
                    }
                    let top = ops.pop().expect("just looked");
                    reduce(&mut operands, top)?;
                }
                ops.push(Pending::Infix(op, sp));
            }
        }
    }
    while let Some(top) = ops.pop() {
        reduce(&mut operands, top)?;
    }
    let result = operands
        .pop()
        .expect("grammar: an expression has an operand");
    Ok((result.expr, result.depth))
}

/// An operand, unless it is deeper than the limit.
fn checked(expr: Expr, depth: usize, built: bool) -> Result<Operand, Diagnostic> {
    if depth > MAX_DEPTH {
        return Err(Diagnostic::new(
            expr.span(),
            format!("this expression nests more than {MAX_DEPTH} levels deep"),
        )
        .with_help("bind parts of it to names (`a = ...;`) and use the names"));
    }
    Ok(Operand { expr, depth, built })
}

/// Applies the operator `top` to the operands on the stack.
fn reduce(operands: &mut Vec<Operand>, top: Pending) -> Result<(), Diagnostic> {
    match top {
        Pending::Neg(sp) => {
            let arg = operands.pop().expect("grammar: `-` precedes an operand");
            let whole = sp.join(arg.expr.span());
            let e = Expr::Unary {
                op: UnaryOp::Neg,
                arg: Box::new(arg.expr),
                span: whole,
            };
            operands.push(checked(e, arg.depth + 1, true)?);
        }
        Pending::Infix(op, op_span) => {
            let rhs = operands
                .pop()
                .expect("grammar: an operator has a right operand");
            let lhs = operands
                .pop()
                .expect("grammar: an operator has a left operand");
            let whole = lhs.expr.span().join(rhs.expr.span());
            let same_level = |o: BinaryOp| {
                o.precedence() == op.precedence() && o.left_associative() && op.left_associative()
            };
            let (e, depth) = match lhs.expr {
                // `a op b` followed by `op c`: one flat chain
                Expr::Binary {
                    op: first_op,
                    op_span: first_span,
                    lhs: a,
                    rhs: b,
                    ..
                } if lhs.built && same_level(first_op) => (
                    Expr::Chain {
                        first: a,
                        rest: vec![(first_op, first_span, *b), (op, op_span, rhs.expr)],
                        span: whole,
                    },
                    lhs.depth.max(rhs.depth + 1),
                ),
                Expr::Chain {
                    first, mut rest, ..
                } if lhs.built && same_level(rest[0].0) => {
                    rest.push((op, op_span, rhs.expr));
                    (
                        Expr::Chain {
                            first,
                            rest,
                            span: whole,
                        },
                        lhs.depth.max(rhs.depth + 1),
                    )
                }
                other => (
                    Expr::Binary {
                        op,
                        op_span,
                        lhs: Box::new(other),
                        rhs: Box::new(rhs.expr),
                        span: whole,
                    },
                    lhs.depth.max(rhs.depth) + 1,
                ),
            };
            operands.push(checked(e, depth, true)?);
        }
    }
    Ok(())
}

fn binary_op(rule: Rule) -> BinaryOp {
    match rule {
        Rule::add => BinaryOp::Add,
        Rule::sub => BinaryOp::Sub,
        Rule::mul => BinaryOp::Mul,
        Rule::div => BinaryOp::Div,
        Rule::matmul => BinaryOp::MatMul,
        Rule::pow => BinaryOp::Pow,
        Rule::lt => BinaryOp::Lt,
        Rule::gt => BinaryOp::Gt,
        Rule::le => BinaryOp::Le,
        Rule::ge => BinaryOp::Ge,
        Rule::eq => BinaryOp::Eq,
        Rule::ne => BinaryOp::Ne,
        other => unreachable!("not an operator: {other:?}"),
    }
}

/// `arg[a:b]`, `arg[t-1]`, or a negative index (an error that says what to write).
fn postfix(arg: Expr, depth: usize, op: Pair<Rule>) -> Result<(Expr, usize), Diagnostic> {
    let sp = arg.span().join(span(&op));
    match op.as_rule() {
        Rule::neg_index => {
            let name = match &arg {
                Expr::Name(id) => id.name.clone(),
                _ => "x".to_string(),
            };
            Err(Diagnostic::new(
                span(&op),
                "negative indices are not supported",
            )
            .with_help(format!(
                "write `{name}[last]` for the value at the last time step, `{name}[t-1]` for a state's previous value, or a slice counted from the start, such as `{name}[0:3]`"
            )))
        }
        Rule::step_ref => {
            let mut index = None;
            let mut offset = 0i64;
            for part in op.into_inner() {
                match part.as_rule() {
                    Rule::ident => index = Some(ident(part)),
                    Rule::step_offset => {
                        let mut sign = 1i64;
                        for q in part.into_inner() {
                            match q.as_rule() {
                                Rule::sub => sign = -1,
                                Rule::dim => {
                                    let qs = span(&q);
                                    let v: i64 = q.as_str().parse().map_err(|_| {
                                        Diagnostic::new(qs, "this offset is too large")
                                    })?;
                                    offset = sign * v;
                                }
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            Ok((
                Expr::StepRef {
                    arg: Box::new(arg),
                    index: index.expect("grammar: a step reference names its index"),
                    offset,
                    span: sp,
                },
                depth + 1,
            ))
        }
        _ => {
            let mut start = None;
            let mut end = None;
            let mut after_colon = false;
            for part in op.into_inner() {
                match part.as_rule() {
                    Rule::colon => after_colon = true,
                    Rule::dim => {
                        let sp = span(&part);
                        let v = part.as_str().parse::<usize>().map_err(|_| {
                            Diagnostic::new(sp, format!("index `{}` is too large", part.as_str()))
                        })?;
                        if after_colon {
                            end = Some((v, sp));
                        } else {
                            start = Some((v, sp));
                        }
                    }
                    _ => {}
                }
            }
            Ok((
                Expr::Slice {
                    arg: Box::new(arg),
                    start,
                    end,
                    span: sp,
                },
                depth + 1,
            ))
        }
    }
}

/// An operand and its depth: a number, a name, `(expr)` or a call.
fn primary(pair: Pair<Rule>) -> Result<(Expr, usize), Diagnostic> {
    let sp = span(&pair);
    match pair.as_rule() {
        Rule::number => Ok((Expr::Number(number_value(pair.as_str(), sp)?, sp), 1)),
        Rule::ident => Ok((Expr::Name(ident(pair)), 1)),
        Rule::group => {
            let (inner, depth) = expr(
                pair.into_inner()
                    .find(|p| p.as_rule() == Rule::expr)
                    .expect("grammar"),
            )?;
            Ok((with_parens(inner, sp), depth))
        }
        Rule::call => {
            let mut inner = pair.into_inner().filter(|p| !is_keyword(p.as_rule()));
            let func = ident(inner.next().expect("grammar"));
            let (mut args, mut kwargs) = (vec![], vec![]);
            let mut depth = 0;
            for a in inner {
                if a.as_rule() == Rule::keyword_arg {
                    let kw_span = span(&a);
                    let mut parts = a.into_inner().filter(|p| !is_keyword(p.as_rule()));
                    let name = ident(parts.next().expect("grammar"));
                    let (value, d) = expr(parts.next().expect("grammar"))?;
                    depth = depth.max(d);
                    kwargs.push(KeywordArg {
                        name,
                        value,
                        span: kw_span,
                    });
                    continue;
                }
                let (e, d) = expr(a)?;
                depth = depth.max(d);
                // a flag (`causal`) may follow the keyword arguments
                let flag = matches!(e, Expr::Name(_));
                if let Some(kw) = kwargs.last().filter(|_| !flag) {
                    return Err(Diagnostic::new(
                        e.span(),
                        "a positional argument after a keyword argument",
                    )
                    .with_help(format!(
                        "write the positional arguments first, before `{} = ...`",
                        kw.name.name
                    )));
                }
                args.push(e);
            }
            Ok((
                Expr::Call {
                    func,
                    args,
                    kwargs,
                    span: sp,
                },
                depth + 1,
            ))
        }
        other => unreachable!("not an operand: {other:?}"),
    }
}

/// A parenthesised operation spans its parentheses, so carets under it are balanced.
fn with_parens(mut e: Expr, outer: Span) -> Expr {
    match &mut e {
        Expr::Unary { span, .. }
        | Expr::Binary { span, .. }
        | Expr::Chain { span, .. }
        | Expr::Slice { span, .. }
        | Expr::StepRef { span, .. }
        | Expr::Call { span, .. } => *span = outer,
        _ => {}
    }
    e
}

/// What a grammar rule is called in an error message.
fn describe(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::statement
        | Rule::dtype_decl
        | Rule::input_decl
        | Rule::target_decl
        | Rule::param_decl
        | Rule::output_decl
        | Rule::const_decl
        | Rule::fn_decl
        | Rule::steps_decl
        | Rule::truncate_decl
        | Rule::state_decl
        | Rule::binding => {
            "a statement (`input`, `target`, `param`, `state`, `output`, `dtype`, `steps`, `const`, `fn` or `name = expression;`)"
        }
        Rule::kw_input
        | Rule::kw_target
        | Rule::kw_param
        | Rule::kw_output
        | Rule::kw_dtype
        | Rule::kw_const
        | Rule::kw_fn
        | Rule::kw_state
        | Rule::kw_steps
        | Rule::kw_truncate => {
            "a statement"
        }
        Rule::kw_class => "`class`",
        Rule::class_shape => "`: class[N]`",
        Rule::class_count => "`[count]`",
        Rule::ident => "a name",
        Rule::shape => "a shape such as `[4]` or `[4, 2]`",
        Rule::dim => "a dimension (a positive integer)",
        Rule::init => "an initialiser",
        Rule::expr
        | Rule::primary
        | Rule::group
        | Rule::call
        | Rule::argument
        | Rule::keyword_arg
        | Rule::prefix
        | Rule::neg
        | Rule::neg_index => {
            "an expression"
        }
        Rule::number | Rule::signed_number => "a number",
        Rule::infix
        | Rule::add
        | Rule::sub
        | Rule::mul
        | Rule::div
        | Rule::matmul
        | Rule::pow
        | Rule::lt
        | Rule::gt
        | Rule::le
        | Rule::ge
        | Rule::eq
        | Rule::ne => {
            "an operator"
        }
        Rule::EOI => "the end of the definition",
        Rule::semi => "`;`",
        Rule::lbracket => "`[`",
        Rule::rbracket => "`]`",
        Rule::comma => "`,`",
        Rule::lparen => "`(`",
        Rule::rparen => "`)`",
        Rule::colon => "`:`",
        Rule::equals => "`=`",
        _ => return None,
    })
}

/// Turns a pest error into a diagnostic that highlights the offending token
/// and says what was expected there.
fn syntax_error(source: &str, e: pest::error::Error<Rule>) -> Diagnostic {
    let pos = match e.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    };
    let end = token_end(source, pos);
    let found = &source[pos..end];
    let expected = match &e.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } => {
            let mut names: Vec<&str> = positives.iter().filter_map(|&r| describe(r)).collect();
            names.dedup();
            // after an operand a slice `x[1:3]` may follow too, but listing `[`
            // beside the operators only distracts
            if names.contains(&"an operator") {
                names.retain(|n| *n != "`[`");
            }
            let mut seen = Vec::new();
            names.retain(|n| {
                let new = !seen.contains(n);
                seen.push(*n);
                new
            });
            // after an operand, `[` would start a slice: not worth suggesting
            if names.contains(&"an operator") {
                names.retain(|n| *n != "`[`");
            }
            match names.len() {
                0 => "something else".to_string(),
                1 => names[0].to_string(),
                _ => {
                    let (last, rest) = names.split_last().expect("non-empty");
                    format!("{} or {}", rest.join(", "), last)
                }
            }
        }
        pest::error::ErrorVariant::CustomError { message } => message.clone(),
    };
    let message = if found.is_empty() {
        format!("expected {expected}, found the end of the definition")
    } else {
        format!("expected {expected}, found `{found}`")
    };
    let mut d = Diagnostic::new(Span::new(pos, end.max(pos)), message);
    if found.is_empty() && expected.contains("an operator") {
        d = d.with_help("every statement ends with `;`");
    }
    let after = source[end..].trim_start();
    let starts_statement = (after.starts_with('=') && !after.starts_with("=="))
        || KEYWORDS.contains(&found)
        || found == "loss";
    if !found.is_empty() && expected.contains("`;`") && starts_statement {
        d = d.with_help(format!(
            "add `;` at the end of the statement before `{found}`"
        ));
        // on another line (a file): point where the `;` belongs, as rustc does
        if let Some(prev) = end_of_previous_line(source, pos) {
            let last = source[..prev].char_indices().last().map_or(0, |(i, _)| i);
            d.span = Span::new(last, prev);
            d.help = Some("add `;` here, at the end of the statement".into());
        }
    }
    if found == "\"" {
        d = d.with_help("a definition has no strings; to read one from a file, write `#[network(file = \"nets/net.nn\")]`");
    } else if expected.contains("an operator")
        && found.chars().all(|c| c.is_ascii_punctuation())
        && !found.is_empty()
        && !"()[],;=".contains(found)
    {
        d = d.with_help(
            "the operators are `+`, `-`, `*`, `/`, `@` (matrix product), `^` and the comparisons `<`, `>`, `<=`, `>=`, `==`, `!=`",
        );
    }
    // `h = f(g(x);` or a missing `)` before the next statement: point at the open `(`
    if expected.contains("`)`") && (found == ";" || found.is_empty() || starts_statement) {
        if let Some(open) = unclosed_paren(&source[..pos]) {
            let fix = if found == ";" {
                "add `)` before the `;`"
            } else {
                "close it with `)` and end the statement with `;`"
            };
            d = Diagnostic::new(Span::new(open, open + 1), "this `(` is never closed")
                .with_help(fix);
        }
    }
    // `param = ...;`: a keyword where a name should be
    let before = source[..pos].trim_end();
    let word_start = before
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let word = &before[word_start..];
    if expected.starts_with("a name") && KEYWORDS.contains(&word) && found == "=" {
        d = Diagnostic::new(
            Span::new(word_start, word_start + word.len()),
            format!("`{word}` is a keyword and cannot name a binding"),
        )
        .with_help("choose another name; statement keywords cannot be names");
    }
    if found.is_empty() || expected.starts_with("`;`") {
        // the caret lands on the last character when the text ended early
        if pos == source.len() && pos > 0 {
            let prev = source[..pos].trim_end().len();
            d.span = Span::new(prev.saturating_sub(1), prev);
        }
    }
    d
}

/// The end of the code before `pos` when it is on an earlier line, skipping
/// blank lines and `//` comments (that is where a missing `;` belongs).
fn end_of_previous_line(source: &str, pos: usize) -> Option<usize> {
    let mut before = &source[..pos];
    let line_start = before.rfind('\n')? + 1;
    if !before[line_start..].trim().is_empty() {
        return None;
    }
    loop {
        before = before.trim_end();
        let start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = &before[start..];
        let code = match line.find("//") {
            Some(i) => line[..i].trim_end(),
            None => line,
        };
        if !code.is_empty() {
            return Some(start + code.len());
        }
        if start == 0 {
            return None;
        }
        before = &before[..start];
    }
}

/// The last `(` of the current statement in `before` that no `)` closes.
fn unclosed_paren(before: &str) -> Option<usize> {
    let start = before.rfind(';').map_or(0, |i| i + 1);
    let mut depth = 0usize;
    for (i, c) in before[start..].char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' if depth == 0 => return Some(start + i),
            '(' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Statement keywords, which cannot be names.
const KEYWORDS: &[&str] = &["input", "target", "param", "output", "dtype", "const", "fn"];

/// The end of the token starting at `pos`: a name or number, or one character.
fn token_end(source: &str, pos: usize) -> usize {
    let rest = &source[pos.min(source.len())..];
    let word = rest
        .char_indices()
        .take_while(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == '.')
        .last()
        .map(|(i, c)| i + c.len_utf8());
    match word {
        Some(n) => pos + n,
        None => pos + rest.chars().next().map_or(0, char::len_utf8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_xor_network() {
        let d = parse_definition(
            "input x[2]; target y[1]; // comment\n param w[4, 2] = uniform(-0.5, 0.5);\n h = sigmoid(w @ x + 1e-3); out = sigmoid(dense(h, 1)); loss = mse(out, y);",
        )
        .unwrap();
        assert_eq!(d.statements.len(), 6);
        match &d.statements[2] {
            Statement::Param { name, shape, init } => {
                assert_eq!(name.name, "w");
                assert_eq!(
                    shape.dims.iter().map(|d| d.0).collect::<Vec<_>>(),
                    vec![4, 2]
                );
                assert_eq!(
                    init.as_ref()
                        .unwrap()
                        .args
                        .iter()
                        .map(|a| a.0)
                        .collect::<Vec<_>>(),
                    vec![-0.5, 0.5]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn functions_constants_comparisons_and_slices() {
        let d = parse_definition(
            "const alpha = 0.01; fn swish(z) = z * sigmoid(z); fn two(a, b) = a; m = x [ 1 : 3 ] < = y [ : 2 ] ; n = a == b;",
        )
        .unwrap();
        let Statement::Const { name, .. } = &d.statements[0] else {
            panic!()
        };
        assert_eq!(name.name, "alpha");
        let Statement::Fn { params, .. } = &d.statements[2] else {
            panic!()
        };
        assert_eq!(params.len(), 2);
        let Statement::Binding { value, .. } = &d.statements[3] else {
            panic!()
        };
        let Expr::Binary {
            op: BinaryOp::Le,
            lhs,
            rhs,
            ..
        } = value
        else {
            panic!("{value:?}")
        };
        assert!(matches!(
            **lhs,
            Expr::Slice {
                start: Some((1, _)),
                end: Some((3, _)),
                ..
            }
        ));
        assert!(matches!(
            **rhs,
            Expr::Slice {
                start: None,
                end: Some((2, _)),
                ..
            }
        ));
        let Statement::Binding { value, .. } = &d.statements[4] else {
            panic!()
        };
        assert!(matches!(
            value,
            Expr::Binary {
                op: BinaryOp::Eq,
                ..
            }
        ));
    }

    #[test]
    fn recurrent_definitions() {
        let d = parse_definition(
            "steps 16; truncate 4; input x[t][8]; target y [ t ] [ 1 ] ; state h[32] = zeros; param wh[32, 32]; \
             h[t] = tanh(wh @ h[t-1] + dense(x[t], 32)); out[t] = dense(h[t], 1); loss = mean_steps(mse(out[t], y[t])) + sum(h[last]);",
        )
        .unwrap();
        assert!(matches!(d.statements[0], Statement::Steps(16, _)));
        assert!(matches!(d.statements[1], Statement::Truncate(4, _)));
        let Statement::Input {
            step: Some(t),
            shape,
            ..
        } = &d.statements[2]
        else {
            panic!("{:?}", d.statements[2])
        };
        assert_eq!((t.name.as_str(), shape.dims.len()), ("t", 1));
        assert!(matches!(
            &d.statements[3],
            Statement::Target { step: Some(_), .. }
        ));
        assert!(matches!(
            &d.statements[4],
            Statement::State { init: Some(_), .. }
        ));
        let Statement::Binding {
            step: Some(_),
            value,
            ..
        } = &d.statements[6]
        else {
            panic!()
        };
        let text = format!("{value:?}");
        assert!(text.contains("offset: -1"), "{text}");
    }

    #[test]
    fn precedence_is_mathematical() {
        let d = parse_definition("a = -x ^ 2 + (w @ x) * 3;").unwrap();
        let Statement::Binding { value, .. } = &d.statements[0] else {
            panic!()
        };
        // (-(x ^ 2)) + ((w @ x) * 3)
        let Expr::Binary {
            op: BinaryOp::Add,
            lhs,
            rhs,
            ..
        } = value
        else {
            panic!("{value:?}")
        };
        assert!(matches!(**lhs, Expr::Unary { .. }));
        assert!(matches!(
            **rhs,
            Expr::Binary {
                op: BinaryOp::Mul,
                ..
            }
        ));
    }

    #[test]
    fn class_targets_and_inline_token_spacing() {
        let d =
            parse_definition("target label : class [ 10 ] ; param b [ 3 ] = constant ( - 0.5 ) ;")
                .unwrap();
        assert!(matches!(
            d.statements[0],
            Statement::Target {
                kind: TargetKind::Class { classes: 10, .. },
                ..
            }
        ));
        let Statement::Param {
            init: Some(init), ..
        } = &d.statements[1]
        else {
            panic!()
        };
        assert_eq!(init.args[0].0, -0.5);
    }

    #[test]
    fn syntax_errors_point_at_the_token() {
        let src = "input x[2] h = x;";
        let e = parse_definition(src).unwrap_err();
        assert_eq!(&src[e.span.start..e.span.end], "h");
        assert!(e.message.contains("expected"), "{}", e.message);
        // a missing `;` at the end of a line: the caret goes where it belongs
        let src = "input x[2]\nh = x;";
        let e = parse_definition(src).unwrap_err();
        assert_eq!(&src[e.span.start..e.span.end], "]");
        let e = parse_definition("input x[0];").unwrap_err();
        assert!(e.message.contains("at least 1"));
        let e = parse_definition("h = (x + ;").unwrap_err();
        assert!(
            e.message.contains("expected an expression"),
            "{}",
            e.message
        );
        let src = "h = sigmoid(dense(x, 4)\nout = h;";
        let e = parse_definition(src).unwrap_err();
        assert_eq!(e.span.start, src.find('(').unwrap(), "{e:?}");
        assert!(e.message.contains("never closed"), "{}", e.message);
        let src = "input x[2]\n// a comment\n\nh = x;";
        let e = parse_definition(src).unwrap_err();
        assert_eq!(&src[e.span.start..e.span.end], "]", "{e:?}");
        let e = parse_definition("param = x;").unwrap_err();
        assert_eq!((e.span.start, e.span.end), (0, 5));
        assert!(e.message.contains("keyword"), "{}", e.message);
    }

    fn value_of(d: &Definition, k: usize) -> &Expr {
        match &d.statements[k] {
            Statement::Binding { value, .. } => value,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn long_sums_stay_flat() {
        let text = format!("s = {};", vec!["x"; 100_000].join(" + "));
        let d = parse_definition(&text).unwrap();
        let Expr::Chain { rest, span, .. } = value_of(&d, 0) else {
            panic!()
        };
        assert_eq!(rest.len(), 99_999);
        assert_eq!(*span, Span::new(4, text.len() - 1));
    }

    #[test]
    fn chains_keep_precedence_and_grouping() {
        let d = parse_definition(
            "a = x + y * z - w; b = (x + y) + z; c = x ^ y ^ z; e = x - y - z < 1;",
        )
        .unwrap();
        // x + (y * z) - w: one chain of two operators, the product inside
        let Expr::Chain { first, rest, .. } = value_of(&d, 0) else {
            panic!("{:?}", value_of(&d, 0))
        };
        assert!(matches!(**first, Expr::Name(_)));
        let ops: Vec<BinaryOp> = rest.iter().map(|r| r.0).collect();
        assert_eq!(ops, [BinaryOp::Add, BinaryOp::Sub]);
        assert!(matches!(
            rest[0].2,
            Expr::Binary {
                op: BinaryOp::Mul,
                ..
            }
        ));
        // parentheses keep their grouping
        let Expr::Binary { lhs, .. } = value_of(&d, 1) else {
            panic!()
        };
        assert!(matches!(
            **lhs,
            Expr::Binary {
                op: BinaryOp::Add,
                ..
            }
        ));
        // `^` is right-associative: x ^ (y ^ z)
        let Expr::Binary {
            op: BinaryOp::Pow,
            lhs,
            rhs,
            ..
        } = value_of(&d, 2)
        else {
            panic!()
        };
        assert!(matches!(**lhs, Expr::Name(_)));
        assert!(matches!(
            **rhs,
            Expr::Binary {
                op: BinaryOp::Pow,
                ..
            }
        ));
        // (x - y - z) < 1
        let Expr::Binary {
            op: BinaryOp::Lt,
            lhs,
            ..
        } = value_of(&d, 3)
        else {
            panic!()
        };
        assert!(matches!(**lhs, Expr::Chain { .. }));
    }

    #[test]
    fn nesting_beyond_the_limit_is_an_error_at_the_bracket() {
        let ok = format!(
            "a = {}x{};",
            "(".repeat(MAX_NESTING),
            ")".repeat(MAX_NESTING)
        );
        parse_definition(&ok).unwrap();
        let deep = format!("a = {}x{};", "(".repeat(5000), ")".repeat(5000));
        let e = parse_definition(&deep).unwrap_err();
        assert!(e.message.contains("nest more than 64"), "{}", e.message);
        assert_eq!(e.span, Span::new(4 + MAX_NESTING, 5 + MAX_NESTING));
        let calls = format!("a = {}x{};", "sigmoid(".repeat(100), ")".repeat(100));
        assert!(parse_definition(&calls)
            .unwrap_err()
            .message
            .contains("nest more than"));
    }

    #[test]
    fn deep_trees_without_brackets_are_an_error() {
        for text in [
            format!("a = {}x;", "- ".repeat(10_000)),
            format!("a = x{};", " ^ 2".repeat(10_000)),
            format!("a = x{};", "[0:1]".repeat(10_000)),
        ] {
            let e = parse_definition(&text).unwrap_err();
            assert!(e.message.contains("more than 128 levels"), "{}", e.message);
        }
        parse_definition(&format!("a = {}x;", "- ".repeat(MAX_DEPTH - 1))).unwrap();
    }

    #[test]
    fn comments_byte_order_marks_and_negative_indices() {
        let d = parse_definition("\u{feff}input x[2]; // a file saved with a BOM").unwrap();
        assert_eq!(d.statements.len(), 1);
        let src = "input x[2]; /* never closed\n h = x;";
        let e = parse_definition(src).unwrap_err();
        assert_eq!(&src[e.span.start..e.span.end], "/*");
        assert!(e.message.contains("never closed"), "{}", e.message);
        for src in ["o = h[-1];", "o = h[:-1];", "o = h[-2:];"] {
            let e = parse_definition(src).unwrap_err();
            assert_eq!(e.message, "negative indices are not supported");
            assert!(src[e.span.start..e.span.end].starts_with('['), "{e:?}");
            assert!(e.help.unwrap().contains("`h[last]`"));
        }
    }
}
