r"""Every docstring example in the library runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

import lazydist_functional
import lazydist_functional.adapters


def _modules() -> list[str]:
    names = [lazydist_functional.__name__, lazydist_functional.adapters.__name__]
    for package in (lazydist_functional, lazydist_functional.adapters):
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
            names.append(info.name)
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    torch.manual_seed(0)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, globs={"torch": torch, **vars(module)}):
        if test.name.split(".")[-1].startswith("_") or (test.lineno is None):
            continue
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_docstring_examples_are_found():
    finder = doctest.DocTestFinder(exclude_empty=True)
    count = sum(len(t.examples) for n in _modules() for t in finder.find(importlib.import_module(n), n))
    assert count > 150  # guards against the finder silently skipping the library
