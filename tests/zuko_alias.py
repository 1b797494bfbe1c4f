r"""A pytest plugin that makes ``import zuko`` (and every ``zuko.<submodule>``) import
:mod:`lazydist_functional.adapters` instead: how Zuko's own test suite is run against
the adapter (``python -m pytest -p zuko_alias <zuko's tests>``, with this folder on
``PYTHONPATH``). Only for a separate process: the real ``zuko`` is the parity oracle
elsewhere in this suite."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import zlib

import pytest
import torch

import lazydist_functional.adapters as adapter

sys.modules["zuko"] = adapter
for info in pkgutil.walk_packages(adapter.__path__, prefix=adapter.__name__ + "."):
    sys.modules["zuko" + info.name[len(adapter.__name__):]] = importlib.import_module(info.name)


@pytest.fixture(autouse=True)
def _seeded(request: pytest.FixtureRequest) -> None:
    r"""Seeds torch per test (from its node id). Zuko's tests draw random parameters
    without a seed, and some draws fail on Zuko itself (its GF inverse near |x| = 5, a
    signed power whose inverse Jacobian overflows); a seed makes each run the same."""

    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))
