r"""The Gaussianization transform's inverse (GF sampling): the tabulated path for shared
parameters and the per-element path, round trips into the far tails, parity with Zuko
for the same weights and base draws, implicit gradients, vmap and compile."""

from __future__ import annotations

import pytest
import torch
import zuko
from torch.func import jacrev, vmap

from lazydist_functional import flows
from lazydist_functional.transforms import GaussianizationTransform
from lazydist_functional.transforms.monotonic.gaussianization_inverse import (
    _flatten,
    table_guess,
    tabulate,
    tail_problem,
)


def _params(seed, shape=(3, 8), scale=1.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=dtype) * scale, torch.randn(shape, generator=g, dtype=dtype) * scale)


def _targets(n=1024, d=3, seed=0):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    grid = torch.linspace(-5, 5, 201)[:, None].expand(201, d)
    return torch.cat([x, grid])


@pytest.mark.parametrize("clip", [1e-6, 0.0])
@pytest.mark.parametrize("seed", range(4))
def test_round_trip_gaussian_draws_and_grid(clip, seed):
    t = GaussianizationTransform(*_params(seed), clip=clip)
    x = _targets(seed=seed)
    y = t(x)
    assert t.tabulates(y)
    with torch.no_grad():
        assert (t.inv(y) - x).abs().max() <= 1e-4
    assert (t.inv(y) - x).abs().max() <= 1e-4  # gradient-enabled path (one more step)


@pytest.mark.parametrize("scale", [1.5, 2.0])
def test_round_trip_wide_parameters_where_well_conditioned(scale):
    # components whose scales differ by up to e^8: the table's nodes follow each one
    for seed in range(3):
        b, a = _params(seed, scale=scale)
        t = GaussianizationTransform(b, a, clip=0.0, polish=1)
        x = _targets(seed=seed)
        y, dy = t.value_and_derivative(x)
        with torch.no_grad():
            err = (t.inv(y) - x).abs()
        # float32 resolution of the inverse: |dy| / f'(x) with |dy| ~ 1e-6 (1 + |y|)
        assert (err <= 1e-4 * (1 + x.abs()) + 2e-6 * (1 + y.abs()) / dy).all()


@pytest.mark.parametrize("polish, rtol", [(0, 2e-3), (1, 1e-4)])
def test_far_tails_without_clip_are_inverted_in_log_space(polish, rtol):
    # beyond the table (|z| > 6) the guess is continued linearly: the default single Newton
    # step leaves up to ~1e-3 relative error there, one more reaches float32 resolution
    t = GaussianizationTransform(*_params(5, (2, 4)), clip=0.0, polish=polish)
    x = torch.linspace(-60, 60, 241)[:, None].expand(241, 2).contiguous()
    y, dy = t.value_and_derivative(x.double())
    assert y.abs().max() > 30  # far beyond where the tail mass underflows in linear space
    y, dy = y.float(), dy.float()
    assert t.tabulates(y)
    with torch.no_grad():
        back = t.inv(y)
    assert torch.isfinite(back).all()
    assert ((back - x).abs() <= rtol * (1 + x.abs()) + 2e-6 * (1 + y.abs()) / dy).all()


def test_targets_outside_the_clipped_image_saturate_monotonically():
    # with the shrinkage c, f maps onto (-4.89, 4.89): beyond, the inverse is finite,
    # monotone and never the search's scale B
    t = GaussianizationTransform(*_params(1), clip=1e-6)
    y = torch.linspace(-8, 8, 401)[:, None].expand(401, 3).contiguous()
    with torch.no_grad():
        x = t.inv(y)
    assert torch.isfinite(x).all()
    assert (x.diff(dim=0) >= -1e-4).all()
    inside = y.abs() < 4.8
    assert (t(x)[inside] - y[inside]).abs().max() <= 1e-4


def test_table_brackets_the_root_and_guesses_it():
    b, a = _params(2, dtype=torch.float64)
    x = _targets(seed=2).double()
    t = GaussianizationTransform(b, a, clip=0.0)
    y = t(x)
    y2, b2, a2, _ = _flatten(y, b, a)
    guess, lo, hi = table_guess(tabulate(b2, a2), tail_problem(y2, b2, a2, 0.0).z)
    root = x.T
    assert ((lo <= root + 1e-9) & (root <= hi + 1e-9)).all()
    assert (guess - root).abs().max() < 1e-3


