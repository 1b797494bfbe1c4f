r"""Patterns of code written for Zuko (scripts and libraries built on it, e.g. sbi's flow
builders), run with ``zuko`` swapped for the adapter, against real Zuko as the oracle."""

from __future__ import annotations

import io

import pytest
import torch
import zuko
from torch.distributions import AffineTransform, ExpTransform
from torch.func import grad, vmap

import lazydist_functional.adapters as ours


def _standardized_nsf(z):
    r"""sbi-style: a z-scoring torch ``AffineTransform`` prepended to an NSF's transforms."""

    nsf = z.flows.NSF(3, 2, hidden_features=[16, 16], bins=4)
    std = z.flows.UnconditionalTransform(
        AffineTransform, loc=torch.full((3,), -0.5), scale=torch.full((3,), 0.5), event_dim=1, buffer=True
    )
    return z.flows.Flow((std, *nsf.transform.transforms), nsf.base)


def test_flow_rebuilt_from_another_flows_transforms_with_a_torch_transform_matches_zuko():
    theirs, mine = _standardized_nsf(zuko), _standardized_nsf(ours)
    assert sorted(mine.state_dict()) == sorted(theirs.state_dict())
    mine.load_state_dict(theirs.state_dict())
    c, x = torch.randn(10, 2), torch.randn(10, 3)
    torch.testing.assert_close(mine(c).log_prob(x), theirs(c).log_prob(x), atol=1e-5, rtol=1e-5)
    sample, log_p = mine(c).rsample_and_log_prob((4,))
    assert sample.shape == (4, 10, 3)
    torch.testing.assert_close(mine(c).log_prob(sample), log_p, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("container", ["ModuleList", "slice", "Sequential", "generator"])
def test_flow_of_another_flows_transform_container_matches_zuko(container):
    # code reusing a trained flow's parts: Flow(transform=flow.transform.transforms, base=flow.base)
    def build(z):
        torch.manual_seed(0)
        flow = z.flows.MAF(3, 2, transforms=3, hidden_features=[16])
        parts = flow.transform.transforms
        arg = {"ModuleList": parts, "slice": parts[1:], "Sequential": torch.nn.Sequential(*parts),
               "generator": (t for t in parts)}[container]
        return flow, z.flows.Flow(transform=arg, base=flow.base)

    (their_flow, theirs), (my_flow, mine) = build(zuko), build(ours)
    my_flow.load_state_dict(their_flow.state_dict())
    assert type(mine.transform).__name__ == type(theirs.transform).__name__ == "LazyComposedTransform"
    assert sorted(mine.state_dict()) == sorted(theirs.state_dict())
    assert len(mine.transform.transforms) == len(theirs.transform.transforms)
    c, x = torch.randn(4, 2), torch.randn(4, 3)
    torch.testing.assert_close(mine(c).log_prob(x), theirs(c).log_prob(x), atol=1e-5, rtol=1e-5)


def test_a_users_own_lazy_transform_inside_a_flow_trains():
    class Shift(ours.lazy.LazyTransform):
        def __init__(self) -> None:
            super().__init__()
            self.shift = torch.nn.Parameter(torch.ones(3))

        def forward(self, c=None):
            return ours.transforms.MonotonicAffineTransform(self.shift, torch.zeros(3))

    flow = ours.flows.Flow([Shift(), ours.flows.MaskedAutoregressiveTransform(3, 2)], ours.flows.MAF(3).base)
    c, x = torch.randn(10, 2), torch.randn(10, 3)
    flow(c).log_prob(x).mean().backward()
    assert flow.transform.transforms[0].shift.grad is not None
    assert flow(c).sample((2,)).shape == (2, 10, 3)


def test_torch_transform_inside_normalizing_flow_matches_zuko():
    base = torch.distributions.Independent(torch.distributions.Normal(torch.zeros(2), torch.ones(2)), 1)
    x = torch.rand(5, 2) + 0.1
    mine = ours.distributions.NormalizingFlow(ExpTransform(), base).log_prob(x)
    theirs = zuko.distributions.NormalizingFlow(ExpTransform(), base).log_prob(x)
    torch.testing.assert_close(mine, theirs)


def test_lazy_inverse_and_replaced_child():
    t = ours.flows.MaskedAutoregressiveTransform(3, 2)
    c, x = torch.randn(4, 2), torch.randn(4, 3)
    torch.testing.assert_close(t.inv(c)(t(c)(x)), x, atol=1e-5, rtol=1e-5)
    flow = ours.flows.MAF(3, 2)
    spec = flow.spec
    flow.transform.transforms[1] = ours.flows.MaskedAutoregressiveTransform(3, 2)  # the user replaces a child
    assert flow.spec is not spec and flow.spec.transform.transforms[1] is flow.transform.transforms[1].spec
    assert flow(c).log_prob(x).shape == (4,)


@pytest.mark.parametrize("name", ["MAF", "NSF", "NAF"])
def test_whole_module_pickles_like_zukos(name):
    flow = getattr(ours.flows, name)(3, 2, hidden_features=[8])
    buffer = io.BytesIO()
    torch.save(flow, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    c, x = torch.randn(4, 2), torch.randn(4, 3)
    torch.testing.assert_close(loaded(c).log_prob(x), flow(c).log_prob(x))
    assert type(loaded.spec) is type(flow.spec)


def test_children_replaced_or_appended_through_module_lists_are_seen():
    flow = ours.flows.MAF(3, 2)
    c, x = torch.randn(4, 2), torch.randn(4, 3)
    flow(c).log_prob(x)  # caches built
    spare = ours.flows.MaskedAutoregressiveTransform(3, 2)  # built before, assigned after the caches
    flow(c).log_prob(x)
    flow.transform.transforms[0] = spare
    assert flow.spec.transform.transforms[0] is spare.spec
    extra = ours.flows.MaskedAutoregressiveTransform(3, 2)
    flow(c).log_prob(x)
    flow.transform.transforms.append(extra)
    assert len(flow.spec.transform.transforms) == 4
    expected = flow.forward_children(c).log_prob(x)  # Zuko's way: call the children
    torch.testing.assert_close(flow(c).log_prob(x), expected)


@pytest.mark.parametrize("name", ["MAF", "NSF", "NCSF", "RealNVP", "NAF", "UNAF", "SOSPF", "BPF", "GF", "CNF", "GMM"])
@pytest.mark.parametrize("context", [0, 2])
def test_modules_have_the_attributes_and_methods_of_zukos_modules(name, context):
    r"""Every public name of every Zuko module (attributes, methods such as a layer's
    ``reset_parameters``, network layers included) is in ``dir()`` of ours at the same path
    and answers, with the same value for the plain configuration values."""

    theirs, mine = getattr(zuko.flows, name)(3, context), getattr(ours.flows, name)(3, context)
    our_modules = dict(mine.named_modules())
    for path, module in theirs.named_modules():
        assert path in our_modules, path
        our = our_modules[path]
        missing = {a for a in dir(module) if not a.startswith("_")} - set(dir(our))
        assert not missing, f"{name}: {path or 'flow'} lacks {sorted(missing)}"
        for attr, value in vars(module).items():
            if not attr.startswith("_") and isinstance(value, (bool, int, float, str)):
                assert getattr(our, attr) == value, f"{name}: {path or 'flow'}.{attr}"


def test_reset_parameters_redraws_as_zukos_layers():
    # The re-initialization idiom: every module with reset_parameters() redraws, in Zuko's order
    # and from the global generator, so a seeded re-init gives Zuko's weights.
    flows = {}
    for lib in (zuko, ours):
        flow = lib.flows.RealNVP(3, 2, hidden_features=[8])
        torch.manual_seed(3)
        for module in flow.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        flows[lib] = flow
    theirs, mine = flows[zuko], flows[ours]
    for (k, a), (_, b) in zip(theirs.state_dict().items(), mine.state_dict().items(), strict=True):
        torch.testing.assert_close(b, a, msg=k)
    c, x = torch.randn(4, 2), torch.randn(4, 3)
    torch.testing.assert_close(mine(c).log_prob(x), theirs(c).log_prob(x))


def _context_affine_flow(lib):
    r"""A user's lazy transform returning a torch ``AffineTransform`` with one loc and scale per
    context row (its ``inverse_shape`` broadcasts them into the event shape)."""

    class ContextAffine(lib.lazy.LazyTransform):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(2, 6)

        def forward(self, c=None):
            loc, log_scale = self.net(c).chunk(2, dim=-1)
            return AffineTransform(loc, log_scale.exp(), event_dim=1)

    torch.manual_seed(0)
    base = lib.lazy.UnconditionalDistribution(lib.distributions.DiagNormal, torch.zeros(3), torch.ones(3), buffer=True)
    return lib.lazy.Flow([ContextAffine()], base)


@pytest.mark.parametrize("x_shape", [(4, 3), (3,)])
def test_torch_transform_with_parameters_per_context_row_matches_zuko(x_shape):
    theirs, mine = _context_affine_flow(zuko), _context_affine_flow(ours)
    mine.load_state_dict(theirs.state_dict())
    c, x = torch.randn(4, 2), torch.randn(x_shape)
    expected = theirs(c).log_prob(x.expand(4, 3))  # (torch's AffineTransform cannot broadcast one x itself)
    assert expected.shape == (4,)
    torch.testing.assert_close(mine(c).log_prob(x), expected)


def test_a_flow_of_unconditional_parts_ignores_a_context_as_zukos():
    c, x = torch.randn(5, 3), torch.rand(2) + 0.1
    out = []
    for lib in (zuko, ours):
        flow = lib.lazy.Flow([lib.lazy.UnconditionalTransform(ExpTransform)],
                             lib.lazy.UnconditionalDistribution(lib.distributions.DiagNormal, torch.zeros(2),
                                                                torch.ones(2), buffer=True))
        d = flow(c)
        out.append((d.batch_shape, d.log_prob(x), d.sample().shape))
    assert out[1][0] == out[0][0] == (5,) and out[1][2] == out[0][2] == (5, 2)
    torch.testing.assert_close(out[1][1], out[0][1])
    with pytest.raises(ValueError, match="unconditional"):  # a part built with context=0 would fail in Zuko
        ours.flows.MAF(2)(c)


def test_scalar_shapes_in_utils_and_joint_as_zukos():
    for lib in (zuko, ours):
        parts = lib.utils.unpack(torch.arange(7.0), [(), (2, 3)])
        assert isinstance(parts, tuple) and [p.shape for p in parts] == [(), (2, 3)]
        a, b = lib.utils.broadcast(torch.tensor(1.0), torch.tensor(2.0))
        assert a.shape == b.shape == ()
    marginals = (torch.distributions.Normal(0.0, 1.0), torch.distributions.Normal(1.0, 2.0))
    x = torch.tensor([0.3, -0.2])
    torch.testing.assert_close(ours.distributions.Joint(*marginals).log_prob(x),
                               zuko.distributions.Joint(*marginals).log_prob(x))


@pytest.mark.parametrize("name", ["MAF", "NSF", "NCSF", "RealNVP", "NICE", "NAF", "UNAF", "SOSPF", "BPF", "GF", "GMM", "CNF"])
def test_a_printed_distribution_is_zukos_text(name):
    c = torch.randn(2)
    assert str(getattr(ours.flows, name)(3, 2)(c)) == str(getattr(zuko.flows, name)(3, 2)(c))


def test_network_layers_index_like_zukos_sequentials():
    theirs, mine = zuko.flows.MAF(3, 2), ours.flows.MAF(3, 2)
    for i in (0, 2, -1):
        a, b = theirs.transform.transforms[0].hyper[i], mine.transform.transforms[0].hyper[i]
        assert (b.in_features, b.out_features) == (a.in_features, a.out_features)
        assert b.weight.shape == a.weight.shape
    a, b = theirs.transform.transforms[0].hyper, mine.transform.transforms[0].hyper
    assert [type(m).__name__ for m in b] == [type(m).__name__ for m in a]  # the same layers, activations included
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 5)
    assert torch.allclose(b(x), a(x), atol=1e-6) and torch.allclose(b[1](b[0](x)), a[1](a[0](x)), atol=1e-6)


# Zuko's FFJ keeps the adjoint's parameter list and trace tolerance; this CNF has no adjoint.
NOT_HERE = {"FreeFormJacobianTransform": {"phi", "trace_scale"}}


@pytest.mark.parametrize("name", ["MAF", "NSF", "NCSF", "RealNVP", "NICE", "NAF", "UNAF", "SOSPF", "BPF", "GF", "CNF"])
def test_returned_transforms_have_the_public_names_of_zukos(name):
    c = torch.randn(2)
    theirs, mine = getattr(zuko.flows, name)(3, 2)(c).transform, getattr(ours.flows, name)(3, 2)(c).transform
    pairs = [(theirs, mine), (theirs.inv, mine.inv)]
    pairs += list(zip(getattr(theirs, "transforms", ()), getattr(mine, "transforms", ()), strict=True))
    for a, b in pairs:
        expected = {n for n in dir(a) if not n.startswith("_")} - NOT_HERE.get(type(a).__name__, set())
        missing = expected - set(dir(b))
        assert not missing, f"{name}: {type(b).__name__} lacks {sorted(missing)}"
    t = getattr(mine, "transforms", [mine])[0]
    if hasattr(t, "split"):  # Zuko's coupling helpers give Zuko's values
        x = torch.randn(4, 3)
        torch.testing.assert_close(t.merge(*t.split(x), x.shape), x)
        assert t.idx_a.tolist() == theirs.transforms[0].idx_a.tolist()


@pytest.mark.parametrize("name", ["MAF", "NAF", "UNAF", "SOSPF", "GF", "GMM", "RealNVP"])
def test_training_on_data_drawn_under_inference_mode(name):
    # Contexts and samples made under torch.inference_mode(), then trained on: autograd cannot
    # save inference tensors, so the flow takes copies (Zuko raises for MAF, UNAF, SOSPF).
    torch.manual_seed(0)
    flow = getattr(ours.flows, name)(3, 2, **({} if name == "GF" else {"hidden_features": [8]}))
    with torch.inference_mode():
        c = torch.randn(6, 2)
        x = flow(c).sample()
    loss = -flow(c).log_prob(x).mean()
    loss.backward()
    expected = -flow(c.clone()).log_prob(x.clone()).mean()
    torch.testing.assert_close(loss, expected)
    assert all(p.grad is not None for p in flow.parameters())


def _dict_entries_holding_sequences(obj, found, seen) -> None:
    r"""The walk of sbi's ``detach_and_deepcopy`` (``sbi.utils.torchutils._base_recursor``): into
    dicts, ``__dict__``s, lists and tuples; it rewrites a list or tuple met as a dict's value with
    ``setattr(the_dict, key, ...)``, which fails. Collects those entries."""

    if id(obj) in seen or isinstance(obj, type):
        return
    seen.add(id(obj))
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, (list, tuple)):
                found.append(key)
            _dict_entries_holding_sequences(value, found, seen)
    elif hasattr(obj, "__dict__"):
        for value in vars(obj).values():
            _dict_entries_holding_sequences(value, found, seen)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _dict_entries_holding_sequences(value, found, seen)


