r"""Reading a Zuko 1.6 lazy module, node by node, into the core spec tree of the same
configuration (what :func:`~lazydist_functional.adapters.from_zuko` builds on; the named
flows are recognized in :mod:`~lazydist_functional.adapters.zuko_named`).

A Zuko module stores its configuration in its attributes and layout (``features`` and
``context`` in layer shapes, ``passes``, ``shapes``, the univariate constructor, the
hyper-network's hidden sizes and activation instances); its tensors (weights, orders,
masks, rotations, base parameters) are *not* read here: they come with
``load_state_dict``, whose names are Zuko's. Supported: ``Flow(transforms, base)`` and
every named flow (as a generic ``Flow``), ``LazyComposedTransform``, ``LazyInverse``,
``MaskedAutoregressiveTransform`` (with ``order``/``passes`` or ``adjacency``, any
univariate, ``MNN``/``UMNN`` included), ``GeneralCouplingTransform``,
``ElementWiseTransform``, ``FFJTransform``, ``UnconditionalTransform`` and
``UnconditionalDistribution`` of Zuko's (or torch's) constructors, and ``GMM``. What
cannot be expressed exactly raises :class:`ZukoConversionError` naming it.

Example:
    >>> import zuko
    >>> type(generic_spec(zuko.flows.NSF(3, 2, bins=4))).__name__
    'Flow'
"""

from __future__ import annotations

__all__ = ["LAYERS", "Layer", "Neural", "generic_spec", "layer_spec", "read_layer", "zuko_class"]

from collections.abc import Callable
from dataclasses import dataclass, field
from math import ceil
from typing import Any

import torch.nn as nn
from torch import Tensor

from .. import flows as _flows
from ..spec import Spec
from .zuko_networks import (
    ZukoConversionError,
    masked_mlp_adjacency,
    masked_mlp_kwargs,
    mlp_kwargs,
    ours,
)

# Methods whose override in a user's subclass changes what a Zuko module computes.
_BEHAVIOUR = frozenset({"forward", "meta", "f", "g", "_forward_full", "_forward_diagonal"})


def zuko_class(m: nn.Module) -> str:
    r"""The name of the nearest Zuko class of ``m`` (a user's subclass may change
    ``__init__``, not the computation)."""

    mro = type(m).__mro__
    for i, cls in enumerate(mro):
        if cls.__module__.split(".")[0] == "zuko":
            custom = sorted({name for c in mro[:i] for name in _BEHAVIOUR & set(vars(c))})
            if custom:
                raise ZukoConversionError(f"{type(m).__name__} overrides {custom} of Zuko's {cls.__name__}: "
                                          "its computation cannot be read")
            return cls.__name__
    raise ZukoConversionError(f"{type(m).__module__}.{type(m).__name__} is not a Zuko 1.6 module")


@dataclass(frozen=True)
class Neural:
    r"""The univariate network of NAF (``MNN``) or UNAF (``UMNN``): its signal size and
    network arguments (the network is stacked over features)."""

    kind: str
    signal: int
    network: dict[str, Any] = field(default_factory=dict)

    def spec(self, features: int) -> Spec:
        return getattr(_flows, self.kind)(signal=self.signal, stack=features, **self.network)


@dataclass
class Layer:
    r"""A Zuko lazy transform read: its kind, constructor arguments (configuration shared
    by the layers of a named flow) and its own tensors (order, mask: state)."""

    kind: str
    kwargs: dict[str, Any]
    own: dict[str, Any] = field(default_factory=dict)


def _univariate(t: nn.Module, features: int, where: str) -> Any:
    u = t.univariate
    if not isinstance(u, nn.Module):
        return ours(u, where)
    kind = zuko_class(u)
    if kind == "MNN":
        kwargs, (fin, _) = mlp_kwargs(u.network, where + ".univariate.network", stack=features)
        kwargs.pop("activation", None)  # MonotonicMLP forces its TwoWayELU
        return Neural("MNN", fin - 1, kwargs)
    if kind == "UMNN":
        kwargs, (fin, _) = mlp_kwargs(u.integrand, where + ".univariate.integrand", stack=features)
        if kwargs.pop("normalize", False):
            raise ZukoConversionError(f"{where}: UMNN with normalize=True (the core UMNN has no LayerNorm option)")
        if "activation" not in kwargs:
            kwargs["activation"] = nn.ELU
        return Neural("UMNN", fin - 1, kwargs)
    raise ZukoConversionError(f"{where}: univariate module {kind} is not supported (only MNN, UMNN)")


def _shapes(t: nn.Module) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(n) for n in s) for s in t.shapes)


