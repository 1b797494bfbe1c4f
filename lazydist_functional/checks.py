r"""Static input checks: shapes and dtypes only, never values.

Every check here reads ``.shape``/``.dtype``/tree structure, so it runs before any
compute, costs microseconds, and behaves identically under :func:`torch.func.vmap`
(where shapes are per-sample) and :func:`torch.compile`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .pytree import flatten_names

__all__ = [
    "ConfigError",
    "ContextError",
    "DtypeError",
    "InputTypeError",
    "LazydistError",
    "ParamTreeError",
    "ShapeError",
    "check_context",
    "check_dtype",
    "check_event",
    "check_tree",
    "outside_inference",
    "promote_input",
    "promotes_over",
]


class LazydistError(Exception):
    r"""Base class of the errors this library raises for bad input (each also subclasses
    the built-in types a caller would catch: :class:`ValueError` or :class:`TypeError`, and
    the one torch, hence Zuko, raises in that case, e.g. :class:`RuntimeError`)."""


class ParamTreeError(LazydistError, ValueError):
    r"""A parameter (or state) tree does not match what a spec expects."""


class ContextError(LazydistError, ValueError, RuntimeError):
    r"""A context is missing, unexpected, or of the wrong size for a spec. Also a
    :class:`RuntimeError`, what torch's layers (hence Zuko) raise for a wrong context."""


class ShapeError(LazydistError, ValueError, RuntimeError):
    r"""An input's shape does not match the event shape, or batch shapes do not broadcast.
    Also a :class:`RuntimeError`, what torch's operations (hence Zuko) raise for these."""


class InputTypeError(LazydistError, TypeError):
    r"""An input is not a tensor, or its dtype differs from the parameters'."""


class ConfigError(LazydistError, ValueError, AssertionError):
    r"""An invalid constructor argument (a multivariate base where a univariate one is needed,
    logits that do not match the components, ...). Also an :class:`AssertionError`, the type
    Zuko's ``assert``\ s raise there, so code written for Zuko that catches it keeps working."""


class DtypeError(InputTypeError, RuntimeError):
    r"""An input's dtype differs from the parameters' where a layer meets it; also a
    :class:`RuntimeError`, what torch's layers (hence Zuko) raise there."""




def check_tree(
    what: str,
    tree: Any,
    expected: Mapping[str, torch.Size],
    seen: dict | None = None,
    floating: Collection[str] = (),
) -> torch.Size:
    r"""Checks that ``tree`` has exactly the leaves ``expected`` (name -> trailing shape),
    that the leaves named in ``floating`` are real floating-point tensors (not integer,
    boolean or complex), that its floating leaves share one dtype, and returns its batch
    shape. Leaves not named in ``floating`` (integer orders, boolean masks) may have any dtype.

    Leaves may carry extra *leading* (batch) dimensions, e.g. K stacked parameter
    sets; the trailing dimensions must equal the expected shape and the leading ones
    must be the same on every leaf.

    ``seen`` is an optional cache ``{signature: batch shape}`` of signatures (tree
    structure, leaf shapes and dtypes) already validated: a hit skips the per-leaf walk.

    Example:
        >>> check_tree("p", {"w": torch.zeros(4, 2, 3)}, {"w": torch.Size([2, 3])})
        torch.Size([4])
        >>> check_tree("p", {"w": torch.zeros(3, 2)}, {"w": torch.Size([2, 3])})
        Traceback (most recent call last):
          ...
        lazydist_functional.checks.ParamTreeError: p: leaf 'w' should have shape (2, 3) (optionally with leading batch dimensions), got (3, 2)
        >>> check_tree("p", {"w": torch.zeros(2, 3, dtype=torch.long)}, {"w": torch.Size([2, 3])}, floating={"w"})
        Traceback (most recent call last):
          ...
        lazydist_functional.checks.ParamTreeError: p: leaf 'w' should be a floating-point tensor, got dtype torch.int64
    """

    key = None
    if seen is not None and isinstance(tree, dict) and not torch.compiler.is_compiling():
        key = _signature(tree)
        if key is not None and key in seen:
            return seen[key]
    batch = _check_tree_slow(what, tree, expected, floating)
    if key is not None:
        if len(seen) >= SEEN_LIMIT:  # bounded: a new stack size or dtype evicts the oldest signature
            del seen[next(iter(seen))]
        seen[key] = batch
    return batch


