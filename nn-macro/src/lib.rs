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
mod emit_batch;
mod expand;
#[cfg(test)]
mod interp;
mod ir;
mod lower;
mod opt;
#[cfg(test)]
mod robustness;
mod scalar;
mod source;
mod symbol;

/// Compiles a network definition into a struct with generated `predict`,
/// `forward` and `backward` passes. See the nn-runtime crate and the README's
/// language reference.
#[proc_macro_attribute]
pub fn network(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::network(args.into(), item.into()).into()
}
