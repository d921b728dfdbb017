//! A grammar-aware generator of definitions, and the fuzzing that feeds its
//! output (and mutations of it) through the whole pipeline: the macro must
//! answer every definition with errors or with code that parses as Rust,
//! never a panic. The definitions it accepts are compiled too: a sample of
//! them in the long run (`fuzz_long`, documented in the README), and a
//! corpus written from it (`tests/tests/corpus.rs`) on every CI run.
//!
//! The generator tracks shapes, so most of its definitions are valid and
//! reach the back end; the mutations (tokens dropped, repeated, swapped or
//! replaced by others, numbers made extreme) exercise the errors.

use crate::expand::network;
use proc_macro2::TokenStream;
use quote::quote;

/// The tests' seeded generator (xorshift64*), so every case reproduces
/// from its seed.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() >> 33) as usize % n.max(1)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// `true` with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A value of the definition being generated: its name and shape
/// (`[]` scalar, `[n]` vector, `[r, c]` matrix).
#[derive(Clone)]
struct Val {
    name: String,
    dims: Vec<usize>,
}

/// Builds one random definition, tracking the shapes of what it defines.
pub struct Gen {
    rng: Rng,
    /// Tensors an expression may read (inputs, parameters, bindings).
    vals: Vec<Val>,
    /// User functions with their arity.
    fns: Vec<(String, usize)>,
    /// Per-step definitions read `x[t]`: the sequences and states.
    seqs: Vec<Val>,
    states: Vec<Val>,
    /// Parameter matrices an expression introduced (`w @ x`), declared first.
    pending_params: Vec<String>,
    counter: usize,
}

const UNARY: &[&str] = &[
    "sigmoid",
    "tanh",
    "relu",
    "exp",
    "softplus",
    "abs",
    "square",
    "gelu",
    "gelu_exact",
    "silu",
    "softsign",
    "elu",
    "leaky_relu",
    "log1p",
    "expm1",
    "hardtanh",
    "hard_sigmoid",
    "mish",
];

const INITS: &[&str] = &[
    "zeros",
    "xavier",
    "he",
    "uniform(-0.5, 0.5)",
    "normal(0, 0.1)",
    "constant(0.1)",
    "he_uniform",
    "xavier_normal",
];

impl Gen {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Gen {
            rng: Rng(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            vals: vec![],
            fns: vec![],
            seqs: vec![],
            states: vec![],
            pending_params: vec![],
            counter: 0,
        }
    }

    fn fresh(&mut self, base: &str) -> String {
        self.counter += 1;
        format!("{base}{}", self.counter)
    }

    fn small(&mut self) -> usize {
        1 + self.rng.below(5)
    }

    fn shape_text(dims: &[usize]) -> String {
        if dims.is_empty() {
            String::new()
        } else {
            let d: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            format!("[{}]", d.join(", "))
        }
    }

    fn number(&mut self) -> String {
        match self.rng.below(12) {
            0 => "0".into(),
            1 => "1".into(),
            2 => "2".into(),
            3 => "0.5".into(),
            4 => "1e-3".into(),
            5 => "3".into(),
            6 => "0.1".into(),
            7 => "10".into(),
            8 => format!("{}", self.rng.below(100)),
            9 => format!("{}.{}", self.rng.below(10), self.rng.below(100)),
            10 => "1e30".into(),
            _ => "2.5".into(),
        }
    }

    /// A name of shape `dims`, if one exists.
    fn name_of(&mut self, dims: &[usize]) -> Option<String> {
        let fitting: Vec<String> = self
            .vals
            .iter()
            .filter(|v| v.dims == dims)
            .map(|v| v.name.clone())
            .collect();
        (!fitting.is_empty()).then(|| self.rng.pick(&fitting).clone())
    }

