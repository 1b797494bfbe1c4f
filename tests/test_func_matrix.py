r"""The torch.func matrix for MAF, NSF, RealNVP, NICE (conditional and unconditional):
vmap over contexts / params / both, batched distributions out of vmap, independent
draws under vmap, grad / per-sample grad / jacrev against autograd, log-determinants
against slogdet, invertibility, float64, torch.compile."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Distribution
from torch.func import grad, jacrev, vmap

import lazydist_functional as L
from lazydist_functional.distributions import NormalizingFlow
from lazydist_functional.pytree import flatten_names

from adapter_cases import module_of
from conftest import FEATURES, Case, assert_close, make_spec, rows_distinct

K = 4  # stacked parameter sets
N = 5  # contexts / samples


def _vmapped_log_prob(case: Case):
    r"""``(params, c, x) -> log p(x | c)`` for one sample, with ``c`` dropped if unconditional."""

    if case.conditional:
        return lambda p, c, x: case.spec.apply(p, c).log_prob(x)
    return lambda p, c, x: case.spec.apply(p).log_prob(x)


# -- vmap ----------------------------------------------------------------------------------


def test_vmap_over_contexts_equals_batched_call(case: Case):
    params = case.params()
    c, x = case.c(N), case.x(N)
    f = _vmapped_log_prob(case)
    in_dims = (None, 0, 0) if case.conditional else (None, None, 0)
    out = vmap(f, in_dims=in_dims)(params, c, x)
    batched = case.log_prob(params, c, x)
    assert out.shape == (N,)
    assert torch.isfinite(out).all()
    assert_close(out, batched, what="vmap vs batched")
    # and not a constant: different samples give different densities
    assert out.std() > 1e-3


def test_vmap_over_params_equals_loop_of_modules(case: Case):
    P = L.init_stacked(case.spec, K, seed=10)
    c, x = case.c(N), case.x(N)
    f = _vmapped_log_prob(case)
    out = vmap(f, in_dims=(0, None, None))(P, c, x)
    assert out.shape == (K, N)
    loop = torch.stack([module_of(case, p)(c).log_prob(x) for p in L.tree_unstack(P)])
    assert_close(out, loop, what="vmap over params vs loop of modules")
    # different params give different densities
    assert rows_distinct(out, 1e-3)


def test_vmap_over_params_and_contexts_at_once(case: Case):
    P = L.init_stacked(case.spec, K, seed=20)
    c, x = case.c(K), case.x(K)
    f = _vmapped_log_prob(case)
    # zipped: parameter set k with context k
    out = vmap(f, in_dims=(0, 0 if case.conditional else None, 0))(P, c, x)
    trees = L.tree_unstack(P)
    loop = torch.stack([
        module_of(case, trees[k])(c[k] if case.conditional else None).log_prob(x[k]) for k in range(K)
    ])
    assert_close(out, loop, what="zipped vmap")
    # nested: every parameter set on every context (outer params, inner contexts)
    c2, x2 = case.c(N), case.x(N)
    inner = vmap(f, in_dims=(None, 0 if case.conditional else None, 0))
    nested = vmap(inner, in_dims=(0, None, None))(P, c2, x2)
    assert nested.shape == (K, N)
    loop2 = torch.stack([module_of(case, p)(c2).log_prob(x2) for p in trees])
    assert_close(nested, loop2, what="nested vmap")


def test_vmapped_builder_returns_batched_flow(case: Case):
    P = L.init_stacked(case.spec, K, seed=30)
    c = case.c(K)
    if case.conditional:
        d = vmap(lambda p, c: case.spec.apply(p, c))(P, c)
    else:
        d = vmap(lambda p: case.spec.apply(p))(P)
    assert isinstance(d, Distribution) and isinstance(d, NormalizingFlow)
    assert d.batch_shape == (K,)
    assert d.event_shape == (FEATURES,)
    # the batched object evaluates like the per-set distributions
    x = case.x(K)
    lp = d.log_prob(x)
    trees = L.tree_unstack(P)
    loop = torch.stack([
        case.spec.apply(trees[k], c[k] if case.conditional else None).log_prob(x[k]) for k in range(K)
    ])
    assert_close(lp, loop, what="batched distribution log_prob")
    s = d.rsample((2,))
    assert s.shape == (2, K, FEATURES)
    assert torch.isfinite(d.log_prob(s)).all()


# -- randomness under vmap -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sample", "rsample"])
def test_sampling_under_vmap_over_contexts_gives_independent_draws(cond_case: Case, method: str):
    case = cond_case
    params = case.params()
    c = case.c(1).expand(K, case.context)  # the same context K times: only the RNG differs

    def draw(c):
        return getattr(case.spec.apply(params, c), method)((3,))

    out = vmap(draw, randomness="different")(c)
    assert out.shape == (K, 3, FEATURES)
    assert torch.isfinite(out).all()
    assert rows_distinct(out)
    # the control: with randomness="same" the rows coincide
    same = vmap(draw, randomness="same")(c)
    assert_close(same, same[:1].expand_as(same), atol=1e-6, what="randomness='same'")
    # the draws follow the flow: mapped back through the transform, they are N(0, I)
    d = case.spec.apply(params, c[0])
    many = vmap(lambda c: getattr(case.spec.apply(params, c), method)((500,)), randomness="different")(c)
    z = d.transform(many.reshape(-1, FEATURES))
    assert z.mean(0).abs().max() < 0.15 and (z.std(0) - 1).abs().max() < 0.15


@pytest.mark.parametrize("method", ["sample", "rsample"])
def test_sampling_under_vmap_over_params_gives_independent_draws(case: Case, method: str):
    params = case.params()
    P = L.tree_stack([params] * K)  # identical params: only the RNG differs
    c = case.c()

    def draw(p):
        return getattr(case.spec.apply(p, c), method)((3,))

    out = vmap(draw, randomness="different")(P)
    assert out.shape == (K, 3, FEATURES)
    assert rows_distinct(out)
    same = vmap(draw, randomness="same")(P)
    assert_close(same, same[:1].expand_as(same), atol=1e-6, what="randomness='same'")
    # over different params as well, with contexts batched too when conditional
    P2 = L.init_stacked(case.spec, K, seed=40)
    if case.conditional:
        both = vmap(lambda p, c: case.spec.apply(p, c).rsample(), randomness="different")(P2, case.c(K))
    else:
        both = vmap(lambda p: case.spec.apply(p).rsample(), randomness="different")(P2)
    assert both.shape == (K, FEATURES) and rows_distinct(both)


def test_rsample_under_vmap_is_differentiable_wrt_params(case: Case):
    P = L.init_stacked(case.spec, 2, seed=50)
    c = case.c()

    def loss(P):
        s = vmap(lambda p: case.spec.apply(p, c).rsample((4,)), randomness="different")(P)
        return (s**2).sum()

    g = grad(loss)(P)
    norms = {k: v.abs().sum().item() for k, v in flatten_names(g).items()}
    assert all(torch.isfinite(v).all() for v in flatten_names(g).values())
    assert sum(norms.values()) > 0


# -- derivatives ----------------------------------------------------------------------------


def _module_grads(module, c, x) -> dict[str, torch.Tensor]:
    module.zero_grad()
    module(c).log_prob(x).sum().backward()
    return {k: (v.grad if v.grad is not None else torch.zeros_like(v)) for k, v in module.named_parameters()}


def test_grad_wrt_params_equals_module_autograd(case: Case):
    params = case.params(seed=3)
    c, x = case.c(N), case.x(N)
    g = grad(lambda p: case.log_prob(p, c, x).sum())(params)
    expected = _module_grads(module_of(case, params), c, x)
    got = flatten_names(g)
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert_close(got[name], expected[name], atol=1e-5, what=name)
    assert sum(v.abs().sum() for v in got.values()) > 1e-3


def test_per_sample_grads_equal_a_loop(case: Case):
    params = case.params(seed=4)
    c, x = case.c(N), case.x(N)
    f = _vmapped_log_prob(case)
    per = vmap(grad(f), in_dims=(None, 0 if case.conditional else None, 0))(params, c, x)
    module = module_of(case, params)
    per_flat = flatten_names(per)
    for i in range(N):
        expected = _module_grads(module, c[i] if case.conditional else None, x[i])
        for name, value in expected.items():
            assert_close(per_flat[name][i], value, atol=1e-5, what=f"{name}[{i}]")
    # per-sample gradients differ between samples
    w = next(iter(per_flat.values()))
    assert rows_distinct(w, 1e-6)


def test_jacrev_of_log_prob_wrt_x(case: Case):
    params = case.params(seed=5)
    c, x = case.c(N), case.x(N)
    f = _vmapped_log_prob(case)
    J = vmap(jacrev(f, argnums=2), in_dims=(None, 0 if case.conditional else None, 0))(params, c, x)
    assert J.shape == (N, FEATURES)
    xr = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad(module_of(case, params)(c).log_prob(xr).sum(), xr)
    assert_close(J, expected, atol=1e-5, what="jacrev vs autograd")


def test_ladj_equals_slogdet_of_jacobian(case: Case):
    params = case.params(seed=6, dtype=torch.float64)
    c, x = case.c(N, dtype=torch.float64), case.x(N, dtype=torch.float64)

    def transform(c):
        return case.spec.apply(params, c).transform

    def one(c, x):
        t = transform(c)
        y, ladj = t.call_and_ladj(x)
        J = jacrev(t)(x)
        return y, ladj, torch.linalg.slogdet(J).logabsdet, t.log_abs_det_jacobian(x, y)

    y, ladj, logdet, ladj2 = vmap(one, in_dims=(0 if case.conditional else None, 0))(c, x)
    assert_close(ladj, logdet, atol=1e-8, what="call_and_ladj vs slogdet")
    assert_close(ladj2, logdet, atol=1e-8, what="log_abs_det_jacobian vs slogdet")
    # batched call agrees with vmap
    yb, ladjb = transform(c).call_and_ladj(x)
    assert_close(yb, y, atol=1e-10, what="batched y")
    assert_close(ladjb, ladj, atol=1e-10, what="batched ladj")
    # inverse log-determinant is the negative at the image
    xi, ladj_inv = transform(c).inv.call_and_ladj(y)
    assert_close(xi, x, atol=1e-8, what="inverse")
    assert_close(ladj_inv, -ladj, atol=1e-8, what="inverse ladj")
    assert ladj.abs().max() > 1e-6  # affine / spline transforms change volume


def test_invertibility_float32(case: Case):
    params = case.params(seed=7)
    c, x = case.c(256), case.x(256)
    d = case.spec.apply(params, c)
    y = d.transform(x)
    assert (x - d.transform.inv(y)).abs().max() <= 1e-4
    z = torch.randn(256, FEATURES)
    assert (z - d.transform(d.transform.inv(z))).abs().max() <= 1e-4
    # the transform is not the identity
    assert (y - x).abs().max() > 1e-2


def test_rsample_and_log_prob_agree_with_log_prob(case: Case):
    params = case.params(seed=8)
    c = case.c(N)
    d = case.spec.apply(params, c)
    x, lp = d.rsample_and_log_prob((3,))
    assert x.shape == ((3, N, FEATURES) if case.conditional else (3, FEATURES))
    assert_close(lp, d.log_prob(x), atol=1e-4, what="rsample_and_log_prob")


def test_float64_end_to_end(case: Case):
    params64 = case.params(seed=9, dtype=torch.float64)
    leaves = flatten_names(params64).values()
    assert all(v.dtype == torch.float64 for v in leaves)
    c, x = case.c(N, dtype=torch.float64), case.x(N, dtype=torch.float64)
    d = case.spec.apply(params64, c)
    lp = d.log_prob(x)
    assert lp.dtype == torch.float64
    s = d.rsample((2,))
    assert s.dtype == torch.float64
    assert (d.transform.inv(d.transform(x)) - x).abs().max() < 1e-10
    g = grad(lambda p: case.log_prob(p, c, x).sum())(params64)
    assert all(v.dtype == torch.float64 for v in flatten_names(g).values())
    # same numbers as float32 (up to float32 precision)
    params32 = {k: v.float() for k, v in flatten_names(params64).items()}
    lp32 = case.log_prob(L.unflatten_names(params32), None if c is None else c.float(), x.float())
    assert_close(lp32.double(), lp, atol=1e-4, what="float32 vs float64")
    # and the module path in float64
    module = module_of(case, params64)
    assert_close(module(c).log_prob(x), lp, atol=1e-12, what="module float64")
    # vmap in float64
    f = _vmapped_log_prob(case)
    out = vmap(f, in_dims=(None, 0 if case.conditional else None, 0))(params64, c, x)
    assert out.dtype == torch.float64
    assert_close(out, lp, atol=1e-12, what="vmap float64")


# -- torch.compile ---------------------------------------------------------------------------


@pytest.mark.slow
def test_compile_fullgraph_log_prob_and_rsample():
    import torch._dynamo
    import torch._inductor.config

    torch._dynamo.reset()
    spec = make_spec("MAF", 2)  # a fresh spec: nothing cached before tracing
    params = spec.init(torch.Generator().manual_seed(0))
    c, x = torch.randn(8, 2), torch.randn(8, FEATURES)

    log_prob = torch.compile(lambda p, c, x: spec.apply(p, c).log_prob(x), fullgraph=True)
    assert_close(log_prob(params, c, x), spec.apply(params, c).log_prob(x), atol=1e-5, what="compiled log_prob")
    # new values, same shapes: no recompilation needed and still correct
    params2 = spec.init(torch.Generator().manual_seed(1))
    assert_close(log_prob(params2, c, x), spec.apply(params2, c).log_prob(x), atol=1e-5, what="new params")

    with torch._inductor.config.patch(fallback_random=True):  # eager RNG, so draws can be compared
        rsample = torch.compile(lambda p, c: spec.apply(p, c).rsample((5,)), fullgraph=True)
        torch.manual_seed(1)
        s = rsample(params, c)
        torch.manual_seed(1)
        expected = spec.apply(params, c).rsample((5,))
    assert s.shape == (5, 8, FEATURES)
    assert_close(s, expected, atol=1e-4, what="compiled rsample")
    torch._dynamo.reset()


# -- the default state is built outside transforms -----------------------------------------------


@pytest.mark.parametrize("name", ["MAF", "NSF", "RealNVP", "NICE"])
def test_state_first_built_under_vmap_grad_does_not_leak(name):
    spec = make_spec(name, 2)  # fresh spec: no cached default state yet
    params = spec.init(torch.Generator().manual_seed(0))
    c, x = torch.randn(3, 4, 2), torch.randn(3, 4, FEATURES)
    f = lambda p, c, x: spec.apply(p, c).log_prob(x).sum()  # noqa: E731
    per_task = vmap(grad(f), in_dims=(None, 0, 0))(params, c, x)  # first apply ever: inside vmap(grad)
    # afterwards, plain calls and other transforms still work and agree
    for t in range(3):
        g = grad(f)(params, c[t], x[t])
        for k, v in flatten_names(g).items():
            assert_close(flatten_names(per_task)[k][t], v, atol=1e-5, what=k)
    assert torch.isfinite(spec.apply(params, c[0]).log_prob(x[0])).all()


def test_state_first_built_in_inference_mode_still_trains():
    spec = make_spec("MAF", 2)
    params = spec.init(torch.Generator().manual_seed(0))
    c, x = torch.randn(4, 2), torch.randn(4, FEATURES)
    with torch.inference_mode():
        expected = spec.apply(params, c).log_prob(x)
    leaves = {k: v.clone().requires_grad_() for k, v in flatten_names(params).items()}
    lp = spec.apply(L.unflatten_names(leaves), c).log_prob(x)
    lp.sum().backward()  # the cached masks must not be inference tensors
    assert_close(lp.detach(), expected)
    assert all(v.grad is not None for v in leaves.values())
