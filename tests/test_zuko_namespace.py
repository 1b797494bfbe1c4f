r"""The adapter's namespace is Zuko 1.6's: every public name of every Zuko module exists
at the same path, and Zuko's classes keep their bases (``isinstance`` checks in client
code hold)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import zuko
import zuko.flows

import lazydist_functional.adapters as adapter
from lazydist_functional import flows as core_flows

ZUKO_MODULES = sorted(
    {"", ".bayesian", ".distributions", ".flows", ".lazy", ".mixtures", ".nn", ".transforms", ".utils"}
    | {".flows." + m.name for m in pkgutil.iter_modules(zuko.flows.__path__)}
)


def _public(module: object) -> set[str]:
    return {name for name in dir(module) if not name.startswith("_")}


@pytest.mark.parametrize("suffix", ZUKO_MODULES)
def test_every_zuko_name_exists_at_the_same_path(suffix):
    ours = importlib.import_module(adapter.__name__ + suffix)
    theirs = importlib.import_module("zuko" + suffix)
    assert _public(theirs) - _public(ours) == set()


def _zuko_classes() -> list[tuple[str, str]]:
    out = []
    for suffix in ZUKO_MODULES:
        module = importlib.import_module("zuko" + suffix)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__.startswith("zuko") and not name.startswith("_"):
                out.append((suffix, name))
    return sorted(set(out))


@pytest.mark.parametrize(("suffix", "name"), _zuko_classes())
def test_zuko_classes_keep_their_bases(suffix, name):
    r"""Each base of a Zuko class (by name, and torch's bases by identity) is a base of ours."""

    theirs = getattr(importlib.import_module("zuko" + suffix), name)
    ours = getattr(importlib.import_module(adapter.__name__ + suffix), name)
    our_mro = inspect.getmro(ours)
    for base in inspect.getmro(theirs)[1:]:
        if base.__module__.startswith("zuko"):
            assert base.__name__ in {b.__name__ for b in our_mro}, f"{name} lacks base {base.__name__}"
        elif base.__module__.startswith("torch"):
            assert issubclass(ours, base), f"{name} is not a {base.__module__}.{base.__name__}"


@pytest.mark.parametrize("name", ["MAF", "NSF", "NCSF", "RealNVP", "NICE", "NAF", "UNAF", "SOSPF", "BPF", "GF", "CNF"])
def test_flow_modules_keep_the_core_spec_they_were_built_from(name):
    flow = getattr(adapter.flows, name)(3, 2)
    assert type(flow.spec) is getattr(core_flows, name)
    assert flow.spec.features == 3 and flow.spec.context == 2
    assert isinstance(flow, adapter.flows.Flow) and isinstance(flow, zuko.lazy.LazyDistribution) is False


def test_importing_the_adapter_applies_zukos_torch_globals():
    import torch

    assert hasattr(torch.distributions.ExpTransform(), "call_and_ladj")
    assert torch.distributions.Distribution._validate_args is False
