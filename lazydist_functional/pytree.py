r"""Pytree registration and parameter-tree helpers.

Parameters are nested ``dict``s of tensors (a *param tree*). Their flattened key
paths joined by ``"."`` are the ``named_parameters()`` names of the adapter module,
so a tree, a ``state_dict`` and a :func:`torch.func.functional_call` dict share one
naming scheme::

    >>> tree = {"hyper": {"0": {"weight": torch.zeros(2, 3)}}}
    >>> flatten_names(tree)
    {'hyper.0.weight': tensor(...)}

Distribution and transform classes are registered both with torch's pytree (what
:mod:`torch.func` uses) and with optree under :data:`NAMESPACE`.
"""

from __future__ import annotations

__all__ = [
    "NAMESPACE",
    "register_pytree_class",
    "as_nested",
    "first_float",
    "flatten_names",
    "unflatten_names",
    "tree_flatten",
    "tree_map",
    "tree_leaves",
    "tree_unflatten",
]

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import optree
import torch.utils._pytree as torch_pytree
from torch import Tensor

NAMESPACE = "lazydist_functional"


def register_pytree_class(
    children: Iterable[str], static: Iterable[str] = ()
) -> Callable[[type], type]:
    r"""Class decorator registering a class as a pytree node.

    ``children`` name the attributes holding tensors or sub-trees (leaves that
    :func:`torch.func.vmap` batches); ``static`` name hashable configuration kept as
    auxiliary data. Unflattening bypasses ``__init__`` (under ``vmap`` leaves may be
    placeholders), so derived quantities must be properties, never cached in
    ``__init__``. ``None`` children are kept in the auxiliary data, not as leaves,
    because :func:`torch.func.vmap` only returns tensors.
    """

    children = tuple(children)
    static = tuple(static)

    def decorate(cls: type) -> type:
        def flatten(obj: Any) -> tuple[list[Any], tuple]:
            values = [getattr(obj, name) for name in children]
            present = tuple(v is not None for v in values)
            aux = (present, tuple(getattr(obj, name) for name in static))
            return [v for v in values if v is not None], aux

        def unflatten(values: Iterable[Any], aux: tuple) -> Any:
            present, static_values = aux
            obj = object.__new__(cls)
            it = iter(values)
            for name, here in zip(children, present, strict=True):
                object.__setattr__(obj, name, next(it) if here else None)
            for name, value in zip(static, static_values, strict=True):
                object.__setattr__(obj, name, value)
            return obj

        def flatten_with_keys(obj: Any) -> tuple[list[tuple[Any, Any]], tuple]:
            values, aux = flatten(obj)
            names = [n for n, here in zip(children, aux[0], strict=True) if here]
            return [(torch_pytree.GetAttrKey(n), v) for n, v in zip(names, values, strict=True)], aux

        torch_pytree.register_pytree_node(
            cls,
            flatten,
            unflatten,
            serialized_type_name=f"{cls.__module__}.{cls.__qualname__}",
            flatten_with_keys_fn=flatten_with_keys,
        )

        def optree_flatten(obj: Any) -> tuple[list[Any], tuple, tuple[str, ...]]:
            values, aux = flatten(obj)
            names = tuple(n for n, here in zip(children, aux[0], strict=True) if here)
            return values, aux, names

        optree.register_pytree_node(
            cls,
            optree_flatten,
            lambda aux, values: unflatten(values, aux),
            namespace=NAMESPACE,
        )
        cls._pytree_children = children
        cls._pytree_static = static
        return cls

    return decorate


def flatten_names(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    r"""Flattens a nested dict into ``{"a.b.c": leaf}`` (the ``named_parameters`` scheme),
    in insertion order, skipping ``None``. Plain recursion over mappings, so it traces under
    :func:`torch.compile`; any value that is not a mapping is a leaf.

    Example:
        >>> flatten_names({"a": {"b": torch.zeros(1), "c": None}, "d": torch.ones(1)})
        {'a.b': tensor([0.]), 'd': tensor([1.])}
    """

    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten_names(value, f"{prefix}{key}."))
        elif value is not None:
            out[f"{prefix}{key}"] = value
    return out


