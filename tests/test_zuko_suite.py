r"""Zuko 1.6's own test suite, run against the adapter (the drop-in's measure).

The tests are fetched at test time from Zuko's PyPI sdist (``pip download``), cached
in pytest's cache folder, never copied into this repository. Each of Zuko's test
files runs in its own process with ``zuko`` resolving to
:mod:`lazydist_functional.adapters` (see ``zuko_alias.py``) and must pass whole.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ZUKO_VERSION = "1.6.0"
ZUKO_TEST_FILES = (
    "test_bayesian.py",
    "test_distributions.py",
    "test_flows.py",
    "test_mixtures.py",
    "test_nn.py",
    "test_transforms.py",
    "test_utils.py",
)
HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def zuko_tests(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    r"""The ``tests/`` folder of Zuko's sdist, downloaded once and cached."""

    cache = getattr(request.config, "cache", None)
    root = cache.mkdir(f"zuko-{ZUKO_VERSION}-sdist") if cache is not None else tmp_path_factory.mktemp("zuko")
    tests = root / f"zuko-{ZUKO_VERSION}" / "tests"
    if not all((tests / name).exists() for name in ZUKO_TEST_FILES):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             f"zuko=={ZUKO_VERSION}", "--dest", str(root)],
            check=True,
        )
        with tarfile.open(root / f"zuko-{ZUKO_VERSION}.tar.gz") as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(f"zuko-{ZUKO_VERSION}/tests/")]
            archive.extractall(root, members=members, filter="data")
    return tests


def _summary(output: str) -> dict[str, int]:
    r"""Counts from pytest's closing line, e.g. ``{'passed': 12, 'failed': 1}``."""

    lines = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    return {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|errors?|skipped)", lines[-1])} if lines else {}


@pytest.mark.slow
@pytest.mark.parametrize("name", ZUKO_TEST_FILES)
def test_zuko_test_file_passes_on_the_adapter(zuko_tests: Path, name: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "zuko_alias", "-p", "no:cacheprovider", "-o", "addopts=", "-W", "ignore",
         "--durations=5", "--rootdir", str(zuko_tests), str(zuko_tests / name)],
        capture_output=True, text=True, env=env, cwd=zuko_tests,
    )
    counts = _summary(result.stdout)
    assert result.returncode == 0 and counts.get("passed", 0) > 0, (
        f"Zuko's {name} on the adapter: {counts}\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    )
