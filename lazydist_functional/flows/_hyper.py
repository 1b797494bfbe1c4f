r"""Lazy transforms with named raw parameters: free parameters without context, the output
of a hypernetwork MLP of the context with one."""

from __future__ import annotations

__all__ = ["HyperTransform"]

from collections.abc import Mapping, Sequence
from math import prod
from typing import Any

import torch
from torch import Size, Tensor
from torch.distributions import Transform

from ..nn import MLP, on_device
from ..spec import Spec


class HyperTransform(Spec):
    r"""Base of lazy transforms built from named raw tensors (``shapes``): without context,
    they are parameters of their own names drawn from :math:`\mathcal{N}(0, \sigma^2)`
    (``init_scale``); with context, one MLP ``"hyper"`` of the context outputs them all (each
    with the context's batch shape). Subclasses set ``shapes`` and define :meth:`build`.

    Arguments:
        features: the number of features.
        context: the number of context features.
        shapes: ``{name: shape}`` of the raw tensors.
        init_scale: the standard deviation :math:`\sigma` of the free parameters.
        kwargs: passed to :class:`~lazydist_functional.nn.MLP` (e.g. ``hidden_features``).
    """

    def __init__(self, features: int, context: int, shapes: Mapping[str, Sequence[int]],
                 init_scale: float = 0.5, **kwargs: Any) -> None:
        self.features = int(features)
        self.context = int(context)
        self.shapes = {k: Size(s) for k, s in shapes.items()}
        self.init_scale = float(init_scale)
        total = sum(prod(s) for s in self.shapes.values())
        self.hyper = MLP(self.context, total, **kwargs) if self.context > 0 else None

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        if self.hyper is not None:
            return {"hyper": self.hyper.init(generator, dtype=dtype, device=device)}
        dtype = dtype or torch.get_default_dtype()

        def draw(shape: Size) -> Tensor:
            return on_device(lambda: self.init_scale * torch.randn(shape, generator=generator, dtype=dtype),
                             shape, dtype, device)

        return {k: draw(s) for k, s in self.shapes.items()}

    def raw(self, params: Mapping[str, Any], c: Tensor | None) -> dict[str, Tensor]:
        r"""The raw tensors ``{name: (*batch, *shape)}`` (the context's batch shape, if any)."""

        if self.hyper is None:
            return {k: params[k] for k in self.shapes}
        out = self.hyper._apply(params["hyper"], c, {})
        pieces = out.split([prod(s) for s in self.shapes.values()], dim=-1)
        return {k: p.reshape((*p.shape[:-1], *s)) for (k, s), p in zip(self.shapes.items(), pieces, strict=True)}

    def build(self, **raw: Tensor) -> Transform:  # pragma: no cover - abstract
        raise NotImplementedError

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> Transform:
        return self.build(**self.raw(params, c if self.hyper is not None else None))
