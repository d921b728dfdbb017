//! The pipeline, in one function: read -> parse -> lower -> tidy ->
//! differentiate -> optimise -> emit, once for the per-sample passes and
//! once, from the same lowering, for the batched ones.

use crate::emit::emit_network;
use crate::ir::{Bcast, Dtype, Graph, NodeId, Op, Pass, Shape};
use crate::scalar::{build::mul, S};
use crate::source::{read_args, read_item_options, rebase, Origin, Source};
use crate::{autodiff, lower, opt};
use nn_grammar::Diagnostic;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// What is generated beyond the passes every network has.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// `hvp`, the Hessian-vector product: more than the rest of the code
    /// together, so only with the runtime's `hvp` feature.
    pub hvp: bool,
    /// `Network::ONNX`, the inference graph's ONNX description (the
    /// runtime's `onnx` feature).
    pub onnx: bool,
    /// `PYTORCH_MODULE`, the definition as a PyTorch module (the runtime's
    /// `pytorch` feature).
    pub pytorch: bool,
}

impl Options {
    /// Everything (what the tests and the snapshots see).
    pub const ALL: Options = Options {
        hvp: true,
        onnx: true,
        pytorch: true,
    };
}

/// [`network_with`] everything generated (the tests and snapshots).
#[allow(dead_code)]
pub fn network(args: TokenStream, item: TokenStream) -> TokenStream {
    network_with(args, item, Options::ALL)
}

/// The expansion of `#[network(args)] item`.
pub fn network_with(args: TokenStream, item: TokenStream, options: Options) -> TokenStream {
    let mut item: syn::ItemStruct = match syn::parse2(item) {
        Ok(item) => item,
        Err(e) => {
            return syn::Error::new(e.span(), "`#[network]` goes on a struct: `pub struct Net;`")
                .to_compile_error();
        }
    };
    let shape_error = match &item.fields {
        syn::Fields::Unit => None,
        syn::Fields::Named(f) if f.named.is_empty() => None,
        fields => Some(syn::Error::new_spanned(
            fields,
            "`#[network]` defines the struct's fields itself; declare it as `struct Name;`",
        )),
    };
    let generics_error = (!item.generics.params.is_empty()).then(|| {
        syn::Error::new_spanned(&item.generics, "a `#[network]` struct cannot be generic")
    });
    // a second `#[network(crate = ...)]` below an inline definition: taken
    // off the struct, which then carries no attribute of ours
    let (ours, others): (Vec<_>, Vec<_>) =
        std::mem::take(&mut item.attrs).into_iter().partition(|a| {
            a.path()
                .segments
                .last()
                .is_some_and(|s| s.ident == "network")
        });
    item.attrs = others;
    let mut source = match read_args(args) {
        Ok(s) => s,
        Err(e) => return fallback(&item, e),
    };
    for attr in &ours {
        match read_item_options(attr) {
            Ok(Some(path)) if source.krate.is_some() => {
                let e = syn::Error::new_spanned(
                    path,
                    "`crate` is given twice\n  = help: keep one `crate = ...`",
                );
                return fallback(&item, e);
            }
            Ok(krate) => source.krate = source.krate.take().or(krate),
            Err(e) => return fallback(&item, e),
        }
    }
    let tokens = expand_source(&source, &item, shape_error.or(generics_error), options);
    match &source.krate {
        Some(krate) => rebase(tokens, krate),
        None => tokens,
    }
}

