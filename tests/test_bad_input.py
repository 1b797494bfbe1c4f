r"""Bad input raises a clear error naming what was expected and what was got, both in a
plain call and under ``vmap`` (shape/dtype checks are static, so they behave the same)."""

from __future__ import annotations

import re

import pytest
import torch
from torch.func import vmap

import lazydist_functional as L
import lazydist_functional.adapters as zuko_adapter
from lazydist_functional import ParamTreeError
from lazydist_functional.pytree import flatten_names, unflatten_names

from adapter_cases import module_of
from conftest import FEATURES, FLOW_NAMES, Case, assert_close, make_spec

B = 4


def _both(fn, args, in_dims, exc, pattern):
    r"""``fn(*args[0])`` and ``vmap(fn)(*args batched)`` both raise ``exc`` matching ``pattern``."""

    with pytest.raises(exc, match=pattern):
        fn(*args)
    batched = tuple(a if d is None else a.expand(B, *a.shape) for a, d in zip(args, in_dims, strict=True))
    with pytest.raises(exc, match=pattern):
        vmap(fn, in_dims=in_dims)(*batched)


@pytest.fixture(params=FLOW_NAMES)
def name(request):
    return request.param


def test_x_with_wrong_number_of_features(case: Case):
    params = case.params()
    x = torch.randn(FEATURES + 1)
    pattern = re.escape(f"x should have shape (*, {FEATURES})") + r".*got \(" + str(FEATURES + 1)
    if case.conditional:
        _both(lambda c, x: case.spec.apply(params, c).log_prob(x), (torch.randn(2), x), (0, 0), ValueError, pattern)
    else:
        _both(lambda x: case.spec.apply(params).log_prob(x), (x,), (0,), ValueError, pattern)
    # batched, too: (N, 4) is not (N, 3)
    with pytest.raises(ValueError, match=r"got \(5, 4\)"):
        case.spec.apply(params, case.c(5)).log_prob(torch.randn(5, FEATURES + 1))


def test_context_of_wrong_size(name):
    spec = make_spec(name, 2)
    params = spec.init()
    pattern = re.escape(f"{name}: expected a context of shape (*, 2), got (3,)")
    _both(lambda c, x: spec.apply(params, c).log_prob(x), (torch.randn(3), torch.randn(FEATURES)), (0, 0),
          ValueError, pattern)
    with pytest.raises(ValueError, match=re.escape("got (5, 1)")):
        spec.apply(params, torch.randn(5, 1))


def test_missing_context_for_conditional_flow(name):
    spec = make_spec(name, 2)
    params = spec.init()
    pattern = re.escape(f"{name} is conditional: expected a context with 2 features, got None")
    _both(lambda x: spec.apply(params).log_prob(x), (torch.randn(FEATURES),), (0,), ValueError, pattern)
    # the module path raises the same
    module = module_of(Case(name, 2, spec), params)
    with pytest.raises(ValueError, match=re.escape("is conditional: expected a context with 2 features, got None")):
        module()
    # the adapter's own flow classes name themselves in the message
    flow = getattr(zuko_adapter.flows, name)(FEATURES, 2)
    with pytest.raises(ValueError, match=pattern):
        flow()


def test_context_given_to_unconditional_flow(name):
    spec = make_spec(name, 0)
    params = spec.init()
    pattern = re.escape(f"{name} is unconditional (context=0) but a context of shape (2,) was given")
    _both(lambda c, x: spec.apply(params, c).log_prob(x), (torch.randn(2), torch.randn(FEATURES)), (0, 0),
          ValueError, pattern)
    module = module_of(Case(name, 0, spec), params)
    with pytest.raises(ValueError, match=re.escape("but a context of shape (5, 2) was given")):
        module(torch.randn(5, 2))


def test_float64_context_with_float32_params(name):
    spec = make_spec(name, 2)
    params = spec.init()
    pattern = re.escape("the context has dtype torch.float64 but the parameters have dtype torch.float32")
    _both(lambda c, x: spec.apply(params, c).log_prob(x), (torch.randn(2, dtype=torch.float64), torch.randn(FEATURES)),
          (0, 0), TypeError, pattern)


