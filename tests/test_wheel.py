r"""A regular install works: the sdist carries every source, the wheel built from that sdist
holds every module, and installed (not editable) into a fresh virtual environment it imports
every submodule and computes a MAF log-density through the core and through the adapter.

The build calls setuptools' PEP 517 hooks (``setuptools.build_meta``: what ``pip wheel`` and
``python -m build`` call) in a subprocess, on a copy of the sources, with no network and no
build isolation; ``pip`` installs the wheel into the new environment's ``site-packages``. The new
environment sees the test interpreter's packages (torch) through ``--system-site-packages``
and a ``.pth`` listing this interpreter's site directories, but not the editable install of
this checkout: the check runs isolated (``python -I``) from an empty folder and asserts every
module was loaded from the environment's ``site-packages``.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest
import torch

from lazydist_functional import flows

ROOT = Path(__file__).resolve().parents[1]
#: Source folder -> the package it installs as.
TREES = {"lazydist_functional": "lazydist_functional", "adapters": "lazydist_functional.adapters"}
#: Other folders the sdist carries whole (MANIFEST.in), and the top-level files it needs.
EXTRAS = ("tests", "docs", "examples", "benchmarks")
TOP = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "constraints.txt", ".ci/run")
SKIP = {"__pycache__", ".hypothesis", ".pytest_cache"}


def _files(folder: Path) -> set[str]:
    r"""Every file under ``folder`` (relative POSIX paths), without caches and compiled files."""

    out = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d not in SKIP and not d.startswith(".")]
        for name in filenames:
            if not name.endswith((".pyc", ".pyo", ".tmp")):
                out.add((Path(dirpath) / name).relative_to(folder).as_posix())
    return out


def _modules() -> set[str]:
    r"""The dotted name of every module in the source trees, as installed."""

    names = set()
    for folder, package in TREES.items():
        for path in _files(ROOT / folder):
            if path.endswith(".py"):
                parts = path[: -len(".py")].split("/")
                parts = parts[:-1] if parts[-1] == "__init__" else parts
                names.add(".".join([package, *parts]))
    return names


def _hook(hook: str, source: Path, out: Path) -> Path:
    r"""Runs ``setuptools.build_meta.<hook>(out)`` in ``source`` (a fresh interpreter)."""

    code = f"import setuptools.build_meta as b; print(b.{hook}({str(out)!r}))"
    run = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"{hook} failed:\n{run.stdout}\n{run.stderr}"
    return out / run.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    r"""The sdist built from a copy of the sources, and the wheel built from that sdist."""

    work = tmp_path_factory.mktemp("packaging")
    source, dist = work / "source", work / "dist"
    source.mkdir()
    for name in TOP:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns(*SKIP, "*.pyc", "*.egg-info", "build", "dist")
    for folder in (*TREES, *EXTRAS):
        if (ROOT / folder).is_dir():
            shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    sdist = _hook("build_sdist", source, dist)
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "unpacked", filter="data")
    (unpacked,) = (work / "unpacked").iterdir()
    wheel = _hook("build_wheel", unpacked, dist)
    return {"work": work, "sdist": sdist, "unpacked": unpacked, "wheel": wheel}


def test_sdist_contains_every_source(built: dict[str, Path]) -> None:
    unpacked = built["unpacked"]
    for name in TOP:
        assert (unpacked / name).is_file() or not (ROOT / name).is_file(), f"the sdist lacks {name}"
    for folder in (*TREES, *EXTRAS):
        if (ROOT / folder).is_dir():
            missing = _files(ROOT / folder) - _files(unpacked / folder)
            assert not missing, f"the sdist lacks {sorted(missing)} under {folder}/"


def test_every_source_folder_is_a_package() -> None:
    r"""setup.py finds packages by their ``__init__.py``: a folder of modules without one would
    only reach the wheel as data files, if at all."""

    for folder in TREES:
        for path in _files(ROOT / folder):
            parent = (ROOT / folder / path).parent
            if path.endswith(".py"):
                assert (parent / "__init__.py").is_file(), f"{parent.relative_to(ROOT)} has modules but no __init__.py"


def test_wheel_holds_every_module(built: dict[str, Path]) -> None:
    with zipfile.ZipFile(built["wheel"]) as archive:
        names = archive.namelist()
    held = set()
    for name in names:
        if name.endswith(".py"):
            parts = name[: -len(".py")].split("/")
            held.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    missing = _modules() - held
    assert not missing, f"the wheel lacks the modules {sorted(missing)}"
    assert not [n for n in names if n.startswith(("adapters/", "tests/"))], "stray top-level packages in the wheel"


CHECK = textwrap.dedent(
    r'''
    import importlib, json, pkgutil, sys

    import torch

    import lazydist_functional
    from lazydist_functional import flows

    imported = {}
    for info in pkgutil.walk_packages(lazydist_functional.__path__, "lazydist_functional."):
        imported[info.name] = importlib.import_module(info.name).__file__
    imported["lazydist_functional"] = lazydist_functional.__file__

    import lazydist_functional.adapters as A

    torch.manual_seed(0)
    x, c = torch.randn(4, 3), torch.randn(4, 2)
    spec = flows.MAF(3, 2, hidden_features=[8])
    params = spec.init(torch.Generator().manual_seed(0))
    core = spec.apply(params, c).log_prob(x)
    module = A.flows.MAF(3, 2, hidden_features=[8])
    adapter = module(c).log_prob(x)
    same = module.spec.apply(dict(module.named_parameters()), c, state=dict(module.named_buffers())).log_prob(x)
    print(json.dumps({
        "modules": imported,
        "core": core.tolist(),
        "adapter": adapter.tolist(),
        "adapter_vs_core": (adapter - same).abs().max().item(),
    }))
    '''
)


def test_wheel_installs_imports_and_runs(built: dict[str, Path]) -> None:
    work = built["work"]
    env = work / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env)
    python = env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = Path(subprocess.check_output(
        [python, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip())
    # This interpreter's site directories (torch, optree), after the environment's own: plain
    # path lines, so the .pth files there (the checkout's editable finder) are not run.
    (purelib / "outer_site.pth").write_text("\n".join([*site.getsitepackages(), site.getusersitepackages()]) + "\n")
    install = subprocess.run(
        [sys.executable, "-I", "-m", "pip", "install", "--no-deps", "--no-index", "--no-cache-dir",
         "--disable-pip-version-check", "-q", "--target", purelib, built["wheel"]],
        capture_output=True, text=True, timeout=180,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    empty = work / "cwd"
    empty.mkdir()
    run = subprocess.run([python, "-I", "-c", CHECK], cwd=empty, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    modules = result["modules"]
    missing = _modules() - set(modules)
    assert not missing, f"not importable from the installed wheel: {sorted(missing)}"
    outside = {name: path for name, path in modules.items() if not Path(path).resolve().is_relative_to(purelib.resolve())}
    assert not outside, f"modules loaded from outside the new environment: {outside}"
    # The installed code computes what this checkout computes, and the adapter what the core does.
    torch.manual_seed(0)
    x, c = torch.randn(4, 3), torch.randn(4, 2)
    spec = flows.MAF(3, 2, hidden_features=[8])
    here = spec.apply(spec.init(torch.Generator().manual_seed(0)), c).log_prob(x)
    assert torch.allclose(torch.tensor(result["core"]), here, atol=1e-6, rtol=1e-6), (result["core"], here)
    assert len(result["adapter"]) == 4
    assert result["adapter_vs_core"] == 0.0


def test_ci_runs_the_readme_test_command() -> None:
    r"""``.ci/run`` runs exactly the test command the README gives (one line, verbatim)."""

    readme = (ROOT / "README.md").read_text().splitlines()
    (command,) = [line.strip() for line in readme if '".[test]"' in line and "pytest" in line]
    assert command == 'pip install -e ".[test]" -c constraints.txt && python -m pytest'
    steps = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    assert command in steps, f".ci/run does not run the README's test command {command!r}"