@pytest.mark.parametrize("name", ["MAF", "NSF", "NAF", "UNAF", "RealNVP", "GF", "CNF", "GMM"])
def test_object_graph_walkable_as_zukos_by_sbi(name):
    # After a training step and sampling (which fill the specs' caches) no dict in the module's
    # object graph holds a list or tuple, as in Zuko's modules; sbi's VI deep copy relies on it.
    for lib in (zuko, ours):
        flow = getattr(lib.flows, name)(3, 2, **({} if name == "GF" else {"hidden_features": [8]}))
        c = torch.randn(4, 2)
        flow(c).log_prob(torch.randn(4, 3)).sum().backward()
        flow(c).sample()
        found = []
        _dict_entries_holding_sequences(flow, found, set())
        assert not found, f"{lib.__name__}.{name}: dict entries holding sequences: {found[:5]}"


@pytest.mark.parametrize("name", ["CircularShiftTransform", "SoftclipTransform"])
def test_a_bound_per_coordinate_as_zukos(name):
    bound = torch.tensor([1.5, 3.0, 0.8])
    theirs, mine = getattr(zuko.transforms, name)(bound=bound), getattr(ours.transforms, name)(bound=bound)
    x = torch.tensor([[1.0, -2.0, 0.5], [0.1, 2.9, -0.7]])
    y = theirs(x)
    torch.testing.assert_close(mine(x), y)
    torch.testing.assert_close(mine.inv(y), theirs.inv(y))
    torch.testing.assert_close(mine.log_abs_det_jacobian(x, y), theirs.log_abs_det_jacobian(x, y))
    # and under torch.func: vmap over rows, the gradient w.r.t. x
    torch.testing.assert_close(vmap(mine)(x), y)
    g = vmap(grad(lambda v: mine.call_and_ladj(v)[1].sum()))(x)
    torch.testing.assert_close(g, torch.func.jacrev(lambda v: mine.call_and_ladj(v)[1].sum())(x))


