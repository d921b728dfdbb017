//! The language's reserved names, in one place: initialisers, dtypes, the
//! special binding `loss` and the step indices (the built-in functions are
//! the op table's, `crate::ops`).

/// The binding that is the network's loss.
pub const LOSS: &str = "loss";

/// The time-step index of a recurrent definition: `x[t]`, `h[t-1]`.
pub const STEP: &str = "t";

/// The last time step, after the loop: `h[last]`.
pub const LAST: &str = "last";

/// Initialisers with the number of numeric arguments each takes.
pub const INITS: &[(&str, usize)] = &[
    ("zeros", 0),
    ("constant", 1),
    ("uniform", 2),
    ("normal", 2),
    ("xavier", 0),
    ("glorot", 0),
    ("xavier_uniform", 0),
    ("glorot_uniform", 0),
    ("xavier_normal", 0),
    ("glorot_normal", 0),
    ("he", 0),
    ("kaiming", 0),
    ("he_normal", 0),
    ("kaiming_normal", 0),
    ("he_uniform", 0),
    ("kaiming_uniform", 0),
];

/// Scalar types a definition may ask for.
pub const DTYPES: &[&str] = &["f32", "f64"];
