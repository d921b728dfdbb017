//! Emission: the optimised graphs -> Rust tokens. Fixed-size arrays, loops
//! with constant bounds, calls to nn-runtime's const-generic kernels, no heap
//! allocation. Locals are named after the definition (`h`, `d_h`), and each
//! function's doc comment lists the maths it computes, line by line.
//!
//! Hygiene: the passes are free functions in a module of their own
//! (`__nn_<Net>`), where no item of the user's module is visible, so no
//! name the user defines can capture a local; the methods users call are
//! thin wrappers next to the struct, inside a `const _: () = { ... };`
//! block that first declares every name they bind. Paths are absolute.
//!
//! - `plan`: what all functions of one graph share (names, tape, users);
//! - `ex`: what one node's emission sees (places, indexing, loops); the
//!   ops' own emission rules are in the op table (`crate::ops`);
//! - `body`: one generated function, region by region;
//! - `recurrent`: the time loop of a recurrent definition;
//! - `items`: the structs, the module, the wrappers, the `Network` impl;
//! - `buffers`: `batch_norm`'s running statistics (buffer fields, the batch
//!   tape's mode and statistics, their update);
//! - `docs`, `names`, `scalar`: the maths docs, identifiers, expressions.

pub mod body;
pub mod buffers;
pub mod docs;
pub mod ex;
pub mod items;
pub mod names;
pub mod onnx;
pub mod plan;
pub mod pytorch;
pub mod recurrent;
pub mod scalar;
pub mod stream;
pub mod wrappers;

use crate::ir::*;
use proc_macro2::{Literal, TokenStream};
use quote::quote;

pub use items::emit_network;

/// Where a node's value lives inside one generated function.
#[derive(Clone)]
pub enum Place {
    /// An owned local: `h`.
    Local(proc_macro2::Ident),
    /// A reference binding (inputs, targets, parameters): `x`, read as `x[i]`, `*x`.
    Ref(proc_macro2::Ident),
    /// A tape field: `tape.h`.
    Tape(proc_macro2::Ident),
    /// A gradient field: `grads.w`.
    Grad(proc_macro2::Ident),
    /// A reference to a sequence, at the current step: `x[t]`.
    RefStep(proc_macro2::Ident),
    /// A per-step tape field, at the current step: `tape.h[t]`.
    TapeStep(proc_macro2::Ident),
    /// A per-step tape field, at the next step: `tape.h[t + 1]`.
    TapeNext(proc_macro2::Ident),
    /// A field of the recurrent state passed to `step`: `state.h`.
    State(proc_macro2::Ident),
}