def test_sample_parity_with_zuko_same_weights_same_base_draws():
    torch.manual_seed(0)
    z = zuko.flows.GF(3).double()
    spec = flows.GF(3)
    params, state = spec.split_state_dict(z.state_dict())
    ours_t, theirs_t = spec.apply(params, state=state).transform, z().transform
    for ours, theirs in zip(ours_t.transforms, theirs_t.transforms):
        u = torch.randn(512, 3, dtype=torch.float64)
        a, b = ours.inv(u), theirs.inv(u)
        # Zuko bisects in [-10, 10] (its roots beyond are clamped there): same roots inside
        inside = b.abs() < 9.99
        assert inside.float().mean() > 0.9
        assert torch.allclose(a[inside], b[inside], atol=1e-6)
        assert (ours(a) - u).abs().max() <= 1e-10  # ours everywhere
    # the whole sampling chain from the same base draws, where Zuko's stays unclamped
    u = torch.randn(512, 3, dtype=torch.float64)
    a, b = ours_t.inv(u), theirs_t.inv(u)
    valid = ((theirs_t(b) - u).abs() < 1e-5).all(dim=-1)
    assert valid.any()
    assert torch.allclose(a[valid], b[valid], atol=1e-4)  # Zuko bisects to 1e-6 per transform
    # float32 against Zuko's float64 (Zuko's own float32 erf/erfinv are ~1e-3 off)
    params32, state32 = spec.split_state_dict(z.float().state_dict())
    with torch.no_grad():
        ours32 = spec.apply(params32, state=state32).transform.inv(u.float())
    assert torch.allclose(ours32[valid].double(), b[valid], atol=1e-3, rtol=1e-4)


def test_flow_round_trip_as_benchmarked():
    # benchmarks/monotonic.py's round trip: x ~ N(0, I) and a grid of [-5, 5]^3 diagonals
    spec = flows.GF(3)
    d = spec.apply(spec.init(torch.Generator().manual_seed(0)))
    x = _targets(seed=1)
    with torch.no_grad():
        assert (d.transform.inv(d.transform(x)) - x).abs().max() <= 1e-4
        assert torch.isfinite(d.sample((1024,))).all()


@pytest.mark.parametrize("clip", [1e-6, 0.0])
def test_inverse_gradients_are_implicit(clip):
    b, a = _params(3, dtype=torch.float64)
    t = GaussianizationTransform(b, a, clip=clip)
    x = _targets(256, seed=3).double()
    y, dy = t.value_and_derivative(x)
    assert t.tabulates(y)
    # d x / d y = 1 / f'(x): the inverse is element-wise, so a VJP with ones is the diagonal
    dx = torch.func.vjp(t.inv, y)[1](torch.ones_like(y))[0]
    assert torch.allclose(dx, 1 / dy, rtol=1e-6)
    # parameters: d x / d theta = -(d f / d theta) / f'(x), against the forward's gradients
    xs = t.inv(y)
    dfb, dfa = torch.func.jacrev(lambda b, a: GaussianizationTransform(b, a, clip=clip)(xs[:2]),
                                 argnums=(0, 1))(b, a)
    dxb, dxa = torch.func.jacrev(lambda b, a: GaussianizationTransform(b, a, clip=clip).inv(y)[:2],
                                 argnums=(0, 1))(b, a)
    assert torch.allclose(dxb, -dfb / dy[:2, :, None, None], atol=1e-9)
    assert torch.allclose(dxa, -dfa / dy[:2, :, None, None], atol=1e-9)


def test_jacrev_small_batches_use_the_per_element_path():
    b, a = _params(4)
    t = GaussianizationTransform(b, a)
    y = torch.randn(4, 3)
    assert not t.tabulates(y)
    J = jacrev(t.inv)(y)
    x = t.inv(y)
    _, dy = t.value_and_derivative(x)
    assert torch.allclose(torch.einsum("ijij->ij", J), 1 / dy, rtol=1e-4)


