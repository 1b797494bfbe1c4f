r"""Both directions between modules and pure functions, and Zuko checkpoints.

* :func:`to_functional`: any lazy-distribution module (this library's, a Zuko flow,
  or a user's own ``LazyDistribution`` subclass) -> ``(apply_fn, params)``.
* :func:`from_zuko`: a Zuko 1.6 flow -> the equivalent adapter module, with its
  weights (and masks, orders) loaded.
"""

from __future__ import annotations

__all__ = ["from_zuko", "to_functional", "ModuleBoundDistribution"]

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
import torch.nn as nn
from torch import Size, Tensor
from torch.distributions import Distribution

from .. import distributions as _dists
from .. import flows as _flows
from .. import transforms as _transforms
from ..pytree import flatten_names, unflatten_names
from .module import module_trees, spec_of, to_module


class _Evaluate(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, c: Tensor | None, method: str, *args: Any) -> Any:
        out = getattr(self.module(c), method)
        return out(*args) if callable(out) else out


class ModuleBoundDistribution(Distribution):
    r"""``module(c)`` evaluated with ``params``, *every method call* inside
    :func:`torch.func.functional_call`.

    This is what makes a foreign lazy module (e.g. a Zuko flow, whose distribution
    reads the module's weights lazily) honour the given parameters: each of
    ``log_prob``, ``sample``, ``rsample`` re-enters ``functional_call``.
    """

    arg_constraints: dict = {}
    _validate_args = False
    has_rsample = True

    def __init__(self, module: nn.Module, params: Mapping[str, Tensor], c: Tensor | None) -> None:
        self._eval = _Evaluate(module)
        self._params = {"module." + k: v for k, v in params.items()}
        self.c = c
        shapes = self._call("batch_shape"), self._call("event_shape")
        super().__init__(Size(shapes[0]), Size(shapes[1]), validate_args=False)

    def _call(self, method: str, *args: Any) -> Any:
        return torch.func.functional_call(self._eval, self._params, (self.c, method, *args), strict=False)

    def log_prob(self, x: Tensor) -> Tensor:
        return self._call("log_prob", x)

    def rsample(self, sample_shape: Size = Size()) -> Tensor:
        return self._call("rsample", Size(sample_shape))

    def sample(self, sample_shape: Size = Size()) -> Tensor:
        return self._call("sample", Size(sample_shape))


def to_functional(module: nn.Module) -> tuple[Callable[..., Any], dict[str, Any]]:
    r"""Turns a lazy-distribution module into ``(apply_fn, params)``.

    ``apply_fn(params, c=None)`` is pure in ``params``: for this library's modules
    it is ``spec.apply`` with the module's buffers as state (a pytree distribution,
    so it can be returned from ``vmap``); for any other module (Zuko flows, user
    subclasses) it returns a :class:`ModuleBoundDistribution` whose methods run
    inside ``functional_call``. ``params`` is a detached copy of the module's
    trainable parameters as a nested dict.

    Example:
        >>> from lazydist_functional.adapters.flows import MAF
        >>> apply_fn, params = to_functional(MAF(2, 1))
        >>> apply_fn(params, torch.randn(1)).log_prob(torch.randn(2)).shape
        torch.Size([])
    """

    spec = spec_of(module)
    params, state = module_trees(module)
    params = {k: v.detach().clone() for k, v in flatten_names(params).items()}
    state = {k: v.detach().clone() for k, v in flatten_names(state).items()}
    if spec is not None:
        state_tree = unflatten_names(state)

        def apply_fn(params: Mapping[str, Any], c: Tensor | None = None) -> Any:
            return spec.apply(params, c, state=state_tree)

        return apply_fn, unflatten_names(params)

    def apply_generic(params: Mapping[str, Any], c: Tensor | None = None) -> ModuleBoundDistribution:
        flat = flatten_names(params) if any(isinstance(v, Mapping) for v in params.values()) else dict(params)
        return ModuleBoundDistribution(module, flat, c)

    return apply_generic, unflatten_names(params)


