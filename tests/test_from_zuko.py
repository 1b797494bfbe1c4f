r"""``from_zuko`` on random Zuko 1.6 configurations of every flow: the converted module is
the adapter's flow of the same class, holds Zuko's state and gives Zuko's log-densities.

The sampler draws, per flow, only options Zuko 1.6 accepts (read from
``zuko/flows/*.py``): features 1..4, context 0..3, transforms 1..3, hidden sizes (none
included), activations with arguments, ``residual`` (masked networks),
``normalize``/``bias`` (plain networks), ``randperm``/``randmask``, ``passes``,
``adjacency``, spline ``bins``/``slope``, polynomial ``degree``/``polynomials``,
NAF/UNAF ``signal``/``network``, GF ``components``, CNF ``freqs``/tolerances, GMM
``components``/``covariance_type``/``tied``/``epsilon``. Weights are perturbed away from
Zuko's initialization before converting, so a silently ignored tensor cannot pass.
"""

from __future__ import annotations

import math
import random
from functools import partial

import pytest
import torch
import torch.nn as nn
import zuko
from zuko.flows import (
    Flow,
    GeneralCouplingTransform,
    MaskedAutoregressiveTransform,
    UnconditionalDistribution,
    UnconditionalTransform,
)

import lazydist_functional.adapters as A
from lazydist_functional.adapters.functional import ZukoConversionError
from lazydist_functional.adapters.zuko_named import zuko_spec

ACTIVATIONS = [None, partial(nn.LeakyReLU, 0.2), nn.ELU, nn.SiLU, partial(nn.ELU, alpha=0.5), nn.Tanh]
MASKED = ("MAF", "NSF", "NCSF", "SOSPF", "BPF", "NAF", "UNAF")
CASES = {name: 6 for name in ("MAF", "NSF", "NCSF", "RealNVP", "NICE", "SOSPF", "BPF", "GF", "GMM")}
CASES |= {"NAF": 4, "UNAF": 4, "CNF": 3}


def _hidden(rng: random.Random) -> list[int]:
    return [rng.choice([3, 5, 8]) for _ in range(rng.choice([0, 1, 1, 2]))]


def _adjacency(rng: random.Random, features: int, context: int) -> torch.Tensor:
    rank = list(range(features))
    rng.shuffle(rank)
    A = torch.eye(features, dtype=torch.bool)
    for i in range(features):
        for j in range(features):
            A[i, j] |= rank[j] < rank[i] and rng.random() < 0.7
    i, j = max(((i, j) for i in range(features) for j in range(features) if rank[j] < rank[i]), key=lambda p: p[0])
    A[i, j] = True  # at least one dependency (Zuko refuses a null Jacobian)
    if context and rng.random() < 0.5:
        g = torch.Generator().manual_seed(rng.randrange(99))
        A = torch.cat([A, torch.rand(features, context, generator=g) < 0.5], 1)
    return A


