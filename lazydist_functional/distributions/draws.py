r"""Where a distribution's noise comes from: torch's generator or explicit keys.

Every distribution of this package samples through one method, ``_draw(sample_shape,
draws)``, written once for both sources:

- :data:`TORCH` draws ``torch.randn``/``torch.rand`` of the full shape (today's
  behaviour, what ``sample(shape)`` without ``key`` does);
- :class:`KeyedDraws` holds one key per member of the distribution's batch (keys of
  shape ``(*batch_shape, 2)``) and draws member :math:`b`'s noise of shape
  ``sample_shape + event_shape`` from its own key alone, then moves the batch
  dimensions after the sample dimensions.

The rule a user sees (:func:`member_keys`): a distribution of batch shape ``B`` sampled
with ``key=k`` gives member :math:`b` the key ``split(k, B)[b]``, and a distribution of
batch shape ``()`` uses ``k`` itself. Hence drawing a batch at once, one member at a time
(``key=split(k, B)[b]``), or under ``vmap`` over the members with the keys
``split(k, B)`` gives bitwise the same samples. Composite distributions derive their
parts' keys per member: part :math:`i` uses ``fold_in(key, i)`` (:meth:`KeyedDraws.part`),
and a batch dimension of components of size :math:`K` uses ``split(key, K)``
(:meth:`KeyedDraws.split`).

Example:
    >>> from lazydist_functional import random
    >>> from lazydist_functional.distributions import DiagNormal
    >>> d = DiagNormal(torch.zeros(2, 3), torch.ones(2, 3))  # batch (2,), event (3,)
    >>> k = random.key(0)
    >>> x = d.sample((4,), key=k)
    >>> bool((x[:, 1] == DiagNormal(torch.zeros(3), torch.ones(3)).sample((4,), key=random.split(k, 2)[1])).all())
    True
"""

from __future__ import annotations

__all__ = ["TORCH", "Draws", "KeyedDraws", "TorchDraws", "draw", "member_keys"]

from collections.abc import Sequence

import torch
from torch import Size, Tensor
from torch._C._functorch import TransformType
from torch.distributions import Distribution, Independent, Normal, Uniform

from .. import random
from ..checks import InputTypeError, ShapeError


def _under_vmap(x: Tensor) -> bool:
    r"""Whether a ``torch.func.vmap`` is running: at any level in eager code; while
    ``torch.compile`` traces (where the interpreter stack cannot be read), whether ``x``
    is batched."""

    if torch.compiler.is_compiling():
        return torch._C._functorch.is_batchedtensor(x)
    stack = torch._C._functorch.get_interpreter_stack()
    return stack is not None and any(i.key() == TransformType.Vmap for i in stack)


def member_keys(key: Tensor, batch_shape: Sequence[int]) -> Tensor:
    r"""The keys of a batch's members: ``key`` for batch shape ``()``, else
    ``split(key, batch_shape)`` (shape ``(*batch_shape, 2)``)."""

    if not isinstance(key, Tensor) or key.shape != (2,):
        got = f"shape {tuple(key.shape)}" if isinstance(key, Tensor) else type(key).__name__
        raise ShapeError(f"key should be one key of shape (2,) (random.key/split/fold_in; under vmap per member), got {got}")
    return random.split(key, batch_shape) if len(batch_shape) else key