/// The expansion of a definition read from the attribute.
fn expand_source(
    source: &Source,
    item: &syn::ItemStruct,
    item_error: Option<syn::Error>,
    options: Options,
) -> TokenStream {
    let rebuild = rebuild_on_change(source);
    let compiled =
        compile_with(&source.text, source.dtype, options).map_err(|ds| combine(source, &ds));
    let result = match (compiled, item_error) {
        (Ok(c), None) => emit_network(&c, item, options),
        (Ok(_), Some(e)) => fallback(item, e),
        (Err(mut e), other) => {
            if let Some(o) = other {
                e.combine(o);
            }
            fallback(item, e)
        }
    };
    quote!(#rebuild #result)
}

/// Every graph a definition's code is emitted from.
pub struct Compiled {
    /// The per-sample passes (`predict`, `forward`, `backward`, `step`).
    pub sample: Graph,
    /// The batched passes, where per-sample contributions to shared values
    /// are summed over the batch (emitted when every op has a batched form).
    pub batch: Graph,
    /// `input_gradient`: each input's `∂loss/∂input` (feed-forward only).
    pub input_grad: Option<Graph>,
    /// `hvp`: the Hessian-vector product of the loss in the parameters
    /// (feed-forward only).
    pub hvp: Option<Graph>,
}

/// The pipeline on a definition's text, with diagnostics as plain data (no
/// proc-macro context needed). One parse and one lowering serve every graph.
pub fn compile(text: &str, dtype: Option<Dtype>) -> Result<Compiled, Vec<Diagnostic>> {
    compile_with(text, dtype, Options::ALL)
}

/// [`compile`], building only the graphs `options` asks for.
pub fn compile_with(
    text: &str,
    dtype: Option<Dtype>,
    options: Options,
) -> Result<Compiled, Vec<Diagnostic>> {
    let def = nn_grammar::parse_definition(text).map_err(|d| vec![d])?;
    let lowered = lower::lower_definition(&def, dtype)?;
    let tidied = opt::tidy(lowered);
    let mut batch = tidied.clone();
    batch.batch = true;
    let batch = opt::optimise(autodiff::diff_graph(batch));
    let (input_grad, hvp) = match tidied.steps {
        Some(_) => (None, None),
        None => (
            Some(input_gradient_graph(&tidied)),
            options.hvp.then(|| hvp_graph(&tidied)),
        ),
    };
    let sample = opt::optimise(autodiff::diff_graph(tidied));
    Ok(Compiled {
        sample,
        batch,
        input_grad,
        hvp,
    })
}

/// The per-sample and the batched graph (what the tests of the batched form look at).
#[cfg_attr(not(test), allow(dead_code))]
pub fn compile_both(
    text: &str,
    dtype: Option<Dtype>,
) -> Result<(Graph, Option<Graph>), Vec<Diagnostic>> {
    compile(text, dtype).map(|c| (c.sample, Some(c.batch)))
}

/// The node of a leaf op (an input, a parameter).
fn leaf(g: &Graph, op: Op) -> NodeId {
    g.nodes
        .iter()
        .position(|n| n.op == op)
        .unwrap_or(usize::MAX)
}

/// The loss differentiated with respect to each input (not the parameters).
pub(crate) fn input_gradient_graph(tidied: &Graph) -> Graph {
    let mut g = tidied.clone();
    let inputs: Vec<NodeId> = (0..g.inputs.len())
        .map(|k| leaf(&g, Op::Input(k)))
        .collect();
    let loss = g.loss;
    g.input_grads = autodiff::derivatives(&mut g, loss, &inputs);
    opt::optimise(g)
}

/// The gradient's inner product with a vector `v` of the parameters' shape,
/// `s = Σ_k ∇θ_k loss · v_k`, differentiated again in the parameters:
/// `∂s/∂θ = H v`, the Hessian-vector product (reverse over reverse).
pub(crate) fn hvp_graph(tidied: &Graph) -> Graph {
    let mut g = autodiff::diff_graph(tidied.clone());
    let mut terms = vec![];
    for k in 0..g.params.len() {
        let Some(gr) = g.grads[k] else { continue };
        let shape = g.params[k].shape.clone();
        let name = format!("v_{}", g.params[k].field);
        let v = g.push(Op::Tangent(k), shape.clone(), name, Pass::Forward, None);
        let prod = g.push(
            Op::Map {
                args: vec![gr, v],
                bcast: vec![Bcast::Full; 2],
                body: mul(S::Arg(0), S::Arg(1)),
            },
            shape,
            "grad_v".into(),
            Pass::Forward,
            None,
        );
        let total = g.push(
            Op::Sum(prod),
            Shape::scalar(),
            "grad_v_sum".into(),
            Pass::Forward,
            None,
        );
        terms.push(total);
    }
    let params: Vec<NodeId> = (0..g.params.len())
        .map(|k| leaf(&g, Op::Param(k)))
        .collect();
    g.hvp = vec![None; g.params.len()];
    if !terms.is_empty() {
        let s = g.push(
            Op::AddN(terms),
            Shape::scalar(),
            "grad_dot_v".into(),
            Pass::Forward,
            None,
        );
        g.hvp = autodiff::derivatives(&mut g, s, &params);
    }
    opt::optimise(g)
}

/// The per-sample graph alone (what most tests look at).
#[cfg_attr(not(test), allow(dead_code))]
pub fn compile_text(text: &str, dtype: Option<Dtype>) -> Result<Graph, Vec<Diagnostic>> {
    let def = nn_grammar::parse_definition(text).map_err(|d| vec![d])?;
    let lowered = lower::lower_definition(&def, dtype)?;
    Ok(opt::optimise(autodiff::diff_graph(opt::tidy(lowered))))
}

fn combine(source: &Source, ds: &[Diagnostic]) -> syn::Error {
    let mut errors = ds.iter().map(|d| source.error(d));
    let mut first = errors
        .next()
        .unwrap_or_else(|| syn::Error::new(proc_macro2::Span::call_site(), "invalid definition"));
    for e in errors {
        first.combine(e);
    }
    first
}

/// The struct as written plus the errors, and stubs of the generated
/// methods and constants, so the user sees our message and not a cascade
/// of errors about a missing struct or missing methods. The stubs never run
/// (the crate does not compile); they diverge, so any use type-checks.
fn fallback(item: &syn::ItemStruct, e: syn::Error) -> TokenStream {
    let err = e.to_compile_error();
    if !item.generics.params.is_empty() {
        return quote!(#item #err);
    }
    let name = &item.ident;
    let stub = quote!(::core::unreachable!(
        "the `#[network]` definition has errors"
    ));
    // each generated method with its number of arguments (after `self`)
    let methods = [
        ("predict", 1),
        ("forward", 3),
        ("backward", 2),
        ("backward_traced", 3),
        ("sgd_step", 2),
        ("step", 2),
        ("initial_state", 0),
        ("stream_step", 2),
        ("stream_state", 0),
        ("input_gradient", 2),
        ("hvp", 4),
        ("forward_batch", 3),
        ("backward_batch", 2),
    ]
    .map(|(m, n)| {
        let m = format_ident!("{m}");
        let ty: Vec<_> = (0..n).map(|k| format_ident!("A{k}")).collect();
        quote!(
            #[doc(hidden)]
            pub fn #m<#(#ty),*>(&self, #(_: #ty),*) -> ! {
                #stub
            }
        )
    });
    let constructors = ["new", "from_params"].map(|m| {
        let m = format_ident!("{m}");
        quote!(
            #[doc(hidden)]
            pub fn #m<A>(_: A) -> Self {
                #stub
            }
        )
    });
    let buffers = ["new_tape", "new_grads"].map(|m| {
        let m = format_ident!("{m}");
        quote!(
            #[doc(hidden)]
            pub fn #m() -> ! {
                #stub
            }
        )
    });
    let consts = ["PARAMS", "TAPE_BYTES", "STEPS"].map(|c| {
        let c = format_ident!("{c}");
        quote!(#[doc(hidden)] pub const #c: usize = 0;)
    });
    quote!(
        #item
        #err
        #[allow(dead_code, clippy::all)]
        impl #name {
            #(#consts)*
            #[doc(hidden)]
            pub const FORWARD_FLOPS: u64 = 0;
            #[doc(hidden)]
            pub const BACKWARD_FLOPS: u64 = 0;
            #[doc(hidden)]
            pub const GRAPH_DOT: &'static str = "";
            #[doc(hidden)]
            pub const PYTORCH_MODULE: &'static str = "";
            #(#constructors)*
            #(#buffers)*
            #[doc(hidden)]
            pub fn new_batch_tape<const B: usize>() -> ! {
                #stub
            }
            #(#methods)*
        }
    )
}

