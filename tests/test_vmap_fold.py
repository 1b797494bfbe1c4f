r"""The vmap fold (``distributions.vmap_fold``): a per-sample ``log_prob`` inside a ``vmap``
over contexts (and values) runs as the batched call on the physical tensors. Same values
and derivatives as a Python loop over samples, under every composition; it folds only
where it is exact (never with batched parameters, batch statistics or under compile)."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, jacrev, vmap
from torch.utils._python_dispatch import TorchDispatchMode

from lazydist_functional import flows
from lazydist_functional.catalogue import FLOWS, make_spec, sample_input
from lazydist_functional.distributions import vmap_fold

D, C, N = 3, 2, 5
DT = torch.float64
# CNF integrates an ODE: folded and per-sample runs of its solver agree to rounding only
TOL = {"CNF": dict(rtol=1e-6, atol=1e-6)}


def _setup(name: str, context: int = C, seed: int = 0):
    spec = make_spec(name, D, context)
    g = torch.Generator().manual_seed(seed)
    params = spec.init(g, dtype=DT)
    state = spec.init_state(dtype=DT)
    c = torch.randn(N, context, generator=g, dtype=DT) if context else None
    x = sample_input(name, (N, D), dtype=DT, generator=g)
    return spec, params, state, c, x


def _loop(spec, params, state, c, x):
    return torch.stack([spec.apply(params, None if c is None else c[i], state=state).log_prob(x[i])
                        for i in range(x.shape[0])])


def _count(f):
    n = [0]

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            n[0] += 1
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Count():
        f()
    return n[0]


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_values_and_parameter_gradients_match_the_loop(name):
    spec, params, state, c, x = _setup(name)
    per_sample = vmap(lambda ci, xi: spec.apply(params, ci, state=state).log_prob(xi))
    torch.testing.assert_close(per_sample(c, x), _loop(spec, params, state, c, x), **TOL.get(name, {}))
    if name in ("CNF", "UNAF"):  # slow to differentiate; their folds are the same code path
        return
    g_vmap = grad(lambda p: vmap(lambda ci, xi: spec.apply(p, ci, state=state).log_prob(xi))(c, x).sum())(params)
    g_loop = grad(lambda p: _loop(spec, p, state, c, x).sum())(params)
    torch.testing.assert_close(g_vmap, g_loop)


@pytest.mark.parametrize("name", ["MAF", "NSF", "RealNVP", "GMM"])
def test_per_sample_input_gradients_and_jacobians(name):
    spec, params, state, c, x = _setup(name)

    def lp(ci, xi):
        return spec.apply(params, ci, state=state).log_prob(xi)

    ref = torch.stack([torch.func.grad(lp, argnums=(0, 1))(c[i], x[i])[1] for i in range(N)])
    torch.testing.assert_close(vmap(grad(lp, argnums=1))(c, x), ref)
    # grad of the vmapped (folded) call w.r.t. the batched inputs
    gx = grad(lambda xs: vmap(lp)(c, xs).sum())(x)
    torch.testing.assert_close(gx, ref)
    gc = jacrev(lambda cs: vmap(lp)(cs, x).sum())(c)
    gc_ref = torch.stack([grad(lp, argnums=0)(c[i], x[i]) for i in range(N)])
    torch.testing.assert_close(gc, gc_ref)


@pytest.mark.parametrize("name", ["MAF", "NSF", "GMM"])
def test_shapes_and_in_dims(name):
    spec, params, state, c, x = _setup(name)
    loop = _loop(spec, params, state, c, x)

    def lp(ci, xi):
        return spec.apply(params, ci, state=state).log_prob(xi)

    # the value's vmapped dim elsewhere than first
    torch.testing.assert_close(vmap(lp, in_dims=(0, 1))(c, x.T.contiguous()), loop)
    # a shared value, batched contexts
    torch.testing.assert_close(vmap(lambda ci: lp(ci, x[0]))(c), _loop(spec, params, state, c, x[:1].expand(N, D)))
    # per sample, M values against one context (the context's batch dims padded)
    xs = sample_input(name, (N, 4, D), dtype=DT)
    ref = torch.stack([spec.apply(params, c[i], state=state).log_prob(xs[i]) for i in range(N)])
    torch.testing.assert_close(vmap(lp)(c, xs), ref)
    # per sample, M contexts against one value (the value broadcast)
    cs = torch.randn(N, 4, C, dtype=DT)
    ref = torch.stack([spec.apply(params, cs[i], state=state).log_prob(x[i]) for i in range(N)])
    torch.testing.assert_close(vmap(lp)(cs, x), ref)
    # nested vmaps
    cc, xx = torch.randn(2, N, C, dtype=DT), sample_input(name, (2, N, D), dtype=DT)
    ref = torch.stack([_loop(spec, params, state, cc[k], xx[k]) for k in range(2)])
    torch.testing.assert_close(vmap(vmap(lp))(cc, xx), ref)


@pytest.mark.parametrize("name", ["MAF", "NSF"])
def test_unconditional_vmap_over_values(name):
    spec, params, state, _, x = _setup(name, context=0)
    d = spec.apply(params, state=state)
    torch.testing.assert_close(vmap(lambda xi: spec.apply(params, state=state).log_prob(xi))(x), d.log_prob(x))


def test_folded_call_runs_the_batched_operations():
    # inside the vmap, the flow's operations are the batched module call's, not the batching
    # rules' (view/select/_to_copy added per operation)
    spec, params, state, c, x = _setup("MAF")
    batched = _count(lambda: spec.apply(params, c, state=state).log_prob(x))
    folded = _count(lambda: vmap(lambda ci, xi: spec.apply(params, ci, state=state).log_prob(xi))(c, x))
    assert folded <= batched + 2  # the vmap's own unwrap of the inputs


def test_no_fold_with_batched_parameters_or_batch_statistics():
    spec, params, state, c, x = _setup("MAF")
    stacked = torch.utils._pytree.tree_map(lambda t: torch.stack([t, 2 * t]), params)
    plans = []

    def lp(p, ci, xi):
        d = spec.apply(p, ci, state=state)
        plans.append(d._fold_plan)
        return d.log_prob(xi)

    out = vmap(lp, in_dims=(0, None, None))(stacked, c[0], x[0])
    assert plans[-1] is None  # an ensemble's weights are not a batch of the same network
    p1 = torch.utils._pytree.tree_map(lambda t: t[1], stacked)
    torch.testing.assert_close(out[1], spec.apply(p1, c[0], state=state).log_prob(x[0]))

    bn = flows.MAF(D, C, transforms=2, batch_norm=True)
    p, s = bn.init(dtype=DT), bn.init_state(dtype=DT)
    vmap(lambda ci: plans.append(bn.apply(p, ci, state=s)._fold_plan) or ci)(c)
    assert plans[-1] is None


@pytest.mark.parametrize(("name", "folds"), [("MAF", True), ("RealNVP", True), ("Planar", False), ("Radial", False)])
def test_folds_only_flows_whose_apply_holds_the_context(name, folds):
    # Planar's apply runs its hypernetwork on the context: a rebuild would run it twice
    spec, params, state, c, x = _setup(name)
    plans = []
    vmap(lambda ci: plans.append(spec.apply(params, ci, state=state)._fold_plan) or ci)(c)
    assert (plans[-1] is not None) is folds


def test_disabled_gives_the_batching_rules_the_same_values():
    spec, params, state, c, x = _setup("NSF")
    f = vmap(lambda ci, xi: spec.apply(params, ci, state=state).log_prob(xi))
    with vmap_fold.disabled():
        unfolded, ops = f(c, x), _count(lambda: f(c, x))
    assert ops > _count(lambda: f(c, x))  # the batching rules' extra view/permute/select
    torch.testing.assert_close(f(c, x), unfolded)


@pytest.mark.parametrize("name", ["MAF", "NSF"])
def test_compiled_vmap_traces_in_one_graph(name):
    # while compiling nothing folds (the compiler batches the plain graph): no graph break
    spec, params, state, c, x = _setup(name)
    f = vmap(lambda ci, xi: spec.apply(params, ci, state=state).log_prob(xi))
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(c, x), _loop(spec, params, state, c, x))


def test_backward_through_the_fold_equals_the_batching_rules():
    # plain autograd (``.backward()``, parameters requiring grad) records the folded call
    spec, params, state, c, x = _setup("NSF")

    def grads(fold: bool) -> list:
        q = torch.utils._pytree.tree_map(lambda t: t.clone().requires_grad_(True), params)
        f = vmap(lambda ci, xi: spec.apply(q, ci, state=state).log_prob(xi))
        if fold:
            f(c, x).sum().backward()
        else:
            with vmap_fold.disabled():
                f(c, x).sum().backward()
        return torch.utils._pytree.tree_leaves(torch.utils._pytree.tree_map(lambda t: t.grad, q))

    for a, b in zip(grads(True), grads(False), strict=True):
        torch.testing.assert_close(a, b)
