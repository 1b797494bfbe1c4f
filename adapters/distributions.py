r"""``zuko.distributions`` names available so far (pure pytree distributions)."""

from ..distributions import *  # noqa: F401,F403
from ..distributions import __all__  # noqa: F401