def _config(name: str, seed: int) -> tuple[int, int, dict, torch.dtype]:
    rng = random.Random(f"{name}-{seed}")
    features, context = rng.randint(1, 4), rng.randint(0, 3)
    kw: dict = {"hidden_features": _hidden(rng)}
    activation = rng.choice(ACTIVATIONS)
    if activation is not None:
        kw["activation"] = activation
    if name != "CNF" and name != "GMM":
        kw["transforms"] = rng.randint(1, 3)
    if name in MASKED:
        if features > 1:
            kw["randperm"] = rng.random() < 0.5
            if rng.random() < 0.4:
                kw["passes"] = rng.randint(1, features)
            if kw["hidden_features"] and rng.random() < 0.5:  # Zuko's residual needs a hidden layer
                kw["residual"] = True
            if name == "MAF" and rng.random() < 0.4:
                kw["adjacency"] = _adjacency(rng, features, context)
        if name == "MAF" and rng.random() < 0.3:
            spline = partial(zuko.transforms.MonotonicRQSTransform, slope=1e-2)
            kw |= {"univariate": spline, "shapes": [(3,), (3,), (2,)]}
    else:
        if rng.random() < 0.5:
            kw["normalize"] = True
        if rng.random() < 0.3:
            kw["bias"] = False
    if name in ("NSF", "NCSF"):
        kw |= {"bins": rng.randint(2, 6), "slope": rng.choice([1e-3, 1e-2])}
    elif name == "SOSPF":
        kw |= {"degree": rng.randint(1, 4), "polynomials": rng.randint(1, 3), "slope": rng.choice([1e-3, 1e-2])}
    elif name == "BPF":
        kw["degree"] = rng.randint(2, 8)
    elif name in ("NAF", "UNAF"):
        kw |= {"signal": rng.randint(2, 4), "network": {"hidden_features": [rng.choice([3, 4])]}}
        if name == "UNAF" and rng.random() < 0.5:
            kw["network"]["activation"] = rng.choice([nn.SiLU, partial(nn.ELU, alpha=0.5)])
    elif name in ("RealNVP", "NICE"):
        kw["randmask"] = rng.random() < 0.5
        if name == "NICE" and rng.random() < 0.5:
            kw |= {"univariate": zuko.transforms.AdditiveTransform, "shapes": [()]}
    elif name == "GF":
        kw["components"] = rng.randint(1, 4)
    elif name == "CNF":
        kw |= {"freqs": rng.randint(1, 3), "hidden_features": [rng.choice([4, 8])], "atol": 1e-5, "rtol": 1e-4}
    elif name == "GMM":
        kw |= {
            "components": rng.randint(1, 3),
            "covariance_type": rng.choice(["full", "diagonal", "spherical"]),
            "tied": rng.random() < 0.5,
            "epsilon": rng.choice([1e-6, 1e-3]),
        }
    dtype = torch.float64 if seed % 2 else torch.float32
    return features, context, kw, dtype


