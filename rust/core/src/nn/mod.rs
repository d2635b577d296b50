//! Building blocks, one struct per block: Embedding, Linear, LayerNorm, attention, FFN, encoder/decoder layers.
