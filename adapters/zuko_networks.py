r"""Reading the configuration of Zuko 1.6's networks and callables (for :func:`from_zuko`).

A Zuko hyper-network is an ``nn.Sequential`` whose layout encodes its constructor's
arguments: ``MLP`` is ``Linear, act, [LayerNorm], Linear, ...`` and ``MaskedMLP`` is
``MaskedLinear, act, MaskedLinear, ...`` or, with ``residual=True``, masked linears and
``Residual(MaskedLinear, act, MaskedLinear)`` blocks. The readers here recover those
arguments (hidden sizes, activation *with its arguments*, ``normalize``, ``bias``,
``residual``) as keyword arguments of the core networks
(:class:`~lazydist_functional.nn.MLP`, :class:`~lazydist_functional.nn.MaskedMLP`).
Weights, masks and orders are not read: they come with ``load_state_dict``. What the
core cannot express raises :class:`ZukoConversionError`.

Example:
    >>> import zuko
    >>> from functools import partial
    >>> net = zuko.nn.MLP(3, 2, [8, 8], activation=partial(torch.nn.LeakyReLU, 0.2))
    >>> kwargs, sizes = mlp_kwargs(net, "hyper")
    >>> kwargs["hidden_features"], kwargs["activation"](), sizes
    ([8, 8], LeakyReLU(negative_slope=0.2), (3, 2))
"""

from __future__ import annotations

__all__ = [
    "ActivationCopies",
    "ZukoConversionError",
    "func_of",
    "masked_mlp_adjacency",
    "masked_mlp_kwargs",
    "mlp_kwargs",
    "ours",
    "same",
    "zuko_name",
]

import copy
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from .. import distributions as _dists
from .. import flows as _flows
from .. import transforms as _transforms
from ..checks import LazydistError
from ..flows import polynomial as _polynomial
from ..flows import spline as _spline
from .module import module_settings

_OURS = (_transforms, _dists, _flows, _spline, _polynomial)


class ZukoConversionError(LazydistError, NotImplementedError):
    r"""A Zuko module (or one of its options) that :func:`from_zuko` cannot convert
    exactly; the message names what and why. Converting it approximately would give a
    different distribution, so nothing is returned."""


def zuko_name(obj: Any) -> str | None:
    r"""The class name of a Zuko object (its class is defined in a ``zuko`` module), else ``None``."""

    cls = type(obj)
    return cls.__name__ if cls.__module__.split(".")[0] == "zuko" else None


class ActivationCopies:
    r"""The activation constructor of a Zuko network: each call returns a deep copy of
    one of its activation instances, so arguments (``LeakyReLU(0.2)``, ``ELU(alpha=2)``)
    and subclasses are kept exactly. Two are equal when their activations are of the
    same class with the same settings."""

    def __init__(self, module: nn.Module) -> None:
        self.module = copy.deepcopy(module)

    def __call__(self) -> nn.Module:
        return copy.deepcopy(self.module)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ActivationCopies)
            and type(other.module) is type(self.module)
            and dict(module_settings(other.module)) == dict(module_settings(self.module))
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ActivationCopies({self.module!r})"


def _activation(acts: list[nn.Module], where: str) -> ActivationCopies | None:
    if not acts:
        return None
    first = acts[0]
    if any(True for _ in first.parameters()) or any(True for _ in first.buffers()):
        raise ZukoConversionError(
            f"{where}: the activation {first!r} has parameters or buffers; the core networks "
            "take parameter-free activations only (e.g. nn.ReLU, nn.ELU, partial(nn.LeakyReLU, 0.2))"
        )
    factory = ActivationCopies(first)
    for other in acts[1:]:
        if not factory == ActivationCopies(other):
            raise ZukoConversionError(
                f"{where}: the layers use different activations ({first!r} and {other!r}); "
                "the core networks use one activation for every layer"
            )
    return factory


def _kinds(seq: nn.Sequential) -> list[str]:
    kinds = []
    for m in seq:
        name = zuko_name(m)
        if name in ("Linear", "MonotonicLinear", "MaskedLinear", "LayerNorm", "Residual"):
            kinds.append(name)
        else:
            kinds.append("act")
    return kinds


def mlp_kwargs(seq: nn.Sequential, where: str, stack: int | None = None) -> tuple[dict[str, Any], tuple[int, int]]:
    r"""``(kwargs, (in_features, out_features))`` of a Zuko ``MLP`` (or ``MonotonicMLP``):
    ``hidden_features`` and ``activation`` (when it has hidden layers), plus
    ``normalize=True`` / ``bias=False`` when they differ from the defaults. ``stack``:
    the expected leading dimension of stacked weights (``None``: plain 2-d weights)."""

    kinds = _kinds(seq)
    linear = [m for m, k in zip(seq, kinds) if k in ("Linear", "MonotonicLinear")]
    normalize = "LayerNorm" in kinds
    step = ["act", "LayerNorm", "Linear"] if normalize else ["act", "Linear"]
    expected = ["Linear"] + step * (len(linear) - 1)
    if [k.replace("Monotonic", "") for k in kinds] != expected:
        raise ZukoConversionError(f"{where}: {type(seq).__name__} layout {kinds} is not one a Zuko MLP builds")
    for m in seq:
        if zuko_name(m) == "LayerNorm" and (m.dim != -1 or m.eps != 1e-5):
            raise ZukoConversionError(
                f"{where}: LayerNorm(dim={m.dim}, eps={m.eps}); the core supports dim=-1, eps=1e-5"
            )
    for m in linear:
        shape = tuple(m.weight.shape)
        if (len(shape) == 3) != (stack is not None) or (stack is not None and shape[0] != stack):
            raise ZukoConversionError(f"{where}: linear weights of shape {shape} (expected stack={stack})")
    biases = {m.bias is not None for m in linear}
    if len(biases) > 1:
        raise ZukoConversionError(f"{where}: some linear layers have a bias and some do not")
    kwargs: dict[str, Any] = {"hidden_features": [int(m.weight.shape[-2]) for m in linear[:-1]]}
    activation = _activation([m for m, k in zip(seq, kinds) if k == "act"], where)
    if activation is not None:
        kwargs["activation"] = activation
    if normalize:
        kwargs["normalize"] = True
    if biases == {False}:
        kwargs["bias"] = False
    return kwargs, (int(linear[0].weight.shape[-1]), int(linear[-1].weight.shape[-2]))