def _perturb(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _inputs(name: str, n: int, features: int, context: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(7)
    c = torch.randn(n, context, generator=g, dtype=dtype) if context else None
    if name == "NCSF":
        return c, (2 * torch.rand(n, features, generator=g, dtype=dtype) - 1) * (math.pi - 1e-3)
    return c, torch.randn(n, features, generator=g, dtype=dtype)


def _check(z: nn.Module, name: str, features: int, context: int, dtype: torch.dtype, cls: type) -> nn.Module:
    rng_before = torch.get_rng_state()
    ours = A.from_zuko(z)
    assert torch.equal(torch.get_rng_state(), rng_before)  # no draw from the global generator
    assert type(ours) is cls
    zs, os = z.state_dict(), ours.state_dict()
    assert sorted(zs) == sorted(os)
    assert all(torch.equal(zs[k], os[k]) and zs[k].dtype == os[k].dtype for k in zs)
    c, x = _inputs(name, 6, features, context, dtype)
    with torch.no_grad():
        expected, got = z(c).log_prob(x), ours(c).log_prob(x)
    atol = 1e-4 if dtype == torch.float32 else 1e-8
    assert got.dtype == dtype and torch.isfinite(expected).all()
    torch.testing.assert_close(got, expected, atol=atol, rtol=1e-5 if dtype == torch.float32 else 1e-8)
    return ours


@pytest.mark.parametrize(("name", "seed"), [(n, s) for n, k in CASES.items() for s in range(k)])
def test_random_configuration_converts_exactly(name, seed):
    features, context, kw, dtype = _config(name, seed)
    torch.manual_seed(seed)
    z = getattr(zuko.flows, name)(features, context, **kw).to(dtype)
    _perturb(z, seed)
    _check(z, name, features, context, dtype, getattr(A.flows, name))


@pytest.mark.parametrize("context", [0, 2])
@pytest.mark.parametrize("name", list(CASES))
def test_one_feature_flows(name, context):
    r"""One feature: Zuko's masked and coupling transforms become element-wise ones."""

    torch.manual_seed(3)
    small = {"NAF": {"signal": 2, "network": {"hidden_features": [3]}}, "UNAF": {"signal": 2},
             "CNF": {"atol": 1e-5, "rtol": 1e-4}}.get(name, {})
    z = getattr(zuko.flows, name)(1, context, hidden_features=[4], **small)
    _perturb(z, 3)
    _check(z, name, 1, context, torch.float32, getattr(A.flows, name))


def test_activation_arguments_are_kept():
    r"""``partial(nn.LeakyReLU, 0.2)`` was once read as ``nn.LeakyReLU()``: a wrong log_prob."""

    torch.manual_seed(0)
    z = zuko.flows.NSF(3, 2, bins=4, hidden_features=[8], activation=partial(nn.LeakyReLU, 0.2))
    _perturb(z, 0)
    ours = _check(z, "NSF", 3, 2, torch.float32, A.flows.NSF)
    act = zuko_spec(z).transform.transforms[0].hyper.act
    assert isinstance(act, nn.LeakyReLU) and act.negative_slope == 0.2
    assert ours.training and not A.from_zuko(z.eval()).training


def test_generic_composition_converts_node_by_node():
    torch.manual_seed(1)
    T, D = zuko.transforms, zuko.distributions
    f, ctx = 3, 2
    adjacency = torch.tensor([[1, 0, 0, 1, 0], [1, 1, 0, 0, 1], [0, 1, 1, 1, 1]], dtype=torch.bool)
    mnn = zuko.flows.neural.MNN(signal=3, stack=f, hidden_features=[4])
    spline = partial(T.MonotonicRQSTransform, slope=0.01)
    z = Flow([
        MaskedAutoregressiveTransform(f, ctx, passes=2, hidden_features=[8], residual=True),
        UnconditionalTransform(T.RotationTransform, torch.randn(f, f)),
        MaskedAutoregressiveTransform(f, ctx, adjacency=adjacency, univariate=spline, shapes=[(5,), (5,), (4,)],
                                      hidden_features=[8, 8]),
        UnconditionalTransform(T.PermutationTransform, torch.randperm(f), buffer=True),
        GeneralCouplingTransform(f, ctx, mask=torch.tensor([True, False, True]), hidden_features=[8], normalize=True,
                                 activation=nn.SiLU),
        UnconditionalTransform(T.CircularShiftTransform, bound=5.0),
        zuko.flows.ElementWiseTransform(f, ctx, hidden_features=[4]),
        MaskedAutoregressiveTransform(f, ctx, hidden_features=[8]).inv,
        UnconditionalTransform(T.SoftclipTransform, bound=11.0),
        MaskedAutoregressiveTransform(f, ctx, univariate=mnn, shapes=[(3,)], hidden_features=[8]),
    ], UnconditionalDistribution(D.DiagNormal, torch.zeros(f), torch.ones(f)))
    _perturb(z, 1)
    ours = _check(z, "Flow", f, ctx, torch.float32, A.flows.Flow)
    assert all(p.requires_grad for p in ours.parameters())
    # a GMM base, an FFJ transform, a box base
    z = Flow(zuko.flows.FFJTransform(f, ctx, hidden_features=[4], freqs=2),
             zuko.flows.GMM(f, ctx, components=2, hidden_features=[4]))
    _check(z, "Flow", f, ctx, torch.float32, A.flows.Flow)
    z = Flow([MaskedAutoregressiveTransform(f)], UnconditionalDistribution(D.BoxUniform, -4 * torch.ones(f),
                                                                            4 * torch.ones(f), buffer=True))
    _check(z, "Flow", f, 0, torch.float32, A.flows.Flow)


def test_bare_lazy_transform_and_distribution():
    torch.manual_seed(4)
    t = MaskedAutoregressiveTransform(3, 2, hidden_features=[8], residual=True)
    _perturb(t, 4)
    ours = A.from_zuko(t)
    assert type(ours) is A.flows.MaskedAutoregressiveTransform
    c, x = _inputs("MAF", 5, 3, 2, torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(ours(c)(x), t(c)(x))
        torch.testing.assert_close(ours(c).log_abs_det_jacobian(x, None), t(c).log_abs_det_jacobian(x, None))
    u = UnconditionalDistribution(zuko.distributions.BoxUniform, -torch.ones(3), torch.ones(3), buffer=True)
    ours = A.from_zuko(u)
    assert type(ours) is A.flows.UnconditionalDistribution
    torch.testing.assert_close(ours().log_prob(x.clamp(-0.9, 0.9)), u().log_prob(x.clamp(-0.9, 0.9)))


def test_edited_named_flow_falls_back_to_generic_flow():
    torch.manual_seed(2)
    z = zuko.flows.NSF(3, 2, hidden_features=[8])
    z.transform.transforms.insert(1, UnconditionalTransform(zuko.transforms.RotationTransform, torch.randn(3, 3)))
    _check(z, "NSF", 3, 2, torch.float32, A.flows.Flow)
    z = zuko.flows.MAF(3, 2, hidden_features=[8])
    z.transform.transforms[1] = MaskedAutoregressiveTransform(3, 2, hidden_features=[16])
    _check(z, "MAF", 3, 2, torch.float32, A.flows.Flow)
    z = zuko.flows.MAF(3, 2, hidden_features=[8])
    z.transform = z.transform.transforms[0]  # one transform, not composed
    _check(z, "MAF", 3, 2, torch.float32, A.flows.Flow)
    z = zuko.flows.MAF(3, 0, hidden_features=[8])
    # a trainable base (parameters, not buffers): not MAF's
    z.base = UnconditionalDistribution(zuko.distributions.DiagNormal, loc=torch.zeros(3), scale=torch.ones(3))
    ours = _check(z, "MAF", 3, 0, torch.float32, A.flows.Flow)
    assert {n for n, _ in ours.named_parameters()} >= {"base.loc", "base.scale"}


def test_trainable_flags_are_copied():
    z = zuko.flows.MAF(2, 1, hidden_features=[4])
    z.transform.transforms[0].hyper[0].weight.requires_grad_(False)
    ours = A.from_zuko(z)
    flags = {n: p.requires_grad for n, p in ours.named_parameters()}
    assert flags == {n: p.requires_grad for n, p in z.named_parameters()} and not all(flags.values())


def test_cnf_options_are_read():
    z = zuko.flows.CNF(2, 1, freqs=2, atol=1e-4, rtol=1e-3, exact=False, hidden_features=[4], activation=nn.SiLU)
    t = zuko_spec(z).transform
    assert (t.freqs, t.atol, t.rtol, t.exact, type(t.ode.act)) == (2, 1e-4, 1e-3, False, nn.SiLU)


class _OwnForward(zuko.flows.MAF):
    def forward(self, c=None):
        return super().forward(c)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: zuko.flows.MAF(3, 1, hidden_features=[4], activation=nn.PReLU), "PReLU"),
        (lambda: zuko.flows.UNAF(2, 1, signal=2, network={"normalize": True}), "normalize"),
        (lambda: _OwnForward(3), "forward"),
        (lambda: nn.Linear(2, 2), "not a Zuko"),
        (lambda: Flow([MaskedAutoregressiveTransform(2)], zuko.flows.neural.MNN()), "MNN"),
    ],
    ids=["parametric-activation", "umnn-normalize", "own-forward", "not-zuko", "unsupported-node"],
)
def test_unconvertible_configurations_raise_naming_what(make, match):
    with pytest.raises(ZukoConversionError, match=match):
        A.from_zuko(make())
