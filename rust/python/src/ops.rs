//! `tr.ops` bindings. ops.py validates arguments with friendly messages and
//! converts every array to C-contiguous float32; these functions check shapes
//! again (so no input can reach a kernel assertion even when ops.py is
//! bypassed), borrow the buffers, and compute with the GIL released.

mod arrays;
mod attention;
mod batch;
mod elementwise;
mod multi_head;
mod products;
mod rows;

pub(crate) use arrays::c_slice;
pub use attention::scaled_dot_product_attention;
pub use elementwise::{gelu, relu};
pub use multi_head::multi_head_attention;
pub use products::{linear, matmul};
pub use rows::{layer_norm, log_softmax, softmax};
