r"""Monotonic transforms and flows (NAF, UNAF, SOSPF, BPF, GF): Zuko parity, torch.func, inverses."""

from __future__ import annotations

import pytest
import torch
import zuko
from torch.func import grad, jacrev, vmap

import lazydist_functional.adapters as adapters
from lazydist_functional import flows, tree_stack, unflatten_names
from lazydist_functional.catalogue import FLOWS
from lazydist_functional.pytree import Partial, flatten_names
from lazydist_functional.roots import newton_bisection
from lazydist_functional.transforms import (
    BernsteinTransform,
    BoundedBernsteinTransform,
    GaussianizationTransform,
    MonotonicTransform,
    SOSPolynomialTransform,
    UnconstrainedMonotonicTransform,
)

#: The catalogue's small configurations of the monotonic flows (Zuko accepts them too).
CONFIGS = {name: dict(FLOWS[name].kwargs) for name in ("NAF", "UNAF", "SOSPF", "BPF", "GF")}


def make(name, context, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    z = getattr(zuko.flows, name)(3, context, **CONFIGS[name]).to(dtype)
    spec = getattr(flows, name)(3, context, **CONFIGS[name])
    params, state = spec.split_state_dict(z.state_dict())
    return z, spec, params, state


def ctx(context, *shape):
    return torch.randn(*shape, context) if context else None


@pytest.mark.parametrize("context", [0, 2])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_zuko_parity(name, context):
    z, spec, params, state = make(name, context)
    c, x = ctx(context, 16), torch.randn(16, 3)
    ours = spec.apply(params, c, state=state).log_prob(x)
    # Same math: in float64 both agree to rounding.
    z64 = z.double()
    p64, s64 = spec.split_state_dict(z64.state_dict())
    c64, x64 = (None if c is None else c.double()), x.double()
    expected = z64(c64).log_prob(x64)
    assert torch.allclose(spec.apply(p64, c64, state=s64).log_prob(x64), expected, atol=1e-9)
    # float32 against the float64 reference.
    assert torch.allclose(ours.double(), expected, atol=1e-5)
    z.float()
    if name not in ("BPF", "GF"):
        # Zuko's float32 BPF (Beta-density basis) and GF (erf/erfinv) are themselves
        # ~1e-5 (BPF) to ~1e-2 (GF, tails) away from the float64 reference.
        assert torch.allclose(ours, z(c).log_prob(x), atol=1e-5)
    # The adapter module loads the same checkpoint.
    module = getattr(adapters.flows, name)(3, context, **CONFIGS[name])
    module.load_state_dict(z.state_dict())
    assert torch.allclose(module(c).log_prob(x), spec.apply(params, c, state=state).log_prob(x), atol=1e-6)


def test_gf_without_clip_is_a_bijection_of_the_reals():
    torch.manual_seed(0)
    spec = flows.GF(3, clip=0.0, components=4)
    d = spec.apply(spec.init())
    x = torch.linspace(-8, 8, 101)[:, None].expand(101, 3)
    assert (d.transform.inv(d.transform(x)) - x).abs().max() <= 1e-4
    assert bool(d.log_prob(x).isfinite().all())


def test_monotonic_mlp_parity():
    zn = zuko.nn.MonotonicMLP(3, 4, [8, 6])
    net = adapters.nn.MonotonicMLP(3, 4, [8, 6])
    net.load_state_dict(zn.state_dict())
    x = torch.randn(5, 3)
    assert torch.allclose(net(x), zn(x), atol=1e-6)
    J = jacrev(net)(torch.randn(3))
    assert bool((J > 0).all())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_invertibility(name):
    _, spec, params, state = make(name, 2)
    f = spec.apply(params, ctx(2, 1), state=state).transform
    for x in (torch.randn(512, 3), torch.linspace(-5, 5, 201)[:, None].expand(201, 3)):
        assert (f.inv(f(x)) - x).abs().max() <= 1e-4
        x_, ladj = f.inv.call_and_ladj(f(x))
        assert torch.allclose(ladj, -f.call_and_ladj(x)[1], atol=1e-3)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_vmap_over_contexts_and_params(name):
    _, spec, params, state = make(name, 2)
    C, X = torch.randn(6, 2), torch.randn(6, 3)
    batched = spec.apply(params, C, state=state).log_prob(X)
    mapped = vmap(lambda c, x: spec.apply(params, c, state=state).log_prob(x))(C, X)
    assert torch.allclose(mapped, batched, atol=1e-5)

    P = tree_stack([spec.init(torch.Generator().manual_seed(i)) for i in range(3)])
    plist = [spec.init(torch.Generator().manual_seed(i)) for i in range(3)]
    S = spec.init_state()
    out = vmap(lambda p: spec.apply(p, C, state=S).log_prob(X))(P)
    loop = torch.stack([spec.apply(p, C, state=S).log_prob(X) for p in plist])
    assert torch.allclose(out, loop, atol=1e-5)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_sampling_under_vmap(name):
    _, spec, params, state = make(name, 2)
    C = torch.randn(4, 2)

    def draw(c):
        d = spec.apply(params, c, state=state)
        x = d.rsample((5,))
        return x, d.log_prob(x)

    x, lp = vmap(draw, randomness="different")(C)
    assert x.shape == (4, 5, 3) and bool(lp.isfinite().all())
    # Identical contexts give independent draws.
    x2, _ = vmap(draw, randomness="different")(C[:1].expand(2, 2))
    assert not torch.allclose(x2[0], x2[1])
    # Stacked parameters, different draws per parameter set.
    P = tree_stack([params, params])
    xs = vmap(lambda p: spec.apply(p, C[0], state=state).sample((3,)), randomness="different")(P)
    assert xs.shape == (2, 3, 3) and not torch.allclose(xs[0], xs[1])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_grad_and_vmap_grad_equal_autograd(name):
    _, spec, params, state = make(name, 2)
    C, X = torch.randn(4, 2), torch.randn(4, 3)

    def loss(p, c, x):
        return -spec.apply(p, c, state=state).log_prob(x).mean()

    g = grad(loss)(params, C, X)
    leaves = {k: v.detach().clone().requires_grad_() for k, v in flatten_names(params).items()}
    loss(unflatten_names(leaves), C, X).backward()
    for k, v in flatten_names(g).items():
        assert torch.allclose(v, leaves[k].grad, atol=1e-5, rtol=1e-4), k

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))(params, C[:, None], X[:, None])
    for i in range(2):
        gi = grad(loss)(params, C[i : i + 1], X[i : i + 1])
        for k, v in flatten_names(gi).items():
            assert torch.allclose(flatten_names(per_sample)[k][i], v, atol=1e-5, rtol=1e-4), k


