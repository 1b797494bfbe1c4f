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

__all__ = ["Parametric", "Spec"]

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from .checks import (ContextError, ParamTreeError, broadcasts, check_context, check_dtype, check_tree, outside_inference,
                     promote_input)
from .pytree import Partial, as_nested, first_float, flatten_names, unflatten_names
from .transforms.batchnorm import running_updates


class Derived:
    r"""A cached value derived from a spec's configuration (shapes, checked tree signatures),
    boxed in an object without a ``__dict__``: generic walkers of object graphs that rewrite
    every list or tuple they meet inside a dict (sbi's ``detach_and_deepcopy`` on a module
    holding a spec) pass it by, as they pass by Zuko's modules, which hold no such caches.

    Example:
        >>> Derived({"weight": torch.Size([2, 3])}).value
        {'weight': torch.Size([2, 3])}
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Parametric:
    r"""What specs and networks share: a tree of trainable parameters (:meth:`init`), a
    tree of non-trainable state (:meth:`init_state`), their shapes, and the checks of
    given trees against them. Subclasses add the call (:class:`Spec`'s
    ``apply(params, c)``, :class:`~lazydist_functional.nn.Network`'s ``apply(params, x)``)."""

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

    #: Tree keys whose part is held under another attribute name (``{"univariate": "univariate_spec"}``).
    part_attributes: Mapping[str, str] = {}

    #: The instance attributes that cache values derived from the configuration.
    derived_caches: tuple[str, ...] = ("_param_shapes", "_param_shapes_floating", "_state_shapes",
                                       "_state_shapes_floating", "_state_cache", "_checked", "_modes")

    def with_parts(self, parts: Mapping[str, Any]) -> Parametric:
        r"""A shallow copy of this spec whose parts under the tree keys of ``parts`` (a spec,
        or a tuple of specs for a composite's tuple part) are replaced; no derived cache is
        carried over (it describes the original's parts)."""

        new = self._fresh_copy()
        for key, part in parts.items():
            setattr(new, self.part_attributes.get(key, key), part)
        return new

    def with_configuration(self, values: Mapping[str, Any]) -> Parametric:
        r"""A shallow copy of this spec with configuration attributes replaced (what a module
        does on ``flow.transform.atol = 1e-8``: Zuko's modules read such attributes when
        called); no derived cache is carried over."""

        new = self._fresh_copy()
        new.__dict__.update(values)
        return new

    def _fresh_copy(self) -> Parametric:
        r"""A shallow copy without the derived caches (they describe the original)."""

        new = copy.copy(self)
        for key in self.derived_caches:
            new.__dict__.pop(key, None)
        return new

    # -- shared machinery -------------------------------------------------------------
    def part(self, key: str) -> Parametric | None:
        r"""The parametric part (a network, a parametrized univariate) whose trees live under
        ``key`` of this spec's trees, or ``None`` if ``key`` holds plain tensors."""

        value = vars(self).get(self.part_attributes.get(key, key))
        return value if isinstance(value, Parametric) else None

    @property
    def name(self) -> str:
        r"""The name used in error messages (the class name)."""

        return type(self).__name__

    # Cached by hand, not with ``functools.cached_property``: its lock (Python < 3.12) is a
    # context manager ``torch.compile(fullgraph=True)`` cannot trace on a first call.
    def _cached_shapes(self, key: str, make: Any, refresh: bool = False) -> dict[str, torch.Size]:
        box = None if refresh else self.__dict__.get(key)
        if not isinstance(box, Derived):  # (absent, or a spec pickled before values were boxed)
            leaves = flatten_names(make(device="meta"))
            self.__dict__[key + "_floating"] = frozenset(k for k, v in leaves.items() if v.is_floating_point())
            box = self.__dict__[key] = Derived({k: v.shape for k, v in leaves.items()})
        return box.value

    def _floating(self, key: str, make: Any) -> frozenset[str]:
        r"""The names of the floating leaves of the tree :meth:`_cached_shapes` caches under
        ``key`` (the others, e.g. integer orders or boolean masks, may have any dtype)."""

        names = self.__dict__.get(key + "_floating")
        if names is None:  # a fresh spec, or one unpickled from a version that did not cache them
            # (no ``__dict__.pop``: torch 2.11's dynamo cannot trace it, a graph break on a first call)
            self._cached_shapes(key, make, refresh=True)
            names = self.__dict__[key + "_floating"]
        return names

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
        # ``get`` and item assignment only: torch 2.11's dynamo cannot trace ``__dict__.setdefault``
        cache = self.__dict__.get("_state_cache")
        key = (device, dtype)
        if cache is not None and key in cache:
            return cache[key]
        if torch.compiler.is_compiling():
            # Built inside the graph and not cached: a cached traced tensor would become a
            # graph output, which fails under ``torch.func`` transforms ("Cannot access
            # storage of TensorWrapper") and would tie the cache to one trace.
            return self.init_state(dtype=dtype, device=device)
        # Built outside any torch.func transform and inference mode: a state first built
        # under grad/vmap would cache wrapped tensors that escape their level, and
        # inference tensors cannot be saved for a later backward.
        with torch._C._DisableFuncTorch(), torch.inference_mode(False):
            state = self.init_state(dtype=dtype, device=device)
        self.__dict__["_state_cache"] = {**(cache or {}), key: state}
        return state

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
            ref = first_float(params)
            state = self.init_state(dtype=None if ref is None else ref.dtype, device=None if ref is None else ref.device)
        self.check(params, state)
        return params, state

    def check(self, params: Any, state: Any = None) -> torch.Size:
        r"""Raises :class:`~lazydist_functional.checks.ParamTreeError` if the trees do not
        have the expected leaves, (trailing) shapes and one floating dtype; returns the
        parameters' batch shape (the leading dimensions shared by every leaf)."""

        # The signature cache holds optree specs, which ``torch.compile`` cannot hash: skip it
        # while tracing (the checks then run once, at trace time).
        seen = (None, None)
        if not torch.compiler.is_compiling():
            box = self.__dict__.get("_checked")
            if not isinstance(box, Derived):
                box = self.__dict__["_checked"] = Derived(({}, {}))
            seen = box.value
        floating = self._floating("_param_shapes", self.init)
        batch = check_tree(f"{self.name} params", params, self.param_shapes, seen[0], floating)
        if state is not None:
            floating = self._floating("_state_shapes", self.init_state)
            check_tree(f"{self.name} state", state, self.state_shapes, seen[1], floating)
            ref, other = first_float(params), first_float(state)
            if ref is not None and other is not None and other.dtype != ref.dtype:
                raise ParamTreeError(
                    f"{self.name} state has dtype {other.dtype} but the parameters have dtype {ref.dtype}"
                )
        return batch

    def split_state_dict(self, state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Any], dict[str, Any]]:
        r"""A flat ``state_dict`` (dotted names, e.g. a module's or a Zuko checkpoint's) as
        ``(params, state)`` nested trees, split by :attr:`param_shapes` / :attr:`state_shapes`
        and checked.

        Example:
            >>> from lazydist_functional.flows import MAF
            >>> spec = MAF(2, 1, hidden_features=[8])
            >>> sd = {**flatten_names(spec.init()), **flatten_names(spec.init_state())}
            >>> params, state = spec.split_state_dict(sd)
            >>> sorted(params["transform"]["transforms"]["0"]["hyper"])
            ['0', '2']
        """

        ps, ss = self.param_shapes, self.state_shapes
        missing = [k for k in (*ps, *ss) if k not in state_dict]
        unexpected = [k for k in state_dict if k not in ps and k not in ss]
        if missing or unexpected:
            parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {unexpected}"] if unexpected else [])
            raise ParamTreeError(f"{self.name} state_dict: " + ", ".join(parts))
        params = unflatten_names({k: state_dict[k] for k in ps})
        state = unflatten_names({k: state_dict[k] for k in ss})
        self.check(params, state)
        return params, state


