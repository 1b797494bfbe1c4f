r"""Both directions between modules and pure functions, and Zuko checkpoints.

* :func:`to_functional`: any lazy-distribution module (this library's, a Zuko flow,
  or a user's own ``LazyDistribution`` subclass) -> ``(apply_fn, params)``.
* :func:`from_zuko`: a Zuko 1.6 flow -> the equivalent adapter module, with its
  weights (and masks, orders) loaded.
"""

from __future__ import annotations

__all__ = ["ModuleBoundDistribution", "ZukoConversionError", "from_zuko", "to_functional"]

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn as nn
from torch import Size, Tensor
from torch.distributions import Distribution

from ..pytree import flatten_names, unflatten_names
from .module import module_trees, spec_of, to_module
from .zuko_named import zuko_spec
from .zuko_networks import ZukoConversionError


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


def from_zuko(module: nn.Module) -> nn.Module:
    r"""Converts a Zuko 1.6 lazy module into the equivalent adapter module, with its
    parameters and buffers (weights, orders, masks, rotations, base) loaded, so
    ``from_zuko(z)(c).log_prob(x)`` equals ``z(c).log_prob(x)``.

    Every named flow (MAF, NSF, NCSF, RealNVP, NICE, NAF, UNAF, SOSPF, BPF, GF, CNF,
    GMM; any number of features, context, transforms; residual or normalized networks;
    activations with arguments such as ``partial(nn.LeakyReLU, 0.2)``) becomes the
    adapter's flow of the same class; a ``Flow`` composed from Zuko's lazy transforms
    and bases (or a named flow whose layers were edited) becomes a generic ``Flow``.
    The configuration is read from the module (:mod:`.zuko_named`,
    :mod:`.zuko_reader`); the tensors come with ``load_state_dict``, in the module's
    dtype and device. Trainable flags and the training mode are copied. The global
    random state is left as it was.

    The flows' own classes load Zuko checkpoints directly
    (``NSF(...).load_state_dict(zuko_nsf.state_dict())``); this function is for when
    the configuration is not known up front.

    Raises:
        ZukoConversionError: a part of ``module`` the core cannot express exactly (it
            names what); nothing approximate is returned.

    Example:
        >>> import zuko
        >>> z = zuko.flows.NSF(2, 1, bins=4)
        >>> ours = from_zuko(z)
        >>> type(ours).__name__
        'NSF'
        >>> c, x = torch.randn(1), torch.randn(2)
        >>> torch.allclose(ours(c).log_prob(x), z(c).log_prob(x), atol=1e-5)
        True
    """

    with torch.random.fork_rng(devices=[]):  # building a spec may draw (orders, rotations)
        ours = to_module(zuko_spec(module))
    state = module.state_dict()
    floating = next((v for v in state.values() if v.is_floating_point()), None)
    if floating is not None:
        ours = ours.to(device=floating.device, dtype=floating.dtype)
    try:
        ours.load_state_dict(state)
    except RuntimeError as e:
        raise ZukoConversionError(
            f"{type(module).__name__}: its state_dict does not fit the converted {type(ours).__name__}: {e}"
        ) from e
    for name, p in module.named_parameters():
        ours.get_parameter(name).requires_grad_(p.requires_grad)
    return ours.train(module.training)
