r"""Planar flows (Rezende & Mohamed, 2015)."""

from __future__ import annotations

__all__ = ["Planar", "PlanarTransform"]

from typing import Any

from torch import Tensor
from torch.distributions import Transform

from ..transforms import planar as _planar
from ._hyper import HyperTransform
from .common import standard_base
from .core import Flow


class PlanarTransform(HyperTransform):
    r"""Lazy planar transform :math:`f(z | c) = z + \hat{u} \tanh(w^T z + b)`
    (:class:`~lazydist_functional.transforms.PlanarTransform`): :math:`w, u, b` are
    parameters (``"w"``, ``"u"``, ``"b"``) without context, the output of an MLP
    ``"hyper"`` of the context with one. :math:`w^T \hat{u} > -1` for any values, so the
    transform is invertible, and its inverse is exact (a bracketed Newton solve along
    :math:`w`).

    Arguments:
        features: the number of features :math:`D`.
        context: the number of context features.
        iterations: the Newton iterations of the inverse.
        kwargs: passed to :class:`~lazydist_functional.flows._hyper.HyperTransform`
            (``init_scale``) and :class:`~lazydist_functional.nn.MLP`.

    Example:
        >>> t = PlanarTransform(3, 2)
        >>> f = t.apply(t.init(), torch.randn(2))
        >>> x = torch.randn(3)
        >>> torch.allclose(f.inv(f(x)), x, atol=1e-5)
        True
    """

    def __init__(self, features: int, context: int = 0, iterations: int = 24, **kwargs: Any) -> None:
        super().__init__(features, context, {"w": (features,), "u": (features,), "b": ()}, **kwargs)
        self.iterations = int(iterations)

    def build(self, w: Tensor, u: Tensor, b: Tensor) -> Transform:
        return _planar.PlanarTransform(w, u, b, self.iterations)


class Planar(Flow):
    r"""Planar flow: ``transforms`` planar transforms on :math:`\mathcal{N}(0, I)`,
    conditional or not. Density evaluation, sampling and ``rsample_and_log_prob`` all work
    (the inverse is exact, to the root finder's precision).

    References:
        | Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015)
        | https://arxiv.org/abs/1505.05770

    Arguments:
        features: the number of features.
        context: the number of context features.
        transforms: the number of planar transforms.
        kwargs: passed to :class:`PlanarTransform`.

    Example:
        >>> flow = Planar(3, 2, transforms=4)
        >>> d = flow.apply(flow.init(), torch.randn(5, 2))
        >>> x, log_p = d.rsample_and_log_prob()
        >>> torch.allclose(log_p, d.log_prob(x), atol=1e-4)
        True
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 3, **kwargs: Any) -> None:
        layers = [PlanarTransform(features, context, **kwargs) for _ in range(transforms)]
        super().__init__(layers, standard_base(features))
        self.features = int(features)
