r"""The stateful side: a drop-in for Zuko 1.6 (``lazy``, ``flows``, ``distributions``,
``transforms``, ``mixtures``, ``nn``, ``utils``, ``bayesian``)::

    import lazydist_functional.adapters as zuko   # was: import zuko

    flow = zuko.flows.NSF(3, 4)
    loss = -flow(c).log_prob(x).mean()

Every module holds the pure spec it was built from and computes its forward with it,
so ``torch.func.functional_call(module, params, (c,))`` equals ``spec.apply(params, c)``.

Importing this package changes torch globally the way importing Zuko does
(:mod:`~lazydist_functional.adapters.torch_globals`): ``Transform.call_and_ladj`` is
added to every torch transform and distribution argument validation is turned off.
"""

from .torch_globals import apply_zuko_globals

apply_zuko_globals()

from . import bayesian, distributions, flows, lazy, mixtures, nn, transforms, utils  # noqa: E402
from .functional import from_zuko, to_functional  # noqa: E402
from .module import SpecModule, to_module  # noqa: E402

__version__ = "1.6.0"

__all__ = [
    "SpecModule",
    "bayesian",
    "distributions",
    "flows",
    "from_zuko",
    "lazy",
    "mixtures",
    "nn",
    "to_functional",
    "to_module",
    "transforms",
    "utils",
]
