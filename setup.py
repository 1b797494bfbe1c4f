r"""Package discovery for the two source trees (all other metadata is in ``pyproject.toml``).

``lazydist_functional/`` installs as itself and ``adapters/`` as ``lazydist_functional.adapters``
(a top-level name ``adapters`` is taken on PyPI). ``pyproject.toml``'s ``packages.find`` cannot
rename a discovered folder, so both trees are found here with ``find_packages``: every
subpackage (any folder with an ``__init__.py``) is installed without being listed by hand.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
CORE = find_packages(str(ROOT), include=["lazydist_functional", "lazydist_functional.*"])
ADAPTERS = [f"lazydist_functional.{name}" for name in find_packages(str(ROOT), include=["adapters", "adapters.*"])]

setup(packages=CORE + ADAPTERS, package_dir={"lazydist_functional.adapters": "adapters"})
