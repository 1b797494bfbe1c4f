r"""The core stands alone: its tests pass in a fresh interpreter where neither the adapter nor
Zuko was ever imported (so torch was never patched), and it accepts torch's own transforms
inside its flows whether or not the adapter's patch (Zuko's ``Transform.call_and_ladj``) is in.

Each check runs in a subprocess: the suite's own process imports the adapter somewhere, and
what it changes in torch cannot be undone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Core test files run unpatched (they import only the core, with conftest.py).
CORE_FILES = ("tests/test_numerics.py",)

UNTOUCHED = textwrap.dedent(
    r"""
    import sys, torch
    untouched = {
        "adapter imported": "lazydist_functional.adapters" in sys.modules,
        "zuko imported": any(name == "zuko" or name.startswith("zuko.") for name in sys.modules),
        "Transform.call_and_ladj": hasattr(torch.distributions.Transform, "call_and_ladj"),
        "Distribution._validate_args": torch.distributions.Distribution._validate_args,
        "_InverseTransform.__name__": torch.distributions.transforms._InverseTransform.__name__,
    }
    """
)
EXPECTED_UNTOUCHED = {
    "adapter imported": False,
    "zuko imported": False,
    "Transform.call_and_ladj": False,
    "Distribution._validate_args": __debug__,  # torch's default: validation on unless -O
    "_InverseTransform.__name__": "_InverseTransform",
}


def _run(code: str, timeout: float = 300) -> dict:
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_core_tests_pass_in_a_process_without_the_adapter():
    code = textwrap.dedent(
        f"""
        import json, pytest
        rc = pytest.main(["-q", "-x", "-p", "no:cacheprovider", "-o", "addopts=", *{list(CORE_FILES)!r}])
        """
    ) + UNTOUCHED + "print(json.dumps({'rc': int(rc), **untouched}))\n"
    result = _run(code)
    assert result.pop("rc") == 0, "core tests failed unpatched (run them alone to see why)"
    assert result == EXPECTED_UNTOUCHED


TORCH_TRANSFORMS = textwrap.dedent(
    r"""
    import json, sys
    if sys.argv[1] == "patched":
        import lazydist_functional.adapters  # noqa: F401  (Zuko's patch of torch)
    import torch
    from torch.distributions import AffineTransform, ExpTransform, Independent, Normal, TransformedDistribution

    from lazydist_functional import distributions as D, transforms as T
    from lazydist_functional.flows import Flow, MaskedAutoregressiveTransform, UnconditionalTransform
    from lazydist_functional.flows.common import standard_base

    torch.manual_seed(0)
    x = torch.rand(5, 3) + 0.5
    base, oracle_base = D.DiagNormal(torch.zeros(3), torch.ones(3)), Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    exp, affine = ExpTransform(), AffineTransform(torch.tensor(0.5), torch.tensor(2.0))
    errors = {}

    def oracle(*ts):  # torch's density of the pushforward of the base by ts[0], then ts[1], ...
        return TransformedDistribution(oracle_base, list(ts)).log_prob(x)

    # A NormalizingFlow's transform maps x to the base (z = f(x)): log / log-affine here, so
    # x = exp(z) (or (exp(z) - 0.5) / 2) is defined for every base sample.
    cases = {
        "NormalizingFlow(Exp.inv)": (D.NormalizingFlow(exp.inv, base), oracle(exp)),
        "ComposedTransform(Affine, Exp.inv)": (
            D.NormalizingFlow(T.ComposedTransform(affine, exp.inv), base), oracle(exp, affine.inv)),
        "DependentTransform(Exp.inv)": (D.NormalizingFlow(T.DependentTransform(exp.inv, 1), base), oracle(exp)),
        "InverseTransform(Exp)": (D.NormalizingFlow(T.InverseTransform(exp), base), oracle(exp)),
    }
    for name, (d, expected) in cases.items():
        errors[name] = (d.log_prob(x) - expected).abs().max().item()
        y, lp = d.rsample_and_log_prob((4,))
        errors[name + " rsample_and_log_prob"] = (lp - d.log_prob(y)).abs().max().item()

    # torch transforms inside a core Flow spec, around a core transform
    spec = Flow([
        UnconditionalTransform(lambda: ExpTransform().inv),
        MaskedAutoregressiveTransform(3, 0, hidden_features=[8]),
        UnconditionalTransform(AffineTransform, torch.tensor(0.5), torch.tensor(2.0), buffer=True),
    ], standard_base(3))
    d = spec.apply(spec.init(torch.Generator().manual_seed(0)))
    z, ladj = T.base.call_and_ladj(d.transform, x)
    jac = torch.func.vmap(torch.func.jacrev(lambda v: T.base.call_and_ladj(d.transform, v)[0]))(x)
    errors["Flow ladj vs jacrev"] = (ladj - torch.linalg.slogdet(jac)[1]).abs().max().item()
    errors["Flow inverse"] = (T.base.call_and_ladj(d.transform.inv, z)[0] - x).abs().max().item()
    y, lp = d.rsample_and_log_prob((4,))
    errors["Flow rsample_and_log_prob"] = (lp - d.log_prob(y)).abs().max().item()
    print(json.dumps({"patched": hasattr(torch.distributions.Transform, "call_and_ladj"), "errors": errors}))
    """
)


@pytest.mark.parametrize("mode", ["unpatched", "patched"])
def test_core_accepts_torch_transforms(mode):
    result = _run(TORCH_TRANSFORMS.replace("sys.argv[1]", repr(mode)))
    assert result["patched"] is (mode == "patched")
    bad = {name: err for name, err in result["errors"].items() if not err < 1e-4}
    assert not bad, f"{mode}: {bad}"
