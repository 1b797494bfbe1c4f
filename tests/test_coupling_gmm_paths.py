r"""The coupling's split/merge and the GMM's Cholesky fill take a different formulation while
compiling (indexing and ``where`` for the coupling, a sum of zero-padded pieces for the fill,
whose ``vmap`` rules keep the vmapped size symbolic) than eagerly (``index_select``,
``index_copy``, ``scatter``): both paths give the same values and
gradients, ``torch.compile(vmap(per-sample log_prob), dynamic=True)`` compiles one graph for
two batch sizes, and the value-only ``_call``/``_inverse`` of the coupling (sampling) equal
the values of ``call_and_ladj``/``inverse_and_ladj``. ``backend="aot_eager"``, tiny sizes.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters
from torch.func import grad, vmap

from lazydist_functional.catalogue import make_spec, sample_input
from lazydist_functional.flows.mixture import _fill_index, _scale_tril
from lazydist_functional.transforms import CouplingTransform, MonotonicAffineTransform
from lazydist_functional.transforms.base import take

from conftest import assert_close


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _coupling(mask: torch.Tensor, w: torch.Tensor) -> CouplingTransform:
    r"""A coupling whose affine parameters of x_b depend on x_a through ``w`` (na, 2 nb); every
    mask of these tests has 3 False entries (nb = 3)."""

    def meta(x_a):
        shift, scale = (torch.tanh(x_a)[..., None, :] @ w)[..., 0, :].chunk(2, dim=-1)
        return MonotonicAffineTransform(shift, scale)

    return CouplingTransform(meta, mask, 3)


def _run_all(mask, w, x):
    t = _coupling(mask, w)
    y, ladj = t.call_and_ladj(x)
    x2, ladj_inv = t.inverse_and_ladj(y)
    return y, ladj, x2, ladj_inv, t._call(x), t._inverse(y)


MASKS = [torch.tensor([True, False, True, False, False]), torch.tensor([False, False, True, True, False])]


@pytest.mark.parametrize("mask", MASKS, ids=["odd", "block"])
@pytest.mark.parametrize("x_shape", [(4, 5), (5,)], ids=["batched", "one-x"])
def test_coupling_compiled_path_equals_eager(mask, x_shape):
    g = torch.Generator().manual_seed(0)
    na, nb = int(mask.sum()), int((~mask).sum())
    x = torch.randn(x_shape, generator=g)
    w = torch.randn(4, na, 2 * nb, generator=g)  # a batch of 4 parameter sets: x_b's batch exceeds x's
    eager = _run_all(mask, w, x)
    compiled = torch.compile(_run_all, backend="aot_eager", fullgraph=True)(mask, w, x)
    for a, b in zip(eager, compiled):
        assert_close(a, b, atol=1e-6, what="compiled vs eager coupling")
    y, _, x2, _, y_value, x_value = eager
    assert torch.equal(y_value, y) and torch.equal(x_value, x2), "value-only paths differ from call_and_ladj"
    assert_close(x2, x.expand_as(x2), atol=1e-5, what="round trip")
    assert torch.equal(y[..., mask], x.expand_as(y)[..., mask]), "the constant part must be copied exactly"

    def loss(w, x):
        y, ladj, *_ = _run_all(mask, w, x)
        return (y.square().sum() + ladj.sum()) / 7

    grads = grad(loss, argnums=(0, 1))(w, x)
    grads_c = torch.compile(grad(loss, argnums=(0, 1)), backend="aot_eager")(w, x)
    for a, b in zip(grads, grads_c):
        assert_close(a, b, atol=1e-5, what="compiled vs eager gradient")


def test_coupling_stacked_masks_and_vmapped_masks():
    r"""Masks stacked over parameter sets (K, D) outside ``vmap`` and the same masks under
    ``vmap`` equal each set applied alone."""

    g = torch.Generator().manual_seed(1)
    masks = torch.stack([MASKS[0], torch.tensor([True, True, False, False, False])])
    w = torch.randn(2, 2, 6, generator=g)
    x = torch.randn(2, 3, 5, generator=g)
    alone = [_run_all(masks[k], w[k], x[k]) for k in range(2)]
    stacked = _run_all(masks[:, None], w[:, None], x)  # the masks broadcast against (K, N)
    vmapped = vmap(_run_all)(masks, w, x)
    for i in range(4):
        expected = torch.stack([a[i] for a in alone])
        assert_close(stacked[i], expected, atol=1e-6, what=f"stacked masks, output {i}")
        assert_close(vmapped[i], expected, atol=1e-6, what=f"vmapped masks, output {i}")


@pytest.mark.parametrize("d", [1, 2, 4])
def test_scale_tril_compiled_path_equals_eager(d):
    g = torch.Generator().manual_seed(d)
    diagonal = torch.rand(3, 2, d, generator=g) + 0.5
    lower = torch.randn(3, 2, d * (d - 1) // 2, generator=g)
    index = _fill_index(d)
    eager = _scale_tril(diagonal, lower, index)
    expected = torch.diag_embed(diagonal)
    rows, cols = torch.tril_indices(d, d, offset=-1)
    expected[..., rows, cols] = lower
    assert torch.equal(eager, expected)
    compiled = torch.compile(_scale_tril, backend="aot_eager", fullgraph=True)(diagonal, lower, index)
    assert torch.equal(compiled, expected)
    # compiled under a vmap: the sum of zero-padded row pieces
    per_sample = vmap(lambda a, b: _scale_tril(a, b, index))
    vmapped = torch.compile(per_sample, backend="aot_eager", fullgraph=True, dynamic=True)(diagonal, lower)
    assert torch.equal(vmapped, expected)

    def loss(diagonal, lower):
        return (_scale_tril(diagonal, lower, index) * torch.arange(d * d).reshape(d, d)).sum()

    grads = grad(loss, argnums=(0, 1))(diagonal, lower)
    grads_c = torch.compile(grad(loss, argnums=(0, 1)), backend="aot_eager")(diagonal, lower)
    grads_v = torch.compile(vmap(grad(loss, argnums=(0, 1))), backend="aot_eager", dynamic=True)(diagonal, lower)
    for a, b, v in zip(grads, grads_c, grads_v):
        assert torch.equal(a, b) and torch.equal(a, v)


def test_take_compiled_path_equals_eager():
    x = torch.arange(24.0).reshape(2, 3, 4)
    index = torch.tensor([2, 0, 2])
    for dim in (-1, -2, 0):
        idx = index if dim != -1 else torch.tensor([3, 0, 1])
        eager = take(x, idx % x.shape[dim], dim=dim)
        compiled = torch.compile(take, backend="aot_eager", fullgraph=True)(x, idx % x.shape[dim], dim=dim)
        assert torch.equal(eager, compiled), f"dim={dim}"


SMALL = {"RealNVP": dict(transforms=2, hidden_features=[8]),
         "NICE": dict(transforms=2, hidden_features=[8]),
         "GMM": dict(components=2, hidden_features=[8])}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_compiled_vmap_one_graph_for_two_sizes(name):
    spec = make_spec(name, 3, 2, **SMALL[name])
    params, state = spec.init(torch.Generator().manual_seed(0)), spec.init_state()

    def per_sample(c, x):
        return vmap(lambda ci, xi: spec.apply(params, ci, state=state).log_prob(xi))(c, x)

    counters.clear()
    compiled = torch.compile(per_sample, backend="aot_eager", dynamic=True, fullgraph=True)
    for n in (7, 11):  # sizes no other dimension has (dynamo would unify equal sizes)
        g = torch.Generator().manual_seed(n)
        c, x = torch.randn(n, 2, generator=g), sample_input(name, (n, 3), generator=g)
        expected = spec.apply(params, c, state=state).log_prob(x)
        assert_close(compiled(c, x), expected, atol=1e-5, rtol=1e-4, what=f"{name} compiled vmap, N={n}")
    assert counters["stats"]["unique_graphs"] == 1, "the vmapped size was specialized (a second graph)"
