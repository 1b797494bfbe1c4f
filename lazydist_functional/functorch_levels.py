r"""Reading ``torch.func.vmap``'s batched tensors at one level: whether a tensor is batched
by the ``vmap`` of a level, the innermost level that batches some tensors, whether a
compiled ``vmap`` batches some, and the tensor underneath (the vmapped dim first). Shared
by :func:`~lazydist_functional.nn.linear.linear`'s fold of batched weights, the Bernstein
transforms' evaluation on physical tensors, the
:mod:`~lazydist_functional.distributions.vmap_fold` of per-sample ``log_prob`` and the
compile-only forms of the GMM, CNF and monotonic-network code.

Example:
    >>> from torch.func import vmap
    >>> from torch._C._functorch import maybe_current_level
    >>> out = vmap(lambda t: torch.tensor(float(is_batched_at(t, maybe_current_level()))))(torch.zeros(3))
    >>> out
    tensor([1., 1., 1.])
"""

from __future__ import annotations

__all__ = ["batching_level", "compiling_under_vmap", "is_batched_at", "physical"]

from typing import Any

import torch
from torch import Tensor
from torch._C._functorch import _unwrap_batched, is_batchedtensor, maybe_current_level, maybe_get_level


def is_batched_at(t: Any, level: int) -> bool:
    r"""Whether ``t`` is a tensor batched by the ``vmap`` of ``level``."""

    return isinstance(t, Tensor) and is_batchedtensor(t) and maybe_get_level(t) == level


def batching_level(*tensors: Any) -> int | None:
    r"""The level of the innermost ``vmap`` if it batches any of ``tensors``, else ``None``;
    always ``None`` while ``torch.compile`` traces (the compiler batches the plain calls)."""

    if torch.compiler.is_compiling():
        return None
    level = maybe_current_level()
    if level is None or not any(is_batched_at(t, level) for t in tensors):
        return None
    return level


def compiling_under_vmap(*tensors: Any) -> bool:
    r"""Whether ``torch.compile`` is tracing a ``vmap`` that batches any of ``tensors``: where
    the per-sample code takes forms whose batching rules neither specialize the vmapped size
    (``cat``, ``scatter``, ``index_select`` do) nor copy an unbatched operand per sample."""

    return torch.compiler.is_compiling() and any(isinstance(t, Tensor) and is_batchedtensor(t) for t in tensors)


def physical(t: Tensor, level: int) -> Tensor:
    r"""The tensor under the ``vmap`` of ``level`` (``t`` batched at that level), vmapped
    dim first."""

    inner, bdim = _unwrap_batched(t, level)
    return inner.movedim(bdim, 0) if bdim != 0 else inner