    /// Any vector in scope, as `(expression, length)`.
    fn any_vector(&mut self, depth: usize) -> (String, usize) {
        let vectors: Vec<Val> = self
            .vals
            .iter()
            .filter(|v| v.dims.len() == 1)
            .cloned()
            .collect();
        if vectors.is_empty() || self.rng.one_in(4) {
            let n = self.small();
            return (self.expr(&[n], depth + 1), n);
        }
        let v = self.rng.pick(&vectors).clone();
        (v.name, v.dims[0])
    }

    /// An expression of shape `dims`.
    fn expr(&mut self, dims: &[usize], depth: usize) -> String {
        let dims = dims.to_vec();
        if depth > 3 || self.rng.one_in(6) {
            if let Some(n) = self.name_of(&dims) {
                return n;
            }
            if dims.is_empty() {
                return self.number();
            }
            if depth > 3 {
                // nothing of this shape yet: a new parameter
                let p = self.fresh("p");
                let init = self.rng.pick(INITS).to_string();
                self.pending_params
                    .push(format!("param {p}{} = {init};", Self::shape_text(&dims)));
                self.vals.push(Val {
                    name: p.clone(),
                    dims,
                });
                return p;
            }
        }
        let d = depth + 1;
        match self.rng.below(14) {
            0 | 1 => {
                let f = *self.rng.pick(UNARY);
                format!("{f}({})", self.expr(&dims, d))
            }
            2 | 3 => {
                let op = *self.rng.pick(&["+", "-", "*", "/"]);
                let (a, b) = (self.expr(&dims, d), self.expr(&dims, d));
                format!("({a} {op} {b})")
            }
            4 => {
                // broadcasting a scalar
                let op = *self.rng.pick(&["+", "*", "-"]);
                format!("({} {op} {})", self.expr(&dims, d), self.expr(&[], d))
            }
            5 if dims.len() == 1 => {
                let (x, _) = self.any_vector(d);
                let init = if self.rng.one_in(3) {
                    format!(", {}", self.rng.pick(INITS))
                } else {
                    String::new()
                };
                format!("dense({x}, {}{init})", dims[0])
            }
            6 if dims.is_empty() => {
                let f = *self.rng.pick(&["sum", "mean", "norm", "logsumexp"]);
                let (x, _) = self.any_vector(d);
                format!("{f}({x})")
            }
            7 if dims.len() == 1 && dims[0] > 1 => {
                let f = *self.rng.pick(&["softmax", "log_softmax", "layer_norm"]);
                format!("{f}({})", self.expr(&dims, d))
            }
            8 if dims.len() == 1 && dims[0] >= 2 => {
                let k = 1 + self.rng.below(dims[0] - 1);
                format!(
                    "concat({}, {})",
                    self.expr(&[k], d),
                    self.expr(&[dims[0] - k], d)
                )
            }
            9 if dims.len() == 1 => {
                let (x, n) = self.any_vector(d);
                if n >= dims[0] {
                    let a = self.rng.below(n - dims[0] + 1);
                    format!("{x}[{a}:{}]", a + dims[0])
                } else {
                    self.expr(&dims, d)
                }
            }
            10 => {
                let f = *self.rng.pick(&["min", "max", "where", "clamp"]);
                let (a, b) = (self.expr(&dims, d), self.expr(&dims, d));
                match f {
                    "where" => format!("where({a} > {b}, {a}, {})", self.expr(&dims, d)),
                    "clamp" => format!("clamp({a}, -1, 1)"),
                    _ => format!("{f}({a}, {b})"),
                }
            }
            11 if !self.fns.is_empty() => {
                let (f, arity) = self.rng.pick(&self.fns).clone();
                let args: Vec<String> = (0..arity).map(|_| self.expr(&dims, d)).collect();
                format!("{f}({})", args.join(", "))
            }
            12 if dims.is_empty() => {
                let (x, n) = self.any_vector(d);
                let y = self.expr(&[n], d);
                format!("dot({x}, {y})")
            }
            13 if dims.len() == 1 => {
                // a parameter matrix times a vector
                let (x, n) = self.any_vector(d);
                let m = dims[0];
                let w = self.fresh("w");
                self.pending_params
                    .push(format!("param {w}[{m}, {n}] = {};", self.rng.pick(INITS)));
                format!("({w} @ {x})")
            }
            _ => match self.name_of(&dims) {
                Some(n) if !self.rng.one_in(3) => n,
                _ if dims.is_empty() => self.number(),
                _ => {
                    let f = *self.rng.pick(UNARY);
                    let (x, _) = self.any_vector(d);
                    format!("{f}(dense({x}, {}))", dims[0])
                }
            },
        }
    }

