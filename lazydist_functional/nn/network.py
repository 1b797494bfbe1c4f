r"""The network protocol: parameter trees in, tensors out (not a distribution :class:`~lazydist_functional.Spec`)."""

from __future__ import annotations

__all__ = ["Network"]

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..checks import check_dtype, check_event
from ..pytree import first_float
from ..pytree import as_nested
from ..spec import Parametric


class Network(Parametric):
    r"""Base class of pure networks.

    Subclasses define ``init(generator=None, *, dtype=None, device=None)`` (trainable
    tree), optionally ``init_state(*, dtype=None, device=None)`` (buffers, e.g. masks)
    and ``_apply(params, x, state)``; :attr:`input_shape` (the trailing shape of ``x``)
    enables the input check. :meth:`apply` checks the trees, the input's shape and dtype,
    fills in the default state and calls ``_apply``. Composite specs call ``_apply``
    directly on trees they have already checked.

    The tree bookkeeping (``param_shapes``, ``state_shapes``, ``default_state``,
    ``check``, ``init_trees``, ``name``) is :class:`~lazydist_functional.spec.Parametric`'s,
    shared with specs; what differs is the call: ``apply(params, x)`` returns a tensor,
    not a distribution of a context.
    """

    #: The trailing shape expected of the input, or ``None`` (any).
    input_shape: tuple[int, ...] | None = None

    def _apply(self, params: Mapping[str, Any], x: Tensor, state: Mapping[str, Any]) -> Tensor:
        raise NotImplementedError

    def apply(self, params: Mapping[str, Any], x: Tensor, *, state: Mapping[str, Any] | None = None) -> Tensor:
        r"""Evaluates the network on ``x`` of shape :math:`(*, \text{input shape})`; ``params``
        may be nested or flat with dotted names, like :meth:`Spec.apply <lazydist_functional.Spec.apply>`'s."""

        params = as_nested(params)
        state = None if state is None else as_nested(state)
        self.check(params, state)
        return self.apply_checked(params, x, state)

    def apply_checked(self, params: Mapping[str, Any], x: Tensor, state: Mapping[str, Any] | None) -> Tensor:
        r""":meth:`apply` for trees already validated by :meth:`check` (the adapter's path)."""

        if self.input_shape is not None:
            check_event(x, self.input_shape, f"{self.name}'s input")
        ref = first_float(params)
        if ref is not None:
            check_dtype(f"{self.name}'s input", x, ref.dtype)
        if state is None:
            state = self.default_state(ref)
        return self._apply(params, x, state)

    def __call__(self, params: Mapping[str, Any], x: Tensor, *, state: Mapping[str, Any] | None = None) -> Tensor:
        return self.apply(params, x, state=state)
