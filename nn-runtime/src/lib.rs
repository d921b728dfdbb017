//! Train small neural networks whose forward and backward passes are
//! generated at compile time by [`network`].
//!
//! ```
//! use nn_runtime::prelude::*;
//!
//! /// A 2-4-1 network that learns XOR.
//! #[network {
//!     input  x[2];
//!     target y[1];
//!     h    = sigmoid(dense(x, 4));
//!     out  = sigmoid(dense(h, 1));
//!     loss = mse(out, y);
//! }]
//! pub struct Xor;
//!
//! let mut net = Xor::new(42);
//! let y = net.predict(&[1.0, 0.0]);
//! assert!(y[0] > 0.0 && y[0] < 1.0);
//! ```
#![warn(missing_docs)]

pub mod float;
pub mod init;
pub mod kernels;
pub mod network;
pub mod rng;

pub use float::Float;
pub use init::Init;
pub use network::{Flat, Network, ParamInfo, Zeroable};
pub use nn_macro::network;
pub use rng::Rng;

/// What a user of the library usually needs in scope.
pub mod prelude {
    pub use crate::float::Float;
    pub use crate::network;
    pub use crate::network::{Flat, Network, ParamInfo};
}

/// Items the generated code names by absolute path; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::float::Float;
    pub use crate::init::Init;
    pub use crate::kernels;
    pub use crate::network::{Flat, Network, ParamInfo, Zeroable};
    pub use crate::rng::Rng;
    pub use std::boxed::Box;
}