@pytest.mark.parametrize("name", list(CONFIGS))
def test_ladj_is_slogdet_of_jacobian(name):
    _, spec, params, state = make(name, 2)
    f = spec.apply(params, ctx(2), state=state).transform
    x = torch.randn(3)
    J = jacrev(f)(x)
    _, ladj = f.call_and_ladj(x)
    # UNAF: the log-det is log g(x); the Jacobian is that of the quadrature.
    assert torch.allclose(torch.linalg.slogdet(J)[1], ladj, atol=1e-4 if name == "UNAF" else 1e-5)
    # The inverse's Jacobian (implicit gradients) is the inverse matrix.
    y = f(x)
    Ji = jacrev(f.inv)(y)
    assert torch.allclose(Ji @ J, torch.eye(3), atol=1e-4)


def test_sample_gradients_by_implicit_function_theorem():
    # d x / d theta of x = f^{-1}(y; theta) in float64, against finite differences.
    a = torch.randn(2, 3, 4, dtype=torch.float64)
    y = torch.randn(2, dtype=torch.float64)

    def inverse(a, y):
        return SOSPolynomialTransform(a, iterations=40).inv(y)

    assert torch.autograd.gradcheck(inverse, (a.requires_grad_(), y.requires_grad_()))
    # and through an unrolled root finder in float32 vs torch.func
    _, spec, params, state = make("NAF", 2)
    c = torch.randn(2)

    def sample_mean(p):
        return spec.apply(p, c, state=state).transform.inv(torch.ones(3)).sum()

    g = grad(sample_mean)(params)
    leaves = {k: v.detach().clone().requires_grad_() for k, v in flatten_names(params).items()}
    sample_mean(unflatten_names(leaves)).backward()
    for k, v in flatten_names(g).items():
        assert torch.allclose(v, leaves[k].grad, atol=1e-5, rtol=1e-4), k


