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
#![warn(missing_docs)]

pub mod activation;
#[cfg(feature = "checkpoint")]
pub mod checkpoint;
pub mod data;
pub mod float;
#[cfg(feature = "train")]
pub mod gradcheck;
pub mod init;
pub mod kernels;
#[cfg(feature = "train")]
mod log;
pub mod metrics;
pub mod network;
pub mod onnx;
pub mod optim;
#[cfg(feature = "plot")]
pub mod plot;
pub mod rng;
pub mod summary;
#[cfg(feature = "train")]
pub mod train;

#[cfg(test)]
#[cfg_attr(not(feature = "train"), allow(dead_code))]
mod testnet;

pub use activation::Activations;
#[cfg(feature = "checkpoint")]
pub use checkpoint::CheckpointError;
pub use data::{argmax, Dataset, Scaler};
#[cfg(feature = "csv")]
pub use data::{read_csv, read_csv_path, Csv, DataError, Table};
pub use float::Float;
#[cfg(feature = "train")]
pub use gradcheck::{
    check_gradients, check_gradients_batch, check_gradients_dataset, GradCheckError,
    GradCheckOptions, GradCheckReport,
};
pub use init::Init;
pub use metrics::{accuracy, mean_squared_error, ConfusionMatrix};
pub use network::{Flat, Network, NoBatch, ParamInfo, TargetError, Zeroable};
pub use nn_macro::network;
#[cfg(feature = "onnx")]
pub use onnx::OnnxError;
pub use optim::{Adam, AdamW, Clip, Optimizer, RmsProp, Schedule, SettingError, Sgd};
pub use rng::Rng;
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
    pub use crate::data::{Dataset, Scaler};
    pub use crate::float::Float;
    #[cfg(feature = "train")]
    pub use crate::gradcheck::{
        check_gradients, check_gradients_batch, check_gradients_dataset, GradCheckError,
        GradCheckOptions, GradCheckReport,
    };
    pub use crate::metrics::{accuracy, mean_squared_error, ConfusionMatrix};
    pub use crate::network;
    pub use crate::network::{Flat, Network, ParamInfo, TargetError};
    #[cfg(feature = "onnx")]
    pub use crate::onnx::OnnxError;
    pub use crate::optim::{Adam, AdamW, Clip, Optimizer, RmsProp, Schedule, SettingError, Sgd};
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
    pub use crate::float::Float;
    pub use crate::init::Init;
    pub use crate::kernels;
    pub use crate::network::{
        no_batched_pass, Flat, Network, NoBatch, ParamInfo, TargetError, Zeroable,
    };
    pub use crate::onnx;
    pub use crate::rng::Rng;
    pub use crate::summary::Summary;
    pub use std::boxed::Box;
}
