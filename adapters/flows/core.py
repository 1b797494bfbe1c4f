r"""``zuko.flows.core``: the lazy building blocks (see :mod:`lazydist_functional.adapters.lazy`)."""

from ..lazy import *  # noqa: F401,F403
from ..lazy import __all__  # noqa: F401
