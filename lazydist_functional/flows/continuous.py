r"""Continuous normalizing flows (CNF) with free-form Jacobian transforms."""

from __future__ import annotations

__all__ = ["ACTIVATION_DERIVATIVES", "CNF", "FFJTransform"]

from collections.abc import Callable, Mapping
from math import pi
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_batch, check_dtype, check_event
from ..functorch_levels import compiling_under_vmap
from ..nn import MLP, linear, on_device
from ..pytree import Partial
from ..spec import Spec
from ..transforms import FreeFormJacobianTransform
from .common import standard_base
from .core import Flow


def _where_positive(z: Tensor, negative: Tensor | float) -> Tensor:
    return torch.where(z > 0, torch.ones_like(z), negative)


#: :math:`a'(z)` of the element-wise activations the hand-written Jacobian-vector
#: products of :class:`FFJTransform` support, as ``derivative(module, z, a(z))``.
ACTIVATION_DERIVATIVES: dict[type, Callable[[nn.Module, Tensor, Tensor], Tensor]] = {
    nn.ELU: lambda m, z, h: _where_positive(z, h + m.alpha),  # alpha (e^z - 1) + alpha
    nn.ReLU: lambda m, z, h: (z > 0).to(z.dtype),
    nn.LeakyReLU: lambda m, z, h: _where_positive(z, torch.full_like(z, m.negative_slope)),
    nn.Tanh: lambda m, z, h: 1 - h * h,
    nn.Sigmoid: lambda m, z, h: h * (1 - h),
    nn.SiLU: lambda m, z, h: torch.sigmoid(z) * (1 + z * (1 - torch.sigmoid(z))),
    nn.Softplus: lambda m, z, h: torch.where(
        z * m.beta > m.threshold, torch.ones_like(z), torch.sigmoid(z * m.beta)
    ),
}


def _joined(parts: list[Tensor]) -> Tensor:
    r"""``torch.cat(parts, dim=-1)`` as a sum of zero-padded parts, for a compiled ``vmap``:
    there the batching rule of ``cat`` specializes the vmapped size (one graph per batch
    size), while padding and adding keep it symbolic; inductor fuses the sum into one
    pass, as it does the ``cat``.

    Example:
        >>> a, b = torch.randn(2, 3), torch.randn(2, 1)
        >>> torch.equal(_joined([a, b]), torch.cat([a, b], dim=-1))
        True
    """

    total = sum(p.shape[-1] for p in parts)
    out, start = None, 0
    for p in parts:
        width = p.shape[-1]
        padded = F.pad(p, (start, total - start - width))
        out = padded if out is None else out + padded
        start += width
    return out


