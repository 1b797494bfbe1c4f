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
fuses the plain graph itself), or the distribution was not built by ``Flow.apply``
inside that very ``vmap`` level.

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

__all__ = ["FoldPlan", "fold_build", "fold_plan", "folded_log_prob"]

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optree
import torch
from torch import Tensor
from torch._C._functorch import (
    TransformType,
    _add_batch_dim,
    _unwrap_batched,
    is_batchedtensor,
    maybe_current_level,
    maybe_get_level,
)
from torch._functorch.pyfunctorch import retrieve_current_functorch_interpreter
from torch.distributions import Distribution

from ..pytree import NAMESPACE


@dataclass(frozen=True)
class FoldPlan:
    r"""How a distribution applied inside the ``vmap`` of ``level`` gets its batched twin
    on the physical context: ``rebuild(c)`` (the spec's apply on the same, unbatched,
    parameters and state), or ``physical``, built already (:func:`fold_build`).
    ``context`` is the per-sample context (``None``, or not batched at ``level``: then the
    distribution itself holds nothing batched at that level)."""

    level: int
    rebuild: Callable[[Tensor | None], Distribution] | None
    context: Tensor | None
    physical: Distribution | None = None


def _batched_at(t: Any, level: int) -> bool:
    return isinstance(t, Tensor) and is_batchedtensor(t) and maybe_get_level(t) == level


def _vmap_level() -> int | None:
    r"""The level of the innermost transform when it is a ``vmap`` (and nothing is being
    compiled), else ``None``."""

    if torch.compiler.is_compiling():
        return None
    level = maybe_current_level()
    if level is None:
        return None
    if retrieve_current_functorch_interpreter().key() != TransformType.Vmap:
        return None
    return level


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


def _any_batched(tree: Any, level: int) -> bool:
    r"""Whether a leaf of ``tree`` is batched at ``level``: a plain walk through nested
    dicts (a few µs; a generic flatten costs tens), any other node through optree."""

    if isinstance(tree, Tensor):
        return _batched_at(tree, level)
    if type(tree) is dict:
        return any(_any_batched(value, level) for value in tree.values())
    return any(_batched_at(leaf, level) for leaf in optree.tree_leaves(tree, namespace=NAMESPACE))


def fold_build(
    params: Any, state: Any, c: Tensor | None, build: Callable[[Tensor], Distribution]
) -> Distribution | None:
    r"""``build(c)`` made once on the physical context when the innermost ``vmap`` batches
    ``c`` and no parameter or state leaf (else ``None``: the caller builds per sample).

    For specs whose apply computes (a hypernetwork's output, a covariance) rather than
    holds lazy transforms: the apply-time operations then skip the batching rules too.
    Every tensor leaf of ``build(c)`` must derive from ``c`` (leading dims ``c.shape[:-1]``);
    they are wrapped back at the ``vmap`` level, vmapped dim first, so the result is the
    per-sample distribution, and its ``log_prob`` folds onto the physical one.
    """

    plan = fold_plan(params, state, c, None)
    if plan is None or not _batched_at(c, plan.level):
        return None
    level, cp = plan.level, _physical(c, plan.level)
    with retrieve_current_functorch_interpreter().lower():
        physical = build(cp)
    leaves, treespec = optree.tree_flatten(physical, namespace=NAMESPACE)
    if not all(isinstance(t, Tensor) and t.dim() >= 1 and t.shape[0] == cp.shape[0] for t in leaves):
        return None
    dist = optree.tree_unflatten(treespec, [_add_batch_dim(t, 0, level) for t in leaves])
    dist._fold_plan = FoldPlan(level, None, c, physical)
    return dist


def _physical(t: Tensor, level: int) -> Tensor:
    inner, bdim = _unwrap_batched(t, level)
    return inner.movedim(bdim, 0) if bdim != 0 else inner


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
    x_b, c_b = _batched_at(x, level), _batched_at(c, level)
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
        cp = _physical(c, level)
        if len(xb) > len(cb):
            if plan.physical is not None:  # built already, on the context as it came
                return None
            cp = cp.reshape(cp.shape[0], *(1,) * (len(xb) - len(cb)), *cp.shape[1:])
    xp = _physical(x, level) if x_b else x.expand(cp.shape[0], *x.shape)
    with retrieve_current_functorch_interpreter().lower():
        # nothing of ``dist`` is batched at ``level`` when the context is not
        physical = (plan.physical if plan.physical is not None else plan.rebuild(cp)) if c_b else dist
        out = log_prob(physical, xp)
    return _add_batch_dim(out, 0, level)