@pytest.mark.parametrize(
    "t",
    [
        lambda: BernsteinTransform(torch.randn(3, 8)),
        lambda: BoundedBernsteinTransform(torch.randn(3, 9)),
        lambda: GaussianizationTransform(torch.randn(3, 4), torch.randn(3, 4)),
        lambda: SOSPolynomialTransform(torch.randn(3, 2, 4)),
        lambda: UnconstrainedMonotonicTransform(Partial(torch.nn.functional.softplus, ()), n=16),
        lambda: MonotonicTransform(Partial(torch.add, (torch.sinh(torch.tensor(1.0)),))),
    ],
)
def test_transforms(t):
    torch.manual_seed(0)
    t = t()
    x = torch.randn(3)
    y, ladj = t.call_and_ladj(x)
    assert (t.inv(y) - x).abs().max() <= 1e-4
    d = torch.func.jacfwd(t)(x).diagonal()
    assert torch.allclose(d.log(), ladj, atol=1e-4)
    # vmap over a batch of inputs
    X = torch.randn(5, 3)
    assert torch.allclose(vmap(t)(X), t(X), atol=1e-6)
    assert torch.allclose(vmap(t.inv)(t(X)), X, atol=1e-4)


def test_zuko_transform_parity():
    torch.manual_seed(0)
    x = torch.randn(50, 3)
    for ours, theirs in [
        (BernsteinTransform, zuko.transforms.BernsteinTransform),
        (BoundedBernsteinTransform, zuko.transforms.BoundedBernsteinTransform),
    ]:
        theta = torch.randn(3, 10, dtype=torch.float64)
        a, b = ours(theta).call_and_ladj(x.double()), theirs(theta).call_and_ladj(x.double())
        assert torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])
    A = torch.randn(3, 2, 5)
    a, b = SOSPolynomialTransform(A).call_and_ladj(x), zuko.transforms.SOSPolynomialTransform(A).call_and_ladj(x)
    assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1], b[1], atol=1e-5)
    s, r = torch.randn(3, 4), torch.randn(3, 4)
    a = GaussianizationTransform(s, r, clip=1e-6).call_and_ladj(x)
    b = zuko.transforms.GaussianizationTransform(s, r).call_and_ladj(x)
    assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1], b[1], atol=1e-5)


def test_gaussianization_invertible_in_tails():
    torch.manual_seed(0)
    t = GaussianizationTransform(torch.randn(3, 8), torch.randn(3, 8))
    x = torch.linspace(-5, 5, 401)[:, None].expand(401, 3)
    assert (t.inv(t(x)) - x).abs().max() <= 1e-4


def test_newton_bisection():
    def f(x):
        return x**3 + x, 3 * x**2 + 1

    y = torch.tensor([2.0, -10.0, 0.5])
    x = newton_bisection(f, y, -10.0, 10.0, iterations=12)
    assert torch.allclose(f(x)[0], y, atol=1e-5)
    # vmap and IFT gradients: dx/dy = 1 / f'(x)
    dx = vmap(grad(lambda y: newton_bisection(f, y, -10.0, 10.0)))(y)
    assert torch.allclose(dx, 1 / f(x)[1], rtol=1e-4)
    # a function whose Newton steps leave the bracket (arctan) still converges
    g = lambda x: (torch.atan(5 * x), 5 / (1 + 25 * x**2))  # noqa: E731
    y = torch.tensor([1.5, -1.2, 0.0])
    assert torch.allclose(g(newton_bisection(g, y, -100.0, 100.0, iterations=30))[0], y, atol=1e-5)


