r"""Zuko-compatible flow modules: ``zuko.flows`` names and signatures, pure specs inside.

Each module builds the spec of the same name from :mod:`lazydist_functional.flows`
and registers its parameters and buffers under Zuko's names, so a Zuko 1.6
``state_dict`` of the same configuration loads with ``load_state_dict``.
"""

from __future__ import annotations

__all__ = [
    "GMM",
    "MAF",
    "NCSF",
    "NICE",
    "NSF",
    "Flow",
    "GeneralCouplingTransform",
    "LazyComposedTransform",
    "LazyDistribution",
    "LazyInverse",
    "LazyTransform",
    "MaskedAutoregressiveTransform",
    "RealNVP",
    "UnconditionalDistribution",
    "UnconditionalTransform",
    "to_module",
]

from typing import Any

import torch
import torch.nn as nn

from .. import flows as _flows
from ..pytree import flatten_names
from ..spec import Spec
from .lazy import (
    Flow,
    LazyComposedTransform,
    LazyDistribution,
    LazyInverse,
    LazyTransform,
    UnconditionalDistribution,
    UnconditionalTransform,
)
from .module import SpecModule


class _SpecLeaf(LazyTransform):
    r"""A lazy transform module applying a core spec; subclasses name the spec class in
    ``_core`` and take its constructor arguments."""

    _core: type | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(self._core(*args, **kwargs))

    def forward(self, c: torch.Tensor | None = None) -> Any:
        return SpecModule.forward(self, c)


class _SpecDistribution(LazyDistribution):
    r"""A lazy distribution module applying a core spec (see :class:`_SpecLeaf`)."""

    _core: type | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(self._core(*args, **kwargs))

    def forward(self, c: torch.Tensor | None = None) -> Any:
        return SpecModule.forward(self, c)


class MaskedAutoregressiveTransform(_SpecLeaf):
    r"""Module of :class:`lazydist_functional.flows.MaskedAutoregressiveTransform` (same arguments)."""

    _core = _flows.MaskedAutoregressiveTransform


class GeneralCouplingTransform(_SpecLeaf):
    r"""Module of :class:`lazydist_functional.flows.GeneralCouplingTransform` (same arguments)."""

    _core = _flows.GeneralCouplingTransform


_LEAF_MODULES: dict[type, type] = {
    _flows.MaskedAutoregressiveTransform: MaskedAutoregressiveTransform,
    _flows.GeneralCouplingTransform: GeneralCouplingTransform,
    _flows.UnconditionalDistribution: UnconditionalDistribution,
    _flows.UnconditionalTransform: UnconditionalTransform,
}


def to_module(spec: Spec, params: dict | None = None, state: dict | None = None,
              generator: torch.Generator | None = None) -> nn.Module:
    r"""Builds the adapter module of a spec, holding ``params``/``state`` (default: fresh init).

    Composite specs become composite modules (``Flow``, ``LazyComposedTransform``,
    ``LazyInverse``) whose children are modules too, so names and structure match
    Zuko's.

    Example:
        >>> from lazydist_functional import flows
        >>> spec = flows.NSF(2, 1)
        >>> module = to_module(spec, spec.init())
        >>> sorted(module.state_dict())[0]
        'base.loc'
    """

    params, state = spec.init_trees(params, state, generator)
    if isinstance(spec, _flows.Flow):
        return Flow(
            to_module(spec.transform, params.get("transform", {}), state.get("transform", {})),
            to_module(spec.base, params.get("base", {}), state.get("base", {})),
        )
    if isinstance(spec, _flows.LazyComposedTransform):
        p, s = params.get("transforms", {}), state.get("transforms", {})
        return LazyComposedTransform(*(
            to_module(t, p.get(str(i), {}), s.get(str(i), {})) for i, t in enumerate(spec.transforms)
        ))
    if isinstance(spec, _flows.LazyInverse):
        return LazyInverse(to_module(spec.transform, params.get("transform", {}), state.get("transform", {})))
    for spec_cls, module_cls in _LEAF_MODULES.items():
        if type(spec) is spec_cls:
            module = module_cls.__new__(module_cls)
            SpecModule.__init__(module, spec, params, state)
            return module
    base = _SpecDistribution if not hasattr(spec, "transform") and _is_distribution_spec(spec) else _SpecLeaf
    module = base.__new__(base)
    SpecModule.__init__(module, spec, params, state)
    return module


def _is_distribution_spec(spec: Spec) -> bool:
    return isinstance(spec, _flows.UnconditionalDistribution) and not isinstance(spec, _flows.UnconditionalTransform)


class _FlowFromSpec(Flow):
    r"""A flow module whose children are built from a core flow spec."""

    def __init__(self, spec: _flows.Flow) -> None:
        module = to_module(spec)
        super().__init__(module.transform, module.base)


