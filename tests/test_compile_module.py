r"""``torch.compile`` on the module path (the adapter): every flow of the catalogue,
compiled with ``fullgraph=True`` after eager calls and before them, on the same module,
equals eager. ``aot_eager`` finds graph breaks and functionalization problems in
seconds; inductor is exercised on two flows (marked slow)."""

from __future__ import annotations

import pytest
import torch

from lazydist_functional.adapters import to_module
from lazydist_functional.catalogue import FLOWS, make_spec, sample_input

CONTEXT = 2


def _module(name: str) -> torch.nn.Module:
    spec = make_spec(name, features=3, context=0 if name == "GMM" else CONTEXT)
    return to_module(spec, spec.init(torch.Generator().manual_seed(0)))


def _inputs(name: str) -> tuple[torch.Tensor | None, torch.Tensor]:
    c = None if name == "GMM" else torch.randn(5, CONTEXT, generator=torch.Generator().manual_seed(1))
    return c, sample_input(name, (5, 3), generator=torch.Generator().manual_seed(2))


def _log_prob(module: torch.nn.Module, c: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    return module(c).log_prob(x)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_eager_then_compiled_then_eager(name):
    module = _module(name)
    c, x = _inputs(name)
    eager = _log_prob(module, c, x)
    compiled = torch.compile(_log_prob, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(module, c, x), eager, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(_log_prob(module, c, x), eager)


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_compiled_module_first_then_eager(name):
    module = _module(name)
    c, x = _inputs(name)
    compiled = torch.compile(module, backend="aot_eager")
    first = compiled(c).log_prob(x)
    torch.testing.assert_close(module(c).log_prob(x), first, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["MAF", "NSF", "RealNVP"])
def test_compiled_training_step_equals_eager(name):
    c, x = _inputs(name)
    grads = []
    for compile_it in (False, True):
        module = _module(name)
        loss_fn = lambda: -_log_prob(module, c, x).mean()  # noqa: E731
        if compile_it:
            loss_fn = torch.compile(loss_fn, backend="aot_eager", fullgraph=True)
        loss_fn().backward()
        grads.append({k: p.grad for k, p in module.named_parameters()})
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["MAF", "NSF"])
def test_inductor_module_log_prob_and_sample(name):
    module = _module(name)
    c, x = _inputs(name)
    compiled = torch.compile(_log_prob, fullgraph=True)
    torch.testing.assert_close(compiled(module, c, x), _log_prob(module, c, x), rtol=1e-4, atol=1e-4)
    sample = torch.compile(lambda m, c: m(c).sample((4,)), fullgraph=True)(module, c)
    assert sample.shape == (4, 5, 3) and torch.isfinite(sample).all()


@pytest.mark.slow
@pytest.mark.parametrize("name, features, context", [("RealNVP", 3, 2), ("NICE", 3, 0), ("NICE", 2, 2)])
def test_inductor_training_step_with_backward_inside(name, features, context):
    # A Zuko user's step: the loss and its backward in one compiled function. Couplings with one
    # transformed feature once failed in inductor's codegen (the backward of their gather).
    import lazydist_functional.adapters as zuko

    torch.manual_seed(0)
    flow = getattr(zuko.flows, name)(features, context)
    c = torch.randn(8, context) if context else None
    x = torch.randn(8, features)

    def step(c, x):
        loss = -flow(c).log_prob(x).mean()
        loss.backward()
        return loss

    grads = []
    for fn in (step, torch.compile(step)):
        flow.zero_grad()
        loss = fn(c, x)
        grads.append((loss.detach(), {k: p.grad.clone() for k, p in flow.named_parameters()}))
    (eager, expected), (compiled, got) = grads
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-3, atol=1e-5, msg=k)
