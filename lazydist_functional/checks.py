r"""Static input checks: shapes and dtypes only, never values.

Every check here reads ``.shape``/``.dtype``/tree structure, so it runs before any
compute, costs microseconds, and behaves identically under :func:`torch.func.vmap`
(where shapes are per-sample) and :func:`torch.compile`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optree
import torch
from torch import Tensor



class ParamTreeError(ValueError):
    r"""A parameter tree does not match what a spec expects."""


def dict_leaves(tree: Any, prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    r"""``{dotted path: leaf}`` of a nested dict (plain recursion, so it traces under
    :func:`torch.compile`)."""

    out = {} if out is None else out
    for key, value in tree.items():
        if isinstance(value, Mapping):
            dict_leaves(value, f"{prefix}{key}.", out)
        elif value is not None:
            out[f"{prefix}{key}"] = value
    return out


def _paths(tree: Any) -> dict[str, Any]:
    return dict_leaves(tree)


def check_tree(what: str, tree: Any, expected: Mapping[str, torch.Size], seen: set | None = None) -> None:
    r"""Checks that ``tree`` has exactly the leaves ``expected`` (name -> trailing shape).

    Leaves may carry extra *leading* (batch) dimensions, e.g. K stacked parameter
    sets; the trailing dimensions must equal the expected shape.

    ``seen`` is an optional cache of signatures (tree structure and leaf shapes)
    already validated: a hit skips the per-leaf walk, so the check costs a C++
    flatten and a set lookup on the hot path.
    """

    key = None
    if seen is not None and isinstance(tree, dict) and not torch.compiler.is_compiling():
        leaves, treespec = optree.tree_flatten(tree)
        if all(isinstance(leaf, Tensor) for leaf in leaves):
            key = (treespec, tuple(leaf.shape for leaf in leaves))
            if key in seen:
                return
    _check_tree_slow(what, tree, expected)
    if key is not None:
        seen.add(key)


def _check_tree_slow(what: str, tree: Any, expected: Mapping[str, torch.Size]) -> None:
    if not isinstance(tree, Mapping):
        raise ParamTreeError(f"{what}: expected a dict of tensors, got {type(tree).__name__}")
    got = _paths(tree)
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        raise ParamTreeError(f"{what}: " + ", ".join(parts) + f"; expected leaves {sorted(expected)}")
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


def check_context(c: Tensor | None, context: int, owner: str) -> None:
    r"""Checks a context against a spec's number of context features."""

    if context == 0:
        if c is not None:
            raise ValueError(
                f"{owner} is unconditional (context=0) but a context of shape {tuple(c.shape)} was given"
            )
        return
    if c is None:
        raise ValueError(f"{owner} is conditional: expected a context with {context} features, got None")
    if not isinstance(c, Tensor):
        raise TypeError(f"{owner}: the context should be a tensor, got {type(c).__name__}")
    if c.dim() < 1 or c.shape[-1] != context:
        raise ValueError(
            f"{owner}: expected a context of shape (*, {context}), got {tuple(c.shape)}"
        )


def check_dtype(what: str, x: Tensor, dtype: torch.dtype) -> None:
    if x.dtype != dtype:
        raise TypeError(f"{what} has dtype {x.dtype} but the parameters have dtype {dtype}")


def check_event(x: Tensor, event_shape: Sequence[int], what: str = "x") -> None:
    r"""Checks the rightmost dimensions of ``x`` against an event shape."""

    if not isinstance(x, Tensor):
        raise TypeError(f"{what} should be a tensor, got {type(x).__name__}")
    n = len(event_shape)
    if x.dim() < n or tuple(x.shape[x.dim() - n :]) != tuple(event_shape):
        raise ValueError(
            f"{what} should have shape (*, {', '.join(map(str, event_shape))}) "
            f"(event shape {tuple(event_shape)}), got {tuple(x.shape)}"
        )