class FFJTransform(Spec):
    r"""Lazy free-form Jacobian (FFJ) transform :math:`f(x | c)`: the flow map from
    :math:`t_0 = 0` to :math:`t_1 = 1` of

    .. math:: \frac{dx}{dt} = g_\phi(\cos(\omega t), \sin(\omega t), x, c)

    where :math:`g_\phi` is an MLP and :math:`\omega = (\pi, 2\pi, \dots, F\pi)` are
    ``freqs`` time embedding frequencies. Same signature, defaults and parameter names
    as ``zuko.flows.FFJTransform`` (``ode.*`` parameters; ``times`` and ``freqs``
    state), so Zuko checkpoints load. The transform is
    :class:`~lazydist_functional.transforms.FreeFormJacobianTransform`, whose solver
    ``steps`` selects: ``"auto"`` (default) integrates with Zuko's adaptive
    Dormand-Prince at ``atol``/``rtol`` (so log-densities equal Zuko's) wherever it can
    run (eager, ``grad``, ``backward()``), and with 16 fixed RK4 steps under ``vmap``,
    ``jvp``/``jacfwd`` and ``torch.compile``; an integer always takes that many fixed
    steps of ``method``; ``None`` is always adaptive (an error under ``vmap``).

    Accuracy of the fixed steps: with Zuko's default network (ELU), ``steps=16`` of RK4
    is within about 4e-5 (float64) of a tightly solved (``atol=rtol=1e-9``)
    log-density, and about 2e-4 from Zuko's adaptive solution at its default
    tolerances. ELU's second derivative jumps at 0, which caps RK4's observed order
    near 2 for the log-determinant; smooth activations (``nn.SiLU``, ``nn.Tanh``)
    converge at fourth order.

    References:
        | FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models (Grathwohl et al., 2018)
        | https://arxiv.org/abs/1810.01367

    Arguments:
        features: the number of features :math:`D`.
        context: the number of context features.
        freqs: the number of time embedding frequencies :math:`F`.
        atol: the absolute tolerance of the adaptive solver.
        rtol: the relative tolerance of the adaptive solver.
        exact: exact trace (``True``) or Hutchinson estimate (``False``).
        steps: ``"auto"``, a number of fixed solver steps, or ``None`` (always adaptive).
        method: the fixed-step method (see :data:`lazydist_functional.ode.METHODS`).
        divergence: how Jacobian-vector products of the network are computed:
            ``"manual"`` propagates tangents through the MLP by hand (plain tensor ops,
            the fastest; needs a known element-wise activation, see :data:`ACTIVATION_DERIVATIVES`,
            and ``normalize=False``), ``"forward"`` / ``"reverse"`` use :mod:`torch.func`
            (any network), ``"auto"`` picks ``"manual"`` when possible.
        kwargs: passed to :class:`~lazydist_functional.nn.MLP` (default activation ``nn.ELU``).

    Example:
        >>> t = FFJTransform(3, 4)
        >>> params = t.init(torch.Generator().manual_seed(0))
        >>> f = t.apply(params, torch.randn(4))
        >>> x = torch.randn(3)
        >>> torch.allclose(f.inv(f(x)), x, atol=1e-4)
        True
    """

    def __init__(
        self,
        features: int,
        context: int = 0,
        freqs: int = 3,
        atol: float = 1e-6,
        rtol: float = 1e-5,
        exact: bool = True,
        *,
        steps: int | str | None = "auto",
        method: str = "rk4",
        divergence: str = "auto",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("activation", nn.ELU)
        self.features = int(features)
        self.context = int(context)
        self.freqs = int(freqs)
        self.atol, self.rtol = atol, rtol
        self.exact = bool(exact)
        self.steps = steps if steps is None or steps == "auto" else int(steps)
        # per-sample log_prob under vmap may run batched (``vmap_fold``) only with fixed steps:
        # the adaptive solver's steps depend on the whole batch ("auto" is fixed under vmap)
        self.vmap_fold = isinstance(self.steps, int)
        self.method = str(method)
        self.ode = MLP(self.features + self.context + 2 * self.freqs, self.features, **kwargs)
        manual_ok = type(self.ode.act) in ACTIVATION_DERIVATIVES and not self.ode.normalize
        if divergence == "auto":
            divergence = "manual" if manual_ok else "forward"
        if divergence == "manual" and not manual_ok:
            raise ValueError(
                f"divergence='manual' needs normalize=False and an activation among "
                f"{sorted(c.__name__ for c in ACTIVATION_DERIVATIVES)}, got {type(self.ode.act).__name__}"
            )
        self.divergence = str(divergence)
        # Validates method / divergence / steps once, at construction.
        FreeFormJacobianTransform(
            None, exact=exact, steps=steps, method=method,  # type: ignore[arg-type]
            divergence="forward" if divergence == "manual" else divergence,
        )

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return {"ode": self.ode.init(generator, dtype=dtype, device=device)}

    def init_state(self, *, dtype=None, device=None) -> dict[str, Any]:
        dtype = dtype or torch.get_default_dtype()
        return {
            "times": on_device(lambda: torch.tensor((0.0, 1.0), dtype=dtype), (2,), dtype, device),
            "freqs": on_device(lambda: torch.arange(1, self.freqs + 1, dtype=dtype) * pi, (self.freqs,), dtype, device),
        }

    def _inputs(self, freqs: Tensor, c: Tensor | None, t: Tensor, x: Tensor) -> Tensor:
        what = "the input of FreeFormJacobianTransform"
        check_event(x, (self.features,), what)
        check_dtype(what, x, freqs.dtype)
        if c is not None:
            check_batch(what, x.shape, "the context", c.shape[:-1])
        wt = freqs * t[..., None]  # t: a scalar, or the batch shape of stacked trees
        embedding = torch.cat((wt.cos(), wt.sin()), dim=-1)
        batch = x.shape[:-1] if c is None else torch.broadcast_shapes(x.shape[:-1], c.shape[:-1])
        parts = [embedding.expand(*batch, embedding.shape[-1]), x.expand(*batch, x.shape[-1])]
        if c is not None:
            parts.append(c.expand(*batch, c.shape[-1]))
        if compiling_under_vmap(*parts):
            return _joined(parts)
        return torch.cat(parts, dim=-1)

    def vector_field(self, ode: Mapping[str, Any], freqs: Tensor, c: Tensor | None, t: Tensor, x: Tensor) -> Tensor:
        r""":math:`g_\phi(\cos(\omega t), \sin(\omega t), x, c)` for a scalar time ``t``."""

        return self.ode._apply(ode, self._inputs(freqs, c, t, x), {})

    def vector_field_jvp(
        self, ode: Mapping[str, Any], freqs: Tensor, c: Tensor | None, t: Tensor, x: Tensor, v: Tensor
    ) -> tuple[Tensor, Tensor]:
        r"""The vector field and its Jacobian-vector products :math:`J_x g \, v_k` for a stack
        of tangents ``v`` of shape :math:`(*, K, D)`, propagated through the MLP by hand:

        .. math:: \dot{h}_{l+1} = a'(z_{l+1}) \odot (W_{l+1} \dot{h}_l), \quad
            z_{l+1} = W_{l+1} h_l + b_{l+1}, \quad \dot{h}_0 = (0, v, 0) .
        """

        h = self._inputs(freqs, c, t, x)
        derivative = ACTIVATION_DERIVATIVES[type(self.ode.act)]
        start = 2 * self.freqs
        last = len(self.ode.names) - 1
        tangent = v
        for i, name in enumerate(self.ode.names):
            layer = ode[name]
            W = layer["weight"]  # (O, I), or (*, O, I) for stacked trees
            # the first layer only sees the tangent through its x columns
            Wt = W[..., start : start + self.features] if i == 0 else W
            tangent = linear(tangent, Wt if Wt.dim() == 2 else Wt.unsqueeze(-3))  # stacked: over K too
            h = linear(h, W, layer.get("bias"))
            if i < last:
                z, h = h, self.ode.act(h)
                tangent = tangent * derivative(self.ode.act, z, h).unsqueeze(-2)
        return h, tangent

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> FreeFormJacobianTransform:
        times = state["times"]  # (*, 2): leading dims if the trees are stacked
        args = (params["ode"], state["freqs"], c)
        # the hand-written JVP knows this spec's MLP only (the adapter may stand a user's network in)
        manual = self.divergence == "manual" and type(self.ode) is MLP
        return FreeFormJacobianTransform(
            Partial(self.vector_field, args),
            times[..., 0],
            times[..., 1],
            atol=self.atol,
            rtol=self.rtol,
            exact=self.exact,
            steps=self.steps,
            method=self.method,
            divergence="forward" if self.divergence == "manual" else self.divergence,
            jvp=Partial(self.vector_field_jvp, args) if manual else None,
        )


class CNF(Flow):
    r"""Continuous normalizing flow (CNF): one :class:`FFJTransform` on :math:`\mathcal{N}(0, I)`.

    Same signature, defaults and parameter names as ``zuko.flows.CNF``, so
    ``zuko.flows.CNF(3, 2).state_dict()`` loads. The solver (``steps``, passed to
    :class:`FFJTransform`) is by default (``"auto"``) Zuko's adaptive Dormand-Prince at
    ``atol``/``rtol`` wherever it can run, so log-densities equal Zuko's (to about 1e-14
    in float64), and 16 fixed RK4 steps under ``vmap``, ``jacfwd`` and
    ``torch.compile`` (within about 2e-4 of Zuko's); ``steps=<int>`` always takes fixed
    steps (vmap-able, the same numbers everywhere), ``steps=None`` is always adaptive.

    References:
        | Neural Ordinary Differential Equations (Chen el al., 2018)
        | https://arxiv.org/abs/1806.07366

        | FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models (Grathwohl et al., 2018)
        | https://arxiv.org/abs/1810.01367

    Arguments:
        features: the number of features.
        context: the number of context features.
        kwargs: passed to :class:`FFJTransform`.

    Example:
        >>> flow = CNF(3, 2, hidden_features=[32])
        >>> params = flow.init(torch.Generator().manual_seed(0))
        >>> d = flow.apply(params, torch.randn(8, 2))
        >>> d.log_prob(d.sample()).shape
        torch.Size([8])
    """

    def __init__(self, features: int, context: int = 0, **kwargs: Any) -> None:
        super().__init__(FFJTransform(features=features, context=context, **kwargs), standard_base(features))
        self.features = int(features)