def test_newton_bisection_compiles():
    compiled = torch.compile(
        lambda y: newton_bisection(lambda x: (x**3 + x, 3 * x**2 + 1), y, -10.0, 10.0, iterations=8),
        fullgraph=True,
        backend="eager",
    )
    y = torch.tensor([2.0, 0.5])
    assert torch.allclose(compiled(y), torch.tensor([1.0, 0.4239]), atol=1e-4)


@pytest.mark.parametrize("kwargs", [dict(randperm=True), dict(passes=2)])
def test_grouped_inverse_uses_the_loaded_order(kwargs):
    # A Zuko checkpoint with its own random order: the inverse solves one group per
    # pass in the order held by the loaded buffer.
    torch.manual_seed(3)
    config = dict(hidden_features=[16], signal=4, network={"hidden_features": [8]}, **kwargs)
    z = zuko.flows.NAF(4, 2, **config)
    spec = flows.NAF(4, 2, **config)
    params, state = spec.split_state_dict(z.state_dict())
    c, x = torch.randn(2), torch.randn(64, 4)
    d = spec.apply(params, c, state=state)
    assert torch.allclose(d.log_prob(x), z(c).log_prob(x), atol=1e-5)
    assert (d.transform.inv(d.transform(x)) - x).abs().max() <= 1e-4


def test_gf_in_bfloat16_computes():
    # torch has no half ndtri kernel and a NaN half matrix_exp on CPU: both run in float32
    # and are cast back; log-densities match the float32 flow to bfloat16 precision.
    from lazydist_functional.catalogue import make_spec

    spec = make_spec("GF", 3)
    params = spec.init(torch.Generator().manual_seed(0), dtype=torch.bfloat16)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1)).bfloat16()
    d = spec.apply(params)
    log_p = d.log_prob(x)
    as32 = torch.utils._pytree.tree_map(lambda t: t.float() if t.is_floating_point() else t, params)
    expected = spec.apply(as32).log_prob(x.float())
    assert log_p.dtype == torch.bfloat16
    torch.testing.assert_close(log_p.float(), expected, atol=0.2, rtol=0.02)
    s = d.sample((16,))
    assert s.dtype == torch.bfloat16 and bool(s.isfinite().all())


def test_unaf_quadrature_chunking_changes_no_value_and_fills_a_gpu_at_once(monkeypatch):
    r"""The quadrature's chunk size (one node per integrand call to all of them) changes no
    value or gradient; off the CPU the whole rule goes in one call at N = 4096 (the CPU's
    cache-sized chunks cost a GPU 12x the operations of ``log_prob``)."""

    import lazydist_functional.transforms.monotonic.quadrature as quadrature

    _, spec, params, _ = make("UNAF", 2)
    c, x = ctx(2, 64), torch.randn(64, 3)

    def value_and_grad(budget):
        monkeypatch.setattr(quadrature, "CHUNK_ELEMENTS", budget)
        assert quadrature.nodes_per_chunk(x, 32) == (1 if budget == 1 else 32)
        return grad(lambda p: spec.apply(p, c).log_prob(x).sum())(params), spec.apply(params, c).log_prob(x)

    (g1, lp1), (g32, lp32) = value_and_grad(1), value_and_grad(1 << 20)
    assert torch.allclose(lp1, lp32, rtol=1e-5, atol=1e-5)
    for k, v in flatten_names(g1).items():
        assert torch.allclose(v, flatten_names(g32)[k], rtol=1e-4, atol=1e-5), k
    monkeypatch.setattr(quadrature, "CHUNK_ELEMENTS", 4096)
    assert quadrature.nodes_per_chunk(torch.empty(4096, 5), 32) == 1
    assert quadrature.nodes_per_chunk(torch.empty(4096, 5, device="meta"), 32) == 32