def read_layer(t: nn.Module, kind: str, where: str) -> Layer:
    if kind == "MaskedAutoregressiveTransform":
        hyper, (fin, fout) = masked_mlp_kwargs(t.hyper, where + ".hyper")
        features = fout // t.total
        kwargs = dict(features=features, context=fin - features, shapes=_shapes(t), **hyper)
        kwargs["univariate"] = _univariate(t, features, where)
        own: dict[str, Any] = {"passes": int(t.passes)}
        if t.order is None:  # built from an adjacency: read it off the masks
            kwargs["adjacency"] = masked_mlp_adjacency(t.hyper, features, t.total)
        else:
            kwargs["passes"] = int(t.passes)
            own["order"] = t.order.detach().cpu() * ceil(features / t.passes)
        return Layer("MAT", kwargs, own)
    if kind == "GeneralCouplingTransform":
        mask = t.mask.detach().cpu()
        hyper, (fin, _) = mlp_kwargs(t.hyper, where + ".hyper")
        features = int(mask.numel())
        kwargs = dict(features=features, context=fin - int(mask.sum()), shapes=_shapes(t), **hyper)
        kwargs["univariate"] = ours(t.univariate, where)
        return Layer("GCT", kwargs, {"mask": mask})
    if kind == "ElementWiseTransform":
        if hasattr(t, "hyper"):
            hyper, (context, fout) = mlp_kwargs(t.hyper, where + ".hyper")
            features = fout // t.total
        else:
            hyper, context, features = {}, 0, int(t.phi[0].shape[0])
        kwargs = dict(features=features, context=context, shapes=_shapes(t), **hyper)
        kwargs["univariate"] = _univariate(t, features, where)
        return Layer("EWT", kwargs)
    if kind == "FFJTransform":
        ode, (fin, features) = mlp_kwargs(t.ode, where + ".ode")
        freqs = int(t.freqs.numel())
        ode.setdefault("activation", nn.ELU)
        kwargs = dict(features=features, context=fin - features - 2 * freqs, freqs=freqs,
                      atol=t.atol, rtol=t.rtol, exact=bool(t.exact), **ode)
        return Layer("FFJ", kwargs)
    raise ZukoConversionError(f"{where}: Zuko's {kind} is not supported")


def _build(cls: Callable[..., Spec], where: str, **kwargs: Any) -> Spec:
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        shown = {k: v for k, v in kwargs.items() if not isinstance(v, Tensor)}
        name = getattr(cls, "__name__", cls)
        raise ZukoConversionError(f"{where}: the core {name} does not accept {shown}: {e}") from e


def layer_spec(layer: Layer, where: str) -> Spec:
    kwargs = dict(layer.kwargs)
    neural = kwargs.get("univariate")
    if isinstance(neural, Neural):
        kwargs["univariate"] = neural.spec(kwargs["features"])
    if layer.kind == "MAT":
        cls = _flows.MaskedAutoregressiveTransform
        if isinstance(neural, Neural):
            cls = _flows.NeuralAutoregressiveTransform
        if "order" in layer.own:
            kwargs["order"] = layer.own["order"]
        spec = _build(cls, where, **kwargs)
        # The masks may realize fewer dependencies than the adjacency Zuko was given (hidden
        # layers narrower than its distinct rows): fewer passes then suffice, never more.
        if spec.passes > layer.own["passes"]:
            raise ZukoConversionError(
                f"{where}: its masks need {spec.passes} passes where Zuko's makes {layer.own['passes']}"
            )
        return spec
    if layer.kind == "GCT":
        return _build(_flows.GeneralCouplingTransform, where, mask=layer.own["mask"], **kwargs)
    if layer.kind == "EWT":
        return _build(_flows.ElementWiseTransform, where, **kwargs)
    return _build(_flows.FFJTransform, where, **kwargs)


def _unconditional(m: nn.Module, kind: str, where: str) -> Spec:
    tensors = [v for v in [*m.args, *m.kwargs.values()] if isinstance(v, Tensor)]
    buffer = not any(isinstance(v, nn.Parameter) for v in tensors)
    cls = _flows.UnconditionalDistribution if kind == "UnconditionalDistribution" else _flows.UnconditionalTransform
    return cls(ours(m.f, where), *m.args, buffer=buffer, **m.kwargs)


def _gmm(m: nn.Module, where: str) -> Spec:
    if hasattr(m, "hyper"):
        kwargs, (context, _) = mlp_kwargs(m.hyper, where + ".hyper")
    else:
        kwargs, context = {}, 0
    features = int(m.shapes[1][1])
    return _build(_flows.GMM, where, features=features, context=context, components=m.components,
                  covariance_type=m.covariance_type, tied=m.tied, epsilon=m.epsilon, **kwargs)


LAYERS = ("MaskedAutoregressiveTransform", "GeneralCouplingTransform", "ElementWiseTransform", "FFJTransform")
_FLOWS = ("Flow", "MAF", "NSF", "NCSF", "NICE", "RealNVP", "NAF", "UNAF", "SOSPF", "BPF", "GF", "CNF")


def generic_spec(m: nn.Module, where: str = "module") -> Spec:
    r"""The generic spec tree of a Zuko lazy module, node by node."""

    kind = zuko_class(m)
    if kind in _FLOWS:
        return _flows.Flow(generic_spec(m.transform, where + ".transform"), generic_spec(m.base, where + ".base"))
    if kind == "LazyComposedTransform":
        return _flows.LazyComposedTransform(
            *(generic_spec(t, f"{where}.transforms.{i}") for i, t in enumerate(m.transforms))
        )
    if kind == "LazyInverse":
        return _flows.LazyInverse(generic_spec(m.transform, where + ".transform"))
    if kind in ("UnconditionalDistribution", "UnconditionalTransform"):
        return _unconditional(m, kind, where)
    if kind == "GMM":
        return _gmm(m, where)
    if kind in LAYERS:
        return layer_spec(read_layer(m, kind, where), where)
    raise ZukoConversionError(f"{where}: Zuko's {kind} is not supported")