def test_truncated_scalar_base_with_bounds_of_shape_1_1_samples_as_zukos():
    # a prior written as Truncated(Normal(1.5, 0.4), lower=[[0.5]], upper=[[2.5]])
    lower, upper = torch.tensor([[0.5]]), torch.tensor([[2.5]])
    theirs = zuko.distributions.Truncated(zuko.distributions.Normal(1.5, 0.4), lower=lower, upper=upper)
    mine = ours.distributions.Truncated(ours.distributions.Normal(1.5, 0.4), lower=lower, upper=upper)
    for shape in [(), (6,)]:
        assert mine.sample(shape).shape == theirs.sample(shape).shape
        assert mine.rsample(shape).shape == theirs.rsample(shape).shape
    x = mine.sample((1000,))
    assert bool(((x >= 0.5) & (x < 2.5)).all())
    value = torch.tensor([[[1.0]], [[2.0]]])
    torch.testing.assert_close(mine.log_prob(value), theirs.log_prob(value))


def test_deprecated_unconditional_keeps_zukos_meta():
    from torch.distributions import AffineTransform

    with pytest.warns(DeprecationWarning):
        u = ours.lazy.Unconditional(AffineTransform, torch.zeros(3), torch.ones(3), buffer=True)
    # code rebuilding the transform by hand, as written for Zuko's Unconditional
    t = u.meta(*u._parameters.values(), *u._buffers.values(), **u.kwargs)
    assert isinstance(t, AffineTransform) and torch.equal(t.scale, torch.ones(3))
    # Zuko's attributes are assignable and read at the next call
    x = torch.tensor([[0.3, -0.2, 0.9]])
    outputs = []
    for z in (zuko, ours):
        with pytest.warns(DeprecationWarning):
            v = z.lazy.Unconditional(z.transforms.CircularShiftTransform, bound=2.0)
        v.kwargs = {"bound": 0.7}
        shifted = v()(x)
        v.meta = z.transforms.SoftclipTransform
        outputs.append((shifted, v()(x)))
    torch.testing.assert_close(outputs[1], outputs[0])


