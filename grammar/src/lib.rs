//! The network definition language of `#[network]`: the pest grammar
//! (`network.pest`), the syntax tree with byte spans, the parser, and
//! diagnostics rendered with line, column and caret.
//!
//! This crate knows nothing of proc macros: `nn-macro` turns an attribute's
//! tokens into text, calls [`parse_definition`], and maps spans back.

pub mod ast;
pub mod error;
pub mod limits;
pub mod parse;

pub use ast::*;
pub use error::{did_you_mean, line_of, Diagnostic};
pub use parse::parse_definition;
