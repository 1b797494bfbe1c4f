r"""Special functions computed as XLA computes them, so draws match ``jax.random``.

:func:`erfinv32` is Giles (2010)'s single-precision :math:`\mathrm{erf}^{-1}`, the one
``lax.erf_inv`` uses for ``float32``: ``lazydist_functional.random.normal`` maps uniform
bits through it.

Example:
    >>> x = torch.tensor([-0.5, 0.0, 0.9])
    >>> torch.allclose(erfinv32(x), torch.erfinv(x), rtol=1e-6, atol=1e-7)
    True
"""

from __future__ import annotations

__all__ = ["erfinv32"]

from collections.abc import Sequence

import torch
from torch import Tensor
from torch._C._functorch import get_interpreter_stack

# Giles (2010)'s single-precision erf^{-1} as XLA has it, highest degree first: for w < 5
# and for w >= 5
_GILES_CENTRAL = (
    2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
    -0.00125372503, -0.00417768164, 0.246640727, 1.50140941,
)  # fmt: skip
_GILES_TAIL = (
    -0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
    -0.0076224613, 0.00943887047, 1.00167406, 2.83297682,
)  # fmt: skip


def _horner(t: Tensor, coefficients: Sequence[float]) -> Tensor:
    r""":math:`(\dots(c_0 t + c_1) t + \dots) t + c_8`, each product and sum rounded (a new tensor)."""

    p = t.mul(coefficients[0]).add_(coefficients[1])
    for c in coefficients[2:]:
        p = p.mul_(t).add_(c)
    return p


def erfinv32(x: Tensor) -> Tensor:
    r""":math:`\mathrm{erf}^{-1}(x)` for ``float32`` :math:`x \in (-1, 1)` as XLA computes
    it (``lax.erf_inv``, Giles 2010): :math:`w = -\mathrm{log1p}(-x^2)`, then :math:`x \,
    p(t)`, :math:`p` a degree-8 polynomial (Horner, each step rounded) in :math:`t = w - 2.5`
    where :math:`w < 5`, else in :math:`t = \sqrt w - 3` with the other coefficients.
    Relative error about :math:`4 \cdot 10^{-7}`; :math:`\pm 1` is not handled (no draw is).

    Compiled, inside a ``torch.func`` transform and off the CPU, the branch selects :math:`t` and the
    coefficients (``torch.where``; compiled, a few fused ops). Eagerly on CPU, where each op
    is a pass over memory, the central polynomial runs in place on every element and the
    tail one only on the few with :math:`w \ge 5` (0.3%), scattered back. Each element gets
    the same roundings either way, so eager and inductor agree bit for bit. The square root
    must be correctly rounded: eager ``float32`` ``sqrt`` on CPU is not always (0.7% of
    inputs 1 ulp off), so eagerly it goes through ``float64``; inductor's is, and a float64
    detour would cost it a third of its speed (a backend that runs eager kernels, such as
    ``aot_eager``, may thus differ by an ulp on about 2e-5 of draws). Overwrites nothing.
    """

    w = torch.mul(x, x).neg_().log1p_().neg_()
    compiling = torch.compiler.is_compiling()
    cpu = w.device.type == "cpu"

    def sqrt(v: Tensor) -> Tensor:  # correctly rounded
        return v.double().sqrt_().float() if cpu and not compiling else v.sqrt()

    if compiling or not cpu or get_interpreter_stack():  # compiled, off the CPU, inside vmap/grad
        central = w < 5.0
        t = torch.where(central, w - 2.5, sqrt(w) - 3.0)
        p = torch.where(central, _GILES_CENTRAL[0], _GILES_TAIL[0])
        for a, b in zip(_GILES_CENTRAL[1:], _GILES_TAIL[1:]):
            p = p * t + torch.where(central, a, b)
        return p * x
    flat = w.view(-1)  # w is new, contiguous
    tail = torch.nonzero(flat >= 5.0).squeeze(-1)
    p_tail = _horner(sqrt(flat[tail]).sub_(3.0), _GILES_TAIL)
    p = _horner(w.sub_(2.5), _GILES_CENTRAL)
    p.view(-1).index_put_((tail,), p_tail)
    return p.mul_(x)