def _zuko_univariate(univariate: Any) -> Any:
    r"""Maps a Zuko univariate constructor (class or partial) to this library's."""

    func, kwargs = (univariate.func, univariate.keywords) if isinstance(univariate, partial) else (univariate, {})
    name = getattr(func, "__name__", "")
    ours = getattr(_transforms, name, None) or getattr(_flows, name, None)
    if ours is None:
        raise NotImplementedError(f"from_zuko: no equivalent of univariate transform {func!r} yet")
    return partial(ours, **kwargs) if kwargs else ours


def _hidden_and_activation(hyper: nn.Sequential) -> dict[str, Any]:
    linears = [m for m in hyper if hasattr(m, "weight")]
    acts = [m for m in hyper if not hasattr(m, "weight") and not isinstance(m, nn.Sequential)]
    kwargs: dict[str, Any] = {"hidden_features": [m.weight.shape[0] for m in linears[:-1]]}
    if acts:
        kwargs["activation"] = type(acts[0])
    return kwargs


def _zuko_leaf_spec(t: nn.Module) -> Any:
    name = type(t).__name__
    if name == "MaskedAutoregressiveTransform":
        features = t.order.shape[0] if t.order is not None else None
        in_features = t.hyper[0].weight.shape[1]
        return _flows.MaskedAutoregressiveTransform(
            features, in_features - features, passes=t.passes,
            univariate=_zuko_univariate(t.univariate), shapes=t.shapes, **_hidden_and_activation(t.hyper),
        )
    if name == "GeneralCouplingTransform":
        features = t.mask.shape[0]
        in_features = t.hyper[0].weight.shape[1]
        return _flows.GeneralCouplingTransform(
            features, in_features - int(t.mask.sum()), mask=t.mask,
            univariate=_zuko_univariate(t.univariate), shapes=t.shapes, **_hidden_and_activation(t.hyper),
        )
    if name in ("UnconditionalDistribution", "UnconditionalTransform"):
        f = getattr(_dists, getattr(t.f, "__name__", ""), None) or getattr(_transforms, getattr(t.f, "__name__", ""), None)
        if f is None:
            raise NotImplementedError(f"from_zuko: no equivalent of {t.f!r} yet")
        buffer = len(list(t.parameters(recurse=False))) == 0
        tensors = dict(t.named_buffers(recurse=False)) | dict(t.named_parameters(recurse=False))
        args = [tensors.get(f"_{i}", getattr(t, f"_{i}", None)) for i in range(t._nargs)]
        kwargs = {k: tensors.get(k, getattr(t, k, None)) for k in t._keys}
        cls = _flows.UnconditionalDistribution if name == "UnconditionalDistribution" else _flows.UnconditionalTransform
        return cls(f, *args, buffer=buffer, **kwargs)
    raise NotImplementedError(f"from_zuko: {name} is not supported yet")


def _zuko_spec(m: nn.Module) -> Any:
    name = type(m).__name__
    if hasattr(m, "transform") and hasattr(m, "base") and isinstance(m.base, nn.Module):
        return _flows.Flow(_zuko_spec(m.transform), _zuko_spec(m.base))
    if name == "LazyComposedTransform":
        return _flows.LazyComposedTransform(*(_zuko_spec(t) for t in m.transforms))
    if name == "LazyInverse":
        return _flows.LazyInverse(_zuko_spec(m.transform))
    return _zuko_leaf_spec(m)


def from_zuko(module: nn.Module) -> nn.Module:
    r"""Converts a Zuko 1.6 lazy flow (MAF, NSF, RealNVP, NICE, or a ``Flow`` of
    masked-autoregressive / coupling transforms) into the equivalent adapter module,
    loading its parameters and buffers (masks, orders) so ``log_prob`` matches.

    The flows' own classes load Zuko checkpoints directly
    (``MAF(...).load_state_dict(zuko_maf.state_dict())``); this function is for
    when the configuration is not known up front.

    Example:
        >>> import zuko
        >>> ours = from_zuko(zuko.flows.NSF(2, 1))
        >>> type(ours).__name__
        'Flow'
    """

    spec = _zuko_spec(module)
    ours = to_module(spec)
    ours.load_state_dict(module.state_dict())
    return ours