def test_float64_x_with_float32_params(case: Case):
    params = case.params()
    x = torch.randn(FEATURES, dtype=torch.float64)
    pattern = "has dtype torch.float64 but the parameters have dtype torch.float32"
    if case.conditional:
        _both(lambda c, x: case.spec.apply(params, c).log_prob(x), (torch.randn(2), x), (0, 0), TypeError, pattern)
    else:
        _both(lambda x: case.spec.apply(params).log_prob(x), (x,), (0,), TypeError, pattern)


def test_float32_x_and_context_into_float64_params_promote(name):
    # Lossless, as torch's type promotion makes it in Zuko (float32 data into a .double() flow).
    spec = make_spec(name, 2)
    params = spec.init(dtype=torch.float64)
    c, x = torch.randn(2), torch.randn(FEATURES)
    got = spec.apply(params, c).log_prob(x)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, spec.apply(params, c.double()).log_prob(x.double()))


def _first_weight(params: dict) -> str:
    return next(k for k in flatten_names(params) if k.endswith("weight"))


def test_param_tree_with_a_missing_leaf(case: Case):
    flat = flatten_names(case.params())
    gone = _first_weight(flat)
    del flat[gone]
    bad = unflatten_names(flat)
    pattern = re.escape(f"missing ['{gone}']")
    c = case.c()
    with pytest.raises(ParamTreeError, match=pattern):
        case.spec.apply(bad, c)
    P = L.tree_stack([bad, bad])
    with pytest.raises(ParamTreeError, match=pattern):
        vmap(lambda p: case.spec.apply(p, c).log_prob(torch.zeros(FEATURES)))(P)


def test_param_tree_with_an_extra_leaf(case: Case):
    flat = flatten_names(case.params())
    flat["transform.transforms.0.hyper.9.weight"] = torch.zeros(2, 2)
    bad = unflatten_names(flat)
    pattern = re.escape("unexpected ['transform.transforms.0.hyper.9.weight']")
    c = case.c()
    with pytest.raises(ParamTreeError, match=pattern):
        case.spec.apply(bad, c)
    with pytest.raises(ParamTreeError, match=pattern):
        vmap(lambda p: case.spec.apply(p, c).log_prob(torch.zeros(FEATURES)))(L.tree_stack([bad, bad]))


def test_param_tree_with_a_wrong_shaped_leaf(case: Case):
    flat = flatten_names(case.params())
    name = _first_weight(flat)
    shape = tuple(flat[name].shape)
    flat[name] = torch.zeros(shape[0], shape[1] + 1)
    bad = unflatten_names(flat)
    pattern = re.escape(f"leaf '{name}' should have shape {shape}") + r".*" + re.escape(
        f"got {(shape[0], shape[1] + 1)}")
    c = case.c()
    with pytest.raises(ParamTreeError, match=pattern):
        case.spec.apply(bad, c)
    with pytest.raises(ParamTreeError, match=pattern):
        vmap(lambda p: case.spec.apply(p, c).log_prob(torch.zeros(FEATURES)))(L.tree_stack([bad, bad]))
    # a well-shaped tree after a bad one still works (no poisoned cache)
    assert torch.isfinite(case.spec.apply(case.params(), c).log_prob(torch.zeros(FEATURES))).all()


def test_bad_param_tree_in_module_load_state_dict_is_refused(case: Case):
    module = module_of(case)
    sd = module.state_dict()
    key = _first_weight(dict(module.named_parameters()))
    sd[key] = torch.zeros(1, 1)
    with pytest.raises(RuntimeError, match=re.escape(key)):
        module.load_state_dict(sd)


def test_param_tree_that_is_not_a_dict(case: Case):
    with pytest.raises(ParamTreeError, match="expected a dict of tensors, got list"):
        case.spec.apply([torch.zeros(1)], case.c())


# -- parameter trees: flat dotted names, dtypes per leaf, leading dimensions -------------------


def test_flat_dotted_param_tree_is_accepted(case: Case):
    params = case.params()
    c, x = case.c(5), case.x(5)
    flat = flatten_names(params)  # what dict(module.named_parameters()) gives
    assert_close(case.spec.apply(flat, c).log_prob(x), case.spec.apply(params, c).log_prob(x), what="flat tree")
    module = module_of(case, params)
    named = dict(module.named_parameters())
    assert_close(case.spec.apply(named, c).log_prob(x), module(c).log_prob(x), what="named_parameters")
    state = dict(module.named_buffers())
    if state:
        assert_close(case.spec.apply(named, c, state=state).log_prob(x), module(c).log_prob(x), what="flat state")


