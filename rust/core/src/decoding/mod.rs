//! Incremental decoding: KV cache, greedy and beam search.
