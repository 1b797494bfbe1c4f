r"""Parameter-tree utilities on optree: stacking, arithmetic, batched init.

All functions are pure and work inside :func:`torch.func.vmap` / :func:`torch.func.grad`.
Mismatched trees raise a :class:`ValueError` naming the first offending path.
"""

from __future__ import annotations

__all__ = [
    "init_stacked",
    "tree_add",
    "tree_axpy",
    "tree_cast",
    "tree_check_same",
    "tree_combine",
    "tree_partition",
    "tree_scale",
    "tree_stack",
    "tree_sub",
    "tree_unstack",
]

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .pytree import flatten_names, tree_flatten, tree_map, tree_unflatten, unflatten_names


def tree_check_same(trees: Sequence[Any], what: str = "trees", shapes: bool = True) -> None:
    r"""Checks that trees share structure (and leaf shapes and dtypes); names the first mismatch."""

    if not trees:
        raise ValueError(f"{what}: expected at least one tree")
    flat0 = flatten_names(trees[0])
    for k, tree in enumerate(trees[1:], start=1):
        flat = flatten_names(tree)
        if set(flat) != set(flat0):
            first = sorted(set(flat0) ^ set(flat))[0]
            raise ValueError(f"{what}: tree {k} differs from tree 0 in structure at '{first}'")
        if shapes:
            for name, x in flat0.items():
                y = flat[name]
                if isinstance(x, Tensor) and isinstance(y, Tensor):
                    if x.shape != y.shape or x.dtype != y.dtype:
                        raise ValueError(
                            f"{what}: leaf '{name}' of tree {k} has shape {tuple(y.shape)} and dtype "
                            f"{y.dtype}, tree 0 has {tuple(x.shape)} and {x.dtype}"
                        )


def tree_stack(trees: Sequence[Any]) -> Any:
    r"""Stacks K trees leaf-wise along a new leading axis (e.g. for ``vmap`` over params)."""

    trees = list(trees)
    tree_check_same(trees, "tree_stack")
    return tree_map(lambda *xs: torch.stack(xs), *trees)


def tree_unstack(tree: Any) -> list[Any]:
    r"""Inverse of :func:`tree_stack`: a tree with leading axis K becomes K trees."""

    leaves, spec = tree_flatten(tree)
    if not leaves:
        return []
    sizes = {leaf.shape[0] for leaf in leaves}
    if len(sizes) != 1:
        raise ValueError(f"tree_unstack: leaves have different leading sizes {sorted(sizes)}")
    (k,) = sizes
    return [tree_unflatten(spec, [leaf[i] for leaf in leaves]) for i in range(k)]


def _binary(name: str, fn: Any, a: Any, b: Any) -> Any:
    tree_check_same([a, b], name, shapes=False)
    return tree_map(fn, a, b)


def tree_add(a: Any, b: Any) -> Any:
    r""":math:`a + b` leaf-wise."""

    return _binary("tree_add", torch.add, a, b)


def tree_sub(a: Any, b: Any) -> Any:
    r""":math:`a - b` leaf-wise."""

    return _binary("tree_sub", torch.sub, a, b)


def tree_scale(a: Any, alpha: float | Tensor) -> Any:
    r""":math:`\alpha a` leaf-wise."""

    return tree_map(lambda x: alpha * x, a)


def tree_axpy(alpha: float | Tensor, x: Any, y: Any) -> Any:
    r""":math:`\alpha x + y` leaf-wise (e.g. an SGD step ``tree_axpy(-lr, grads, params)``)."""

    return _binary("tree_axpy", lambda u, v: alpha * u + v, x, y)


def tree_cast(a: Any, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Any:
    r"""Moves leaves to ``device`` and casts floating leaves to ``dtype``."""

    def cast(t: Tensor) -> Tensor:
        return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

    return tree_map(cast, a)


def init_stacked(spec: Any, k: int, seed: int = 0, **kwargs: Any) -> Any:
    r"""Initializes ``k`` independent parameter trees (seeds ``seed..seed+k-1``) stacked on axis 0.

    Example:
        >>> from lazydist_functional.flows import MAF
        >>> P = init_stacked(MAF(2, 1), 4)
        >>> P["transform"]["transforms"]["0"]["hyper"]["0"]["weight"].shape
        torch.Size([4, 64, 3])
    """

    return tree_stack([spec.init(torch.Generator().manual_seed(seed + i), **kwargs) for i in range(k)])


def tree_partition(tree: Any, predicate: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    r"""Splits a nested-dict tree by a predicate on dotted names: ``(selected, rest)``.

    ``predicate`` is a callable ``name -> bool``, or a string / sequence of strings
    matched as name prefixes. Use it to adapt only some parameters (ANIL-style:
    ``torch.func.grad`` of a function of ``selected`` only), then
    :func:`tree_combine` the parts back.

    Example:
        >>> tree = {"transform": {"transforms": {"0": {"w": torch.zeros(1)}, "1": {"w": torch.ones(1)}}}}
        >>> head, body = tree_partition(tree, "transform.transforms.1")
        >>> list(flatten_names(head)), list(flatten_names(body))
        (['transform.transforms.1.w'], ['transform.transforms.0.w'])
    """

    if isinstance(predicate, str):
        predicate = (predicate,)
    if not callable(predicate):
        prefixes = tuple(predicate)

        def predicate(name: str) -> bool:
            return any(name == p or name.startswith(p + ".") or p == "" for p in prefixes)

    flat = flatten_names(tree)
    selected = {k: v for k, v in flat.items() if predicate(k)}
    rest = {k: v for k, v in flat.items() if k not in selected}
    return unflatten_names(selected), unflatten_names(rest)


def tree_combine(*trees: Any) -> dict[str, Any]:
    r"""Merges disjoint nested-dict trees (the inverse of :func:`tree_partition`)."""

    flat: dict[str, Any] = {}
    for tree in trees:
        for name, leaf in flatten_names(tree).items():
            if name in flat:
                raise ValueError(f"tree_combine: leaf '{name}' appears in more than one tree")
            flat[name] = leaf
    return unflatten_names(flat)
