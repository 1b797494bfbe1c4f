r"""Recipes on parameter pytrees: MAML / first-order MAML / Reptile, deep ensembles,
hypernetwork-conditioned flows, per-sample gradients.

Every recipe is a pure function of parameter trees built on :mod:`torch.func`, so
it vmaps over tasks or members and differentiates through inner loops. Tasks are
tensors with a leading task axis: ``support_c`` (T, S, C) or ``None``, ``support_x``
(T, S, D), ``query_c`` / ``query_x`` likewise. Bayesian flows (K posterior weight
samples in one call) are :meth:`lazydist_functional.bayesian.BayesianModel.log_prob_samples`.
"""

from __future__ import annotations

__all__ = [
    "adapt",
    "clip_and_aggregate",
    "ensemble_init",
    "ensemble_log_prob",
    "ensemble_sample",
    "ensemble_step",
    "hypernet_log_prob",
    "maml_loss",
    "nll",
    "param_count",
    "per_sample_grads",
    "reptile_step",
    "unravel",
]

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch._C._functorch import is_functorch_wrapped_tensor, maybe_current_level
from torch.func import grad, vmap

from . import random
from .checks import ShapeError
from .optim import Optimizer
from .pytree import flatten_names, tree_flatten, tree_map, tree_unflatten, unflatten_names
from .spec import Spec
from .trees import init_stacked, tree_axpy, tree_combine, tree_partition

Tree = dict[str, Any]
Loss = Callable[[Tree, "Tensor | None", Tensor, "Tensor | None"], Tensor]
r"""An inner loss ``loss(params, c, x, key)``; ``key`` is ``None`` unless one was given."""


def nll(spec: Spec, params: Mapping[str, Any], c: Tensor | None, x: Tensor, state: Any = None) -> Tensor:
    r"""Mean negative log-likelihood :math:`-\frac{1}{n} \sum_i \log p_\theta(x_i \mid c_i)`."""

    return -spec.apply(params, c, state=state).log_prob(x).mean()


def adapt(
    spec: Spec,
    params: Tree,
    c: Tensor | None,
    x: Tensor,
    steps: int = 1,
    lr: float = 0.1,
    first_order: bool = False,
    only: Any = None,
    state: Any = None,
    *,
    loss: Loss | None = None,
    key: Tensor | None = None,
) -> Tree:
    r"""``steps`` differentiable SGD steps :math:`\theta \leftarrow \theta - \alpha \nabla_\theta \mathrm{NLL}`.

    Arguments:
        first_order: detach the inner gradients (first-order MAML).
        only: adapt only these parameters (a dotted-name prefix, list of prefixes or
            predicate, see :func:`~lazydist_functional.trees.tree_partition`); ANIL-style.
        loss: a stochastic inner loss ``loss(params, c, x, key)`` in place of the NLL
            (e.g. a Monte Carlo KL with ``spec.apply(params, c).rsample(shape, key=key)``).
        key: a random key (:mod:`~lazydist_functional.random`); step :math:`t` gets
            ``fold_in(key, t)``, so the adapted parameters are a pure function of the key.

    Example:
        >>> from lazydist_functional.flows import MAF
        >>> spec = MAF(2, 0, hidden_features=[8])
        >>> p = spec.init()
        >>> q = adapt(spec, p, None, torch.randn(16, 2), steps=2)
        >>> float(nll(spec, q, None, torch.zeros(1, 2))) != float(nll(spec, p, None, torch.zeros(1, 2)))
        True
    """

    fast, frozen = tree_partition(params, only) if only is not None else (params, {})

    def objective(fast: Tree, k: Tensor | None) -> Tensor:
        p = tree_combine(fast, frozen) if frozen else fast
        return nll(spec, p, c, x, state) if loss is None else loss(p, c, x, k)

    for t in range(steps):
        g = grad(objective)(fast, None if key is None else random.fold_in(key, t))
        if first_order:
            g = tree_map(torch.Tensor.detach, g)
        fast = tree_axpy(-lr, g, fast)
    return tree_combine(fast, frozen) if frozen else fast


