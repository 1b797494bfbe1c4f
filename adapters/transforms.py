r"""``zuko.transforms`` names available so far (pure pytree transforms)."""

from ..transforms import *  # noqa: F401,F403
from ..transforms import __all__  # noqa: F401
