r"""Importing the adapter changes in torch exactly what importing Zuko 1.6 changes.

Each import runs in its own fresh interpreter (what one import changed cannot be undone in
this process, and the suite imports both), which snapshots torch's global state after
``import torch``, imports the module, snapshots again and reports the differences:

* the attributes of every class defined in ``torch.distributions`` (``Distribution``,
  ``Transform``, ``_InverseTransform``, ...) and of ``nn.Module``;
* the globals of every ``torch.distributions`` module (the KL registry, the constraint
  registries) and of ``torch.nn.modules.module`` (the process-wide hook dicts);
* process-wide switches: default dtype, grad mode, deterministic algorithms, the default
  of argument validation (``set_default_validate_args``).

Zuko's own changes (read from its sources: ``zuko/distributions.py``, ``zuko/transforms.py``)
are ``Distribution._validate_args = False``, ``Distribution.arg_constraints = {}``,
``_InverseTransform.__name__ = "Inverse"`` and ``Transform.call_and_ladj``; the comparison
does not hard-code them, it asserts the two reports are equal.

Not compared: registries that only gain entries for the importing library's *own* classes
(torch's pytree registry, where the core registers its distributions and transforms so that
``torch.func`` can return them) and submodules that one import loads and the other does not.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SNAPSHOT = textwrap.dedent(
    r'''
    import inspect, json, sys, types

    import torch
    import torch.nn.modules.module as module_globals

    SIMPLE = (bool, int, float, str, type(None))


    def describe(value):
        # A comparable description: simple values by value, containers by size, the rest by identity.
        if isinstance(value, SIMPLE):
            return repr(value)
        if isinstance(value, torch.dtype):
            return str(value)
        if isinstance(value, (dict, list, tuple, set, frozenset)):
            return f"{type(value).__name__} of {len(value)}"
        return f"{type(value).__name__} @{id(value)}"


    def kind(value):
        # What a difference is reported as: simple values and sizes as they are, others by type.
        text = describe(value)
        return text.split(" @")[0] if " @" in text else text


    def modules():
        names = [n for n in sys.modules if n == "torch.distributions" or n.startswith("torch.distributions.")]
        return sorted(names) + ["torch.nn.modules.module"]


    def snapshot():
        state = {}
        for name in modules():
            module = sys.modules[name]
            for key, value in vars(module).items():
                if isinstance(value, types.ModuleType) or key.startswith("__"):
                    continue
                state[f"{name}.{key}"] = describe(value)
                if inspect.isclass(value) and value.__module__ == name:
                    for attr, member in vars(value).items():
                        if attr not in ("__dict__", "__weakref__", "__doc__"):
                            state[f"{name}.{key}:{attr}"] = describe(member)
                    state[f"{name}.{key}:__name__"] = repr(value.__name__)
        for attr, member in vars(torch.nn.Module).items():
            state[f"torch.nn.Module:{attr}"] = describe(member)
        state["default dtype"] = str(torch.get_default_dtype())
        state["grad enabled"] = repr(torch.is_grad_enabled())
        state["deterministic algorithms"] = repr(torch.are_deterministic_algorithms_enabled())
        state["validate_args default"] = repr(torch.distributions.Distribution._validate_args)
        exp = torch.distributions.ExpTransform()
        if hasattr(exp, "call_and_ladj"):
            state["ExpTransform().call_and_ladj([0.5])"] = repr([t.tolist() for t in exp.call_and_ladj(torch.tensor([0.5]))])
        return state


    def value_of(key):
        # The live value behind a snapshot key, to describe what it became.
        if ":" in key:
            owner, attr = key.split(":")
            if owner == "torch.nn.Module":
                return vars(torch.nn.Module).get(attr, "<absent>")
            module, cls = owner.rsplit(".", 1)
            return vars(getattr(sys.modules[module], cls)).get(attr, "<absent>")
        return None


    before = snapshot()
    import importlib
    importlib.import_module(sys.argv[1])
    after = snapshot()
    changes = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key, "<absent>"), after.get(key, "<absent>")
        if old != new:
            live = value_of(key)
            now = kind(live) if live is not None and live != "<absent>" else new.split(" @")[0]
            changes[key] = [old.split(" @")[0], now]
    print(json.dumps(changes, sort_keys=True))
    '''
)


def _changes(module: str) -> dict[str, list[str]]:
    run = subprocess.run([sys.executable, "-c", SNAPSHOT, module], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def reports() -> tuple[dict, dict]:
    return _changes("zuko"), _changes("lazydist_functional.adapters")


def test_zuko_changes_are_the_known_ones(reports):
    r"""The snapshot sees Zuko's four documented changes (so the comparison below is not vacuous)."""

    zuko, _ = reports
    D, T = "torch.distributions.distribution.Distribution", "torch.distributions.transforms"
    assert zuko[f"{D}:_validate_args"] == ["True", "False"]
    assert zuko[f"{D}:arg_constraints"][1] == "dict of 0"
    assert zuko[f"{T}._InverseTransform:__name__"] == ["'_InverseTransform'", "'Inverse'"]
    assert zuko[f"{T}.Transform:call_and_ladj"] == ["<absent>", "function"]


def test_importing_the_adapter_changes_what_importing_zuko_changes(reports):
    zuko, adapter = reports
    only_zuko = {k: v for k, v in zuko.items() if adapter.get(k) != v}
    only_adapter = {k: v for k, v in adapter.items() if zuko.get(k) != v}
    assert not only_zuko and not only_adapter, (
        f"changed by Zuko only (or differently): {only_zuko}; by the adapter only (or differently): {only_adapter}"
    )