def masked_mlp_kwargs(seq: nn.Sequential, where: str) -> tuple[dict[str, Any], tuple[int, int]]:
    r"""``(kwargs, (in_features, out_features))`` of a Zuko ``MaskedMLP``:
    ``hidden_features``, ``activation`` and ``residual=True`` when it has residual blocks."""

    kinds = _kinds(seq)
    masked = [m for m, k in zip(seq, kinds) if k == "MaskedLinear"]
    blocks = [m for m, k in zip(seq, kinds) if k == "Residual"]
    if not masked:
        raise ZukoConversionError(f"{where}: {type(seq).__name__} has no MaskedLinear layer")
    if blocks:
        for b in blocks:
            if _kinds(b) != ["MaskedLinear", "act", "MaskedLinear"]:
                raise ZukoConversionError(f"{where}: residual block {b!r} is not one a Zuko MaskedMLP builds")
        hidden = [int(b[0].out_features) for b in blocks]
        expected: list[str] = []
        for i, h in enumerate(hidden):
            if i == 0 or h != hidden[i - 1]:
                expected.append("MaskedLinear")
            expected.append("Residual")
        expected.append("MaskedLinear")
        acts = [b[1] for b in blocks]
    else:
        hidden = [int(m.out_features) for m in masked[:-1]]
        expected = ["MaskedLinear"] + ["act", "MaskedLinear"] * len(hidden)
        acts = [m for m, k in zip(seq, kinds) if k == "act"]
    if kinds != expected:
        raise ZukoConversionError(f"{where}: MaskedMLP layout {kinds} is not one Zuko builds")
    kwargs: dict[str, Any] = {"hidden_features": hidden}
    activation = _activation(acts, where)
    if activation is not None:
        kwargs["activation"] = activation
    if blocks:
        kwargs["residual"] = True
    return kwargs, (int(masked[0].in_features), int(masked[-1].out_features))


def masked_mlp_adjacency(seq: nn.Sequential, features: int, total: int) -> Tensor:
    r"""The feature adjacency a Zuko ``MaskedMLP`` was built from, read off its masks:
    output block :math:`i` (``total`` rows per feature) reaches input :math:`j` through
    some path of unmasked weights (a residual block also passes its input through).
    Returns the boolean matrix of shape (features, in_features) with ones on the diagonal."""

    reach: Tensor | None = None
    for m in seq:
        name = zuko_name(m)
        if name == "MaskedLinear":
            step = m.mask.detach().cpu().double()
        elif name == "Residual":
            a, b = m[0].mask.detach().cpu().double(), m[2].mask.detach().cpu().double()
            step = torch.eye(a.shape[1], dtype=torch.float64) + b @ a
        else:
            continue
        reach = step if reach is None else (step @ reach).clamp(max=1.0)
    assert reach is not None
    A = (reach > 0).reshape(features, total, -1).any(dim=1)
    A[:, :features] |= torch.eye(features, dtype=torch.bool)
    return A


def ours(f: Any, where: str) -> Any:
    r"""This library's equivalent of a Zuko callable (class, function, or ``partial`` of
    one, same arguments); callables from outside Zuko (torch's, a user's) are kept."""

    func, args, keywords = (f.func, f.args, f.keywords) if isinstance(f, partial) else (f, (), {})
    if isinstance(func, nn.Module):
        raise ZukoConversionError(f"{where}: a module {type(func).__name__} as constructor is not supported")
    module = getattr(func, "__module__", None) or ""
    if module.split(".")[0] != "zuko":
        return f
    name = getattr(func, "__name__", "")
    for namespace in _OURS:
        mine = getattr(namespace, name, None)
        if mine is not None:
            return partial(mine, *args, **keywords) if args or keywords else mine
    raise ZukoConversionError(f"{where}: no equivalent of Zuko's {module}.{name}")


def same(a: Any, b: Any) -> bool:
    r"""Structural equality of configurations: ``partial``\ s by function and arguments,
    tensors by value, containers element-wise, anything else with ``==``."""

    if isinstance(a, partial) or isinstance(b, partial):
        return (
            isinstance(a, partial) and isinstance(b, partial) and a.func is b.func
            and same(a.args, b.args) and same(a.keywords, b.keywords)
        )
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def func_of(f: Callable[..., Any]) -> tuple[Any, tuple, dict[str, Any]]:
    r"""``(function, args, keywords)`` of a callable or ``partial``."""

    return (f.func, f.args, dict(f.keywords)) if isinstance(f, partial) else (f, (), {})
