//! Compile-time cost of `#[network]`: how long the macro's expansion takes
//! for each benchmark network, how big the generated code is, and how both
//! grow with the size of a definition (chains of bindings, long sums).
//!
//! Entries per network (`xor`, `digits`, `mnist`, `rnn`):
//! - `expand/<net>`: the whole expansion as a user gets it by default
//!   (`expand::network_with`, without the `hvp` feature's pass)
//!   = read the tokens, parse, lower, differentiate, optimise, emit the
//!   per-sample code and (feed-forward nets) the batched code, as
//!   `proc_macro2` tokens. What the compiler adds around it (converting its
//!   tokens to and from `proc_macro2`, then compiling the emitted Rust) is
//!   not in this figure.
//! - `graph/<net>`: the graph pipeline alone (`expand::compile_text`: parse,
//!   lower, tidy, differentiate, optimise), without emitting code.
//!
//! Before timing, the bench prints the size of each expansion formatted by
//! `prettyplease` (bytes, lines), and checks that it does not grow with the
//! layer widths: 64-32-10, 784-128-10 and 784-1024-10 MLPs expand to code of
//! nearly the same size (the generated passes are loops over constant
//! bounds, not unrolled; only digits of the constants differ).
//!
//! How this bench reaches the pipeline: nn-macro is a `proc-macro = true`
//! crate, and such a crate exports nothing but its macros, so a bench (a
//! separate crate linking the library) cannot `use nn_macro::expand`. Instead
//! the bench compiles the pipeline's source files itself: each
//! `#[path = "../src/<module>.rs"] mod <module>;` below makes that file a
//! module of *this* crate, under the same name as in `src/lib.rs`. The
//! pipeline refers to its stages as `crate::ir`, `crate::emit`, ..., so this
//! crate root must declare every module those paths reach (all of them but
//! the test-only `interp` and `robustness`), at the crate root. A file
//! loaded through `#[path]` resolves its own `mod x;` items like a `mod.rs`
//! (next to itself), so `opt/mod.rs` still finds `opt/cse.rs` etc. Cargo
//! builds a `harness = false` bench with `--cfg test`, so the modules'
//! `#[cfg(test)] mod tests` come along (they use only modules declared here
//! and dev-dependencies), but without the test harness their `#[test]`
//! functions are plain dead functions that never run. `proc_macro2` works
//! outside a macro invocation (it falls back to its own token
//! implementation), so the expansion runs here exactly as the library code,
//! only not inside rustc.

// The bench uses only the entry points; the rest of each module, and the
// test modules' helpers and imports, are dead or unused here.
#![allow(dead_code, unused_imports)]
// Same allowance as src/lib.rs: graph passes index several id tables at once.
#![allow(clippy::needless_range_loop)]

#[path = "../src/autodiff.rs"]
mod autodiff;
#[path = "../src/emit/mod.rs"]
mod emit;
#[path = "../src/expand.rs"]
mod expand;
#[path = "../src/ir/mod.rs"]
mod ir;
#[path = "../src/limits.rs"]
mod limits;
#[path = "../src/lower/mod.rs"]
mod lower;
#[path = "../src/ops/mod.rs"]
mod ops;
#[path = "../src/opt/mod.rs"]
mod opt;
#[path = "../src/scalar.rs"]
mod scalar;
#[path = "../src/source.rs"]
mod source;
#[path = "../src/symbol.rs"]
mod symbol;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use proc_macro2::TokenStream;
use quote::quote;
use std::hint::black_box;
use std::time::Duration;

/// The benchmark networks, as written inside `#[network { ... }]`.
const NETS: &[(&str, &str)] = &[
    (
        "xor",
        "input x[2]; target y[1]; h = sigmoid(dense(x, 4)); out = sigmoid(dense(h, 1)); \
         loss = mse(out, y);",
    ),
    ("digits", MLP_64_32_10),
    ("mnist", MLP_784_128_10),
    (
        "rnn",
        "steps 16; input x[t][8]; target y[t][1]; state h[32] = zeros; param wh[32,32] = xavier; \
         h[t] = tanh(wh @ h[t-1] + dense(x[t], 32)); out[t] = dense(h[t], 1); \
         loss = sum_steps(mse(out[t], y[t]));",
    ),
];

const MLP_64_32_10: &str = "input x[64]; target label: class[10]; h = relu(dense(x, 32, he)); \
     out = dense(h, 10); loss = softmax_cross_entropy(out, label);";
const MLP_784_128_10: &str = "input x[784]; target label: class[10]; h = relu(dense(x, 128, he)); \
     out = dense(h, 10); loss = softmax_cross_entropy(out, label);";
const MLP_784_1024_10: &str =
    "input x[784]; target label: class[10]; h = relu(dense(x, 1024, he)); \
     out = dense(h, 10); loss = softmax_cross_entropy(out, label);";

/// The same MLP at growing widths: the code size must stay (nearly) flat.
const WIDTHS: &[(&str, &str)] = &[
    ("mlp 64-32-10", MLP_64_32_10),
    ("mlp 784-128-10", MLP_784_128_10),
    ("mlp 784-1024-10", MLP_784_1024_10),
];

/// The expansion without `hvp` (nn-runtime's default features).
fn default_expansion(
    def: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    expand::network_with(
        def,
        item,
        expand::Options {
            hvp: false,
            onnx: false,
            pytorch: false,
        },
    )
}

fn tokens(def: &str) -> TokenStream {
    def.parse().expect("the definition tokenizes")
}

fn item() -> TokenStream {
    quote!(
        pub struct Net;
    )
}

