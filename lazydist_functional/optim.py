r"""Differentiable functional optimizers over parameter pytrees.

``opt = sgd(lr, momentum)`` / ``opt = adam(lr)`` return an :class:`Optimizer` with

* ``opt.init(params) -> opt_state`` and
* ``opt.update(grads, opt_state, params) -> (new_params, new_opt_state)``,

pure functions (no in-place writes) that run inside :func:`torch.func.vmap` (one
optimizer over K stacked models) and :func:`torch.func.grad` (differentiable inner
loops). They reproduce :class:`torch.optim.SGD` and :class:`torch.optim.Adam`.

Why not torchopt: its functional API (0.7.3) does compose with ``vmap`` and ``grad``
here, but its Adam updates the moments with the in-place ``addcmul_``, which has no
``vmap`` batching rule in torch 2.13: ``vmap`` falls back to a per-member Python loop
("There is a performance drop because we have not yet implemented the batching rule
for aten::addcmul_"), which defeats vmapped ensembles. Twenty lines of
out-of-place tensor code avoid both the fallback and a dependency.
"""

from __future__ import annotations

__all__ = ["Optimizer", "adam", "sgd"]

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch._C._functorch import is_functorch_wrapped_tensor

from .pytree import tree_flatten, tree_map, tree_unflatten


@dataclass(frozen=True)
class Optimizer:
    r"""A pair of pure functions ``init`` and ``update`` (see the module docstring).

    ``update_stacked`` (optional) is ``vmap(update)`` for K parameter sets stacked on
    axis 0 (state from ``vmap(init)``), computed without ``vmap`` by multi-tensor
    operations over all leaves at once; :func:`lazydist_functional.meta.ensemble_step`
    uses it when present.
    """

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], tuple[Any, Any]]
    update_stacked: Callable[[Any, Any, Any], tuple[Any, Any]] | None = None


