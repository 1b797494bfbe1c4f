r"""Per-sample ``log_prob`` under ``vmap`` run as the batched call: the vmap *fold*.

Under :func:`torch.func.vmap`, every ATen operation of a per-sample ``log_prob`` passes
through functorch's batching rule of that operation (1.5-5 µs each on a CPU), about a
hundred operations per flow call: per-sample conditioning
``vmap(lambda c, x: spec.apply(p, c).log_prob(x))(C, X)`` cost 1.3-1.9x the batched
module call ``spec.apply(p, C).log_prob(X)`` at N = 256. Yet both compute the same
thing: the flows are *batch-polymorphic*, a context :math:`(*, C)` and a value
:math:`(*, D)` with leading batch dimensions give the stack of the per-sample results
(the contract the module path and the parity tests rest on).

So when a :class:`~lazydist_functional.flows.core.Flow` is applied inside a ``vmap``
whose level batches the context but none of the parameters or state (the per-sample
conditioning case), the distribution records a :class:`FoldPlan`. Its ``log_prob(x)``
then unwraps the context and the value at that level (vmapped dim first: the physical
tensors), rebuilds the distribution from the physical context, evaluates it once below
the ``vmap`` level (no batching rule runs) and wraps the result back at that level. The
operations are those of the batched module call; autograd and outer transforms (a
``grad`` around the ``vmap``, an outer ``vmap``) see them on the unwrapped tensors, as in
:func:`~lazydist_functional.nn.linear.linear`'s own fold.

Nothing folds, and the plain batching rules run, when: the parameters or the state are
batched at that level (ensembles, per-sample parameters: a weight with a leading vmapped
dim is not a batch of the same network), the innermost transform is not a ``vmap`` (a
``grad`` inside the ``vmap``), ``torch.compile`` is tracing (the compiler batches and
fuses the plain graph itself), the flow has batch-statistics layers (in training mode
their statistics are over the batch), a part opts out (``vmap_fold = False``: CNF's
adaptive solver, whose steps depend on the whole batch), the apply computes from the
context (Planar, Radial, Sylvester: the rebuild would run their hypernetworks twice), or
the distribution was not built by ``Flow._apply`` inside that very ``vmap`` level (GMM's
mixture, GF's own class).

The fold costs a second apply (object creation only: the folded flows' transforms are
lazy, their networks run in ``log_prob``) and a walk of the parameter tree, 40-60 µs in
all on a CPU, against 1.5-5 µs per batching rule it skips.

Example:
    >>> from lazydist_functional.flows import MAF
    >>> spec = MAF(2, 1, transforms=1)
    >>> p = spec.init(torch.Generator().manual_seed(0))
    >>> c, x = torch.randn(4, 1), torch.randn(4, 2)
    >>> folded = torch.func.vmap(lambda ci, xi: spec.apply(p, ci).log_prob(xi))(c, x)
    >>> torch.allclose(folded, spec.apply(p, c).log_prob(x))
    True
"""

from __future__ import annotations

__all__ = ["FoldPlan", "disabled", "fold_plan", "folded_log_prob", "holds_only_context"]

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import optree
import torch
from torch import Tensor
from torch._C._functorch import (
    TransformType,
    _add_batch_dim,
    get_interpreter_stack,
    is_batchedtensor,
    maybe_get_level,
    peek_interpreter_stack,
)
from torch._functorch.pyfunctorch import retrieve_current_functorch_interpreter
from torch.distributions import Distribution

from ..functorch_levels import is_batched_at, physical
from ..pytree import NAMESPACE


@dataclass(frozen=True)
class FoldPlan:
    r"""How a distribution applied inside the ``vmap`` of ``level`` gets its batched twin:
    ``rebuild(c)``, the spec's apply on the same (unbatched) parameters and state and the
    physical context. ``context`` is the per-sample context (``None``, or not batched at
    ``level``: then the distribution itself holds nothing batched at that level)."""

    level: int
    rebuild: Callable[[Tensor | None], Distribution]
    context: Tensor | None


#: Whether folding is on in this thread or task (:func:`disabled` turns it off locally).
_ENABLED: ContextVar[bool] = ContextVar("lazydist_functional_vmap_fold", default=True)