def test_dotted_keys_below_the_top_level_are_refused(case: Case):
    params = case.params()
    bad = {"transform": flatten_names(params["transform"])}
    with pytest.raises(ParamTreeError, match=r"key 'transforms\.0\.[^']*' contains '\.': nest dotted names"):
        case.spec.apply(bad, case.c())


@pytest.mark.parametrize("position", ["first", "later"])
def test_float64_leaf_is_blamed_on_its_own_path(case: Case, position: str):
    flat = flatten_names(case.params())
    name = list(flat)[0 if position == "first" else len(flat) // 2]
    flat[name] = flat[name].double()
    pattern = re.escape(f"params: leaf '{name}' has dtype torch.float64 but the other floating leaves have "
                        "dtype torch.float32")
    with pytest.raises(ParamTreeError, match=pattern):
        case.spec.apply(unflatten_names(flat), case.c())
    with pytest.raises(ParamTreeError, match=pattern):
        case.spec.apply(flat, case.c())


def test_state_with_another_dtype_than_the_params(name):
    spec = make_spec(name, 2)
    state = spec.init_state(dtype=torch.float64)
    if not any(v.is_floating_point() for v in flatten_names(state).values()):
        pytest.skip("no floating state")
    with pytest.raises(ParamTreeError, match="state has dtype torch.float64 but the parameters have dtype torch.float32"):
        spec.apply(spec.init(), torch.randn(2), state=state)


def test_leaf_with_a_stray_leading_dimension(case: Case):
    flat = flatten_names(case.params())
    name = list(flat)[1]
    flat[name] = flat[name].expand(2, *flat[name].shape)
    pattern = re.escape(f"leaf '{name}' has leading (batch) dimensions (2,) but the other leaves have ()")
    with pytest.raises(ParamTreeError, match=pattern):
        case.spec.apply(unflatten_names(flat), case.c())


def test_stacked_params_whose_batch_does_not_broadcast_with_the_context(cond_case: Case):
    P = L.tree_stack([cond_case.params(0), cond_case.params(1)])
    pattern = re.escape(f"{cond_case.name}: the parameters' batch shape (2,) does not broadcast with the "
                        "context's batch shape (5,)")
    with pytest.raises(L.checks.ContextError, match=pattern):
        cond_case.spec.apply(P, torch.randn(5, 2))
    # broadcasting batches are fine: (2,) with (2,), and (2,) with (5, 1)
    assert cond_case.spec.apply(P, torch.randn(2, 2)).log_prob(torch.randn(2, FEATURES)).shape == (2,)
    assert cond_case.spec.apply(P, torch.randn(5, 1, 2)).log_prob(torch.randn(5, 2, FEATURES)).shape == (5, 2)


def test_error_classes_are_the_builtin_types_a_user_catches():
    from lazydist_functional import checks

    for cls in (checks.ParamTreeError, checks.ContextError, checks.ShapeError):
        assert issubclass(cls, ValueError) and issubclass(cls, checks.LazydistError)
    assert issubclass(checks.InputTypeError, TypeError) and issubclass(checks.InputTypeError, checks.LazydistError)
    spec = make_spec("MAF", 2)
    with pytest.raises(checks.ContextError):
        spec.apply(spec.init(), torch.randn(3))
    with pytest.raises(checks.InputTypeError):
        spec.apply(spec.init(), torch.randn(2, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_non_floating_param_leaf_is_named(case: Case, dtype):
    flat = flatten_names(case.params())
    name = list(flat)[1]
    flat[name] = flat[name].to(dtype)
    pattern = re.escape(f"{case.name} params: leaf '{name}' should be a floating-point tensor, got dtype {dtype}")
    with pytest.raises(ParamTreeError, match=pattern):
        case.spec.apply(unflatten_names(flat), case.c(5))


def test_state_keeps_its_integer_and_boolean_leaves_but_floats_must_stay_floats():
    spec = make_spec("MAF", 2)
    params, state = spec.init(), flatten_names(spec.init_state())
    kinds = {k: v.dtype for k, v in state.items()}
    assert {torch.int64, torch.bool} <= set(kinds.values())  # orders and masks
    c, x = torch.randn(5, 2), torch.randn(5, FEATURES)
    assert spec.apply(params, c, state=unflatten_names(state)).log_prob(x).shape == (5,)
    bad = dict(state, **{"base.loc": state["base.loc"].long()})
    with pytest.raises(ParamTreeError, match=re.escape("MAF state: leaf 'base.loc' should be a floating-point tensor")):
        spec.apply(params, c, state=unflatten_names(bad))


@pytest.mark.parametrize("dtype", [torch.complex64, torch.bool])
def test_gmm_rejects_complex_and_boolean_values(dtype):
    spec = L.flows.GMM(FEATURES, 2, components=3)
    d = spec.apply(spec.init(), torch.randn(4, 2))
    x = torch.randn(4, FEATURES)
    pattern = re.escape(f"x should be a real tensor of dtype torch.float32, got dtype {dtype}")
    with pytest.raises(L.checks.InputTypeError, match=pattern):
        d.log_prob(x.to(dtype))
    # integers promote, as in torch's distributions
    assert torch.allclose(d.log_prob(x.round().long()), d.log_prob(x.round()))


@pytest.mark.parametrize("name", ["MAF", "NSF", "GF", "GMM", "RealNVP"])
def test_integer_values_and_integer_or_boolean_contexts_promote(name):
    r"""Counts as values and one-hot labels as contexts (``F.one_hot`` is int64) work as
    in Zuko, where torch's type promotion takes them: the same numbers as floats."""

    import lazydist_functional.adapters as A

    torch.manual_seed(0)
    flow = getattr(A.flows, name)(FEATURES, 4)
    labels = torch.nn.functional.one_hot(torch.tensor([0, 3, 1]), 4)
    x = torch.randint(-2, 3, (3, FEATURES))
    expected = flow(labels.float()).log_prob(x.float())
    for c in (labels, labels.bool()):
        assert torch.allclose(flow(c).log_prob(x), expected)
    with pytest.raises(L.checks.InputTypeError, match="float64"):
        flow(labels.double())


def test_integer_contexts_promote_under_vmap_and_grad():
    import lazydist_functional.adapters as A

    torch.manual_seed(0)
    flow = A.flows.NSF(FEATURES, 4)
    labels = torch.nn.functional.one_hot(torch.tensor([0, 3, 1]), 4)
    x = torch.randn(3, FEATURES)
    per_sample = torch.func.vmap(lambda c, xi: flow(c).log_prob(xi))(labels, x)
    assert torch.allclose(per_sample, flow(labels.float()).log_prob(x), atol=1e-5)
    spec, params = flow.spec, dict(flow.spec.init())
    g_int = torch.func.grad(lambda p: spec.apply(p, labels).log_prob(x).sum())(params)
    g_float = torch.func.grad(lambda p: spec.apply(p, labels.float()).log_prob(x).sum())(params)
    assert all(torch.allclose(a, b) for a, b in zip(torch.utils._pytree.tree_leaves(g_int),
                                                     torch.utils._pytree.tree_leaves(g_float)))


@pytest.mark.parametrize("build, message", [
    (lambda: L.flows.GMM(3, components=0), "GMM needs components >= 1, got 0"),
    (lambda: L.flows.GF(3, components=0), "GF needs components >= 1, got 0"),
    (lambda: L.flows.NSF(3, bins=0), "NSF needs bins >= 1, got 0"),
    (lambda: L.flows.NCSF(3, bins=-1), "NCSF needs bins >= 1, got -1"),
])
def test_counts_below_one_are_refused_when_built(build, message):
    # (GMM with no component used to build and give log_prob -inf silently.)
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


@pytest.mark.parametrize("build", [lambda: L.flows.MAF(3, hidden_features=64), lambda: L.flows.CNF(3, hidden_features=8),
                                   lambda: L.flows.NAF(3, network={"hidden_features": 16})])
def test_a_single_number_as_hidden_features_is_named(build):
    with pytest.raises(TypeError, match="hidden_features should be a sequence of layer sizes"):
        build()
