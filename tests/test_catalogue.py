r"""The flow catalogue and ``Spec.split_state_dict``: every entry builds a working flow,
and a Zuko 1.6 ``state_dict`` of the same architecture splits into trees that give Zuko's
``log_prob``."""

from __future__ import annotations

import re

import pytest
import torch
import zuko

import lazydist_functional as L
from lazydist_functional.catalogue import FLOWS, FlowEntry, make_spec, sample_input
from lazydist_functional.pytree import flatten_names

from conftest import assert_close

ZUKO_ONLY = {"steps"}  # catalogue keywords Zuko's constructors do not take (CNF's fixed solver)


def test_catalogue_names_every_flow():
    assert sorted(FLOWS) == sorted(
        ["MAF", "NSF", "NCSF", "RealNVP", "NICE", "NAF", "UNAF", "SOSPF", "BPF", "GF", "CNF", "GMM"]
        + ["Planar", "Radial", "Sylvester"]  # not in Zuko 1.6
    )
    for name, entry in FLOWS.items():
        assert isinstance(entry, FlowEntry) and entry.cls is getattr(L.flows, name)


def test_unknown_flow_is_named():
    with pytest.raises(KeyError, match="unknown flow 'XYZ'"):
        make_spec("XYZ")


@pytest.mark.parametrize("context", [0, 2])
@pytest.mark.parametrize("name", list(FLOWS))
def test_every_entry_builds_a_working_flow(name, context):
    spec = make_spec(name, 3, context)
    assert isinstance(spec, FLOWS[name].cls) and spec.context == context
    params = spec.init(torch.Generator().manual_seed(0))
    c = torch.randn(5, context) if context else None
    x = sample_input(name, (5, 3), generator=torch.Generator().manual_seed(1))
    lp = spec.apply(params, c).log_prob(x)
    assert lp.shape == (5,) and torch.isfinite(lp).all()


def test_overrides_replace_the_catalogue_keywords():
    spec = make_spec("MAF", 4, 1, transforms=1, hidden_features=[8])
    assert spec.context == 1
    assert len(spec.transform.transforms) == 1


@pytest.mark.parametrize("name", [n for n in FLOWS if hasattr(zuko.flows, n)])
def test_split_state_dict_of_a_zuko_checkpoint(name):
    kwargs = {k: v for k, v in FLOWS[name].kwargs.items() if k not in ZUKO_ONLY}
    torch.manual_seed(0)
    ref = getattr(zuko.flows, name)(3, 2, **kwargs)
    spec = make_spec(name, 3, 2)
    params, state = spec.split_state_dict(ref.state_dict())
    assert sorted(flatten_names(params)) == sorted(spec.param_shapes)
    assert sorted(flatten_names(state)) == sorted(spec.state_shapes)
    if name == "CNF":  # an adaptive solver in Zuko, fixed steps here: compared in test_cnf.py
        return
    c = torch.randn(4, 2)
    x = sample_input(name, (4, 3))
    with torch.no_grad():
        assert_close(spec.apply(params, c, state=state).log_prob(x), ref(c).log_prob(x), atol=1e-4, what=name)


def test_split_state_dict_names_missing_and_unexpected_keys():
    spec = make_spec("MAF", 3, 2)
    sd = {**flatten_names(spec.init()), **flatten_names(spec.init_state())}
    gone = next(iter(spec.param_shapes))
    del sd[gone]
    sd["transform.extra"] = torch.zeros(1)
    with pytest.raises(L.ParamTreeError, match=re.escape(f"missing ['{gone}'], unexpected ['transform.extra']")):
        spec.split_state_dict(sd)


def test_split_state_dict_checks_shapes():
    spec = make_spec("MAF", 3, 2)
    sd = {**flatten_names(spec.init()), **flatten_names(spec.init_state())}
    name = next(iter(spec.param_shapes))
    sd[name] = torch.zeros(1, 1)
    with pytest.raises(L.ParamTreeError, match=re.escape(f"leaf '{name}' should have shape")):
        spec.split_state_dict(sd)
