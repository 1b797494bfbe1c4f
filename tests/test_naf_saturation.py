r"""NAF sampling where the base point lies outside the flow's image.

A NAF with soft clips between its layers maps the reals onto a bounded part of the
base's support (at initialization, the catalogue's small NAF reaches a few percent of
:math:`[-4, 4]`). Beyond it the inverse *saturates*: every root search that cannot reach
its target returns the farthest point it evaluated, and the soft clip's inverse its
largest finite preimage, so the sample is monotone in the base point, finite, with finite
gradients, never an arbitrary 0; where the point is reachable, ``rsample_and_log_prob``
equals ``log_prob`` of the sample (Zuko's log-density, unchanged).
"""

from __future__ import annotations

import torch
from torch.func import grad, vmap

from lazydist_functional.catalogue import make_spec
from lazydist_functional.roots import newton_bisection
from lazydist_functional.transforms import SoftclipTransform


def _naf(features: int):
    spec = make_spec("NAF", features=features)
    return spec, spec.init(torch.Generator().manual_seed(0))


def test_inverse_is_monotone_and_finite_over_a_grid():
    spec, params = _naf(1)
    t = spec.apply(params).transform
    z = torch.linspace(-4, 4, 801)[:, None]
    x = t.inv(z)[:, 0]
    assert bool(torch.isfinite(x).all())
    assert bool((x[1:] >= x[:-1]).all())  # monotone, saturated at both ends
    reachable = ((t(x[:, None]) - z).abs() < 1e-4)[:, 0]
    assert 0 < int(reachable.sum()) < len(z)  # both kinds of points are on the grid
    assert float(x[~reachable].abs().min()) > float(x[reachable].abs().max())  # the ends, not 0


def test_rsample_and_log_prob_equals_log_prob_of_the_sample_where_reachable():
    spec, params = _naf(3)
    d = spec.apply(params)
    torch.manual_seed(1)
    z = d.base.sample((2000,))
    torch.manual_seed(1)
    x, log_p = d.rsample_and_log_prob((2000,))
    reachable = (d.transform(x) - z).abs().amax(dim=-1) < 1e-4
    assert int(reachable.sum()) >= 20
    torch.testing.assert_close(log_p[reachable], d.log_prob(x)[reachable], atol=2e-4, rtol=1e-5)
    assert bool(torch.isfinite(x).all()) and bool(torch.isfinite(log_p).all())
    assert not bool((x == 0).any())


def test_rsample_gradients_are_finite():
    spec, params = _naf(3)

    def loss(p):
        torch.manual_seed(0)
        x, log_p = spec.apply(p).rsample_and_log_prob((256,))
        return x.sum() + log_p.sum()

    grads = grad(loss)(params)
    leaves = torch.utils._pytree.tree_leaves(grads)
    assert all(bool(torch.isfinite(g).all()) for g in leaves)
    t = spec.apply(params).transform
    z = torch.linspace(-4, 4, 64)[:, None].expand(64, 3)
    dz = vmap(grad(lambda v: t.inv(v).sum()))(z)
    assert bool(torch.isfinite(dz).all())


def test_root_search_saturates_where_f_is_flat_in_floating_point():
    # f(x) = 1e13 + x in float32 is flat (the ulp at 1e13 is 1e6): every evaluation lies on
    # one side of y; the search returns its farthest point, the same for every such y.
    f = lambda x: (1e13 + x, torch.ones_like(x))  # noqa: E731
    y = torch.tensor([-3e13, -2e13, 2e13, 3e13])
    x = newton_bisection(f, y, -10.0, 10.0, iterations=12)
    assert bool((x[1:] >= x[:-1]).all()) and float(x[0]) == float(x[1]) < -1e5 and float(x[2]) == float(x[3]) > 1e5
    assert bool((vmap(grad(lambda v: newton_bisection(f, v, -10.0, 10.0)))(y) == 0).all())


def test_root_search_outside_a_bounded_image_is_monotone():
    f = lambda x: (torch.tanh(x), 1 - torch.tanh(x) ** 2)  # noqa: E731  image (-1, 1)
    y = torch.linspace(-2, 2, 401)
    x = newton_bisection(f, y, -1.0, 1.0, iterations=12)
    assert bool(torch.isfinite(x).all()) and bool((x[1:] >= x[:-1]).all())
    inside = y.abs() < 0.99
    torch.testing.assert_close(torch.tanh(x[inside]), y[inside], atol=1e-5, rtol=0)
    dx = vmap(grad(lambda v: newton_bisection(f, v, -1.0, 1.0, iterations=12)))(y)
    assert bool(torch.isfinite(dx).all()) and bool((dx[y.abs() > 1] == 0).all())


def test_softclip_inverse_saturates_at_a_constant():
    t = SoftclipTransform(bound=2.0)
    y = torch.tensor([-5.0, -2.0, -1.0, 1.0, 2.0, 5.0])
    x = t.inv(y)
    assert bool(torch.isfinite(x).all()) and bool((x[1:] >= x[:-1]).all())
    assert float(x[0]) == float(x[1]) == -float(x[-1])
    torch.testing.assert_close(t(x[2:4]), y[2:4])
    dx = vmap(grad(lambda v: t.inv(v)))(y)
    assert bool((dx[[0, 1, 4, 5]] == 0).all()) and bool((dx[2:4] > 0).all())