def maml_loss(
    spec: Spec,
    params: Tree,
    support_c: Tensor | None,
    support_x: Tensor,
    query_c: Tensor | None,
    query_x: Tensor,
    inner_steps: int = 1,
    inner_lr: float = 0.1,
    first_order: bool = False,
    only: Any = None,
    state: Any = None,
    *,
    inner_loss: Loss | None = None,
    key: Tensor | None = None,
) -> Tensor:
    r"""MAML objective :math:`\frac{1}{T} \sum_t \mathrm{NLL}_t^{query}(\mathrm{adapt}_t(\theta))`, vmapped over tasks.

    Differentiate it w.r.t. ``params`` (``torch.func.grad`` or ``.backward()``) for the
    meta-gradient: second order by default, first order with ``first_order=True``.
    ``inner_loss`` and ``key`` as in :func:`adapt`; task :math:`t` of :math:`T` adapts with
    ``split(key, T)[t]``, so the loss is the same vmapped or computed task by task.
    """

    def task_loss(sc: Tensor | None, sx: Tensor, qc: Tensor | None, qx: Tensor, k: Tensor | None) -> Tensor:
        fast = adapt(spec, params, sc, sx, inner_steps, inner_lr, first_order, only, state, loss=inner_loss, key=k)
        return nll(spec, fast, qc, qx, state)

    keys = None if key is None else random.split(key, support_x.shape[0])
    dims = (0 if support_c is not None else None, 0, 0 if query_c is not None else None, 0, None if key is None else 0)
    return vmap(task_loss, in_dims=dims)(support_c, support_x, query_c, query_x, keys).mean()


def reptile_step(
    spec: Spec,
    params: Tree,
    support_c: Tensor | None,
    support_x: Tensor,
    inner_steps: int = 5,
    inner_lr: float = 0.05,
    outer_lr: float = 0.5,
    state: Any = None,
) -> Tree:
    r"""Reptile: :math:`\theta \leftarrow \theta + \epsilon \left(\frac{1}{T}\sum_t \phi_t - \theta\right)`,
    with :math:`\phi_t` the task-adapted parameters (vmapped over tasks)."""

    dims = (0 if support_c is not None else None, 0)
    adapted = vmap(lambda c, x: adapt(spec, params, c, x, inner_steps, inner_lr, True, None, state), in_dims=dims)(
        support_c, support_x
    )
    mean = tree_map(lambda t: t.detach().mean(dim=0), adapted)
    return tree_map(lambda p, m: p + outer_lr * (m - p), params, mean)


def ensemble_init(spec: Spec, k: int, seed: int = 0, **kwargs: Any) -> Tree:
    r"""K independently initialized members, stacked on axis 0 (alias of :func:`init_stacked`)."""

    return init_stacked(spec, k, seed, **kwargs)


def ensemble_log_prob(spec: Spec, stacked: Tree, c: Tensor | None, x: Tensor, state: Any = None) -> Tensor:
    r"""Mixture of the K members: :math:`\log \frac{1}{K} \sum_k p_{\theta_k}(x \mid c)`."""

    lp = vmap(lambda p: spec.apply(p, c, state=state).log_prob(x))(stacked)
    return torch.logsumexp(lp, dim=0) - math.log(lp.shape[0])


def ensemble_sample(
    spec: Spec, stacked: Tree, c: Tensor | None, n: int, key: Tensor, state: Any = None
) -> Tensor:
    r"""``n`` draws from the ensemble mixture :math:`\frac{1}{K} \sum_k p_{\theta_k}(x \mid c)`,
    a pure function of ``key``: with ``km, kp = split(key)``, member :math:`k` draws ``n``
    samples with ``split(km, K)[k]`` (all members at once, ``vmap``) and draw :math:`i` takes
    member ``randint(kp, (n,), 0, K)[i]``. Shape ``(n, *batch, *event)``.

    Example:
        >>> from lazydist_functional import random
        >>> from lazydist_functional.flows import MAF
        >>> spec = MAF(2, 0, hidden_features=[8])
        >>> stacked = ensemble_init(spec, 3)
        >>> x = ensemble_sample(spec, stacked, None, 5, random.key(0))
        >>> x.shape, bool((x == ensemble_sample(spec, stacked, None, 5, random.key(0))).all())
        (torch.Size([5, 2]), True)
    """

    km, kp = random.split(key).unbind(0)
    k = next(iter(flatten_names(stacked).values())).shape[0]
    draws = vmap(lambda p, kk: spec.apply(p, c, state=state).sample((n,), key=kk))(stacked, random.split(km, k))
    pick = random.randint(kp, (n,), 0, k).to(draws.device)
    return draws[pick, torch.arange(n, device=draws.device)]