def _signed_transforms(z):
    t = z.transforms
    return {
        "CircularShift": t.CircularShiftTransform(), "Softclip": t.SoftclipTransform(),
        "Softclip.inv": t.SoftclipTransform().inv, "Cos": t.CosTransform(),
        "MonotonicAffine": t.MonotonicAffineTransform(torch.zeros(2), torch.zeros(2)),
        "RQS": t.MonotonicRQSTransform(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 3)),
        "SOS": t.SOSPolynomialTransform(torch.randn(2, 2, 3)), "Permutation": t.PermutationTransform(torch.tensor([1, 0])),
        "Rotation": t.RotationTransform(torch.randn(2, 2)),
        "Composed": t.ComposedTransform(t.SoftclipTransform(), t.SoftclipTransform()),
        "MAF": z.flows.MAF(2, 0)().transform,
    }


@pytest.mark.parametrize("name", list(_signed_transforms(zuko)))
def test_sign_defined_where_zukos_is(name):
    # torch's TransformedDistribution.cdf reads .sign: +1 for increasing element-wise maps,
    # NotImplementedError where the sign is undefined (not monotone, or multivariate)
    def sign(t):
        try:
            return t.sign
        except NotImplementedError:
            return "undefined"

    assert sign(_signed_transforms(ours)[name]) == sign(_signed_transforms(zuko)[name])


