"""The benchmark suite behind ``benchmarks/run_all.py``: one module per row
group (gemm, encoder, generate, embed), the peers' model builders in
``suite.peers``, and the shared timing and table code in ``suite.common``."""
