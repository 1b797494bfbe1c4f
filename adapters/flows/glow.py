r"""Glow-style multi-scale image flows (not in Zuko 1.6; requested in its issue 28).

Modules of :class:`lazydist_functional.flows.Glow` and
:class:`lazydist_functional.flows.MultiScaleRealNVP`. As in Glow, the ActNorm layers are
initialized from data: the first ``log_prob(x)`` of a distribution returned in training
mode by a module not yet initialized runs the spec's ``data_init`` on ``x`` and writes the
new parameters into the module (once; a loaded ``state_dict`` counts as initialized).
"""

from __future__ import annotations

__all__ = ["Glow", "MultiScaleRealNVP"]

from collections.abc import Sequence
from typing import Any

import torch
from torch import Size, Tensor
from torch.distributions import Distribution

from ... import flows as _core
from ...pytree import flatten_names
from ..lazy import Flow
from ..module import module_class


class _FirstBatchInit(Distribution):
    r"""What an uninitialized module returns in training mode: the flow, except that the
    first ``log_prob(x)`` initializes the module from ``x`` and evaluates the initialized flow."""

    arg_constraints: dict = {}

    def __init__(self, module: MultiScaleFlow, c: Tensor | None, flow: Distribution) -> None:
        self.module, self.c, self.flow = module, c, flow
        super().__init__(flow.batch_shape, flow.event_shape, validate_args=False)

    def log_prob(self, x: Tensor) -> Tensor:
        self.module.initialize(x, self.c)
        return self.module(self.c).log_prob(x)

    def rsample(self, sample_shape: Size = Size()) -> Tensor:
        return self.flow.rsample(sample_shape)

    def sample(self, sample_shape: Size = Size()) -> Tensor:
        return self.flow.sample(sample_shape)

    def __getattr__(self, name: str) -> Any:  # transform, base, rsample_and_log_prob, ...: the flow's
        if name == "flow":
            raise AttributeError(name)
        return getattr(self.flow, name)


@module_class(_core.MultiScaleFlow)
class MultiScaleFlow(Flow):
    r"""Module of :class:`lazydist_functional.flows.MultiScaleFlow`, with Glow's data-dependent
    initialization (:meth:`initialize`, or automatically on the first training batch)."""

    def _build(self, spec: Any, params: Any = None, state: Any = None, generator: Any = None) -> None:
        super()._build(spec, params, state, generator)
        self.__dict__["_initialized"] = params is not None

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.__dict__["_initialized"] = True

    @torch.no_grad()
    def initialize(self, x: Tensor, c: Tensor | None = None) -> None:
        r"""Sets the parameters to ``spec.data_init(params, x, c)`` (the ActNorm layers map
        ``x`` to zero mean and unit variance per channel)."""

        params, state = self.trees()
        new = flatten_names(self.spec.data_init(params, x, c, state=state))
        for name, p in self.named_parameters():
            p.copy_(new[name])
        self.__dict__["_initialized"] = True

    def forward(self, c: Tensor | None = None) -> Distribution:
        flow = super().forward(c)
        if self.training and not self.__dict__.get("_initialized", True):
            return _FirstBatchInit(self, c, flow)
        return flow


@module_class(_core.Glow)
class Glow(MultiScaleFlow):
    r"""Glow on images; module of :class:`lazydist_functional.flows.Glow`.

    Example:
        >>> flow = Glow((1, 8, 8), levels=2, depth=2, hidden_channels=[16])
        >>> x = torch.rand(16, 1, 8, 8)
        >>> loss = -flow().log_prob(x).mean()  # the first training batch initializes ActNorm
        >>> flow().sample((2,)).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, shape: Sequence[int], context: int = 0, levels: int = 3, depth: int = 4,
                 learn_prior: bool = True, **kwargs: Any) -> None:
        self._build(_core.Glow(shape, context, levels, depth, learn_prior, **kwargs))


@module_class(_core.MultiScaleRealNVP)
class MultiScaleRealNVP(MultiScaleFlow):
    r"""Multi-scale RealNVP on images; module of :class:`lazydist_functional.flows.MultiScaleRealNVP`.

    Example:
        >>> flow = MultiScaleRealNVP((1, 4, 4), context=2, levels=2, depth=2, hidden_channels=[8])
        >>> flow(torch.randn(2)).log_prob(torch.rand(1, 4, 4)).shape
        torch.Size([])
    """

    def __init__(self, shape: Sequence[int], context: int = 0, levels: int = 2, depth: int = 4,
                 **kwargs: Any) -> None:
        self._build(_core.MultiScaleRealNVP(shape, context, levels, depth, **kwargs))