@pytest.mark.parametrize("per_target", [True, False], ids=["per-element", "tabulated"])
@pytest.mark.parametrize("clip", [1e-6, 0.0])
def test_float32_inverse_gradients_are_never_dropped_at_converged_roots(per_target, clip):
    # At convergence the bracket may shrink to a point; the implicit gradient must still
    # flow there (a dropped one zeroed columns of a conditional GF's inverse Jacobian).
    shape = (2000, 3, 8) if per_target else (3, 8)
    b, a = _params(7, shape)
    t = GaussianizationTransform(b, a, clip=clip)
    # inside the image of f (|y| < 4.89 with clip 1e-6)
    y = (torch.randn(2000, 3, generator=torch.Generator().manual_seed(8)) * 1.5).clamp(-4.5, 4.5)
    assert t.tabulates(y) is not per_target
    dx = torch.func.vjp(t.inv, y)[1](torch.ones_like(y))[0]
    _, dy = t.value_and_derivative(t.inv(y))
    assert (dx != 0).all()
    assert torch.allclose(dx, 1 / dy, rtol=1e-3)


def test_conditional_flow_inverse_jacobian_is_the_inverse_of_the_forward():
    # Zuko's own test_flows check, over many seeds
    for seed in range(30):
        spec = flows.GF(3, 5)
        params = spec.init(torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(100 + seed)
        x, c = torch.randn(3, generator=g), torch.randn(5, generator=g)
        t = spec.apply(params, c).transform
        J, J_inv = jacrev(t)(x), jacrev(t.inv)(t(x))
        assert torch.allclose(J_inv @ J, torch.eye(3), atol=1e-3), seed


def test_vmap_over_per_sample_parameters_and_over_targets():
    B, A = _params(6, (16, 3, 8))
    Y = torch.randn(16, 3)
    batched = GaussianizationTransform(B, A).inv(Y)
    mapped = vmap(lambda b, a, y: GaussianizationTransform(b, a).inv(y))(B, A, Y)
    assert torch.allclose(mapped, batched, atol=1e-5)
    assert (GaussianizationTransform(B, A)(batched) - Y).abs().max() <= 1e-4
    # shared parameters, a batch of target sets: the tabulated path under vmap
    t = GaussianizationTransform(*_params(7))
    Ys = torch.randn(4, 256, 3)
    assert torch.allclose(vmap(t.inv)(Ys), t.inv(Ys), atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(vmap(t.inv)(Ys), t.inv(Ys), atol=1e-5)


def test_broadcast_parameters_and_targets():
    b, a = _params(8, (1, 8))
    t = GaussianizationTransform(b, a)
    y = torch.randn(300, 3)
    assert t.tabulates(y)
    assert torch.allclose(t.inv(y), GaussianizationTransform(b.expand(3, 8), a.expand(3, 8)).inv(y), atol=1e-6)
    single = GaussianizationTransform(*_params(9, (8,)))
    y = torch.randn(50, 4)
    assert (single(single.inv(y)) - y).abs().max() <= 1e-4


def test_compiles_with_aot_eager():
    t = GaussianizationTransform(*_params(10))
    y = torch.randn(256, 3)
    compiled = torch.compile(lambda y: t.inv(y), backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        assert torch.allclose(compiled(y), t.inv(y), atol=1e-6)
    assert torch.allclose(compiled(y), t.inv(y), atol=1e-6)


def test_settings_are_validated_and_static():
    with pytest.raises(ValueError, match="nodes"):
        GaussianizationTransform(*_params(0), nodes=-1)
    t = GaussianizationTransform(*_params(0), nodes=0)
    assert not t.tabulates(torch.randn(4096, 3))
    leaves, spec = torch.utils._pytree.tree_flatten(GaussianizationTransform(*_params(0), nodes=4, polish=2))
    assert len(leaves) == 2
    assert torch.utils._pytree.tree_unflatten(leaves, spec).polish == 2


def test_flow_tabulates_all_layers_at_once_with_the_same_values():
    from lazydist_functional.distributions.flow import NormalizingFlow
    from lazydist_functional.flows.gaussianization import GaussianizationFlow

    spec = flows.GF(3)
    d = spec.apply(spec.init(torch.Generator().manual_seed(0)))
    assert isinstance(d, GaussianizationFlow) and isinstance(d, NormalizingFlow)
    plain = NormalizingFlow(d.transform, d.base)
    key = torch.Generator().manual_seed(1)
    z = torch.randn(1024, 3, generator=key)
    assert torch.equal(d._tabulated(torch.Size([1024])).inv(z), plain.transform.inv(z))
    torch.manual_seed(2)
    x, lp = d.rsample_and_log_prob((512,))
    torch.manual_seed(2)
    x2, lp2 = plain.rsample_and_log_prob((512,))
    assert torch.equal(x, x2) and torch.allclose(lp, lp2)
    # sample: the layers called directly (without gradients, on (D, N) targets from the
    # base draws to the end), same values
    # (sample); with gradients (rsample) the tabulated layers' inverses in turn
    torch.manual_seed(3)
    s = d.sample((512,))
    torch.manual_seed(3)
    assert torch.allclose(s, plain.sample((512,)), rtol=1e-4, atol=1e-5)
    torch.manual_seed(3)
    r = d.rsample((512,))
    torch.manual_seed(3)
    assert torch.equal(r, plain.rsample((512,)))
    # compiled default sampling (one graph, the same values)
    with torch.no_grad():
        torch.manual_seed(3)
        s = d.sample((512,))
        torch.manual_seed(3)
        compiled = torch.compile(lambda: d.sample((512,)), backend="aot_eager", fullgraph=True)()
        assert torch.allclose(compiled, s, rtol=1e-4, atol=1e-5)
    # few draws: no shared table (each layer would not tabulate either)
    assert d._tabulated(torch.Size([4])) is d.transform
    # vmapped over parameter sets: the distribution is a pytree
    draws = vmap(lambda p: spec.apply(p).sample((256,)), randomness="different")(
        torch.utils._pytree.tree_map(lambda t: t.expand(2, *t.shape), spec.init()))
    assert draws.shape == (2, 256, 3) and torch.isfinite(draws).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tabulated_step_is_the_generic_one_step_inverse(dtype):
    # the default sampling path (no grad, clip > 0) against tail_problem + table_guess +
    # newton_delta, eager, vmapped over targets or parameter sets, and compiled
    from lazydist_functional.transforms.monotonic.gaussianization_inverse import newton_delta, tabulated_step

    b, a = _params(4, dtype=dtype)
    y = GaussianizationTransform(b, a)(_targets(n=64, seed=4).to(dtype)).T.contiguous()
    table = tabulate(b, a)

    def generic(y, b, a):
        p = tail_problem(y, b, a, 1e-6)
        x, lo, hi = table_guess(tabulate(b, a), p.z)
        return torch.clamp(x + newton_delta(p, x), lo, hi)

    tol = 1e-5 if dtype == torch.float32 else 1e-12
    with torch.no_grad():
        ref = generic(y, b, a)
        assert torch.allclose(tabulated_step(y.clone(), table, 1e-6), ref, atol=tol)
        cols = vmap(lambda v: tabulated_step(v[:, None], table, 1e-6)[:, 0], in_dims=1, out_dims=1)(y)
        assert torch.allclose(cols, ref, atol=tol)
        B, A = torch.stack([b, b.flip(0)]), torch.stack([a, a.flip(0)])
        sets = vmap(lambda b, a: tabulated_step(y, tabulate(b, a), 1e-6))(B, A)
        assert torch.allclose(sets[0], ref, atol=tol)
        assert torch.allclose(sets[1], generic(y, b.flip(0), a.flip(0)), atol=tol)
        compiled = torch.compile(lambda y: tabulated_step(y, table, 1e-6), backend="aot_eager", fullgraph=True)
        assert torch.allclose(compiled(y), ref, atol=tol)
        # y itself is left as it was (the in-place operations act on temporaries)
        y0 = y.clone()
        tabulated_step(y, table, 1e-6)
        assert torch.equal(y, y0)
