//! The language's built-in names, in one place: functions with their
//! arities, initialisers, dtypes and the special binding `loss`.

/// The binding that is the network's loss.
pub const LOSS: &str = "loss";

/// The time-step index of a recurrent definition: `x[t]`, `h[t-1]`.
pub const STEP: &str = "t";

/// The last time step, after the loop: `h[last]`.
pub const LAST: &str = "last";

/// Every function with the number of arguments it takes (`(min, max)`).
pub const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("sigmoid", 1, 1),
    ("tanh", 1, 1),
    ("relu", 1, 1),
    ("exp", 1, 1),
    ("log", 1, 1),
    ("sqrt", 1, 1),
    ("abs", 1, 1),
    ("softplus", 1, 1),
    ("square", 1, 1),
    ("pow", 2, 2),
    ("sum", 1, 2),
    ("mean", 1, 2),
    ("leaky_relu", 1, 2),
    ("elu", 1, 2),
    ("gelu", 1, 1),
    ("gelu_exact", 1, 1),
    ("silu", 1, 1),
    ("swish", 1, 1),
    ("softsign", 1, 1),
    ("min", 2, 2),
    ("max", 2, 2),
    ("clamp", 3, 3),
    ("where", 3, 3),
    ("softmax", 1, 1),
    ("log_softmax", 1, 1),
    ("logsumexp", 1, 1),
    ("transpose", 1, 1),
    ("dot", 2, 2),
    ("outer", 2, 2),
    ("norm", 1, 1),
    ("concat", 2, 8),
    ("sum_steps", 1, 1),
    ("mean_steps", 1, 1),
    ("dense", 2, 3),
    ("mse", 2, 2),
    ("softmax_cross_entropy", 2, 2),
    ("cross_entropy", 2, 2),
    ("bce_with_logits", 2, 2),
    ("binary_cross_entropy_with_logits", 2, 2),
];

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