/// The expansion as a reader sees it under `cargo expand`.
fn pretty(def: &str) -> String {
    let out = default_expansion(tokens(def), item());
    let text = out.to_string();
    assert!(
        !text.contains("compile_error"),
        "the definition does not compile: {text}"
    );
    let mut file: syn::File = syn::parse2(out).expect("the expansion parses as Rust");
    file.items = emit::show_if_alloc(file.items);
    prettyplease::unparse(&file)
}

/// (bytes, lines) of the formatted expansion.
fn code_size(def: &str) -> (usize, usize) {
    let p = pretty(def);
    (p.len(), p.lines().count())
}

/// The code with every run of digits replaced by `#`, whitespace removed and
/// trailing commas dropped: equal for two expansions that differ only in
/// their numeric constants (shapes, loop bounds, counts) and in where the
/// formatter wrapped lines (a wrapped list gains a trailing comma).
fn shape_free(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut in_digits = false;
    for ch in code.chars().filter(|c| !c.is_whitespace()) {
        if ch.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            if matches!(ch, ')' | ']' | '}') && out.ends_with(',') {
                out.pop();
            }
            out.push(ch);
            in_digits = false;
        }
    }
    out
}

/// Prints the generated code sizes and checks they do not grow with widths.
fn sizes(_: &mut Criterion) {
    println!("generated code (prettyplease-formatted expansion):");
    for (name, def) in NETS {
        let (bytes, lines) = code_size(def);
        println!("  {name:<16} {bytes:>7} bytes {lines:>5} lines");
    }
    let codes: Vec<String> = WIDTHS.iter().map(|(_, def)| pretty(def)).collect();
    for ((name, _), code) in WIDTHS.iter().zip(&codes) {
        let (bytes, lines) = (code.len(), code.lines().count());
        println!("  {name:<16} {bytes:>7} bytes {lines:>5} lines");
    }
    if let Some(dir) = std::env::var_os("NN_EXPAND_DUMP") {
        for ((name, _), code) in WIDTHS.iter().zip(&codes) {
            let path = std::path::Path::new(&dir).join(format!("{}.rs", name.replace(' ', "_")));
            std::fs::write(path, code).expect("dump");
        }
    }
    let (first, last) = (&codes[0], &codes[codes.len() - 1]);
    println!(
        "  64-32-10 -> 784-1024-10 (hidden width x32, 81x the parameters): {:+} bytes ({:+.2} %), \
         all of it in the digits of constants: loops, not unrolling",
        last.len() as isize - first.len() as isize,
        100.0 * (last.len() as f64 / first.len() as f64 - 1.0)
    );
    // Not a timing: a property. The expansions must be the same code up to
    // their numbers (a width-dependent unrolling would add statements).
    for ((name, _), code) in WIDTHS.iter().zip(&codes) {
        assert!(
            shape_free(code) == shape_free(first),
            "`{name}` does not expand to the same code as `{}` up to its constants: \
             the generated code depends on the layer widths",
            WIDTHS[0].0
        );
    }
}

fn expansion(c: &mut Criterion) {
    let mut g = c.benchmark_group("expand");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    for (name, def) in NETS {
        let def_tokens = tokens(def);
        g.bench_function(*name, |b| {
            b.iter_batched(
                || (def_tokens.clone(), item()),
                |(d, i)| black_box(default_expansion(d, i)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
    let mut g = c.benchmark_group("graph");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    for (name, def) in NETS {
        // The text exactly as the macro reads it from the tokens.
        let text = source::read_args(tokens(def)).expect("definition").text;
        g.bench_function(*name, |b| {
            b.iter(|| black_box(expand::compile_text(black_box(&text), None).is_ok()))
        });
    }
    g.finish();
}

/// `n` elementwise bindings, each using the previous value twice
/// (`h1 = sigmoid(h0) * h0; ...`): what fusion must not duplicate.
fn chain(n: usize) -> String {
    let mut d = String::from("input x[8]; target y[8]; h0 = dense(x, 8);");
    for k in 1..=n {
        d += &format!(" h{k} = sigmoid(h{}) * h{};", k - 1, k - 1);
    }
    d + &format!(" loss = mse(h{n}, y);")
}

/// One binding summing `n` terms: kept flat, lowered and emitted in loops.
fn sum(n: usize) -> String {
    let mut d = String::from("input x[8]; target y[8]; h = dense(x, 8); s = h");
    for k in 1..n {
        d += if k % 2 == 0 { " + h" } else { " - x" };
    }
    d + "; loss = mse(s, y);"
}

/// Expansion time and generated size against the definition's size: a
/// table (one expansion each, the largest sizes included), then criterion
/// on the sizes that run in well under a second.
fn scaling(c: &mut Criterion) {
    println!("expansion against definition size (one run each; time per unit in brackets):");
    let cases: Vec<(String, usize, String)> = [10, 100, 1000]
        .iter()
        .map(|&n| ("chain".to_string(), n, chain(n)))
        .chain(
            [10, 100, 1000, 10_000, 100_000]
                .iter()
                .map(|&n| ("sum".to_string(), n, sum(n))),
        )
        .collect();
    for (kind, n, def) in &cases {
        let t = std::time::Instant::now();
        let out = default_expansion(tokens(def), item());
        let took = t.elapsed();
        let bytes = out.to_string().len();
        println!(
            "  {kind:<5} {n:>7}: {took:>10.2?} ({:>7.2?} per unit), {bytes:>9} bytes ({:>5} per unit)",
            took / *n as u32,
            bytes / n
        );
    }
    let mut g = c.benchmark_group("scaling");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    for (kind, n, def) in cases.iter().filter(|c| c.1 <= 1000) {
        let def_tokens = tokens(def);
        g.bench_function(format!("{kind}/{n}"), |b| {
            b.iter_batched(
                || (def_tokens.clone(), item()),
                |(d, i)| black_box(default_expansion(d, i)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, sizes, scaling, expansion);
criterion_main!(benches);
