r"""Pure networks with ``init``/``apply`` (parameter trees in, tensors out)."""

from .linear import init_linear, linear
from .mlp import MLP, MaskedMLP, masked_mlp_masks

__all__ = ["MLP", "MaskedMLP", "init_linear", "linear", "masked_mlp_masks"]

from .monotonic import MonotonicMLP  # noqa: E402

__all__ += ["MonotonicMLP"]

from .layers import LayerNorm, Linear, Residual  # noqa: E402

__all__ += ["LayerNorm", "Linear", "Residual"]