class Draws:
    r"""A source of noise (:data:`TORCH` or :class:`KeyedDraws`); shapes are ``sample_shape``
    and the distribution's full ``shape`` (batch then event)."""

    keyed = False

    def normal(self, sample_shape: Size, shape: Size, like: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def uniform(self, sample_shape: Size, shape: Size, like: Tensor, low: float = 0.0) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def categorical(self, sample_shape: Size, logits: Tensor) -> Tensor:
        r"""Indices :math:`k \sim \text{Categorical}(\text{softmax}(\ell))` of shape
        ``sample_shape + logits.shape[:-1]``, by Gumbel-max:
        :math:`k = \arg\max_j \ell_j - \log(-\log u_j)`, :math:`u_j \sim \mathcal{U}(0, 1)`."""

        u = self.uniform(sample_shape, logits.shape, logits, low=torch.finfo(logits.dtype).tiny)
        return torch.argmax(logits - torch.log(-torch.log(u)), dim=-1)

    def part(self, i: int) -> Draws:
        r"""The source of part ``i`` of a composite (the same generator, or ``fold_in(key, i)``)."""

        return self

    def split(self, n: int) -> Draws:
        r"""The source of a batch with one more dimension, of size ``n``."""

        return self


class TorchDraws(Draws):
    r"""Noise from torch's global generator (``torch.randn``, ``torch.rand``)."""

    def normal(self, sample_shape: Size, shape: Size, like: Tensor) -> Tensor:
        return torch.randn(sample_shape + shape, dtype=like.dtype, device=like.device)

    def uniform(self, sample_shape: Size, shape: Size, like: Tensor, low: float = 0.0) -> Tensor:
        u = torch.rand(sample_shape + shape, dtype=like.dtype, device=like.device)
        return u if low == 0.0 else torch.clamp_min(u, low)

    def categorical(self, sample_shape: Size, logits: Tensor) -> Tensor:
        r"""``torch.multinomial`` on the softmax, as torch's ``Categorical(logits=...).sample``
        draws (hence Zuko's numbers for a seed, eager or compiled); Gumbel-max on uniforms
        under ``vmap``, where ``randomness="same"`` refuses ``multinomial`` of batched
        probabilities."""

        n = Size(sample_shape).numel()
        if n == 0 or logits.numel() == 0 or _under_vmap(logits):  # multinomial draws none of 0
            return super().categorical(sample_shape, logits)
        probs = torch.softmax(logits - torch.logsumexp(logits, dim=-1, keepdim=True), dim=-1)
        k = torch.multinomial(probs.reshape(-1, probs.shape[-1]), n, True).T
        return k.reshape(Size(sample_shape) + logits.shape[:-1])


TORCH = TorchDraws()


class KeyedDraws(Draws):
    r"""Noise from one key per batch member: ``keys`` of shape ``(*batch_shape, 2)``."""

    keyed = True

    def __init__(self, keys: Tensor) -> None:
        self.keys = keys

    def _place(self, x: Tensor, sample_shape: Size) -> Tensor:
        nb, ns = self.keys.dim() - 1, len(sample_shape)
        return torch.movedim(x, tuple(range(nb)), tuple(range(ns, ns + nb))) if nb and ns else x

    def _event(self, shape: Size) -> Size:
        nb = self.keys.dim() - 1
        if shape[:nb] != self.keys.shape[:-1]:
            raise ShapeError(f"keys for batch {tuple(self.keys.shape[:-1])} cannot draw shape {tuple(shape)}")
        return shape[nb:]

    def normal(self, sample_shape: Size, shape: Size, like: Tensor) -> Tensor:
        keys = self.keys.to(like.device)
        return self._place(random.normal(keys, sample_shape + self._event(shape), like.dtype), sample_shape)

    def uniform(self, sample_shape: Size, shape: Size, like: Tensor, low: float = 0.0) -> Tensor:
        keys = self.keys.to(like.device)
        u = random.uniform(keys, sample_shape + self._event(shape), like.dtype, low, 1.0)
        return self._place(u, sample_shape)

    def part(self, i: int) -> KeyedDraws:
        return KeyedDraws(random.fold_in(self.keys, i))

    def split(self, n: int) -> KeyedDraws:
        return KeyedDraws(random.split(self.keys, n))


def draw(d: Distribution, sample_shape: Size, draws: Draws) -> Tensor:
    r"""A draw of shape ``sample_shape + d.batch_shape + d.event_shape`` from any
    distribution: this package's through ``_draw``; torch's through ``rsample``/``sample``
    with :data:`TORCH`, and with keys: ``Normal``, ``Uniform``, ``Independent`` of those,
    and any univariate distribution with an ``icdf``."""

    if hasattr(d, "_draw"):
        if d.has_rsample:
            return d._draw(sample_shape, draws)
        with torch.no_grad():
            return d._draw(sample_shape, draws)
    if not draws.keyed:
        return d.rsample(sample_shape) if d.has_rsample else d.sample(sample_shape)
    shape = d.batch_shape + d.event_shape
    if isinstance(d, Independent):
        inner = draws
        for n in d.base_dist.batch_shape[len(d.batch_shape) :]:
            inner = inner.split(n)
        return draw(d.base_dist, sample_shape, inner)
    if isinstance(d, Normal):
        return d.loc + d.scale * draws.normal(sample_shape, shape, d.loc)
    if isinstance(d, Uniform):
        return d.low + (d.high - d.low) * draws.uniform(sample_shape, shape, d.low)
    if len(d.event_shape) == 0:
        like = d.mean if d.mean.is_floating_point() else torch.empty(())
        u = draws.uniform(sample_shape, shape, like, low=torch.finfo(like.dtype).tiny)
        try:
            return d.icdf(u)
        except NotImplementedError:
            pass
    raise InputTypeError(
        f"sampling {type(d).__name__} with a key needs one of this package's distributions, a torch Normal, "
        "Uniform or Independent, or a univariate distribution with an icdf"
    )
