r"""Glow-style multi-scale image flows: invertibility, log-determinants against ``jacrev``,
data-dependent initialization (pure, and the module's first training batch), ``vmap`` over
stacked parameters, ``torch.compile``, bad input, and the adapter modules."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch.func import functional_call, grad, jacrev, vmap

import lazydist_functional.adapters as A
from lazydist_functional import tree_stack
from lazydist_functional.checks import ContextError, ShapeError
from lazydist_functional.flows import (
    ActNorm,
    ConvCouplingTransform,
    Glow,
    InvertibleConv1x1,
    MultiScaleRealNVP,
)
from lazydist_functional.flows.common import FlowConfigError
from lazydist_functional.pytree import flatten_names, tree_map
from lazydist_functional.transforms import SqueezeTransform

from conftest import assert_close

SHAPE = (2, 4, 4)
CONTEXT = 3
D = 32


def _perturbed(params, seed=0, scale=0.2):
    r"""Parameters moved away from the (identity-like) initialization, so tests see non-trivial maps."""

    g = torch.Generator().manual_seed(seed)
    return tree_map(lambda t: t + scale * torch.randn(t.shape, generator=g, dtype=t.dtype), params)


def _flows(context):
    return {
        "Glow": Glow(SHAPE, context, levels=2, depth=2, hidden_channels=[8]),
        "MultiScaleRealNVP": MultiScaleRealNVP(SHAPE, context, levels=2, depth=2, hidden_channels=[8]),
    }


def _setup(name, context, dtype=torch.float64, seed=0, scale=0.2):
    torch.manual_seed(seed)
    spec = _flows(context)[name]
    params = _perturbed(spec.init(torch.Generator().manual_seed(seed), dtype=dtype), seed, scale)
    c = torch.randn(CONTEXT, dtype=dtype) if context else None
    return spec, params, c


CASES = [(name, ctx) for name in ("Glow", "MultiScaleRealNVP") for ctx in (0, CONTEXT)]


# -- layers: invertibility and log-determinants -------------------------------------------


def _layer_transforms():
    torch.manual_seed(0)
    C = 4
    specs = {
        "ActNorm": ActNorm(C),
        "InvertibleConv1x1": InvertibleConv1x1(C),
        "ConvCoupling": ConvCouplingTransform(C, CONTEXT, hidden_channels=[6]),
        "ConvCouplingSwapOdd": ConvCouplingTransform(C, 0, split=1, swap=True, hidden_channels=[6, 6]),
    }
    out = {}
    for name, spec in specs.items():
        params = _perturbed(spec.init(dtype=torch.float64), 1, 0.3)
        c = torch.randn(CONTEXT, dtype=torch.float64) if spec.context else None
        out[name] = spec.apply(params, c, state=spec.init_state(dtype=torch.float64))
    out["Squeeze"] = SqueezeTransform()
    return out


@pytest.mark.parametrize("name", ["ActNorm", "InvertibleConv1x1", "ConvCoupling", "ConvCouplingSwapOdd", "Squeeze"])
def test_layer_inverse_and_logdet_against_jacrev(name):
    t = _layer_transforms()[name]
    x = torch.randn(4, 2, 2, dtype=torch.float64)
    y, ladj = t.call_and_ladj(x)
    assert_close(t.inv(y), x, atol=1e-10, what="round trip")
    x_back, ladj_inv = t.inv.call_and_ladj(y)
    assert_close(ladj_inv, -ladj, atol=1e-10, what="inverse log-det")
    J = jacrev(t)(x).reshape(16, 16)
    assert_close(ladj, torch.linalg.slogdet(J)[1], atol=1e-9, what="log-det vs jacrev")
    batch = torch.randn(5, 4, 2, 2, dtype=torch.float64)  # batched inputs: one log-det per image
    assert t.call_and_ladj(batch)[1].shape == (5,)


# -- flows ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "context"), CASES)
def test_flow_invertible_and_logdet_against_jacrev(name, context):
    spec, params, c = _setup(name, context)
    t = spec.apply(params, c).transform
    x = torch.randn(*SHAPE, dtype=torch.float64)
    z, ladj = t.call_and_ladj(x)
    assert z.shape == (D,)
    assert_close(t.inv(z), x, atol=1e-10, what="round trip")
    J = jacrev(t)(x).reshape(D, D)
    assert_close(ladj, torch.linalg.slogdet(J)[1], atol=1e-9, what="log-det vs jacrev")


@pytest.mark.parametrize(("name", "context"), CASES)
def test_log_prob_is_base_terms_plus_logdet_and_sampling_agrees(name, context):
    spec, params, c = _setup(name, context, scale=0.05)  # moderate scales: samples stay O(1)
    d = spec.apply(params, c)
    assert d.event_shape == SHAPE
    x = torch.randn(7, *SHAPE, dtype=torch.float64)
    z, ladj = d.transform.call_and_ladj(x)
    normal = torch.distributions.Normal(0.0, 1.0)
    assert_close(d.log_prob(x), normal.log_prob(z).sum(-1) + ladj, atol=1e-10)
    s, lp = d.rsample_and_log_prob((5,))
    assert s.shape == (5, *SHAPE)
    assert_close(lp, d.log_prob(s), atol=1e-8, what="rsample_and_log_prob vs log_prob")


def test_multiscale_output_is_factored_out_halves():
    spec, params, _ = _setup("MultiScaleRealNVP", 0)
    t = spec.apply(params).transform
    # level 1: (8, 2, 2), 4 channels leave (16 entries); level 2: (16, 1, 1), all 16 leave
    assert t.shapes == ((8, 2, 2), (16, 1, 1)) and t.sizes == (16, 16)
    x = torch.randn(*SHAPE, dtype=torch.float64)
    h1 = t.levels[0](x)
    assert_close(t(x)[:16], h1[4:].flatten(), what="the first level's leaving half")


def test_conditional_flow_depends_on_context_and_broadcasts():
    spec, params, c = _setup("Glow", CONTEXT)
    x = torch.randn(*SHAPE, dtype=torch.float64)
    cs = torch.randn(4, CONTEXT, dtype=torch.float64)
    lp = spec.apply(params, cs).log_prob(x)  # one image, a batch of contexts
    assert lp.shape == (4,)
    for i in range(4):
        assert_close(lp[i], spec.apply(params, cs[i]).log_prob(x), atol=1e-10)
    assert (lp[0] - lp[1]).abs() > 1e-6


# -- data-dependent initialization -------------------------------------------------------


def test_data_init_is_pure_and_normalizes_the_first_actnorm():
    spec = Glow((1, 8, 8), levels=2, depth=2, hidden_channels=[8])
    params = spec.init(torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in flatten_names(params).items()}
    x = 3 + 2 * torch.rand(64, 1, 8, 8)
    new = spec.data_init(params, x)
    after = flatten_names(params)
    assert all(torch.equal(before[k], after[k]) for k in before), "params were mutated"
    changed = {k for k, v in flatten_names(new).items() if not torch.equal(v, before[k])}
    # each level: squeeze (0), then steps of (ActNorm, 1x1 conv, coupling): ActNorms at 1 and 4
    actnorms = {f"transform.levels.{i}.transforms.{j}.{n}" for i in (0, 1) for j in (1, 4) for n in ("shift", "log_scale")}
    assert changed == actnorms and len(actnorms) == 8  # 2 levels x 2 steps x (shift, log_scale)
    level0 = spec.apply(new).transform.levels[0]
    h = level0.transforms[1](level0.transforms[0](x))  # squeeze, then the first ActNorm
    assert_close(h.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-4, what="mean")
    assert_close(h.std(dim=(0, 2, 3), unbiased=False), torch.ones(4), atol=1e-3, what="std")
    # the second step's ActNorm sees the first step's output
    h = level0.transforms[4](level0.transforms[3](level0.transforms[2](h)))
    assert_close(h.std(dim=(0, 2, 3), unbiased=False), torch.ones(4), atol=1e-3, what="std, step 2")


def test_data_init_under_vmap_gives_each_member_its_statistics():
    spec = Glow((1, 4, 4), levels=2, depth=1, hidden_channels=[4])
    P = tree_stack([_perturbed(spec.init(torch.Generator().manual_seed(i)), i) for i in range(3)])
    x = torch.rand(32, 1, 4, 4)
    stacked = vmap(lambda p: spec.data_init(p, x))(P)
    for i in range(3):
        one = spec.data_init(tree_map(lambda t: t[i], P), x)
        for k, v in flatten_names(one).items():
            assert_close(flatten_names(stacked)[k][i], v, atol=1e-5, what=k)


# -- torch.func ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "context"), CASES)
def test_vmap_over_stacked_params_and_leading_param_dims(name, context):
    spec, _, c = _setup(name, context, dtype=torch.float32)
    P = tree_stack([_perturbed(spec.init(torch.Generator().manual_seed(i)), i) for i in range(3)])
    x = torch.randn(5, *SHAPE)
    c = None if c is None else c.float()
    lp = vmap(lambda p: spec.apply(p, c).log_prob(x))(P)
    loop = torch.stack([spec.apply(tree_map(lambda t: t[i], P), c).log_prob(x) for i in range(3)])
    assert_close(lp, loop, atol=1e-4, what="vmap over params")
    # stacked parameters without vmap: leading dims broadcast against x's batch (5, 3)
    direct = spec.apply(P, c).log_prob(x[:, None].expand(5, 3, *SHAPE))
    assert_close(direct, loop.T, atol=1e-4, what="leading parameter dims")
    samples = vmap(lambda p: spec.apply(p, c).sample((2,)), randomness="different")(P)
    assert samples.shape == (3, 2, *SHAPE)


def test_vmap_over_contexts_and_grad():
    spec, params, _ = _setup("Glow", CONTEXT, dtype=torch.float32)
    cs, xs = torch.randn(6, CONTEXT), torch.randn(6, *SHAPE)
    per = vmap(lambda x, c: spec.apply(params, c).log_prob(x))(xs, cs)
    assert_close(per, spec.apply(params, cs).log_prob(xs), atol=1e-4)
    g = flatten_names(grad(lambda p: -spec.apply(p, cs).log_prob(xs).mean())(params))
    leaves = {k: v.clone().requires_grad_() for k, v in flatten_names(params).items()}
    loss = -spec.apply(leaves, cs).log_prob(xs).mean()
    for (k, v), ref in zip(leaves.items(), torch.autograd.grad(loss, list(leaves.values()))):
        assert_close(g[k], ref, atol=1e-5, what=f"torch.func.grad vs autograd: {k}")
    assert any(v.abs().sum() > 0 for k, v in g.items() if "hyper" in k)


@pytest.mark.slow
def test_compile_aot_eager_matches_eager():
    torch._dynamo.reset()
    spec = Glow(SHAPE, CONTEXT, levels=2, depth=1, hidden_channels=[8])
    params = _perturbed(spec.init(torch.Generator().manual_seed(0)), 0)
    cs, xs = torch.randn(4, CONTEXT), torch.randn(4, *SHAPE)

    def loss(p, x, c):
        return -spec.apply(p, c).log_prob(x).mean()

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    assert_close(compiled(params, xs, cs), loss(params, xs, cs), atol=1e-5)
    step = torch.compile(grad(loss), backend="aot_eager", fullgraph=True)
    for k, v in flatten_names(step(params, xs, cs)).items():
        assert_close(v, flatten_names(grad(loss)(params, xs, cs))[k], atol=1e-4, what=k)
    torch._dynamo.reset()


# -- bad input -----------------------------------------------------------------------------


def test_wrong_image_shape_is_a_clear_error():
    spec, params, _ = _setup("Glow", 0, dtype=torch.float32)
    d = spec.apply(params)
    with pytest.raises(ShapeError, match=r"should have shape \(\*, 2, 4, 4\).*got \(5, 2, 4, 3\)"):
        d.log_prob(torch.randn(5, 2, 4, 3))
    with pytest.raises(ShapeError, match=r"\(\*, 2, 4, 4\).*got \(32,\)"):
        d.transform(torch.randn(32))
    with pytest.raises(ShapeError, match=r"\(\*, 32\).*got \(5, 31\)"):
        d.transform.inv(torch.randn(5, 31))
    with pytest.raises(ShapeError, match=r"data given to Glow.data_init should have shape \(\*, 2, 4, 4\)"):
        spec.data_init(params, torch.randn(8, 1, 4, 4))


def test_wrong_context_and_configuration_are_clear_errors():
    spec, params, _ = _setup("Glow", CONTEXT, dtype=torch.float32)
    with pytest.raises(ContextError, match=r"expected a context of shape \(\*, 3\)"):
        spec.apply(params, torch.randn(2))
    with pytest.raises(FlowConfigError, match=r"divisible by 8, got shape \(1, 12, 12\)"):
        Glow((1, 12, 12), levels=3)
    with pytest.raises(ShapeError, match=r"input of InvertibleConv1x1Transform should be an image of shape \(\*, 4, H, W\)"):
        InvertibleConv1x1(4).apply(InvertibleConv1x1(4).init())(torch.randn(3, 2, 2))


# -- adapter -------------------------------------------------------------------------------


def test_module_initializes_on_the_first_training_batch_only():
    torch.manual_seed(0)
    flow = A.flows.Glow((1, 8, 8), levels=2, depth=1, hidden_channels=[8])
    assert isinstance(flow.spec, Glow) and isinstance(flow, A.flows.Flow)
    params, state = flow.trees()
    x = 3 + torch.rand(32, 1, 8, 8)
    expected = flatten_names(flow.spec.data_init(params, x, state=state))
    flow.eval()
    flow().log_prob(x)  # eval mode: no initialization
    assert torch.equal(dict(flow.named_parameters())[next(k for k in expected if k.endswith("shift"))],
                       flatten_names(params)[next(k for k in expected if k.endswith("shift"))])
    flow.train()
    lp = flow().log_prob(x)
    lp.mean().backward()  # gradients reach the module's parameters
    for k, p in flow.named_parameters():
        assert_close(p.detach(), expected[k], atol=1e-6, what=k)
    assert flow.transform.levels[0].transforms[1].shift.grad is not None
    flow().log_prob(x + 1)  # initialized once
    for k, p in flow.named_parameters():
        assert_close(p.detach(), expected[k], atol=1e-6, what=k)
    # a loaded state_dict counts as initialized
    other = A.flows.Glow((1, 8, 8), levels=2, depth=1, hidden_channels=[8])
    other.load_state_dict(flow.state_dict())
    before = {k: v.clone() for k, v in other.state_dict().items()}
    other().log_prob(x * 2)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())


def test_module_functional_call_equals_spec_apply():
    torch.manual_seed(0)
    flow = A.flows.MultiScaleRealNVP(SHAPE, CONTEXT, levels=2, depth=2, hidden_channels=[8]).eval()
    params = _perturbed(dict(flow.named_parameters()), 3)
    c, x = torch.randn(4, CONTEXT), torch.randn(4, *SHAPE)
    got = functional_call(flow, params, (c,)).log_prob(x)
    assert_close(got, flow.spec.apply(params, c).log_prob(x), atol=1e-5)
    assert flow(c).sample().shape == (4, *SHAPE)


def test_uninitialized_module_in_training_mode_still_samples_and_exposes_the_flow():
    flow = A.flows.Glow((1, 4, 4), levels=2, depth=1, hidden_channels=[4])
    d = flow()
    assert d.sample((3,)).shape == (3, 1, 4, 4) and d.event_shape == (1, 4, 4)
    assert d.transform.forward_shape((1, 4, 4)) == (16,)
    flow.initialize(torch.rand(8, 1, 4, 4))  # explicit initialization: plain flows from now on
    assert type(flow()).__name__ == "NormalizingFlow"
