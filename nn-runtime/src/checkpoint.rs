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
//! go to a temporary file in the same directory, which is flushed to disk
//! and then renamed over the target, so a failed save (a full disk, a crash)
//! leaves the previous checkpoint as it was.

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
#[derive(Debug)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading, writing, flushing or renaming failed.
    Io {
        /// The checkpoint's path.
        path: PathBuf,
        /// The underlying error.
        error: io::Error,
    },
    /// The file is not a valid safetensors file.
    Format {
        /// The checkpoint's path.
        path: PathBuf,
        /// What the safetensors parser said.
        message: String,
    },
    /// The file's tensors do not match the network: every difference.
    Mismatch {
        /// The checkpoint's path.
        path: PathBuf,
        /// Each difference, parameters in definition order first.
        problems: Vec<Mismatch>,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            CheckpointError::Format { path, message } => write!(
                f,
                "{}: not a valid safetensors file: {message}",
                path.display()
            ),
            CheckpointError::Mismatch { path, problems } => {
                write!(
                    f,
                    "{}: the checkpoint does not match the network:",
                    path.display()
                )?;
                for p in problems {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for CheckpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckpointError::Io { error, .. } => Some(error),
            _ => None,
        }
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

fn from_bytes(dtype: Dtype, bytes: &[u8]) -> impl Iterator<Item = f64> + '_ {
    let width = if dtype == Dtype::F64 { 8 } else { 4 };
    bytes.chunks_exact(width).map(move |c| {
        if width == 8 {
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

/// The serialised checkpoint of `net` (and optionally an optimiser's state).
fn serialize<N: Network>(
    net: &N,
    optimizer: Option<OptimizerState<'_>>,
) -> Result<Vec<u8>, String> {
    let params = net.params().as_slice();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for info in N::PARAM_INFO {
        let mut bytes = Vec::new();
        to_bytes::<N::Scalar>(params[info.range()].iter().map(|v| v.to_f64()), &mut bytes);
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
                return Err(format!(
                    "optimizer state `{buffer}` has {} values for {} parameters",
                    values.len(),
                    params.len()
                ));
            }
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
            TensorView::new(dtype, shape.clone(), bytes)
                .map(|v| (name.as_str(), v))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
}

static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Writes `bytes` to `path` atomically through `write` (the seam tests use
/// to inject a failure): a temporary file in the same directory, flushed to
/// disk, renamed over `path`, and the directory flushed. On any failure the
/// temporary file is removed and `path` is untouched.
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
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        write(&mut file, bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable; not every platform can open a
        // directory, so this is best effort.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(error) = result {
        let _ = fs::remove_file(&tmp);
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
    let bytes = serialize(net, optimizer).map_err(|message| CheckpointError::Format {
        path: path.to_owned(),
        message,
    })?;
    write_atomic(path, &bytes, write)
}

fn write_all(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    file.write_all(bytes)
}

/// Saves `net`'s parameters to `path` (atomically; see the module docs).
///
/// # Errors
/// If the file cannot be written; the previous file at `path`, if any, is then intact.
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
/// If the file cannot be read or parsed, or any tensor is missing,
/// unexpected, or of another shape or dtype (all are listed).
pub fn load<N: Network>(net: &mut N, path: impl AsRef<Path>) -> Result<(), CheckpointError> {
    load_impl::<N, crate::optim::Sgd>(net, None, path.as_ref())
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
    load_impl(net, Some(optimizer), path.as_ref())
}

fn load_impl<N, O>(
    net: &mut N,
    mut optimizer: Option<&mut O>,
    path: &Path,
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
    let mut found: BTreeMap<String, TensorView<'_>> = file.tensors().into_iter().collect();
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
}
