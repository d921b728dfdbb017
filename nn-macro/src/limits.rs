//! The largest definitions the macro accepts, in one place (the README's
//! "Limits" section lists them). Beyond each, the definition is a compile
//! error at the tokens that cross it, never a crash, a hang or code that
//! does not compile.

/// Elements of one tensor (a declared input, target, parameter or state, or
/// any value computed from them; a per-step value counts all its steps).
pub const MAX_ELEMENTS: usize = 1 << 32;

/// Elements of all the values a definition computes, added up (bounds the
/// sizes of the generated parameter and tape structs).
pub const MAX_TOTAL_ELEMENTS: usize = 1 << 40;

/// Operations of the lowered graph (after user functions are inlined).
pub const MAX_OPERATIONS: usize = 1_000_000;

/// Nested levels of an expression while it is lowered, counting the bodies
/// of the user functions it calls (each call adds its body's depth).
pub const MAX_CALL_DEPTH: usize = 256;

/// The largest magnitude a constant may have in an `f32` network.
pub const F32_MAX: f64 = f32::MAX as f64;