def _raises_as_zukos(call, zukos_type: type[Exception]) -> None:
    r"""``call(z)`` raises ``zukos_type`` with Zuko and with the adapter, whose error is also a
    ``ValueError`` (the library's own, with a clear message)."""

    for z in (zuko, ours):
        with pytest.raises(zukos_type):
            call(z)
    with pytest.raises(ValueError):
        call(ours)


@pytest.mark.parametrize("case", ["Truncated", "Sort", "Minimum", "TopK", "Mixture"])
def test_bad_distribution_arguments_raise_zukos_assertion_error(case):
    # Zuko asserts these; code catching AssertionError keeps working (ours is a ValueError too)
    def build(z):
        d, mvn = z.distributions, z.distributions.DiagNormal(torch.zeros(3), torch.ones(3))
        return {
            "Truncated": lambda: d.Truncated(mvn, -1.0, 1.0),
            "Sort": lambda: d.Sort(mvn, 3),
            "Minimum": lambda: d.Minimum(mvn, 3),
            "TopK": lambda: d.TopK(torch.distributions.Normal(0.0, 1.0), 4, 3),
            "Mixture": lambda: d.Mixture(d.DiagNormal(torch.zeros(2, 3), torch.ones(2, 3)), torch.zeros(5)),
        }[case]()

    _raises_as_zukos(build, AssertionError)


