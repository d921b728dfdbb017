//! Checkpoints in the [safetensors](https://huggingface.co/docs/safetensors)
//! format, readable by PyTorch (`safetensors.torch.load_file`) and NumPy.
//!
//! Each parameter tensor is stored under its name in the definition
//! (`h.weight`, `h.bias`) with its shape (`[out, in]` for a matrix, PyTorch's
//! `nn.Linear` layout) in the network's scalar type (`F32` or `F64`).
//! Optimiser state is optional: each buffer is stored per tensor as
//! `optim.<buffer>.<name>` (`optim.m.h.weight`), the optimiser's name and
//! step count in the file's metadata (`nn.optimizer`, `nn.optimizer_steps`).
//!
//! Loading validates every name, shape and dtype before it changes anything,
//! and lists every difference, naming the file. Saving is atomic: the bytes
//! go to a temporary file in the same directory (`.<name>.tmp-<pid>-<n>`),
//! which is flushed to disk and then renamed over the target, so a failed
//! save (a full disk, a crash) leaves the previous checkpoint as it was.
//!
//! A save that is killed (`kill -9`, a power cut) leaves its temporary file
//! behind; the next save of the same checkpoint removes such leftovers. A
//! save holds an exclusive lock ([`File::lock`]) on its temporary file until
//! the rename, and the clean-up only removes temporaries it can lock (the
//! operating system drops a dead process's locks), so it never touches one
//! that another save, in this process or another, is still writing.
//!
//! Checkpoints hold finite numbers only: saving a NaN or infinite parameter
//! or optimiser state is an error (the previous file stays), and so is
//! loading one (the network stays as it was).

use crate::float::Float;
use crate::network::{Flat, Network};
use crate::optim::Optimizer;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Metadata key of the optimiser's name.
pub const OPTIMIZER_KEY: &str = "nn.optimizer";
/// Metadata key of the optimiser's step count.
pub const STEPS_KEY: &str = "nn.optimizer_steps";

/// One difference between a checkpoint file and the network (or optimiser)
/// it is loaded into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The network has this tensor; the file does not.
    Missing {
        /// Tensor name.
        name: String,
        /// Its shape in the network.
        shape: Vec<usize>,
    },
    /// The file has this tensor; the network does not.
    Unexpected {
        /// Tensor name.
        name: String,
        /// Its shape in the file.
        shape: Vec<usize>,
    },
    /// Same name, different shapes.
    Shape {
        /// Tensor name.
        name: String,
        /// Shape in the network.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// Same name, different element types.
    Dtype {
        /// Tensor name.
        name: String,
        /// The network's type (`F32` or `F64`).
        expected: String,
        /// The file's type.
        found: String,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Missing { name, shape } => {
                write!(f, "missing tensor `{name}` (shape {shape:?})")
            }
            Mismatch::Unexpected { name, shape } => write!(
                f,
                "unexpected tensor `{name}` (shape {shape:?}): the network has no such parameter"
            ),
            Mismatch::Shape {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor `{name}` has shape {found:?} in the file but {expected:?} in the network"
            ),
            Mismatch::Dtype {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor `{name}` has dtype {found} in the file but the network computes in {expected}"
            ),
        }
    }
}

/// Why a checkpoint could not be saved or loaded; every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading, writing, flushing or renaming failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The checkpoint's path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        error: io::Error,
    },
    /// The file is not a valid safetensors file.
    #[error("{}: not a valid safetensors file: {message}", path.display())]
    Format {
        /// The checkpoint's path.
        path: PathBuf,
        /// What the safetensors parser said.
        message: String,
    },
    /// The file's tensors do not match the network: every difference.
    #[error("{}: the checkpoint does not match the network:{}", path.display(), Listed(problems))]
    Mismatch {
        /// The checkpoint's path.
        path: PathBuf,
        /// Each difference, parameters in definition order first.
        problems: Vec<Mismatch>,
    },
    /// A value to save, or a value in the file, is NaN or infinite; nothing
    /// was written (the previous file is intact) or loaded (the network and
    /// optimiser are unchanged).
    #[error(
        "{}: tensor `{tensor}` element {index} is {value}; checkpoints hold finite numbers \
         only, so nothing was {}",
        path.display(),
        if *saving { "saved (the previous file is intact)" } else { "loaded (the network is unchanged)" }
    )]
    NonFinite {
        /// The checkpoint's path.
        path: PathBuf,
        /// The tensor (`h.weight`, or `optim.m.h.weight` for optimiser state).
        tensor: String,
        /// Row-major index of the element within the tensor.
        index: usize,
        /// The value.
        value: f64,
        /// `true` when saving, `false` when loading.
        saving: bool,
    },
}