def _with_batch(result: Any, batch: torch.Size) -> Any:
    r"""A distribution built from stacked parameters (leading dimensions ``batch``) has them
    in its batch shape (a context's batch shape broadcasts with them)."""

    if len(batch) == 0 or not isinstance(result, Distribution):
        return result
    shape = torch.broadcast_shapes(batch, result.batch_shape)
    return result if shape == result.batch_shape else result.expand(shape)


class Spec(Parametric):
    r"""Base class of specs (flows, lazy transforms, lazy distributions): static
    configuration with a pure ``apply(params, c) -> Distribution | Transform``."""

    context: int = 0

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def apply(self, params: Mapping[str, Any], c: Tensor | None = None, *, state: Any = None,
              train: bool = False) -> Any:
        r"""Builds the distribution (or transform) :math:`p(X | c)` from ``params``.

        Pure: the result holds ``params``, ``state`` and ``c`` and nothing else.
        ``params`` may be nested or flat with dotted names (``dict(module.named_parameters())``).
        Checks (shapes and dtypes only, before any compute): the parameter tree, the
        context's presence and size, that the parameters' batch shape broadcasts with the
        context's, and dtypes.

        With ``train=True`` the spec's batch-statistics layers (batch normalization) are in
        training mode and the result is a pair ``(distribution, update)``: the distribution
        normalizes with the statistics of the batch it transforms (known only when it is
        evaluated, so the new state cannot exist before), and ``update(x)`` returns the new
        state tree after the batch ``x`` (new tensors; ``state`` is not mutated; under
        ``vmap`` over members, per-member statistics). For specs without such layers,
        ``update(x)`` returns ``state``.

        Example:
            >>> from lazydist_functional.flows import MAF
            >>> spec = MAF(2, transforms=2, batch_norm=True)
            >>> params, state = spec.init(), spec.init_state()
            >>> x = torch.randn(64, 2)
            >>> d, update = spec.apply(params, state=state, train=True)
            >>> loss, state = -d.log_prob(x).mean(), update(x)
            >>> sorted(k for k in flatten_names(state) if "running" in k)
            ['transform.transforms.1.running_mean', 'transform.transforms.1.running_var']
        """

        params = as_nested(params)
        state = None if state is None else as_nested(state)
        batch = self.check(params, state)
        check_context(c, self.context, self.name)
        if c is not None and len(batch) > 0:
            if not broadcasts(batch, c.shape[:-1]):
                raise ContextError(
                    f"{self.name}: the parameters' batch shape {tuple(batch)} does not broadcast with the "
                    f"context's batch shape {tuple(c.shape[:-1])}"
                )
        if not train:
            return _with_batch(self.apply_checked(params, c, state), batch)
        if state is None:
            state = self.default_state(first_float(params))
        result = _with_batch(self.in_mode("train").apply_checked(params, c, state), batch)
        return result, Partial(_state_after, (result, state))

    def apply_checked(self, params: Mapping[str, Any], c: Tensor | None, state: Any, *,
                      update_buffers: bool = False) -> Any:
        r""":meth:`apply` for trees already validated by :meth:`check` (the adapter's hot
        path): checks the context and dtypes, fills in the default state, applies.

        ``update_buffers=True`` (the adapter's modules in ``train()`` mode): batch-statistics
        layers normalize with the statistics of the batch they transform and write their
        updated running statistics into the tensors of ``state`` in place, as
        ``nn.BatchNorm1d`` does; specs without such layers are unaffected."""

        ref = first_float(params)
        if state is None:
            state = self.default_state(ref)
        if ref is None:
            ref = first_float(state)
        check_context(c, self.context, self.name)
        if c is not None and ref is not None:
            c = outside_inference(promote_input(c, ref.dtype, booleans=True))
            check_dtype("the context", c, ref.dtype)
        spec = self.in_mode("update") if update_buffers else self
        return spec._apply(params, c, state)

    def in_mode(self, mode: str) -> Spec:
        r"""This spec with its batch-statistics layers in ``mode`` (``"eval"``, ``"train"``
        or ``"update"``, see :class:`~lazydist_functional.transforms.BatchNormTransform`):
        a copy whose parts in that mode replace the original's, or the spec itself if it
        has no such layer (cached)."""

        modes = self.__dict__.get("_modes")
        if modes is not None and mode in modes:
            return modes[mode]
        spec = self._with_mode(mode, ())
        if not torch.compiler.is_compiling():
            self.__dict__.setdefault("_modes", {})[mode] = spec
        return spec

    def _with_mode(self, mode: str, path: tuple[str, ...]) -> Spec:
        r"""This spec with its parts (a composite's, see ``flows.core.Composite.parts``)
        in ``mode``; ``path`` is its dotted position in the root spec's trees. Specs with
        batch statistics override it."""

        parts = self.parts() if callable(getattr(self, "parts", None)) else {}
        changed: dict[str, Any] = {}
        for name, part in parts.items():
            if isinstance(part, tuple):
                new = tuple(p._with_mode(mode, (*path, name, str(i))) for i, p in enumerate(part))
                if any(a is not b for a, b in zip(new, part, strict=True)):
                    changed[name] = new
            else:
                new = part._with_mode(mode, (*path, name))
                if new is not part:
                    changed[name] = new
        return self.with_parts(changed) if changed else self

    def __call__(self, params: Mapping[str, Any], c: Tensor | None = None, *, state: Any = None,
                 train: bool = False) -> Any:
        return self.apply(params, c, state=state, train=train)


def _state_after(result: Any, state: Mapping[str, Any], x: Tensor) -> dict[str, Any]:
    r"""The state tree after the batch ``x`` went through ``result`` (a flow or a transform
    built in training mode): running statistics updated, other leaves unchanged."""

    transform = result.transform if isinstance(result, torch.distributions.Distribution) else result
    ref = first_float(transform)
    x = promote_input(x, None if ref is None else ref.dtype)  # as log_prob takes it
    updates: dict[str, Tensor] = {}
    running_updates(transform, x.detach(), updates)
    flat = flatten_names(state)
    return unflatten_names({k: updates.get(k, v) for k, v in flat.items()})

