r"""Shared fixtures of the contract tests (MAF, NSF, RealNVP, NICE from the catalogue).

Every flow is tested conditional (``context=2``) and unconditional (``context=0``) at a
small size (3 features, ``hidden_features=[16, 16]``) to keep the suite fast.

This file never imports the adapter (which patches torch globally, as Zuko does): the
core's tests must pass without it (``test_core_alone.py``). Adapter helpers live in
``adapter_cases.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from lazydist_functional import catalogue, flows

FEATURES = 3
CONTEXT = 2
HIDDEN = [16, 16]
FLOW_NAMES = ("MAF", "NSF", "RealNVP", "NICE")
CONTEXTS = (0, CONTEXT)


@dataclass(frozen=True)
class Case:
    r"""One flow configuration: the spec and how to build matching inputs."""

    name: str
    context: int
    spec: flows.Flow

    @property
    def conditional(self) -> bool:
        return self.context > 0

    def params(self, seed: int = 0, **kwargs) -> dict:
        return self.spec.init(torch.Generator().manual_seed(seed), **kwargs)

    def c(self, *batch: int, dtype: torch.dtype | None = None) -> torch.Tensor | None:
        r"""A random context of shape ``(*batch, context)``, or ``None`` if unconditional."""

        if not self.conditional:
            return None
        return torch.randn(*batch, self.context, dtype=dtype)

    def x(self, *batch: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.randn(*batch, FEATURES, dtype=dtype)

    def log_prob(self, params: dict, c: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        return self.spec.apply(params, c).log_prob(x)


def make_spec(name: str, context: int, **kwargs) -> flows.Flow:
    r"""The catalogue's spec ``name`` (:mod:`lazydist_functional.catalogue`) at the suite's size."""

    return catalogue.make_spec(name, FEATURES, context, hidden_features=HIDDEN, **kwargs)


CASES = [(name, context) for name in FLOW_NAMES for context in CONTEXTS]
CASE_IDS = [f"{name}-c{context}" for name, context in CASES]


@pytest.fixture(params=CASES, ids=CASE_IDS)
def case(request) -> Case:
    name, context = request.param
    return Case(name, context, make_spec(name, context))


@pytest.fixture(params=[name for name in FLOW_NAMES], ids=list(FLOW_NAMES))
def cond_case(request) -> Case:
    r"""Conditional flows only."""

    return Case(request.param, CONTEXT, make_spec(request.param, CONTEXT))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def assert_close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-5, what: str = "") -> None:
    assert a.shape == b.shape, f"{what}: shapes {tuple(a.shape)} vs {tuple(b.shape)}"
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert torch.allclose(a, b, atol=atol, rtol=rtol), f"{what}: max abs error {err:.3e}"


def rows_distinct(x: torch.Tensor, min_gap: float = 1e-4) -> bool:
    r"""Whether every pair of rows (dim 0) differs somewhere by more than ``min_gap``."""

    flat = x.reshape(x.shape[0], -1)
    gaps = (flat[:, None] - flat[None, :]).abs().amax(dim=-1)
    off = ~torch.eye(flat.shape[0], dtype=torch.bool)
    return bool((gaps[off] > min_gap).all())
