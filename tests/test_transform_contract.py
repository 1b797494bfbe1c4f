r"""One transform contract: every transform defines ``call_and_ladj`` and
``inverse_and_ladj``; ``__call__``, ``inv``, ``_call``, ``_inverse`` and
``log_abs_det_jacobian`` are derived in the base and agree with them, for every class."""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil

import pytest
import torch
from torch.distributions import Transform
from torch.func import jacrev

import lazydist_functional.transforms as T
from lazydist_functional.pytree import Partial
from lazydist_functional.transforms.base import FunctionalTransform
from lazydist_functional.transforms.conv1x1 import lu_rotation
from lazydist_functional.transforms.grouped import GroupedAutoregressiveTransform
from lazydist_functional.transforms.multiscale import multiscale_shapes

G = torch.Generator().manual_seed(0)


def _randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=G, dtype=torch.float64)


def _classes() -> set[type]:
    mods = [importlib.import_module(m.name) for m in pkgutil.walk_packages(T.__path__, T.__name__ + ".")]
    return {c for m in mods for _, c in inspect.getmembers(m, inspect.isclass)
            if issubclass(c, FunctionalTransform) and c.__module__.startswith(T.__name__)}


def _affine_meta(A: torch.Tensor, x: torch.Tensor) -> Transform:
    return T.DependentTransform(T.MonotonicAffineTransform(x @ A.T, 0.5 * (x @ A.T)), 1)


def _group(A: torch.Tensor, x: torch.Tensor, index: torch.Tensor) -> Transform:
    return T.DependentTransform(T.MonotonicAffineTransform(x @ A[index].T, 0.5 * (x @ A[index].T)), 1)


def _channel_meta(a: torch.Tensor, x_a: torch.Tensor) -> Transform:
    return T.MonotonicAffineTransform(a * x_a, torch.tanh(x_a))


def _multiscale() -> Transform:
    levels = [T.SqueezeTransform(), T.ActNormTransform(_randn(4), 0.3 * _randn(4))]
    return T.MultiScaleTransform(levels, (2, 4, 4), multiscale_shapes(levels, (2, 4, 4)))


STRICT = torch.tril(_randn(3, 3), diagonal=-1)  # strictly autoregressive weights
LOWER = T.DependentTransform(T.MonotonicAffineTransform(_randn(3), _randn(3)), 1)
P, L_RAW, U_RAW, _, SIGN = lu_rotation(2, torch.Generator().manual_seed(1), torch.float64)

# name -> (transform, input sampler, event dim): one instance of every concrete class.
CASES = {
    "Additive": (T.AdditiveTransform(_randn(3)), 0),
    "MonotonicAffine": (T.MonotonicAffineTransform(_randn(3), _randn(3)), 0),
    "MonotonicRQS": (T.MonotonicRQSTransform(_randn(3, 8), _randn(3, 8), _randn(3, 7)), 0),
    "Identity": (T.IdentityTransform(), 0),
    "Cos": (T.CosTransform(), 0),
    "Sin": (T.SinTransform(), 0),
    "CircularShift": (T.CircularShiftTransform(2.0), 0),
    "SignedPower": (T.SignedPowerTransform(_randn(3)), 0),
    "Softclip": (T.SoftclipTransform(3.0), 0),
    "Permutation": (T.PermutationTransform(torch.tensor([2, 0, 1])), 1),
    "Rotation": (T.RotationTransform(_randn(3, 3)), 1),
    "LULinear": (T.LULinearTransform(torch.eye(3, dtype=torch.float64) + 0.2 * _randn(3, 3)), 1),
    "Dependent": (LOWER, 1),
    "Inverse": (T.InverseTransform(T.MonotonicAffineTransform(_randn(3), _randn(3))), 0),
    "Composed": (T.ComposedTransform(LOWER, T.PermutationTransform(torch.tensor([1, 2, 0]))), 1),
    "Autoregressive": (T.AutoregressiveTransform(Partial(_affine_meta, (STRICT,)), passes=3, features=3), 1),
    "Coupling": (T.CouplingTransform(Partial(_affine_meta, (_randn(2, 1),)), torch.tensor([True, False, False]), 2), 1),
    "GroupedAutoregressive": (GroupedAutoregressiveTransform(
        Partial(_affine_meta, (STRICT,)), Partial(_group, (STRICT,)), torch.tensor([0, 1, 2]), (1, 1, 1)), 1),
    "Monotonic": (T.MonotonicTransform(Partial(torch.add, (torch.sinh(torch.tensor(1.0, dtype=torch.float64)),))), 0),
    "Bernstein": (T.BernsteinTransform(_randn(3, 8)), 0),
    "BoundedBernstein": (T.BoundedBernsteinTransform(_randn(3, 9)), 0),
    "Gaussianization": (T.GaussianizationTransform(_randn(3, 4), _randn(3, 4)), 0),
    "SOSPolynomial": (T.SOSPolynomialTransform(_randn(3, 2, 3)), 0),
    "UnconstrainedMonotonic": (T.UnconstrainedMonotonicTransform(Partial(torch.exp, ()), n=16), 0),
    "FreeFormJacobian": (T.FreeFormJacobianTransform(
        Partial(lambda A, t, x: torch.tanh(x @ A.T), (0.5 * _randn(3, 3),)), steps=64), 1),
    "Planar": (T.PlanarTransform(_randn(3), _randn(3), _randn(())), 1),
    "Radial": (T.RadialTransform(_randn(3), _randn(()), _randn(())), 1),
    "Sylvester": (T.SylvesterTransform(torch.linalg.qr(_randn(3, 2)).Q, _randn(2, 2), _randn(2, 2), _randn(2)), 1),
    "BatchNorm": (T.BatchNormTransform(_randn(3), _randn(3), _randn(3), _randn(3).exp()), 1),  # eval mode
    # Image transforms: events (C, H, W) = (2, 4, 4).
    "ActNorm": (T.ActNormTransform(_randn(2), 0.3 * _randn(2)), 3),
    "InvertibleConv1x1": (T.InvertibleConv1x1Transform(P, L_RAW, U_RAW, 0.3 * _randn(2), SIGN), 3),
    "Squeeze": (T.SqueezeTransform(), 3),
    "ChannelCoupling": (T.ChannelCouplingTransform(Partial(_channel_meta, (_randn(1, 4, 4),)), 2, 1), 3),
    "MultiScale": (_multiscale(), 3),
}

