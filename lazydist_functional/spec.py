r"""Specs: immutable static configuration with pure ``init`` / ``apply``.

A spec holds only static configuration (sizes, orders, choice of transform).

* ``init(generator=None, *, dtype=None, device=None) -> params``: a fresh tree of
  *trainable* tensors (what :func:`torch.func.grad` and optimizers see);
* ``init_state(*, dtype=None, device=None) -> state``: the *non-trainable* tree
  (fixed masks, orders, constant base parameters), a deterministic function of
  the configuration; ``apply`` uses it when ``state`` is omitted;
* ``apply(params, c=None, *, state=None)``: a pure function returning a
  distribution or a transform that holds exactly the tensors it was given.

The flattened paths of ``params`` (``state``) joined by ``"."`` are the adapter
module's ``named_parameters()`` (``named_buffers()``) names.
"""

from __future__ import annotations

__all__ = ["Spec"]

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .checks import check_context, check_dtype, check_tree, dict_leaves
from .pytree import tree_map


def _first_float(tree: Any) -> Tensor | None:
    r"""The first floating-point tensor of a nested dict (depth first), or ``None``."""

    for value in tree.values():
        if isinstance(value, Mapping):
            found = _first_float(value)
            if found is not None:
                return found
        elif isinstance(value, Tensor) and value.is_floating_point():
            return value
    return None


class Spec:
    r"""Base class of specs (flows, lazy transforms, lazy distributions, networks)."""

    context: int = 0

    # -- to be defined by subclasses -------------------------------------------------
    def init(
        self,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> dict[str, Any]:
        r"""Returns a new tree of trainable parameters."""

        return {}

    def init_state(
        self, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> dict[str, Any]:
        r"""Returns the tree of non-trainable state (buffers)."""

        return {}

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    # -- shared machinery -------------------------------------------------------------
    @property
    def name(self) -> str:
        r"""The name used in error messages (the class name, or the adapter module's)."""

        return self.__dict__.get("_name", type(self).__name__)

    # Cached by hand, not with ``functools.cached_property``: its lock (Python < 3.12) is a
    # context manager ``torch.compile(fullgraph=True)`` cannot trace on a first call.
    def _cached_shapes(self, key: str, make: Any) -> dict[str, torch.Size]:
        shapes = self.__dict__.get(key)
        if shapes is None:
            shapes = {k: v.shape for k, v in dict_leaves(make(device="meta")).items()}
            self.__dict__[key] = shapes
        return shapes

    @property
    def param_shapes(self) -> dict[str, torch.Size]:
        r"""``{dotted name: shape}`` of the trainable parameters."""

        return self._cached_shapes("_param_shapes", self.init)

    @property
    def state_shapes(self) -> dict[str, torch.Size]:
        r"""``{dotted name: shape}`` of the non-trainable state."""

        return self._cached_shapes("_state_shapes", self.init_state)

    def default_state(self, like: Tensor | None = None) -> dict[str, Any]:
        r"""The state from :meth:`init_state` on ``like``'s device and float dtype (cached)."""

        device = like.device if like is not None else torch.device("cpu")
        dtype = like.dtype if like is not None else torch.get_default_dtype()
        cache = self.__dict__.setdefault("_state_cache", {})
        key = (device, dtype)
        if key not in cache:
            if torch.compiler.is_compiling():
                cache[key] = self.init_state(dtype=dtype, device=device)
            else:
                # Built outside any torch.func transform and inference mode: a state first
                # built under grad/vmap would cache wrapped tensors that escape their level,
                # and inference tensors cannot be saved for a later backward.
                with torch._C._DisableFuncTorch(), torch.inference_mode(False):
                    cache[key] = self.init_state(dtype=dtype, device=device)
        return cache[key]

    def init_trees(
        self,
        params: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        r"""``(params, state)`` with the missing ones initialized (the state on the params'
        dtype and device, as :meth:`apply` does), checked against the spec."""

        params = self.init(generator) if params is None else params
        if state is None:
            ref = _first_float(params)
            state = self.init_state(dtype=None if ref is None else ref.dtype, device=None if ref is None else ref.device)
        self.check(params, state)
        return params, state

    def check(self, params: Any, state: Any = None) -> None:
        r"""Raises :class:`~lazydist_functional.checks.ParamTreeError` if the trees do not
        have the expected leaves and (trailing) shapes."""

        # The signature cache holds optree specs, which ``torch.compile`` cannot hash: skip it
        # while tracing (the checks then run once, at trace time).
        seen = (None, None) if torch.compiler.is_compiling() else self.__dict__.setdefault("_checked", (set(), set()))
        check_tree(f"{self.name} params", params, self.param_shapes, seen[0])
        if state is not None:
            check_tree(f"{self.name} state", state, self.state_shapes, seen[1])

    def apply(self, params: Mapping[str, Any], c: Tensor | None = None, *, state: Any = None) -> Any:
        r"""Builds the distribution (or transform) :math:`p(X | c)` from ``params``.

        Pure: the result holds ``params``, ``state`` and ``c`` and nothing else.
        Checks (shapes and dtypes only, before any compute): the parameter tree,
        the context's presence and size, and dtypes.
        """

        self.check(params, state)
        return self.apply_checked(params, c, state)

    def apply_checked(self, params: Mapping[str, Any], c: Tensor | None, state: Any) -> Any:
        r""":meth:`apply` for trees already validated by :meth:`check` (the adapter's hot
        path): checks the context and dtypes, fills in the default state, applies."""

        ref = _first_float(params)
        if state is None:
            state = self.default_state(ref)
        if ref is None:
            ref = _first_float(state)
        check_context(c, self.context, self.name)
        if c is not None and ref is not None:
            check_dtype("the context", c, ref.dtype)
        return self._apply(params, c, state)

    def __call__(self, params: Mapping[str, Any], c: Tensor | None = None, *, state: Any = None) -> Any:
        return self.apply(params, c, state=state)


def cast_tree(tree: Any, dtype: torch.dtype | None, device: torch.device | str | None) -> Any:
    r"""Moves a tree to ``device`` and casts its floating leaves to ``dtype``."""

    def cast(t: Tensor) -> Tensor:
        if t.is_floating_point() and dtype is not None:
            return t.to(device=device, dtype=dtype)
        return t.to(device=device)

    return tree_map(cast, tree)


