r"""A user's subclass that overrides one of Zuko's computing methods (``meta`` of the
autoregressive and coupling transforms, ``f`` of ``FFJTransform`` and ``MNN``, ``g`` of
``UMNN``) changes what the module computes, as in Zuko: checked against Zuko 1.6 with the
same weights (values, gradients, inverses), and such a module has no pure spec."""

import pytest
import torch
import zuko
from torch.func import functional_call

import lazydist_functional.adapters as A
from lazydist_functional.adapters.module import NoSpecError, custom_hooks


def build(z, case):
    shift = z.transforms.MonotonicAffineTransform(torch.tensor(0.5), torch.tensor(0.3))

    class MAT(z.flows.MaskedAutoregressiveTransform):
        def meta(self, c, x):
            return z.transforms.ComposedTransform(super().meta(c, x), shift)

    class GCT(z.flows.GeneralCouplingTransform):
        def meta(self, c, x):
            return z.transforms.ComposedTransform(super().meta(c, x), shift)

    class FFJ(z.flows.continuous.FFJTransform):
        def f(self, t, x, c=None):
            return 0.5 * super().f(t, x, c)

    class Doubled(z.flows.neural.MNN):
        def f(self, signal, x):
            return 2 * super().f(signal, x)

    class Halved(z.flows.neural.UMNN):
        def g(self, signal, x):
            return 0.5 * super().g(signal, x)

    return {
        "MAT.meta": lambda: MAT(3, 2, hidden_features=[16]),
        "GCT.meta": lambda: GCT(3, 2, hidden_features=[16]),
        "FFJ.f": lambda: FFJ(3, 2, hidden_features=[16]),
        "MNN.f": lambda: z.flows.MaskedAutoregressiveTransform(
            3, 2, univariate=Doubled(signal=4, stack=3, hidden_features=[8]), shapes=[(4,)], hidden_features=[16]),
        "UMNN.g": lambda: z.flows.MaskedAutoregressiveTransform(
            3, 2, univariate=Halved(signal=4, stack=3, hidden_features=[8]), shapes=[(4,), ()], hidden_features=[16]),
    }[case]()


class Applied(torch.nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, c, x):
        return self.module(c)(x)


CASES = ["MAT.meta", "GCT.meta", "FFJ.f", "MNN.f", "UMNN.g"]


@pytest.mark.parametrize("case", CASES)
def test_override_computes_as_zuko(case):
    torch.manual_seed(0)
    ours = build(A, case)
    torch.manual_seed(0)
    theirs = build(zuko, case)
    theirs.load_state_dict(ours.state_dict())
    c, x = torch.randn(4, 2), torch.randn(4, 3)

    y, ladj = ours(c).call_and_ladj(x)
    y_z = theirs(c)(x)
    ladj_z = theirs(c).log_abs_det_jacobian(x, y_z)
    assert torch.allclose(y, y_z, atol=1e-4)
    assert torch.allclose(ladj, ladj_z, atol=1e-3)

    ladj.sum().backward()
    ladj_z.sum().backward()
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        q = theirs_params[name]
        if q.grad is None:  # a parameter that does not enter the log-det: no (or a zero) gradient
            assert p.grad is None or not p.grad.any(), name
            continue
        # CNF: our fixed RK4 steps vs Zuko's adaptive solver and adjoint differ by up to ~7%
        # (as without an override); the others agree to float32 precision.
        tol = 0.1 if case == "FFJ.f" else 1e-3
        assert (p.grad - q.grad).norm() <= tol * q.grad.norm() + 1e-6, name

    with torch.no_grad():
        assert torch.allclose(ours(c).inv(y), x, atol=1e-3)


@pytest.mark.parametrize("case", CASES)
def test_override_has_no_pure_spec_and_runs_under_functional_call(case):
    torch.manual_seed(0)
    module = build(A, case)
    overriding = [m for m in module.modules() if custom_hooks(m)]
    assert overriding
    with pytest.raises(NoSpecError):
        module.spec
    c, x = torch.randn(4, 2), torch.randn(4, 3)
    # Zuko's methods run when the transform is applied: apply it inside the call
    wrapper = Applied(module)
    params = {f"module.{k}": v.detach() + 0.01 for k, v in module.named_parameters()}
    y = functional_call(wrapper, params, (c, x))
    with torch.no_grad():
        for k, v in module.named_parameters():
            v.add_(0.01)
    assert torch.allclose(y, module(c)(x), atol=1e-5)


def test_module_given_as_univariate_is_a_trained_child():
    r"""``MaskedAutoregressiveTransform(univariate=MNN(...))`` (Zuko's way to build a NAF
    layer by hand): the network is a child, trains and saves with the transform."""

    def layer(z):
        return z.flows.MaskedAutoregressiveTransform(
            3, 2, univariate=z.flows.neural.MNN(signal=4, stack=3, hidden_features=[8]), shapes=[(4,)],
            hidden_features=[16])

    torch.manual_seed(0)
    ours = layer(A)
    torch.manual_seed(0)
    theirs = layer(zuko)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    c, x = torch.randn(4, 2), torch.randn(4, 3)
    y, ladj = ours(c).call_and_ladj(x)
    ladj.sum().backward()
    grads = {k: p.grad for k, p in ours.named_parameters()}
    assert all(grads[k] is not None for k in grads if k.startswith("univariate.network.0"))
    y_z = theirs(c)(x)
    theirs(c).log_abs_det_jacobian(x, y_z).sum().backward()
    assert torch.allclose(y, y_z, atol=1e-5)
    for k, p in theirs.named_parameters():  # (the last bias does not enter the log-det: no gradient)
        assert (grads[k] is None) == (p.grad is None), k
        assert p.grad is None or torch.allclose(grads[k], p.grad, atol=1e-4, rtol=1e-3), k


