//! Config, checkpoint loading (safetensors + mmap) and the Transformer.