    /// A step expression of a recurrent definition, of shape `[n]`.
    fn step_expr(&mut self, n: usize) -> String {
        let mut terms = vec![];
        for s in self.states.clone() {
            if self.rng.one_in(2) {
                terms.push(format!("dense({}[t-1], {n})", s.name));
            }
        }
        for s in self.seqs.clone() {
            if self.rng.one_in(2) || terms.is_empty() {
                terms.push(format!("dense({}[t], {n})", s.name));
            }
        }
        let f = *self.rng.pick(&["tanh", "sigmoid", "relu", "softsign"]);
        format!("{f}({})", terms.join(" + "))
    }

    /// One whole definition.
    pub fn definition(&mut self) -> String {
        self.pending_params.clear();
        let mut lines = vec![];
        if self.rng.one_in(3) {
            lines.push("dtype f64;".to_string());
        }
        if self.rng.one_in(5) {
            return self.recurrent(lines);
        }
        for _ in 0..1 + self.rng.below(2) {
            let name = self.fresh("x");
            let dims = match self.rng.below(8) {
                0 => vec![],
                1 => vec![self.small(), self.small()],
                _ => vec![self.small() + 1],
            };
            lines.push(format!("input {name}{};", Self::shape_text(&dims)));
            self.vals.push(Val { name, dims });
        }
        if self.rng.one_in(3) {
            let c = self.fresh("k");
            lines.push(format!("const {c} = {};", self.number()));
        }
        for _ in 0..self.rng.below(3) {
            let name = self.fresh("p");
            let dims = match self.rng.below(3) {
                0 => vec![],
                _ => vec![self.small()],
            };
            lines.push(format!(
                "param {name}{} = {};",
                Self::shape_text(&dims),
                self.rng.pick(INITS)
            ));
            self.vals.push(Val { name, dims });
        }
        for _ in 0..self.rng.below(3) {
            let f = self.fresh("f");
            let arity = 1 + self.rng.below(2);
            let params: Vec<String> = (0..arity).map(|k| format!("z{k}")).collect();
            let g = *self.rng.pick(UNARY);
            let body = match arity {
                1 => format!("{g}(z0) * z0 + {}", self.number()),
                _ => format!("{g}(z0 - z1) + z1 * {}", self.number()),
            };
            lines.push(format!("fn {f}({}) = {body};", params.join(", ")));
            self.fns.push((f, arity));
        }
        let mut last = String::new();
        let mut last_dims = vec![];
        for _ in 0..1 + self.rng.below(4) {
            let name = self.fresh("h");
            let dims = vec![self.small() + 1];
            let e = self.expr(&dims, 0);
            lines.push(format!("{name} = {e};"));
            self.vals.push(Val {
                name: name.clone(),
                dims: dims.clone(),
            });
            last = name;
            last_dims = dims;
        }
        let n = last_dims[0];
        let loss = match self.rng.below(4) {
            0 => {
                lines.push(format!("target y: class[{n}];"));
                format!("softmax_cross_entropy({last}, y)")
            }
            1 => {
                lines.push(format!("target y[{n}];"));
                format!("bce_with_logits({last}, y)")
            }
            2 => {
                lines.push(format!("target y[{n}];"));
                format!("mse({last}, y) + 0.01 * sum(square({last}))")
            }
            _ => {
                lines.push(format!("target y[{n}];"));
                format!("mse({last}, y)")
            }
        };
        lines.push(format!("output {last};"));
        // every parameter and input must be used: feed the unused ones to the loss
        let extra: Vec<String> = self
            .vals
            .iter()
            .filter(|v| v.name.starts_with('p') || v.name.starts_with('x'))
            .map(|v| format!("0.001 * sum({})", v.name))
            .collect();
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(" + {}", extra.join(" + "))
        };
        lines.push(format!("loss = {loss}{extra};"));
        let mut all = std::mem::take(&mut self.pending_params);
        all.extend(lines);
        // parameters must be declared before the bindings that read them
        all.sort_by_key(|l| !(l.starts_with("param") || l.starts_with("dtype")));
        all.join(" ")
    }

    fn recurrent(&mut self, mut lines: Vec<String>) -> String {
        let steps = 1 + self.rng.below(5);
        lines.push(format!("steps {steps};"));
        if steps > 1 && self.rng.one_in(3) {
            lines.push(format!("truncate {};", 1 + self.rng.below(steps)));
        }
        let x = self.fresh("x");
        let n = self.small();
        lines.push(format!("input {x}[t][{n}];"));
        self.seqs.push(Val {
            name: x,
            dims: vec![n],
        });
        let h = self.fresh("s");
        let m = self.small();
        let init = *self.rng.pick(&["zeros", "constant(0.5)"]);
        lines.push(format!("state {h}[{m}] = {init};"));
        self.states.push(Val {
            name: h.clone(),
            dims: vec![m],
        });
        let update = self.step_expr(m);
        lines.push(format!("{h}[t] = {update};"));
        let k = self.small();
        let out = self.fresh("o");
        if self.rng.one_in(2) {
            lines.push(format!("target y[t][{k}];"));
            lines.push(format!("{out}[t] = dense({h}[t], {k});"));
            let reduce = *self.rng.pick(&["mean_steps", "sum_steps"]);
            lines.push(format!("loss = {reduce}(mse({out}[t], y[t]));"));
        } else {
            lines.push(format!("target y[{k}];"));
            lines.push(format!("{out} = dense({h}[last], {k});"));
            lines.push(format!("loss = mse({out}, y);"));
        }
        lines.join(" ")
    }
}

