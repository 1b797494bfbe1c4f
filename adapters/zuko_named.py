r"""Recognizing Zuko 1.6's named flows: a Zuko ``NSF`` becomes the core ``NSF`` spec.

A named flow is recognized when its module tree has the layout that flow's Zuko
constructor builds: the same kind of layer everywhere with one shared configuration,
the interleaved unconditional transforms (soft-clipping for SOSPF/NAF/UNAF, rotations
for GF) and the base (a buffered standard normal, NCSF's buffered box). Its arguments
are then read back from that configuration (``bins`` from the spline's shapes, ``slope``
from the univariate ``partial``, ``signal`` and ``network`` from NAF's monotonic
networks, ...). Orders, masks and random permutations are state: they are not
arguments here, they come with ``load_state_dict``. A tree edited away from the
constructor's layout is not recognized (:func:`named_spec` returns ``None``) and is
converted node by node instead (:func:`~lazydist_functional.adapters.zuko_reader.generic_spec`).

Example:
    >>> import zuko
    >>> from functools import partial
    >>> spec = zuko_spec(zuko.flows.NSF(3, 2, bins=4, activation=partial(torch.nn.LeakyReLU, 0.2)))
    >>> type(spec).__name__, spec.transform.transforms[0].hyper.act
    ('NSF', LeakyReLU(negative_slope=0.2))
"""

from __future__ import annotations

__all__ = ["named_spec", "zuko_spec"]

from collections.abc import Callable
from typing import Any

import torch.nn as nn

from .. import flows as _flows
from .. import transforms as _transforms
from ..flows import polynomial as _polynomial
from ..flows import spline as _spline
from ..spec import Spec
from .zuko_networks import ZukoConversionError, func_of, same
from .zuko_reader import LAYERS as _LAYERS
from .zuko_reader import Layer, Neural, generic_spec, read_layer, zuko_class

Fit = Callable[[dict[str, Any]], "dict[str, Any] | None"]


def _univariate_args(kwargs: dict[str, Any], func: Any, keys: set[str]) -> dict[str, Any] | None:
    f, args, keywords = func_of(kwargs["univariate"])
    return keywords if f is func and not args and set(keywords) <= keys else None


def _rest(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in ("univariate", "shapes")}


def _spline_fit(func: Any) -> Fit:
    def fit(kwargs: dict[str, Any]) -> dict[str, Any] | None:
        keywords = _univariate_args(kwargs, func, {"slope"})
        shapes = kwargs["shapes"]
        if keywords is None or len(shapes) != 3 or len(shapes[0]) != 1:
            return None
        bins = shapes[0][0]
        if shapes != ((bins,), (bins,), (bins - 1,)):
            return None
        return {**_rest(kwargs), "bins": bins, **keywords}

    return fit


