r"""Pure networks: :class:`Network` subclasses with ``init``/``apply(params, x, state=None)``
(parameter trees in, tensors out), and the layer functions they are made of."""

from .gaussian import GaussianWeight
from .init import is_meta, on_device, uniform
from .layers import LayerNorm, Linear, MaskedLinear, MonotonicLinear, Residual, layer_norm, two_way_elu
from .linear import init_linear, linear
from .mlp import MLP, MaskedMLP, masked_mlp_masks
from .monotonic import MonotonicMLP
from .network import Network

__all__ = [
    "GaussianWeight",
    "LayerNorm",
    "Linear",
    "MLP",
    "MaskedLinear",
    "MaskedMLP",
    "MonotonicLinear",
    "MonotonicMLP",
    "Network",
    "Residual",
    "init_linear",
    "is_meta",
    "layer_norm",
    "linear",
    "masked_mlp_masks",
    "on_device",
    "two_way_elu",
    "uniform",
]

from .conv import ConvNet, conv2d, init_conv2d  # noqa: E402

__all__ += ["ConvNet", "conv2d", "init_conv2d"]
