r"""Scale-out of a K-member ensemble across processes with :mod:`torch.distributed`.

An ensemble (or K Bayesian weight samples, or K hypernetwork outputs) is a stacked
parameter tree: every leaf has a leading axis of K members (see
:func:`~lazydist_functional.trees.init_stacked`). Each of W ranks holds a contiguous
shard of :math:`K_r` members, vmaps the pure ``spec.apply(...).log_prob`` over it, and
the equal-weight mixture

.. math:: \log p(x \mid c) = \log \frac{1}{K} \sum_{k=1}^{K} p_k(x \mid c)
    = m + \log \sum_{r=1}^{W} \underbrace{\sum_{k \in r} e^{\log p_k(x \mid c) - m}}_{s_r} - \log K,
    \qquad m = \max_k \log p_k(x \mid c),

is reduced with two collectives of the batch's size: an ``all_reduce(MAX)`` of the
(detached: the expression does not depend on :math:`m`) per-rank maxima, and an
``all_reduce(SUM)`` of the :math:`s_r`. Every rank gets the same :math:`\log p(x \mid c)`.

Gradients: every rank builds the same (replicated) loss from the replicated output, so
:math:`\partial L / \partial s_r = \partial L / \partial S` with :math:`S = \sum_r s_r`,
and the backward of the sum is the identity on each rank (no communication). (The
backward of ``torch.distributed.nn.functional.all_reduce`` instead sums the ranks'
gradients, which is right for a loss :math:`\sum_r L_r` of per-rank terms and gives W
times the gradient of a replicated loss.) ``loss.backward()`` on every rank thus leaves
on each rank's shard exactly the gradient of the single-process mixture.

``x`` and ``c`` must be the same on every rank. The collectives use the default (or
given) process group, so the same code runs on ``gloo`` (CPU) and ``nccl`` (CUDA
tensors). Collectives cannot run under ``torch.func`` transforms: differentiate with
autograd (``loss.backward()`` / ``torch.autograd.grad``).

Without an initialized process group everything runs on the one process (W = 1).

Example:
    >>> from lazydist_functional.flows import MAF
    >>> from lazydist_functional.trees import init_stacked
    >>> spec = MAF(2, 1, hidden_features=[8])
    >>> shard = shard_tree(init_stacked(spec, 4))  # rank r of W keeps its members
    >>> x, c = torch.randn(5, 2), torch.randn(5, 1)
    >>> mixture_log_prob(spec, shard, x, c).shape
    torch.Size([5])
    >>> member_log_probs(spec, shard, x, c).shape
    torch.Size([4, 5])
"""

from __future__ import annotations

__all__ = ["member_log_probs", "mixture_log_prob", "shard_range", "shard_tree"]

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.autograd import Function
from torch.func import vmap

from .pytree import tree_leaves, tree_map
from .spec import Spec


def _world(group: Any = None) -> tuple[int, int]:
    r"""``(rank, world_size)`` in ``group``; ``(0, 1)`` without a process group."""

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(group), dist.get_world_size(group)
    return 0, 1


def shard_range(k: int, rank: int, world_size: int) -> tuple[int, int]:
    r"""Members ``[start, stop)`` of rank ``rank``: contiguous shards whose sizes differ by
    at most one (the first ``k % world_size`` ranks hold one more).

    Example:
        >>> [shard_range(5, r, 2) for r in range(2)]
        [(0, 3), (3, 5)]
    """

    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if k < world_size:
        raise ValueError(f"an ensemble of {k} members cannot be sharded over {world_size} ranks (expected k >= ranks)")
    size, extra = divmod(k, world_size)
    start = rank * size + min(rank, extra)
    return start, start + size + (rank < extra)


def shard_tree(stacked: Any, rank: int | None = None, world_size: int | None = None, group: Any = None) -> Any:
    r"""Rank ``rank``'s shard of a stacked tree (axis 0 of every leaf); by default the
    calling process's rank and world size in ``group``."""

    leaves = tree_leaves(stacked)
    if not leaves:
        raise ValueError("expected a stacked parameter tree with at least one tensor leaf, got none")
    k = leaves[0].shape[0]
    if any(leaf.shape[:1] != (k,) for leaf in leaves):
        raise ValueError(f"expected every leaf stacked on axis 0 with {k} members, got {[tuple(t.shape) for t in leaves]}")
    default_rank, default_world = _world(group)
    start, stop = shard_range(k, default_rank if rank is None else rank,
                              default_world if world_size is None else world_size)
    return tree_map(lambda t: t[start:stop], stacked)


def member_log_probs(spec: Spec, params: Any, x: Tensor, c: Tensor | None = None, *, state: Any = None) -> Tensor:
    r""":math:`\log p_k(x \mid c)` of every member of a (local) stacked tree, shape
    ``(K_r, *batch)``: one ``vmap`` over the members, ``x`` and ``c`` shared."""

    return vmap(lambda p: spec.apply(p, c, state=state).log_prob(x))(params)


class _SumReplicated(Function):
    r"""``all_reduce(SUM)`` whose backward is the identity: the gradient of a replicated
    loss with respect to one rank's summand."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, group: Any) -> Tensor:
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def mixture_log_prob(
    spec: Spec, params: Any, x: Tensor, c: Tensor | None = None, *, state: Any = None, group: Any = None
) -> Tensor:
    r"""The equal-weight mixture :math:`\log \frac{1}{K} \sum_k p_k(x \mid c)` over all
    ranks' members (``params``: this rank's shard), shape ``batch``, the same on every
    rank and differentiable with respect to the local shard (see the module docstring)."""

    lp = member_log_probs(spec, params, x, c, state=state)
    m = lp.detach().amax(0)
    k = torch.tensor(float(lp.shape[0]), dtype=lp.dtype, device=lp.device)
    distributed = _world(group)[1] > 1
    if distributed:
        dist.all_reduce(m, op=dist.ReduceOp.MAX, group=group)
        dist.all_reduce(k, op=dist.ReduceOp.SUM, group=group)
    s = (lp - m).exp().sum(0)
    if distributed:
        s = _SumReplicated.apply(s, group)
    return m + s.log() - k.log()