def ensemble_step(
    spec: Spec,
    optimizer: Optimizer,
    stacked: Tree,
    opt_state: Any,
    c: Tensor | None,
    x: Tensor,
    state: Any = None,
) -> tuple[Tree, Any, Tensor]:
    r"""One training step of all K members at once. Returns ``(stacked, opt_state,
    losses)``, with ``opt_state = vmap(optimizer.init)(stacked)``.

    The members are independent, so member :math:`k`'s gradient is the gradient of the
    sum of the losses w.r.t. its own parameters:
    :math:`\nabla_{\theta_k} \mathrm{NLL}_k = \nabla_{\theta_k} \sum_j \mathrm{NLL}_j`.
    It is computed as the gradient of the ``vmap``-summed losses, so that the backward pass
    differentiates the batched operations themselves (no batching rules of the backward
    operations): by :func:`torch.autograd.grad` on detached copies of the leaves when the
    call is outside every ``torch.func`` transform and autograd graph (the same gradient,
    without the ``torch.func.grad`` layer's cost per operation), else by ``torch.func.grad``. The optimizer then updates the stacked leaves at once
    (:attr:`~lazydist_functional.optim.Optimizer.update_stacked`, e.g. Adam as
    multi-tensor operations), else ``vmap(optimizer.update)``.

    Example:
        >>> from lazydist_functional.flows import MAF
        >>> from lazydist_functional.optim import adam
        >>> spec, opt = MAF(2, 0, hidden_features=[8]), adam(1e-2)
        >>> stacked = ensemble_init(spec, 3)
        >>> opt_state = vmap(opt.init)(stacked)
        >>> stacked, opt_state, losses = ensemble_step(spec, opt, stacked, opt_state, None, torch.randn(16, 2))
        >>> losses.shape, opt_state["step"]
        (torch.Size([3]), tensor([1., 1., 1.]))
    """

    def members(p: Tree) -> Tensor:
        return vmap(lambda q: nll(spec, q, c, x, state))(p)

    if _plain_leaves(stacked, opt_state, c, x):
        g, losses = _autograd_grad(members, stacked)
    else:
        g, losses = grad(lambda p: (lambda ls: (ls.sum(), ls))(members(p)), has_aux=True)(stacked)
    update = optimizer.update_stacked or vmap(optimizer.update)
    new, opt_state = update(g, opt_state, stacked)
    return new, opt_state, losses


def _plain_leaves(*trees: Any) -> bool:
    r"""Whether every tensor of ``trees`` is a plain tensor outside every ``torch.func``
    transform and autograd graph, and nothing is being compiled: then the gradient of the
    summed member losses may be taken by :func:`torch.autograd.grad` on detached copies
    of the leaves, the same gradient (the same backward operations on the same tensors)
    without the per-operation cost of the ``torch.func.grad`` layer (a fifth of an
    ensemble step of small networks)."""

    if torch.compiler.is_compiling() or maybe_current_level() is not None:
        return False
    stacked, *rest = trees
    leaves = tree_flatten(stacked)[0]
    if not all(isinstance(t, Tensor) and t.is_floating_point() for t in leaves):
        return False
    tensors = leaves + [t for tree in rest for t in tree_flatten(tree)[0] if isinstance(t, Tensor)]
    return not any(is_functorch_wrapped_tensor(t) or t.requires_grad for t in tensors)


def _autograd_grad(losses_of: Callable[[Tree], Tensor], stacked: Tree) -> tuple[Tree, Tensor]:
    r"""``grad`` of ``losses_of(stacked).sum()`` (with the losses as auxiliary output) by
    :func:`torch.autograd.grad` on leaves detached from ``stacked`` (see :func:`_plain_leaves`);
    a leaf the losses do not depend on gets a zero gradient, as with ``torch.func.grad``."""

    leaves, treedef = tree_flatten(stacked)
    inputs = [t.detach().requires_grad_() for t in leaves]
    with torch.enable_grad():
        losses = losses_of(tree_unflatten(treedef, inputs))
        grads = torch.autograd.grad(losses.sum(), inputs, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads)]
    return tree_unflatten(treedef, grads), losses.detach()


def param_count(spec: Spec) -> int:
    r"""Number of trainable scalars of a spec (the size of a flat parameter vector)."""

    return sum(math.prod(s) for s in spec.param_shapes.values())


