r"""``ensemble_step``'s two ways of taking the gradient of the summed member losses:
``torch.autograd.grad`` on detached leaves (eagerly, outside every transform) and
``torch.func.grad`` (inside a transform or an autograd graph) give the same step."""

from __future__ import annotations

import torch
from torch.func import grad, vmap

import lazydist_functional as L
import lazydist_functional.meta as M
from lazydist_functional.flows import MAF
from lazydist_functional.optim import adam, sgd


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 1, generator=g), torch.randn(16, 2, generator=g)


def test_autograd_path_equals_func_grad_exactly():
    spec = MAF(2, 1, transforms=2, hidden_features=[8])
    stacked = M.ensemble_init(spec, 3, seed=2)
    c, x = _data()

    def members(p):
        return vmap(lambda q: M.nll(spec, q, c, x))(p)

    assert M._plain_leaves(stacked, c, x)
    g_fast, losses = M._autograd_grad(members, stacked)
    g_ref = grad(lambda p: members(p).sum())(stacked)
    a, b = L.flatten_names(g_fast), L.flatten_names(g_ref)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
        assert not a[k].requires_grad
    assert torch.equal(losses, members(stacked)) and not losses.requires_grad


def test_unused_leaf_gets_a_zero_gradient_as_with_func_grad():
    stacked = {"w": torch.ones(3, 2), "unused": torch.ones(3, 4)}
    g, losses = M._autograd_grad(lambda p: (p["w"] ** 2).sum(-1), stacked)
    assert torch.equal(g["unused"], torch.zeros(3, 4)) and torch.equal(g["w"], 2 * torch.ones(3, 2))
    assert torch.equal(losses, torch.full((3,), 2.0))


def test_step_inside_transforms_takes_the_func_grad_path_and_differentiates():
    # differentiating through one SGD step of the ensemble (leaves are grad-tracked): the
    # func.grad path, equal to the explicit formula theta - lr * grad
    spec = MAF(2, 1, transforms=1, hidden_features=[8])
    opt = sgd(0.1)
    stacked = M.ensemble_init(spec, 2, seed=3)
    c, x = _data()
    assert not M._plain_leaves(stacked, c, x.requires_grad_())

    def after_step(xx):
        new, _, _ = M.ensemble_step(spec, opt, stacked, vmap(opt.init)(stacked), c, xx)
        return sum(v.sum() for v in L.flatten_names(new).values())

    def explicit(xx):
        g = grad(lambda p: vmap(lambda q: M.nll(spec, q, c, xx))(p).sum())(stacked)
        return sum((p - 0.1 * gg).sum() for p, gg in zip(L.flatten_names(stacked).values(), L.flatten_names(g).values()))

    x = x.detach()
    assert torch.allclose(grad(after_step)(x), grad(explicit)(x), atol=1e-6)


def test_eager_adam_steps_match_the_transform_path():
    # the same three Adam steps eagerly (autograd path + fused Adam) and under vmap over a
    # leading axis of size 1 (func.grad path + multi-tensor Adam)
    spec = MAF(2, 1, transforms=2, hidden_features=[8])
    opt = adam(1e-2)
    stacked = M.ensemble_init(spec, 2, seed=4)
    c, x = _data()

    def run(p, cc, xx):
        s = vmap(opt.init)(p)
        for _ in range(3):
            p, s, _ = M.ensemble_step(spec, opt, p, s, cc, xx)
        return p

    eager = run(stacked, c, x)
    batched = vmap(run, in_dims=(None, 0, 0))(stacked, c[None], x[None])
    a, b = L.flatten_names(eager), L.flatten_names(batched)
    for k in a:
        assert torch.allclose(a[k], b[k][0], atol=1e-6), k
