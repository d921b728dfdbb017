//! Train small neural networks whose forward and backward passes are
//! generated at compile time by [`network`](macro@network).
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
//!
//! Without its default features the crate is `#![no_std]` and needs no
//! allocator: the generated `NetParams` then carries the passes
//! (`NetParams::new(seed)`, `params.forward(...)`, `params.backward(...)`)
//! on buffers the caller owns, and plain [`Sgd`] updates them. The
//! features `alloc` and `std` bring back the rest (see the README).
// Without `std` the crate is `no_std` (its unit tests still use std).
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod activation;
#[cfg(feature = "checkpoint")]
pub mod checkpoint;
#[cfg(feature = "alloc")]
pub mod data;
pub mod dropout;
pub mod float;
#[cfg(feature = "train")]
pub mod gradcheck;
pub mod init;
pub mod kernels;
#[cfg(feature = "train")]
mod log;
#[cfg(feature = "alloc")]
pub mod metrics;
pub mod network;
pub mod onnx;
pub mod optim;
#[cfg(feature = "plot")]
pub mod plot;
pub mod rng;
#[cfg(feature = "alloc")]
pub mod summary;
#[cfg(feature = "train")]
pub mod train;

#[cfg(all(test, feature = "alloc"))]
#[cfg_attr(not(feature = "train"), allow(dead_code))]
mod testnet;

pub use activation::Activations;
#[cfg(feature = "checkpoint")]
pub use checkpoint::CheckpointError;
#[cfg(feature = "csv")]
pub use data::{read_csv, read_csv_path, Csv, DataError, Table};
#[cfg(feature = "alloc")]
pub use data::{Dataset, Scaler};
pub use float::Float;
#[cfg(feature = "train")]
pub use gradcheck::{
    check_gradients, check_gradients_batch, check_gradients_dataset, GradCheckError,
    GradCheckOptions, GradCheckReport,
};
pub use init::Init;
pub use kernels::argmax;
#[cfg(feature = "alloc")]
pub use metrics::{accuracy, mean_squared_error, ConfusionMatrix};
pub use network::{Flat, Network, NoBatch, ParamInfo, TargetError, Zeroable};
pub use nn_macro::network;
#[cfg(feature = "onnx")]
pub use onnx::OnnxError;
#[cfg(feature = "alloc")]
pub use optim::{Adam, AdamW, RmsProp, SettingError};
pub use optim::{Clip, Optimizer, Schedule, Sgd};
pub use rng::Rng;
#[cfg(feature = "alloc")]
pub use summary::Summary;
#[cfg(feature = "train")]
pub use train::{
    evaluate, max_threads, EarlyStopping, EpochReport, Evaluation, Metric, TrainError, TrainReport,
    Trainer, Training, MAX_CHUNKS, MAX_THREADS_PER_CORE,
};

/// What a user of the library usually needs in scope.
pub mod prelude {
    #[cfg(feature = "checkpoint")]
    pub use crate::checkpoint::CheckpointError;
    #[cfg(feature = "csv")]
    pub use crate::data::{read_csv, read_csv_path, Csv, DataError, Table};
    #[cfg(feature = "alloc")]
    pub use crate::data::{Dataset, Scaler};
    pub use crate::float::Float;
    #[cfg(feature = "train")]
    pub use crate::gradcheck::{
        check_gradients, check_gradients_batch, check_gradients_dataset, GradCheckError,
        GradCheckOptions, GradCheckReport,
    };
    #[cfg(feature = "alloc")]
    pub use crate::metrics::{accuracy, mean_squared_error, ConfusionMatrix};
    pub use crate::network;
    pub use crate::network::{Flat, Network, ParamInfo, TargetError, Zeroable};
    #[cfg(feature = "onnx")]
    pub use crate::onnx::OnnxError;
    #[cfg(feature = "alloc")]
    pub use crate::optim::{Adam, AdamW, RmsProp, SettingError};
    pub use crate::optim::{Clip, Optimizer, Schedule, Sgd};
    #[cfg(feature = "train")]
    pub use crate::train::{
        evaluate, EarlyStopping, EpochReport, Evaluation, Metric, TrainError, TrainReport, Trainer,
        Training,
    };
}

/// Items the generated code names by absolute path; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::activation::Activations;
    pub use crate::dropout;
    pub use crate::float::Float;
    pub use crate::init::Init;
    pub use crate::kernels;
    pub use crate::network::{
        no_batched_pass, Flat, Network, NoBatch, ParamInfo, TargetError, Zeroable,
    };
    pub use crate::onnx;
    pub use crate::rng::Rng;
    #[cfg(feature = "alloc")]
    pub use crate::summary::Summary;
    #[cfg(feature = "alloc")]
    pub use alloc::boxed::Box;

    /// Expands its input, items the generated code has that need the heap
    /// (the struct with its boxed parameters, its methods and its `Network`
    /// impl), when nn-runtime has the `alloc` feature, and to nothing
    /// without it: the macro cannot see the runtime's features.
    pub use crate::__nn_if_alloc as if_alloc;
}

/// See `__private::if_alloc`: with the `alloc` feature, its input.
#[cfg(feature = "alloc")]
#[doc(hidden)]
#[macro_export]
macro_rules! __nn_if_alloc {
    ($($tokens:tt)*) => {
        $($tokens)*
    };
}

/// See `__private::if_alloc`: without the `alloc` feature, nothing.
#[cfg(not(feature = "alloc"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __nn_if_alloc {
    ($($tokens:tt)*) => {};
}