def _sospf_fit(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    keywords = _univariate_args(kwargs, _polynomial.ShiftedSOSPTransform, {"slope"})
    shapes = kwargs["shapes"]
    if keywords is None or len(shapes) != 2 or len(shapes[0]) != 2 or shapes[1] != ():
        return None
    return {**_rest(kwargs), "polynomials": shapes[0][0], "degree": shapes[0][1] - 1, **keywords}


def _bpf_fit(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    shapes = kwargs["shapes"]
    if kwargs["univariate"] is not _transforms.BoundedBernsteinTransform or len(shapes) != 1 or len(shapes[0]) != 1:
        return None
    return {**_rest(kwargs), "degree": shapes[0][0] - 1}


def _neural_fit(kind: str, tail: tuple) -> Fit:
    def fit(kwargs: dict[str, Any]) -> dict[str, Any] | None:
        u = kwargs["univariate"]
        if not isinstance(u, Neural) or u.kind != kind or kwargs["shapes"] != ((u.signal,), *tail):
            return None
        network = dict(u.network)
        if kind == "UMNN" and network.get("activation") is nn.ELU:
            del network["activation"]  # Zuko's default
        return {**_rest(kwargs), "signal": u.signal, "network": network}

    return fit


def _gf_fit(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    shapes = kwargs["shapes"]
    if kwargs["univariate"] is not _transforms.GaussianizationTransform or len(shapes) != 2 or len(shapes[0]) != 1:
        return None
    components = shapes[0][0]
    if shapes[1] != (components,):
        return None
    return {**_rest(kwargs), "components": components}


def _same_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return dict(kwargs)


# name: (core class, layer kinds, what lies between layers, base, fit of the shared arguments)
_NAMED: dict[str, tuple[type, tuple[str, ...], str | None, str, Fit]] = {
    "MAF": (_flows.MAF, ("MAT", "EWT"), None, "normal", _same_kwargs),
    "NSF": (_flows.NSF, ("MAT", "EWT"), None, "normal", _spline_fit(_transforms.MonotonicRQSTransform)),
    "NCSF": (_flows.NCSF, ("MAT", "EWT"), None, "box", _spline_fit(_spline.CircularRQSTransform)),
    "SOSPF": (_flows.SOSPF, ("MAT", "EWT"), "softclip", "normal", _sospf_fit),
    "BPF": (_flows.BPF, ("MAT", "EWT"), None, "normal", _bpf_fit),
    "NAF": (_flows.NAF, ("MAT", "EWT"), "softclip", "normal", _neural_fit("MNN", ())),
    "UNAF": (_flows.UNAF, ("MAT", "EWT"), "softclip", "normal", _neural_fit("UMNN", ((),))),
    "GF": (_flows.GF, ("EWT",), "rotation", "normal", _gf_fit),
    "NICE": (_flows.NICE, ("GCT", "EWT"), None, "normal", _same_kwargs),
    "RealNVP": (_flows.RealNVP, ("GCT", "EWT"), None, "normal", _same_kwargs),
    "CNF": (_flows.CNF, ("FFJ",), None, "normal", _same_kwargs),
}


def _unconditional_is(m: nn.Module, kind: str, name: str, keys: list[str], buffer: bool | None) -> bool:
    if zuko_class(m) != kind or getattr(func_of(m.f)[0], "__name__", None) != name:
        return False
    if m._nargs != 0 or list(m.kwargs) != keys:
        return False
    own = dict(m.named_parameters(recurse=False)) | dict(m.named_buffers(recurse=False))
    if buffer is None:
        return not own
    return set(own) == set(keys) and all(isinstance(own[k], nn.Parameter) != buffer for k in keys)


def _between_is(m: nn.Module, between: str) -> bool:
    if between == "softclip":
        return _unconditional_is(m, "UnconditionalTransform", "SoftclipTransform", ["bound"], None) and m.bound == 11.0
    return _unconditional_is(m, "UnconditionalTransform", "RotationTransform", ["A"], False)


def _base_is(m: nn.Module, base: str) -> bool:
    if base == "box":
        return _unconditional_is(m, "UnconditionalDistribution", "BoxUniform", ["lower", "upper"], True)
    return _unconditional_is(m, "UnconditionalDistribution", "DiagNormal", ["loc", "scale"], True)


def _layers(m: nn.Module, name: str, between: str | None) -> list[nn.Module] | None:
    t = m.transform
    if name == "CNF":  # Zuko's CNF holds its one FFJTransform directly
        return [t] if zuko_class(t) == "FFJTransform" else None
    if zuko_class(t) != "LazyComposedTransform":
        return None
    ts = list(t.transforms)
    if between is None:
        return ts
    if len(ts) % 2 == 0 or not all(_between_is(b, between) for b in ts[1::2]):
        return None
    return ts[0::2]


def named_spec(m: nn.Module) -> Spec | None:
    r"""The core spec of the named flow ``m`` is (``GMM`` included), or ``None`` when ``m``
    is not a named flow with its constructor's layout."""

    name = zuko_class(m)
    if name == "GMM":
        return generic_spec(m)
    if name not in _NAMED:
        return None
    cls, kinds, between, base, fit = _NAMED[name]
    modules = _layers(m, name, between)
    if modules is None or not _base_is(m.base, base):
        return None
    layers: list[Layer] = []
    for i, t in enumerate(modules):
        kind = zuko_class(t)
        if kind not in _LAYERS:
            return None
        layers.append(read_layer(t, kind, f"transform.transforms.{i}"))
    shared = layers[0].kwargs
    if any(layer.kind not in kinds or layer.kind != layers[0].kind for layer in layers):
        return None
    if any(not same(layer.kwargs, shared) for layer in layers[1:]):
        return None
    kwargs = fit(shared)
    if kwargs is None:
        return None
    if name != "CNF":
        kwargs["transforms"] = len(layers)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ZukoConversionError(f"{name}: the core {name} does not accept the arguments read from Zuko's "
                                  f"({sorted(kwargs)}): {e}") from e


def zuko_spec(m: nn.Module) -> Spec:
    r"""The core spec of a Zuko 1.6 lazy module: the named flow's own spec class when
    ``m`` has that flow's layout, else the generic spec tree.

    Raises:
        ZukoConversionError: a part of ``m`` (class, option, activation with parameters,
            ...) that the core cannot express exactly.
    """

    spec = named_spec(m)
    return generic_spec(m) if spec is None else spec