def unflatten_names(flat: Mapping[str, Any]) -> dict[str, Any]:
    r"""Inverse of :func:`flatten_names`: ``{"a.b": t}`` becomes ``{"a": {"b": t}}``."""

    tree: dict[str, Any] = {}
    for name, leaf in flat.items():
        node = tree
        *parents, last = name.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"name '{name}' collides with a leaf at '{key}'")
        node[last] = leaf
    return tree


def as_nested(tree: Any) -> Any:
    r"""``tree`` with top-level dotted names (``dict(module.named_parameters())``) nested:
    ``{"a.b": t}`` becomes ``{"a": {"b": t}}``; any other tree is returned as it is.

    Example:
        >>> as_nested({"hyper.0.weight": torch.zeros(1)})
        {'hyper': {'0': {'weight': tensor([0.])}}}
    """

    if isinstance(tree, Mapping) and any(isinstance(k, str) and "." in k for k in tree):
        return unflatten_names(flatten_names(tree))
    return tree


def first_float(tree: Any) -> Tensor | None:
    r"""The first floating-point tensor of a tree (depth first through mappings, lists,
    tuples and registered classes' children), or ``None``. Reads ``.dtype`` only.

    Example:
        >>> first_float({"order": torch.arange(2), "net": {"w": torch.zeros(1, dtype=torch.float64)}}).dtype
        torch.float64
    """

    if isinstance(tree, Tensor):
        return tree if tree.is_floating_point() else None
    if isinstance(tree, Mapping):
        children: Iterable[Any] = tree.values()
    elif isinstance(tree, (list, tuple)):
        children = tree
    else:
        names = getattr(type(tree), "_pytree_children", ())
        children = (getattr(tree, name, None) for name in names)
    for child in children:
        found = first_float(child)
        if found is not None:
            return found
    return None


def tree_map(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    r"""``optree.tree_map`` in this library's namespace (so distributions are traversed)."""

    return optree.tree_map(fn, tree, *rest, namespace=NAMESPACE)


def tree_leaves(tree: Any) -> list[Any]:
    r"""``optree.tree_leaves`` in this library's namespace."""

    return optree.tree_leaves(tree, namespace=NAMESPACE)


def tree_flatten(tree: Any) -> tuple[list[Any], Any]:
    r"""``optree.tree_flatten`` in this library's namespace: ``(leaves, treespec)``."""

    return optree.tree_flatten(tree, namespace=NAMESPACE)


def tree_unflatten(treespec: Any, leaves: Iterable[Any]) -> Any:
    r"""Inverse of :func:`tree_flatten`."""

    return optree.tree_unflatten(treespec, leaves)


@register_pytree_class(children=("leaves",), static=("fn", "present"))
class Partial:
    r"""A pytree version of :func:`functools.partial`: ``fn`` is static, ``args`` are leaves
    (``None`` arguments are static).

    Used to bind parameters and context to a conditioner eagerly, so a transform
    holds the tensors it was built from (never a module to read later) and can be
    returned from a vmapped function.

    Example:
        >>> add = Partial(torch.add, (torch.ones(2),))
        >>> add(torch.ones(2))
        tensor([2., 2.])
    """

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        args = tuple(args)
        # ``None`` arguments (e.g. no context) are static: torch's pytree would make them
        # leaves, and ``vmap`` cannot return a ``None`` leaf.
        self.present = tuple(a is not None for a in args)
        self.leaves = tuple(a for a in args if a is not None)

    @property
    def args(self) -> tuple[Any, ...]:
        it = iter(self.leaves)
        return tuple(next(it) if here else None for here in self.present)

    def __call__(self, *more: Any) -> Any:
        return self.fn(*self.args, *more)

    def __repr__(self) -> str:
        return f"Partial({getattr(self.fn, '__qualname__', self.fn)})"