/// Each difference on a line of its own.
struct Listed<'a>(&'a [Mismatch]);

impl fmt::Display for Listed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|p| write!(f, "\n  {p}"))
    }
}

fn dtype_of<T: Float>() -> Dtype {
    if T::NAME == "f64" {
        Dtype::F64
    } else {
        Dtype::F32
    }
}

fn to_bytes<T: Float>(values: impl Iterator<Item = f64>, out: &mut Vec<u8>) {
    for v in values {
        if T::NAME == "f64" {
            out.extend_from_slice(&v.to_le_bytes());
        } else {
            out.extend_from_slice(&(v as f32).to_le_bytes());
        }
    }
}

/// Whether a buffer is a batch count (`num_batches_tracked`), an `I64` in
/// the file.
fn is_counter(info: &crate::network::ParamInfo) -> bool {
    info.name.ends_with(".num_batches_tracked")
}

fn from_bytes(dtype: Dtype, bytes: &[u8]) -> impl Iterator<Item = f64> + '_ {
    let width = if matches!(dtype, Dtype::F64 | Dtype::I64) {
        8
    } else {
        4
    };
    bytes.chunks_exact(width).map(move |c| {
        if dtype == Dtype::I64 {
            i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64
        } else if width == 8 {
            f64::from_le_bytes(c.try_into().expect("8 bytes"))
        } else {
            f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64
        }
    })
}

/// An optimiser's name, step count and named state buffers, to save.
type OptimizerState<'a> = (&'a str, u64, Vec<(&'static str, &'a [f64])>);

/// A tensor the network (or optimiser) expects: name, shape, flat range,
/// and the optimiser buffer it belongs to (`None`: a parameter).
type Expected = (
    String,
    &'static [usize],
    core::ops::Range<usize>,
    Option<usize>,
);

/// The first non-finite value of `values` as an error, if any.
fn check_finite<N: Network>(
    path: &Path,
    tensor: impl Fn(&str) -> String,
    values: impl Fn(core::ops::Range<usize>) -> Option<(usize, f64)>,
    saving: bool,
) -> Result<(), CheckpointError> {
    for info in N::PARAM_INFO {
        if let Some((index, value)) = values(info.range()) {
            return Err(CheckpointError::NonFinite {
                path: path.to_owned(),
                tensor: tensor(info.name),
                index,
                value,
                saving,
            });
        }
    }
    Ok(())
}

/// The first non-finite element of `values` and its index.
fn first_non_finite(values: impl Iterator<Item = f64>) -> Option<(usize, f64)> {
    values.enumerate().find(|(_, v)| !v.is_finite())
}

