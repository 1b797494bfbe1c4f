r"""Gaussian weights evaluated with the local reparameterization trick."""

from __future__ import annotations

__all__ = ["GaussianWeight"]

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


class GaussianWeight(Tensor):
    r"""A weight :math:`W \sim \mathcal{N}(\mu, \sigma^2)` (independent entries) that is
    also one sample of it.

    Used as a tensor, it is the sample :math:`\mu + \sigma \odot \epsilon`. Used as the
    weight of a linear layer (:func:`~lazydist_functional.nn.linear`, or ``F.linear``
    as in ``nn.Linear``), the layer samples its *output* instead (the local
    reparameterization trick):

    .. math:: y = x \mu^T + \mu_b + \sqrt{x^2 (\sigma^2)^T + \sigma_b^2} \odot \eta ,
        \quad \eta \sim \mathcal{N}(0, I) ,

    with :math:`\eta` drawn once per output shape and reused, so repeated calls on
    inputs of one shape are deterministic (what an inverse by fixed-point passes needs).
    A bias that is also a :class:`GaussianWeight` contributes its variance. Meant for
    eager use (the noise cache is per object): under ``vmap``, sample plain weights.

    References:
        | Variational Dropout and the Local Reparameterization Trick (Kingma et al., 2015)
        | https://arxiv.org/abs/1506.02557

    Example:
        >>> w = GaussianWeight(torch.zeros(2, 3), torch.ones(2, 3))
        >>> x = torch.ones(4, 3)
        >>> y = torch.nn.functional.linear(x, w)
        >>> torch.equal(y, torch.nn.functional.linear(x, w))  # same noise for one shape
        True
        >>> y.shape
        torch.Size([4, 2])
    """

    loc: Tensor
    variance: Tensor
    noise: dict[Any, Tensor]

    @staticmethod
    def __new__(cls, loc: Tensor, variance: Tensor) -> GaussianWeight:
        eps = torch.randn(loc.shape, dtype=loc.dtype, device=loc.device)
        out = (loc + variance.sqrt() * eps).as_subclass(cls)
        out.loc, out.variance, out.noise = loc, variance, {}
        return out

    def local_linear(self, x: Tensor, bias: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        r"""The layer output :math:`y` sampled by the local reparameterization trick."""

        from_stack = self.loc.dim() > 2
        loc, var = self.loc, self.variance
        if mask is not None:
            loc, var = loc * mask, var * mask
        if isinstance(bias, GaussianWeight):
            b_loc, b_var = bias.loc, bias.variance
        else:
            b_loc, b_var = bias, None
        mean = _plain_linear(x, loc, b_loc, from_stack)
        variance = _plain_linear(x.square(), var, b_var, from_stack)
        key = (mean.shape, mean.dtype, mean.device)
        eta = self.noise.get(key)
        if eta is None:
            eta = self.noise[key] = torch.randn(mean.shape, dtype=mean.dtype, device=mean.device)
        return mean + variance.sqrt() * eta

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is F.linear and len(args) > 1 and isinstance(args[1], GaussianWeight):
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            return args[1].local_linear(args[0], bias)
        with torch._C.DisableTorchFunctionSubclass():  # any other use: the plain sample
            return func(*args, **kwargs)


def _plain_linear(x: Tensor, weight: Tensor, bias: Tensor | None, stacked: bool) -> Tensor:
    y = torch.einsum("...ij,...j->...i", weight, x) if stacked else F.linear(x, weight)
    return y if bias is None else y + bias