/// For a file definition: `include_bytes!` makes cargo rebuild when it changes.
fn rebuild_on_change(source: &Source) -> TokenStream {
    match &source.origin {
        Origin::File { full, .. } => {
            let p = full.display().to_string();
            quote!(
                const _: &[u8] = ::core::include_bytes!(#p);
            )
        }
        Origin::Inline { .. } => quote!(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expands an inline definition and formats it as a reader sees it under `cargo expand`.
    fn expand_pretty(def: TokenStream) -> String {
        expand_named(
            def,
            quote!(
                pub struct Xor;
            ),
        )
    }

    fn expand_named(def: TokenStream, item: TokenStream) -> String {
        let out = network(def, item);
        let mut file: syn::File = syn::parse2(out).expect("the expansion parses as Rust");
        file.items = crate::emit::show_if_alloc(file.items);
        prettyplease::unparse(&file)
    }

    const XOR: &str = "input x[2]; target y[1]; h = sigmoid(dense(x, 4)); out = sigmoid(dense(h, 1)); loss = mse(out, y);";

    /// A renamed runtime: every path the expansion names goes through it.
    #[test]
    fn crate_option_rebases_every_runtime_path() {
        let def: TokenStream = XOR.parse().expect("tokens");
        let plain = network(
            def.clone(),
            quote!(
                pub struct Xor;
            ),
        )
        .to_string();
        assert!(plain.contains(":: nn_runtime :: __private"));
        for item in [
            quote!(
                #[network(crate = my_nn)]
                pub struct Xor;
            ),
            quote!(
                #[nn_runtime::network(crate = "my_nn")]
                pub struct Xor;
            ),
        ] {
            let out = network(def.clone(), item).to_string();
            assert!(!out.contains("compile_error"), "{out}");
            assert!(!out.contains("nn_runtime"), "a path escaped the rename");
            assert!(out.contains("my_nn :: __private :: Network for Xor"));
            // the options attribute is gone from the struct
            assert!(!out.contains("# [network"));
        }
        let nested = network(
            def.clone(),
            quote!(
                #[network(crate = deps::nn)]
                pub struct Xor;
            ),
        );
        assert!(nested
            .to_string()
            .contains("deps :: nn :: __private :: Zeroable"));
        // misuse: options a second attribute cannot take, the option twice,
        // `crate` alone above a definition
        for (item, args, msg) in [
            (
                quote!(
                    #[network(dtype = f64)]
                    pub struct Xor;
                ),
                def.clone(),
                "`dtype` cannot follow a definition",
            ),
            (
                quote!(
                    #[network(crate = a)]
                    #[network(crate = b)]
                    pub struct Xor;
                ),
                def.clone(),
                "`crate` is given twice",
            ),
            (
                quote!(
                    pub struct Xor;
                ),
                quote!(crate = my_nn),
                "alone has no definition",
            ),
        ] {
            let out = network(args, item).to_string();
            assert!(
                out.contains("compile_error") && out.contains(msg),
                "{msg}: {out}"
            );
        }
    }

    #[test]
    fn xor_expansion() {
        let def: TokenStream = XOR.parse().expect("tokens");
        insta::assert_snapshot!(expand_pretty(def));
    }

    #[test]
    fn digits_expansion() {
        let def = "input x[64]; target label: class[10]; h = relu(dense(x, 32, he)); logits = dense(h, 10); loss = softmax_cross_entropy(logits, label);";
        insta::assert_snapshot!(expand_named(
            def.parse().expect("tokens"),
            quote!(
                pub struct Digits;
            )
        ));
    }

    #[test]
    fn user_functions_expansion() {
        let def = "dtype f64; const delta = 1; \
            fn gated(z) = z * sigmoid(z); \
            fn huber(a, b) = where(abs(a - b) < delta, 0.5 * square(a - b), delta * (abs(a - b) - 0.5 * delta)); \
            input x[3]; target y[2]; h = gated(dense(x, 4)); out = dense(h, 2); loss = sum(huber(out, y));";
        insta::assert_snapshot!(expand_named(
            def.parse().expect("tokens"),
            quote!(
                pub struct Robust;
            )
        ));
    }

    /// A long sum nests its adjoints' sums (and their derivatives in `hvp`)
    /// thousands deep: emitted from a work list, not by recursion, so a
    /// small stack suffices.
    #[test]
    fn long_sums_expand_on_a_small_stack() {
        let mut def = String::from("input x[4]; target y[4]; h = dense(x, 4); s = h");
        for _ in 1..3000 {
            def += " + h";
        }
        def += "; loss = mse(s, y);";
        let out = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                network(
                    def.parse().expect("tokens"),
                    quote!(
                        pub struct Net;
                    ),
                )
                .to_string()
            })
            .expect("spawn")
            .join()
            .expect("no stack overflow");
        assert!(!out.contains("compile_error"));
    }

    #[test]
    fn derivatives_expansion() {
        let def = "dtype f64; input x[1]; target f[1]; h = tanh(dense(x, 8)); \
            u = x * (1 - x) * dense(h, 1); du = grad(sum(u), x); d2u = grad(sum(du), x); \
            output u; loss = mse(d2u, f);";
        insta::assert_snapshot!(expand_named(
            def.parse().expect("tokens"),
            quote!(
                pub struct Poisson;
            )
        ));
    }

    #[test]
    fn matrix_ops_expansion() {
        let def = "input x[3, 5]; target y[2]; param w[4, 3] = he; param b[4]; \
            h = tanh(w @ x + b); pooled = mean(h, 1); feat = concat(pooled[0:2], softmax(pooled)); \
            out = dense(feat, 2); loss = mse(out, y);";
        insta::assert_snapshot!(expand_named(
            def.parse().expect("tokens"),
            quote!(
                pub struct Pooled;
            )
        ));
    }

    #[test]
    fn elman_expansion() {
        let def = "steps 4; input x[t][2]; target y[t][1]; state h[3] = zeros; param wh[3, 3] = xavier; \
            h[t] = tanh(wh @ h[t-1] + dense(x[t], 3)); out[t] = dense(h[t], 1); loss = mean_steps(mse(out[t], y[t]));";
        insta::assert_snapshot!(expand_named(
            def.parse().expect("tokens"),
            quote!(
                pub struct Elman;
            )
        ));
    }

    #[test]
    fn xor_graph_after_each_stage() {
        let def = nn_grammar::parse_definition(XOR).expect("parses");
        let lowered = lower::lower_definition(&def, None).expect("lowers");
        let optimised = opt::tidy(lowered.clone());
        let diffed = autodiff::diff_graph(optimised.clone());
        let final_graph = opt::optimise(diffed.clone());
        let text = format!("# lowered\n{lowered}\n# tidied\n{optimised}\n# differentiated\n{diffed}\n# optimised\n{final_graph}");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn digits_graph() {
        let g = compile_text(
            "input x[64]; target label: class[10]; h = relu(dense(x, 32, he)); logits = dense(h, 10); loss = softmax_cross_entropy(logits, label);",
            None,
        )
        .expect("compiles");
        insta::assert_snapshot!(g.to_string());
    }
}
