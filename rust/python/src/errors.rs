//! The one place core errors become Python exceptions, and the panic guard
//! that keeps a Rust panic from ever reaching Python.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::create_exception;
use pyo3::exceptions::{
    PyFileNotFoundError, PyOSError, PyPermissionError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use transformer_rs_core::Error;

create_exception!(
    transformer_rs,
    CheckpointError,
    PyValueError,
    "Malformed or mismatched weights or config; the message names the tensor or key."
);

/// Maps a core error to its Python exception class.
pub fn to_py(err: Error) -> PyErr {
    match err {
        Error::Value(m) => PyValueError::new_err(m),
        Error::Checkpoint(m) => CheckpointError::new_err(m),
        Error::Io {
            path,
            kind,
            message,
        } => {
            let msg = format!("{path}: {message}");
            match kind {
                std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
                std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
                _ => PyOSError::new_err(msg),
            }
        }
    }
}

/// Runs `f` with the GIL released, on the kernel thread pool, turning a
/// panic (a bug: inputs are validated before this point) into RuntimeError.
/// Everything `f` reads must already be converted to plain Rust data.
pub fn compute<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<T, Error> + Send,
) -> PyResult<T> {
    guarded(py, || transformer_rs_core::parallel::install(f))
}

/// [`compute`] for work whose only parallel loops are
/// `parallel::for_each_index` (a single GEMM): it runs on the calling
/// thread, which starts at once while pool workers wake up to join it,
/// instead of handing everything to the pool and waiting for a worker to
/// wake (tens of microseconds, more than a small product takes).
pub fn compute_on_calling_thread<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<T, Error> + Send,
) -> PyResult<T> {
    guarded(py, f)
}

fn guarded<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, Error> + Send) -> PyResult<T> {
    py.detach(|| catch_unwind(AssertUnwindSafe(f)))
        .map_err(|payload| {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            PyRuntimeError::new_err(format!(
                "transformer_rs internal error (please report): {what}"
            ))
        })?
        .map_err(to_py)
}
