//! The `#[network]` attribute: compiles a network definition into
//! specialised forward and backward Rust at compile time.
//!
//! This file is only the entry point; the pipeline (`expand::network`) and
//! every stage take and return plain data, so they are tested without a
//! proc-macro context.

// Graph passes walk nodes by id, reading several id-indexed tables at once.
#![allow(clippy::needless_range_loop)]

use proc_macro::TokenStream;

mod autodiff;
mod emit;
mod expand;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod interp;
mod ir;
mod limits;
mod lower;
mod ops;
mod opt;
mod scalar;

mod source;
mod symbol;

/// Compiles a network definition into a struct with generated `predict`,
/// `forward` and `backward` passes. See the nn-runtime crate and the README's
/// language reference.
#[proc_macro_attribute]
pub fn network(args: TokenStream, item: TokenStream) -> TokenStream {
    let (args, item) = (args.into(), item.into());
    // The pipeline reports every mistake in a definition as an error; a panic
    // would be a bug of ours. Should one happen, the user still gets a
    // compile error that says so, not a crashed macro.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let options = expand::Options {
            hvp: cfg!(feature = "hvp"),
            onnx: cfg!(feature = "onnx"),
            pytorch: cfg!(feature = "pytorch"),
        };
        expand::network_with(args, item, options)
    })) {
        Ok(tokens) => tokens.into(),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let msg = format!("internal error in `#[network]` (a bug: please report it with the definition): {what}");
            quote::quote!(::core::compile_error!(#msg);).into()
        }
    }
}