#: The classes that override ``_call`` / ``_inverse``, each for a reason: a value-only path
#: that skips work (an ODE's trace; the conditioner pass and forward of the log-determinant;
#: one evaluation of f'), or the structural transforms forwarding their parts' paths.
CHEAP_PATHS = {"ComposedTransform", "CouplingTransform", "DependentTransform", "InverseTransform",
               "FreeFormJacobianTransform", "GroupedAutoregressiveTransform", "MonotonicTransform"}


def _input(name: str) -> torch.Tensor:
    if CASES[name][1] == 3:
        return _randn(5, 2, 4, 4)
    x = _randn(5, 3)
    if name == "Cos":
        return torch.rand(5, 3, generator=G, dtype=torch.float64) * 3 + 0.07
    if name == "Sin":
        return torch.rand(5, 3, generator=G, dtype=torch.float64) * 3 - 1.5
    if name in ("CircularShift", "Softclip"):
        return x.clamp(-1.9, 1.9)
    return x


def test_every_class_has_a_case():
    names = {c.__name__ for c in _classes()} - {"FunctionalTransform"}
    assert names == {type(t).__name__ for t, _ in CASES.values()}


def test_only_the_listed_classes_have_value_only_paths():
    own = {c.__name__ for c in _classes() if {"_call", "_inverse"} & set(vars(c))}
    assert own == CHEAP_PATHS | {"FunctionalTransform"}
    for c in _classes():  # log_abs_det_jacobian and __call__ are derived once
        assert c is FunctionalTransform or not {"log_abs_det_jacobian", "__call__"} & set(vars(c)), c


def test_a_transform_without_the_contract_says_so():
    class Half(FunctionalTransform):
        pass

    with pytest.raises(NotImplementedError, match="Half does not define 'call_and_ladj'"):
        Half()(torch.zeros(2))
    with pytest.raises(NotImplementedError, match="Half does not define 'inverse_and_ladj'"):
        Half().inv(torch.zeros(2))


@pytest.mark.parametrize("name", list(CASES))
def test_derived_methods_agree_with_the_contract(name):
    t, event = CASES[name]
    x = _input(name)
    y, ladj = t.call_and_ladj(x)
    assert torch.equal(t(x), y) and torch.equal(t._call(x), y)
    assert torch.equal(t.log_abs_det_jacobian(x, y), ladj)
    x_back, ladj_inv = t.inverse_and_ladj(y)
    assert torch.equal(t.inv(y), x_back) and torch.equal(t._inverse(y), x_back)
    torch.testing.assert_close(x_back, x, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ladj_inv, -ladj, atol=1e-6, rtol=1e-6)
    # The inverse object swaps the two methods.
    assert torch.equal(t.inv.call_and_ladj(y)[0], x_back)
    assert torch.equal(t.inv.inv(x), y)
    assert ladj.shape == x.shape[: x.dim() - event]


@pytest.mark.parametrize("name", list(CASES))
def test_log_determinant_against_autograd(name):
    t, event = CASES[name]
    x = _input(name)[0]
    J = jacrev(lambda v: t.call_and_ladj(v)[0])(x)
    if event:  # an image event (C, H, W) is flattened into a vector
        J = J.reshape(-1, x.numel())
    expected = torch.linalg.slogdet(J)[1] if event else torch.log(torch.diagonal(J).abs())
    torch.testing.assert_close(t.call_and_ladj(x)[1], expected, atol=1e-5, rtol=1e-5)


def test_torch_attributes_are_kept():
    t = T.MonotonicAffineTransform(torch.zeros(2), torch.zeros(2))
    assert isinstance(t, Transform) and t.bijective and t.sign == 1 and t.inv.sign == 1
    assert t.with_cache(1) is t and t._cache_size == 0
    assert isinstance(t.inv, T.InverseTransform) and t.inv.inv is t
    assert T.CosTransform().inv.domain is T.CosTransform().codomain
    assert math.isclose(T.SoftclipTransform(2.0).codomain.upper_bound, 2.0)