class MAF(_FlowFromSpec):
    r"""Masked autoregressive flow; module of :class:`lazydist_functional.flows.MAF`.

    Example:
        >>> flow = MAF(3, 4)
        >>> flow(torch.randn(4)).log_prob(torch.randn(3)).shape
        torch.Size([])
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 3, randperm: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(_flows.MAF(features, context, transforms, randperm, **kwargs))


class NSF(_FlowFromSpec):
    r"""Neural spline flow; module of :class:`lazydist_functional.flows.NSF`."""

    def __init__(self, features: int, context: int = 0, bins: int = 8, slope: float = 1e-3,
                 **kwargs: Any) -> None:
        super().__init__(_flows.NSF(features, context, bins, slope, **kwargs))


class NICE(_FlowFromSpec):
    r"""NICE / RealNVP coupling flow; module of :class:`lazydist_functional.flows.NICE`."""

    def __init__(self, features: int, context: int = 0, transforms: int = 3, randmask: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(_flows.NICE(features, context, transforms, randmask, **kwargs))


class RealNVP(NICE):
    r"""Alias of :class:`NICE`, as in Zuko."""


class FFJTransform(_SpecLeaf):
    r"""Module of :class:`lazydist_functional.flows.FFJTransform` (same arguments as
    ``zuko.flows.FFJTransform``, plus ``steps``/``method``/``divergence``).

    Example:
        >>> t = FFJTransform(3, 4)
        >>> f = t(torch.randn(4))
        >>> x = torch.randn(3)
        >>> torch.allclose(f.inv(f(x)), x, atol=1e-5)
        True
    """

    _core = _flows.FFJTransform


_LEAF_MODULES[_flows.FFJTransform] = FFJTransform


class CNF(_FlowFromSpec):
    r"""Continuous normalizing flow; module of :class:`lazydist_functional.flows.CNF`.

    ``zuko.flows.CNF(features, context, ...).state_dict()`` loads into it.

    Example:
        >>> flow = CNF(3, 2, hidden_features=[32])
        >>> flow(torch.randn(2)).log_prob(torch.randn(3)).shape
        torch.Size([])
    """

    def __init__(self, features: int, context: int = 0, **kwargs: Any) -> None:
        super().__init__(_flows.CNF(features, context, **kwargs))


__all__ += ["CNF", "FFJTransform"]


# -- monotonic flows (NAF, UNAF, SOSPF, BPF, GF) ------------------------------------


class ElementWiseTransform(_SpecLeaf):
    r"""Module of :class:`lazydist_functional.flows.ElementWiseTransform` (same arguments as
    ``zuko.flows.gaussianization.ElementWiseTransform``)."""

    _core = _flows.ElementWiseTransform


_LEAF_MODULES[_flows.ElementWiseTransform] = ElementWiseTransform
# Autoregressive specs of the monotonic flows are Zuko's MaskedAutoregressiveTransform modules.
_LEAF_MODULES[_flows.GroupedMaskedAutoregressiveTransform] = MaskedAutoregressiveTransform
_LEAF_MODULES[_flows.NeuralAutoregressiveTransform] = MaskedAutoregressiveTransform


class NAF(_FlowFromSpec):
    r"""Neural autoregressive flow; module of :class:`lazydist_functional.flows.NAF`.

    ``zuko.flows.NAF(...).state_dict()`` of the same configuration loads into it.

    Example:
        >>> flow = NAF(3, 2, hidden_features=[16], network={"hidden_features": [8]})
        >>> flow(torch.randn(2)).log_prob(torch.randn(3)).shape
        torch.Size([])
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 3, randperm: bool = False,
                 signal: int = 16, network: dict[str, Any] = {}, **kwargs: Any) -> None:  # noqa: B006
        super().__init__(_flows.NAF(features, context, transforms, randperm, signal, network, **kwargs))


class UNAF(_FlowFromSpec):
    r"""Unconstrained neural autoregressive flow; module of :class:`lazydist_functional.flows.UNAF`."""

    def __init__(self, features: int, context: int = 0, transforms: int = 3, randperm: bool = False,
                 signal: int = 16, network: dict[str, Any] = {}, **kwargs: Any) -> None:  # noqa: B006
        super().__init__(_flows.UNAF(features, context, transforms, randperm, signal, network, **kwargs))


class SOSPF(_FlowFromSpec):
    r"""Sum-of-squares polynomial flow; module of :class:`lazydist_functional.flows.SOSPF`."""

    def __init__(self, features: int, context: int = 0, degree: int = 4, polynomials: int = 3,
                 slope: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(_flows.SOSPF(features, context, degree, polynomials, slope, **kwargs))


class BPF(_FlowFromSpec):
    r"""Bernstein polynomial flow; module of :class:`lazydist_functional.flows.BPF`."""

    def __init__(self, features: int, context: int = 0, degree: int = 16, **kwargs: Any) -> None:
        super().__init__(_flows.BPF(features, context, degree, **kwargs))


class GF(_FlowFromSpec):
    r"""Gaussianization flow; module of :class:`lazydist_functional.flows.GF`."""

    def __init__(self, features: int, context: int = 0, transforms: int = 3, components: int = 8,
                 **kwargs: Any) -> None:
        super().__init__(_flows.GF(features, context, transforms, components, **kwargs))


__all__ += ["BPF", "GF", "NAF", "SOSPF", "UNAF", "ElementWiseTransform"]


class NCSF(_FlowFromSpec):
    r"""Neural circular spline flow; module of :class:`lazydist_functional.flows.NCSF`."""

    def __init__(self, features: int, context: int = 0, bins: int = 8, slope: float = 1e-3,
                 **kwargs: Any) -> None:
        super().__init__(_flows.NCSF(features, context, bins, slope, **kwargs))


class GMM(_SpecDistribution):
    r"""Gaussian mixture model; module of :class:`lazydist_functional.flows.GMM` (Zuko's names).

    Example:
        >>> gmm = GMM(2, components=3)
        >>> gmm.initialize(torch.randn(100, 2), "kmeans")
        >>> gmm().log_prob(torch.zeros(2)).shape
        torch.Size([])
    """

    _core = _flows.GMM

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, strategy: str = "kmeans++") -> None:
        r"""Fits the components to clusters of ``x`` in place (see the spec's ``initialize``)."""

        params, _ = self.trees()
        new = self.spec.initialize(params, x, strategy)
        current = dict(self.named_parameters())
        for name, value in flatten_names(new).items():
            current[name].copy_(value)


_LEAF_MODULES[_flows.GMM] = GMM