def _signature(tree: dict) -> tuple | None:
    r"""The structure, leaf shapes and leaf dtypes of a nested ``dict`` of tensors, as a
    hashable key (``None`` for any other kind of node or leaf). A plain walk: it runs on
    every ``apply``, and costs a few microseconds where a generic pytree flatten costs tens."""

    items: list[tuple] = []
    for key, value in tree.items():
        if isinstance(value, Tensor):
            items.append((key, value.shape, value.dtype))
        elif type(value) is dict:
            sub = _signature(value)
            if sub is None:
                return None
            items.append((key, sub))
        else:
            return None
    return tuple(items)


#: The most tree signatures one spec remembers as checked (:func:`check_tree`'s ``seen``).
SEEN_LIMIT = 16


def _most_common(values: list[Any]) -> Any:
    r"""The most frequent value (the first one seen on ties); plain loops, so it traces, and
    by equality only: hashing a shape with a symbolic size (``torch.compile(dynamic=True)``)
    would specialize that size and recompile for every batch size."""

    best, most = None, 0
    for value in values:  # not ``max(key=...)``: dynamo graph-breaks on it
        n = sum(1 for other in values if other == value)
        if n > most:
            best, most = value, n
    return best


def _check_tree_slow(what: str, tree: Any, expected: Mapping[str, torch.Size], floating: Collection[str]) -> torch.Size:
    if not isinstance(tree, Mapping):
        raise ParamTreeError(f"{what}: expected a dict of tensors, got {type(tree).__name__}")
    dotted = [k for k in _keys(tree) if "." in k]
    if dotted:
        raise ParamTreeError(
            f"{what}: key '{dotted[0]}' contains '.': nest dotted names with unflatten_names "
            "(Spec.apply does it for a flat tree such as dict(module.named_parameters()))"
        )
    got = flatten_names(tree)
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        raise ParamTreeError(f"{what}: " + ", ".join(parts) + f"; expected leaves {sorted(expected)}")
    leading: dict[str, torch.Size] = {}
    for name, shape in expected.items():
        leaf = got[name]
        if not isinstance(leaf, Tensor):
            raise ParamTreeError(f"{what}: leaf '{name}' should be a tensor, got {type(leaf).__name__}")
        n = len(shape)
        if leaf.dim() < n or tuple(leaf.shape[leaf.dim() - n :]) != tuple(shape):
            raise ParamTreeError(
                f"{what}: leaf '{name}' should have shape {tuple(shape)} (optionally with leading "
                f"batch dimensions), got {tuple(leaf.shape)}"
            )
        if name in floating and not leaf.is_floating_point():
            raise ParamTreeError(f"{what}: leaf '{name}' should be a floating-point tensor, got dtype {leaf.dtype}")
        leading[name] = leaf.shape[: leaf.dim() - n]
    floats = {k: got[k].dtype for k in expected if got[k].is_floating_point()}
    if floats:
        dtype = _most_common(list(floats.values()))
        for name, other in floats.items():
            if other != dtype:
                raise ParamTreeError(
                    f"{what}: leaf '{name}' has dtype {other} but the other floating leaves have dtype {dtype}"
                )
    if not leading:
        return torch.Size()
    batch = _most_common(list(leading.values()))
    for name, lead in leading.items():
        if lead != batch:
            raise ParamTreeError(
                f"{what}: leaf '{name}' has leading (batch) dimensions {tuple(lead)} but the other leaves "
                f"have {tuple(batch)}; stacked parameter sets need the same leading dimensions on every leaf"
            )
    return batch


def _keys(tree: Mapping[str, Any]) -> list[str]:
    r"""Every key of a nested dict, at every depth."""

    out = []
    for key, value in tree.items():
        out.append(str(key))
        if isinstance(value, Mapping):
            out.extend(_keys(value))
    return out


def check_context(c: Tensor | None, context: int, owner: str) -> None:
    r"""Checks a context against a spec's number of context features."""

    if context == 0:
        if c is not None:
            raise ContextError(
                f"{owner} is unconditional (context=0) but a context of shape {tuple(c.shape)} was given"
            )
        return
    if c is None:
        raise ContextError(f"{owner} is conditional: expected a context with {context} features, got None")
    if not isinstance(c, Tensor):
        raise InputTypeError(f"{owner}: the context should be a tensor, got {type(c).__name__}")
    if c.dim() < 1 or c.shape[-1] != context:
        raise ContextError(
            f"{owner}: expected a context of shape (*, {context}), got {tuple(c.shape)}"
        )


