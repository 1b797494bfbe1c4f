r"""Shared pieces of conditioners: broadcast batch dimensions, concatenate the context,
unpack univariate parameters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod

import torch
import torch.nn.functional as F
from torch import Size, Tensor
from torch.distributions import Transform

from ..checks import check_batch
from ..transforms import DependentTransform


def broadcast(*tensors: Tensor, ignore: int | Sequence[int] = 0) -> list[Tensor]:
    r"""Broadcasts tensors together, except their ``ignore`` rightmost dimensions (an
    ``int`` for all, or one per tensor).

    Example:
        >>> x, y = broadcast(torch.rand(3, 1, 2), torch.rand(4, 5), ignore=1)
        >>> x.shape, y.shape
        (torch.Size([3, 4, 2]), torch.Size([3, 4, 5]))
    """

    ignore = [ignore] * len(tensors) if isinstance(ignore, int) else list(ignore)
    batch = torch.broadcast_shapes(*(t.shape[: t.dim() - i] for t, i in zip(tensors, ignore, strict=True)))
    return [t.expand(batch + t.shape[t.dim() - i :]) for t, i in zip(tensors, ignore, strict=True)]


def with_context(x: Tensor, c: Tensor | None) -> Tensor:
    r"""Concatenates ``x`` (*, D) and ``c`` (*, C) after broadcasting batch dims."""

    if c is None:
        return x
    if x.shape[:-1] != c.shape[:-1]:
        check_batch("the input", x.shape, "the context", c.shape[:-1])
        x, c = broadcast(x, c, ignore=1)
    if torch.compiler.is_compiling():
        # The same values (adding zeros is exact): ``torch.cat`` under ``vmap`` makes dynamo
        # specialize the batch size, so every new N would compile a new graph.
        return F.pad(x, (0, c.shape[-1])) + F.pad(c, (x.shape[-1], 0))
    return torch.cat((x, c), dim=-1)


def unpack(phi: Tensor, shapes: Sequence[Size]) -> list[Tensor]:
    r"""Splits (*, sum prod(shapes)) into tensors of shapes (*, *shape_i)."""

    sizes = [prod(s) for s in shapes]
    return [p.reshape(p.shape[:-1] + tuple(s)) for p, s in zip(phi.split(sizes, dim=-1), shapes, strict=True)]


def univariate_from(
    phi: Tensor, features: int, univariate: Callable[..., Transform], shapes: Sequence[Size]
) -> Transform:
    r"""Builds the element-wise transform of each feature from the conditioner's output.

    ``phi`` has shape (*, features * total), laid out feature-major: the ``total``
    numbers of feature :math:`i` are contiguous (Zuko's layout, so checkpoints match).
    """

    total = sum(prod(s) for s in shapes)
    phi = phi.reshape(*phi.shape[:-1], features, total)
    return DependentTransform(univariate(*unpack(phi, shapes)), 1)
