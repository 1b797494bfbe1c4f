r"""Multi-scale image flows (Dinh et al., 2016): the lazy multi-scale transform, the flow
base class with data-dependent initialization, and the multi-scale RealNVP."""

from __future__ import annotations

__all__ = ["LazyMultiScaleTransform", "MultiScaleFlow", "MultiScaleRealNVP", "data_init_layer", "squeeze_levels"]

from collections.abc import Callable, Mapping, Sequence
from math import prod
from typing import Any

from torch import Tensor

from ..checks import check_context, check_event
from ..pytree import as_nested, first_float
from ..spec import Spec
from ..transforms.multiscale import MultiScaleTransform, factor_out, multiscale_shapes
from ..transforms.squeeze import SqueezeTransform
from .common import FlowConfigError, standard_base
from .conv_coupling import ConvCouplingTransform
from .core import Composite, Flow, LazyComposedTransform, UnconditionalTransform, subtree


def data_init_layer(spec: Spec, params: Mapping[str, Any], x: Tensor, c: Tensor | None,
                    state: Mapping[str, Any]) -> tuple[Mapping[str, Any], Tensor]:
    r"""Data-dependent initialization through one lazy layer: ``(new params, f(x))``. A layer
    with a ``data_init(params, x)`` method (e.g. :class:`~lazydist_functional.flows.actnorm.ActNorm`)
    gets new parameters from ``x``; a :class:`~lazydist_functional.flows.LazyComposedTransform`
    is walked layer by layer; other layers keep theirs. Nothing is mutated."""

    c = c if spec.context else None
    if isinstance(spec, LazyComposedTransform):
        new = dict(subtree(params, "transforms"))
        for i, t in enumerate(spec.transforms):
            p, x = data_init_layer(t, subtree(new, str(i)), x, c, subtree(state, "transforms", str(i)))
            if str(i) in new:
                new[str(i)] = p
        return ({**params, "transforms": new} if "transforms" in params else params), x
    data_init = getattr(spec, "data_init", None)
    if data_init is not None:
        params = data_init(params, x)
    return params, spec._apply(params, c, state)(x)


class LazyMultiScaleTransform(Composite):
    r"""Lazy :class:`~lazydist_functional.transforms.multiscale.MultiScaleTransform`: image
    levels (lazy transforms, parameters under ``"levels.<i>"``), half the channels factored
    out after each level but the last.

    Arguments:
        levels: one lazy image transform per level.
        shape: the input image shape :math:`(C, H, W)`.

    Example:
        >>> levels = [UnconditionalTransform(SqueezeTransform)] * 2
        >>> t = LazyMultiScaleTransform(levels, (1, 4, 4))
        >>> t.shapes
        (torch.Size([4, 2, 2]), torch.Size([8, 1, 1]))
        >>> t.apply(t.init())(torch.randn(1, 4, 4)).shape
        torch.Size([16])
    """

    part_names = ("levels",)

    def __init__(self, levels: Sequence[Spec], shape: Sequence[int]) -> None:
        self.levels = tuple(levels)
        self.shape = tuple(int(s) for s in shape)
        self.context = max(t.context for t in self.levels)
        meta = [t._apply(t.init(device="meta"), None, t.init_state(device="meta")) for t in self.levels]
        self.shapes = multiscale_shapes(meta, self.shape)

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> MultiScaleTransform:
        levels = [
            t._apply(subtree(params, "levels", str(i)), c if t.context else None, subtree(state, "levels", str(i)))
            for i, t in enumerate(self.levels)
        ]
        return MultiScaleTransform(levels, self.shape, self.shapes)

    def data_init(self, params: Mapping[str, Any], x: Tensor, c: Tensor | None,
                  state: Mapping[str, Any]) -> dict[str, Any]:
        r"""New parameters after :func:`data_init_layer` through every level, each level seeing
        the channels that continue through the flow."""

        new = dict(subtree(params, "levels"))
        last = len(self.levels) - 1
        for i, t in enumerate(self.levels):
            p, x = data_init_layer(t, subtree(new, str(i)), x, c, subtree(state, "levels", str(i)))
            if str(i) in new:
                new[str(i)] = p
            if i < last:
                x, _ = factor_out(x)
        return {**params, "levels": new} if "levels" in params else dict(params)


