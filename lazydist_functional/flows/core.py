r"""Core specs: flows, composed lazy transforms, unconditional distributions/transforms."""

from __future__ import annotations

__all__ = [
    "Composite",
    "Flow",
    "LazyComposedTransform",
    "LazyInverse",
    "UnconditionalDistribution",
    "UnconditionalTransform",
    "subtree",
]

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import torch
from torch import Tensor

from ..distributions import NormalizingFlow
from ..distributions.vmap_fold import fold_plan, holds_only_context
from ..functorch_levels import is_batched_at
from ..nn import is_meta
from ..spec import Spec
from ..trees import tree_cast
from ..transforms import ComposedTransform


Part = Union[Spec, tuple[Spec, ...]]


class Composite(Spec):
    r"""A spec made of child specs, its *parts*.

    ``part_names`` (a class attribute) are the keys of the parameter and state trees
    and the attribute names of the adapter's module (Zuko's names): a single part
    ``k`` owns the subtree ``tree[k]``, a tuple part owns ``tree[k][str(i)]``. This is
    the one place where composite tree keys are defined; the adapter builds its child
    modules from :meth:`parts` and rebuilds a spec with :meth:`from_parts`.
    """

    part_names: tuple[str, ...] = ()

    def parts(self) -> dict[str, Part]:
        r"""``{name: spec or tuple of specs}`` in ``part_names`` order."""

        return {name: getattr(self, name) for name in self.part_names}

    @classmethod
    def from_parts(cls, **parts: Part) -> Composite:
        r"""A spec of this composite kind from parts (the generic constructor)."""

        return cls(*parts.values())

    def _each(self, make: Callable[[Spec], Any]) -> dict[str, Any]:
        return {
            name: {str(i): make(p) for i, p in enumerate(part)} if isinstance(part, tuple) else make(part)
            for name, part in self.parts().items()
        }

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return self._each(lambda p: p.init(generator, dtype=dtype, device=device))

    def init_state(self, *, dtype=None, device=None) -> dict[str, Any]:
        return self._each(lambda p: p.init_state(dtype=dtype, device=device))


def _folds(spec: Spec) -> bool:
    r"""Whether no part of ``spec`` opts out of the vmap fold (``vmap_fold = False``: a part
    whose batched call is not the stack of its per-sample calls, e.g. an adaptive ODE solver)."""

    if not getattr(spec, "vmap_fold", True):
        return False
    parts = spec.parts() if isinstance(spec, Composite) else {}
    return all(_folds(p) for part in parts.values() for p in (part if isinstance(part, tuple) else (part,)))


