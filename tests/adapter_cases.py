r"""The adapter side of the shared test helpers.

Kept out of ``conftest.py`` on purpose: importing :mod:`lazydist_functional.adapters` applies
Zuko's global changes to torch, and the core's tests must also pass in a process where that
never happened (``test_core_alone.py`` runs them so). Test files about the adapter import
from here.
"""

from __future__ import annotations

from typing import Any

import lazydist_functional.adapters as A

from conftest import FEATURES, HIDDEN, Case


def module_of(case: Case, params: dict | None = None) -> Any:
    r"""The adapter module of ``case``'s spec holding ``params`` (fresh ones if omitted)."""

    return A.flows.to_module(case.spec, case.params() if params is None else params)


def make_module(name: str, context: int, **kwargs: Any) -> Any:
    r"""The adapter's flow ``name`` at the suite's size (``conftest.make_spec``'s module twin)."""

    return getattr(A.flows, name)(FEATURES, context, hidden_features=HIDDEN, **kwargs)
