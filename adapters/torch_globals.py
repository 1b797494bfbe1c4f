r"""Zuko's global effects on torch, applied when :mod:`lazydist_functional.adapters` is imported.

Importing ``zuko`` changes torch for the whole process, and code written for Zuko
relies on it; the adapter therefore does the same (the pure core never touches
torch globally):

* every :class:`torch.distributions.Transform` gains ``call_and_ladj(x) -> (y, ladj)``,
  so torch's own transforms (``AffineTransform``, ``ExpTransform``, ...) work inside
  flows, composed transforms and ``UnconditionalTransform``;
* argument validation of :class:`torch.distributions.Distribution` is off by default
  (``Distribution._validate_args = False``), and ``Distribution.arg_constraints`` is an
  empty dict for every distribution that does not declare its own (torch's base class
  raises ``NotImplementedError``, and warns on validation, where a subclass declares none);
* torch's inverse transform class is named ``Inverse`` in reprs.

Nothing else: ``tests/test_torch_globals.py`` compares, in fresh interpreters, what importing
Zuko and importing the adapter change in torch.

Example:
    >>> import lazydist_functional.adapters  # noqa: F401
    >>> y, ladj = torch.distributions.ExpTransform().call_and_ladj(torch.zeros(2))
    >>> y, ladj
    (tensor([1., 1.]), tensor([0., 0.]))
"""

from __future__ import annotations

__all__ = ["apply_zuko_globals"]

import torch
from torch.distributions import Distribution, Transform

from ..transforms.base import torch_call_and_ladj


def apply_zuko_globals() -> None:
    r"""Applies Zuko's global changes to torch (idempotent)."""

    if not hasattr(Transform, "call_and_ladj"):
        Transform.call_and_ladj = torch_call_and_ladj
    Distribution._validate_args = False
    Distribution.arg_constraints = {}
    torch.distributions.transforms._InverseTransform.__name__ = "Inverse"