/// Splits a definition into tokens (names and numbers, single punctuation).
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    for ch in text.chars() {
        if ch.is_alphanumeric() || ch == '_' || ch == '.' {
            cur.push(ch);
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if !ch.is_whitespace() {
                out.push(ch.to_string());
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Tokens the mutations insert.
const VOCAB: &[&str] = &[
    "x1",
    "y",
    "h1",
    "w",
    "loss",
    "out",
    "input",
    "target",
    "param",
    "output",
    "dtype",
    "class",
    "f64",
    "f32",
    "const",
    "fn",
    "steps",
    "state",
    "t",
    "last",
    "truncate",
    ";",
    ":",
    ",",
    "=",
    "[",
    "]",
    "(",
    ")",
    "+",
    "-",
    "*",
    "/",
    "@",
    "^",
    "<",
    "0",
    "1",
    "2",
    "0.5",
    "1e9",
    "1e-9",
    "1e39",
    "1e-50",
    "4294967296",
    "99999999999999999999",
    "dense",
    "layer_norm",
    "embedding",
    "dropout",
    "class",
    "at",
    "batch_norm",
    "mse",
    "sum",
    "mean",
    "sigmoid",
    "relu",
    "pow",
    "concat",
    "softmax_cross_entropy",
    "bce_with_logits",
    "xavier",
    "zeros",
    "constant",
    "uniform",
    "normal",
    "he",
    "log",
    "sqrt",
    "i",
    "j",
    "tape",
    "self",
    "type",
    "B",
    "_",
    "grads",
    "input",
];

/// Mutates a token list in place: one to three edits.
pub fn mutate(rng: &mut Rng, toks: &mut Vec<String>) {
    for _ in 0..1 + rng.below(3) {
        let n = toks.len();
        let i = rng.below(n);
        match rng.below(5) {
            0 if n > 1 => {
                toks.remove(i);
            }
            1 => {
                let t = toks[i].clone();
                toks.insert(rng.below(n + 1), t);
            }
            2 => {
                let j = rng.below(n);
                toks.swap(i, j);
            }
            3 => {
                // a number made extreme
                if toks[i].chars().next().is_some_and(|c| c.is_ascii_digit()) {
                    toks[i] = rng
                        .pick(&["0", "1e300", "4294967296", "1e-320", "65536"])
                        .to_string();
                }
            }
            _ => toks[i] = VOCAB[rng.below(VOCAB.len())].to_string(),
        }
    }
}

/// What one definition did in the pipeline.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Expanded to items without errors.
    Accepted,
    /// Answered with compile errors.
    Rejected,
    /// Its text is not a Rust token stream (a mutation can make one).
    NotTokens,
}

/// Runs one definition through the attribute: a panic or an expansion that
/// is not Rust fails the caller; otherwise accepted or rejected.
pub fn run(text: &str) -> Result<Outcome, String> {
    if std::env::var_os("NN_FUZZ_TRACE").is_some() {
        eprintln!("{text}");
    }
    let Ok(ts) = text.parse::<TokenStream>() else {
        // the text pipeline must still not panic on it
        let r = std::panic::catch_unwind(|| crate::expand::compile_both(text, None).is_ok());
        return match r {
            Ok(_) => Ok(Outcome::NotTokens),
            Err(_) => Err(format!("panic in the pipeline on: {text}")),
        };
    };
    let out = std::panic::catch_unwind(|| {
        network(
            ts,
            quote!(
                pub struct Net;
            ),
        )
    })
    .map_err(|_| format!("panic on: {text}"))?;
    let text_out = out.to_string();
    syn::parse2::<syn::File>(out)
        .map_err(|e| format!("the expansion is not Rust ({e}): {text}"))?;
    if text_out.contains("internal error") {
        return Err(format!("internal error on: {text}\n{text_out}"));
    }
    Ok(if text_out.contains("compile_error") {
        Outcome::Rejected
    } else {
        Outcome::Accepted
    })
}

/// `count` generated definitions from seeds `first..`, each also mutated
/// once: (accepted, rejected) counts, the accepted texts of the generated
/// ones, or the first failure.
pub fn campaign(first: u64, count: u64) -> Result<(usize, usize, Vec<String>), String> {
    let (mut accepted, mut rejected) = (0, 0);
    let mut valid = vec![];
    for seed in first..first + count {
        let text = Gen::new(seed).definition();
        match run(&text)? {
            Outcome::Accepted => {
                accepted += 1;
                valid.push(text.clone());
            }
            _ => rejected += 1,
        }
        let mut rng = Rng(seed.wrapping_mul(0xD6E8_FEB8_6659_FD93) | 1);
        let mut toks = tokens(&text);
        mutate(&mut rng, &mut toks);
        match run(&toks.join(" "))? {
            Outcome::Accepted => accepted += 1,
            _ => rejected += 1,
        }
    }
    Ok((accepted, rejected, valid))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-written definitions covering every statement kind, mutated too.
    const SEEDS: &[&str] = &[
        "input x[2]; target y[1]; h = sigmoid(dense(x, 4)); out = sigmoid(dense(h, 1)); loss = mse(out, y);",
        "input x[64]; target label: class[10]; h = relu(dense(x, 32, he)); logits = dense(h, 10); loss = softmax_cross_entropy(logits, label);",
        "dtype f64; input x[3]; input m[3, 2]; target y[2]; param w[2, 3] = uniform(-0.5, 0.5); param s = constant(2); \
         a = tanh(w @ x) * s + x @ m; b = -a ^ 2 / 3 + exp(log(abs(a) + 1)) - sqrt(square(a) + 1); \
         output a; loss = mean(b) + bce_with_logits(a, y) + sum(softplus(a));",
        "input x[4, 3]; target t[2, 3]; z = dense(x, 2); loss = mean((z - t) ^ 2);",
        "steps 5; truncate 2; input x[t][3]; target y[t][2]; param h0[4]; state h[4] = h0; state c[4] = zeros; \
         f[t] = sigmoid(dense(x[t], 4)); c[t] = f[t] * c[t-1] + tanh(dense(h[t-1], 4)); h[t] = tanh(c[t]); \
         out[t] = dense(h[t], 2); loss = mean_steps(mse(out[t], y[t])) + sum(h[last]);",
        "steps 3; input x[t][2]; target y[1]; state h[3] = constant(0.5); h[t] = tanh(dense(concat(x[t], h[t-1]), 3)); \
         out = dense(h[last], 1); loss = mse(out, y);",
        "input tok: class[7]; input x[3]; target label: class[4]; e = embedding(tok, 5); \
         h = dropout(tanh(dense(x, 5) + e), 0.3); logits = dense(h, 4); loss = softmax_cross_entropy(logits, label);",
        "steps 4; input tok[t]: class[6]; input x[3, 4]; target t: class[3][4]; param w[3, 3]; state h[3] = zeros; \
         h[t] = tanh(dense(h[t-1], 3) + embedding(tok[t], 3)); z = w @ x + h[last]; \
         loss = softmax_cross_entropy(z, t, 0) + sum(logsumexp(z, 1)) + sum(softmax(z, 0) * log_softmax(z, 1));",
    ];

    #[test]
    fn hand_written_seeds_compile_and_their_mutations_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for seed in SEEDS {
            assert_eq!(run(seed), Ok(Outcome::Accepted), "{seed}");
        }
        for case in 0..1500 {
            let mut toks = tokens(SEEDS[case % SEEDS.len()]);
            mutate(&mut rng, &mut toks);
            if let Err(e) = run(&toks.join(" ")) {
                panic!("mutation {case}: {e}");
            }
        }
    }

    /// The CI run: 1,500 generated definitions and 1,500 mutations of them.
    #[test]
    fn generated_and_mutated_definitions_never_panic() {
        let (accepted, rejected, valid) = campaign(1, 1500).unwrap_or_else(|e| panic!("{e}"));
        // the generator must exercise the back end, the mutations the errors
        assert!(
            valid.len() > 600,
            "only {} generated definitions compiled",
            valid.len()
        );
        assert!(rejected > 600, "only {rejected} definitions were rejected");
        assert!(accepted > valid.len());
    }

    /// The long run (README, "Limits"): `NN_FUZZ_CASES` (default 50,000)
    /// generated definitions and as many mutations through the pipeline,
    /// and, with `NN_FUZZ_COMPILE=<dir>`, every `NN_FUZZ_SAMPLE`-th accepted
    /// one (default 10) written into a crate there and compiled with
    /// `cargo check`: no panic, no expansion that is not Rust, no error
    /// inside generated code.
    #[test]
    #[ignore]
    fn fuzz_long() {
        let cases: u64 = env_or("NN_FUZZ_CASES", 50_000);
        let sample: usize = env_or("NN_FUZZ_SAMPLE", 10);
        let t0 = std::time::Instant::now();
        let (accepted, rejected, valid) =
            campaign(1_000_000, cases).unwrap_or_else(|e| panic!("{e}"));
        println!(
            "{} definitions ({cases} generated, {cases} mutated): {accepted} accepted, {rejected} rejected, no panic, in {:.1?}",
            2 * cases,
            t0.elapsed()
        );
        if let Ok(dir) = std::env::var("NN_FUZZ_COMPILE") {
            let chosen: Vec<&String> = valid.iter().step_by(sample.max(1)).collect();
            compile_check(std::path::Path::new(&dir), &chosen);
            println!(
                "{} accepted definitions compiled with `cargo check`",
                chosen.len()
            );
        }
    }

    /// Writes `tests/tests/corpus.rs`: the first 40 generated definitions
    /// the macro accepts (from seed 1), each compiled and run by that test.
    /// `cargo test -p nn-macro -- --ignored write_corpus` regenerates it.
    #[test]
    #[ignore]
    fn write_corpus() {
        let mut defs = vec![];
        let mut seed = 1;
        while defs.len() < 40 {
            let text = Gen::new(seed).definition();
            if run(&text) == Ok(Outcome::Accepted) {
                defs.push((seed, text));
            }
            seed += 1;
        }
        let mut out = String::from(
            "//! Definitions made by the macro's generator (`nn-macro/src/fuzz.rs`,\n\
             //! written by its ignored test `write_corpus`): each must expand to\n\
             //! code that compiles, and its passes must run. The generator's long\n\
             //! run compiles many more (README, \"Limits\").\n\n\
             #![allow(clippy::all)]\n\n\
             use nn_runtime::prelude::*;\n\n\
             /// Runs every pass once on zero inputs (the values are beside the point).\n\
             fn exercise<N: Network>() -> f64\n\
             where\n    N::Input: Default,\n    N::Target: Default,\n{\n\
             \x20   let net = N::new(1);\n\
             \x20   let (x, y) = (N::Input::default(), N::Target::default());\n\
             \x20   let mut tape = N::new_tape();\n\
             \x20   let mut grads = N::new_grads();\n\
             \x20   let loss = net.forward(&x, &y, &mut tape);\n\
             \x20   net.backward(&tape, &mut grads);\n\
             \x20   let _ = net.predict(&x);\n\
             \x20   loss.to_f64()\n}\n",
        );
        for (k, (seed, d)) in defs.iter().enumerate() {
            out.push_str(&format!(
                "\n/// Generated from seed {seed}.\n#[network {{ {d} }}]\npub struct Gen{k};\n"
            ));
        }
        out.push_str("\n#[test]\nfn generated_definitions_compile_and_run() {\n");
        for k in 0..defs.len() {
            out.push_str(&format!("    let _ = exercise::<Gen{k}>();\n"));
        }
        out.push_str("}\n");
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tests/corpus.rs");
        std::fs::write(path, out).expect("corpus written");
    }

    fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
        std::env::var(key)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// Writes the definitions into a crate at `dir` (250 networks a file)
    /// depending on this workspace's nn-runtime, and `cargo check`s it.
    fn compile_check(dir: &std::path::Path, defs: &[&String]) {
        let runtime = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../nn-runtime")
            .canonicalize()
            .expect("nn-runtime");
        std::fs::create_dir_all(dir.join("src")).expect("dir");
        std::fs::write(
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"nn-fuzz-corpus\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n[dependencies]\nnn-runtime = {{ path = {:?} }}\n\n[workspace]\n",
                runtime.display().to_string()
            ),
        )
        .expect("manifest");
        let mut lib = String::from("#![allow(dead_code)]\nuse nn_runtime::prelude::*;\n");
        for (k, chunk) in defs.chunks(250).enumerate() {
            lib.push_str(&format!("mod part{k};\n"));
            let mut part = String::from("use nn_runtime::prelude::*;\n");
            for (i, d) in chunk.iter().enumerate() {
                part.push_str(&format!("#[network {{ {d} }}]\npub struct Net{i};\n"));
            }
            std::fs::write(dir.join(format!("src/part{k}.rs")), part).expect("part");
        }
        std::fs::write(dir.join("src/lib.rs"), lib).expect("lib");
        let status = std::process::Command::new(env!("CARGO"))
            .arg("check")
            .arg("--quiet")
            .current_dir(dir)
            .status()
            .expect("cargo check runs");
        assert!(
            status.success(),
            "generated code failed to compile: see the errors above ({})",
            dir.display()
        );
    }
}
