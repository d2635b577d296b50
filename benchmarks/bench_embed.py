"""all-MiniLM-L6-v2 sentences/s of ``tr.SentenceEncoder`` next to ONNX Runtime,
CTranslate2 and sentence-transformers, batch 1 and 32, on 1 and 2 threads
(issue 6's table): the embed row group of ``run_all.py``.

    python benchmarks/bench_embed.py [--threads 1 2] [--repeats 10] [--markdown-out FILE]
"""

import sys

import run_all

if __name__ == "__main__":
    run_all.main(["--only", "embed", *sys.argv[1:]])