@contextmanager
def disabled() -> Iterator[None]:
    r"""Nothing folds inside this context: every operation takes its batching rule (for
    benchmarks and tests that compare both ways; the values are the same).

    Example:
        >>> with disabled():
        ...     pass
    """

    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def _vmap_level() -> int | None:
    r"""The level of the innermost transform when it is a ``vmap`` (and nothing is being
    compiled), else ``None``."""

    if torch.compiler.is_compiling() or not _ENABLED.get():
        return None
    interpreter = peek_interpreter_stack()
    if interpreter is None or interpreter.key() != TransformType.Vmap:
        return None
    return interpreter.level()


def fold_plan(
    params: Any, state: Any, c: Tensor | None, rebuild: Callable[[Tensor | None], Distribution]
) -> FoldPlan | None:
    r"""The :class:`FoldPlan` of a distribution built from ``params``, ``state`` and the
    context ``c`` by ``rebuild``, or ``None`` outside ``vmap`` or when a parameter or
    state leaf is batched at the innermost ``vmap`` level (reads shapes and wrappers only)."""

    level = _vmap_level()
    if level is None:
        return None
    if _any_batched(params, level) or _any_batched(state, level):
        return None
    return FoldPlan(level, rebuild, c)


def holds_only_context(dist: Distribution, c: Tensor | None, level: int) -> bool:
    r"""Whether the only leaf of ``dist`` batched at ``level`` is the context ``c`` itself:
    the apply computed nothing from the context (lazy transforms, whose networks run in
    ``log_prob``), so a rebuild on the physical context costs object creation only. Where
    the apply computes from the context (a hypernetwork run at apply time, as Planar's), a
    rebuild would run that work twice: such distributions do not fold."""

    leaves = optree.tree_leaves(dist, namespace=NAMESPACE)
    return all(t is c for t in leaves if is_batched_at(t, level))


def _any_batched(tree: Any, level: int) -> bool:
    r"""Whether a leaf of ``tree`` is batched at ``level``: a plain walk through nested
    dicts (a few µs; a generic flatten costs tens), any other node through optree."""

    stack = [tree]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            stack.extend(node.values())
        elif isinstance(node, Tensor):
            if is_batchedtensor(node) and maybe_get_level(node) == level:
                return True
        elif node is not None:
            if any(is_batched_at(t, level) for t in optree.tree_leaves(node, namespace=NAMESPACE)):
                return True
    return False


@contextmanager
def _below() -> Iterator[None]:
    r"""Runs the enclosed code below the innermost ``vmap``: its interpreter popped (so
    outer transforms, a ``grad`` around the ``vmap``, still see the operations, and the
    code sees no ``vmap`` level), and every functorch key off when that ``vmap`` was the
    only transform (the cheapest dispatch)."""

    alone = len(get_interpreter_stack() or ()) == 1
    with retrieve_current_functorch_interpreter().lower():
        if alone:
            with torch._C._DisableFuncTorch():
                yield
        else:
            yield


def folded_log_prob(
    dist: Distribution, x: Tensor, log_prob: Callable[[Distribution, Tensor], Tensor]
) -> Tensor | None:
    r"""``log_prob(dist, x)`` computed as the batched call on the physical tensors (see the
    module's text), or ``None`` when it cannot fold (the caller then runs it per sample).

    ``x`` is the per-sample value, already checked against ``dist``.
    """

    plan: FoldPlan | None = getattr(dist, "_fold_plan", None)
    if plan is None or _vmap_level() != plan.level:
        return None
    level, c = plan.level, plan.context
    x_b, c_b = is_batched_at(x, level), is_batched_at(c, level)
    if not (x_b or c_b):
        return None
    cp = None
    if c_b:
        # per sample, the value's and the context's batch dims are right-aligned: give
        # them one rank, so that the vmapped dim, first in both, stays aligned
        event = len(dist.event_shape)
        xb, cb = x.shape[: x.dim() - event], c.shape[:-1]
        if len(xb) < len(cb):
            x = x.expand(*torch.broadcast_shapes(xb, cb), *x.shape[x.dim() - event :])
        cp = physical(c, level)
        if len(xb) > len(cb):
            cp = cp.reshape(cp.shape[0], *(1,) * (len(xb) - len(cb)), *cp.shape[1:])
    xp = physical(x, level) if x_b else x.expand(cp.shape[0], *x.shape)
    with _below():
        # nothing of ``dist`` is batched at ``level`` when the context is not
        batched = plan.rebuild(cp) if c_b else dist
        out = log_prob(batched, xp)
    return _add_batch_dim(out, 0, level)
