"""Pure-NumPy reference implementations of every ``tr.ops`` op and of the
whole model, written for clarity, not speed. The tests hold the Rust kernels
to these."""

from .model import Transformer, load_safetensors, save_safetensors  # noqa: F401
from .ops import *  # noqa: F401,F403
from .ops import __all__ as _ops_all

__all__ = list(_ops_all)