def test_configuration_set_after_construction_is_read_at_the_next_call_as_zukos():
    # Zuko's modules read atol/rtol/exact when called; a silently ignored edit would be a wrong answer
    torch.manual_seed(0)
    theirs = zuko.flows.CNF(3, 2, hidden_features=[16, 16]).double()
    mine = ours.flows.CNF(3, 2, hidden_features=[16, 16]).double()
    mine.load_state_dict(theirs.state_dict())
    x, c = torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    before = mine(c).log_prob(x)
    for flow in (theirs, mine):
        flow.transform.atol = flow.transform.rtol = 1e-1
    assert mine.transform.atol == 1e-1
    loose = mine(c).log_prob(x)
    assert not torch.allclose(loose, before, rtol=0, atol=1e-6)
    torch.testing.assert_close(loose, theirs(c).log_prob(x), rtol=1e-7, atol=1e-7)
    for flow in (theirs, mine):
        flow.transform.exact = False  # Hutchinson's estimator, one draw per call
    torch.manual_seed(1)
    want = theirs(c).log_prob(x)
    torch.manual_seed(1)
    torch.testing.assert_close(mine(c).log_prob(x), want, rtol=1e-7, atol=1e-7)
    mine.transform.note = "kept"  # any other attribute is nn.Module's
    assert mine.transform.note == "kept" and "note" in vars(mine.transform)