def unravel(spec: Spec, flat: Tensor, dim: int = -1) -> Tree:
    r"""A flat vector of :func:`param_count` numbers as the spec's parameter tree
    (in the order of ``spec.param_shapes``), the vector along axis ``dim`` of ``flat``.

    With per-sample parameters laid out samples-last (``flat`` of shape
    :math:`(P, N)`, ``dim=0``), every leaf has the samples last, :math:`(*\text{shape}, N)`,
    for ``vmap(..., in_dims=-1)``: under ``torch.compile`` the fused flow then runs its
    loops over contiguous samples (vectorized), where samples-first parameters (``(N, P)``)
    make inductor vectorize over the tiny per-sample matrices (3.5x slower).

    Example:
        >>> from lazydist_functional.flows import MAF
        >>> spec = MAF(2, 0, transforms=1, hidden_features=[4])
        >>> flat = torch.randn(5, param_count(spec))  # 5 samples' parameters
        >>> a, b = unravel(spec, flat), unravel(spec, flat.mT.contiguous(), dim=0)
        >>> all(torch.equal(u, v.movedim(-1, 0)) for u, v in zip(flatten_names(a).values(), flatten_names(b).values()))
        True
    """

    shapes = list(spec.param_shapes.items())
    sizes = [math.prod(s) for _, s in shapes]
    d = dim % flat.dim() if flat.dim() else 0
    if flat.dim() == 0 or flat.shape[d] != sum(sizes):
        got = flat.shape[d] if flat.dim() else "a scalar"
        raise ShapeError(f"unravel: expected a vector of {sum(sizes)} parameters, got {got} "
                         f"(dim {dim} of a tensor of shape {tuple(flat.shape)})")
    parts = flat.split(sizes, dim=d)
    before, after = flat.shape[:d], flat.shape[d + 1:]
    return unflatten_names({name: part.reshape(before + tuple(shape) + after)
                            for (name, shape), part in zip(shapes, parts, strict=True)})


def hypernet_log_prob(
    spec: Spec,
    hyper_apply: Callable[[Any, Tensor], Tensor],
    hyper_params: Any,
    c: Tensor,
    x: Tensor,
    flow_context: bool = False,
    state: Any = None,
) -> Tensor:
    r"""Hypernetwork-conditioned flow: sample :math:`i` is evaluated under its own flow
    parameters :math:`\theta_i = h_\psi(c_i)`, in one ``vmap``.

    ``hyper_apply(hyper_params, c_i)`` returns a flat vector of :func:`param_count`
    numbers; with ``flow_context=True`` the flow is also conditioned on :math:`c_i`.
    """

    def one(ci: Tensor, xi: Tensor) -> Tensor:
        params = unravel(spec, hyper_apply(hyper_params, ci))
        return spec.apply(params, ci if flow_context else None, state=state).log_prob(xi)

    return vmap(one)(c, x)


def per_sample_grads(spec: Spec, params: Tree, c: Tensor | None, x: Tensor, state: Any = None) -> Tree:
    r""":math:`\nabla_\theta \log p_\theta(x_i \mid c_i)` for every sample, as a tree with a leading N axis."""

    def one(ci: Tensor | None, xi: Tensor) -> Tree:
        return grad(lambda p: spec.apply(p, ci, state=state).log_prob(xi))(params)

    return vmap(one, in_dims=(0 if c is not None else None, 0))(c, x)


def clip_and_aggregate(
    grads: Tree, max_norm: float, noise_multiplier: float = 0.0, generator: torch.Generator | None = None
) -> Tree:
    r"""DP-SGD aggregation: clip each sample's whole gradient to norm ``max_norm``, average,
    and add :math:`\mathcal{N}(0, (\sigma C / N)^2)` noise when ``noise_multiplier`` :math:`\sigma > 0`.

    ``grads`` is a per-sample tree (leading N axis), e.g. from :func:`per_sample_grads`.
    """

    leaves = list(flatten_names(grads).values())
    n = leaves[0].shape[0]
    norms = torch.sqrt(sum(leaf.reshape(n, -1).pow(2).sum(dim=1) for leaf in leaves))
    factor = torch.clamp(max_norm / (norms + 1e-12), max=1.0)

    def aggregate(g: Tensor) -> Tensor:
        mean = (g * factor.reshape(n, *([1] * (g.dim() - 1)))).mean(dim=0)
        if noise_multiplier > 0:
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
            mean = mean + noise_multiplier * max_norm / n * noise
        return mean

    return tree_map(aggregate, grads)
