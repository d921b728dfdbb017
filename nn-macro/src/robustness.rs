//! The macro never panics: seeded random mutations of valid definitions go
//! through the whole pipeline (as library calls), which must answer with
//! errors or with code that parses as Rust, never a panic.

use crate::expand::{compile_text, network};
use proc_macro2::TokenStream;
use quote::quote;

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
];

const VOCAB: &[&str] = &[
    "x",
    "y",
    "h",
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
    "0",
    "1",
    "2",
    "0.5",
    "1e9",
    "1e-9",
    "99999999999999999999",
    "dense",
    "mse",
    "sum",
    "mean",
    "sigmoid",
    "relu",
    "pow",
    "softmax_cross_entropy",
    "bce_with_logits",
    "xavier",
    "zeros",
    "constant",
    "uniform",
    "normal",
    "he",
    "i",
    "j",
    "tape",
    "self",
    "fn",
    "type",
];

/// A tiny seeded generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }
}

fn tokens(text: &str) -> Vec<String> {
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

fn mutate(rng: &mut Rng, toks: &mut Vec<String>) {
    for _ in 0..1 + rng.below(2) {
        let n = toks.len();
        let i = rng.below(n);
        match rng.below(4) {
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
            _ => toks[i] = VOCAB[rng.below(VOCAB.len())].to_string(),
        }
    }
}

#[test]
fn mutated_definitions_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    for case in 0..3000 {
        let seed = SEEDS[case % SEEDS.len()];
        let mut toks = tokens(seed);
        mutate(&mut rng, &mut toks);
        let text = toks.join(" ");
        let result = std::panic::catch_unwind(|| {
            let compiled = compile_text(&text, None).is_ok();
            // through the attribute too, when the text is valid Rust tokens
            if let Ok(ts) = text.parse::<TokenStream>() {
                let out = network(
                    ts,
                    quote!(
                        pub struct Net;
                    ),
                );
                syn::parse2::<syn::File>(out).expect("the expansion is Rust");
            }
            compiled
        });
        match result {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(_) => panic!("case {case} panicked on: {text}"),
        }
    }
    // the mutations must exercise the back end too, not only the parser
    assert!(
        accepted > 25,
        "only {accepted} mutated definitions compiled"
    );
}

#[test]
fn valid_seeds_compile() {
    for seed in SEEDS {
        if let Err(e) = compile_text(seed, None) {
            panic!("{seed}: {e:?}");
        }
    }
}
