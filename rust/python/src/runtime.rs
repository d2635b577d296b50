//! Runtime controls: thread pool size and the instruction set in use.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use transformer_rs_core::kernels::dispatch::{self, Isa};
use transformer_rs_core::parallel;

use crate::errors::to_py;

/// Sets the number of kernel threads.
#[pyfunction]
pub fn set_num_threads(n: i64) -> PyResult<()> {
    if n < 1 {
        return Err(PyValueError::new_err(format!(
            "n: expected a positive number of threads, got {n}"
        )));
    }
    parallel::set_num_threads(n as usize).map_err(to_py)
}

/// Number of kernel threads.
#[pyfunction]
pub fn get_num_threads() -> usize {
    parallel::num_threads()
}

/// The instruction set the kernels use on this CPU.
#[pyfunction]
pub fn simd_level() -> &'static str {
    dispatch::selected().name()
}

/// Every instruction set this CPU can run (tests run kernels on each).
#[pyfunction]
pub fn available_simd_levels() -> Vec<&'static str> {
    dispatch::available().into_iter().map(Isa::name).collect()
}

/// Forces kernels onto one instruction set (None: back to the detected one).
/// For tests and benchmarks.
#[pyfunction]
#[pyo3(signature = (level=None))]
pub fn force_simd_level(level: Option<&str>) -> PyResult<()> {
    let isa = match level {
        None => None,
        Some(name) => Some(Isa::from_name(name).ok_or_else(|| {
            PyValueError::new_err(format!(
                "level: expected one of {:?}, got {name:?}",
                Isa::ALL.map(Isa::name)
            ))
        })?),
    };
    dispatch::force(isa).map_err(|m| PyValueError::new_err(format!("level: {m}")))
}
