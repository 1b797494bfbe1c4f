r"""Batch normalization between the layers of a flow (Papamakarios et al., 2017)."""

from __future__ import annotations

__all__ = ["BatchNormTransform", "with_batch_norm"]

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Transform

from ..nn import on_device
from ..spec import Spec
from ..transforms import batchnorm as _bn
from .common import FlowConfigError


class BatchNormTransform(Spec):
    r"""Lazy batch normalization (:class:`~lazydist_functional.transforms.BatchNormTransform`):
    parameters ``"log_gamma"``, ``"beta"`` (zeros: the identity at initialization), running
    statistics ``"running_mean"``, ``"running_var"`` in the state tree.

    ``spec.apply(params, c, state=s)`` normalizes with the running statistics (evaluation);
    ``spec.apply(params, c, state=s, train=True)`` (on this spec or any flow containing
    it) returns ``(distribution, update)``: the distribution normalizes with the statistics
    of the batch it transforms, and ``update(x)`` is the new state tree after that batch
    (nothing is mutated; see :meth:`lazydist_functional.Spec.apply`).

    Arguments:
        features: the number of features.
        context: ignored (batch normalization is unconditional); kept for the flows' layer
            signature.
        momentum: the running statistics' momentum :math:`\lambda`.
        eps: :math:`\epsilon`.
        mode: ``"eval"``, ``"train"`` or ``"update"`` (see the transform); specs in other
            modes are made by :meth:`~lazydist_functional.Spec.in_mode`.
        path: the layer's dotted name in its root spec's state tree (set by ``in_mode``).

    Example:
        >>> bn = BatchNormTransform(2)
        >>> params, state = bn.init(), bn.init_state()
        >>> t, update = bn.apply(params, state=state, train=True)
        >>> x = 3 + torch.randn(100, 2)
        >>> new = update(x)
        >>> bool((new["running_mean"] > 0.2).all()), bool((state["running_mean"] == 0).all())
        (True, True)
    """

    def __init__(self, features: int, context: int = 0, momentum: float = 0.1, eps: float = 1e-5,
                 mode: str = "eval", path: str = "") -> None:
        if mode not in _bn.MODES:
            raise FlowConfigError(f"'mode' should be one of {_bn.MODES}, got {mode!r}")
        self.features = int(features)
        self.context = 0
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.mode = mode
        self.path = path

    def _zeros(self, dtype, device, fill: float = 0.0) -> Tensor:
        dtype = dtype or torch.get_default_dtype()
        return on_device(lambda: torch.full((self.features,), fill, dtype=dtype), (self.features,), dtype, device)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return {"log_gamma": self._zeros(dtype, device), "beta": self._zeros(dtype, device)}

    def init_state(self, *, dtype=None, device=None) -> dict[str, Any]:
        return {"running_mean": self._zeros(dtype, device), "running_var": self._zeros(dtype, device, 1.0)}

    def _with_mode(self, mode: str, path: tuple[str, ...]) -> Spec:
        return BatchNormTransform(self.features, 0, self.momentum, self.eps, mode, ".".join(path))

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> Transform:
        return _bn.BatchNormTransform(params["log_gamma"], params["beta"], state["running_mean"],
                                      state["running_var"], self.mode, self.momentum, self.eps, self.path)


def with_batch_norm(transforms: Sequence[Spec], features: int, **kwargs: Any) -> list[Spec]:
    r"""Inserts a :class:`BatchNormTransform` between successive layers, as between the
    MADE layers of MAF (``batch_norm=True`` on MAF, NSF and RealNVP).

    Example:
        >>> from lazydist_functional.flows import MaskedAutoregressiveTransform
        >>> layers = with_batch_norm([MaskedAutoregressiveTransform(2), MaskedAutoregressiveTransform(2)], 2)
        >>> [type(t).__name__ for t in layers]
        ['MaskedAutoregressiveTransform', 'BatchNormTransform', 'MaskedAutoregressiveTransform']
    """

    out: list[Spec] = []
    for i, t in enumerate(transforms):
        if i > 0:
            out.append(BatchNormTransform(features, **kwargs))
        out.append(t)
    return out
