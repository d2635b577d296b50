//! `transformer_rs._native`: the PyO3 layer over transformer-rs-core.
//! It converts and validates, releases the GIL around compute, and maps core
//! errors onto one exception hierarchy. No kernel or model logic lives here.

mod bert;
mod errors;
mod model;
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
    m.add_function(wrap_pyfunction!(ops::gelu, m)?)?;
    m.add_function(wrap_pyfunction!(ops::matmul, m)?)?;
    m.add_function(wrap_pyfunction!(ops::linear, m)?)?;
    m.add_function(wrap_pyfunction!(ops::softmax, m)?)?;
    m.add_function(wrap_pyfunction!(ops::log_softmax, m)?)?;
    m.add_function(wrap_pyfunction!(ops::layer_norm, m)?)?;
    m.add_function(wrap_pyfunction!(ops::scaled_dot_product_attention, m)?)?;
    m.add_function(wrap_pyfunction!(ops::multi_head_attention, m)?)?;
    m.add_class::<model::NativeTransformer>()?;
    m.add_class::<bert::NativeBertModel>()?;
    Ok(())
}
