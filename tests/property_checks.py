r"""What the property suites share (``test_properties.py`` for the vector catalogue,
``test_properties_extra.py`` for image and batch-norm flows): hypothesis settings, the
one rule every case obeys (:func:`check`), and the counting of cases and tolerated
known failures (:func:`run`)."""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import torch
from hypothesis import HealthCheck, settings

from lazydist_functional.checks import LazydistError

#: ``(call, expected shape or None for a library error, description)``.
Case = tuple[Callable[[], Any], "tuple[int, ...] | None", str]


def property_settings(n: int) -> settings:
    r"""``n`` derandomized examples (CI sees the same cases every run), no deadline."""

    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def random_context(batch: tuple[int, ...], dtype: torch.dtype, size: int = 2) -> torch.Tensor:
    return torch.randn(*batch, size, dtype=dtype, generator=torch.Generator().manual_seed(2))


def other_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float32 else torch.float32


def promoted(dtype: torch.dtype) -> bool:
    r"""Whether a value or context of :func:`other_dtype` is taken by parameters of ``dtype``:
    promoted when that is lossless (float32 into float64), refused otherwise."""

    return torch.promote_types(other_dtype(dtype), dtype) == dtype


def check(fn: Callable[[], Any], expected: tuple[int, ...] | None, what: str) -> None:
    r"""``expected is None``: ``fn`` must raise a library error; otherwise it must return
    finite values of shape ``expected``."""

    try:
        out = fn()
    except LazydistError as error:
        assert expected is None, f"{what}: unexpected library error {error!r}"
        return
    except Exception as error:  # a deep error: what the checks exist to prevent
        raise AssertionError(f"{what}: raised {type(error).__name__}: {error}") from error
    assert expected is not None, f"{what}: expected a library error, got a result of shape {tuple(out.shape)}"
    assert tuple(out.shape) == tuple(expected), f"{what}: shape {tuple(out.shape)}, expected {expected}"
    assert torch.isfinite(out).all(), f"{what}: non-finite values"


def run(cases: Counter, family: str, known_reason: str | None, case: Case) -> None:
    r"""Checks ``case``, counted under ``family``; a case with a known reason to fail is
    tolerated (and counted as a known failure)."""

    cases[family] += 1
    if known_reason is None:
        check(*case)
        return
    try:
        check(*case)
    except AssertionError:
        cases["known failures"] += 1
