r"""The catalogue of the package's flows: one place that names every flow spec with a
small, fast configuration, for tests, benchmarks and checks.

Each :class:`FlowEntry` holds the spec class, the keyword arguments of a small instance
(a few hidden units, few steps) and the flow's support (``"real"``, or ``"circle"`` for
NCSF, whose inputs lie in :math:`[-\pi, \pi]`).

Example:
    >>> spec = make_spec("MAF", features=3, context=2)
    >>> params = spec.init(torch.Generator().manual_seed(0))
    >>> x = sample_input("MAF", (4, 3), generator=torch.Generator().manual_seed(1))
    >>> spec.apply(params, torch.randn(4, 2)).log_prob(x).shape
    torch.Size([4])
"""

from __future__ import annotations

__all__ = ["FLOWS", "FlowEntry", "make_spec", "sample_input"]

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from . import flows
from .spec import Spec

HIDDEN = (16, 16)


@dataclass(frozen=True)
class FlowEntry:
    r"""One flow of the catalogue: the spec class, a small configuration and the support."""

    cls: type[Spec]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    support: str = "real"

    def spec(self, features: int = 3, context: int = 0, **overrides: Any) -> Spec:
        r"""A spec of ``features`` features and ``context`` context features (``overrides``
        replace the catalogue's keyword arguments)."""

        return self.cls(features, context, **{**self.kwargs, **overrides})


def _entry(cls: type[Spec], support: str = "real", **kwargs: Any) -> FlowEntry:
    return FlowEntry(cls, MappingProxyType(kwargs), support)


_NET = MappingProxyType({"hidden_features": [8, 8]})

FLOWS: Mapping[str, FlowEntry] = MappingProxyType({
    "MAF": _entry(flows.MAF, hidden_features=list(HIDDEN)),
    "NSF": _entry(flows.NSF, hidden_features=list(HIDDEN)),
    "NCSF": _entry(flows.NCSF, support="circle", hidden_features=list(HIDDEN)),
    "RealNVP": _entry(flows.RealNVP, hidden_features=list(HIDDEN)),
    "NICE": _entry(flows.NICE, hidden_features=list(HIDDEN)),
    "NAF": _entry(flows.NAF, hidden_features=[16], signal=4, network=dict(_NET)),
    "UNAF": _entry(flows.UNAF, hidden_features=[16], signal=4, network=dict(_NET)),
    "SOSPF": _entry(flows.SOSPF, hidden_features=[16]),
    "BPF": _entry(flows.BPF, hidden_features=[16], degree=8),
    "GF": _entry(flows.GF, hidden_features=[16], components=4),
    "CNF": _entry(flows.CNF, hidden_features=list(HIDDEN), steps=4),
    "GMM": _entry(flows.GMM, hidden_features=list(HIDDEN), components=3),
    "Planar": _entry(flows.Planar, hidden_features=list(HIDDEN), iterations=12),
    "Radial": _entry(flows.Radial, hidden_features=list(HIDDEN)),
    "Sylvester": _entry(flows.Sylvester, hidden_features=list(HIDDEN), iterations=12),
})


def make_spec(name: str, features: int = 3, context: int = 0, **overrides: Any) -> Spec:
    r"""The catalogue's spec ``name`` with ``features`` and ``context`` features."""

    if name not in FLOWS:
        raise KeyError(f"unknown flow '{name}'; the catalogue has {sorted(FLOWS)}")
    return FLOWS[name].spec(features, context, **overrides)


def sample_input(
    name: str,
    shape: Sequence[int],
    dtype: torch.dtype | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Points of shape ``shape`` inside the support of flow ``name``: standard normal for
    real flows, uniform on :math:`(-\pi, \pi)` for circular ones."""

    if FLOWS[name].support == "circle":
        u = torch.rand(tuple(shape), dtype=dtype, generator=generator)
        return (2 * u - 1) * (math.pi - 1e-3)
    return torch.randn(tuple(shape), dtype=dtype, generator=generator)