/// The serialised checkpoint of `net` (and optionally an optimiser's state),
/// refused if any value is not finite.
fn serialize<N: Network>(
    net: &N,
    optimizer: Option<OptimizerState<'_>>,
    path: &Path,
) -> Result<Vec<u8>, CheckpointError> {
    let params = net.params().as_slice();
    check_finite::<N>(
        path,
        str::to_owned,
        |r| first_non_finite(params[r].iter().map(|v| v.to_f64())),
        true,
    )?;
    let format_err = |message: String| CheckpointError::Format {
        path: path.to_owned(),
        message,
    };
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for info in N::PARAM_INFO {
        let mut bytes = Vec::new();
        to_bytes::<N::Scalar>(params[info.range()].iter().map(|v| v.to_f64()), &mut bytes);
        tensors.push((info.name.to_owned(), info.shape.to_vec(), bytes));
    }
    let buffers = net.params().buffers();
    for info in N::BUFFER_INFO {
        let values = &buffers[info.range()];
        if let Some((index, value)) = first_non_finite(values.iter().map(|v| v.to_f64())) {
            return Err(CheckpointError::NonFinite {
                path: path.to_owned(),
                tensor: info.name.to_owned(),
                index,
                value,
                saving: true,
            });
        }
        let mut bytes = Vec::new();
        if is_counter(info) {
            for v in values {
                bytes.extend_from_slice(&(v.to_f64() as i64).to_le_bytes());
            }
        } else {
            to_bytes::<N::Scalar>(values.iter().map(|v| v.to_f64()), &mut bytes);
        }
        tensors.push((info.name.to_owned(), info.shape.to_vec(), bytes));
    }
    let mut metadata = HashMap::new();
    // What PyTorch's `save_file` writes; lets `safetensors.torch` load it.
    metadata.insert("format".to_owned(), "pt".to_owned());
    if let Some((name, steps, state)) = optimizer {
        metadata.insert(OPTIMIZER_KEY.to_owned(), name.to_owned());
        metadata.insert(STEPS_KEY.to_owned(), steps.to_string());
        for (buffer, values) in state {
            if values.len() != params.len() {
                return Err(format_err(format!(
                    "optimizer state `{buffer}` has {} values for {} parameters",
                    values.len(),
                    params.len()
                )));
            }
            check_finite::<N>(
                path,
                |name| format!("optim.{buffer}.{name}"),
                // Stored in the network's scalar type: an `f64` state beyond
                // the `f32` range would be saved as infinity.
                |r| first_non_finite(values[r].iter().map(|&v| N::Scalar::from_f64(v).to_f64())),
                true,
            )?;
            for info in N::PARAM_INFO {
                let mut bytes = Vec::new();
                to_bytes::<N::Scalar>(values[info.range()].iter().copied(), &mut bytes);
                tensors.push((
                    format!("optim.{buffer}.{}", info.name),
                    info.shape.to_vec(),
                    bytes,
                ));
            }
        }
    }
    let dtype = dtype_of::<N::Scalar>();
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            let counter = N::BUFFER_INFO
                .iter()
                .any(|b| b.name == name && is_counter(b));
            let dtype = if counter { Dtype::I64 } else { dtype };
            TensorView::new(dtype, shape.clone(), bytes)
                .map(|v| (name.as_str(), v))
                .map_err(|e| format_err(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| format_err(e.to_string()))
}

static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// An unlocked temporary file younger than this and still empty may belong
/// to a save that has just created it and not yet locked it: left alone.
const FRESH: Duration = Duration::from_secs(60);

/// The prefix of the temporary files of checkpoint `file_name`.
fn temp_prefix(file_name: &std::ffi::OsStr) -> String {
    format!(".{}.tmp-", file_name.to_string_lossy())
}

/// Whether `rest` (a temporary's name after the prefix) is `<pid>-<n>`.
fn is_temp_suffix(rest: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    rest.split_once('-')
        .is_some_and(|(pid, n)| digits(pid) && digits(n))
}

/// Removes the temporary files of checkpoint `file_name` in `dir` that a
/// killed save left behind: those no live save holds locked. Best effort:
/// any error (an unreadable directory, a file that cannot be locked) leaves
/// the file alone.
pub(crate) fn remove_stale_temporaries(dir: &Path, file_name: &std::ffi::OsStr) {
    let prefix = temp_prefix(file_name);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.strip_prefix(&prefix).is_some_and(is_temp_suffix) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = File::open(&path) else {
            continue;
        };
        // A live save holds its temporary locked until the rename.
        if file.try_lock().is_err() {
            continue;
        }
        // Nobody holds it: the save that made it is gone, unless it has
        // only just created it (then the file is empty and new).
        let Ok(meta) = file.metadata() else {
            continue;
        };
        let fresh = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_none_or(|age| age < FRESH);
        if meta.len() == 0 && fresh {
            continue;
        }
        let _ = fs::remove_file(&path);
    }
}