def promote_input(x: Any, dtype: torch.dtype | None, booleans: bool = False) -> Any:
    r"""``x`` in the parameters' floating ``dtype`` where that loses nothing, as torch's type
    promotion makes it in Zuko: integers (counts as values; booleans too if ``booleans``,
    one-hot labels as contexts) and floats of lower precision (float32 data into a float64
    flow). Anything else (a float64 value into a float32 flow) is returned unchanged, to be
    checked.

    Example:
        >>> promote_input(torch.tensor([1, 0]), torch.float32)
        tensor([1., 0.])
        >>> promote_input(torch.tensor([0.5]), torch.float64).dtype
        torch.float64
    """

    if not isinstance(x, Tensor) or dtype is None or x.dtype == dtype or x.is_complex():
        return x
    if x.is_floating_point():
        return x.to(dtype) if torch.promote_types(x.dtype, dtype) == dtype else x
    if x.dtype == torch.bool and not booleans:
        return x
    return x.to(dtype)


def outside_inference(x: Any) -> Any:
    r"""``x``, cloned if it is an inference tensor used outside ``torch.inference_mode`` (samples
    drawn there, then trained on): autograd cannot save an inference tensor for backward, and
    a flow's layers would raise deep inside. Anything else is returned as it is.

    Example:
        >>> with torch.inference_mode():
        ...     x = torch.randn(2)
        >>> outside_inference(x).is_inference()
        False
    """

    if (isinstance(x, Tensor) and not torch.compiler.is_compiling() and x.is_inference()
            and not torch.is_inference_mode_enabled()):
        return x.clone()
    return x


def check_dtype(what: str, x: Tensor, dtype: torch.dtype) -> None:
    r"""Checks that ``x`` has the parameters' ``dtype``, except inside an autocast region
    for ``x``'s device, where layers change dtypes on purpose and values mix as in torch."""

    if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise DtypeError(f"{what} has dtype {x.dtype} but the parameters have dtype {dtype}")


def promotes_over(x: Tensor, dtype: torch.dtype) -> bool:
    r"""Whether ``x`` is a floating tensor at least as wide as ``dtype`` (float64 data,
    float32 parameters): element-wise math then promotes to ``x``'s dtype, as torch's does,
    so only a layer that ``x`` meets has to check it.

    Example:
        >>> promotes_over(torch.zeros(2, dtype=torch.float64), torch.float32)
        True
    """

    return x.is_floating_point() and torch.promote_types(x.dtype, dtype) == x.dtype


def check_event(x: Tensor, event_shape: Sequence[int], what: str = "x") -> None:
    r"""Checks the rightmost dimensions of ``x`` against an event shape."""

    if not isinstance(x, Tensor):
        raise InputTypeError(f"{what} should be a tensor, got {type(x).__name__}")
    n = len(event_shape)
    if x.dim() < n or tuple(x.shape[x.dim() - n :]) != tuple(event_shape):
        raise ShapeError(
            f"{what} should have shape (*, {', '.join(map(str, event_shape))}) "
            f"(event shape {tuple(event_shape)}), got {tuple(x.shape)}"
        )


def broadcasts(a: Sequence[int], b: Sequence[int]) -> bool:
    r"""Whether two batch shapes broadcast (shape arithmetic only).

    Example:
        >>> broadcasts((5, 1), (3,)), broadcasts((5,), (8,))
        (True, False)
    """

    return all(x == y or x == 1 or y == 1 for x, y in zip(reversed(tuple(a)), reversed(tuple(b))))


def check_batch(what: str, shape: Sequence[int], other: str, batch: Sequence[int]) -> None:
    r"""Raises :class:`ShapeError` unless the batch shape ``shape[:-1]`` of ``what`` broadcasts
    with ``batch``, the batch shape of ``other``."""

    if not broadcasts(tuple(shape)[:-1], batch):
        raise ShapeError(
            f"{what} has batch shape {tuple(shape)[:-1]} (shape {tuple(shape)}), which does not broadcast "
            f"with {other}'s batch shape {tuple(batch)}"
        )