def squeeze_levels(shape: Sequence[int], levels: int, step: Callable[[int, int, int], list[Spec]],
                   name: str) -> list[Spec]:
    r"""The levels of a multi-scale flow on images of ``shape``: each a squeeze followed by the
    layers ``step(level, channels, height)`` on the squeezed images.

    Example:
        >>> [len(level.transforms) for level in squeeze_levels((1, 4, 4), 2, lambda i, c, h: [], "f")]
        [1, 1]
    """

    C, H, W = (int(s) for s in shape)
    if levels < 1 or H % 2**levels or W % 2**levels:
        raise FlowConfigError(
            f"{name} with levels={levels} needs an image height and width divisible by {2 ** levels}, "
            f"got shape {tuple(shape)}"
        )
    out = []
    for i in range(levels):
        C, H, W = 4 * C, H // 2, W // 2
        out.append(LazyComposedTransform(UnconditionalTransform(SqueezeTransform, factor=2), *step(i, C, H)))
        C = C // 2
    return out


class MultiScaleFlow(Flow):
    r"""A flow on images :math:`(C, H, W)` whose transform is a
    :class:`LazyMultiScaleTransform` and whose base is :math:`\mathcal{N}(0, I_{CHW})` on the
    concatenated factored-out channels. ``log_prob`` takes :math:`(*, C, H, W)`; samples have
    that shape.

    Base class of :class:`MultiScaleRealNVP` and :class:`~lazydist_functional.flows.Glow`;
    adds :meth:`data_init` (data-dependent initialization of the ActNorm layers).
    """

    shape: tuple[int, int, int]

    def __init__(self, levels: Sequence[Spec], shape: Sequence[int]) -> None:
        self.shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
        super().__init__(LazyMultiScaleTransform(levels, self.shape), standard_base(prod(self.shape)))

    def data_init(self, params: Mapping[str, Any], x: Tensor, c: Tensor | None = None, *,
                  state: Mapping[str, Any] | None = None) -> dict[str, Any]:
        r"""Returns new parameters in which every ActNorm layer maps the batch ``x``
        :math:`(*, C, H, W)` (with context ``c``) to zero mean and unit variance per channel,
        layer after layer (Glow's data-dependent initialization). Pure: ``params`` is not
        modified. Run it once on a first batch before training."""

        params = as_nested(params)
        state = self.default_state(first_float(params)) if state is None else as_nested(state)
        self.check(params, state)
        check_context(c, self.context, self.name)
        check_event(x, self.shape, f"the data given to {self.name}.data_init")
        new = self.transform.data_init(subtree(params, "transform"), x, c, subtree(state, "transform"))
        return {**params, "transform": new}


class MultiScaleRealNVP(MultiScaleFlow):
    r"""Multi-scale RealNVP on images :math:`(C, H, W)`: at each of ``levels`` scales, a squeeze
    and ``depth`` affine channel couplings (alternating halves), then half the channels
    factored out to the standard normal base.

    Dinh et al. alternate checkerboard and channel masks around each squeeze, with batch
    normalization; here the couplings are channel-wise on squeezed images (a squeeze makes
    a channel split a spatial pattern) and there is no normalization layer.

    References:
        | Density estimation using Real NVP (Dinh et al., 2016)
        | https://arxiv.org/abs/1605.08803

    Arguments:
        shape: the image shape :math:`(C, H, W)`; :math:`H, W` divisible by :math:`2^L`.
        context: the number of context features (appended as channels to the couplings' networks).
        levels: the number of scales :math:`L`.
        depth: the number of couplings per scale.
        kwargs: passed to :class:`~lazydist_functional.flows.conv_coupling.ConvCouplingTransform`
            (``hidden_channels``, ``activation``, ...).

    Example:
        >>> flow = MultiScaleRealNVP((1, 4, 4), levels=2, depth=2, hidden_channels=[8])
        >>> d = flow.apply(flow.init())
        >>> d.log_prob(torch.rand(5, 1, 4, 4)).shape, d.sample((3,)).shape
        (torch.Size([5]), torch.Size([3, 1, 4, 4]))
    """

    def __init__(self, shape: Sequence[int], context: int = 0, levels: int = 2, depth: int = 4,
                 **kwargs: Any) -> None:
        def step(i: int, channels: int, height: int) -> list[Spec]:
            return [ConvCouplingTransform(channels, context, swap=j % 2 == 1, **kwargs) for j in range(depth)]

        super().__init__(squeeze_levels(shape, levels, step, "MultiScaleRealNVP"), shape)
        self.levels, self.depth = int(levels), int(depth)
