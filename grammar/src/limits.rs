//! How deep a definition may nest. Parsing and the later stages walk the
//! syntax tree recursively, so its depth is bounded here, with an error at
//! the tokens that go deeper, instead of a stack overflow inside the
//! compiler. Long flat sequences (a sum of many terms, many statements) are
//! not limited: they are kept flat and walked in loops.

/// Brackets `(` and `[` may nest this many levels deep.
pub const MAX_NESTING: usize = 64;

/// An expression's syntax tree may be this many levels deep: each function
/// call, operator, unary minus, slice or step index around an operand is one
/// level; a chain of `+ -`, `* / @` or comparisons counts one level for the
/// whole chain, however long.
pub const MAX_DEPTH: usize = 128;