def sgd(lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> Optimizer:
    r"""SGD with (heavy-ball) momentum, as :class:`torch.optim.SGD`:

    .. math:: b_t = \mu b_{t-1} + g_t, \qquad \theta_t = \theta_{t-1} - \eta b_t

    Example:
        >>> opt = sgd(0.1, momentum=0.9)
        >>> params = {"w": torch.ones(2)}
        >>> state = opt.init(params)
        >>> params, state = opt.update({"w": torch.ones(2)}, state, params)
        >>> params["w"]
        tensor([0.9000, 0.9000])
    """

    def init(params: Any) -> Any:
        return {"step": torch.zeros(()), "momentum": tree_map(torch.zeros_like, params)}

    def update(grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        if weight_decay:
            grads = tree_map(lambda g, p: g + weight_decay * p, grads, params)
        if momentum:  # the buffer starts at 0, so b_1 = g_1 as in torch.optim.SGD
            buf = tree_map(lambda b, g: momentum * b + g, state["momentum"], grads)
        else:
            buf = grads
        new = tree_map(lambda p, b: p - lr * b, params, buf)
        return new, {"step": state["step"] + 1, "momentum": buf if momentum else state["momentum"]}

    return Optimizer(init, update)


def adam(lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> Optimizer:
    r"""Adam, as :class:`torch.optim.Adam`:

    .. math:: m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
              v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \quad
              \theta_t = \theta_{t-1} - \eta \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}

    Example:
        >>> opt = adam(0.1)
        >>> params = {"w": torch.zeros(2)}
        >>> params, state = opt.update({"w": torch.ones(2)}, opt.init(params), params)
        >>> params["w"]
        tensor([-0.1000, -0.1000])
    """

    b1, b2 = betas

    def init(params: Any) -> Any:
        zeros = lambda: tree_map(torch.zeros_like, params)  # noqa: E731
        return {"step": torch.zeros(()), "m": zeros(), "v": zeros()}

    def update(grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        # torch.optim.Adam's own arithmetic, fused: 7 operations per leaf (lerp, mul,
        # addcmul, sqrt, mul, add, addcdiv) with the bias corrections computed once.
        step = state["step"] + 1
        m = tree_map(lambda m, g: torch.lerp(m, g, 1 - b1), state["m"], grads)
        v = tree_map(lambda v, g: torch.addcmul(v * b2, g, g, value=1 - b2), state["v"], grads)
        step_size = -lr / (1 - b1**step)
        inv_sqrt_c2 = torch.rsqrt(1 - b2**step)
        new = tree_map(lambda p, m, v: torch.addcdiv(p, m * step_size, _sqrt(v) * inv_sqrt_c2 + eps), params, m, v)
        return new, {"step": step, "m": m, "v": v}

    def update_stacked(grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        # vmap(update) on the stacked leaves, per-member step counts (K,): seven multi-tensor
        # passes, theta + m / (sqrt(v) a_k + e_k) with a_k = sqrt(1 / c2) / s_k, e_k = eps / s_k
        # and s_k = -lr / c1 (torch.optim.Adam's update, regrouped).
        step = state["step"] + 1
        leaves, spec = tree_flatten(params)
        g, m, v = (tree_flatten(tree)[0] for tree in (grads, state["m"], state["v"]))
        unflat = lambda ts: tree_unflatten(spec, list(ts))  # noqa: E731
        if _fusable(step, leaves, g, m, v):
            # every member at the same step: torch.optim.Adam's fused kernel, one pass,
            # on copies (the inputs are left as they are)
            new, m, v = ([t.clone() for t in ts] for ts in (leaves, m, v))
            torch._fused_adam_(new, g, m, v, [], [step[0]] * len(new), lr=lr, beta1=b1, beta2=b2,
                               weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)
            return unflat(new), {"step": step, "m": unflat(m), "v": unflat(v)}
        if any(is_functorch_wrapped_tensor(t) for ts in (leaves, g, m, v) for t in ts):
            # under an outer torch.func transform (vmap, grad): the foreach operations have
            # no batching rules, the per-member update has
            return torch.func.vmap(update)(grads, state, params)
        t = step.double()
        s = -lr / (1 - b1**t)
        a, e = torch.rsqrt(1 - b2**t) / s, eps / s
        shaped = {}  # a_k, e_k as (K, 1, ..., 1), one pair per leaf rank
        for p in leaves:
            if p.dim() not in shaped:
                shape = (-1,) + (1,) * (p.dim() - 1)
                shaped[p.dim()] = (a.to(p.dtype).reshape(shape), e.to(p.dtype).reshape(shape))
        # out of place throughout: differentiable (an in-place op on a saved output would
        # make torch.func.grad through this update silently wrong)
        m = torch._foreach_lerp(m, g, 1 - b1)
        v = torch._foreach_addcmul(torch._foreach_mul(v, b2), g, g, value=1 - b2)
        root = torch._foreach_sqrt(torch._foreach_add(v, [torch.finfo(t.dtype).tiny for t in v]))  # see _sqrt
        d = torch._foreach_addcmul([shaped[p.dim()][1] for p in leaves], root, [shaped[p.dim()][0] for p in leaves])
        new = torch._foreach_addcdiv(leaves, m, d)
        return unflat(new), {"step": step, "m": unflat(m), "v": unflat(v)}

    return Optimizer(init, update, update_stacked)


def _sqrt(v: torch.Tensor) -> torch.Tensor:
    r""":math:`\sqrt{v + \tau}` with :math:`\tau` the dtype's smallest normal number.

    On CPU, ``sqrt`` of exact zeros (second moments of parameters that never get a
    gradient, e.g. masked weights) runs off the vectorized path, up to 10x slower; with
    :math:`\tau` added the result moves by at most :math:`\sqrt{\tau}` (1e-19 in
    float32), far below Adam's :math:`\epsilon`.
    """

    return torch.add(v, torch.finfo(v.dtype).tiny).sqrt_()


def _fusable(step: torch.Tensor, *lists: list[torch.Tensor]) -> bool:
    r"""Whether :func:`adam`'s stacked update may run ``torch._fused_adam_`` (in place, not
    differentiable): eagerly, outside every ``torch.func`` transform and autograd graph,
    on contiguous tensors of one floating dtype, with all K members at the same step
    (the kernel takes one step per tensor; checking it reads the step counts, cheap
    outside ``torch.compile``)."""

    tensors = [step, *(t for ts in lists for t in ts)]
    if torch.compiler.is_compiling() or step.dim() != 1 or step.numel() == 0 or not lists[0]:
        return False
    dtype, device = lists[0][0].dtype, lists[0][0].device
    if not dtype.is_floating_point or device != step.device or device.type not in ("cpu", "cuda"):
        return False
    for t in tensors[1:]:
        if t.dtype != dtype or t.device != device or not t.is_contiguous():
            return False
    if any(is_functorch_wrapped_tensor(t) or t.requires_grad for t in tensors):
        return False
    return bool((step == step[0]).all())