def test_unconditional_arguments_set_after_construction_are_used_as_zukos():
    x = torch.tensor([2.0, -5.0, 0.5])
    results = []
    for z in (zuko, ours):
        u = z.flows.UnconditionalTransform(z.transforms.SoftclipTransform, bound=3.0)
        u.bound = 1.0  # Zuko's Partial reads its keyword arguments when called
        v = z.flows.UnconditionalTransform(z.transforms.SoftclipTransform, bound=3.0)
        v.f = z.transforms.CircularShiftTransform
        results.append((u()(x), u.kwargs, v()(x)))
    (a, ka, va), (b, kb, vb) = results
    torch.testing.assert_close(b, a)
    torch.testing.assert_close(vb, va)
    assert kb == ka == {"bound": 1.0}


def test_affine_transform_scale_is_zukos_multiplier():
    # Zuko's MonotonicAffineTransform keeps the multiplier exp(s) as .scale, s as .log_scale
    for z in (zuko, ours):
        t = z.transforms.MonotonicAffineTransform(torch.tensor([0.5, -1.0]), torch.tensor([2.0, -30.0]))
        if z is zuko:
            want = (t.scale, t.log_scale)
        else:
            torch.testing.assert_close((t.scale, t.log_scale), want)
    torch.manual_seed(0)
    theirs, mine = zuko.flows.MAF(1, 0), ours.flows.MAF(1, 0)
    mine.load_state_dict(theirs.state_dict())
    torch.testing.assert_close(mine().transform.transforms[0].base.scale, theirs().transform.transforms[0].base.scale)


@pytest.mark.parametrize("case", ["features", "broadcast", "missing_context", "context_size"])
def test_bad_input_errors_are_caught_by_the_except_clause_written_for_zuko(case):
    # torch raises RuntimeError there, so code written for Zuko catches that; ours is a
    # ValueError with a clear message, and a RuntimeError too
    def call(z):
        flow = z.flows.MAF(3, 2)
        c, x = torch.randn(4, 2), torch.randn(4, 3)
        if case == "features":
            return flow(c).log_prob(torch.randn(4, 4))
        if case == "broadcast":
            return flow(c).log_prob(torch.randn(5, 3))
        if case == "missing_context":
            return flow(None).log_prob(x)
        return flow(torch.randn(4, 3)).log_prob(x)

    _raises_as_zukos(call, RuntimeError)


def test_monotonic_transform_attributes_as_zukos():
    shift, scale = torch.randn(2, 4), torch.randn(2, 4)
    theirs = zuko.transforms.GaussianizationTransform(shift, scale)
    mine = ours.transforms.GaussianizationTransform(shift, scale)
    torch.testing.assert_close(mine.scale, theirs.scale)
    assert mine.phi == theirs.phi == ()
    assert ours.transforms.MonotonicTransform(torch.sin).phi == zuko.transforms.MonotonicTransform(torch.sin).phi


@pytest.mark.parametrize("name", ["MAF", "NSF", "RealNVP", "NAF", "CNF"])
def test_a_context_with_no_features_sets_the_batch_shape_as_in_zuko(name):
    # generic code that always passes a context, built with zero context features
    torch.manual_seed(0)
    theirs, mine = getattr(zuko.flows, name)(3, 0), getattr(ours.flows, name)(3, 0)
    mine.load_state_dict(theirs.state_dict())
    c, x = torch.randn(5, 0), torch.randn(5, 3)
    d, ref = mine(c), theirs(c)
    assert d.batch_shape == ref.batch_shape == (5,)
    torch.testing.assert_close(d.log_prob(x), ref.log_prob(x), atol=1e-4, rtol=1e-4)
    assert d.sample((2,)).shape == ref.sample((2,)).shape == (2, 5, 3)
    with pytest.raises(ValueError, match="unconditional"):
        mine(torch.randn(5, 2))  # a context with features is still refused