impl Place {
    /// `&place`.
    pub fn borrow(&self) -> TokenStream {
        match self {
            Place::Local(n) => quote!(&#n),
            Place::Ref(n) => quote!(#n),
            Place::Tape(n) => quote!(&tape.#n),
            Place::Grad(n) => quote!(&grads.#n),
            Place::RefStep(n) => quote!(&#n[t]),
            Place::TapeStep(n) => quote!(&tape.#n[t]),
            Place::TapeNext(n) => quote!(&tape.#n[t + 1]),
            Place::State(n) => quote!(&state.#n),
        }
    }

    /// `&mut place`.
    pub fn borrow_mut(&self) -> TokenStream {
        match self {
            Place::Local(n) => quote!(&mut #n),
            Place::Ref(n) => quote!(#n),
            Place::Tape(n) => quote!(&mut tape.#n),
            Place::Grad(n) => quote!(&mut grads.#n),
            Place::RefStep(n) => quote!(&mut #n[t]),
            Place::TapeStep(n) => quote!(&mut tape.#n[t]),
            Place::TapeNext(n) => quote!(&mut tape.#n[t + 1]),
            Place::State(n) => quote!(&mut state.#n),
        }
    }

    /// The place itself (an lvalue or a scalar value).
    pub fn value(&self) -> TokenStream {
        match self {
            Place::Local(n) => quote!(#n),
            Place::Ref(n) => quote!((*#n)),
            Place::Tape(n) => quote!(tape.#n),
            Place::Grad(n) => quote!(grads.#n),
            Place::RefStep(n) => quote!(#n[t]),
            Place::TapeStep(n) => quote!(tape.#n[t]),
            Place::TapeNext(n) => quote!(tape.#n[t + 1]),
            Place::State(n) => quote!(state.#n),
        }
    }

    /// An element: `place[i]`, `place[i][j]`, ...
    pub fn index(&self, idx: &TokenStream) -> TokenStream {
        let v = match self {
            Place::Ref(n) => quote!(#n),
            other => other.value(),
        };
        quote!(#v #idx)
    }
}

/// Whether a destination already holds what it should (a fresh local is
/// zeros; `Assign` overwrites) or must be added to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// `dest = value`.
    Assign,
    /// `dest += value`.
    Accumulate,
}

/// A tensor reference viewed as a flat slice.
pub fn flat_view(borrowed: TokenStream, shape: &Shape) -> TokenStream {
    match shape.stored_rank() {
        0 => quote!(::core::slice::from_ref(#borrowed)),
        1 => quote!(&(#borrowed)[..]),
        _ => quote!((#borrowed).as_flattened()),
    }
}

/// A shape's stored dimensions (a rank above 2 flat) as unsuffixed
/// literals (`[f32; 4]`, not `[f32; 4usize]`).
pub fn dims(shape: &Shape) -> Vec<Literal> {
    shape
        .stored()
        .0
        .iter()
        .map(|&d| Literal::usize_unsuffixed(d))
        .collect()
}

/// `[i]` or `[i][j]` for a shape's loop variables.
pub fn loop_index(shape: &Shape) -> TokenStream {
    match shape.stored_rank() {
        0 => quote!(),
        1 => quote!([i]),
        _ => quote!([i][j]),
    }
}

/// Wraps `body` in loops over `shape`.
pub fn loops(shape: &Shape, body: TokenStream) -> TokenStream {
    match dims(shape).as_slice() {
        [] => body,
        [n] => quote!(for i in 0..#n { #body }),
        [r, c] => quote!(for i in 0..#r { for j in 0..#c { #body } }),
        _ => unreachable!("a value is stored with at most 2 dimensions"),
    }
}

/// The kernels' path.
pub fn kernels() -> TokenStream {
    quote!(::nn_runtime::__private::kernels)
}

/// For reading expansions (the snapshots, the expansion bench): the items
/// of each `::nn_runtime::__private::if_alloc! { ... }` (top level, or in a
/// `const _` block) in its place, each marked `#[if_alloc]`, since
/// prettyplease leaves a macro's tokens unformatted.
#[cfg(test)]
pub fn show_if_alloc(items: Vec<syn::Item>) -> Vec<syn::Item> {
    let unwrap = |mac: &syn::Macro| -> Option<Vec<syn::Item>> {
        if mac.path.segments.last()?.ident != "if_alloc" {
            return None;
        }
        let inner: syn::File = syn::parse2(mac.tokens.clone()).expect("items");
        Some(
            inner
                .items
                .into_iter()
                .map(|mut item| {
                    let mark: syn::Attribute = syn::parse_quote!(#[if_alloc]);
                    match &mut item {
                        syn::Item::Struct(i) => i.attrs.insert(0, mark),
                        syn::Item::Impl(i) => i.attrs.insert(0, mark),
                        _ => {}
                    }
                    item
                })
                .collect(),
        )
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            syn::Item::Macro(m) if unwrap(&m.mac).is_some() => {
                out.extend(unwrap(&m.mac).unwrap_or_default())
            }
            syn::Item::Const(mut c) => {
                if let syn::Expr::Block(b) = &mut *c.expr {
                    let stmts = std::mem::take(&mut b.block.stmts);
                    for stmt in stmts {
                        let mac = match &stmt {
                            syn::Stmt::Macro(m) => unwrap(&m.mac),
                            syn::Stmt::Item(syn::Item::Macro(m)) => unwrap(&m.mac),
                            _ => None,
                        };
                        match mac {
                            Some(inner) => {
                                b.block.stmts.extend(inner.into_iter().map(syn::Stmt::Item))
                            }
                            None => b.block.stmts.push(stmt),
                        }
                    }
                }
                out.push(syn::Item::Const(c));
            }
            other => out.push(other),
        }
    }
    out
}
