//! The network definition language of `#[network]`: the pest grammar
//! (`network.pest`), the syntax tree with byte spans, the parser, and
//! diagnostics rendered with line, column and caret. The parser itself is
//! generated from the grammar ahead of time (`src/generated.rs`, checked
//! against the grammar by a test), so building this crate compiles no code
//! generator.
//!
//! This crate knows nothing of proc macros: `nn-macro` turns an attribute's
//! tokens into text, calls [`parse_definition`], and maps spans back.

pub mod ast;
pub mod error;
// pest generates helpers (`Rule::all_rules`) this crate does not call.
// rustfmt is left out: the file is prettyplease's output, and rustfmt takes
// minutes on its deeply nested closures.
#[allow(dead_code)]
#[rustfmt::skip]
mod generated;
pub mod limits;
pub mod parse;

pub use ast::*;
pub use error::{did_you_mean, line_of, Diagnostic};
pub use parse::parse_definition;