def test_library_classes_override_nothing():
    modules = [A.flows.MaskedAutoregressiveTransform(3, 2), A.flows.GeneralCouplingTransform(3, 2),
               A.flows.continuous.FFJTransform(3), A.flows.neural.MNN(), A.flows.neural.UMNN()]
    assert all(custom_hooks(m) == () for m in modules)
    assert all(m.spec is not None for m in modules[:3])


def test_coupling_transform_takes_zukos_signature():
    mask = torch.tensor([True, False, True])
    t = A.transforms.CouplingTransform(
        lambda xa: A.transforms.MonotonicAffineTransform(xa.sum(-1, keepdim=True), torch.zeros(1)), mask)
    z = zuko.transforms.CouplingTransform(
        lambda xa: zuko.transforms.MonotonicAffineTransform(xa.sum(-1, keepdim=True), torch.zeros(1)), mask)
    x = torch.randn(5, 3)
    assert torch.allclose(t(x), z(x))


def test_zuko_helpers_take_zukos_argument_names():
    x, W = torch.randn(7, 5, 3), torch.randn(5, 4, 3)
    assert torch.allclose(A.nn.linear(x, W=W, b=None), zuko.nn.linear(x, W=W, b=None), atol=1e-6)
    packed = torch.randn(2, 5)
    for a, b in zip(A.utils.unpack(x=packed, shapes=[(2,), (3,)]), zuko.utils.unpack(x=packed, shapes=[(2,), (3,)])):
        assert torch.equal(a, b)
    for name in ["IdentityTransform", "CosTransform", "SinTransform"]:
        t, z = getattr(A.transforms, name)(cache_size=1), getattr(zuko.transforms, name)(cache_size=1)
        v = torch.rand(4)
        assert torch.allclose(t(v), z(v))
    with pytest.raises(ValueError, match="cache_size"):
        A.transforms.IdentityTransform(cache_size=2)


@pytest.mark.parametrize("case", CASES)
def test_override_under_vmap_over_contexts_and_parameters(case):
    torch.manual_seed(0)
    module = build(A, case)
    c, x = torch.randn(4, 2), torch.randn(4, 3)
    per_sample = torch.func.vmap(lambda ci, xi: module(ci)(xi))(c, x)
    assert torch.allclose(per_sample, module(c)(x), atol=1e-4)
    # two parameter sets stacked, one vmap over them through functional_call
    wrapper = Applied(module)
    params = {f"module.{k}": torch.stack([v.detach(), v.detach() + 0.01]) for k, v in module.named_parameters()}
    ys = torch.func.vmap(lambda p: functional_call(wrapper, p, (c, x)))(params)
    assert torch.allclose(ys[0], module(c)(x), atol=1e-4)
    with torch.no_grad():
        for v in module.parameters():
            v.add_(0.01)
    assert torch.allclose(ys[1], module(c)(x), atol=1e-4)


def _wrapped_on_the_instance(name, flow):
    r"""Sets a function on an instance in place of one of Zuko's computing methods, as a user
    monkeypatching a module would; Zuko looks the method up at every call."""

    first = flow.transform.transforms[0] if name != "CNF" else flow.transform
    target, method, wrap = {
        "MAF": (first, "meta", lambda o: lambda c, x: o(c, 2 * x)),
        "RealNVP": (first, "meta", lambda o: lambda c, x: o(c, 2 * x)),
        "NAF": (getattr(first, "univariate", None), "f", lambda o: lambda s, x: o(s, x) + 2 * x),
        "CNF": (first, "f", lambda o: lambda t, x, c=None: 2 * o(t, x, c)),
    }[name]
    setattr(target, method, wrap(getattr(target, method)))


@pytest.mark.parametrize("name", ["MAF", "RealNVP", "NAF", "CNF"])
def test_a_method_set_on_the_instance_computes_as_in_zuko(name):
    torch.manual_seed(0)
    theirs = getattr(zuko.flows, name)(3, 2)
    mine = getattr(A.flows, name)(3, 2)
    mine.load_state_dict(theirs.state_dict())
    x, c = 0.5 * torch.randn(4, 3), torch.randn(4, 2)
    before = mine(c).log_prob(x)
    for flow in (theirs, mine):
        _wrapped_on_the_instance(name, flow)
    after = mine(c).log_prob(x)
    assert not torch.allclose(after, before, atol=1e-4)
    torch.testing.assert_close(after, theirs(c).log_prob(x), atol=1e-4, rtol=1e-4)
