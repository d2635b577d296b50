//! `transformer_rs._native`: the PyO3 layer over transformer-rs-core.
//! It converts and validates, releases the GIL around compute, and maps core
//! errors onto one exception hierarchy. No kernel or model logic lives here.

mod errors;
mod ops;
mod runtime;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "CheckpointError",
        m.py().get_type::<errors::CheckpointError>(),
    )?;
    m.add_function(wrap_pyfunction!(runtime::set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::available_simd_levels, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::force_simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(ops::relu, m)?)?;
    Ok(())
}
