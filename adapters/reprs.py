r"""Zuko's module reprs: what ``print(flow)`` shows, line for line as Zuko 1.6 prints it.

Zuko's transform modules describe their univariate transform by building one from
random parameters (``univariate(*map(torch.randn, shapes))``) and list their order or
mask, shortened to ``[a, b, c, d, e, ..., v, w, x, y, z]`` past 10 entries. The
helpers below do the same, so a repr matches Zuko's, and printing a module draws from
torch's global generator exactly as printing Zuko's does (a seeded script then draws
the same samples afterwards).
"""

from __future__ import annotations

__all__ = ["base_line", "short_list"]

from typing import Any

import torch
from torch import Tensor


def short_list(values: Tensor) -> str:
    r"""``values`` as a list, its middle elided past 10 entries (Zuko's format).

    Example:
        >>> short_list(torch.arange(12))
        '[0, 1, 2, 3, 4, ..., 7, 8, 9, 10, 11]'
    """

    items: list[Any] = values.tolist()
    if len(items) > 10:
        return str(items[:5] + [...] + items[-5:]).replace("Ellipsis", "...")
    return str(items)


def base_line(module: Any) -> str:
    r"""``(base): <repr>`` of the module's univariate transform, built as Zuko builds it
    for its repr: from standard normal draws of the parameter ``shapes``."""

    base = module.univariate(*map(torch.randn, module.shapes))
    return f"(base): {base}"
