"""What a benchmark ran on: CPU, transformer_rs build and the peers' versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS unknown (install threadpoolctl to name it)"
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return f"{pool.get('internal_api')} {pool.get('version')}, {pool.get('architecture')}"
    return "BLAS unknown"


def version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe() -> dict[str, str]:
    """Facts for the tables' header (call after the libraries are loaded)."""
    import transformer_rs as tr

    peers = {
        "torch": version("torch"),
        "ONNX Runtime": version("onnxruntime"),
        "CTranslate2": version("ctranslate2"),
        "sentence-transformers": version("sentence-transformers"),
    }
    return {
        "cpu": f"{cpu_model()} ({os.cpu_count()} logical CPUs)",
        "ours": f"transformer_rs {tr.__version__}, kernels {tr.simd_level()}",
        "numpy": f"numpy {version('numpy')} ({blas()})",
        "peers": ", ".join(f"{name} {v}" for name, v in peers.items() if v) or "none installed",
        "python": platform.python_version(),
    }
