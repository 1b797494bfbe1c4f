r"""Meta-learning, ensembles, hypernetworks, per-sample gradients: exactness against loops,
optimizers against torch.optim, clear errors, and that meta-learning actually helps."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import grad, vmap

import lazydist_functional as L
import lazydist_functional.meta as M
from lazydist_functional.flows import MAF, NSF
from lazydist_functional.nn import MLP
from lazydist_functional.optim import adam, sgd
from lazydist_functional.pytree import tree_map
from torch.utils._python_dispatch import TorchDispatchMode


def close_trees(a, b, atol=1e-5):
    fa, fb = L.flatten_names(a), L.flatten_names(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert torch.allclose(fa[k], fb[k], atol=atol), (k, (fa[k] - fb[k]).abs().max())


def tree_norm(t):
    return sum(v.pow(2).sum() for v in L.flatten_names(t).values()).sqrt()


@pytest.fixture
def spec():
    return MAF(2, 1, transforms=2, hidden_features=[8])


@pytest.fixture
def tasks():
    g = torch.Generator().manual_seed(3)
    T, S = 3, 8
    return tuple(torch.randn(T, S, d, generator=g) for d in (1, 2, 1, 2))


def test_maml_second_order_equals_loop_over_tasks(spec, tasks):
    params = spec.init(torch.Generator().manual_seed(0))
    g_vmap = grad(lambda p: M.maml_loss(spec, p, *tasks, inner_steps=2, inner_lr=0.1))(params)

    def loop(p):
        total = 0.0
        for t in range(tasks[0].shape[0]):
            fast = p
            for _ in range(2):
                fast = L.tree_axpy(-0.1, grad(lambda q: M.nll(spec, q, tasks[0][t], tasks[1][t]))(fast), fast)
            total = total + M.nll(spec, fast, tasks[2][t], tasks[3][t])
        return total / tasks[0].shape[0]

    close_trees(g_vmap, grad(loop)(params))
    assert tree_norm(g_vmap) > 0


def test_first_order_maml_is_the_query_gradient_at_the_adapted_params(spec, tasks):
    params = spec.init(torch.Generator().manual_seed(0))
    g_fo = grad(lambda p: M.maml_loss(spec, p, *tasks, inner_steps=2, first_order=True))(params)
    expected = []
    for t in range(tasks[0].shape[0]):
        fast = M.adapt(spec, params, tasks[0][t], tasks[1][t], steps=2)
        expected.append(grad(lambda q: M.nll(spec, q, tasks[2][t], tasks[3][t]))(fast))
    close_trees(g_fo, L.tree_scale(L.tree_add(L.tree_add(expected[0], expected[1]), expected[2]), 1 / 3))
    g_so = grad(lambda p: M.maml_loss(spec, p, *tasks, inner_steps=2))(params)
    assert tree_norm(L.tree_sub(g_so, g_fo)) > 1e-4  # second order differs


def test_anil_adapts_only_the_selected_parameters(spec, tasks):
    params = spec.init(torch.Generator().manual_seed(0))
    head = "transform.transforms.1"
    fast = M.adapt(spec, params, tasks[0][0], tasks[1][0], steps=1, only=head)
    for name, value in L.flatten_names(fast).items():
        before = L.flatten_names(params)[name]
        assert torch.equal(value, before) != name.startswith(head), name


def test_reptile_step_equals_loop(spec, tasks):
    params = spec.init(torch.Generator().manual_seed(0))
    new = M.reptile_step(spec, params, tasks[0], tasks[1], inner_steps=3, inner_lr=0.05, outer_lr=0.5)
    adapted = [M.adapt(spec, params, tasks[0][t], tasks[1][t], 3, 0.05) for t in range(3)]
    mean = L.tree_scale(L.tree_add(L.tree_add(adapted[0], adapted[1]), adapted[2]), 1 / 3)
    close_trees(new, L.tree_add(params, L.tree_scale(L.tree_sub(mean, params), 0.5)))


@pytest.mark.parametrize("make", [lambda: sgd(0.05, momentum=0.9), lambda: adam(0.01)], ids=["sgd", "adam"])
def test_ensemble_step_equals_k_separate_steps(spec, make):
    opt = make()
    stacked = M.ensemble_init(spec, 4)
    opt_state = vmap(opt.init)(stacked)
    members = L.tree_unstack(stacked)
    states = [opt.init(p) for p in members]
    c, x = torch.randn(32, 1), torch.randn(32, 2)
    for _ in range(3):
        stacked, opt_state, losses = M.ensemble_step(spec, opt, stacked, opt_state, c, x)
        for k in range(4):
            assert torch.allclose(losses[k], M.nll(spec, members[k], c, x), atol=1e-5)
            g = grad(lambda p: M.nll(spec, p, c, x))(members[k])
            members[k], states[k] = opt.update(g, states[k], members[k])
    close_trees(stacked, L.tree_stack(members))
    assert losses.unique().numel() == 4
    lp = M.ensemble_log_prob(spec, stacked, c, x)
    each = torch.stack([spec.apply(p, c).log_prob(x) for p in members])
    assert torch.allclose(lp, torch.logsumexp(each, 0) - math.log(4), atol=1e-5)


@pytest.mark.parametrize("name, make, ref", [
    ("sgd", lambda: sgd(0.05, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    ("adam", lambda: adam(0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
])
def test_functional_optimizers_equal_torch_optim(spec, name, make, ref):
    params = spec.init(torch.Generator().manual_seed(0))
    leaves = {k: v.clone().requires_grad_() for k, v in L.flatten_names(params).items()}
    torch_opt = ref(list(leaves.values()))
    opt = make()
    state = opt.init(params)
    c, x = torch.randn(32, 1), torch.randn(32, 2)
    for _ in range(4):
        loss = M.nll(spec, L.unflatten_names(leaves), c, x)
        torch_opt.zero_grad()
        loss.backward()
        torch_opt.step()
        params, state = opt.update(grad(lambda p: M.nll(spec, p, c, x))(params), state, params)
    close_trees(params, L.unflatten_names({k: v.detach() for k, v in leaves.items()}), atol=1e-5)


def test_hypernetwork_log_prob_equals_loop():
    spec = MAF(2, 0, transforms=2, hidden_features=[8])
    hyper = MLP(3, M.param_count(spec), [16])
    psi = hyper.init(torch.Generator().manual_seed(0))
    apply = lambda p, c: 0.1 * hyper.apply(p, c)  # noqa: E731
    c, x = torch.randn(10, 3), torch.randn(10, 2)
    lp = M.hypernet_log_prob(spec, apply, psi, c, x)
    loop = torch.stack([spec.apply(M.unravel(spec, apply(psi, c[i]))).log_prob(x[i]) for i in range(10)])
    assert torch.allclose(lp, loop, atol=1e-5)
    assert lp.unique().numel() == 10
    g = grad(lambda p: M.hypernet_log_prob(spec, apply, p, c, x).sum())(psi)
    assert tree_norm(g) > 0
    with pytest.raises(ValueError, match=f"expected a vector of {M.param_count(spec)} parameters, got 5"):
        M.unravel(spec, torch.zeros(5))


def test_per_sample_grads_equal_autograd_loop_and_clipping_bounds_norms():
    spec = NSF(2, 1, transforms=1, hidden_features=[8])
    params = spec.init(torch.Generator().manual_seed(0))
    c, x = torch.randn(6, 1), torch.randn(6, 2)
    grads = M.per_sample_grads(spec, params, c, x)
    for i in range(6):
        leaves = {k: v.clone().requires_grad_() for k, v in L.flatten_names(params).items()}
        spec.apply(L.unflatten_names(leaves), c[i]).log_prob(x[i]).backward()
        for k, v in leaves.items():
            assert torch.allclose(L.flatten_names(grads)[k][i], v.grad, atol=1e-5), k
    norms = torch.stack([tree_norm(g) for g in L.tree_unstack(grads)])
    max_norm = float(norms.median())
    agg = M.clip_and_aggregate(grads, max_norm)
    clipped = [L.tree_scale(g, min(1.0, max_norm / float(n))) for g, n in zip(L.tree_unstack(grads), norms)]
    expected = L.tree_scale(clipped[0], 1 / 6)
    for g in clipped[1:]:
        expected = L.tree_add(expected, L.tree_scale(g, 1 / 6))
    close_trees(agg, expected)
    assert all(float(tree_norm(g)) <= max_norm * (1 + 1e-5) for g in clipped)


def test_mismatched_trees_name_the_first_offending_path(spec):
    a = spec.init()
    b = spec.init()
    b["transform"]["transforms"]["1"]["hyper"]["0"]["weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"leaf 'transform\.transforms\.1\.hyper\.0\.weight' of tree 1 has shape \(3, 3\)"):
        L.tree_stack([a, b])
    del b["transform"]["transforms"]["1"]["hyper"]["0"]["weight"]
    with pytest.raises(ValueError, match=r"transform\.transforms\.1\.hyper\.0\.weight"):
        L.tree_add(a, b)
    head, rest = L.tree_partition(a, "base")
    with pytest.raises(ValueError, match="appears in more than one tree"):
        L.tree_combine(a, rest)


def _gaussian_tasks(k, shots, gen):
    angle = 2 * math.pi * torch.rand(k, 1, 1, generator=gen)
    mu = 2 * torch.cat((angle.cos(), angle.sin()), dim=-1)
    return mu + 0.3 * torch.randn(k, shots, 2, generator=gen), mu + 0.3 * torch.randn(k, shots, 2, generator=gen)


def test_meta_learning_beats_pretraining_on_held_out_tasks():
    torch.manual_seed(0)
    spec = MAF(2, 0, transforms=2, hidden_features=[16, 16])
    steps, lr = 3, 0.1
    gen = torch.Generator().manual_seed(0)
    opt = adam(3e-3)

    def train(objective):
        params = spec.init(torch.Generator().manual_seed(1))
        state = opt.init(params)
        for _ in range(60):
            s, q = _gaussian_tasks(8, 16, gen)
            params, state = opt.update(grad(objective)(params, s, q), state, params)
        return params

    meta = train(lambda p, s, q: M.maml_loss(spec, p, None, s, None, q, inner_steps=steps, inner_lr=lr))
    pre = train(lambda p, s, q: M.nll(spec, p, None, torch.cat((s, q)).reshape(-1, 2)))
    s, q = _gaussian_tasks(32, 16, torch.Generator().manual_seed(99))  # held-out tasks
    after = {name: float(M.maml_loss(spec, p, None, s, None, q, inner_steps=steps, inner_lr=lr))
             for name, p in (("meta", meta), ("pre", pre))}
    assert after["meta"] < after["pre"] - 0.2, after


def test_adam_update_stacked_equals_k_torch_adams_with_their_own_step_counts():
    # K members, member k already k steps in (per-member bias corrections), then 4 stacked steps.
    K, lr = 3, 0.05
    opt = adam(lr, betas=(0.8, 0.99), eps=1e-6)
    gen = torch.Generator().manual_seed(0)
    members = [{"w": torch.randn(4, 3, generator=gen), "b": torch.randn(4, generator=gen),
                "net": {"s": torch.randn((), generator=gen)}} for _ in range(K)]
    leaves = [{n: t.clone().requires_grad_() for n, t in L.flatten_names(p).items()} for p in members]
    torch_opts = [torch.optim.Adam(list(ls.values()), lr=lr, betas=(0.8, 0.99), eps=1e-6) for ls in leaves]
    states = [opt.init(p) for p in members]

    def grads_like(p):
        return tree_map(lambda t: torch.randn(t.shape, generator=gen), p)

    def torch_step(k, g):
        for name, t in leaves[k].items():
            t.grad = L.flatten_names(g)[name].clone()
        torch_opts[k].step()

    for k in range(K):
        for _ in range(k):
            g = grads_like(members[k])
            members[k], states[k] = opt.update(g, states[k], members[k])
            torch_step(k, g)
    stacked, state = L.tree_stack(members), L.tree_stack(states)
    assert state["step"].tolist() == [0.0, 1.0, 2.0]
    for _ in range(4):
        g = L.tree_stack([grads_like(p) for p in members])
        ref_params, ref_state = vmap(opt.update)(g, state, stacked)
        stacked, state = opt.update_stacked(g, state, stacked)
        close_trees(stacked, ref_params, atol=1e-6)
        close_trees(state, ref_state, atol=1e-6)
        for k, gk in enumerate(L.tree_unstack(g)):
            torch_step(k, gk)
        members = L.tree_unstack(stacked)
    for k in range(K):
        close_trees(members[k], L.unflatten_names({n: t.detach() for n, t in leaves[k].items()}), atol=1e-6)
    assert state["step"].tolist() == [4.0, 5.0, 6.0]


def test_ensemble_step_is_pure_and_its_gradient_is_each_members_own():
    # grad of the summed member losses is each member's own gradient: compare with vmap(grad)
    # (the batching rules' path) and check the inputs are left untouched.
    spec = MAF(2, 1, transforms=2, hidden_features=[8])
    opt = sgd(0.1)
    stacked = M.ensemble_init(spec, 3, seed=1)
    before = tree_map(torch.clone, stacked)
    c, x = torch.randn(16, 1), torch.randn(16, 2)
    new, state, losses = M.ensemble_step(spec, opt, stacked, vmap(opt.init)(stacked), c, x)
    close_trees(stacked, before, atol=0.0)
    g = vmap(grad(lambda p: M.nll(spec, p, c, x)))(stacked)
    close_trees(new, tree_map(lambda p, g: p - 0.1 * g, stacked, g), atol=1e-6)
    assert torch.allclose(losses, vmap(lambda p: M.nll(spec, p, c, x))(stacked), atol=1e-6)


def test_adam_update_stacked_in_step_runs_one_fused_pass_and_equals_torch_adam():
    # all members at the same step (the ensemble case): torch.optim.Adam's fused kernel on
    # copies, equal to K torch.optim.Adam (single-tensor) steps, inputs untouched
    K, opt = 4, adam(0.02)
    gen = torch.Generator().manual_seed(1)
    stacked = {"w": torch.randn(K, 3, 2, generator=gen), "b": torch.randn(K, 3, generator=gen)}
    leaves = [{n: t[k].clone().requires_grad_() for n, t in stacked.items()} for k in range(K)]
    torch_opts = [torch.optim.Adam(list(ls.values()), lr=0.02, foreach=False) for ls in leaves]
    state = vmap(opt.init)(stacked)
    names = []

    class Names(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            names.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    for _ in range(3):
        g = {n: torch.randn(t.shape, generator=gen) for n, t in stacked.items()}
        old, before = stacked, tree_map(torch.clone, stacked)
        ref_params, ref_state = vmap(opt.update)(g, state, stacked)
        with Names():
            stacked, state = opt.update_stacked(g, state, stacked)
        close_trees(old, before, atol=0.0)
        close_trees(stacked, ref_params, atol=1e-6)
        close_trees(state, ref_state, atol=1e-6)
        for k in range(K):
            for n, t in leaves[k].items():
                t.grad = g[n][k].clone()
            torch_opts[k].step()
    assert "_fused_adam_" in names and "sqrt" not in names
    for k in range(K):
        close_trees({n: t[k] for n, t in stacked.items()}, {n: t.detach() for n, t in leaves[k].items()}, atol=1e-6)
    # through a transform (grad w.r.t. the gradient), the differentiable multi-tensor path runs
    d = grad(lambda w: opt.update_stacked({"w": w, "b": stacked["b"]}, state, stacked)[0]["w"].sum())(stacked["w"])
    d_ref = grad(lambda w: vmap(opt.update)({"w": w, "b": stacked["b"]}, state, stacked)[0]["w"].sum())(stacked["w"])
    torch.testing.assert_close(d, d_ref, atol=1e-6, rtol=1e-5)