/// Writes `bytes` to `path` atomically through `write` (the seam tests use
/// to inject a failure): first removes what killed saves of `path` left
/// behind, then writes a temporary file in the same directory (locked while
/// it is written), flushes it to disk, renames it over `path`, and flushes
/// the directory. On any failure the temporary file is removed and `path`
/// is untouched.
pub(crate) fn write_atomic(
    path: &Path,
    bytes: &[u8],
    write: &mut dyn FnMut(&mut File, &[u8]) -> io::Result<()>,
) -> Result<(), CheckpointError> {
    let io_err = |error| CheckpointError::Io {
        path: path.to_owned(),
        error,
    };
    let file_name = path.file_name().ok_or_else(|| {
        io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a checkpoint path must name a file",
        ))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    remove_stale_temporaries(dir, file_name);
    // The temporary this save created, once it has (only that one is
    // removed on failure).
    let mut tmp: Option<PathBuf> = None;
    let result = (|| {
        // A name of its own: a leftover of a killed process that had the
        // same id (and was not removed above) only moves this one on.
        let mut attempts = 0;
        let (mut file, name) = loop {
            let name = dir.join(format!(
                "{}{}-{}",
                temp_prefix(file_name),
                std::process::id(),
                TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            match OpenOptions::new().write(true).create_new(true).open(&name) {
                Ok(file) => break (file, name),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => {
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let tmp = tmp.insert(name);
        // Held until the file is renamed and closed, so that no other save's
        // clean-up takes it for a leftover. Where the file system cannot
        // lock, the clean-up cannot either and removes nothing.
        let _ = file.lock();
        write(&mut file, bytes)?;
        file.sync_all()?;
        fs::rename(&*tmp, path)?;
        drop(file);
        // Make the rename itself durable; not every platform can open a
        // directory, so this is best effort.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(error) = result {
        if let Some(tmp) = tmp {
            let _ = fs::remove_file(tmp);
        }
        return Err(io_err(error));
    }
    Ok(())
}

fn save_impl<N: Network>(
    net: &N,
    optimizer: Option<OptimizerState<'_>>,
    path: &Path,
    write: &mut dyn FnMut(&mut File, &[u8]) -> io::Result<()>,
) -> Result<(), CheckpointError> {
    let bytes = serialize(net, optimizer, path)?;
    write_atomic(path, &bytes, write)
}

fn write_all(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    file.write_all(bytes)
}

/// Saves `net`'s parameters to `path` (atomically; see the module docs).
///
/// # Errors
/// If the file cannot be written, or a parameter is NaN or infinite; the
/// previous file at `path`, if any, is then intact.
pub fn save<N: Network>(net: &N, path: impl AsRef<Path>) -> Result<(), CheckpointError> {
    save_impl(net, None, path.as_ref(), &mut write_all)
}

/// Saves `net`'s parameters and `optimizer`'s state to `path` (atomically).
///
/// # Errors
/// As [`save`].
pub fn save_with_optimizer<N, O>(
    net: &N,
    optimizer: &O,
    path: impl AsRef<Path>,
) -> Result<(), CheckpointError>
where
    N: Network,
    O: Optimizer<N::Scalar> + ?Sized,
{
    let state = (optimizer.name(), optimizer.steps(), optimizer.state());
    save_impl(net, Some(state), path.as_ref(), &mut write_all)
}

/// Loads `net`'s parameters from `path`. Tensors named `optim.*` (optimiser
/// state) are allowed and ignored; any other difference is an error, and
/// then `net` is unchanged.
///
/// # Errors
/// If the file cannot be read or parsed, any tensor is missing,
/// unexpected, or of another shape or dtype (all are listed), or a value
/// is NaN or infinite.
pub fn load<N: Network>(net: &mut N, path: impl AsRef<Path>) -> Result<(), CheckpointError> {
    load_impl::<N, crate::optim::Sgd>(net, None, path.as_ref(), &|name| Some(name.to_owned()))
}

/// [`load`] from a file whose tensors have other names, such as a state
/// dict saved by PyTorch (`model.0.weight`, `rnn.weight_ih_l0`): `rename`
/// maps each name in the file to the network's name for it, or to `None` to
/// skip that tensor (a buffer the network does not keep). Everything else is
/// as `load`: every tensor of the network must be found, with its shape
/// and dtype, and differences are reported under the network's names.
///
/// ```no_run
/// # use nn_runtime::prelude::*;
/// # #[network { input x[4]; target y[2]; h = relu(dense(x, 8)); out = dense(h, 2); loss = mse(out, y); }]
/// # pub struct Net;
/// # let mut net = Net::new(0);
/// // an `nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))`
/// nn_runtime::checkpoint::load_renamed(&mut net, "torch.safetensors", |name| {
///     Some(name.replacen("0.", "h.", 1).replacen("2.", "out.", 1))
/// })?;
/// # Ok::<(), CheckpointError>(())
/// ```
///
/// # Errors
/// As [`load`]; two tensors of the file renamed to the same name are an
/// error too (the second is reported as unexpected).
pub fn load_renamed<N: Network>(
    net: &mut N,
    path: impl AsRef<Path>,
    rename: impl Fn(&str) -> Option<String>,
) -> Result<(), CheckpointError> {
    load_impl::<N, crate::optim::Sgd>(net, None, path.as_ref(), &rename)
}

/// Loads `net`'s parameters and `optimizer`'s state from `path` (a file saved
/// by [`save_with_optimizer`] for the same kind of optimiser); `optimizer` is
/// initialised for the network first. Nothing changes unless everything matches.
///
/// # Errors
/// As [`load`]; the optimiser's buffers are required (`optim.m.h.weight`, ...).
pub fn load_with_optimizer<N, O>(
    net: &mut N,
    optimizer: &mut O,
    path: impl AsRef<Path>,
) -> Result<(), CheckpointError>
where
    N: Network,
    O: Optimizer<N::Scalar> + ?Sized,
{
    load_impl(net, Some(optimizer), path.as_ref(), &|name| {
        Some(name.to_owned())
    })
}

fn load_impl<N, O>(
    net: &mut N,
    mut optimizer: Option<&mut O>,
    path: &Path,
    rename: &dyn Fn(&str) -> Option<String>,
) -> Result<(), CheckpointError>
where
    N: Network,
    O: Optimizer<N::Scalar> + ?Sized,
{
    let bytes = fs::read(path).map_err(|error| CheckpointError::Io {
        path: path.to_owned(),
        error,
    })?;
    let format_err = |message: String| CheckpointError::Format {
        path: path.to_owned(),
        message,
    };
    let file = SafeTensors::deserialize(&bytes).map_err(|e| format_err(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| format_err(e.to_string()))?;

    // Everything the network (and optimiser) expects: name -> (shape, flat range, buffer).
    let n_params = <N::Params as Flat<N::Scalar>>::LEN;
    let mut buffers: Vec<&'static str> = Vec::new();
    if let Some(opt) = optimizer.as_deref_mut() {
        opt.init(n_params);
        buffers = opt.state().iter().map(|(b, _)| *b).collect();
    }
    let mut expected: Vec<Expected> = Vec::new();
    for info in N::PARAM_INFO {
        expected.push((info.name.to_owned(), info.shape, info.range(), None));
    }
    for (b, buffer) in buffers.iter().enumerate() {
        for info in N::PARAM_INFO {
            expected.push((
                format!("optim.{buffer}.{}", info.name),
                info.shape,
                info.range(),
                Some(b),
            ));
        }
    }

    let dtype = dtype_of::<N::Scalar>();
    let mut problems = Vec::new();
    let mut found: BTreeMap<String, TensorView<'_>> = BTreeMap::new();
    for (name, view) in file.tensors() {
        let Some(name) = rename(&name) else { continue };
        match found.entry(name) {
            std::collections::btree_map::Entry::Occupied(e) => {
                problems.push(Mismatch::Unexpected {
                    name: e.key().clone(),
                    shape: view.shape().to_vec(),
                })
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(view);
            }
        }
    }
    let mut matched = Vec::new();
    for (name, shape, range, buffer) in &expected {
        match found.remove(name) {
            None => problems.push(Mismatch::Missing {
                name: name.clone(),
                shape: shape.to_vec(),
            }),
            Some(view) => {
                let mut ok = true;
                if view.shape() != *shape {
                    ok = false;
                    problems.push(Mismatch::Shape {
                        name: name.clone(),
                        expected: shape.to_vec(),
                        found: view.shape().to_vec(),
                    });
                }
                if view.dtype() != dtype {
                    ok = false;
                    problems.push(Mismatch::Dtype {
                        name: name.clone(),
                        expected: dtype.to_string(),
                        found: view.dtype().to_string(),
                    });
                }
                if ok {
                    matched.push((view, range.clone(), *buffer));
                }
            }
        }
    }
    let mut matched_buffers = Vec::new();
    for info in N::BUFFER_INFO {
        let want = if is_counter(info) { Dtype::I64 } else { dtype };
        match found.remove(info.name) {
            None => problems.push(Mismatch::Missing {
                name: info.name.to_owned(),
                shape: info.shape.to_vec(),
            }),
            Some(view) if view.shape() != info.shape => problems.push(Mismatch::Shape {
                name: info.name.to_owned(),
                expected: info.shape.to_vec(),
                found: view.shape().to_vec(),
            }),
            Some(view) if view.dtype() != want => problems.push(Mismatch::Dtype {
                name: info.name.to_owned(),
                expected: want.to_string(),
                found: view.dtype().to_string(),
            }),
            Some(view) => matched_buffers.push((view, info)),
        }
    }
    for (name, view) in found {
        // Optimiser state is optional when loading the network alone.
        if optimizer.is_none() && name.starts_with("optim.") {
            continue;
        }
        problems.push(Mismatch::Unexpected {
            name,
            shape: view.shape().to_vec(),
        });
    }
    if !problems.is_empty() {
        return Err(CheckpointError::Mismatch {
            path: path.to_owned(),
            problems,
        });
    }
    for (view, range, buffer) in &matched {
        if let Some((index, value)) = first_non_finite(from_bytes(view.dtype(), view.data())) {
            let info = N::PARAM_INFO.iter().find(|p| p.range() == *range);
            let name = info.map_or("?", |p| p.name);
            return Err(CheckpointError::NonFinite {
                path: path.to_owned(),
                tensor: match buffer {
                    None => name.to_owned(),
                    Some(b) => format!("optim.{}.{name}", buffers[*b]),
                },
                index,
                value,
                saving: false,
            });
        }
    }
    for (view, info) in &matched_buffers {
        let values = from_bytes(view.dtype(), view.data()).map(|v| N::Scalar::from_f64(v).to_f64());
        if let Some((index, value)) = first_non_finite(values) {
            return Err(CheckpointError::NonFinite {
                path: path.to_owned(),
                tensor: info.name.to_owned(),
                index,
                value,
                saving: false,
            });
        }
    }
    let steps = match (&optimizer, header.metadata()) {
        (Some(_), Some(meta)) => match meta.get(STEPS_KEY) {
            Some(s) => s.parse::<u64>().map_err(|_| {
                format_err(format!("metadata `{STEPS_KEY}` is `{s}`, not a step count"))
            })?,
            None => 0,
        },
        _ => 0,
    };

    // All checked: now copy.
    let params = net.params_mut().as_mut_slice();
    for (view, range, buffer) in &matched {
        if buffer.is_none() {
            for (p, v) in params[range.clone()]
                .iter_mut()
                .zip(from_bytes(view.dtype(), view.data()))
            {
                *p = N::Scalar::from_f64(v);
            }
        }
    }
    let buffers = net.params_mut().buffers_mut();
    for (view, info) in &matched_buffers {
        for (b, v) in buffers[info.range()]
            .iter_mut()
            .zip(from_bytes(view.dtype(), view.data()))
        {
            *b = N::Scalar::from_f64(v);
        }
    }
    if let Some(opt) = optimizer {
        let mut state = opt.state_mut();
        for (view, range, buffer) in &matched {
            if let Some(b) = buffer {
                for (s, v) in state[*b].1[range.clone()]
                    .iter_mut()
                    .zip(from_bytes(view.dtype(), view.data()))
                {
                    *s = v;
                }
            }
        }
        drop(state);
        opt.set_steps(steps);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::Adam;
    use crate::testnet::Linear;
    use safetensors::Dtype;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nn-ckpt-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip_with_and_without_optimizer_state() {
        let d = dir("rt");
        let path = d.join("lin.safetensors");
        let net = Linear::with([1.5, -2.25], 0.125);
        save(&net, &path).unwrap();
        let mut back = Linear::with([0.0, 0.0], 0.0);
        load(&mut back, &path).unwrap();
        assert_eq!(*back.params, *net.params);

        let mut adam = Adam::new(0.1);
        Optimizer::<f64>::init(&mut adam, 3);
        let mut p = [1.0, 2.0, 3.0];
        adam.step(&mut p, &[0.5, -0.5, 1.0]);
        adam.step(&mut p, &[0.25, 0.5, -1.0]);
        save_with_optimizer(&net, &adam, &path).unwrap();
        let mut adam2 = Adam::new(0.1);
        load_with_optimizer(&mut back, &mut adam2, &path).unwrap();
        assert_eq!(Optimizer::<f64>::steps(&adam2), 2);
        assert_eq!(
            Optimizer::<f64>::state(&adam2),
            Optimizer::<f64>::state(&adam)
        );
        // The network alone loads from a file with optimiser state.
        load(&mut back, &path).unwrap();
        // ... but an optimiser cannot load from a file without its state.
        save(&net, &path).unwrap();
        let e = load_with_optimizer(&mut back, &mut adam2, &path).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("missing tensor `optim.m.w` (shape [2])"),
            "{msg}"
        );
        assert!(
            msg.contains("missing tensor `optim.v.b` (shape [1])"),
            "{msg}"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_write_keeps_the_old_checkpoint() {
        let d = dir("atomic");
        let path = d.join("lin.safetensors");
        let old = Linear::with([1.0, 2.0], 3.0);
        save(&old, &path).unwrap();
        let old_bytes = fs::read(&path).unwrap();
        // A disk that fills up half-way through the write.
        let mut full_disk = |f: &mut File, bytes: &[u8]| {
            f.write_all(&bytes[..bytes.len() / 2])?;
            Err(io::Error::other("No space left on device (injected)"))
        };
        let new = Linear::with([9.0, 9.0], 9.0);
        let err = save_impl(&new, None, &path, &mut full_disk).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: No space left on device (injected)", path.display())
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            old_bytes,
            "old checkpoint changed"
        );
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("lin.safetensors")]);
        let mut back = Linear::with([0.0, 0.0], 0.0);
        load(&mut back, &path).unwrap();
        assert_eq!(*back.params, *old.params);
        // A directory that does not exist: an error naming the path, nothing created.
        let missing = d.join("no/such/dir/x.safetensors");
        let e = save(&old, &missing).unwrap_err();
        assert!(e.to_string().starts_with(&missing.display().to_string()));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn garbage_is_a_format_error_naming_the_file() {
        let d = dir("garbage");
        let path = d.join("bad.safetensors");
        fs::write(&path, b"not a checkpoint at all").unwrap();
        let mut net = Linear::with([1.0, 2.0], 3.0);
        let e = load(&mut net, &path).unwrap_err();
        assert!(matches!(e, CheckpointError::Format { .. }), "{e:?}");
        assert!(e
            .to_string()
            .starts_with(&format!("{}: not a valid safetensors file", path.display())));
        assert_eq!(net.params.w, [1.0, 2.0]);
        let e = load(&mut net, d.join("absent.safetensors")).unwrap_err();
        assert!(matches!(e, CheckpointError::Io { .. }));
        fs::remove_dir_all(&d).unwrap();
    }

    fn names_in(d: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn nothing_non_finite_is_saved_or_loaded() {
        let d = dir("nonfinite");
        let path = d.join("lin.safetensors");
        let good = Linear::with([1.0, 2.0], 3.0);
        save(&good, &path).unwrap();
        let old = fs::read(&path).unwrap();
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let net = Linear::with([1.0, bad], 3.0);
            let e = save(&net, &path).unwrap_err();
            assert!(
                matches!(&e, CheckpointError::NonFinite { tensor, index: 1, saving: true, .. } if tensor == "w"),
                "{e:?}"
            );
            assert_eq!(
                e.to_string(),
                format!(
                    "{}: tensor `w` element 1 is {bad}; checkpoints hold finite numbers only, \
                     so nothing was saved (the previous file is intact)",
                    path.display()
                )
            );
            assert_eq!(fs::read(&path).unwrap(), old);
        }
        // Optimiser state too.
        let mut adam = Adam::new(0.1);
        Optimizer::<f64>::init(&mut adam, 3);
        Optimizer::<f64>::state_mut(&mut adam)[1].1[2] = f64::NAN;
        let e = save_with_optimizer(&good, &adam, &path).unwrap_err();
        assert!(
            e.to_string()
                .contains("tensor `optim.v.b` element 0 is NaN"),
            "{e}"
        );
        assert_eq!(fs::read(&path).unwrap(), old);
        assert_eq!(names_in(&d), ["lin.safetensors"]);

        // A file with a NaN in it (written by another tool) is not loaded.
        let w = [1.0f64, f64::NAN].map(f64::to_le_bytes).concat();
        let b = 3.0f64.to_le_bytes();
        let views = vec![
            ("w", TensorView::new(Dtype::F64, vec![2], &w).unwrap()),
            ("b", TensorView::new(Dtype::F64, vec![1], &b).unwrap()),
        ];
        let nan_file = d.join("nan.safetensors");
        fs::write(&nan_file, safetensors::serialize(views, None).unwrap()).unwrap();
        let mut net = Linear::with([5.0, 6.0], 7.0);
        let e = load(&mut net, &nan_file).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: tensor `w` element 1 is NaN; checkpoints hold finite numbers only, \
                 so nothing was loaded (the network is unchanged)",
                nan_file.display()
            )
        );
        assert_eq!(*net.params, *Linear::with([5.0, 6.0], 7.0).params);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_save_removes_what_killed_saves_left_but_not_live_ones() {
        let d = dir("stale");
        let path = d.join("lin.safetensors");
        let net = Linear::with([1.0, 2.0], 3.0);
        save(&net, &path).unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let p = d.join(name);
            fs::write(&p, bytes).unwrap();
            p
        };
        // What a save killed half-way leaves: a partial temporary, unlocked.
        write(".lin.safetensors.tmp-4242-0", &[7u8; 1000]);
        write(".lin.safetensors.tmp-4242-1", &[7u8; 10]);
        // An empty one an hour old: a save killed right after creating it.
        let old_empty = write(".lin.safetensors.tmp-4243-0", b"");
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&old_empty)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
        // An empty new one: possibly a save that has not locked it yet.
        write(".lin.safetensors.tmp-4244-0", b"");
        // A live save in progress: its temporary is locked.
        let live = write(".lin.safetensors.tmp-4245-0", &[1u8; 100]);
        let holder = File::open(&live).unwrap();
        holder.lock().unwrap();
        // Other files are never touched: another checkpoint's temporary,
        // names that only look similar, the user's own files.
        write(".other.safetensors.tmp-4242-0", b"x");
        write(".lin.safetensors.tmp-notes", b"x");
        write(".lin.safetensors.tmp-12", b"x");
        write("lin.safetensors.tmp-1-1", b"x");

        save(&net, &path).unwrap();
        assert_eq!(
            names_in(&d),
            [
                ".lin.safetensors.tmp-12",
                ".lin.safetensors.tmp-4244-0",
                ".lin.safetensors.tmp-4245-0",
                ".lin.safetensors.tmp-notes",
                ".other.safetensors.tmp-4242-0",
                "lin.safetensors",
                "lin.safetensors.tmp-1-1",
            ]
        );
        // A leftover with the very name this save would take next (a killed
        // process with the same id; empty and new, so not removed): the save
        // moves on to another name and leaves it alone.
        let next = TEMP_COUNTER.load(Ordering::SeqCst);
        let taken: Vec<PathBuf> = (next..next + 3)
            .map(|n| {
                write(
                    &format!(".lin.safetensors.tmp-{}-{n}", std::process::id()),
                    b"",
                )
            })
            .collect();
        save(&net, &path).unwrap();
        for t in &taken {
            assert!(t.exists(), "{}", t.display());
            fs::remove_file(t).unwrap();
        }
        // Once the live save is gone (its lock released), the next save
        // removes its leftover too.
        drop(holder);
        save(&net, &path).unwrap();
        assert!(!live.exists());
        let mut back = Linear::with([0.0, 0.0], 0.0);
        load(&mut back, &path).unwrap();
        assert_eq!(*back.params, *net.params);
        fs::remove_dir_all(&d).unwrap();
    }
}
