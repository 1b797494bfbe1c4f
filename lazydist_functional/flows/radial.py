r"""Radial flows (Rezende & Mohamed, 2015)."""

from __future__ import annotations

__all__ = ["Radial", "RadialTransform"]

from typing import Any

from torch import Tensor
from torch.distributions import Transform

from ..transforms import radial as _radial
from ._hyper import HyperTransform
from .common import standard_base
from .core import Flow


class RadialTransform(HyperTransform):
    r"""Lazy radial transform :math:`f(z | c) = z + \frac{\beta}{\alpha + |z - z_0|} (z - z_0)`
    (:class:`~lazydist_functional.transforms.RadialTransform`): :math:`z_0` and the raw
    :math:`\alpha', \beta'` are parameters (``"z0"``, ``"alpha"``, ``"beta"``) without
    context, the output of an MLP ``"hyper"`` of the context with one. :math:`\alpha > 0`
    and :math:`\beta > -\alpha` for any values, so the transform is invertible; its inverse
    is exact (the radius in closed form).

    Arguments:
        features: the number of features :math:`D`.
        context: the number of context features.
        kwargs: passed to :class:`~lazydist_functional.flows._hyper.HyperTransform`
            (``init_scale``) and :class:`~lazydist_functional.nn.MLP`.

    Example:
        >>> t = RadialTransform(3)
        >>> f = t.apply(t.init())
        >>> x = torch.randn(3)
        >>> torch.allclose(f.inv(f(x)), x, atol=1e-5)
        True
    """

    def __init__(self, features: int, context: int = 0, **kwargs: Any) -> None:
        super().__init__(features, context, {"z0": (features,), "alpha": (), "beta": ()}, **kwargs)

    def build(self, z0: Tensor, alpha: Tensor, beta: Tensor) -> Transform:
        return _radial.RadialTransform(z0, alpha, beta)


class Radial(Flow):
    r"""Radial flow: ``transforms`` radial transforms on :math:`\mathcal{N}(0, I)`,
    conditional or not, with exact inverses (sampling and density both work).

    References:
        | Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015)
        | https://arxiv.org/abs/1505.05770

    Arguments:
        features: the number of features.
        context: the number of context features.
        transforms: the number of radial transforms.
        kwargs: passed to :class:`RadialTransform`.

    Example:
        >>> flow = Radial(2, transforms=4)
        >>> d = flow.apply(flow.init())
        >>> d.log_prob(d.sample((3,))).shape
        torch.Size([3])
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 3, **kwargs: Any) -> None:
        layers = [RadialTransform(features, context, **kwargs) for _ in range(transforms)]
        super().__init__(layers, standard_base(features))
        self.features = int(features)