def subtree(tree: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    r"""``tree[k0][k1]...``, or ``{}`` where a key is absent (a part without parameters
    has no subtree)."""

    for key in keys:
        tree = tree.get(key, {})
    return tree


class LazyComposedTransform(Composite):
    r"""Composition of lazy transform specs :math:`f(x | c) = f_n(\cdot | c) \circ \dots \circ f_0(x | c)`.

    Parameters live under ``"transforms.<i>"`` (the names of Zuko's module).

    Example:
        >>> from lazydist_functional.flows import MaskedAutoregressiveTransform
        >>> t = LazyComposedTransform(MaskedAutoregressiveTransform(2), MaskedAutoregressiveTransform(2))
        >>> sorted(t.init())
        ['transforms']
    """

    part_names = ("transforms",)

    def __init__(self, *transforms: Spec) -> None:
        if not transforms:
            raise ValueError("LazyComposedTransform needs at least one transform")
        self.transforms = tuple(transforms)
        self.context = max(t.context for t in self.transforms)

    @classmethod
    def from_parts(cls, *, transforms: tuple[Spec, ...]) -> LazyComposedTransform:
        return cls(*transforms)

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> Any:
        return ComposedTransform(*(
            t._apply(subtree(params, "transforms", str(i)), c if t.context else None, subtree(state, "transforms", str(i)))
            for i, t in enumerate(self.transforms)
        ))


class LazyInverse(Composite):
    r"""The inverse :math:`f^{-1}(\cdot | c)` of a lazy transform spec (params under ``"transform"``)."""

    part_names = ("transform",)

    def __init__(self, transform: Spec) -> None:
        self.transform = transform
        self.context = transform.context

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> Any:
        return self.transform._apply(subtree(params, "transform"), c, subtree(state, "transform")).inv


class _Constructor(Spec):
    r"""``f(*args, **kwargs)`` with the tensor arguments held as parameters or state.

    Positional tensors are named ``"_<i>"``, keyword tensors by their keyword (Zuko's
    naming); non-tensor arguments are static configuration.
    """

    def __init__(self, f: Callable[..., Any], *args: Any, buffer: bool = False, **kwargs: Any) -> None:
        self.f = f
        self.buffer = bool(buffer)
        self.arg_names = tuple(f"_{i}" for i in range(len(args)))
        self.kwarg_names = tuple(kwargs)
        values = dict(zip(self.arg_names, args, strict=True)) | dict(kwargs)
        self.tensors = {k: v.detach().clone() for k, v in values.items() if isinstance(v, Tensor)}
        self.static = {k: v for k, v in values.items() if not isinstance(v, Tensor)}

    def _tensors(self, dtype, device) -> dict[str, Tensor]:
        if is_meta(device):
            return {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in self.tensors.items()}
        return tree_cast({k: v.clone() for k, v in self.tensors.items()}, dtype, device)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return {} if self.buffer else self._tensors(dtype, device)

    def init_state(self, *, dtype=None, device=None) -> dict[str, Any]:
        return self._tensors(dtype, device) if self.buffer else {}

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> Any:
        values = {**self.static, **state, **params}  # (a module may move a tensor from one to the other)
        args = [values[k] for k in self.arg_names]
        kwargs = {k: values[k] for k in self.kwarg_names}
        return self.f(*args, **kwargs)


class UnconditionalDistribution(_Constructor):
    r"""An unconditional lazy distribution ``f(*args, **kwargs)``; the context is ignored.

    Arguments:
        f: a distribution constructor, e.g. :class:`~lazydist_functional.distributions.DiagNormal`.
        args, kwargs: its arguments; tensors become parameters (or state if ``buffer``).
        buffer: hold the tensors as non-trainable state.

    Example:
        >>> from lazydist_functional.distributions import DiagNormal
        >>> base = UnconditionalDistribution(DiagNormal, torch.zeros(2), torch.ones(2), buffer=True)
        >>> base.apply(base.init()).event_shape
        torch.Size([2])
    """

    def apply(self, params, c=None, *, state=None):  # noqa: D102 - the context is ignored
        return super().apply(params, None, state=state)


class UnconditionalTransform(UnconditionalDistribution):
    r"""An unconditional lazy transform ``f(*args, **kwargs)``; the context is ignored."""


class Flow(Composite):
    r"""A lazy normalizing flow :math:`p(X | c)` from lazy transform(s) and a base.

    ``apply(params, c)`` returns a :class:`~lazydist_functional.distributions.NormalizingFlow`
    whose base is expanded to the context's batch shape. Parameters live under
    ``"transform"`` and ``"base"`` (Zuko's names).

    Arguments:
        transform: a lazy transform spec, or a sequence of them (composed).
        base: a lazy distribution spec.

    Example:
        >>> from lazydist_functional.flows import MaskedAutoregressiveTransform
        >>> from lazydist_functional.flows.common import standard_base
        >>> flow = Flow([MaskedAutoregressiveTransform(2, 1)], standard_base(2))
        >>> flow.apply(flow.init(), torch.randn(5, 1)).batch_shape
        torch.Size([5])
    """

    part_names = ("transform", "base")

    def __init__(self, transform: Spec | Sequence[Spec], base: Spec) -> None:
        if not isinstance(transform, Spec):
            transform = LazyComposedTransform(*transform)
        self.transform = transform
        self.base = base
        self.context = max(transform.context, base.context)

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> NormalizingFlow:
        flow = self._build(params, c, state)
        # Inside a ``vmap`` over contexts, log_prob runs as the batched call (``vmap_fold``)
        plan = fold_plan(params, state, c, lambda cp: self._build(params, cp, state))
        flow._fold_plan = plan if plan is not None and self._foldable(flow, c, plan.level) else None
        return flow

    def _foldable(self, flow: NormalizingFlow, c: Tensor | None, level: int) -> bool:
        r"""Whether this flow's ``log_prob`` may fold (``vmap_fold``): not with batch-statistics
        layers (in training mode, statistics over the batch), nor when the apply computes
        from the context (the fold's rebuild would compute it twice). Structural, so cached."""

        foldable = self.__dict__.get("_foldable_cache")
        if foldable is None:
            if c is None or not is_batched_at(c, level):  # nothing to learn from this call
                return self.in_mode("eval") is self
            foldable = self.in_mode("eval") is self and _folds(self) and holds_only_context(flow, c, level)
            self.__dict__["_foldable_cache"] = foldable
        return foldable

    def _build(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> NormalizingFlow:
        transform = self.transform._apply(subtree(params, "transform"), c, subtree(state, "transform"))
        base_c = c if self.base.context else None
        base = self.base._apply(subtree(params, "base"), base_c, subtree(state, "base"))
        if c is not None:
            base = base.expand(c.shape[:-1])
        return NormalizingFlow(transform, base)
