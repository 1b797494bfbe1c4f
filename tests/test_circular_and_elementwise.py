r"""NCSF and the simple transforms: Zuko parity, Jacobians, invertibility, torch.func."""

from __future__ import annotations

import math

import pytest
import torch
import zuko
from torch.func import functional_call, jacrev, vmap

import lazydist_functional as L
import lazydist_functional.adapters as Z
import lazydist_functional.transforms as T

ELEMENTWISE = [
    ("IdentityTransform", (), lambda n: torch.randn(n)),
    ("CosTransform", (), lambda n: torch.rand(n) * 3.0 + 0.07),
    ("SinTransform", (), lambda n: (torch.rand(n) - 0.5) * 3.0),
    ("SoftclipTransform", (2.0,), lambda n: 3 * torch.randn(n)),
    ("CircularShiftTransform", (math.pi,), lambda n: (torch.rand(n) * 2 - 1) * math.pi),
]


@pytest.mark.parametrize("name, args, draw", ELEMENTWISE, ids=[e[0] for e in ELEMENTWISE])
def test_elementwise_parity_with_zuko_and_jacobian(name, args, draw):
    ours, ref = getattr(T, name)(*args), getattr(zuko.transforms, name)(*args)
    x = draw(64).double()
    y, ladj = ours.call_and_ladj(x)
    assert torch.allclose(y, ref(x), atol=1e-6)
    assert torch.allclose(ours.inv(y), ref.inv(y), atol=1e-6)
    assert torch.allclose(ladj, ref.log_abs_det_jacobian(x, y), atol=1e-6)
    if name != "CircularShiftTransform":  # piecewise: derivative 1 except at the wrap point
        assert torch.allclose(ours.inv(y), x, atol=1e-6)
        d = vmap(jacrev(ours))(x)
        assert torch.allclose(ladj, d.abs().log(), atol=1e-6)


def test_signed_power_parity_jacobian_and_vmap_over_params():
    alpha, x = torch.randn(4, 3).double(), torch.randn(4, 3).double()
    ours, ref = T.SignedPowerTransform(alpha), zuko.transforms.SignedPowerTransform(alpha)
    y, ladj = ours.call_and_ladj(x)
    assert torch.allclose(y, ref(x)) and torch.allclose(ladj, ref.log_abs_det_jacobian(x, y))
    assert torch.allclose(ours.inv(y), x, atol=1e-8)
    # vmap over the parameter: each row its own exponent
    yv = vmap(lambda a, xi: T.SignedPowerTransform(a)(xi))(alpha, x)
    assert torch.allclose(yv, y)
    d = vmap(vmap(jacrev(lambda a, xi: T.SignedPowerTransform(a)(xi), argnums=1)))(alpha, x)
    assert torch.allclose(ladj, d.abs().log())


def test_lu_linear_parity_slogdet_and_vmap_over_params():
    LU = (torch.eye(3) + 0.3 * torch.randn(5, 3, 3)).double()
    x = torch.randn(5, 3).double()
    ours, ref = T.LULinearTransform(LU), zuko.transforms.LULinearTransform(LU)
    y, ladj = ours.call_and_ladj(x)
    assert torch.allclose(y, ref(x)) and torch.allclose(ladj, ref.log_abs_det_jacobian(x, y))
    assert torch.allclose(ours.inv(y), x, atol=1e-8)
    J = vmap(lambda lu, xi: jacrev(lambda v: T.LULinearTransform(lu)(v))(xi))(LU, x)
    assert torch.allclose(ladj, torch.linalg.slogdet(J).logabsdet)
    assert torch.allclose(vmap(lambda lu, xi: T.LULinearTransform(lu)(xi))(LU, x), y)


def _torus(n: int, d: int = 3) -> torch.Tensor:
    return (torch.rand(n, d) * 2 - 1) * (math.pi - 1e-3)


@pytest.mark.parametrize("context", [0, 2])
def test_ncsf_zuko_checkpoint_parity(context):
    ref = zuko.flows.NCSF(3, context, hidden_features=[16, 16])
    ours = Z.flows.NCSF(3, context, hidden_features=[16, 16])
    assert sorted(ref.state_dict()) == sorted(ours.state_dict())
    ours.load_state_dict(ref.state_dict())
    c = torch.randn(16, context) if context else None
    x = _torus(16)
    assert torch.allclose(ours(c).log_prob(x), ref(c).log_prob(x), atol=1e-5)
    z = ref(c).transform(x)
    assert torch.allclose(ours(c).transform(x), z, atol=1e-5)
    assert torch.allclose(ours(c).transform.inv(z), ref(c).transform.inv(z), atol=1e-4)
    assert torch.allclose(Z.from_zuko(ref)(c).log_prob(x), ref(c).log_prob(x), atol=1e-5)


def test_ncsf_torch_func_matrix():
    spec = L.flows.NCSF(3, 2, hidden_features=[16])
    P = L.init_stacked(spec, 4)
    C, X = torch.randn(4, 2), _torus(4)
    lp = vmap(lambda p, c, x: spec.apply(p, c).log_prob(x))(P, C, X)
    loop = torch.stack([spec.apply(p, C[i]).log_prob(X[i]) for i, p in enumerate(L.tree_unstack(P))])
    assert torch.allclose(lp, loop, atol=1e-5) and lp.unique().numel() == 4
    s = vmap(lambda p, c: spec.apply(p, c).rsample((8,)), randomness="different")(P, C)
    assert s.shape == (4, 8, 3) and bool((s.abs() <= math.pi + 1e-4).all())
    assert not torch.allclose(s[0], s[1])
    # round trip on the torus
    d = spec.apply(L.tree_unstack(P)[0], C[0])
    assert (d.transform.inv(d.transform(X)) - X).abs().max() < 1e-4
    # functional_call honours the given parameters
    module = Z.flows.NCSF(3, 2, hidden_features=[16])
    other = {k: v.detach() + 0.05 for k, v in module.named_parameters()}
    tree = L.unflatten_names(other)
    got = functional_call(module, other, (C,)).log_prob(X)
    assert torch.allclose(got, spec.apply(tree, C).log_prob(X), atol=1e-5)
    assert not torch.allclose(got, module(C).log_prob(X))
